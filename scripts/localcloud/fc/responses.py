"""FC's OpenAPI 2023-03-30 on the wire: `InvokeFunction`, its request headers and its answers.

    POST /2023-03-30/functions/{functionName}/invocations[?qualifier=LATEST]     (ROA style)
    x-fc-invocation-type: Sync | Async     (default Sync)
    x-fc-async-delay: 1..3599              (whole seconds, inside the documented (0, 3600); Async only)
    x-fc-async-task-id: <task id>          (Async only; needs the function's asyncTask on)
    x-fc-log-type: None | Tail             (Tail: the last 4 KB of a Sync call's log, base64)
    body: the event, raw bytes

Thin, as a moto service's responses.py is: read the request, check it, call the function
(`localcloud.fc.function.Function`), render the answer. Answers, per FACTS section 5 where
documented:
- Async: 202, empty body, `x-fc-request-id` (the asynchronous invocation's request id, kept across
  FC's retries) and, when one was given, `x-fc-async-task-id`.
- Sync: 200, the handler's return value as the body (a dict or list as JSON, a string as text,
  bytes as they are); a handler error is a 200 with `x-fc-error-type: UnhandledInvocationError`
  and `{"errorMessage", "errorType", "stackTrace"}`.
- Refusals (`localcloud.fc.exceptions`): `{"Code", "Message", "RequestId"}`, the body the generic
  client reads [inferred: FC's error-code page writes the fields as errorCode/errorMessage].
"""

from __future__ import annotations

import base64
import json
import re
from typing import NamedTuple
from urllib.parse import parse_qs

from localcloud.fc.exceptions import EntityTooLarge, InvalidArgument

VERSION = "2023-03-30"
ACTION = "InvokeFunction"
ROUTE = re.compile(rf"/{VERSION}/functions/([^/]+)/invocations")
# ListAsyncTasks and GetAsyncTask (GET): what the storm guard coordinates through (dwrerun/storm.py).
TASKS_ROUTE = re.compile(rf"/{VERSION}/functions/([^/]+)/async-tasks(?:/([^/]+))?")
TASK_PAGE = range(1, 101)  # ListAsyncTasks' limit: 1-100, 20 by default
INVOCATION_TYPES = ("Sync", "Async")
LOG_TYPES = ("None", "Tail")
MAX_BODY = 32 * 1024 * 1024 + 1  # FC's synchronous limit; the function refuses what is above its own
MAX_DELAY = 3600  # x-fc-async-delay, seconds
TAIL_BYTES = 4096  # x-fc-log-type: Tail sends this much of the log's end


class InvokeRequest(NamedTuple):
    """What the headers of one InvokeFunction call ask for."""

    invocation_type: str  # Sync | Async
    delay: int | None
    task_id: str | None
    log_type: str  # None | Tail


def content_length(headers) -> int:
    """The body's length, refused above FC's limit (or when it is not a number)."""
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        raise EntityTooLarge(f"payload size exceeds maximum allowed size ({MAX_BODY - 1} bytes)")
    return length


def qualifier(raw_query: str) -> str | None:
    values = parse_qs(raw_query, keep_blank_values=True).get("qualifier")
    return values[0] if values else None


def invoke_request(headers) -> InvokeRequest:
    """The x-fc-* headers of an InvokeFunction call, checked."""
    kind = (headers.get("x-fc-invocation-type") or "Sync").strip()
    if kind not in INVOCATION_TYPES:
        raise InvalidArgument(f"x-fc-invocation-type must be Sync or Async, not {kind!r}")
    log_type = (headers.get("x-fc-log-type") or "None").strip()
    if log_type not in LOG_TYPES:
        raise InvalidArgument(f"x-fc-log-type must be None or Tail, not {log_type!r}")
    raw_delay = headers.get("x-fc-async-delay")
    delay = None
    if raw_delay is not None:
        # FC documents the header's range as (0, 3600); what it does outside it is not documented,
        # so the stand-in refuses 0 and 3600 [inferred]: a client that sends them is caught here.
        if not raw_delay.strip().isdigit() or not 0 < int(raw_delay) < MAX_DELAY:
            raise InvalidArgument(f"x-fc-async-delay must be whole seconds in (0, {MAX_DELAY}), not {raw_delay!r}")
        delay = int(raw_delay)
    task_id = headers.get("x-fc-async-task-id")
    if kind == "Sync" and (delay is not None or task_id is not None):
        # A delay or a task id only means something to the asynchronous queue [inferred].
        raise InvalidArgument("x-fc-async-delay and x-fc-async-task-id need x-fc-invocation-type Async")
    return InvokeRequest(kind, delay, task_id, log_type)


def invoke_function(fn, request: InvokeRequest, body: bytes, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """Run the call on `fn`: (status, headers, body) of the answer. The function's refusals raise."""
    headers: dict[str, str] = {}
    if request.invocation_type == "Async":
        fn.invoke_async(body, request_id, delay=request.delay or 0, task_id=request.task_id)
        if request.task_id is not None:
            headers["x-fc-async-task-id"] = request.task_id
        return 202, headers, b""
    invocation = fn.invoke(body, request_id)
    answer, headers["Content-Type"] = sync_body(invocation)
    if invocation.error is not None:
        headers["x-fc-error-type"] = "UnhandledInvocationError"
    if request.log_type == "Tail":  # the last 4 KB of the invocation's log, base64
        tail = "\n".join(invocation.stdout + invocation.stderr).encode("utf-8")[-TAIL_BYTES:]
        headers["x-fc-log-result"] = base64.b64encode(tail).decode("ascii")
    return 200, headers, answer


def sync_body(invocation) -> tuple[bytes, str]:
    """A synchronous invocation's answer body and its Content-Type."""
    if invocation.error is not None:
        return json.dumps(invocation.error, ensure_ascii=False).encode("utf-8"), "application/json"
    result = invocation.result
    if result is None:
        return b"", "application/octet-stream"
    if isinstance(result, bytes):
        return result, "application/octet-stream"
    if isinstance(result, str):
        return result.encode("utf-8"), "text/plain;charset=utf-8"
    return json.dumps(result, ensure_ascii=False).encode("utf-8"), "application/json"


def error_body(code: str, message: str, request_id: str) -> bytes:
    """A refusal's body."""
    return json.dumps({"Code": code, "Message": message, "RequestId": request_id}, ensure_ascii=False).encode("utf-8")


def list_async_tasks(fn, raw_query: str) -> bytes:
    """ListAsyncTasks: `prefix`, `status`, `limit` (1-100), `nextToken`, `includePayload`; FC's
    ListAsyncTaskOutput (`tasks`, `nextToken`). Oldest first."""
    from localcloud.fc.exceptions import InvalidArgument

    query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    limit = query.get("limit") or "20"
    if not limit.isdigit() or int(limit) not in TASK_PAGE:
        raise InvalidArgument(f"limit must be 1-100, got {limit!r}")
    start = query.get("nextToken") or "0"
    if not start.isdigit():
        raise InvalidArgument("nextToken is not one this API gave")
    found = fn.list_async_tasks(query.get("prefix") or "", query.get("status") or None)
    if (query.get("includePayload") or "false") != "true":
        found = [{k: v for k, v in task.items() if k != "taskPayload"} for task in found]
    end = int(start) + int(limit)
    page = {"tasks": found[int(start) : end]}
    if end < len(found):
        page["nextToken"] = str(end)
    return json.dumps(page).encode()


def get_async_task(fn, task_id: str) -> bytes:
    """GetAsyncTask: FC's AsyncTask object."""
    from localcloud.fc.exceptions import AsyncTaskNotFound

    task = fn.get_async_task(task_id)
    if task is None:
        raise AsyncTaskNotFound(f"async task '{task_id}' does not exist")
    return json.dumps(task).encode()
