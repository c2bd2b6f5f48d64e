"""The quick-start demo runs end to end, shows both paths, and the queries it prints work."""

import json
import shutil
import subprocess

import pytest

from conftest import ROOT
from demo import CREDENTIALS

FIRST = "1000012345678"  # delivered twice
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
    assert [line.split()[0] for line in table][-2:] == ["delayed", "delayed"]
    assert "2 delayed invocations through the local FC InvokeFunction" in demo.stdout
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
    assert {str(r["instanceId"]) for r in records if r["success"]} == {FIRST, "1000012345690"}


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
