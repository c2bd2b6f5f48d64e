"""Issue 22's fixes in the guards and the re-read (policy.py, selection.py).

Each test states the documented behaviour; each failed before its fix.

- TriggerRecurrence "takes effect only when TriggerType is Scheduler" (DataWorks 2024-05-18
  GetTaskInstance and TaskInstance models, FACTS section 10): a manually triggered instance may
  not carry it, and must not be held back as lookup-failed for its absence.
- ListTaskInstances with an Id/Ids filter "returns the instance's historical runs as separate
  rows, told apart by RunNumber" (the same SDK's ListTaskInstancesRequest.Id): the re-read keeps
  the current run's row, the highest RunNumber, whatever order the rows come in.
"""

from __future__ import annotations

from dwrerun import pacing
from dwrerun.config import Settings
from dwrerun.dataworks import task_instance
from dwrerun.policy import decide

MANUAL = {
    "Id": 1000012345690,
    "TaskId": 700000004499,
    "TaskName": "adhoc_backfill",
    "ProjectId": 48213,
    "ProjectEnv": "Prod",
    "Status": "Failure",
    "RunNumber": 1,
    "RerunMode": "FailureAllowed",
    "TriggerType": "Manual",
    # no TriggerRecurrence: documented only for TriggerType Scheduler
}


def test_a_manual_instance_without_trigger_recurrence_is_not_lookup_failed():
    decision = decide(task_instance(MANUAL), Settings())
    assert decision.reason != "lookup-failed", decision.message
    assert decision.rerun


def test_a_scheduled_instance_without_trigger_recurrence_still_fails_closed():
    # The guard keeps holding back a Scheduler instance whose answer lacks the field.
    scheduled = {**MANUAL, "TriggerType": "Scheduler"}
    assert decide(task_instance(scheduled), Settings()).reason == "lookup-failed"


class _Runs:
    """A DataWorks stand-in whose ListTaskInstances answers every run of the ids as its own row."""

    def __init__(self, rows):
        self.rows = rows

    def list_task_instances(self, params, timeout):
        wanted = set(params["Ids"])
        rows = [r for r in self.rows if r["Id"] in wanted]
        return rows, len(rows)


def _row(run: int, status: str) -> dict:
    return {**MANUAL, "TriggerType": "Scheduler", "TriggerRecurrence": "Normal", "RunNumber": run, "Status": status}


def test_the_reread_keeps_the_current_runs_row_whatever_the_order():
    from dwrerun.selection import reread

    for rows in ([_row(2, "Running"), _row(1, "Failure")], [_row(1, "Failure"), _row(2, "Running")]):
        current = reread(_Runs(rows), 48213, 1, "Prod", [MANUAL["Id"]], Settings(), pacing.clock() + 60)
        assert (current[MANUAL["Id"]].run_number, current[MANUAL["Id"]].status) == (2, "Running"), rows


def test_a_refused_rerun_names_the_ram_action_and_the_fix_or_the_workspace():
    # Issue 22: a call RAM refuses must say which action to grant; a refusal about the workspace
    # says to add the role as a member. Other errors keep DataWorks' own words only.
    from dwrerun.dataworks import DataWorksError
    from dwrerun.outcome import refused

    ram = DataWorksError("RerunTaskInstances", "Forbidden.RAM", "not allowed.", transient=False, status=403)
    assert refused("RerunTaskInstances", ram, 48213) == (
        "RerunTaskInstances refused: not allowed. RAM refused dataworks:RerunTaskInstances (Forbidden.RAM): grant "
        'dataworks:RerunTaskInstances to the function\'s role, or set vars.dataworksActions to "all" (dataworks:*) '
        "and run scripts/deploy; if RAM allows it, add the role to the workspace as a member with an O&M role"
    )
    member = DataWorksError("RerunTaskInstances", "Forbidden", "not a member of the workspace", transient=False)
    assert refused("RerunTaskInstances", member, 48213).endswith(
        "add the role (template.yml namePrefix + '-fc-role') to workspace 48213 as a member with an O&M role"
    )
    other = DataWorksError("RerunTaskInstances", "Invalid.Instance", "bad", transient=False, status=400)
    assert refused("RerunTaskInstances", other) == "RerunTaskInstances refused: bad"
