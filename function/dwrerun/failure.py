"""Why did the run fail: read the failed run's log once, match the failure rules, say what it means.

One step of rerun.py, taken for an instance the guards would rerun (and, on the HTTP path, only to
explain a dry run). `classify` reads the log of the failed run with `GetTaskInstanceLog` (its
RunNumber passed explicitly), matches the rules (dwrerun/rules.py) and returns a `Verdict`;
`apply` turns it into the event path's decision.

A log that cannot be read never holds a rerun back: not found, refused, throttled until the
time for it ran out, or `RERUN_READ_LOGS=false`, the instance goes on as if no rules existed,
and the record says why (`rule` null, `failureClass` unknown).

Each (instance, run) is read at most once per invocation: rerun.py keeps the verdict for the
run it was read for. A read that fails transiently (throttling, 5xx, timeout) is tried at most
`LOG_READ_ATTEMPTS` times in all; DataWorks' daily or edition quota is not retried at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dwrerun import pacing, rules
from dwrerun.config import Settings
from dwrerun.dataworks import DataWorks, DataWorksError
from dwrerun.policy import Decision, Instance
from dwrerun.schema import Reason

LOG_READ_ATTEMPTS = 3
# A log read is not started with less than pacing.MIN_CALL_SECONDS for it, and leaves the rerun
# call after it pacing.MIN_CALL_SECONDS plus one call's read timeout (at most RERUN_RESERVE_SECONDS).

# The error_code of a Verdict whose log was not read because the invocation ran out of time.
NO_TIME_LEFT = "no time left before the deadline"

RETRYABLE = "retryable"
NOT_RETRYABLE = "not-retryable"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """What the failed run's log says. `rule` is a rule's name, "default", or None (no log read)."""

    run_number: int | None  # the run whose log this is
    rule: str | None
    failure_class: str  # retryable | not-retryable | unknown
    action: str  # rerun | skip: what the rules say to do
    note: str  # the why, for a person: the rule and its description, or why no log was read
    matched_line: str | None = None  # redacted and cut
    max_reruns: int | None = None
    delay_seconds: int | None = None
    source: str | None = None
    calls: int = 0  # GetTaskInstanceLog calls made
    error_code: str | None = None  # why the log could not be read, when it could not


def classify(
    dataworks: DataWorks,
    instance: Instance,
    settings: Settings,
    rule_set: rules.RuleSet,
    deadline: float,
) -> Verdict:
    """Read the log of the instance's current (failed) run and match it. Never raises DataWorksError."""
    run = instance.run_number
    if not settings.read_logs:
        return _unread(run, "RERUN_READ_LOGS is false: the log was not read", 0)
    if run is None:
        return _unread(run, "GetTaskInstance returned no RunNumber, so there is no run to read the log of", 0)
    log, calls, error = _read(dataworks, instance.id, run, settings, deadline)
    if log is None:
        return _unread(run, f"the log of run {run} could not be read ({error})", calls, error)
    found = rules.match(rule_set, log, instance.task_type)
    if found.rule is None:
        return Verdict(
            run,
            rules.DEFAULT_RULE,
            UNKNOWN,
            settings.rules_default,
            f"no failure rule matched the log of run {run}; RERUN_RULES_DEFAULT is {settings.rules_default}",
            calls=calls,
        )
    rule = found.rule
    return Verdict(
        run,
        rule.name,
        RETRYABLE if rule.action == rules.RERUN else NOT_RETRYABLE,
        rule.action,
        f"failure rule {rule.name!r} matched line {found.line_number} of the log of run {run}"
        + (f": {rule.description}" if rule.description else ""),
        found.line,
        rule.max_reruns,
        rule.delay_seconds,
        rule.source,
        calls,
    )


def apply(
    decision: Decision, verdict: Verdict, instance: Instance, settings: Settings, force: bool = False
) -> Decision:
    """The decision once the log has spoken (event path, bulk reruns by filter). Only narrows: never
    turns a skip into a rerun. `force` (an operator's Force) lifts a rule's rerun cap, as it lifts
    RERUN_MAX_RERUNS, and nothing else."""
    if not decision.rerun:
        return decision
    if verdict.action == rules.SKIP:
        if verdict.rule == rules.DEFAULT_RULE:
            why = "Not rerun: the instance stays Failure for a person to look at"
        else:
            why = "A rerun cannot fix it: the instance stays Failure for a person to fix and rerun"
        # The note ends with the rule's description, which may end its own sentence.
        stop = "" if verdict.note.endswith((".", "!", "?")) else "."
        return Decision(False, Reason.NOT_RETRYABLE, f"{verdict.note}{stop} {why}")
    if verdict.max_reruns is not None and instance.run_number is not None and not force:
        cap = min(verdict.max_reruns, settings.max_reruns)
        if instance.run_number > cap:
            return Decision(
                False,
                Reason.CAP_REACHED,
                f"run {instance.run_number} is past the {cap} rerun(s) failure rule {verdict.rule!r} allows "
                f"(RERUN_MAX_RERUNS={settings.max_reruns}): reruns exhausted",
            )
    return replace(decision, message=f"{decision.message} ({verdict.note})", delay_seconds=verdict.delay_seconds)


def _unread(run: int | None, note: str, calls: int, error: str | None = None) -> Verdict:
    # Whatever RERUN_RULES_DEFAULT says: an unread log must not be what holds a rerun back.
    return Verdict(run, None, UNKNOWN, rules.RERUN, note, calls=calls, error_code=error)


def _read(
    dataworks: DataWorks, instance_id: int, run: int, settings: Settings, deadline: float
) -> tuple[str | None, int, str | None]:
    """(the log or None, calls made, the error code when None)."""
    # Keep back time for the rerun call that follows: a log is not worth missing the deadline for.
    own_deadline = deadline - pacing.MIN_CALL_SECONDS - min(settings.read_timeout, pacing.RERUN_RESERVE_SECONDS)
    calls: list[DataWorksError | None] = []  # one entry per call made: its error, None while it runs

    def read(left: float) -> str:
        calls.append(None)
        try:
            return dataworks.get_task_instance_log(instance_id, run, min(settings.log_timeout, left))
        except DataWorksError as exc:
            calls[-1] = exc
            raise

    try:
        log = pacing.retry(
            read,
            deadline=own_deadline,
            transient=_worth_reading_again,
            attempts=LOG_READ_ATTEMPTS,
            limiter=pacing.limiter("read", settings.read_qps),
        )
        return log, len(calls), None
    except DataWorksError as exc:
        if not _worth_reading_again(exc):
            return None, len(calls), exc.code
        out_of_time = len(calls) < LOG_READ_ATTEMPTS  # the backoff would have passed the deadline
        code = exc.code
    except pacing.DeadlineReached:
        out_of_time, code = True, calls[-1].code if calls else None
    if code is None:
        return None, len(calls), NO_TIME_LEFT
    tried = f"{code}, {len(calls)} attempt(s)"
    return None, len(calls), f"{tried}; {NO_TIME_LEFT}" if out_of_time else tried


def _worth_reading_again(exc: Exception) -> bool:
    # DataWorks' daily limit and the edition's quota do not clear within an invocation.
    return (
        isinstance(exc, DataWorksError) and exc.transient and not exc.quota_exhausted and not exc.needs_new_invocation
    )


def ran_out_of_time(verdict: Verdict) -> bool:
    """Whether the log went unread because the invocation's time ran out (not because of DataWorks)."""
    return verdict.error_code is not None and NO_TIME_LEFT in verdict.error_code
