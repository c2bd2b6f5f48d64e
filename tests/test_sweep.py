"""The sweep (issue 23) end to end on the local FC as FC 3.0 runs it: a timer trigger on FC's clock,
the event function on instance processes, failure events from the emulator's OpenEvent (some lost),
claims through the local FC OpenAPI (async task mode's 409), and the claimed runs' decisions.

Time: FC's clock is a ManualClock that the instance processes read too (a file, as in
tests/test_scheduled_reruns.py); the emulator stamps runs with real time, so the clock starts at
real time and the window's grace is 300 s: a failure seeded now is in the window once the clock
has moved 300 s on. Nothing sleeps.
"""

import json
import time
from collections import Counter

import pytest

from conftest import CREDS, FUNCTION_DIR, NO_BACKOFF_SLEEP, PROJECT_ID, TASK_ID, function_env, reruns
from dwrerun import schema, selection, sweep
from dwrerun.config import ConfigError, Settings
from localcloud.clock import SharedClock
from localcloud.dataworks.openevent import OpenEvent
from localcloud.eventbridge import EventBridge
from localcloud.fc import FunctionComputeApi
from localcloud.fc.timer import TimerTrigger, interval_seconds
from localcloud.scheduled import scheduling_function

# The tests that run the function on instance processes (the `cloud` fixture) are marked so; the
# pure ones and those with fakes run in this process, where mutation testing reaches them too.
separate_process = pytest.mark.separate_process

GRACE = 300
EVERY = 600
FIRST_ID = 1000020000000


@pytest.fixture
def clock(tmp_path):
    """FC's clock, whose time the instance processes read too."""
    return SharedClock(tmp_path / "clock", start=time.time() - 1)


@pytest.fixture
def fc_api():
    with FunctionComputeApi(credentials=[CREDS]) as api:
        yield api


@pytest.fixture
def cloud(dataworks, fc_api, clock, tmp_path):
    """make(**env) -> the event function with its sweep timer (`fn.timer`), claiming through the local FC OpenAPI."""

    def make(reserved_concurrency=2, retries=3, setup="", timeout=60, **env):
        values = {
            "RERUN_BACKOFF_BASE_SECONDS": "120",
            "FUNCTION_COMPUTE_ENDPOINT": fc_api.url,
            "RERUN_PROJECT_IDS": str(PROJECT_ID),
            "RERUN_SWEEP_GRACE_SECONDS": str(GRACE),
            # The storm guard off, unless a test is about it: these failures share one cause, and
            # the emulator's reruns never end, so a storm's canary would never succeed.
            "RERUN_STORM_THRESHOLD": "0",
            # A deployment's key: it signs the sweep's claims, which are trusted only then (issue 24)
            "RERUN_SIGNING_KEY": "sweep-test-signing-key-0123456789abcdef",
            **env,
        }
        values = {name: value for name, value in values.items() if value is not None}
        fn = scheduling_function(
            fc_api,
            clock,
            setup=NO_BACKOFF_SLEEP + setup,
            code_dir=str(FUNCTION_DIR),
            timeout=timeout,
            env=function_env(dataworks, **values),
            credentials=CREDS,
            logstore=str(tmp_path / "logstore.jsonl"),
            reserved_concurrency=reserved_concurrency,
            max_async_retry_attempts=retries,
        )
        fn.timer = TimerTrigger(fn, "sweep", f"@every {EVERY // 60}m", sweep.PAYLOAD)
        return fn

    return make


def seed(dataworks, count: int, first: int = FIRST_ID, **fields) -> list[int]:
    """`count` failed production instances of PROJECT_ID whose run 1 ended now."""
    ids = list(range(first, first + count))
    for n, instance_id in enumerate(ids):
        dataworks.backend.add_instance(
            id=instance_id,
            task_id=TASK_ID + n,
            project_id=PROJECT_ID,
            status="Failure",
            finished_time=int(time.time() * 1000),
            **fields,
        )
    return ids


def advance(clock, fn, seconds: float) -> None:
    clock.advance(seconds)
    fn.drain()


def all_records(fn) -> list[dict]:
    return [r for attempt in fn.invocations for r in attempt.records]


def sweep_summaries(fn) -> list[dict]:
    """The sweeps' own summaries (a claimed run's decision writes a summary with trigger sweep too)."""
    return [r for r in all_records(fn) if r.get("kind") == "summary" and "listed" in r]


def decisions(fn, trigger=None) -> list[dict]:
    return [r for r in all_records(fn) if r.get("kind") == "instance" and (trigger is None or r["trigger"] == trigger)]


def reruns_per_instance(dataworks) -> Counter:
    return Counter(i for call in reruns(dataworks) for i in json.loads(call.params["Ids"]))


# --- pure parts ---------------------------------------------------------------------------------


def test_the_timer_event_is_recognised_by_its_payload():
    timer = {"triggerTime": "2026-12-07T02:10:00Z", "triggerName": "sweep", "payload": sweep.PAYLOAD}
    assert sweep.parse(json.dumps(timer).encode()) == sweep.Timer("2026-12-07T02:10:00Z", "sweep")
    assert sweep.parse(json.dumps({**timer, "payload": "something else"}).encode()) is None
    assert sweep.parse(json.dumps({**timer, "extra": 1}).encode()) is None
    assert sweep.parse(b'{"source":"acs.dataworks","data":{}}') is None
    assert sweep.parse(b"not json") is None
    repeated = b'{"triggerTime":"t","triggerName":"sweep","payload":"x","payload":"dwrerun-sweep"}'
    assert sweep.parse(repeated) is None  # one reading only (strictjson): never a sweep


def test_the_window_covers_the_business_dates_its_failures_can_carry():
    settings = Settings(sweep_lookback=21600, sweep_grace=600)
    # 2026-12-07 03:00 China time: the window runs from 21:00 the day before to 02:50.
    now = 1796583600.0
    window = sweep.Window.at(now, settings)
    assert (window.start, window.end) == (int(now * 1000) - 21_600_000, int(now * 1000) - 600_000)
    days = [
        selection._bizdate(d) for d in ("2026-12-04", "2026-12-05", "2026-12-06")
    ]  # first day (12-06) - 2 .. last day (12-07) - 1
    assert window.bizdates() == days


def test_the_sweep_window_is_checked():
    with pytest.raises(ConfigError, match="RERUN_SWEEP_GRACE_SECONDS"):
        Settings.from_env({"RERUN_SWEEP_LOOKBACK_SECONDS": "600", "RERUN_SWEEP_GRACE_SECONDS": "600"})
    assert Settings.from_env({}).sweep_lookback == 21600 and Settings.from_env({}).sweep_grace == 600


def test_the_local_timer_takes_fc_interval_expressions():
    assert interval_seconds("@every 10m") == 600 and interval_seconds("@every 1h") == 3600
    with pytest.raises(ValueError):
        interval_seconds("0 */10 * * * *")


# --- end to end ---------------------------------------------------------------------------------


@separate_process
def test_a_lost_event_is_found_by_the_sweep_and_rerun_once(dataworks, cloud, clock):
    (lost,) = seed(dataworks, 1)
    with cloud() as fn:
        advance(clock, fn, EVERY)  # the timer fires: the failure is older than the grace
        (summary,) = sweep_summaries(fn)
        assert (summary["listed"], summary["missed"], summary["alreadyDecided"], summary["left"]) == (1, 1, 0, 0)
        assert summary["outcome"] == "done" and summary["projects"] == str(PROJECT_ID) and summary["pages"] >= 1
        assert decisions(fn) == []  # the claim's decision comes when it is due
        advance(clock, fn, 1)
    (record,) = decisions(fn)
    assert (record["trigger"], record["decision"], record["success"], record["missedEvent"]) == (
        "sweep",
        "rerun",
        True,
        True,
    )
    assert record["asyncTaskId"] == f"dwrerun-{lost}-run-1" and record["rule"] is not None
    (call,) = reruns(dataworks)
    assert "rerun by the sweep" in call.params["Comment"]
    assert dataworks.backend.instance(lost).run_number == 2


@separate_process
def test_a_failure_its_event_scheduled_is_counted_and_not_decided_again(dataworks, cloud, clock):
    (instance_id,) = seed(dataworks, 1)
    with cloud() as fn:
        openevent = OpenEvent(dataworks, EventBridge(fn).deliver)
        openevent.fail(instance_id, finish=False)
        fn.drain()
        (scheduled,) = decisions(fn)
        assert scheduled["decision"] == "scheduled" and "missedEvent" not in scheduled
        advance(clock, fn, EVERY)  # the rerun came due (60-120 s) before the sweep
        (summary,) = sweep_summaries(fn)
    # Rerun by its delayed invocation: no longer Failure, so the sweep does not list it.
    assert (summary["listed"], summary["missed"]) == (0, 0)
    assert [r["trigger"] for r in decisions(fn)] == ["eventbridge", "eventbridge"]
    assert reruns_per_instance(dataworks) == {instance_id: 1}


@separate_process
def test_a_sweep_finds_a_scheduled_rerun_not_yet_due_already_decided(dataworks, cloud, clock):
    (instance_id,) = seed(dataworks, 1)
    with cloud(RERUN_BACKOFF_BASE_SECONDS="3000") as fn:  # the rerun waits 1500-3000 s
        OpenEvent(dataworks, EventBridge(fn).deliver).fail(instance_id, finish=False)
        fn.drain()
        advance(clock, fn, EVERY)
        (summary,) = sweep_summaries(fn)
        assert (summary["listed"], summary["alreadyDecided"], summary["missed"]) == (1, 1, 0)
        advance(clock, fn, 3000)
    assert [r["trigger"] for r in decisions(fn)] == ["eventbridge", "eventbridge"]
    assert reruns_per_instance(dataworks) == {instance_id: 1}


@separate_process
def test_20_percent_of_500_events_lost_every_failed_run_decided_once(dataworks, cloud, clock, fc_api):
    ids = seed(dataworks, 500)
    with cloud(reserved_concurrency=4) as fn:
        openevent = OpenEvent(dataworks, EventBridge(fn).deliver)
        openevent.lose_ratio(0.2, seed=23)
        for instance_id in ids:
            openevent.fail(instance_id, finish=False)
        fn.drain()
        assert 80 <= len(openevent.lost) <= 120
        for _ in range(7):  # an hour: every scheduled rerun (60-120 s) and every claim comes due
            advance(clock, fn, EVERY)
        advance(clock, fn, 1)
    summaries = sweep_summaries(fn)
    assert sum(s["missed"] for s in summaries) == len(openevent.lost)
    assert all(s["outcome"] == "done" and s["left"] == 0 for s in summaries)
    swept = decisions(fn, schema.SWEEP)
    assert sorted(r["instanceId"] for r in swept) == sorted(openevent.lost)
    assert all(r["decision"] == "rerun" and r["missedEvent"] is True for r in swept)
    # Every failed run decided, none twice.
    assert reruns_per_instance(dataworks) == {i: 1 for i in ids}
    assert {dataworks.backend.instance(i).run_number for i in ids} == {2}


@separate_process
def test_a_sweep_and_an_event_at_the_same_moment_decide_once(dataworks, cloud, clock):
    (instance_id,) = seed(dataworks, 1)
    with cloud(reserved_concurrency=2) as fn:
        clock.advance(EVERY - 1)  # the failure is in the window; its event arrives late
        openevent = OpenEvent(dataworks, EventBridge(fn).deliver)
        fn.timer.stop()
        openevent.fail(instance_id, finish=False)
        fn.timer.fire()  # both queued at once: two instances, the same FC async task id
        fn.drain()
        advance(clock, fn, 3600)
    assert reruns_per_instance(dataworks) == {instance_id: 1}
    assert dataworks.backend.instance(instance_id).run_number == 2
    (summary,) = sweep_summaries(fn)
    assert summary["missed"] + summary["alreadyDecided"] == 1


@separate_process
def test_a_sweep_and_an_immediate_rerun_at_the_same_moment_rerun_once(dataworks, cloud, clock):
    (instance_id,) = seed(dataworks, 1)
    with cloud(reserved_concurrency=2, RERUN_BACKOFF_BASE_SECONDS="0") as fn:
        clock.advance(EVERY - 1)
        fn.timer.stop()
        OpenEvent(dataworks, EventBridge(fn).deliver).fail(instance_id, finish=False)
        fn.timer.fire()
        fn.drain()
        advance(clock, fn, 3600)
    assert reruns_per_instance(dataworks) == {instance_id: 1}
    for record in decisions(fn, schema.SWEEP):  # when the claim came first, its decision saw the rerun
        assert record["missedEvent"] is False and record["reason"] in ("already-rerun", "not-failed")


@separate_process
def test_two_overlapping_sweeps_claim_each_failed_run_once(dataworks, cloud, clock):
    ids = seed(dataworks, 40)
    with cloud(reserved_concurrency=2) as fn:
        clock.advance(EVERY - 1)
        fn.timer.stop()
        fn.timer.fire()
        fn.timer.fire()
        fn.drain()
        first, second = sweep_summaries(fn)
        assert first["listed"] == second["listed"] == 40
        assert first["missed"] + second["missed"] == 40
        assert first["alreadyDecided"] + second["alreadyDecided"] == 40
        advance(clock, fn, 3600)
    assert reruns_per_instance(dataworks) == {i: 1 for i in ids}
    assert sorted(r["instanceId"] for r in decisions(fn, schema.SWEEP)) == ids


# The instance process dies (as on an OOM kill) at its 6th claim: FC retries the timer's invocation.
KILLED_AT_THE_SIXTH_CLAIM = """
import os
from dwrerun import function_compute
_claims = [0]
_invoke = function_compute.FunctionCompute.invoke_async
def _dying(self, *args, **kwargs):
    _claims[0] += 1
    if _claims[0] == 6 and not os.path.exists({marker!r}):
        open({marker!r}, "w").close()
        os._exit(137)
    return _invoke(self, *args, **kwargs)
function_compute.FunctionCompute.invoke_async = _dying
"""


@separate_process
def test_a_sweep_killed_midway_is_finished_by_fcs_retry_with_nothing_twice(dataworks, cloud, clock, tmp_path):
    ids = seed(dataworks, 12)
    marker = tmp_path / "killed"
    with cloud(setup=KILLED_AT_THE_SIXTH_CLAIM.format(marker=str(marker))) as fn:
        advance(clock, fn, EVERY)
        assert marker.exists()
        (summary,) = sweep_summaries(fn)  # the killed attempt wrote none; the retry's
        assert summary["listed"] == 12 and summary["alreadyDecided"] == 5 and summary["missed"] == 7
        advance(clock, fn, 3600)
    assert reruns_per_instance(dataworks) == {i: 1 for i in ids}


@separate_process
def test_throttled_listing_is_retried_and_the_daily_limit_leaves_the_rest_to_the_next_sweep(dataworks, cloud, clock):
    ids = seed(dataworks, 3)
    with cloud() as fn:
        dataworks.faults.set("ListTaskInstances", throttle=2)
        advance(clock, fn, EVERY)
        (first,) = sweep_summaries(fn)
        assert (first["listed"], first["missed"], first["outcome"]) == (3, 3, "done")
        advance(clock, fn, 1)
        more = seed(dataworks, 2, first=FIRST_ID + 100)
        dataworks.quota(daily_limit=1)  # one call left today: the listing meets the limit
        advance(clock, fn, EVERY)
        second = sweep_summaries(fn)[1]
        assert (second["outcome"], second.get("error"), second["missed"]) == (
            "quota-exhausted",
            "Throttling.Api.Risk",
            0,
        ), second
        dataworks.quota()  # the next day
        advance(clock, fn, EVERY)
        third = sweep_summaries(fn)[2]
        assert (third["missed"], third["outcome"]) == (2, "done")
        advance(clock, fn, 1)
    assert reruns_per_instance(dataworks) == {i: 1 for i in ids + more}


@separate_process
def test_a_claim_fc_refuses_for_good_decides_nothing_and_says_so(dataworks, cloud, clock, fc_api):
    ids = seed(dataworks, 2)
    with cloud() as fn:
        fc_api.faults.set(deny=None)  # the role lacks fc:InvokeFunction
        advance(clock, fn, EVERY)
        fc_api.faults.clear()
        advance(clock, fn, EVERY)  # the next sweep, once the role is fixed
        advance(clock, fn, 1)
    first, second = sweep_summaries(fn)
    assert (first["missed"], first["left"]) == (0, 2)
    (refused,) = [r for r in decisions(fn) if r["reason"] == "config-error"]
    assert refused["trigger"] == "sweep" and "AccessDenied" in refused["message"]
    assert second["missed"] == 2 and reruns_per_instance(dataworks) == {i: 1 for i in ids}


@separate_process
def test_throttled_claims_are_retried(dataworks, cloud, clock, fc_api):
    ids = seed(dataworks, 2)
    with cloud() as fn:
        fc_api.faults.set(throttle=2)
        advance(clock, fn, EVERY)
        advance(clock, fn, 1)
    (summary,) = sweep_summaries(fn)
    assert (summary["missed"], summary["calls"] - summary["pages"]) == (2, 4)
    assert reruns_per_instance(dataworks) == {i: 1 for i in ids}


@separate_process
def test_an_unfinished_event_decision_is_finished_by_a_later_sweep(dataworks, cloud, clock):
    (instance_id,) = seed(dataworks, 1)
    with cloud() as fn:
        dataworks.faults.set("GetTaskInstance", refuse=1)  # the event's read is refused: lookup-failed
        OpenEvent(dataworks, EventBridge(fn).deliver).fail(instance_id, finish=False)
        fn.drain()
        (first,) = decisions(fn)
        assert first["reason"] == "lookup-failed"
        advance(clock, fn, EVERY)
        advance(clock, fn, 1)
    (swept,) = decisions(fn, schema.SWEEP)
    assert (swept["decision"], swept["missedEvent"]) == ("rerun", True)
    assert reruns_per_instance(dataworks) == {instance_id: 1}


@separate_process
def test_without_project_ids_the_sweep_writes_one_config_error(dataworks, cloud, clock):
    seed(dataworks, 1)
    with cloud(RERUN_PROJECT_IDS=None) as fn:
        advance(clock, fn, EVERY)
    (record,) = decisions(fn)
    assert (record["reason"], record["trigger"]) == ("config-error", "sweep")
    assert "RERUN_PROJECT_IDS" in record["message"]
    (summary,) = sweep_summaries(fn)
    assert summary["listed"] == 0 and reruns(dataworks) == []


@separate_process
def test_the_sweeps_decision_of_an_instance_a_storm_holds_keeps_it_held(dataworks, cloud, clock):
    ids = seed(dataworks, 25)
    with cloud(reserved_concurrency=2, RERUN_STORM_THRESHOLD="20") as fn:
        openevent = OpenEvent(dataworks, EventBridge(fn).deliver)
        openevent.lose(ids[-3:])  # three of the storm's events are lost
        for instance_id in ids:
            openevent.fail(instance_id, finish=False)
        fn.drain()
        advance(clock, fn, EVERY)  # the sweep: the three are claimed (the held ones have no rerun task)
        advance(clock, fn, 1)
    held_by_events = {r["instanceId"] for r in decisions(fn, schema.EVENTBRIDGE) if r["decision"] == "held"}
    assert held_by_events  # the storm opened: one cause, 20 failures in its window
    swept = decisions(fn, schema.SWEEP)
    assert {r["instanceId"] for r in swept} >= set(ids[-3:])
    # The sweep decides as an event would have: a failure of a cause in storm is held, not rerun.
    assert all(r["decision"] == "held" and r["reason"] == "storm" for r in swept), swept
    rerun = reruns_per_instance(dataworks)
    assert not set(rerun) & {r["instanceId"] for r in swept} and sum(rerun.values()) <= 1  # the canary at most


# --- in this process, with fakes: the deadline --------------------------------------------------


class FakeDataWorks:
    """ListTaskInstances over rows, by business date (one page)."""

    def __init__(self, rows):
        self.rows = rows

    def list_task_instances(self, params, timeout):
        rows = [r for r in self.rows if r["Bizdate"] == params["Bizdate"]]
        return rows, len(rows)


class SlowFunctions:
    """InvokeFunction that takes `seconds` of the (fake) clock per claim."""

    def __init__(self, clock, seconds):
        self.clock, self.seconds, self.claimed = clock, seconds, []

    def invoke_async(self, function_name, payload, *, delay, task_id, timeout):
        self.clock[0] += self.seconds
        self.claimed.append(task_id)


def test_a_sweep_out_of_time_leaves_the_rest_to_the_next_and_says_so(monkeypatch):
    from dwrerun import pacing, schedule
    from dwrerun.invocation import Invocation
    from dwrerun.job import Job
    from localcloud.dataworks.models import TaskInstance

    now = [1_796_583_600.0]
    monkeypatch.setattr(pacing, "clock", lambda: now[0])
    monkeypatch.setattr(schedule, "clock", lambda: now[0])
    settings = Settings(project_ids=frozenset({PROJECT_ID}), read_qps=1000, read_timeout=2)
    window = sweep.Window.at(now[0], settings)
    bizdate = window.bizdates()[-1]
    finished = window.end - 60_000
    rows = [
        TaskInstance(
            id=FIRST_ID + n, task_id=TASK_ID, project_id=PROJECT_ID, bizdate=bizdate, finished_time=finished + n
        ).to_api("list")
        for n in range(10)
    ]
    # 30 s left: each claim takes 5 s, and none starts with less than 5 s (3 + the read timeout) left: 6 claims.
    job = Job.for_sweep(Invocation("req", "dwrerun-event", "cn-hangzhou", now[0] + 30), settings, None)
    functions = SlowFunctions(now, 5)
    tally = sweep.Tally()
    sweep.run(job, window, FakeDataWorks(rows), functions, tally)
    assert (tally.listed, tally.missed, tally.left, tally.outcome) == (10, 6, 4, "partial")
    assert functions.claimed == [f"dwrerun-{FIRST_ID + n}-run-1" for n in range(6)]  # the oldest first
    assert tally.error == "DeadlineReached" and tally.pages == len(window.bizdates())


class QuotaAfterFirstPage(FakeDataWorks):
    """The first business date answers; then DataWorks' daily limit is used up."""

    def __init__(self, rows):
        super().__init__(rows)
        self.calls = 0

    def list_task_instances(self, params, timeout):
        from dwrerun.dataworks import DataWorksError

        self.calls += 1
        if self.calls > 1:
            raise DataWorksError("ListTaskInstances", "Throttling.Api.Risk", "daily limit", transient=False, status=429)
        return self.rows, len(self.rows)


def test_a_sweep_meeting_the_daily_limit_claims_nothing_it_listed(monkeypatch):
    from dwrerun import pacing, schedule
    from dwrerun.invocation import Invocation
    from dwrerun.job import Job
    from localcloud.dataworks.models import TaskInstance

    now = [1_796_583_600.0]
    monkeypatch.setattr(pacing, "clock", lambda: now[0])
    monkeypatch.setattr(schedule, "clock", lambda: now[0])
    settings = Settings(project_ids=frozenset({PROJECT_ID}), read_qps=1000, read_timeout=2)
    window = sweep.Window.at(now[0], settings)
    first = window.bizdates()[0]
    rows = [
        TaskInstance(
            id=FIRST_ID + n, task_id=TASK_ID, project_id=PROJECT_ID, bizdate=first, finished_time=window.end - 1000
        ).to_api("list")
        for n in range(3)
    ]
    functions = SlowFunctions(now, 0)
    tally = sweep.Tally()
    job = Job.for_sweep(Invocation("req", "dwrerun-event", "cn-hangzhou", now[0] + 60), settings, None)
    sweep.run(job, window, QuotaAfterFirstPage(rows), functions, tally)
    # Each claim's decision would meet the same limit and stay claimed: the sweep after the limit finds them.
    assert functions.claimed == [] and (tally.outcome, tally.error, tally.left) == (
        "quota-exhausted",
        "Throttling.Api.Risk",
        3,
    )
