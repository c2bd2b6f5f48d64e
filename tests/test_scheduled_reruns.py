"""Scheduled reruns end to end on the local FC as FC 3.0 runs it: failure events in, InvokeFunction
out, delayed invocations back in.

The event function runs as instance processes (localcloud.fc.function.Function: one invocation per
instance, an asynchronous queue under reservedConcurrency, FC's retries) against the DataWorks
emulator, and schedules through the local FC OpenAPI (localcloud.fc.server: ACS3-signed
InvokeFunction, async task mode's 409, injected 403 and 429) over real HTTP. Delayed invocations
come due on a ManualClock: tests advance it, nothing sleeps.

The instances are other processes, so what a test replaces in them it replaces in their setup
code (`instance_setup`, the model's one seam): the backoff's sleep, the clock a record's `dueAt`
is computed from (the test's clock, read from a file), and for one test the jitter.
"""

import json

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    FUNCTION_DIR,
    NO_BACKOFF_SLEEP,
    PROJECT_ID,
    ROOT,
    TASK_ID,
    failure_event,
    function_env,
    instance_records,
    reruns,
    seed_failed,
)
from dwrerun import pacing, schedule, storm
from localcloud.clock import SharedClock
from localcloud.dataworks.exceptions import TaskNotFound
from localcloud.eventbridge import EventBridge
from localcloud.fc import FunctionComputeApi
from localcloud.scheduled import scheduling_function

# Every test runs the event function on instance processes (the `cloud` fixture).
pytestmark = pytest.mark.separate_process

NOW = 1_790_000_000.0
TASK = f"dwrerun-{FAILED_ID}-run-1"  # the async task id of FAILED_ID's failed run 1
EVERY_DELAY_AT_ITS_FLOOR = "schedule.uniform = lambda a, b: a\n"
SIGNING_KEY = "scheduled-reruns-test-key-0123456789abcdef"


@pytest.fixture
def clock(tmp_path):
    """FC's clock for delayed invocations, whose time the instance processes read too."""
    return SharedClock(tmp_path / "clock", start=NOW)


@pytest.fixture
def fc_api():
    with FunctionComputeApi(credentials=[CREDS]) as api:
        yield api


@pytest.fixture
def cloud(dataworks, fc_api, clock, tmp_path):
    """make(**env) -> the event function, scheduling through the local FC OpenAPI."""

    def make(handler="index.handle_event", reserved_concurrency=2, retries=3, setup="", account_id=None, **env):
        # The storm guard is off unless a test turns it on: these pin the schedule itself, call by
        # call (tests/test_storm_cloud.py pins the guard's own calls and what it holds). A
        # deployment's key (scripts/deploy makes one) signs the delayed invocations' payloads,
        # which are trusted only then (tests/test_scheduled_trust.py has the other cases).
        values = {
            "RERUN_BACKOFF_BASE_SECONDS": "120",
            "FUNCTION_COMPUTE_ENDPOINT": fc_api.url,
            "RERUN_STORM_THRESHOLD": "0",
            "RERUN_SIGNING_KEY": SIGNING_KEY,
            **env,
        }
        values = {name: value for name, value in values.items() if value is not None}  # None: unset
        return scheduling_function(
            fc_api,
            clock,
            handler=handler,
            setup=NO_BACKOFF_SLEEP + setup,
            code_dir=str(FUNCTION_DIR),
            timeout=30,
            env=function_env(dataworks, **values),
            credentials=CREDS,
            logstore=str(tmp_path / "logstore.jsonl"),
            reserved_concurrency=reserved_concurrency,
            max_async_retry_attempts=retries,
            **({} if account_id is None else {"account_id": account_id}),
        )

    return make


def publish(fn, instance_id=FAILED_ID, event_id=None) -> list:
    """One failure event through an EventBridge rule; every attempt FC made at it."""
    return EventBridge(fn).publish(failure_event(instance_id, event_id))


def delayed(fn) -> list:
    """The delayed reruns the function queued for itself (they carry a task id; the storm guard's
    own tasks are left out: tests/test_storm_cloud.py pins them)."""
    return [h for h in fn.async_invocations if h.task_id is not None and not storm.is_storm_task(h.task_id)]


def advance(clock, fn, seconds: float) -> None:
    """Move FC's time on and wait until what came due has run (FC's retries included)."""
    clock.advance(seconds)
    fn.drain()


# --- scheduling --------------------------------------------------------------------------------


def test_a_failure_is_scheduled_and_then_rerun_when_due(dataworks, cloud, fc_api, clock):
    seed_failed(dataworks)
    with cloud() as fn:
        (first,) = publish(fn, event_id="evt-1")
        (record,) = instance_records(first)
        assert (record["decision"], record["reason"]) == ("scheduled", "eligible")
        delay = record["delaySeconds"]
        assert 60 <= delay <= 120  # equal jitter: half the 120 s ceiling at least
        assert record["asyncTaskId"] == TASK and record["taskId"] == TASK_ID
        assert record["dueAt"] == schedule.due_at(delay, NOW) and first.records[-1]["scheduled"] == 1
        # FC took it as an asynchronous invocation, delayed by that much, under that task id.
        (call,) = fc_api.calls()
        assert (call.invocation_type, call.delay, call.task_id, call.status) == ("Async", delay, TASK, 202)
        (handle,) = delayed(fn)
        assert handle.due_at == NOW + delay and reruns(dataworks) == []
        advance(clock, fn, delay - 1)
        assert handle.attempts == [] and handle.status == "Enqueued"  # not due yet
        advance(clock, fn, 1)
        (attempt,) = handle.attempts
        assert attempt.instance_id in {i.instance_id for i in fn.instances}
    (rerun,) = instance_records(attempt)
    assert (rerun["decision"], rerun["success"], rerun["reason"]) == ("rerun", True, "eligible")
    # The delayed invocation's record joins the first one on the task id and the event id.
    assert (rerun["asyncTaskId"], rerun["eventId"], rerun["dueAt"]) == (TASK, "evt-1", record["dueAt"])
    (call,) = reruns(dataworks)
    assert "scheduled rerun" in call.params["Comment"] and TASK in call.params["Comment"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_the_delay_grows_with_each_failed_run(dataworks, cloud, clock):
    seed_failed(dataworks)
    dataworks.backend.script_runs(FAILED_ID, ["Failure"] * 3)
    delays = []
    with cloud(setup=EVERY_DELAY_AT_ITS_FLOOR) as fn:
        for run in range(1, 4):
            (record,) = instance_records(publish(fn, event_id=f"evt-{run}")[0])
            delays.append(record["delaySeconds"])
            advance(clock, fn, record["delaySeconds"])
            dataworks.backend.advance()  # the rerun fails again: DataWorks sends the next event
    assert delays == [60, 120, 240]
    assert dataworks.backend.instance(FAILED_ID).run_number == 4


def test_duplicates_on_two_instances_schedule_once_and_the_others_get_409(dataworks, cloud, fc_api, clock):
    seed_failed(dataworks)
    with cloud(reserved_concurrency=2) as fn:
        rule = EventBridge(fn)
        # Two copies at once land on two instances, which share no memory; then a second event
        # for the same failure.
        copies = rule.deliver(failure_event(FAILED_ID, "evt-1"), duplicate=True)
        fn.drain()
        copies += rule.deliver(failure_event(FAILED_ID, "evt-1-again"))
        fn.drain()
        attempts = [handle.final for handle in copies]
        assert len({attempt.instance_id for attempt in attempts[:2]}) == 2
        outcomes = sorted((r["decision"], r["reason"]) for a in attempts for r in instance_records(a))
        assert outcomes == [("scheduled", "eligible"), ("skip", "already-scheduled"), ("skip", "already-scheduled")]
        for attempt in attempts:
            (record,) = instance_records(attempt)
            assert record["asyncTaskId"] == TASK
            if record["decision"] == "skip":
                assert record["dueAt"] is None
        assert [c.status for c in fc_api.calls()].count(409) == 2 and len(delayed(fn)) == 1
        advance(clock, fn, 3600)
    assert len(reruns(dataworks)) == 1 and dataworks.backend.instance(FAILED_ID).run_number == 2


def test_a_scheduled_rerun_finding_the_instance_rerun_by_hand_records_already_rerun(dataworks, cloud, clock):
    seed_failed(dataworks)
    with cloud() as fn:
        publish(fn)
        dataworks.backend.rerun_task_instances([FAILED_ID], comment="an operator, by hand")
        dataworks.backend.finish(FAILED_ID, "Failure")  # and it failed again: Failure, at run 2
        advance(clock, fn, 3600)
        (handle,) = delayed(fn)
    (record,) = instance_records(handle.final)
    assert (record["decision"], record["reason"]) == ("skip", "already-rerun")
    assert "now at run 2" in record["message"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 2  # not rerun a second time


def test_a_delayed_invocation_applies_every_guard_again(dataworks, cloud):
    seed_failed(dataworks)
    with cloud() as fn:
        publish(fn)
        (handle,) = delayed(fn)
    # Configuration changed meanwhile (a new deployment): the task is now excluded.
    with cloud(RERUN_EXCLUDE_TASK_IDS=str(TASK_ID)) as fn:
        (record,) = instance_records(fn.invoke(handle.event))
    assert (record["decision"], record["reason"]) == ("skip", "task-excluded")
    assert reruns(dataworks) == []


def test_a_delayed_invocation_never_schedules_again(dataworks, cloud, fc_api, clock):
    seed_failed(dataworks)
    with cloud() as fn:
        publish(fn)
        advance(clock, fn, 3600)
    assert len(fc_api.calls()) == 1 and len(reruns(dataworks)) == 1


def test_a_forged_scheduled_payload_can_only_ask_for_a_recheck(dataworks, cloud):
    seed_failed(dataworks, status="Success")  # nothing to rerun
    forged = schedule.ScheduledRerun(FAILED_ID, 1, "2026-01-01T00:00:00Z", "evt-forged").to_payload()
    bad = json.loads(forged)
    bad["scheduledRerun"]["force"] = True
    with cloud() as fn:
        (record,) = instance_records(fn.invoke(forged))
        (refused,) = instance_records(fn.invoke(json.dumps(bad).encode()))
    assert (record["decision"], record["reason"]) == ("skip", "not-failed")
    assert (refused["decision"], refused["reason"]) == ("skip", "not-a-failure")
    assert "force" in refused["message"]
    assert reruns(dataworks) == []


def test_a_zero_base_reruns_at_once_as_before(dataworks, cloud, fc_api):
    seed_failed(dataworks)
    with cloud(RERUN_BACKOFF_BASE_SECONDS="0") as fn:
        (record,) = instance_records(publish(fn)[0])
    assert (record["decision"], record["delaySeconds"], record["asyncTaskId"]) == ("rerun", None, None)
    assert fc_api.calls() == [] and len(reruns(dataworks)) == 1


def test_manual_http_reruns_stay_immediate(dataworks, cloud, fc_api):
    seed_failed(dataworks)
    request = {
        "version": "v1",
        "rawPath": "/rerun",
        "body": json.dumps({"Ids": [FAILED_ID]}),
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
    }
    with cloud(handler="index.handle_http", reserved_concurrency=1, RERUN_BACKOFF_BASE_SECONDS="600") as http:
        answer = http.invoke(json.dumps(request).encode())
    assert json.loads(answer.result["body"])["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert fc_api.calls() == []


# --- FC refusing or throttling -----------------------------------------------------------------


def test_invoke_function_refused_falls_back_to_rerunning_at_once_and_says_why(dataworks, cloud, fc_api):
    fc_api.faults.set(deny=None)  # the role lacks fc:InvokeFunction
    seed_failed(dataworks)
    with cloud() as fn:
        (attempt,) = publish(fn)
    assert attempt.error is None
    (record,) = instance_records(attempt)
    assert (record["decision"], record["success"], record["scheduleErrorCode"]) == ("rerun", True, "AccessDenied")
    assert record["message"].startswith("InvokeFunction refused (AccessDenied")
    assert record["delaySeconds"] is None and record["asyncTaskId"] is None
    assert [c.status for c in fc_api.calls()] == [403] and len(reruns(dataworks)) == 1


def test_invoke_function_throttled_is_retried_like_any_transient_call(dataworks, cloud, fc_api):
    fc_api.faults.set(throttle=2)
    seed_failed(dataworks)
    with cloud() as fn:
        (attempt,) = publish(fn)
    assert instance_records(attempt)[0]["decision"] == "scheduled"
    assert [c.status for c in fc_api.calls()] == [429, 429, 202] and reruns(dataworks) == []


def test_invoke_function_throttled_through_an_invocation_is_left_to_fcs_retry(dataworks, cloud, fc_api):
    fc_api.faults.set(throttle=pacing.MAX_ATTEMPTS)  # every call of the first attempt
    seed_failed(dataworks)
    with cloud() as fn:
        first, retry = publish(fn)  # FC's retry of the same event follows the failed attempt
    assert first.error["errorType"] == "RetryLater" and retry.error is None
    (record,) = instance_records(first)
    assert (record["reason"], record["errorCode"]) == ("deferred", "ResourceExhausted")
    assert "Function Compute (InvokeFunction) kept failing" in record["message"]
    assert instance_records(retry)[0]["decision"] == "scheduled" and reruns(dataworks) == []


def test_without_an_fc_endpoint_the_rerun_happens_at_once(dataworks, cloud):
    seed_failed(dataworks)
    # Neither FUNCTION_COMPUTE_ENDPOINT, nor the account id from the context or FC_ACCOUNT_ID.
    with cloud(account_id="", FUNCTION_COMPUTE_ENDPOINT=None) as fn:
        (record,) = instance_records(publish(fn)[0])
    assert (record["decision"], record["scheduleErrorCode"]) == ("rerun", "ConfigError"), record["message"]
    assert "FUNCTION_COMPUTE_ENDPOINT" in record["message"]


# --- the delayed invocation failing and FC retrying it -----------------------------------------


def test_a_delayed_invocation_that_raises_is_retried_by_fc_and_reruns_once(dataworks, cloud, clock):
    seed_failed(dataworks)
    with cloud() as fn:
        publish(fn)
        dataworks.faults.set("RerunTaskInstances", server_error=2 * pacing.MAX_ATTEMPTS)  # two whole attempts
        advance(clock, fn, 3600)
        (handle,) = delayed(fn)
    assert [a.error["errorType"] if a.error else None for a in handle.attempts] == ["RetryLater", "RetryLater", None]
    assert handle.status == "Succeeded"
    (record,) = instance_records(handle.final)
    assert (record["decision"], record["success"], record["asyncTaskId"]) == ("rerun", True, TASK)
    assert len(reruns(dataworks)) == 1 and dataworks.backend.instance(FAILED_ID).run_number == 2


def test_fcs_retry_after_a_lost_rerun_answer_records_an_earlier_attempt_not_not_failed(dataworks, cloud, clock):
    # The delayed invocation's rerun is carried out but its answer lost, and every read after it
    # fails until the attempt gives up: it raises. FC's retry reads run 2. Without the carried run
    # number this was recorded `not-failed` (or, had run 2 failed too, rerun a second time).
    seed_failed(dataworks)
    with cloud(retries=0) as fn:  # the test makes FC's retry itself, after run 2 has failed
        publish(fn)
        dataworks.faults.set("RerunTaskInstances", reset=1, after_backend=True)
        original = dataworks.faults.take

        def take(action):  # reads after the lost answer are throttled for the rest of the attempt
            plan = original(action)
            if action == "GetTaskInstance" and dataworks.journal.count(action="RerunTaskInstances") == 1:
                if dataworks.journal.count(action="GetTaskInstance") - 2 < pacing.MAX_ATTEMPTS:
                    plan = original.__self__.__class__.take(original.__self__, "__none__")
                    plan.kind, plan.throttle_code = "throttle", "Throttling.User"
            return plan

        dataworks.faults.take = take
        dataworks.backend.script_runs(FAILED_ID, ["Failure"])
        advance(clock, fn, 3600)
        (handle,) = delayed(fn)
        assert handle.final.error["errorType"] == "RetryLater"
        dataworks.backend.advance()  # run 2 failed as well
        dataworks.faults.take = original
        retry = fn.invoke(handle.event)  # FC's retry: the same payload, the same failed run 1
    (record,) = instance_records(retry)
    assert (record["decision"], record["reason"]) == ("skip", "already-rerun")
    assert "earlier attempt" in record["message"]
    assert dataworks.journal.count(action="RerunTaskInstances") == 1  # run 2's failure is its own event's


# --- DataWorks' own automatic rerun ------------------------------------------------------------


def test_a_node_with_its_own_auto_rerun_is_left_to_dataworks_until_its_reruns_are_used(dataworks, cloud):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=2, rerun_interval=300)
    seed_failed(dataworks)
    outcomes = []
    with cloud(reserved_concurrency=1) as fn:  # one warm instance: its GetTask cache is what is shown
        for run in (1, 2, 3):
            (record,) = instance_records(publish(fn, event_id=f"evt-{run}")[0])
            outcomes.append((record["runNumber"], record["decision"], record["reason"]))
            if record["reason"] == "dataworks-auto-rerun":
                assert record["dueAt"] and "RerunInterval 300 s" in record["message"]
                dataworks.backend.auto_rerun(FAILED_ID)  # DataWorks reruns it itself...
                dataworks.backend.finish(FAILED_ID, "Failure")  # ...and it fails again
        assert len(fn.instances) == 1
    assert outcomes == [
        (1, "skip", "dataworks-auto-rerun"),
        (2, "skip", "dataworks-auto-rerun"),
        (3, "scheduled", "eligible"),  # DataWorks' reruns are used up: the function's turn
    ]
    assert dataworks.journal.count(action="GetTask") == 1  # one node, read once: cached in the instance


def test_a_refused_gettask_holds_the_rerun_back_rather_than_risk_a_double_run(dataworks, cloud, fc_api, mocker):
    seed_failed(dataworks)
    # DataWorks answers GetTask with a permanent error (the emulator's own 404 for an unknown task).
    mocker.patch.object(dataworks.backend, "get_task", side_effect=TaskNotFound(TASK_ID, "Prod"))
    with cloud() as fn:
        (record,) = instance_records(publish(fn)[0])
    assert (record["decision"], record["reason"], record["errorCode"]) == (
        "skip",
        "lookup-failed",
        "InvalidTask.NotFound",
    )
    assert "GetTask refused" in record["message"] and reruns(dataworks) == [] and fc_api.calls() == []


# --- 500 failures at once ----------------------------------------------------------------------


def test_500_simultaneous_failures_spread_out_instead_of_returning_together(dataworks, cloud, clock):
    ids = [FAILED_ID + n for n in range(500)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    with cloud(reserved_concurrency=3) as fn:  # fewer instances than deployed: each a real process
        rule = EventBridge(fn)
        handles = [handle for i in ids for handle in rule.deliver(failure_event(i))]
        fn.drain()
        records = [instance_records(handle.final)[0] for handle in handles]
        assert {r["decision"] for r in records} == {"scheduled"}
        delays = sorted(r["delaySeconds"] for r in records)
        # FC holds each one exactly as long as its record says.
        assert sorted(handle.due_at - NOW for handle in delayed(fn)) == delays
        # Equal jitter over [60, 120]: nothing before the floor, nothing after the ceiling, and no
        # second holds more than a small share of the burst (~8 a second on average; these bounds
        # fail by chance with a probability far below one in a million).
        assert delays[0] >= 60 and delays[-1] <= 120
        per_second = {d: delays.count(d) for d in set(delays)}
        assert len(per_second) >= 55 and max(per_second.values()) <= 25
        assert 80 <= delays[len(delays) // 2] <= 100
        advance(clock, fn, 120)
        finals = [handle.final for handle in delayed(fn)]
        assert 1 <= len(fn.instances) <= 3
    assert len(finals) == 500 and all(a is not None and a.error is None for a in finals)
    run_numbers = [dataworks.backend.instance(i).run_number for i in ids]
    assert run_numbers == [2] * 500  # 0 lost, 0 double


# --- with the failure rules ----------------------------------------------------------------------


def test_a_rules_delay_hint_schedules_and_the_delayed_invocation_reads_neither_log_nor_node_again(dataworks, cloud):
    # GIVEN a MaxCompute run that failed waiting for resources: its rule asks for 600 s
    seed_failed(dataworks, task_type="ODPS_SQL")
    log = (ROOT / "tests" / "logs" / "odps_sql_resource_wait.log").read_text()
    dataworks.backend.set_log(FAILED_ID, 1, log)
    with cloud() as fn:
        (record,) = instance_records(publish(fn, event_id="evt-hint")[0])
        assert (record["decision"], record["rule"]) == ("scheduled", "maxcompute-resource-wait")
        assert (
            600 <= record["delaySeconds"] <= 1200
        )  # the hint is the floor of the rule's schedule (run 1: up to twice it)
        assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "GetTaskInstanceLog"]
        (handle,) = delayed(fn)
    dataworks.journal.clear()
    # WHEN the delayed invocation lands on a fresh instance, with nothing cached (here: the
    # function's instances were replaced meanwhile, and FC delivers the same payload)
    with cloud() as fn:
        attempt = fn.invoke(handle.event)
    # THEN it re-reads the instance and reruns: the rule and DataWorks' own rerun settings were
    # settled for this failed run when it was scheduled
    (rerun,) = instance_records(attempt)
    assert (rerun["decision"], rerun["success"], rerun["rule"]) == ("rerun", True, "maxcompute-resource-wait")
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "RerunTaskInstances"]
