"""scripts/mutation.py (`make mutation`): the parts that do not need a mutmut run."""

from __future__ import annotations

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
