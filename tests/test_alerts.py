"""What template.yml's alert rules fire, evaluated from their own definitions (scripts/alerts.py).

The records come from the function's own record writer, or from the function itself running on
the local FC against the emulator; the rules are read from template.yml, never restated here.
"""

from __future__ import annotations

import json
import time

import pytest

import alerts
import sls_views
from conftest import FAILED_ID, make_instances, seed_failed
from dwrerun import records, schema
from dwrerun.outcome import Origin, Outcome
from dwrerun.schema import Reason
from localcloud import sls
from test_local_sls import NOW, entry, instance

VIEWS = sls_views.load()


def fired(entries, views=VIEWS, now=NOW) -> dict[str, list[alerts.Fired]]:
    by_rule: dict[str, list[alerts.Fired]] = {}
    for alert in alerts.evaluate(entries, views, now=now):
        by_rule.setdefault(alert.rule.name.removeprefix("dwrerun-"), []).append(alert)
    return by_rule


def test_each_cause_fires_its_own_alert_naming_task_instance_run_rule_and_matched_line():
    # GIVEN one record of each cause a person has to handle
    entries = [
        instance("cap-reached", schema.SKIP, None, instance_id=1, run_number=4),
        instance(
            "not-retryable",
            schema.SKIP,
            None,
            instance_id=2,
            task_id=700000004418,
            task_name="dwd_orders_di",
            rule="sql-syntax-error",
            failure_class="not-retryable",
            matched_line="FAILED: ParseException line 3:7 cannot recognize input near 'selec'",
        ),
        instance("eligible", schema.RERUN, False, instance_id=3, message="The instance is frozen."),
        instance("quota-exhausted", schema.SKIP, None, instance_id=4, error_code="Throttling.Api.Risk"),
        instance("config-error", schema.SKIP, None, instance_id=5, message="RERUN_MAX_RERUNS must be an integer"),
        instance("eligible", instance_id=6),  # a rerun that went well: no alert
    ]
    # WHEN the rules are evaluated
    by_rule = fired(entries)
    # THEN each fires once, for its instance
    assert sorted(by_rule) == ["cap-reached", "config-error", "not-retryable", "quota-exhausted", "rerun-refused"]
    assert all(len(alerts_) == 1 for alerts_ in by_rule.values())
    (not_retryable,) = by_rule["not-retryable"]
    desc = not_retryable.annotations["desc"]
    assert desc.startswith(
        "Task dwd_orders_di (id 700000004418), instance 2, run 1: not-retryable (rule sql-syntax-error"
    )
    assert "matched log line: FAILED: ParseException line 3:7 cannot recognize input near 'selec'" in desc
    assert not_retryable.annotations["records"].endswith("message.instanceId: 2")
    assert not_retryable.group == {"taskId": "700000004418", "reason": "not-retryable"}
    (cap,) = by_rule["cap-reached"]
    assert "instance 1, run 4: cap-reached (rule -, error -)" in cap.annotations["desc"]
    assert "rerun-refused" in by_rule["rerun-refused"][0].annotations["desc"]
    assert "The instance is frozen." in by_rule["rerun-refused"][0].annotations["desc"]
    assert "error Throttling.Api.Risk" in by_rule["quota-exhausted"][0].annotations["desc"]
    assert "RERUN_MAX_RERUNS must be an integer" in by_rule["config-error"][0].annotations["desc"]


def test_one_alert_per_task_and_cause_in_the_rules_window():
    entries = [
        instance("cap-reached", schema.SKIP, None, instance_id=1),
        instance("cap-reached", schema.SKIP, None, instance_id=2),  # same task: the same alert
        instance("cap-reached", schema.SKIP, None, instance_id=3, task_id=9, task_name="other"),
        instance("cap-reached", schema.SKIP, None, instance_id=4, age=301),  # before the 5 minutes
    ]
    (first, second) = fired(entries)["cap-reached"]
    assert (first.group["taskId"], first.rows) == ("700000004417", 2)
    assert (second.group["taskId"], second.rows) == ("9", 1)


def test_a_switched_off_alert_is_not_evaluated_and_is_listed_as_off():
    views = sls_views.load(alertCapReached="false")
    entries = [instance("cap-reached", schema.SKIP, None)]
    assert fired(entries, views) == {}
    text = alerts.report(alerts.evaluate(entries, views, now=NOW), views)
    assert "Off in vars: dwrerun-cap-reached" in text and "Alerts these records would fire" in text


def deferred_attempts(count: int, *, then: str | None = None, request_id="1-req-7", age=0) -> list[sls.Entry]:
    """The records of `count` attempts FC made at one invocation that each left the instance deferred."""
    attempts = [
        instance(
            "deferred",
            schema.SKIP,
            None,
            instance_id=7,
            request_id=request_id,
            error_code="ServiceUnavailable",
            message=f"DataWorks kept failing (attempt {n})",
            age=age + 10 * (count - n),
        )
        for n in range(1, count + 1)
    ]
    if then is not None:
        attempts.append(instance(then, instance_id=7, request_id=request_id, age=age))
    return attempts


def test_retries_exhausted_fires_when_every_attempt_of_a_request_left_the_instance_deferred():
    # template.yml's asyncRetries is 3: FC makes 4 attempts
    (alert,) = fired(deferred_attempts(4))["retries-exhausted"]
    desc = alert.annotations["desc"]
    assert "instance 7, run 1: retries-exhausted (rule -, error ServiceUnavailable)" in desc
    assert "FC gave up on request 1-req-7 after 4 attempts; the last: DataWorks kept failing (attempt 4)" in desc
    # fewer attempts: FC has retries left; a later attempt that got through: it recovered
    assert "retries-exhausted" not in fired(deferred_attempts(3))
    assert "retries-exhausted" not in fired(deferred_attempts(4, then="eligible"))
    # the last attempt more than 5 minutes ago: that alert went out then, not again
    assert "retries-exhausted" not in fired(deferred_attempts(4, age=400))


def test_the_retries_exhausted_threshold_is_the_templates_async_retries():
    assert "retries-exhausted" not in fired(deferred_attempts(4), sls_views.load(asyncRetries=4))
    assert "retries-exhausted" in fired(deferred_attempts(5), sls_views.load(asyncRetries=4))
    assert "retries-exhausted" in fired(deferred_attempts(1), sls_views.load(asyncRetries=0))


@pytest.mark.separate_process
def test_fc_giving_up_on_a_real_invocation_fires_the_alert(dataworks, tmp_path):
    # GIVEN DataWorks answering 503 to every read, and the event function as FC runs it with
    # template.yml's asyncRetries (3): an asynchronous invocation gets 4 attempts
    seed_failed(dataworks)
    dataworks.faults.set("GetTaskInstance", server_error=None)
    retries = int(VIEWS.parameters["AsyncRetries"])
    event = json.dumps(_failure()).encode()
    with make_instances(dataworks, tmp_path, reserved_concurrency=1, retries=retries) as fn:
        # WHEN EventBridge delivers the failure and FC retries until it gives up
        handle = fn.invoke_async(event)
        fn.drain()
    assert len(handle.attempts) == retries + 1 and all(a.error for a in handle.attempts)
    # THEN, over the Logstore FC wrote, the rule names the instance, the attempts and the error
    (alert,) = fired(sls.read_logstore(tmp_path), now=time.time())["retries-exhausted"]
    # never read: no task and no run number to name
    assert alert.annotations["desc"].startswith(f"Task - (id -), instance {FAILED_ID}, run -: retries-exhausted")
    assert f"FC gave up on request {handle.request_id} after {retries + 1} attempts" in alert.annotations["desc"]
    assert "ServiceUnavailable" in alert.annotations["desc"]


@pytest.mark.separate_process
def test_an_invocation_fc_retried_once_and_then_finished_does_not_fire(dataworks, tmp_path):
    seed_failed(dataworks)
    dataworks.faults.set("GetTaskInstance", server_error=6)  # the first attempt's 6 reads fail
    with make_instances(dataworks, tmp_path, reserved_concurrency=1, retries=3) as fn:
        handle = fn.invoke_async(json.dumps(_failure()).encode())
        fn.drain()
    assert [bool(a.error) for a in handle.attempts] == [True, False]
    assert "retries-exhausted" not in fired(sls.read_logstore(tmp_path), now=time.time())


def _failure() -> dict:
    from conftest import sample

    return sample("dataworks-instance-failed.json")


@pytest.mark.parametrize("age", [0, 299])
def test_an_alert_on_an_instance_never_read_still_fills_every_column_of_its_text(age):
    # a config-error: nothing was read, so no task, run number, rule or error code
    unread = records.instance_record(
        Outcome(9, schema.SKIP, Reason.CONFIG_ERROR, "no credentials"), Origin(schema.EVENTBRIDGE, "1-req-9")
    )
    (alert,) = fired([entry(unread, age)])["config-error"]
    assert "${" not in alert.annotations["desc"]
    assert alert.annotations["desc"].startswith("Task - (id -), instance 9, run -: config-error (rule -, error -)")
