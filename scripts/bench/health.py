"""GET /health (index.handle_http) in a cold process, against `python -c pass` and
`python -c "import json"`; also whether the health check loaded the SDK (it must not).
"""

from __future__ import annotations

import subprocess
import time

from common import COLD_CHILD, PYTHON, bench_line, fc_environment, paired_ratio, rotated, seconds, summarize

NAME = "health"
DESCRIPTION = "GET /health in a cold process"


def run(emulator, defaults: dict, args, figures: dict, since: float) -> dict:
    return bench_health(emulator, defaults, args.rounds, since)


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


def table_rows(figures: dict, defaults: dict, row) -> None:
    """This benchmark's rows of the printed table (`row` adds one: see common.Table)."""
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
