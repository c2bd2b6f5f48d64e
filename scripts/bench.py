#!/usr/bin/env python3
"""Benchmarks of the rerun function on the local cloud: `make bench`.

Everything runs against the DataWorks emulator on loopback (real HTTP, real ACS3 signatures).
Each figure is measured alternately with its comparison in the same run (A B A B ..., the order
rotated every round) and reported as the median of the rounds. A ratio is the median over rounds
of ours / comparison within the round (paired, so drift on a shared machine cancels); the JSON
also keeps the ratio of the medians.

Figures:
- cold start: a fresh process (the venv's python) that handles one failure event end to end:
  import index, build the client, GetTaskInstance, RerunTaskInstances, write the records.
  FLOOR = a fresh process that imports tea-openapi + credentials and makes the same two calls
  with the generic client, nothing else; PEER = the same with the official DataWorks SDK.
  Timed from the parent (spawn to exit); "in-process" excludes the interpreter's own start. The
  limiter is set out of the way (its spacing is a wait, not a cost); ours also asks GetTask (does
  DataWorks rerun the node itself?), which the floor does not.
- health: GET /health (index.handle_http) in a cold process, against `python -c pass` and
  `python -c "import json"`; also whether the health check loaded the SDK (it must not).
- burst: `--events` failure events (distinct instances and event ids) through the EventBridge
  publisher into the event function's asynchronous queue, run as FC 3.0 runs a standard runtime
  (localcloud.fc.function): one invocation per instance, each instance its own process, at most
  reservedConcurrency of them, FC's retries; no instance exists when the clock starts, so cold
  starts are included. The function's settings are template.yml's (reservedConcurrency,
  DATAWORKS_READ_QPS / DATAWORKS_WRITE_QPS per instance, timeout, memory, retries), except
  RERUN_BACKOFF_BASE_SECONDS=0: immediate reruns. The emulator adds 25 ms to every call and
  enforces Enterprise's 50 reads/s and 20 writes/s. The quota-bound minimum is
  max(reads / 50, writes / 20) seconds for the calls made. LOST = an instance not rerun,
  DOUBLE = one rerun twice (RunNumber past 2, or named by two rerun calls DataWorks took).
  NAIVE PEER = per event one GetTaskInstance and one RerunTaskInstances with the official SDK,
  no limiter, 20 threads.
- burst with a neighbour: the same burst while another client of the account uses 60% of both
  quotas all the time (the emulator's `neighbour`), so 20 reads/s and 8 writes/s are left.
- memory and CPU: peak RSS (ru_maxrss) of each instance process, and the CPU time (user + sys)
  of all instance processes over the burst, cold starts included; "harness alone" is the same
  burst on the same model with a do-nothing handler. "handler alone" calls index.handle_event
  in a loop on one thread (thread CPU time, so network waits cost nothing); its "SDK floor"
  makes the same two calls with the generic client; a cProfile run says where the CPU goes.
- manual rerun: one POST /rerun with 100 ids through the local HTTP gateway to the HTTP
  function (the process model, template.yml's settings), against the share-bound minimum (ids /
  DATAWORKS_READ_QPS: the reads one HTTP instance may make) and the unpaced serial floor: 100
  GetTaskInstance calls then one RerunTaskInstances, one after another, with the generic client.

- failure rules: the cost of reading the failed run's log and matching the rules. The handler
  alone (one thread, thread CPU time) alternates, event by event, a failure whose log is read (a
  realistic ODPS SQL log of ~140 KB, so a full 64 KiB tail is scanned, that no rule matches: every
  pattern is tried) with a failure handled with RERUN_READ_LOGS=false; then the matching alone on
  that log; what checking and compiling the shipped rules costs a cold instance. Also the
  DataWorks calls each failure event made (target: at most 3).
- schedule (scripts/bench_schedule.py): 500 failures at once on template.yml's default schedule,
  FC's ManualClock moved a second at a time: the spread of the due times (a histogram), the peak
  rerun rate reaching DataWorks against the write quota, against the same failures rerun at once.

The cold-start, health, profile and manual figures measure the rerun engine against floors that
make the same two calls, so they run with RERUN_READ_LOGS=false; the failure-rules figure adds the
log read's cost on top, measured in the same run. The bursts and the schedule benchmark run as
template.yml deploys the function: the failed run's log is read (RERUN_READ_LOGS=true).

Progress goes to stderr, one line per benchmark and every few seconds within a long one.
Results: a table on stdout and bench-results/latest.json (or --out). No test asserts timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_schedule import BUSY_SHARE, bench_schedule, histogram_lines  # noqa: E402
from localcloud.acs3 import Credentials  # noqa: E402
from localcloud.dataworks import DataWorksEmulator  # noqa: E402

PYTHON = sys.executable
COLD_CHILD = str(HERE / "bench_coldstart_child.py")
BURST_CHILD = str(HERE / "bench_burst_child.py")
OUT = ROOT / "bench-results" / "latest.json"
# Local-only credentials: the emulator accepts these and nothing else.
CREDENTIALS = Credentials("LTAIbenchkeyid000001", "bench-secret-local-only", "bench-sts-token-local-only")
REGION = "cn-hangzhou"

TEMPLATE = ROOT / "template.yml"
LATENCY = 0.025  # seconds the emulator adds to every call in the burst and manual figures
READ_QUOTA, WRITE_QUOTA = 50, 20  # DataWorks Enterprise, per account and region (FACTS §2)
NEIGHBOUR = 0.6  # the share of both quotas another client uses in the second burst
NAIVE_CONCURRENCY = 20  # the naive peer's threads
TAIL_CHARS = 64 * 1024  # dwrerun.rules.TAIL_CHARS: the part of a log the rules scan
FAILURE_RULES_SHARE = 0.5  # the bench's choice: matching stays under half of an event's CPU
MAX_CALLS_PER_FAILURE = 3
SETTLE = 1.1  # seconds between measurements so the quota's one-second window starts empty
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

# Targets (the task's, except where marked as the bench's own choice in the table).
COLD_START_RATIO = 1.10
BURST_RATIO = 1.3
CPU_MS_PER_EVENT = 1.0
RSS_SHARE = 0.75  # "fits with room to spare": a quarter of the function's memory left over
MANUAL_RATIO = 1.1  # the bench's choice: within 10% of what the HTTP instance's read share allows

_instance_ids = itertools.count(5_000_000_000_000)


BENCHMARKS = ("cold_start", "health", "burst", "neighbour", "memory_cpu", "manual_rerun", "failure_rules", "schedule")


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
            progress(f"[{number}/{len(run)}] {DESCRIPTIONS[name]}", started)
            t0 = time.perf_counter()
            if name == "cold_start":
                figures[name] = bench_cold_start(emulator, defaults, args.rounds, started)
            elif name == "health":
                figures[name] = bench_health(emulator, defaults, args.rounds, started)
            elif name == "burst":
                figures[name] = bench_burst(emulator, defaults, args.events, args.burst_rounds)
            elif name == "neighbour":
                figures[name] = bench_burst_neighbour(emulator, defaults, args.events)
            elif name == "memory_cpu":
                figures[name] = bench_memory_cpu(emulator, defaults, figures["burst"], args.events, args.quick)
            elif name == "manual_rerun":
                ids = 10 if args.quick else 100
                figures[name] = bench_manual_rerun(emulator, defaults, args.manual_rounds, ids, started)
            elif name == "failure_rules":
                figures[name] = bench_failure_rules(emulator, defaults, 10 if args.quick else 100)
            elif name == "schedule":
                figures[name] = bench_schedule(
                    emulator,
                    defaults,
                    args.failures,
                    credentials=CREDENTIALS,
                    region=REGION,
                    seed=seed,
                    journal_figures=journal_figures,
                    progress=lambda message: progress(message, started),
                    speed=args.schedule_speed,
                )
            progress(f"[{number}/{len(run)}] {name} done in {time.perf_counter() - t0:.0f} s", started)
    rows = table_rows(figures, defaults)
    print()
    print_table(rows)
    if "schedule" in figures:
        plan = figures["schedule"]
        print(
            f"\nScheduled reruns of {plan['failures']} failures at once, due this many seconds after the failure "
            f"(RERUN_BACKOFF_BASE_SECONDS={plan['backoff_base_s']}):"
        )
        for line in histogram_lines(plan["scheduled"]["histogram"]):
            print(f"  {line}")
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
            "neighbour_share": NEIGHBOUR,
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


DESCRIPTIONS = {
    "cold_start": "cold start: fresh processes handling one failure event (ours, floor, official SDK)",
    "health": "GET /health in a cold process",
    "burst": "burst: failure events through EventBridge into the event function's queue (and the naive peer)",
    "neighbour": f"burst again, with a neighbour using {NEIGHBOUR:.0%} of both quotas",
    "memory_cpu": "memory and CPU: the model with a do-nothing handler, then the handler profiled",
    "manual_rerun": "manual rerun: POST /rerun to the HTTP function vs the serial floor",
    "failure_rules": "failure rules: a failure event with its log read and matched vs without",
    "schedule": "schedule: failures at once on the default schedule (FC's clock moved by the bench), then rerun at once",
}


def progress(message: str, since: float) -> None:
    """One line on stderr: `make bench` says what it is doing while it runs."""
    print(f"bench {time.perf_counter() - since:6.0f}s  {message}", file=sys.stderr, flush=True)


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


# --- the benchmarks ------------------------------------------------------------------------------


def bench_cold_start(emulator, defaults: dict, rounds: int, since: float) -> dict:
    """Fresh processes handling one failure event: ours vs the generic-client floor vs the official SDK."""
    emulator.faults.clear()
    emulator.quota(None, None)
    # The limiter's spacing is a deliberate wait, not a cost (at the template's 4.5 reads/s, the
    # GetTask read after GetTaskInstance would wait 222 ms): a cold start is measured without it.
    env = {**fc_environment(emulator, defaults["event"]), "DATAWORKS_READ_QPS": "1000", "DATAWORKS_WRITE_QPS": "1000"}
    samples: dict[str, list[dict]] = {"ours": [], "floor": [], "peer": []}
    said = time.perf_counter()
    for round_number in range(rounds + 1):  # round 0 warms the page cache and is not kept
        for variant in rotated(list(samples), round_number):
            instance_id = seed(emulator, 1)[0]
            wall, child = run_cold(env, variant, str(instance_id))
            rerun_once = child["rerun"] and emulator.backend.instance(instance_id).run_number == 2
            if not rerun_once:
                raise RuntimeError(f"cold start {variant}: instance {instance_id} was not rerun exactly once")
            if round_number:
                samples[variant].append({"wall_s": wall, "in_process_s": child["in_process_s"]})
        if time.perf_counter() - said >= 10:
            progress(f"  cold start: round {round_number}/{rounds}", since)
            said = time.perf_counter()
    result = {name: summarize(values) for name, values in samples.items()}
    result["ratio_ours_floor"] = paired_ratio(samples["ours"], samples["floor"], "wall_s")
    result["ratio_peer_floor"] = paired_ratio(samples["peer"], samples["floor"], "wall_s")
    result["ratio_ours_floor_in_process"] = paired_ratio(samples["ours"], samples["floor"], "in_process_s")
    result["ratio_of_medians_ours_floor"] = ratio(result["ours"]["wall_s"], result["floor"]["wall_s"])
    result["rounds"] = rounds
    return result


def bench_health(emulator, defaults: dict, rounds: int, since: float) -> dict:
    """GET /health in a cold process vs a bare interpreter start."""
    env = fc_environment(emulator, defaults["http"])
    commands = {
        "ours": [PYTHON, COLD_CHILD, "health"],
        "python_pass": [PYTHON, "-c", "pass"],
        "python_import_json": [PYTHON, "-c", "import json"],
    }
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    sdk_loaded = False
    for round_number in range(rounds + 1):  # round 0 is a warm-up
        for variant in rotated(list(commands), round_number):
            started = time.perf_counter()
            done = subprocess.run(commands[variant], env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - started
            if variant == "ours":
                child = bench_line(done.stdout)
                if child["status"] != 200:
                    raise RuntimeError(f"GET /health answered {child['status']}")
                sdk_loaded = sdk_loaded or child["sdk_loaded"]
            if round_number:
                samples[variant].append({"wall_s": wall})
    result = {name: summarize(values) for name, values in samples.items()}
    result["ratio_ours_pass"] = paired_ratio(samples["ours"], samples["python_pass"], "wall_s")
    result["ratio_ours_import_json"] = paired_ratio(samples["ours"], samples["python_import_json"], "wall_s")
    result["sdk_loaded"] = sdk_loaded
    result["rounds"] = rounds
    return result


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


def bench_burst_neighbour(emulator, defaults: dict, events: int) -> dict:
    """The same burst while a neighbour uses NEIGHBOUR of both quotas all the time."""
    emulator.faults.set("*", latency=LATENCY)
    emulator.quota(read_qps=READ_QUOTA, write_qps=WRITE_QUOTA, neighbour=NEIGHBOUR)
    time.sleep(SETTLE)
    ids = seed(emulator, events)
    child = run_burst_child("burst", burst_settings(emulator, defaults["event"], ids, "burst with neighbour"))
    # What the neighbour leaves this account's function (the emulator's arithmetic, faults.Quota).
    reads_left = max(1, READ_QUOTA - round(READ_QUOTA * NEIGHBOUR))
    writes_left = max(1, WRITE_QUOTA - round(WRITE_QUOTA * NEIGHBOUR))
    ours = {**child, **journal_figures(emulator, child["started_epoch"], ids)}
    ours.update(write_timeline(emulator, child["started_epoch"], defaults["event"]["reserved_concurrency"]))
    ours.pop("started_epoch")
    result = {"events": events, "neighbour_share": NEIGHBOUR, "reads_left": reads_left, "writes_left": writes_left}
    result["ours"] = ours
    bounds(result, defaults["event"], reads_left, writes_left)
    emulator.quota(read_qps=READ_QUOTA, write_qps=WRITE_QUOTA)
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


def bench_memory_cpu(emulator, defaults: dict, burst: dict, events: int, quick: bool) -> dict:
    """The burst's instances' memory and CPU, the model's own share of them, and where the handler's
    CPU goes."""
    emulator.faults.set("*", latency=LATENCY)
    emulator.quota(read_qps=READ_QUOTA, write_qps=WRITE_QUOTA)
    harness = run_burst_child("harness", burst_settings(emulator, defaults["event"], seed(emulator, events), "harness"))
    # The profile keeps the latency: a call's CPU cost grows when the CPU idles between calls
    # (measured here: about 2 ms per event with no latency, 4 ms with 25 ms), and real calls wait.
    count = min(events, 10 if quick else 100)
    warm_ids = seed(emulator, 2)
    env = {**fc_environment(emulator, defaults["event"]), "DATAWORKS_READ_QPS": "1000", "DATAWORKS_WRITE_QPS": "1000"}
    profile = run_burst_child(
        "profile",
        {
            "env": {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")},
            "warm_id": warm_ids[0],
            "floor_warm_id": warm_ids[1],
            "first_id": seed(emulator, 3 * count)[0],
            "count": count,
        },
    )
    ours = burst["ours"]
    keys = ("peak_rss_mib", "peak_rss_mib_per_instance", "cpu_ms_per_event", "instances_started", "invocations")
    return {
        "peak_rss_mib": ours["peak_rss_mib"],
        "peak_rss_mib_per_instance": ours["peak_rss_mib_per_instance"],
        "memory_mib": defaults["event"]["memory"],
        "cpu_ms_per_event": ours["cpu_ms_per_event"],
        "dispatcher_cpu_ms_per_event": ours["dispatcher_cpu_ms_per_event"],
        "harness_alone": {key: harness[key] for key in keys},
        "handler_alone_cpu_ms_per_event": profile["direct_cpu_ms_per_event"],
        "sdk_floor_cpu_ms_per_event": profile["floor_cpu_ms_per_event"],
        "function_own_cpu_ms_per_event": profile["direct_cpu_ms_per_event"] - profile["floor_cpu_ms_per_event"],
        "profile": profile,
    }


def bench_manual_rerun(emulator, defaults: dict, rounds: int, id_count: int, since: float) -> dict:
    """One POST /rerun with `id_count` ids to the warm HTTP function (template.yml's settings) vs the
    share-bound minimum and the unpaced serial generic-client floor."""
    from localcloud.fc import Function
    from localcloud.gateway import HttpGateway

    http = defaults["http"]
    emulator.faults.set("*", latency=LATENCY)
    emulator.quota(read_qps=READ_QUOTA, write_qps=WRITE_QUOTA)
    logs = tempfile.mkdtemp(prefix="bench-logs-")
    function = Function(
        handler="index.handle_http",
        code_dir=str(ROOT / "function"),
        runtime=http["runtime"],
        timeout=http["timeout"],
        memory=http["memory"],
        function_name="dwrerun-http",
        region=REGION,
        env={
            "DATAWORKS_ENDPOINT": emulator.url,
            "DATAWORKS_READ_QPS": str(http["read_qps"]),
            "DATAWORKS_WRITE_QPS": str(http["write_qps"]),
            "RERUN_READ_LOGS": "false",  # the engine's figures: the failure-rules figure measures logs
        },
        credentials=CREDENTIALS,
        logstore=str(Path(logs) / "dwrerun-http.jsonl"),
        reserved_concurrency=http["reserved_concurrency"],
    )
    variants = {
        "ours": lambda ids: post_rerun(gateway.url, ids),
        "serial_floor": serial_floor(emulator),
    }
    samples: dict[str, list[dict]] = {name: [] for name in variants}
    with function, HttpGateway(function) as gateway:
        for run in variants.values():  # warm: the function imported, both clients' connections open
            run(seed(emulator, 1))
        for round_number in range(rounds):
            for variant in rotated(list(variants), round_number):
                time.sleep(SETTLE)
                ids = seed(emulator, id_count)
                started = time.perf_counter()
                variants[variant](ids)
                wall = time.perf_counter() - started
                if any(emulator.backend.instance(i).run_number != 2 for i in ids):
                    raise RuntimeError(f"manual rerun {variant}: not every instance was rerun exactly once")
                samples[variant].append({"wall_s": wall})
            progress(f"  manual rerun: round {round_number + 1}/{rounds}", since)
    shutil.rmtree(logs, ignore_errors=True)
    result = {name: summarize(values) for name, values in samples.items()}
    # One HTTP instance reads at most DATAWORKS_READ_QPS a second: the first read at once.
    result["share_bound_s"] = (id_count - 1) / http["read_qps"]
    result["ratio_ours_share_bound"] = ratio(result["ours"]["wall_s"], result["share_bound_s"])
    result["ratio_ours_serial_floor"] = paired_ratio(samples["ours"], samples["serial_floor"], "wall_s")
    result["ratio_of_medians_ours_serial_floor"] = ratio(result["ours"]["wall_s"], result["serial_floor"]["wall_s"])
    result["ids"] = id_count
    result["rounds"] = rounds
    result["read_qps"] = http["read_qps"]
    return result


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


# --- what the benchmarks share -------------------------------------------------------------------


def seed(emulator, count: int, **fields) -> list[int]:
    """`count` fresh Failure instances (run 1, FailureAllowed, Prod), each never seen before."""
    ids = [next(_instance_ids) for _ in range(count)]
    for instance_id in ids:
        emulator.backend.add_instance(
            **fields,
            id=instance_id,
            task_id=700000004417,
            project_id=48213,
            status="Failure",
            run_number=1,
            rerun_mode="FailureAllowed",
            project_env="Prod",
            trigger_recurrence="Normal",
            task_name="ods_orders_di",
        )
    return ids


def fc_environment(emulator, function: dict) -> dict[str, str]:
    """What FC gives a process of the function (plus PATH/HOME), and nothing from this shell."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only where HOME is unset
        "LANG": "C.UTF-8",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": CREDENTIALS.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CREDENTIALS.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": CREDENTIALS.security_token,
        "FC_REGION": REGION,
        "FC_FUNCTION_NAME": "dwrerun-event",
        "FC_FUNCTION_MEMORY_SIZE": str(function["memory"]),
        "DATAWORKS_ENDPOINT": emulator.url,
        "DATAWORKS_READ_QPS": str(function["read_qps"]),
        "DATAWORKS_WRITE_QPS": str(function["write_qps"]),
        # The engine's figures compare with floors making the same two calls: no log read here
        # (bench_failure_rules measures it).
        "RERUN_READ_LOGS": "false",
        # These figures are of immediate reruns; the schedule benchmark measures scheduled ones.
        "RERUN_BACKOFF_BASE_SECONDS": "0",
    }


def run_cold(env: dict, *args: str) -> tuple[float, dict]:
    """(wall seconds from spawn to exit, the child's BENCH line) of one cold-start child."""
    started = time.perf_counter()
    done = subprocess.run([PYTHON, COLD_CHILD, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child {args[0]} failed:\n{done.stderr[-2000:]}")
    return wall, bench_line(done.stdout)


def run_burst_child(mode: str, settings: dict) -> dict:
    """Run a child of bench_burst_child.py; its stderr (progress) goes straight to ours."""
    done = subprocess.run([PYTHON, BURST_CHILD, mode, json.dumps(settings)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"burst child {mode} failed (its stderr is above):\n{done.stdout[-2000:]}")
    return bench_line(done.stdout)


def bench_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("BENCH ")]
    if not lines:
        raise RuntimeError(f"the child printed no BENCH line:\n{stdout[-2000:]}")
    return json.loads(lines[-1][len("BENCH ") :])


def journal_figures(emulator, since: float, ids: list[int]) -> dict:
    """What DataWorks saw from `since` on: calls per action, throttled answers, and per instance
    whether it was rerun exactly once: LOST (not rerun) or DOUBLE (RunNumber past 2, or named by
    more than one rerun call that reached DataWorks)."""
    entries = [e for e in emulator.journal.entries() if e.time >= since]
    calls_per_id = dict.fromkeys(ids, 0)
    for entry in entries:
        if entry.action == "RerunTaskInstances" and entry.accepted:
            for instance_id in json.loads(entry.params["Ids"]):
                if instance_id in calls_per_id:
                    calls_per_id[instance_id] += 1
    run_numbers = {i: emulator.backend.instance(i).run_number for i in ids}
    lost = [i for i in ids if run_numbers[i] == 1]
    double = [i for i in ids if run_numbers[i] > 2 or calls_per_id[i] > 1]
    return {
        # Reads are what DataWorks meters as reads (Get*, List*): GetTask's too.
        "reads": sum(1 for e in entries if e.action.startswith(("Get", "List")) and e.status == 200),
        "writes": sum(1 for e in entries if e.action == "RerunTaskInstances" and e.status == 200),
        "calls_per_action": tally(f"{e.action} {e.status} {e.code or 'OK'}" for e in entries),
        "throttled": sum(1 for e in entries if (e.code or "").startswith("Throttling")),
        "instances_rerun": sum(1 for n in run_numbers.values() if n >= 2),
        "lost": len(lost),
        "double": len(double),
        "all_rerun_exactly_once": not lost and not double,
    }


def serial_floor(emulator):
    """ids -> 100 GetTaskInstance calls, then one RerunTaskInstances: one after another, nothing else."""
    from bench_coldstart_child import bare_call

    call = bare_call(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": CREDENTIALS.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CREDENTIALS.access_key_secret,
            "ALIBABA_CLOUD_SECURITY_TOKEN": CREDENTIALS.security_token,
            "DATAWORKS_ENDPOINT": emulator.url,
            "FC_REGION": REGION,
        }
    )

    def run(ids: list[int]) -> None:
        for instance_id in ids:
            call("GetTaskInstance", "GET", query={"Id": str(instance_id)})
        call("RerunTaskInstances", "POST", body={"Ids": json.dumps(ids), "Comment": "bench serial floor"})

    return run


def post_rerun(url: str, ids: list[int]) -> None:
    body = json.dumps({"Ids": ids, "Comment": "bench manual rerun"}).encode()
    request = urllib.request.Request(
        f"{url}/rerun", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        answer = json.loads(response.read())
    failed = [i for i in ids if not answer["SuccessInfo"].get(str(i), {}).get("Success")]
    if failed:
        raise RuntimeError(f"manual rerun: {len(failed)} ids not rerun, e.g. {answer['Skipped']}")


def rotated(items: list, by: int) -> list:
    """A B C, then B C A, then C A B...: no variant always goes first."""
    by %= len(items)
    return items[by:] + items[:by]


def summarize(samples: list[dict]) -> dict:
    """Each measured quantity's median, plus the raw samples."""
    return {
        **{key: median(s[key] for s in samples) for key in samples[0]},
        "samples": samples,
    }


def median(values) -> float:
    return statistics.median(list(values))


def paired_ratio(ours: list[dict], theirs: list[dict], key: str) -> float:
    """The median over rounds of ours / theirs measured in the same round.

    Pairing by round cancels what drifts on a shared machine (another job starting, the CPU's
    clock): the two in a pair ran seconds apart, the rounds minutes apart.
    """
    return median(ratio(a[key], b[key]) for a, b in zip(ours, theirs, strict=True))


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def tally(keys) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


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


# --- the table -----------------------------------------------------------------------------------


def table_rows(figures: dict, defaults: dict) -> list[dict]:
    """The printed table: one row per figure, for the benchmarks that ran."""
    rows: list[dict] = []

    def row(figure, measured, comparison, ratio_value, target, met):
        rows.append(
            {
                "figure": figure,
                "ours": measured,
                "comparison": comparison,
                "ratio": None if ratio_value is None else round(ratio_value, 3),
                "target": target,
                "met": met,
            }
        )

    event = defaults["event"]
    if "cold_start" in figures:
        cold = figures["cold_start"]
        row(
            f"Cold start, one failure event (process, median of {cold['rounds']})",
            seconds(cold["ours"]["wall_s"]),
            f"floor {seconds(cold['floor']['wall_s'])}",
            cold["ratio_ours_floor"],
            f"<= {COLD_START_RATIO}",
            cold["ratio_ours_floor"] <= COLD_START_RATIO,
        )
        row(
            "Cold start, official SDK peer (process)",
            f"peer {seconds(cold['peer']['wall_s'])}",
            f"floor {seconds(cold['floor']['wall_s'])}",
            cold["ratio_peer_floor"],
            "-",
            None,
        )
        row(
            "Cold start, in-process part (after interpreter start)",
            seconds(cold["ours"]["in_process_s"]),
            f"floor {seconds(cold['floor']['in_process_s'])}",
            cold["ratio_ours_floor_in_process"],
            "-",
            None,
        )
    if "health" in figures:
        health = figures["health"]
        row(
            f"GET /health, cold process (median of {health['rounds']})",
            seconds(health["ours"]["wall_s"]),
            f"python -c pass {seconds(health['python_pass']['wall_s'])}",
            health["ratio_ours_pass"],
            "-",
            None,
        )
        row(
            "GET /health, cold process",
            seconds(health["ours"]["wall_s"]),
            f"python -c 'import json' {seconds(health['python_import_json']['wall_s'])}",
            health["ratio_ours_import_json"],
            "-",
            None,
        )
        row(
            "GET /health loads the SDK",
            "yes" if health["sdk_loaded"] else "no",
            "",
            None,
            "no",
            not health["sdk_loaded"],
        )
    if "burst" in figures:
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
    if "neighbour" in figures:
        near = figures["neighbour"]
        ours, n = near["ours"], near["events"]
        share = f"{near['neighbour_share']:.0%}"
        row(
            f"Burst with a neighbour using {share} of both quotas, wall",
            seconds(ours["wall_s"]),
            f"quota-bound min {seconds(near['quota_bound_s'])} ({near['writes_left']} writes/s left)",
            near["ratio_ours_quota_bound"],
            "-",
            None,
        )
        row(
            "Burst with the neighbour, throttled answers",
            str(ours["throttled"]),
            f"of {sum(ours['calls_per_action'].values())} calls",
            None,
            "-",
            None,
        )
        row(
            "Burst with the neighbour, rerun exactly once (lost / double)",
            f"{n - ours['lost'] - ours['double']}/{n} ({ours['lost']} / {ours['double']})",
            f"FC retries {ours['fc_retries']}",
            None,
            f"{n}/{n} (0 / 0)",
            ours["all_rerun_exactly_once"],
        )
    if "memory_cpu" in figures:
        memory = figures["memory_cpu"]
        limit = memory["memory_mib"] * RSS_SHARE
        row(
            f"Peak memory per instance (highest of {len(memory['peak_rss_mib_per_instance'])})",
            f"{memory['peak_rss_mib']:.1f} MiB",
            f"harness alone {memory['harness_alone']['peak_rss_mib']:.1f} MiB",
            None,
            f"<= {limit:.0f} MiB ({RSS_SHARE:.0%} of {memory['memory_mib']})",
            memory["peak_rss_mib"] <= limit,
        )
        row(
            "CPU per event in the burst (instances, cold starts included)",
            f"{memory['cpu_ms_per_event']:.2f} ms",
            f"harness alone {memory['harness_alone']['cpu_ms_per_event']:.2f} ms",
            None,
            f"<= {CPU_MS_PER_EVENT} ms",
            memory["cpu_ms_per_event"] <= CPU_MS_PER_EVENT,
        )
        row(
            "CPU per event, handler alone (one thread, SDK included)",
            f"{memory['handler_alone_cpu_ms_per_event']:.2f} ms",
            f"SDK floor {memory['sdk_floor_cpu_ms_per_event']:.2f} ms",
            ratio(memory["handler_alone_cpu_ms_per_event"], memory["sdk_floor_cpu_ms_per_event"]),
            f"<= {CPU_MS_PER_EVENT} ms",
            memory["handler_alone_cpu_ms_per_event"] <= CPU_MS_PER_EVENT,
        )
        row(
            "CPU per event, the function's own (handler - SDK floor)",
            f"{memory['function_own_cpu_ms_per_event']:.2f} ms",
            "",
            None,
            f"<= {CPU_MS_PER_EVENT} ms",
            memory["function_own_cpu_ms_per_event"] <= CPU_MS_PER_EVENT,
        )
    if "manual_rerun" in figures:
        manual = figures["manual_rerun"]
        row(
            f"Manual rerun, {manual['ids']} ids over HTTP (median of {manual['rounds']})",
            seconds(manual["ours"]["wall_s"]),
            f"{manual['read_qps']:g} reads/s share: {seconds(manual['share_bound_s'])}",
            manual["ratio_ours_share_bound"],
            f"<= {MANUAL_RATIO} (bench's choice)",
            manual["ratio_ours_share_bound"] <= MANUAL_RATIO,
        )
        row(
            "Manual rerun vs an unpaced serial loop",
            seconds(manual["ours"]["wall_s"]),
            f"serial floor {seconds(manual['serial_floor']['wall_s'])}",
            manual["ratio_ours_serial_floor"],
            "-",
            None,
        )
    if "failure_rules" in figures:
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
    if "schedule" in figures:
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
    return rows


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


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
