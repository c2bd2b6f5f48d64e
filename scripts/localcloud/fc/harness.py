"""One FC 3.0 instance of a Python built-in runtime, inside this process: for unit-level tests.

`FunctionCompute` runs a handler the way FC's python3.10 / python3.12 runtimes do
(`localcloud.fc.runtime`): the event is bytes, the context has the runtime's shape, the function's
variables and role credentials are in `os.environ`, the handler module is imported once per
instance, every line the invocation writes to stdout/stderr is kept per request id
(`localcloud.fc.capture`) and appended to the local Logstore (`localcloud.fc.logstore`), and an
invocation that outlives the function's timeout fails with `FunctionTimeout`.

It is ONE instance, serving one invocation at a time, and the test process is that instance: a
test can patch what the handler calls. FC 3.0's standard runtimes have no instance concurrency,
so a function under load runs many instances, each its own process: `localcloud.fc.function`
models that (reservedConcurrency, the asynchronous queue, FC's retries).

Limits of the stand-in, on purpose:
- One `FunctionCompute` at a time owns `os.environ`: the one that was created or invoked last.
  Drive two harnesses one after the other, not at once from two threads. `close()` puts every
  variable back as it was before the first harness touched it.
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
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from localcloud.fc import capture
from localcloud.fc.logstore import Logstore
from localcloud.fc.runtime import (
    CONTEXT_SHAPES,
    Invocation,
    check_function,
    error_body,
    function_environment,
    new_instance_id,
    new_request_id,
    resolve,
    timeout_error,
)

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
        capture.acquire_routers()
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
        capture.release_routers()
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
        capture.ensure_routers()

        request_id = request_id or new_request_id()
        with self._lock:
            instance_id = self._instance_id
            context = CONTEXT_SHAPES[self.runtime](self, request_id)
        lines = capture.Capture(self._log_line, request_id, instance_id)
        outcome: dict[str, Any] = {}

        def serve() -> None:
            with capture.serving(lines):
                try:
                    handler, outcome["cold_start"] = self._load(context)
                    outcome["result"] = handler(event, context)
                except BaseException as exc:  # noqa: BLE001 - FC turns anything, SystemExit too, into an error
                    outcome["error"] = error_body(exc, (__file__,))
                    lines.write("stderr", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
                finally:
                    lines.flush_partial()

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
            stdout=list(lines.lines["stdout"]),
            stderr=list(lines.lines["stderr"]),
            duration=duration,
            cold_start=bool(outcome.get("cold_start")),
            instance_id=instance_id,
        )

    def invoke_many(self, events: Iterable[bytes]) -> list[Invocation]:
        """Invoke once per event, one after the other, on this one instance: an FC 3.0 standard
        runtime instance serves one invocation at a time. For invocations at the same moment (on
        separate instances, as FC runs them) use `localcloud.fc.function.Function`."""
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
                handler_fn = resolve(self.handler)
                init_fn = resolve(self.initializer) if self.initializer else None
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
