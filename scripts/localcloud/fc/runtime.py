"""The runtime contract of FC 3.0's Python built-in runtimes (python3.10, python3.12).

What FC hands a handler and what it makes of the handler's answer, whichever way the instance runs
(in this process, `localcloud.fc.harness`, or as a process of its own, `localcloud.fc.instances`):
- the context object, in each runtime's shape: python3.10 has `credentials` and `service`;
  python3.12 has neither, but `log_project`, `log_store` and `getLogger()`. The classes mirror the
  ones FC's "Context" page (Python) prints for each runtime; attributes the page does not give are
  marked;
- the variables FC sets in an instance (`FC_*`, the role's `ALIBABA_CLOUD_*` keys) and the checks
  FC makes on a function's configuration (handler, runtime, timeout, user variables);
- what one invocation gives back (`Invocation`), FC's error bodies (UnhandledInvocationError,
  FunctionTimeout) and the shapes of its request and instance ids.
Platform facts: /work/shared/FACTS.md section 5.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUNTIMES = ("python3.10", "python3.12")
QUALIFIER = "LATEST"
# FC: "User variables may not start with FC_; all variables together <= 4 KB".
ENV_LIMIT_BYTES = 4096

ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"


# --- the context object, as FC's runtimes build it -------------------------------------------


class FCCredentials:
    """python3.10 `context.credentials` (FC calls the class Credentials): the role's STS keys."""

    def __init__(self, access_key_id, access_key_secret, security_token):
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token

    def __repr__(self) -> str:  # the secret and the token never reach a log line
        return f"FCCredentials(access_key_id={self.access_key_id!r}, access_key_secret=***, security_token=***)"


class FunctionMeta:
    """`context.function`: python3.12 adds version_id and qualifier."""

    def __init__(self, name, handler, memory, timeout, version_id=None, qualifier=None, *, full=False):
        self.name = name
        self.handler = handler
        self.memory = memory
        self.timeout = timeout
        if full:
            self.version_id = version_id
            self.qualifier = qualifier


class ServiceMeta:
    """python3.10 `context.service`. FC 3.0 has no services; `name` is kept for FC 2.0 code
    that reads it and is set to the function name [inferred]."""

    def __init__(self, service_name, log_project, log_store, qualifier, version_id):
        self.name = service_name
        self.log_project = log_project
        self.log_store = log_store
        self.qualifier = qualifier
        self.version_id = version_id


class FCContext310:
    """The python3.10 context: credentials and service, no logger."""

    def __init__(self, account_id, request_id, credentials, function_meta, service_meta, region):
        self.request_id = request_id
        self.credentials = credentials
        self.function = function_meta
        self.service = service_meta
        self.region = region
        self.account_id = account_id


class FCContext312:
    """The python3.12 context: no credentials (read the ALIBABA_CLOUD_* variables), no service;
    log_project/log_store at the top level, and getLogger()."""

    def __init__(self, account_id, request_id, function_meta, logger, log_project, log_store, region):
        self.account_id = account_id
        self.request_id = request_id
        self.function = function_meta
        self.logger = logger
        self.log_project = log_project
        self.log_store = log_store
        self.region = region

    def getLogger(self) -> logging.Logger:  # noqa: N802 - FC's name
        """A logger whose lines look like FC's: `<UTC time> <requestId> [LEVEL] message` on stdout."""
        if self.logger is None:
            self.logger = _request_logger(self.request_id)
        return self.logger


class _CurrentStdout:
    """Resolves sys.stdout at write time, so a logger made once still follows the stream router."""

    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


class _FCFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _request_logger(request_id: str) -> logging.Logger:
    # logging.Logger() directly, not logging.getLogger(): one logger per request must not pile up
    # in logging's global registry.
    logger = logging.Logger(f"fc.{request_id}", level=logging.INFO)
    handler = logging.StreamHandler(_CurrentStdout())
    handler.setFormatter(_FCFormatter(f"%(asctime)s {request_id} [%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    return logger


def _context_310(fn: Any, request_id: str):
    creds = fn.credentials
    return FCContext310(
        account_id=fn.account_id,
        request_id=request_id,
        credentials=FCCredentials(
            getattr(creds, "access_key_id", None),
            getattr(creds, "access_key_secret", None),
            getattr(creds, "security_token", None),
        ),
        function_meta=FunctionMeta(fn.function_name, fn.handler, fn.memory, fn.timeout),
        service_meta=ServiceMeta(fn.function_name, fn.log_project, fn.log_store, QUALIFIER, fn.version_id),
        region=fn.region,
    )


def _context_312(fn: Any, request_id: str):
    return FCContext312(
        account_id=fn.account_id,
        request_id=request_id,
        function_meta=FunctionMeta(
            fn.function_name, fn.handler, fn.memory, fn.timeout, fn.version_id, QUALIFIER, full=True
        ),
        logger=None,
        log_project=fn.log_project,
        log_store=fn.log_store,
        region=fn.region,
    )


# runtime -> context builder, given the function's settings (the harness, or an instance process's
# copy of them) and the request id; iterate it to run a test on every supported runtime.
CONTEXT_SHAPES: dict[str, Callable[[Any, str], Any]] = {
    "python3.10": _context_310,
    "python3.12": _context_312,
}


# --- a function's configuration and the variables FC sets in its instances ---------------------


def check_function(handler, initializer, runtime, timeout, code_dir, env) -> tuple[Path, dict[str, str]]:
    """Refuse what FC refuses in a function's configuration; returns (code path, user variables)."""
    if runtime not in CONTEXT_SHAPES:
        raise ValueError(f"runtime {runtime!r} is not one of {sorted(CONTEXT_SHAPES)}")
    for name, value in (("handler", handler), ("initializer", initializer)):
        if value is not None and (not isinstance(value, str) or "." not in value.strip(".")):
            raise ValueError(f"{name} must look like 'module.function', got {value!r}")
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    code_path = Path(code_dir).resolve()
    if not code_path.is_dir():
        raise ValueError(f"code_dir {str(code_dir)!r} is not a directory")
    user_env = dict(env or {})
    bad = sorted(k for k in user_env if k.upper().startswith("FC_"))
    if bad:
        raise ValueError(f"environment variables may not start with FC_ (FC refuses them): {bad}")
    not_text = sorted(k for k, v in user_env.items() if not isinstance(v, str))
    if not_text:
        raise ValueError(f"environment variable values must be strings: {not_text}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in user_env.items())
    if size > ENV_LIMIT_BYTES:
        raise ValueError(f"environment variables take {size} bytes; FC allows {ENV_LIMIT_BYTES}")
    return code_path, user_env


def function_environment(fn: Any, instance_id: str) -> dict[str, str | None]:
    """The variables FC sets in an instance of `fn` (None: the variable must be absent)."""
    creds = fn.credentials
    env: dict[str, str | None] = {
        # Without a role FC sets no credentials at all, so none may leak in from this shell.
        ACCESS_KEY_ID: getattr(creds, "access_key_id", None) if creds else None,
        ACCESS_KEY_SECRET: getattr(creds, "access_key_secret", None) if creds else None,
        SECURITY_TOKEN: (getattr(creds, "security_token", None) or None) if creds else None,
        "FC_REGION": fn.region,
        "FC_ACCOUNT_ID": fn.account_id,
        "FC_FUNCTION_NAME": fn.function_name,
        "FC_FUNCTION_HANDLER": fn.handler,
        "FC_FUNCTION_MEMORY_SIZE": str(fn.memory),
        "FC_INSTANCE_ID": instance_id,
        "FC_FUNC_CODE_PATH": str(fn.code_dir),
    }
    env.update(fn.env)
    return env


# --- one invocation ----------------------------------------------------------------------------


@dataclass
class Invocation:
    """What one invocation did: FC's answer plus the lines it logged."""

    request_id: str
    event: bytes
    result: Any = None
    error: dict | None = None  # FC's UnhandledInvocationError body, or FunctionTimeout
    timed_out: bool = False
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    duration: float = 0.0
    cold_start: bool = False
    instance_id: str = ""  # the instance (FC_INSTANCE_ID) that served it

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def records(self) -> list[dict]:
        """The stdout lines that are JSON objects (what SLS would index), parsed."""
        out = []
        for line in self.stdout:
            if not line.lstrip().startswith("{"):
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


def new_request_id() -> str:
    """A request id shaped like FC 3.0's: `1-<epoch seconds, hex>-<24 hex digits>`."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def resolve(dotted: str) -> Callable:
    """The function a handler or initializer setting (`module.function`) names, importing its module."""
    module_name, _, attr = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no function {attr!r}") from None


def error_body(exc: BaseException, harness_files: Iterable[str] = ()) -> dict:
    """FC's UnhandledInvocationError body: errorType, errorMessage, stackTrace (the handler's frames)."""
    tb = exc.__traceback__
    frames = traceback.extract_tb(tb)
    # Drop the frames of the code that ran the handler (`harness_files`): FC's stackTrace starts in
    # the user's code.
    skip = {os.path.abspath(f) for f in harness_files}
    frames = [f for f in frames if os.path.abspath(f.filename) not in skip]
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": [line.rstrip("\n") for line in traceback.format_list(frames)],
    }


def timeout_error(timeout: float) -> dict:
    """What FC answers for an invocation that outlived the function's timeout."""
    return {"errorType": "FunctionTimeout", "errorMessage": f"Function timed out after {timeout} seconds"}


def new_instance_id() -> str:
    """An instance id shaped like FC's (FC_INSTANCE_ID): `c-<8 hex>-<8 hex>-<12 hex>`."""
    return f"c-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(6)}"
