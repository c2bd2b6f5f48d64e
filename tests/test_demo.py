"""The quick-start demo runs end to end, tells the product's story, and the queries it prints work.

The story (issue 26): a failure a rule skips (a syntax error) and the alert it fires; a rerun whose
delay a rule set; a duplicate refused; a manual rerun; a rerun by filter, planned then applied.
"""

import json
import shutil
import subprocess

import pytest

from conftest import ROOT
from demo import CREDENTIALS, SWEPT

FIRST = "1000012345678"  # delivered twice
SYNTAX_ERROR, NETWORK_ERROR = "1000012345684", "1000012345685"
EVENTS_LOST = ["1000012345686", "1000012345687"]  # no event came: the rerun by filter finds them
RUNNING = "1000012345682"  # named in the manual rerun, still running: skipped
SECRETS = (CREDENTIALS.access_key_secret, CREDENTIALS.security_token)  # the demo's own, local-only


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run  # conftest: one run of the demo serves this module and tests/test_report.py


def test_the_demo_tests_go_to_one_worker(request):
    # xdist schedules a group by the "@group" suffix of the test ids. Without it two workers each ran
    # the demo, and one worker's demo emptied the Logstore while the other's printed queries read it.
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not under pytest-xdist: one process runs every test")
    groups = {item.nodeid: mark.args[0] for item in request.session.items for mark in item.iter_markers("xdist_group")}
    demo_tests = [item.nodeid for item in request.session.items if "demo_run" in item.fixturenames]
    assert demo_tests and all(groups.get(nodeid) == "demo" for nodeid in demo_tests)
    assert [nodeid for nodeid, group in groups.items() if not nodeid.endswith(f"@{group}")] == []


def test_the_demo_shows_event_and_manual_reruns(demo):
    lines = demo.stdout.splitlines()
    assert lines[0].split() == ["trigger", "instance", "decision", "reason", "result"]
    first = [line for line in lines if line.startswith(f"eventbridge  {FIRST}") and "not-a-failure" not in line]
    # Two copies of one failure event on two instances: one schedules the rerun through the local
    # InvokeFunction, FC refuses the other's task id with 409.
    assert len(first) == 2
    assert sum(" scheduled " in line and "rerun in " in line for line in first) == 1
    assert sum("already-scheduled" in line for line in first) == 1
    assert any(line.startswith("http") and "1000012345679  rerun" in line for line in lines)
    assert "The event function ran on" in demo.stdout and "reservedConcurrency 3" in demo.stdout
    assert "dwrerun-event.jsonl" in demo.stdout
    assert not any(secret in demo.stdout + demo.stderr for secret in SECRETS)


def test_the_demo_shows_a_scheduled_rerun_run_by_fcs_delayed_invocation(demo):
    lines = demo.stdout.splitlines()
    (delayed,) = [line for line in lines if line.startswith(f"delayed      {FIRST}")]
    assert "rerun ok" in delayed and f"dwrerun-{FIRST}-run-1" in delayed
    # The delayed rows come after every other row: the reruns waited for their delay.
    table = lines[1 : lines.index("")]
    triggers = [line.split()[0] for line in table]
    assert triggers[-5:] == ["delayed"] * 3 + ["filter"] * 2 or triggers.index("filter") > max(
        i for i, t in enumerate(triggers) if t == "delayed"
    )
    assert "3 delayed invocations through the local FC InvokeFunction" in demo.stdout
    assert "1 copy refused with 409" in demo.stdout and "scheduled reruns to come due" in demo.stderr


def printed_query(demo, program: str) -> str:
    (command,) = [line.strip() for line in demo.stdout.splitlines() if line.strip().startswith(program + " ")]
    return command


def reruns_found_by(command: str) -> list[dict]:
    found = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)  # noqa: S602 - the demo's own printed command
    return [json.loads(line) for line in found.stdout.splitlines()]


def test_the_printed_python_query_finds_the_reruns(demo):
    records = reruns_found_by(printed_query(demo, "python3"))
    assert records and all(r["kind"] == "instance" and r["decision"] == "rerun" for r in records)
    # the sweep's rerun of the failure whose event was lost too (docs/sweep.md)
    assert {str(r["instanceId"]) for r in records if r["success"]} == {
        FIRST,
        "1000012345690",
        NETWORK_ERROR,
        str(SWEPT),
    }


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_printed_jq_query_finds_the_same_reruns(demo):
    assert reruns_found_by(printed_query(demo, "jq")) == reruns_found_by(printed_query(demo, "python3"))


def test_the_demo_records_hold_no_credential(demo, demo_logs):
    files = sorted(demo_logs.glob("*.jsonl"))
    assert [f.name for f in files] == ["dwrerun-event.jsonl", "dwrerun-http.jsonl"]
    records = "".join(f.read_text() for f in files)
    assert not any(secret in records for secret in SECRETS)


def test_the_demo_ends_with_the_alerts_template_yml_would_fire(demo):
    section = demo.stdout.split("\nAlerts these records would fire", 1)[1]
    # instance 1000012345680 is at run 4: reruns exhausted, on the event path and over HTTP (one task: one alert)
    assert section.count("[dwrerun-cap-reached]") == 1
    assert "Task dwd_orders_di (id 700000004418), instance 1000012345680, run 4: cap-reached" in section
    assert "message.instanceId: 1000012345680" in section
    assert "Quiet: " in section and "dwrerun-retries-exhausted" in section
    # the syntax error a rule skipped: the headline feature's alert
    assert section.count("[dwrerun-not-retryable]") == 1
    assert f"Task dws_sales_1d (id 700000004423), instance {SYNTAX_ERROR}, run 1: not-retryable" in section
    assert "dwrerun-not-retryable" not in section.split("Quiet: ", 1)[1]


def row(demo, trigger: str, instance: str) -> list[str]:
    return [line for line in demo.stdout.splitlines() if line.split()[:2] == [trigger, instance]]


def test_a_syntax_error_is_skipped_by_its_rule_and_never_rerun(demo):
    (skipped,) = row(demo, "eventbridge", SYNTAX_ERROR)
    assert "not-retryable" in skipped and "maxcompute-syntax-error" in skipped
    later = row(demo, "delayed", SYNTAX_ERROR) + row(demo, "filter", SYNTAX_ERROR)
    assert [line.split()[2] for line in later] == ["skip"]  # the filter held it back too
    assert "- Reruns only what a rerun can fix: 1000012345684 (dws_sales_1d)" in demo.stdout


def test_a_rules_delay_schedules_the_network_error_and_the_delayed_invocation_reruns_it(demo, demo_logs):
    (scheduled,) = row(demo, "eventbridge", NETWORK_ERROR)
    assert "scheduled" in scheduled and "the delay of rule shell-network-error" in scheduled
    (delayed,) = row(demo, "delayed", NETWORK_ERROR)
    assert "rerun ok" in delayed
    # the shipped rule's 60 s, divided by the demo's 10, stretched by at most 10%
    (record,) = [
        r for r in records(demo_logs) if r.get("decision") == "scheduled" and str(r["instanceId"]) == NETWORK_ERROR
    ]
    assert record["rule"] == "shell-network-error" and 6 <= record["delaySeconds"] <= 7


def test_the_rerun_by_filter_is_planned_then_applied_and_prints_the_ids(demo):
    story = demo.stdout.split("- A rerun by filter", 1)[1].split("\n\n", 1)[0]
    plan, applied = story.split("then the plan applied:")
    assert "held back 1000012345684: rule maxcompute-syntax-error" in plan
    assert f"dry-run                2     {EVENTS_LOST[0]}, {EVENTS_LOST[1]}" in plan
    assert "plan saved to plan.json" in plan
    assert f"rerun: {EVENTS_LOST[0]}, {EVENTS_LOST[1]}" in applied
    assert [line.split()[2] for line in row(demo, "filter", EVENTS_LOST[0]) + row(demo, "filter", EVENTS_LOST[1])] == [
        "rerun",
        "rerun",
    ]


def test_the_runs_that_ended_are_only_the_ones_it_reran(demo):
    (ended,) = [line for line in demo.stdout.splitlines() if line.startswith("Rerun runs that then ended")]
    ids = set(ended.split(": ", 1)[1].split(", "))
    assert RUNNING not in ids  # the manual rerun skipped it (not-finished); it ended on its own
    assert ids == {FIRST, "1000012345679", "1000012345690", NETWORK_ERROR, *EVENTS_LOST}


def test_the_demo_tells_what_each_part_showed(demo):
    story = demo.stdout.split("What this showed:", 1)[1]
    for part in (
        "Reruns only what a rerun can fix",
        "A rule sets the wait",
        "Never twice",
        "A manual rerun",
        "A rerun by filter",
    ):
        assert f"- {part}" in story, part
    assert "(the story took " in demo.stdout


def records(logs) -> list[dict]:
    out = []
    for path in sorted(logs.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            message = json.loads(line).get("message", "")
            if message.startswith("{"):
                out.append(json.loads(message))
    return out


def test_the_demos_failures_ended_moments_before_their_reruns(demo, demo_logs):
    # The seed is dated relative to now: from failure to rerun is the wait, not a year. Each Logstore
    # line's __time__ is when the record was written; finishedTime, when the failed run ended.
    waits = []
    for path in sorted(demo_logs.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if not entry.get("message", "").startswith("{"):
                continue
            record = json.loads(entry["message"])
            if record.get("decision") == "rerun" and record.get("status") == "Failure" and record.get("finishedTime"):
                waits.append(entry["__time__"] - record["finishedTime"] / 1000)
    assert waits and all(0 < wait < 3600 for wait in waits), waits
