"""A big selection outlives its request: the HTTP function hands the rest to asynchronous
invocations of the event function, which run as FC 3.0 runs them (separate instance processes,
an asynchronous queue, FC's retries: localcloud.fcfunction), queued through the local FC OpenAPI
(localcloud.fcapi, InvokeFunction with ACS3 signatures), against the DataWorks emulator.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

import rerun_client
from conftest import CREDS, FUNCTION_DIR, NO_BACKOFF_SLEEP, PROJECT_ID, TASK_ID, function_env, make_function, sample
from dwrerun import schema
from dwrerun.continuation import Continuation
from localcloud import sls
from localcloud.fcapi import FunctionComputeApi
from localcloud.fcfunction import Function
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
