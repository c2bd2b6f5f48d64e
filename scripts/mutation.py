#!/usr/bin/env python3
"""`make mutation`: mutation testing of function/dwrerun/ with mutmut, and the score.

    scripts/mutation.py                       every module of the package
    scripts/mutation.py policy rerun          only these modules (dwrerun/<name>.py), all their mutants
    scripts/mutation.py --survivors policy    only the mutants of policy.py not yet killed
    scripts/mutation.py --jobs 4 --fresh      four mutants at a time; forget earlier results
    scripts/mutation.py --sample 400          400 mutants drawn at random from them all (`--seed`)

mutmut names a mutant after its module's path from the directory it runs in, with only a
leading `src/` taken off, while the tests import the code package's modules as `dwrerun.*`
(function/ is FC's code root). So it runs in a staging copy, .mutation/, which holds the code
package as src/ beside tests/ and scripts/; the tests find it there through DWRERUN_CODE_PACKAGE
(tests/conftest.py). Which tests run and which do not is [tool.mutmut] in pyproject.toml. The
staging copy keeps mutmut's results (.mutation/mutants/) between runs: without module names a run
tests the mutants of changed code, then the earlier survivors again (the tests may have changed);
--fresh forgets it all.

It prints the score, (killed + timeout) / (every mutant that was run), and each survivor with
its diff (`--diffs`) or its name; docs/reliability.md, "Mutation testing", lists the survivors
judged equivalent and why. Too slow for CI: run it before a release.

Every mutant of the package takes hours on two cores: a survivor runs every test that reaches
its function, up to 75 s of tests for the settings parser. `--sample N` estimates the package's
score from N mutants drawn uniformly at random (the seed is printed; `--seed` draws the same
ones again) and prints it with its 95% (Wilson) interval: 400 mutants pin a score near 90% to
about +-3 points, in tens of minutes. A sampled mutant that an earlier run killed is not run
again (its function's code has not changed, or mutmut would have made it anew).

A mutant whose tests run past --mutant-timeout seconds of wall time is ended as mutmut's own
CPU-time limit would end it, and recorded as a timeout (`_watch`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Set as AbstractSet
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGING = ROOT / ".mutation"
MUTMUT = [sys.executable, "-m", "mutmut"]
# Everything the selected tests read, as the staging copy holds it (the code package goes to src/).
COPIED = ("tests", "scripts", "template.yml")
# The slowest set of tests that reaches one function takes about 75 s here; a mutant still running
# after four times that is stuck (see _watch). Checked every WATCH_EVERY seconds.
MUTANT_TIMEOUT = 300.0
WATCH_EVERY = 5.0
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.fresh and STAGING.exists():
        shutil.rmtree(STAGING)
    _stage()
    env = {**os.environ, "DWRERUN_CODE_PACKAGE": "src", "PYTHONDONTWRITEBYTECODE": "1"}
    if args.sample:
        return _sample(args, env)
    earlier = _survivors(_statuses(args.modules, env)) if (STAGING / "mutants").exists() else []
    if args.survivors:
        batches = [earlier] if earlier else []
    elif args.modules:
        batches = [[f"dwrerun.{module}.*" for module in args.modules]]
    else:  # the mutants never run (new or changed code), then the earlier survivors again
        batches = [[], *([earlier] if earlier else [])]
    started = time.monotonic()
    for names in batches:
        if failed := _run(names, args, env):
            return failed
    elapsed = time.monotonic() - started
    statuses = _statuses(args.modules, env)
    _report(statuses, elapsed, args.jobs, args.diffs, env)
    return 0


def _run(names: list[str], args: argparse.Namespace, env: dict) -> int:
    """`mutmut run` on these mutants (all not yet run, when none are named); its exit code."""
    run = subprocess.Popen(
        [*MUTMUT, "run", "--max-children", str(args.jobs), *names],
        cwd=STAGING,
        env=env,
        stdout=None if args.verbose else subprocess.DEVNULL,
    )
    stop = threading.Event()
    watchdog = threading.Thread(target=_watch, args=(run.pid, args.mutant_timeout, stop), daemon=True)
    watchdog.start()
    try:
        returncode = run.wait()
    finally:
        stop.set()
        watchdog.join()
    if returncode != 0:
        print(f"mutmut run failed (exit {returncode}); rerun with --verbose", file=sys.stderr)
    return returncode


def _watch(parent: int, limit: float, stop: threading.Event) -> None:
    """End each mutant whose tests run longer than `limit` seconds of wall time.

    mutmut's own timeout is CPU time (RLIMIT_CPU): a mutant that makes the tests wait forever
    (a loop around a sleep, a thread never joined) spends none and would hold the run for good.
    SIGXCPU is what mutmut's limit sends: mutmut records the mutant as timed out (detected).
    """
    ended: set[int] = set()  # once each: a process that is still exiting is not signalled (or reported) again
    while not stop.wait(WATCH_EVERY):
        for pid in overdue(_children(parent), limit, ended):
            ended.add(pid)
            print(f"a mutant's tests ran past {limit:.0f} s: ending them (recorded as a timeout)", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGXCPU)


def overdue(children: dict[int, float], limit: float, ended: AbstractSet[int] = frozenset()) -> list[int]:
    """The processes (pid -> seconds running) that have run past `limit` seconds and were not ended yet."""
    return sorted(pid for pid, elapsed in children.items() if elapsed > limit and pid not in ended)


def _children(parent: int) -> dict[int, float]:
    """pid -> seconds running, of each child of `parent` (one per mutant being tested)."""
    listed = subprocess.run(["ps", "-o", "pid=,etimes=", "--ppid", str(parent)], capture_output=True, text=True)
    children = {}
    for line in listed.stdout.splitlines():
        pid, elapsed = line.split()
        children[int(pid)] = float(elapsed)
    return children


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names in function/dwrerun/ (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants run at once (default: cores)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results and mutate again")
    parser.add_argument("--survivors", action="store_true", help="run only the mutants not yet killed")
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    parser.add_argument("--verbose", action="store_true", help="show mutmut's own progress")
    parser.add_argument("--sample", type=int, metavar="N", help="estimate the score from N mutants drawn at random")
    parser.add_argument("--seed", type=int, help="the --sample draw's seed (default: a new one, printed)")
    parser.add_argument(
        "--mutant-timeout",
        type=float,
        default=MUTANT_TIMEOUT,
        help="wall-clock seconds before a mutant's tests are ended",
    )
    return parser


def _stage() -> None:
    """The staging copy: function/ as src/, tests/ and scripts/ beside it, pyproject for that layout."""
    STAGING.mkdir(exist_ok=True)
    src = STAGING / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "function", src, ignore=IGNORED)
    for name in COPIED:
        source, target = ROOT / name, STAGING / name
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, ignore=IGNORED)
        else:
            shutil.copy2(source, target)
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config = config.replace('pythonpath = ["function", "scripts"]', 'pythonpath = ["src", "scripts"]')
    config = config.replace('"function/', '"src/')
    if 'pythonpath = ["src", "scripts"]' not in config or 'source_paths = ["src/dwrerun/"]' not in config:
        raise SystemExit("pyproject.toml's pythonpath or [tool.mutmut] source_paths moved: update scripts/mutation.py")
    (STAGING / "pyproject.toml").write_text(config, encoding="utf-8")


DETECTED = ("killed", "timeout", "segfault")
# A name that matches no mutant: mutmut makes the mutants of changed code and its map of which
# tests reach which function, then stops, having run none.
NO_MUTANT = "dwrerun.no_such_module.no_such_function__mutmut_0"


def _sample(args: argparse.Namespace, env: dict) -> int:
    made = subprocess.run([*MUTMUT, "run", NO_MUTANT], cwd=STAGING, env=env, capture_output=True, text=True)
    if "nothing matches" not in made.stdout + made.stderr:
        print(f"mutmut could not make the mutants (exit {made.returncode}):\n{made.stdout[-2000:]}", file=sys.stderr)
        return made.returncode or 1
    statuses = _statuses(args.modules, env)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    drawn = random.Random(seed).sample(sorted(statuses), min(args.sample, len(statuses)))
    pending = [name for name in drawn if statuses[name] not in DETECTED]
    print(f"sample: {len(drawn)} of {len(statuses)} mutants (seed {seed}); {len(pending)} to run", file=sys.stderr)
    started = time.monotonic()
    if pending and (failed := _run(pending, args, env)):
        return failed
    statuses = _statuses(args.modules, env)
    sampled = {name: statuses[name] for name in drawn}
    whole = len(drawn) == len(statuses)  # a sample as large as the population is the exact score
    _report(sampled, time.monotonic() - started, args.jobs, args.diffs, env, None if whole else (len(statuses), seed))
    return 0


def wilson(detected: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: right near 100%, where the normal one is not."""
    if n == 0:
        return 0.0, 1.0
    p = detected / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _survivors(statuses: dict[str, str]) -> list[str]:
    return sorted(name for name, status in statuses.items() if status not in DETECTED)


def _statuses(modules: list[str], env: dict) -> dict[str, str]:
    """mutant name -> mutmut's verdict, for the modules asked for."""
    listed = subprocess.run(
        [*MUTMUT, "results", "--all", "true"], cwd=STAGING, env=env, capture_output=True, text=True, check=True
    ).stdout
    statuses = {}
    for line in listed.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        module = name.split(".")[1] if name.startswith("dwrerun.") else ""
        if not modules or module in modules:
            statuses[name] = status
    return statuses


def _report(
    statuses: dict[str, str], elapsed: float, jobs: int, diffs: bool, env: dict, sample: tuple[int, int] | None = None
) -> None:
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    detected = sum(counts.get(status, 0) for status in DETECTED)
    considered = sum(n for status, n in counts.items() if status not in ("skipped", "not checked"))
    per_module: dict[str, list[int]] = {}
    for name, status in statuses.items():
        module = name.split(".")[1]
        totals = per_module.setdefault(module, [0, 0])
        totals[1] += status not in ("skipped", "not checked")
        totals[0] += status in DETECTED
    print(f"mutants: {len(statuses)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for module, (killed, total) in sorted(per_module.items()):
        print(f"  {module:<18} {killed:>5} / {total:<5} {100 * killed / total if total else 100:5.1f}%")
    score = 100 * detected / considered if considered else 100.0
    print(f"score: {score:.1f}% ({detected} of {considered} detected) in {elapsed / 60:.1f} min with {jobs} job(s)")
    summary = {"score": round(score, 1), "counts": counts, "minutes": round(elapsed / 60, 1), "jobs": jobs}
    if sample:
        low, high = wilson(detected, considered)
        print(f"  a sample of {considered} of the package's {sample[0]} mutants (seed {sample[1]}): "
              f"the package's score is {100 * low:.1f}-{100 * high:.1f}% (95% interval)")  # fmt: skip
        summary.update(population=sample[0], seed=sample[1], interval=[round(100 * low, 1), round(100 * high, 1)])
    survivors = [name for name in _survivors(statuses) if statuses[name] not in ("skipped", "not checked")]
    if survivors:
        print(f"survivors ({len(survivors)}):")
    for name in survivors:
        print(f"  {name}: {statuses[name]}")
        if diffs:
            shown = subprocess.run([*MUTMUT, "show", name], cwd=STAGING, env=env, capture_output=True, text=True).stdout
            print(re.sub(r"^", "      ", shown.strip(), flags=re.M))
    (STAGING / "score.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
