"""What the benchmarks of `make bench` share: the local cloud's settings, seeding, the child
processes, what DataWorks saw, the statistics and the table's row.

The benchmarks are scripts, not a package: `python scripts/bench/bench.py` has this folder first
on the path, so the modules import one another by name, and importing this one puts scripts/ on
it too (for `localcloud`).
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent  # scripts/bench
SCRIPTS = HERE.parent
ROOT = SCRIPTS.parent
for _path in (str(SCRIPTS), str(HERE)):  # localcloud; the sibling benchmarks
    if _path not in sys.path:
        sys.path.insert(0, _path)

from localcloud.acs3 import Credentials  # noqa: E402

PYTHON = sys.executable
COLD_CHILD = str(HERE / "coldstart_child.py")
BURST_CHILD = str(HERE / "burst_child.py")
# Local-only credentials: the emulator accepts these and nothing else.
CREDENTIALS = Credentials("LTAIbenchkeyid000001", "bench-secret-local-only", "bench-sts-token-local-only")
REGION = "cn-hangzhou"
LATENCY = 0.025  # seconds the emulator adds to every call in the burst and manual figures
READ_QUOTA, WRITE_QUOTA = 50, 20  # DataWorks Enterprise, per account and region (FACTS §2)
SETTLE = 1.1  # seconds between measurements so the quota's one-second window starts empty

_instance_ids = itertools.count(5_000_000_000_000)


class Table:
    """The printed table's rows: one per figure, for the benchmarks that ran."""

    def __init__(self):
        self.rows: list[dict] = []

    def row(self, figure, measured, comparison, ratio_value, target, met) -> None:
        self.rows.append(
            {
                "figure": figure,
                "ours": measured,
                "comparison": comparison,
                "ratio": None if ratio_value is None else round(ratio_value, 3),
                "target": target,
                "met": met,
            }
        )


def progress(message: str, since: float) -> None:
    """One line on stderr: `make bench` says what it is doing while it runs."""
    print(f"bench {time.perf_counter() - since:6.0f}s  {message}", file=sys.stderr, flush=True)


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


def template_environment(resource: str = "event") -> dict[str, str]:
    """The environment variables template.yml gives a function (`resource`: event or http), each
    `${vars.NAME}` read from its vars; the ones left empty (or from the deploying shell) are unset."""
    import re

    import yaml

    spec = yaml.safe_load((ROOT / "template.yml").read_text())
    variables = spec["vars"]
    env = {}
    for name, raw in spec["resources"][resource]["props"]["environmentVariables"].items():
        whole = re.fullmatch(r"\$\{vars\.(\w+)\}", str(raw))
        value = variables[whole.group(1)] if whole else raw
        if isinstance(value, str) and "${" in value:  # e.g. ${env('DWRERUN_SIGNING_KEY', '')}
            value = ""
        if value not in ("", None):
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


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
    """Run a child of burst_child.py; its stderr (progress) goes straight to ours."""
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


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
