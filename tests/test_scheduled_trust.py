"""A scheduled rerun's payload earns trust only by its signature (issue 24, item 3).

The event function receives its own delayed invocations (schedule.py). Anyone allowed
`fc:InvokeFunction` on it can send one too, so a payload is trusted (the rules, DataWorks' own
rerun and the delay taken as settled when it was scheduled) only when RERUN_SIGNING_KEY signed it.
Any other is decided as a failure event for the instance it names, and its record says
`trusted: false`. Through FC's harness (in this process) against the emulator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import FAILED_ID, instance_records, make_function, reruns, seed_failed, waiting_queue
from dwrerun import schedule

KEY = "scheduled-rerun-test-key-0123456789abcdef"
LOGS = Path(__file__).parent / "logs"
LONG_AGO = 1_700_000_000_000  # the failed run's FinishedTime: far longer ago than any delay


def table_not_found(dataworks, finished_time=LONG_AGO) -> None:
    """FAILED_ID failed at run 1 for a reason the shipped rules hold back (a missing table)."""
    seed_failed(dataworks, task_type="ODPS_SQL", finished_time=finished_time, started_time=finished_time - 63_000)
    dataworks.backend.set_log(FAILED_ID, 1, (LOGS / "odps_sql_table_not_found.log").read_text())


def payload(key: str | None, **changes) -> bytes:
    scheduled = schedule.ScheduledRerun(FAILED_ID, 1, "2026-11-28T02:10:00Z", "evt-forged", "network-reset-or-timeout")
    body = json.loads(scheduled.to_payload(key))
    body["scheduledRerun"].update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key-set", "key-set"])
def test_an_unsigned_scheduled_rerun_is_decided_as_a_failure_event_and_says_it_was_not_trusted(
    dataworks, tmp_path, key
):
    # GIVEN a failure the rules hold back, and a payload nobody signed naming a retryable rule
    table_not_found(dataworks)
    env = {"RERUN_BACKOFF_BASE_SECONDS": "120"} | ({"RERUN_SIGNING_KEY": key} if key else {})
    with make_function(dataworks, tmp_path, **env) as fn:
        (record,) = instance_records(fn.invoke(payload(None)))
    # THEN the rules decide, as for a failure event: nothing is rerun, and the record names the
    # rule that matched the log, not the one the payload claimed
    assert reruns(dataworks) == []
    assert (record["decision"], record["reason"], record["rule"]) == (
        "skip",
        "not-retryable",
        "maxcompute-table-not-found",
    )
    assert record["trusted"] is False
    assert record["message"].startswith("not trusted (a scheduled rerun without a valid signature")
    # DataWorks' own rerun is asked (GetTask) and the log read, as for a failure event
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "GetTaskInstanceLog"]


def test_an_altered_scheduled_rerun_is_not_trusted(dataworks, tmp_path):
    table_not_found(dataworks)
    altered = payload(KEY, rule="some-other-rule")  # signed, then changed
    with make_function(dataworks, tmp_path, RERUN_BACKOFF_BASE_SECONDS="120", RERUN_SIGNING_KEY=KEY) as fn:
        (record,) = instance_records(fn.invoke(altered))
    assert (record["reason"], record["rule"], record["trusted"]) == (
        "not-retryable",
        "maxcompute-table-not-found",
        False,
    )
    assert reruns(dataworks) == []


def test_a_signed_scheduled_rerun_is_trusted_and_reruns_without_reading_the_log_again(dataworks, tmp_path):
    table_not_found(dataworks)  # the log changed since: the rule decided when it was scheduled
    with make_function(dataworks, tmp_path, RERUN_BACKOFF_BASE_SECONDS="120", RERUN_SIGNING_KEY=KEY) as fn:
        (record,) = instance_records(fn.invoke(payload(KEY)))
    assert (record["decision"], record["success"], record["rule"], record["trusted"]) == (
        "rerun",
        True,
        "network-reset-or-timeout",
        True,
    )
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "RerunTaskInstances"]


def test_without_a_key_a_due_unsigned_rerun_of_a_retryable_failure_reruns_once_its_delay_has_passed(
    dataworks, tmp_path
):
    # GIVEN a deployment without RERUN_SIGNING_KEY: its own delayed invocations are unsigned. The
    # failed run ended long before the shortest delay the schedule gives run 1 (60 s at base 120)
    seed_failed(dataworks, finished_time=LONG_AGO, started_time=LONG_AGO - 63_000)
    with make_function(dataworks, tmp_path, RERUN_BACKOFF_BASE_SECONDS="120") as fn:
        (record,) = instance_records(fn.invoke(payload(None)))
    # THEN it is decided as a failure event, whose delay DataWorks' FinishedTime shows has passed
    assert (record["decision"], record["success"], record["trusted"]) == ("rerun", True, False)
    assert record["asyncTaskId"] == f"dwrerun-{FAILED_ID}-run-1"
    assert len(reruns(dataworks)) == 1


def test_an_unsigned_rerun_of_a_failure_whose_rule_asks_a_longer_wait_waits_that_long(dataworks, tmp_path):
    # GIVEN a failed run that ended 200 s ago, past the schedule's shortest delay for run 1 (60 s at
    # base 120) but not past its rule's: MaxCompute's resource wait asks at least 600 s
    ended = int(time.time() * 1000) - 200_000
    seed_failed(dataworks, task_type="ODPS_SQL", finished_time=ended, started_time=ended - 63_000)
    dataworks.backend.set_log(FAILED_ID, 1, (LOGS / "odps_sql_resource_wait.log").read_text())
    # (the function's own queue on the local FC OpenAPI, on a clock that never moves: nothing runs)
    with waiting_queue(time.time()) as (api, _):
        env = {"RERUN_BACKOFF_BASE_SECONDS": "120", "FUNCTION_COMPUTE_ENDPOINT": api.url}
        with make_function(dataworks, tmp_path, **env) as fn:
            (record,) = instance_records(fn.invoke(payload(None)))
    # THEN decided as a failure event, DataWorks' FinishedTime says the rule's wait has not passed:
    # it is scheduled again, at least the rule's delay on, not rerun now
    assert (record["decision"], record["rule"], record["trusted"]) == ("scheduled", "maxcompute-resource-wait", False)
    assert record["delaySeconds"] >= 600 and reruns(dataworks) == []
