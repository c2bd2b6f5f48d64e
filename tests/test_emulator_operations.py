"""The DataWorks emulator's operations and state transitions, over real HTTP with the generic client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from localcloud import openapi
from localcloud.acs3 import Credentials
from localcloud.dataworks import DataWorksEmulator, TaskInstance

CREDS = Credentials("LTAItestkeyid0001", "test-secret-do-not-log", "test-sts-token-do-not-log")
SEED = Path(__file__).resolve().parents[1] / "scripts" / "localcloud" / "dataworks" / "seed.json"
BIZDATE = 1764172800000
SEED_NOW = 1764270120  # the seed's own "now", 2025-11-28T03:02:00+08:00: its dates as written
FAILED, FROZEN, SUCCEEDED = 1000012345678, 1000012345699, 1000012345679
AT_CAP, ALL_DENIED, RUNNING = 1000012345680, 1000012345681, 1000012345682


@pytest.fixture
def emu():
    with DataWorksEmulator(credentials=[CREDS], seed=SEED, seed_now=SEED_NOW) as emu:
        yield emu


@pytest.fixture
def call(emu):
    """call(action, method, **params) -> response body, exactly as the function's generic client sends."""
    client = openapi.client(emu.endpoint, CREDS)

    def _call(action: str, method: str = "POST", version: str = "2024-05-18", **params) -> dict:
        return openapi.call(client, action, method, version, **params)["body"]

    return _call


def rerun(call, *ids: int, comment: str = "rerun by test") -> dict:
    return call("RerunTaskInstances", Ids=json.dumps(list(ids)), Comment=comment, UseLatestConfig="False")[
        "SuccessInfo"
    ]


def test_rerun_of_a_failed_instance_starts_a_new_run(emu, call):
    # WHEN a failed FailureAllowed instance is rerun
    info = rerun(call, FAILED, comment="upstream fixed")
    # THEN it is Running its second run, and the comment is kept
    assert info == {str(FAILED): {"Success": True, "Message": ""}}
    inst = emu.backend.instance(FAILED)
    assert (inst.status, inst.run_number, inst.comment) == ("Running", 2, "upstream fixed")
    got = call("GetTaskInstance", "GET", Id=FAILED)["TaskInstance"]
    assert (got["Status"], got["RunNumber"], got["OperationType"]) == ("Running", 2, "Rerun")
    assert "FinishedTime" not in got


def test_unknown_instance_gets_success_false_per_id(call):
    info = rerun(call, FAILED, 42)
    assert info[str(FAILED)]["Success"] is True
    assert info["42"] == {"Success": False, "Message": "The instance does not exist."}


@pytest.mark.parametrize(
    ("instance_id", "words"),
    [(ALL_DENIED, "AllDenied"), (RUNNING, "Running"), (SUCCEEDED, "FailureAllowed")],
)
def test_refused_reruns_change_nothing(emu, call, instance_id, words):
    if instance_id == SUCCEEDED:  # a Success of a FailureAllowed task
        emu.backend.add_instance(
            id=SUCCEEDED, task_id=1, project_id=48213, status="Success", rerun_mode="FailureAllowed"
        )
    before = emu.backend.instance(instance_id)
    info = rerun(call, instance_id)[str(instance_id)]
    assert info["Success"] is False and words in info["Message"]
    assert emu.backend.instance(instance_id) == before


def test_all_allowed_success_can_be_rerun(emu, call):
    assert rerun(call, SUCCEEDED)[str(SUCCEEDED)]["Success"] is True
    assert emu.backend.instance(SUCCEEDED).status == "Running"


def test_paused_instance_fails_again_at_once(emu, call):
    # DataWorks sets a frozen instance to failed without running it.
    assert rerun(call, FROZEN)[str(FROZEN)]["Success"] is True
    inst = emu.backend.instance(FROZEN)
    assert (inst.status, inst.run_number) == ("Failure", 2)
    log = call("GetTaskInstanceLog", "GET", Id=FROZEN)["TaskInstanceLog"]
    assert "paused" in log


def test_advance_ends_runs_with_their_scripted_outcomes(emu, call):
    # GIVEN two reruns whose next runs are scripted
    emu.backend.script_runs(FAILED, ["Failure", "Success"])  # after the seed's ["Success"]
    rerun(call, FAILED, AT_CAP)
    # WHEN the scheduler advances
    changed = emu.backend.advance()
    # THEN each run ends as scripted; an unscripted Running instance keeps running
    assert set(changed) >= {FAILED, AT_CAP}
    assert emu.backend.instance(FAILED).status == "Success"
    at_cap = emu.backend.instance(AT_CAP)
    assert (at_cap.status, at_cap.run_number) == ("Failure", 5)
    emu.backend.add_instance(id=5, task_id=6, project_id=7, status="Running")
    assert 5 not in emu.backend.advance()
    assert emu.backend.instance(5).status == "Running"


def test_finish_ends_the_current_run_now(emu, call):
    rerun(call, FAILED)
    emu.backend.finish(FAILED, status="Failure", log="boom\nCurrent task status: ERROR\n")
    assert emu.backend.instance(FAILED).status == "Failure"
    assert call("GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=2)["TaskInstanceLog"].startswith("boom")
    with pytest.raises(ValueError, match="not Running"):
        emu.backend.finish(FAILED)


def test_log_of_a_failed_run_looks_like_a_shell_node_log(call):
    log = call("GetTaskInstanceLog", "GET", Id=FAILED)["TaskInstanceLog"]
    assert "Exit code of the Shell command 1" in log
    assert log.rstrip().endswith("Current task status: ERROR")


def test_log_defaults_to_the_latest_run_and_keeps_old_runs(emu, call):
    emu.backend.set_log(FAILED, 1, "first run log")
    rerun(call, FAILED)
    assert "RUNNING" in call("GetTaskInstanceLog", "GET", Id=FAILED)["TaskInstanceLog"]
    assert call("GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=1)["TaskInstanceLog"] == "first run log"
    with pytest.raises(ClientException) as err:
        call("GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=3)
    assert err.value.code == "InvalidParameter" and "RunNumber" in err.value.message


def test_get_task_instance_renders_every_field(call):
    got = call("GetTaskInstance", "GET", Id=FAILED)["TaskInstance"]
    for name in (
        "Id TaskId TaskName TaskType ProjectId ProjectEnv Status RunNumber RerunMode TriggerType "
        "TriggerRecurrence WorkflowId WorkflowInstanceId WorkflowInstanceType Bizdate PeriodNumber "
        "BaselineId Owner StartedTime FinishedTime"
    ).split():
        assert name in got, name
    assert (got["ProjectId"], got["TaskId"], got["TaskName"]) == (48213, 700000004417, "ods_orders_di")
    assert (got["FinishedTime"], got["Bizdate"]) == (1764270065000, BIZDATE)


def test_get_unknown_instance_is_404(call):
    with pytest.raises(ClientException) as err:
        call("GetTaskInstance", "GET", Id=1)
    assert (err.value.status_code, err.value.code) == (404, "InvalidTaskInstance.NotFound")


@pytest.mark.parametrize("ids", ["1000012345678", '[1, "2"]', "[true]", "{}", "[1,"])
def test_malformed_ids_name_the_parameter(call, ids):
    with pytest.raises(ClientException) as err:
        call("RerunTaskInstances", Ids=ids)
    assert (err.value.status_code, err.value.code) == (400, "InvalidParameter")
    assert '"Ids"' in err.value.message


def test_missing_ids_is_missing_parameter(call):
    with pytest.raises(ClientException) as err:
        call("RerunTaskInstances", Comment="no ids")
    assert err.value.code == "MissingParameter" and "Ids" in err.value.message


def test_unknown_action_and_wrong_version(emu, call):
    with pytest.raises(ClientException) as err:
        call("StopTaskInstances", Ids="[1]")
    assert (err.value.status_code, err.value.code) == (404, "InvalidAction.NotFound")
    assert emu.journal.count(action="StopTaskInstances", code="InvalidAction.NotFound") == 1
    with pytest.raises(ClientException) as err:
        call("GetTaskInstance", "GET", version="2020-05-18", Id=FAILED)
    assert (err.value.status_code, err.value.code) == (400, "InvalidVersion")
    assert "2024-05-18" in err.value.message


def test_list_filters_and_pages(call):
    # GIVEN the seeded Prod instances of project 48213 on one business date
    page = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, PageSize=2)["PagingInfo"]
    assert (page["PageNumber"], page["PageSize"]) == (1, 2)
    total = page["TotalCount"]
    assert total == 9 and len(page["TaskInstances"]) == 2
    ids = [i["Id"] for i in page["TaskInstances"]]
    assert ids == sorted(ids, reverse=True)  # default SortBy "Id Desc"
    rest = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, PageSize=2, PageNumber=5)["PagingInfo"]
    assert len(rest["TaskInstances"]) == 1
    failed = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Status="Failure")["PagingInfo"]
    # the three of the guards, and the demo's syntax error, network error and two failures whose events were lost
    assert {i["Id"] for i in failed["TaskInstances"]} == {
        FAILED,
        AT_CAP,
        ALL_DENIED,
        *range(1000012345684, 1000012345688),
    }
    dev = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, ProjectEnv="Dev")["PagingInfo"]
    assert [i["ProjectEnv"] for i in dev["TaskInstances"]] == ["Dev"]
    by_ids = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Ids=json.dumps([FAILED, SUCCEEDED]))
    assert by_ids["PagingInfo"]["TotalCount"] == 2
    by_name = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, TaskName="ORDERS")["PagingInfo"]
    assert {i["TaskName"] for i in by_name["TaskInstances"]} == {"ods_orders_di", "dwd_orders_di", "dws_orders_1d"}


def test_list_pages_through_thousands_and_filters_by_when_the_run_ended(emu, call):
    # GIVEN 2,500 failures of one day, their runs ending a minute apart, and 500 successes
    start = BIZDATE + 26 * 3_600_000
    for n in range(3000):
        emu.backend.add_instance(
            id=5_000_000_000_000 + n,
            task_id=800_000_000_000 + n,
            project_id=48213,
            bizdate=BIZDATE,
            status="Failure" if n < 2500 else "Success",
            finished_time=start + n * 60_000,
        )
    # WHEN the failures are listed 500 a page, by Id
    seen, page = [], 1
    while True:
        paging = call(
            "ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Status="Failure", SortBy="Id Asc",
            PageSize=500, PageNumber=page,
        )["PagingInfo"]  # fmt: skip
        seen += [row["Id"] for row in paging["TaskInstances"]]
        if len(paging["TaskInstances"]) < 500:
            break
        page += 1
    # THEN every failure comes once, in order (the seed's own failures among them)
    assert paging["TotalCount"] == len(seen) and len(set(seen)) == len(seen) and seen == sorted(seen)
    assert {5_000_000_000_000 + n for n in range(2500)} <= set(seen)
    # AND the Filter's time window keeps runs that ended within it, bounds included [inferred]
    window = json.dumps({"finishedTimeStart": start + 10 * 60_000, "finishedTimeEnd": start + 19 * 60_000})
    within = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Filter=window, PageSize=100)["PagingInfo"]
    assert sorted(r["Id"] for r in within["TaskInstances"]) == [5_000_000_000_000 + n for n in range(10, 20)]
    with pytest.raises(ClientException) as err:
        call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Filter='{"endedAfter": 1}')
    assert err.value.status_code == 400 and "Filter" in err.value.message


def test_list_with_id_shows_every_run(call):
    rerun(call, FAILED)
    runs = call("ListTaskInstances", ProjectId=48213, Bizdate=BIZDATE, Id=FAILED, SortBy="Id Asc")["PagingInfo"]
    assert [(r["RunNumber"], r["Status"]) for r in runs["TaskInstances"]] == [(1, "Failure"), (2, "Running")]


@pytest.mark.parametrize(
    ("params", "name"),
    [({"Bizdate": BIZDATE}, "ProjectId"), ({"ProjectId": 48213}, "Bizdate"), ({"PageSize": 501}, "PageSize")],
)
def test_list_parameter_errors(call, params, name):
    full = {"ProjectId": 48213, "Bizdate": BIZDATE, **params}
    if name in ("ProjectId", "Bizdate"):
        full.pop(name)
    with pytest.raises(ClientException) as err:
        call("ListTaskInstances", **full)
    assert err.value.status_code == 400 and name in err.value.message


def test_seed_file_holds_the_sample_event_instances(emu):
    failed = emu.backend.instance(FAILED)
    assert (failed.task_id, failed.project_id, failed.project_env, failed.status, failed.run_number) == (
        700000004417,
        48213,
        "Prod",
        "Failure",
        1,
    )
    assert failed.rerun_mode == "FailureAllowed"
    frozen = emu.backend.instance(FROZEN)
    assert (frozen.project_id, frozen.trigger_recurrence, frozen.status) == (48213, "Pause", "Failure")
    ok = emu.backend.instance(SUCCEEDED)
    assert (ok.status, ok.rerun_mode) == ("Success", "AllAllowed")
    assert emu.backend.instance(AT_CAP).run_number == 4
    assert emu.backend.instance(ALL_DENIED).rerun_mode == "AllDenied"
    assert emu.backend.instance(RUNNING).status == "Running"


def test_load_json_accepts_a_plain_list_and_api_field_names(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps([{"Id": 9, "TaskId": 8, "ProjectId": 7, "Status": "Success", "log": "done"}]))
    with DataWorksEmulator(credentials=[CREDS], seed=path) as emu:
        inst = emu.backend.instance(9)
        assert isinstance(inst, TaskInstance) and inst.status == "Success"
        assert emu.backend.get_task_instance_log(9, None) == "done"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ({"instances": [{"id": 1, "task_id": 2, "project_id": 3, "colour": "red"}]}, "colour"),
        ({"projects": []}, "projects"),
        ([{"id": 1, "task_id": 2, "project_id": 3, "status": "Broken"}], "status"),
    ],
)
def test_load_json_names_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=words):
        DataWorksEmulator(credentials=[CREDS], seed=path)


def test_a_removed_log_answers_not_found_for_that_run_only(emu, call):
    # GIVEN a run whose log DataWorks no longer has
    emu.backend.set_log(FAILED, 1, "first run log")
    rerun(call, FAILED)
    emu.backend.remove_log(FAILED, 1)
    # THEN reading it answers 404, and the other run's log is still served
    with pytest.raises(ClientException) as err:
        call("GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=1)
    assert (err.value.status_code, err.value.code) == (404, "InvalidTaskInstanceLog.NotFound")
    assert "RUNNING" in call("GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=2)["TaskInstanceLog"]
