"""Does DataWorks rerun this failed instance itself? Then the function stays out of its way.

A node can have an automatic rerun of its own (GetTask: `RerunMode`, `RerunTimes` at most 10,
`RerunInterval` in seconds, at most 30 minutes; "takes effect only if RerunMode is AllAllowed or
FailureAllowed"). While DataWorks still has reruns of its own left for an instance, a rerun by the
function as well would run the task twice, so the function skips it with `dataworks-auto-rerun`
and says when DataWorks will rerun it.

How the counting works is not documented [inferred, docs/retries-and-scheduling.md]: `RunNumber` is
"the current number of runs, starting at 1", and each automatic rerun is taken to be a run of
its own, so run N failing means DataWorks has used N - 1 of its RerunTimes: it has one left while
N <= RerunTimes. Manual reruns also count as runs, so the guard errs towards letting the function
act, never towards a silent double run. DataWorks' next rerun is expected RerunInterval seconds
after the failed run finished.

GetTask answers are kept per task and environment for TASK_CACHE_SECONDS in a warm instance: a burst
of failures of one node reads it once. Nothing depends on the cache for correctness.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from dwrerun import dataworks, pacing, schedule, schema
from dwrerun.dataworks import DataWorks, DataWorksError
from dwrerun.job import Item, Job, QuotaWatch, paced, time_left
from dwrerun.outcome import refusal
from dwrerun.policy import ALL_ALLOWED, FAILURE, FAILURE_ALLOWED, AutoRerun, Decision, Instance
from dwrerun.schema import Reason

TASK_CACHE_SECONDS = 60.0
TASK_CACHE_SIZE = 2000
# DataWorks' own automatic rerun comes at most 30 minutes after a failure (FACTS §2); a bulk rerun
# asks GetTask only about a failure younger than that (and a minute of slack).
DATAWORKS_MAX_RERUN_INTERVAL_MS = (1800 + 60) * 1000
DATAWORKS_MAX_RERUN_TIMES = 10  # the node setting's limit: a run past it cannot be one DataWorks reruns


def may_rerun_itself(instance: Instance) -> bool:
    """Whether GetTask is worth asking at all: a failed run DataWorks could still rerun by itself."""
    return (
        instance.status == FAILURE
        and instance.task_id is not None
        and instance.run_number is not None
        and instance.run_number <= DATAWORKS_MAX_RERUN_TIMES
    )


def check(settings: AutoRerun, instance: Instance) -> tuple[Decision, str | None] | None:
    """(the skip, when DataWorks' rerun is due) while DataWorks still reruns the instance itself; else None."""
    if settings.rerun_mode not in (FAILURE_ALLOWED, ALL_ALLOWED) or settings.rerun_times <= 0:
        return None
    run = instance.run_number
    if instance.status != FAILURE or run is None or run > settings.rerun_times:
        return None
    due = None
    if instance.finished_time:
        due = schedule.due_at(settings.rerun_interval, now=instance.finished_time / 1000)
    when = f"at about {due}" if due else f"{settings.rerun_interval} s after the run ended"
    message = (
        f"DataWorks reruns this node itself (RerunTimes {settings.rerun_times}, RerunInterval "
        f"{settings.rerun_interval} s): run {run} failed, {settings.rerun_times - run + 1} automatic "
        f"rerun(s) left, the next {when}. The function acts only on the failure after DataWorks' last one."
    )
    return Decision(False, Reason.DATAWORKS_AUTO_RERUN, message), due


def worth_asking(job: Job, instance: Instance) -> bool:
    """Whether DataWorks' own automatic rerun is worth asking about (GetTask) for this instance."""
    if not job.manual:
        return True  # a fresh failure event: DataWorks' rerun may well be on its way
    if job.named_ids:
        return False  # ids an operator named: their call, as before
    # A bulk rerun by filter, often the morning after: DataWorks reruns at most 30 minutes after a
    # failure, so an older failure still at its failed run is one it has given up on.
    finished = instance.finished_time
    return finished is None or schedule.clock() * 1000 - finished <= DATAWORKS_MAX_RERUN_INTERVAL_MS


def left_to_dataworks(job: Job, client: DataWorks, item: Item, quota: QuotaWatch, until: float) -> bool:
    """The pipeline's step: whether DataWorks reruns the instance itself (done: `dataworks-auto-rerun`),
    or GetTask could not say (done, or left to retry). False: the function's own rerun may go ahead.
    `until` is when the reads' share of the invocation's time ends."""
    instance = item.instance
    if not may_rerun_itself(instance):
        return False
    try:
        node = _node_settings(job, client, item, until)
    except DataWorksError as exc:
        item.read_again()  # read the instance again with the next attempt
        if exc.quota_exhausted:
            quota.saw(exc)
        elif exc.transient:
            item.error = exc
        else:  # not knowing risks a double run: hold back, and say why
            item.finish(
                job,
                schema.SKIP,
                None,
                Reason.LOOKUP_FAILED,
                f"GetTask refused ({exc.message}): whether DataWorks reruns this node itself is unknown"
                + (f". {fix}" if (fix := refusal("GetTask", exc, instance.project_id)) else ""),
                exc,
            )
        return True
    found = check(node, instance)
    if found is None:
        return False
    item.decision, due = found
    item.finish(job, schema.SKIP, None, item.decision.reason, item.decision.message, due_at=due)
    return True


def _node_settings(job: Job, client: DataWorks, item: Item, until: float) -> AutoRerun:
    """The node's own rerun settings: this warm instance's cached GetTask answer, else GetTask, paced
    by the read limiter. Raises DataWorksError (the limiter told of a throttling answer) and
    pacing.DeadlineReached."""
    instance = item.instance
    node = task_cache.get(instance.task_id, instance.project_env)
    if node is not None:
        return node
    limiter = pacing.limiter("read", job.settings.read_qps)
    limiter.acquire(until - pacing.MIN_CALL_SECONDS)
    item.attempts += 1
    try:
        node = dataworks.auto_rerun(client.get_task(instance.task_id, instance.project_env, time_left(job, until)))
    except DataWorksError as exc:
        paced(limiter, exc)
        raise
    limiter.passed()
    task_cache.put(instance.project_env, node)
    return node


class TaskCache:
    """GetTask answers of this warm instance, per (task id, environment), for a short time."""

    def __init__(self, ttl: float = TASK_CACHE_SECONDS, size: int = TASK_CACHE_SIZE):
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[tuple[int, str | None], tuple[float, AutoRerun]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: int, project_env: str | None) -> AutoRerun | None:
        with self._lock:
            entry = self._entries.get((task_id, project_env))
            if entry is None:
                return None
            if pacing.clock() - entry[0] > self._ttl:
                del self._entries[(task_id, project_env)]
                return None
            return entry[1]

    def put(self, project_env: str | None, settings: AutoRerun) -> None:
        with self._lock:
            self._entries[(settings.task_id, project_env)] = (pacing.clock(), settings)
            self._entries.move_to_end((settings.task_id, project_env))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


task_cache = TaskCache()
