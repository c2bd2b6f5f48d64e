"""Cold start: a fresh process (the venv's python) that handles one failure event end to end.

Import index, build the client, GetTaskInstance, RerunTaskInstances, write the records.
FLOOR = a fresh process that imports tea-openapi + credentials and makes the same two calls with
the generic client, nothing else; PEER = the same with the official DataWorks SDK. Timed from the
parent (spawn to exit); "in-process" excludes the interpreter's own start. The limiter is set out
of the way (its spacing is a wait, not a cost); ours also asks GetTask (does DataWorks rerun the
node itself?), which the floor does not. The processes: coldstart_child.py.
"""

from __future__ import annotations

import time

from common import fc_environment, paired_ratio, progress, ratio, rotated, run_cold, seconds, seed, summarize

NAME = "cold_start"
DESCRIPTION = "cold start: fresh processes handling one failure event (ours, floor, official SDK)"
COLD_START_RATIO = 1.10


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_cold_start(emulator, defaults, args.rounds, since)


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


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
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
