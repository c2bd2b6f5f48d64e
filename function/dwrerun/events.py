"""Trigger payload -> the instances it reports as failed.

DataWorks (OpenEvent) publishes task-instance status changes to EventBridge as CloudEvents 1.0.
A trigger delivers them as the whole envelope (`CloudEvents` schema), as the `data` object alone
(`RawData` schema), or as a JSON array of either (`s invoke -f`, queue-fed triggers). Anything
that is not a task-instance failure becomes an `Ignored` with the reason, so every delivery leaves
a record and nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from dwrerun import strictjson
from dwrerun.values import integer, positive_int64, short_repr

SOURCE = "acs.dataworks"
STATUS_CHANGE = "dataworks:InstanceStatusChanges:InstanceStatusChanges"
STATUS_CHANGE_CODE = "instance-status-changes"
FAILED = 5
FROZEN_TASK_TYPE = 2  # the event's taskType for a paused (frozen) instance, which DataWorks reports as failed

STATUS_NAMES = {
    0: "not run",
    1: "not run",
    2: "waiting for its time",
    3: "waiting for resources",
    4: "running",
    5: "failed",
    6: "succeeded",
    7: "data-quality check",
    8: "branch check",
}


@dataclass(frozen=True)
class Failure:
    """A failed task instance, as the event reports it."""

    instance_id: int  # the event's `taskId`: the task INSTANCE id, despite the name
    event_id: str | None  # the CloudEvent `id`; RawData delivery has none
    task_id: int | None  # the event's `nodeId`
    project_id: int | None  # the event's `appId` (the workspace)
    task_type: int | None  # the event's `taskType`: 2 means paused (frozen)
    # When the failed run ended (epoch ms): the event's `finishTime`, else its `modifyTime`. It
    # tells a stale copy (about an earlier run than the instance's current one) from a fresh one.
    finished_at: int | None = None


@dataclass(frozen=True)
class Ignored:
    """A delivery that reports no failure, and why."""

    reason: str
    event_id: str | None = None
    instance_id: int | None = None
    event_type: str | None = None


def parse(body: bytes | str) -> list[Failure | Ignored]:
    """Every event in a trigger payload, each as a Failure or an Ignored. Never raises."""
    try:
        payload = strictjson.loads(body)
    except strictjson.DuplicateKey as exc:  # which value counts would depend on the reader: none does
        return [Ignored(f"the payload is refused: {exc}")]
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        return [Ignored(f"the payload is not JSON ({short_repr(exc, 80)})")]
    if isinstance(payload, list):
        if not payload:
            return [Ignored("the payload is an empty JSON array")]
        return [_parse_one(item, f"item {n} of the array: ") for n, item in enumerate(payload)]
    return [_parse_one(payload, "")]


def _parse_one(event: object, where: str) -> Failure | Ignored:
    if not isinstance(event, dict):
        return Ignored(f"{where}an event must be a JSON object, got {type(event).__name__}")
    if "source" in event or "type" in event or "specversion" in event:
        return _from_cloudevent(event, where)
    if "taskId" in event and "status" in event:
        return _from_data(event, None, where)  # RawData: the `data` object alone
    return Ignored(f"{where}neither a CloudEvent nor a DataWorks event's data (no source/type, no taskId/status)")


def _from_cloudevent(event: dict, where: str) -> Failure | Ignored:
    event_id = event.get("id") if isinstance(event.get("id"), str) else None
    source, event_type = event.get("source"), event.get("type")
    if source != SOURCE or event_type != STATUS_CHANGE:
        return Ignored(
            f"{where}not a task-instance status change (source {source!r}, type {event_type!r})",
            event_id=event_id,
            event_type=event_type if isinstance(event_type, str) else None,
        )
    data = event.get("data")
    if isinstance(data, str):  # some producers send data as a JSON string
        try:
            data = strictjson.loads(data)
        except strictjson.DuplicateKey as exc:
            return Ignored(f"{where}the event's data is refused: {exc}", event_id=event_id, event_type=event_type)
        except (ValueError, RecursionError):
            pass
    if not isinstance(data, dict):
        return Ignored(f"{where}the event's data must be a JSON object", event_id=event_id, event_type=event_type)
    return _from_data(data, event_id, where)


def _from_data(data: dict, event_id: str | None, where: str) -> Failure | Ignored:
    instance_id = positive_int64(data.get("taskId"))
    if instance_id is None:
        return Ignored(
            f"{where}data.taskId (the instance id) must be a positive integer, got {short_repr(data.get('taskId'), 80)}",
            event_id=event_id,
            event_type=STATUS_CHANGE,
        )
    code = data.get("eventCode")
    if code is not None and code != STATUS_CHANGE_CODE:  # older envelopes carry no eventCode at all
        return Ignored(
            f"{where}data.eventCode is {code!r}, not {STATUS_CHANGE_CODE!r}",
            event_id,
            instance_id,
            STATUS_CHANGE,
        )
    status = integer(data.get("status"))
    if status != FAILED:
        name = STATUS_NAMES.get(status, "unknown") if status is not None else "missing"
        return Ignored(
            f"{where}status {short_repr(data.get('status'), 80)} ({name}) is not a failure",
            event_id,
            instance_id,
            STATUS_CHANGE,
        )
    return Failure(
        instance_id=instance_id,
        event_id=event_id,
        task_id=positive_int64(data.get("nodeId")),
        project_id=positive_int64(data.get("appId")),
        task_type=integer(data.get("taskType")),
        finished_at=positive_int64(data.get("finishTime")) or positive_int64(data.get("modifyTime")),
    )
