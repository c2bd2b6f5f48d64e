"""Scheduled reruns end to end: failure events in, InvokeFunction out, delayed invocations back in.

The event function runs in the FC harness against the DataWorks emulator, and schedules through
the FC OpenAPI over real HTTP with ACS3 signatures. `LocalInvokeFunction` below answers
InvokeFunction the way FC does with async task mode on (202, 409 for a task id it has seen,
403/429 when told to) and keeps each delayed invocation until a test moves its clock past the
due time: tests advance time, they never sleep. FC's retries of a delayed invocation that raises
are the test re-delivering the same payload, as FC does.

[Stand-in] this module's InvokeFunction double exists until the local cloud's own FC OpenAPI
(localcloud, branch fcmodel) is on main; the tests then run against that one unchanged in
substance.
"""

import importlib
import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    PROJECT_ID,
    ROOT,
    TASK_ID,
    failure_event,
    instance_records,
    make_function,
    reruns,
    seed_failed,
)
from dwrerun import schedule
from localcloud import acs3
from localcloud.dataworks.exceptions import TaskNotFound

NOW = 1_790_000_000.0


def live_schedule():
    """The dwrerun.schedule the function will use: a harness that closed unloads the function's
    modules, so the one imported when this file was collected may no longer be it."""
    return importlib.import_module("dwrerun.schedule")


@dataclass
class Queued:
    task_id: str
    delay: int
    due: float
    payload: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802
        fc = self.server.fc
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        try:
            acs3.verify("POST", split.path, dict(parse_qsl(split.query)), self.headers.items(), body, [CREDS])
        except acs3.SignatureError as exc:
            return self._answer(exc.status, exc.code)
        if not split.path.startswith("/2023-03-30/functions/") or not split.path.endswith("/invocations"):
            return self._answer(404, "FunctionNotFound")
        fc.calls += 1
        if fc.refuse:
            return self._answer(403, "AccessDenied")
        if fc.throttle > 0:
            fc.throttle -= 1
            return self._answer(429, "ResourceThrottled")
        if self.headers.get("x-fc-invocation-type") != "Async":
            return self._answer(400, "InvalidArgument")
        task_id = self.headers.get("x-fc-async-task-id") or ""
        delay = int(self.headers.get("x-fc-async-delay") or 0)
        if not schedule.TASK_ID_PATTERN.fullmatch(task_id) or not 0 <= delay <= 3600:
            return self._answer(400, "InvalidArgument")
        with fc.lock:
            if task_id in fc.task_ids:  # async task mode on: a task id is accepted once
                return self._answer(409, "AsyncTaskAlreadyExists")
            fc.task_ids.add(task_id)
            fc.queue.append(Queued(task_id, delay, fc.now + delay, body))
        self._answer(202, None)

    def _answer(self, status, code):
        data = json.dumps({"Code": code, "Message": code}).encode() if code else b""
        self.send_response(status)
        self.send_header("x-fc-request-id", f"1-local-{self.server.fc.calls}")
        self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class LocalInvokeFunction:
    def __init__(self):
        self.now = NOW
        self.queue: list[Queued] = []
        self.task_ids: set[str] = set()
        self.lock = threading.Lock()
        self.refuse = False
        self.throttle = 0
        self.calls = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fc = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def advance(self, seconds: float, fn, retries: int = 3) -> list:
        """Move time on; deliver every delayed invocation that came due, earliest first, with FC's
        retries of one that raises. Returns every attempt."""
        self.now += seconds
        with self.lock:
            due = sorted((q for q in self.queue if q.due <= self.now), key=lambda q: q.due)
            self.queue = [q for q in self.queue if q.due > self.now]
        attempts = []
        for queued in due:
            for _ in range(1 + retries):
                attempt = fn.invoke(queued.payload)
                attempts.append(attempt)
                if attempt.error is None:
                    break
        return attempts

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_fc(mocker):
    fc = LocalInvokeFunction()
    mocker.patch.object(live_schedule(), "clock", side_effect=lambda: fc.now)
    yield fc
    fc.close()


@pytest.fixture
def seeded(mocker):
    rng = random.Random(1207)
    return mocker.patch.object(live_schedule(), "uniform", side_effect=rng.uniform)


def scheduling_function(dataworks, local_fc, tmp_path, **env):
    values = {"RERUN_BACKOFF_BASE_SECONDS": "120", "FUNCTION_COMPUTE_ENDPOINT": local_fc.url, **env}
    return make_function(dataworks, tmp_path, **values)


def event(instance_id=FAILED_ID, event_id=None) -> bytes:
    return json.dumps(failure_event(instance_id, event_id)).encode()


# --- scheduling --------------------------------------------------------------------------------


def test_a_failure_is_scheduled_and_then_rerun_when_due(dataworks, local_fc, tmp_path, seeded):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        first = fn.invoke(event(event_id="evt-1"))
        (record,) = instance_records(first)
        assert (record["decision"], record["reason"]) == ("scheduled", "eligible")
        assert 60 <= record["delaySeconds"] <= 120  # equal jitter: half the 120 s ceiling at least
        assert record["asyncTaskId"] == f"dwrerun-{FAILED_ID}-run-1" and record["taskId"] == TASK_ID
        assert record["dueAt"] == schedule.due_at(record["delaySeconds"], NOW)
        assert first.records[-1]["scheduled"] == 1
        assert reruns(dataworks) == []  # nothing yet
        assert local_fc.advance(record["delaySeconds"] - 1, fn) == []  # not due yet
        (attempt,) = local_fc.advance(1, fn)
    (delayed,) = instance_records(attempt)
    assert (delayed["decision"], delayed["success"], delayed["reason"]) == ("rerun", True, "eligible")
    # The delayed invocation's record joins the first one on the task id and the event id.
    assert (delayed["asyncTaskId"], delayed["eventId"]) == (record["asyncTaskId"], "evt-1")
    assert delayed["dueAt"] == record["dueAt"]
    (call,) = reruns(dataworks)
    assert "scheduled rerun" in call.params["Comment"] and record["asyncTaskId"] in call.params["Comment"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_the_delay_grows_with_each_failed_run(dataworks, local_fc, tmp_path, mocker):
    mocker.patch.object(live_schedule(), "uniform", side_effect=lambda a, b: a)  # every delay at its floor
    seed_failed(dataworks)
    dataworks.backend.script_runs(FAILED_ID, ["Failure"] * 3)
    delays = []
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        for run in range(1, 4):
            (record,) = instance_records(fn.invoke(event(event_id=f"evt-{run}")))
            delays.append(record["delaySeconds"])
            local_fc.advance(record["delaySeconds"], fn)
            dataworks.backend.advance()  # the rerun fails again: DataWorks sends the next event
    assert delays == [60, 120, 240]
    assert dataworks.backend.instance(FAILED_ID).run_number == 4


def test_a_duplicate_on_another_instance_gets_409_and_is_already_scheduled(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        first = fn.invoke(event(event_id="evt-1"))
        fn.new_instance()  # the copy lands on another instance, which has no memory of the first
        second = fn.invoke(event(event_id="evt-1"))
        third = fn.invoke(event(event_id="evt-1-again"))  # and a second event for the same failure
        assert instance_records(first)[0]["decision"] == "scheduled"
        for copy in (second, third):
            (record,) = instance_records(copy)
            assert (record["decision"], record["reason"]) == ("skip", "already-scheduled")
            assert record["asyncTaskId"] == f"dwrerun-{FAILED_ID}-run-1" and record["dueAt"] is None
        assert len(local_fc.queue) == 1
        local_fc.advance(3600, fn)
    assert len(reruns(dataworks)) == 1 and dataworks.backend.instance(FAILED_ID).run_number == 2


def test_a_scheduled_rerun_finding_the_instance_rerun_by_hand_records_already_rerun(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        fn.invoke(event())
        dataworks.backend.rerun_task_instances([FAILED_ID], comment="an operator, by hand")
        dataworks.backend.finish(FAILED_ID, "Failure")  # and it failed again: Failure, at run 2
        (attempt,) = local_fc.advance(3600, fn)
    (record,) = instance_records(attempt)
    assert (record["decision"], record["reason"]) == ("skip", "already-rerun")
    assert "now at run 2" in record["message"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 2  # not rerun a second time


def test_a_delayed_invocation_applies_every_guard_again(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        fn.invoke(event())
        (payload,) = [q.payload for q in local_fc.queue]
    # Configuration changed meanwhile: the task is now excluded.
    with scheduling_function(dataworks, local_fc, tmp_path, RERUN_EXCLUDE_TASK_IDS=str(TASK_ID)) as fn:
        (record,) = instance_records(fn.invoke(payload))
    assert (record["decision"], record["reason"]) == ("skip", "task-excluded")
    assert reruns(dataworks) == []


def test_a_delayed_invocation_never_schedules_again(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        fn.invoke(event())
        calls = local_fc.calls
        local_fc.advance(3600, fn)
    assert local_fc.calls == calls and len(reruns(dataworks)) == 1


def test_a_forged_scheduled_payload_can_only_ask_for_a_recheck(dataworks, local_fc, tmp_path):
    seed_failed(dataworks, status="Success")  # nothing to rerun
    forged = schedule.ScheduledRerun(FAILED_ID, 1, "2026-01-01T00:00:00Z", "evt-forged").to_payload()
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        (record,) = instance_records(fn.invoke(forged))
        assert (record["decision"], record["reason"]) == ("skip", "not-failed")
        bad = json.loads(forged)
        bad["scheduledRerun"]["force"] = True
        (refused,) = instance_records(fn.invoke(json.dumps(bad).encode()))
    assert (refused["decision"], refused["reason"]) == ("skip", "not-a-failure")
    assert "force" in refused["message"]
    assert reruns(dataworks) == []


def test_a_zero_base_reruns_at_once_as_before(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path, RERUN_BACKOFF_BASE_SECONDS="0") as fn:
        (record,) = instance_records(fn.invoke(event()))
    assert (record["decision"], record["delaySeconds"], record["asyncTaskId"]) == ("rerun", None, None)
    assert local_fc.calls == 0 and len(reruns(dataworks)) == 1


def test_manual_http_reruns_stay_immediate(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    request = {
        "version": "v1",
        "rawPath": "/rerun",
        "body": json.dumps({"Ids": [FAILED_ID]}),
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
    }
    with make_function(
        dataworks,
        tmp_path,
        handler="index.handle_http",
        RERUN_BACKOFF_BASE_SECONDS="600",
        FUNCTION_COMPUTE_ENDPOINT=local_fc.url,
    ) as http:
        answer = http.invoke(json.dumps(request).encode())
    assert json.loads(answer.result["body"])["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert local_fc.calls == 0


# --- FC refusing or throttling -----------------------------------------------------------------


def test_invoke_function_refused_falls_back_to_rerunning_at_once_and_says_why(dataworks, local_fc, tmp_path):
    local_fc.refuse = True  # the role lacks fc:InvokeFunction
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        inv = fn.invoke(event())
    assert inv.error is None
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"], record["scheduleErrorCode"]) == ("rerun", True, "AccessDenied")
    assert record["message"].startswith("InvokeFunction refused (AccessDenied")
    assert record["delaySeconds"] is None and record["asyncTaskId"] is None
    assert len(reruns(dataworks)) == 1


def test_invoke_function_throttled_is_retried_like_any_transient_call(dataworks, local_fc, tmp_path):
    local_fc.throttle = 2
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        (record,) = instance_records(fn.invoke(event()))
    assert record["decision"] == "scheduled" and local_fc.calls == 3
    assert reruns(dataworks) == []


def test_invoke_function_throttled_until_the_deadline_raises_for_fcs_retry(dataworks, local_fc, tmp_path):
    local_fc.throttle = 100
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        inv = fn.invoke(event())
        assert inv.error["errorType"] == "RetryLater"
        (record,) = instance_records(inv)
        assert (record["reason"], record["errorCode"]) == ("deferred", "ResourceThrottled")
        assert "Function Compute (InvokeFunction) kept failing" in record["message"]
        local_fc.throttle = 0
        (retry,) = instance_records(fn.invoke(event()))  # FC's retry of the same event
    assert retry["decision"] == "scheduled" and reruns(dataworks) == []


def test_without_an_fc_endpoint_the_rerun_happens_at_once(dataworks, tmp_path):
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, RERUN_BACKOFF_BASE_SECONDS="120") as fn:
        fn.account_id = ""  # neither the context nor FC_ACCOUNT_ID says the account
        fn.new_instance()
        (record,) = instance_records(fn.invoke(event()))
    assert (record["decision"], record["scheduleErrorCode"]) == ("rerun", "ConfigError"), (
        record["reason"],
        record["message"],
    )
    assert "FUNCTION_COMPUTE_ENDPOINT" in record["message"]


# --- the delayed invocation failing and FC retrying it -----------------------------------------


def test_a_delayed_invocation_that_raises_is_retried_by_fc_and_reruns_once(dataworks, local_fc, tmp_path):
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        fn.invoke(event())
        dataworks.faults.set("RerunTaskInstances", server_error=2 * 6)  # two whole attempts fail
        attempts = local_fc.advance(3600, fn)
    assert [a.error["errorType"] if a.error else None for a in attempts] == ["RetryLater", "RetryLater", None]
    (record,) = instance_records(attempts[-1])
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert record["asyncTaskId"] == f"dwrerun-{FAILED_ID}-run-1"
    assert len(reruns(dataworks)) == 1 and dataworks.backend.instance(FAILED_ID).run_number == 2


def test_fcs_retry_after_a_lost_rerun_answer_records_an_earlier_attempt_not_not_failed(dataworks, local_fc, tmp_path):
    # The delayed invocation's rerun is carried out but its answer lost, and every read after it
    # fails until the deadline: it raises. FC's retry reads run 2. Without the carried run number
    # this was recorded `not-failed` (or, had run 2 failed too, rerun a second time).
    seed_failed(dataworks)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        fn.invoke(event())
        dataworks.faults.set("RerunTaskInstances", reset=1, after_backend=True)
        original = dataworks.faults.take

        def take(action):  # reads after the lost answer are throttled for the rest of the attempt
            plan = original(action)
            if action == "GetTaskInstance" and dataworks.journal.count(action="RerunTaskInstances") == 1:
                reads_after = dataworks.journal.count(action="GetTaskInstance") - 2
                if reads_after < 6:
                    plan = original.__self__.__class__.take(original.__self__, "__none__")
                    plan.kind, plan.throttle_code = "throttle", "Throttling.User"
            return plan

        dataworks.faults.take = take
        dataworks.backend.script_runs(FAILED_ID, ["Failure"])
        queued = list(local_fc.queue)
        local_fc.now += 3600
        local_fc.queue = []
        first = fn.invoke(queued[0].payload)
        assert first.error["errorType"] == "RetryLater"
        dataworks.backend.advance()  # run 2 failed as well
        dataworks.faults.take = original
        retry = fn.invoke(queued[0].payload)  # FC's retry: the same payload, the same failed run 1
    (record,) = instance_records(retry)
    assert (record["decision"], record["reason"]) == ("skip", "already-rerun")
    assert "earlier attempt" in record["message"]
    assert dataworks.journal.count(action="RerunTaskInstances") == 1  # run 2's failure is its own event's


# --- DataWorks' own automatic rerun ------------------------------------------------------------


def test_a_node_with_its_own_auto_rerun_is_left_to_dataworks_until_its_reruns_are_used(dataworks, local_fc, tmp_path):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=2, rerun_interval=300)
    seed_failed(dataworks)
    outcomes = []
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        for run in (1, 2, 3):
            (record,) = instance_records(fn.invoke(event(event_id=f"evt-{run}")))
            outcomes.append((record["runNumber"], record["decision"], record["reason"]))
            if record["reason"] == "dataworks-auto-rerun":
                assert record["dueAt"] and "RerunInterval 300 s" in record["message"]
                dataworks.backend.auto_rerun(FAILED_ID)  # DataWorks reruns it itself...
                dataworks.backend.finish(FAILED_ID, "Failure")  # ...and it fails again
    assert outcomes == [
        (1, "skip", "dataworks-auto-rerun"),
        (2, "skip", "dataworks-auto-rerun"),
        (3, "scheduled", "eligible"),  # DataWorks' reruns are used up: the function's turn
    ]
    assert dataworks.journal.count(action="GetTask") == 1  # one node, read once: cached in the instance


def test_a_refused_gettask_holds_the_rerun_back_rather_than_risk_a_double_run(dataworks, local_fc, tmp_path, mocker):
    seed_failed(dataworks)
    # DataWorks answers GetTask with a permanent error (the emulator's own 404 for an unknown task).
    mocker.patch.object(dataworks.backend, "get_task", side_effect=TaskNotFound(TASK_ID, "Prod"))
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        (record,) = instance_records(fn.invoke(event()))
    assert (record["decision"], record["reason"], record["errorCode"]) == (
        "skip",
        "lookup-failed",
        "InvalidTask.NotFound",
    )
    assert "GetTask refused" in record["message"] and reruns(dataworks) == [] and local_fc.calls == 0


# --- 500 failures at once ----------------------------------------------------------------------


def test_500_simultaneous_failures_spread_out_instead_of_returning_together(dataworks, local_fc, tmp_path, seeded):
    ids = [FAILED_ID + n for n in range(500)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        records = [instance_records(fn.invoke(event(i)))[0] for i in ids]
        assert {r["decision"] for r in records} == {"scheduled"}
        delays = sorted(r["delaySeconds"] for r in records)
        # Equal jitter over [60, 120]: nothing before the floor, nothing after the ceiling, and no
        # second holds more than a small share of the burst.
        assert delays[0] >= 60 and delays[-1] <= 120
        per_second = {d: delays.count(d) for d in set(delays)}
        assert len(per_second) >= 55 and max(per_second.values()) <= 25  # ~8 a second on average
        assert 80 <= delays[len(delays) // 2] <= 100
        attempts = local_fc.advance(120, fn)
    assert len(attempts) == 500 and all(a.error is None for a in attempts)
    run_numbers = [dataworks.backend.instance(i).run_number for i in ids]
    assert run_numbers == [2] * 500  # 0 lost, 0 double


# --- with the failure rules ----------------------------------------------------------------------


def test_a_rules_delay_hint_schedules_and_the_delayed_invocation_reads_neither_log_nor_node_again(
    dataworks, local_fc, tmp_path, seeded
):
    # GIVEN a MaxCompute run that failed waiting for resources: its rule asks for 600 s
    seed_failed(dataworks, task_type="ODPS_SQL")
    log = (ROOT / "tests" / "logs" / "odps_sql_resource_wait.log").read_text()
    dataworks.backend.set_log(FAILED_ID, 1, log)
    with scheduling_function(dataworks, local_fc, tmp_path) as fn:
        (record,) = instance_records(fn.invoke(event(event_id="evt-hint")))
        assert (record["decision"], record["rule"]) == ("scheduled", "maxcompute-resource-wait")
        assert 600 <= record["delaySeconds"] <= 660  # the hint, stretched by at most 10 %, never shortened
        assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "GetTaskInstanceLog"]
        dataworks.journal.clear()
        fn.new_instance()  # the delayed invocation lands on another instance: nothing cached
        (attempt,) = local_fc.advance(record["delaySeconds"], fn)
    # THEN the delayed invocation re-reads the instance and reruns: the rule and DataWorks' own
    # rerun settings were settled for this failed run when it was scheduled
    (delayed,) = instance_records(attempt)
    assert (delayed["decision"], delayed["success"], delayed["rule"]) == ("rerun", True, "maxcompute-resource-wait")
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "RerunTaskInstances"]
