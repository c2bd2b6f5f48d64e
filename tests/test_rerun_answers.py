"""What RerunTaskInstances answers, and the one record each instance gets for it.

Every branch of the answer's handling in dwrerun/rerun.py, against the emulator: a refusal of
the call itself, an id missing from SuccessInfo, an entry or a SuccessInfo of the wrong shape,
and the same instance twice in one delivery.
"""

import json

from conftest import FAILED_ID, failure_event, install_fake_clock, instance_records, make_function, reruns, seed_failed
from localcloud.clock import ManualClock
from localcloud.dataworks.faults import ABSENT

RERUN = "RerunTaskInstances"
GET = "GetTaskInstance"
OTHER_ID = FAILED_ID + 1


def deliver(dataworks, tmp_path, *instance_ids):
    with make_function(dataworks, tmp_path) as fn:
        return fn.invoke(json.dumps([failure_event(i, f"evt-{n}") for n, i in enumerate(instance_ids)]).encode())


def carried_out(dataworks, instance_id):
    return [c for c in dataworks.journal.calls(RERUN) if instance_id in json.loads(c.params["Ids"])]


def _call_takes_250_ms(dataworks, mocker, *actions):
    """The clock seam: a fake clock that only the calls of these actions (default: the rerun
    call) move on, by 0.25 s each."""
    actions = actions or (RERUN,)
    clock = install_fake_clock(mocker)
    original_take = dataworks.faults.take

    def take(called):
        if called in actions:
            clock.advance(0.25)
        return original_take(called)

    dataworks.faults.take = take


def test_a_refused_rerun_call_is_recorded_and_not_retried(dataworks, tmp_path):
    # Before (mutation testing): without this record, a 4xx refusal was resent until the deadline.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, refuse=None)
    inv = deliver(dataworks, tmp_path, FAILED_ID)
    assert inv.error is None  # a permanent refusal: FC retrying cannot help
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["success"]) == ("rerun", "rerun-refused", False)
    assert record["errorCode"] == "ResourceNotAuthorized.Api" and record["dataworksRequestId"]
    assert record["message"].startswith("RerunTaskInstances refused: ")
    assert record["attempts"] == 4  # GetTaskInstance, GetTask, the log, one rerun call: never sent again
    assert dataworks.journal.count(action=RERUN) == 1


def test_a_refused_rerun_call_records_how_long_the_call_took_in_ms(dataworks, tmp_path, mocker):
    _call_takes_250_ms(dataworks, mocker)
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, refuse=None)
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["reason"], record["success"]) == ("rerun-refused", False)
    assert record["rerunMs"] == 250.0


def test_an_id_missing_from_success_info_is_read_back_not_resent(dataworks, tmp_path):
    # The rerun happened but SuccessInfo says nothing of it. Before (mutation testing): without
    # the read, the rerun was sent again, six times, past the cap.
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.faults.set(RERUN, success_info={FAILED_ID: ABSENT})
    inv = deliver(dataworks, tmp_path, FAILED_ID, OTHER_ID)
    first, other = instance_records(inv)
    assert (first["decision"], first["reason"], first["success"]) == ("rerun", "eligible", True)
    assert first["message"] == (
        "rerun confirmed by GetTaskInstance (now run 2, Running) after the rerun request got no clear answer"
    )
    assert (other["decision"], other["success"]) == ("rerun", True)
    assert len(carried_out(dataworks, FAILED_ID)) == 1 and len(carried_out(dataworks, OTHER_ID)) == 1
    assert dataworks.journal.count(action=GET) == 3  # each read once, the unanswered one again


def test_an_entry_of_the_wrong_shape_is_no_answer_either(dataworks, tmp_path):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.faults.set(RERUN, success_info={FAILED_ID: "ok", OTHER_ID: {"Success": "true", "Message": ""}})
    inv = deliver(dataworks, tmp_path, FAILED_ID, OTHER_ID)
    for record in instance_records(inv):
        assert (record["reason"], record["success"]) == ("eligible", True)
        assert record["message"].startswith("rerun confirmed by GetTaskInstance (now run 2")
    assert len(reruns(dataworks)) == 1


def test_a_success_info_that_is_not_an_object_is_read_back(dataworks, tmp_path):
    # Before (mutation testing): without the shape check, a list raised AttributeError: no record.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, success_info=[{"Id": FAILED_ID, "Success": True}])
    inv = deliver(dataworks, tmp_path, FAILED_ID)
    assert inv.error is None
    (record,) = instance_records(inv)
    assert (record["reason"], record["success"]) == ("eligible", True)
    assert record["message"].startswith("rerun confirmed by GetTaskInstance (now run 2")
    assert len(reruns(dataworks)) == 1


def test_the_same_instance_twice_in_one_delivery_is_rerun_once(dataworks, tmp_path):
    # Before (mutation testing): without the guard, Ids=[X,X] went out and the instance ran twice.
    seed_failed(dataworks)
    inv = deliver(dataworks, tmp_path, FAILED_ID, FAILED_ID)
    first, second = instance_records(inv)
    assert (first["reason"], first["success"], first["eventId"]) == ("eligible", True, "evt-0")
    assert (second["decision"], second["reason"], second["eventId"]) == ("skip", "duplicate", "evt-1")
    assert second["message"] == "the same instance is already in this request"
    (call,) = reruns(dataworks)
    assert json.loads(call.params["Ids"]) == [FAILED_ID]
    assert dataworks.journal.count(action=GET) == 1


def test_after_an_unexpected_error_fcs_retry_of_the_same_event_is_handled(dataworks, tmp_path, mocker):
    # Before (mutation testing): without releasing the claimed event id, FC's retry on the same warm
    # instance was recorded duplicate-event and the instance never rerun.
    from dwrerun import event_function

    seed_failed(dataworks)
    payload = json.dumps(failure_event(FAILED_ID)).encode()
    with make_function(dataworks, tmp_path) as fn:
        real_run = event_function.run
        mocker.patch.object(event_function, "run", side_effect=KeyError("Boom"))
        failed = fn.invoke(payload)
        event_function.run = real_run
        retry = fn.invoke(payload)
    assert failed.error["errorType"] == "KeyError"
    (record,) = instance_records(retry)
    assert (record["reason"], record["success"]) == ("eligible", True)
    assert len(reruns(dataworks)) == 1


def test_an_accepted_rerun_records_dataworks_own_message(dataworks, tmp_path):
    # What DataWorks said when it accepted the rerun is what an operator reads in the record.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, success_info={FAILED_ID: {"Success": True, "Message": "queued behind 2 runs"}})
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["decision"], record["reason"], record["success"]) == ("rerun", "eligible", True)
    assert record["message"] == "queued behind 2 runs"


def test_a_refused_call_for_two_instances_records_both_and_is_sent_once(dataworks, tmp_path, mocker):
    # One call names both; RAM refuses it: each instance gets its own rerun-refused record with
    # the call's duration, and the call is never sent again for the second one.
    _call_takes_250_ms(dataworks, mocker)
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.faults.set(RERUN, refuse=None)
    records = instance_records(deliver(dataworks, tmp_path, FAILED_ID, OTHER_ID))
    assert [(r["instanceId"], r["reason"], r["success"], r["rerunMs"]) for r in records] == [
        (FAILED_ID, "rerun-refused", False, 250.0),
        (OTHER_ID, "rerun-refused", False, 250.0),
    ]
    assert dataworks.journal.count(action=RERUN) == 1


def test_a_call_for_two_instances_that_meets_the_daily_limit_records_both_with_its_duration(
    dataworks, tmp_path, mocker
):
    _call_takes_250_ms(dataworks, mocker)
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.faults.set(RERUN, throttle=1, throttle_code="Throttling.Api.Risk")
    records = instance_records(deliver(dataworks, tmp_path, FAILED_ID, OTHER_ID))
    assert [(r["instanceId"], r["reason"], r["errorCode"], r["rerunMs"]) for r in records] == [
        (FAILED_ID, "quota-exhausted", "Throttling.Api.Risk", 250.0),
        (OTHER_ID, "quota-exhausted", "Throttling.Api.Risk", 250.0),
    ]
    assert dataworks.journal.count(action=RERUN) == 1


def test_an_accepted_rerun_records_how_long_its_read_and_its_call_took_in_ms(dataworks, tmp_path, mocker):
    _call_takes_250_ms(dataworks, mocker, GET, RERUN)
    seed_failed(dataworks)
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["reason"], record["success"]) == ("eligible", True)
    assert (record["lookupMs"], record["rerunMs"]) == (250.0, 250.0)


def test_a_refusal_without_a_message_says_so(dataworks, tmp_path):
    # DataWorks refuses (the instance is left as it was) and its SuccessInfo entry has no Message.
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "x"}, success_info={FAILED_ID: {"Success": False}})
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["decision"], record["success"], record["message"]) == ("rerun", False, "no message")


def test_a_refusal_whose_explaining_read_is_refused_is_recorded_as_the_refusal_once(dataworks, tmp_path, mocker):
    # DataWorks refuses the rerun; the read that would tell whether someone else reran the instance
    # is refused by RAM. The refusal stands as DataWorks answered it, after that one read: the read
    # is not tried again (each call moves the fake clock, so a loop would end, with more reads).
    from dwrerun import pacing
    from localcloud.dataworks.faults import FaultPlan

    clock = ManualClock(start=1000.0)  # only the calls move it: the backoff's sleep stays a no-op here
    mocker.patch.object(pacing, "clock", clock.now)
    seed_failed(dataworks)
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "the instance is being rerun"})
    original_take = dataworks.faults.take

    def take(action):
        clock.advance(0.5)
        if action == GET and dataworks.journal.count(action=RERUN):
            return FaultPlan(kind="refuse")
        return original_take(action)

    dataworks.faults.take = take
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["decision"], record["reason"], record["success"]) == ("rerun", "eligible", False)
    assert record["message"] == "the instance is being rerun" and record["dataworksRequestId"]
    assert dataworks.journal.count(action=GET) == 2


def test_a_refused_read_is_recorded_with_dataworks_reason_and_how_long_it_took(dataworks, tmp_path, mocker):
    # Before: the record was made before the read's duration was set, so lookupMs was null.
    _call_takes_250_ms(dataworks, mocker, GET)
    seed_failed(dataworks)
    dataworks.faults.set(GET, refuse=None)
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    assert (record["decision"], record["reason"], record["errorCode"]) == (
        "skip",
        "lookup-failed",
        "ResourceNotAuthorized.Api",
    )
    assert record["message"] == (
        "GetTaskInstance refused: You are not authorized to access the resources. RAM refused "
        "dataworks:GetTaskInstance (ResourceNotAuthorized.Api): grant dataworks:GetTaskInstance to the "
        'function\'s role, or set vars.dataworksActions to "all" (dataworks:*) and run scripts/deploy; if RAM '
        "allows it, add the role to the workspace as a member with an O&M role"
    )
    assert record["lookupMs"] == 250.0 and reruns(dataworks) == []


# --- issue 24, item 8: a run that starts and fails between the read and the rerun ------------------


def test_a_run_that_failed_again_during_a_slow_log_read_is_read_again_and_not_rerun_past_the_cap(
    dataworks, tmp_path, mocker
):
    # GIVEN run 3 failed (RERUN_MAX_RERUNS=3 allows its rerun), and while the function reads its log
    # (5 s on the fake clock), someone else reruns it and run 4 fails too
    clock = install_fake_clock(mocker)
    seed_failed(dataworks, run_number=3, task_type="ODPS_SQL")
    original_take = dataworks.faults.take

    def take(called):
        if called == "GetTaskInstanceLog":
            clock.advance(5.0)
            raced = vars(dataworks.backend.instance(FAILED_ID))
            dataworks.backend.add_instance(**{**raced, "run_number": 4, "finished_time": raced["finished_time"] + 1})
        return original_take(called)

    dataworks.faults.take = take
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    # THEN the read older than FRESH_READ_SECONDS is made again right before the rerun: run 4 is at
    # the cap, so nothing is rerun, and the record names run 4
    assert reruns(dataworks) == []
    assert (record["decision"], record["reason"], record["runNumber"]) == ("skip", "cap-reached", 4)
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", "GetTaskInstanceLog", GET]


def test_a_refused_rerun_in_a_workspace_the_role_is_not_a_member_of_names_the_workspace():
    from dwrerun.dataworks import DataWorksError
    from dwrerun.outcome import refused

    error = DataWorksError(RERUN, "Forbidden", "the user is not a member of the workspace", transient=False, status=403)
    message = refused(RERUN, error, 48213)
    assert "DataWorks refused RerunTaskInstances in workspace 48213 (Forbidden)" in message


def test_a_stale_read_is_made_again_once_a_round_however_long_the_new_runs_log_takes(dataworks, tmp_path, mocker):
    # GIVEN run 1 failed, and each log read takes 5 s; during the first, run 2 starts and fails
    clock = install_fake_clock(mocker)
    seed_failed(dataworks, task_type="ODPS_SQL")
    original_take = dataworks.faults.take
    raced = []

    def take(called):
        if called == "GetTaskInstanceLog":
            clock.advance(5.0)
            if not raced:
                raced.append(True)
                now = vars(dataworks.backend.instance(FAILED_ID))
                dataworks.backend.add_instance(**{**now, "run_number": 2, "finished_time": now["finished_time"] + 1})
        return original_take(called)

    dataworks.faults.take = take
    (record,) = instance_records(deliver(dataworks, tmp_path, FAILED_ID))
    # THEN run 2 is read again once in the round, its log read, and it is rerun: no third read
    assert (record["decision"], record["success"], record["runNumber"]) == ("rerun", True, 2)
    log = "GetTaskInstanceLog"
    assert [e.action for e in dataworks.journal] == [GET, "GetTask", log, GET, log, RERUN]
