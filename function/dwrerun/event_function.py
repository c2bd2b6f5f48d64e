"""The event function: one EventBridge delivery of DataWorks failure events in, records out.

Returns normally whenever retrying cannot help (ignored events, skips, permanent errors, a bad
setting or rules file: `config-error`, and DataWorks' daily limit or edition quota used up:
`quota-exhausted`), and raises `RetryLater` only when DataWorks kept failing transiently: FC then
retries the asynchronous invocation, which is safe because every retry reads each instance's
status before acting. An unexpected error is raised too, after recording every unfinished
instance `deferred`: each attempt FC makes leaves its records, so an invocation FC gives up on
can be told from them (the retries-exhausted alert in template.yml).

Duplicates: EventBridge delivers at least once, and two copies of one event may run at the same
moment on two FC instances (separate processes, no shared memory). What makes that harmless is
DataWorks' state, not this process: the status guard skips an instance no longer in Failure
(`not-failed`), and DataWorks refuses a rerun of an instance that is no longer finished, which
the function reads back as `already-rerun` (rerun.py).

The same function receives its own delayed invocations (schedule.py): a payload that is a
scheduled rerun names one instance and its failed run, and goes through every guard again. It also
runs the continuations of bulk reruns by filter (continuation.py, handoff.py): a signed payload from
the HTTP function (or from an earlier continuation) naming up to 500 instances and their failed runs.
And it runs the sweep (sweep.py): FC's timer event, and the failed runs a sweep claimed (a scheduled
rerun payload marked `sweep`, decided whole as its event would have been).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from dwrerun import continuation, events, pacing, records, rules, schedule, schema, sweep
from dwrerun.config import ConfigError, Settings
from dwrerun.dataworks import client_for, credentials_from
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Target
from dwrerun.outcome import Origin, Outcome, skipped
from dwrerun.rerun import RetryLater, run
from dwrerun.reserve import Reserve, ReserveUsed
from dwrerun.schema import Reason, Summary


class HandledEvents:
    """CloudEvent ids this instance's process has handled or is handling: an optimisation only.

    It stays because it is cheap and still useful: FC 3.0's standard runtimes give an instance one
    invocation at a time, so it never sees two copies at once, but a copy that lands later on the
    same warm instance is recorded `duplicate-event` without a GetTaskInstance call. No guarantee
    rests on it: a copy on another instance (or after this one is recycled) is stopped by
    DataWorks' state (see the module docstring). An id is claimed when its handling starts and
    released if the invocation raises, so FC's retry of the same event is handled. Bounded.
    """

    def __init__(self, size: int = 10_000):
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def claim(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True

    def release(self, event_ids: list[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                self._ids.pop(event_id, None)


handled_events = HandledEvents()


def handle(event: bytes, context) -> dict:
    """Handle one delivery; returns the invocation's summary record."""
    started = pacing.clock()
    invocation = Invocation.from_context(context)
    try:
        settings = Settings.from_env()
        rule_set = rules.load(settings.rules_file) if settings.read_logs else rules.NOT_LOADED
        config_error = None
    except ConfigError as exc:  # a bad setting or rules file (rules.RulesError is a ConfigError)
        settings, rule_set, config_error = Settings(), None, exc
    timer = sweep.parse(event)
    if timer is not None:  # the sweep's timer trigger (sweep.py): find the failed runs no event decided
        return sweep.handle(timer, context, invocation, settings, config_error, started)
    job = Job.for_event(invocation, settings, rule_set)
    try:
        bulk_part = continuation.parse(event, settings.signing_key)
    except continuation.InvalidContinuation as exc:
        return _write_all(
            job, [_ignored(job, events.Ignored(f"not a valid continuation: {exc}"))], started, outcome=Summary.DONE
        )
    except continuation.UntrustedContinuation as exc:
        # Never acted on: a forged payload gets nothing. FC retrying cannot fix a key (or another
        # bad setting, which leaves no key to check with) either. The records carry the request id
        # it claims, so an operator following that request sees them.
        why = f"not rerun: {config_error or exc}; select it again by filter"
        refused = [skipped(i, Reason.CONFIG_ERROR, why) for i in exc.instance_ids]
        return _write_all(job, refused, started, outcome=Summary.DONE, origin=_part_of(job, exc.origin_request_id))
    if bulk_part is not None:
        return _continue(job, bulk_part, settings, rule_set, invocation, context, started)
    storm_step = _storm_step(job, event, started)
    if isinstance(storm_step, dict):  # a malformed one, recorded
        return storm_step
    if storm_step is not None:  # the storm guard's own task (storm_tasks.py)
        return _storm_task(job, storm_step, settings, config_error, invocation, context, started)
    written, targets, claimed = _read_delivery(job, event)
    if any(t.scheduled is not None and t.scheduled.swept for t in targets):  # a failed run the sweep claimed
        job = Job.for_sweep(invocation, settings, rule_set)  # decided as its event would have been
    if config_error is not None:
        # A bad setting or rules file: nothing is rerun (every failure is recorded, none is lost)
        # and the invocation returns normally, since FC retrying it cannot fix the deployment.
        written += [_unfinished(job, target, Reason.CONFIG_ERROR, str(config_error)) for target in targets]
        targets = []
    return _run_targets(job, written, targets, claimed, settings, invocation, context, started)


def _storm_task(job: Job, step, settings: Settings, config_error, invocation: Invocation, context, started) -> dict:
    from dwrerun import storm_tasks

    error = config_error
    if error is None or step.step in storm_tasks.MARKERS:  # a marker does nothing, settings or not
        try:
            return storm_tasks.handle(job, step, settings, invocation, context, started, _write_all)
        except ConfigError as exc:  # no credentials, region or FC endpoint
            error = exc
    # No retry brings a setting back. A step that names an instance (a held one's look, a canary,
    # a check) ends that instance's chain here, so its record says why.
    instance_id = step.get("instanceId")
    refused = [skipped(instance_id, Reason.CONFIG_ERROR, str(error))] if instance_id is not None else []
    return _write_all(job, refused, started, outcome=Summary.DONE)


def _run_targets(
    job: Job, written, targets, claimed, settings: Settings, invocation: Invocation, context, started
) -> dict:
    """Run the delivery's targets and write every record: raises RetryLater (and any bug) for FC's
    retry, after releasing the event ids this invocation claimed so the retry handles them. If the
    work runs into FC's timeout, the reserve writes every record instead (reserve.py)."""
    if not targets:
        return _run_and_write(job, written, targets, claimed, settings, invocation, context, started, None)
    owed = list(written)  # the records of what is not worked on, as they stand now
    reserve = Reserve.start(invocation, lambda: _write_reserved(job, owed, targets, started, invocation))
    try:
        return _run_and_write(job, written, targets, claimed, settings, invocation, context, started, reserve)
    except ReserveUsed:
        handled_events.release(claimed)
        raise
    finally:
        reserve.cancel()


def _write_reserved(job: Job, written: list[Outcome], targets: list[Target], started: float, invocation) -> None:
    """The reserve's records: every target deferred for FC's retry, and the summary."""
    why = (
        f"not finished before Function Compute's timeout ({invocation.timeout:g} s): a step ran into the time kept "
        "back to write the records. Function Compute retries the invocation; a rerun request may have reached "
        "DataWorks, and the retry reads the instance first"
    )
    deferred = [_unfinished(job, target, Reason.DEFERRED, why) for target in targets]
    _write_all(job, written + deferred, started, outcome=Summary.RETRY, error="FunctionTimeout")


def _write_owed(reserve: Reserve | None, job: Job, written: list[Outcome], started: float, **summary) -> dict:
    """`_write_all`, unless the reserve has written the invocation's records already (ReserveUsed)."""
    if reserve is not None and not reserve.claim():
        raise ReserveUsed("the records were written in the reserve before FC's timeout: FC retries the invocation")
    return _write_all(job, written, started, **summary)


def _run_and_write(
    job: Job, written, targets, claimed, settings: Settings, invocation: Invocation, context, started, reserve
) -> dict:
    try:
        credentials = credentials_from(os.environ, context) if targets else None
        dataworks = client_for(credentials, settings, invocation.region) if targets else None

        def functions():  # made only when a rerun is to be scheduled
            from dwrerun import function_compute

            return function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)

        written += run(job, targets, dataworks, functions)
    except RetryLater as exc:
        handled_events.release(claimed)
        _write_owed(
            reserve,
            job,
            written + exc.outcomes,
            started,
            outcome=Summary.RETRY,
            error=exc.error.code if exc.error else None,
        )
        raise
    except ConfigError as exc:  # no credentials or no region: no retry brings them
        handled_events.release(claimed)
        written += [_unfinished(job, target, Reason.CONFIG_ERROR, str(exc)) for target in targets]
        return _write_owed(reserve, job, written, started, outcome=Summary.DONE)
    except Exception as exc:
        # A bug: FC retries the invocation. Its records say so, without the trace (FC logs that
        # with the error), so every attempt is on record and the alert can count them.
        handled_events.release(claimed)
        why = f"an unexpected error ({type(exc).__name__}): Function Compute retries the invocation"
        written += [_unfinished(job, target, Reason.DEFERRED, why) for target in targets]
        _write_owed(reserve, job, written, started, outcome=Summary.RETRY, error=type(exc).__name__)
        raise
    except BaseException:
        handled_events.release(claimed)
        raise
    exhausted = any(o.reason == Reason.QUOTA_EXHAUSTED for o in written)
    # Returned normally even so: FC's retry would meet the same used-up limit.
    return _write_owed(reserve, job, written, started, outcome=Summary.QUOTA_EXHAUSTED if exhausted else Summary.DONE)


def _read_delivery(job: Job, event: bytes) -> tuple[list[Outcome], list[Target], list[str]]:
    """A delivery that is no continuation: (outcomes of what it reports that is not to be worked on,
    the targets, the event ids this invocation claimed). A copy handled here already is ignored."""
    written, targets, claimed = [], [], []
    try:
        scheduled = schedule.parse(event, job.settings.signing_key)
        parsed = events.parse(event) if scheduled is None else []
    except schedule.InvalidScheduledRerun as exc:
        scheduled, parsed = None, [events.Ignored(f"not a valid scheduled rerun: {exc}")]
    if scheduled is not None:
        key = f"scheduled:{scheduled.async_task_id}"  # the original event id was claimed by its own delivery
        if handled_events.claim(key):
            claimed.append(key)
            trust = {"scheduled": scheduled} if scheduled.trusted else {"untrusted": scheduled}  # schedule.py
            targets.append(Target(scheduled.instance_id, scheduled.event_id, **trust))
        else:
            written.append(
                _ignored(job, scheduled, Reason.DUPLICATE_EVENT, f"{scheduled.async_task_id} is already handled here")
            )
    for item in parsed:
        if isinstance(item, events.Ignored):
            written.append(_ignored(job, item))
        elif item.event_id is not None and not handled_events.claim(item.event_id):
            written.append(
                _ignored(job, item, Reason.DUPLICATE_EVENT, f"event {item.event_id} is already handled here")
            )
        else:
            if item.event_id is not None:  # "" too: an id the event carried, claimed as one
                claimed.append(item.event_id)
            targets.append(Target(item.instance_id, item.event_id, item.task_type, event_finished_at=item.finished_at))
    return written, targets, claimed


def _storm_step(job: Job, event: bytes, started: float):
    """The storm step the payload carries (storm.py), None, or the written records of a malformed one."""
    from dwrerun import storm

    try:
        return storm.parse(event)
    except ValueError as exc:
        ignored = skipped(None, Reason.NOT_A_FAILURE, f"not a valid storm step: {exc}")
        return _write_all(job, [ignored], started, outcome=Summary.DONE)


def _continue(job: Job, part, settings: Settings, rule_set, invocation: Invocation, context, started: float) -> dict:
    """A continuation of a bulk rerun by filter (dwrerun/handoff.py), with the same error handling
    as a failure event: a bad deployment is recorded, a bug is recorded and retried by FC."""
    from dwrerun import function_compute, handoff

    ids = [instance_id for instance_id, _ in part.instances]
    try:
        credentials = credentials_from(os.environ, context)

        def functions():
            return function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)

        def dataworks():
            return client_for(credentials, settings, invocation.region)

        return handoff.continue_(part, settings, rule_set, None, invocation, dataworks, functions)
    except handoff.ContinueLater:  # its records are written: FC retries the part
        raise
    except ConfigError as exc:  # no credentials or no region: no retry brings them
        written = [skipped(i, Reason.CONFIG_ERROR, str(exc)) for i in ids]
        return _write_all(job, written, started, outcome=Summary.DONE, origin=_part_of(job, part.origin_request_id))
    except Exception as exc:
        why = f"an unexpected error ({type(exc).__name__}): Function Compute retries the continuation"
        deferred = [skipped(i, Reason.DEFERRED, why) for i in ids]
        origin = _part_of(job, part.origin_request_id)
        _write_all(job, deferred, started, outcome=Summary.RETRY, origin=origin, error=type(exc).__name__)
        raise


def _part_of(job: Job, origin_request_id: str) -> Origin:
    """Whom the records of a continuation's instances name: the rerun by filter they belong to."""
    return Origin(schema.HTTP, job.request_id, None, origin_request_id)


def _ignored(job: Job, item, reason: str = Reason.NOT_A_FAILURE, message: str | None = None) -> Outcome:
    return skipped(
        item.instance_id,
        reason,
        message or item.reason,
        event_id=item.event_id,
        async_task_id=getattr(item, "async_task_id", None),
    )


def _unfinished(job: Job, target: Target, reason: str, message: str) -> Outcome:
    """The outcome of a target the invocation could not finish (nothing read, nothing rerun).
    A delayed invocation's record keeps its rule and due time only when its payload was signed."""
    scheduled, asked = target.scheduled, target.scheduled or target.untrusted
    return skipped(
        target.instance_id,
        reason,
        message,
        event_id=target.event_id,
        rule=scheduled.rule if scheduled else None,
        due_at=scheduled.due_at if scheduled else None,
        async_task_id=asked.async_task_id if asked else None,
        trusted=None if asked is None else asked is scheduled,
    )


def _write_all(
    job: Job, written: list[Outcome], started: float, *, outcome: str, origin: Origin | None = None, **extra
) -> dict:
    """Write the outcomes (as `origin` asked, the job's own by default), then the invocation's summary."""
    records.write_outcomes(written, origin or job.origin)
    summary = records.write_summary(
        job.origin, written, (pacing.clock() - started) * 1000, dryRunMode=job.dry_run, outcome=outcome, **extra
    )
    return {**summary, "outcomes": [_shown(o) for o in written]}


def _shown(outcome: Outcome) -> dict:
    """What the invocation returns of an outcome (FC shows it to a synchronous caller)."""
    return {
        "instanceId": outcome.instance_id,
        "decision": outcome.decision,
        "success": outcome.success,
        "reason": outcome.reason,
        "message": outcome.message,
    }
