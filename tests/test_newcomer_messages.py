"""What a newcomer reads at the terminal says what happened, once, in their own terms (issue 26).

- a dry run over the client says "would rerun", not "dry-run: dry run: …";
- the apply of a plan prints the ids it reran, not only counts;
- `explain_rule.py --instance` without credentials tells the person at the terminal what to set,
  not to give the function a role;
- `--bizdate yesterday` is the business date an operator means.
(The demo's list of rerun runs that ended leaves out what it did not rerun: tests/test_demo.py.)
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from datetime import datetime

import pytest

import rerun_client
from conftest import ROOT, make_function, seed_failed
from localcloud.gateway import HttpGateway

KEY = "k" * 43  # a signing key of the length scripts/deploy generates
FAILED = [1000012345701, 1000012345702]
HELD = 1000012345703  # a syntax error: a failure rule holds it back
DAY, BIZDATE = "2026-11-27", 1_795_708_800_000  # 2026-11-27 00:00 +08:00 (yesterday is tested apart, pinned)


@pytest.fixture
def gateway(dataworks, tmp_path):
    for instance_id in FAILED:
        seed_failed(dataworks, instance_id, bizdate=BIZDATE)
    seed_failed(dataworks, HELD, bizdate=BIZDATE, task_type="ODPS_SQL")
    dataworks.backend.set_log(HELD, 1, "FAILED: ODPS-0130161:[7,1] Parse exception - invalid token ';'\n")
    with (
        make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_SIGNING_KEY=KEY) as fn,
        HttpGateway(fn) as running,
    ):
        yield running


def client(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = rerun_client.main(list(argv), out=out, environ={}, err=io.StringIO())
    return status, out.getvalue()


def test_a_dry_run_over_the_client_says_would_rerun_once(gateway):
    status, out = client(gateway.url, "--ids", str(FAILED[0]), "--dry-run")
    assert status == 0
    (row,) = [line for line in out.splitlines() if line.startswith(str(FAILED[0]))]
    assert row.split()[1:3] == ["would", "rerun"], out
    assert "dry-run: dry run" not in out and "dry run: dry run" not in out
    assert "rerun as run 2" in row


def test_a_plan_and_its_apply_print_the_ids(gateway, tmp_path):
    plan = tmp_path / "plan.json"
    status, planned = client(gateway.url, "--project-id", "48213", "--bizdate", DAY, "--plan", str(plan))
    assert status == 0
    assert f"dry-run                2     {FAILED[0]}, {FAILED[1]}" in planned, planned
    assert f"not-retryable          1     {HELD}" in planned
    status, applied = client(gateway.url, "--apply", str(plan))
    assert status == 0
    assert f"rerun: {FAILED[0]}, {FAILED[1]}" in applied.splitlines(), applied


def test_explain_rule_for_an_instance_without_credentials_says_what_to_set_at_the_terminal():
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "DATAWORKS_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "explain_rule.py"), "--instance", "1000012345678"],
        env={**environment, "DATAWORKS_ENDPOINT": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "with your own AccessKey" in done.stderr and "export ALIBABA_CLOUD_ACCESS_KEY_ID" in done.stderr
    assert "Give the function a role" not in done.stderr


def test_explain_rule_says_where_a_relative_rules_file_is_read(tmp_path):
    (tmp_path / "my-rules.json").write_text((ROOT / "function" / "dwrerun" / "failure_rules.json").read_text())
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "explain_rule.py"), "--check", "--rules", "my-rules.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"give --rules {tmp_path / 'my-rules.json'}" in done.stderr


@pytest.mark.parametrize(
    ("value", "now", "sent"),
    [
        ("yesterday", "2026-12-07T23:30:00+08:00", "2026-12-06"),
        ("yesterday", "2026-12-07T17:30:00+00:00", "2026-12-07"),  # already the 8th in China
        ("today", "2026-12-07T10:00:00+08:00", "2026-12-07"),
        ("2026-11-27", "2026-12-07T10:00:00+08:00", "2026-11-27"),
        ("1795708800000", "2026-12-07T10:00:00+08:00", 1795708800000),
    ],
)
def test_bizdate_yesterday_is_the_day_before_today_in_china_time(value, now, sent):
    assert rerun_client.bizdate(value, now=datetime.fromisoformat(now).timestamp()) == sent


def test_make_serve_on_a_port_in_use_says_so_and_how_to_take_free_ones(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo.py"),
                "--serve",
                "--port",
                str(port),
                "--logs",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} is in use" in done.stderr and "--port 0" in done.stderr
