"""One FC 3.0 instance of a Python built-in runtime: its own OS process, one invocation at a time.

FC 3.0's standard runtimes (python3.10, python3.12) have no instance concurrency: each instance
is a process of its own that imports the code package once (the cold start), keeps its module
state, clients and limiters warm between invocations, and serves one invocation at a time
(FACTS section 5). `InstanceProcess` is the parent's handle on such a process; `serve()` is what
runs inside it.

The two speak over a socket pair (`multiprocessing.connection`, pickled tuples):
  parent -> child   ("start", meta, code_dir, setup)   once, first
                    ("invoke", request_id, event, credentials)
                    ("stop",)
  child -> parent   ("line", request_id, stream, text)  every line the instance writes
                    ("done", request_id, result, error, cold_start, peak_rss_kib)

Inside the instance, `sys.stdout` and `sys.stderr` send each complete line to the parent as it is
written, so lines reach the Logstore in order, before the invocation's "done". Output written
below Python (a C extension writing to fd 1) is not captured; fd 2 is the parent's stderr.

The child starts with `python -I` (no PYTHON* variables, no user site, no current directory on the
path), in `code_dir` (FC's /code), with only the variables FC sets: the function's own, `FC_*`,
the role's `ALIBABA_CLOUD_*` keys, and PATH/HOME/LANG/TZ/TMPDIR from this host. The instance's
`FC_INSTANCE_ID` is fixed for its life; the role's keys are sent with each invocation, because
STS credentials rotate under a running instance.
"""

from __future__ import annotations

import importlib
import os
import resource
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from localcloud.fc.runtime import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    CONTEXT_SHAPES,
    SECURITY_TOKEN,
    error_body,
    resolve,
)

SCRIPTS = str(Path(__file__).resolve().parents[2])  # the directory that holds `localcloud`
# The child's first words: find this module, then hand over to serve(). argv: fd, SCRIPTS.
BOOT = "import sys; sys.path.insert(0, sys.argv[2]); from localcloud.fc.instances import serve; serve(int(sys.argv[1]))"
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
META_FIELDS = (
    "runtime",
    "handler",
    "initializer",
    "function_name",
    "memory",
    "timeout",
    "region",
    "account_id",
    "log_project",
    "log_store",
    "version_id",
    "code_dir",
)


class InstanceProcess:
    """The parent's handle on one instance process. Not thread-safe: one invocation at a time,
    which is what an FC 3.0 standard-runtime instance serves."""

    def __init__(self, instance_id: str, meta: dict, variables: dict[str, str], setup: str | None = None):
        self.instance_id = instance_id
        self.invocations = 0
        self.peak_rss_kib = 0
        self.ended: str | None = None  # why the instance is gone: "timeout", "crashed", "stopped"
        env = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        env.update(variables)
        ours, theirs = Pipe(duplex=True)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, str(theirs.fileno()), SCRIPTS],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=meta["code_dir"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = ours
        self._lock = threading.Lock()
        self._busy = False  # an invocation's thread owns the connection
        self.pid = self.process.pid
        self._conn.send(("start", meta, meta["code_dir"], setup))

    @property
    def alive(self) -> bool:
        return self.ended is None

    def invoke(self, request_id: str, event: bytes, credentials: Any, timeout: float, on_line) -> dict:
        """Serve one invocation; `on_line(request_id, stream, text)` gets every line as it arrives.

        Returns {"result", "error", "cold_start", "timed_out"}. A timed-out instance is killed, and
        so is one that broke the protocol; `alive` is then False.
        """
        with self._lock:
            if not self.alive:
                # Only Function.close() racing an async worker hands over an ended instance (it
                # stopped the one the worker was starting): the attempt fails, the worker lives on.
                return {
                    "result": None,
                    "error": {
                        "errorType": "InstanceExited",
                        "errorMessage": f"the instance had ended ({self.ended}) before the invocation started",
                    },
                    "cold_start": False,
                    "timed_out": False,
                }
            self._busy = True
        try:
            return self._serve(request_id, event, credentials, timeout, on_line)
        finally:
            with self._lock:
                self._busy = False
                ended = not self.alive
            if ended:
                self._conn.close()

    def _serve(self, request_id: str, event: bytes, credentials: Any, timeout: float, on_line) -> dict:
        keys = None
        if credentials:
            keys = (
                credentials.access_key_id,
                credentials.access_key_secret,
                getattr(credentials, "security_token", None) or None,
            )
        self.invocations += 1
        deadline = time.monotonic() + timeout
        try:
            self._conn.send(("invoke", request_id, event, keys))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._conn.poll(remaining):
                    self.kill("timeout")  # FC stops an instance whose invocation timed out
                    return {"result": None, "error": None, "cold_start": False, "timed_out": True}
                message = self._conn.recv()
                if message[0] == "line":
                    on_line(*message[1:])
                    continue
                _, done_id, result, error, cold_start, peak = message
                if done_id != request_id:
                    raise RuntimeError(f"instance answered {done_id} while serving {request_id}")
                self.peak_rss_kib = max(self.peak_rss_kib, peak)
                return {"result": result, "error": error, "cold_start": cold_start, "timed_out": False}
        except (EOFError, OSError):
            try:  # the stream ended because the process did: wait for its exit code
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self.kill("crashed")
            return {
                "result": None,
                # FC's wording for a process that died mid-invocation is not documented [inferred].
                "error": {
                    "errorType": "InstanceExited",
                    "errorMessage": f"the instance process exited (code {code}) before the invocation ended",
                },
                "cold_start": False,
                "timed_out": False,
            }

    def stop(self) -> None:
        """End the instance: ask it to exit if it is idle, then make sure it has."""
        with self._lock:
            polite = self.alive and not self._busy
        if polite:
            try:
                self._conn.send(("stop",))
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill("stopped")

    def kill(self, why: str) -> None:
        """Kill the process. The connection is closed here unless an invocation's thread owns it:
        that thread then reads the end of the stream, and closes it."""
        with self._lock:
            first = self.ended is None
            if first:
                self.ended = why
            if self.process.poll() is None:
                self.peak_rss_kib = max(self.peak_rss_kib, _high_water_kib(self.pid))
                self.process.kill()
            close = first and not self._busy
        self.process.wait()
        if close:
            self._conn.close()


def _high_water_kib(pid: int) -> int:
    """The peak RSS of a live process, from /proc (Linux); 0 where there is no /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# --- inside the instance process ------------------------------------------------------------------


class _Lines:
    """sys.stdout / sys.stderr of the instance: every complete line goes to the parent at once."""

    def __init__(self, send, stream: str, encoding: str = "utf-8"):
        self._send = send
        self._stream = stream
        self._partial = ""
        self._lock = threading.Lock()
        self.encoding = encoding
        self.errors = "strict"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            *complete, self._partial = (self._partial + text).split("\n")
            for line in complete:
                self._send(self._stream, line.rstrip("\r"))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass  # lines leave when complete; the rest leaves at the end of the invocation

    def end_of_invocation(self) -> None:
        with self._lock:
            if self._partial:
                self._send(self._stream, self._partial.rstrip("\r"))
                self._partial = ""

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def serve(fd: int) -> None:
    """The instance's main loop: import on the first invocation, then serve until told to stop."""
    conn = Connection(fd)
    _, meta, code_dir, setup = conn.recv()
    send_lock = threading.Lock()
    current = {"request_id": ""}

    def send(stream: str, text: str) -> None:
        with send_lock:
            conn.send(("line", current["request_id"], stream, text))

    # FC's code root goes first on the path; the local cloud's own directory does not stay on it.
    sys.path[:] = [p for p in sys.path if p != SCRIPTS]
    sys.path.insert(0, code_dir)
    out, err = _Lines(send, "stdout"), _Lines(send, "stderr")
    sys.stdout, sys.stderr = out, err
    if setup:  # a test seam (see localcloud.fc.function), run before any invocation
        exec(compile(setup, "<instance setup>", "exec"), {"__name__": "__instance_setup__"})  # noqa: S102
    handler = None
    harness_files = (__file__,)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, request_id, event, keys = message
        current["request_id"] = request_id
        for name, value in zip((ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN), keys or (None,) * 3, strict=True):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        credentials = None
        if keys:
            credentials = SimpleNamespace(access_key_id=keys[0], access_key_secret=keys[1], security_token=keys[2])
        fn = SimpleNamespace(**meta, credentials=credentials)
        context = CONTEXT_SHAPES[meta["runtime"]](fn, request_id)
        cold_start, result, error = handler is None, None, None
        try:
            if handler is None:
                importlib.invalidate_caches()
                loaded = resolve(meta["handler"])
                if meta["initializer"]:
                    resolve(meta["initializer"])(context)
                handler = loaded
            result = handler(event, context)
            if not _plain(result):
                raise TypeError(f"the handler returned a {type(result).__name__}, which FC cannot send back")
        except BaseException as exc:  # noqa: BLE001 - FC turns anything, SystemExit too, into an error
            result, error = None, error_body(exc, harness_files)
            err.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        out.end_of_invocation()
        err.end_of_invocation()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        peak = peak // 1024 if sys.platform == "darwin" else peak
        with send_lock:
            conn.send(("done", request_id, result, error, cold_start, peak))


def _plain(value: Any) -> bool:
    """Whether a return value crosses to the parent as data (never a class of the user's code,
    which the parent would have to import to unpickle)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
