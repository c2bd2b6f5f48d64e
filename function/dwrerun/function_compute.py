"""The one place that knows Function Compute's OpenAPI (2023-03-30): InvokeFunction, to delay a rerun.

A scheduled rerun is an asynchronous invocation of the event function itself, sent through the same
generic `alibabacloud-tea-openapi` client as DataWorks calls (no FC SDK): ROA style,
`POST /2023-03-30/functions/{name}/invocations`, with the Params the official fc20230330 SDK uses
(tests/test_wire_parity.py) and the headers
- `x-fc-invocation-type: Async`,
- `x-fc-async-delay: <seconds>` (documented as (0, 3600), open at both ends: 1-3599 is sent, and
  no header for no delay),
- `x-fc-async-task-id: <id>`: with the function's async task mode on, FC refuses a task id it has
  seen with 409, which is what makes one rerun per failed run hold across instances.

Endpoint: `<account id>.<region>.fc.aliyuncs.com`, the form FC 3.0's "Endpoints" page documents and
Serverless Devs' fc3 component uses with this API (the SDK's own map says `fcv3.<region>.aliyuncs.com`;
both serve 2023-03-30). `FUNCTION_COMPUTE_ENDPOINT` overrides it, e.g. with the same-region internal
endpoint `<account id>.<region>-internal.fc.aliyuncs.com`; `http://` only for loopback.

Errors come out as `InvokeFunctionError`, a DataWorksError in shape (the same retry flags), so the
retry loop treats both services alike: 409 -> `duplicate`; throttling (429), 5xx, timeouts -> transient;
403 (no fc:InvokeFunction), 400 (async task mode off [inferred: FC's answer is not documented]),
404 -> permanent: the caller reruns at once instead and records why.
"""

from __future__ import annotations

import threading
from urllib.parse import quote, urlsplit

from dwrerun.config import FC_MAX_ASYNC_DELAY, FUNCTION_COMPUTE_ENDPOINT, ConfigError, Settings, is_loopback
from dwrerun.dataworks import (
    NEW_INVOCATION_CODES,
    THROTTLING_PREFIX,
    Credentials,
    DataWorksError,
    generic_client,
)

VERSION = "2023-03-30"
INVOKE_FUNCTION = "InvokeFunction"
LIST_ASYNC_TASKS = "ListAsyncTasks"
GET_ASYNC_TASK = "GetAsyncTask"
ACTIONS = (INVOKE_FUNCTION,)  # template.yml grants fc:InvokeFunction on the event function alone
# The storm guard's two reads (storm.py): no resource-level authorisation (FC's API pages: all resources).
STORM_ACTIONS = (LIST_ASYNC_TASKS, GET_ASYNC_TASK)
THROTTLING_CODES = frozenset({"TooManyRequests", "ResourceThrottled", "ResourceExhausted"})


class InvokeFunctionError(DataWorksError):
    """An InvokeFunction call that did not schedule the rerun. `duplicate`: FC has the task id already."""

    def __init__(self, code: str, message: str, *, duplicate: bool = False, **flags):
        super().__init__(INVOKE_FUNCTION, code, message, **flags)
        self.duplicate = duplicate


def endpoint_for(settings: Settings, region: str | None, account_id: str | None) -> tuple[str, str]:
    """(host[:port], protocol) of the FC OpenAPI this function calls to schedule a rerun."""
    if settings.function_compute_endpoint:
        raw = settings.function_compute_endpoint
        parts = urlsplit(raw if "://" in raw else f"https://{raw}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(f"{FUNCTION_COMPUTE_ENDPOINT} must be host[:port] or an http(s) URL, got {raw!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError(f"{FUNCTION_COMPUTE_ENDPOINT} may use http:// only for a loopback address, got {raw!r}")
        return parts.netloc, parts.scheme
    if not region or not account_id:
        raise ConfigError(
            "no FC endpoint: the region or the account id is unknown (FC_REGION / FC_ACCOUNT_ID); "
            f"set {FUNCTION_COMPUTE_ENDPOINT}"
        )
    return f"{account_id}.{region}.fc.aliyuncs.com", "https"


class FunctionCompute:
    """An FC OpenAPI client for one set of credentials and one endpoint."""

    def __init__(self, credentials: Credentials, endpoint: str, protocol: str, region: str | None, settings):
        self._client, self._models, self._runtime = generic_client(credentials, endpoint, protocol, region, settings)
        self.endpoint = endpoint

    def invoke_async(
        self, function_name: str, payload: bytes, *, delay: int, task_id: str, timeout: float
    ) -> str | None:
        """Queue `payload` for `function_name`, run `delay` seconds from now as async task `task_id`.

        Returns FC's request id. Raises InvokeFunctionError.
        """
        params = self._models.Params(
            action=INVOKE_FUNCTION,
            version=VERSION,
            protocol="HTTPS",
            pathname=f"/{VERSION}/functions/{quote(function_name, safe='')}/invocations",
            method="POST",
            auth_type="AK",
            style="ROA",
            req_body_type="json",
            body_type="binary",
        )
        # In the SDK's order (its common headers, then the task id, then the invocation type), so
        # the request is byte-identical to the SDK's.
        headers = {
            "x-fc-async-delay": str(async_delay(delay)),
            "x-fc-async-task-id": task_id,
            "x-fc-invocation-type": "Async",
        }
        if async_delay(delay) is None:  # now: no delay header at all (0 is outside FC's (0, 3600))
            del headers["x-fc-async-delay"]
        request = self._models.OpenApiRequest(headers=headers, query={}, body=payload, stream=payload)
        try:
            answer = self._client.call_api(params, request, self._runtime(read_timeout=max(1, int(timeout * 1000))))
        except Exception as exc:  # the SDK raises several unrelated types; classify them all here
            raise _classify(exc) from None
        # The body (FC's answer to an async call says nothing more) is bytes: darabonba-core (pinned)
        # reads it whole before call_api returns, which hands the connection back for the next call.
        answer_headers = {str(k).lower(): v for k, v in (answer.get("headers") or {}).items()}
        return answer_headers.get("x-fc-request-id")

    def call_json(self, action: str, pathname: str, query: dict[str, str], timeout: float) -> dict:
        """A GET of FC's OpenAPI answering JSON (ListAsyncTasks, GetAsyncTask). Raises InvokeFunctionError."""
        params = self._models.Params(
            action=action,
            version=VERSION,
            protocol="HTTPS",
            pathname=pathname,
            method="GET",
            auth_type="AK",
            style="ROA",
            req_body_type="json",
            body_type="json",
        )
        request = self._models.OpenApiRequest(headers={}, query=query)
        try:
            answer = self._client.call_api(params, request, self._runtime(read_timeout=max(1, int(timeout * 1000))))
        except Exception as exc:
            raise _classify(exc) from None
        body = answer.get("body")
        return body if isinstance(body, dict) else {}


def async_delay(delay: float) -> int | None:
    """The x-fc-async-delay to send for `delay` seconds: whole seconds inside FC's documented
    (0, 3600), so never 0 nor 3600; None for no delay (the header is then left out)."""
    if delay <= 0:
        return None
    return min(FC_MAX_ASYNC_DELAY, max(1, int(delay)))


class AsyncTasks:
    """The storm guard's `Tasks` (storm.py) over FC's OpenAPI, for the event function's own tasks.

    create: InvokeFunction with a task id (409: False); list: ListAsyncTasks with includePayload,
    following nextToken; get: GetAsyncTask (404: None). Any other error is a CoordinationError, on
    which the guard fails open. A task's payload is read from `taskPayload` (the AsyncTask struct)
    or `invocationPayload` (what ListAsyncTasks' includePayload is documented to add) [inferred:
    which one the list carries].
    """

    PAGE = 100  # ListAsyncTasks' limit is 1-100

    def __init__(self, client: FunctionCompute, function_name: str, timeout: float, signing_key: str | None = None):
        self.signing_key = signing_key  # signs the releases' scheduled-rerun payloads (schedule.py)
        self._client = client
        self._name = function_name
        self._timeout = timeout
        self._base = f"/{VERSION}/functions/{quote(function_name, safe='')}/async-tasks"

    def create(self, task_id: str, delay: int, payload: bytes) -> bool:
        from dwrerun.storm import CoordinationError

        try:
            self._client.invoke_async(self._name, payload, delay=delay, task_id=task_id, timeout=self._timeout)
        except InvokeFunctionError as exc:
            if exc.duplicate:
                return False
            raise CoordinationError(f"InvokeFunction {task_id}: {exc.code}") from None
        return True

    def list(self, prefix: str, *, status: str | None = None, limit: int = PAGE):
        from dwrerun.storm import CoordinationError

        found, token = [], None
        while len(found) < limit:
            query = {"prefix": prefix, "limit": str(min(self.PAGE, limit - len(found))), "includePayload": "true"}
            if status is not None:
                query["status"] = status
            if token:
                query["nextToken"] = token
            try:
                body = self._client.call_json(LIST_ASYNC_TASKS, self._base, query, self._timeout)
            except InvokeFunctionError as exc:
                raise CoordinationError(f"ListAsyncTasks {prefix}: {exc.code}") from None
            found += [_task(t) for t in body.get("tasks") or [] if isinstance(t, dict)]
            token = body.get("nextToken")
            if not token:
                break
        return found[:limit]

    def get(self, task_id: str):
        from dwrerun.storm import CoordinationError

        try:
            body = self._client.call_json(GET_ASYNC_TASK, f"{self._base}/{quote(task_id, safe='')}", {}, self._timeout)
        except InvokeFunctionError as exc:
            if exc.status == 404:
                return None
            raise CoordinationError(f"GetAsyncTask {task_id}: {exc.code}") from None
        return _task(body)


def _task(body: dict):
    import json

    from dwrerun.storm import Task

    raw = body.get("taskPayload") or body.get("invocationPayload")
    try:
        payload = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        payload = None
    return Task(
        str(body.get("taskId") or ""), str(body.get("status") or ""), payload if isinstance(payload, dict) else None
    )


def _classify(exc: Exception) -> InvokeFunctionError:
    # Only the code and a short message are kept: the SDK's exceptions carry the request, whose
    # headers hold the security token.
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException

    if isinstance(exc, AlibabaCloudException):
        status = exc.status_code
        data = exc.data if isinstance(exc.data, dict) else {}
        code = str(data.get("Code") or data.get("code") or data.get("ErrorCode") or exc.code or status or "Unknown")
        if code == "None":
            code = str(status or "Unknown")
        message = str(data.get("Message") or data.get("message") or data.get("ErrorMessage") or code)[:300]
        request_id = data.get("RequestId") or data.get("requestId") or exc.request_id
        if status == 409:
            return InvokeFunctionError(code, message, duplicate=True, transient=False, status=status)
        needs_new_invocation = code in NEW_INVOCATION_CODES
        throttled = (
            isinstance(exc, ThrottlingException)
            or status == 429
            or code.startswith(THROTTLING_PREFIX)
            or code in THROTTLING_CODES
        )
        server_side = status is not None and status >= 500
        retry_after = getattr(exc, "retry_after", None)
        return InvokeFunctionError(
            code,
            message,
            transient=throttled or server_side or needs_new_invocation,
            status=status,
            request_id=request_id if request_id not in (None, "None") else None,
            retry_after=retry_after / 1000 if retry_after else None,
            # A 5xx may have queued the invocation: the task id makes resending it safe (409).
            ambiguous=server_side,
            needs_new_invocation=needs_new_invocation,
        )
    inner = getattr(exc, "inner_exception", exc)
    inner = inner.__context__ or inner
    kind = type(inner).__name__
    if "Timeout" in kind:
        code = "ReadTimeout" if "Read" in kind else "Timeout"
    elif "Connection" in kind:
        code = "ConnectionError"
    else:
        code = "TransportError"
    return InvokeFunctionError(code, kind, transient=True, ambiguous=True)


_client_lock = threading.Lock()
_cached: tuple[tuple, FunctionCompute] | None = None


def client_for(credentials: Credentials, settings: Settings, region: str | None, account_id: str | None):
    """The warm instance's FC client, rebuilt only when the credentials or the endpoint change."""
    global _cached
    endpoint, protocol = endpoint_for(settings, region, account_id)
    key = (credentials, endpoint, protocol, region, settings.connect_timeout, settings.read_timeout)
    with _client_lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, FunctionCompute(credentials, endpoint, protocol, region, settings))
        return _cached[1]
