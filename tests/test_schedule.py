"""schedule.py: the delay, the async task id and the scheduled payload. Pure: randomness and the
clock are replaced at their seams (schedule.uniform, schedule.clock)."""

import json
import random
import statistics
import time

import pytest

from conftest import sample_bytes
from dwrerun import schedule
from dwrerun.schedule import InvalidScheduledRerun, ScheduledRerun, async_task_id, delay_seconds


@pytest.fixture
def lowest(mocker):
    """The jitter at its bottom: every delay is its floor."""
    return mocker.patch.object(schedule, "uniform", side_effect=lambda a, b: a)


@pytest.fixture
def highest(mocker):
    return mocker.patch.object(schedule, "uniform", side_effect=lambda a, b: b)


@pytest.fixture
def seeded(mocker):
    rng = random.Random(20260412)
    return mocker.patch.object(schedule, "uniform", side_effect=rng.uniform)


# --- the delay ---------------------------------------------------------------------------------


def test_a_zero_base_means_rerun_now_whatever_the_run(seeded):
    assert [delay_seconds(run, 0, 1800) for run in range(1, 8)] == [0] * 7


@pytest.mark.parametrize(("run", "floor", "ceiling"), [(1, 60, 120), (2, 120, 240), (3, 240, 480), (4, 480, 960)])
def test_the_delay_doubles_with_each_rerun_and_never_drops_below_half_its_ceiling(lowest, run, floor, ceiling):
    assert delay_seconds(run, 120, 1800) == floor


@pytest.mark.parametrize(("run", "ceiling"), [(1, 120), (2, 240), (3, 480), (4, 960)])
def test_the_delay_never_exceeds_its_ceiling(highest, run, ceiling):
    assert delay_seconds(run, 120, 1800) == ceiling


def test_the_ceiling_stops_at_the_maximum_and_at_fcs_one_hour(lowest):
    assert delay_seconds(5, 120, 1800) == 900  # 120 * 16 = 1920 > 1800: half of 1800
    assert delay_seconds(40, 120, 1800) == 900  # no overflow for absurd run numbers
    assert delay_seconds(9, 120, 99_999) == 1800  # FC allows less than 3600 s: half of 3599, rounded up


def test_a_tiny_ceiling_still_waits_a_second(lowest):
    assert delay_seconds(1, 1, 1) == 1


def test_a_rule_hint_is_the_floor_of_the_first_rerun_and_never_shortened(lowest):
    assert delay_seconds(1, 120, 1800, hint=600) == 600
    assert delay_seconds(1, 0, 1800, hint=600) == 0  # base 0 turns scheduling off, hints included


def test_a_rule_hint_carries_equal_jitter_up_to_twice_the_hint(highest):
    assert delay_seconds(1, 120, 1800, hint=600) == 1200
    assert delay_seconds(1, 120, 1800, hint=60) == 120


def test_a_rule_hint_grows_with_the_run_number_like_the_default_schedule(lowest):
    # The hint is the floor of run 1; each further rerun doubles it, as RERUN_BACKOFF_BASE_SECONDS doubles.
    assert [delay_seconds(run, 120, 1800, hint=60) for run in (1, 2, 3, 4, 5, 6)] == [60, 120, 240, 480, 900, 900]


def test_a_rule_hint_is_capped_by_the_maximum_but_never_below_the_hint(highest, lowest):
    lowest.side_effect = lambda a, b: b  # the top of the jitter
    assert delay_seconds(4, 120, 1800, hint=300) == 1800  # 2 × 300 × 8 = 4800, capped at 1800
    assert delay_seconds(1, 120, 100, hint=600) == 600  # a maximum below the hint: the hint stands
    assert delay_seconds(1, 120, 99_999, hint=5000) == 3599  # FC's x-fc-async-delay is (0, 3600)


def test_forty_failures_of_one_rule_spread_over_at_least_ten_delays(seeded):
    delays = [delay_seconds(1, 120, 1800, hint=60) for _ in range(40)]
    assert min(delays) >= 60 and max(delays) <= 120
    assert len(set(delays)) >= 10


def test_a_rule_hint_under_a_second_still_waits(lowest):
    # Only a hint of 0 (or less) means now: a fraction of a second rounds up to one.
    assert delay_seconds(1, 120, 1800, hint=0.5) == 1
    assert delay_seconds(1, 120, 1800, hint=1) == 1
    assert delay_seconds(3, 120, 1800, hint=1) == 4  # and grows like any hint


def test_a_rule_hint_of_zero_reruns_now(seeded):
    assert delay_seconds(3, 120, 1800, hint=0) == 0


def test_equal_jitter_spreads_a_burst_evenly_between_floor_and_ceiling(seeded):
    # 10 000 first failures with the default schedule (base 120, max 1800), seeded randomness.
    delays = [delay_seconds(1, 120, 1800) for _ in range(10_000)]
    assert min(delays) >= 60 and max(delays) <= 120
    assert 88 <= statistics.mean(delays) <= 92  # uniform over [60, 120]: mean 90
    # Six 10-second buckets from 60 to 120 each hold about a sixth; none is a spike.
    buckets = [0] * 6
    for d in delays:
        buckets[min(5, (d - 60) // 10)] += 1
    assert all(1400 <= b <= 1950 for b in buckets), buckets
    assert len(set(delays)) >= 55  # nearly every whole second between 60 and 120 is used


# --- the async task id -------------------------------------------------------------------------


def test_the_task_id_depends_only_on_the_instance_and_the_failed_run():
    assert async_task_id(1000012345678, 1) == async_task_id(1000012345678, 1) == "dwrerun-1000012345678-run-1"
    assert async_task_id(1000012345678, 2) != async_task_id(1000012345678, 1)
    assert async_task_id(1000012345679, 1) != async_task_id(1000012345678, 1)


@pytest.mark.parametrize(("instance_id", "run"), [(1, 1), (2**63 - 1, 1_000_000), (1000012345678, 3)])
def test_the_task_id_follows_fcs_naming_rule(instance_id, run):
    task_id = async_task_id(instance_id, run)
    assert schedule.TASK_ID_PATTERN.fullmatch(task_id)
    assert task_id[0].isalpha() and len(task_id) <= 128


# --- the payload -------------------------------------------------------------------------------


def test_due_at_is_utc_iso_from_the_clock(mocker):
    mocker.patch.object(schedule, "clock", return_value=1_790_000_000.4)
    assert schedule.due_at(90) == "2026-09-21T14:14:50Z"


def test_a_scheduled_rerun_round_trips_through_its_payload():
    scheduled = ScheduledRerun(1000012345678, 2, "2026-09-21T14:14:50Z", "evt-1", "upstream-not-ready")
    payload = scheduled.to_payload()
    assert schedule.parse(payload) == scheduled
    assert json.loads(payload)["scheduledRerun"]["asyncTaskId"] == "dwrerun-1000012345678-run-2"
    assert len(payload) < 1024  # far below FC's 128 KB for an async body


def test_a_scheduled_rerun_without_event_or_rule_round_trips():
    scheduled = ScheduledRerun(7, 1, "2026-09-21T14:14:50Z")
    assert schedule.parse(scheduled.to_payload().decode()) == scheduled


@pytest.mark.parametrize(
    "name", ["dataworks-instance-failed.json", "dataworks-instance-running.json", "dataworks-workflow-failed.json"]
)
def test_failure_events_are_not_scheduled_reruns(name):
    assert schedule.parse(sample_bytes(name)) is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b'"scheduledRerun"', b'{"other":{"scheduledRerun":1}}'])
def test_other_payloads_are_not_scheduled_reruns(body):
    assert schedule.parse(body) is None


def good() -> dict:
    return json.loads(ScheduledRerun(1000012345678, 2, "2026-09-21T14:14:50Z", "evt-1").to_payload())


def with_field(**changes) -> bytes:
    payload = good()
    for key, value in changes.items():
        if value is ...:
            payload["scheduledRerun"].pop(key)
        else:
            payload["scheduledRerun"][key] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (with_field(instanceId=...), "instanceId"),
        (with_field(instanceId=True), "instanceId"),
        (with_field(instanceId=-1), "instanceId"),
        (with_field(instanceId="1000012345678"), "instanceId"),
        (with_field(instanceId=2**63), "instanceId"),
        (with_field(failedRunNumber=0), "failedRunNumber"),
        (with_field(failedRunNumber=1.5), "failedRunNumber"),
        (with_field(dueAt="tomorrow"), "dueAt"),
        (with_field(dueAt=1790000000), "dueAt"),
        (with_field(eventId="x" * 300), "eventId"),
        (with_field(rule=["a"]), "rule"),
        (with_field(asyncTaskId="dwrerun-1-run-1"), "asyncTaskId"),
        (with_field(asyncTaskId=...), "asyncTaskId"),
        (with_field(force=True), "force"),  # a forged payload cannot ask for more than a recheck
        (with_field(delaySeconds=0), "delaySeconds"),
        (json.dumps({**good(), "data": {}}).encode(), "data"),
        (b'{"scheduledRerun": [1]}', "scheduledRerun"),
    ],
)
def test_a_malformed_scheduled_rerun_is_refused_naming_the_field(body, names):
    with pytest.raises(InvalidScheduledRerun, match=names):
        schedule.parse(body)


# --- exact words and bytes: what a record, FC and the delayed invocation see --------------------


def test_the_payload_is_compact_utf8_json_with_every_field():
    scheduled = ScheduledRerun(7, 2, "2026-09-21T14:14:50Z", "évt-1", "upstream")
    assert (
        scheduled.to_payload()
        == (
            '{"scheduledRerun":{"instanceId":7,"failedRunNumber":2,"eventId":"évt-1","rule":"upstream",'
            '"dueAt":"2026-09-21T14:14:50Z","asyncTaskId":"dwrerun-7-run-2"}}'
        ).encode()
    )


def test_due_at_is_utc_whatever_the_hosts_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        due = schedule.due_at(90, now=1_790_000_000.4)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert due == "2026-09-21T14:14:50Z"


def test_a_task_id_outside_fcs_rule_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^not a valid FC async task id: 'dwrerun-a b-run-1'$"):
        async_task_id("a b", 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"failedRunNumber": 1_000_001}, "failedRunNumber must be a positive integer up to 1000000, got 1000001"),
        ({"instanceId": "x" * 50}, "instanceId must be a positive integer up to 9223372036854775807, got "
         "'" + "x" * 36 + "..."),
        ({"instanceId": "x" * 39}, "instanceId must be a positive integer up to 9223372036854775807, got "
         "'" + "x" * 36 + "..."),  # a repr of 41 characters is cut to 40
        ({"instanceId": "x" * 38}, "instanceId must be a positive integer up to 9223372036854775807, got "
         "'" + "x" * 38 + "'"),
        ({"eventId": ""}, "eventId must be null or a string of 1 to 256 characters"),
        ({"dueAt": "2026-09-21 14:14:50" + "x" * 40}, "dueAt must be a UTC time like 2026-11-28T02:10:00Z, got "
         "'2026-09-21 14:14:50xxxxxxxxxxxxxxxxxxxxx'"),
    ],
)  # fmt: skip
def test_a_malformed_field_is_named_with_its_value_cut_short(changes, message):
    with pytest.raises(InvalidScheduledRerun) as caught:
        schedule.parse(with_field(**changes))
    assert str(caught.value) == message


def test_the_largest_values_are_accepted():
    scheduled = ScheduledRerun(2**63 - 1, 1_000_000, "2026-09-21T14:14:50Z", "e" * 256, "r" * 256)
    assert schedule.parse(scheduled.to_payload()) == scheduled


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (with_field(instanceId=...), "scheduledRerun lacks instanceId"),
        (with_field(instanceId=..., dueAt=None), "scheduledRerun lacks instanceId, dueAt"),
        (with_field(instanceId=True), "instanceId must be a positive integer up to 9223372036854775807, got True"),
        (with_field(instanceId=0), "instanceId must be a positive integer up to 9223372036854775807, got 0"),
        (with_field(instanceId=2**63),
         "instanceId must be a positive integer up to 9223372036854775807, got 9223372036854775808"),
        (with_field(failedRunNumber=1.5), "failedRunNumber must be a positive integer up to 1000000, got 1.5"),
        (with_field(dueAt="tomorrow"), "dueAt must be a UTC time like 2026-11-28T02:10:00Z, got 'tomorrow'"),
        (with_field(dueAt="2026-09-21T14:14:50"),
         "dueAt must be a UTC time like 2026-11-28T02:10:00Z, got '2026-09-21T14:14:50'"),
        (with_field(dueAt=1790000000), "dueAt must be a UTC time like 2026-11-28T02:10:00Z"),
        (with_field(eventId="x" * 257), "eventId must be null or a string of 1 to 256 characters"),
        (with_field(eventId=7), "eventId must be null or a string of 1 to 256 characters"),
        (with_field(rule=""), "rule must be null or a string of 1 to 256 characters"),
        (with_field(asyncTaskId="dwrerun-1-run-1"),
         "asyncTaskId must be 'dwrerun-1000012345678-run-2' for instance 1000012345678 run 2"),
        (with_field(zed=1, force=True), "scheduledRerun has unknown field(s) force, zed"),
        (json.dumps({**good(), "data": {}, "b": 1}).encode(),
         "a scheduled rerun payload has only 'scheduledRerun', not also b, data"),
        (b'{"scheduledRerun": [1]}', "scheduledRerun must be a JSON object"),
        ('{"scheduledRerun": null}', "scheduledRerun must be a JSON object"),  # text, not bytes, is parsed too
    ],
)  # fmt: skip
def test_a_malformed_scheduled_rerun_is_refused_with_the_whole_message(body, message):
    with pytest.raises(InvalidScheduledRerun) as caught:
        schedule.parse(body)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "body", ["", "not json", '{"other": 1}', '"scheduledRerun"', '["scheduledRerun"]', "[" * 100_000 + "scheduledRerun"]
)
def test_text_that_is_not_a_scheduled_rerun_is_none(body):
    assert schedule.parse(body) is None
    assert schedule.parse(body.encode()) is None


def test_a_scheduled_rerun_given_as_text_is_parsed_like_bytes():
    payload = ScheduledRerun(7, 2, "2026-09-21T14:14:50Z", None, "upstream").to_payload()
    assert (
        schedule.parse(payload.decode())
        == schedule.parse(payload)
        == ScheduledRerun(7, 2, "2026-09-21T14:14:50Z", None, "upstream")
    )


def test_the_smallest_values_are_accepted():
    scheduled = ScheduledRerun(1, 1, "2026-09-21T14:14:50Z", "e", "r")
    assert schedule.parse(scheduled.to_payload()) == scheduled


# --- a payload's trust (issue 24, item 3) ---------------------------------------------------------

SIGNING_KEY = "schedule-test-key-0123456789abcdef0123"


def test_a_payload_is_trusted_only_when_signed_with_the_key():
    scheduled = ScheduledRerun(7, 2, "2026-09-21T14:14:50Z", "evt-1", "upstream")
    assert schedule.parse(scheduled.to_payload(SIGNING_KEY), SIGNING_KEY).trusted is True
    assert schedule.parse(scheduled.to_payload(), SIGNING_KEY).trusted is False  # unsigned
    assert schedule.parse(scheduled.to_payload(SIGNING_KEY), None).trusted is False  # no key to check with
    assert schedule.parse(scheduled.to_payload(SIGNING_KEY), SIGNING_KEY + "x").trusted is False  # another key
    altered = json.loads(scheduled.to_payload(SIGNING_KEY))
    altered["scheduledRerun"]["rule"] = "another"
    assert schedule.parse(json.dumps(altered), SIGNING_KEY).trusted is False


@pytest.mark.parametrize(
    ("run", "hint", "shortest"),
    [(1, None, 60), (2, None, 120), (9, None, 900), (1, 600, 600), (1, 0, 0), (1, 5000, 3599)],
)
def test_the_shortest_delay_is_the_jitters_lowest(run, hint, shortest):
    assert schedule.shortest_delay(run, 120, 1800, hint) == shortest
    assert schedule.shortest_delay(run, 0, 1800, hint) == 0  # scheduling off
    low = schedule.uniform
    try:
        schedule.uniform = lambda a, b: a
        assert schedule.delay_seconds(run, 120, 1800, hint) == shortest
    finally:
        schedule.uniform = low


@pytest.mark.parametrize(("now", "waited"), [(1_000.0 + 60, True), (1_000.0 + 59.9, False)])
def test_a_delay_has_passed_once_the_shortest_delay_since_the_failed_run_ended_has(mocker, now, waited):
    mocker.patch.object(schedule, "clock", lambda: now)
    assert schedule.waited(1_000_000, 1, 120, 1800) is waited
    assert schedule.waited(None, 1, 120, 1800) is False  # an unknown end has not waited
