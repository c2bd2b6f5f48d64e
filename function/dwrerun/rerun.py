"""Instance ids in, one record per instance out: read, decide, rerun, retry what is transient.

Both entry points (the EventBridge event function and the HTTP function) hand their ids to `run`.
For each instance it reads the facts with GetTaskInstance, asks the policy, and sends the ones to
rerun to RerunTaskInstances in chunks. Transient DataWorks errors are retried with backoff until
the invocation's deadline; what is still unfinished then is recorded and `RetryLater` is raised.

Never rerun twice: when a rerun request may have been carried out without an answer reaching us
(timeout, reset, 5xx, unreadable body), the instance is read again before anything is resent. A
RunNumber that moved on means the rerun happened.

Someone else got there first: DataWorks refuses (SuccessInfo Success false) a rerun of an instance
that is no longer finished, e.g. because another copy of the same failure event, on another FC
instance, reran it a moment earlier. Every refusal is checked by reading the instance again: a
RunNumber past the run this call was about is recorded as `already-rerun`, not as a failed rerun.

DataWorks' daily call limit and the edition's quota (Throttling.Api.Risk, Throttling.Resource) end
the work at once: every unfinished instance is recorded `quota-exhausted`, and nothing is retried.

Scheduled reruns (schedule.py, docs/retries-and-scheduling.md): on the event path, once the guards
allow a rerun and DataWorks does not rerun the node itself (autorerun.py), the rerun waits a delay.
A positive delay is queued as a delayed invocation of the event function (InvokeFunction with an
async task id per instance and failed run: a copy gets 409, `already-scheduled`); FC refusing for
good (no permission, task mode off) falls back to rerunning at once. The delayed invocation comes
back here with the failed run number (`Target.scheduled`): every guard again, and a rerun only if
that run is still the latest.

Bulk reruns by filter (bulk.py): the selection comes from ListTaskInstances, whose rows carry every
field the guards read (`Target.listed`), so no GetTaskInstance is made first; only a refusal or an
unclear answer reads an instance again, one by one. Each target names the run the selection found
failed (`Target.failed_run`): an instance rerun since is `already-rerun`, which is what makes a
continuation that runs twice harmless.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from dwrerun import autorerun, failure, pacing, records, schedule
from dwrerun.config import ConfigError, Settings
from dwrerun.dataworks import GET_TASK_INSTANCE_LOG, QUOTA_LIMITS, DataWorks, DataWorksError
from dwrerun.function_compute import FunctionCompute, InvokeFunctionError
from dwrerun.policy import FAILURE, Decision, Instance, decide
from dwrerun.rules import RuleSet
from dwrerun.schedule import ScheduledRerun

LOOKUP_THREADS = 8  # parallel GetTaskInstance calls within one invocation; the read limiter paces them
MIN_CALL_SECONDS = 0.5  # a call is not started with less time than this left before the deadline
COMMENT_EVENTS = 3  # event ids named in one RerunTaskInstances Comment, to keep it short
# DataWorks' own automatic rerun comes at most 30 minutes after a failure (FACTS §2); a bulk rerun
# asks GetTask only about a failure younger than that (and a minute of slack).
DATAWORKS_MAX_RERUN_INTERVAL_MS = (1800 + 60) * 1000
# What the reads leave for the reruns after them: the least time a call is started with, one
# call's read timeout (at most this much), and the write limiter's spacing between the chunks.
RERUN_RESERVE_SECONDS = 3.0

# The order instances are read in (a seam of randomness, as in pacing.py). FC's retry of an
# invocation that ran out of time gets the same ids again: read in another order, it reaches
# the ones the first attempt could not, instead of spending its time on the same first ones.
shuffle = random.shuffle


@dataclass(frozen=True)
class Target:
    """An instance to consider, and where the request for it came from."""

    instance_id: int
    event_id: str | None = None
    event_task_type: int | None = None  # the failure event's taskType (2 = frozen)
    scheduled: ScheduledRerun | None = None  # a delayed invocation: the failed run it was planned for
    listed: Instance | None = None  # a bulk rerun: the instance as ListTaskInstances showed it
    failed_run: int | None = None  # a bulk rerun: the run the selection found failed
    event_finished_at: int | None = None  # when the run the failure event reports ended (epoch ms)


@dataclass(frozen=True)
class Job:
    """One invocation's request: who asks, with what limits."""

    trigger: str  # records.EVENTBRIDGE or records.HTTP
    request_id: str  # FC's request id
    function_name: str
    settings: Settings
    deadline: float  # pacing.clock() time by which every call must have ended
    dry_run: bool = False
    manual: bool = False
    force: bool = False
    operator_comment: str | None = None
    # Failure rules: on the event path they decide; on the HTTP path they only explain a dry run.
    rules: RuleSet | None = None
    may_schedule: bool = False  # the event path: a positive delay queues the rerun (schedule.py)
    # Whether a `not-retryable` verdict holds a rerun back; None: yes, except for a manual request
    # (explicit ids). A bulk rerun by filter sets it (True unless the request says IgnoreRules).
    apply_rules: bool | None = None
    # A bulk rerun by filter: only instances still in Failure are rerun, as on the event path.
    failures_only: bool = False
    # Unfinished work is handed to a continuation (bulk.py): a log the deadline left unread defers
    # the instance instead of letting it be rerun unchecked.
    continues: bool = False
    use_latest_config: bool | None = None  # RerunTaskInstances' UseLatestConfig; None: not sent
    origin_request_id: str | None = None  # a bulk rerun's HTTP request, on every record

    @property
    def rules_hold_back(self) -> bool:
        return self.apply_rules if self.apply_rules is not None else not self.manual


class RetryLater(Exception):
    """DataWorks kept failing transiently until the deadline. Raised on purpose so FC retries.

    `records` holds every instance's record, the unfinished ones with reason "deferred".
    """

    def __init__(self, message: str, records: list[dict], error: DataWorksError | None):
        super().__init__(message)
        self.records = records
        self.error = error


@dataclass
class _Progress:
    target: Target
    instance: Instance | None = None
    decision: Decision | None = None
    record: dict | None = None
    attempts: int = 0
    lookup_ms: float | None = None
    rerun_ms: float | None = None
    sent_at_run: int | None = None  # RunNumber when a rerun request with no clear answer went out
    lost: DataWorksError | None = None  # why that request's answer was not clear
    refused_at_run: int | None = None  # RunNumber when DataWorks refused the rerun (SuccessInfo false)
    refusal: str | None = None  # DataWorks' message for that refusal, until a read says what it means
    refusal_request_id: str | None = None
    error: DataWorksError | None = None
    out_of_time: bool = False  # not read: the reads' share of the invocation's time ran out first
    verdict: failure.Verdict | None = None  # what the failed run's log said; read once per run
    delay: int = 0  # seconds the rerun waits; 0 reruns in this invocation
    due_at: str | None = None
    schedule_sent: bool = False  # an InvokeFunction with no clear answer went out
    schedule_refused: InvokeFunctionError | None = None  # why a planned delay became "at once"


def run(
    job: Job,
    targets: list[Target],
    dataworks: DataWorks | None,
    functions: Callable[[], FunctionCompute] | None = None,
) -> list[dict]:
    """Decide and act on every target; returns their records in target order. May raise RetryLater.

    `dataworks` may be None only when `targets` is empty. `functions` makes the FC client that
    schedules delayed reruns (called only when one is needed); without it every rerun is at once.
    """
    progress = []
    seen: set[int] = set()
    for target in targets:
        item = _Progress(target)
        if target.instance_id in seen:
            item.record = _record(
                job, item, records.SKIP, None, "duplicate", "the same instance is already in this request"
            )
        seen.add(target.instance_id)
        progress.append(item)

    attempt = 0
    last_error = None
    quota = _QuotaWatch()
    # Liveness: reads stop in time for the reruns of what was read, so an invocation that cannot
    # read everything still reruns what it read, and defers only the rest.
    # A short FC timeout cannot spare a whole call's timeout for them: the reads get at least half.
    now = pacing.clock()
    reads_until = max(job.deadline - _rerun_reserve(job, len(progress)), now + (job.deadline - now) / 2)
    lookup_order = list(progress)
    shuffle(lookup_order)
    while True:
        open_items = [p for p in progress if p.record is None]
        if not open_items:
            return [p.record for p in progress]
        try:
            _look_up(
                job, dataworks, [p for p in lookup_order if p.record is None and p.decision is None], quota, reads_until
            )
            if quota.error is None:
                _schedule(
                    job, functions, [p for p in open_items if p.record is None and p.decision is not None and p.delay]
                )
                _rerun(
                    job,
                    dataworks,
                    [p for p in open_items if p.record is None and p.decision is not None and not p.delay],
                    quota,
                )
            if quota.error is not None:  # no retry helps for hours: end here, FC must not retry either
                _quota_exhausted(job, progress, quota.error)
                continue
            unread = sum(1 for p in progress if p.record is None and p.out_of_time)
            if unread:  # what was read is done: only a new invocation can read the rest
                raise pacing.DeadlineReached(f"no time left to read {unread} of the {len(progress)} instances")
            errors = [p.error for p in progress if p.record is None and p.error is not None]
            if not errors:
                continue
            last_error = errors[-1]
            if any(e.needs_new_invocation for e in errors):
                raise pacing.DeadlineReached("only a new invocation can help")
            attempt += 1
            if attempt >= pacing.MAX_ATTEMPTS:
                raise pacing.DeadlineReached(f"{pacing.MAX_ATTEMPTS} attempts failed")
            delay = pacing.backoff(attempt, max((e.retry_after or 0.0) for e in errors))
            if pacing.clock() + delay + MIN_CALL_SECONDS > job.deadline:
                raise pacing.DeadlineReached("no time left for another attempt")
            pacing.sleep(delay)
        except pacing.DeadlineReached as exc:
            later = _deferred(job, progress, last_error, str(exc))
            if later is None:  # only refusals were left to explain: DataWorks' answers stand, no retry
                return [p.record for p in progress]
            raise later from None


class _QuotaWatch:
    """The first quota-exhausted answer of the invocation; once seen, no thread starts another call."""

    def __init__(self):
        self.error: DataWorksError | None = None
        self._lock = threading.Lock()

    def saw(self, error: DataWorksError) -> None:
        with self._lock:
            self.error = self.error or error


def _rerun_reserve(job: Job, count: int) -> float:
    """Seconds the reads leave before the deadline for rerunning `count` instances."""
    settings = job.settings
    chunks = max(1, math.ceil(count / settings.chunk_size))
    return MIN_CALL_SECONDS + min(settings.read_timeout, RERUN_RESERVE_SECONDS) + (chunks - 1) / settings.write_qps


def _look_up(job: Job, dataworks: DataWorks, items: list[_Progress], quota: _QuotaWatch, until: float) -> None:
    if len(items) == 1:
        _look_up_one(job, dataworks, items[0], quota, until)
    elif items:
        with ThreadPoolExecutor(min(LOOKUP_THREADS, len(items))) as pool:
            futures = [pool.submit(_look_up_one, job, dataworks, item, quota, until) for item in items]
        for future in futures:
            future.result()  # an unexpected error surfaces here, in the invocation's own thread


def _look_up_one(job: Job, dataworks: DataWorks, item: _Progress, quota: _QuotaWatch, until: float) -> None:
    """Read one instance and decide; `until` is when the reads' share of the invocation's time ends."""
    item.out_of_time = False
    try:
        _read_and_decide(job, dataworks, item, quota, until)
    except pacing.DeadlineReached:
        item.out_of_time = True
        item.decision = None  # half-decided (GetTask or the log not read): decided again next time


def _read_and_decide(job: Job, dataworks: DataWorks, item: _Progress, quota: _QuotaWatch, until: float) -> None:
    if quota.error is not None:
        return
    item.error = None
    if item.target.listed is not None and item.instance is None:
        # ListTaskInstances just answered every field the guards read: no GetTaskInstance first.
        item.instance = item.target.listed
    elif not _read_instance(job, dataworks, item, quota, until):
        return
    instance = item.instance
    if item.refusal is not None:
        if _moved_on(instance, item.refused_at_run):
            item.record = _record(
                job,
                item,
                records.SKIP,
                None,
                "already-rerun",
                f"already rerun by someone else: the instance is at run {instance.run_number} ({instance.status}), "
                f"past run {item.refused_at_run}, so DataWorks refused this rerun ({item.refusal})",
                dataworks_request_id=item.refusal_request_id,
            )
        else:
            item.record = _refused(job, item)
        return
    if _moved_on(instance, item.sent_at_run):
        item.record = _record(
            job,
            item,
            records.RERUN,
            True,
            "eligible",
            f"rerun confirmed by GetTaskInstance (now run {instance.run_number}, {instance.status}) after "
            f"the rerun request got no clear answer",
        )
        return
    scheduled = item.target.scheduled
    item.decision = decide(
        instance,
        job.settings,
        manual=job.manual and not job.failures_only,
        force=job.force,
        event_task_type=item.target.event_task_type,
        failed_run=scheduled.failed_run_number if scheduled else item.target.failed_run,
        event_finished_at=item.target.event_finished_at,
    )
    if not item.decision.rerun:
        message, lost = item.decision.message, None
        if item.sent_at_run is not None and item.decision.reason in ("not-failed", "not-finished"):
            # Not failed any more, yet the RunNumber did not move: nothing says who started it, and
            # this invocation's own request may have (inferred: DataWorks may count a run only once
            # it starts). Say so rather than let the record read as someone else's doing.
            lost = item.lost
            message += (
                f"; it is still at run {instance.run_number}, so the rerun request this invocation sent "
                f"(no clear answer: {lost.code}) may be what started it"
            )
        item.record = _record(job, item, records.SKIP, None, item.decision.reason, message, lost)
        return
    # DataWorks' own auto-rerun before the log: a run DataWorks reruns itself needs no log read.
    # A delayed invocation skips it: it was checked for this same failed run when the rerun was
    # scheduled, and the guards above just found the instance still at that run.
    if (
        scheduled is None
        and _dataworks_may_still_rerun(job, instance)
        and _left_to_dataworks(job, dataworks, item, quota, until)
    ):
        return
    _classify(job, dataworks, item)
    if item.decision is None:  # its log is left for a continuation to read
        return
    if not item.decision.rerun:
        item.record = _record(job, item, records.SKIP, None, item.decision.reason, item.decision.message)
        return
    if job.may_schedule and scheduled is None:
        settings = job.settings
        item.delay = schedule.delay_seconds(
            instance.run_number, settings.backoff_base, settings.backoff_max, hint=item.decision.delay_seconds
        )
        item.due_at = schedule.due_at(item.delay) if item.delay else None
    if job.dry_run:
        later = f" (would wait {item.delay} s, until {item.due_at})" if item.delay else ""
        item.record = _record(job, item, records.DRY_RUN, None, "dry-run", f"dry run: {item.decision.message}{later}")


def _read_instance(job: Job, dataworks: DataWorks, item: _Progress, quota: _QuotaWatch, until: float) -> bool:
    """GetTaskInstance into `item.instance`; False (recorded, or left to retry) when it failed.
    `until` is when the reads' share of the invocation's time ends."""
    started = pacing.clock()
    limiter = pacing.limiter("read", job.settings.read_qps)
    error = None
    try:
        limiter.acquire(until - MIN_CALL_SECONDS)
        item.attempts += 1
        item.instance = Instance.from_api(dataworks.get_task_instance(item.target.instance_id, _time_left(job, until)))
    except DataWorksError as exc:
        error = exc  # handled below, once the read's duration is known: its record carries it
    finally:
        item.lookup_ms = (pacing.clock() - started) * 1000
    if error is None:
        limiter.passed()
        return True
    _paced(limiter, error)
    if error.quota_exhausted:
        quota.saw(error)
    elif error.transient:
        item.error = error
    elif item.refusal is not None:  # the read meant to explain a refusal failed: keep the refusal
        item.record = _refused(job, item)
    else:
        item.record = _record(
            job, item, records.SKIP, None, "lookup-failed", f"GetTaskInstance refused: {error.message}", error
        )
    return False


def _dataworks_may_still_rerun(job: Job, instance: Instance) -> bool:
    """Whether DataWorks' own automatic rerun is worth asking about (GetTask) for this instance."""
    if not job.manual:
        return True  # a fresh failure event: DataWorks' rerun may well be on its way
    if not job.failures_only:
        return False  # ids an operator named: their call, as before
    # A bulk rerun by filter, often the morning after: DataWorks reruns at most 30 minutes after a
    # failure, so an older failure still at its failed run is one it has given up on.
    finished = instance.finished_time
    return finished is None or schedule.clock() * 1000 - finished <= DATAWORKS_MAX_RERUN_INTERVAL_MS


def _classify(job: Job, dataworks: DataWorks, item: _Progress) -> None:
    """The failure-rules step, for a failed instance the guards would rerun.

    Event path and bulk reruns by filter: the rules decide. HTTP path with explicit ids (and a
    filter with IgnoreRules): an operator's rerun is never held back by them; a dry run reads the
    log only to explain which rule matches.
    """
    instance = item.instance
    if job.rules is None or instance.status != FAILURE or (not job.rules_hold_back and not job.dry_run):
        return
    if item.target.scheduled is not None:
        # A delayed invocation: the rules decided when the rerun was scheduled, on this same failed
        # run's log (the payload names the rule). Reading it again would only spend a call.
        return
    if item.verdict is None or item.verdict.run_number != instance.run_number:  # never the same run twice
        item.verdict = failure.classify(dataworks, instance, job.settings, job.rules, job.deadline)
        item.attempts += item.verdict.calls
        if job.continues and failure.ran_out_of_time(item.verdict):
            # A continuation takes it over with time for its log: never rerun it unchecked. The
            # instances whose logs were read are still rerun in this round; then the round ends.
            item.verdict, item.decision = None, None
            item.error = DataWorksError(
                GET_TASK_INSTANCE_LOG,
                "DeadlineReached",
                "no time left to read the failed run's log",
                transient=True,
                needs_new_invocation=True,
            )
            return
    if not job.rules_hold_back:
        held = (
            "IgnoreRules: rules hold nothing back"
            if job.apply_rules is False
            else "rules never hold back a manual rerun"
        )
        item.decision = replace(item.decision, message=f"{item.decision.message}; {item.verdict.note} ({held})")
    else:
        item.decision = failure.apply(item.decision, item.verdict, instance, job.settings, force=job.force)


def _left_to_dataworks(job: Job, dataworks: DataWorks, item: _Progress, quota: _QuotaWatch, until: float) -> bool:
    """Whether DataWorks reruns the instance itself (recorded `dataworks-auto-rerun`), or GetTask
    could not say (recorded, or left to retry). False: the function's own rerun may go ahead."""
    instance = item.instance
    if not autorerun.may_rerun_itself(instance):
        return False
    node = autorerun.task_cache.get(instance.task_id, instance.project_env)
    if node is None:
        limiter = pacing.limiter("read", job.settings.read_qps)
        try:
            limiter.acquire(until - MIN_CALL_SECONDS)
            item.attempts += 1
            node = autorerun.AutoRerun.from_api(
                dataworks.get_task(instance.task_id, instance.project_env, _time_left(job, until))
            )
        except DataWorksError as exc:
            _paced(limiter, exc)
            item.decision = None  # read the instance again with the next attempt
            if exc.quota_exhausted:
                quota.saw(exc)
            elif exc.transient:
                item.error = exc
            else:  # not knowing risks a double run: hold back, and say why
                item.record = _record(
                    job,
                    item,
                    records.SKIP,
                    None,
                    "lookup-failed",
                    f"GetTask refused ({exc.message}): whether DataWorks reruns this node itself is unknown",
                    exc,
                )
            return True
        limiter.passed()
        autorerun.task_cache.put(instance.project_env, node)
    found = autorerun.check(node, instance)
    if found is None:
        return False
    item.decision, due = found
    item.record = _record(job, item, records.SKIP, None, item.decision.reason, item.decision.message, due_at=due)
    return True


def _schedule(job: Job, functions: Callable[[], FunctionCompute] | None, items: list[_Progress]) -> None:
    """Queue each item's rerun as a delayed invocation of this function (FC InvokeFunction)."""
    for item in items:
        item.error = None
        scheduled = ScheduledRerun(
            instance_id=item.target.instance_id,
            failed_run_number=item.instance.run_number,
            due_at=item.due_at,
            event_id=item.target.event_id,
            rule=item.verdict.rule if item.verdict else None,
        )
        try:
            if functions is None:
                raise ConfigError("this invocation cannot schedule (no FC client)")
            client = functions()
        except ConfigError as exc:
            _rerun_at_once(item, InvokeFunctionError("ConfigError", str(exc), transient=False))
            continue
        timeout = _time_left(job)
        item.attempts += 1
        try:
            client.invoke_async(
                job.function_name,
                scheduled.to_payload(),
                delay=item.delay,
                task_id=scheduled.async_task_id,
                timeout=timeout,
            )
        except InvokeFunctionError as exc:
            if exc.duplicate and item.schedule_sent:  # our own earlier request got through
                item.record = _scheduled(job, item, scheduled, "FC's 409 confirms the earlier request")
            elif exc.duplicate:
                item.due_at, item.delay = None, 0
                item.record = _record(
                    job,
                    item,
                    records.SKIP,
                    None,
                    "already-scheduled",
                    f"the rerun of run {scheduled.failed_run_number} is already scheduled (FC async task "
                    f"{scheduled.async_task_id} exists: a copy of this failure got there first)",
                    async_task_id=scheduled.async_task_id,
                )
            elif exc.transient:
                item.error = exc
                item.schedule_sent = item.schedule_sent or exc.ambiguous
            else:
                _rerun_at_once(item, exc)
            continue
        item.record = _scheduled(job, item, scheduled)


def _scheduled(job: Job, item: _Progress, scheduled: ScheduledRerun, note: str = "") -> dict:
    message = (
        f"run {scheduled.failed_run_number} failed: rerun as run {scheduled.failed_run_number + 1} "
        f"in {item.delay} s, at about {item.due_at} (FC async task {scheduled.async_task_id})"
    )
    return _record(
        job,
        item,
        records.SCHEDULED,
        None,
        "eligible",
        f"{message}; {note}" if note else message,
        async_task_id=scheduled.async_task_id,
    )


def _rerun_at_once(item: _Progress, refusal: InvokeFunctionError) -> None:
    """FC will not schedule (no permission, async task mode off, no endpoint): rerun now instead."""
    item.schedule_refused = refusal
    item.delay, item.due_at = 0, None


def _moved_on(instance: Instance, run: int | None) -> bool:
    """Whether the instance's RunNumber is past `run`: a rerun of that run has started."""
    return run is not None and instance.run_number is not None and instance.run_number > run


def _paced(limiter: pacing.RateLimiter, error: DataWorksError) -> None:
    """Tell the limiter about a rate-limit answer: it slows down every caller of this instance."""
    if error.throttled:
        limiter.throttled(error.retry_after)


def _rerun(job: Job, dataworks: DataWorks, items: list[_Progress], quota: _QuotaWatch) -> None:
    # One call per chunk of instances that will start the same run number, so each call's
    # Comment can say which run it starts.
    by_run: dict[int, list[_Progress]] = {}
    for item in items:
        by_run.setdefault((item.instance.run_number or 0) + 1, []).append(item)
    size = job.settings.chunk_size
    for next_run, group in sorted(by_run.items()):
        for start in range(0, len(group), size):
            if quota.error is not None:  # the daily limit or edition quota: send nothing more
                return
            chunk = group[start : start + size]
            _rerun_chunk(job, dataworks, _comment(job, next_run, chunk), chunk, quota)


def _rerun_chunk(job: Job, dataworks: DataWorks, comment: str, chunk: list[_Progress], quota: _QuotaWatch) -> None:
    limiter = pacing.limiter("write", job.settings.write_qps)
    limiter.acquire(job.deadline - MIN_CALL_SECONDS)
    timeout = _time_left(job)
    for item in chunk:
        item.error = None
        item.attempts += 1
    started = pacing.clock()
    try:
        request_id, success_info = dataworks.rerun_task_instances(
            [item.target.instance_id for item in chunk], comment, timeout, use_latest_config=job.use_latest_config
        )
    except DataWorksError as exc:
        _paced(limiter, exc)
        if exc.quota_exhausted:  # refused before anything happened: nothing to read back
            quota.saw(exc)
        for item in chunk:
            item.rerun_ms = (pacing.clock() - started) * 1000
            if exc.quota_exhausted:
                continue
            if not exc.transient:
                item.record = _record(
                    job,
                    item,
                    records.RERUN,
                    False,
                    "rerun-refused",
                    f"RerunTaskInstances refused: {exc.message}",
                    exc,
                )
                continue
            item.error = exc
            if exc.ambiguous:  # it may have happened: read the instance again before resending
                item.sent_at_run, item.lost = item.instance.run_number, exc
                item.decision = None
        return
    limiter.passed()
    for item in chunk:
        item.rerun_ms = (pacing.clock() - started) * 1000
        info = success_info.get(str(item.target.instance_id))
        if not isinstance(info, dict) or not isinstance(info.get("Success"), bool):
            # No verdict for this id: treat like an unanswered request and read the instance again.
            item.error = item.lost = DataWorksError(
                "RerunTaskInstances", "MissingSuccessInfo", "no SuccessInfo entry", transient=True
            )
            item.sent_at_run = item.instance.run_number
            item.decision = None
            continue
        if not info["Success"]:
            # Refused. If someone else reran the instance since it was read (another copy of the
            # event on another FC instance, an operator), that is why: read it again to tell.
            item.refusal = str(info.get("Message") or "no message")
            item.refusal_request_id = request_id
            item.refused_at_run = item.instance.run_number
            item.decision = None
            continue
        # Accepted. DataWorks' own message, else (when a log was looked at) why it was rerun: the rule that
        # matched, or why no log could be read.
        message = str(info.get("Message") or (item.decision.message if item.verdict else ""))
        item.record = _record(
            job,
            item,
            records.RERUN,
            True,
            "eligible",
            message,
            dataworks_request_id=request_id,
        )


def _refused(job: Job, item: _Progress) -> dict:
    """The record of a rerun DataWorks refused, when nobody else had rerun the instance."""
    return _record(
        job, item, records.RERUN, False, "eligible", item.refusal, dataworks_request_id=item.refusal_request_id
    )


def _quota_exhausted(job: Job, progress: list[_Progress], error: DataWorksError) -> None:
    """Record every unfinished instance as not rerun because DataWorks' daily limit or edition quota is used up."""
    limit = QUOTA_LIMITS[error.code]
    for item in progress:
        if item.record is not None:
            continue
        if item.refusal is not None:
            item.record = _refused(job, item)
            continue
        maybe = " A rerun request may have reached DataWorks before the limit." if item.sent_at_run else ""
        item.record = _record(
            job,
            item,
            records.SKIP,
            None,
            "quota-exhausted",
            f"not rerun: {limit} is used up ({error.code}); it does not clear within minutes, so this is not "
            f"retried. Rerun it over HTTP once the limit clears.{maybe}",
            error,
        )


def _deferred(job: Job, progress: list[_Progress], error: DataWorksError | None, why: str) -> RetryLater | None:
    """Record every unfinished instance as deferred; the RetryLater to raise with the records, or
    None when none was deferred (an unexplained refusal is recorded as the refusal it is)."""
    code = error.code if error else "DeadlineReached"
    service = "Function Compute (InvokeFunction)" if isinstance(error, InvokeFunctionError) else "DataWorks"
    then = "Function Compute retries the invocation" if job.trigger == records.EVENTBRIDGE else "not rerun: try again"
    # No error: nothing failed, the invocation's time ran out before it got there.
    cause = f"{service} kept failing ({code}; {why})" if error is not None else f"not done in time ({why})"
    deferred = False
    for item in progress:
        if item.record is None and item.refusal is not None:
            item.record = _refused(job, item)  # DataWorks' answer is known; only its explanation is missing
        elif item.record is None:
            deferred = True
            maybe = (
                " A rerun request may have reached DataWorks; a retry reads the instance first."
                if item.sent_at_run
                else ""
            )
            item.record = _record(
                job,
                item,
                records.SKIP,
                None,
                "deferred",
                f"{cause}: {then}.{maybe}",
                error,
            )
    if not deferred:
        return None
    return RetryLater(cause, [p.record for p in progress], error)


def _time_left(job: Job, until: float | None = None) -> float:
    """The read timeout for the next call: the configured one, cut short so it ends by the deadline
    (or by `until`, the end of the reads' share of the invocation's time)."""
    left = (job.deadline if until is None else until) - pacing.clock()
    if left < MIN_CALL_SECONDS:
        raise pacing.DeadlineReached("the invocation's deadline is reached")
    return min(left, job.settings.read_timeout)


def _comment(job: Job, next_run: int, chunk: list[_Progress]) -> str:
    """What DataWorks' operation log shows for the call: who reran, why, and which run this starts."""
    latest = ", with the latest configuration" if job.use_latest_config else ""
    if job.manual:
        origin = f"{job.operator_comment} " if job.operator_comment else ""
        if job.origin_request_id is not None:  # a bulk rerun by filter: the HTTP request that selected it
            how = f"bulk rerun by filter over HTTP, FC request {job.origin_request_id}"
            if job.request_id != job.origin_request_id:
                how += f" (continued in {job.request_id})"
        else:
            how = f"manual rerun over HTTP, FC request {job.request_id}"
        return f"{origin}[{job.function_name}: {how}, run {next_run}{latest}]"
    scheduled = [item.target.scheduled for item in chunk if item.target.scheduled]
    if scheduled:  # a delayed invocation: one instance
        first = scheduled[0]
        return (
            f"[{job.function_name}: scheduled rerun (FC async task {first.async_task_id}, due {first.due_at}) "
            f"after failure event {first.event_id or '(RawData)'}; run {next_run} of at most {job.settings.max_reruns + 1}]"
        )
    event_ids = [item.target.event_id or "(RawData)" for item in chunk]
    shown = ", ".join(event_ids[:COMMENT_EVENTS])
    if len(event_ids) > COMMENT_EVENTS:  # the SLS records of the FC request list every one
        shown += f" and {len(event_ids) - COMMENT_EVENTS} more, FC request {job.request_id}"
    return (
        f"[{job.function_name}: automatic rerun after failure event {shown}; "
        f"run {next_run} of at most {job.settings.max_reruns + 1}]"
    )


def _record(
    job: Job,
    item: _Progress,
    decision: str,
    success: bool | None,
    reason: str,
    message: str,
    error: DataWorksError | None = None,
    dataworks_request_id: str | None = None,
    due_at: str | None = None,
    async_task_id: str | None = None,
) -> dict:
    scheduled = item.target.scheduled
    if scheduled is not None:  # a delayed invocation names its task and when it was due
        async_task_id, due_at = scheduled.async_task_id, due_at or scheduled.due_at
    refused = item.schedule_refused
    if refused is not None and decision == records.RERUN:
        message = f"InvokeFunction refused ({refused.code}: {refused.message}): rerun at once instead. {message}"
    planned = decision in (records.SCHEDULED, records.DRY_RUN) and item.delay
    return records.instance_record(
        instance_id=item.target.instance_id,
        decision=decision,
        success=success,
        message=message,
        reason=reason,
        trigger=job.trigger,
        request_id=job.request_id,
        event_id=item.target.event_id,
        instance=item.instance,
        error_code=error.code if error else None,
        dataworks_request_id=dataworks_request_id or (error.request_id if error else None),
        comment=job.operator_comment,
        attempts=item.attempts,
        lookup_ms=item.lookup_ms,
        rerun_ms=item.rerun_ms,
        rule=item.verdict.rule if item.verdict else (scheduled.rule if scheduled else None),
        failure_class=item.verdict.failure_class if item.verdict else None,
        matched_line=item.verdict.matched_line if item.verdict else None,
        delay_seconds=item.delay if planned else None,
        due_at=due_at or (item.due_at if planned else None),
        async_task_id=async_task_id,
        schedule_error_code=refused.code if refused is not None else None,
        origin_request_id=job.origin_request_id,
        use_latest_config=job.use_latest_config if decision in (records.RERUN, records.DRY_RUN) else None,
    )
