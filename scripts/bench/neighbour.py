"""Burst with a neighbour: the same burst while another client of the account uses 60% of both
quotas all the time (the emulator's `neighbour`), so 20 reads/s and 8 writes/s are left.
"""

from __future__ import annotations

import time

from burst import bounds, burst_settings, write_timeline
from common import LATENCY, READ_QUOTA, SETTLE, WRITE_QUOTA, journal_figures, run_burst_child, seconds, seed

NAME = "neighbour"
NEIGHBOUR = 0.6  # the share of both quotas another client uses in the second burst
DESCRIPTION = f"burst again, with a neighbour using {NEIGHBOUR:.0%} of both quotas"


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_burst_neighbour(emulator, defaults, args.events)


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


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
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
