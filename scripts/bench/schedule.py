"""Schedule: 500 failures at once, rerun on the default schedule (FC's clock moved by the bench).

The event function runs as template.yml deploys it (reservedConcurrency, per-instance QPS, the
default schedule: RERUN_BACKOFF_BASE_SECONDS, RERUN_BACKOFF_MAX_SECONDS) on the local FC's process
model, scheduling through the local FC OpenAPI (InvokeFunction, async task mode on). FC's delayed
invocations come due on a ManualClock that this benchmark drives: it jumps over the first minute
(nothing comes due before half the ceiling), then moves one second per real second until the last
one is due, so the reruns reach DataWorks at the pace they would in the cloud and are counted per
real second, paced by the instances' real limiters. Nothing in the function is replaced: real
jitter, real pacing. (`speed` > 1 moves the clock faster than real time, for a quick smoke run
whose rates mean nothing.)

The baseline, in the same run: the same number of fresh failures with RERUN_BACKOFF_BASE_SECONDS=0,
rerun at once; its writes are counted per second the same way.

Figures: the spread of the scheduled due times (a histogram), the rerun rate reaching DataWorks,
scheduled and immediate (peak, mean, seconds at 80% of the write quota or more) against the write
quota, and per instance whether it was rerun exactly once (0 lost, 0 double).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import CREDENTIALS, REGION, ROOT, journal_figures, progress, ratio, seed

NAME = "schedule"
DESCRIPTION = "schedule: failures at once on the default schedule (FC's clock moved by the bench), then rerun at once"
HISTOGRAM_BUCKET = 5  # seconds per histogram row
HISTOGRAM_WIDTH = 40  # characters of the longest bar
WRITE_QUOTA = 20  # DataWorks Enterprise: RerunTaskInstances calls a second, per account and region
BUSY_SHARE = 0.8  # a second with at least this share of the write quota used counts as busy


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_schedule(
        emulator,
        defaults,
        args.failures,
        credentials=CREDENTIALS,
        region=REGION,
        seed=seed,
        journal_figures=journal_figures,
        progress=lambda message: progress(message, since),
        speed=args.schedule_speed,
    )


def bench_schedule(
    emulator, defaults: dict, failures: int, *, credentials, region, seed, journal_figures, progress, speed=1.0
):
    """`failures` failures at once on the default schedule, then the same with immediate reruns.

    `seed(emulator, n)` makes n fresh failed instances; `journal_figures(emulator, since, ids)` says
    what DataWorks saw (common.py's); `progress(message)` writes a line on stderr.
    """
    emulator.faults.set("*", latency=0.025)
    emulator.quota(read_qps=50, write_qps=WRITE_QUOTA)
    cloud = {"event": defaults["event"], "credentials": credentials, "region": region}
    scheduled = _scheduled(emulator, cloud, seed(emulator, failures), journal_figures, progress, speed)
    time.sleep(1.1)  # the quota's window starts empty
    immediate = _immediate(emulator, cloud, seed(emulator, failures), journal_figures, progress)
    event = defaults["event"]
    return {
        "failures": failures,
        "backoff_base_s": event["backoff_base_s"],
        "backoff_max_s": event["backoff_max_s"],
        "write_quota": WRITE_QUOTA,
        "clock_speed": speed,
        "scheduled": scheduled,
        "immediate": immediate,
        "ratio_peak_immediate_scheduled": immediate["peak_writes_per_s"] / max(1, scheduled["peak_writes_per_s"]),
        "ratio_busy_seconds_immediate_scheduled": immediate["busy_seconds"] / max(1, scheduled["busy_seconds"]),
    }


def _function(emulator, cloud: dict, logs: str, clock, base_seconds: int, api_url: str | None):
    from localcloud.fc import Function

    event = cloud["event"]
    env = {
        "DATAWORKS_ENDPOINT": emulator.url,
        "DATAWORKS_READ_QPS": str(event["read_qps"]),
        "DATAWORKS_WRITE_QPS": str(event["write_qps"]),
        "RERUN_BACKOFF_BASE_SECONDS": str(base_seconds),
        "RERUN_BACKOFF_MAX_SECONDS": str(event["backoff_max_s"]),
        # The schedule's own spread: 500 failures at once would open a storm (bench/storm.py measures that).
        "RERUN_STORM_THRESHOLD": "0",
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
    from burst_child import failure_event

    from localcloud.eventbridge import EventBridge

    rule = EventBridge(fn)
    return [handle for i in ids for handle in rule.deliver(failure_event(i, tag))]


def _scheduled(emulator, cloud: dict, ids: list[int], journal_figures, progress, speed: float) -> dict:
    from localcloud.clock import ManualClock
    from localcloud.fc import FunctionComputeApi

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
            # Nothing comes due before the earliest: jump there, then keep FC's clock with real time.
            clock.advance(max(0.0, due[0] - 1))
            real0, step = time.monotonic(), 0
            while fn.delayed:
                step += 1
                pause = real0 + step / speed - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                clock.advance(1)
                if step % 20 == 0:
                    progress(f"  schedule: FC's clock at +{clock.now() - start:.0f} s, {fn.delayed} reruns not due yet")
            fn.drain(timeout=600)
            instances = len(fn.instances)
            failed = sum(1 for h in delayed if h.status != "Succeeded")
            calls = api.calls()
    return {
        "decisions": _tally(f"{r['decision']} {r['reason']}" for r in first),
        "due_s": due,
        "due_spread_s": due[-1] - due[0] if due else 0,
        "most_due_in_one_second": max(_tally(str(int(d)) for d in due).values(), default=0),
        "histogram": histogram(due),
        "invoke_function_calls": _tally(str(c.status) for c in calls),
        **_rate(emulator, since),
        "instances_started": instances,
        "delayed_invocations_failed": failed,
        **journal_figures(emulator, since, ids),
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
    return {
        "wall_s": wall,
        **_rate(emulator, since),
        "instances_started": instances,
        **journal_figures(emulator, since, ids),
    }


def _rate(emulator, since: float) -> dict:
    """RerunTaskInstances calls DataWorks took, per second from the first one on, and what they say."""
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
        "writes_per_second": per_second,
        "peak_writes_per_s": busiest,
        "peak_share_of_write_quota": busiest / WRITE_QUOTA,
        "mean_writes_per_s": sum(per_second) / len(per_second) if per_second else 0.0,
        "busy_seconds": sum(1 for n in per_second if n >= BUSY_SHARE * WRITE_QUOTA),
    }


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


def print_histogram(plan: dict) -> None:
    """After the table: when the scheduled reruns came due, as a histogram."""
    print(
        f"\nScheduled reruns of {plan['failures']} failures at once, due this many seconds after the failure "
        f"(RERUN_BACKOFF_BASE_SECONDS={plan['backoff_base_s']}):"
    )
    for line in histogram_lines(plan["scheduled"]["histogram"]):
        print(f"  {line}")


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
    plan = figures["schedule"]
    later, now, n = plan["scheduled"], plan["immediate"], plan["failures"]
    row(
        f"{n} failures at once, scheduled: due times after the failure",
        f"{later['due_s'][0]:.0f}-{later['due_s'][-1]:.0f} s",
        "immediate: all at 0 s",
        None,
        "-",
        None,
    )
    row(
        "Reruns due in the busiest second, immediate vs scheduled",
        f"{n} / {later['most_due_in_one_second']}",
        "",
        ratio(n, later["most_due_in_one_second"]),
        "-",
        None,
    )
    quota = plan["write_quota"]
    for label, figures_of in (("Scheduled reruns", later), ("Immediate reruns (base 0)", now)):
        row(
            f"{label}, peak rerun rate reaching DataWorks",
            f"{figures_of['peak_writes_per_s']} writes/s (mean {figures_of['mean_writes_per_s']:.1f})",
            f"write quota {quota}/s",
            figures_of["peak_share_of_write_quota"],
            "-",
            None,
        )
    row(
        "Peak rerun rate, immediate vs scheduled",
        f"{now['peak_writes_per_s']} / {later['peak_writes_per_s']} writes/s",
        "",
        plan["ratio_peak_immediate_scheduled"],
        "-",
        None,
    )
    row(
        f"Seconds at {BUSY_SHARE:.0%} of the write quota or more, immediate vs scheduled",
        f"{now['busy_seconds']} / {later['busy_seconds']} s",
        f"of {len(now['writes_per_second'])} / {len(later['writes_per_second'])} s with reruns",
        plan["ratio_busy_seconds_immediate_scheduled"],
        "-",
        None,
    )
    for label, figures_of in (("scheduled", later), ("immediate", now)):
        row(
            f"{label.capitalize()} reruns, rerun exactly once (lost / double)",
            f"{n - figures_of['lost'] - figures_of['double']}/{n} ({figures_of['lost']} / {figures_of['double']})",
            f"throttled {figures_of['throttled']}",
            None,
            f"{n}/{n} (0 / 0)",
            figures_of["all_rerun_exactly_once"],
        )
