"""DataWorks' quota as the function meets it, against the emulator over real HTTP.

- The rate limits are shared with every other client of the account: with a neighbour using most
  of them, the function slows down (adaptive pacing), nothing is lost and nothing runs twice.
- The daily call limit (Throttling.Api.Risk) and the edition's quota (Throttling.Resource) do not
  clear within minutes: never retried, in the invocation or by FC; recorded `quota-exhausted`;
  the HTTP function answers 429 naming the limit.

Time is the seam here: the function's `pacing.clock`/`sleep` and the emulator's quota clock are
one fake clock, so the quota's one-second windows are exact and no test waits. Assertions are on
counts, never on time.
"""

from __future__ import annotations

import json

import pytest

from conftest import FAILED_ID, failure_event, install_fake_clock, instance_records, make_function, seed_failed
from localcloud.eventbridge import EventBridge
from localcloud.gateway import HttpGateway

GET = "GetTaskInstance"
RERUN = "RerunTaskInstances"
OTHER_ID = FAILED_ID + 1


@pytest.fixture
def fake_time(dataworks, mocker):
    """One fake clock for the function's pacing and the emulator's quota; sleeping moves it."""
    from dwrerun import pacing

    clock = install_fake_clock(mocker, start=1_767_225_600.0)  # 2026-01-01 08:00 China time
    mocker.patch.object(pacing, "uniform", lambda low, high: (low + high) / 2)  # the jitter's seam
    dataworks.quota_clock = clock.now
    return clock


def records_for(attempts, instance_id):
    return [r for a in attempts for r in instance_records(a) if r["instanceId"] == instance_id]


# --- adaptive pacing under a neighbour --------------------------------------------------------------


def test_a_neighbour_using_most_of_the_write_quota_slows_the_function_and_nothing_is_lost(
    dataworks, tmp_path, fake_time
):
    # GIVEN 10 writes/s for the account, 60% of them used by a neighbour all the time: 4 left,
    # while the function is configured for 9 (it cannot know about the neighbour)
    events = 60
    ids = [FAILED_ID + n for n in range(events)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    dataworks.quota(read_qps=50, write_qps=10, neighbour=0.6)
    # WHEN a failure event for each arrives, one after the other, on one warm instance
    with make_function(dataworks, tmp_path, DATAWORKS_READ_QPS="45", DATAWORKS_WRITE_QPS="9") as fn:
        bridge = EventBridge(fn)
        attempts = {instance_id: bridge.publish(failure_event(instance_id)) for instance_id in ids}
        from dwrerun import pacing

        write_rate = pacing.limiter("write", 9.0).rate
    # THEN every instance was rerun exactly once, with a final record saying so
    for instance_id in ids:
        assert dataworks.backend.instance(instance_id).run_number == 2
        assert attempts[instance_id][-1].error is None
        final = records_for(attempts[instance_id], instance_id)[-1]
        assert (final["decision"], final["success"]) == ("rerun", True)
    writes = [e for e in dataworks.journal.entries() if e.action == RERUN]
    assert sum(1 for e in writes if e.status == 200) == events  # nothing ran twice
    # AND the function was throttled at first, then less and less once it had slowed down
    throttled = [e.code == "Throttling.User" for e in writes]
    third = len(throttled) // 3
    first, last = sum(throttled[:third]), sum(throttled[-third:])
    print(f"write calls {len(writes)}, throttled {sum(throttled)}: first third {first}, last third {last}")
    assert first >= 2 and last < first
    assert sum(throttled) < events / 4  # an unadapted 9/s against 4/s would be throttled about half the time
    assert write_rate < 9.0  # the instance runs below its configured rate while the neighbour is there
    assert dataworks.journal.count(code="Throttling.User", action=GET) == 0


@pytest.mark.parametrize(("action", "slowed", "other"), [(GET, "read", "write"), (RERUN, "write", "read")])
def test_a_throttled_call_slows_its_kinds_limiter_which_recovers_as_calls_pass(
    dataworks, tmp_path, fake_time, action, slowed, other
):
    seed_failed(dataworks)
    dataworks.faults.set(action, throttle=1)
    rates = {"read": 20.0, "write": 10.0}
    with make_function(dataworks, tmp_path, DATAWORKS_READ_QPS="20", DATAWORKS_WRITE_QPS="10") as fn:
        (attempt,) = EventBridge(fn).publish(failure_event(FAILED_ID))
        from dwrerun import pacing

        limiters = {kind: pacing.limiter(kind, rate) for kind, rate in rates.items()}
    # Halved by the throttled call, then one passed call's worth of recovery.
    assert rates[slowed] / 2 < limiters[slowed].rate < rates[slowed] / 2 + 0.2
    assert limiters[other].rate == rates[other]  # metered apart: not slowed
    assert instance_records(attempt)[0]["success"] is True


# --- the daily limit and the edition's quota: never retried ---------------------------------------


def test_the_daily_limit_on_a_rerun_is_recorded_and_not_retried_by_the_invocation_or_fc(dataworks, event_function):
    # GIVEN two calls left today: the reads (GetTaskInstance, GetTask) pass, the rerun meets the limit
    seed_failed(dataworks)
    dataworks.quota(daily_limit=3)  # GetTaskInstance, GetTask, GetTaskInstanceLog; the rerun is refused
    attempts = EventBridge(event_function).publish(failure_event(FAILED_ID))
    # THEN one attempt, returned normally (FC does not retry), the instance skipped with the code
    (attempt,) = attempts
    assert attempt.error is None
    (record,) = instance_records(attempt)
    assert (record["decision"], record["reason"], record["errorCode"]) == (
        "skip",
        "quota-exhausted",
        "Throttling.Api.Risk",
    )
    assert "daily limit" in record["message"] and "not retried" in record["message"]
    assert attempt.records[-1]["outcome"] == "quota-exhausted"
    # AND no call was repeated: the reads, one refused rerun
    assert [(e.action, e.code) for e in dataworks.journal] == [
        (GET, None),
        ("GetTask", None),
        ("GetTaskInstanceLog", None),
        (RERUN, "Throttling.Api.Risk"),
    ]
    assert dataworks.backend.instance(FAILED_ID).run_number == 1


def test_an_exhausted_edition_quota_ends_a_batch_at_once_with_a_record_for_each(dataworks, event_function):
    ids = [FAILED_ID + n for n in range(12)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    dataworks.quota(edition_exhausted=True)
    attempt = event_function.invoke(json.dumps([failure_event(i) for i in ids]).encode())
    assert attempt.error is None
    by_id = {r["instanceId"]: r for r in instance_records(attempt)}
    assert set(by_id) == set(ids)
    for record in by_id.values():
        assert (record["reason"], record["errorCode"]) == ("quota-exhausted", "Throttling.Resource")
        assert "edition" in record["message"]
    # Calls already in flight when the first refusal came back may be refused too; none is retried,
    # and once the refusal is seen no new call starts.
    assert len(dataworks.journal) <= 8 and dataworks.journal.count(action=RERUN) == 0
    assert all(e.code == "Throttling.Resource" for e in dataworks.journal)


def test_a_rerun_whose_answer_was_lost_and_then_the_daily_limit_says_it_may_have_happened(dataworks, event_function):
    seed_failed(dataworks)
    # the reads (GetTaskInstance, GetTask, the log), the rerun (carried out, answer lost); the re-read
    # is refused
    dataworks.quota(daily_limit=4)
    dataworks.faults.set(RERUN, reset=1, after_backend=True)
    (attempt,) = EventBridge(event_function).publish(failure_event(FAILED_ID))
    assert attempt.error is None
    (record,) = instance_records(attempt)
    assert record["reason"] == "quota-exhausted"
    assert "A rerun request may have reached DataWorks" in record["message"]
    assert dataworks.journal.count(action=RERUN) == 1


def test_a_refusal_read_back_under_the_daily_limit_stays_a_refusal(dataworks, event_function):
    # DataWorks refused the rerun; the read meant to explain it meets the daily limit: the
    # refusal, which is known, is recorded, not a quota skip.
    seed_failed(dataworks)
    dataworks.quota(daily_limit=4)  # GetTaskInstance, GetTask, the log, the refused rerun; the read-back is refused
    dataworks.faults.set(RERUN, partial_failure={FAILED_ID: "Instance is locked by another operation."})
    (attempt,) = EventBridge(event_function).publish(failure_event(FAILED_ID))
    (record,) = instance_records(attempt)
    assert (record["decision"], record["success"], record["reason"]) == ("rerun", False, "eligible")
    assert record["message"] == "Instance is locked by another operation."


def http_post(gateway, ids):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        gateway.url + "/rerun", data=json.dumps({"Ids": ids}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.mark.parametrize(
    ("quota", "code", "words", "reruns_sent"),
    [
        # Both reads pass; the first of two rerun chunks meets the limit, the second is not sent.
        ({"daily_limit": 2}, "Throttling.Api.Risk", "daily limit", 1),
        # One read passes, the other meets the limit: no rerun is sent for the one that passed.
        ({"daily_limit": 1}, "Throttling.Api.Risk", "daily limit", 0),
        ({"edition_exhausted": True}, "Throttling.Resource", "edition's quota", 0),
    ],
)
def test_the_http_function_answers_429_naming_the_limit_without_a_short_retry_after(
    dataworks, tmp_path, quota, code, words, reruns_sent
):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.quota(**quota)
    with (
        make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_CHUNK_SIZE="1") as fn,
        HttpGateway(fn) as gateway,
    ):
        status, headers, answer = http_post(gateway, [FAILED_ID, OTHER_ID])
    assert (status, answer["Code"]) == (429, "QuotaExhausted")
    assert words in answer["Message"] and code in answer["Message"] and "within minutes" in answer["Message"]
    assert "Retry-After" not in headers
    assert answer["SuccessInfo"] == {}
    assert {k: v.split(":")[0] for k, v in answer["Skipped"].items()} == {
        str(FAILED_ID): "quota-exhausted",
        str(OTHER_ID): "quota-exhausted",
    }
    assert dataworks.journal.count(action=RERUN) == reruns_sent  # never retried, nothing sent after the limit
    assert gateway.invocations[-1].records[-1]["outcome"] == "quota-exhausted"


def test_a_request_after_the_limit_cleared_goes_through(dataworks, tmp_path):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.quota(daily_limit=2)  # two reads use the day's budget; the rerun is refused
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn, HttpGateway(fn) as gateway:
        assert http_post(gateway, [FAILED_ID, OTHER_ID])[0] == 429
        dataworks.new_day()
        status, _, answer = http_post(gateway, [FAILED_ID])
    assert status == 200 and answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True
