"""The storm guard end to end on the local cloud: failure events into the event function's instance
processes, its own FC async tasks (InvokeFunction, ListAsyncTasks, GetAsyncTask over the local FC
OpenAPI), the DataWorks emulator, and a ManualClock the test moves (nothing sleeps).

A small threshold (5) keeps each scenario short; storm.py's unit tests (tests/test_storm.py) pin
the decisions at the defaults.
"""

import json

import pytest

import test_scheduled_reruns as scheduled
from conftest import PROJECT_ID, failure_event, instance_records, seed_failed
from dwrerun import storm
from localcloud.eventbridge import EventBridge

# The scheduled reruns' local cloud: instance processes, the local FC OpenAPI, a shared ManualClock.
clock, cloud, fc_api = scheduled.clock, scheduled.cloud, scheduled.fc_api
advance, publish = scheduled.advance, scheduled.publish

pytestmark = pytest.mark.separate_process

BASE = 1000020000000
GUARD = {"RERUN_STORM_THRESHOLD": "5", "RERUN_STORM_WINDOW_SECONDS": "600"}
NETWORK_LOG = "Caused by: java.net.SocketTimeoutException: Read timed out\n"


def seed(dataworks, count: int, first: int = BASE, log: str | None = None) -> list[int]:
    ids = [first + i for i in range(count)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
        if log is not None:
            dataworks.backend.set_log(instance_id, 1, log)
    return ids


def logged(fn, kind: str) -> list[dict]:
    """The records of one kind in the function's Logstore, in the order written."""
    out = []
    for line in fn.logstore_lines():
        message = line.get("message", "")
        if message.startswith("{"):
            record = json.loads(message)
            if isinstance(record, dict) and record.get("kind") == kind:
                out.append(record)
    return out


def reruns_of(dataworks) -> list[int]:
    """The instances each accepted RerunTaskInstances call reran, in order."""
    ids = []
    for entry in dataworks.journal.calls("RerunTaskInstances"):
        if entry.status == 200:
            ids += [int(i) for i in json.loads(entry.params["Ids"])]
    return ids


def test_a_storm_opens_one_canary_holds_the_rest_and_releases_them_when_the_canary_succeeds(dataworks, cloud, clock):
    # GIVEN 8 instances failing for one cause (no rule matched their logs: "default"), guard at 5
    ids = seed(dataworks, 8)
    with cloud(reserved_concurrency=2, **GUARD) as fn:
        # WHEN their failure events arrive one after another
        first = [instance_records(publish(fn, i)[0])[0] for i in ids]
        # THEN the first four are scheduled as today, the fifth opens the storm as its canary, the rest are held
        assert [r["decision"] for r in first] == ["scheduled"] * 5 + ["held"] * 3
        canary = first[4]
        assert canary["asyncTaskId"].startswith("dwrerun-p-") and canary["stormCause"] == f"{PROJECT_ID}/default"
        assert all(r["reason"] == "storm" and r["stormId"] == canary["stormId"] for r in first[5:])
        opened, canary_note = logged(fn, "storm")
        assert (opened["stormEvent"], opened["count"], opened["instanceId"]) == ("opened", 5, ids[4])
        assert (canary_note["stormEvent"], canary_note["stormSlot"]) == ("canary", 1)
        assert reruns_of(dataworks) == []  # nothing rerun yet, held or not
        # WHEN the reruns come due: the four scheduled before the storm are held now; only the canary goes
        advance(clock, fn, 125)
        assert reruns_of(dataworks) == [ids[4]]
        held_now = [r for r in logged(fn, "instance") if r["decision"] == "held"]
        assert sorted(r["instanceId"] for r in held_now) == sorted(ids[:4] + ids[5:])
        # ... the canary still runs at its first check: looked at again, nothing released
        advance(clock, fn, 61)
        assert reruns_of(dataworks) == [ids[4]]
        # WHEN the canary's rerun succeeds and the next check reads it
        dataworks.backend.finish(ids[4], "Success")
        advance(clock, fn, 61)
        events = [r["stormEvent"] for r in logged(fn, "storm")]
        assert events[2:] == ["release", "release-group", "release-group"]
        # THEN the held are released, oldest first, in growing groups, and each is rerun once
        # (the clock moves 3 s at a time: releases due in the same moment race on two instances)
        for _ in range(40):
            advance(clock, fn, 3)
        rerun = reruns_of(dataworks)
        assert sorted(rerun) == sorted(ids) and len(rerun) == len(set(rerun))
        # oldest held first: 5..7 were held when their events came, the first four when their
        # scheduled reruns came due into the open storm
        assert rerun[1:4] == ids[5:] and sorted(rerun[4:]) == ids[:4]
        assert [r["stormEvent"] for r in logged(fn, "storm")][-1] == "closed"


def test_a_second_cause_runs_normally_beside_a_storm_and_a_trickle_opens_none(dataworks, cloud, clock):
    storm_ids = seed(dataworks, 6)
    other_ids = seed(dataworks, 6, first=BASE + 100, log=NETWORK_LOG)
    with cloud(reserved_concurrency=2, **GUARD) as fn:
        decisions = [instance_records(publish(fn, i)[0])[0]["decision"] for i in storm_ids]
        assert decisions.count("held") == 1
        # another cause, 4 failures: below the threshold, scheduled as today
        others = [instance_records(publish(fn, i)[0])[0] for i in other_ids[:4]]
        assert [r["decision"] for r in others] == ["scheduled"] * 4 and all("stormId" not in r for r in others)
        assert len([r for r in logged(fn, "storm") if r["stormEvent"] == "opened"]) == 1


def test_fc_coordination_failing_fails_open_to_todays_schedule(dataworks, cloud, clock, fc_api):
    ids = seed(dataworks, 8)
    fc_api.tasks_unavailable = True  # ListAsyncTasks and GetAsyncTask answer 503
    with cloud(reserved_concurrency=2, **GUARD) as fn:
        records = [instance_records(publish(fn, i)[0])[0] for i in ids]
        assert [r["decision"] for r in records] == ["scheduled"] * 8
        assert all("storm guard skipped" in r["message"] and "failed open" in r["message"] for r in records)
        assert all(r["asyncTaskId"] == f"dwrerun-{i}-run-1" for r, i in zip(records, ids, strict=True))
        advance(clock, fn, 125)
        assert sorted(reruns_of(dataworks)) == ids  # every one rerun once, none lost, none twice


LOSE_CANARY_ONE = """
from dwrerun import canary
_on_canary = canary.on_canary
def _lost(step, *args, **kwargs):
    if step.get("slot") == 1:
        raise RuntimeError("the canary's invocation is lost")
    return _on_canary(step, *args, **kwargs)
canary.on_canary = _lost
"""


def test_a_lost_canary_invocation_is_restored_by_a_held_instance(dataworks, cloud, clock):
    ids = seed(dataworks, 6)
    with cloud(reserved_concurrency=2, retries=0, setup=LOSE_CANARY_ONE, **GUARD) as fn:
        for i in ids:
            publish(fn, i)
        advance(clock, fn, 125)  # canary 1 comes due and its invocation fails, with no retry left
        assert reruns_of(dataworks) == []
        advance(clock, fn, 600)  # the held look again: no live canary task, so one of them is the next
        restored = [r for r in logged(fn, "storm") if r["stormEvent"] == "canary-restored"]
        assert len(restored) == 1 and restored[0]["stormSlot"] == 2
        advance(clock, fn, 5)
        assert reruns_of(dataworks) == [restored[0]["instanceId"]]


def test_a_canary_whose_dataworks_keeps_failing_is_retried_by_fc_not_passed_over(dataworks, cloud, clock):
    # GIVEN a storm whose canary comes due while DataWorks fails every read of its first attempt
    ids = seed(dataworks, 6)
    with cloud(reserved_concurrency=2, **GUARD) as fn:
        for i in ids:
            publish(fn, i)
        (canary_note,) = [r for r in logged(fn, "storm") if r["stormEvent"] == "canary"]
        (task,) = [h for h in fn.async_invocations if h.task_id and h.task_id.startswith("dwrerun-p-")]
        advance(clock, fn, task.due_at - clock.now() - 1)  # everything due before the canary has run
        assert reruns_of(dataworks) == []
        dataworks.faults.set("GetTaskInstance", server_error=6)  # the 6 reads of one attempt
        # WHEN the canary comes due
        advance(clock, fn, 2)
        # THEN its first attempt is deferred for FC's retry (as its record says), which reruns it;
        # no other canary takes its place (before the fix: "was not rerun", canary 2 a second later)
        assert reruns_of(dataworks) == [canary_note["instanceId"]]
        assert [r["stormEvent"] for r in logged(fn, "storm")] == ["opened", "canary"]
        assert len(task.attempts) == 2 and task.attempts[0].error is not None
        (deferred,) = [r for r in logged(fn, "instance") if r["reason"] == "deferred"]
        assert deferred["instanceId"] == canary_note["instanceId"] and deferred["asyncTaskId"] == task.task_id
        advance(clock, fn, 2)
        assert reruns_of(dataworks) == [canary_note["instanceId"]]


def test_fifty_failures_at_the_moment_of_opening_make_one_storm_and_one_canary(dataworks, cloud, clock):
    ids = seed(dataworks, 54)
    with cloud(reserved_concurrency=4, **GUARD) as fn:
        for i in ids[:4]:
            publish(fn, i)
        # 50 at once, on four instance processes that share nothing
        rule = EventBridge(fn)
        for i in ids[4:]:
            rule.deliver(failure_event(i))
        fn.drain()
        storm_records = logged(fn, "storm")
        assert [r["stormEvent"] for r in storm_records] == ["opened", "canary"]
        decisions = [r["decision"] for r in logged(fn, "instance")]
        assert (
            decisions.count("held") >= 45
            and len([r for r in logged(fn, "instance") if "p-" in (r["asyncTaskId"] or "")]) == 1
        )


def test_the_guard_is_off_at_threshold_zero(dataworks, cloud, clock):
    ids = seed(dataworks, 8)
    with cloud(reserved_concurrency=2, RERUN_STORM_THRESHOLD="0") as fn:
        records = [instance_records(publish(fn, i)[0])[0] for i in ids]
        assert [r["decision"] for r in records] == ["scheduled"] * 8
        assert not any(storm.is_storm_task(h.task_id) for h in fn.async_invocations)


def test_a_held_instance_gives_up_after_the_max_hold_with_its_reason(dataworks, cloud, clock):
    ids = seed(dataworks, 6)
    with cloud(reserved_concurrency=2, RERUN_STORM_MAX_HOLD_SECONDS="60", **GUARD) as fn:
        for i in ids:
            publish(fn, i)
        advance(clock, fn, 61)  # before the canary is due: the held one looks again, past its hold
        expired = [r for r in logged(fn, "instance") if r["reason"] == "storm-hold-expired"]
        (gave_up,) = [r for r in expired if r["instanceId"] == ids[5]]
        assert gave_up["decision"] == "skip"
        assert "RERUN_STORM_MAX_HOLD_SECONDS=60" in gave_up["message"] and gave_up["stormId"]
        assert ids[5] not in reruns_of(dataworks)


def test_a_flapping_upstream_fails_a_canary_then_a_new_wave_after_the_release_opens_a_new_storm(
    dataworks, cloud, clock
):
    ids = seed(dataworks, 7)
    with cloud(reserved_concurrency=2, **GUARD) as fn:
        for i in ids:
            publish(fn, i)
        advance(clock, fn, 125)
        assert reruns_of(dataworks) == [ids[4]]
        # WHEN the upstream is still down: canary 1's rerun fails again, and its failure event comes
        dataworks.backend.finish(ids[4], "Failure")
        (again,) = instance_records(publish(fn, ids[4], event_id="evt-canary-run-2")[0])
        assert (again["decision"], again["reason"]) == ("held", "storm")  # its own failure joins the held
        advance(clock, fn, 61)  # the check reads it: failed
        failed = [r for r in logged(fn, "storm") if r["stormEvent"] == "canary-failed"]
        assert len(failed) == 1 and failed[0]["stormSlot"] == 2
        # THEN canary 2 goes after the grown interval (240 s), not before
        advance(clock, fn, 238)
        assert reruns_of(dataworks) == [ids[4]]
        advance(clock, fn, 3)
        second = failed[0]["instanceId"]
        assert reruns_of(dataworks) == [ids[4], second]
        # WHEN the upstream is back: canary 2 succeeds, and the held are released
        dataworks.backend.finish(second, "Success")
        advance(clock, fn, 61)
        for _ in range(40):
            advance(clock, fn, 3)
        released = reruns_of(dataworks)[2:]
        assert sorted(released) == sorted(set(ids) - {second}) and len(released) == 6
        assert [r["stormEvent"] for r in logged(fn, "storm")][-1] == "closed"
        # WHEN the upstream flaps: the six released reruns fail again, their events come after the close
        for i in released:
            dataworks.backend.finish(i, "Failure")
        wave = [instance_records(publish(fn, i, event_id=f"evt-{i}-flap")[0])[0] for i in released]
        # THEN the wave counts anew: its first four are scheduled as today, the fifth opens storm 2 as
        # its canary, the sixth is held; the four scheduled are held when they come due
        opened = [r for r in logged(fn, "storm") if r["stormEvent"] == "opened"]
        assert len(opened) == 2 and opened[1]["stormId"] != opened[0]["stormId"]
        assert [r["decision"] for r in wave] == ["scheduled"] * 5 + ["held"]
        assert wave[4]["stormId"] == wave[5]["stormId"] == opened[1]["stormId"]
        advance(clock, fn, 240)
        third = reruns_of(dataworks)[8:]
        assert third == [released[4]]  # only storm 2's canary
        dataworks.backend.finish(third[0], "Success")
        advance(clock, fn, 61)
        for _ in range(40):
            advance(clock, fn, 3)
        # storm 2's release reran the other five, each once
        assert sorted(reruns_of(dataworks)[9:]) == sorted(set(released) - {released[4]})
        for i in set(released) - {released[4]}:
            dataworks.backend.finish(i, "Success")
        assert [dataworks.backend.instance(i).status for i in ids] == ["Success"] * 7
        assert max(dataworks.backend.instance(i).run_number for i in ids) == 4  # 3 reruns: the cap, not past it
        assert not [r for r in logged(fn, "instance") if r["reason"] in ("cap-reached", "storm-hold-expired")]


def test_the_storm_bench_on_instance_processes_sends_fewer_reruns_and_recovers_every_instance(tmp_path):
    # scripts/bench/storm_cloud.py, small: 30 failures of one cause, the guard at 5, against today
    # (threshold 0), each on its own local cloud in a fresh interpreter. No timing is asserted.
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "storm_cloud.py"
    out = tmp_path / "storm.json"
    command = [sys.executable, str(script), "--failures", "30", "--threshold", "5", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1) and out.exists(), done.stderr[-3000:]
    figures = json.loads(out.read_text())
    guard, today = figures["guard"], figures["today"]
    assert guard["storms"] == 1 and today["storms"] == 0
    assert guard["reruns sent"] < today["reruns sent"]
    assert guard["recovered"] == 30 and guard["last recovered (s after clearing)"] is not None
    for run in (guard, today):  # nothing rerun twice, nothing unrecorded, nothing FC gave up on
        assert run["reruns refused"] == run["instances without a record"] == run["invocations FC gave up on"] == 0
