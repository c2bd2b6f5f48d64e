"""The quick-start demo runs end to end and shows both paths."""

import subprocess
import sys

from conftest import ROOT


def test_the_demo_shows_event_and_manual_reruns():
    result = subprocess.run(
        [sys.executable, "scripts/demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["trigger", "instance", "decision", "reason", "result"]
    assert any(line.startswith("eventbridge  1000012345678  rerun") and "rerun ok" in line for line in lines)
    assert any("duplicate-event" in line for line in lines)
    assert any(line.startswith("http") and "1000012345679  rerun" in line for line in lines)
    assert "dwrerun-event.jsonl" in result.stdout
    assert "demo-secret-local-only" not in result.stdout + result.stderr
