"""storm.py: the storm guard's decisions over FC's async tasks, pure. FC's task store is the local
cloud's in-memory one (localcloud.asynctasks) and time is a number the test moves."""

import json
import threading

import pytest

from dwrerun import canary, schedule, storm
from dwrerun.storm import Cause, Limits
from localcloud.asynctasks import AsyncTasks

CAUSE = Cause(10001, "network-timeout")
OTHER_RULE = Cause(10001, "resource-wait")
OTHER_PROJECT = Cause(10002, "network-timeout")
LIMITS = Limits(threshold=20, window=600, max_hold=7200, backoff_base=120, backoff_max=1800)


class World:
    """FC's task store and a clock the test moves."""

    def __init__(self):
        self.now = 1_000_000.0
        self.tasks = AsyncTasks(lambda: self.now, error=storm.CoordinationError)

    def at(self, seconds: float) -> list[tuple[str, bytes]]:
        """Move the clock to `seconds` after the start; the tasks that came due, Running."""
        self.now = 1_000_000.0 + seconds
        return self.tasks.due(self.now)

    def fail(self, instance_id: int, run: int = 1, cause: Cause = CAUSE, delay: int = 90, **kw) -> storm.Decision:
        return storm.on_failure(self.tasks, LIMITS, cause, instance_id, run, self.now, delay=delay, **kw)

    def ids(self, prefix: str, status: str | None = None) -> list[str]:
        return [t.task_id for t in self.tasks.list(prefix, status=status, limit=10_000)]


@pytest.fixture
def world():
    return World()


def open_storm(world: World, count: int = 20, first: int = 1) -> list[storm.Decision]:
    return [world.fail(first + i) for i in range(count)]


def step_of(world: World, task_id: str) -> storm.Step:
    return storm.parse(world.tasks.tasks[task_id].payload)


# --- detection -------------------------------------------------------------------------------------


def test_a_trickle_below_the_threshold_never_opens_a_storm(world):
    decisions = [world.fail(i) for i in range(1, 20)]
    assert {d.action for d in decisions} == {storm.PROCEED}
    assert world.ids("dwrerun-s-") == []
    # ... nor does one more after the window: the first tallies are no longer Enqueued
    world.at(601)
    assert world.fail(20).action == storm.PROCEED
    assert world.ids("dwrerun-s-") == []


def test_the_threshold_opens_a_storm_whose_opener_is_the_canary_and_the_rest_are_held(world):
    decisions = open_storm(world, 25)
    assert [d.action for d in decisions[:19]] == [storm.PROCEED] * 19
    opener = decisions[19]
    assert opener.action == storm.CANARY_ACTION and opener.epoch == 1
    assert [n.event for n in opener.notes] == [storm.OPENED, storm.CANARY]
    assert opener.notes[0].count == 20
    assert {d.action for d in decisions[20:]} == {storm.HELD}
    # The canary goes on its normal schedule (90 s here), the held look again later, no sooner.
    (canary,) = world.ids("dwrerun-p-")
    assert world.tasks.tasks[canary].due == world.now + 90
    assert step_of(world, canary).get("instanceId") == 20
    assert len(world.ids("dwrerun-h-")) == 6  # the canary is held too: its hold covers a lost canary task


def test_other_causes_are_unaffected_by_a_storm(world):
    open_storm(world, 21)
    assert world.fail(100, cause=OTHER_RULE).action == storm.PROCEED
    assert world.fail(101, cause=OTHER_PROJECT).action == storm.PROCEED


def test_copies_of_one_failure_count_once(world):
    for _ in range(25):
        assert world.fail(7).action == storm.PROCEED  # the same instance and run: one tally
    assert len(world.ids("dwrerun-t-")) == 1


def test_fifty_failures_at_the_moment_of_opening_make_one_storm_and_one_canary(world):
    open_storm(world, 19)
    decisions, start = [], threading.Barrier(50)

    def fail(i):
        start.wait()
        decisions.append(world.fail(1000 + i))

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    actions = [d.action for d in decisions]
    assert actions.count(storm.CANARY_ACTION) == 1
    assert len(world.ids("dwrerun-s-")) == 1 and len(world.ids("dwrerun-p-")) == 1
    assert actions.count(storm.PROCEED) + actions.count(storm.HELD) == 49  # those that counted under 20 went on


def test_the_guard_is_off_at_threshold_zero_or_without_scheduling():
    assert not Limits(0, 600, 7200, 120, 1800).on
    assert not Limits(20, 600, 7200, 0, 1800).on
    assert LIMITS.on


def test_a_delayed_invocation_is_held_in_an_open_storm_but_never_tallied(world):
    world.fail(1)
    before = world.ids("dwrerun-t-")
    assert world.fail(1, counts=False).action == storm.PROCEED
    assert world.ids("dwrerun-t-") == before
    open_storm(world, 20, first=100)
    assert world.fail(1, counts=False).action == storm.HELD


# --- the canary --------------------------------------------------------------------------------------


def run_canary(world, started=True):
    (task_id,) = [t for t, _ in world.at(world.now - 1_000_000 + 90) if t.startswith("dwrerun-p-")]
    calls = []
    result = canary.on_canary(
        step_of(world, task_id), world.tasks, LIMITS, world.now, lambda i, r: calls.append((i, r)) or started
    )
    world.tasks.finish(task_id)
    return calls, result


def test_the_canary_is_rerun_when_due_then_checked(world):
    open_storm(world, 22)
    calls, _ = run_canary(world)
    assert calls == [(20, 1)]
    (check,) = world.ids("dwrerun-p-", status="Enqueued")
    assert check.endswith("-1-k1") and world.tasks.tasks[check].due == world.now + canary.CHECK_SECONDS


def check(world, status, run):
    world.now += canary.CHECK_SECONDS
    (task_id,) = [t for t, _ in world.tasks.due(world.now) if "-k" in t]
    result = canary.on_check(step_of(world, task_id), world.tasks, LIMITS, world.now, lambda i: (status, run))
    world.tasks.finish(task_id)
    return result


def test_a_running_canary_is_checked_again_and_reads_once_a_check(world):
    open_storm(world, 22)
    run_canary(world)
    reads = []
    world.now += canary.CHECK_SECONDS
    (task_id,) = [t for t, _ in world.tasks.due(world.now)]
    canary.on_check(
        step_of(world, task_id), world.tasks, LIMITS, world.now, lambda i: reads.append(i) or ("Running", 2)
    )
    assert reads == [20]
    assert [t for t in world.ids("dwrerun-p-", "Enqueued")][0].endswith("-1-k2")


def test_a_canary_that_fails_again_gives_way_to_the_oldest_held_after_a_growing_interval(world):
    open_storm(world, 25)
    run_canary(world)
    result = check(world, "Failure", 2)
    (note,) = result.notes
    assert note.event == storm.CANARY_FAILED and note.instance_id == 21  # the oldest held
    (slot2,) = world.ids("dwrerun-p-", "Enqueued")
    assert slot2.endswith("-2") and world.tasks.tasks[slot2].due == world.now + LIMITS.canary_interval(1)
    # the second canary fails too: the interval grows again
    world.now = world.tasks.tasks[slot2].due
    world.tasks.due(world.now)
    canary.on_canary(step_of(world, slot2), world.tasks, LIMITS, world.now, lambda i, r: True)
    world.tasks.finish(slot2)
    result = check(world, "Failure", 2)
    (slot3,) = [t for t in world.ids("dwrerun-p-", "Enqueued")]
    assert world.tasks.tasks[slot3].due == world.now + LIMITS.canary_interval(2)
    assert LIMITS.canary_interval(2) > LIMITS.canary_interval(1) > LIMITS.canary_interval(0)


def test_a_canary_that_was_not_rerun_gives_way_at_once_without_growth(world):
    open_storm(world, 22)
    _, result = run_canary(world, started=False)
    (note,) = result.notes
    assert note.event == storm.CANARY and note.instance_id == 21
    (slot2,) = world.ids("dwrerun-p-", "Enqueued")
    assert world.tasks.tasks[slot2].due == world.now + 1


def test_a_canary_stuck_without_progress_gives_way_after_max_checks(world, monkeypatch):
    monkeypatch.setattr(canary, "MAX_CHECKS", 2)
    open_storm(world, 22)
    run_canary(world)
    check(world, "Running", 2)
    result = check(world, "Running", 2)
    assert [n.event for n in result.notes] == [storm.CANARY]


# --- the release ---------------------------------------------------------------------------------------


def test_a_canary_that_succeeds_releases_the_held_oldest_first_in_growing_groups(world):
    open_storm(world, 20)
    for i in range(100):  # held over time: instance 1000 is the oldest
        world.now += 1
        world.fail(1000 + i)
    run_canary(world)
    result = check(world, "Success", 2)
    events = [n.event for n in result.notes]
    assert events[0] == storm.RELEASE and result.notes[0].count == 101  # the canary is held too
    assert set(events[1:]) == {storm.RELEASE_GROUP}
    sizes = [n.count for n in result.notes[1:]]
    assert sizes[:4] == [5, 10, 20, 40] and sum(sizes) == 101
    releases = sorted(
        (world.tasks.tasks[t].due, schedule.parse(world.tasks.tasks[t].payload).instance_id)
        for t in world.tasks.tasks
        if "-run-" in t  # the releases: ScheduledReruns with their storm
    )
    assert [i for _, i in releases] == [20, *range(1000, 1100)]  # oldest first (20 opened it)
    assert releases[-1][0] - world.now <= canary.ramp_seconds(101)
    assert world.ids("dwrerun-r-") and world.ids("dwrerun-x-")


def test_the_release_never_exceeds_its_rate():
    offsets = canary.release_offsets(2000)
    per_second: dict[int, int] = {}
    for o in offsets:
        per_second[int(o)] = per_second.get(int(o), 0) + 1
    assert max(per_second.values()) <= canary.RELEASE_MAX_PER_SECOND
    assert offsets == sorted(offsets)
    sizes = [members for _, members, _ in canary.groups(canary.release_offsets(300))]
    # growing groups; only the last one holds what is left
    assert sizes[:5] == [5, 10, 20, 40, 80] and all(a <= b for a, b in zip(sizes[:-2], sizes[1:-1], strict=True))


def test_a_release_has_its_own_task_id_so_a_scheduled_rerun_of_the_same_run_does_not_block_it(world):
    rerun = schedule.ScheduledRerun(5, 1, "2026-12-07T00:00:00Z", storm=storm.release_tag(CAUSE, 1))
    assert rerun.async_task_id == f"dwrerun-5-run-1-{CAUSE.key}-1" != schedule.async_task_id(5, 1)
    assert schedule.parse(rerun.to_payload()) == rerun
    body = json.loads(rerun.to_payload())
    body["scheduledRerun"]["stormId"] = "nope"
    with pytest.raises(schedule.InvalidScheduledRerun) as refused:
        schedule.parse(json.dumps(body))
    assert str(refused.value) == "stormId must be null or a storm id like k0123456789-1"


def test_a_failure_during_the_release_joins_it_and_a_new_wave_opens_a_new_storm(world):
    open_storm(world, 21)
    run_canary(world)
    check(world, "Success", 2)
    state = storm.look(world.tasks, CAUSE)
    assert state.releasing(world.now) and state.generation == 2
    joined = world.fail(500)
    assert joined.action == storm.JOIN and joined.next_check >= state.ramp_end
    decisions = [world.fail(600 + i) for i in range(20)]
    assert storm.CANARY_ACTION in [d.action for d in decisions]
    assert storm.look(world.tasks, CAUSE) == storm.State(2, open=True)


# --- a held instance ---------------------------------------------------------------------------------------


def hold_of(world, instance_id):
    """The latest hold task of one instance (storm 1)."""
    return [t for t in world.ids("dwrerun-h-", "Enqueued") if f"-1-{instance_id}-" in t][-1]


def look_at(world, task_id):
    result = canary.on_hold(step_of(world, task_id), world.tasks, LIMITS, world.now)
    world.tasks.finish(task_id)
    return result


def test_a_held_instance_looks_again_while_the_storm_is_open_and_makes_no_dataworks_call(world):
    open_storm(world, 21)
    hold = hold_of(world, 21)
    world.now = world.tasks.tasks[hold].due
    world.tasks.due(world.now)
    result = look_at(world, hold)  # on_hold takes no DataWorks client at all
    assert result.verdict == "held"
    assert hold_of(world, 21).endswith("-2")


def test_a_held_instance_gives_up_after_the_max_hold(world):
    open_storm(world, 21)
    for _ in range(12):  # 12 looks of 600 s: 7200 s
        hold = hold_of(world, 21)
        world.now = world.tasks.tasks[hold].due
        world.tasks.due(world.now)
        for t in world.ids("dwrerun-p-", "Running"):  # keep the canary chain alive
            world.tasks.tasks[t].status = "Enqueued"
        result = look_at(world, hold)
    assert result.verdict == "expired" and "RERUN_STORM_MAX_HOLD_SECONDS=7200" in result.message


def test_a_lost_canary_is_restored_by_a_held_instance_and_only_once(world):
    open_storm(world, 22)
    (canary,) = world.ids("dwrerun-p-")
    world.tasks.lose(canary)
    holds = world.ids("dwrerun-h-")
    world.now = max(world.tasks.tasks[h].due for h in holds)
    world.tasks.due(world.now)
    results = [look_at(world, h) for h in holds]
    restored = [n for r in results for n in r.notes]
    assert [n.event for n in restored] == [storm.CANARY_RESTORED]
    assert len(world.ids("dwrerun-p-", "Enqueued")) == 1


def test_a_held_instance_finds_the_release_and_queues_its_own_if_it_was_missed(world):
    open_storm(world, 21)
    run_canary(world)
    hold = hold_of(world, 21)
    world.tasks.tasks[hold].status = "Running"  # looking right now: the release does not list it
    check(world, "Success", 2)
    result = look_at(world, hold)
    assert result.verdict == "released"
    assert any(t.startswith("dwrerun-21-run-1-") for t in world.tasks.tasks)


# --- failing open ------------------------------------------------------------------------------------------


def test_fc_failing_makes_a_failure_go_on_as_today(world):
    world.tasks.fail()
    decision = world.fail(1)
    assert decision.action == storm.PROCEED and "ServiceUnavailable" in decision.error


def test_fc_failing_releases_a_held_instance_under_its_release_id_or_reruns_it(world):
    open_storm(world, 21)
    hold = hold_of(world, 21)
    world.tasks.fail()
    assert look_at(world, hold).verdict == "fail-open"


def test_a_malformed_storm_payload_is_refused():
    assert storm.parse(b'{"instanceId": 1}') is None
    with pytest.raises(ValueError):
        storm.parse(b'{"stormStep": {"step": "hold", "projectId": 1, "rule": "x", "epoch": 1, "instanceId": "1"}}')
    with pytest.raises(ValueError):
        storm.parse(b'{"stormStep": {"step": "explode", "projectId": 1, "rule": "x", "epoch": 1}}')
    step = storm.parse(storm.payload("hold", CAUSE, 3, instanceId=5, runNumber=1, seq=2))
    assert (step.step, step.cause, step.epoch, step.get("seq")) == ("hold", CAUSE, 3, 2)


def test_every_id_is_a_valid_fc_task_id():
    ids = [
        storm.tally_id(CAUSE, 1, 2**62, 999),
        storm.storm_id(CAUSE, 99),
        storm.canary_id(CAUSE, 99, 99, 99),
        storm.hold_id(CAUSE, 99, 2**62, 999, 99),
        storm.release_marker_id(CAUSE, 99),
        storm.close_id(CAUSE, 99),
        schedule.ScheduledRerun(2**62, 999, "2026-12-07T00:00:00Z", storm=storm.release_tag(CAUSE, 99)).async_task_id,
    ]
    assert all(schedule.TASK_ID_PATTERN.fullmatch(i) for i in ids), ids


@pytest.mark.separate_process  # a fresh interpreter runs scripts/bench/storm.py: mutmut's copy has no function/
def test_the_storm_simulation_runs_with_and_without_the_guard_and_its_checks_hold():
    # scripts/bench/storm.py: the 500-failure scenario and its controls, seeded (no timing is asserted)
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "storm.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "FAIL" not in done.stdout and done.stdout.count("  ok   ") == 11
    assert "guard/today" in done.stdout and "control: FC's reads failing" in done.stdout
