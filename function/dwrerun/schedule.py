"""When a failed instance is rerun: at once, or after a delay that grows with its runs.

Pure code: no I/O. `clock` (wall time, for `dueAt`) and `uniform` (the jitter) are module
attributes so tests can replace them, as in pacing.py.

The delay for a failed run N (N - 1 reruns so far):
- "equal jitter": ceiling = min(RERUN_BACKOFF_MAX_SECONDS, RERUN_BACKOFF_BASE_SECONDS × 2^(N-1)),
  delay = ceiling/2 + uniform(0, ceiling/2). The floor (half the ceiling) is what gives a transient
  cause time to clear; the jitter above it spreads a burst of failures over the other half.
- a failure rule's delay hint, when the matching rule gives one, is the floor of that rule's own
  schedule: ceiling = min(RERUN_BACKOFF_MAX_SECONDS, 2 × hint × 2^(N-1)), the same equal jitter,
  and never shorter than the hint (a hint above the maximum is kept as it is). A second rerun of a
  network timeout waits longer than the first, and a burst matching one rule spreads over [hint, 2 × hint].
  (docs/retries-and-scheduling.md says why not full or decorrelated jitter.)
0 means "rerun now, in this invocation". FC delays an asynchronous invocation by less than 3600 s.

A delayed rerun is an asynchronous invocation of the event function itself whose payload is a
`ScheduledRerun`. Its FC async task id is derived from the instance id and the failed run number
alone, so every copy of the same failure (a duplicate event, FC's retry, another instance) asks
for the same task id, and FC refuses all but the first with 409. The payload is parsed strictly
and earns no trust: it only names an instance and the run that failed, and the delayed invocation
reads the instance and applies every guard again, as for a failure event. What it says of the
failure (the rule that matched, DataWorks' own rerun, the delay waited) is taken as settled only
when RERUN_SIGNING_KEY signed it (`trusted`); any other payload (no key set, no signature, or
altered) is decided as a failure event for the instance it names (rerun.py; issue 24).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from dwrerun import signing, strictjson
from dwrerun.config import FC_MAX_ASYNC_DELAY
from dwrerun.values import INT64_MAX, MAX_RUN_NUMBER, short_repr, whole

clock = time.time
uniform = random.uniform

PAYLOAD_KEY = "scheduledRerun"
FIELDS = ("instanceId", "failedRunNumber", "eventId", "rule", "dueAt", "asyncTaskId", "stormId", "sweep", "signature")
# A release from a storm (storm.py) names the storm: its cause key and epoch.
STORM_TAG = re.compile(r"k[0-9a-f]{10}-[0-9]{1,9}")
REQUIRED = ("instanceId", "failedRunNumber", "dueAt", "asyncTaskId")
MAX_TEXT = 256  # eventId and rule: CloudEvent ids and rule names are far shorter
DUE_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# FC's rule for an async task id: a letter or `_` first, then letters, digits, `_` or `-`, <= 128.
TASK_ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")


class InvalidScheduledRerun(ValueError):
    """A payload that says it is a scheduled rerun but is not a well-formed one. The message says why."""


def delay_seconds(failed_run: int, base: int, maximum: int, hint: float | None = None) -> int:
    """Whole seconds to wait before rerunning the instance whose run `failed_run` failed; 0 = now.

    `base` and `maximum` are RERUN_BACKOFF_BASE_SECONDS and RERUN_BACKOFF_MAX_SECONDS; `hint` is the
    matching failure rule's delay hint in seconds, if it gives one: the floor of the rule's own
    schedule, which grows with the run number like the default one, and is never shorter than it.
    A `base` of 0 turns scheduling off, hints included: every rerun goes out at once, as before.
    """
    if base <= 0:
        return 0
    reruns_so_far = min(max(0, failed_run - 1), 32)
    if hint is not None:
        if hint <= 0:
            return 0
        ceiling = min(maximum, FC_MAX_ASYNC_DELAY, 2 * hint * 2**reruns_so_far)
        delay = math.ceil(ceiling / 2 + uniform(0, ceiling / 2))
        # Never shorter than the rule asks, even when RERUN_BACKOFF_MAX_SECONDS is below the hint.
        return min(FC_MAX_ASYNC_DELAY, max(math.ceil(hint), min(math.ceil(ceiling), delay)))
    ceiling = min(maximum, FC_MAX_ASYNC_DELAY, base * 2**reruns_so_far)
    half = ceiling / 2
    # ceil keeps the floor: the delay is never below half the ceiling, and never above the ceiling.
    return max(1, min(ceiling, math.ceil(half + uniform(0, half))))


def shortest_delay(failed_run: int, base: int, maximum: int, hint: float | None = None) -> int:
    """The shortest delay `delay_seconds` can give for these arguments (its jitter at its lowest)."""
    if base <= 0 or (hint is not None and hint <= 0):
        return 0
    if hint is not None:
        return min(FC_MAX_ASYNC_DELAY, math.ceil(hint))
    ceiling = min(maximum, FC_MAX_ASYNC_DELAY, base * 2 ** min(max(0, failed_run - 1), 32))
    return max(1, min(ceiling, math.ceil(ceiling / 2)))


def waited(finished_ms: int | None, failed_run: int, base: int, maximum: int, hint: float | None = None) -> bool:
    """Whether the shortest delay for this failed run has passed since it ended (`finished_ms`, epoch
    ms, DataWorks' FinishedTime). The delay of a scheduled rerun that earns no trust is re-derived
    from this, not from the payload's word; an unknown end time has not waited."""
    if finished_ms is None:
        return False
    return clock() >= finished_ms / 1000 + shortest_delay(failed_run, base, maximum, hint)


def async_task_id(instance_id: int, failed_run: int) -> str:
    """FC's async task id for the rerun of this failed run: the same for every copy of the failure."""
    task_id = f"dwrerun-{instance_id}-run-{failed_run}"
    if not TASK_ID_PATTERN.fullmatch(task_id):  # cannot happen for positive ints; kept as the contract
        raise ValueError(f"not a valid FC async task id: {task_id!r}")
    return task_id


def due_at(delay: float, now: float | None = None) -> str:
    """When a rerun delayed by `delay` seconds from now is due, as UTC ISO 8601 (what records carry)."""
    moment = (clock() if now is None else now) + delay
    return datetime.fromtimestamp(moment, timezone.utc).strftime(DUE_AT_FORMAT)


@dataclass(frozen=True)
class ScheduledRerun:
    """What a delayed invocation is told: which instance, which of its runs failed, and why it waited."""

    instance_id: int
    failed_run_number: int
    due_at: str
    event_id: str | None = None  # the failure event that scheduled it: SLS joins the two records on it
    rule: str | None = None  # the failure rule that set the delay, if one did
    storm: str | None = None  # a release from a storm: storm.release_tag, which its task id ends with
    # Claimed by the sweep (sweep.py) for a failed run no event decided: nothing was decided yet, so
    # the delayed invocation decides it whole (guards, DataWorks' own rerun, failure rules).
    swept: bool = False
    # Whether RERUN_SIGNING_KEY signed the payload it came from (parse); not part of the payload.
    trusted: bool = field(default=False, compare=False)

    @property
    def async_task_id(self) -> str:
        task_id = async_task_id(self.instance_id, self.failed_run_number)
        return task_id if self.storm is None else f"{task_id}-{self.storm}"

    def content(self) -> dict:
        body = {
            "instanceId": self.instance_id,
            "failedRunNumber": self.failed_run_number,
            "eventId": self.event_id,
            "rule": self.rule,
            "dueAt": self.due_at,
            "asyncTaskId": self.async_task_id,
        }
        if self.storm is not None:  # only a release carries it: other payloads stay as they were
            body["stormId"] = self.storm
        if self.swept:
            body["sweep"] = True
        return body

    def to_payload(self, key: str | None = None) -> bytes:
        """The delayed invocation's payload; signed with `key` when one is set."""
        body = self.content()
        if key is not None:
            body["signature"] = signing.signature(key, signing.SCHEDULED, self.content())
        return json.dumps({PAYLOAD_KEY: body}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(body: bytes | str, key: str | None = None) -> ScheduledRerun | None:
    """The scheduled rerun a payload carries; None when the payload is not one (a failure event).

    Raises InvalidScheduledRerun, naming the field, when it claims to be one and is malformed.
    `trusted` is set when `key` is set and the payload's signature verifies with it.
    """
    if isinstance(body, bytes):
        # Cheap test first: a CloudEvent never carries this key, so it is never parsed twice.
        if PAYLOAD_KEY.encode() not in body:
            return None
    elif PAYLOAD_KEY not in body:
        return None
    try:
        payload = strictjson.loads(body)  # a repeated key: left to the event parser, which names it
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # not JSON at all: the event parser reports it
    if not isinstance(payload, dict) or PAYLOAD_KEY not in payload:
        return None
    if len(payload) != 1:
        others = ", ".join(sorted(k for k in payload if k != PAYLOAD_KEY))
        raise InvalidScheduledRerun(f"a scheduled rerun payload has only {PAYLOAD_KEY!r}, not also {others}")
    inner = payload[PAYLOAD_KEY]
    if not isinstance(inner, dict):
        raise InvalidScheduledRerun(f"{PAYLOAD_KEY} must be a JSON object")
    unknown = sorted(set(inner) - set(FIELDS))
    if unknown:
        raise InvalidScheduledRerun(f"{PAYLOAD_KEY} has unknown field(s) {', '.join(map(str, unknown))}")
    missing = [name for name in REQUIRED if inner.get(name) is None]
    if missing:
        raise InvalidScheduledRerun(f"{PAYLOAD_KEY} lacks {', '.join(missing)}")
    instance_id = _int(inner["instanceId"], "instanceId", INT64_MAX)
    failed_run = _int(inner["failedRunNumber"], "failedRunNumber", MAX_RUN_NUMBER)
    event_id = _text(inner.get("eventId"), "eventId")
    rule = _text(inner.get("rule"), "rule")
    due = inner["dueAt"]
    if not isinstance(due, str):
        raise InvalidScheduledRerun("dueAt must be a UTC time like 2026-11-28T02:10:00Z")
    try:
        datetime.strptime(due, DUE_AT_FORMAT)
    except ValueError:
        raise InvalidScheduledRerun(f"dueAt must be a UTC time like 2026-11-28T02:10:00Z, got {due[:40]!r}") from None
    storm = inner.get("stormId")
    if storm is not None and (not isinstance(storm, str) or not STORM_TAG.fullmatch(storm)):
        raise InvalidScheduledRerun("stormId must be null or a storm id like k0123456789-1")
    swept = inner.get("sweep", False)
    if not isinstance(swept, bool):
        raise InvalidScheduledRerun("sweep must be true or false")
    scheduled = ScheduledRerun(instance_id, failed_run, due, event_id, rule, storm, swept)
    if inner["asyncTaskId"] != scheduled.async_task_id:
        raise InvalidScheduledRerun(
            f"asyncTaskId must be {scheduled.async_task_id!r} for instance {instance_id} run {failed_run}"
        )
    return replace(scheduled, trusted=_signed(scheduled, inner.get("signature"), key))


def _signed(scheduled: ScheduledRerun, claimed: object, key: str | None) -> bool:
    if key is None or claimed is None:
        return False
    try:
        signing.verify(key, signing.SCHEDULED, scheduled.content(), claimed)
    except signing.BadSignature:
        return False
    return True


def _int(value: object, name: str, maximum: int) -> int:
    if not whole(value, 1, maximum):
        raise InvalidScheduledRerun(f"{name} must be a positive integer up to {maximum}, got {short_repr(value)}")
    return value


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidScheduledRerun(f"{name} must be null or a string of 1 to {MAX_TEXT} characters")
    return value
