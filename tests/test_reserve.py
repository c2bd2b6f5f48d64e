"""The reserve before FC's timeout: every instance a delivery named gets its record (issue 24, item 1).

A step that ran past FC's timeout (before issue 24: a text step) made FC kill every attempt, so no
instance record and no summary were written, the retries-exhausted alert (which counts the
attempts' `deferred` records) stayed silent, and any other failure in the same delivery was lost
with it. `dwrerun/reserve.py` writes them shortly before FC's timeout. End to end on instance
processes, which FC kills at its timeout; the reserve's own exclusivity in this process.
"""

from __future__ import annotations

import json
import threading

import pytest

from conftest import (
    CREDS,
    FAILED_ID,
    FUNCTION_DIR,
    NO_BACKOFF_SLEEP,
    failure_event,
    function_env,
    instance_records,
    make_function,
    reruns,
    sample,
    sample_bytes,
    seed_failed,
)
from dwrerun import pacing, reserve
from dwrerun.invocation import Invocation
from localcloud.fc import Function

OTHER_ID = FAILED_ID + 1
# The failed run's log says "hang": matching it takes longer than FC's timeout, in the first
# instance process only (it creates the mark; FC's retry lands on a new process, which finds it).
HANG_ONCE = """
import os, time
from dwrerun import rules

_match = rules.match


def _slow_match(rule_set, log, task_type=None):
    if "hang" in log:
        try:
            os.close(os.open({mark!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return _match(rule_set, log, task_type)
        for _ in range(600):  # a long run of short steps, as the bounded text steps are
            time.sleep(0.05)
    return _match(rule_set, log, task_type)


rules.match = _slow_match
"""


@pytest.mark.separate_process
def test_a_step_that_runs_past_fcs_timeout_still_leaves_a_record_for_every_instance_and_a_summary(dataworks, tmp_path):
    # GIVEN a delivery of two failures, one whose log takes longer to match than FC's 8 s timeout,
    # on a warm instance (the reserve counts from the handler's start: a cold start's imports come
    # out of it, docs/reliability.md)
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    dataworks.backend.set_log(FAILED_ID, 1, "hang")
    delivery = json.dumps([failure_event(FAILED_ID, "evt-hang"), failure_event(OTHER_ID, "evt-other")]).encode()
    fn = Function(
        handler="index.handle_event",
        code_dir=str(FUNCTION_DIR),
        timeout=8,
        function_name="dwrerun-event",
        env=function_env(dataworks),
        logstore=str(tmp_path / "logstore.jsonl"),
        reserved_concurrency=1,
        credentials=CREDS,
        instance_setup=NO_BACKOFF_SLEEP + HANG_ONCE.format(mark=str(tmp_path / "hung")),
    )
    with fn:
        assert fn.invoke(sample_bytes("dataworks-instance-succeeded.json")).cold_start  # warm it
        killed = fn.invoke(delivery)
        # THEN FC killed the invocation at its timeout, and yet each instance has its record,
        # deferred for FC's retry, and the invocation its summary
        assert killed.timed_out
        records = instance_records(killed)
        assert sorted((r["instanceId"], r["decision"], r["reason"]) for r in records) == [
            (FAILED_ID, "skip", "deferred"),
            (OTHER_ID, "skip", "deferred"),
        ]
        assert all("Function Compute's timeout" in r["message"] for r in records)
        (summary,) = [r for r in killed.records if r.get("kind") == "summary"]
        assert (summary["instances"], summary["outcome"], summary["error"]) == (2, "retry", "FunctionTimeout")
        # AND the next attempt (FC's retry, on a new instance process) reruns both, once
        retried = fn.invoke(delivery)
    assert not retried.timed_out
    assert sorted((r["instanceId"], r["decision"]) for r in instance_records(retried)) == [
        (FAILED_ID, "rerun"),
        (OTHER_ID, "rerun"),
    ]
    assert sorted(i for c in reruns(dataworks) for i in json.loads(c.params["Ids"])) == [FAILED_ID, OTHER_ID]


def _invocation(deadline: float, timeout: float) -> Invocation:
    return Invocation("req", "dwrerun-event", "cn-hangzhou", deadline, timeout=timeout)


def test_the_reserve_goes_off_half_the_margin_after_the_deadline():
    # a 60 s timeout keeps 2 s back: the reserve writes 1 s before FC's timeout
    assert reserve.records_due(_invocation(100.0, 60)) == 101.0
    # a 6 s timeout keeps 0.6 s back: 0.3 s
    assert reserve.records_due(_invocation(100.0, 6)) == pytest.approx(100.3)


def started(due_in: float, write) -> reserve.Reserve:
    return reserve.Reserve.start(_invocation(pacing.clock() + due_in - 1.0, 60), write)  # due 1 s after


def test_the_pipeline_that_claims_first_writes_and_the_reserve_never_does(fake_clock):
    written = []
    reserve_ = started(5.0, lambda: written.append("reserve"))
    assert reserve_.claim() is True
    fake_clock.advance(10.0)  # past the time it was due: it stopped when the pipeline claimed
    reserve_._thread.join(2)
    assert not reserve_._thread.is_alive() and written == [] and not reserve_.fired


def test_a_reserve_goes_off_by_the_functions_clock_and_then_the_pipeline_may_not_write(fake_clock):
    gone_off = threading.Event()
    written = []
    reserve_ = started(5.0, lambda: (written.append("reserve"), gone_off.set()))
    fake_clock.advance(4.9)
    assert not gone_off.wait(2 * reserve.POLL_SECONDS)  # not yet due
    fake_clock.advance(0.1)
    assert gone_off.wait(5)
    assert reserve_.claim() is False
    assert written == ["reserve"] and reserve_.fired


def test_a_cancelled_reserve_never_goes_off(fake_clock):
    written = []
    reserve_ = started(1.0, lambda: written.append("reserve"))
    reserve_.cancel()
    fake_clock.advance(10.0)
    reserve_._thread.join(2)
    assert written == [] and not reserve_._thread.is_alive()


# --- in this process: what the reserve writes, and the pipeline that ends after it ------------------


def test_the_reserves_records_defer_every_instance_and_say_fc_retries(dataworks, tmp_path, fake_clock, mocker, capsys):
    # GIVEN a delivery of two failures whose work (a seam: `run`) is still going when the reserve
    # goes off, and then ends
    from dwrerun import event_function

    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID)
    gone_off = threading.Event()
    original_fire = reserve.Reserve._fire

    def fire(self):
        original_fire(self)
        gone_off.set()

    mocker.patch.object(reserve.Reserve, "_fire", fire)

    def slow_run(job, targets, dataworks, functions):
        fake_clock.advance(60.0)  # past FC's timeout: the reserve writes the records
        assert gone_off.wait(5)
        return []

    mocker.patch.object(event_function, "run", slow_run)
    succeeded = sample("dataworks-instance-succeeded.json")  # not worked on: its record stands as it is
    delivery = json.dumps([failure_event(FAILED_ID, "evt-1"), succeeded, failure_event(OTHER_ID, "evt-2")]).encode()
    with make_function(dataworks, tmp_path, timeout=20) as fn:
        inv = fn.invoke(delivery)
        # THEN the pipeline may not write (the reserve did), and raises so FC retries
        assert inv.error["errorType"] == "ReserveUsed"
        # FC shows the error's message with the failed attempt: it says why and what comes next
        assert inv.error["errorMessage"] == (
            "the records were written in the reserve before FC's timeout: FC retries the invocation"
        )
        # in this process the reserve's thread writes to the test's stream (FC's harness attributes
        # lines by thread; an instance process has one stream): each record once, none from the pipeline
        assert inv.records == []
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    records = [r for r in lines if r["kind"] == "instance"]
    assert [(r["reason"], r["eventId"]) for r in records] == [
        ("not-a-failure", succeeded["id"]),
        ("deferred", "evt-1"),
        ("deferred", "evt-2"),
    ]
    assert [r["instanceId"] for r in records[1:]] == [FAILED_ID, OTHER_ID]
    assert records[1]["message"] == (
        "not finished before Function Compute's timeout (20 s): a step ran into the time kept back to write the "
        "records. Function Compute retries the invocation; a rerun request may have reached DataWorks, and the "
        "retry reads the instance first"
    )
    (summary,) = [r for r in lines if r["kind"] == "summary"]
    assert (summary["instances"], summary["skipped"], summary["outcome"], summary["error"]) == (
        3,
        3,
        "retry",
        "FunctionTimeout",
    )
    assert summary["requestId"] == inv.request_id == records[1]["requestId"]
