#!/usr/bin/env python3
"""Benchmarks of the rerun function on the local cloud: `make bench` (this file, then by_filter.py).

Everything runs against the DataWorks emulator on loopback (real HTTP, real ACS3 signatures).
Each figure is measured alternately with its comparison in the same run (A B A B ..., the order
rotated every round) and reported as the median of the rounds. A ratio is the median over rounds
of ours / comparison within the round (paired, so drift on a shared machine cancels); the JSON
also keeps the ratio of the medians.

One module per benchmark, each with what it measures, its targets and its rows of the table
(`run()`, `table_rows()`), in the order they run: cold_start.py, health.py, burst.py,
neighbour.py, memory_cpu.py, manual_rerun.py, failure_rules.py, schedule.py. What they share is
in common.py; the processes they measure are coldstart_child.py and burst_child.py.

The cold-start, health, profile and manual figures measure the rerun engine against floors that
make the same two calls, so they run with RERUN_READ_LOGS=false; the failure-rules figure adds the
log read's cost on top, measured in the same run. The bursts and the schedule benchmark run as
template.yml deploys the function: the failed run's log is read (RERUN_READ_LOGS=true).

Progress goes to stderr, one line per benchmark and every few seconds within a long one.
Results: a table on stdout and bench-results/latest.json (or --out). No test asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import burst
import cold_start
import failure_rules
import health
import manual_rerun
import memory_cpu
import neighbour
import schedule
from common import CREDENTIALS, LATENCY, READ_QUOTA, ROOT, WRITE_QUOTA, Table, progress

from localcloud.dataworks import DataWorksEmulator

OUT = ROOT / "bench-results" / "latest.json"
TEMPLATE = ROOT / "template.yml"
PACKAGES = (
    "alibabacloud-tea-openapi",
    "alibabacloud-credentials",
    "darabonba-core",
    "alibabacloud-tea",
    "requests",
    "urllib3",
    "aiohttp",
    "alibabacloud-dataworks-public20240518",
)

# name -> its module, in the order they run (and their rows appear).
BENCHMARKS = {
    module.NAME: module
    for module in (cold_start, health, burst, neighbour, memory_cpu, manual_rerun, failure_rules, schedule)
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of the rerun function on the local cloud.")
    parser.add_argument("--events", type=int, default=1000, help="failure events in each burst (default 1000)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds of the cold-start figures (15)")
    parser.add_argument("--manual-rounds", type=int, default=3, help="alternating rounds of the manual rerun (3)")
    parser.add_argument("--burst-rounds", type=int, default=1, help="alternating rounds of the burst (default 1)")
    parser.add_argument(
        "--failures", type=int, default=500, help="failures at once in the schedule benchmark (default 500)"
    )
    parser.add_argument(
        "--schedule-speed",
        type=float,
        default=1.0,
        help="seconds of FC's clock per real second while scheduled reruns come due (default 1: real rates)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        help="run the event function on at most this many instances instead of template.yml's reservedConcurrency",
    )
    parser.add_argument("--quick", action="store_true", help="10 ids in the manual rerun, a smaller profile")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default all: {','.join(BENCHMARKS)})",
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the JSON goes (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.schedule_speed < 1:
        parser.error("--schedule-speed must be at least 1")
    if args.instances is not None and args.instances < 1:
        parser.error("--instances must be at least 1")
    if min(args.events, args.failures, args.rounds, args.manual_rounds, args.burst_rounds) < 1:
        parser.error("--events, --failures, --rounds, --manual-rounds and --burst-rounds must be at least 1")
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown or not chosen:
        parser.error(f"--only takes names from {', '.join(BENCHMARKS)}; not {', '.join(unknown) or 'nothing'}")
    if "memory_cpu" in chosen and "burst" not in chosen:
        parser.error("memory_cpu reads the burst's instances: add burst to --only")

    started = time.perf_counter()
    machine = describe_machine()
    defaults = template_defaults()
    if args.instances is not None:
        defaults["event"]["reserved_concurrency"] = args.instances
    load = ", ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
    print(
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, Python {machine['python']}, "
        f"load average {load} at the start",
        flush=True,
    )
    run = [name for name in BENCHMARKS if name in chosen]
    figures: dict[str, dict] = {}
    with DataWorksEmulator(credentials=[CREDENTIALS]) as emulator:
        for number, name in enumerate(run, 1):
            progress(f"[{number}/{len(run)}] {BENCHMARKS[name].DESCRIPTION}", started)
            t0 = time.perf_counter()
            figures[name] = BENCHMARKS[name].run(emulator, defaults, args, figures, started)
            progress(f"[{number}/{len(run)}] {name} done in {time.perf_counter() - t0:.0f} s", started)
    rows = table_rows(figures, defaults)
    print()
    print_table(rows)
    if "schedule" in figures:
        schedule.print_histogram(figures["schedule"])
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine,
        "settings": {
            "events": args.events,
            "rounds": args.rounds,
            "manual_rounds": args.manual_rounds,
            "burst_rounds": args.burst_rounds,
            "quick": args.quick,
            "instances": args.instances,
            "schedule_speed": args.schedule_speed,
            "benchmarks": run,
            "failures": args.failures,
            "emulator_latency_s": LATENCY,
            "read_quota": READ_QUOTA,
            "write_quota": WRITE_QUOTA,
            "neighbour_share": neighbour.NEIGHBOUR,
            "template": defaults,
        },
        "figures": figures,
        "table": rows,
    }
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    end_load = ", ".join(f"{x:.2f}" for x in results["machine"]["load_average_at_end"])
    print(f"\nLoad average {end_load} at the end; took {results['duration_s']:.0f} s.")
    shown = args.out.resolve()
    print(f"Figures written to {shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else args.out}")
    return 0


def template_defaults() -> dict:
    """What template.yml deploys, per function: reservedConcurrency, the per-instance QPS limits,
    timeout, memory, runtime, and the event function's async retries and backoff schedule."""
    import yaml

    spec = yaml.safe_load(TEMPLATE.read_text())
    variables = spec["vars"]

    def value(raw):
        whole = re.fullmatch(r"\$\{vars\.(\w+)\}", raw) if isinstance(raw, str) else None
        return variables[whole.group(1)] if whole else raw

    settings = {}
    for name in ("event", "http"):
        props = spec["resources"][name]["props"]
        env = props["environmentVariables"]
        settings[name] = {
            "function_name": props["functionName"].replace("${vars.namePrefix}", variables["namePrefix"]),
            "reserved_concurrency": int(value(props["concurrencyConfig"]["reservedConcurrency"])),
            "instance_concurrency": int(value(props["instanceConcurrency"])),
            "read_qps": float(value(env["DATAWORKS_READ_QPS"])),
            "write_qps": float(value(env["DATAWORKS_WRITE_QPS"])),
            "timeout": int(value(props["timeout"])),
            "memory": int(value(props["memorySize"])),
            "runtime": str(value(props["runtime"])),
        }
    event = spec["resources"]["event"]["props"]
    settings["event"]["retries"] = int(value(event["asyncInvokeConfig"]["maxAsyncRetryAttempts"]))
    settings["event"]["backoff_base_s"] = int(value(event["environmentVariables"]["RERUN_BACKOFF_BASE_SECONDS"]))
    settings["event"]["backoff_max_s"] = int(value(event["environmentVariables"]["RERUN_BACKOFF_MAX_SECONDS"]))
    return settings


def describe_machine() -> dict:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_gib": round(memory, 1) if memory else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": versions,
    }


def table_rows(figures: dict, defaults: dict) -> list[dict]:
    """The printed table: one row per figure, for the benchmarks that ran."""
    table = Table()
    for name, module in BENCHMARKS.items():
        if name in figures:
            module.table_rows(figures, defaults, table.row)
    return table.rows


def print_table(rows: list[dict]) -> None:
    header = {"figure": "figure", "ours": "ours", "comparison": "comparison", "ratio": "ratio"}
    header.update(target="target", met="met?")
    cells = [header] + [
        {
            **row,
            "ratio": "" if row["ratio"] is None else f"{row['ratio']:.3f}",
            "met": {True: "yes", False: "NO", None: "-"}[row["met"]],
        }
        for row in rows
    ]
    widths = {key: max(len(str(c[key])) for c in cells) for key in header}
    for n, c in enumerate(cells):
        print("  ".join(str(c[key]).ljust(widths[key]) for key in header).rstrip())
        if n == 0:
            print("  ".join("-" * widths[key] for key in header))


if __name__ == "__main__":
    sys.exit(main())
