"""FC's OpenAPI (2023-03-30) on loopback: `InvokeFunction`, for process-model functions.

    with FunctionComputeApi([fn], credentials=[creds]) as api:   # or register(fn) after start
        ...  # the generic client at endpoint api.endpoint, protocol "http" (tests/test_fc_api.py)

Each request goes: route -> ACS3-HMAC-SHA256 signature (localcloud.acs3, with FC's query
canonicalisation from localcloud.fc.auth; nonces and the 15-minute clock window checked) ->
injected faults (localcloud.fc.faults) -> the function (localcloud.fc.responses) -> answer, and
lands in the journal whatever happens. A delayed invocation comes due on the function's clock
(`localcloud.clock`): tests advance it instead of sleeping.

Refusals (localcloud.fc.exceptions), per FACTS section 5 where documented: 400 InvalidArgument,
EntityTooLarge, PathNotSupported; 403 for signatures (SignatureNotMatch, InvalidAccessKeyID, or
the gateway's own code) and AccessDenied (a fault: the caller lacks fc:InvokeFunction); 404
FunctionNotFound, AliasNotFound (only LATEST exists here); 409 for a repeated task id in async
task mode (documented; the code name is inferred); 429 when throttled (a fault) or when a
synchronous call finds every instance busy (ResourceExhausted).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from localcloud import acs3
from localcloud.fc import auth, responses
from localcloud.fc.exceptions import (
    SIGNATURE_CODES,
    SIGNATURE_STATUS,
    AccessDenied,
    AliasNotFound,
    FCError,
    FunctionNotFound,
    InternalServerError,
    PathNotSupported,
    ResourceExhausted,
    ServiceUnavailable,
)
from localcloud.fc.faults import Faults
from localcloud.fc.function import Function
from localcloud.fc.runtime import QUALIFIER, new_request_id
from localcloud.loopback import LoopbackServer

READS = ("ListAsyncTasks", "GetAsyncTask")  # the journal's GETs, left out of calls() unless asked for


class _Answered(Exception):
    """A GET answered: the invocation path is skipped."""


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
        # ListAsyncTasks / GetAsyncTask answer 503 while set: FC's coordination calls failing.
        self.tasks_unavailable = False
        self.journal: list[ApiCall] = []
        self._journal_lock = threading.Lock()
        self._nonces = acs3.NonceCache()
        self._credentials: list[acs3.Credentials] = []
        self._expired: list[acs3.Credentials] = []
        self._credentials_lock = threading.Lock()
        self.set_credentials(credentials)
        self._loopback = LoopbackServer(
            self._handle,
            name="fc-openapi",
            server_version="FunctionComputeApi/1.0",
            methods=("GET", "POST", "PUT", "DELETE"),
            host=host,
            port=port,
        )

    # --- lifecycle

    def start(self) -> FunctionComputeApi:
        if self._loopback.running:
            raise RuntimeError("the API is already running")
        self._loopback.start()
        return self

    def stop(self) -> None:
        self._loopback.stop()

    def __enter__(self) -> FunctionComputeApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """host:port, what the generic client's `endpoint` takes (protocol "http")."""
        if not self._loopback.running:
            raise RuntimeError("the API is not running: call start() first")
        return self._loopback.endpoint

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def register(self, fn: Function) -> None:
        """Serve `fn` too. A function that invokes itself needs the API's endpoint in its variables,
        so the API can start first and take the function once it exists."""
        if not isinstance(fn, Function):
            raise ValueError(f"functions must be localcloud.fc.function.Function objects, not {type(fn).__name__}")
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

    def calls(self, function: str | None = None, status: int | None = None, *, reads: bool = False) -> list[ApiCall]:
        """The journal's InvokeFunction calls (with `reads`, ListAsyncTasks and GetAsyncTask too),
        optionally only one function's calls or one status."""
        with self._journal_lock:
            return [
                c
                for c in self.journal
                if (function is None or c.function == function)
                and (status is None or c.status == status)
                and (reads or c.invocation_type not in READS)
            ]

    # --- one request

    def _handle(self, h) -> None:
        request_id = new_request_id()
        split = urlsplit(h.path)
        raw_query = split.query
        entry = {"function": "", "invocation_type": "", "delay": None, "task_id": None, "access_key_id": None}
        status, code, answer = 200, None, b""
        headers: dict[str, str] = {"x-fc-request-id": request_id}
        try:
            try:
                length = responses.content_length(h.headers)
            except FCError:
                h.close_connection = True
                raise
            body = h.rfile.read(length) if length else b""
            tasks_route = responses.TASKS_ROUTE.fullmatch(split.path)
            if h.command == "GET" and tasks_route is not None:
                status, answer = 200, self._tasks(h, tasks_route, split.path, raw_query, body, entry)
                headers["Content-Type"] = "application/json;charset=utf-8"
                raise _Answered
            route = responses.ROUTE.fullmatch(split.path)
            if h.command != "POST" or route is None:
                raise PathNotSupported(f"'{h.command} {split.path}' is not supported")
            name = unquote(route.group(1))
            entry["function"] = name
            entry["access_key_id"] = self._verify(h, split.path, raw_query, body)
            fault = self.faults.take()
            fn = self.functions.get(name)
            if fault == "deny":
                raise AccessDenied(
                    f"the caller is not authorized to perform fc:InvokeFunction on "
                    f"acs:fc:{fn.region if fn else 'cn-hangzhou'}:{fn.account_id if fn else '*'}:functions/{name}"
                )
            if fault == "throttle":
                raise ResourceExhausted("the request was throttled: too many requests", code=self.faults.throttle_code)
            if fn is None:
                raise FunctionNotFound(f"function '{name}' does not exist")
            qualifier = responses.qualifier(raw_query)
            if qualifier not in (None, "", QUALIFIER):
                raise AliasNotFound(f"alias '{qualifier}' of function '{name}' does not exist")
            request = responses.invoke_request(h.headers)
            entry.update(invocation_type=request.invocation_type, delay=request.delay, task_id=request.task_id)
            status, more, answer = responses.invoke_function(fn, request, body, request_id)
            headers.update(more)
        except _Answered:
            pass
        except acs3.SignatureError as exc:
            status, code = SIGNATURE_STATUS, SIGNATURE_CODES.get(exc.code, exc.code)
            answer = responses.error_body(code, exc.message, request_id)
        except FCError as exc:
            status, code, answer = exc.status, exc.code, responses.error_body(exc.code, exc.message, request_id)
        except Exception:
            traceback.print_exc(file=sys.stderr)  # for whoever runs the stand-in, never to the caller
            status, code = InternalServerError.status, InternalServerError.code
            answer = responses.error_body(code, "an internal error occurred", request_id)
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

    def _tasks(self, h, route, path: str, raw_query: str, body: bytes, entry: dict) -> bytes:
        """ListAsyncTasks or GetAsyncTask of one function."""
        name, task_id = unquote(route.group(1)), route.group(2)
        entry["function"] = name
        entry["invocation_type"] = "GetAsyncTask" if task_id else "ListAsyncTasks"
        entry["task_id"] = unquote(task_id) if task_id else None
        entry["access_key_id"] = self._verify(h, path, raw_query, body)
        fn = self.functions.get(name)
        if fn is None:
            raise FunctionNotFound(f"function '{name}' does not exist")
        if self.tasks_unavailable:
            raise ServiceUnavailable("the async task service is unavailable (injected)")
        if task_id is not None:
            return responses.get_async_task(fn, unquote(task_id))
        return responses.list_async_tasks(fn, raw_query)

    def _verify(self, h, path: str, raw_query: str, body: bytes) -> str:
        with self._credentials_lock:
            accepted, expired = list(self._credentials), list(self._expired)
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        creds = acs3.verify(
            h.command,
            path,
            query,
            h.headers.items(),
            body,
            accepted,
            expired=expired,
            nonces=self._nonces,
            canonical_query_string=auth.canonical_query(raw_query),
        )
        return creds.access_key_id
