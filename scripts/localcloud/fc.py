"""A local Function Compute 3.0 instance for the Python built-in runtimes, inside this process.

`FunctionCompute` runs a handler the way FC's python3.10 / python3.12 runtimes do: the event is
bytes, the context has the runtime's shape, the function's variables and role credentials are in
`os.environ`, the handler module is imported once per instance, every line the invocation writes
to stdout/stderr is kept per request id and appended to a JSON-lines stand-in for the Logstore,
and an invocation that outlives the function's timeout fails with `FunctionTimeout`.

It is ONE instance, serving one invocation at a time, for unit-level tests: FC 3.0's standard
runtimes have no instance concurrency, so a function under load runs many instances, each its
own process. `localcloud.fcfunction.Function` models that (reservedConcurrency, the asynchronous
queue, FC's retries); it reuses the context shapes, variables and Logstore format defined here.

Platform facts: /work/shared/FACTS.md section 5. The context classes mirror the ones FC's
"Context" page (Python) prints for each runtime; attributes the page does not give are marked.

Limits of the stand-in, on purpose:
- The test process is the instance. One `FunctionCompute` at a time owns `os.environ`: the one
  that was created or invoked last. Drive two harnesses one after the other, not at once from
  two threads. `close()` puts every variable back as it was before the first harness touched it.
- Modules are imported once per instance: the first invocation imports them, and
  `new_instance()` unloads every module loaded from `code_dir`. A module of the code package
  that the test process had loaded before the harness (a test file imports `dwrerun` at
  collection) serves the first instance as it is, patches included, and `close()` puts back
  exactly the modules it found: the test's classes and seams stay the ones the next harness
  uses, whatever order tests run in. Harnesses on the same `code_dir` share the imported
  modules (on FC they would be separate processes).
- Output is attributed by thread: lines written by the thread that runs the handler belong to
  that request. Threads the handler starts itself write straight to the real stream.
- On a timeout the handler thread cannot be killed; it keeps running as a daemon thread, and the
  instance is marked dead so the next invocation is a cold start (FC stops a timed-out instance).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
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


def _context_310(fn: FunctionCompute, request_id: str):
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


def _context_312(fn: FunctionCompute, request_id: str):
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


# runtime -> context builder; iterate it to run a test on every supported runtime.
CONTEXT_SHAPES: dict[str, Callable[[FunctionCompute, str], Any]] = {
    "python3.10": _context_310,
    "python3.12": _context_312,
}


# --- per-request capture of stdout / stderr ----------------------------------------------------


class _Capture:
    """The lines one invocation wrote, split on newlines, each also appended to the Logstore."""

    def __init__(self, fn: FunctionCompute, request_id: str, instance_id: str):
        self._fn = fn
        self.request_id = request_id
        self.instance_id = instance_id
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._partial = {"stdout": "", "stderr": ""}
        self._lock = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            *complete, self._partial[stream] = (self._partial[stream] + text).split("\n")
            for line in complete:
                self._emit(stream, line.rstrip("\r"))

    def flush_partial(self) -> None:
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self._emit(stream, rest.rstrip("\r"))
                    self._partial[stream] = ""

    def _emit(self, stream: str, line: str) -> None:
        self.lines[stream].append(line)
        self._fn._log_line(self.request_id, self.instance_id, stream, line)


_routes_lock = threading.Lock()
_routes: dict[int, _Capture] = {}  # thread ident -> the capture of the invocation it serves
_router_users = 0


class _StreamRouter:
    """Stands in for sys.stdout / sys.stderr: a write from a thread serving an invocation goes to
    that invocation's capture; any other write passes through to the stream it replaced."""

    def __init__(self, stream_name: str, target):
        self._stream_name = stream_name
        self._target = target

    def write(self, text):
        capture = _routes.get(threading.get_ident())
        if capture is None:
            return self._target.write(text)
        capture.write(self._stream_name, text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if threading.get_ident() not in _routes:
            self._target.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty...: the real stream answers
        return getattr(self._target, name)


def _ensure_routers() -> None:
    # Checked on every invocation: pytest's capsys and others replace sys.stdout between tests.
    with _routes_lock:
        if not isinstance(sys.stdout, _StreamRouter):
            sys.stdout = _StreamRouter("stdout", sys.stdout)
        if not isinstance(sys.stderr, _StreamRouter):
            sys.stderr = _StreamRouter("stderr", sys.stderr)


def _acquire_routers() -> None:
    global _router_users
    _ensure_routers()
    with _routes_lock:
        _router_users += 1


def _release_routers() -> None:
    global _router_users
    with _routes_lock:
        _router_users -= 1
        if _router_users > 0:
            return
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, _StreamRouter):
                setattr(sys, name, current._target)


# --- os.environ ownership ----------------------------------------------------------------------


class _EnvKeeper:
    """Applies one harness's environment to os.environ and remembers what was there before."""

    def __init__(self):
        self._lock = threading.Lock()
        self._originals: dict[str, str | None] = {}
        self._applied: set[str] = set()
        self.owner: object | None = None

    def claim(self, owner: object, env: Mapping[str, str | None]) -> None:
        """Make `env` the process environment (a None value removes the variable)."""
        with self._lock:
            for key in self._applied - set(env):
                self._restore(key)
            for key, value in env.items():
                self._originals.setdefault(key, os.environ.get(key))
                _set_env(key, value)
            self._applied = set(env)
            self.owner = owner

    def release(self, owner: object) -> None:
        """Put back every variable the owner changed; a harness that does not own it does nothing."""
        with self._lock:
            if self.owner is not owner:
                return
            for key in self._applied:
                self._restore(key)
            self._applied = set()
            self._originals.clear()
            self.owner = None

    def _restore(self, key: str) -> None:
        _set_env(key, self._originals.pop(key, None))


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


_ENV = _EnvKeeper()

_path_lock = threading.Lock()
_path_users: dict[str, int] = {}
_import_lock = threading.Lock()


# --- what every local FC function shares: its settings, variables and Logstore -------------------


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


class Logstore:
    """The local stand-in for a function's Logstore: one JSON object per line a function wrote."""

    def __init__(self, path: str | os.PathLike | None, function_name: str):
        # Without a path, a temporary directory of its own: a shared default (it was the working
        # directory's .localcloud/logs) let tests on parallel workers append to one another's file
        # and to the demo's. The demo and the benchmarks name their files.
        if not path:
            path = Path(tempfile.mkdtemp(prefix="localcloud-logs-")) / f"{function_name}.jsonl"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.function_name = function_name
        self._lock = threading.Lock()

    def append(self, request_id: str, instance_id: str, stream: str, message: str) -> None:
        # The fields FC's log lines carry in SLS, as far as they apply locally.
        entry = {
            "__time__": int(time.time()),
            "__topic__": f"FCLogs:{self.function_name}",
            "functionName": self.function_name,
            "qualifier": QUALIFIER,
            "instanceId": instance_id,
            "requestId": request_id,
            "stream": stream,
            "message": message,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)

    def lines(self) -> list[dict]:
        """Every line of the file, parsed."""
        if not self.path.exists():
            return []
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the harness -------------------------------------------------------------------------------


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


class FunctionCompute:
    """One FC function with one live instance in this process. Use it as a context manager, or
    call close(), so os.environ, sys.path and sys.stdout are put back."""

    def __init__(
        self,
        handler: str,
        code_dir: str | os.PathLike = "function",
        runtime: str = "python3.12",
        timeout: float = 60,
        memory: int = 256,
        function_name: str = "dwrerun",
        region: str = "cn-hangzhou",
        account_id: str = "1877700012345678",
        env: Mapping[str, str] | None = None,
        credentials: Any = None,
        logstore: str | os.PathLike | None = None,
        initializer: str | None = None,
        log_project: str = "localcloud",
        log_store: str | None = None,
        version_id: str = "",
    ):
        code_path, user_env = check_function(handler, initializer, runtime, timeout, code_dir, env)
        self.handler = handler
        self.initializer = initializer
        self.code_dir = code_path
        self.runtime = runtime
        self.timeout = timeout
        self.memory = memory
        self.function_name = function_name
        self.region = region
        self.account_id = account_id
        self.env = user_env
        self.credentials = credentials
        self.log_project = log_project
        self.log_store = log_store or function_name
        self.version_id = version_id
        self._logstore = Logstore(logstore, function_name)
        self.logstore = self._logstore.path

        self._lock = threading.Lock()  # short: instance id, credentials, handler reference
        self._load_lock = threading.Lock()  # held while a cold start imports the code
        self._handler_fn: Callable | None = None
        self._instance_id = new_instance_id()
        self._closed = False
        # The code package's modules the test process had loaded: close() puts them back.
        self._found_modules = {name: module for name, module in list(sys.modules.items()) if self._owns(module)}

        with _path_lock:
            path = str(self.code_dir)
            if _path_users.get(path, 0) == 0 and path not in sys.path:
                sys.path.insert(0, path)
                _path_users[path] = 1
            elif path in _path_users:
                _path_users[path] += 1
        _acquire_routers()
        _ENV.claim(self, self._environment())

    # -- lifecycle

    def __enter__(self) -> FunctionCompute:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the instance: restore os.environ, sys.path and sys.stdout/stderr."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._restore_found_modules()  # the instance ends: its own modules serve no other harness
            self._handler_fn = None
        _ENV.release(self)
        _release_routers()
        with _path_lock:
            path = str(self.code_dir)
            if path in _path_users:
                _path_users[path] -= 1
                if _path_users[path] == 0:
                    del _path_users[path]
                    if path in sys.path:
                        sys.path.remove(path)

    def new_instance(self) -> None:
        """Start a fresh instance: the next invocation imports the function's modules again
        (module-level state starts over) and runs the initializer again."""
        with self._lock:
            self._drop_modules()
            self._handler_fn = None
            self._instance_id = new_instance_id()
            if _ENV.owner is self:
                _ENV.claim(self, self._environment())

    def rotate_credentials(self, credentials: Any) -> None:
        """What FC does when the role's STS token rotates: the next invocations see the new keys
        in the ALIBABA_CLOUD_* variables and (python3.10) in context.credentials."""
        with self._lock:
            self.credentials = credentials
            if _ENV.owner is self:
                _ENV.claim(self, self._environment())

    @property
    def instance_id(self) -> str:
        return self._instance_id

    # -- invoking

    def invoke(self, event: bytes | bytearray | str, request_id: str | None = None) -> Invocation:
        """Run the handler once, synchronously, as FC does for one request. Never raises for a
        handler error: the Invocation carries it the way FC reports it."""
        if self._closed:
            raise RuntimeError(f"function {self.function_name!r} is closed")
        if isinstance(event, str):
            event = event.encode("utf-8")
        if not isinstance(event, (bytes, bytearray)):
            raise TypeError(f"the event must be bytes (FC passes bytes), got {type(event).__name__}")
        event = bytes(event)
        if _ENV.owner is not self:
            _ENV.claim(self, self._environment())
        _ensure_routers()

        request_id = request_id or new_request_id()
        with self._lock:
            instance_id = self._instance_id
            context = CONTEXT_SHAPES[self.runtime](self, request_id)
        capture = _Capture(self, request_id, instance_id)
        outcome: dict[str, Any] = {}

        def serve() -> None:
            with _routes_lock:
                _routes[threading.get_ident()] = capture
            try:
                handler, outcome["cold_start"] = self._load(context)
                outcome["result"] = handler(event, context)
            except BaseException as exc:  # noqa: BLE001 - FC turns anything, SystemExit too, into an error
                outcome["error"] = error_body(exc)
                capture.write("stderr", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            finally:
                capture.flush_partial()
                with _routes_lock:
                    _routes.pop(threading.get_ident(), None)

        self._log_line(request_id, instance_id, "stdout", f"FC Invoke Start RequestId: {request_id}")
        started = time.perf_counter()
        worker = threading.Thread(target=serve, name=f"fc-{request_id}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        duration = time.perf_counter() - started
        timed_out = worker.is_alive()
        if timed_out:
            # FC stops an instance whose invocation timed out: the next call is a cold start.
            with self._lock:
                if self._instance_id == instance_id:
                    self._handler_fn = None
                    self._instance_id = new_instance_id()
                    self._drop_modules()
            error = timeout_error(self.timeout)
        else:
            error = outcome.get("error")
        self._log_line(request_id, instance_id, "stdout", f"FC Invoke End RequestId: {request_id}")
        return Invocation(
            request_id=request_id,
            event=event,
            result=None if timed_out else outcome.get("result"),
            error=error,
            timed_out=timed_out,
            stdout=list(capture.lines["stdout"]),
            stderr=list(capture.lines["stderr"]),
            duration=duration,
            cold_start=bool(outcome.get("cold_start")),
            instance_id=instance_id,
        )

    def invoke_many(self, events: Iterable[bytes]) -> list[Invocation]:
        """Invoke once per event, one after the other, on this one instance: an FC 3.0 standard
        runtime instance serves one invocation at a time. For invocations at the same moment (on
        separate instances, as FC runs them) use `localcloud.fcfunction.Function`."""
        return [self.invoke(event) for event in events]

    # -- the Logstore

    def logstore_lines(self) -> list[dict]:
        """Every line of the local Logstore file, parsed."""
        return self._logstore.lines()

    def _log_line(self, request_id: str, instance_id: str, stream: str, message: str) -> None:
        self._logstore.append(request_id, instance_id, stream, message)

    # -- internals

    def _environment(self) -> dict[str, str | None]:
        return function_environment(self, self._instance_id)

    def _load(self, context) -> tuple[Callable, bool]:
        """The handler of the current instance, importing the module (and running the
        initializer) on the instance's first invocation. Returns (handler, cold_start)."""
        # Concurrent first invocations wait for one import, as on one FC instance.
        with self._load_lock:
            with self._lock:
                if self._handler_fn is not None:
                    return self._handler_fn, False
            with _import_lock:
                # Another harness's code package may hold the same module names (every test has
                # an `index`): this package goes first on sys.path and its names are unloaded.
                path = str(self.code_dir)
                if path in sys.path:
                    sys.path.remove(path)
                sys.path.insert(0, path)
                for dotted in filter(None, (self.handler, self.initializer)):
                    self._drop_foreign(dotted.split(".", 1)[0])
                importlib.invalidate_caches()
                handler_fn = _resolve(self.handler)
                init_fn = _resolve(self.initializer) if self.initializer else None
            if init_fn is not None:
                init_fn(context)
            with self._lock:
                self._handler_fn = handler_fn
            return handler_fn, True

    def _drop_foreign(self, top: str) -> None:
        for name, module in list(sys.modules.items()):
            if name == top or name.startswith(top + "."):
                if not self._owns(module):
                    del sys.modules[name]

    def _owns(self, module) -> bool:
        path = getattr(module, "__file__", None)
        return bool(path) and os.path.abspath(path).startswith(str(self.code_dir) + os.sep)

    def _drop_modules(self) -> None:
        # Every module loaded from the code package goes: FC's next instance is a new process.
        for name, module in list(sys.modules.items()):
            if self._owns(module):
                del sys.modules[name]

    def _restore_found_modules(self) -> None:
        """sys.modules as this harness found it: the modules loaded before it, the same objects,
        and none it loaded. Unloading a module a test holds would split one class in two (the
        test's DataWorksError no longer the one the code raises) and lose the test's patches."""
        self._drop_modules()
        sys.modules.update(self._found_modules)
        for module in self._found_modules.values():
            if not hasattr(module, "__path__"):
                continue
            # A package remembers its submodules as attributes: forget the ones unloaded, or
            # `from pkg import sub` would answer the old one while `import pkg.sub` loads another.
            for attr, value in list(vars(module).items()):
                if isinstance(value, ModuleType) and self._owns(value) and sys.modules.get(value.__name__) is not value:
                    delattr(module, attr)


def _resolve(dotted: str) -> Callable:
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
    # Drop the harness's own frames: FC's stackTrace starts in the user's code.
    skip = {os.path.abspath(__file__), *(os.path.abspath(f) for f in harness_files)}
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
    return f"c-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(6)}"
