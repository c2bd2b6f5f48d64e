"""Burst: `--events` failure events through the EventBridge publisher into the event function's
asynchronous queue, run as FC 3.0 runs a standard runtime (localcloud.fc.function): one invocation
per instance, each instance its own process, at most reservedConcurrency of them, FC's retries; no
instance exists when the clock starts, so cold starts are included.

The function's settings are template.yml's (reservedConcurrency, DATAWORKS_READ_QPS /
DATAWORKS_WRITE_QPS per instance, timeout, memory, retries), except RERUN_BACKOFF_BASE_SECONDS=0:
immediate reruns. The emulator adds 25 ms to every call and enforces Enterprise's 50 reads/s and
20 writes/s. The quota-bound minimum is max(reads / 50, writes / 20) seconds for the calls made.
LOST = an instance not rerun, DOUBLE = one rerun twice (RunNumber past 2, or named by two rerun
calls DataWorks took). NAIVE PEER = per event one GetTaskInstance and one RerunTaskInstances with
the official SDK, no limiter, 20 threads. The processes: burst_child.py.
"""

from __future__ import annotations

import time

from common import (
    CREDENTIALS,
    LATENCY,
    READ_QUOTA,
    SETTLE,
    WRITE_QUOTA,
    journal_figures,
    median,
    ratio,
    rotated,
    run_burst_child,
    seconds,
    seed,
)

NAME = "burst"
DESCRIPTION = "burst: failure events through EventBridge into the event function's queue (and the naive peer)"
BURST_RATIO = 1.25  # issue 25: at most 1.25x the quota-bound minimum
NAIVE_CONCURRENCY = 20  # the naive peer's threads


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_burst(emulator, defaults, args.events, args.burst_rounds)


def bench_burst(emulator, defaults: dict, events: int, rounds: int) -> dict:
    """`events` failures through EventBridge into the event function's queue, on as many instance
    processes as template.yml's reservedConcurrency allows (ours), vs the naive official-SDK peer."""
    emulator.faults.set("*", latency=LATENCY)
    emulator.quota(read_qps=READ_QUOTA, write_qps=WRITE_QUOTA)
    runs: dict[str, list[dict]] = {"ours": [], "naive_peer": []}
    for round_number in range(rounds):
        for variant in rotated(list(runs), round_number):
            time.sleep(SETTLE)  # the last measurement's calls leave the quota's window
            ids = seed(emulator, events)
            if variant == "ours":
                child = run_burst_child("burst", burst_settings(emulator, defaults["event"], ids, "burst"))
            else:
                child = run_burst_child("naive", naive_settings(emulator, ids))
            figures = journal_figures(emulator, child["started_epoch"], ids)
            if variant == "ours":
                cap = defaults["event"]["reserved_concurrency"]
                figures.update(write_timeline(emulator, child["started_epoch"], cap))
            runs[variant].append({**child, **figures})
    ours, naive = runs["ours"], runs["naive_peer"]
    result = {
        "events": events,
        "rounds": rounds,
        "ours": {
            **{key: ours[-1][key] for key in ours[-1] if key not in ("wall_s", "started_epoch")},
            "wall_s": median(r["wall_s"] for r in ours),
            "wall_s_samples": [r["wall_s"] for r in ours],
            "throttled": sum(r["throttled"] for r in ours),
            "lost": sum(r["lost"] for r in ours),
            "double": sum(r["double"] for r in ours),
            "all_rerun_exactly_once": all(r["all_rerun_exactly_once"] for r in ours),
        },
        "naive_peer": {
            **{key: naive[-1][key] for key in naive[-1] if key not in ("wall_s", "started_epoch")},
            "wall_s": median(r["wall_s"] for r in naive),
            "wall_s_samples": [r["wall_s"] for r in naive],
        },
    }
    bounds(result, defaults["event"], READ_QUOTA, WRITE_QUOTA)
    return result


def write_timeline(emulator, since: float, instances: int) -> dict:
    """When the first rerun reached DataWorks (what the cold starts cost), and the rate after every
    instance made its first one (what the pacing gives)."""
    times = sorted(
        e.time - since
        for e in emulator.journal.entries()
        if e.time >= since and e.action == "RerunTaskInstances" and e.status == 200
    )
    if not times:
        return {"first_write_s": None, "steady_writes_per_s": None}
    warm = min(instances, len(times)) - 1  # by this write every instance has written once, roughly
    span = times[-1] - times[warm]
    return {
        "first_write_s": times[0],
        "steady_writes_per_s": (len(times) - 1 - warm) / span if span > 0 else None,
    }


def bounds(result: dict, event: dict, reads_per_s: float, writes_per_s: float) -> None:
    """The burst's quota-bound minimum (what the quota allows for the calls made) and its pacing
    bound (what the template's instances x per-instance rates allow), and wall time against both."""
    ours = result["ours"]
    result["quota_bound_s"] = max(ours["reads"] / reads_per_s, ours["writes"] / writes_per_s)
    instances = event["reserved_concurrency"]
    result["pacing_bound_s"] = max(
        ours["reads"] / (instances * event["read_qps"]), ours["writes"] / (instances * event["write_qps"])
    )
    result["ratio_ours_quota_bound"] = ratio(ours["wall_s"], result["quota_bound_s"])
    result["ratio_ours_pacing_bound"] = ratio(ours["wall_s"], result["pacing_bound_s"])


def burst_settings(emulator, event: dict, ids: list[int], label: str) -> dict:
    return {
        "url": emulator.url,
        "credentials": list(CREDENTIALS),
        "first_id": ids[0],
        "count": len(ids),
        "label": label,
        **{key: event[key] for key in ("reserved_concurrency", "read_qps", "write_qps", "timeout", "memory")},
        **{key: event[key] for key in ("runtime", "retries")},
    }


def naive_settings(emulator, ids: list[int]) -> dict:
    return {
        "url": emulator.url,
        "credentials": list(CREDENTIALS),
        "warm_id": seed(emulator, 1)[0],
        "first_id": ids[0],
        "count": len(ids),
        "concurrency": NAIVE_CONCURRENCY,
    }


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
    event = defaults["event"]
    burst = figures["burst"]
    ours, naive, n = burst["ours"], burst["naive_peer"], burst["events"]
    cap = event["reserved_concurrency"]
    row(
        f"Burst of {n} events, up to {cap} instances, cold starts included, wall",
        seconds(ours["wall_s"]),
        f"quota-bound min {seconds(burst['quota_bound_s'])}",
        burst["ratio_ours_quota_bound"],
        f"<= {BURST_RATIO}",
        burst["ratio_ours_quota_bound"] <= BURST_RATIO,
    )
    row(
        "Burst wall vs the template's pacing",
        seconds(ours["wall_s"]),
        f"{cap} x {event['write_qps']:g} writes/s: {seconds(burst['pacing_bound_s'])}",
        burst["ratio_ours_pacing_bound"],
        "-",
        None,
    )
    if ours.get("steady_writes_per_s"):
        pace = cap * event["write_qps"]
        row(
            "Burst, rerun rate once every instance is warm",
            f"{ours['steady_writes_per_s']:.2f} writes/s",
            f"{cap} x {event['write_qps']:g} = {pace:.1f} writes/s",
            ours["steady_writes_per_s"] / pace,
            "-",
            None,
        )
        row(
            f"Burst, until the first rerun ({ours['cold_starts']} cold starts at once)",
            seconds(ours["first_write_s"]),
            "",
            None,
            "-",
            None,
        )
    row(
        "Burst, throttled answers",
        str(ours["throttled"]),
        f"naive peer {naive['throttled']}",
        None,
        "0",
        ours["throttled"] == 0,
    )
    row(
        "Burst, instances started (cold starts)",
        f"{ours['instances_started']} ({ours['cold_starts']})",
        f"reservedConcurrency {cap}",
        None,
        f"<= {cap}",
        ours["instances_started"] <= cap,
    )
    row(
        "Burst, rerun exactly once (lost / double)",
        f"{n - ours['lost'] - ours['double']}/{n} ({ours['lost']} / {ours['double']})",
        f"naive peer {naive['instances_rerun']}/{n} rerun",
        None,
        f"{n}/{n} (0 / 0)",
        ours["all_rerun_exactly_once"],
    )
    row(
        "Burst, calls made (reads / RerunTaskInstances)",
        f"{ours['reads']} / {ours['writes']}",
        f"naive peer {naive['reads']} / {naive['writes']} answered",
        None,
        "-",
        None,
    )
    row(
        "Burst, records written (instance / summary)",
        f"{ours['instance_records']} / {ours['summary_records']}",
        f"FC retries {ours['fc_retries']}",
        None,
        f"{n} / {n}",
        ours["instance_records"] == n and ours["summary_records"] == n and ours["invocations_failed"] == 0,
    )
    row(
        "Burst wall, naive peer (no limiter)",
        seconds(ours["wall_s"]),
        f"naive peer {seconds(naive['wall_s'])}",
        ratio(ours["wall_s"], naive["wall_s"]),
        "-",
        None,
    )
