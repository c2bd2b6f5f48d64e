"""Failure rules: the cost of reading the failed run's log and matching the rules.

The handler alone (one thread, thread CPU time) alternates, event by event, a failure whose log is
read (a realistic ODPS SQL log of ~140 KB, so a full 64 KiB tail is scanned, that no rule
matches: every pattern is tried) with a failure handled with RERUN_READ_LOGS=false; then the
matching alone on that log; what checking and compiling the shipped rules costs a cold instance.
Also the DataWorks calls each failure event made (target: at most 3).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

from common import LATENCY, ROOT, fc_environment, ratio, run_burst_child, seed

NAME = "failure_rules"
DESCRIPTION = "failure rules: a failure event with its log read and matched vs without"
TAIL_CHARS = 64 * 1024  # dwrerun.rules.TAIL_CHARS: the part of a log the rules scan
FAILURE_RULES_SHARE = 0.5  # the bench's choice: matching stays under half of an event's CPU
MAX_CALLS_PER_FAILURE = 3


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_failure_rules(emulator, defaults, 10 if args.quick else 100)


def bench_failure_rules(emulator, defaults: dict, count: int) -> dict:
    """CPU per failure event with the log read and matched vs without, matching alone, calls per event."""
    emulator.faults.set("*", latency=LATENCY)
    emulator.quota(None, None)
    log = failure_log()
    warm = seed(emulator, 2, task_type="ODPS_SQL")
    with_log = seed(emulator, count, task_type="ODPS_SQL")
    without_log = seed(emulator, count, task_type="ODPS_SQL")
    for instance_id in warm + with_log + without_log:
        emulator.backend.set_log(instance_id, 1, log)
    env = {
        **fc_environment(emulator, defaults["event"]),
        "DATAWORKS_READ_QPS": "1000",
        "DATAWORKS_WRITE_QPS": "1000",
    }
    started = time.time()
    with tempfile.NamedTemporaryFile("w", suffix=".log", encoding="utf-8") as log_file:
        log_file.write(log)
        log_file.flush()
        child = run_burst_child(
            "classify",
            {
                "env": {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")},
                "warm_ids": warm,
                "with_log": with_log,
                "without_log": without_log,
                "log_file": log_file.name,
                "task_type": "ODPS_SQL",
            },
        )
    calls = calls_per_instance(emulator, started, with_log)
    if any(emulator.backend.instance(i).run_number != 2 for i in with_log + without_log):
        raise RuntimeError("failure rules: not every instance was rerun exactly once")
    return {
        **child,
        "log_chars": len(log),
        "tail_chars": min(len(log), TAIL_CHARS),
        "ratio_with_without_log": ratio(child["with_log_cpu_ms_per_event"], child["without_log_cpu_ms_per_event"]),
        "match_share_of_event": ratio(child["match_cpu_ms"], child["with_log_cpu_ms_per_event"]),
        "calls_per_failure_event": {"mean": statistics.mean(calls), "max": max(calls)},
        "events": count,
    }


def failure_log() -> str:
    """An ODPS SQL node's log of ~140 KB whose failure no rule knows: its 64 KiB tail is scanned whole."""
    lines = (ROOT / "tests" / "logs" / "odps_sql_unknown_with_noise.log").read_text(encoding="utf-8").splitlines()
    cut = next(n for n, line in enumerate(lines) if line.startswith("Job Queueing"))
    progress = [
        f"2024-11-28 04:{n // 60 % 60:02d}:{n % 60:02d} M1_job_0:{n % 1200}/{n % 37}/1200[{n * 100 // 1500}%]\t"
        f"J3_1_2_job_0:{n % 300}/0/300[{n % 100}%]\tR4_3_job_0:0/0/1[0%]"
        for n in range(1500)
    ]
    return "\n".join(lines[: cut + 1] + progress + lines[cut + 1 :]) + "\n"


def calls_per_instance(emulator, since: float, ids: list[int]) -> list[int]:
    """DataWorks calls that named each instance (by Id or in Ids) from `since` on."""
    counts = dict.fromkeys(ids, 0)
    for entry in emulator.journal.entries():
        if entry.time < since:
            continue
        named = json.loads(entry.params["Ids"]) if "Ids" in entry.params else [int(entry.params.get("Id", 0))]
        for instance_id in named:
            if instance_id in counts:
                counts[instance_id] += 1
    return list(counts.values())


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
    failure_rules = figures["failure_rules"]
    row(
        f"Failure event with its log read and matched ({failure_rules['log_chars'] // 1024} KiB log), CPU",
        f"{failure_rules['with_log_cpu_ms_per_event']:.2f} ms",
        f"without the log {failure_rules['without_log_cpu_ms_per_event']:.2f} ms",
        failure_rules["ratio_with_without_log"],
        "-",
        None,
    )
    row(
        f"Failure rules: matching a {failure_rules['tail_chars'] // 1024} KiB tail no rule knows, CPU",
        f"{failure_rules['match_cpu_ms']:.2f} ms",
        f"the whole event {failure_rules['with_log_cpu_ms_per_event']:.2f} ms",
        failure_rules["match_share_of_event"],
        f"< {FAILURE_RULES_SHARE} of the event (bench's choice)",
        failure_rules["match_share_of_event"] < FAILURE_RULES_SHARE,
    )
    row(
        "Failure rules: checking and compiling the shipped rules, once per instance (CPU)",
        f"{failure_rules['rules_load_cpu_ms']:.1f} ms",
        "",
        None,
        "-",
        None,
    )
    row(
        "Failure rules: DataWorks calls per failure event (log read included)",
        f"{failure_rules['calls_per_failure_event']['mean']:.1f} (max {failure_rules['calls_per_failure_event']['max']})",
        "",
        None,
        f"<= {MAX_CALLS_PER_FAILURE}",
        failure_rules["calls_per_failure_event"]["max"] <= MAX_CALLS_PER_FAILURE,
    )
