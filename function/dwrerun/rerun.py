"""Instance ids in, one outcome per instance out: look up, decide, classify, send, and retry what is transient.

Every path hands its targets to `run` with a `Job` (job.py says how each path asks). Each round:

1. Look up: GetTaskInstance (or the ListTaskInstances row a rerun by filter already has).
2. Decide: the guards (policy.py); DataWorks' own automatic rerun (autorerun.py, GetTask).
3. Classify: the failed run's log against the failure rules (failure.py).
4. Send: queue a rerun that waits a delay, or rerun now (send.py).
5. Outcome: what is done is final; a transient error leaves the item open for the next round.

Rounds repeat with backoff until the deadline; what is still open then is `deferred` and
`RetryLater` is raised (FC retries an event; HTTP answers what to send again). DataWorks' daily
call limit and the edition's quota (Throttling.Api.Risk, Throttling.Resource) end the work at
once: every open instance is `quota-exhausted`, and nothing is retried.

Never rerun twice: a rerun request that may have been carried out without its answer reaching us
(timeout, reset, 5xx, unreadable body, no SuccessInfo entry) sends the instance back to be read
before anything is resent: a RunNumber that moved on means the rerun happened. A refusal
(SuccessInfo Success false) is read back the same way: a RunNumber past the run this call was
about means someone else got there first (`already-rerun`), e.g. another copy of the same failure
event on another FC instance.

A delayed invocation (`Target.scheduled`) goes through every guard again, and reruns only if the
failed run it was planned for is still the latest. A rerun by filter (`Target.listed`,
`Target.failed_run`) reruns an instance only while the run the selection found failed is its
latest: a continuation that runs twice reruns nothing twice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from dwrerun import autorerun, failure, pacing, schedule, schema, send
from dwrerun.dataworks import GET_TASK_INSTANCE_LOG, DataWorks, DataWorksError, task_instance
from dwrerun.function_compute import FunctionCompute, InvokeFunctionError
from dwrerun.job import Item, Job, QuotaWatch, Target, paced, time_left
from dwrerun.outcome import Outcome, quota_note, refused
from dwrerun.policy import FAILURE, after_refusal, after_unclear_answer, decide
from dwrerun.schema import Reason

LOOKUP_THREADS = 8  # parallel GetTaskInstance calls within one invocation; the read limiter paces them
# RerunTaskInstances has no precondition: a run that starts and fails between the read and the rerun
# call is rerun too, past the cap if it was the last one allowed. An instance read longer ago than
# this (its log read, GetTask, a retry's backoff) is read again right before its rerun (issue 24).
FRESH_READ_SECONDS = 2.0

# The order instances are read in (a seam of randomness, as in pacing.py). FC's retry of an
# invocation that ran out of time gets the same ids again: read in another order, it reaches
# the ones the first attempt could not, instead of spending its time on the same first ones.
shuffle = random.shuffle


class RetryLater(Exception):
    """DataWorks kept failing transiently until the deadline. Raised on purpose so FC retries.

    `outcomes` holds every instance's outcome, the unfinished ones with reason "deferred".
    """

    def __init__(self, message: str, outcomes: list[Outcome], error: DataWorksError | None):
        super().__init__(message)
        self.outcomes = outcomes
        self.error = error


def run(
    job: Job,
    targets: list[Target],
    dataworks: DataWorks | None,
    functions: Callable[[], FunctionCompute] | None = None,
) -> list[Outcome]:
    """Decide and act on every target; returns their outcomes in target order. May raise RetryLater.

    `dataworks` may be None only when `targets` is empty. `functions` makes the FC client that
    schedules delayed reruns (called only when one is needed); without it every rerun is at once.
    """
    items = _items(job, targets)
    attempt = 0
    last_error = None
    quota = QuotaWatch()
    # Liveness: reads stop in time for the reruns of what was read, so an invocation that cannot
    # read everything still reruns what it read, and defers only the rest.
    # A short FC timeout cannot spare a whole call's timeout for them: the reads get at least half.
    now = pacing.clock()
    reads_until = max(job.deadline - _rerun_reserve(job, len(items)), now + (job.deadline - now) / 2)
    lookup_order = list(items)
    shuffle(lookup_order)
    while True:
        if not any(item.open for item in items):
            return [item.outcome for item in items]
        try:
            # 1. Look up and decide what is not decided yet (the guards, DataWorks' own rerun, the rules).
            _read_round(job, dataworks, lookup_order, quota, reads_until)
            decided = [i for i in items if i.open and i.decision is not None]
            if quota.error is None:
                # 2. Send: the storm guard holds what a storm's canary goes before (storm.py), then
                # queue the reruns that wait a delay, and rerun the others now.
                send.guard(job, functions, decided)
                send.schedule(job, functions, [i for i in decided if i.open and i.delay])
                send.rerun(job, dataworks, [i for i in decided if i.open and not i.delay], quota)
            if quota.error is not None:  # no retry helps for hours: end here, FC must not retry either
                _quota_exhausted(job, items, quota.error)
                continue
            # 3. What is left open is retried while it can help.
            unread = sum(1 for i in items if i.open and i.out_of_time)
            if unread:  # what was read is done: only a new invocation can read the rest
                raise pacing.DeadlineReached(f"no time left to read {unread} of the {len(items)} instances")
            errors = [i.error for i in items if i.open and i.error is not None]
            if not errors:
                continue
            last_error = errors[-1]
            if any(e.needs_new_invocation for e in errors):
                raise pacing.DeadlineReached("only a new invocation can help")
            attempt += 1
            if attempt >= pacing.MAX_ATTEMPTS:
                raise pacing.DeadlineReached(f"{pacing.MAX_ATTEMPTS} attempts failed")
            delay = pacing.backoff(attempt, max((e.retry_after or 0.0) for e in errors))
            if pacing.clock() + delay + pacing.MIN_CALL_SECONDS > job.deadline:
                raise pacing.DeadlineReached("no time left for another attempt")
            pacing.sleep(delay)
        except pacing.DeadlineReached as exc:
            later = _deferred(job, items, last_error, str(exc))
            if later is None:  # only refusals were left to explain: DataWorks' answers stand, no retry
                return [item.outcome for item in items]
            raise later from None


def _items(job: Job, targets: list[Target]) -> list[Item]:
    """An item per target; a second one for the same instance is done at once."""
    items, seen = [], set()
    for target in targets:
        item = Item(target)
        if target.instance_id in seen:
            item.finish(job, schema.SKIP, None, Reason.DUPLICATE, "the same instance is already in this request")
        seen.add(target.instance_id)
        items.append(item)
    return items


def _read_round(job: Job, dataworks: DataWorks, items: list[Item], quota: QuotaWatch, until: float) -> None:
    """Read and decide what is undecided; then read again what is to be rerun on a stale read."""
    _look_up(job, dataworks, [i for i in items if i.open and i.decision is None], quota, until)
    _look_up(job, dataworks, _stale(job, items, until), quota, until)


def _stale(job: Job, items: list[Item], until: float) -> list[Item]:
    """The items to rerun now whose read is older than FRESH_READ_SECONDS, sent back to be read
    again (once a round), only while a whole read fits before `until` (the reads' share of the
    time), so a rerun that is ready is never deferred for it."""
    now = pacing.clock()
    if until - now < pacing.MIN_CALL_SECONDS + job.settings.read_timeout:
        return []
    stale = [
        i
        for i in items
        if i.open and i.decision is not None and i.decision.rerun and not i.delay
        and i.read_at is not None and now - i.read_at > FRESH_READ_SECONDS
    ]  # fmt: skip
    for item in stale:
        item.read_again()
    return stale


def _rerun_reserve(job: Job, count: int) -> float:
    """Seconds the reads leave before the deadline for rerunning `count` instances."""
    settings = job.settings
    chunks = max(1, math.ceil(count / settings.chunk_size))
    reserve = pacing.MIN_CALL_SECONDS + min(settings.read_timeout, pacing.RERUN_RESERVE_SECONDS)
    return reserve + (chunks - 1) / settings.write_qps


def _look_up(job: Job, dataworks: DataWorks, items: list[Item], quota: QuotaWatch, until: float) -> None:
    if len(items) == 1:
        _look_up_one(job, dataworks, items[0], quota, until)
    elif items:
        with ThreadPoolExecutor(min(LOOKUP_THREADS, len(items))) as pool:
            futures = [pool.submit(_look_up_one, job, dataworks, item, quota, until) for item in items]
        for future in futures:
            future.result()  # an unexpected error surfaces here, in the invocation's own thread


def _look_up_one(job: Job, dataworks: DataWorks, item: Item, quota: QuotaWatch, until: float) -> None:
    """Read one instance and decide; `until` is when the reads' share of the invocation's time ends."""
    item.out_of_time = False
    try:
        _read_and_decide(job, dataworks, item, quota, until)
    except pacing.DeadlineReached:
        item.out_of_time = True
        item.read_again()  # half-decided (GetTask or the log not read): decided again next time


def _read_and_decide(job: Job, dataworks: DataWorks, item: Item, quota: QuotaWatch, until: float) -> None:
    if quota.error is not None:
        return
    item.error = None
    if item.target.listed is not None and item.instance is None:
        # ListTaskInstances just answered every field the guards read: no GetTaskInstance first.
        item.instance = item.target.listed
    elif not _read_instance(job, dataworks, item, quota, until):
        return
    if _explained(job, item):
        return
    scheduled, planned = item.target.scheduled, item.target.scheduled or item.target.untrusted
    item.decision = decide(
        item.instance,
        job.settings,
        manual=job.named_ids,
        force=job.force,
        event_task_type=item.target.event_task_type,
        failed_run=planned.failed_run_number if planned else item.target.failed_run,
        event_finished_at=item.target.event_finished_at,
    )
    if not item.decision.rerun:
        _skip_decided(job, item)
        return
    # DataWorks' own auto-rerun before the log: a run DataWorks reruns itself needs no log read.
    # A delayed invocation skips it: it was checked for this same failed run when the rerun was
    # scheduled, and the guards above just found the instance still at that run.
    if (
        not item.target.decided_when_scheduled
        and autorerun.worth_asking(job, item.instance)
        and autorerun.left_to_dataworks(job, dataworks, item, quota, until)
    ):
        return
    _classify(job, dataworks, item)
    if item.decision is None:  # its log is left for a continuation to read
        return
    if not item.decision.rerun:
        item.finish(job, schema.SKIP, None, item.decision.reason, item.decision.message)
        return
    if job.may_schedule and scheduled is None:
        settings = job.settings
        run, hint = item.instance.run_number, item.decision.delay_seconds
        item.delay = schedule.delay_seconds(run, settings.backoff_base, settings.backoff_max, hint=hint)
        if item.target.untrusted is not None and schedule.waited(
            item.instance.finished_time, run, settings.backoff_base, settings.backoff_max, hint
        ):  # an unsigned delayed invocation: DataWorks' FinishedTime, not its word, says the delay passed
            item.delay = 0
        item.due_at = schedule.due_at(item.delay) if item.delay else None
    if job.dry_run:
        later = f" (would wait {item.delay} s, until {item.due_at})" if item.delay else ""
        item.finish(job, schema.DRY_RUN, None, Reason.DRY_RUN, f"dry run: {item.decision.message}{later}")


def _explained(job: Job, item: Item) -> bool:
    """Whether a read after a refused or unclear rerun call says what came of it (the item is done)."""
    instance, refusal = item.instance, item.refusal
    if refusal is not None:
        moved = after_refusal(instance, refusal.run, refusal.message)
        if moved is None:
            item.finish_refused(job)
        else:
            item.finish(job, schema.SKIP, None, moved.reason, moved.message, dataworks_request_id=refusal.request_id)
        return True
    confirmed = after_unclear_answer(instance, _sent_at_run(item))
    if confirmed is not None:
        item.finish(job, schema.RERUN, True, confirmed.reason, confirmed.message)
        return True
    return False


def _skip_decided(job: Job, item: Item) -> None:
    """The outcome of an instance the guards hold back."""
    message, lost = item.decision.message, None
    sent_at_run = _sent_at_run(item)
    if sent_at_run is not None and item.decision.reason in (Reason.NOT_FAILED, Reason.NOT_FINISHED):
        # Not failed any more, yet the RunNumber did not move: nothing says who started it, and
        # this invocation's own request may have (inferred: DataWorks may count a run only once
        # it starts). Say so rather than let the record read as someone else's doing.
        lost = item.unclear.error
        message += (
            f"; it is still at run {item.instance.run_number}, so the rerun request this invocation sent "
            f"(no clear answer: {lost.code}) may be what started it"
        )
    item.finish(job, schema.SKIP, None, item.decision.reason, message, lost)


def _read_instance(job: Job, dataworks: DataWorks, item: Item, quota: QuotaWatch, until: float) -> bool:
    """GetTaskInstance into `item.instance`; False (done, or left to retry) when it failed.
    `until` is when the reads' share of the invocation's time ends."""
    started = pacing.clock()
    limiter = pacing.limiter("read", job.settings.read_qps)
    error = None
    try:
        limiter.acquire(until - pacing.MIN_CALL_SECONDS)
        item.attempts += 1
        item.instance = task_instance(dataworks.get_task_instance(item.target.instance_id, time_left(job, until)))
        item.read_at = pacing.clock()
    except DataWorksError as exc:
        error = exc  # handled below, once the read's duration is known: its record carries it
    finally:
        item.lookup_ms = (pacing.clock() - started) * 1000
    if error is None:
        limiter.passed()
        return True
    paced(limiter, error)
    if error.quota_exhausted:
        quota.saw(error)
    elif error.transient:
        item.error = error
    elif item.refusal is not None:  # the read meant to explain a refusal failed: keep the refusal
        item.finish_refused(job)
    else:
        item.finish(job, schema.SKIP, None, Reason.LOOKUP_FAILED, refused("GetTaskInstance", error), error)
    return False


def _classify(job: Job, dataworks: DataWorks, item: Item) -> None:
    """The failure-rules step, for a failed instance the guards would rerun.

    Event path and bulk reruns by filter: the rules decide. HTTP path with explicit ids (and a
    filter with IgnoreRules): an operator's rerun is never held back by them; a dry run reads the
    log only to explain which rule matches.
    """
    instance = item.instance
    if job.rules is None or instance.status != FAILURE or (not job.rules_hold_back and not job.dry_run):
        return
    if item.target.decided_when_scheduled:
        # A delayed invocation: the rules decided when the rerun was scheduled, on this same failed
        # run's log (the payload names the rule). Reading it again would only spend a call.
        return
    if item.verdict is None or item.verdict.run_number != instance.run_number:  # never the same run twice
        item.verdict = failure.classify(dataworks, instance, job.settings, job.rules, job.deadline)
        item.attempts += item.verdict.calls
        if job.continues and failure.ran_out_of_time(item.verdict):
            # A continuation takes it over with time for its log: never rerun it unchecked. The
            # instances whose logs were read are still rerun in this round; then the round ends.
            item.verdict = None
            item.read_again(
                DataWorksError(
                    GET_TASK_INSTANCE_LOG,
                    "DeadlineReached",
                    "no time left to read the failed run's log",
                    transient=True,
                    needs_new_invocation=True,
                )
            )
            return
    if not job.rules_hold_back:
        held = "IgnoreRules: rules hold nothing back" if job.ignore_rules else "rules never hold back a manual rerun"
        item.decision = replace(item.decision, message=f"{item.decision.message}; {item.verdict.note} ({held})")
    else:
        item.decision = failure.apply(item.decision, item.verdict, instance, job.settings, force=job.force)


def _sent_at_run(item: Item) -> int | None:
    """The RunNumber when a rerun request with no clear answer went out, if one did."""
    return item.unclear.run if item.unclear is not None else None


def _quota_exhausted(job: Job, items: list[Item], error: DataWorksError) -> None:
    """End every open item: not rerun, because DataWorks' daily limit or edition quota is used up."""
    for item in items:
        if not item.open:
            continue
        if item.refusal is not None:
            item.finish_refused(job)
            continue
        maybe = " A rerun request may have reached DataWorks before the limit." if _sent_at_run(item) else ""
        item.finish(
            job,
            schema.SKIP,
            None,
            Reason.QUOTA_EXHAUSTED,
            quota_note(error.code, f"Rerun it over HTTP once the limit clears.{maybe}"),
            error,
        )


def _deferred(job: Job, items: list[Item], error: DataWorksError | None, why: str) -> RetryLater | None:
    """End every open item deferred; the RetryLater to raise with the outcomes, or None when none
    was deferred (an unexplained refusal is recorded as the refusal it is)."""
    code = error.code if error else "DeadlineReached"
    service = "Function Compute (InvokeFunction)" if isinstance(error, InvokeFunctionError) else "DataWorks"
    then = "Function Compute retries the invocation" if job.trigger == schema.EVENTBRIDGE else "not rerun: try again"
    # No error: nothing failed, the invocation's time ran out before it got there.
    cause = f"{service} kept failing ({code}; {why})" if error is not None else f"not done in time ({why})"
    deferred = False
    for item in items:
        if item.open and item.refusal is not None:
            item.finish_refused(job)  # DataWorks' answer is known; only its explanation is missing
        elif item.open:
            deferred = True
            maybe = (
                " A rerun request may have reached DataWorks; a retry reads the instance first."
                if _sent_at_run(item)
                else ""
            )
            item.finish(job, schema.SKIP, None, Reason.DEFERRED, f"{cause}: {then}.{maybe}", error)
    if not deferred:
        return None
    return RetryLater(cause, [item.outcome for item in items], error)
