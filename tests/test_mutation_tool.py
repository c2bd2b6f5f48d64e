"""scripts/mutation.py (`make mutation`): the parts that do not need a mutmut run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomllib

import mutation

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("detected", "n", "low", "high"),
    [
        (360, 400, 0.8667, 0.9257),  # a sample near the target: about +-3 points
        (400, 400, 0.9905, 1.0),  # all detected: the interval still says a sample is not the whole
        (0, 10, 0.0, 0.2775),
    ],
)
def test_the_sampled_score_comes_with_its_wilson_interval(detected, n, low, high):
    assert mutation.wilson(detected, n) == pytest.approx((low, high), abs=1e-4)


def test_the_mutation_test_selection_names_only_test_files_that_exist():
    # A renamed test file would silently drop out of the selection and its kills with it.
    selection = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = [arg for arg in selection["pytest_add_cli_args_test_selection"] if arg.startswith("tests/")]
    assert files and all((ROOT / name).is_file() for name in files)


def test_only_the_mutants_running_past_the_limit_are_overdue():
    assert mutation.overdue({101: 12.0, 102: 300.0, 103: 301.0, 104: 900.0}, 300.0) == [103, 104]
    assert mutation.overdue({}, 300.0) == []
    assert mutation.overdue({103: 301.0, 104: 900.0}, 300.0, ended={103}) == [104]


def test_the_watchdog_signals_and_reports_a_stuck_mutant_once_while_it_exits(mocker, capsys):
    # The process is still listed on the next polls (it is exiting): one signal, one line.
    mocker.patch.object(mutation, "WATCH_EVERY", 0)
    mocker.patch.object(mutation, "_children", return_value={4242: 301.0})
    kill = mocker.patch.object(mutation.os, "kill")
    stop = mocker.Mock(wait=mocker.Mock(side_effect=[False, False, False, True]))
    mutation._watch(1, 300.0, stop)
    kill.assert_called_once_with(4242, signal.SIGXCPU)
    assert capsys.readouterr().err.count("ran past 300 s") == 1


def test_the_watchdog_ends_a_stuck_mutant_with_the_signal_mutmut_reads_as_a_timeout(mocker):
    # A stand-in for `mutmut run`: a parent whose one child (the mutant's tests) waits without
    # spending CPU time, which mutmut's own CPU-time limit never ends. The child's exit status,
    # as the parent sees it, is what mutmut turns into "timeout".
    mocker.patch.object(mutation, "WATCH_EVERY", 0.05)  # the watchdog's polling: the seam of time
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess; print(subprocess.run(['sleep', '120']).returncode)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        while not mutation._children(parent.pid):  # the child is up
            time.sleep(0.01)
        stop = threading.Event()
        watchdog = threading.Thread(target=mutation._watch, args=(parent.pid, -1.0, stop))
        watchdog.start()
        out, _ = parent.communicate(timeout=60)
        stop.set()
        watchdog.join()
    finally:
        parent.kill()
    assert out.strip() == str(-signal.SIGXCPU)
