"""The event function end to end: sample events in, through FC's harness, against the emulator."""

import json

import pytest

from conftest import (
    FAILED_ID,
    FROZEN_ID,
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
