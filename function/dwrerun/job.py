"""One invocation's request (`Job`), the instances it names (`Target`), and each one's progress (`Item`).

A Job is made by one of its named constructors, one per way of asking:

    Job.for_event      failure events and their delayed invocations: the rules decide, a rerun waits a delay
    Job.for_ids        an operator's ids over HTTP: the rules only explain a dry run, nothing is delayed
    Job.for_filter     a rerun by filter, in the HTTP function and in its continuations (bulk.py)
    Job.for_sweep      a failed run the sweep found undecided (sweep.py): decided as its event would have been

The pipeline (rerun.py, send.py) reads the Job's properties, never the way it was asked.
An `Item` is where the pipeline keeps what it knows of one target between attempts; `outcome()`
turns what it knows into the instance's `Outcome`.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, replace

from dwrerun import pacing, schema
from dwrerun.config import Settings
from dwrerun.dataworks import DataWorksError
from dwrerun.failure import Verdict
from dwrerun.function_compute import InvokeFunctionError
from dwrerun.invocation import Invocation
from dwrerun.outcome import Origin, Outcome
from dwrerun.policy import Decision, Instance
from dwrerun.rules import RuleSet
from dwrerun.schedule import ScheduledRerun
from dwrerun.schema import Reason

# The start of the record of a delayed invocation whose payload earned no trust (schedule.py).
UNTRUSTED = (
    "not trusted (a scheduled rerun without a valid signature of RERUN_SIGNING_KEY: decided as a failure event "
    "for the instance it names)"
)


class Mode(enum.Enum):
    EVENT = "event"
    IDS = "ids"
    FILTER = "filter"
    SWEEP = "sweep"


@dataclass(frozen=True)
class Job:
    """One invocation's request: who asks, how, with what limits."""

    mode: Mode
    request_id: str  # FC's request id
    function_name: str
    settings: Settings
    deadline: float  # pacing.clock() time by which every call must have ended
    # Failure rules: on the event path and by filter they decide; for ids they only explain a dry run.
    # None: no log is read (a bad rules file, or the guards-only pass of a dry run by filter).
    rules: RuleSet | None = None
    dry_run: bool = False
    force: bool = False  # lifts the rerun cap (RERUN_MAX_RERUNS, a rule's maxReruns), nothing else
    comment: str | None = None  # the operator's Comment
    ignore_rules: bool = False  # a rerun by filter's IgnoreRules
    use_latest_config: bool | None = None  # RerunTaskInstances' UseLatestConfig; None: not sent
    origin_request_id: str | None = None  # a bulk rerun's HTTP request, on every record

    @classmethod
    def for_event(cls, invocation: Invocation, settings: Settings, rules: RuleSet | None) -> Job:
        return cls(
            Mode.EVENT,
            invocation.request_id,
            invocation.function_name,
            settings,
            invocation.deadline,
            rules,
            dry_run=settings.dry_run,
        )

    @classmethod
    def for_ids(
        cls,
        invocation: Invocation,
        settings: Settings,
        rules: RuleSet | None,
        *,
        dry_run: bool,
        force: bool,
        comment: str | None,
        use_latest_config: bool | None,
    ) -> Job:
        return cls(
            Mode.IDS,
            invocation.request_id,
            invocation.function_name,
            settings,
            invocation.deadline,
            rules,
            dry_run=settings.dry_run or dry_run,
            force=force,
            comment=comment,
            use_latest_config=use_latest_config,
        )

    @classmethod
    def for_filter(
        cls,
        invocation: Invocation,
        settings: Settings,
        rules: RuleSet | None,
        *,
        deadline: float,
        origin_request_id: str,
        dry_run: bool,
        force: bool,
        comment: str | None,
        ignore_rules: bool,
        use_latest_config: bool | None,
    ) -> Job:
        return cls(
            Mode.FILTER,
            invocation.request_id,
            invocation.function_name,
            settings,
            deadline,
            rules,
            dry_run=dry_run,
            force=force,
            comment=comment,
            ignore_rules=ignore_rules,
            use_latest_config=use_latest_config,
            origin_request_id=origin_request_id,
        )

    @classmethod
    def for_sweep(cls, invocation: Invocation, settings: Settings, rules: RuleSet | None) -> Job:
        """A failed run the sweep claimed: the event path's guards and rules, rerun when decided
        (the claim already waited the run's backoff)."""
        return replace(cls.for_event(invocation, settings, rules), mode=Mode.SWEEP)

    @property
    def trigger(self) -> str:
        # Continuations run in the event function, and still work for the HTTP request.
        if self.mode is Mode.SWEEP:
            return schema.SWEEP
        return schema.EVENTBRIDGE if self.mode is Mode.EVENT else schema.HTTP

    @property
    def origin(self) -> Origin:
        return Origin(self.trigger, self.request_id, self.comment, self.origin_request_id)

    @property
    def manual(self) -> bool:
        """An operator asked (ids or a filter), not a failure event (nor the sweep standing in for one)."""
        return self.mode in (Mode.IDS, Mode.FILTER)

    @property
    def named_ids(self) -> bool:
        """The operator named the instances: the guards let them rerun a success too."""
        return self.mode is Mode.IDS

    @property
    def rules_hold_back(self) -> bool:
        """Whether a `not-retryable` verdict holds a rerun back (never for ids an operator named)."""
        if self.mode is Mode.FILTER:
            return not self.ignore_rules
        return self.mode in (Mode.EVENT, Mode.SWEEP)

    @property
    def storm_guarded(self) -> bool:
        """The storm guard (send.guard) applies: a failure event's decision, or the sweep's of a failed
        run no event decided (a held instance stays held; in polling mode the sweep's failures count)."""
        return self.mode in (Mode.EVENT, Mode.SWEEP)

    @property
    def may_schedule(self) -> bool:
        """A positive delay queues the rerun as a delayed invocation (schedule.py): the event path."""
        return self.mode is Mode.EVENT

    @property
    def continues(self) -> bool:
        """Unfinished work is handed to a continuation (bulk.py): a log the deadline left unread
        defers the instance instead of letting it be rerun unchecked."""
        return self.mode is Mode.FILTER

    @property
    def reads_logs(self) -> bool:
        """Whether the failed runs' logs are read: to decide, or to explain a dry run."""
        return self.rules is not None and self.settings.read_logs and (self.rules_hold_back or self.dry_run)


@dataclass(frozen=True)
class Target:
    """An instance to consider, and where the request for it came from."""

    instance_id: int
    event_id: str | None = None
    event_task_type: int | None = None  # the failure event's taskType (2 = frozen)
    scheduled: ScheduledRerun | None = None  # a delayed invocation: the failed run it was planned for
    # A delayed invocation's payload that was not signed: only its instance and failed run are
    # used, and it is decided as a failure event (the rules, DataWorks' own rerun, the delay).
    untrusted: ScheduledRerun | None = None
    listed: Instance | None = None  # a bulk rerun: the instance as ListTaskInstances showed it
    failed_run: int | None = None  # a bulk rerun: the run the selection found failed
    event_finished_at: int | None = None  # when the run the failure event reports ended (epoch ms)

    @property
    def decided_when_scheduled(self) -> bool:
        """A delayed invocation of a rerun decided when it was scheduled (DataWorks' own rerun and the
        failure rules were checked then). Not one the sweep claimed: nothing was decided for it."""
        return self.scheduled is not None and not self.scheduled.swept


@dataclass(frozen=True)
class Unclear:
    """A call that may have been carried out without its answer reaching us."""

    run: int | None  # the instance's RunNumber when it went out
    error: DataWorksError


@dataclass(frozen=True)
class Refusal:
    """DataWorks refused the rerun (SuccessInfo Success false): until a read says why, its words."""

    run: int | None  # the instance's RunNumber when it was refused
    message: str
    request_id: str | None


@dataclass
class Item:
    """What the pipeline knows of one target between attempts; `outcome` set ends its work."""

    target: Target
    instance: Instance | None = None
    decision: Decision | None = None  # None: to be read (again) and decided
    verdict: Verdict | None = None  # what the failed run's log said; read once per run
    outcome: Outcome | None = None
    error: DataWorksError | None = None  # the transient error of this attempt
    out_of_time: bool = False  # not read: the reads' share of the invocation's time ran out first
    unclear: Unclear | None = None  # a rerun request with no clear answer
    refusal: Refusal | None = None
    attempts: int = 0
    lookup_ms: float | None = None
    rerun_ms: float | None = None
    read_at: float | None = None  # pacing.clock() when GetTaskInstance last answered for it
    delay: int = 0  # seconds the rerun waits; 0 reruns in this invocation
    due_at: str | None = None
    schedule_sent: bool = False  # an InvokeFunction with no clear answer went out
    schedule_refused: InvokeFunctionError | None = None  # why a planned delay became "at once"
    guard_note: str | None = None  # the storm guard failed open: why (send.guard), said in the record

    @property
    def open(self) -> bool:
        return self.outcome is None

    def read_again(self, error: DataWorksError | None = None) -> None:
        """Send the item back to be read and decided with the next attempt."""
        self.decision = None
        if error is not None:
            self.error = error

    def finish(self, job: Job, *args, **fields) -> None:
        """End the item's work with its outcome (the arguments of `to_outcome`)."""
        self.outcome = self.to_outcome(job, *args, **fields)

    def finish_refused(self, job: Job) -> None:
        """A rerun DataWorks refused, when nobody else had rerun the instance: its answer stands."""
        refusal = self.refusal
        self.finish(job, schema.RERUN, False, Reason.ELIGIBLE, refusal.message, dataworks_request_id=refusal.request_id)

    def to_outcome(
        self,
        job: Job,
        decision: str,
        success: bool | None,
        reason: str,
        message: str,
        error: DataWorksError | None = None,
        dataworks_request_id: str | None = None,
        due_at: str | None = None,
        async_task_id: str | None = None,
        **storm,  # storm_cause, storm_id, notes: what the storm guard did (send.guard)
    ) -> Outcome:
        scheduled, untrusted = self.target.scheduled, self.target.untrusted
        if scheduled is not None:  # a delayed invocation names its task and when it was due
            async_task_id, due_at = scheduled.async_task_id, due_at or scheduled.due_at
        if untrusted is not None:
            async_task_id = async_task_id or untrusted.async_task_id
            message = f"{UNTRUSTED}: {message}"
        refused = self.schedule_refused
        if refused is not None and decision == schema.RERUN:
            message = f"InvokeFunction refused ({refused.code}: {refused.message}): rerun at once instead. {message}"
        planned = decision in (schema.SCHEDULED, schema.DRY_RUN) and self.delay
        verdict = self.verdict
        return Outcome(
            self.target.instance_id,
            decision,
            reason,
            message,
            success,
            instance=self.instance,
            event_id=self.target.event_id,
            error_code=error.code if error else None,
            dataworks_request_id=dataworks_request_id or (error.request_id if error else None),
            attempts=self.attempts,
            lookup_ms=self.lookup_ms,
            rerun_ms=self.rerun_ms,
            rule=verdict.rule if verdict else (scheduled.rule if scheduled else None),
            failure_class=verdict.failure_class if verdict else None,
            matched_line=verdict.matched_line if verdict else None,
            delay_seconds=self.delay if planned else None,
            due_at=due_at or (self.due_at if planned else None),
            async_task_id=async_task_id,
            schedule_error_code=refused.code if refused is not None else None,
            use_latest_config=job.use_latest_config if decision in (schema.RERUN, schema.DRY_RUN) else None,
            trusted=True if scheduled is not None else (False if untrusted is not None else None),
            **storm,
            swept=job.mode is Mode.SWEEP,
            missed_event=_missed(decision, reason) if job.mode is Mode.SWEEP else None,
        )


def _missed(decision: str, reason: str) -> bool | None:
    """A sweep's decision: was the failed run's event missed? True when the sweep reruns it: an
    event handled to the end leaves a trace the sweep sees (a scheduled rerun's FC async task, or a
    run that moved on). False when someone got there first. None when it cannot tell: a skip or a
    dry run leaves no trace, so the event path may have recorded the same (docs/sweep.md)."""
    if decision == schema.RERUN:
        return True
    if reason in (Reason.ALREADY_RERUN, Reason.ALREADY_SCHEDULED, Reason.NOT_FAILED, Reason.NOT_FINISHED):
        return False
    return None


class QuotaWatch:
    """The first quota-exhausted answer of the invocation; once seen, no thread starts another call."""

    def __init__(self):
        self.error: DataWorksError | None = None
        self._lock = threading.Lock()

    def saw(self, error: DataWorksError) -> None:
        with self._lock:
            self.error = self.error or error


def time_left(job: Job, until: float | None = None) -> float:
    """The read timeout for the next call: the configured one, cut short so it ends by the deadline
    (or by `until`, the end of the reads' share of the invocation's time)."""
    left = (job.deadline if until is None else until) - pacing.clock()
    if left < pacing.MIN_CALL_SECONDS:
        raise pacing.DeadlineReached("the invocation's deadline is reached")
    return min(left, job.settings.read_timeout)


def paced(limiter: pacing.RateLimiter, error: DataWorksError) -> None:
    """Tell the limiter about a rate-limit answer: it slows down every caller of this instance."""
    if error.throttled:
        limiter.throttled(error.retry_after)
