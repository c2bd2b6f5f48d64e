"""Every process collects the same tests: pytest-xdist refuses to run when its workers' lists differ
("Different tests were collected between gw0 and gw1"), so nothing in a test's id may depend on
when it is collected. A test id made from a token issued at time.time() did: the run failed
whenever the two workers collected that module in different seconds."""

from __future__ import annotations

import os
import subprocess
import sys

# Imported first in the collecting process (PYTHONPATH): its wall clock runs an hour ahead.
LATER = "import time\n_real = time.time\ntime.time = lambda: _real() + 3600\n"


def test_a_collection_an_hour_later_finds_the_same_tests(request, tmp_path):
    config = request.config
    (tmp_path / "sitecustomize.py").write_text(LATER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    later = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n0", "-p", "no:randomly", *config.args],
        cwd=config.invocation_params.dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected_later = {line for line in later.stdout.splitlines() if "::" in line}
    assert collected_later, later.stdout[-2000:] + later.stderr[-2000:]
    # xdist adds "@group" to a grouped test's id on its workers (tests/conftest.py): compared without it
    now = {
        item.nodeid.removesuffix(f"@{mark.args[0]}")
        if (mark := item.get_closest_marker("xdist_group"))
        else item.nodeid
        for item in request.session.items
    }
    # A test whose id changed with the clock is in this run but not in the later collection
    # (-k, -m and --lf may leave tests of the later collection out of this run: no matter).
    assert sorted(now - collected_later) == []
