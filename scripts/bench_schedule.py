"""The schedule benchmark of scripts/bench.py: 500 failures at once, rerun on the default schedule.

The event function runs as template.yml deploys it (reservedConcurrency, per-instance QPS, the
default schedule: RERUN_BACKOFF_BASE_SECONDS, RERUN_BACKOFF_MAX_SECONDS) on the local FC's process
model, scheduling through the local FC OpenAPI (InvokeFunction, async task mode on). FC's delayed
invocations come due on a ManualClock that this benchmark moves one second at a time, waiting at
each step until what came due has run: so the reruns reaching DataWorks are counted per second of
FC's clock, as they would arrive in the cloud (the instances keep up: far fewer come due in a
second than they may write). Nothing in the function is replaced: real jitter, real pacing.

The baseline, in the same run: the same number of fresh failures with RERUN_BACKOFF_BASE_SECONDS=0,
rerun at once; its writes are counted per second of real time (the limiters pace them).

Figures: the spread of the scheduled due times (a histogram), the peak rerun rate reaching
DataWorks, scheduled and immediate, against the write quota, and per instance whether it was rerun
exactly once (0 lost, 0 double).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HISTOGRAM_BUCKET = 5  # seconds per histogram row
HISTOGRAM_WIDTH = 40  # characters of the longest bar


def bench_schedule(emulator, defaults: dict, failures: int, *, credentials, region, seed, journal_figures, progress):
    """`failures` failures at once on the default schedule, then the same with immediate reruns.

    `seed(emulator, n)` makes n fresh failed instances; `journal_figures(emulator, since, ids)` says
    what DataWorks saw (bench.py's); `progress(message)` writes a line on stderr.
    """
    emulator.faults.set("*", latency=0.025)
    emulator.quota(read_qps=50, write_qps=20)
    cloud = {"event": defaults["event"], "credentials": credentials, "region": region}
    scheduled = _scheduled(emulator, cloud, seed(emulator, failures), journal_figures, progress)
    time.sleep(1.1)  # the quota's window starts empty
    immediate = _immediate(emulator, cloud, seed(emulator, failures), journal_figures, progress)
    event = defaults["event"]
    return {
        "failures": failures,
        "backoff_base_s": event["backoff_base_s"],
        "backoff_max_s": event["backoff_max_s"],
        "write_quota": 20,
        "scheduled": scheduled,
        "immediate": immediate,
        "ratio_peak_immediate_scheduled": immediate["peak_writes_per_s"] / max(1, scheduled["peak_writes_per_s"]),
    }


def _function(emulator, cloud: dict, logs: str, clock, base_seconds: int, api_url: str | None):
    from localcloud.fcfunction import Function

    event = cloud["event"]
    env = {
        "DATAWORKS_ENDPOINT": emulator.url,
        "DATAWORKS_READ_QPS": str(event["read_qps"]),
        "DATAWORKS_WRITE_QPS": str(event["write_qps"]),
        "RERUN_BACKOFF_BASE_SECONDS": str(base_seconds),
        "RERUN_BACKOFF_MAX_SECONDS": str(event["backoff_max_s"]),
    }
    if api_url:
        env["FUNCTION_COMPUTE_ENDPOINT"] = api_url
    return Function(
        handler="index.handle_event",
        code_dir=str(ROOT / "function"),
        runtime=event["runtime"],
        timeout=event["timeout"],
        memory=event["memory"],
        function_name=event["function_name"],
        region=cloud["region"],
        env=env,
        credentials=cloud["credentials"],
        logstore=str(Path(logs) / "dwrerun-event.jsonl"),
        reserved_concurrency=event["reserved_concurrency"],
        max_async_retry_attempts=event["retries"],
        async_task=True,
        clock=clock,
    )


def _deliver(fn, ids: list[int], tag: str) -> list:
    from bench_burst_child import failure_event
    from localcloud.eventbridge import EventBridge

    rule = EventBridge(fn)
    return [handle for i in ids for handle in rule.deliver(failure_event(i, tag))]


def _scheduled(emulator, cloud: dict, ids: list[int], journal_figures, progress) -> dict:
    from localcloud.clock import ManualClock
    from localcloud.fcapi import FunctionComputeApi

    clock = ManualClock()
    start = clock.now()
    with tempfile.TemporaryDirectory() as logs, FunctionComputeApi(credentials=[cloud["credentials"]]) as api:
        fn = _function(emulator, cloud, logs, clock, cloud["event"]["backoff_base_s"], api.url)
        api.register(fn)
        with fn:
            since = time.time()
            handles = _deliver(fn, ids, "schedule")
            fn.drain(timeout=600)
            first = [r for h in handles for r in h.final.records if r.get("kind") == "instance"]
            delayed = [h for h in fn.async_invocations if h.task_id is not None]
            due = sorted(h.due_at - start for h in delayed)
            progress(f"  schedule: {len(delayed)} reruns scheduled, due {due[0]:.0f}-{due[-1]:.0f} s from now")
            writes_per_second = []
            seen = _writes(emulator, since)
            while fn.delayed:
                clock.advance(1)
                fn.drain(timeout=600)
                now = _writes(emulator, since)
                writes_per_second.append(now - seen)
                seen = now
                if len(writes_per_second) % 20 == 0:
                    progress(f"  schedule: FC's clock at +{clock.now() - start:.0f} s, {now} reruns so far")
            instances = len(fn.instances)
            failed = sum(1 for h in delayed if h.status != "Succeeded")
            calls = api.calls()
    figures = journal_figures(emulator, since, ids)
    busiest = max(writes_per_second, default=0)
    return {
        "decisions": _tally(f"{r['decision']} {r['reason']}" for r in first),
        "due_s": due,
        "due_spread_s": due[-1] - due[0] if due else 0,
        "most_due_in_one_second": max(_tally(str(int(d)) for d in due).values(), default=0),
        "histogram": histogram(due),
        "invoke_function_calls": _tally(str(c.status) for c in calls),
        "writes_per_clock_second": writes_per_second,
        "peak_writes_per_s": busiest,
        "peak_share_of_write_quota": busiest / 20,
        "mean_writes_per_s_while_due": (
            sum(writes_per_second) / max(1, len(writes_per_second) - _leading_zeros(writes_per_second))
        ),
        "instances_started": instances,
        "delayed_invocations_failed": failed,
        **figures,
    }


def _immediate(emulator, cloud: dict, ids: list[int], journal_figures, progress) -> dict:
    from localcloud.clock import ManualClock

    with tempfile.TemporaryDirectory() as logs:
        fn = _function(emulator, cloud, logs, ManualClock(), 0, None)
        with fn:
            since = time.time()
            started = time.perf_counter()
            _deliver(fn, ids, "immediate")
            fn.drain(timeout=600)
            wall = time.perf_counter() - started
            instances = len(fn.instances)
    progress(f"  schedule baseline: {len(ids)} immediate reruns in {wall:.0f} s")
    times = sorted(
        e.time
        for e in emulator.journal.entries()
        if e.time >= since and e.action == "RerunTaskInstances" and e.status == 200
    )
    per_second = [0] * (int(times[-1] - times[0]) + 1 if times else 0)
    for moment in times:
        per_second[int(moment - times[0])] += 1
    busiest = max(per_second, default=0)
    return {
        "wall_s": wall,
        "writes_per_second": per_second,
        "peak_writes_per_s": busiest,
        "peak_share_of_write_quota": busiest / 20,
        "instances_started": instances,
        **journal_figures(emulator, since, ids),
    }


def _writes(emulator, since: float) -> int:
    return sum(
        1
        for e in emulator.journal.entries()
        if e.time >= since and e.action == "RerunTaskInstances" and e.status == 200
    )


def _leading_zeros(values: list[int]) -> int:
    """Seconds before the first rerun came due (the floor of the schedule)."""
    for n, value in enumerate(values):
        if value:
            return n
    return len(values)


def histogram(due: list[float], bucket: int = HISTOGRAM_BUCKET, width: int = HISTOGRAM_WIDTH) -> list[dict]:
    """Due times in `bucket`-second rows: [{"from", "to", "count"}] from the first to the last."""
    if not due:
        return []
    low = int(min(due)) // bucket * bucket
    high = int(max(due)) // bucket * bucket
    rows = [{"from": start, "to": start + bucket, "count": 0} for start in range(low, high + 1, bucket)]
    for seconds in due:
        rows[(int(seconds) - low) // bucket]["count"] += 1
    return rows


def histogram_lines(rows: list[dict], width: int = HISTOGRAM_WIDTH) -> list[str]:
    """The histogram as plain-text lines: `60-64 s  ########  41`."""
    most = max((row["count"] for row in rows), default=0) or 1
    return [
        f"{row['from']:>4}-{row['to'] - 1:<4} s  {'#' * round(row['count'] * width / most):<{width}}  {row['count']}"
        for row in rows
    ]


def _tally(keys) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
