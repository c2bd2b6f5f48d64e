"""A verification invocation (`make verify`, link 3): can the function, as its role, read
DataWorks, and does its record reach SLS?

`scripts/verify` invokes the event function synchronously with `{"dwrerunVerify": 1, ...}`. This
module then reads, never writes: GetTaskInstance of one id (the payload's `instanceId`, else 1, an
id no workspace has: "not found" proves RAM let the call through) and ListTaskInstances of one
instance per workspace (the payload's `projectIds`, else RERUN_PROJECT_IDS), which DataWorks
answers only for a member of the workspace. It writes one record, `kind: verify`, through
records.write, and returns it (the synchronous caller reads it). A verification payload gets no
special trust: it names no action, only ids to read, and nothing here writes to DataWorks.

A refused call names the RAM action it needed (`dataworks:<Operation>`) or the workspace
membership, and the fix (`outcome.refusal`, the wording every refused call's record uses).

The record: {"kind": "verify", "requestId", "functionName", "success" (true|false), "message",
"checks": [{"action", "ok", "errorCode", "fix"}]}. `success` and `message` are record fields the
index already has; `checks` is not indexed (read it from the message or the synchronous answer).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from dwrerun import records, strictjson
from dwrerun.config import ConfigError, Settings
from dwrerun.dataworks import (
    GET_TASK_INSTANCE,
    LIST_TASK_INSTANCES,
    DataWorksError,
    client_for,
    credentials_from,
)
from dwrerun.invocation import Invocation
from dwrerun.outcome import refusal
from dwrerun.schema import Reason

MARKER = "dwrerunVerify"
KIND = "verify"
PROBE_INSTANCE_ID = 1  # no workspace has instance 1: a "not found" answer means RAM allowed the read
CALL_TIMEOUT = 10.0
# DataWorks' 404 codes for a missing instance: any *NotFound/*NotExist answer proves the call was let in.
NOT_FOUND_MARKERS = ("NotFound", "NotExist", "NotExists")


def is_verify(event: bytes) -> bool:
    """Whether an event function payload is a verification request (cheap: checked first)."""
    if not isinstance(event, (bytes, bytearray)) or MARKER.encode() not in event[:512]:
        return False
    try:
        payload = strictjson.loads(event)  # a repeated key: not a verification; the event parser names it
    except ValueError:
        return False
    return isinstance(payload, dict) and type(payload.get(MARKER)) is int and payload[MARKER] == 1  # not true


def handle_verify(payload: bytes, context) -> dict:
    """Do the verification's reads, write its one record, return it."""
    invocation = Invocation.from_context(context)
    request = strictjson.loads(payload)
    checks: list[dict] = []
    try:
        settings = Settings.from_env()
        credentials = credentials_from(os.environ, context)
        client = client_for(credentials, settings, invocation.region)
    except ConfigError as exc:
        checks.append({"action": "configuration", "ok": False, "errorCode": Reason.CONFIG_ERROR, "fix": str(exc)})
        return _finish(invocation, checks)

    instance_id = _positive(request.get("instanceId")) or PROBE_INSTANCE_ID
    checks.append(_read(GET_TASK_INSTANCE, lambda: client.get_task_instance(instance_id, CALL_TIMEOUT)))
    project_ids = [p for p in (_positive(v) for v in request.get("projectIds") or []) if p]
    for project_id in project_ids or sorted(settings.project_ids):
        params = {
            "ProjectId": project_id,
            "Bizdate": _yesterday_china_ms(),
            "ProjectEnv": settings.project_env if settings.project_env in ("Prod", "Dev") else "Prod",
            "PageNumber": 1,
            "PageSize": 1,
        }
        checks.append(
            _read(LIST_TASK_INSTANCES, lambda p=params: client.list_task_instances(p, CALL_TIMEOUT), project_id)
        )
    return _finish(invocation, checks)


def _read(action: str, call, project_id: int | None = None) -> dict:
    check = {"action": f"dataworks:{action}", "ok": True, "errorCode": None, "fix": None}
    if project_id is not None:
        check["projectId"] = project_id
    try:
        call()
    except DataWorksError as exc:
        fix = refusal(action, exc, project_id)
        if fix is None and any(m in exc.code for m in NOT_FOUND_MARKERS):
            return {**check, "errorCode": exc.code}  # let through, and nothing there: the read works
        check.update(ok=False, errorCode=exc.code, fix=fix or f"{action} failed ({exc.code}): {exc.message}")
    return check


def _finish(invocation: Invocation, checks: list[dict]) -> dict:
    failed = [c for c in checks if not c["ok"]]
    message = (
        "; ".join(c["fix"] for c in failed)
        if failed
        else "the role read DataWorks: " + ", ".join(c["action"] for c in checks)
    )
    record = {
        "kind": KIND,
        "requestId": invocation.request_id,
        "functionName": invocation.function_name,
        "success": not failed,
        "message": message,
        "checks": checks,
    }
    records.write(record)
    return record


def _positive(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _yesterday_china_ms() -> int:
    china = timezone(timedelta(hours=8))
    day = datetime.now(china).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    return int(day.timestamp() * 1000)
