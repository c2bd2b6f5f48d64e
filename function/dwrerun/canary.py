"""The storm's own tasks when they come due, pure: a canary, its checks, the release, a held instance's look.

storm.py decides what a failure meets (count, open, hold); this decides what the storm's chain of
tasks does next, over the same `Tasks` (FC's async tasks) and a `now`:

- a canary is due: rerun its instance (`rerun_now`, the caller's pipeline), then check it a minute later;
- a check reads the canary (`read`, one GetTaskInstance): succeeded -> release; failed again ->
  the oldest held instance is the next canary after a growing interval; still running -> look again;
- the release queues every held instance's rerun, oldest first, in groups that double every
  RELEASE_GROUP_SECONDS, at most RELEASE_MAX_PER_SECOND;
- a held instance's look: released (it queues its own if the release missed it), held on (and
  restoring a lost canary: the watchdog), or given up after RERUN_STORM_MAX_HOLD_SECONDS.

storm_tasks.py runs these with the event function's clients and writes their records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dwrerun.config import FC_MAX_ASYNC_DELAY
from dwrerun.storm import (
    CANARY,
    CANARY_FAILED,
    CANARY_RESTORED,
    JOIN_SPREAD_SECONDS,
    LIST_LIMIT,
    LIVE,
    PREFIX,
    RELEASE,
    RELEASE_GROUP,
    Cause,
    CoordinationError,
    Limits,
    Note,
    Step,
    Tasks,
    _body,
    _positive,
    _spread,
    canary_id,
    close_id,
    hold,
    payload,
    queue_release,
    release_marker_id,
)

CHECK_SECONDS = 60  # a canary's rerun is checked this long after it went out, then as often while it runs
MAX_CHECKS = 60  # a canary that shows no progress after this many checks gives way to the next one
MAX_HELD_LISTED = 5000  # a release lists at most this many held instances (50 pages)
RELEASE_FIRST_GROUP = 5  # instances released in the first group; each group doubles
RELEASE_GROUP_SECONDS = 30  # a group every this many seconds
RELEASE_MAX_PER_SECOND = 4.0  # releases per second at most: 20% of Enterprise's write quota (sizing.md)


# --- the release ---------------------------------------------------------------------------------


def release_offsets(count: int) -> list[float]:
    """Seconds after the release starts at which each of `count` held instances (oldest first) goes.

    Growing groups: the first RELEASE_FIRST_GROUP, then twice as many each RELEASE_GROUP_SECONDS, never
    more than RELEASE_MAX_PER_SECOND; within a group, evenly spread over its seconds.
    """
    offsets: list[float] = []
    group, size = 0, RELEASE_FIRST_GROUP
    cap = max(1, int(RELEASE_MAX_PER_SECOND * RELEASE_GROUP_SECONDS))
    while len(offsets) < count:
        members = min(size, cap, count - len(offsets))
        start = group * RELEASE_GROUP_SECONDS
        offsets += [start + RELEASE_GROUP_SECONDS * i / members for i in range(members)]
        group, size = group + 1, size * 2
    return offsets


def groups(offsets: list[float]) -> list[tuple[int, int, float]]:
    """(group, members, start offset) for release-group records."""
    out: dict[int, list[float]] = {}
    for offset in offsets:
        out.setdefault(int(offset // RELEASE_GROUP_SECONDS), []).append(offset)
    return [(g, len(members), g * RELEASE_GROUP_SECONDS) for g, members in sorted(out.items())]


def held(tasks: Tasks, cause: Cause, epoch: int) -> list[dict]:
    """The instances held in storm `epoch` (one entry per instance and run), oldest first."""
    found: dict[int, dict] = {}
    for task in tasks.list(f"{PREFIX}h-{cause.key}-{epoch}-", status="Enqueued", limit=MAX_HELD_LISTED):
        body = _body(task)
        instance_id, run = body.get("instanceId"), body.get("runNumber")
        if not (_positive(instance_id) and _positive(run)):
            continue
        # An instance held at two runs (a failed canary, held again) counts once, at its latest run.
        if instance_id not in found or run > found[instance_id]["runNumber"]:
            found[instance_id] = body
    return sorted(found.values(), key=lambda b: (b.get("heldSince") or 0, b["instanceId"]))


def ramp_seconds(count: int) -> float:
    offsets = release_offsets(count)
    return (offsets[-1] if offsets else 0) + RELEASE_GROUP_SECONDS


# --- the storm's own tasks, when they come due ---------------------------------------------------


@dataclass
class Result:
    """What a storm task's invocation did: storm records to write, and a held instance's fate."""

    notes: list[Note] = field(default_factory=list)
    # hold: "held" (looked again later), "released" (its release is queued), "expired", "fail-open"
    verdict: str | None = None
    message: str = ""
    next_check: float | None = None
    error: str | None = None


def on_canary(step: Step, tasks: Tasks, limits: Limits, now: float, rerun_now) -> Result:
    """Canary `slot` is due: rerun its instance now (`rerun_now(instance, run)` -> started?), then check it."""
    started = rerun_now(step.get("instanceId"), step.get("runNumber"))
    result = Result()
    try:
        if started:
            _queue_check(tasks, step, 1)
        else:  # not rerun (no longer failed at that run, or refused): the next canary, with no growth
            result.notes += _next_canary(tasks, limits, step, now, grow=False, why="was not rerun")
    except CoordinationError as exc:
        result.error = str(exc)  # a held instance's look restores the chain (the watchdog)
    return result


def on_check(step: Step, tasks: Tasks, limits: Limits, now: float, read) -> Result:
    """Check `n` of a canary: `read(instance)` -> (status, run) or None when it could not be read."""
    check, instance_id, run = step.get("check", 1), step.get("instanceId"), step.get("runNumber")
    seen = read(instance_id)
    result = Result()
    try:
        if seen is not None and seen[0] == "Success":
            result.notes += release(tasks, step.cause, step.epoch, now, canary=instance_id)
        elif seen is not None and seen[0] == "Failure" and seen[1] is not None and seen[1] > run:
            result.notes += _next_canary(tasks, limits, step, now, grow=True, why=f"failed again (run {seen[1]})")
        elif check >= MAX_CHECKS:  # no progress for an hour: the next canary (resilience4j#903's stuck probe)
            result.notes += _next_canary(
                tasks, limits, step, now, grow=False, why=f"showed no progress in {check} checks"
            )
        else:  # still running, not started yet, or not read: look again
            _queue_check(tasks, step, check + 1)
    except CoordinationError as exc:
        result.error = str(exc)
    return result


def _queue_check(tasks: Tasks, step: Step, check: int) -> None:
    """Check `check` of the canary `step` is about (its own step or a check's), CHECK_SECONDS on."""
    slot = step.get("slot", 1)
    body = {"instanceId": step.get("instanceId"), "runNumber": step.get("runNumber"), "failed": step.get("failed", 0)}
    tasks.create(
        canary_id(step.cause, step.epoch, slot, check),
        CHECK_SECONDS,
        payload("check", step.cause, step.epoch, slot=slot, check=check, **body),
    )


def _next_canary(tasks: Tasks, limits: Limits, step: Step, now: float, *, grow: bool, why: str) -> list[Note]:
    cause, epoch, slot = step.cause, step.epoch, step.get("slot", 1)
    failed = step.get("failed", 0) + (1 if grow else 0)
    candidates = [b for b in held(tasks, cause, epoch) if b["instanceId"] != step.get("instanceId")]
    if candidates:
        chosen = candidates[0]
        instance_id, run = chosen["instanceId"], chosen["runNumber"]
    else:  # nobody else is held: the same instance again, at its latest run
        instance_id, run = step.get("instanceId"), step.get("runNumber") + (1 if grow else 0)
    wait = limits.canary_interval(failed) if grow else 1
    created = tasks.create(
        canary_id(cause, epoch, slot + 1),
        wait,
        payload("canary", cause, epoch, slot=slot + 1, instanceId=instance_id, runNumber=run, failed=failed),
    )
    if not created:
        return []
    event = CANARY_FAILED if grow else CANARY
    message = f"canary {slot} (instance {step.get('instanceId')}) {why}: canary {slot + 1} is instance {instance_id}, in {wait} s"
    return [Note(event, cause, epoch, message, instance_id, count=failed, due_at=now + wait, slot=slot + 1)]


def release(tasks: Tasks, cause: Cause, epoch: int, now: float, *, canary: int | None = None) -> list[Note]:
    """A canary succeeded: mark the storm releasing, queue every held instance's release, oldest first."""
    bodies = held(tasks, cause, epoch)
    offsets = release_offsets(len(bodies))
    ramp = ramp_seconds(len(bodies))
    tasks.create(
        release_marker_id(cause, epoch),
        1,
        payload("release", cause, epoch, releaseStart=now, rampEnd=now + ramp, held=len(bodies)),
    )
    released = sum(
        1
        for body, offset in zip(bodies, offsets, strict=True)
        if queue_release(tasks, cause, epoch, body["instanceId"], body["runNumber"], now, offset, body.get("eventId"))
    )
    tasks.create(
        close_id(cause, epoch),
        # a release ramp past an hour (over 14,000 held) ends its tail at FC's longest delay
        max(1, min(FC_MAX_ASYNC_DELAY, math.ceil(ramp))),
        payload("close", cause, epoch, released=released),
    )
    by = f"canary {canary} succeeded" if canary else "released"
    notes = [
        Note(
            RELEASE,
            cause,
            epoch,
            f"{by}: {len(bodies)} held instances are released oldest first over {math.ceil(ramp)} s",
            canary,
            len(bodies),
            now + ramp,
        )
    ]
    for group, members, start in groups(offsets):
        notes.append(
            Note(
                RELEASE_GROUP,
                cause,
                epoch,
                f"release group {group + 1}: {members} instances from +{start} s",
                count=members,
                due_at=now + start,
                slot=group + 1,
            )
        )
    return notes


def on_hold(step: Step, tasks: Tasks, limits: Limits, now: float) -> Result:
    """A held instance's look: released, still held (restoring a lost canary), or given up."""
    cause, epoch = step.cause, step.epoch
    instance_id, run, seq = step.get("instanceId"), step.get("runNumber"), step.get("seq", 1)
    held_since = step.get("heldSince") or now
    event_id = step.get("eventId")
    try:
        marker = tasks.get(release_marker_id(cause, epoch))
        if marker is not None:
            body = _body(marker)
            at = max(now, body.get("rampEnd") or now) + _spread(instance_id, JOIN_SPREAD_SECONDS)
            queue_release(tasks, cause, epoch, instance_id, run, now, at - now, event_id)  # 409: already queued
            return Result(verdict="released", message=f"storm {cause.label} #{epoch} is releasing", next_check=at)
        if now - held_since >= limits.max_hold:
            return Result(
                verdict="expired",
                message=(
                    f"held {math.floor(now - held_since)} s in storm {cause.label} #{epoch}, past "
                    f"RERUN_STORM_MAX_HOLD_SECONDS={limits.max_hold}: gave up; the instance stays Failure for a person"
                ),
            )
        notes = _watchdog(tasks, limits, step, now)
        decision = hold(tasks, limits, cause, epoch, instance_id, run, now, held_since, event_id, seq + 1)
        return Result(notes, "held", decision.message, decision.next_check)
    except CoordinationError as exc:
        # Fail open: released now, under the release's own task id (a copy gets 409).
        try:
            queue_release(tasks, cause, epoch, instance_id, run, now, 1, event_id)
        except CoordinationError:
            return Result(verdict="fail-open", message=f"storm guard unreachable ({exc}): rerun now", error=str(exc))
        return Result(verdict="released", message=f"storm guard unreachable ({exc}): released", error=str(exc))


def _watchdog(tasks: Tasks, limits: Limits, step: Step, now: float) -> list[Note]:
    """No live canary task in the storm (a lost invocation): make this instance the next canary."""
    cause, epoch = step.cause, step.epoch
    chain = tasks.list(f"{PREFIX}p-{cause.key}-{epoch}-", limit=LIST_LIMIT)
    if any(task.status in LIVE for task in chain):
        return []
    slots = [_slot(cause, epoch, task.task_id) for task in chain]
    slot = max((s for s in slots if s is not None), default=0) + 1
    instance_id, run = step.get("instanceId"), step.get("runNumber")
    created = tasks.create(
        canary_id(cause, epoch, slot),
        1,
        payload("canary", cause, epoch, slot=slot, instanceId=instance_id, runNumber=run, failed=0),
    )
    if not created:
        return []
    return [
        Note(
            CANARY_RESTORED,
            cause,
            epoch,
            f"no live canary in the storm: canary {slot} is instance {instance_id}",
            instance_id,
            due_at=now + 1,
            slot=slot,
        )
    ]


def _slot(cause: Cause, epoch: int, task_id: str) -> int | None:
    rest = task_id[len(f"{PREFIX}p-{cause.key}-{epoch}-") :]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None
