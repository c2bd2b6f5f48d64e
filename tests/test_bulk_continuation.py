"""A big selection outlives its request: the HTTP function hands the rest to asynchronous
invocations of the event function, which run as FC 3.0 runs them (separate instance processes,
an asynchronous queue, FC's retries: localcloud.fc.function), queued through the local FC OpenAPI
(localcloud.fc.server, InvokeFunction with ACS3 signatures), against the DataWorks emulator.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import replace

import pytest

import rerun_client
from conftest import (
    CREDS,
    FAKE_START,
    FUNCTION_DIR,
    NO_BACKOFF_SLEEP,
    PROJECT_ID,
    TASK_ID,
    function_env,
    make_function,
    reruns,
    sample,
)
from dwrerun import batches, bulk, continuation, handoff, http_function, pacing, rules, schema
from dwrerun.config import ConfigError, Settings
from dwrerun.continuation import Continuation
from dwrerun.dataworks import DataWorks
from dwrerun.function_compute import InvokeFunctionError
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Mode
from localcloud import sls
from localcloud.fc import Function, FunctionComputeApi
from localcloud.gateway import HttpGateway
from test_sls_queries import problems

KEY = "continuation-test-key-0123456789abcdef"
BIZDATE = 1_795_708_800_000  # 2026-11-27 00:00 +08:00
FIRST = 3_000_000_000_000
SELECTED = 2000
CRASH_AFTER_FIRST_RERUN = """
import os
from dwrerun import dataworks

_rerun = dataworks.DataWorks.rerun_task_instances


def _rerun_then_die(self, *args, **kwargs):
    answer = _rerun(self, *args, **kwargs)
    try:  # the first instance to get here (O_EXCL: one of them) dies right after DataWorks accepted
        os.close(os.open({mark!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return answer
    os._exit(17)


dataworks.DataWorks.rerun_task_instances = _rerun_then_die
"""


@pytest.fixture
def api():
    with FunctionComputeApi(credentials=[CREDS]) as server:
        yield server


def event_function(dataworks, api, tmp_path, setup: str = "", **env) -> Function:
    fn = Function(
        handler="index.handle_event",
        code_dir=str(FUNCTION_DIR),
        runtime="python3.12",
        timeout=30,
        function_name="dwrerun-event",
        env=function_env(dataworks, RERUN_SIGNING_KEY=KEY, FUNCTION_COMPUTE_ENDPOINT=api.url, **env),
        credentials=CREDS,
        logstore=str(tmp_path / "event.jsonl"),
        reserved_concurrency=3,
        async_task=True,  # template.yml: asyncInvokeConfig.asyncTask true
        instance_setup=NO_BACKOFF_SLEEP + setup,
    )
    api.register(fn)
    return fn


def records_by_instance(*logstores) -> dict[int, list[dict]]:
    """Every instance record in the local Logstore files, by instance, in the order written."""
    found: dict[int, list[dict]] = {}
    for path in logstores:
        for line in path.read_text().splitlines():
            message = json.loads(line)["message"]
            if message.startswith('{"kind":"instance"'):
                record = json.loads(message)
                found.setdefault(record["instanceId"], []).append(record)
    return found


def accepted_reruns(dataworks) -> Counter:
    ids = Counter()
    for call in dataworks.journal.calls("RerunTaskInstances"):
        if call.status == 200:
            ids.update(json.loads(call.params["Ids"]))
    return ids


def seed(dataworks, count: int) -> dict[int, str]:
    """`count` failures of one project and day; what the guards should decide for each."""
    expected = {}
    for n in range(count):
        instance_id = FIRST + n
        fields = {}
        if n % 97 == 13:
            fields, expected[instance_id] = {"rerun_mode": "AllDenied"}, "rerun-denied"
        elif n % 89 == 7:
            fields, expected[instance_id] = {"run_number": 4}, "cap-reached"
        else:
            expected[instance_id] = "eligible"
        dataworks.backend.add_instance(
            id=instance_id,
            task_id=TASK_ID + n,
            project_id=PROJECT_ID,
            bizdate=BIZDATE,
            finished_time=BIZDATE + 26 * 3_600_000,
            **fields,
        )
    return expected


def post(fn, body: dict) -> tuple[int, dict]:
    event = sample("fc-http-rerun-request.json")
    event["body"] = json.dumps(body)
    result = fn.invoke(json.dumps(event).encode()).result
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.separate_process
def test_a_2000_instance_selection_continues_and_every_instance_ends_rerun_once_or_skipped(dataworks, api, tmp_path):
    # GIVEN 2,000 failed instances of one day, some of which the guards hold back, and an event
    # function whose first instance dies right after its first RerunTaskInstances was accepted
    expected = seed(dataworks, SELECTED)
    setup = CRASH_AFTER_FIRST_RERUN.format(mark=str(tmp_path / "died"))
    env = {"RERUN_SIGNING_KEY": KEY, "FUNCTION_COMPUTE_ENDPOINT": api.url, "RERUN_READ_LOGS": "false"}
    with (
        event_function(dataworks, api, tmp_path, setup, RERUN_READ_LOGS="false") as event_fn,
        make_function(dataworks, tmp_path, handler="index.handle_http", **env) as http_fn,
    ):
        filter_ = {"ProjectId": PROJECT_ID, "Bizdate": "2026-11-27", "UseLatestConfig": True}
        # WHEN the operator plans, then applies with the plan's token
        status, planned = post(http_fn, {**filter_, "DryRun": True})
        assert status == 200 and planned["Selected"] == SELECTED
        status, applied = post(http_fn, {**filter_, "PlanToken": planned["PlanToken"]})
        # THEN the HTTP function did one part itself and handed the other nine on
        assert status == 202, applied
        assert applied["Continuing"] == 1800 and applied["Continuation"]["Parts"] == 9
        assert applied["Started"] + sum(n for r, n in applied["Counts"].items() if r != "eligible") == 200
        assert applied["Continuation"]["Query"] == f'message.originRequestId: "{applied["RequestId"]}"'
        # both queries the answer gives use only what the records' index defines
        assert problems(applied["Continuation"]["Query"]) == problems(applied["Continuation"]["CountQuery"]) == []
        event_fn.drain(timeout=180)
        logstores = (tmp_path / "event.jsonl", tmp_path / "logstore.jsonl")
        by_instance = records_by_instance(*logstores)
    # AND the instance that died was retried by FC, on a new instance. On a loaded machine FC may
    # retry other parts too (one that ran past its timeout, or answered RetryLater when throttled):
    # FC's own behaviour, which the exactly-once check below covers. (It asked for exactly one
    # retry before, and failed under load.)
    (crashed,) = [i.instance_id for i in event_fn.instances if i.ended == "crashed"]
    (died,) = [t for t in event_fn.async_invocations if any(a.instance_id == crashed for a in t.attempts)]
    assert died.attempts[-1].instance_id != crashed
    assert all(task.status == "Succeeded" for task in event_fn.async_invocations)
    # AND every instance was rerun exactly once, or skipped with the guard's reason
    reruns = accepted_reruns(dataworks)
    eligible = {i for i, reason in expected.items() if reason == "eligible"}
    assert set(reruns) == eligible and set(reruns.values()) == {1}
    plan_rid = planned["RequestId"]
    followed = {i: [r for r in rs if r["originRequestId"] == applied["RequestId"]] for i, rs in by_instance.items()}
    assert set(followed) == set(expected) and all(rs for rs in followed.values())
    for instance_id, reason in expected.items():
        final = followed[instance_id][-1]
        if reason == "eligible":
            # rerun here, or (the batch the dead instance sent) found already rerun by FC's retry
            assert (final["decision"], final["success"], final["reason"]) in (
                ("rerun", True, "eligible"),
                ("skip", None, "already-rerun"),
            ), final
        else:
            assert (final["decision"], final["reason"]) == ("skip", reason)
        assert all(r["reason"] != "deferred" for r in followed[instance_id])
    already = [i for i, rs in followed.items() if rs[-1]["reason"] == "already-rerun"]
    assert 1 <= len(already) <= 50  # the one batch DataWorks took before its invocation died
    assert all(dataworks.backend.instance(i).use_latest_config is True for i in eligible)
    planned_records = [r for rs in by_instance.values() for r in rs if r["decision"] == "dry-run"]
    assert len(planned_records) == len(eligible) and {r["originRequestId"] for r in planned_records} == {plan_rid}


@pytest.mark.separate_process
def test_a_part_whose_batch_keeps_failing_hands_it_to_its_next_hop(dataworks, api, tmp_path):
    # GIVEN a continuation part of 120 instances, and DataWorks answering its first six
    # RerunTaskInstances calls with 503 (every attempt one invocation makes at a batch)
    expected = seed(dataworks, 120)
    dataworks.faults.set("RerunTaskInstances", server_error=6)
    part = Continuation(
        origin_request_id="1-origin-request",
        part=1,
        hop=0,
        stalls=0,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=tuple((i, dataworks.backend.instance(i).run_number) for i in expected),
    )
    with event_function(dataworks, api, tmp_path, RERUN_READ_LOGS="false") as event_fn:
        first = event_fn.invoke_async(part.to_payload(KEY))
        event_fn.drain(timeout=120)
        by_instance = records_by_instance(tmp_path / "event.jsonl")
    # THEN the part ended normally (no FC retry) and its next hop, queued as its own task, did the rest
    assert first.status == "Succeeded" and len(first.attempts) == 1
    hops = [task.task_id for task in event_fn.async_invocations]
    assert hops[1:] == ["dwrerun-bulk-1-origin-request-1-1"]
    reruns = accepted_reruns(dataworks)
    assert set(reruns) == {i for i, r in expected.items() if r == "eligible"} and set(reruns.values()) == {1}
    assert {i: rs[-1]["reason"] for i, rs in by_instance.items()} == expected
    assert all(len(rs) == 1 for rs in by_instance.values())  # no deferred record: the next hop wrote theirs


@pytest.mark.separate_process
def test_the_client_plans_applies_and_follows_the_continuation_to_its_end(dataworks, api, tmp_path):
    # GIVEN 600 failures: ten parts of 60, nine of which continue in the event function
    expected = seed(dataworks, 600)
    env = {"RERUN_SIGNING_KEY": KEY, "FUNCTION_COMPUTE_ENDPOINT": api.url, "RERUN_READ_LOGS": "false"}
    plan_file = tmp_path / "plan.json"
    with (
        event_function(dataworks, api, tmp_path, RERUN_READ_LOGS="false"),
        make_function(dataworks, tmp_path, handler="index.handle_http", **env) as http_fn,
        HttpGateway(http_fn) as gateway,
    ):
        # WHEN the operator plans, then applies the saved plan
        out, err = io.StringIO(), io.StringIO()
        argv = [gateway.url, "--project-id", str(PROJECT_ID), "--bizdate", "2026-11-27", "--plan", str(plan_file)]
        assert rerun_client.main(argv, out=out, environ={}) == 0
        saved = json.loads(plan_file.read_text())
        assert saved["selected"] == 600 and saved["request"] == {"ProjectId": PROJECT_ID, "Bizdate": "2026-11-27"}
        assert "selected 600 failed instance(s)" in out.getvalue() and f"--apply {plan_file}" in out.getvalue()
        out = io.StringIO()
        argv = [gateway.url, "--apply", str(plan_file), "--logstore", str(tmp_path)]
        assert rerun_client.main(argv, out=out, environ={}, err=err) == 0
    # THEN it followed the records of the request and its continuation until all 600 had one
    progress = err.getvalue().splitlines()
    assert progress[-1].startswith("following ") and "600/600 instances done" in progress[-1]
    assert "540 continue asynchronously" in out.getvalue()
    summary = out.getvalue().split("the request and its continuation together:")[1].split()
    assert dict(zip(summary[::2], map(int, summary[1::2]), strict=True)) == Counter(expected.values())
    assert set(accepted_reruns(dataworks).values()) == {1}
    # AND the answer's SLS query counts the same, run by the local SLS over the local Logstore
    request_id = progress[-1].split()[1].rstrip(":")
    count_query = (
        f'message.originRequestId: "{request_id}" and message.kind: instance '  # noqa: S608 (the local SLS)
        "| select reason, count(*) as instances from log group by reason"
    )
    rows = sls.query(sls.read_logstore(tmp_path), count_query, sls.Index(schema.json_key_indices()))
    assert {row["reason"]: row["instances"] for row in rows} == Counter(expected.values())


# --- the event function's side of a part, in this process (handoff.continue_) ----------------------
#
# The tests above run parts in instance processes; these call handoff.continue_ itself with a
# Continuation, a DataWorks client of the emulator and a fake of FC's InvokeFunction, on a clock
# of their own: time moves only when the code waits (pacing.sleep), so a deadline is exact.

ORIGIN = "1-origin-request"
PART_REQUEST = "2-part-request"
NOW = FAKE_START  # where the fake clock starts
PART_SETTINGS = Settings(
    read_qps=1000.0, write_qps=1000.0, read_timeout=2.0, read_logs=False, backoff_base=0, signing_key=KEY
)
# What a batch needs before the deadline (batches.work): a call's minimum, a write slot, a read
# timeout; a part whose job deadline (the invocation's less HAND_ON_RESERVE) leaves less hands on.
BATCH_SLACK = 0.5 + 1 / 1000.0 + 2.0


@pytest.fixture
def clock(fake_clock, mocker):
    mocker.patch.object(pacing, "uniform", lambda low, high: high)  # the backoff's longest wait
    return fake_clock


class FakeFunctions:
    """FC's InvokeFunction as bulk hands work on with it: `functions()` makes the client; each call
    is kept, and answered with the next of `errors` (raised) until they run out."""

    def __init__(self, *errors: Exception, clock=None, seconds: float = 0.0):
        self.errors = list(errors)
        self.calls: list[dict] = []
        self.made = 0
        self.clock, self.seconds = clock, seconds  # each call takes this long on the fake clock

    def __call__(self):
        self.made += 1
        return self

    def invoke_async(self, function_name, payload, *, delay, task_id, timeout):
        self.calls.append(
            {"function": function_name, "payload": payload, "delay": delay, "task_id": task_id, "timeout": timeout}
        )
        if self.clock is not None:
            self.clock.advance(self.seconds)
        if self.errors:
            raise self.errors.pop(0)
        return f"fc-request-{len(self.calls)}"


def fc_error(code: str, transient: bool, **flags) -> InvokeFunctionError:
    return InvokeFunctionError(code, f"{code} said no", transient=transient, **flags)


def seed_part(dataworks, *run_numbers: int) -> None:
    for n, run_number in enumerate(run_numbers):
        dataworks.backend.add_instance(
            id=FIRST + n,
            task_id=TASK_ID + n,
            project_id=PROJECT_ID,
            bizdate=BIZDATE,
            run_number=run_number,
            task_name=f"node_{n}",
            finished_time=BIZDATE + 26 * 3_600_000,
        )


def a_part(*instances: tuple[int, int], **changes) -> Continuation:
    values = dict(
        origin_request_id=ORIGIN,
        part=3,
        hop=2,
        stalls=0,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=instances,
        comment="after the outage",
    )
    values.update(changes)
    return Continuation(**values)


def run_part(dataworks, capsys, part, *, settings=PART_SETTINGS, functions=None, deadline_in=60.0, rules=None,
             rules_error=None):  # fmt: skip
    """handoff.continue_ on `part`, in an invocation `deadline_in` seconds from its end:
    (the summary it returned, every record it wrote, in order)."""
    client = DataWorks(CREDS, dataworks.endpoint, "http", "cn-hangzhou", Settings())
    invocation = Invocation(PART_REQUEST, "dwrerun-event", "cn-hangzhou", pacing.clock() + deadline_in, timeout=60)
    capsys.readouterr()
    summary = handoff.continue_(part, settings, rules, rules_error, invocation, lambda: client, functions)
    return summary, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def bare(instance_id: int, reason: str, message: str, error_code=None, listed_as: int | None = None) -> dict:
    """The whole record bulk writes for an instance no rerun.run saw; `listed_as`: its index in
    seed_part, when the record carries what ListTaskInstances said of it."""
    record = {
        "kind": "instance",
        "instanceId": instance_id,
        "decision": "skip",
        "success": None,
        "message": message,
        "reason": reason,
        "trigger": "http",
        "requestId": PART_REQUEST,
        "eventId": None,
        "runNumber": None,
        "projectId": None,
        "taskId": None,
        "taskName": None,
        "projectEnv": None,
        "status": None,
        "finishedTime": None,
        "errorCode": error_code,
        "dataworksRequestId": None,
        "comment": "after the outage",
        "attempts": 0,
        "lookupMs": None,
        "rerunMs": None,
        "rule": None,
        "failureClass": None,
        "matchedLine": None,
        "delaySeconds": None,
        "dueAt": None,
        "asyncTaskId": None,
        "scheduleErrorCode": None,
        "trusted": None,
        "originRequestId": ORIGIN,
        "useLatestConfig": None,
    }
    if listed_as is not None:
        record.update(
            runNumber=1,
            projectId=PROJECT_ID,
            taskId=TASK_ID + listed_as,
            taskName=f"node_{listed_as}",
            projectEnv="Prod",
            status="Failure",
            finishedTime=BIZDATE + 26 * 3_600_000,
        )
    return record


def summary(instances=0, rerun=0, skipped=0, dry_run=0, outcome="done", dry_run_mode=False, **extra) -> dict:
    return {
        "kind": "summary",
        "trigger": "http",
        "requestId": PART_REQUEST,
        "instances": instances,
        "rerun": rerun,
        "rerunSucceeded": rerun,
        "rerunFailed": 0,
        "skipped": skipped,
        "dryRun": dry_run,
        "scheduled": 0,
        "originRequestId": ORIGIN,
        "dryRunMode": dry_run_mode,
        "outcome": outcome,
        **extra,
    }


def without_duration(record: dict) -> dict:
    assert isinstance(record.pop("durationMs"), float)
    return record


def test_a_part_reruns_what_still_failed_and_records_what_dataworks_no_longer_lists(dataworks, capsys, clock):
    # GIVEN a part of four: a failure, one past the cap (the request said Force), one DataWorks no
    # longer lists, and one rerun since the selection (its run moved on)
    seed_part(dataworks, 1, 4, 1, 2)
    part = a_part((FIRST, 1), (FIRST + 1, 4), (FIRST + 5, 1), (FIRST + 3, 1), force=True, use_latest_config=True)
    functions = FakeFunctions()
    # WHEN the event function runs it
    returned, written = run_part(dataworks, capsys, part, functions=functions)
    # THEN the one DataWorks no longer lists is recorded first, the rest as rerun.run decided them
    gone = bare(
        FIRST + 5,
        "lookup-failed",
        "ListTaskInstances no longer lists it (deleted, or no longer in this project, business date and "
        "environment): not rerun",
    )
    assert written[0] == gone
    decided = {r["instanceId"]: (r["decision"], r["reason"], r["success"]) for r in written[1:-1]}
    assert decided == {
        FIRST: ("rerun", "eligible", True),
        FIRST + 1: ("rerun", "eligible", True),
        FIRST + 3: ("skip", "already-rerun", None),
    }
    for record in written[:-1]:
        assert (record["trigger"], record["requestId"], record["originRequestId"], record["comment"]) == (
            "http",
            PART_REQUEST,
            ORIGIN,
            "after the outage",
        )
    # one ListTaskInstances call reread them, by id, in the part's project, business date and environment
    (listing,) = dataworks.journal.calls("ListTaskInstances")
    assert listing.params == {
        "ProjectId": str(PROJECT_ID),
        "Bizdate": str(BIZDATE),
        "ProjectEnv": "Prod",
        "Ids": json.dumps([FIRST, FIRST + 1, FIRST + 5, FIRST + 3], separators=(",", ":")),
        "PageNumber": "1",
        "PageSize": "500",
    }
    # one RerunTaskInstances call, saying whose request it continues, with the latest configuration
    calls = [c for c in dataworks.journal.calls("RerunTaskInstances") if c.status == 200]
    assert [json.loads(c.params["Ids"]) for c in calls] == [[FIRST], [FIRST + 1]]  # one call per next run
    assert [c.params["Comment"] for c in calls] == [
        f"after the outage [dwrerun-event: bulk rerun by filter over HTTP, FC request {ORIGIN} "
        f"(continued in {PART_REQUEST}), run {run}, with the latest configuration]"
        for run in (2, 5)
    ]
    assert {c.params["UseLatestConfig"] for c in calls} == {"True"}
    # AND nothing is handed on; the summary closes the records and is what the part returns
    assert functions.made == 0 and functions.calls == []
    assert returned == written[-1]
    assert without_duration(returned) == summary(instances=4, rerun=2, skipped=2)


def test_a_part_with_a_bad_rules_file_records_each_instance_config_error_and_calls_nothing(dataworks, capsys, clock):
    part = a_part((FIRST, 1), (FIRST + 1, 1))

    def no_dataworks():
        raise AssertionError("a bad rules file must not reach DataWorks")

    invocation = Invocation(PART_REQUEST, "dwrerun-event", "cn-hangzhou", NOW + 60, timeout=60)
    capsys.readouterr()
    returned = handoff.continue_(
        part, PART_SETTINGS, None, ValueError("rules.json: line 3 is wrong"), invocation, no_dataworks, None
    )
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert written[:-1] == [bare(i, "config-error", "rules.json: line 3 is wrong") for i in (FIRST, FIRST + 1)]
    assert returned == written[-1]
    assert without_duration(returned) == summary(instances=2, skipped=2)
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize("code", ["Throttling.Api.Risk", "Throttling.Resource"])
def test_a_used_up_quota_on_the_reread_records_every_instance_and_is_not_retried(dataworks, capsys, clock, code):
    seed_part(dataworks, 1, 1)
    dataworks.faults.set("ListTaskInstances", throttle=True, throttle_code=code)
    limit = {"Throttling.Api.Risk": "the daily limit of DataWorks OpenAPI calls",
             "Throttling.Resource": "the DataWorks edition's quota of OpenAPI calls"}[code]  # fmt: skip
    returned, written = run_part(dataworks, capsys, a_part((FIRST, 1), (FIRST + 1, 1)), functions=FakeFunctions())
    note = (
        f"not rerun: {limit} is used up ({code}); it does not clear within minutes, so this is not retried. "
        "Send the filter again once the limit clears"
    )
    assert written[:-1] == [bare(i, "quota-exhausted", note, code) for i in (FIRST, FIRST + 1)]
    assert returned == written[-1]
    assert without_duration(returned) == summary(instances=2, skipped=2, outcome="quota-exhausted")


def test_a_reread_that_keeps_failing_writes_a_retry_summary_and_asks_fc_to_retry_the_part(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    dataworks.faults.set("ListTaskInstances", server_error=1000)
    with pytest.raises(handoff.ContinueLater) as raised:
        run_part(dataworks, capsys, a_part((FIRST, 1)), functions=FakeFunctions())
    assert str(raised.value) == "ListTaskInstances kept failing (ServiceUnavailable): FC retries the continuation"
    (written,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the part's time is its backoff waits, on the clock's seam: in milliseconds
    assert clock.slept and written["durationMs"] == pytest.approx(sum(clock.slept) * 1000)
    assert without_duration(written) == summary(outcome="retry", error="ServiceUnavailable")
    assert reruns(dataworks) == []


def test_a_part_with_no_time_left_to_reread_asks_fc_to_retry_it(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    with pytest.raises(handoff.ContinueLater) as raised:
        # the job's deadline (the invocation's less HAND_ON_RESERVE) is 0.4 s away: no call starts
        run_part(dataworks, capsys, a_part((FIRST, 1)), functions=FakeFunctions(), deadline_in=3.4)
    assert str(raised.value) == "no time left to reread the continuation's instances"
    (written,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert without_duration(written) == summary(outcome="retry", error="DeadlineReached")
    assert len(dataworks.journal) == 0


def handed(functions: FakeFunctions) -> list[Continuation]:
    return [continuation.parse(c["payload"], KEY) for c in functions.calls]


def test_a_part_without_time_for_a_batch_hands_it_to_its_next_hop(dataworks, capsys, clock):
    # GIVEN a part whose invocation has time to reread its instances but not for a batch: its job
    # deadline (the invocation's less HAND_ON_RESERVE) is 2 s away, a batch needs BATCH_SLACK
    seed_part(dataworks, 1, 1)
    part = a_part((FIRST, 1), (FIRST + 1, 1), stalls=1, force=True, ignore_rules=True, use_latest_config=False)
    functions = FakeFunctions()
    returned, written = run_part(dataworks, capsys, part, functions=functions, deadline_in=3.0 + 2.0)
    assert 2.0 < BATCH_SLACK
    # THEN nothing is rerun, and the same instances go on as the part's next hop, one stall more
    assert reruns(dataworks) == []
    assert functions.calls == [
        {
            "function": "dwrerun-event",
            "payload": functions.calls[0]["payload"],
            "delay": 0,
            "task_id": f"dwrerun-bulk-{ORIGIN}-3-3",
            "timeout": 2.0,  # the read timeout: the invocation has 5 s left
        }
    ]
    assert handed(functions) == [
        a_part((FIRST, 1), (FIRST + 1, 1), hop=3, stalls=2, force=True, ignore_rules=True, use_latest_config=False)
    ]
    # no record for the instances handed on (their next hop writes it), only the summary
    assert written == [returned]
    assert without_duration(returned) == summary()


def test_a_part_that_finished_some_instances_hands_the_rest_on_with_no_stall(dataworks, capsys, clock):
    # GIVEN a part at its second stall that, this time, records one instance (DataWorks no longer
    # lists it) and has no time for the other's batch
    seed_part(dataworks, 1)
    part = a_part((FIRST, 1), (FIRST + 7, 1), stalls=2)
    functions = FakeFunctions()
    returned, written = run_part(dataworks, capsys, part, functions=functions, deadline_in=5.0)
    # THEN it was progress: the next hop starts with no stall, and carries only the unfinished one
    assert handed(functions) == [a_part((FIRST, 1), hop=3, stalls=0)]
    assert [r["reason"] for r in written[:-1]] == ["lookup-failed"]
    assert without_duration(returned) == summary(instances=1, skipped=1)


def test_the_third_part_in_a_row_that_finishes_nothing_stops_the_chain_and_records_why(dataworks, capsys, clock):
    seed_part(dataworks, 1, 1)
    part = a_part((FIRST, 1), (FIRST + 1, 1), stalls=handoff.MAX_STALLS - 1)
    functions = FakeFunctions()
    returned, written = run_part(dataworks, capsys, part, functions=functions, deadline_in=5.0)
    assert functions.calls == []
    message = (
        "not rerun: 3 continuations in a row finished no instance (the time ran out); send the filter again once "
        "DataWorks answers"
    )
    assert written[:-1] == [bare(FIRST + n, "deferred", message, listed_as=n) for n in (0, 1)]
    assert returned == written[-1]
    assert without_duration(returned) == summary(instances=2, skipped=2)


def test_a_chain_stopped_by_a_dataworks_error_names_it(dataworks, capsys, clock):
    # GIVEN DataWorks answering every RerunTaskInstances with 503, at the part's last stall
    seed_part(dataworks, 1)
    dataworks.faults.set("RerunTaskInstances", server_error=1000)
    functions = FakeFunctions()
    returned, written = run_part(
        dataworks, capsys, a_part((FIRST, 1), stalls=handoff.MAX_STALLS - 1), functions=functions
    )
    message = (
        "not rerun: 3 continuations in a row finished no instance (ServiceUnavailable); send the filter again once "
        "DataWorks answers"
    )
    assert written[:-1] == [bare(FIRST, "deferred", message, "ServiceUnavailable", listed_as=0)]
    assert functions.calls == []
    assert without_duration(returned) == summary(instances=1, skipped=1)


def test_a_part_whose_next_hop_fc_refuses_records_its_instances_deferred(dataworks, capsys, clock):
    # GIVEN a part of three, one of which DataWorks no longer lists, with no time for a batch
    seed_part(dataworks, 1, 1)
    functions = FakeFunctions(fc_error("AccessDenied", transient=False))
    part = a_part((FIRST, 1), (FIRST + 7, 1), (FIRST + 1, 1))
    returned, written = run_part(dataworks, capsys, part, functions=functions, deadline_in=5.0)
    # THEN FC refusing its next hop for good leaves the other two deferred, saying so
    message = (
        f"not rerun: handing it to a continuation (dwrerun-bulk-{ORIGIN}-3-3) failed: InvokeFunction AccessDenied: "
        "AccessDenied said no. Send the same filter again to pick it up"
    )
    assert len(functions.calls) == 1
    assert [r["reason"] for r in written[:1]] == ["lookup-failed"]
    assert written[1:-1] == [bare(FIRST + n, "deferred", message, "AccessDenied", listed_as=n) for n in (0, 1)]
    assert returned == written[-1]
    assert without_duration(returned) == summary(instances=3, skipped=3)


def test_a_part_whose_hand_on_keeps_failing_transiently_asks_fc_to_retry_it(dataworks, capsys, clock):
    seed_part(dataworks, 1, 1)
    functions = FakeFunctions(*[fc_error("ServiceUnavailable", transient=True) for _ in range(10)])
    # one instance DataWorks no longer lists is recorded before the hand-on fails
    part = a_part((FIRST, 1), (FIRST + 1, 1), (FIRST + 9, 1))
    with pytest.raises(handoff.ContinueLater) as raised:
        run_part(dataworks, capsys, part, functions=functions, deadline_in=5.0)
    assert str(raised.value) == "InvokeFunction kept failing (ServiceUnavailable): FC retries the continuation"
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["reason"] for r in written[:-1]] == ["lookup-failed"]
    assert without_duration(written[-1]) == summary(instances=1, skipped=1, outcome="retry", error="ServiceUnavailable")


def test_a_next_hop_fc_already_has_counts_as_handed_on(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    functions = FakeFunctions(fc_error("TaskAlreadyExist", transient=False, duplicate=True))
    returned, written = run_part(dataworks, capsys, a_part((FIRST, 1)), functions=functions, deadline_in=5.0)
    assert len(functions.calls) == 1 and written == [returned]
    assert without_duration(returned) == summary()


def test_a_used_up_quota_on_a_rerun_records_the_rest_and_hands_nothing_on(dataworks, capsys, clock):
    # GIVEN batches of one, and DataWorks' daily limit used up at the first rerun
    seed_part(dataworks, 1, 1)
    dataworks.faults.set("RerunTaskInstances", throttle=True, throttle_code="Throttling.Api.Risk")
    settings = replace(PART_SETTINGS, chunk_size=1)
    functions = FakeFunctions()
    returned, written = run_part(dataworks, capsys, a_part((FIRST, 1), (FIRST + 1, 1)), settings=settings,
                                 functions=functions)  # fmt: skip
    note = (
        "not rerun: the daily limit of DataWorks OpenAPI calls is used up (Throttling.Api.Risk); it does not clear "
        "within minutes, so this is not retried. Send the filter again once the limit clears"
    )
    assert [(r["instanceId"], r["reason"], r["errorCode"]) for r in written[:-1]] == [
        (FIRST, "quota-exhausted", "Throttling.Api.Risk"),
        (FIRST + 1, "quota-exhausted", "Throttling.Api.Risk"),
    ]
    assert written[-2] == bare(FIRST + 1, "quota-exhausted", note, "Throttling.Api.Risk", listed_as=1)
    assert functions.calls == []
    assert without_duration(returned) == summary(instances=2, skipped=2, outcome="quota-exhausted")


@pytest.mark.parametrize("ignore_rules", [False, True])
def test_a_part_applies_the_failure_rules_unless_the_request_said_ignore_rules(dataworks, capsys, clock, ignore_rules):
    # GIVEN a failure whose log says a rerun cannot fix it, and one whose log says nothing known
    seed_part(dataworks, 1, 1)
    log = (FUNCTION_DIR.parent / "tests" / "logs" / "odps_sql_table_not_found.log").read_text()
    dataworks.backend.add_instance(id=FIRST, task_id=TASK_ID, project_id=PROJECT_ID, bizdate=BIZDATE,
                                   task_type="ODPS_SQL", task_name="node_0", log=log,
                                   finished_time=BIZDATE + 26 * 3_600_000)  # fmt: skip
    settings = replace(PART_SETTINGS, read_logs=True)
    part = a_part((FIRST, 1), (FIRST + 1, 1), ignore_rules=ignore_rules)
    returned, written = run_part(dataworks, capsys, part, settings=settings, rules=rules.load())
    reasons = {r["instanceId"]: (r["decision"], r["reason"], r["rule"]) for r in written[:-1]}
    if ignore_rules:
        assert reasons == {FIRST: ("rerun", "eligible", None), FIRST + 1: ("rerun", "eligible", None)}
    else:
        assert reasons == {
            FIRST: ("skip", "not-retryable", "maxcompute-table-not-found"),
            FIRST + 1: ("rerun", "eligible", "default"),
        }


def test_a_part_under_the_dry_run_setting_decides_and_reruns_nothing(dataworks, capsys, clock):
    seed_part(dataworks, 1, 1)
    settings = replace(PART_SETTINGS, dry_run=True)
    returned, written = run_part(dataworks, capsys, a_part((FIRST, 1), (FIRST + 1, 1)), settings=settings)
    assert [(r["decision"], r["reason"]) for r in written[:-1]] == [("dry-run", "dry-run")] * 2
    assert reruns(dataworks) == []
    assert without_duration(returned) == summary(instances=2, dry_run=2, dry_run_mode=True)


# --- handing a part on: handoff.invoke, FC's InvokeFunction with retries -----------------------------


def invoke(functions, deadline_in: float, settings=PART_SETTINGS):
    """handoff.invoke of a part from the HTTP function, `deadline_in` seconds before its invocation ends."""
    job = Job(Mode.FILTER, "1-http", "dwrerun-http", settings, NOW + deadline_in - batches.HAND_ON_RESERVE)
    invocation = Invocation("1-http", "dwrerun-http", "cn-hangzhou", NOW + deadline_in, timeout=60)
    handoff.invoke(job, functions, a_part((FIRST, 1), hop=0), invocation)


def test_a_part_is_queued_once_as_an_async_task_of_the_event_function(clock):
    functions = FakeFunctions()
    invoke(functions, deadline_in=1.5)
    (call_,) = functions.calls
    assert call_ == {
        "function": "dwrerun-event",  # the HTTP function hands on to the event function
        "payload": a_part((FIRST, 1), hop=0).to_payload(KEY),
        "delay": 0,
        "task_id": f"dwrerun-bulk-{ORIGIN}-3-0",
        "timeout": 1.5,  # what is left of the invocation, less than the read timeout
    }
    assert clock.slept == []


def test_handing_on_with_no_fc_client_is_a_configuration_error_that_is_not_retried(clock):
    with pytest.raises(InvokeFunctionError) as raised:
        invoke(None, deadline_in=60)
    assert (raised.value.code, raised.value.message, raised.value.transient) == (
        "ConfigError",
        "no FC client to hand work on with",
        False,
    )

    def no_endpoint():
        raise ConfigError("no FC endpoint: set FUNCTION_COMPUTE_ENDPOINT")

    with pytest.raises(InvokeFunctionError) as raised:
        invoke(no_endpoint, deadline_in=60)
    assert (raised.value.code, raised.value.message, raised.value.transient) == (
        "ConfigError",
        "no FC endpoint: set FUNCTION_COMPUTE_ENDPOINT",
        False,
    )


@pytest.mark.parametrize(("left", "calls"), [(0.49, 0), (0.5, 1)])
def test_a_hand_on_starts_only_with_half_a_second_left(clock, left, calls):
    functions = FakeFunctions()
    if calls:
        invoke(functions, deadline_in=left)
    else:
        with pytest.raises(InvokeFunctionError) as raised:
            invoke(functions, deadline_in=left)
        assert (raised.value.code, raised.value.message, raised.value.transient) == (
            "DeadlineReached",
            "no time left to hand the rest on",
            True,
        )
    assert len(functions.calls) == calls


def test_a_transient_refusal_is_retried_after_a_backoff_and_a_duplicate_means_queued(clock):
    # GIVEN FC failing twice (the second time asking for 3 s), then saying the task id is taken:
    # an earlier attempt got through after all
    functions = FakeFunctions(
        fc_error("ServiceUnavailable", transient=True),
        fc_error("Throttling", transient=True, retry_after=3.0),
        fc_error("TaskAlreadyExist", transient=False, duplicate=True),
    )
    invoke(functions, deadline_in=60)
    assert len(functions.calls) == 3 and functions.made == 3
    assert clock.slept == [0.2, 3.0]  # the backoff's first wait (its longest), then FC's retry-after
    assert [c["timeout"] for c in functions.calls] == [2.0, 2.0, 2.0]


def test_a_hand_on_gives_up_after_max_attempts(clock):
    functions = FakeFunctions(*[fc_error("ServiceUnavailable", transient=True) for _ in range(10)])
    with pytest.raises(InvokeFunctionError) as raised:
        invoke(functions, deadline_in=600)
    assert raised.value.code == "ServiceUnavailable"
    assert len(functions.calls) == pacing.MAX_ATTEMPTS == 6
    assert clock.slept == [0.2, 0.4, 0.8, 1.6, 3.2]


def test_a_hand_on_refused_for_good_is_not_retried(clock):
    functions = FakeFunctions(fc_error("AccessDenied", transient=False), fc_error("AccessDenied", transient=False))
    with pytest.raises(InvokeFunctionError) as raised:
        invoke(functions, deadline_in=60)
    assert raised.value.code == "AccessDenied" and len(functions.calls) == 1 and clock.slept == []


@pytest.mark.parametrize(("deadline_in", "calls"), [(1.5, 2), (1.25, 1)])
def test_a_hand_on_is_not_retried_when_the_wait_would_pass_the_deadline(clock, deadline_in, calls):
    # FC asks for 1 s each time: a retry needs that wait and 0.5 s for its call, 1.5 s from now
    functions = FakeFunctions(*[fc_error("Throttling", transient=True, retry_after=1.0) for _ in range(3)])
    with pytest.raises(InvokeFunctionError) as raised:
        invoke(functions, deadline_in=deadline_in)
    # FC's own refusal is what stops it, without a wait that could not end in a call
    assert raised.value.code == "Throttling"
    assert len(functions.calls) == calls and clock.slept == [1.0] * (calls - 1)


def test_a_part_without_time_to_read_a_log_hands_the_instance_on_never_reruns_it_unchecked(dataworks, capsys, clock):
    # GIVEN a part with time for its batch but not for the failed run's log its rules need (3 s)
    seed_part(dataworks, 1)
    functions = FakeFunctions()
    settings = replace(PART_SETTINGS, read_logs=True)
    returned, written = run_part(
        dataworks, capsys, a_part((FIRST, 1)), settings=settings, rules=rules.load(), functions=functions,
        deadline_in=6.0,
    )  # fmt: skip
    # THEN it is not rerun: its next hop, with time for the log, decides it; nothing was read again
    # or retried here first (only a new invocation has the time)
    assert reruns(dataworks) == []
    assert handed(functions) == [a_part((FIRST, 1), hop=3, stalls=1)]
    assert written == [returned]
    assert [e.action for e in dataworks.journal] == ["ListTaskInstances"]


def test_the_third_part_in_a_row_without_time_for_a_log_gives_up_naming_why(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    settings = replace(PART_SETTINGS, read_logs=True)
    part = a_part((FIRST, 1), stalls=handoff.MAX_STALLS - 1)
    returned, written = run_part(dataworks, capsys, part, settings=settings, rules=rules.load(),
                                 functions=FakeFunctions(), deadline_in=6.0)  # fmt: skip
    message = (
        "not rerun: 3 continuations in a row finished no instance (DeadlineReached); send the filter again once "
        "DataWorks answers"
    )
    assert written[:-1] == [bare(FIRST, "deferred", message, "DeadlineReached", listed_as=0)]
    assert reruns(dataworks) == []


# --- the HTTP function's side, called directly: bulk.plan_or_apply on the same clock ---------------

FILTER = bulk.selection.Filter(project_id=PROJECT_ID, bizdate=BIZDATE, project_env="Prod")


def plan_or_apply(dataworks, capsys, request, *, settings=PART_SETTINGS, functions=None, deadline_in=60.0,
                  rules=None):  # fmt: skip
    """bulk.plan_or_apply of `request` in an HTTP invocation (request id ORIGIN) `deadline_in`
    seconds from its end, answered as the HTTP function answers it: (the answer, every record it wrote, in
    order)."""
    client = DataWorks(CREDS, dataworks.endpoint, "http", "cn-hangzhou", Settings())
    invocation = Invocation(ORIGIN, "dwrerun-http", "cn-hangzhou", pacing.clock() + deadline_in, timeout=60)
    capsys.readouterr()
    answer = http_function.filter_answer(bulk.plan_or_apply(request, settings, rules, invocation, client, functions))
    return answer, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_part_of_one_instance_costs_its_share_of_a_rerun_call_and_its_log_read_only_when_read():
    settings = Settings(read_qps=4.0, write_qps=2.0, chunk_size=50)
    assert batches.per_instance_seconds(settings, reads_logs=False) == 1 / (50 * 2.0)  # no log read: no read share
    assert batches.per_instance_seconds(settings, reads_logs=True) == 1 / 4.0 + 1 / (50 * 2.0)


def test_an_apply_with_no_time_left_for_a_batch_hands_every_part_on_in_order_each_a_fresh_chain(
    dataworks, capsys, clock
):
    # GIVEN two failures, and QPS limits that make an instance cost 1 s (batches of one at 1
    # write/s): the invocation has 4 s left, 1 s once HAND_ON_RESERVE is kept, and a part may use
    # SLICE_SHARE of it (0.6 s): no time for one instance of its own
    seed_part(dataworks, 1, 1)
    settings = replace(PART_SETTINGS, chunk_size=1, write_qps=1.0)
    assert batches.per_instance_seconds(settings, reads_logs=False) == 1.0
    functions = FakeFunctions()
    request = bulk.Request(filter=FILTER, comment="after the outage")
    answer, written = plan_or_apply(dataworks, capsys, request, settings=settings, functions=functions, deadline_in=4.0)
    # THEN nothing is rerun here: each instance goes on as its own part (a part is a tenth of the
    # selection, at least a batch), in the selection's order, at hop 0 with no stall
    assert reruns(dataworks) == []
    assert handed(functions) == [
        a_part((FIRST, 1), part=1, hop=0, stalls=0),
        a_part((FIRST + 1, 1), part=2, hop=0, stalls=0),
    ]
    # the whole 202: what continues, and where the operator follows it (the event function's
    # name, its async task ids, the SLS queries over the HTTP request's id)
    assert (answer.status, answer.body) == (
        202,
        {
            "RequestId": ORIGIN,
            "DryRun": False,
            "Filter": {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"},
            "Selected": 2,
            "Started": 0,
            "Counts": {},
            "Decisions": {},
            "NotRetryable": {},
            "SuccessInfo": {},
            "Skipped": {},
            "Continuing": 2,
            "Continuation": {
                "Function": "dwrerun-event",
                "Parts": 2,
                "AsyncTaskIds": [f"dwrerun-bulk-{ORIGIN}-1-0", f"dwrerun-bulk-{ORIGIN}-2-0"],
                "Query": f'message.originRequestId: "{ORIGIN}"',
                "CountQuery": (  # SLS query text the operator pastes, not SQL run here
                    f'message.originRequestId: "{ORIGIN}" and message.kind: instance '  # noqa: S608
                    "| select reason, count(*) as instances from log group by reason"
                ),
            },
        },
    )
    # their parts write the instances' records; this invocation's summary says it is done
    (written_summary,) = written
    assert without_duration(written_summary) == {**summary(), "requestId": ORIGIN}


def test_parts_handed_on_split_the_selection_each_instance_in_exactly_one(dataworks, capsys, clock):
    # GIVEN four failures, batches of two at half a write a second (an instance costs 1 s), and no
    # time for one of them here: every instance goes on, in parts of a batch each, none in two
    seed_part(dataworks, 1, 1, 1, 1)
    settings = replace(PART_SETTINGS, chunk_size=2, write_qps=0.5)
    functions = FakeFunctions()
    request = bulk.Request(filter=FILTER, comment="after the outage")
    answer, _ = plan_or_apply(dataworks, capsys, request, settings=settings, functions=functions, deadline_in=4.0)
    assert handed(functions) == [
        a_part((FIRST, 1), (FIRST + 1, 1), part=1, hop=0, stalls=0),
        a_part((FIRST + 2, 1), (FIRST + 3, 1), part=2, hop=0, stalls=0),
    ]
    assert (answer.status, answer.body["Continuing"], answer.body["Continuation"]["Parts"]) == (202, 4, 2)


def test_a_dry_run_out_of_time_for_the_logs_decides_the_rest_by_the_guards_and_says_so(dataworks, capsys, clock):
    # GIVEN a dry run whose job deadline (the invocation's less HAND_ON_RESERVE) is 2 s away:
    # less than a batch needs (BATCH_SLACK), so no log is read
    # (one failure, and one past RERUN_MAX_RERUNS that the guards skip whatever its log says)
    seed_part(dataworks, 1, 4)
    settings = replace(PART_SETTINGS, read_logs=True)
    request = bulk.Request(filter=FILTER, comment="after the outage", dry_run=True)
    answer, written = plan_or_apply(dataworks, capsys, request, settings=settings, deadline_in=5.0,
                                    rules=rules.load())  # fmt: skip
    # THEN the failure is still decided, its message the real decision's with a note that its log
    # was not read; the guards' skip needs no log and gets no note
    assert dataworks.journal.count(action="GetTaskInstanceLog") == 0
    decided = {r["instanceId"]: (r["decision"], r["reason"], r["message"]) for r in written[:-1]}
    assert decided == {
        FIRST: (
            "dry-run",
            "dry-run",
            "dry run: run 1 Failure: rerun as run 2; its failed run's log was not read: this dry run ran out of "
            "time (the real run reads it)",
        ),
        FIRST + 1: ("skip", "cap-reached", decided[FIRST + 1][2]),
    }
    assert "log was not read" not in decided[FIRST + 1][2]
    assert (answer.status, answer.body["LogsNotRead"], answer.body["Counts"]) == (
        200,
        1,
        {"cap-reached": 1, "dry-run": 1},
    )
    assert reruns(dataworks) == []


# --- issue 24, item 9: what pins the part sizes and a batch's start -------------------------------


def test_a_part_is_never_larger_than_a_continuation_carries_even_without_log_reads():
    # GIVEN no log reads (IgnoreRules) and generous QPS limits: 20,000 instances would fit parts of
    # 2,000 by time and by spread; one ListTaskInstances call rereads at most 500
    settings = Settings(read_qps=50.0, write_qps=20.0, chunk_size=50)
    size = batches.slice_size(settings, 900, reads_logs=False, count=20_000)
    assert size == continuation.MAX_INSTANCES == 500


def test_a_part_larger_than_a_continuation_carries_is_refused_with_a_record_per_instance(clock, capsys):
    # GIVEN a part of 501 instances (more than continuation.parse takes): FC would queue a payload
    # the event function refuses, and its instances would end without a record
    part = [batches.Target(FIRST + n, failed_run=1) for n in range(501)]
    functions = FakeFunctions()
    job = Job(Mode.FILTER, ORIGIN, "dwrerun-http", PART_SETTINGS, NOW + 60)
    invocation = Invocation(ORIGIN, "dwrerun-http", "cn-hangzhou", NOW + 60, timeout=60)
    request = bulk.Request(filter=FILTER)
    handed, written = handoff.hand_on_parts(job, request, functions, [part], first_part=1, invocation=invocation)
    # THEN nothing is queued, and each instance is recorded deferred, saying why
    assert functions.calls == [] and handed == []
    assert [(o.instance_id, o.reason, o.error_code) for o in written] == [
        (FIRST + n, "deferred", "PartTooLarge") for n in range(501)
    ]
    assert "more than the 500 a continuation carries" in written[0].message
    assert len(capsys.readouterr().out.splitlines()) == 501


@pytest.mark.parametrize(
    ("read_timeout", "left", "ran"),
    [
        # batches of two at 2 writes/s: 0.25 s an instance, 0.5 s the batch; the slack is a call's
        # minimum (0.5 s), a write slot (0.5 s) and a read timeout (2 s, at most RERUN_RESERVE_SECONDS)
        (2.0, 0.5 + 0.5 + 0.5 + 2.0, True),
        (2.0, 0.5 + 0.5 + 0.5 + 2.0 - 0.01, False),
        (10.0, 0.5 + 0.5 + 0.5 + pacing.RERUN_RESERVE_SECONDS, True),
        (10.0, 0.5 + 0.5 + 0.5 + pacing.RERUN_RESERVE_SECONDS - 0.01, False),
    ],
)
def test_a_batch_starts_only_with_its_time_and_the_slack_left_before_the_deadline(
    clock, mocker, read_timeout, left, ran
):
    settings = replace(PART_SETTINGS, write_qps=2.0, chunk_size=2, read_timeout=read_timeout)
    job = Job(Mode.FILTER, ORIGIN, "dwrerun-http", settings, NOW + left)
    ran_with = []
    mocker.patch.object(batches, "run", lambda job, batch, dataworks: ran_with.append(batch) or [])
    targets = [batches.Target(FIRST + n, failed_run=1) for n in range(2)]
    done = batches.work(job, targets, None)
    # THEN a batch that would end inside the slack is left, whole, for a continuation
    assert (ran_with == [targets], done.leftover) == ((True, []) if ran else (False, targets))


# --- issue 24, item 4: a plan token binds the instances and runs it showed ---------------------------


def a_plan(dataworks, capsys) -> dict:
    """A dry run over FILTER: its answer (the plan the operator reviewed)."""
    answer, _ = plan_or_apply(dataworks, capsys, bulk.Request(filter=FILTER, dry_run=True))
    return answer.body


def test_a_plan_applied_after_one_instance_recovered_and_another_failed_reruns_only_what_it_showed(
    dataworks, capsys, clock
):
    # GIVEN a plan over two failures; then one recovers (rerun by hand, now Success) and another
    # instance fails later: the selection has the same size, and one instance nobody reviewed
    seed_part(dataworks, 1, 1)
    planned = a_plan(dataworks, capsys)
    assert planned["Decisions"] == {"dry-run": [FIRST, FIRST + 1]}
    dataworks.backend.add_instance(**{**vars(dataworks.backend.instance(FIRST + 1)), "status": "Success"})
    dataworks.backend.add_instance(
        id=FIRST + 2, task_id=TASK_ID + 2, project_id=PROJECT_ID, bizdate=BIZDATE, run_number=1,
        task_name="node_2", finished_time=BIZDATE + 27 * 3_600_000,
    )  # fmt: skip
    # WHEN the plan is applied
    request = bulk.Request(filter=FILTER, plan_token=planned["PlanToken"])
    answer, written = plan_or_apply(dataworks, capsys, request)
    # THEN only the instance the plan showed is rerun; the new failure is reported, not rerun
    assert [json.loads(c.params["Ids"]) for c in reruns(dataworks)] == [[FIRST]]
    assert answer.status == 200 and answer.body["Started"] == 1
    assert answer.body["Skipped"][str(FIRST + 2)].startswith("not-in-plan: not rerun: its failed run 1 is not one")
    (new,) = [r for r in written if r.get("instanceId") == FIRST + 2]
    assert (new["decision"], new["reason"], new["runNumber"]) == ("skip", "not-in-plan", 1)


def test_a_plan_token_replayed_after_its_rerun_failed_again_does_not_rerun_it_twice(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    planned = a_plan(dataworks, capsys)
    request = bulk.Request(filter=FILTER, plan_token=planned["PlanToken"])
    first, _ = plan_or_apply(dataworks, capsys, request)
    assert first.body["Started"] == 1
    dataworks.backend.finish(FIRST, "Failure")  # the rerun (run 2) failed too
    # WHEN the same token is sent again
    again, written = plan_or_apply(dataworks, capsys, request)
    # THEN run 2 is not one the plan showed: reported, not rerun
    assert len(reruns(dataworks)) == 1
    assert (again.status, again.body["Started"]) == (200, 0)
    assert again.body["Skipped"][str(FIRST)].startswith("not-in-plan: not rerun: its failed run 2 is not one")


def test_a_selection_the_size_of_the_plan_that_is_not_the_plans_is_refused(dataworks, capsys, clock):
    # GIVEN a plan over two failures (the second ended an hour after the first); one recovers, and an
    # instance whose run ended between the two, which the plan did not show, is now Failure
    seed_part(dataworks, 1)
    dataworks.backend.add_instance(
        id=FIRST + 1, task_id=TASK_ID + 1, project_id=PROJECT_ID, bizdate=BIZDATE, run_number=1,
        task_name="node_1", finished_time=BIZDATE + 27 * 3_600_000,
    )  # fmt: skip
    planned = a_plan(dataworks, capsys)
    dataworks.backend.add_instance(**{**vars(dataworks.backend.instance(FIRST)), "status": "Success"})
    dataworks.backend.add_instance(
        id=FIRST + 2, task_id=TASK_ID + 2, project_id=PROJECT_ID, bizdate=BIZDATE, run_number=1,
        task_name="node_2", finished_time=BIZDATE + 26 * 3_600_000 + 60_000,
    )  # fmt: skip
    request = bulk.Request(filter=FILTER, plan_token=planned["PlanToken"])
    with pytest.raises(bulk.plan.PlanError) as raised:
        plan_or_apply(dataworks, capsys, request)
    assert raised.value.code == "PlanOutdated" and "not the ones the plan" in raised.value.message
    assert reruns(dataworks) == []


def test_a_part_with_log_reads_is_sized_by_the_reads_time():
    # 60 s timeout: 60% less HAND_ON_RESERVE and the reread is 32.75 s; 0.26 s an instance (a log
    # read at 4/s, a fiftieth of a rerun call at 2/s): 125 fit, fewer than 500 and than the spread
    settings = Settings(read_qps=4.0, write_qps=2.0, chunk_size=50)
    assert batches.slice_size(settings, 60, reads_logs=True, count=20_000) == 125


def test_work_runs_every_batch_once_in_order(clock, mocker):
    job = Job(Mode.FILTER, ORIGIN, "dwrerun-http", replace(PART_SETTINGS, chunk_size=2), NOW + 60)
    ran_with = []

    def run(job, batch, dataworks):
        ran_with.append(batch)
        assert len(ran_with) <= 3, "a batch ran twice"
        return []

    mocker.patch.object(batches, "run", run)
    targets = [batches.Target(FIRST + n, failed_run=1) for n in range(5)]
    done = batches.work(job, targets, None)
    assert ran_with == [targets[0:2], targets[2:4], targets[4:5]] and done.leftover == []


def test_a_part_handed_on_carries_the_requests_use_latest_config(dataworks, capsys, clock):
    seed_part(dataworks, 1)
    functions = FakeFunctions()
    request = bulk.Request(filter=FILTER, comment="after the outage", use_latest_config=True)
    plan_or_apply(dataworks, capsys, request, settings=replace(PART_SETTINGS, chunk_size=1, write_qps=1.0),
                  functions=functions, deadline_in=4.0)  # fmt: skip
    assert handed(functions) == [a_part((FIRST, 1), part=1, hop=0, stalls=0, use_latest_config=True)]


def test_a_batch_keeps_one_write_slot_of_slack_not_more(dataworks, capsys, clock):
    # GIVEN a part at 2 writes/s (a write slot is 0.5 s) whose job deadline (the invocation's less
    # HAND_ON_RESERVE) leaves its one-instance batch a quarter of a slot more than it needs: a
    # call's minimum, one write slot, the read timeout, and its share of the rerun call
    seed_part(dataworks, 1)
    settings = replace(PART_SETTINGS, write_qps=2.0)
    needs = 0.5 + 1 / 2.0 + 2.0 + batches.per_instance_seconds(settings, reads_logs=False)
    functions = FakeFunctions()
    returned, written = run_part(
        dataworks, capsys, a_part((FIRST, 1)), settings=settings, functions=functions, deadline_in=3.0 + needs + 0.25
    )
    # THEN the batch runs here: the instance is rerun and nothing is handed on
    assert len(reruns(dataworks)) == 1
    assert functions.calls == []
    assert [(r["instanceId"], r["decision"]) for r in written[:-1]] == [(FIRST, "rerun")]


def test_what_an_apply_has_no_time_left_for_goes_on_as_the_parts_after_those_handed_on_first(dataworks, capsys, clock):
    # GIVEN four failures at 1 s each (batches of one at 1 write/s), 10 s left: the apply keeps one
    # and hands three on as parts 1-3; but FC takes 1.5 s to take each, so the one it kept no longer
    # fits when its turn comes
    seed_part(dataworks, 1, 1, 1, 1)
    settings = replace(PART_SETTINGS, chunk_size=1, write_qps=1.0)
    functions = FakeFunctions(clock=clock, seconds=1.5)
    request = bulk.Request(filter=FILTER, comment="after the outage")
    plan_or_apply(dataworks, capsys, request, settings=settings, functions=functions, deadline_in=10.0)
    # THEN it goes on as part 4: the next number, not one FC already has (a repeated task id is
    # refused as a duplicate, and would be taken for handed on: the instance would be lost)
    assert reruns(dataworks) == []
    assert [c["task_id"] for c in functions.calls] == [f"dwrerun-bulk-{ORIGIN}-{n}-0" for n in (1, 2, 3, 4)]
    assert handed(functions)[3] == a_part((FIRST, 1), part=4, hop=0, stalls=0)


@pytest.mark.parametrize(("left", "ran"), [(1.5 + 3.0, True), (1.5 + 3.0 - 0.01, False)])
def test_a_batch_whose_logs_are_read_counts_their_reads_time_before_it_starts(clock, mocker, left, ran):
    # batches of two at 2 writes/s and 2 reads/s, the logs read: 0.5 s a log and 0.25 s a write
    # share an instance, 1.5 s the batch; the slack is 0.5 + 0.5 + 2.0 s (a call, a write slot, a read timeout)
    settings = replace(PART_SETTINGS, read_qps=2.0, write_qps=2.0, chunk_size=2, read_logs=True)
    job = Job(Mode.FILTER, ORIGIN, "dwrerun-http", settings, NOW + left, rules=rules.load())
    assert job.reads_logs
    ran_with = []
    mocker.patch.object(batches, "run", lambda job, batch, dataworks: ran_with.append(batch) or [])
    targets = [batches.Target(FIRST + n, failed_run=1) for n in range(2)]
    done = batches.work(job, targets, None)
    assert (ran_with == [targets], done.leftover) == ((True, []) if ran else (False, targets))
