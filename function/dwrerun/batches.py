"""A rerun by filter's work, in batches: what one invocation does before its time is up.

Work goes in batches of RERUN_CHUNK_SIZE through rerun.run: the same guards, failure rules,
adaptive pacing and records as every other path, one RerunTaskInstances call per batch. Before a
batch starts, its time is estimated from the QPS limits; a batch that would not end before the
deadline (less the time kept to hand on and answer) is left for a continuation instead. Each
continuation part is sized to use part of a function's timeout (`slice_size`), at most 500
instances (one ListTaskInstances call rereads them).

Both sides of a rerun by filter use it: the HTTP function's plan or apply (bulk.py) and the event
function's continuation parts (handoff.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dwrerun import pacing, records
from dwrerun.config import Settings
from dwrerun.dataworks import MAX_PAGE_SIZE, DataWorksError
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Target
from dwrerun.outcome import Outcome, first_quota_code, quota_exhausted, skipped
from dwrerun.rerun import RetryLater, run
from dwrerun.schema import Reason

HAND_ON_RESERVE = 3.0  # seconds kept at the end of an invocation to hand the rest on and answer
SLICE_SHARE = 0.6  # a part is sized to use this share of the function's timeout
# A selection is spread over about this many parts, so they run side by side: the template's 9
# event-function instances and the HTTP one (docs/sizing.md), each at its own QPS limits.
PARALLEL_PARTS = 10


@dataclass
class Work:
    """What a stretch of work did: records written, targets left for a continuation, and why."""

    outcomes: list[Outcome] = field(default_factory=list)
    leftover: list[Target] = field(default_factory=list)
    error: DataWorksError | None = None  # the DataWorks error that left them (None: time ran out)
    quota: str | None = None  # DataWorks' daily limit or edition quota code, when it stopped the work


def filter_job(
    invocation: Invocation, settings: Settings, rule_set, asked, *, origin_request_id: str, dry_run: bool
) -> Job:
    """The Job of a rerun by filter: `asked` is what the operator asked (a bulk.Request, or the
    Continuation that carries it on), with its Comment, Force, IgnoreRules and UseLatestConfig."""
    return Job.for_filter(
        invocation,
        settings,
        rule_set,
        deadline=invocation.deadline - HAND_ON_RESERVE,
        origin_request_id=origin_request_id,
        dry_run=dry_run,
        force=asked.force,
        comment=asked.comment,
        ignore_rules=asked.ignore_rules,
        use_latest_config=asked.use_latest_config,
    )


def per_instance_seconds(settings: Settings, reads_logs: bool) -> float:
    """The QPS limits' time for one instance: its log read, and its share of a RerunTaskInstances call."""
    return (1.0 / settings.read_qps if reads_logs else 0.0) + 1.0 / (settings.chunk_size * settings.write_qps)


def slice_size(settings: Settings, timeout: float, reads_logs: bool, count: int) -> int:
    """Instances one part is given: a PARALLEL_PARTS-th of the `count` selected (at least a
    RerunTaskInstances chunk), at most what fits in SLICE_SHARE of a timeout, and at most 500."""
    budget = timeout * SLICE_SHARE - HAND_ON_RESERVE - 1.0 / settings.read_qps  # the reread call
    fits = int(budget / per_instance_seconds(settings, reads_logs))
    spread = max(settings.chunk_size, math.ceil(count / PARALLEL_PARTS))
    return max(1, min(MAX_PAGE_SIZE, fits, spread))


def work(job: Job, targets: list[Target], dataworks) -> Work:
    """Run the targets through rerun.run, a batch of RERUN_CHUNK_SIZE at a time, writing each
    batch's records; stop when the next batch would not end before the job's deadline."""
    done = Work()
    size = job.settings.chunk_size
    per = per_instance_seconds(job.settings, job.reads_logs)
    slack = (
        pacing.MIN_CALL_SECONDS
        + 1.0 / job.settings.write_qps
        + min(job.settings.read_timeout, pacing.RERUN_RESERVE_SECONDS)
    )
    n = 0
    while n < len(targets):
        batch = targets[n : n + size]
        if pacing.clock() + len(batch) * per + slack > job.deadline:
            done.leftover = targets[n:]
            return done
        try:
            written = run(job, batch, dataworks)
        except RetryLater as exc:
            finished = [o for o in exc.outcomes if o.reason != Reason.DEFERRED]
            write(job, finished)
            done.outcomes += finished
            # Deferred ones go on to a continuation, which writes their record: none here.
            left = [t for t, o in zip(batch, exc.outcomes, strict=True) if o.reason == Reason.DEFERRED]
            done.leftover, done.error = left + targets[n + size :], exc.error
            return done
        write(job, written)
        done.outcomes += written
        quota = first_quota_code(written)
        if quota:
            rest = [quota_skip(t.instance_id, quota, t.listed) for t in targets[n + size :]]
            write(job, rest)
            done.outcomes += rest
            done.quota = quota
            return done
        n += size
    return done


def bare(instance_id: int, reason: str, message: str, error_code: str | None = None, instance=None) -> Outcome:
    """The outcome of an instance no rerun.run saw: skipped before any call about it."""
    return skipped(instance_id, reason, message, error_code=error_code, instance=instance)


def quota_skip(instance_id: int, code: str, instance=None) -> Outcome:
    """Not rerun: the daily limit or the edition's quota stopped the work before it."""
    return quota_exhausted(instance_id, code, "Send the filter again once the limit clears", instance=instance)


def write(job: Job, outcomes: list[Outcome]) -> None:
    records.write_outcomes(outcomes, job.origin)


def summary(job: Job, written: list[Outcome], started: float, *, outcome: str, **extra) -> dict:
    duration_ms = (pacing.clock() - started) * 1000
    return records.write_summary(job.origin, written, duration_ms, dryRunMode=job.dry_run, outcome=outcome, **extra)
