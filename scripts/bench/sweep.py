"""Sweep: a day of 10,000 instances, 2% failing, 10% of their events lost; the sweep finds the rest.

The event function runs as template.yml deploys it (the sweep's defaults: every 10 minutes, a
6-hour lookback, a 600 s grace; the default backoff) on the local FC's process model, scheduling
and claiming through the local FC OpenAPI (async task mode on). The day is simulated on FC's
ManualClock, which the instance processes read too: the failures end spread over the day, their
events (those not lost, the emulator's OpenEvent fault) are delivered when they end, the sweep's
timer fires every 10 minutes, the scheduled reruns and the claims come due. Nothing in the function
is replaced; only time is simulated (the clock moves a minute per step, and each step waits until
what came due has run).

The baseline, in the same run: the same day with no event lost and no sweep (the event path
alone), whose DataWorks calls the sweep's are compared with.

Figures: for the failures whose event was lost, the time from failure to decision (the claim's
invocation) against the target, the sweep's `interval + grace`; DataWorks calls per sweep and per
day against each edition's daily limit (both doc versions: Basic 100; Standard 1,000 and
Professional 10,000 in the November 2025 version); and per failed run, whether it was rerun
exactly once (0 lost, 0 double).

    .venv/bin/python scripts/bench/sweep.py [--instances 10000] [--fail 0.02] [--lost 0.10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import CREDENTIALS, REGION, ROOT, progress

from localcloud.clock import SharedClock
from localcloud.dataworks import DataWorksEmulator
from localcloud.dataworks.openevent import OpenEvent
from localcloud.eventbridge import EventBridge
from localcloud.fc import FunctionComputeApi, TimerTrigger
from localcloud.scheduled import scheduling_function

CHINA = timezone(timedelta(hours=8))
DAY_START = datetime(2026, 11, 28, tzinfo=CHINA).timestamp()  # a simulated day, 00:00 China time
INTERVAL, GRACE, LOOKBACK = 600, 600, 21600  # template.yml's sweep defaults
STEP = 60  # simulated seconds per step
PROJECT_ID = 48213
FIRST_ID = 6_000_000_000_000
# Daily call limits (docs/sizing.md): the 2026 page names Basic's only; November 2025 also these.
DAILY_LIMITS = {"Basic": 100, "Standard (Nov 2025 doc)": 1_000, "Professional (Nov 2025 doc)": 10_000}


def simulate(instances: int, fail: float, lost: float, scratch: Path, since: float, label: str, sweep: bool) -> dict:
    """One simulated day; what it measured."""
    failing = round(instances * fail)
    bizdate = int((DAY_START - 86400) * 1000)
    # The failures end evenly over the day (from 00:05), each a minute after it started.
    ends = {FIRST_ID + n: DAY_START + 300 + n * (86400 - 600) / max(1, failing) for n in range(failing)}
    with (
        DataWorksEmulator(credentials=[CREDENTIALS]) as dataworks,
        FunctionComputeApi(credentials=[CREDENTIALS]) as fc_api,
    ):
        for n in range(instances):
            instance_id = FIRST_ID + n
            end = ends.get(instance_id, DAY_START + 300 + n * 8)
            dataworks.backend.add_instance(
                id=instance_id,
                task_id=700000010000 + n,
                project_id=PROJECT_ID,
                status="Failure" if instance_id in ends else "Success",
                bizdate=bizdate,
                trigger_time=int((end - 120) * 1000),
                started_time=int((end - 60) * 1000),
                finished_time=int(end * 1000),
            )
        clock = SharedClock(scratch / f"clock-{label}", start=DAY_START)
        fn = scheduling_function(
            fc_api,
            clock,
            code_dir=str(ROOT / "function"),
            timeout=120,
            region=REGION,
            env={
                "DATAWORKS_ENDPOINT": dataworks.url,
                "FUNCTION_COMPUTE_ENDPOINT": fc_api.url,
                "RERUN_PROJECT_IDS": str(PROJECT_ID),
                "RERUN_SWEEP_LOOKBACK_SECONDS": str(LOOKBACK),
                "RERUN_SWEEP_GRACE_SECONDS": str(GRACE),
            },
            credentials=CREDENTIALS,
            logstore=str(scratch / f"{label}.jsonl"),
            reserved_concurrency=4,
            max_async_retry_attempts=3,
        )
        with fn:
            openevent = OpenEvent(dataworks, EventBridge(fn).deliver)
            openevent.lose_ratio(lost, seed=23)
            for instance_id, end in ends.items():  # each failure's event, when its run ends
                clock.call_at(end, lambda i=instance_id: openevent.fail(i, finish=False))
            if sweep:
                TimerTrigger(fn, "sweep", f"@every {INTERVAL // 60}m", "dwrerun-sweep")
            steps = int((86400 + LOOKBACK) / STEP)  # the day, then long enough for its last failures
            for step in range(steps):
                clock.advance(STEP)
                fn.drain(600)
                if step % 120 == 0:
                    progress(
                        f"sweep/{label}: simulated {step * STEP / 3600:4.1f} h of {steps * STEP / 3600:.0f} h", since
                    )
            journal = dataworks.journal.calls()
            records = [r for attempt in fn.invocations for r in attempt.records]
            claims = {h.task_id: h for h in fn.async_invocations if h.task_id and b'"sweep":true' in h.event}
    reruns = Counter(
        i
        for call in journal
        if call.action == "RerunTaskInstances" and call.status == 200
        for i in json.loads(call.params["Ids"])
    )
    sweeps = [r for r in records if r.get("kind") == "summary" and "listed" in r]
    # Time from failure to decision for the failures whose event was lost: the claim's invocation.
    to_decision = []
    for instance_id in openevent.lost:
        handle = claims.get(f"dwrerun-{instance_id}-run-1")
        if handle is not None and handle.due_at is not None:
            to_decision.append(handle.due_at - ends[instance_id])
    calls = Counter(call.action for call in journal)
    return {
        "label": label,
        "instances": instances,
        "failures": failing,
        "lost": len(openevent.lost),
        "rerun once": sum(1 for i in ends if reruns[i] == 1),
        "never rerun": sum(1 for i in ends if reruns[i] == 0),
        "rerun twice or more": sum(1 for i in ends if reruns[i] > 1),
        "swept missed": sum(s["missed"] for s in sweeps),
        "sweeps": len(sweeps),
        "listing calls per sweep": statistics.mean(s["pages"] for s in sweeps) if sweeps else 0,
        "fc claims per sweep": statistics.mean(s["calls"] - s["pages"] for s in sweeps) if sweeps else 0,
        "sweep listing calls": sum(s["pages"] for s in sweeps),
        "dataworks calls": sum(calls.values()),
        "dataworks calls by action": dict(calls),
        "to decision": to_decision,
        "partial sweeps": sum(1 for s in sweeps if s["outcome"] != "done"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--fail", type=float, default=0.02, help="share of the instances that fail (default 0.02)")
    parser.add_argument("--lost", type=float, default=0.10, help="share of failure events lost (default 0.10)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    since = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dwrerun-bench-sweep-") as scratch:
        baseline = simulate(args.instances, args.fail, 0.0, Path(scratch), since, "baseline", sweep=False)
        swept = simulate(args.instances, args.fail, args.lost, Path(scratch), since, "lost", sweep=True)
    report(baseline, swept)
    if args.json:
        args.json.write_text(json.dumps({"baseline": baseline, "lost": swept}, indent=1, default=str))
    ok = swept["never rerun"] == 0 and swept["rerun twice or more"] == 0 and baseline["rerun twice or more"] == 0
    return 0 if ok else 1


def report(baseline: dict, swept: dict) -> None:
    target = INTERVAL + GRACE
    waits = sorted(swept["to decision"])
    print(f"\nSweep benchmark: a simulated day of {swept['instances']:,} instances, {swept['failures']} failing")
    print(
        f"  events lost: {swept['lost']} ({swept['lost'] / max(1, swept['failures']):.0%}); "
        "baseline: none lost, no sweep (the event path alone)"
    )
    print(
        f"  rerun exactly once: {swept['rerun once']} of {swept['failures']}; never rerun (lost): "
        f"{swept['never rerun']}; rerun twice or more (double): {swept['rerun twice or more']} "
        f"(baseline: {baseline['rerun once']} once, {baseline['never rerun']} lost, {baseline['rerun twice or more']} double)"
    )
    if waits:
        print(
            f"  failure to decision, the {len(waits)} missed: min {waits[0]:.0f} s, median "
            f"{statistics.median(waits):.0f} s, max {waits[-1]:.0f} s; target interval + grace = {target} s: "
            f"{'met' if waits[-1] <= target + STEP else 'NOT met'} (max / target {waits[-1] / target:.2f})"
        )
    print(
        f"  sweeps: {swept['sweeps']} ({swept['partial sweeps']} partial); per sweep "
        f"{swept['listing calls per sweep']:.2f} ListTaskInstances calls and {swept['fc claims per sweep']:.2f} FC claims"
    )
    per_day = swept["sweep listing calls"] * 86400 / (86400 + LOOKBACK)  # the simulation runs past the day
    print(
        f"  DataWorks calls: with the sweep and {swept['lost']} lost {swept['dataworks calls']:,}, events only "
        f"{baseline['dataworks calls']:,} (ratio {swept['dataworks calls'] / max(1, baseline['dataworks calls']):.3f}); "
        f"the sweep's listing about {per_day:.0f} a day"
    )
    print(f"    by action: {swept['dataworks calls by action']}")
    for edition, limit in DAILY_LIMITS.items():
        listing = per_day / limit
        everything = swept["dataworks calls"] / limit
        print(
            f"  {edition}: {limit:,} calls a day; the sweep's listing alone {listing:.0%} of it, this day's calls "
            f"{everything:.0%}: {'fits' if everything <= 1 else 'does NOT fit'}"
        )


if __name__ == "__main__":
    sys.exit(main())
