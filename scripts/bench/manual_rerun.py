"""Manual rerun: one POST /rerun with 100 ids through the local HTTP gateway to the HTTP function
(the process model, template.yml's settings), against the share-bound minimum (ids /
DATAWORKS_READ_QPS: the reads one HTTP instance may make) and the unpaced serial floor: 100
GetTaskInstance calls then one RerunTaskInstances, one after another, with the generic client.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (
    CREDENTIALS,
    LATENCY,
    READ_QUOTA,
    REGION,
    ROOT,
    SETTLE,
    WRITE_QUOTA,
    paired_ratio,
    progress,
    ratio,
    rotated,
    seconds,
    seed,
    summarize,
)

NAME = "manual_rerun"
DESCRIPTION = "manual rerun: POST /rerun to the HTTP function vs the serial floor"
MANUAL_RATIO = 1.1  # the bench's choice: within 10% of what the HTTP instance's read share allows


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    ids = 10 if args.quick else 100
    return bench_manual_rerun(emulator, defaults, args.manual_rounds, ids, since)


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


def serial_floor(emulator):
    """ids -> 100 GetTaskInstance calls, then one RerunTaskInstances: one after another, nothing else."""
    from coldstart_child import bare_call

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


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
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
