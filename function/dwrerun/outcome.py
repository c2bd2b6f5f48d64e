"""What became of one instance: the typed result every path returns, and the wording shared by paths.

The pipeline (rerun.py), the event and HTTP functions and bulk reruns hand `Outcome`s around and
decide on their fields; records.py renders each one once, as the SLS record, with the `Origin`
of the invocation (who asked). Nothing reads a record back.

The sentences more than one path writes live here, beside the type, so each is worded once.
"""

from __future__ import annotations

from dataclasses import dataclass

from dwrerun import schema
from dwrerun.dataworks import QUOTA_LIMITS, DataWorksError
from dwrerun.policy import Instance
from dwrerun.schema import Reason

# A refusal by RAM or by the workspace (403; DataWorks' RAM-refusal codes as its error-code page and
# the emulator give them). Which codes mean "not a member of the workspace" is not documented: a
# refusal whose message names the workspace, project or member is read as that [inferred].
REFUSED_CODES = ("Forbidden", "NoPermission", "ResourceNotAuthorized", "AccessDenied", "Unauthorized")
MEMBERSHIP_WORDS = ("workspace", "project", "member")


@dataclass(frozen=True)
class Origin:
    """Who asked: the invocation's side of every record it writes."""

    trigger: str  # schema.EVENTBRIDGE, schema.HTTP or schema.SWEEP
    request_id: str  # the FC invocation's
    comment: str | None = None  # the operator's Comment
    origin_request_id: str | None = None  # a bulk rerun's HTTP request, on every record that works for it


@dataclass(frozen=True)
class Outcome:
    """One instance's decision and what came of it. `instance` is what DataWorks said of it, if it was read.

    `rule`, `failure_class` and `matched_line` say what the failed run's log showed (failure.py);
    `matched_line` is already redacted and cut: the log itself never comes here. `async_task_id`
    is FC's async task id of a scheduled rerun (not `taskId`, the DataWorks task): the scheduling
    record and the delayed invocation's record both carry it, so SLS joins the two.
    """

    instance_id: int | None
    decision: str  # schema.RERUN, SKIP, DRY_RUN or SCHEDULED
    reason: str  # a schema.Reason
    message: str  # the same for a person, with the facts that led to it
    success: bool | None = None  # RerunTaskInstances' SuccessInfo Success; None: no rerun call
    instance: Instance | None = None
    event_id: str | None = None
    error_code: str | None = None
    dataworks_request_id: str | None = None
    attempts: int = 0
    lookup_ms: float | None = None
    rerun_ms: float | None = None
    rule: str | None = None
    failure_class: str | None = None
    matched_line: str | None = None
    delay_seconds: int | None = None
    due_at: str | None = None
    async_task_id: str | None = None
    schedule_error_code: str | None = None
    use_latest_config: bool | None = None
    trusted: bool | None = None  # a delayed invocation's: was its payload signed (schedule.py)
    storm_cause: str | None = None  # the storm guard's cause, "<projectId>/<rule>", when it acted
    storm_id: str | None = None  # the storm, "<key>-<epoch>"
    notes: tuple = ()  # storm.Note records the guard's step produced (written as storm records)
    swept: bool = False  # decided for the sweep (sweep.py): the record carries missedEvent
    missed_event: bool | None = None  # the sweep's verdict on the failed run's event (job._missed)

    def __post_init__(self):
        if self.decision not in schema.DECISIONS or self.reason not in schema.REASONS:
            raise ValueError(f"not in dwrerun/schema.py: decision {self.decision!r}, reason {self.reason!r}")

    @property
    def started(self) -> bool:
        """A rerun DataWorks accepted."""
        return self.decision == schema.RERUN and self.success is True


def skipped(
    instance_id: int | None,
    reason: str,
    message: str,
    *,
    event_id: str | None = None,
    error_code: str | None = None,
    instance: Instance | None = None,
    **fields,
) -> Outcome:
    """An instance nothing was sent for."""
    return Outcome(
        instance_id,
        schema.SKIP,
        reason,
        message,
        instance=instance,
        event_id=event_id,
        error_code=error_code,
        **fields,
    )


def quota_exhausted(instance_id: int, code: str, then: str, **fields) -> Outcome:
    """Not rerun: DataWorks' daily limit or the edition's quota (`code`) is used up. `then`: what to do once it clears."""
    return skipped(instance_id, Reason.QUOTA_EXHAUSTED, quota_note(code, then), error_code=code, **fields)


def quota_note(code: str, then: str) -> str:
    return (
        f"not rerun: {QUOTA_LIMITS.get(code, code)} is used up ({code}); it does not clear within minutes, so this "
        f"is not retried. {then}"
    )


def first_quota_code(outcomes: list[Outcome]) -> str | None:
    """The quota code that stopped the work, if one did."""
    return next((o.error_code for o in outcomes if o.reason == Reason.QUOTA_EXHAUSTED), None)


def refusal(action: str, error: DataWorksError, project_id: int | None = None) -> str | None:
    """The fix for a refused DataWorks call, naming what was missing; None if it was not refused."""
    refused = error.status == 403 or any(error.code.startswith(c) for c in REFUSED_CODES)
    if not refused:
        return None
    text = f"{error.code} {error.message}".lower()
    if project_id is not None and any(word in text for word in MEMBERSHIP_WORDS):
        return (
            f"DataWorks refused {action} in workspace {project_id} ({error.code}): add the role "
            f"(template.yml namePrefix + '-fc-role') to workspace {project_id} as a member with an O&M role"
        )
    return (
        f"RAM refused dataworks:{action} ({error.code}): grant dataworks:{action} to the function's role, "
        'or set vars.dataworksActions to "all" (dataworks:*) and run scripts/deploy; if RAM allows it, add '
        "the role to the workspace as a member with an O&M role"
    )


def refused(what: str, error: DataWorksError, project_id: int | None = None) -> str:
    """`<what> refused: <DataWorks' message>`, and the fix when RAM or the workspace refused it."""
    fix = refusal(error.action, error, project_id)
    said = f"{what} refused: {error.message}"
    if fix is None:
        return said
    return f"{said}{'' if said.endswith(('.', '!', '?')) else '.'} {fix}"
