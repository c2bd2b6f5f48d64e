"""Liveness under the deadline: an invocation that cannot read every instance in time reruns what
it read, defers only the rest, and a retry reaches the rest instead of the same first ones.

Time here is a fake timeline (the clock seam of dwrerun/pacing.py): waits for the read limiter's
slots move it on, nothing else does, so how many instances fit before the deadline follows from
the settings alone, whatever the machine's speed.
"""

import json
import random
import threading

import pytest

from conftest import (
    FAILED_ID,
    FAKE_START,
    TASK_ID,
    failure_event,
    install_fake_clock,
    instance_records,
    make_function,
    make_instances,
    reruns,
    seed_failed,
)
from dwrerun import send
from dwrerun.job import Item, Job, Mode, QuotaWatch, Target, time_left
from test_policy import FAILED

IDS = [FAILED_ID + n for n in range(300)]


# The same fake timeline in each of the process model's instances, before its first invocation (an
# instance process already holds the `localcloud` package: it runs localcloud.fc.instances).
FAKE_TIME_SETUP = (
    "from dwrerun import pacing\nfrom localcloud.clock import ManualClock\n"
    f"fake = ManualClock(start={FAKE_START!r}, overlapping_sleeps=True)\n"
    "pacing.clock, pacing.sleep = fake.now, fake.sleep\n"
)


@pytest.fixture
def fake_time(mocker):
    """pacing's clock and sleep on one fake timeline: a wait moves it on, reading it does not; the
    invocation's threads wait side by side (a wait starts when its thread last read the clock)."""
    return install_fake_clock(mocker, overlapping_sleeps=True)


# 20 reads a second on the fake timeline, no log reads: a 10 s invocation has time for about
# 115 of 300 instances (the reads stop 2.5 s before the deadline, for the rerun calls).
SLOW_READS = {"DATAWORKS_READ_QPS": "20", "RERUN_READ_LOGS": "false"}


def _outcome(invocation) -> tuple[set[int], set[int]]:
    """(ids rerun, ids deferred) of one invocation; every id has exactly one record."""
    records = instance_records(invocation)
    assert sorted(r["instanceId"] for r in records) == sorted(IDS)
    reran = {r["instanceId"] for r in records if r["decision"] == "rerun"}
    assert all(r["success"] is True for r in records if r["decision"] == "rerun")
    deferred = {r["instanceId"] for r in records if r["reason"] == "deferred"}
    for record in records:
        if record["reason"] == "deferred":
            assert "not done in time (no time left to read" in record["message"]
            assert "Function Compute retries the invocation" in record["message"]
    return reran, deferred


def test_300_events_in_a_10_s_invocation_rerun_what_was_read_and_defer_only_the_rest(dataworks, tmp_path, fake_time):
    # Before: 181 instances read, none rerun, all 300 deferred.
    for instance_id in IDS:
        seed_failed(dataworks, instance_id)
    payload = json.dumps([failure_event(i) for i in IDS]).encode()
    with make_function(dataworks, tmp_path, timeout=10, **SLOW_READS) as fn:
        inv = fn.invoke(payload)
    assert inv.error["errorType"] == "RetryLater"  # FC retries the delivery for the rest
    reran, deferred = _outcome(inv)
    assert reran | deferred == set(IDS) and not reran & deferred
    assert 100 < len(reran) < 300
    assert {json.loads(c.params["Ids"])[0] for c in reruns(dataworks)} <= reran
    assert sum(len(json.loads(c.params["Ids"])) for c in reruns(dataworks)) == len(reran)  # each once
    assert inv.records[-1]["outcome"] == "retry"


def test_each_retry_of_the_delivery_reaches_instances_the_attempts_before_could_not(
    dataworks, tmp_path, fake_time, mocker
):
    # FC retries with the same ids: read in the same order, every retry would spend its time on
    # the instances already rerun. The order is the randomness seam, seeded here.
    from dwrerun import rerun

    mocker.patch.object(rerun, "shuffle", random.Random(13).shuffle)
    for instance_id in IDS:
        seed_failed(dataworks, instance_id)
    payload = json.dumps([failure_event(i) for i in IDS]).encode()
    done: set[int] = set()
    with make_function(dataworks, tmp_path, timeout=10, **SLOW_READS) as fn:
        for attempt in range(4):  # FC's first attempt and its 3 retries, one request id
            inv = fn.invoke(payload, request_id="1-retried-delivery")
            reran, _ = _outcome(inv)
            assert reran and not reran & done, f"attempt {attempt} made no progress"
            done |= reran
    assert all(dataworks.backend.instance(i).run_number == (2 if i in done else 1) for i in IDS)


def _http_request(ids: list[int]) -> bytes:
    return json.dumps(
        {
            "version": "v1",
            "rawPath": "/rerun",
            "body": json.dumps({"Ids": ids}),
            "isBase64Encoded": False,
            "headers": {"Content-Type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
        }
    ).encode()


def _partial_answer(result, ids: list[int]) -> tuple[set[int], set[int]]:
    # Partial progress: 503 with what was done (SuccessInfo) and what was not (Deferred, Skipped).
    assert result["statusCode"] == 503 and result["headers"]["Retry-After"]
    answer = json.loads(result["body"])
    assert answer["Code"] == "Incomplete" and "Deferred" in answer["Message"]
    done = {int(i) for i, info in answer["SuccessInfo"].items() if info["Success"] is True}
    deferred = set(answer["Deferred"])
    assert done and deferred and done | deferred == set(ids) and not done & deferred
    assert all(answer["Skipped"][str(i)].startswith("deferred: not done in time") for i in deferred)
    return done, deferred


def test_100_ids_over_http_with_a_short_timeout_rerun_what_was_read(dataworks, tmp_path, fake_time):
    # Before: nothing rerun, 503 "DataWorks kept failing (DeadlineReached)".
    ids = IDS[:100]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    with make_function(dataworks, tmp_path, handler="index.handle_http", timeout=5, **SLOW_READS) as fn:
        inv = fn.invoke(_http_request(ids))
        done, deferred = _partial_answer(inv.result, ids)
        # Sending the deferred ids again goes on from there.
        again = fn.invoke(_http_request(sorted(deferred)))
    assert json.loads(again.result["body"])["SuccessInfo"]
    assert all(dataworks.backend.instance(i).run_number == 2 for i in done)


@pytest.mark.separate_process
def test_10_such_requests_at_once_each_make_progress(dataworks, tmp_path):
    # Ten instances of the HTTP function at once (separate processes), each on its own fake
    # timeline. Before: all ten answered 503 and nothing was rerun.
    batches = [IDS[n * 30 : n * 30 + 30] for n in range(10)]
    for instance_id in IDS:
        seed_failed(dataworks, instance_id)
    # One read a second on a fake 30 s timeline: about 25 of each batch's 30 ids fit. (FC's own
    # timeout runs on real time: 30 s leaves room for ten cold starts on a busy machine.)
    env = {**SLOW_READS, "DATAWORKS_READ_QPS": "1"}
    with make_instances(
        dataworks, tmp_path, reserved_concurrency=10, handler="index.handle_http", timeout=30, **env
    ) as fn:
        fn.instance_setup += FAKE_TIME_SETUP
        results = [None] * 10

        def send(n):
            results[n] = fn.invoke(_http_request(batches[n]))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for batch, invocation in zip(batches, results, strict=True):
        assert invocation.error is None, invocation.error
        done, _ = _partial_answer(invocation.result, batch)
        assert all(dataworks.backend.instance(i).run_number == 2 for i in done)


def test_a_retry_after_holds_the_reads_not_yet_started_too(dataworks, tmp_path, fake_time, mocker):
    # Nine instances read one at a time: the first read is throttled with a 60 s
    # x-acs-retry-after (in ms, as the SDK reads it), and the read limiter holds every read after
    # it for those 60 s: past the reads' share of a 10 s invocation, so the other eight are left
    # for FC's retry, unsent. Without the hold they would go out at once.
    # One reading thread: with eight, how many reads start before the first throttled answer
    # comes back depends on how the threads happen to run (seen under mutmut's slower copy).
    from dwrerun import rerun

    mocker.patch.object(rerun, "LOOKUP_THREADS", 1)
    ids = IDS[:9]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    dataworks.faults.set("GetTaskInstance", throttle=1, retry_after=60_000)
    with make_function(dataworks, tmp_path, timeout=10, RERUN_READ_LOGS="false") as fn:
        inv = fn.invoke(json.dumps([failure_event(i) for i in ids]).encode())
    assert inv.error["errorType"] == "RetryLater"
    records = instance_records(inv)
    assert [r["reason"] for r in records] == ["deferred"] * 9
    assert records[-1]["message"] == (
        "not done in time (no time left to read 8 of the 9 instances): Function Compute retries the invocation."
    )
    assert dataworks.journal.count(action="GetTaskInstance") == 1 and reruns(dataworks) == []


def test_get_task_waits_for_its_slot_on_the_same_read_limiter_as_get_task_instance(dataworks, tmp_path, fake_time):
    # One read a second: GetTaskInstance takes the first slot, so GetTask (also a read, on
    # DataWorks' read quota) waits one second for the next. Time moves only by limiter waits.
    seed_failed(dataworks)
    env = {"DATAWORKS_READ_QPS": "1", "RERUN_READ_LOGS": "false"}
    with make_function(dataworks, tmp_path, **env) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "RerunTaskInstances"]
    assert fake_time.now() == 1001.0


def test_the_reads_keep_back_no_write_spacing_when_one_rerun_call_is_all_there_is(dataworks, tmp_path, fake_time):
    # A 3 s timeout: the deadline is 2.7 s away. One chunk to rerun, so the reads keep back only
    # the least call time (0.5 s) and one read timeout (0.5 s): they may start a call until
    # 1.2 s, and GetTask's slot at 1 s (one read a second) is in time. Keeping back the write
    # limiter's spacing for chunks that are not there (1 s each at one write a second) would end
    # the reads at half the time (1.35 s, last start 0.85 s): GetTask unsent, the instance deferred.
    seed_failed(dataworks)
    env = {"DATAWORKS_READ_QPS": "1", "DATAWORKS_WRITE_QPS": "1", "DATAWORKS_READ_TIMEOUT": "0.5"}
    with make_function(dataworks, tmp_path, timeout=3, RERUN_READ_LOGS="false", **env) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "RerunTaskInstances"]


def _event_job(deadline: float, settings=None):
    """The Job of an event invocation whose deadline is at `deadline` (rerun's functions, called directly)."""
    from dwrerun.config import Settings

    return Job(Mode.EVENT, "req-1", "dwrerun-event", settings or Settings(), deadline)


def test_a_read_the_deadline_cut_short_leaves_the_instance_out_of_time_and_undecided():
    # rerun._look_up_one: an instance whose read the deadline cut short is marked so, for run() to
    # defer it or try it on the next pass, never half-decided. Without the mark (mutation testing)
    # run() looped forever, so the tests that reach it hung instead of failing.
    from dwrerun import pacing, rerun

    class NoTimeLeft:  # a client whose read finds the invocation's time gone
        def get_task_instance(self, instance_id, timeout):
            raise pacing.DeadlineReached

    now = pacing.clock()
    job = _event_job(now + 30)
    item = Item(Target(FAILED_ID, "evt-1"))
    rerun._look_up_one(job, NoTimeLeft(), item, QuotaWatch(), until=now + 30)
    assert item.out_of_time is True and item.decision is None and item.outcome is None


def test_a_get_task_whose_slot_comes_too_late_is_not_waited_for(dataworks, tmp_path, fake_time):
    # As the test above, with reads at 2/3 a second: GetTaskInstance takes the slot at 0 s, and
    # GetTask's slot at 1.5 s is past the reads' last start (1.2 s). Waiting for it would spend the
    # invocation's time on a call that can no longer start (it would need 0.5 s before 1.7 s):
    # the instance is left for FC's retry at once, and the clock never moves.
    seed_failed(dataworks)
    env = {"DATAWORKS_READ_QPS": "0.6667", "DATAWORKS_READ_TIMEOUT": "0.5", "RERUN_READ_LOGS": "false"}
    with make_function(dataworks, tmp_path, timeout=3, **env) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error["errorType"] == "RetryLater"
    (record,) = instance_records(inv)
    assert (record["reason"], record["message"]) == (
        "deferred",
        "not done in time (no time left to read 1 of the 1 instances): Function Compute retries the invocation.",
    )
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance"]
    assert fake_time.now() == 1000.0


def test_a_rerun_call_whose_slot_leaves_less_than_a_calls_least_time_is_not_waited_for(fake_time):
    # send._rerun_chunk: the write limiter's next slot is 9.7 s away and the deadline 10 s away,
    # so the call would start with 0.3 s left, less than MIN_CALL_SECONDS (0.5 s). It is given up
    # at once, with the reason the deferred records quote, instead of waiting 9.7 s first.
    from dwrerun import pacing
    from dwrerun.config import Settings

    class NotToBeCalled:
        def rerun_task_instances(self, *args, **kwargs):
            raise AssertionError("no time was left for this call")

    settings = Settings()
    job = _event_job(fake_time.now() + 10, settings)
    pacing.limiter("write", settings.write_qps)._next_slot = fake_time.now() + 9.7
    item = Item(Target(FAILED_ID, "evt-1"))
    with pytest.raises(pacing.DeadlineReached) as raised:
        send._rerun_chunk(job, NotToBeCalled(), "comment", [item], QuotaWatch())
    assert str(raised.value) == "the next call slot is 9.7s away, past the deadline"
    assert fake_time.now() == 1000.0 and item.attempts == 0


def test_a_retry_that_leaves_exactly_a_calls_least_time_still_goes_out(dataworks, tmp_path, fake_time, mocker):
    # A 20 s timeout: the deadline is 18 s away (FC's cut-off less a 2 s margin). The rerun call is
    # throttled, and the backoff (the randomness seam) draws 17.5 s: the retry then starts with
    # exactly MIN_CALL_SECONDS (0.5 s) left, which is enough, so it goes out and the rerun is done.
    from dwrerun import pacing

    mocker.patch.object(pacing, "uniform", lambda low, high: 17.5)
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=1)
    with make_function(dataworks, tmp_path, handler="index.handle_http", timeout=20) as fn:
        inv = fn.invoke(_http_request([FAILED_ID]))
    assert inv.result["statusCode"] == 200, inv.result
    (record,) = instance_records(inv)
    assert (record["decision"], record["reason"], record["success"]) == ("rerun", "eligible", True)
    assert fake_time.now() == 1017.5
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "RerunTaskInstances", "RerunTaskInstances"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_gettask_is_given_only_the_reads_share_of_the_time_left(fake_time):
    # autorerun.left_to_dataworks: the reads end 5 s from now (`until`), the invocation 30 s from now.
    # GetTask's timeout is cut to the 5 s, not to the deadline: a slow answer must not eat the time
    # kept back for the rerun calls.
    from dwrerun import autorerun
    from dwrerun.config import Settings

    class NodeWithoutReruns:
        def __init__(self):
            self.timeouts: list[float] = []

        def get_task(self, task_id, project_env, timeout):
            self.timeouts.append(timeout)
            return {"Id": task_id, "RerunMode": "FailureAllowed", "RerunTimes": 0, "RerunInterval": 0}

    now = fake_time.now()
    job = _event_job(now + 30, Settings(read_timeout=10.0))
    item = Item(Target(FAILED_ID, "evt-1"))
    item.instance = FAILED  # test_policy's failed instance: the guards' fields, at run 1
    client = NodeWithoutReruns()
    assert autorerun.left_to_dataworks(job, client, item, QuotaWatch(), until=now + 5) is False
    assert client.timeouts == [5.0]


def _failed_item():

    return Item(Target(FAILED_ID, "evt-1"))


def test_get_task_instance_is_given_only_the_reads_share_of_the_time_left(fake_time):
    # rerun._read_instance, as GetTask above: the reads end 5 s from now, the invocation 30 s from
    # now; GetTaskInstance's timeout is the 5 s.
    from dwrerun import rerun
    from dwrerun.config import Settings

    class Recording:
        def __init__(self):
            self.timeouts: list[float] = []

        def get_task_instance(self, instance_id, timeout):
            self.timeouts.append(timeout)
            return {"Id": instance_id, "Status": "Failure", "RunNumber": 1}

    now = fake_time.now()
    job = _event_job(now + 30, Settings(read_timeout=10.0))
    client = Recording()
    assert rerun._read_instance(job, client, _failed_item(), QuotaWatch(), until=now + 5) is True
    assert client.timeouts == [5.0]


def test_a_get_task_instance_whose_slot_comes_too_late_is_not_waited_for(fake_time):
    # The read limiter's next slot is 4.7 s away and the reads end in 5 s: the call would start
    # with less than MIN_CALL_SECONDS left. It is given up at once, without waiting for the slot.
    from dwrerun import pacing, rerun
    from dwrerun.config import Settings

    class NotToBeCalled:
        def get_task_instance(self, instance_id, timeout):
            raise AssertionError("no time was left for this call")

    settings = Settings()
    now = fake_time.now()
    job = _event_job(now + 30, settings)
    pacing.limiter("read", settings.read_qps)._next_slot = now + 4.7
    with pytest.raises(pacing.DeadlineReached):
        rerun._read_instance(job, NotToBeCalled(), _failed_item(), QuotaWatch(), until=now + 5)
    assert fake_time.now() == now


def test_a_call_is_not_started_with_less_than_its_least_time_left_and_the_reason_says_so(fake_time):
    # job.time_left, the last check before every call: its reason is what a deferred record
    # quotes ("not done in time (the invocation's deadline is reached)").
    from dwrerun import pacing
    from dwrerun.config import Settings

    now = fake_time.now()
    job = _event_job(now + 30, Settings(read_timeout=10.0))
    assert time_left(job) == 10.0  # the configured read timeout, far from the deadline
    assert time_left(job, until=now + 2) == 2.0  # cut to the end of the reads' share
    assert time_left(job, until=now + pacing.MIN_CALL_SECONDS) == pacing.MIN_CALL_SECONDS
    with pytest.raises(pacing.DeadlineReached, match=r"^the invocation's deadline is reached$"):
        time_left(job, until=now + 0.4)


def test_a_short_timeout_still_gives_the_reads_half_of_its_time(dataworks, tmp_path, fake_time):
    # A 5 s timeout: the deadline is 4.5 s away, and keeping back a whole rerun call's time (0.5 s
    # plus 3 s of a 10 s read timeout) would leave the reads 1 s. They get half of the time instead
    # (2.25 s, so a call may start until 1.75 s): GetTask's slot at 1.5 s (two reads in 3 s) is
    # in time, and the failure is rerun in this invocation rather than left to FC's retry.
    seed_failed(dataworks)
    env = {"DATAWORKS_READ_QPS": "0.6667", "DATAWORKS_READ_TIMEOUT": "10", "RERUN_READ_LOGS": "false"}
    with make_function(dataworks, tmp_path, timeout=5, **env) as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["decision"], record["success"]) == ("rerun", True)
    assert [e.action for e in dataworks.journal] == ["GetTaskInstance", "GetTask", "RerunTaskInstances"]


def test_a_retry_after_longer_than_the_time_left_ends_the_attempts_at_once(dataworks, tmp_path, fake_time, mocker):
    # The rerun call is throttled with a 10 s x-acs-retry-after, 9 s before the deadline. The wait
    # before a retry is at least the server's retry-after, which does not fit: the attempts end
    # there, saying so, instead of waiting for a retry that cannot start.
    from dwrerun import pacing

    mocker.patch.object(pacing, "uniform", lambda low, high: low)  # the jitter's seam: no wait of its own
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=1, retry_after=10_000)
    with make_function(dataworks, tmp_path, timeout=10, RERUN_READ_LOGS="false") as fn:
        inv = fn.invoke(json.dumps(failure_event(FAILED_ID)).encode())
    (record,) = instance_records(inv)
    assert (record["reason"], record["errorCode"]) == ("deferred", "Throttling.User")
    assert record["message"] == (
        "DataWorks kept failing (Throttling.User; no time left for another attempt): "
        "Function Compute retries the invocation."
    )
    assert dataworks.journal.count(action="RerunTaskInstances") == 1


def test_a_retry_that_would_start_with_less_than_a_calls_least_time_is_not_waited_for(
    dataworks, tmp_path, fake_time, mocker
):
    # As the test of exactly MIN_CALL_SECONDS above, with a backoff of 17.6 s: the retry would start
    # 0.4 s before the deadline. The attempts end there, saying so, and nothing waits for it.
    from dwrerun import pacing

    mocker.patch.object(pacing, "uniform", lambda low, high: 17.6)
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=1)
    with make_function(dataworks, tmp_path, handler="index.handle_http", timeout=20) as fn:
        inv = fn.invoke(_http_request([FAILED_ID]))
    (record,) = instance_records(inv)
    assert record["reason"] == "deferred"
    assert (
        record["message"]
        == "DataWorks kept failing (Throttling.User; no time left for another attempt): not rerun: try again."
    )
    assert fake_time.now() == 1000.0
    assert dataworks.journal.count(action="RerunTaskInstances") == 1


def test_a_retry_without_a_retry_after_waits_only_the_jittered_backoff(dataworks, tmp_path, fake_time, mocker):
    # DataWorks answers 503 once, with no x-acs-retry-after; the jitter (the randomness seam) draws
    # 0 s: the retry goes out at once, with no wait of its own invented for the missing header.
    from dwrerun import pacing

    mocker.patch.object(pacing, "uniform", lambda low, high: low)
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", server_error=1)
    with make_function(dataworks, tmp_path, handler="index.handle_http", timeout=20) as fn:
        inv = fn.invoke(_http_request([FAILED_ID]))
    (record,) = instance_records(inv)
    assert (record["reason"], record["success"]) == ("eligible", True)
    assert fake_time.now() - 1000.0 < 0.01  # only the write limiter's spacing (1000 writes/s here)


def test_the_reads_keep_back_a_write_slot_for_each_rerun_call_after_the_first(dataworks, tmp_path, fake_time):
    # Two failures, one rerun call each (RERUN_CHUNK_SIZE=1) at one write a second: the reads keep
    # back a call's least time, a 0.5 s read timeout, and 1 s for the second call's write slot,
    # so they may start until 2 s of the 4.5 s. At one read a second, the fourth read (slot 3 s)
    # is not sent: one instance is rerun, the other left to FC's retry, and both calls end in time.
    seed_failed(dataworks)
    seed_failed(dataworks, FAILED_ID + 1, task_id=TASK_ID + 1)  # its own node: no GetTask answer to share
    env = {
        "DATAWORKS_READ_QPS": "1",
        "DATAWORKS_WRITE_QPS": "1",
        "DATAWORKS_READ_TIMEOUT": "0.5",
        "RERUN_CHUNK_SIZE": "1",
        "RERUN_READ_LOGS": "false",
    }
    with make_function(dataworks, tmp_path, timeout=5, **env) as fn:
        inv = fn.invoke(json.dumps([failure_event(FAILED_ID), failure_event(FAILED_ID + 1)]).encode())
    assert inv.error["errorType"] == "RetryLater"
    assert sorted(r["reason"] for r in instance_records(inv)) == ["deferred", "eligible"]
    assert dataworks.journal.count(action="GetTaskInstance") + dataworks.journal.count(action="GetTask") == 3
