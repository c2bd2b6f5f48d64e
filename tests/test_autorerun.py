"""DataWorks' own automatic rerun: GetTask in the emulator and the client, the pure check, the cache."""

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    PROJECT_ID,
    TASK_ID,
    failure_event,
    instance_records,
    make_function,
    reruns,
    seed_failed,
)
from dwrerun import autorerun, pacing
from dwrerun.autorerun import TaskCache, check, may_rerun_itself
from dwrerun.config import Settings
from dwrerun.dataworks import DataWorks, DataWorksError, auto_rerun
from dwrerun.policy import AutoRerun, Instance

FAILED = Instance(
    id=1000012345678,
    task_id=TASK_ID,
    task_name="ods_orders_di",
    project_id=PROJECT_ID,
    project_env="Prod",
    status="Failure",
    run_number=1,
    rerun_mode="FailureAllowed",
    trigger_recurrence="Normal",
    finished_time=1_790_000_000_000,
)
NODE = AutoRerun(task_id=TASK_ID, rerun_mode="FailureAllowed", rerun_times=2, rerun_interval=300)


def client(dataworks) -> DataWorks:
    return DataWorks(CREDS, dataworks.endpoint, "http", "cn-hangzhou", Settings())


# --- the emulator and the client ---------------------------------------------------------------


def test_get_task_answers_a_nodes_own_rerun_settings(dataworks):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=3, rerun_interval=120)
    task = client(dataworks).get_task(TASK_ID, "Prod", timeout=5)
    assert (task["Id"], task["RerunMode"], task["RerunTimes"], task["RerunInterval"]) == (
        TASK_ID,
        "FailureAllowed",
        3,
        120,
    )
    (call,) = dataworks.journal.calls("GetTask")
    assert call.params == {"Id": str(TASK_ID), "ProjectEnv": "Prod"}


def test_a_task_known_only_through_its_instances_has_no_automatic_rerun(dataworks):
    seed_failed(dataworks, rerun_mode="AllAllowed")
    task = client(dataworks).get_task(TASK_ID, "Prod", timeout=5)
    assert (task["RerunMode"], task["RerunTimes"], task["RerunInterval"]) == ("AllAllowed", 0, 0)


def test_tasks_are_per_environment_and_an_unknown_one_is_a_permanent_error(dataworks):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=3)
    with pytest.raises(DataWorksError) as caught:
        client(dataworks).get_task(TASK_ID, "Dev", timeout=5)
    assert (caught.value.code, caught.value.status, caught.value.transient) == ("InvalidTask.NotFound", 404, False)


def test_the_seed_file_gives_tasks_their_own_rerun_settings(dataworks, tmp_path):
    seed = {
        "tasks": [{"task_id": 7, "project_id": 1, "task_name": "t", "rerun_times": 2, "rerun_interval": 60}],
        "instances": [{"id": 70, "task_id": 7}],
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    dataworks.backend.load_json(path)
    assert dataworks.backend.instance(70).task_name == "t"  # the instance still inherits the task's fields
    assert dataworks.backend.get_task(7)["RerunTimes"] == 2


def test_dataworks_reruns_a_failure_itself_only_while_it_has_reruns_left(dataworks):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=1, rerun_interval=60)
    seed_failed(dataworks)
    assert dataworks.backend.auto_rerun(FAILED.id).run_number == 2
    dataworks.backend.finish(FAILED.id, "Failure")
    with pytest.raises(ValueError, match="no automatic rerun left"):
        dataworks.backend.auto_rerun(FAILED.id)


@pytest.mark.parametrize(("times", "interval"), [(11, 0), (-1, 0), (1, 1801)])
def test_task_settings_past_dataworks_limits_are_refused(dataworks, times, interval):
    with pytest.raises(ValueError):
        dataworks.backend.add_task(id=1, project_id=1, rerun_times=times, rerun_interval=interval)


# --- the check ---------------------------------------------------------------------------------


def test_a_failure_with_dataworks_reruns_left_is_left_to_dataworks_and_says_when():
    decision, due = check(NODE, FAILED)
    assert (decision.rerun, decision.reason) == (False, "dataworks-auto-rerun")
    assert due == "2026-09-21T14:18:20Z"  # FinishedTime 14:13:20 + RerunInterval 300 s
    assert "RerunTimes 2" in decision.message and "2 automatic rerun(s) left" in decision.message


def test_the_last_automatic_rerun_is_still_dataworks_and_the_failure_after_it_is_ours():
    assert check(NODE, dataclasses.replace(FAILED, run_number=2)) is not None  # run 2 failed: 1 left
    assert check(NODE, dataclasses.replace(FAILED, run_number=3)) is None  # both used: the function acts


@pytest.mark.parametrize(
    "node",
    [
        dataclasses.replace(NODE, rerun_times=0),
        dataclasses.replace(NODE, rerun_mode="AllDenied"),  # "takes effect only if" FailureAllowed/AllAllowed
        dataclasses.replace(NODE, rerun_mode=None),
    ],
)
def test_a_node_without_an_effective_automatic_rerun_is_ours(node):
    assert check(node, FAILED) is None


def test_an_instance_no_longer_failed_is_not_dataworks_to_rerun():
    assert check(NODE, dataclasses.replace(FAILED, status="Running")) is None


def test_without_a_finish_time_the_message_still_says_when():
    decision, due = check(NODE, dataclasses.replace(FAILED, finished_time=None))
    assert due is None and "300 s after the run ended" in decision.message


def test_gettask_is_not_asked_when_dataworks_cannot_be_rerunning_it():
    assert may_rerun_itself(FAILED)
    assert not may_rerun_itself(dataclasses.replace(FAILED, run_number=11))  # past DataWorks' 10
    assert not may_rerun_itself(dataclasses.replace(FAILED, status="Success"))
    assert not may_rerun_itself(dataclasses.replace(FAILED, task_id=None))


def test_settings_are_read_leniently_from_the_answer():
    node = auto_rerun({"Id": "7", "RerunMode": "AllAllowed", "RerunTimes": "3", "RerunInterval": None})
    assert node == AutoRerun(7, "AllAllowed", 3, 0)


# --- the cache ---------------------------------------------------------------------------------


def test_the_cache_keeps_an_answer_per_task_and_environment_for_a_short_time(mocker):
    now = mocker.patch.object(pacing, "clock", return_value=1000.0)
    cache = TaskCache(ttl=60)
    cache.put("Prod", NODE)
    assert cache.get(TASK_ID, "Prod") == NODE
    assert cache.get(TASK_ID, "Dev") is None
    now.return_value = 1060.0
    assert cache.get(TASK_ID, "Prod") == NODE
    now.return_value = 1060.1
    assert cache.get(TASK_ID, "Prod") is None


def test_the_cache_is_bounded():
    cache = TaskCache(size=2)
    for task_id in (1, 2, 3):
        cache.put("Prod", dataclasses.replace(NODE, task_id=task_id))
    assert cache.get(1, "Prod") is None and cache.get(3, "Prod") is not None
    assert autorerun.task_cache is not None


def test_the_message_names_the_settings_the_runs_left_and_when():
    decision, _ = check(NODE, FAILED)
    assert decision.message == (
        "DataWorks reruns this node itself (RerunTimes 2, RerunInterval 300 s): run 1 failed, 2 automatic "
        "rerun(s) left, the next at about 2026-09-21T14:18:20Z. The function acts only on the failure after "
        "DataWorks' last one."
    )
    unknown_end, due = check(NODE, dataclasses.replace(FAILED, finished_time=None))
    assert due is None and "the next 300 s after the run ended." in unknown_end.message


def test_a_single_automatic_rerun_is_left_to_dataworks_for_run_1_only():
    once = dataclasses.replace(NODE, rerun_times=1)
    assert check(once, FAILED) is not None
    assert check(once, dataclasses.replace(FAILED, run_number=2)) is None


@pytest.mark.parametrize(("run", "asked"), [(10, True), (11, False), (None, False)])
def test_get_task_is_asked_up_to_dataworks_limit_of_10_reruns(run, asked):
    assert may_rerun_itself(dataclasses.replace(FAILED, run_number=run)) is asked


@pytest.mark.parametrize(
    ("value", "number"),
    [(3, 3), ("123456789", 123456789), ("1234567890", 0), (-3, 0), (True, 0), (2.5, 0), (None, 0), ("x", 0)],
)
def test_a_count_from_get_task_is_a_non_negative_integer_or_none_at_all(value, number):
    node = auto_rerun({"Id": TASK_ID, "RerunMode": "FailureAllowed", "RerunTimes": value})
    assert node.rerun_times == number


def test_the_cache_keeps_as_many_tasks_as_its_size():
    cache = TaskCache(ttl=60.0, size=2)
    for task_id in (1, 2):
        cache.put("Prod", dataclasses.replace(NODE, task_id=task_id))
    assert cache.get(1, "Prod") is not None and cache.get(2, "Prod") is not None
    cache.put("Prod", dataclasses.replace(NODE, task_id=3))
    assert cache.get(1, "Prod") is None and cache.get(3, "Prod") is not None  # the oldest went


# --- the event path, end to end: the guard in dwrerun/rerun.py, in this process -----------------
# (tests/test_scheduled_reruns.py runs the same on instance processes, which mutation testing
# cannot see into.)

FINISHED = 1_790_000_000_000  # the failed run ended 2026-09-21T14:13:20Z
LOGS = Path(__file__).parent / "logs"
DUE = "2026-09-21T14:18:20Z"  # RerunInterval (300 s) after it


def deliver(dataworks, tmp_path, **env):
    with make_function(dataworks, tmp_path, **env) as fn:
        return fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())


def test_a_failure_dataworks_still_reruns_itself_is_left_to_it_with_when_and_nothing_else_called(dataworks, tmp_path):
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=2, rerun_interval=300)
    seed_failed(dataworks, finished_time=FINISHED)
    inv = deliver(dataworks, tmp_path)
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["dueAt"]) == ("skip", "dataworks-auto-rerun", DUE)
    assert record["message"] == (
        "DataWorks reruns this node itself (RerunTimes 2, RerunInterval 300 s): run 1 failed, 2 automatic "
        f"rerun(s) left, the next at about {DUE}. The function acts only on the failure after DataWorks' last one."
    )
    # its settings are DataWorks' answer for this node in this environment; no log read, no rerun
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask"]
    assert dataworks.journal.calls("GetTask")[0].params == {"Id": str(TASK_ID), "ProjectEnv": "Prod"}


def test_gettask_asks_about_the_node_in_the_failed_instances_own_environment(dataworks, tmp_path):
    # A Dev node with reruns of its own; the Prod node of the same id has none.
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, project_env="Dev", rerun_times=2, rerun_interval=300)
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, project_env="Prod")
    seed_failed(dataworks, finished_time=FINISHED, project_env="Dev")
    (record,) = instance_records(deliver(dataworks, tmp_path, RERUN_PROJECT_ENV="any"))
    assert (record["reason"], record["dueAt"]) == ("dataworks-auto-rerun", DUE)
    assert dataworks.journal.calls("GetTask")[0].params == {"Id": str(TASK_ID), "ProjectEnv": "Dev"}


def test_after_gettask_failed_once_the_retry_still_leaves_the_failure_to_dataworks(dataworks, tmp_path):
    # Not knowing whether DataWorks reruns the node must never become a rerun of ours: the retry
    # reads the instance and the node again, and leaves it to DataWorks. No double run.
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=2, rerun_interval=300)
    seed_failed(dataworks, finished_time=FINISHED)
    dataworks.faults.set("GetTask", server_error=1)
    (record,) = instance_records(deliver(dataworks, tmp_path))
    assert (record["reason"], record["dueAt"]) == ("dataworks-auto-rerun", DUE)
    assert dataworks.journal.count(action="GetTask") == 2 and reruns(dataworks) == []


def test_gettask_throttled_every_time_slows_the_reads_and_defers_after_the_last_attempt(
    dataworks, tmp_path, fake_clock
):
    # A throttled GetTask tells the read limiter (every read slows down), counts as a failed
    # attempt, and after the last one the failure is left to FC's retry, naming the throttling.
    seed_failed(dataworks, finished_time=FINISHED)
    dataworks.faults.set("GetTask", throttle=None)
    inv = deliver(dataworks, tmp_path)
    assert inv.error["errorType"] == "RetryLater"
    (record,) = instance_records(inv)
    assert (record["reason"], record["errorCode"]) == ("deferred", "Throttling.User")
    assert record["message"] == (
        f"DataWorks kept failing (Throttling.User; {pacing.MAX_ATTEMPTS} attempts failed): "
        "Function Compute retries the invocation."
    )
    assert dataworks.journal.count(action="GetTask") == pacing.MAX_ATTEMPTS and reruns(dataworks) == []
    (reads,) = [limiter for (kind, _), limiter in pacing._limiters.items() if kind == "read"]
    assert reads.rate < reads.ceiling  # slowed down


def test_a_failure_past_dataworks_ten_reruns_is_not_asked_about_and_still_meets_the_rules(dataworks, tmp_path):
    # Run 11: DataWorks reruns a node at most 10 times, so GetTask is not asked; the failure rules
    # still decide (here: the table does not exist, which no rerun fixes).
    log = (LOGS / "odps_sql_table_not_found.log").read_text(encoding="utf-8")
    seed_failed(dataworks, run_number=11, task_type="ODPS_SQL", log=log)
    (record,) = instance_records(deliver(dataworks, tmp_path, RERUN_MAX_RERUNS="20"))
    assert (record["reason"], record["rule"]) == ("not-retryable", "maxcompute-table-not-found")
    assert dataworks.journal.count(action="GetTask") == 0 and reruns(dataworks) == []
