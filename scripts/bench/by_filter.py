#!/usr/bin/env python3
"""Benchmark: a bulk rerun of 2,000 failed instances selected by filter (issue 16). `make bench`.

The local cloud as FC runs the two functions: the DataWorks emulator on loopback metering
DataWorks Enterprise's quota (50 reads/s, 20 writes/s per account; 25 ms added to every call),
the FC OpenAPI stand-in (InvokeFunction), the event function as FC 3.0 runs it (a process per
instance, reservedConcurrency 9, the asynchronous queue) and the HTTP function (its own process,
reservedConcurrency 1), both with template.yml's settings: per instance 4.5 reads/s, and 1.95
writes/s (event) or 0.45 (HTTP), 50 ids per RerunTaskInstances, timeout 120 s.

Two scenarios, each over a fresh business date of `--instances` failures (default 2,000):
- ignore-rules: `IgnoreRules: true`: no log is read; the write path and the fan-out.
- rules: each failed run's log is read (GetTaskInstanceLog) and matched, as by default.

"ours" is one real rerun by filter (`POST /rerun` with the filter, no plan: the bench sets
RERUN_PLAN_REQUIRED_ABOVE above the selection), timed from the request until FC's queue is empty
and every instance has been rerun exactly once (checked in the emulator's journal).
"baseline", alternated with it in the same run: a bare client (the generic tea-openapi client,
not the function) making the fewest calls the same selection needs: ListTaskInstances pages, the
log reads in the rules scenario, RerunTaskInstances 50 ids a call, on 10 threads at 90% of the
quota (45 reads/s, 18 writes/s, what the template's sizing allows the whole deployment); no
guards, no records, no processes to start. Ratio = ours / baseline, per round, median.

Also: the write-quota minimum (ceil(instances / 50) calls at 20 writes/s), the quota-bound
minimum for the calls ours made (max(reads / 50, writes / 20)), and the calls per instance by
action. Round 0 warms the instances up (cold starts) and is not kept. Progress goes to stderr;
the table to stdout and bench-results/filter.json (or --out). No test asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # localcloud
sys.path.insert(0, str(ROOT / "function"))  # the baseline paces with the function's RateLimiter

from localcloud import openapi  # noqa: E402
from localcloud.acs3 import Credentials  # noqa: E402
from localcloud.dataworks import DataWorksEmulator  # noqa: E402
from localcloud.fc import Function, FunctionComputeApi  # noqa: E402

OUT = ROOT / "bench-results" / "filter.json"
CREDENTIALS = Credentials("LTAIbenchkeyid000002", "bench-filter-secret-local-only", "bench-filter-sts-local-only")
SIGNING_KEY = "bench-filter-signing-key-local-only-000000"
LATENCY = 0.025
READ_QUOTA, WRITE_QUOTA = 50, 20  # DataWorks Enterprise (FACTS section 2)
BASELINE_READ_QPS, BASELINE_WRITE_QPS = 45, 18  # 90% of the quota, as the template's sizing
BASELINE_THREADS = 10
CHUNK = 50
PROJECT_ID = 48213
FIRST_BIZDATE = 1_795_708_800_000  # 2026-11-27 00:00 +08:00
DAY_MS = 86_400_000
SETTLE = 1.1  # seconds between measurements: the quota's one-second window starts empty
TEMPLATE = {  # template.yml's defaults for what the bench measures, per function (docs/sizing.md)
    "event": {"DATAWORKS_READ_QPS": "4.5", "DATAWORKS_WRITE_QPS": "1.95", "RERUN_CHUNK_SIZE": str(CHUNK)},
    "http": {"DATAWORKS_READ_QPS": "4.5", "DATAWORKS_WRITE_QPS": "0.45", "RERUN_CHUNK_SIZE": str(CHUNK)},
}
SCENARIOS = ("ignore-rules", "rules")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark of a bulk rerun by filter on the local cloud.")
    parser.add_argument("--instances", type=int, default=2000, help="failed instances selected (default 2000)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per scenario (default 1)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes (default bench-results/filter.json)")
    args = parser.parse_args(argv)
    if min(args.instances, args.rounds) < 1:
        parser.error("--instances and --rounds must be at least 1")
    started = time.perf_counter()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as workdir, LocalCloud(Path(workdir)) as cloud:
        progress(f"warm-up: one bulk rerun of {args.instances} instances (cold starts, not kept)")
        cloud.ours(args.instances, ignore_rules=True)
        for scenario in args.scenarios:
            figures[scenario] = bench(cloud, scenario, args.instances, args.rounds)
    rows = table(figures, args.instances)
    print_table(rows)
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "settings": {
            "instances": args.instances,
            "rounds": args.rounds,
            "latency_s": LATENCY,
            "read_quota": READ_QUOTA,
            "write_quota": WRITE_QUOTA,
            "function": TEMPLATE,
            "baseline": {"read_qps": BASELINE_READ_QPS, "write_qps": BASELINE_WRITE_QPS, "threads": BASELINE_THREADS},
        },
        "figures": figures,
        "table": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nFigures written to {args.out}")
    return 0


def progress(message: str) -> None:
    print(f"[bench_filter] {message}", file=sys.stderr, flush=True)


class LocalCloud:
    """The emulator, the FC OpenAPI stand-in and both functions, started once for every round."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.emulator = DataWorksEmulator(credentials=[CREDENTIALS])
        self.api = FunctionComputeApi(credentials=[CREDENTIALS])
        self.bizdates = iter(range(FIRST_BIZDATE, FIRST_BIZDATE + 10_000 * DAY_MS, DAY_MS))
        self.next_id = 6_000_000_000_000

    def __enter__(self) -> LocalCloud:
        self.emulator.start()
        self.emulator.faults.set("*", latency=LATENCY)
        self.emulator.quota(READ_QUOTA, WRITE_QUOTA)
        self.api.start()
        env = {
            "DATAWORKS_ENDPOINT": self.emulator.url,
            "FUNCTION_COMPUTE_ENDPOINT": self.api.url,
            "RERUN_SIGNING_KEY": SIGNING_KEY,
            "RERUN_PLAN_REQUIRED_ABOVE": "1000000",
            "RERUN_BACKOFF_BASE_SECONDS": "0",
        }
        common = dict(code_dir=str(ROOT / "function"), runtime="python3.12", timeout=120, credentials=CREDENTIALS)
        self.event = Function(
            "index.handle_event",
            function_name="dwrerun-event",
            logstore=str(self.workdir / "event.jsonl"),
            reserved_concurrency=9,
            async_task=True,
            env={**env, **TEMPLATE["event"]},
            **common,
        )
        self.http = Function(
            "index.handle_http",
            function_name="dwrerun-http",
            logstore=str(self.workdir / "http.jsonl"),
            reserved_concurrency=1,
            env={**env, **TEMPLATE["http"]},
            **common,
        )
        self.api.register(self.event)
        return self

    def __exit__(self, *exc) -> None:
        self.event.close()
        self.http.close()
        self.api.stop()
        self.emulator.stop()

    def seed(self, count: int) -> tuple[int, list[int]]:
        """`count` failed instances of a business date no round used before."""
        bizdate = next(self.bizdates)
        ids = []
        for _ in range(count):
            instance_id, self.next_id = self.next_id, self.next_id + 1
            self.emulator.backend.add_instance(
                id=instance_id, task_id=instance_id - 5_000_000_000_000, project_id=PROJECT_ID, bizdate=bizdate,
                finished_time=bizdate + 26 * 3_600_000,
            )  # fmt: skip
            ids.append(instance_id)
        return bizdate, ids

    def ours(self, count: int, ignore_rules: bool) -> dict:
        """One bulk rerun by filter through the HTTP function; its wall time and calls."""
        bizdate, ids = self.seed(count)
        time.sleep(SETTLE)
        before = len(self.emulator.journal.entries())
        body = {"ProjectId": PROJECT_ID, "Bizdate": bizdate, "IgnoreRules": ignore_rules, "Comment": "bench"}
        event = {
            "version": "v1",
            "rawPath": "/rerun",
            "body": json.dumps(body),
            "isBase64Encoded": False,
            "headers": {"Content-Type": "application/json"},
            "queryParameters": {},
            "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
        }
        started = time.perf_counter()
        answer = self.http.invoke(json.dumps(event).encode())
        answered = time.perf_counter() - started
        self.event.drain(timeout=900)
        wall = time.perf_counter() - started
        result = answer.result or {}
        body = json.loads(result.get("body") or "{}")
        if result.get("statusCode") not in (200, 202):
            raise RuntimeError(
                f"the bulk rerun was refused: {result.get('statusCode')} {body.get('Code')}: {body.get('Message')}"
            )
        entries = self.emulator.journal.entries()[before:]
        check_rerun_once(entries, ids)
        calls = Counter(e.action for e in entries if e.accepted)
        return {
            "wall_s": wall,
            "answer_s": answered,
            "parts": 1 + body.get("Continuation", {}).get("Parts", 0),
            "calls": dict(calls),
            "throttled": sum(1 for e in entries if (e.code or "").startswith("Throttling")),
        }

    def baseline(self, count: int, read_logs: bool) -> dict:
        """The fewest calls the same selection needs, from a bare client at 90% of the quota."""
        from dwrerun.pacing import RateLimiter  # a fixed rate: nobody calls throttled() here

        bizdate, ids = self.seed(count)
        time.sleep(SETTLE)
        before = len(self.emulator.journal.entries())
        reads, writes = RateLimiter(BASELINE_READ_QPS), RateLimiter(BASELINE_WRITE_QPS)
        local = threading.local()

        def client():
            if not hasattr(local, "client"):
                local.client = openapi.client(self.emulator.endpoint, CREDENTIALS)
            return local.client

        started = time.perf_counter()
        selected, page = [], 1
        while True:
            reads.acquire()
            paging = openapi.call(
                client(), "ListTaskInstances", ProjectId=PROJECT_ID, Bizdate=bizdate, Status="Failure",
                SortBy="Id Asc", PageSize=500, PageNumber=page,
            )["body"]["PagingInfo"]  # fmt: skip
            selected += [row["Id"] for row in paging["TaskInstances"]]
            if len(paging["TaskInstances"]) < 500:
                break
            page += 1

        def read_log(instance_id: int) -> None:
            reads.acquire()
            openapi.call(client(), "GetTaskInstanceLog", "GET", Id=instance_id, RunNumber=1)

        def rerun(chunk: list[int]) -> None:
            writes.acquire()
            openapi.call(client(), "RerunTaskInstances", Ids=json.dumps(chunk), Comment="bench baseline")

        with ThreadPoolExecutor(BASELINE_THREADS) as pool:
            if read_logs:
                list(pool.map(read_log, selected))
            list(pool.map(rerun, [selected[n : n + CHUNK] for n in range(0, len(selected), CHUNK)]))
        wall = time.perf_counter() - started
        entries = self.emulator.journal.entries()[before:]
        check_rerun_once(entries, ids)
        return {"wall_s": wall, "calls": dict(Counter(e.action for e in entries if e.accepted))}


def check_rerun_once(entries, ids: list[int]) -> None:
    done = Counter()
    for entry in entries:
        if entry.action == "RerunTaskInstances" and entry.status == 200:
            done.update(json.loads(entry.params["Ids"]))
    wanted = set(ids)
    if set(done) & wanted != wanted or any(done[i] != 1 for i in wanted):
        missing = len(wanted - set(done))
        twice = sum(1 for i in wanted if done[i] > 1)
        raise RuntimeError(f"not every instance was rerun exactly once: {missing} missing, {twice} twice")


def bench(cloud: LocalCloud, scenario: str, count: int, rounds: int) -> dict:
    read_logs = scenario == "rules"
    ours, baseline = [], []
    for number in range(rounds):
        order = ("ours", "baseline") if number % 2 == 0 else ("baseline", "ours")
        for variant in order:
            progress(f"{scenario}: round {number + 1}/{rounds}, {variant} ({count} instances)")
            if variant == "ours":
                ours.append(cloud.ours(count, ignore_rules=not read_logs))
                progress(f"  ours {ours[-1]['wall_s']:.1f} s, {ours[-1]['parts']} parts, calls {ours[-1]['calls']}")
            else:
                baseline.append(cloud.baseline(count, read_logs))
                progress(f"  baseline {baseline[-1]['wall_s']:.1f} s")
    calls = ours[-1]["calls"]
    reads = sum(n for action, n in calls.items() if action != "RerunTaskInstances")
    writes = calls.get("RerunTaskInstances", 0)
    return {
        "ours_wall_s": statistics.median(r["wall_s"] for r in ours),
        "ours_answer_s": statistics.median(r["answer_s"] for r in ours),
        "baseline_wall_s": statistics.median(r["wall_s"] for r in baseline),
        "ratio_ours_baseline": statistics.median(
            o["wall_s"] / b["wall_s"] for o, b in zip(ours, baseline, strict=True)
        ),
        "write_quota_min_s": math.ceil(count / CHUNK) / WRITE_QUOTA,
        "quota_min_for_calls_s": max(reads / READ_QUOTA, writes / WRITE_QUOTA),
        "calls_per_instance": round(sum(calls.values()) / count, 3),
        "calls_per_instance_by_action": {action: round(n / count, 3) for action, n in sorted(calls.items())},
        "baseline_calls_per_instance": round(sum(baseline[-1]["calls"].values()) / count, 3),
        "parts": ours[-1]["parts"],
        "throttled": sum(r["throttled"] for r in ours),
        "rounds": rounds,
        "samples": {"ours": ours, "baseline": baseline},
    }


def table(figures: dict, count: int) -> list[tuple[str, str]]:
    rows = []
    for scenario, f in figures.items():
        rows += [
            (
                f"{scenario}: wall time, {count} instances",
                f"{f['ours_wall_s']:.1f} s ({f['parts']} parts; answer after {f['ours_answer_s']:.1f} s)",
            ),
            (f"{scenario}: baseline (bare client at 90% of quota)", f"{f['baseline_wall_s']:.1f} s"),
            (f"{scenario}: ratio ours / baseline", f"{f['ratio_ours_baseline']:.2f}"),
            (
                f"{scenario}: write-quota minimum",
                f"{f['write_quota_min_s']:.1f} s (x{f['ours_wall_s'] / f['write_quota_min_s']:.1f})",
            ),
            (
                f"{scenario}: quota minimum for the calls made",
                f"{f['quota_min_for_calls_s']:.1f} s (x{f['ours_wall_s'] / f['quota_min_for_calls_s']:.1f})",
            ),
            (
                f"{scenario}: calls per instance",
                f"{f['calls_per_instance']} (baseline {f['baseline_calls_per_instance']}); {f['calls_per_instance_by_action']}",
            ),
            (f"{scenario}: throttled answers", str(f["throttled"])),
        ]
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
