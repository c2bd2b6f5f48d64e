"""FC 3.0's management answers for `make verify`: GetFunction, GetConcurrencyConfig,
GetAsyncInvokeConfig, ListTriggers, and a synchronous InvokeFunction (localcloud.controlplane
serves them, ROA paths under /2023-03-30/ as the official alibabacloud_fc20230330 SDK sends them).

Beside server.py (the asynchronous InvokeFunction the event function calls): this module only
describes functions and forwards a synchronous invocation to a local function's `invoke(bytes)`
(harness.FunctionCompute or function.Function).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION = "2023-03-30"


class FcApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class FunctionConfig:
    """What FC reports about one function (the fields `make verify` reads)."""

    name: str
    runtime: str
    handler: str
    reserved_concurrency: int | None
    async_task: bool
    max_async_retry_attempts: int = 3
    triggers: list[dict] = field(default_factory=list)
    target: Any = None  # a local function with invoke(bytes) -> Invocation, for InvokeFunction


class FcBackend:
    def __init__(self):
        self.functions: dict[str, FunctionConfig] = {}

    def add(self, config: FunctionConfig) -> None:
        self.functions[config.name] = config

    def handle(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """(status, extra headers, body) for one ROA request."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] != [VERSION, "functions"] or len(parts) < 3:
            raise FcApiError(404, "NotFound", f"{method} {path} is not served here")
        fn = self.functions.get(parts[2])
        if fn is None:
            raise FcApiError(404, "FunctionNotFound", f"function '{parts[2]}' does not exist")
        rest = parts[3:]
        if method == "GET" and not rest:
            return _json({"functionName": fn.name, "runtime": fn.runtime, "handler": fn.handler})
        if method == "GET" and rest == ["concurrency"]:
            if fn.reserved_concurrency is None:
                raise FcApiError(404, "ConcurrencyConfigNotFound", "no concurrency config")
            return _json({"functionName": fn.name, "reservedConcurrency": fn.reserved_concurrency})
        if method == "GET" and rest == ["async-invoke-config"]:
            return _json({"asyncTask": fn.async_task, "maxAsyncRetryAttempts": fn.max_async_retry_attempts})
        if method == "GET" and rest == ["triggers"]:
            return _json({"triggers": [dict(t) for t in fn.triggers], "nextToken": ""})
        if method == "POST" and rest == ["invocations"]:
            return self._invoke(fn, body)
        raise FcApiError(404, "NotFound", f"{method} {path} is not served here")

    def _invoke(self, fn: FunctionConfig, body: bytes) -> tuple[int, dict, bytes]:
        if fn.target is None:
            raise FcApiError(404, "FunctionNotFound", f"function '{fn.name}' has no code here")
        invocation = fn.target.invoke(body)
        headers = {"x-fc-request-id": invocation.request_id}
        if getattr(invocation, "error", None):
            headers["x-fc-error-type"] = "UnhandledInvocationError"
            return 200, headers, json.dumps(invocation.error).encode()
        return 200, headers, json.dumps(invocation.result).encode()


def _json(value: dict) -> tuple[int, dict, bytes]:
    return 200, {}, json.dumps(value).encode()
