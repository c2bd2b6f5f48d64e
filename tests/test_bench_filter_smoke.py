"""`scripts/bench/by_filter.py` cannot rot: a small run exits 0 and writes its figures.

No timing is asserted: only that each figure was measured and that the benchmark's own checks
held (every instance rerun exactly once, in ours and in the baseline, or it exits non-zero).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_writes_every_figure(tmp_path):
    out = tmp_path / "filter.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "by_filter.py"), "--instances", "120"]
        + ["--scenarios", "ignore-rules", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[bench_filter]" in done.stderr  # progress goes to stderr
    figures = json.loads(out.read_text())["figures"]["ignore-rules"]
    for key in ("ours_wall_s", "baseline_wall_s", "ratio_ours_baseline", "write_quota_min_s", "quota_min_for_calls_s"):
        assert isinstance(figures[key], float) and math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["calls_per_instance_by_action"]["RerunTaskInstances"] == round(3 / 120, 3)  # 50 ids a call
    assert figures["parts"] >= 2 and figures["throttled"] == 0
    assert "ratio ours / baseline" in done.stdout
