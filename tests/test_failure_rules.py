"""Failure-aware reruns end to end: events and HTTP requests through the FC harness, against the
DataWorks emulator over real HTTP, with the failed run's log served per instance and per run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    failure_event,
    instance_records,
    make_function,
    reruns,
    sample,
    seed_failed,
)
from localcloud.gateway import HttpGateway

LOGS = Path(__file__).parent / "logs"
GET, LOG, RERUN = "GetTaskInstance", "GetTaskInstanceLog", "RerunTaskInstances"
OTHER_ID = FAILED_ID + 1


def log(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


def seed_with_log(dataworks, name: str, instance_id: int = FAILED_ID, task_type: str = "ODPS_SQL", **fields):
    seed_failed(dataworks, instance_id, task_type=task_type, **fields)
    dataworks.backend.set_log(instance_id, fields.get("run_number", 1), log(name))


def deliver(fn, *instance_ids: int):
    events = [failure_event(i) for i in instance_ids or (FAILED_ID,)]
    return fn.invoke(json.dumps(events if len(events) > 1 else events[0]).encode())


def record_for(invocation, instance_id: int = FAILED_ID) -> dict:
    (record,) = [r for r in instance_records(invocation) if r["instanceId"] == instance_id]
    return record


def actions(dataworks) -> list[str]:
    return [e.action for e in dataworks.journal]


@pytest.fixture
def fn(dataworks, tmp_path):
    with make_function(dataworks, tmp_path) as function:
        yield function


# --- the event path: the rules decide ----------------------------------------------------------


def test_a_failure_a_rerun_cannot_fix_is_skipped_and_stays_failure(dataworks, fn):
    # GIVEN an ODPS SQL instance whose run failed on a table that does not exist
    seed_with_log(dataworks, "odps_sql_table_not_found.log")
    # WHEN its failure event arrives
    inv = deliver(fn)
    # THEN it is not rerun, and the record names the rule and the line
    assert inv.error is None
    record = record_for(inv)
    assert (record["decision"], record["reason"], record["success"]) == ("skip", "not-retryable", None)
    assert (record["rule"], record["failureClass"]) == ("maxcompute-table-not-found", "not-retryable")
    assert record["matchedLine"].startswith("FAILED: ODPS-0130131:[10,11] Table not found")
    assert "'maxcompute-table-not-found'" in record["message"] and "stays Failure" in record["message"]
    assert reruns(dataworks) == [] and dataworks.backend.instance(FAILED_ID).status == "Failure"
    # AND the failed run's log was read once, by its RunNumber
    (read,) = dataworks.journal.calls(LOG)
    assert read.params == {"Id": str(FAILED_ID), "RunNumber": "1"}


def test_a_retryable_failure_is_rerun_in_four_calls_three_once_the_nodes_settings_are_cached(dataworks, fn):
    seed_with_log(dataworks, "odps_sql_resource_wait.log")
    inv = deliver(fn)
    record = record_for(inv)
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", True, "eligible")
    assert (record["rule"], record["failureClass"]) == ("maxcompute-resource-wait", "retryable")
    assert "AllOrNothingResourceWaitTimeout" in record["matchedLine"]
    # The API calls of one failure event: the instance, the node's own rerun settings (GetTask,
    # cached per task), the failed run's log, the rerun.
    assert actions(dataworks) == [GET, "GetTask", LOG, RERUN]
    assert record["attempts"] == 4


def test_a_failure_no_rule_knows_takes_the_default(dataworks, fn):
    seed_with_log(dataworks, "odps_sql_unknown_with_noise.log")
    record = record_for(deliver(fn))
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert (record["rule"], record["failureClass"], record["matchedLine"]) == ("default", "unknown", None)


def test_the_default_can_be_skip(dataworks, tmp_path):
    seed_with_log(dataworks, "shell_unknown_exit.log", task_type="DIDE_SHELL")
    with make_function(dataworks, tmp_path, RERUN_RULES_DEFAULT="skip") as fn:
        record = record_for(deliver(fn))
    assert (record["decision"], record["reason"], record["rule"]) == ("skip", "not-retryable", "default")
    assert "RERUN_RULES_DEFAULT is skip" in record["message"]
    assert reruns(dataworks) == []


def test_the_log_of_the_failed_run_is_read_not_the_latest_default(dataworks, fn):
    # GIVEN run 1 failed on a missing table, and run 2 (the failed one now) on the resource quota
    seed_with_log(dataworks, "odps_sql_resource_wait.log", run_number=2)
    dataworks.backend.set_log(FAILED_ID, 1, log("odps_sql_table_not_found.log"))
    record = record_for(deliver(fn))
    # THEN run 2's log decides: rerun
    assert (record["rule"], record["decision"]) == ("maxcompute-resource-wait", "rerun")
    (read,) = dataworks.journal.calls(LOG)
    assert read.params["RunNumber"] == "2"


@pytest.mark.parametrize(("run", "decision", "reason"), [(1, "rerun", "eligible"), (2, "skip", "cap-reached")])
def test_a_rules_own_cap_holds_below_rerun_max_reruns(dataworks, fn, run, decision, reason):
    # shell-killed-oom allows 1 rerun; RERUN_MAX_RERUNS is 3
    seed_with_log(dataworks, "shell_oom_killed.log", task_type="DIDE_SHELL", run_number=run)
    record = record_for(deliver(fn))
    assert (record["decision"], record["reason"], record["rule"]) == (decision, reason, "shell-killed-oom")
    if reason == "cap-reached":
        assert "1 rerun(s) failure rule 'shell-killed-oom' allows" in record["message"]


def test_a_rules_cap_never_exceeds_rerun_max_reruns(dataworks, tmp_path):
    # maxcompute-resource-wait allows 2 reruns; with RERUN_MAX_RERUNS=1 run 2 is the last
    seed_with_log(dataworks, "odps_sql_resource_wait.log", run_number=2)
    with make_function(dataworks, tmp_path, RERUN_MAX_RERUNS="1") as fn:
        record = record_for(deliver(fn))
    assert (record["decision"], record["reason"]) == ("skip", "cap-reached")
    assert record["rule"] is None  # the guard held it back before any log was read
    assert dataworks.journal.calls(LOG) == []


def test_rules_are_matched_for_the_instances_task_type(dataworks, fn):
    # A Python traceback in an ODPS SQL node's log: the Python rules do not apply to ODPS_SQL
    seed_with_log(dataworks, "pyodps_missing_module.log", task_type="ODPS_SQL")
    seed_with_log(dataworks, "pyodps_missing_module.log", OTHER_ID, task_type="PYODPS3")
    inv = deliver(fn, FAILED_ID, OTHER_ID)
    assert record_for(inv)["rule"] == "default"
    assert record_for(inv, OTHER_ID)["rule"] == "python-missing-module"


def test_guards_come_first_and_cost_no_log_read(dataworks, fn):
    seed_with_log(dataworks, "odps_sql_table_not_found.log", rerun_mode="AllDenied")
    record = record_for(deliver(fn))
    assert (record["reason"], record["rule"], record["failureClass"]) == ("rerun-denied", None, None)
    assert actions(dataworks) == [GET]


def test_reading_logs_can_be_turned_off(dataworks, tmp_path):
    seed_with_log(dataworks, "odps_sql_table_not_found.log")
    with make_function(dataworks, tmp_path, RERUN_READ_LOGS="false", RERUN_RULES_DEFAULT="skip") as fn:
        record = record_for(deliver(fn))
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert (record["rule"], record["failureClass"]) == (None, "unknown")
    assert "RERUN_READ_LOGS is false" in record["message"]
    assert actions(dataworks) == [GET, "GetTask", RERUN]


def test_a_dry_run_records_what_the_rules_say(dataworks, tmp_path):
    seed_with_log(dataworks, "odps_sql_syntax_error.log")
    seed_with_log(dataworks, "odps_sql_internal_error.log", OTHER_ID)
    with make_function(dataworks, tmp_path, RERUN_DRY_RUN="true") as fn:
        inv = deliver(fn, FAILED_ID, OTHER_ID)
    skipped, would = record_for(inv), record_for(inv, OTHER_ID)
    assert (skipped["decision"], skipped["rule"]) == ("skip", "maxcompute-syntax-error")
    assert (would["decision"], would["rule"], would["failureClass"]) == (
        "dry-run",
        "maxcompute-internal-error",
        "retryable",
    )
    assert reruns(dataworks) == []


def test_each_instance_and_run_is_read_once_though_the_rerun_is_retried(dataworks, fn):
    # GIVEN a rerun call whose answer is lost twice (nothing carried out): the loop reads the
    # instance again before each resend, but the log of the same run is not read again
    seed_with_log(dataworks, "odps_sql_internal_error.log")
    dataworks.faults.set(RERUN, reset=2)
    record = record_for(deliver(fn))
    assert (record["decision"], record["success"], record["rule"]) == ("rerun", True, "maxcompute-internal-error")
    assert actions(dataworks).count(GET) == 3 and actions(dataworks).count(LOG) == 1


def test_a_secret_in_the_log_never_leaves_the_function(dataworks, fn):
    # GIVEN logs holding the test credentials' secret and token (a JDBC URL, a password= parameter,
    # an API key, a Bearer header), one of them on the very line the rule matches
    seed_with_log(dataworks, "di_access_denied.log", task_type="DI")
    seed_with_log(dataworks, "di_connection_refused.log", OTHER_ID, task_type="DI")
    seed_with_log(dataworks, "shell_network_error.log", OTHER_ID + 1, task_type="DIDE_SHELL")
    seed_with_log(dataworks, "pyodps_network_error.log", OTHER_ID + 2, task_type="PYODPS3")
    assert CREDS.security_token in log("di_access_denied.log")
    inv = deliver(fn, FAILED_ID, OTHER_ID, OTHER_ID + 1, OTHER_ID + 2)
    # THEN the matched line is shown with the secret masked, and nothing else of the logs is
    # (tests/secrets_audit.py checks every line FC saw, the result and the Logstore file too)
    denied = record_for(inv)
    assert denied["rule"] == "di-access-denied" and "(using password: ***)" in denied["matchedLine"]
    output = "\n".join(inv.stdout + inv.stderr) + json.dumps(inv.result)
    for secret in (CREDS.access_key_secret, CREDS.security_token):
        assert secret not in output
    assert "Exec Gateway" not in output and "Detail log url" not in output  # the rest of the log never


# --- a bad rules file ----------------------------------------------------------------------------


BAD_RULES = {"rules": [{"name": "odps-quota", "source": "https://x", "patterns": ["ODPS-(0010000"], "action": "rerun"}]}


def test_a_bad_rules_file_skips_every_instance_with_config_error_and_returns(dataworks, tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps(BAD_RULES))
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    with make_function(dataworks, tmp_path, RERUN_RULES_FILE=str(bad)) as fn:
        success = sample("dataworks-instance-succeeded.json")
        success["data"]["taskId"] = 42
        inv = fn.invoke(json.dumps([failure_event(FAILED_ID), failure_event(OTHER_ID), success]).encode())
    # THEN the invocation returns normally (retrying cannot fix a file), nothing is rerun or even
    # read, and every failure has a record naming the rule and the problem
    assert inv.error is None and inv.result["outcome"] == "done"
    for instance_id in (FAILED_ID, OTHER_ID):
        record = record_for(inv, instance_id)
        assert (record["decision"], record["reason"]) == ("skip", "config-error")
        assert (
            'rule 1 "odps-quota": patterns[0]' in record["message"]
            and "not a valid regular expression" in record["message"]
        )
    assert [r["reason"] for r in instance_records(inv)].count("not-a-failure") == 1
    assert len(dataworks.journal) == 0


def test_with_logs_off_the_rules_file_is_not_even_read(dataworks, tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps(BAD_RULES))
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, RERUN_RULES_FILE=str(bad), RERUN_READ_LOGS="false") as fn:
        record = record_for(deliver(fn))
    assert (record["decision"], record["success"], record["failureClass"]) == ("rerun", True, "unknown")


# --- the HTTP path: an operator's rerun is not held back; a dry run explains ----------------------


@pytest.fixture
def gateway(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, handler="index.handle_http") as http_fn, HttpGateway(http_fn) as gw:
        yield gw


def post(gateway, body: dict):
    request = urllib.request.Request(
        gateway.url + "/rerun",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_manual_rerun_is_not_held_back_by_rules_and_reads_no_log(dataworks, gateway):
    seed_with_log(dataworks, "odps_sql_table_not_found.log")
    status, answer = post(gateway, {"Ids": [FAILED_ID], "Comment": "table created, rerun"})
    assert status == 200 and answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert "Explain" not in answer
    assert actions(dataworks) == [GET, RERUN]  # the Basic edition's budget: no log read for a rerun


def test_a_dry_run_explains_per_id_which_rule_matches(dataworks, gateway):
    seed_with_log(dataworks, "odps_sql_table_not_found.log")
    seed_with_log(dataworks, "di_tunnel_flow_exceeded.log", OTHER_ID, task_type="DI")
    seed_failed(dataworks, OTHER_ID + 1, status="Running")
    status, answer = post(gateway, {"Ids": [FAILED_ID, OTHER_ID, OTHER_ID + 1], "DryRun": True})
    assert status == 200 and answer["DryRun"] is True and answer["SuccessInfo"] == {}
    explain = answer["Explain"]
    assert explain[str(FAILED_ID)]["Rule"] == "maxcompute-table-not-found"
    assert explain[str(FAILED_ID)]["FailureClass"] == "not-retryable"
    assert explain[str(FAILED_ID)]["MatchedLine"].startswith("FAILED: ODPS-0130131")
    assert explain[str(OTHER_ID)]["Rule"] == "tunnel-flow-control"
    assert str(OTHER_ID + 1) not in explain  # not finished: no log looked at
    # The dry run shows what a rerun would do: it would go ahead, rules notwithstanding
    assert answer["Skipped"][str(FAILED_ID)] == (
        "dry-run: dry run: run 1 Failure: rerun as run 2; failure rule 'maxcompute-table-not-found' matched line "
        "25 of the log of run 1: ODPS-0130131 Table not found: the table does not exist (or is not visible to the "
        "account). (rules never hold back a manual rerun)"
    )
    assert reruns(dataworks) == []
    assert sorted(e.params["RunNumber"] for e in dataworks.journal.calls(LOG)) == ["1", "1"]


def test_a_bad_rules_file_answers_500_naming_the_problem(dataworks, tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text('{"rules": [{"name": "x", "source": "https://x", "patterns": ["a\\d"], "action": "skip"}]}')
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_RULES_FILE=str(bad)) as http_fn:
        with HttpGateway(http_fn) as gw:
            status, answer = post(gw, {"Ids": [FAILED_ID], "DryRun": True})
    assert status == 500 and answer["Code"] == "InvalidConfiguration"
    assert "not valid JSON" in answer["Message"] and "a backslash is written twice" in answer["Message"]
    assert len(dataworks.journal) == 0
