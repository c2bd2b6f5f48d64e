"""The storm guard inside the event pipeline, run in this process.

tests/test_storm_cloud.py runs the guard end to end on FC instance processes; a mutant switched on
in the test process is invisible there. Here the event function runs in-process (conftest's
`make_function`), and its own FC queue is a registered `localcloud.fc.Function` (async task mode)
behind the local FC OpenAPI, so the guard's calls (InvokeFunction with delays and task ids,
ListAsyncTasks, GetAsyncTask) go over HTTP with signatures. That queue's clock is a ManualClock
nobody advances: every task the guard creates is delayed (a tally by the window, a canary by its
backoff, a hold by 600 s, a rerun scheduled before the storm by its own), so none comes due and no
instance process starts (the `cloud` fixture checks it). A storm step is delivered to the
in-process function by hand, from the queue's own task payloads.
"""

import json
import time

import pytest

from conftest import PROJECT_ID, failure_event, instance_records, make_function, seed_failed, waiting_queue
from dwrerun import schedule, storm

THRESHOLD = 3
BASE = 1000030000000  # the instances of these tests
SIGNING_KEY = "storm-pipeline-test-key-0123456789abcdef"
GUARD = {
    "RERUN_STORM_THRESHOLD": str(THRESHOLD),
    "RERUN_STORM_WINDOW_SECONDS": "600",
    "RERUN_BACKOFF_BASE_SECONDS": "120",
    "RERUN_SIGNING_KEY": SIGNING_KEY,
}
DEFAULT = storm.Cause(PROJECT_ID, "default")  # logs read, no rule matched


@pytest.fixture
def now(mocker) -> float:
    """The function's wall clock (`schedule.clock`: `dueAt`, the guard's `now`), stopped."""
    stopped = float(int(time.time()))
    mocker.patch.object(schedule, "clock", lambda: stopped)
    return stopped


@pytest.fixture
def cloud(dataworks, tmp_path, now):
    """make(**env) -> the event function in this process with the storm guard on, and its FC queue
    (the Function the local FC OpenAPI serves as `dwrerun-event`), whose tasks never come due."""
    with waiting_queue(now) as (api, queue):
        made = []

        def make(**env):
            values = {"FUNCTION_COMPUTE_ENDPOINT": api.url, **GUARD, **env}
            fn = make_function(dataworks, tmp_path, **values)
            made.append(fn)
            return fn, queue

        yield make
        for fn in made:
            fn.close()
        # Nothing ran on an instance process: every task is still waiting in the queue.
        assert queue.instances == [] and queue.invocations == []
        assert all(task.due_at is not None and task.attempts == [] for task in queue.async_invocations)


def seed(dataworks, count: int, first: int = BASE) -> list[int]:
    ids = [first + i for i in range(count)]
    for instance_id in ids:
        seed_failed(dataworks, instance_id)
    return ids


def fail(fn, instance_id: int, event_id: str | None = None) -> dict:
    """One failure event, in-process: the instance's one record."""
    inv = fn.invoke(json.dumps(failure_event(instance_id, event_id)).encode())
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    return record


def storm_records(inv) -> list[dict]:
    return [r for r in inv.records if r.get("kind") == "storm"]


def task_ids(queue, kind: str) -> list[str]:
    """The queue's task ids of one kind of the guard's tasks (t, s, p, h, r, x)."""
    return [t.task_id for t in queue.async_invocations if (t.task_id or "").startswith(f"dwrerun-{kind}-")]


def held_look(queue, instance_id: int, seq: int = 1) -> bytes:
    """The payload of a held instance's next look, as the guard queued it."""
    task = queue.get_async_task(storm.hold_id(DEFAULT, 1, instance_id, 1, seq))
    assert task is not None, f"no look {seq} queued for {instance_id}"
    return task["taskPayload"].encode()


# --- a storm opens --------------------------------------------------------------------------------


def test_the_failure_that_reaches_the_threshold_is_the_canary_and_the_ones_after_it_are_held(dataworks, cloud, now):
    # GIVEN 5 instances failing for one cause (their logs were read and matched no rule: "default"),
    # the guard on at a threshold of 3
    ids = seed(dataworks, 5)
    fn, queue = cloud()
    # WHEN their failure events arrive one after another
    first, second = fail(fn, ids[0]), fail(fn, ids[1])
    opener_inv = fn.invoke(json.dumps(failure_event(ids[2])).encode())
    later = [fail(fn, i) for i in ids[3:]]
    # THEN the two below the threshold are scheduled as today, each under its own task, counted
    for record, instance_id in zip((first, second), ids[:2], strict=True):
        assert (record["decision"], record["asyncTaskId"]) == ("scheduled", f"dwrerun-{instance_id}-run-1")
        assert "stormCause" not in record and "stormId" not in record
    # ... the third opens storm 1 of the cause and is its canary: rerun on its own schedule, under
    # the task of storm 1's slot 1, its record naming the storm
    assert opener_inv.error is None, opener_inv.error
    (opener,) = instance_records(opener_inv)
    canary_task = storm.canary_id(DEFAULT, 1, 1)
    assert (opener["decision"], opener["reason"], opener["asyncTaskId"]) == ("scheduled", "eligible", canary_task)
    assert (opener["stormCause"], opener["stormId"]) == (f"{PROJECT_ID}/default", storm.release_tag(DEFAULT, 1))
    assert 60 <= opener["delaySeconds"] <= 120 and opener["dueAt"] == schedule.due_at(opener["delaySeconds"], now)
    opened, canary_note = storm_records(opener_inv)
    assert (opened["stormEvent"], opened["count"], opened["instanceId"]) == ("opened", THRESHOLD, ids[2])
    assert (canary_note["stormEvent"], canary_note["stormSlot"], canary_note["instanceId"]) == ("canary", 1, ids[2])
    # ... the ones after it are held: no rerun, no delay of their own, looked at again in 600 s
    for record, instance_id in zip(later, ids[3:], strict=True):
        assert (record["instanceId"], record["decision"], record["reason"]) == (instance_id, "held", "storm")
        assert (record["stormCause"], record["stormId"]) == (f"{PROJECT_ID}/default", storm.release_tag(DEFAULT, 1))
        # (a record carries delaySeconds only for `scheduled` and `dry-run`: Item.to_outcome)
        assert record["delaySeconds"] is None and record["asyncTaskId"] is None
        assert record["dueAt"] == schedule.due_at(storm.HOLD_CHECK_SECONDS, now)
    # ... and the queue holds what the guard said: one storm, one canary, a look for each held
    # instance (the canary's own included), a tally per failure; nothing rerun
    assert task_ids(queue, "s") == [storm.storm_id(DEFAULT, 1)]
    assert task_ids(queue, "p") == [canary_task]
    assert task_ids(queue, "h") == [storm.hold_id(DEFAULT, 1, i, 1, 1) for i in ids[2:]]
    assert task_ids(queue, "t") == [storm.tally_id(DEFAULT, 1, i, 1) for i in ids[:3]]
    assert dataworks.journal.calls("RerunTaskInstances") == []


def test_distinct_instances_each_count_and_copies_of_one_failure_count_once(dataworks, cloud):
    # GIVEN 3 instances failing for one cause, the guard at a threshold of 3
    first, second, third = seed(dataworks, 3)
    fn, queue = cloud()
    # WHEN the first fails, a second event about the same failed run arrives (another event id, so
    # no warm instance's memory stops it), and then the second instance fails
    assert fail(fn, first, "evt-a")["decision"] == "scheduled"
    copy = fail(fn, first, "evt-a-copy")
    assert fail(fn, second)["decision"] == "scheduled"
    # THEN the copy is tallied once (FC's 409 on the same tally) and scheduled once: no storm at 2
    # distinct failures counted of 3
    assert (copy["decision"], copy["reason"]) == ("skip", "already-scheduled")
    assert task_ids(queue, "t") == [storm.tally_id(DEFAULT, 1, i, 1) for i in (first, second)]
    assert task_ids(queue, "s") == []
    # WHEN a third distinct instance fails
    record = fail(fn, third)
    # THEN that makes 3: it opens the storm as its canary
    assert (record["decision"], record["asyncTaskId"]) == ("scheduled", storm.canary_id(DEFAULT, 1, 1))
    assert task_ids(queue, "s") == [storm.storm_id(DEFAULT, 1)]


def test_a_failure_whose_log_was_not_read_has_no_cause_and_is_never_held(dataworks, cloud):
    # GIVEN 6 instances failing, with logs not read (RERUN_READ_LOGS=false: no rule, so no cause)
    ids = seed(dataworks, 6)
    fn, queue = cloud(RERUN_READ_LOGS="false")
    # WHEN their failure events arrive, twice the threshold
    records = [fail(fn, i) for i in ids]
    # THEN each is scheduled as today under its own task: none counted, none held, no storm
    assert [(r["decision"], r["asyncTaskId"]) for r in records] == [("scheduled", f"dwrerun-{i}-run-1") for i in ids]
    assert all(r["rule"] is None and "stormCause" not in r for r in records)
    assert [t.task_id for t in queue.async_invocations] == [f"dwrerun-{i}-run-1" for i in ids]


# --- a storm's own step, delivered to the function --------------------------------------------------


def test_a_held_instances_look_is_handled_as_a_storm_step_and_holds_it_on(dataworks, cloud, now):
    # GIVEN an open storm (3 failures at a threshold of 3) and a fourth instance held in it
    ids = seed(dataworks, 4)
    fn, queue = cloud()
    for instance_id in ids:
        fail(fn, instance_id)
    # WHEN its look (the hold task the guard queued) is delivered to the function
    inv = fn.invoke(held_look(queue, ids[3]))
    # THEN the storm step is handled: the canary is still queued, so the instance is held on, its
    # record says so and names the storm, and its next look is queued
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["instanceId"], record["decision"], record["reason"]) == (ids[3], "held", "storm")
    assert (record["stormCause"], record["stormId"]) == (f"{PROJECT_ID}/default", storm.release_tag(DEFAULT, 1))
    assert record["dueAt"] == schedule.due_at(storm.HOLD_CHECK_SECONDS, now)
    assert inv.records[-1]["kind"] == "summary" and inv.records[-1]["outcome"] == "done"
    assert held_look(queue, ids[3], seq=2)
    assert dataworks.journal.calls("RerunTaskInstances") == []


def test_a_storm_step_that_cannot_reach_fc_for_want_of_credentials_is_a_config_error_naming_its_instance(
    dataworks, cloud
):
    # GIVEN an open storm with a fourth instance held in it
    ids = seed(dataworks, 4)
    fn, queue = cloud()
    for instance_id in ids:
        fail(fn, instance_id)
    # WHEN its look is delivered to a function without a role (FC injects no credentials)
    fn.rotate_credentials(None)
    queued = len(queue.async_invocations)
    inv = fn.invoke(held_look(queue, ids[3]))
    # THEN the invocation returns (no retry brings credentials) and its record is a config-error
    # skip of the instance the step names
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["instanceId"], record["decision"], record["reason"]) == (ids[3], "skip", "config-error")
    assert record["message"].startswith("no credentials")
    assert len(queue.async_invocations) == queued  # nothing reached FC


def test_a_storm_step_under_a_bad_setting_is_a_config_error_naming_its_instance(dataworks, cloud):
    # GIVEN an open storm with a fourth instance held in it
    ids = seed(dataworks, 4)
    fn, queue = cloud()
    for instance_id in ids:
        fail(fn, instance_id)
    # WHEN its look comes due after a deploy broke a setting
    broken, _ = cloud(RERUN_CHUNK_SIZE="0")
    inv = broken.invoke(held_look(queue, ids[3]))
    # THEN the held instance's chain of looks ends with a record naming it and the setting, not with
    # a "not a failure" about nobody
    assert inv.error is None, inv.error
    (record,) = instance_records(inv)
    assert (record["instanceId"], record["decision"], record["reason"]) == (ids[3], "skip", "config-error")
    assert "RERUN_CHUNK_SIZE" in record["message"]
    # ... and a tally, which names no instance to rerun, writes no instance record
    tally = next(t for t in queue.async_invocations if (t.task_id or "").startswith("dwrerun-t-"))
    assert instance_records(broken.invoke(tally.event)) == []


def test_a_storm_step_on_python310_finds_the_roles_keys_in_the_context_when_the_variables_are_empty(dataworks, cloud):
    # GIVEN an open storm with a fourth instance held in it
    ids = seed(dataworks, 4)
    fn, queue = cloud()
    for instance_id in ids:
        fail(fn, instance_id)
    # WHEN its look reaches a python3.10 instance whose ALIBABA_CLOUD_* variables are empty
    empty = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "",
    }
    old, _ = cloud(runtime="python3.10", **empty)
    inv = old.invoke(held_look(queue, ids[3]))
    # THEN the keys in context.credentials serve, as for a failure event: the instance is held on
    (record,) = instance_records(inv)
    assert (record["instanceId"], record["decision"], record["reason"]) == (ids[3], "held", "storm")


def test_a_rerun_scheduled_before_the_storm_is_held_when_it_comes_due_into_it(dataworks, cloud):
    # GIVEN the first failure scheduled as today, then the storm opened by the ones after it
    ids = seed(dataworks, 3)
    fn, queue = cloud()
    for instance_id in ids:
        fail(fn, instance_id)
    # WHEN the first one's delayed invocation comes due (its payload names the rule, not its log)
    task = queue.get_async_task(f"dwrerun-{ids[0]}-run-1")
    inv = fn.invoke(task["taskPayload"].encode())
    # THEN the rule it names is its cause: held in the storm, not rerun
    (record,) = instance_records(inv)
    assert (record["instanceId"], record["decision"], record["reason"]) == (ids[0], "held", "storm")
    assert dataworks.journal.calls("RerunTaskInstances") == []


def test_the_release_marker_coming_due_does_nothing(dataworks, cloud, now):
    # GIVEN the marker a release queues (`dwrerun-r-...`, due a second later): it only says the
    # storm is releasing, for the looks that read it (docs/storm-guard.md)
    fn, _ = cloud()
    marker = storm.payload("release", DEFAULT, 1, releaseStart=now, rampEnd=now + 60, held=3)
    # WHEN it comes due
    inv = fn.invoke(marker)
    # THEN nothing is recorded about an instance, nothing is queued, DataWorks is not called
    assert inv.error is None, inv.error
    assert instance_records(inv) == [] and len(dataworks.journal) == 0
