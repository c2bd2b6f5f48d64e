"""What GetTaskInstance (and GetTask) answers the guards read: odd values and absent fields.

Every guard field is either required, so an answer without it (or with a value of the wrong
kind) holds the rerun back with a record naming the field ("fails closed"), or optional, so the
rerun goes ahead without it ("fails open"). docs/reliability.md, "When an answer lacks a field",
gives the table and why; this file pins every row of it against the emulator.
"""

import json

import pytest

from conftest import FAILED_ID, TASK_ID, failure_event, instance_records, make_function, reruns, seed_failed
from localcloud.dataworks.faults import ABSENT

GET = "GetTaskInstance"


def handle(dataworks, tmp_path, **env):
    with make_function(dataworks, tmp_path, **env) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    return record


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("inf"), "Infinity"),  # before: OverflowError, and no record at all
        (3.9, "3.9"),  # before: read as run 3
        (True, "true"),  # before: read as run 1
        (-5, "-5"),
        (0, "0"),
        ("two", '"two"'),
        ([2], "[2]"),
    ],
)
def test_a_run_number_that_is_not_a_positive_integer_is_refused_with_a_record(dataworks, tmp_path, value, shown):
    seed_failed(dataworks)
    dataworks.faults.set(GET, answer_fields={"RunNumber": value})
    record = handle(dataworks, tmp_path)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", "unknown-run-number", None)
    assert f"RunNumber {shown}" in record["message"] and "not a positive integer" in record["message"]
    assert record["runNumber"] is None
    assert reruns(dataworks) == []


def test_a_run_number_sent_as_a_digit_string_is_read_as_the_number(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.faults.set(GET, answer_fields={"RunNumber": "1"})
    record = handle(dataworks, tmp_path)
    assert (record["decision"], record["reason"], record["runNumber"]) == ("rerun", "eligible", 1)


# (the field left out, the function's settings, the reason recorded): each fails closed.
CLOSED = [
    pytest.param("RunNumber", {}, "unknown-run-number", id="RunNumber"),
    pytest.param("Status", {}, "lookup-failed", id="Status"),
    pytest.param("RerunMode", {}, "lookup-failed", id="RerunMode"),  # before: rerun
    pytest.param("TriggerRecurrence", {}, "lookup-failed", id="TriggerRecurrence"),  # before: rerun
    pytest.param("ProjectEnv", {}, "lookup-failed", id="ProjectEnv"),
    pytest.param("ProjectId", {"RERUN_PROJECT_IDS": "48213"}, "lookup-failed", id="ProjectId-with-an-allow-list"),
    pytest.param("TaskId", {"RERUN_EXCLUDE_TASK_IDS": "1"}, "lookup-failed", id="TaskId-with-exclusions"),
]


@pytest.mark.parametrize(("field", "env", "reason"), CLOSED)
def test_an_answer_without_a_required_guard_field_holds_the_rerun_back(dataworks, tmp_path, field, env, reason):
    seed_failed(dataworks)
    dataworks.faults.set(GET, answer_fields={field: ABSENT})
    record = handle(dataworks, tmp_path, **env)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", reason, None)
    assert f"no {field}" in record["message"]
    assert reruns(dataworks) == []


@pytest.mark.parametrize(
    ("field", "env"),
    [
        ("ProjectId", {}),  # no RERUN_PROJECT_IDS: the project is not checked
        ("TaskId", {}),  # no RERUN_EXCLUDE_TASK_IDS; nor is GetTask asked (DataWorks' own reruns)
        ("ProjectEnv", {"RERUN_PROJECT_ENV": "any"}),
        ("TaskName", {}),
        ("TaskType", {}),  # failure rules that name node types do not match; the others still do
        ("StartedTime", {}),  # a failure event cannot be placed against the runs: taken as current
        ("FinishedTime", {}),
    ],
)
def test_an_answer_without_an_optional_field_still_reruns(dataworks, tmp_path, field, env):
    seed_failed(dataworks)
    dataworks.faults.set(GET, answer_fields={field: ABSENT})
    record = handle(dataworks, tmp_path, **env)
    assert (record["decision"], record["reason"], record["success"]) == ("rerun", "eligible", True)
    assert len(reruns(dataworks)) == 1


def test_the_manual_path_holds_back_on_a_missing_guard_field_too(dataworks, tmp_path):
    seed_failed(dataworks, status="Success", rerun_mode="AllAllowed")
    dataworks.faults.set(GET, answer_fields={"RerunMode": ABSENT})
    request = {
        "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
        "rawPath": "/rerun",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"Ids": [FAILED_ID]}),
        "isBase64Encoded": False,
    }
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(json.dumps(request).encode())
    answer = json.loads(inv.result["body"])
    assert answer["Skipped"][str(FAILED_ID)].startswith("lookup-failed: GetTaskInstance answered no RerunMode")
    assert reruns(dataworks) == []


@pytest.mark.parametrize("value", [float("inf"), True, "often", -3])
def test_an_odd_rerun_times_from_get_task_is_read_as_no_automatic_rerun(dataworks, tmp_path, value):
    # GetTask's own rerun settings only decide whether DataWorks reruns the node itself; a value
    # that is not a count is read as none (inferred), so the function acts, with a record.
    seed_failed(dataworks)
    dataworks.backend.add_task(id=TASK_ID, project_id=48213, rerun_mode="FailureAllowed", rerun_times=3)
    dataworks.faults.set("GetTask", answer_fields={"RerunTimes": value})
    record = handle(dataworks, tmp_path)
    assert (record["decision"], record["reason"]) == ("rerun", "eligible")


def test_a_get_task_refused_holds_the_rerun_back_with_a_record_saying_why(dataworks, tmp_path):
    # Not knowing whether DataWorks reruns the node itself risks a double run: the function holds
    # back, and the whole record says so (before, mutation testing: the message could be lost).
    seed_failed(dataworks)
    dataworks.faults.set("GetTask", refuse=None)
    record = handle(dataworks, tmp_path)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", "lookup-failed", None)
    assert record["message"] == (
        "GetTask refused (You are not authorized to access the resources.): "
        "whether DataWorks reruns this node itself is unknown. RAM refused dataworks:GetTask "
        "(ResourceNotAuthorized.Api): grant dataworks:GetTask to the function's role, or set "
        'vars.dataworksActions to "all" (dataworks:*) and run scripts/deploy; if RAM allows it, add the role '
        "to the workspace as a member with an O&M role"
    )  # issue 22: a refused call names the RAM action and the fix
    assert record["errorCode"] == "ResourceNotAuthorized.Api"
    (get_task,) = [e for e in dataworks.journal if e.action == "GetTask"]
    assert record["dataworksRequestId"] == get_task.request_id
    assert record["attempts"] == 2  # GetTaskInstance, GetTask: never retried
    assert [e.action for e in dataworks.journal] == [GET, "GetTask"] and reruns(dataworks) == []
