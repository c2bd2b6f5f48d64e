"""scripts/explain_rule.py, the operator's command, run as an operator runs it: a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CREDS, FAILED_ID, ROOT, seed_failed

SCRIPT = ROOT / "scripts" / "explain_rule.py"
LOGS = Path(__file__).parent / "logs"


def explain(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RERUN_", "DATAWORKS_", "ALIBABA_CLOUD_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_log_file_is_explained_with_the_rule_the_line_and_the_noise_passed_over():
    done = explain(str(LOGS / "odps_sql_table_not_found.log"), "--task-type", "ODPS_SQL")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "verdict:     rule 'maxcompute-table-not-found' -> skip (not-retryable)" in out
    assert "line 25:     FAILED: ODPS-0130131:[10,11] Table not found" in out
    assert "source:      https://" in out
    assert "line 10: maxcompute-table-not-found - a comment line" in out  # the SQL comment quoting the code
    assert "Exec Gateway" not in out  # the log itself is never printed


def test_json_output_for_tools_and_the_default_when_nothing_matches():
    done = explain(str(LOGS / "shell_unknown_exit.log"), "--task-type", "DIDE_SHELL", "--json")
    report = json.loads(done.stdout)
    assert (report["rule"], report["action"], report["failureClass"]) == ("default", "rerun", "unknown")
    assert report["matchedLine"] is None and report["lines"] == 15
    skip = explain("-", "--json", env={"RERUN_RULES_DEFAULT": "skip"}, stdin="something odd happened\n")
    assert json.loads(skip.stdout)["action"] == "skip"


def test_a_secret_on_the_matched_line_is_shown_redacted():
    done = explain(str(LOGS / "di_access_denied.log"), "--task-type", "DI", "--json")
    report = json.loads(done.stdout)
    assert report["rule"] == "di-access-denied" and "(using password: ***)" in report["matchedLine"]
    assert CREDS.security_token not in done.stdout + done.stderr


def test_a_new_rule_is_tried_from_its_own_file(tmp_path):
    # GIVEN an operator's rule for their own script's exit code, limited to shell nodes
    rules_file = tmp_path / "rules.json"
    rule = {
        "name": "upstream-marker-missing",
        "source": "https://wiki.example.com/check_upstream_ready",
        "taskTypes": ["DIDE_SHELL"],
        "patterns": [r"marker \S+ not found; upstream has not finished"],
        "action": "rerun",
        "delaySeconds": 1800,
        "maxReruns": 2,
    }
    rules_file.write_text(json.dumps({"rules": [rule]}))
    log = str(LOGS / "shell_unknown_exit.log")
    # THEN it matches for a shell node, and not for another type
    shell = explain(log, "--rules", str(rules_file), "--task-type", "DIDE_SHELL")
    assert (
        "rule 'upstream-marker-missing' -> rerun (retryable): a rerun can fix it; at most 2 rerun(s), wait 1800 s"
        in (shell.stdout)
    )
    other = explain(log, "--rules", str(rules_file), "--task-type", "ODPS_SQL")
    assert "no rule matched" in other.stdout and "not for this task type: upstream-marker-missing" in other.stdout


def test_a_bad_rules_file_exits_1_naming_the_rule_and_the_problem(tmp_path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": [{"name": "x", "source": "s", "patterns": ["a|"], "action": "skip"}]}))
    done = explain("--check", "--rules", str(rules_file))
    assert done.returncode == 1 and done.stdout == ""
    assert "rule 1 \"x\": patterns[0] 'a|' matches an empty line" in done.stderr
    assert explain("--check").stdout.strip().endswith("rules, valid")


def test_usage_errors_exit_2():
    assert explain(str(LOGS / "no-such.log")).returncode == 2
    assert explain("--run", "2", str(LOGS / "shell_unknown_exit.log")).returncode == 2
    no_credentials = explain("--instance", "1", env={"DATAWORKS_ENDPOINT": "http://127.0.0.1:9"})
    assert no_credentials.returncode == 2 and "ALIBABA_CLOUD_ACCESS_KEY_ID" in no_credentials.stderr


@pytest.fixture
def dataworks_env(dataworks):
    return {
        "DATAWORKS_ENDPOINT": dataworks.url,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": CREDS.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CREDS.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": CREDS.security_token,
    }


def test_an_instance_is_explained_from_dataworks_by_its_failed_run(dataworks, dataworks_env):
    # GIVEN an instance on run 2, whose runs failed for different reasons
    seed_failed(dataworks, run_number=2, task_type="DI")
    dataworks.backend.set_log(FAILED_ID, 1, (LOGS / "di_access_denied.log").read_text())
    dataworks.backend.set_log(FAILED_ID, 2, (LOGS / "di_tunnel_flow_exceeded.log").read_text())
    # THEN the current run is read by default, another run when asked, with the TaskType from DataWorks
    current = json.loads(explain("--instance", str(FAILED_ID), "--json", env=dataworks_env).stdout)
    assert (current["rule"], current["run"], current["taskType"]) == ("tunnel-flow-control", 2, "DI")
    first = explain("--instance", str(FAILED_ID), "--run", "1", env=dataworks_env)
    assert "rule 'di-access-denied' -> skip" in first.stdout and f"instance {FAILED_ID} run 1" in first.stdout
    assert [e.params.get("RunNumber") for e in dataworks.journal.calls("GetTaskInstanceLog")] == ["2", "1"]
    assert CREDS.access_key_secret not in first.stdout + first.stderr


def test_an_instance_log_that_cannot_be_read_exits_2_with_dataworks_code(dataworks, dataworks_env):
    seed_failed(dataworks)
    dataworks.backend.remove_log(FAILED_ID, 1)
    done = explain("--instance", str(FAILED_ID), env=dataworks_env)
    assert done.returncode == 2
    assert "DataWorks answered InvalidTaskInstanceLog.NotFound for GetTaskInstanceLog" in done.stderr


def test_check_refuses_a_rules_file_with_an_explosive_pattern_naming_the_rule(tmp_path):
    mine = tmp_path / "mine.json"
    rule = {"name": "slow-one", "source": "https://example.com", "patterns": ["(a+)+$"], "action": "skip"}
    mine.write_text(json.dumps({"rules": [rule]}), encoding="utf-8")
    done = explain("--check", "--rules", str(mine))
    assert done.returncode == 1
    assert 'rule 1 "slow-one": patterns[0]' in done.stderr and "nested unbounded repetition" in done.stderr
