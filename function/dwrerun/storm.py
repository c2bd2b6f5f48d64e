"""The storm guard: when one cause fails widely, rerun one canary and hold the rest until it succeeds.

A storm is one cause failing widely: at least RERUN_STORM_THRESHOLD failed runs of one workspace
matching the same failure rule (or the same "no rule matched") within RERUN_STORM_WINDOW_SECONDS.
While a storm is open, one instance is the canary and is rerun; the others are held (decision
`held`, reason `storm`): no DataWorks writes, no reads while held. When a canary fails again, the
next one goes after a growing interval; when one succeeds, the held instances are released oldest
first, in growing groups paced within the quota. A held instance gives up after
RERUN_STORM_MAX_HOLD_SECONDS (`storm-hold-expired`). docs/storm-guard.md has the design and why.

No shared memory: FC instances coordinate only through FC's async tasks of the event function,
behind the small `Tasks` interface (function_compute.AsyncTasks in FC, FakeTasks in tests):
`create` an async task with a chosen id (FC refuses a repeated id with 409: a test-and-set),
`list` tasks by id prefix and status, `get` one. Every id is derived from the cause, so every
instance that sees the same cause computes the same ids:

    dwrerun-t-<cause>-<generation>-<instance>-<run>   a tally: one failure, Enqueued for the window
    dwrerun-s-<cause>-<epoch>                          storm <epoch> opened (its creator is canary 1)
    dwrerun-p-<cause>-<epoch>-<slot>                   canary <slot>: reruns one instance when due
    dwrerun-p-<cause>-<epoch>-<slot>-k<n>              check <n> of that canary: reads the instance
    dwrerun-h-<cause>-<epoch>-<instance>-<run>-<seq>   a held instance's next check
    dwrerun-r-<cause>-<epoch>                          storm <epoch> is releasing (payload: when, the ramp)
    dwrerun-x-<cause>-<epoch>                          storm <epoch> closes at the end of its ramp
    dwrerun-<instance>-run-<run>-<cause>-<epoch>       a held instance's release (a ScheduledRerun)

Inferred platform behaviour, each failing open (to today's schedule, never to a lost or doubled
rerun: a release has its own task id, and DataWorks refuses a rerun of an instance that runs):
- a delayed task lists as `Enqueued` until it is due, and is listed as soon as InvokeFunction
  answers (the tally count, the live canary chain);
- a task id stays taken after its task ends (FC's "globally unique"; the 409 test-and-set).
Any error of these calls (`CoordinationError`) makes the instance go on as if no guard existed,
and its record says so.

The logic here is pure over `Tasks` and a `now`: tests drive it with FakeTasks and a number.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from dwrerun.config import FC_MAX_ASYNC_DELAY

PAYLOAD_KEY = "stormStep"
PREFIX = "dwrerun-"
LIVE = frozenset({"Enqueued", "Dequeued", "Running", "Retrying", "Stopping"})  # FC's statuses of a task not ended
LIST_LIMIT = 100  # ListAsyncTasks' largest page

HOLD_CHECK_SECONDS = 600  # a held instance looks again (a lost canary, its own give-up) this often
JOIN_SPREAD_SECONDS = 30  # a failure that joins a release goes out within this after the ramp's end

# Storm record events (schema.StormEvent mirrors them).
OPENED = "opened"
CANARY = "canary"
CANARY_FAILED = "canary-failed"
CANARY_RESTORED = "canary-restored"
RELEASE = "release"
RELEASE_GROUP = "release-group"
CLOSED = "closed"


class CoordinationError(Exception):
    """An FC call the guard needed failed (not a 409): the guard fails open."""


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    payload: dict | None = None  # the storm step it carries, when asked for


class Tasks(Protocol):
    """FC's async tasks of the event function, as the guard uses them. Raise CoordinationError."""

    def create(self, task_id: str, delay: int, payload: bytes) -> bool:
        """Queue `payload` as async task `task_id`, `delay` seconds from now; False: the id is taken (409)."""

    def list(self, prefix: str, *, status: str | None = None, limit: int = LIST_LIMIT) -> list[Task]:
        """Tasks whose id starts with `prefix` (and in `status`), with payloads, at most `limit`
        (more than a page: the adapter follows nextToken)."""

    def get(self, task_id: str) -> Task | None:
        """One task with its payload; None if there is none."""


@dataclass(frozen=True)
class Cause:
    """What failed: a workspace and the failure rule its failed runs matched ("default": none did)."""

    project_id: int
    rule: str

    @property
    def key(self) -> str:
        # A hash keeps every id short and within FC's characters whatever the rule is named.
        digest = hashlib.sha256(f"{self.project_id}/{self.rule}".encode()).hexdigest()[:10]
        return f"k{digest}"

    @property
    def label(self) -> str:
        return f"{self.project_id}/{self.rule}"


@dataclass(frozen=True)
class Limits:
    threshold: int  # 0: the guard is off
    window: int
    max_hold: int
    backoff_base: int  # the canaries' growing interval follows the rerun schedule
    backoff_max: int

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(
            settings.storm_threshold,
            settings.storm_window,
            settings.storm_max_hold,
            settings.backoff_base,
            settings.backoff_max,
        )

    @property
    def on(self) -> bool:
        return self.threshold > 0 and self.backoff_base > 0

    def canary_interval(self, failed_canaries: int) -> int:
        """Seconds before the next canary after `failed_canaries` failed: the rerun schedule's ceiling."""
        return max(1, min(self.backoff_max, FC_MAX_ASYNC_DELAY, self.backoff_base * 2 ** min(failed_canaries, 32)))


@dataclass(frozen=True)
class State:
    """Where the cause stands: `epoch` is its latest storm (0: none yet)."""

    epoch: int
    open: bool  # storm `epoch` is open: failures are held
    release_start: float | None = None
    ramp_end: float | None = None  # while now < ramp_end, storm `epoch` is releasing: failures join it

    def releasing(self, now: float) -> bool:
        return self.ramp_end is not None and now < self.ramp_end

    @property
    def generation(self) -> int:
        """The storm a new wave would open (tallies count towards it)."""
        return self.epoch if self.open else self.epoch + 1


@dataclass
class Note:
    """A storm record to write: what happened to the storm, with its counts."""

    event: str
    cause: Cause
    epoch: int
    message: str
    instance_id: int | None = None
    count: int | None = None
    due_at: float | None = None
    slot: int | None = None


@dataclass
class Decision:
    """What the guard says of one failure. `action`: proceed | canary | held | join."""

    action: str
    cause: Cause
    epoch: int | None = None
    message: str = ""
    next_check: float | None = None  # held: when it is looked at next; join: when it is released
    notes: list[Note] = field(default_factory=list)
    error: str | None = None  # why the guard failed open


PROCEED, CANARY_ACTION, HELD, JOIN = "proceed", "canary", "held", "join"


# --- ids and payloads ----------------------------------------------------------------------------


_OWN = re.compile(r"dwrerun-[tsphrx]-k[0-9a-f]{10}-")


def is_storm_task(task_id: str | None) -> bool:
    """Whether an FC async task id is one of the guard's own (not a rerun's)."""
    return task_id is not None and _OWN.match(task_id) is not None


def tally_id(cause: Cause, generation: int, instance_id: int, run: int) -> str:
    return f"{PREFIX}t-{cause.key}-{generation}-{instance_id}-{run}"


def storm_id(cause: Cause, epoch: int) -> str:
    return f"{PREFIX}s-{cause.key}-{epoch}"


def canary_id(cause: Cause, epoch: int, slot: int, check: int | None = None) -> str:
    base = f"{PREFIX}p-{cause.key}-{epoch}-{slot}"
    return base if check is None else f"{base}-k{check}"


def hold_id(cause: Cause, epoch: int, instance_id: int, run: int, seq: int) -> str:
    return f"{PREFIX}h-{cause.key}-{epoch}-{instance_id}-{run}-{seq}"


def release_marker_id(cause: Cause, epoch: int) -> str:
    return f"{PREFIX}r-{cause.key}-{epoch}"


def close_id(cause: Cause, epoch: int) -> str:
    return f"{PREFIX}x-{cause.key}-{epoch}"


def release_tag(cause: Cause, epoch: int) -> str:
    """What a released ScheduledRerun carries (`storm`), and its task id's suffix."""
    return f"{cause.key}-{epoch}"


def payload(step: str, cause: Cause, epoch: int, **fields) -> bytes:
    body = {"step": step, "projectId": cause.project_id, "rule": cause.rule, "epoch": epoch, **fields}
    return json.dumps({PAYLOAD_KEY: body}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Step:
    """A storm task's payload, parsed: what its invocation is to do."""

    step: str  # tally | opened | canary | check | hold | release | close
    cause: Cause
    epoch: int
    fields: dict

    def get(self, name: str, default=None):
        return self.fields.get(name, default)


STEPS = ("tally", "opened", "canary", "check", "hold", "release", "close")


def parse(body: bytes | str) -> Step | None:
    """The storm step a payload carries; None if it is not one. Raises ValueError when malformed."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if f'"{PAYLOAD_KEY}"' not in text:
        return None
    try:
        outer = json.loads(text)
    except ValueError:
        return None
    if not isinstance(outer, dict) or set(outer) != {PAYLOAD_KEY} or not isinstance(outer[PAYLOAD_KEY], dict):
        return None
    inner = dict(outer[PAYLOAD_KEY])
    step, project, rule, epoch = (inner.pop(k, None) for k in ("step", "projectId", "rule", "epoch"))
    if step not in STEPS or not _positive(project) or not isinstance(rule, str) or not rule or not _natural(epoch):
        raise ValueError("a storm step needs step, projectId, rule and epoch")
    for name in ("instanceId", "runNumber", "slot", "check", "seq"):
        if name in inner and not _positive(inner[name]):
            raise ValueError(f"a storm step's {name} must be a positive integer")
    return Step(step, Cause(project, rule), epoch, inner)


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _natural(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


# --- where the cause stands ----------------------------------------------------------------------


def look(tasks: Tasks, cause: Cause) -> State:
    """The cause's latest storm, and whether it is open or releasing (two FC calls)."""
    prefix = f"{PREFIX}s-{cause.key}-"
    epochs = [int(t.task_id[len(prefix) :]) for t in tasks.list(prefix) if t.task_id[len(prefix) :].isdigit()]
    epoch = max(epochs, default=0)
    if epoch == 0:
        return State(0, open=False)
    marker = tasks.get(release_marker_id(cause, epoch))
    if marker is None:
        return State(epoch, open=True)
    body = _body(marker)
    return State(epoch, open=False, release_start=body.get("releaseStart"), ramp_end=body.get("rampEnd"))


def _body(task: Task) -> dict:
    inner = (task.payload or {}).get(PAYLOAD_KEY) if isinstance(task.payload, dict) else None
    return inner if isinstance(inner, dict) else {}


# --- a failure arrives ---------------------------------------------------------------------------


def on_failure(
    tasks: Tasks,
    limits: Limits,
    cause: Cause,
    instance_id: int,
    run: int,
    now: float,
    *,
    delay: int,
    held_since: float | None = None,
    event_id: str | None = None,
    counts: bool = True,
) -> Decision:
    """What to do with a failure of `cause` that the pipeline would rerun after `delay` seconds.

    `counts`: a failure event (it is tallied and may open a storm); False for a delayed invocation
    that was tallied when it was scheduled (it is only held if a storm is open). Never raises:
    a CoordinationError fails open (`proceed`, with `error` set).
    """
    try:
        return _on_failure(tasks, limits, cause, instance_id, run, now, delay, held_since or now, event_id, counts)
    except CoordinationError as exc:
        return Decision(PROCEED, cause, message=f"storm guard skipped: {exc}", error=str(exc))


def _on_failure(tasks, limits, cause, instance_id, run, now, delay, held_since, event_id, counts) -> Decision:
    state = look(tasks, cause)
    if state.open:
        return hold(tasks, limits, cause, state.epoch, instance_id, run, now, held_since, event_id, seq=1)
    if not counts:
        return Decision(PROCEED, cause, state.epoch or None)
    generation = state.generation
    tasks.create(
        tally_id(cause, generation, instance_id, run),
        limits.window,
        payload("tally", cause, generation, instanceId=instance_id, runNumber=run),
    )
    count = len(tasks.list(f"{PREFIX}t-{cause.key}-{generation}-", status="Enqueued", limit=limits.threshold))
    if count < limits.threshold:
        if state.releasing(now):  # a failure of the cause during the release joins it
            return join(tasks, cause, state, instance_id, run, now, event_id)
        return Decision(PROCEED, cause, state.epoch or None)
    opened = tasks.create(
        storm_id(cause, generation),
        1,
        payload("opened", cause, generation, instanceId=instance_id, runNumber=run, openedAt=now, count=count),
    )
    if not opened:  # another instance opened it at the same moment: this one is held
        return hold(tasks, limits, cause, generation, instance_id, run, now, held_since, event_id, seq=1)
    # The opener is the first canary, rerun on its normal schedule. It is held too, like the others:
    # if its canary task is lost, its hold restores the chain, and the release covers it.
    hold(tasks, limits, cause, generation, instance_id, run, now, held_since, event_id, seq=1)
    tasks.create(
        canary_id(cause, generation, 1),
        max(1, delay),
        payload("canary", cause, generation, slot=1, instanceId=instance_id, runNumber=run, failed=0),
    )
    notes = [
        Note(
            OPENED,
            cause,
            generation,
            f"storm opened: {count} failures of {cause.label} within {limits.window} s (threshold "
            f"{limits.threshold}); one canary is rerun, the others are held",
            instance_id,
            count,
        ),
        Note(
            CANARY,
            cause,
            generation,
            f"canary 1: instance {instance_id} is rerun in {delay} s",
            instance_id,
            due_at=now + delay,
            slot=1,
        ),
    ]
    message = f"the canary of storm {cause.label} #{generation}: rerun in {delay} s (FC async task "
    message += f"{canary_id(cause, generation, 1)}); the others failing for this cause are held"
    return Decision(CANARY_ACTION, cause, generation, message, now + delay, notes)


def hold(tasks, limits, cause, epoch, instance_id, run, now, held_since, event_id, seq) -> Decision:
    """Hold the failure in storm `epoch`: its next look is a delayed task, not a rerun."""
    expires = held_since + limits.max_hold
    wait = max(1, min(HOLD_CHECK_SECONDS, math.ceil(expires - now)))
    tasks.create(
        hold_id(cause, epoch, instance_id, run, seq),
        wait,
        payload(
            "hold",
            cause,
            epoch,
            instanceId=instance_id,
            runNumber=run,
            heldSince=held_since,
            seq=seq,
            eventId=event_id,
        ),
    )
    message = (
        f"held: storm {cause.label} #{epoch} is open (its canary is rerun first); looked at again in {wait} s, "
        f"gives up {max(0, math.ceil(expires - now))} s from now"
    )
    return Decision(HELD, cause, epoch, message, now + wait)


def join(tasks, cause, state: State, instance_id, run, now, event_id) -> Decision:
    """A failure while storm `state.epoch` releases: released after its ramp, with the others."""
    at = state.ramp_end + _spread(instance_id, JOIN_SPREAD_SECONDS)
    queue_release(tasks, cause, state.epoch, instance_id, run, now, at - now, event_id)  # 409: a copy queued it
    message = f"joins the release of storm {cause.label} #{state.epoch}: rerun in {math.ceil(at - now)} s"
    return Decision(JOIN, cause, state.epoch, message, at)


def _spread(instance_id: int, seconds: int) -> float:
    """A stable share of `seconds` for this instance (so copies of one failure agree)."""
    digest = hashlib.sha256(str(instance_id).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * seconds


def queue_release(tasks, cause, epoch, instance_id, run, now, offset, event_id=None) -> bool:
    """Queue one held instance's rerun, `offset` seconds from now, under its own task id."""
    from dwrerun import schedule

    delay = max(1, min(FC_MAX_ASYNC_DELAY, math.ceil(offset)))
    rerun = schedule.ScheduledRerun(
        instance_id, run, schedule.due_at(delay, now), event_id, cause.rule, storm=release_tag(cause, epoch)
    )
    # Signed when the deployment has a key: an unsigned release is decided as a failure event (schedule.py).
    return tasks.create(rerun.async_task_id, delay, rerun.to_payload(getattr(tasks, "signing_key", None)))
