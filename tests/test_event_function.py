"""The event function end to end: sample events in, through FC's harness, against the emulator."""

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    FROZEN_ID,
    FUNCTION_DIR,
    PROJECT_ID,
    ROTATED,
    TASK_ID,
    failure_event,
    instance_records,
    make_function,
    reruns,
    sample,
    sample_bytes,
    seed_failed,
)
from dwrerun import continuation, schedule
from dwrerun.event_function import HandledEvents
from dwrerun.invocation import Invocation
from localcloud.fc import Function, FunctionComputeApi


def test_a_failure_event_reruns_the_instance_and_records_success_info(dataworks, event_function):
    # GIVEN a failed Prod instance and its failure event
    seed_failed(dataworks)
    failed_at = dataworks.backend.instance(FAILED_ID).finished_time
    assert failed_at
    # WHEN EventBridge delivers the sample event
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    # THEN it is rerun once, with a comment saying who and why, and one record tells the outcome
    assert inv.error is None
    instance = dataworks.backend.instance(FAILED_ID)
    assert (instance.status, instance.run_number) == ("Running", 2)
    (call,) = reruns(dataworks)
    assert json.loads(call.params["Ids"]) == [FAILED_ID]
    assert "dwrerun-event" in call.params["Comment"]
    assert "0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01" in call.params["Comment"]
    assert "run 2 of at most 4" in call.params["Comment"]
    (record,) = instance_records(inv)
    assert record["decision"] == "rerun" and record["success"] is True
    assert record["instanceId"] == FAILED_ID and record["trigger"] == "eventbridge"
    assert record["requestId"] == inv.request_id
    assert record["eventId"] == "0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01"
    assert (record["runNumber"], record["projectId"], record["taskId"]) == (1, PROJECT_ID, TASK_ID)
    assert record["taskName"] == "ods_orders_di"
    assert record["finishedTime"] == failed_at  # the failed run's end: the dashboard's failure-to-rerun
    summary = inv.records[-1]
    assert summary["kind"] == "summary" and summary["rerun"] == 1 and summary["rerunSucceeded"] == 1
    assert inv.result["rerun"] == 1 and inv.result["outcomes"][0]["success"] is True
    json.dumps(inv.result)  # the return value is JSON-serialisable


@pytest.mark.parametrize(
    ("fields", "env", "reason"),
    [
        ({"status": "Success"}, {}, "not-failed"),
        ({"run_number": 4}, {}, "cap-reached"),
        ({"rerun_mode": "AllDenied"}, {}, "rerun-denied"),
        ({"trigger_recurrence": "Pause"}, {}, "paused"),
        ({"project_env": "Dev"}, {}, "wrong-environment"),
        ({}, {"RERUN_PROJECT_IDS": "1,2"}, "project-not-allowed"),
        ({}, {"RERUN_EXCLUDE_TASK_IDS": str(TASK_ID)}, "task-excluded"),
    ],
)
def test_each_guard_skips_with_a_recorded_reason_and_no_rerun(dataworks, tmp_path, fields, env, reason):
    seed_failed(dataworks, **fields)
    with make_function(dataworks, tmp_path, **env) as fn:
        # The sample about a run that ended now: the sample's own finishTime is older than the
        # run 4 seeded here started, which would make it a stale copy (already-rerun).
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error is None
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", reason, None)
    assert record["message"]
    assert reruns(dataworks) == []


def test_a_frozen_instance_is_skipped_from_the_event_alone(dataworks, event_function):
    seed_failed(dataworks, FROZEN_ID)  # reads Normal: the event's taskType 2 is what says frozen
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed-frozen.json"))
    (record,) = instance_records(inv)
    assert record["reason"] == "paused"
    assert reruns(dataworks) == []


def test_fail_rerun_fail_stops_exactly_at_the_cap(dataworks, event_function):
    # Every run fails. DataWorks sends a failure event after each; the function reruns until the
    # instance has run RERUN_MAX_RERUNS + 1 = 4 times, then records that reruns are exhausted.
    seed_failed(dataworks)
    dataworks.backend.script_runs(FAILED_ID, ["Failure"] * 10)
    decisions = []
    for n in range(6):
        inv = event_function.invoke(json.dumps(failure_event(FAILED_ID, f"evt-run-{n}")).encode())
        (record,) = instance_records(inv)
        decisions.append(record["reason"])
        dataworks.backend.advance()
    assert decisions == ["eligible", "eligible", "eligible", "cap-reached", "cap-reached", "cap-reached"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 4
    assert len(reruns(dataworks)) == 3


def test_a_duplicate_delivery_causes_one_rerun(dataworks, event_function):
    seed_failed(dataworks)
    first = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    second = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(first)[0]["decision"] == "rerun"
    assert instance_records(second)[0]["reason"] == "duplicate-event"
    assert len(reruns(dataworks)) == 1


def test_a_duplicate_on_a_cold_instance_is_stopped_by_the_status_guard(dataworks, event_function):
    seed_failed(dataworks)
    event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    event_function.new_instance()  # the copy lands on another instance, which has no memory of it
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(inv)[0]["reason"] == "not-failed"
    assert len(reruns(dataworks)) == 1


def test_throttling_then_success_reruns_once(dataworks, event_function):
    seed_failed(dataworks)
    dataworks.faults.set("GetTaskInstance", throttle=2)
    dataworks.faults.set("RerunTaskInstances", throttle=2)
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["decision"] == "rerun" and record["success"] is True
    # 3 GetTaskInstance, 1 GetTask (the node's own rerun settings), 1 log read, 3 writes: a throttled
    # write is resent without a re-read, and the failed run's log is read once
    assert record["attempts"] == 8
    assert len(reruns(dataworks)) == 1
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_a_persistent_5xx_raises_for_fc_to_retry_and_records_no_success(dataworks, event_function):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", server_error=None)  # every call
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error["errorType"] == "RetryLater"
    (record,) = instance_records(inv)
    assert record["decision"] == "skip" and record["reason"] == "deferred" and record["success"] is None
    assert record["errorCode"]
    assert not any(r.get("success") is True for r in inv.records)
    assert inv.records[-1]["outcome"] == "retry"
    # FC retries the invocation; once DataWorks recovers the retry completes it, once.
    dataworks.faults.clear()
    retry = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(retry)[0]["success"] is True
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_partial_success_info_failures_are_recorded_per_instance(dataworks, tmp_path):
    ids = [FAILED_ID, FAILED_ID + 1, FAILED_ID + 2]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    dataworks.faults.set("RerunTaskInstances", partial_failure={FAILED_ID + 1: "Instance is locked."})
    batch = [failure_event(i) for i in ids]
    with make_function(dataworks, tmp_path) as fn:
        inv = fn.invoke(json.dumps(batch).encode())
    assert inv.error is None
    by_id = {r["instanceId"]: r for r in instance_records(inv)}
    assert [by_id[i]["success"] for i in ids] == [True, False, True]
    assert by_id[FAILED_ID + 1]["message"] == "Instance is locked."
    assert by_id[FAILED_ID + 1]["decision"] == "rerun"


def test_rawdata_delivery_reruns(dataworks, event_function):
    seed_failed(dataworks)
    inv = event_function.invoke(json.dumps(sample("dataworks-instance-failed.json")["data"]).encode())
    (record,) = instance_records(inv)
    assert record["success"] is True and record["eventId"] is None


def test_an_array_of_events_is_chunked_and_each_gets_its_record(dataworks, tmp_path):
    ids = [FAILED_ID + n for n in range(5)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id, run_number=2)
    batch = [failure_event(i) for i in ids] + [sample("dataworks-instance-succeeded.json")]
    with make_function(dataworks, tmp_path, RERUN_CHUNK_SIZE=2) as fn:
        inv = fn.invoke(json.dumps(batch).encode())
    records = instance_records(inv)
    assert sorted(r["instanceId"] for r in records if r["decision"] == "rerun") == ids
    assert [r["reason"] for r in records if r["decision"] == "skip"] == ["not-a-failure"]
    calls = reruns(dataworks)
    assert [len(json.loads(c.params["Ids"])) for c in calls] == [2, 2, 1]
    assert "evt-1000012345678, evt-1000012345679; run 3 of at most 4" in calls[0].params["Comment"]


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"\xff\xfe", b"[]", b"42", b'{"foo": 1}', b'[{"taskId": "x", "status": 5}]'],
)
def test_bad_input_is_recorded_and_returns_without_calling_dataworks(dataworks, event_function, payload):
    inv = event_function.invoke(payload)
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["decision"] == "skip" and record["reason"] == "not-a-failure" and record["message"]
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize(
    "name",
    [
        "dataworks-instance-running.json",
        "dataworks-instance-succeeded.json",
        "dataworks-workflow-failed.json",
        "dataworks-rerun-operation.json",
    ],
)
def test_other_event_types_and_statuses_are_ignored_with_a_record(dataworks, event_function, name):
    inv = event_function.invoke(sample_bytes(name))
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["reason"] == "not-a-failure" and record["eventId"] == sample(name)["id"]
    assert len(dataworks.journal) == 0


def test_dry_run_decides_and_records_but_reruns_nothing(dataworks, tmp_path):
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, RERUN_DRY_RUN="true") as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    (record,) = instance_records(inv)
    assert record["decision"] == "dry-run" and "rerun as run 2" in record["message"]
    assert dataworks.journal.calls("RerunTaskInstances") == []
    assert dataworks.backend.instance(FAILED_ID).run_number == 1


def test_an_unknown_instance_is_a_permanent_error_recorded_without_a_raise(dataworks, event_function):
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))  # nothing seeded
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["reason"] == "lookup-failed" and record["errorCode"]


def test_an_invalid_setting_is_recorded_as_a_config_error_naming_it_and_not_retried(dataworks, tmp_path):
    # GIVEN a deployment with a bad setting
    with make_function(dataworks, tmp_path, RERUN_MAX_RERUNS="lots") as fn:
        # WHEN a failure event arrives
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    # THEN the failure is recorded `config-error` (what the config-error alert fires on), naming the
    # setting, nothing is called, and the invocation returns: FC retrying cannot fix a setting
    assert inv.error is None
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["instanceId"]) == ("skip", "config-error", FAILED_ID)
    assert record["eventId"] == "0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01"
    assert "RERUN_MAX_RERUNS" in record["message"] and "lots" in record["message"]
    assert inv.records[-1]["kind"] == "summary" and inv.records[-1]["outcome"] == "done"
    assert len(dataworks.journal) == 0


def test_no_credentials_is_a_config_error_too(dataworks, tmp_path):
    # GIVEN a function without a role: FC injects no credentials at all
    with make_function(dataworks, tmp_path) as fn:
        fn.rotate_credentials(None)
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["reason"] == "config-error" and "no credentials" in record["message"]
    assert len(dataworks.journal) == 0


def test_an_unexpected_error_records_every_instance_deferred_and_raises_for_fcs_retry(dataworks, tmp_path, mocker):
    # GIVEN a bug: deciding raises something nobody expected (a seam: nothing real raises it today)
    from dwrerun import event_function

    seed_failed(dataworks)
    mocker.patch.object(event_function, "run", side_effect=KeyError("Boom"))
    with make_function(dataworks, tmp_path) as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    # THEN FC sees the error (and retries an asynchronous invocation), and the attempt is on record:
    # the instance `deferred`, the summary `retry` with the error's type, not its text
    assert inv.error["errorType"] == "KeyError"
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["instanceId"]) == ("skip", "deferred", FAILED_ID)
    assert "unexpected error (KeyError)" in record["message"] and "Boom" not in record["message"]
    summary = inv.records[-1]
    assert (summary["kind"], summary["outcome"], summary["error"]) == ("summary", "retry", "KeyError")


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12"])
def test_both_runtime_context_shapes_work(dataworks, tmp_path, runtime):
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, runtime=runtime) as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(inv)[0]["success"] is True


def test_a_rotated_sts_token_is_picked_up_by_the_warm_instance(dataworks, event_function):
    seed_failed(dataworks)
    seed_failed(dataworks, FAILED_ID + 1)
    event_function.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    dataworks.set_credentials([ROTATED])  # the old token is refused from now on
    event_function.rotate_credentials(ROTATED)
    inv = event_function.invoke(json.dumps(failure_event(FAILED_ID + 1)).encode())
    assert instance_records(inv)[0]["success"] is True


# --- a deploy the function cannot run with: the same record for every instance of the event ------


def _two_failures() -> bytes:
    return json.dumps([failure_event(FAILED_ID), failure_event(FAILED_ID + 1)]).encode()


def _config_errors(inv) -> str:
    assert inv.error is None, inv.error  # FC retrying cannot fix a deploy
    records = instance_records(inv)
    assert [r["instanceId"] for r in records] == [FAILED_ID, FAILED_ID + 1]
    assert {(r["decision"], r["reason"]) for r in records} == {("skip", "config-error")}
    (message,) = {r["message"] for r in records}  # the same one for every instance
    summary = inv.records[-1]
    assert (summary["kind"], summary["instances"], summary["outcome"]) == ("summary", 2, "done")
    return message


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12"])
def test_missing_credentials_are_recorded_for_every_instance_of_the_event(dataworks, tmp_path, runtime):
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, runtime=runtime) as fn:
        fn.rotate_credentials(None)  # a function without a role: FC injects no credentials
        inv = fn.invoke(_two_failures())
    assert "no credentials" in _config_errors(inv)
    assert len(dataworks.journal) == 0


def test_no_region_and_no_endpoint_is_recorded_for_every_instance_of_the_event(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, DATAWORKS_ENDPOINT="") as fn:
        fn.region = None
        fn.new_instance()  # FC_REGION comes from the instance's variables
        inv = fn.invoke(_two_failures())
    assert "no region" in _config_errors(inv)
    assert len(dataworks.journal) == 0


# --- the records of what an invocation did not get to: every field an operator queries -----------


def _set_fields(record: dict) -> dict:
    """The record's fields that carry a value (every other one is null, and `attempts` 0)."""
    assert record["attempts"] == 0
    return {k: v for k, v in record.items() if v is not None and k != "attempts"}


def _scheduled_rerun(instance_id: int = FAILED_ID) -> schedule.ScheduledRerun:
    """What a delayed invocation of the event function is handed (dwrerun/schedule.py)."""
    return schedule.ScheduledRerun(instance_id, 1, "2026-11-28T02:10:00Z", "evt-scheduling", "yarn-queue-full")


def test_a_scheduled_rerun_delivered_twice_to_a_warm_instance_is_recorded_with_its_async_task_id(
    dataworks, event_function
):
    seed_failed(dataworks)
    scheduled = _scheduled_rerun()
    first = event_function.invoke(scheduled.to_payload())
    second = event_function.invoke(scheduled.to_payload())
    assert instance_records(first)[0]["decision"] == "rerun"
    # The copy is told from FC's async task id (SLS joins it to the scheduling record on it)
    (record,) = instance_records(second)
    assert _set_fields(record) == {
        "kind": "instance",
        "instanceId": FAILED_ID,
        "decision": "skip",
        "message": f"dwrerun-{FAILED_ID}-run-1 is already handled here",
        "reason": "duplicate-event",
        "trigger": "eventbridge",
        "requestId": second.request_id,
        "eventId": "evt-scheduling",
        "asyncTaskId": f"dwrerun-{FAILED_ID}-run-1",
    }
    assert len(reruns(dataworks)) == 1


def test_an_ignored_event_is_recorded_with_its_trigger_and_request(dataworks, event_function):
    inv = event_function.invoke(sample_bytes("dataworks-instance-succeeded.json"))
    (record,) = instance_records(inv)
    assert _set_fields(record) == {
        "kind": "instance",
        "instanceId": FAILED_ID,
        "decision": "skip",
        "message": "status 6 (succeeded) is not a failure",
        "reason": "not-a-failure",
        "trigger": "eventbridge",
        "requestId": inv.request_id,
        "eventId": sample("dataworks-instance-succeeded.json")["id"],
    }


def test_a_scheduled_rerun_under_a_bad_setting_keeps_its_rule_due_time_and_async_task_id(dataworks, tmp_path):
    # GIVEN a delayed invocation arriving after a deploy broke a setting
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, RERUN_MAX_RERUNS="lots", RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_scheduled_rerun().to_payload(KEY))
    # THEN its config-error record still says which scheduled rerun it was, SLS joins it to its
    # scheduling record; with the settings unreadable its signature cannot be checked, so the
    # rule and due time it claims are not shown (issue 24, item 3)
    assert inv.error is None
    (record,) = instance_records(inv)
    fields = _set_fields(record)
    assert "RERUN_MAX_RERUNS" in fields.pop("message")
    assert fields == {
        "kind": "instance",
        "instanceId": FAILED_ID,
        "decision": "skip",
        "reason": "config-error",
        "trigger": "eventbridge",
        "requestId": inv.request_id,
        "eventId": "evt-scheduling",
        "asyncTaskId": f"dwrerun-{FAILED_ID}-run-1",
        "trusted": False,
    }
    assert len(dataworks.journal) == 0


def test_a_failure_event_under_a_bad_setting_carries_no_scheduling_fields(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, RERUN_MAX_RERUNS="lots") as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    (record,) = instance_records(inv)
    assert (record["rule"], record["dueAt"], record["asyncTaskId"]) == (None, None, None)
    assert (record["trigger"], record["requestId"]) == ("eventbridge", inv.request_id)


def test_a_bug_during_a_scheduled_rerun_defers_it_with_its_scheduling_fields(dataworks, tmp_path, mocker):
    from dwrerun import event_function

    mocker.patch.object(event_function, "run", side_effect=KeyError("Boom"))  # a seam: nothing real raises it
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_scheduled_rerun().to_payload(KEY))
    assert inv.error["errorType"] == "KeyError"
    (record,) = instance_records(inv)
    assert (record["reason"], record["trigger"], record["requestId"]) == ("deferred", "eventbridge", inv.request_id)
    assert (record["rule"], record["dueAt"], record["asyncTaskId"]) == (
        "yarn-queue-full",
        "2026-11-28T02:10:00Z",
        f"dwrerun-{FAILED_ID}-run-1",
    )


def test_claimed_event_ids_released_after_a_raise_need_not_still_be_held():
    # An invocation with more events than the instance remembers has its first ids pushed out by
    # its last ones; releasing them all after a raise must not fail (the raise would be lost).
    handled = HandledEvents(size=2)
    assert [handled.claim(i) for i in ("a", "b", "c")] == [True, True, True]
    handled.release(["a", "b", "c", "never-claimed"])
    assert [handled.claim(i) for i in ("a", "b", "c")] == [True, True, True]


# --- continuations of a bulk rerun by filter (dwrerun/bulk.py), on this instance --------------------

KEY = "event-function-test-key-0123456789abcdef"  # RERUN_SIGNING_KEY: at least 32 characters
BIZDATE = 1_795_708_800_000  # 2026-11-27 00:00 +08:00
FIRST = 4_000_000_000_000
ORIGIN = "1-origin-request"


def _seed_selected(dataworks, instance_id: int, **fields) -> None:
    values = dict(
        id=instance_id,
        task_id=TASK_ID,
        project_id=PROJECT_ID,
        status="Failure",
        run_number=1,
        bizdate=BIZDATE,
        finished_time=BIZDATE + 26 * 3_600_000,
    )
    values.update(fields)
    dataworks.backend.add_instance(**values)


def _part(*ids: int, hop: int = 0, stalls: int = 0) -> continuation.Continuation:
    return continuation.Continuation(
        origin_request_id=ORIGIN,
        part=1,
        hop=hop,
        stalls=stalls,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=tuple((i, 1) for i in ids),
    )


def test_a_continuation_not_signed_with_the_key_is_recorded_for_the_request_that_made_it(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_part(FIRST, FIRST + 1).to_payload("another-key-0123456789abcdef-012345"))
    assert inv.error is None and len(dataworks.journal) == 0
    records = instance_records(inv)
    assert [r["instanceId"] for r in records] == [FIRST, FIRST + 1]
    assert _set_fields(records[0]) == {
        "kind": "instance",
        "instanceId": FIRST,
        "decision": "skip",
        "message": "not rerun: the continuation's signature does not verify with RERUN_SIGNING_KEY (it changed "
        "since the request, or the payload was not made by this function); select it again by filter",
        "reason": "config-error",
        "trigger": "http",  # a continuation works for a manual rerun
        "requestId": inv.request_id,
        "originRequestId": ORIGIN,
    }


def test_a_continuation_without_credentials_records_each_instance_config_error_and_is_not_retried(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        fn.rotate_credentials(None)  # a function without a role: FC injects no credentials
        inv = fn.invoke(_part(FIRST, FIRST + 1).to_payload(KEY))
    assert inv.error is None, inv.error  # FC retrying cannot give the function a role
    records = instance_records(inv)
    assert [r["instanceId"] for r in records] == [FIRST, FIRST + 1]
    for record in records:
        fields = _set_fields(record)
        assert fields.pop("message").startswith("no credentials: ALIBABA_CLOUD_ACCESS_KEY_ID")
        assert fields == {
            "kind": "instance",
            "instanceId": record["instanceId"],
            "decision": "skip",
            "reason": "config-error",
            "trigger": "http",
            "requestId": inv.request_id,
            "originRequestId": ORIGIN,
        }
    summary = inv.records[-1]
    assert (summary["kind"], summary["instances"], summary["skipped"], summary["outcome"]) == ("summary", 2, 2, "done")
    assert summary["durationMs"] >= 0
    assert inv.result["outcomes"][0]["reason"] == "config-error"
    assert len(dataworks.journal) == 0


def test_a_bug_in_a_continuation_defers_each_instance_and_raises_for_fcs_retry(dataworks, tmp_path, mocker):
    from dwrerun import handoff

    mocker.patch.object(handoff, "continue_", side_effect=KeyError("Boom"))  # a seam: nothing real raises it
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_part(FIRST, FIRST + 1).to_payload(KEY))
    assert inv.error["errorType"] == "KeyError"
    records = instance_records(inv)
    assert [r["instanceId"] for r in records] == [FIRST, FIRST + 1]
    assert _set_fields(records[1]) == {
        "kind": "instance",
        "instanceId": FIRST + 1,
        "decision": "skip",
        "message": "an unexpected error (KeyError): Function Compute retries the continuation",
        "reason": "deferred",
        "trigger": "http",
        "requestId": inv.request_id,
        "originRequestId": ORIGIN,
    }
    summary = inv.records[-1]
    assert (summary["kind"], summary["instances"], summary["outcome"], summary["error"]) == (
        "summary",
        2,
        "retry",
        "KeyError",
    )
    assert summary["durationMs"] >= 0


def test_a_continuation_holds_back_a_failure_its_log_says_no_rerun_can_fix(dataworks, tmp_path):
    # The event function's failure rules decide for a continuation too (unless the request said IgnoreRules)
    log = (Path(__file__).parent / "logs" / "odps_sql_table_not_found.log").read_text()
    _seed_selected(dataworks, FIRST, task_type="ODPS_SQL", log=log)
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_part(FIRST).to_payload(KEY))
    (record,) = instance_records(inv)
    assert (record["decision"], record["failureClass"]) == ("skip", "not-retryable")
    assert reruns(dataworks) == []


@pytest.mark.parametrize("kind", ["failure event", "continuation"])
def test_python310_context_credentials_serve_when_the_variables_are_empty(dataworks, tmp_path, kind):
    # FC's python3.10 runtime hands the role's keys in context.credentials too: the fallback when
    # the ALIBABA_CLOUD_* variables are empty
    seed_failed(dataworks)
    _seed_selected(dataworks, FIRST)
    empty = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "",
    }
    payload = (
        sample_bytes("dataworks-instance-failed.json") if kind == "failure event" else _part(FIRST).to_payload(KEY)
    )
    with make_function(dataworks, tmp_path, runtime="python3.10", RERUN_SIGNING_KEY=KEY, **empty) as fn:
        inv = fn.invoke(payload)
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"]) == ("rerun", True), record["message"]
    assert len(reruns(dataworks)) == 1  # the emulator accepts only the role's keys (CREDS)


class QueueOnly(Function):
    """The event function as the local FC API serves it, its asynchronous queue only kept: what a
    queued hop then does is tests/test_bulk_continuation.py's (it starts instance processes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.queued: list[tuple[bytes, float, str | None]] = []

    def invoke_async(self, event, request_id=None, *, delay=0, task_id=None):
        self.queued.append((bytes(event), delay, task_id))


def _routed_to_the_local_cloud(mocker, emulator, api) -> list[tuple[str, str, str, str]]:
    """The public endpoints a deployed function calls, resolved to the local stand-ins (a fake DNS
    at the clients' constructors); returns what was looked up: (client, endpoint, protocol, region)."""
    from dwrerun import dataworks as dataworks_module
    from dwrerun import function_compute

    looked_up = []

    def route(module, name: str, local: str) -> None:
        real = getattr(module, name)

        def connect(credentials, endpoint, protocol, region, settings):
            looked_up.append((name, endpoint, protocol, region))
            return real(credentials, local, "http", region, settings)

        mocker.patch.object(module, name, connect)

    route(dataworks_module, "DataWorks", emulator.endpoint)
    route(function_compute, "FunctionCompute", api.endpoint)
    return looked_up


@pytest.fixture
def deployed(dataworks, mocker):
    """The public endpoints resolved to the local stand-ins, and the local FC API serving the event
    function's queue: (what was looked up, the API, the queue)."""
    with FunctionComputeApi(credentials=[CREDS]) as api:
        queue = QueueOnly(
            handler="index.handle_event",
            code_dir=str(FUNCTION_DIR),
            function_name="dwrerun-event",
            reserved_concurrency=1,
            async_task=True,
        )
        api.register(queue)
        yield _routed_to_the_local_cloud(mocker, dataworks, api), api, queue


DEPLOYED_FC = ("FunctionCompute", "1877700012345678.cn-hangzhou.fc.aliyuncs.com", "https", "cn-hangzhou")
DEPLOYED_DATAWORKS = ("DataWorks", "dataworks.cn-hangzhou.aliyuncs.com", "https", "cn-hangzhou")


def test_a_continuation_hands_what_dataworks_kept_refusing_to_its_next_hop_at_its_own_fc_endpoint(
    dataworks, tmp_path, deployed
):
    # GIVEN a deployed function (no endpoint overrides: FC's region and account say where to call)
    # and DataWorks answering every RerunTaskInstances with 503
    looked_up, api, queue = deployed
    _seed_selected(dataworks, FIRST)
    dataworks.faults.set("RerunTaskInstances", server_error=None)
    env = {"RERUN_SIGNING_KEY": KEY, "RERUN_READ_LOGS": "false", "DATAWORKS_ENDPOINT": ""}
    with make_function(dataworks, tmp_path, **env) as fn:
        # WHEN a continuation part arrives
        inv = fn.invoke(_part(FIRST).to_payload(KEY))
    # THEN it ends normally, and the instance is handed to the part's next hop, signed, as its own
    # async task, with the role's keys
    assert inv.error is None, inv.error
    assert instance_records(inv) == []  # the next hop writes its record
    assert inv.records[-1]["outcome"] == "done"
    assert DEPLOYED_DATAWORKS in looked_up and DEPLOYED_FC in looked_up
    (call,) = api.calls()
    assert (call.function, call.invocation_type, call.task_id, call.status) == (
        "dwrerun-event",
        "Async",
        f"dwrerun-bulk-{ORIGIN}-1-1",
        202,
    )
    assert call.access_key_id == CREDS.access_key_id
    ((payload, delay, task_id),) = queue.queued
    assert (delay, task_id) == (0, f"dwrerun-bulk-{ORIGIN}-1-1")
    assert continuation.parse(payload, KEY) == _part(FIRST, hop=1, stalls=1)


def test_a_failure_is_scheduled_as_a_delayed_invocation_at_the_functions_own_fc_endpoint(dataworks, tmp_path, deployed):
    looked_up, api, queue = deployed
    seed_failed(dataworks)
    # (the storm guard's own FC calls are pinned in test_storm_cloud.py: off here, one call to look at)
    env = {"RERUN_BACKOFF_BASE_SECONDS": "120", "DATAWORKS_ENDPOINT": "", "RERUN_STORM_THRESHOLD": "0"}
    with make_function(dataworks, tmp_path, **env) as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["decision"], record["asyncTaskId"]) == ("scheduled", f"dwrerun-{FAILED_ID}-run-1")
    assert DEPLOYED_DATAWORKS in looked_up and DEPLOYED_FC in looked_up
    (call,) = api.calls()
    assert (call.function, call.task_id, call.status) == ("dwrerun-event", f"dwrerun-{FAILED_ID}-run-1", 202)
    assert call.access_key_id == CREDS.access_key_id
    ((payload, delay, _),) = queue.queued
    assert delay == record["delaySeconds"] > 0
    scheduled = schedule.parse(payload)
    assert (scheduled.instance_id, scheduled.failed_run_number) == (FAILED_ID, 1)
    assert scheduled.event_id == "0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01"
    assert reruns(dataworks) == []


# --- the invocation's answer and summary; what FC's retry of the same event finds ----------------


def test_the_invocation_returns_its_summary_and_each_instances_outcome(dataworks, event_function):
    seed_failed(dataworks)
    seed_failed(dataworks, FAILED_ID + 1, status="Success")
    inv = event_function.invoke(json.dumps([failure_event(FAILED_ID), failure_event(FAILED_ID + 1)]).encode())
    result = dict(inv.result)
    duration = result.pop("durationMs")
    assert 0 < duration < 60_000  # in ms: HTTP calls took some, a minute none
    assert result == {
        "kind": "summary",
        "trigger": "eventbridge",
        "requestId": inv.request_id,
        "instances": 2,
        "rerun": 1,
        "rerunSucceeded": 1,
        "rerunFailed": 0,
        "skipped": 1,
        "dryRun": 0,
        "scheduled": 0,
        "outcome": "done",
        "dryRunMode": False,
        "originRequestId": None,
        "outcomes": [
            {
                "instanceId": FAILED_ID,
                "decision": "rerun",
                "success": True,
                "reason": "eligible",
                "message": instance_records(inv)[0]["message"],
            },
            {
                "instanceId": FAILED_ID + 1,
                "decision": "skip",
                "success": None,
                "reason": "not-failed",
                "message": instance_records(inv)[1]["message"],
            },
        ],
    }
    assert inv.records[-1] == {k: v for k, v in inv.result.items() if k != "outcomes"}


def test_a_retry_later_summary_names_the_dataworks_error_behind_it(dataworks, event_function):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", server_error=None)
    inv = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error["errorType"] == "RetryLater"
    (record,) = instance_records(inv)
    summary = inv.records[-1]
    assert (summary["outcome"], summary["error"]) == ("retry", record["errorCode"])
    assert summary["error"] == "ServiceUnavailable"
    assert 0 < summary["durationMs"] < 60_000


def test_fcs_retry_after_a_missing_role_is_handled_once_the_role_is_there(dataworks, event_function):
    seed_failed(dataworks)
    event_function.rotate_credentials(None)
    first = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(first)[0]["reason"] == "config-error"
    event_function.rotate_credentials(CREDS)
    # The same event again (a redelivery, on the same warm instance): not taken for a duplicate
    second = event_function.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert instance_records(second)[0]["decision"] == "rerun"


class _Cut(BaseException):
    """What the runtime raises into a handler it stops (not an Exception)."""


def test_an_invocation_cut_short_releases_its_events_for_fcs_retry(dataworks, mocker):
    # Called directly: the harness would report the BaseException as FC does, this checks the state
    from dwrerun import event_function

    mocker.patch.object(event_function, "run", side_effect=_Cut())
    context = type("Context", (), {"request_id": "req-cut", "region": "cn-hangzhou"})()
    mocker.patch.dict("os.environ", {"ALIBABA_CLOUD_ACCESS_KEY_ID": "k", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"})
    mocker.patch.dict("os.environ", {"DATAWORKS_ENDPOINT": dataworks.url})
    with pytest.raises(_Cut):
        event_function.handle(sample_bytes("dataworks-instance-failed.json"), context)
    assert event_function.handled_events.claim("0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01")


def test_an_event_with_an_empty_id_cut_short_is_released_for_fcs_retry_too(dataworks, mocker):
    # "" is an id the event carried (checked as one, claimed as one), so it is released as one: else
    # FC's retry of this event would be recorded duplicate-event and the failure never decided
    from dwrerun import event_function

    event = json.loads(sample_bytes("dataworks-instance-failed.json"))
    event["id"] = ""
    mocker.patch.object(event_function, "run", side_effect=_Cut())
    context = type("Context", (), {"request_id": "req-cut", "region": "cn-hangzhou"})()
    mocker.patch.dict("os.environ", {"ALIBABA_CLOUD_ACCESS_KEY_ID": "k", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"})
    mocker.patch.dict("os.environ", {"DATAWORKS_ENDPOINT": dataworks.url})
    with pytest.raises(_Cut):
        event_function.handle(json.dumps(event).encode(), context)
    assert event_function.handled_events.claim("")


def test_the_instance_remembers_its_last_10000_event_ids():
    handled = HandledEvents()
    assert all(handled.claim(f"evt-{n}") for n in range(10_001))
    # the oldest is forgotten (a copy of it would be stopped by DataWorks' state), the next is not
    assert handled.claim("evt-0") is True
    assert handled.claim("evt-2") is False
    assert handled.claim("evt-10000") is False


def test_a_malformed_scheduled_rerun_is_recorded_as_not_one(dataworks, event_function):
    inv = event_function.invoke(json.dumps({"scheduledRerun": {"instanceId": 1}}).encode())
    assert inv.error is None and len(dataworks.journal) == 0
    (record,) = instance_records(inv)
    assert _set_fields(record) == {
        "kind": "instance",
        "decision": "skip",
        "message": "not a valid scheduled rerun: scheduledRerun lacks failedRunNumber, dueAt, asyncTaskId",
        "reason": "not-a-failure",
        "trigger": "eventbridge",
        "requestId": inv.request_id,
    }


def test_a_malformed_continuation_is_recorded_as_not_one_with_why(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(json.dumps({"bulkRerun": {"part": 1}, "x": 2}).encode())
    assert inv.error is None and len(dataworks.journal) == 0
    (record,) = instance_records(inv)
    assert _set_fields(record) == {
        "kind": "instance",
        "decision": "skip",
        "message": "not a valid continuation: a continuation payload has only 'bulkRerun'",
        "reason": "not-a-failure",
        "trigger": "eventbridge",
        "requestId": inv.request_id,
    }
    # Its summary says the invocation is done, as every summary says done, retry or
    # quota-exhausted: a query on `outcome` finds it. Before, the field was missing.
    assert inv.records[-1]["kind"] == "summary" and inv.records[-1]["outcome"] == "done"


def test_a_continuation_under_a_bad_setting_is_refused_naming_the_setting(dataworks, tmp_path):
    # A bad setting leaves no key to verify with: the record says what to fix, not "unsigned"
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY, RERUN_MAX_RERUNS="lots") as fn:
        inv = fn.invoke(_part(FIRST).to_payload(KEY))
    assert inv.error is None and len(dataworks.journal) == 0
    (record,) = instance_records(inv)
    assert record["reason"] == "config-error" and record["originRequestId"] == ORIGIN
    assert record["message"].startswith("not rerun: RERUN_MAX_RERUNS")
    assert record["message"].endswith("; select it again by filter")
    summary = inv.records[-1]
    assert (summary["outcome"], summary["instances"]) == ("done", 1)


# --- scheduled reruns and batches on one warm instance: what is claimed, what is released ----------


def test_a_delayed_invocation_is_recorded_with_its_event_rule_and_async_task_id(dataworks, tmp_path):
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        inv = fn.invoke(_scheduled_rerun().to_payload(KEY))
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert (record["eventId"], record["rule"], record["asyncTaskId"]) == (
        "evt-scheduling",
        "yarn-queue-full",
        f"dwrerun-{FAILED_ID}-run-1",
    )


def test_two_scheduled_reruns_on_one_warm_instance_are_each_handled(dataworks, event_function):
    seed_failed(dataworks)
    seed_failed(dataworks, FAILED_ID + 1)
    first = event_function.invoke(_scheduled_rerun().to_payload())
    second = event_function.invoke(_scheduled_rerun(FAILED_ID + 1).to_payload())
    assert [instance_records(i)[0]["decision"] for i in (first, second)] == ["rerun", "rerun"]
    assert len(reruns(dataworks)) == 2


def test_fcs_retry_of_a_scheduled_rerun_that_dataworks_refused_is_handled(dataworks, event_function):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", server_error=None)
    first = event_function.invoke(_scheduled_rerun().to_payload())
    assert first.error["errorType"] == "RetryLater"
    dataworks.faults.clear()
    retry = event_function.invoke(_scheduled_rerun().to_payload())  # FC's retry, on the same instance
    (record,) = instance_records(retry)
    assert (record["decision"], record["success"]) == ("rerun", True)


def test_fcs_retry_of_a_batch_that_dataworks_refused_handles_every_event_of_it(dataworks, event_function):
    seed_failed(dataworks)
    seed_failed(dataworks, FAILED_ID + 1)
    batch = json.dumps([failure_event(FAILED_ID), failure_event(FAILED_ID + 1)]).encode()
    dataworks.faults.set("RerunTaskInstances", server_error=None)
    assert event_function.invoke(batch).error["errorType"] == "RetryLater"
    dataworks.faults.clear()
    retry = event_function.invoke(batch)
    assert [(r["instanceId"], r["decision"]) for r in instance_records(retry)] == [
        (FAILED_ID, "rerun"),
        (FAILED_ID + 1, "rerun"),
    ]


def test_the_summary_says_how_long_the_invocation_took_in_milliseconds(dataworks, tmp_path, mocker):
    # The clock's seam: the invocation starts at 100 s and everything after reads 100.25 s
    # (a bad setting: no DataWorks call, so nothing waits on this clock)
    from dwrerun import pacing

    mocker.patch.object(pacing, "clock", side_effect=itertools.chain([100.0], itertools.repeat(100.25)))
    with make_function(dataworks, tmp_path, RERUN_MAX_RERUNS="lots") as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.records[-1]["durationMs"] == 250.0


# --- what FC tells an invocation (dwrerun/invocation.py), from either runtime's context or the variables


def _context(**fields):
    function = fields.pop("function", None)
    context = SimpleNamespace(**fields)
    if function is not None:
        context.function = SimpleNamespace(**function)
    return context


@pytest.fixture
def at_1000(mocker):
    from dwrerun import pacing

    mocker.patch.object(pacing, "clock", return_value=1000.0)


def test_an_invocation_takes_the_contexts_word_and_keeps_back_2_s_of_a_30_s_timeout(at_1000):
    context = _context(
        request_id="req-1",
        region="cn-shanghai",
        account_id="1234",
        function={"name": "dwrerun-event", "timeout": 30},
    )
    environ = {"FC_FUNCTION_NAME": "other", "FC_REGION": "cn-beijing", "FC_ACCOUNT_ID": "999"}
    assert Invocation.from_context(context, environ) == Invocation(
        request_id="req-1",
        function_name="dwrerun-event",
        region="cn-shanghai",
        deadline=1028.0,
        account_id="1234",
        timeout=30.0,
    )
    # with no variables at all it is the same
    assert Invocation.from_context(context, {}) == Invocation.from_context(context, environ)


@pytest.mark.parametrize(("timeout", "deadline"), [(5, 1004.5), (25, 1023.0), (0.5, 1000.45)])
def test_a_short_timeout_keeps_back_a_tenth_of_it_at_most_2_s(at_1000, timeout, deadline):
    invocation = Invocation.from_context(_context(function={"name": "f", "timeout": timeout}), {})
    assert invocation.timeout == timeout
    assert invocation.deadline == pytest.approx(deadline)


@pytest.mark.parametrize("timeout", [0, -3, "x", None])
def test_a_timeout_that_is_not_a_positive_number_is_taken_as_60_s(at_1000, timeout):
    invocation = Invocation.from_context(_context(function={"name": "f", "timeout": timeout}), {})
    assert (invocation.timeout, invocation.deadline) == (60, 1058.0)


def test_without_a_context_the_variables_fc_injects_say_it(at_1000):
    environ = {"FC_FUNCTION_NAME": "dwrerun-http", "FC_REGION": "cn-beijing", "FC_ACCOUNT_ID": "999"}
    invocation = Invocation.from_context(object(), environ)
    assert invocation.request_id.startswith("local-") and len(invocation.request_id) == len("local-") + 36
    assert (invocation.function_name, invocation.region, invocation.account_id) == ("dwrerun-http", "cn-beijing", "999")
    assert (invocation.timeout, invocation.deadline) == (60, 1058.0)


def test_with_neither_it_is_dwrerun_in_no_known_region_or_account(at_1000, mocker):
    mocker.patch.dict("os.environ", {"FC_FUNCTION_NAME": "from-os-environ"})
    invocation = Invocation.from_context(object(), {})
    assert (invocation.function_name, invocation.region, invocation.account_id) == ("dwrerun", None, None)
    # and without a mapping given, the process's own variables are read
    assert Invocation.from_context(object()).function_name == "from-os-environ"


def test_an_invocation_out_of_time_before_any_call_is_retried_with_no_error_code(dataworks, tmp_path, mocker):
    # The clock's seam: the invocation starts at 100 s (its deadline 128 s); from then on it reads
    # 128.6 s, so no DataWorks call may start: FC retries it, and nothing DataWorks said is behind
    # that. (Not later than 129 s: the reserve before FC's timeout would write the records then.)
    from dwrerun import pacing

    seed_failed(dataworks)
    mocker.patch.object(pacing, "clock", side_effect=itertools.chain([100.0, 100.0], itertools.repeat(128.6)))
    with make_function(dataworks, tmp_path) as fn:
        inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    assert inv.error["errorType"] == "RetryLater"
    (record,) = instance_records(inv)
    assert (record["reason"], record["errorCode"]) == ("deferred", None)
    summary = inv.records[-1]
    assert (summary["outcome"], summary["error"]) == ("retry", None)
    assert len(dataworks.journal) == 0


def test_a_run_the_sweep_found_is_rerun_with_a_comment_saying_so(dataworks, tmp_path):
    # GIVEN a failed run no failure event decided, claimed by the sweep as a signed delayed invocation
    seed_failed(dataworks)
    swept = schedule.ScheduledRerun(FAILED_ID, 1, "2026-11-28T02:10:00Z", swept=True)
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as fn:
        # WHEN it comes due
        inv = fn.invoke(swept.to_payload(KEY))
    # THEN it is rerun, and DataWorks' operation log says by whom and which run of how many this is
    (record,) = instance_records(inv)
    assert (record["decision"], record["trigger"], record["missedEvent"]) == ("rerun", "sweep", True)
    (call,) = reruns(dataworks)
    assert call.params["Comment"] == (
        f"[dwrerun-event: rerun by the sweep (FC async task dwrerun-{FAILED_ID}-run-1): no failure event had been "
        "handled for run 1; run 2 of at most 4]"
    )


def test_a_bug_after_an_ignored_event_keeps_that_events_record_beside_the_deferred_ones(dataworks, tmp_path, mocker):
    # GIVEN a delivery of a succeeded instance's event (ignored) and a failure, and a bug in the run
    from dwrerun import event_function

    seed_failed(dataworks)
    mocker.patch.object(event_function, "run", side_effect=KeyError("Boom"))  # a seam: nothing real raises it
    delivery = json.dumps([sample("dataworks-instance-succeeded.json"), failure_event(FAILED_ID, "evt-2")])
    with make_function(dataworks, tmp_path) as fn:
        inv = fn.invoke(delivery.encode())
    # THEN FC retries it, and every event the delivery named has its record: the ignored one too
    assert inv.error["errorType"] == "KeyError"
    assert [(r["reason"], r["eventId"]) for r in instance_records(inv)] == [
        ("not-a-failure", sample("dataworks-instance-succeeded.json")["id"]),
        ("deferred", "evt-2"),
    ]


def test_a_malformed_storm_step_is_recorded_and_its_invocation_ends_normally(dataworks, event_function):
    bad = b'{"stormStep": {"step": "explode", "projectId": 1, "rule": "x", "epoch": 1}}'
    inv = event_function.invoke(bad)
    assert inv.error is None and len(dataworks.journal) == 0
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"]) == ("skip", "not-a-failure")
    assert record["message"].startswith("not a valid storm step: ")
    summary = inv.records[-1]
    assert summary["kind"] == "summary" and summary["outcome"] == "done" and summary["durationMs"] >= 0
