"""Memory and CPU: peak RSS (ru_maxrss) of each instance process of the burst, and the CPU time
(user + sys) of all instance processes over the burst, cold starts included.

"Harness alone" is the same burst on the same model with a do-nothing handler. "Handler alone"
calls index.handle_event in a loop on one thread (thread CPU time, so network waits cost
nothing); its "SDK floor" makes the same two calls with the generic client; a cProfile run says
where the CPU goes. Reads the burst's figures: run with the burst.
"""

from __future__ import annotations

from burst import burst_settings
from common import LATENCY, READ_QUOTA, WRITE_QUOTA, fc_environment, ratio, run_burst_child, seed

NAME = "memory_cpu"
DESCRIPTION = "memory and CPU: the model with a do-nothing handler, then the handler profiled"
CPU_MS_PER_EVENT = 1.0
RSS_SHARE = 0.75  # "fits with room to spare": a quarter of the function's memory left over


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_memory_cpu(emulator, defaults, figures["burst"], args.events, args.quick)


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


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
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
