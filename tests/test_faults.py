"""The fault matrix: every way DataWorks or the platform misbehaves, against the local cloud.

For each fault, every instance involved must end in exactly one of these states:
  (a) rerun once: the emulator's RunNumber went up by exactly one, and exactly one
      RerunTaskInstances call that reached DataWorks named it;
  (b) not rerun, with a record saying why (a guard, a duplicate, DataWorks' own refusal);
  (c) an invocation raised `RetryLater` (FC's retry signal) with a "deferred" record, and FC's
      retry (`EventBridge.publish`, which retries like FC's asynchronous invocation) then took
      it to (a) or (b).
Nothing lost: every attempt leaves a record for every instance. Nothing rerun twice.
"""

import itertools
import json
import socket
import threading
from pathlib import Path

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    ROTATED,
    failure_event,
    function_env,
    instance_records,
    make_function,
    make_instances,
    reruns,
    sample,
    seed_failed,
)
from dwrerun.job import Job, Mode
from localcloud.dataworks import DataWorksEmulator
from localcloud.dataworks.faults import ABSENT, FaultPlan
from localcloud.eventbridge import EventBridge

RERUN = "RerunTaskInstances"
GET = "GetTaskInstance"
LOG = "GetTaskInstanceLog"
OTHER_ID = FAILED_ID + 1
THIRD_ID = FAILED_ID + 2


# --- how an end state is judged ------------------------------------------------------------------


def carried_out(dataworks, instance_id: int) -> list:
    """RerunTaskInstances calls that reached DataWorks' backend and named this instance."""
    return [e for e in dataworks.journal.calls(RERUN) if instance_id in json.loads(e.params["Ids"])]


def record_for(invocation, instance_id: int) -> dict:
    (record,) = [r for r in instance_records(invocation) if r["instanceId"] == instance_id]
    return record


def end_state(dataworks, attempts, instance_id: int, first_run: int = 1) -> str:
    """'rerun' or 'not-rerun', after checking the instance is in exactly one allowed end state."""
    for n, attempt in enumerate(attempts):
        assert not attempt.timed_out, f"attempt {n} was killed by FC's timeout"
        record = record_for(attempt, instance_id)  # none lost: every attempt recorded it
        if attempt.error is not None:
            assert attempt.error["errorType"] == "RetryLater", attempt.error
            assert (record["decision"], record["reason"], record["success"]) == ("skip", "deferred", None)
            assert record["errorCode"] and record["message"]
            assert attempt.records[-1]["outcome"] == "retry"
    assert attempts[-1].error is None, "FC's retries ran out with the instance unfinished"
    final = record_for(attempts[-1], instance_id)
    run = dataworks.backend.instance(instance_id).run_number
    calls = carried_out(dataworks, instance_id)
    if run == first_run + 1:
        assert len(calls) == 1, f"{len(calls)} RerunTaskInstances calls carried out for one rerun"
        return "rerun"
    assert run == first_run, f"RunNumber went from {first_run} to {run}"
    assert final["success"] is not True and final["reason"] and final["message"]
    return "not-rerun"


class BetweenAttempts:
    """The function as EventBridge sees it, with the world changed after each failed attempt
    (a fault cleared, a token rotated), before FC's retry."""

    def __init__(self, fn, *changes):
        self.fn = fn
        self.changes = list(changes)

    def invoke(self, payload, request_id=None):
        invocation = self.fn.invoke(payload, request_id=request_id)
        if invocation.error is not None and self.changes:
            self.changes.pop(0)()
        return invocation


@pytest.fixture
def fn(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, DATAWORKS_READ_TIMEOUT="0.5") as function:
        yield function


def publish(fn, instance_id=FAILED_ID, *changes, **kwargs):
    target = BetweenAttempts(fn, *changes) if changes else fn
    return EventBridge(target).publish(failure_event(instance_id), **kwargs)


# --- transient faults: retried in the invocation, or by FC, and rerun exactly once --------------

# (action, fault settings, attempts FC makes). A count above pacing.MAX_ATTEMPTS (6) outlasts the
# first invocation, so it raises RetryLater and FC's retry finishes the job.
TRANSIENT = [
    pytest.param(GET, {"throttle": 3}, 1, id="throttled-reads"),
    pytest.param(RERUN, {"throttle": 3}, 1, id="throttled-writes"),
    pytest.param("*", {"throttle": 10}, 2, id="throttling-storm-outlasts-an-invocation"),
    pytest.param(RERUN, {"throttle": 8, "retry_after": 1}, 2, id="throttled-with-retry-after"),
    pytest.param(GET, {"server_error": 3}, 1, id="5xx-burst-on-reads"),
    pytest.param(RERUN, {"server_error": 3, "server_error_code": "InternalError"}, 1, id="5xx-burst-on-writes"),
    pytest.param(RERUN, {"server_error": 9}, 2, id="5xx-burst-outlasts-an-invocation"),
    pytest.param(GET, {"hang": 1}, 1, id="hung-read"),
    pytest.param(RERUN, {"hang": 1}, 1, id="hung-write-not-carried-out"),
    pytest.param(RERUN, {"hang": 1, "after_backend": True}, 1, id="hung-write-carried-out"),
    pytest.param(GET, {"reset": 2}, 1, id="reset-reads"),
    pytest.param(RERUN, {"reset": 2}, 1, id="reset-write-not-carried-out"),
    pytest.param(RERUN, {"reset": 1, "after_backend": True}, 1, id="reset-write-carried-out"),
    pytest.param(GET, {"malformed": 2}, 1, id="malformed-read"),
    pytest.param(RERUN, {"malformed": 1}, 1, id="malformed-write-not-carried-out"),
    pytest.param(RERUN, {"malformed": 1, "after_backend": True}, 1, id="malformed-write-carried-out"),
    pytest.param(RERUN, {"malformed": 8, "after_backend": True}, 1, id="malformed-write-carried-out-then-more"),
]


@pytest.mark.parametrize(("action", "fault", "fc_attempts"), TRANSIENT)
def test_a_transient_fault_ends_in_exactly_one_rerun(dataworks, fn, action, fault, fc_attempts):
    seed_failed(dataworks)
    dataworks.faults.set(action, **fault)
    attempts = publish(fn)
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"
    assert len(attempts) == fc_attempts
    final = record_for(attempts[-1], FAILED_ID)
    assert final["decision"] == "rerun" and final["success"] is True


def test_a_lost_answer_to_a_carried_out_rerun_is_confirmed_by_reading_not_by_resending(dataworks, fn):
    # The emulator can express "carried out, answer lost" (after_backend): the rerun is applied,
    # then the answer is a 200 with an HTML body. The function must read the instance back.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, malformed=1, after_backend=True)
    (attempt,) = publish(fn)
    record = record_for(attempt, FAILED_ID)
    assert record["success"] is True and "confirmed by GetTaskInstance" in record["message"]
    assert dataworks.journal.count(action=RERUN) == 1  # never sent again, not even refused
    # GetTask once (the node's own rerun settings, then cached for the instance), the log once,
    # never a second rerun
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", LOG, RERUN, GET]


def test_a_lost_answer_to_a_rerun_that_did_not_happen_is_resent_once(dataworks, fn):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, malformed=1)  # garbage answer, nothing carried out
    (attempt,) = publish(fn)
    assert end_state(dataworks, [attempt], FAILED_ID) == "rerun"
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", LOG, RERUN, GET, RERUN]  # the log is read once


def test_a_rerun_whose_answer_is_lost_and_then_reads_fail_until_the_deadline(dataworks, fn):
    seed_failed(dataworks)
    # First read answers; the rerun is carried out but its answer lost; the reads after it are
    # throttled until the invocation gives up (6 attempts), and answer again for FC's retry.
    dataworks.faults.set(RERUN, reset=1, after_backend=True)
    original_take = dataworks.faults.take

    # The emulator's counts cannot say "after the rerun": its fault plan is wrapped for that.
    def take(action):  # throttle the reads that come after the lost answer
        plan = original_take(action)
        if action == GET and dataworks.journal.count(action=RERUN) and dataworks.journal.count(action=GET) < 7:
            return FaultPlan(kind="throttle")
        return plan

    dataworks.faults.take = take
    first, retry = publish(fn)
    assert first.error["errorType"] == "RetryLater"
    deferred = record_for(first, FAILED_ID)
    assert deferred["message"] == (
        "DataWorks kept failing (Throttling.User; 6 attempts failed): Function Compute retries the invocation. "
        "A rerun request may have reached DataWorks; a retry reads the instance first."
    )
    assert end_state(dataworks, [first, retry], FAILED_ID) == "rerun"
    # The retry has no memory of the lost answer: it reads a Running instance and skips it.
    assert record_for(retry, FAILED_ID)["reason"] == "not-failed"


def test_a_lost_answer_then_a_non_failed_instance_at_the_same_run_names_its_own_request(dataworks, fn):
    # The rerun is carried out but its answer lost; the read after it finds the instance Running
    # at the same RunNumber (inferred: DataWorks may count the new run only once it starts).
    # Before: recorded not-failed as if someone else had acted, with no word of its own request.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, reset=1, after_backend=True)
    dataworks.faults.set(GET, answer_fields={"RunNumber": 1})
    (only,) = publish(fn)
    record = record_for(only, FAILED_ID)
    assert (record["decision"], record["reason"], record["runNumber"]) == ("skip", "not-failed", 1)
    assert "the rerun request this invocation sent (no clear answer: ConnectionError)" in record["message"]
    assert "may be what started it" in record["message"]
    assert record["errorCode"] == "ConnectionError"
    assert len(carried_out(dataworks, FAILED_ID)) == 1


def test_refused_connections_then_the_real_endpoint(dataworks, tmp_path):
    # Nobody listens on the port at first; then DataWorks comes up there before FC's retry.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = DataWorksEmulator(credentials=[CREDS], port=port)
    seed_failed(late)
    endpoint = f"http://127.0.0.1:{port}"
    with make_function(dataworks, tmp_path, DATAWORKS_ENDPOINT=endpoint) as fn:
        try:
            attempts = publish(fn, FAILED_ID, late.start)
        finally:
            late.stop()
    first = record_for(attempts[0], FAILED_ID)
    assert first["errorCode"] == "ConnectionError"
    assert end_state(late, attempts, FAILED_ID) == "rerun"
    assert len(dataworks.journal) == 0


# --- partial SuccessInfo: per-instance outcomes --------------------------------------------------


def test_partial_success_info_reruns_the_others_once_and_records_the_refusal(dataworks, fn):
    ids = [FAILED_ID, OTHER_ID, THIRD_ID]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    dataworks.faults.set(RERUN, partial_failure={OTHER_ID: "Instance is locked by another operation."})
    dataworks.faults.set(RERUN, reset=1)  # and the first try of the chunk is lost on the way
    inv = fn.invoke(json.dumps([failure_event(i) for i in ids]).encode())
    assert inv.error is None
    assert [end_state(dataworks, [inv], i) for i in ids] == ["rerun", "not-rerun", "rerun"]
    refused = record_for(inv, OTHER_ID)
    assert (refused["decision"], refused["success"]) == ("rerun", False)
    assert refused["message"] == "Instance is locked by another operation."


# --- credentials and clocks ----------------------------------------------------------------------


def test_an_sts_token_rotated_between_invocations(dataworks, fn):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    assert end_state(dataworks, publish(fn, FAILED_ID), FAILED_ID) == "rerun"
    dataworks.set_credentials([ROTATED])  # DataWorks accepts only the new token from now on
    fn.rotate_credentials(ROTATED)
    assert end_state(dataworks, publish(fn, OTHER_ID), OTHER_ID) == "rerun"


def test_a_token_that_expired_before_fc_rotated_it_is_retried_by_fc_with_the_new_one(dataworks, fn):
    # DataWorks already refuses the old token (InvalidSecurityToken.Expired) while this invocation
    # still holds it. Only a new invocation gets the new token: raise for FC, do not drop the event.
    seed_failed(dataworks)
    dataworks.set_credentials([ROTATED])
    attempts = publish(fn, FAILED_ID, lambda: fn.rotate_credentials(ROTATED))
    assert len(attempts) == 2
    assert record_for(attempts[0], FAILED_ID)["errorCode"] == "InvalidSecurityToken.Expired"
    assert dataworks.journal.count(code="InvalidSecurityToken.Expired") == 1  # not retried in vain
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"


@pytest.mark.parametrize("offset", [16 * 60, -16 * 60])
def test_a_request_refused_for_clock_skew_is_left_to_fcs_retry(dataworks, fn, offset):
    # InvalidTimeStamp.Expired: DataWorks refused the request before doing anything, because this
    # host's clock is off. Retrying inside the invocation cannot help (the clock does not change in
    # seconds); FC's retry may run on another instance, or after NTP corrected the clock.
    seed_failed(dataworks)
    dataworks.clock_offset = offset
    attempts = publish(fn, FAILED_ID, lambda: setattr(dataworks, "clock_offset", 0.0))
    assert record_for(attempts[0], FAILED_ID)["errorCode"] == "InvalidTimeStamp.Expired"
    assert dataworks.journal.count(code="InvalidTimeStamp.Expired") == 1
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"


def test_a_clock_skew_that_persists_exhausts_fcs_retries_with_a_record_each_time(dataworks, fn):
    seed_failed(dataworks)
    dataworks.clock_offset = 3600
    attempts = publish(fn)
    assert len(attempts) == 4  # the first try and FC's 3 retries
    for attempt in attempts:
        assert attempt.error["errorType"] == "RetryLater"
        record = record_for(attempt, FAILED_ID)
        assert record["errorCode"] == "InvalidTimeStamp.Expired"
        assert record["message"] == (  # retried at once by FC, never in the invocation
            "DataWorks kept failing (InvalidTimeStamp.Expired; only a new invocation can help): "
            "Function Compute retries the invocation."
        )
    assert dataworks.journal.calls() == [] and dataworks.backend.instance(FAILED_ID).run_number == 1


# --- duplicates and order ------------------------------------------------------------------------


def test_a_duplicate_delivery_reruns_once(dataworks, fn):
    seed_failed(dataworks)
    attempts = publish(fn, duplicate=True)
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"
    assert record_for(attempts[-1], FAILED_ID)["reason"] == "duplicate-event"


# On FC 3.0 two invocations at the same moment run on two instances, two processes that share no
# memory: these cases run on the process model (localcloud.fc.function), one process per instance.


def hold_reads(dataworks, parties: int = 2, skip: int = 0) -> None:
    """GetTaskInstance reads number skip+1 .. skip+parties are answered only once all of them have
    been read: each of those invocations sees the instance as it was before any of them could rerun
    it. The race two instances can run, made certain instead of likely."""
    barrier = threading.Barrier(parties, timeout=30)
    reads = itertools.count()
    original = dataworks.responses.dispatch

    def dispatch(action, params, refuse=None):
        answer = original(action, params, refuse)  # read first, then wait: the answers hold the old state
        if action == GET and skip <= next(reads) < skip + parties:
            barrier.wait()
        return answer

    dataworks.responses.dispatch = dispatch


def one_rerun_and_one_why_not(dataworks, finals) -> None:
    """Two final attempts for one failed run: DataWorks accepted exactly one rerun, and the other
    attempt's record says why it did not rerun."""
    assert all(inv.error is None for inv in finals)
    assert dataworks.backend.instance(FAILED_ID).run_number == 2  # exactly one rerun accepted
    assert len(carried_out(dataworks, FAILED_ID)) == 2  # both asked; DataWorks refused the second
    winner, loser = sorted((record_for(inv, FAILED_ID) for inv in finals), key=lambda r: r["success"] is not True)
    assert (winner["decision"], winner["success"]) == ("rerun", True)
    # DataWorks refused the second rerun (the instance is Running now); the function read the
    # instance again, saw RunNumber move on past the failed run, and says so.
    assert (loser["decision"], loser["success"], loser["reason"]) == ("skip", None, "already-rerun"), loser
    assert "past run 1" in loser["message"]


@pytest.mark.separate_process
def test_two_copies_handled_at_once_on_two_instances_rerun_once(dataworks, tmp_path):
    seed_failed(dataworks)
    hold_reads(dataworks)  # both copies read Failure before either reruns
    with make_instances(dataworks, tmp_path, reserved_concurrency=2) as fn:
        copies = EventBridge(fn).publish(failure_event(FAILED_ID), duplicate=True)
    assert len(copies) == 2 and copies[0].instance_id != copies[1].instance_id
    one_rerun_and_one_why_not(dataworks, copies)
    # The in-memory guard against a repeated event id (HandledEvents) lives in one instance: the
    # copy on the other instance never sees it.
    assert all(record_for(inv, FAILED_ID)["reason"] != "duplicate-event" for inv in copies)


@pytest.mark.separate_process
def test_a_copy_delivered_while_the_first_waits_for_fcs_retry_is_handled_once(dataworks, tmp_path):
    # The first copy raises RetryLater (DataWorks throttled all six tries); FC's retry of it and a
    # second copy then both read the instance before either reruns it.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, throttle=6)
    hold_reads(dataworks, skip=1)  # the first attempt's read passes; the next two wait for each other
    with make_instances(dataworks, tmp_path, reserved_concurrency=2) as fn:
        bridge = EventBridge(fn)
        (first,) = bridge.deliver(failure_event(FAILED_ID))
        fn.wait_for(lambda: first.attempts)  # the first attempt failed; FC's retry is under way
        (copy,) = bridge.deliver(failure_event(FAILED_ID))
        fn.drain()
    deferred, retry = first.attempts
    assert deferred.error["errorType"] == "RetryLater"
    assert record_for(deferred, FAILED_ID)["reason"] == "deferred"
    assert retry.request_id == deferred.request_id != copy.request_id
    one_rerun_and_one_why_not(dataworks, [retry, copy.final])


@pytest.mark.separate_process
def test_two_failure_events_for_one_instance_at_once_rerun_it_once(dataworks, tmp_path):
    # Two different event ids (say DataWorks and a replay) for the same failed run, at once, on
    # two instances: both read Failure; DataWorks refuses the second rerun of a Running instance.
    seed_failed(dataworks)
    hold_reads(dataworks)
    with make_instances(dataworks, tmp_path, reserved_concurrency=2) as fn:
        bridge = EventBridge(fn)
        handles = [h for n in (1, 2) for h in bridge.deliver(failure_event(FAILED_ID, f"evt-{n}"))]
        fn.drain()
    assert [len(h.attempts) for h in handles] == [1, 1]
    one_rerun_and_one_why_not(dataworks, [h.final for h in handles])


def test_another_copy_rerunning_between_the_read_and_the_rerun_is_recorded_already_rerun(dataworks, fn):
    # Two copies of one failure event on two FC instances (no shared memory): both read run 1
    # Failure; the other copy's rerun lands between this copy's read and its rerun. DataWorks
    # refuses this one (the instance is Running): read again, RunNumber moved on -> already-rerun.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, concurrent_rerun=1)
    attempts = publish(fn)
    assert len(attempts) == 1 and attempts[0].error is None
    record = record_for(attempts[0], FAILED_ID)
    assert (record["decision"], record["success"], record["reason"]) == ("skip", None, "already-rerun")
    assert "run 2" in record["message"] and "past run 1" in record["message"]
    assert record["runNumber"] == 2 and record["dataworksRequestId"]
    # Exactly one rerun started (the other copy's); this copy's call was refused, then checked.
    assert dataworks.backend.instance(FAILED_ID).run_number == 2
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", LOG, RERUN, GET]


def test_a_refusal_with_the_run_unchanged_stays_a_refused_rerun(dataworks, fn):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "Instance is locked by another operation."})
    (attempt,) = publish(fn)
    record = record_for(attempt, FAILED_ID)
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", False, "eligible")
    assert record["message"] == "Instance is locked by another operation."
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", LOG, RERUN, GET]  # checked, not resent
    assert dataworks.backend.instance(FAILED_ID).run_number == 1
    # the record names the refusing call, for DataWorks support
    (rerun_call,) = dataworks.journal.calls(RERUN)
    assert record["dataworksRequestId"] == rerun_call.request_id


def test_a_refusal_whose_explaining_read_fails_until_the_deadline_is_recorded_and_not_retried(dataworks, fn):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "Instance is locked by another operation."})
    original_take = dataworks.faults.take

    def take(action):  # every read after the refused rerun fails
        if action == GET and dataworks.journal.count(action=RERUN):
            return FaultPlan(kind="server_error")
        return original_take(action)

    dataworks.faults.take = take
    attempts = publish(fn)
    assert len(attempts) == 1 and attempts[0].error is None  # DataWorks' answer stands: no FC retry
    record = record_for(attempts[0], FAILED_ID)
    assert (record["decision"], record["success"]) == ("rerun", False)
    assert record["message"] == "Instance is locked by another operation."
    assert dataworks.journal.count(action=RERUN) == 1


def test_a_refusal_whose_explaining_read_is_refused_is_recorded_as_the_refusal(dataworks, fn):
    from localcloud.dataworks.exceptions import TaskInstanceNotFound

    seed_failed(dataworks)
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "Instance is locked by another operation."})
    original_get = dataworks.responses.get_task_instance

    def get_task_instance(params):  # the instance is gone by the time it is read again
        if dataworks.journal.count(action=RERUN):
            raise TaskInstanceNotFound(FAILED_ID)
        return original_get(params)

    dataworks.responses.get_task_instance = get_task_instance
    (attempt,) = publish(fn)
    record = record_for(attempt, FAILED_ID)
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", False, "eligible")
    assert record["message"] == "Instance is locked by another operation."


def test_the_http_path_records_a_rerun_someone_else_made_first_as_already_rerun(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, concurrent_rerun=1)
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(http_request(FAILED_ID))
    answer = json.loads(inv.result["body"])
    assert inv.result["statusCode"] == 200 and answer["SuccessInfo"] == {}
    assert answer["Skipped"][str(FAILED_ID)].startswith("already-rerun: already rerun by someone else")
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_a_success_event_after_the_failure_event_changes_nothing(dataworks, fn):
    seed_failed(dataworks)
    first = publish(fn)
    success = sample("dataworks-instance-succeeded.json")
    success["data"]["taskId"] = FAILED_ID
    late = EventBridge(fn).publish(success)
    assert end_state(dataworks, first + late, FAILED_ID) == "rerun"
    assert record_for(late[0], FAILED_ID)["reason"] == "not-a-failure"


def test_a_stale_copy_of_the_failure_event_after_the_rerun_failed_starts_no_second_rerun(dataworks, fn):
    # Before: the copy found the instance in Failure again (run 2 failed) and reran it a second
    # time for the one failure of run 1.
    seed_failed(dataworks)
    event = failure_event(FAILED_ID)
    first = EventBridge(fn).publish(event)
    assert record_for(first[0], FAILED_ID)["reason"] == "eligible"
    run_2 = dataworks.backend.finish(FAILED_ID, "Failure")  # the rerun failed too
    fn.new_instance()  # the copy lands on an instance with no memory of the event
    stale = EventBridge(fn).publish(event)
    record = record_for(stale[0], FAILED_ID)
    assert (record["decision"], record["reason"], record["runNumber"]) == ("skip", "already-rerun", 2)
    assert dataworks.backend.instance(FAILED_ID).run_number == 2
    # The event about run 2's failure is not stale: it reruns run 2 once.
    fresh = failure_event(FAILED_ID, "evt-run-2", finishTime=run_2.finished_time, modifyTime=run_2.modify_time)
    later = EventBridge(fn).publish(fresh)
    assert record_for(later[0], FAILED_ID)["reason"] == "eligible"
    assert dataworks.backend.instance(FAILED_ID).run_number == 3
    assert len(carried_out(dataworks, FAILED_ID)) == 2


def test_a_failure_event_after_the_rerun_succeeded_is_skipped(dataworks, fn):
    seed_failed(dataworks)
    dataworks.backend.script_runs(FAILED_ID, ["Success"])
    first = publish(fn)
    dataworks.backend.advance()  # run 2 succeeds
    fn.new_instance()  # the late copy lands on an instance with no memory of the event
    late = publish(fn)
    assert end_state(dataworks, first + late, FAILED_ID) == "rerun"
    assert record_for(late[0], FAILED_ID)["reason"] == "not-failed"
    assert dataworks.backend.instance(FAILED_ID).status == "Success"


# --- the invocation's deadline -------------------------------------------------------------------


def test_hung_calls_until_the_deadline_raise_retry_later_before_fcs_timeout(dataworks, tmp_path):
    # Real time passes here: every read hangs until the 0.5 s read timeout. With FC's timeout at
    # 2 s the function must give up and raise RetryLater itself, records written, not be killed.
    seed_failed(dataworks)
    dataworks.faults.set(GET, hang=None)
    with make_function(dataworks, tmp_path, timeout=2, DATAWORKS_READ_TIMEOUT="0.5") as fn:
        attempts = publish(fn, FAILED_ID, dataworks.faults.clear)
    first = attempts[0]
    assert not first.timed_out and first.error["errorType"] == "RetryLater"
    assert record_for(first, FAILED_ID)["errorCode"] == "ReadTimeout"
    assert first.records[-1]["kind"] == "summary"
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"


def test_a_hung_rerun_at_the_deadline_is_deferred_and_not_repeated(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, hang=None, after_backend=True)
    with make_function(dataworks, tmp_path, timeout=2, DATAWORKS_READ_TIMEOUT="1.5") as fn:
        attempts = publish(fn, FAILED_ID, dataworks.faults.clear)
    assert not attempts[0].timed_out and attempts[0].error["errorType"] == "RetryLater"
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun"


def test_backoff_never_waits_past_the_deadline(dataworks, tmp_path, fake_clock):
    # The clock seam: each backoff wait moves a fake clock on by what it would have slept.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, throttle=None, retry_after=1000)  # x-acs-retry-after is in ms (the SDK reads it so)
    with make_function(dataworks, tmp_path, timeout=3) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error["errorType"] == "RetryLater"
    # deadline = 3 s - 0.3 s margin: tries at 0 s, 1 s and 2 s; a fourth would start too late.
    assert dataworks.journal.count(action=RERUN, code="Throttling.User") == 3
    assert record_for(inv, FAILED_ID)["reason"] == "deferred"


# --- the failed run's log: a read that fails never holds a rerun back ------------------------------

TABLE_NOT_FOUND = (Path(__file__).parent / "logs" / "odps_sql_table_not_found.log").read_text(encoding="utf-8")

# (how the log read fails, settings, GetTaskInstanceLog calls made). The log says "a rerun cannot
# fix it"; every one of these must rerun anyway, and say in the record that no log was read.
LOG_READ_FAILS = [
    pytest.param(
        lambda dw: dw.backend.remove_log(FAILED_ID, 1), {}, 1, "InvalidTaskInstanceLog.NotFound", id="log-not-found"
    ),
    pytest.param(lambda dw: dw.faults.set(LOG, refuse=None), {}, 1, "ResourceNotAuthorized.Api", id="log-read-refused"),
    pytest.param(
        lambda dw: dw.faults.set(LOG, throttle=None), {}, 3, "Throttling.User", id="log-read-throttled-throughout"
    ),
    pytest.param(
        lambda dw: dw.faults.set(LOG, server_error=None), {}, 3, "ServiceUnavailable", id="log-read-5xx-throughout"
    ),
    pytest.param(
        lambda dw: dw.faults.set(LOG, malformed=None),
        {},
        # The emulator closes the connection after the HTML body: a retry on the pooled connection
        # may fail before it reaches DataWorks, so DataWorks sees 1 to 3 of the 3 attempts.
        None,
        ("MalformedAnswer", "ConnectionError"),
        id="log-read-malformed-throughout",
    ),
    pytest.param(
        lambda dw: dw.faults.set(LOG, hang=None),
        {"DATAWORKS_LOG_TIMEOUT": "0.3"},
        3,
        "ReadTimeout",
        id="log-read-hangs",
    ),
    pytest.param(
        lambda dw: dw.backend.remove_log(FAILED_ID, 1),
        {"RERUN_RULES_DEFAULT": "skip"},
        1,
        "InvalidTaskInstanceLog.NotFound",
        id="log-not-found-with-default-skip",
    ),
]


@pytest.mark.parametrize(("fail", "env", "calls", "code"), LOG_READ_FAILS)
def test_a_log_that_cannot_be_read_never_holds_a_rerun_back(dataworks, tmp_path, fail, env, calls, code):
    seed_failed(dataworks, task_type="ODPS_SQL")
    dataworks.backend.set_log(FAILED_ID, 1, TABLE_NOT_FOUND)
    fail(dataworks)
    with make_function(dataworks, tmp_path, DATAWORKS_READ_TIMEOUT="0.5", **env) as fn:
        attempts = publish(fn)
    assert end_state(dataworks, attempts, FAILED_ID) == "rerun" and len(attempts) == 1
    record = record_for(attempts[0], FAILED_ID)
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert (record["rule"], record["failureClass"], record["matchedLine"]) == (None, "unknown", None)
    codes = code if isinstance(code, tuple) else (code,)
    assert any(f"could not be read ({c}" in record["message"] for c in codes), record["message"]
    if calls is None:
        assert 1 <= dataworks.journal.count(action=LOG) <= 3 and "3 attempt(s)" in record["message"]
    else:
        assert dataworks.journal.count(action=LOG) == calls


def test_a_log_read_throttled_once_is_read_on_the_next_attempt_and_decides(dataworks, fn):
    seed_failed(dataworks, task_type="ODPS_SQL")
    dataworks.backend.set_log(FAILED_ID, 1, TABLE_NOT_FOUND)
    dataworks.faults.set(LOG, throttle=1)
    attempts = publish(fn)
    assert end_state(dataworks, attempts, FAILED_ID) == "not-rerun"
    record = record_for(attempts[0], FAILED_ID)
    assert (record["reason"], record["rule"]) == ("not-retryable", "maxcompute-table-not-found")
    assert dataworks.journal.count(action=LOG) == 2 and len(dataworks.journal.calls(LOG)) == 1


def test_a_log_read_hung_until_the_deadline_leaves_time_for_the_rerun(dataworks, tmp_path):
    # Real time passes here: the log read hangs; with FC's timeout at 3 s the read gives up in
    # time for the rerun call, which still goes out before the deadline.
    seed_failed(dataworks, task_type="ODPS_SQL")
    dataworks.backend.set_log(FAILED_ID, 1, TABLE_NOT_FOUND)
    dataworks.faults.set(LOG, hang=None)
    with make_function(dataworks, tmp_path, timeout=3, DATAWORKS_READ_TIMEOUT="0.5") as fn:
        attempts = publish(fn)
    assert not attempts[0].timed_out and end_state(dataworks, attempts, FAILED_ID) == "rerun"
    record = record_for(attempts[0], FAILED_ID)
    assert record["rule"] is None and "could not be read (ReadTimeout" in record["message"]


# --- the same faults on the HTTP path ------------------------------------------------------------


def http_request(*ids) -> bytes:
    event = sample("fc-http-rerun-request.json")
    event["body"] = json.dumps({"Ids": list(ids)})
    return json.dumps(event).encode()


def test_the_http_path_confirms_a_carried_out_rerun_instead_of_resending_it(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, reset=1, after_backend=True)
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(http_request(FAILED_ID))
    answer = json.loads(inv.result["body"])
    assert inv.result["statusCode"] == 200 and answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert end_state(dataworks, [inv], FAILED_ID) == "rerun"


def test_the_http_path_answers_503_for_clock_skew_and_reruns_nothing(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.clock_offset = -3600
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(http_request(FAILED_ID))
    answer = json.loads(inv.result["body"])
    assert inv.result["statusCode"] == 503 and inv.result["headers"]["Retry-After"]
    assert "InvalidTimeStamp.Expired" in answer["Message"]
    assert answer["Skipped"][str(FAILED_ID)].startswith("deferred")
    assert dataworks.journal.calls() == []


# --- FC's InvokeFunction misbehaving, when a rerun is to be scheduled -----------------------------
# rerun.run called directly, in this process, with the emulator's DataWorks over real HTTP and a
# fake FC client (tests/test_scheduled_reruns.py runs the same through the local FC OpenAPI, in
# instance processes that mutation testing cannot see into).

SCHEDULED_AT = 1_790_000_000.0  # the clock a record's dueAt is computed from (schedule.clock)
DUE_AT = "2026-09-21T14:14:20Z"  # SCHEDULED_AT + 60 s
TASK = f"dwrerun-{FAILED_ID}-run-1"


class FakeFunctionCompute:
    """The function's FC client: each InvokeFunction takes the next answer (an InvokeFunctionError
    to raise; None, or none left, accepts) and is journaled."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def invoke_async(self, function_name, payload, *, delay, task_id, timeout):
        call = {"function": function_name, "payload": json.loads(payload), "delay": delay, "task": task_id}
        self.calls.append({**call, "timeout": timeout})
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return "fc-request-1"


def fc_error(code, *, duplicate=False, transient=False, ambiguous=False):
    from dwrerun.function_compute import InvokeFunctionError

    return InvokeFunctionError(code, f"{code} from FC", duplicate=duplicate, transient=transient, ambiguous=ambiguous)


@pytest.fixture
def run_directly(dataworks, mocker):
    """run(targets, functions=..., **job fields) -> the records of rerun.run's outcomes, on the event path with
    scheduling on (a 120 s base: every first failure waits 60 s, the jitter at its floor)."""
    from dwrerun import records, rerun, schedule
    from dwrerun.config import Settings
    from dwrerun.dataworks import Credentials, client_for

    mocker.patch.object(schedule, "clock", lambda: SCHEDULED_AT)
    mocker.patch.object(schedule, "uniform", lambda low, high: low)

    def run(targets, functions=None, env=None, **fields):
        from dwrerun import pacing

        # The storm guard is off: these pin the pipeline with an FC fake that only invokes
        # (tests/test_storm_cloud.py pins the guard on the local cloud).
        values = {"RERUN_BACKOFF_BASE_SECONDS": "120", "RERUN_READ_LOGS": "false", "RERUN_STORM_THRESHOLD": "0"}
        values.update(env or {})
        settings = Settings.from_env(function_env(dataworks, **values))
        client = client_for(Credentials(*CREDS), settings, "cn-hangzhou")
        values = dict(
            mode=Mode.EVENT,
            request_id="req-1",
            function_name="dwrerun-event",
            settings=settings,
            deadline=pacing.clock() + 30,
        )
        values.update(fields)
        job = Job(**values)
        try:
            outcomes = rerun.run(job, targets, client, functions)
        except rerun.RetryLater as exc:
            exc.records = [records.instance_record(o, job.origin) for o in exc.outcomes]  # what it would write
            raise
        return [records.instance_record(o, job.origin) for o in outcomes]

    return run


def event_target(instance_id=FAILED_ID):
    from dwrerun.job import Target

    return Target(instance_id, f"evt-{instance_id}")


def test_a_scheduled_rerun_is_recorded_with_its_run_delay_due_time_and_fc_task(dataworks, run_directly):
    seed_failed(dataworks)
    fc = FakeFunctionCompute()
    (record,) = run_directly([event_target()], lambda: fc)
    assert (record["decision"], record["success"], record["reason"]) == ("scheduled", None, "eligible")
    assert record["message"] == f"run 1 failed: rerun as run 2 in 60 s, at about {DUE_AT} (FC async task {TASK})"
    assert (record["delaySeconds"], record["dueAt"], record["asyncTaskId"]) == (60, DUE_AT, TASK)
    assert (record["instanceId"], record["eventId"], record["runNumber"]) == (FAILED_ID, f"evt-{FAILED_ID}", 1)
    assert (record["trigger"], record["requestId"], record["scheduleErrorCode"]) == ("eventbridge", "req-1", None)
    assert record["attempts"] == 3  # GetTaskInstance, GetTask, InvokeFunction
    (call,) = fc.calls
    assert (call["function"], call["delay"], call["task"]) == ("dwrerun-event", 60, TASK)
    assert call["timeout"] == 2.0  # DATAWORKS_READ_TIMEOUT: far from the deadline, not cut short
    assert call["payload"] == {
        "scheduledRerun": {
            "instanceId": FAILED_ID,
            "failedRunNumber": 1,
            "eventId": f"evt-{FAILED_ID}",
            "rule": None,
            "dueAt": DUE_AT,
            "asyncTaskId": TASK,
        }
    }
    assert reruns(dataworks) == []


def test_fcs_409_after_an_unclear_first_request_confirms_that_request(dataworks, run_directly):
    # The first InvokeFunction's answer was lost (it may have queued the task); the retry's 409
    # says it did: scheduled, not `already-scheduled` by a copy.
    seed_failed(dataworks)
    fc = FakeFunctionCompute(
        fc_error("RequestTimeout", transient=True, ambiguous=True), fc_error("Conflict", duplicate=True)
    )
    (record,) = run_directly([event_target()], lambda: fc)
    assert (record["decision"], record["reason"], record["asyncTaskId"]) == ("scheduled", "eligible", TASK)
    assert record["message"] == (
        f"run 1 failed: rerun as run 2 in 60 s, at about {DUE_AT} (FC async task {TASK}); "
        "FC's 409 confirms the earlier request"
    )
    assert [c["task"] for c in fc.calls] == [TASK, TASK]


def test_fcs_409_to_a_first_request_means_a_copy_scheduled_it(dataworks, run_directly):
    seed_failed(dataworks)
    fc = FakeFunctionCompute(fc_error("Conflict", duplicate=True))
    (record,) = run_directly([event_target()], lambda: fc)
    assert (record["decision"], record["reason"], record["asyncTaskId"]) == ("skip", "already-scheduled", TASK)
    assert record["message"] == (
        f"the rerun of run 1 is already scheduled (FC async task {TASK} exists: a copy of this failure got there first)"
    )
    assert (record["delaySeconds"], record["dueAt"]) == (None, None)
    assert reruns(dataworks) == []


@pytest.mark.parametrize(
    ("functions", "code", "why"),
    [
        pytest.param("refusing", "AccessDenied", "AccessDenied from FC", id="fc-refuses"),
        pytest.param(None, "ConfigError", "this invocation cannot schedule (no FC client)", id="no-fc-client"),
    ],
)
def test_fc_refusing_to_schedule_for_good_reruns_at_once_and_says_why(dataworks, run_directly, functions, code, why):
    seed_failed(dataworks)
    fc = FakeFunctionCompute(fc_error("AccessDenied"))
    (record,) = run_directly([event_target()], (lambda: fc) if functions else None)
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", True, "eligible")
    assert record["message"].startswith(f"InvokeFunction refused ({code}: {why}): rerun at once instead. ")
    assert record["scheduleErrorCode"] == code
    assert (record["delaySeconds"], record["dueAt"], record["asyncTaskId"]) == (None, None, None)
    assert len(fc.calls) == (1 if functions else 0)
    (call,) = reruns(dataworks)
    assert json.loads(call.params["Ids"]) == [FAILED_ID]


def test_fc_failing_through_every_attempt_defers_and_names_function_compute(dataworks, run_directly):
    from dwrerun.rerun import RetryLater

    seed_failed(dataworks)
    fc = FakeFunctionCompute(*[fc_error("ResourceExhausted", transient=True)] * 10)
    with pytest.raises(RetryLater) as raised:
        run_directly([event_target()], lambda: fc)
    cause = "Function Compute (InvokeFunction) kept failing (ResourceExhausted; 6 attempts failed)"
    assert str(raised.value) == cause
    assert raised.value.error.code == "ResourceExhausted"
    (record,) = raised.value.records
    assert (record["decision"], record["reason"], record["errorCode"]) == ("skip", "deferred", "ResourceExhausted")
    assert record["message"] == f"{cause}: Function Compute retries the invocation."
    assert (record["delaySeconds"], record["dueAt"]) == (None, None)  # planned, never scheduled
    assert len(fc.calls) == 6 and reruns(dataworks) == []


def test_dataworks_failing_through_every_attempt_over_http_says_try_again(dataworks, run_directly):
    from dwrerun.rerun import RetryLater

    seed_failed(dataworks)
    dataworks.faults.set(GET, server_error=None)
    with pytest.raises(RetryLater) as raised:
        run_directly([event_target()], mode=Mode.IDS)
    cause = "DataWorks kept failing (ServiceUnavailable; 6 attempts failed)"
    assert str(raised.value) == cause
    (record,) = raised.value.records
    assert record["message"] == f"{cause}: not rerun: try again."
    assert (record["reason"], record["errorCode"]) == ("deferred", "ServiceUnavailable")
    assert record["dataworksRequestId"] == [e for e in dataworks.journal.entries() if e.action == GET][-1].request_id


# --- DataWorks' daily limit: the whole record, with and without a request that may have landed ------

DAILY_LIMIT = (
    "not rerun: the daily limit of DataWorks OpenAPI calls is used up (Throttling.Api.Risk); it does not clear "
    "within minutes, so this is not retried. Rerun it over HTTP once the limit clears."
)


def test_the_daily_limit_records_every_unfinished_instance_after_one_already_recorded(dataworks, fn):
    # The first instance of the delivery is recorded (not failed) before the second meets the
    # limit: the quota records must go on past it to the second (before, a `break` there would
    # have left the second unrecorded, and the invocation looping forever).
    seed_failed(dataworks, status="Success")
    seed_failed(dataworks, OTHER_ID)
    dataworks.quota(daily_limit=4)  # both reads, GetTask and the log; the rerun is refused
    inv = fn.invoke(json.dumps([failure_event(FAILED_ID), failure_event(OTHER_ID)]).encode())
    assert inv.error is None
    first, other = instance_records(inv)
    assert (first["reason"], other["reason"]) == ("not-failed", "quota-exhausted")
    assert other["message"] == DAILY_LIMIT  # nothing was sent: no word of a request that may have landed
    assert (other["errorCode"], other["success"]) == ("Throttling.Api.Risk", None)


def test_the_daily_limit_after_a_lost_rerun_answer_says_the_request_may_have_landed(dataworks, fn):
    seed_failed(dataworks)
    dataworks.quota(daily_limit=4)  # the reads, the rerun (carried out, answer lost); the re-read is refused
    dataworks.faults.set(RERUN, reset=1, after_backend=True)
    (record,) = instance_records(fn.invoke(json.dumps(failure_event(FAILED_ID)).encode()))
    assert record["message"] == f"{DAILY_LIMIT} A rerun request may have reached DataWorks before the limit."


def test_the_daily_limit_met_by_get_task_records_the_instance_and_sends_nothing_more(dataworks, fn):
    # GetTask (does DataWorks rerun the node itself?) is the call that meets the limit: the
    # quota watch must see it there too, and end the work with the quota record.
    seed_failed(dataworks)
    dataworks.quota(daily_limit=1)  # GetTaskInstance passes; GetTask is refused
    inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error is None  # no retry helps for hours: FC must not retry
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", "quota-exhausted", None)
    assert record["message"] == DAILY_LIMIT
    assert record["errorCode"] == "Throttling.Api.Risk"
    assert [(e.action, e.code) for e in dataworks.journal] == [(GET, None), ("GetTask", "Throttling.Api.Risk")]


# --- the delayed invocation (Target.scheduled), in-process -----------------------------------------


def delayed_target(rule=None, event_id=f"evt-{FAILED_ID}"):
    from dwrerun.job import Target
    from dwrerun.schedule import ScheduledRerun

    scheduled = ScheduledRerun(FAILED_ID, failed_run_number=1, due_at=DUE_AT, event_id=event_id, rule=rule)
    return Target(FAILED_ID, event_id, scheduled=scheduled)


@pytest.mark.parametrize(
    ("event_id", "named"), [(f"evt-{FAILED_ID}", f"evt-{FAILED_ID}"), (None, "(RawData)")], ids=["event", "rawdata"]
)
def test_a_delayed_invocation_reruns_with_a_comment_naming_its_task_and_reads_nothing_again(
    dataworks, run_directly, event_id, named
):
    # The rules decided, on this failed run's log, when the rerun was scheduled; DataWorks' own
    # auto-rerun was checked then too: the delayed invocation reads the instance only.
    from dwrerun import rules

    seed_failed(dataworks)
    fc = FakeFunctionCompute()
    env = {"RERUN_READ_LOGS": "true"}
    (record,) = run_directly([delayed_target("oom-retry", event_id)], lambda: fc, env=env, rules=rules.load())
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", True, "eligible")
    assert (record["asyncTaskId"], record["dueAt"], record["rule"]) == (TASK, DUE_AT, "oom-retry")
    assert (record["delaySeconds"], record["scheduleErrorCode"], record["eventId"]) == (None, None, event_id)
    assert [e.action for e in dataworks.journal] == [GET, RERUN] and fc.calls == []
    (call,) = reruns(dataworks)
    assert call.params["Comment"] == (
        f"[dwrerun-event: scheduled rerun (FC async task {TASK}, due {DUE_AT}) after failure event {named}; "
        "run 2 of at most 4]"
    )
    assert record["dataworksRequestId"] == call.request_id


def test_a_delayed_invocation_finding_the_run_moved_on_reruns_nothing_and_names_its_task(dataworks, run_directly):
    seed_failed(dataworks, run_number=2)  # rerun by hand while the rerun waited
    (record,) = run_directly([delayed_target()], None, use_latest_config=True)
    assert (record["decision"], record["success"], record["reason"]) == ("skip", None, "already-rerun")
    assert record["useLatestConfig"] is None  # a skip sent nothing with or without it
    assert (record["asyncTaskId"], record["dueAt"], record["runNumber"]) == (TASK, DUE_AT, 2)
    assert reruns(dataworks) == []


def test_a_rule_that_sets_the_delay_is_named_in_the_record_and_the_delayed_invocations_payload(dataworks, run_directly):
    from dwrerun import rules

    seed_failed(dataworks)
    log = (Path(__file__).parent / "logs" / "odps_sql_lock_conflict.log").read_text(encoding="utf-8")
    dataworks.backend.set_log(FAILED_ID, 1, log)
    fc = FakeFunctionCompute()
    # A 1000 s base would wait 500 s for a first failure: the rule's 60 s delay hint wins over it.
    env = {"RERUN_READ_LOGS": "true", "RERUN_BACKOFF_BASE_SECONDS": "1000"}
    (record,) = run_directly([event_target()], lambda: fc, env=env, rules=rules.load())
    assert (record["decision"], record["rule"], record["delaySeconds"]) == ("scheduled", "maxcompute-lock-conflict", 60)
    assert record["dueAt"] == DUE_AT  # SCHEDULED_AT + 60 s
    assert (record["failureClass"], record["matchedLine"]) == (
        "retryable",
        "FAILED: ODPS-0110061:Failed to run ddltask - SimpleLock conflict failure, add partition is already on-going",
    )
    (call,) = fc.calls
    assert call["delay"] == 60
    assert call["payload"]["scheduledRerun"]["rule"] == "maxcompute-lock-conflict"


# --- what DataWorks' operation log shows for each kind of rerun (RerunTaskInstances' Comment) -----

COMMENTS = [
    pytest.param(
        {},
        "[dwrerun-event: automatic rerun after failure event evt-0, evt-1, evt-2 and 2 more, FC request req-1; "
        "run 2 of at most 4]",
        id="event-with-more-than-three-events",
    ),
    pytest.param(
        {"targets": 3},
        "[dwrerun-event: automatic rerun after failure event evt-0, evt-1, evt-2; run 2 of at most 4]",
        id="event-with-three-events",
    ),
    pytest.param(
        {"mode": Mode.IDS, "comment": "upstream fixed", "use_latest_config": True},
        "upstream fixed [dwrerun-event: manual rerun over HTTP, FC request req-1, run 2, with the latest configuration]",
        id="manual-with-comment-and-latest-config",
    ),
    pytest.param(
        {"mode": Mode.IDS},
        "[dwrerun-event: manual rerun over HTTP, FC request req-1, run 2]",
        id="manual-plain",
    ),
    pytest.param(
        {"mode": Mode.FILTER, "origin_request_id": "req-0"},
        "[dwrerun-event: bulk rerun by filter over HTTP, FC request req-0 (continued in req-1), run 2]",
        id="bulk-continued",
    ),
    pytest.param(
        {"mode": Mode.FILTER, "origin_request_id": "req-1", "use_latest_config": False},
        "[dwrerun-event: bulk rerun by filter over HTTP, FC request req-1, run 2]",
        id="bulk-first-round",
    ),
]


@pytest.mark.parametrize(("fields", "comment"), COMMENTS)
def test_the_rerun_comment_says_who_reran_why_and_which_run_it_starts(dataworks, run_directly, fields, comment):
    from dwrerun.job import Target

    fields = dict(fields)
    ids = [FAILED_ID + n for n in range(fields.pop("targets", 5))]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    targets = [Target(instance_id, f"evt-{n}") for n, instance_id in enumerate(ids)]
    records = run_directly(targets, env={"RERUN_BACKOFF_BASE_SECONDS": "0"}, **fields)
    assert [r["success"] for r in records] == [True] * len(ids)
    (call,) = reruns(dataworks)
    assert call.params["Comment"] == comment
    assert [r["useLatestConfig"] for r in records] == [fields.get("use_latest_config")] * len(ids)
    for record in records:  # what the records carry of the request, and that each call was timed
        assert (record["comment"], record["originRequestId"]) == (
            fields.get("comment"),
            fields.get("origin_request_id"),
        )
        assert record["lookupMs"] is not None and record["rerunMs"] is not None


def test_an_event_without_an_id_is_named_rawdata_in_the_comment(dataworks, run_directly):
    from dwrerun.job import Target

    seed_failed(dataworks)
    run_directly([Target(FAILED_ID)], env={"RERUN_BACKOFF_BASE_SECONDS": "0"})
    (call,) = reruns(dataworks)
    assert (
        call.params["Comment"] == "[dwrerun-event: automatic rerun after failure event (RawData); run 2 of at most 4]"
    )


def test_a_dry_run_on_the_event_path_says_how_long_the_rerun_would_wait(dataworks, run_directly):
    seed_failed(dataworks)
    fc = FakeFunctionCompute()
    (record,) = run_directly([event_target()], lambda: fc, dry_run=True)
    assert (record["decision"], record["reason"], record["success"]) == ("dry-run", "dry-run", None)
    assert record["message"] == f"dry run: run 1 Failure: rerun as run 2 (would wait 60 s, until {DUE_AT})"
    assert (record["delaySeconds"], record["dueAt"], record["asyncTaskId"]) == (60, DUE_AT, None)
    assert fc.calls == [] and reruns(dataworks) == []


def test_one_instance_whose_schedule_failed_does_not_hold_back_the_next(dataworks, run_directly, mocker):
    # Two failures to schedule; FC throttles the first InvokeFunction, and no retry fits in the
    # invocation (the backoff, the randomness seam, draws 40 s of the 30 left). The second
    # instance's rerun is still scheduled in the same pass; only the first is left to FC's retry.
    from dwrerun import pacing
    from dwrerun.rerun import RetryLater

    mocker.patch.object(pacing, "uniform", lambda low, high: 40.0)
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    fc = FakeFunctionCompute(fc_error("ResourceThrottled", transient=True))
    with pytest.raises(RetryLater) as raised:
        run_directly([event_target(), event_target(OTHER_ID)], lambda: fc)
    first, second = raised.value.records
    assert (first["reason"], first["errorCode"]) == ("deferred", "ResourceThrottled")
    assert (second["decision"], second["asyncTaskId"]) == ("scheduled", f"dwrerun-{OTHER_ID}-run-1")
    assert [c["task"] for c in fc.calls] == [TASK, f"dwrerun-{OTHER_ID}-run-1"]


def test_a_lost_answer_then_an_unfinished_instance_at_the_same_run_names_its_own_request(dataworks, tmp_path):
    # An operator's rerun by ids over HTTP: DataWorks carries it out, but SuccessInfo leaves the id
    # out; the read after it finds the instance Running at the same RunNumber (inferred: DataWorks
    # may count the new run only once it starts). A manual rerun skips an unfinished instance as
    # not-finished; the record says its own request may be what started it, and why it could not tell.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, success_info={FAILED_ID: ABSENT})
    dataworks.faults.set(GET, answer_fields={"RunNumber": 1})
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(http_request(FAILED_ID))
    assert inv.result["statusCode"] == 200
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["runNumber"]) == ("skip", "not-finished", 1)
    assert record["message"] == (
        "the instance is Running: only finished instances are rerun; it is still at run 1, so the rerun "
        "request this invocation sent (no clear answer: MissingSuccessInfo) may be what started it"
    )
    assert record["errorCode"] == "MissingSuccessInfo"
    assert len(carried_out(dataworks, FAILED_ID)) == 1
