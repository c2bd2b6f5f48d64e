"""The child processes of the burst, memory/CPU, profile and failure-rules benchmarks (burst.py, ...).

    python burst_child.py <mode> '<json settings>'

Modes (each prints one `BENCH {json}` line last; progress goes to stderr):
- burst:   `count` failure events through the EventBridge publisher into the event function's
           asynchronous queue, run as FC 3.0 runs a standard runtime (localcloud.fc.function):
           one invocation per instance, each instance its own process, at most
           `reserved_concurrency` of them, FC's retries; cold starts included. Reports wall time,
           instances started, peak memory per instance, the instances' CPU time, the records.
- harness: the same burst on the same model with a do-nothing handler: what the model itself
           (the instance processes, the dispatch, the log lines) costs in CPU and memory.
- naive:   the naive peer: per event one GetTaskInstance and one RerunTaskInstances with the
           official SDK, no limiter, `concurrency` threads.
- profile: the event handler called directly, one event after another on this thread: CPU per
           event by thread time (network waits excluded), then a cProfile breakdown.
- classify: the same direct handler, alternating a failure whose log is read and matched with one
           handled with RERUN_READ_LOGS=false; then the rules matching that log alone.

The DataWorks emulator runs in the parent (DataWorks is another machine), so the CPU and memory
measured here are the function's side only.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent  # scripts/bench
ROOT = HERE.parents[1]
FUNCTION_DIR = ROOT / "function"
sys.path.insert(1, str(ROOT / "scripts"))  # localcloud

# A handler that writes what ours writes (one instance record, one summary) and nothing else.
NOOP_HANDLER = """
import json, sys

def handle_event(event, context):
    data = json.loads(event)
    record = {"kind": "instance", "instanceId": data["data"]["taskId"], "decision": "rerun", "pad": "x" * 500}
    sys.stdout.write(json.dumps(record) + "\\n")
    summary = {"kind": "summary", "instances": 1, "pad": "x" * 200}
    sys.stdout.write(json.dumps(summary) + "\\n")
    return summary
"""


def failure_event(instance_id: int, tag: str) -> dict:
    event = json.loads((ROOT / "tests" / "events" / "dataworks-instance-failed.json").read_text())
    event["id"] = f"bench-{tag}-{instance_id}"
    event["data"]["taskId"] = instance_id
    return event


def failure_payload(instance_id: int, tag: str) -> bytes:
    return json.dumps(failure_event(instance_id, tag)).encode()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU time of the child processes that ended and were waited for: here, the FC instances."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def burst(settings: dict, code_dir: Path = FUNCTION_DIR) -> dict:
    """`count` failure events through the EventBridge publisher into the event function's queue, on the
    process model (one invocation per instance process, at most reservedConcurrency of them), cold
    starts included: the clock starts before the first delivery and no instance exists yet."""
    from localcloud.acs3 import Credentials
    from localcloud.eventbridge import EventBridge
    from localcloud.fc import Function

    first, count, label = settings["first_id"], settings["count"], settings.get("label", "burst")
    events = [failure_event(first + n, label) for n in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        logstore = Path(tmp) / "logstore.jsonl"
        function = Function(
            handler="index.handle_event",
            code_dir=str(code_dir),
            runtime=settings["runtime"],
            timeout=settings["timeout"],
            memory=settings["memory"],
            function_name="dwrerun-event",
            region="cn-hangzhou",
            env={
                "DATAWORKS_ENDPOINT": settings["url"],
                "DATAWORKS_READ_QPS": str(settings["read_qps"]),
                "DATAWORKS_WRITE_QPS": str(settings["write_qps"]),
                "RERUN_BACKOFF_BASE_SECONDS": "0",  # the burst is of immediate reruns
            },
            credentials=Credentials(*settings["credentials"]),
            logstore=str(logstore),
            reserved_concurrency=settings["reserved_concurrency"],
            max_async_retry_attempts=settings["retries"],
        )
        with function:
            rule = EventBridge(function)
            cpu0, children0 = cpu_seconds(), children_cpu_seconds()
            started_epoch, t0 = time.time(), time.perf_counter()
            handles = [handle for event in events for handle in rule.deliver(event)]
            wait_all(handles, label, t0, settings.get("budget", 3600.0))
            wall = time.perf_counter() - t0
            dispatcher_cpu = cpu_seconds() - cpu0
            instances = function.instances
        # The instances ended with the function: their CPU time is now the children's.
        instances_cpu = children_cpu_seconds() - children0
        logstore_lines = sum(1 for _ in logstore.open(encoding="utf-8"))
    attempts = [attempt for handle in handles for attempt in handle.attempts]
    finals = [handle.final for handle in handles]
    records = [r for attempt in attempts for r in attempt.records]
    instance_records = [r for r in records if r.get("kind") == "instance"]
    final_records = [r for inv in finals if inv is not None for r in inv.records if r.get("kind") == "instance"]
    peaks = [i.peak_rss_mib for i in instances]
    return {
        "wall_s": wall,
        "started_epoch": started_epoch,
        "instances_started": len(instances),
        "invocations_per_instance": [i.invocations for i in instances],
        "peak_rss_mib_per_instance": peaks,
        "peak_rss_mib": max(peaks) if peaks else 0.0,
        "cold_starts": sum(1 for a in attempts if a.cold_start),
        "instances_cpu_s": instances_cpu,
        "cpu_ms_per_event": instances_cpu * 1000 / count,
        "dispatcher_cpu_ms_per_event": dispatcher_cpu * 1000 / count,
        "invocations": len(handles),
        "attempts": len(attempts),
        "fc_retries": len(attempts) - len(handles),
        "invocations_failed": sum(1 for handle in handles if handle.status != "Succeeded"),
        "attempt_errors": _tally(a.error["errorType"] for a in attempts if a.error),
        "instance_records": len(instance_records),
        "summary_records": sum(1 for r in records if r.get("kind") == "summary"),
        "rerun_records": sum(1 for r in final_records if r.get("decision") == "rerun" and r.get("success")),
        "final_reasons": _tally(f"{r.get('decision')} {r.get('reason')}" for r in final_records),
        "logstore_lines": logstore_lines,
    }


def wait_all(handles: list, label: str, t0: float, budget: float, every: float = 10.0) -> None:
    """Wait until FC is done with every handle, saying how far it got on stderr every `every` s."""
    done, last = 0, t0
    for handle in handles:
        while not handle.wait(1.0):
            now = time.perf_counter()
            if now - t0 > budget:
                raise SystemExit(f"{label}: {len(handles) - done} invocations still not done after {budget:.0f} s")
            if now - last >= every:
                print(
                    f"  {label}: {done}/{len(handles)} invocations done, {now - t0:.0f} s", file=sys.stderr, flush=True
                )
                last = now
        done += 1


def harness(settings: dict) -> dict:
    """The same burst on the same process model with a do-nothing handler: what the model costs."""
    with tempfile.TemporaryDirectory() as code_dir:
        (Path(code_dir) / "index.py").write_text(NOOP_HANDLER)
        return burst(settings, Path(code_dir))


def naive(settings: dict) -> dict:
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_dataworks_public20240518 import models
    from alibabacloud_dataworks_public20240518.client import Client
    from alibabacloud_tea_openapi import utils_models

    key_id, secret, token = settings["credentials"]
    credential = CredentialClient(
        CredentialConfig(type="sts", access_key_id=key_id, access_key_secret=secret, security_token=token)
    )
    client = Client(
        utils_models.Config(
            credential=credential,
            endpoint=settings["url"].split("://", 1)[1],
            protocol="http",
            region_id="cn-hangzhou",
        )
    )
    client.get_task_instance(models.GetTaskInstanceRequest(id=settings["warm_id"]))  # warm, as ours is

    def one(instance_id: int) -> tuple[str, str]:
        outcomes = []
        for call in (
            lambda: client.get_task_instance(models.GetTaskInstanceRequest(id=instance_id)),
            lambda: client.rerun_task_instances(models.RerunTaskInstancesRequest(ids=[instance_id])),
        ):
            try:
                call()
                outcomes.append("ok")
            except Exception as exc:  # the naive peer just counts what went wrong
                outcomes.append(str(getattr(exc, "code", None) or type(exc).__name__))
        return outcomes[0], outcomes[1]

    time.sleep(settings.get("settle", 0.0))
    ids = [settings["first_id"] + n for n in range(settings["count"])]
    started_epoch, cpu0, t0 = time.time(), cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(settings["concurrency"]) as pool:
        results = list(pool.map(one, ids))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return {
        "wall_s": wall,
        "started_epoch": started_epoch,
        "cpu_s": cpu,
        "reads_ok": sum(1 for read, _ in results if read == "ok"),
        "writes_ok": sum(1 for _, write in results if write == "ok"),
        "errors": _tally(code for result in results for code in result if code != "ok"),
    }


def profile(settings: dict) -> dict:
    """CPU per event of the handler alone (no harness) and of the bare SDK calls, then where it goes."""
    for name, value in settings["env"].items():
        os.environ[name] = value
    sys.path.insert(0, str(FUNCTION_DIR))
    import index

    class Context:
        request_id = "1-bench-profile"
        region = "cn-hangzhou"

        class function:  # noqa: N801 - the context's attribute name
            name, handler, memory, timeout = "dwrerun-event", "index.handle_event", 256, 120

    count, first = settings["count"], settings["first_id"]  # 3 * count fresh instances from first_id
    plain, floor_ids, profiled = (range(first + n * count, first + (n + 1) * count) for n in range(3))
    floor_call = generic_calls(settings)
    real_stdout = sys.stdout
    sys.stdout = io.StringIO()  # the records: FC ships them, here they are dropped
    try:
        index.handle_event(failure_payload(settings["warm_id"], "warm"), Context())
        # Handler and floor alternate event by event, so drift on a shared machine hits both alike.
        direct_cpu = floor_cpu = 0.0
        for instance_id, floor_id in zip(plain, floor_ids, strict=True):
            event = failure_payload(instance_id, "plain")
            t0 = time.thread_time()
            index.handle_event(event, Context())
            t1 = time.thread_time()
            floor_call(floor_id)
            direct_cpu += t1 - t0
            floor_cpu += time.thread_time() - t1
        events = [failure_payload(i, "profiled") for i in profiled]
        profiler = cProfile.Profile(time.thread_time)  # CPU time of this thread: waits cost nothing
        profiler.enable()
        for event in events:
            index.handle_event(event, Context())
        profiler.disable()
    finally:
        sys.stdout = real_stdout
    stats = pstats.Stats(profiler).stats
    total = sum(tt for _, _, tt, _, _ in stats.values()) or 1e-9
    by_area: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, callers) in stats.items():
        if filename != "~":
            by_area[_area(filename)] = by_area.get(_area(filename), 0.0) + tt
            continue
        # A C function (str.lower, socket.recv_into...) is charged to the code that called it.
        for (caller_file, _, _), caller_figures in callers.items():
            area = _area(caller_file)
            by_area[area] = by_area.get(area, 0.0) + caller_figures[2]
    top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:12]
    return {
        "events": count,
        "direct_cpu_ms_per_event": direct_cpu * 1000 / count,
        "floor_cpu_ms_per_event": floor_cpu * 1000 / count,
        "profiled_cpu_ms_per_event": total * 1000 / count,
        "by_area": {
            area: {"ms_per_event": tt * 1000 / count, "share": tt / total}
            for area, tt in sorted(by_area.items(), key=lambda item: -item[1])
        },
        "top_functions": [
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls_per_event": calls / count,
                "self_ms_per_event": tt * 1000 / count,
                "cumulative_ms_per_event": ct * 1000 / count,
            }
            for (filename, line, name), (_, calls, tt, ct, _) in top
        ],
    }


def classify(settings: dict) -> dict:
    """CPU per failure event with the log read and matched, and without; the matching alone."""
    for name, value in settings["env"].items():
        os.environ[name] = value
    sys.path.insert(0, str(FUNCTION_DIR))
    import index
    from dwrerun import rules

    class Context:
        request_id = "1-bench-classify"
        region = "cn-hangzhou"

        class function:  # noqa: N801 - the context's attribute name
            name, handler, memory, timeout = "dwrerun-event", "index.handle_event", 256, 120

    def handle(instance_id: int, read_logs: bool) -> float:
        os.environ["RERUN_READ_LOGS"] = "true" if read_logs else "false"  # read per invocation
        t0 = time.thread_time()
        summary = index.handle_event(failure_payload(instance_id, "classify"), Context())
        spent = time.thread_time() - t0
        (outcome,) = summary["outcomes"]
        if outcome["decision"] != "rerun" or outcome["success"] is not True:
            raise SystemExit(f"instance {instance_id} was not rerun: {outcome}")
        return spent

    real_stdout = sys.stdout
    sys.stdout = io.StringIO()  # the records: FC ships them, here they are dropped
    try:
        handle(settings["warm_ids"][0], True)  # both paths warm: the rules loaded, connections open
        handle(settings["warm_ids"][1], False)
        with_cpu = without_cpu = 0.0
        for n, (with_id, without_id) in enumerate(zip(settings["with_log"], settings["without_log"], strict=True)):
            if n % 2:  # which goes first alternates, so drift hits both alike
                with_cpu += handle(with_id, True)
                without_cpu += handle(without_id, False)
            else:
                without_cpu += handle(without_id, False)
                with_cpu += handle(with_id, True)
    finally:
        sys.stdout = real_stdout
    rule_set, count = rules.load(), len(settings["with_log"])
    log = Path(settings["log_file"]).read_text(encoding="utf-8")
    # What a cold instance pays once to check and compile the shipped rules (re's cache emptied).
    loads = []
    for _ in range(5):
        re.purge()
        t0 = time.thread_time()
        rules.parse(rules.DEFAULT_FILE.read_text(encoding="utf-8"))
        loads.append(time.thread_time() - t0)
    found = rules.match(rule_set, log, settings["task_type"])
    t0 = time.thread_time()
    for _ in range(count):
        rules.match(rule_set, log, settings["task_type"])
    match_cpu = time.thread_time() - t0
    return {
        "with_log_cpu_ms_per_event": with_cpu * 1000 / count,
        "without_log_cpu_ms_per_event": without_cpu * 1000 / count,
        "match_cpu_ms": match_cpu * 1000 / count,
        "rules_load_cpu_ms": min(loads) * 1000,
        "matched_rule": found.rule.name if found.rule else rules.DEFAULT_RULE,
        "patterns": sum(len(rule.patterns) for rule in rule_set.rules if rule.applies_to(settings["task_type"])),
    }


def generic_calls(settings: dict):
    """The floor: GetTaskInstance then RerunTaskInstances with the generic client, nothing else."""
    from coldstart_child import bare_call

    call = bare_call(settings["env"])

    def both(instance_id: int) -> None:
        call("GetTaskInstance", "GET", query={"Id": str(instance_id)})
        call("RerunTaskInstances", "POST", body={"Ids": f"[{instance_id}]", "Comment": "bench floor"})

    both(settings["floor_warm_id"])  # warm, as the handler is
    return both


def _area(filename: str) -> str:
    """Where a function's CPU is accounted: our package, a site-package, or a stdlib module."""
    if filename == "~":
        return "builtins (C functions)"
    if filename.startswith("<frozen "):  # os, codecs, _collections_abc... compiled into python
        return "stdlib " + filename.removeprefix("<frozen ").rstrip(">")
    if filename == "<string>":
        return "generated code (dataclass __init__, __eq__...)"
    if f"{os.sep}function{os.sep}" in filename:
        return "function (dwrerun)"
    if "site-packages" in filename:
        return filename.split("site-packages", 1)[1].strip(os.sep).split(os.sep)[0].removesuffix(".py")
    parts = Path(filename).parts
    if "lib" in parts:  # .../lib/python3.X/<module or package>/...
        rest = parts[parts.index("lib") + 2 :]
        if rest:
            return "stdlib " + rest[0].removesuffix(".py")
    return "other"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/function/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _tally(codes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return counts


def main() -> None:
    mode, settings = sys.argv[1], json.loads(sys.argv[2])
    modes = {"burst": burst, "harness": harness, "naive": naive, "profile": profile, "classify": classify}
    result = modes[mode](settings)
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
