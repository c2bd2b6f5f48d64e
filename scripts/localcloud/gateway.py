"""A local stand-in for FC 3.0's HTTP trigger gateway in front of a built-in-runtime function.

Real HTTP requests on 127.0.0.1 become the HTTP-trigger event FC documents ("Use an HTTP trigger to
invoke a function"; FACTS section 5; tests/events/fc-http-*.json), the function is invoked with it
as bytes, and the handler's `{"statusCode", "headers", "isBase64Encoded", "body"}` becomes the
HTTP response. With `auth_type="function"` the request must carry a valid signature
(localcloud.fc.auth) or it gets 403, like FC's gateway.

Where the docs are silent the stand-in chooses, and says so here:
- with the process model (`localcloud.fc.function.Function`) each request is a synchronous
  invocation on an idle or new instance; with every instance the reserved concurrency allows
  busy it answers 429 `ResourceExhausted` [FC's error list: "concurrency over the limit"; FC 3.0 inferred];
- a handler error or timeout answers 502 with `{"errorType", "errorMessage"}` and the
  `x-fc-error-type` header; the stack trace only goes to the function's log [inferred];
- a return value that is not a response struct is sent as a 200 body (a string as text, anything
  else as JSON) [inferred from FC's "the response is inferred" rule]; a malformed struct is 502;
- `Host`, `Content-Length` and hop-by-hop headers are not passed in the event (the samples have
  none), and neither are `Authorization` / `x-acs-security-token`: a handler that logs its
  headers must never log a signature or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from localcloud.fc import auth
from localcloud.fc.exceptions import ConcurrencyExceeded
from localcloud.fc.function import Function
from localcloud.fc.harness import FunctionCompute
from localcloud.fc.runtime import Invocation, new_request_id
from localcloud.loopback import LoopbackServer

AUTH_TYPES = ("anonymous", "function")
MAX_SYNC_BODY = 32 * 1024 * 1024  # FC: 32 MB for a synchronous invocation
_NOT_FORWARDED = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "authorization",
    auth.TOKEN_HEADER,
}
_NOT_RETURNED = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
}


class HttpGateway:
    """Serves one function's HTTP trigger on 127.0.0.1. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        fn: FunctionCompute | Function,
        port: int = 0,
        auth_type: str = "anonymous",
        credentials: Any = None,
        domain_prefix: str | None = None,
    ):
        if auth_type not in AUTH_TYPES:
            raise ValueError(f"auth_type must be one of {AUTH_TYPES} (jwt is not emulated), got {auth_type!r}")
        keys = _keys(credentials)
        if auth_type == "function" and not keys:
            raise ValueError("auth_type 'function' needs the credentials allowed to invoke (fc:InvokeFunction)")
        self.fn = fn
        self.auth_type = auth_type
        self._keys = keys
        self.domain_prefix = domain_prefix or f"{fn.function_name}-local"
        self.invocations: deque[Invocation] = deque(maxlen=1000)  # the latest ones, for tests and demos
        # Every method FC's HTTP trigger takes; the server keeps no request log (the function's
        # own log is the Logstore, and request lines could carry tokens).
        self._loopback = LoopbackServer(
            lambda h: _serve(self, h), name=f"gateway-{fn.function_name}", server_version="HttpGateway/1.0", port=port
        )
        self._loopback.bind()  # the URL is known before the gateway serves

    @property
    def port(self) -> int:
        return self._loopback.port

    @property
    def url(self) -> str:
        return self._loopback.url

    def start(self) -> HttpGateway:
        if not self._loopback.running:
            self._loopback.start()
        return self

    def stop(self) -> None:
        self._loopback.stop()

    def __enter__(self) -> HttpGateway:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the gateway does with one request

    def handle(self, request: _Request) -> tuple[int, list[tuple[str, str]], bytes]:
        """Turn one HTTP request into an invocation and its answer into (status, headers, body)."""
        request_id = new_request_id()
        if self.auth_type == "function":
            try:
                auth.verify(
                    request.method, request.raw_path, request.raw_query, request.headers, request.body, self._keys
                )
            except auth.AuthError as exc:
                return _json_answer(
                    403, {"Code": exc.code, "Message": exc.message, "RequestId": request_id}, request_id
                )
        event = self.event_for(request, request_id)
        try:
            invocation = self.fn.invoke(json.dumps(event, ensure_ascii=False).encode("utf-8"), request_id=request_id)
        except ConcurrencyExceeded as exc:  # every instance the reserved concurrency allows is busy
            return _json_answer(
                exc.status, {"errorCode": exc.code, "errorMessage": str(exc), "RequestId": request_id}, request_id
            )
        self.invocations.append(invocation)
        return _answer(invocation)

    def event_for(self, request: _Request, request_id: str) -> dict:
        """The FC 3.0 HTTP-trigger event for a request."""
        headers: dict[str, str] = {}
        names: dict[str, str] = {}  # lower-case -> the spelling first seen
        for name, value in request.headers:
            if name.lower() in _NOT_FORWARDED:
                continue
            key = names.setdefault(name.lower(), name)
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query = {k: ",".join(v) for k, v in parse_qs(request.raw_query, keep_blank_values=True).items()}
        content_type = next((v for n, v in request.headers if n.lower() == "content-type"), "")
        if _is_text(content_type, request.body):
            body, encoded = request.body.decode("utf-8"), False
        else:
            body, encoded = base64.b64encode(request.body).decode("ascii"), True
        now = datetime.now(timezone.utc)
        user_agent = next((v for n, v in request.headers if n.lower() == "user-agent"), "")
        return {
            "version": "v1",
            "rawPath": request.raw_path,
            "body": body,
            "isBase64Encoded": encoded,
            "headers": headers,
            "queryParameters": query,
            "requestContext": {
                "accountId": self.fn.account_id,
                "domainName": f"{self.domain_prefix}.{self.fn.region}.fcapp.run",
                "domainPrefix": self.domain_prefix,
                "http": {
                    "method": request.method,
                    "path": unquote(request.raw_path),
                    "protocol": request.protocol,
                    "sourceIp": request.source_ip,
                    "userAgent": user_agent,
                },
                "requestId": request_id,
                "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timeEpoch": str(int(now.timestamp() * 1000)),
            },
        }


class _Request:
    def __init__(self, method, raw_path, raw_query, headers, body, protocol, source_ip):
        self.method = method
        self.raw_path = raw_path
        self.raw_query = raw_query
        self.headers: list[tuple[str, str]] = headers
        self.body: bytes = body
        self.protocol = protocol
        self.source_ip = source_ip


def _serve(gateway: HttpGateway, h: BaseHTTPRequestHandler) -> None:
    status, headers, body = _answer_request(gateway, h)
    h.send_response(status)
    for name, value in headers:
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def _answer_request(gateway: HttpGateway, h: BaseHTTPRequestHandler) -> tuple[int, list[tuple[str, str]], bytes]:
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        h.close_connection = True
        return _json_answer(411, {"Code": "LengthRequired", "Message": "send a Content-Length"}, new_request_id())
    try:
        length = int(h.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if length < 0:
        h.close_connection = True
        return _json_answer(400, {"Code": "BadRequest", "Message": "Content-Length is not a number"}, new_request_id())
    if length > MAX_SYNC_BODY:
        h.close_connection = True
        message = f"the body is over {MAX_SYNC_BODY} bytes"
        return _json_answer(413, {"Code": "RequestEntityTooLarge", "Message": message}, new_request_id())
    parts = urlsplit(h.path)
    request = _Request(
        method=h.command,
        raw_path=parts.path or "/",
        raw_query=parts.query,
        headers=list(h.headers.items()),
        body=h.rfile.read(length) if length else b"",
        protocol=h.request_version,
        source_ip=h.client_address[0],
    )
    return gateway.handle(request)


def _keys(credentials: Any) -> dict[str, Any]:
    if credentials is None:
        return {}
    many: Iterable[Any] = [credentials] if hasattr(credentials, "access_key_id") else credentials
    return {c.access_key_id: c for c in many}


def _is_text(content_type: str, body: bytes) -> bool:
    # FC: "if the content type of the request is binary, the body is Base64-encoded". Text types
    # (and no type at all) are passed as text when the bytes are valid UTF-8.
    kind = content_type.split(";")[0].strip().lower()
    if kind and not (
        kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith("+json") or kind.endswith("+xml")
    ):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_answer(status: int, payload: dict, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", "application/json"), ("x-fc-request-id", request_id)]
    return status, headers, json.dumps(payload).encode("utf-8")


def _error_answer(invocation: Invocation, error_type: str, error: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = _json_answer(
        502,
        {"errorType": error.get("errorType", error_type), "errorMessage": error.get("errorMessage", "")},
        invocation.request_id,
    )
    return status, [*headers, ("x-fc-error-type", error_type)], body


def _answer(invocation: Invocation) -> tuple[int, list[tuple[str, str]], bytes]:
    """FC's mapping from the function's return value to the HTTP response."""
    if invocation.timed_out:
        return _error_answer(invocation, "FunctionTimeout", invocation.error or {})
    if invocation.error is not None:
        # Never the stack trace: it stays in the function's log.
        return _error_answer(invocation, "UnhandledInvocationError", invocation.error)
    result = invocation.result
    rid = ("x-fc-request-id", invocation.request_id)
    if not (isinstance(result, dict) and "statusCode" in result):
        if result is None:
            return 200, [rid], b""
        if isinstance(result, (bytes, bytearray)):
            return 200, [("Content-Type", "application/octet-stream"), rid], bytes(result)
        if isinstance(result, str):
            return 200, [("Content-Type", "text/plain; charset=utf-8"), rid], result.encode("utf-8")
        return 200, [("Content-Type", "application/json"), rid], json.dumps(result, default=str).encode("utf-8")
    try:
        status, headers, body = _response_struct(result)
    except ValueError as exc:
        return _error_answer(invocation, "InvalidResponse", {"errorType": "InvalidResponse", "errorMessage": str(exc)})
    return status, [*headers, rid], body


def _response_struct(result: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"statusCode must be an HTTP status code, got {status!r}")
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise ValueError("headers must be an object")
    headers = []
    for name, value in raw_headers.items():
        lower = str(name).lower()
        # FC forbids response headers starting with x-fc- (they are the platform's own): dropped.
        if lower.startswith("x-fc-") or lower in _NOT_RETURNED:
            continue
        for one in value if isinstance(value, list) else [value]:
            headers.append((str(name), str(one)))
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError("isBase64Encoded is true but body is not base64") from None
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode("utf-8")
    return status, headers, data
