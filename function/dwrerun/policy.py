"""Should this instance be rerun, and if not, why not. Pure code: no I/O, no clock.

The guards run in a fixed order, the reasons that protect other people's data first (whose
project, which environment, which task), then the instance's own rerun property and state, then
the cap. The first guard that holds the instance back is the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from dwrerun.config import ANY_ENV, Settings

# TaskInstance.Status values (GetTaskInstance, 2024-05-18).
FAILURE = "Failure"
SUCCESS = "Success"
# TaskInstance.RerunMode values: the node's "rerun property".
ALL_DENIED = "AllDenied"
FAILURE_ALLOWED = "FailureAllowed"
ALL_ALLOWED = "AllAllowed"
PAUSE = "Pause"  # TriggerRecurrence of a frozen (paused) instance
FROZEN_TASK_TYPE = 2  # the failure event's taskType for a frozen instance


@dataclass(frozen=True)
class Instance:
    """What GetTaskInstance says about an instance: the facts the guards read."""

    id: int
    task_id: int | None
    task_name: str | None
    project_id: int | None
    project_env: str | None
    status: str | None
    run_number: int | None
    rerun_mode: str | None
    trigger_recurrence: str | None
    task_type: str | None = None  # the node type, e.g. ODPS_SQL, DI, DIDE_SHELL: failure rules may name it
    finished_time: int | None = None  # epoch ms when the current run ended (None while it runs)

    @classmethod
    def from_api(cls, task_instance: dict) -> Instance:
        """Build from the `TaskInstance` object of a GetTaskInstance answer."""
        return cls(
            id=int(task_instance["Id"]),
            task_id=_int_or_none(task_instance.get("TaskId")),
            task_name=task_instance.get("TaskName"),
            project_id=_int_or_none(task_instance.get("ProjectId")),
            project_env=task_instance.get("ProjectEnv"),
            status=task_instance.get("Status"),
            run_number=_int_or_none(task_instance.get("RunNumber")),
            rerun_mode=task_instance.get("RerunMode"),
            trigger_recurrence=task_instance.get("TriggerRecurrence"),
            task_type=task_instance.get("TaskType") if isinstance(task_instance.get("TaskType"), str) else None,
            finished_time=_int_or_none(task_instance.get("FinishedTime")),
        )


@dataclass(frozen=True)
class Decision:
    rerun: bool
    reason: str  # a short code to query on, e.g. "cap-reached"; "eligible" when rerun is True
    message: str  # the same for a person, with the facts that led to it
    # Seconds a failure rule suggests waiting before the rerun; kept for scheduled reruns to use.
    delay_seconds: int | None = None


def decide(
    instance: Instance,
    settings: Settings,
    *,
    manual: bool = False,
    force: bool = False,
    event_task_type: int | None = None,
    failed_run: int | None = None,
) -> Decision:
    """Decide for one instance. `manual` is an operator's HTTP request; `force` lifts only the cap.

    `failed_run` is the run a scheduled rerun was planned for: the instance is rerun only if that
    run is still its latest one, so a delayed rerun never stacks on one that happened meanwhile.
    """
    if settings.project_ids and instance.project_id not in settings.project_ids:
        return _skip("project-not-allowed", f"project {instance.project_id} is not in RERUN_PROJECT_IDS")
    if instance.task_id in settings.exclude_task_ids:
        return _skip("task-excluded", f"task {instance.task_id} is in RERUN_EXCLUDE_TASK_IDS")
    if settings.project_env != ANY_ENV and instance.project_env != settings.project_env:
        return _skip(
            "wrong-environment",
            f"the instance is in {instance.project_env}, RERUN_PROJECT_ENV is {settings.project_env}",
        )
    if instance.trigger_recurrence == PAUSE or event_task_type == FROZEN_TASK_TYPE:
        return _skip("paused", "the instance is frozen (paused): unfreeze it in DataWorks to run it")
    if instance.rerun_mode == ALL_DENIED:
        return _skip("rerun-denied", "the node's rerun property forbids reruns (RerunMode AllDenied)")
    if failed_run is not None and instance.run_number != failed_run:
        if instance.run_number is not None and instance.run_number > failed_run:
            return _skip(
                "already-rerun",
                f"run {failed_run} failed, but the instance is now at run {instance.run_number} "
                f"({instance.status}): it was rerun meanwhile, by hand, by DataWorks or by an earlier "
                "attempt whose answer was lost",
            )
        return _skip(
            "unknown-run-number",
            f"the scheduled rerun names run {failed_run}, but the instance is at run {instance.run_number}",
        )
    if instance.status != FAILURE:
        if not manual:
            # Already rerun, fixed or set successful by someone: this is what makes duplicate
            # and late deliveries harmless.
            return _skip("not-failed", f"the instance is {instance.status}, no longer Failure")
        if instance.status != SUCCESS:
            return _skip("not-finished", f"the instance is {instance.status}: only finished instances are rerun")
        if instance.rerun_mode != ALL_ALLOWED:
            return _skip(
                "rerun-denied",
                f"the instance succeeded and its RerunMode is {instance.rerun_mode}: only AllAllowed reruns a success",
            )
    if instance.run_number is None:
        return _skip("unknown-run-number", "GetTaskInstance returned no RunNumber, so the cap cannot be checked")
    if instance.run_number > settings.max_reruns and not force:
        return _skip(
            "cap-reached",
            f"run {instance.run_number} is past RERUN_MAX_RERUNS={settings.max_reruns}: reruns exhausted",
        )
    return Decision(
        True,
        "eligible",
        f"run {instance.run_number} {instance.status}: rerun as run {instance.run_number + 1}",
    )


def _skip(reason: str, message: str) -> Decision:
    return Decision(False, reason, message)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
