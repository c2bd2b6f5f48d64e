"""Should this instance be rerun, and if not, why not. Pure code: no I/O, no clock.

The guards run in a fixed order, the reasons that protect other people's data first (whose
project, which environment, which task), then the instance's own rerun property and state, then
the cap. The first guard that holds the instance back is the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from dwrerun.config import ANY_ENV, Settings
from dwrerun.schema import Reason

# TaskInstance.Status values (GetTaskInstance, 2024-05-18).
FAILURE = "Failure"
SUCCESS = "Success"
# TaskInstance.RerunMode values: the node's "rerun property".
ALL_DENIED = "AllDenied"
FAILURE_ALLOWED = "FailureAllowed"
ALL_ALLOWED = "AllAllowed"
MANUAL_TRIGGER = "Manual"  # TaskInstance.TriggerType of an instance run by hand (else Scheduler)
PAUSE = "Pause"  # TriggerRecurrence of a frozen (paused) instance
FROZEN_TASK_TYPE = 2  # the failure event's taskType for a frozen instance


@dataclass(frozen=True)
class Instance:
    """What GetTaskInstance says about an instance: the facts the guards read.

    A field that is absent, or holds a value of the wrong kind (a RunNumber of 3.9, `true` or
    `Infinity`), is None; `malformed` keeps each wrong value, as JSON, for the record. Whether a
    guard then holds the rerun back or goes on without the field is decided per field in
    `decide` (docs/reliability.md, "When an answer lacks a field"). dataworks.py builds it from
    the wire (`task_instance`).
    """

    id: int
    task_id: int | None
    task_name: str | None
    project_id: int | None
    project_env: str | None
    status: str | None
    run_number: int | None
    rerun_mode: str | None
    trigger_recurrence: str | None
    trigger_type: str | None = None  # Scheduler | Manual: TriggerRecurrence is documented for Scheduler only
    task_type: str | None = None  # the node type, e.g. ODPS_SQL, DI, DIDE_SHELL: failure rules may name it
    finished_time: int | None = None  # epoch ms when the current run ended (None while it runs)
    started_time: int | None = None  # epoch ms when the current run started
    malformed: tuple[tuple[str, str], ...] = ()  # (field, its value as JSON) for values of the wrong kind


@dataclass(frozen=True)
class AutoRerun:
    """A node's own automatic-rerun settings, as GetTask answers them (autorerun.py reads them)."""

    task_id: int
    rerun_mode: str | None
    rerun_times: int
    rerun_interval: int  # seconds


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
    event_finished_at: int | None = None,
) -> Decision:
    """Decide for one instance. `manual` is an operator's HTTP request; `force` lifts only the cap.

    `failed_run` is the run a scheduled rerun was planned for: the instance is rerun only if that
    run is still its latest one, so a delayed rerun never stacks on one that happened meanwhile.
    `event_finished_at` is when the run a failure event reports ended (epoch ms): an event about
    a run older than the instance's current one is a stale copy, and reruns nothing.
    """
    # A guard field the answer lacks holds the rerun back (fails closed) when the guard needs it:
    # not knowing whose project, which task, which environment, whether the instance is frozen or
    # what its rerun property says must not be read as "allowed".
    if settings.project_ids and instance.project_id is None:
        return _lacks(instance, "ProjectId", "so RERUN_PROJECT_IDS cannot be checked")
    if settings.project_ids and instance.project_id not in settings.project_ids:
        return _skip(Reason.PROJECT_NOT_ALLOWED, f"project {instance.project_id} is not in RERUN_PROJECT_IDS")
    if settings.exclude_task_ids and instance.task_id is None:
        return _lacks(instance, "TaskId", "so RERUN_EXCLUDE_TASK_IDS cannot be checked")
    if instance.task_id in settings.exclude_task_ids:
        return _skip(Reason.TASK_EXCLUDED, f"task {instance.task_id} is in RERUN_EXCLUDE_TASK_IDS")
    if settings.project_env != ANY_ENV and instance.project_env is None:
        return _lacks(
            instance, "ProjectEnv", f"so whether it is in {settings.project_env} (RERUN_PROJECT_ENV) is unknown"
        )
    if settings.project_env != ANY_ENV and instance.project_env != settings.project_env:
        return _skip(
            Reason.WRONG_ENVIRONMENT,
            f"the instance is in {instance.project_env}, RERUN_PROJECT_ENV is {settings.project_env}",
        )
    if instance.trigger_recurrence == PAUSE or event_task_type == FROZEN_TASK_TYPE:
        return _skip(Reason.PAUSED, "the instance is frozen (paused): unfreeze it in DataWorks to run it")
    if instance.trigger_recurrence is None and instance.trigger_type != MANUAL_TRIGGER:
        # Documented "only when TriggerType is Scheduler": a manual instance may lack it, and
        # cannot be frozen by its recurrence. A Scheduler (or unknown) instance still fails closed.
        return _lacks(instance, "TriggerRecurrence", "so whether the instance is frozen (paused) is unknown")
    if instance.rerun_mode is None:
        return _lacks(instance, "RerunMode", "so the node's rerun property is unknown")
    if instance.rerun_mode == ALL_DENIED:
        return _skip(Reason.RERUN_DENIED, "the node's rerun property forbids reruns (RerunMode AllDenied)")
    if failed_run is not None and instance.run_number != failed_run:
        if instance.run_number is not None and instance.run_number > failed_run:
            return _skip(
                Reason.ALREADY_RERUN,
                f"run {failed_run} failed, but the instance is now at run {instance.run_number} "
                f"({instance.status}): it was rerun meanwhile, by hand, by DataWorks or by an earlier "
                "attempt whose answer was lost",
            )
        return _skip(
            Reason.UNKNOWN_RUN_NUMBER,
            f"the scheduled rerun names run {failed_run}, but the instance is at run {instance.run_number}",
        )
    if instance.status is None:
        return _lacks(instance, "Status", "so whether it failed is unknown")
    if instance.status != FAILURE:
        if not manual:
            # Already rerun, fixed or set successful by someone: this is what makes duplicate
            # and late deliveries harmless.
            return _skip(Reason.NOT_FAILED, f"the instance is {instance.status}, no longer Failure")
        if instance.status != SUCCESS:
            return _skip(Reason.NOT_FINISHED, f"the instance is {instance.status}: only finished instances are rerun")
        if instance.rerun_mode != ALL_ALLOWED:
            return _skip(
                Reason.RERUN_DENIED,
                f"the instance succeeded and its RerunMode is {instance.rerun_mode}: only AllAllowed reruns a success",
            )
    if instance.run_number is None:
        return _skip(Reason.UNKNOWN_RUN_NUMBER, f"{_answered(instance, 'RunNumber')}, so the cap cannot be checked")
    if _stale(instance, event_finished_at):
        return _skip(
            Reason.ALREADY_RERUN,
            f"run {instance.run_number} started at {_utc(instance.started_time)}, after the run the event reports "
            f"ended ({_utc(event_finished_at)}): that failure was already rerun, and this event is a late copy "
            f"of it. Run {instance.run_number}'s own failure event decides about run {instance.run_number}",
        )
    if instance.run_number > settings.max_reruns and not force:
        return _skip(
            Reason.CAP_REACHED,
            f"run {instance.run_number} is past RERUN_MAX_RERUNS={settings.max_reruns}: reruns exhausted",
        )
    return Decision(
        True,
        Reason.ELIGIBLE,
        f"run {instance.run_number} {instance.status}: rerun as run {instance.run_number + 1}",
    )


def after_refusal(instance: Instance, refused_at_run: int | None, refusal: str) -> Decision | None:
    """What a read after DataWorks refused a rerun (SuccessInfo Success false) says: someone else
    reran the instance first (its RunNumber moved past the refused run), or None (the refusal stands)."""
    if not moved_on(instance, refused_at_run):
        return None
    return _skip(
        Reason.ALREADY_RERUN,
        f"already rerun by someone else: the instance is at run {instance.run_number} ({instance.status}), "
        f"past run {refused_at_run}, so DataWorks refused this rerun ({refusal})",
    )


def after_unclear_answer(instance: Instance, sent_at_run: int | None) -> Decision | None:
    """What a read after a rerun request with no clear answer says: it was carried out (the
    RunNumber moved on), or None (decide again)."""
    if not moved_on(instance, sent_at_run):
        return None
    message = (
        f"rerun confirmed by GetTaskInstance (now run {instance.run_number}, {instance.status}) after "
        "the rerun request got no clear answer"
    )
    if instance.run_number > sent_at_run + 1:
        # RerunTaskInstances has no precondition: a run that started and failed after the read is
        # the one this request reran (issue 24).
        rerun = instance.run_number - 1
        message += (
            f"; run {rerun} had started and failed since the instance was read at run {sent_at_run}, so this "
            f"request reran run {rerun}"
        )
    return Decision(True, Reason.ELIGIBLE, message)


def moved_on(instance: Instance, run: int | None) -> bool:
    """Whether the instance's RunNumber is past `run`: a rerun of that run has started."""
    return run is not None and instance.run_number is not None and instance.run_number > run


def _skip(reason: str, message: str) -> Decision:
    return Decision(False, reason, message)


def _stale(instance: Instance, event_finished_at: int | None) -> bool:
    """Whether a failure event is about an earlier run than the instance's current one.

    Inferred (docs/reliability.md, "Stale failure events"): the event's finishTime (else modifyTime) and
    GetTaskInstance's StartedTime come from the same scheduler clock, and a rerun starts after the
    run it reruns ended; so a run that started after the event's run ended is a later run. Run 1
    has no earlier run. Without either time the event cannot be placed, and it is taken to be about
    the current run: the status guard still stands between it and a second rerun.
    """
    return (
        event_finished_at is not None
        and instance.started_time is not None
        and instance.run_number is not None
        and instance.run_number > 1
        and event_finished_at < instance.started_time
    )


def _utc(epoch_ms: int) -> str:
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, ValueError, OSError):  # past the year 9999: say the number
        return f"{epoch_ms} ms"


def _lacks(instance: Instance, field: str, consequence: str) -> Decision:
    return _skip(Reason.LOOKUP_FAILED, f"{_answered(instance, field)}, {consequence}: not rerun")


def _answered(instance: Instance, field: str) -> str:
    """What the answer said of a field the guards need and could not use."""
    value = dict(instance.malformed).get(field)
    if value is None:
        return f"GetTaskInstance answered no {field}"
    kind = "a positive integer" if field in POSITIVE_INT_FIELDS else "text"
    return f"GetTaskInstance answered {field} {value}, not {kind}"


POSITIVE_INT_FIELDS = ("TaskId", "ProjectId", "RunNumber", "FinishedTime", "StartedTime")
