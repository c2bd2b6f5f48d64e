"""Output capture for the in-process harness: each invocation's stdout and stderr, line by line.

FC keeps what an invocation writes per request id. In this process the handler shares
`sys.stdout` and `sys.stderr` with the test, so while a harness is open both are replaced by a
router that sends a write to the capture of the invocation the writing thread serves, and any
other write to the stream it replaced. Lines are attributed by thread: threads the handler starts
itself write straight to the real stream. (An instance process, `localcloud.fc.instances`, owns
its streams and needs none of this.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Capture:
    """The lines one invocation wrote, split on newlines, each also handed to `log` (the Logstore)."""

    def __init__(self, log: Callable[[str, str, str, str], None], request_id: str, instance_id: str):
        self._log = log
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
        self._log(self.request_id, self.instance_id, stream, line)


_routes_lock = threading.Lock()
_routes: dict[int, Capture] = {}  # thread ident -> the capture of the invocation it serves
_router_users = 0


@contextmanager
def serving(capture: Capture) -> Iterator[None]:
    """While inside, what the current thread writes goes to `capture`."""
    with _routes_lock:
        _routes[threading.get_ident()] = capture
    try:
        yield
    finally:
        with _routes_lock:
            _routes.pop(threading.get_ident(), None)


class StreamRouter:
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


def ensure_routers() -> None:
    """Put the routers in place. Checked on every invocation: pytest's capsys and others replace
    sys.stdout between tests."""
    with _routes_lock:
        if not isinstance(sys.stdout, StreamRouter):
            sys.stdout = StreamRouter("stdout", sys.stdout)
        if not isinstance(sys.stderr, StreamRouter):
            sys.stderr = StreamRouter("stderr", sys.stderr)


def acquire_routers() -> None:
    """A harness opens: the routers stay until the last open harness releases them."""
    global _router_users
    ensure_routers()
    with _routes_lock:
        _router_users += 1


def release_routers() -> None:
    """A harness closes; the last one puts the real streams back."""
    global _router_users
    with _routes_lock:
        _router_users -= 1
        if _router_users > 0:
            return
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, StreamRouter):
                setattr(sys, name, current._target)
