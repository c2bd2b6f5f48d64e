"""A local Function Compute OpenAPI (2023-03-30) on loopback: `InvokeFunction`, for process-model functions.

    POST /2023-03-30/functions/{functionName}/invocations[?qualifier=LATEST]     (ROA style)
    x-fc-invocation-type: Sync | Async     (default Sync)
    x-fc-async-delay: 0..3600              (whole seconds; Async only)
    x-fc-async-task-id: <task id>          (Async only; needs the function's asyncTask on)
    x-fc-log-type: None | Tail             (Tail: the last 4 KB of a Sync call's log, base64)
    body: the event, raw bytes

    with FunctionComputeApi([fn], credentials=[creds]) as api:   # or register(fn) after start
        ...  # the generic client at endpoint api.endpoint, protocol "http" (tests/test_fc_api.py)

Each request goes: route -> ACS3-HMAC-SHA256 signature (localcloud.acs3, with FC's query
canonicalisation from localcloud.fcauth; nonces and the 15-minute clock window checked) ->
injected faults -> the function -> answer, and lands in the journal whatever happens.

Answers, per FACTS section 5 where documented:
- Async: 202, empty body, `x-fc-request-id` (the asynchronous invocation's request id, kept across
  FC's retries) and, when one was given, `x-fc-async-task-id`. A delayed invocation comes due on the
  function's clock (`localcloud.clock`): tests advance it instead of sleeping.
- Sync: 200, the handler's return value as the body (a dict or list as JSON, a string as text,
  bytes as they are); a handler error is a 200 with `x-fc-error-type: UnhandledInvocationError`
  and `{"errorMessage", "errorType", "stackTrace"}`.
- Refusals: `{"Code", "Message", "RequestId"}`, the body the generic client reads [inferred: FC's
  error-code page writes the fields as errorCode/errorMessage]. Statuses: 400 InvalidArgument,
  EntityTooLarge, PathNotSupported; 403 for signatures (SignatureNotMatch, InvalidAccessKeyID, or
  the gateway's own code) and AccessDenied (a fault: the caller lacks fc:InvokeFunction); 404
  FunctionNotFound, AliasNotFound (only LATEST exists here); 409 for a repeated task id in async
  task mode (documented; the code name is inferred); 429 when throttled (a fault) or when a
  synchronous call finds every instance busy (ResourceExhausted).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from localcloud import acs3, fcauth
from localcloud.fc import new_request_id
from localcloud.fcfunction import Function, InvocationRefused

VERSION = "2023-03-30"
ACTION = "InvokeFunction"
ROUTE = re.compile(rf"/{VERSION}/functions/([^/]+)/invocations")
INVOCATION_TYPES = ("Sync", "Async")
MAX_BODY = 32 * 1024 * 1024 + 1  # FC's synchronous limit; the function refuses what is above its own
FAULT_KINDS = ("deny", "throttle")
# What FC's OpenAPI gateway answers for a refused signature [its codes: FC's error-code page].
_SIGNATURE_CODES = {"SignatureDoesNotMatch": "SignatureNotMatch", "InvalidAccessKeyId.NotFound": "InvalidAccessKeyID"}


class ApiCall(NamedTuple):
    """One request to the API, refused ones included. `time` is the function's clock, for the
    delays; no signature, token or body is kept."""

    time: float
    function: str
    invocation_type: str
    delay: int | None
    task_id: str | None
    status: int
    code: str | None
    request_id: str
    access_key_id: str | None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Faults:
    """Injected refusals, per upcoming call: `deny` (403 AccessDenied, as for a role without
    fc:InvokeFunction) and `throttle` (429). A count is how many calls it hits; None, every call."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int | None] = {}
        self.throttle_code = "ResourceExhausted"

    def set(self, *, deny: int | None | bool = False, throttle: int | None | bool = False, throttle_code=None) -> None:
        for kind, count in (("deny", deny), ("throttle", throttle)):
            if count is False:
                continue
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise ValueError(f"{kind} must be a count of calls (int >= 0) or None for every call, not {count!r}")
            with self._lock:
                self._counts[kind] = count
        if throttle_code:
            self.throttle_code = throttle_code

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def take(self) -> str | None:
        """The fault for this call, if any, using up its count (deny before throttle)."""
        with self._lock:
            for kind in FAULT_KINDS:
                left = self._counts.get(kind, 0)
                if left is None or left > 0:
                    if left is not None:
                        self._counts[kind] = left - 1
                    return kind
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FunctionComputeApi/1.0"
    timeout = 300

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.server.api._handle(self)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format, *args):  # the journal records every request instead
        pass


class FunctionComputeApi:
    """FC OpenAPI 2023-03-30 `InvokeFunction` on 127.0.0.1 for `functions`, checking ACS3 signatures
    against `credentials`. Use it as a context manager, or start()/stop()."""

    def __init__(
        self,
        functions: Iterable[Function] = (),
        credentials: list[acs3.Credentials] = (),
        port: int = 0,
        host: str = "127.0.0.1",
    ):
        self.functions: dict[str, Function] = {}
        for fn in functions:
            self.register(fn)
        self.faults = Faults()
        self.journal: list[ApiCall] = []
        self._journal_lock = threading.Lock()
        self._nonces = acs3.NonceCache()
        self._credentials: list[acs3.Credentials] = []
        self._expired: list[acs3.Credentials] = []
        self._credentials_lock = threading.Lock()
        self.set_credentials(credentials)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    def start(self) -> FunctionComputeApi:
        if self._server is not None:
            raise RuntimeError("the API is already running")
        self._server = _Server((self._host, self._port), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fc-openapi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FunctionComputeApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """host:port, what the generic client's `endpoint` takes (protocol "http")."""
        if self._server is None:
            raise RuntimeError("the API is not running: call start() first")
        return f"{self._host}:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def register(self, fn: Function) -> None:
        """Serve `fn` too. A function that invokes itself needs the API's endpoint in its variables,
        so the API can start first and take the function once it exists."""
        if not isinstance(fn, Function):
            raise ValueError(f"functions must be localcloud.fcfunction.Function objects, not {type(fn).__name__}")
        self.functions[fn.function_name] = fn

    def set_credentials(self, credentials: list[acs3.Credentials]) -> None:
        """Accept only these from now on. Dropped STS credentials answer InvalidSecurityToken.Expired."""
        credentials = list(credentials)
        if not credentials or not all(isinstance(c, acs3.Credentials) for c in credentials):
            raise ValueError("credentials must be a non-empty list of localcloud.acs3.Credentials")
        with self._credentials_lock:
            kept = {c.security_token for c in credentials}
            self._expired += [c for c in self._credentials if c.security_token and c.security_token not in kept]
            self._credentials = credentials

    def calls(self, function: str | None = None, status: int | None = None) -> list[ApiCall]:
        """The journal, optionally only one function's calls or one status."""
        with self._journal_lock:
            return [
                c
                for c in self.journal
                if (function is None or c.function == function) and (status is None or c.status == status)
            ]

    # --- one request

    def _handle(self, h: _Handler) -> None:
        request_id = new_request_id()
        split = urlsplit(h.path)
        raw_query = split.query
        body = b""
        entry = {"function": "", "invocation_type": "", "delay": None, "task_id": None, "access_key_id": None}
        status, code, answer = 200, None, b""
        headers: dict[str, str] = {"x-fc-request-id": request_id}
        try:
            length = _content_length(h)
            body = h.rfile.read(length) if length else b""
            route = ROUTE.fullmatch(split.path)
            if h.command != "POST" or route is None:
                raise ApiError(400, "PathNotSupported", f"'{h.command} {split.path}' is not supported")
            name = unquote(route.group(1))
            entry["function"] = name
            entry["access_key_id"] = self._verify(h, split.path, raw_query, body)
            fault = self.faults.take()
            fn = self.functions.get(name)
            if fault == "deny":
                raise ApiError(
                    403,
                    "AccessDenied",
                    f"the caller is not authorized to perform fc:InvokeFunction on "
                    f"acs:fc:{fn.region if fn else 'cn-hangzhou'}:{fn.account_id if fn else '*'}:functions/{name}",
                )
            if fault == "throttle":
                raise ApiError(429, self.faults.throttle_code, "the request was throttled: too many requests")
            if fn is None:
                raise ApiError(404, "FunctionNotFound", f"function '{name}' does not exist")
            qualifier = _first(raw_query, "qualifier")
            if qualifier not in (None, "", "LATEST"):
                raise ApiError(404, "AliasNotFound", f"alias '{qualifier}' of function '{name}' does not exist")
            kind, delay, task_id, log_type = _invocation_headers(h)
            entry.update(invocation_type=kind, delay=delay, task_id=task_id)
            if kind == "Async":
                fn.invoke_async(body, request_id, delay=delay or 0, task_id=task_id)
                status = 202
                if task_id is not None:
                    headers["x-fc-async-task-id"] = task_id
            else:
                invocation = fn.invoke(body, request_id)
                answer, content_type = _sync_body(invocation)
                headers["Content-Type"] = content_type
                if invocation.error is not None:
                    headers["x-fc-error-type"] = "UnhandledInvocationError"
                if log_type == "Tail":  # the last 4 KB of the invocation's log, base64
                    tail = "\n".join(invocation.stdout + invocation.stderr).encode("utf-8")[-4096:]
                    headers["x-fc-log-result"] = base64.b64encode(tail).decode("ascii")
        except acs3.SignatureError as exc:
            status, code = 403, _SIGNATURE_CODES.get(exc.code, exc.code)
            answer = _error(code, exc.message, request_id)
        except InvocationRefused as exc:
            status, code, answer = exc.status, exc.code, _error(exc.code, str(exc), request_id)
        except ApiError as exc:
            status, code, answer = exc.status, exc.code, _error(exc.code, exc.message, request_id)
        except Exception:
            traceback.print_exc(file=sys.stderr)  # for whoever runs the stand-in, never to the caller
            status, code = 500, "InternalServerError"
            answer = _error(code, "an internal error occurred", request_id)
        fn = self.functions.get(entry["function"])
        when = fn.clock.now() if fn is not None else time.time()
        with self._journal_lock:
            self.journal.append(ApiCall(when, status=status, code=code, request_id=request_id, **entry))
        if code is not None:
            headers["Content-Type"] = "application/json;charset=utf-8"
        try:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(answer)))
            h.end_headers()
            h.wfile.write(answer)
        except OSError:  # the client went away
            h.close_connection = True

    def _verify(self, h: _Handler, path: str, raw_query: str, body: bytes) -> str:
        with self._credentials_lock:
            accepted, expired = list(self._credentials), list(self._expired)
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        creds = acs3.verify(
            "POST",
            path,
            query,
            h.headers.items(),
            body,
            accepted,
            expired=expired,
            nonces=self._nonces,
            canonical_query_string=fcauth.canonical_query(raw_query),
        )
        return creds.access_key_id


def _content_length(h: _Handler) -> int:
    try:
        length = int(h.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        h.close_connection = True
        raise ApiError(400, "EntityTooLarge", f"payload size exceeds maximum allowed size ({MAX_BODY - 1} bytes)")
    return length


def _first(raw_query: str, key: str) -> str | None:
    values = parse_qs(raw_query, keep_blank_values=True).get(key)
    return values[0] if values else None


def _invocation_headers(h: _Handler) -> tuple[str, int | None, str | None, str]:
    kind = (h.headers.get("x-fc-invocation-type") or "Sync").strip()
    if kind not in INVOCATION_TYPES:
        raise ApiError(400, "InvalidArgument", f"x-fc-invocation-type must be Sync or Async, not {kind!r}")
    log_type = (h.headers.get("x-fc-log-type") or "None").strip()
    if log_type not in ("None", "Tail"):
        raise ApiError(400, "InvalidArgument", f"x-fc-log-type must be None or Tail, not {log_type!r}")
    raw_delay = h.headers.get("x-fc-async-delay")
    delay = None
    if raw_delay is not None:
        if not raw_delay.strip().isdigit() or not 0 <= int(raw_delay) <= 3600:
            raise ApiError(400, "InvalidArgument", f"x-fc-async-delay must be whole seconds 0-3600, not {raw_delay!r}")
        delay = int(raw_delay)
    task_id = h.headers.get("x-fc-async-task-id")
    if kind == "Sync" and (delay is not None or task_id is not None):
        # A delay or a task id only means something to the asynchronous queue [inferred].
        raise ApiError(
            400, "InvalidArgument", "x-fc-async-delay and x-fc-async-task-id need x-fc-invocation-type Async"
        )
    return kind, delay, task_id, log_type


def _sync_body(invocation) -> tuple[bytes, str]:
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


def _error(code: str, message: str, request_id: str) -> bytes:
    return json.dumps({"Code": code, "Message": message, "RequestId": request_id}, ensure_ascii=False).encode("utf-8")
