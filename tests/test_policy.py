"""The guards, exhaustively: pure code, no I/O."""

import dataclasses
import json
import time

import pytest

from dwrerun.config import Settings
from dwrerun.dataworks import task_instance
from dwrerun.policy import Instance, after_unclear_answer, decide
from dwrerun.schema import Reason

FAILED = Instance(
    id=1000012345678,
    task_id=700000004417,
    task_name="ods_orders_di",
    project_id=48213,
    project_env="Prod",
    status="Failure",
    run_number=1,
    rerun_mode="FailureAllowed",
    trigger_recurrence="Normal",
)


def with_(**changes):
    return dataclasses.replace(FAILED, **changes)


def test_a_failed_prod_instance_under_the_cap_is_rerun():
    decision = decide(FAILED, Settings())
    assert decision.rerun and decision.reason == "eligible"
    assert "run 2" in decision.message


@pytest.mark.parametrize(
    ("instance", "settings", "reason"),
    [
        (with_(status="Success"), Settings(), "not-failed"),
        (with_(status="Running"), Settings(), "not-failed"),
        (with_(run_number=4), Settings(), "cap-reached"),
        (with_(run_number=2), Settings(max_reruns=1), "cap-reached"),
        (with_(run_number=1), Settings(max_reruns=0), "cap-reached"),
        (with_(rerun_mode="AllDenied"), Settings(), "rerun-denied"),
        (with_(trigger_recurrence="Pause"), Settings(), "paused"),
        (with_(project_env="Dev"), Settings(), "wrong-environment"),
        (FAILED, Settings(project_env="Dev"), "wrong-environment"),
        (FAILED, Settings(project_ids=frozenset({1, 2})), "project-not-allowed"),
        (FAILED, Settings(exclude_task_ids=frozenset({700000004417})), "task-excluded"),
        (with_(run_number=None), Settings(), "unknown-run-number"),
    ],
)
def test_each_guard_holds_the_instance_back_with_its_reason(instance, settings, reason):
    decision = decide(instance, settings)
    assert not decision.rerun
    assert decision.reason == reason
    assert decision.message


def test_the_cap_allows_exactly_max_reruns_reruns():
    # RunNumber counts every run, the first included: with the default 3, runs 1..3 may be
    # rerun and run 4 is the last, so an instance runs at most 4 times.
    assert [decide(with_(run_number=n), Settings()).rerun for n in (1, 2, 3, 4, 5)] == [True, True, True, False, False]


def test_a_frozen_event_is_skipped_even_if_the_instance_reads_normal():
    assert decide(FAILED, Settings(), event_task_type=2).reason == "paused"


def test_any_environment_and_an_allowed_project_pass():
    settings = Settings(project_env="any", project_ids=frozenset({48213}))
    assert decide(with_(project_env="Dev"), settings).rerun


def test_the_allow_list_is_checked_before_anything_else():
    # Whose data comes first: an instance outside the allow-list is never described by its state.
    instance = with_(project_id=1, rerun_mode="AllDenied", status="Running")
    assert decide(instance, Settings(project_ids=frozenset({48213})), manual=True).reason == "project-not-allowed"


def test_manual_reruns_may_target_a_success_only_where_rerun_mode_is_all_allowed():
    success = with_(status="Success", rerun_mode="AllAllowed")
    assert decide(success, Settings(), manual=True).rerun
    assert not decide(success, Settings()).rerun  # the event path never reruns a success
    assert decide(with_(status="Success"), Settings(), manual=True).reason == "rerun-denied"


@pytest.mark.parametrize("status", ["Running", "WaitTime", "WaitResource", "NotRun", "CheckingCondition"])
def test_manual_reruns_skip_instances_still_running_or_waiting(status):
    assert decide(with_(status=status), Settings(), manual=True).reason == "not-finished"


def test_force_lifts_only_the_cap():
    assert decide(with_(run_number=9), Settings(), manual=True, force=True).rerun
    for instance in (with_(rerun_mode="AllDenied"), with_(project_env="Dev"), with_(trigger_recurrence="Pause")):
        assert not decide(instance, Settings(), manual=True, force=True).rerun


def test_instance_reads_the_get_task_instance_shape():
    instance = task_instance(
        {
            "Id": 1,
            "TaskId": 2,
            "TaskName": "t",
            "ProjectId": 3,
            "ProjectEnv": "Prod",
            "Status": "Failure",
            "RunNumber": 2,
            "RerunMode": "AllAllowed",
            "TriggerRecurrence": "Normal",
        }
    )
    assert (instance.id, instance.task_id, instance.project_id, instance.run_number) == (1, 2, 3, 2)


def test_instance_reads_every_field_of_the_get_task_instance_shape_by_its_name():
    answer = {
        "Id": 1,
        "TaskId": 2,
        "TaskName": "t",
        "ProjectId": 3,
        "ProjectEnv": "Prod",
        "Status": "Failure",
        "RunNumber": 2,
        "RerunMode": "AllAllowed",
        "TriggerType": "Manual",  # a manual instance may lack TriggerRecurrence
        "TaskType": "ODPS_SQL",
        "FinishedTime": 1_790_000_060_000,
        "StartedTime": 1_790_000_000_000,
    }
    assert task_instance(answer) == Instance(
        id=1,
        task_id=2,
        task_name="t",
        project_id=3,
        project_env="Prod",
        status="Failure",
        run_number=2,
        rerun_mode="AllAllowed",
        trigger_recurrence=None,
        trigger_type="Manual",
        task_type="ODPS_SQL",
        finished_time=1_790_000_060_000,
        started_time=1_790_000_000_000,
    )
    # and so the guards let it through: its TriggerType says why TriggerRecurrence is absent
    assert decide(task_instance(answer), Settings(), manual=True).rerun


# An event about an earlier run than the instance's current one (a stale copy) starts nothing.
STARTED = 1_790_000_000_000  # the current run's StartedTime, epoch ms


@pytest.mark.parametrize(
    ("instance", "event_finished_at", "rerun"),
    [
        (with_(run_number=2, started_time=STARTED), STARTED - 1, False),  # ended before run 2 began
        (with_(run_number=2, started_time=STARTED), STARTED, True),  # not earlier: the current run
        (with_(run_number=2, started_time=STARTED), STARTED + 60_000, True),
        (with_(run_number=1, started_time=STARTED), STARTED - 1, True),  # run 1 has no earlier run
        (with_(run_number=2, started_time=None), STARTED - 1, True),  # no StartedTime: cannot be placed
        (with_(run_number=2, started_time=STARTED), None, True),  # no finishTime/modifyTime in the event
    ],
)
def test_a_failure_event_about_an_earlier_run_starts_no_rerun(instance, event_finished_at, rerun):
    decision = decide(instance, Settings(), event_finished_at=event_finished_at)
    assert decision.rerun is rerun
    if not rerun:
        assert decision.reason == "already-rerun"
        assert "run 2 started" in decision.message and "after the run the event reports ended" in decision.message


def test_a_stale_event_is_told_apart_only_for_a_failed_instance():
    # Not failed any more says more than "stale": that reason stays.
    stale = with_(run_number=2, started_time=STARTED, status="Running")
    assert decide(stale, Settings(), event_finished_at=STARTED - 1).reason == "not-failed"


def test_a_start_time_past_the_year_9999_is_shown_as_a_number():
    far = with_(run_number=2, started_time=2**62)
    assert f"{2**62} ms" in decide(far, Settings(), event_finished_at=1).message


# --- what each guard says: the record's message is what an operator reads, word for word --------


@pytest.mark.parametrize(
    ("instance", "settings", "kwargs", "reason", "message"),
    [
        (with_(project_id=None), Settings(project_ids=frozenset({1})), {}, "lookup-failed",
         "GetTaskInstance answered no ProjectId, so RERUN_PROJECT_IDS cannot be checked: not rerun"),
        (with_(project_id=7), Settings(project_ids=frozenset({1})), {}, "project-not-allowed",
         "project 7 is not in RERUN_PROJECT_IDS"),
        (with_(task_id=None), Settings(exclude_task_ids=frozenset({1})), {}, "lookup-failed",
         "GetTaskInstance answered no TaskId, so RERUN_EXCLUDE_TASK_IDS cannot be checked: not rerun"),
        (FAILED, Settings(exclude_task_ids=frozenset({700000004417})), {}, "task-excluded",
         "task 700000004417 is in RERUN_EXCLUDE_TASK_IDS"),
        (with_(project_env=None), Settings(), {}, "lookup-failed",
         "GetTaskInstance answered no ProjectEnv, so whether it is in Prod (RERUN_PROJECT_ENV) is unknown: not rerun"),
        (with_(project_env="Dev"), Settings(), {}, "wrong-environment", "the instance is in Dev, RERUN_PROJECT_ENV is Prod"),
        (with_(trigger_recurrence="Pause"), Settings(), {}, "paused",
         "the instance is frozen (paused): unfreeze it in DataWorks to run it"),
        (with_(trigger_recurrence=None), Settings(), {}, "lookup-failed",
         "GetTaskInstance answered no TriggerRecurrence, so whether the instance is frozen (paused) is unknown: not rerun"),
        (with_(rerun_mode=None), Settings(), {}, "lookup-failed",
         "GetTaskInstance answered no RerunMode, so the node's rerun property is unknown: not rerun"),
        (with_(rerun_mode="AllDenied"), Settings(), {}, "rerun-denied",
         "the node's rerun property forbids reruns (RerunMode AllDenied)"),
        (with_(run_number=3), Settings(), {"failed_run": 2}, "already-rerun",
         "run 2 failed, but the instance is now at run 3 (Failure): it was rerun meanwhile, by hand, by "
         "DataWorks or by an earlier attempt whose answer was lost"),
        (with_(run_number=1), Settings(), {"failed_run": 2}, "unknown-run-number",
         "the scheduled rerun names run 2, but the instance is at run 1"),
        (with_(run_number=None), Settings(), {"failed_run": 2}, "unknown-run-number",
         "the scheduled rerun names run 2, but the instance is at run None"),
        (with_(status=None), Settings(), {}, "lookup-failed",
         "GetTaskInstance answered no Status, so whether it failed is unknown: not rerun"),
        (with_(status="Running"), Settings(), {}, "not-failed", "the instance is Running, no longer Failure"),
        (with_(status="Running"), Settings(), {"manual": True}, "not-finished",
         "the instance is Running: only finished instances are rerun"),
        (with_(status="Success"), Settings(), {"manual": True}, "rerun-denied",
         "the instance succeeded and its RerunMode is FailureAllowed: only AllAllowed reruns a success"),
        (with_(run_number=None), Settings(), {}, "unknown-run-number",
         "GetTaskInstance answered no RunNumber, so the cap cannot be checked"),
        (with_(run_number=None, malformed=(("RunNumber", "3.9"),)), Settings(), {}, "unknown-run-number",
         "GetTaskInstance answered RunNumber 3.9, not a positive integer, so the cap cannot be checked"),
        (with_(status=None, malformed=(("Status", "5"),)), Settings(), {}, "lookup-failed",
         "GetTaskInstance answered Status 5, not text, so whether it failed is unknown: not rerun"),
        (with_(run_number=4), Settings(), {}, "cap-reached", "run 4 is past RERUN_MAX_RERUNS=3: reruns exhausted"),
        (with_(run_number=2, started_time=1_790_000_000_000), Settings(), {"event_finished_at": 1_789_999_999_000},
         "already-rerun",
         "run 2 started at 2026-09-21T14:13:20.000Z, after the run the event reports ended "
         "(2026-09-21T14:13:19.000Z): that failure was already rerun, and this event is a late copy of it. "
         "Run 2's own failure event decides about run 2"),
        (with_(run_number=2), Settings(), {}, "eligible", "run 2 Failure: rerun as run 3"),
    ],
)  # fmt: skip
def test_each_decision_says_why_in_words(instance, settings, kwargs, reason, message):
    decision = decide(instance, settings, **kwargs)
    assert (decision.reason, decision.message) == (reason, message)
    assert decision.rerun is (reason == "eligible")


def test_instance_keeps_each_value_of_the_wrong_kind_as_json():
    instance = task_instance(
        {
            "Id": 1,
            "TaskId": True,
            "ProjectId": "48213",
            "RunNumber": float("inf"),
            "Status": 5,
            "TaskName": "ódś",
            "RerunMode": ["AllAllowed"],
            "StartedTime": "x" * 50,
            "FinishedTime": 0,
        }
    )
    assert (instance.task_id, instance.project_id, instance.run_number, instance.status) == (None, 48213, None, None)
    assert (instance.task_name, instance.rerun_mode, instance.started_time) == ("ódś", None, None)
    assert instance.malformed == (
        ("TaskId", "true"),
        ("Status", "5"),
        ("RunNumber", "Infinity"),
        ("RerunMode", '["AllAllowed"]'),
        ("FinishedTime", "0"),
        ("StartedTime", '"' + "x" * 36 + "..."),
    )


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (1, 1),
        (2**63 - 1, 2**63 - 1),  # the largest int64 id
        (2**63, None),
        ("9223372036854775807", 2**63 - 1),  # 19 digits
        ("09223372036854775807", None),  # 20 digits
        ("1", 1),
        ("0", None),
        ("-1", None),
        ("٣", None),  # a digit, not an ASCII one
        (0, None),
        (-5, None),
        (True, None),
        (3.0, None),
        (None, None),
    ],
)
def test_positive_int_takes_int64_ids_and_their_digit_strings_only(value, number):
    from dwrerun.values import positive_int

    bad: list = []
    assert positive_int({"Id": value}, "Id", bad) == number
    assert bad == ([] if number is not None or value is None else [("Id", json.dumps(value, ensure_ascii=False))])


def test_a_value_shown_in_a_record_keeps_its_letters_and_is_cut_at_40_characters():
    from dwrerun.values import shown

    assert shown("é") == '"é"'
    assert shown("y" * 38) == '"' + "y" * 38 + '"'  # 40 characters with its quotes: whole
    assert shown("y" * 39) == '"' + "y" * 36 + "..."


def test_times_in_messages_are_utc_whatever_the_hosts_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        stale = with_(run_number=2, started_time=1_790_000_000_000)
        message = decide(stale, Settings(), event_finished_at=1).message
    finally:
        monkeypatch.undo()
        time.tzset()
    assert message.startswith("run 2 started at 2026-09-21T14:13:20.000Z, after the run the event reports ended")
    assert "(1970-01-01T00:00:00.001Z)" in message


# --- what a read after a rerun call says (pure: rerun.py only turns it into an outcome) ----------


def test_a_refusal_is_explained_only_by_a_run_number_past_the_refused_run():
    from dwrerun.policy import after_refusal

    assert after_refusal(with_(run_number=1), 1, "not finished") is None  # the refusal stands
    assert after_refusal(with_(run_number=None), 1, "not finished") is None
    assert after_refusal(with_(run_number=2), None, "not finished") is None
    moved = after_refusal(with_(run_number=2, status="Running"), 1, "not finished")
    assert (moved.rerun, moved.reason) == (False, "already-rerun")
    assert moved.message == (
        "already rerun by someone else: the instance is at run 2 (Running), past run 1, so DataWorks refused "
        "this rerun (not finished)"
    )


def test_an_unclear_answer_is_a_rerun_only_when_the_run_number_moved_on():
    from dwrerun.policy import after_unclear_answer

    assert after_unclear_answer(with_(run_number=1), 1) is None  # decide again
    assert after_unclear_answer(with_(run_number=2), None) is None  # no unclear request went out
    confirmed = after_unclear_answer(with_(run_number=2, status="Running"), 1)
    assert (confirmed.rerun, confirmed.reason) == (True, "eligible")
    assert confirmed.message == (
        "rerun confirmed by GetTaskInstance (now run 2, Running) after the rerun request got no clear answer"
    )


def test_a_confirmed_rerun_that_skipped_a_run_names_the_run_it_actually_reran():
    # Sent at run 3; the read shows run 5: run 4 started and failed in between, and this request
    # reran run 4 (issue 24, item 8: RerunTaskInstances has no precondition)
    confirmed = after_unclear_answer(with_(run_number=5, status="Running"), 3)
    assert confirmed.rerun and confirmed.reason == Reason.ELIGIBLE
    assert confirmed.message == (
        "rerun confirmed by GetTaskInstance (now run 5, Running) after the rerun request got no clear answer; "
        "run 4 had started and failed since the instance was read at run 3, so this request reran run 4"
    )
