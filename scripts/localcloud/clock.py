"""The local cloud's clocks: for things that happen later (FC's delayed asynchronous invocations),
and the tests' one fake time.

Two clocks with one interface, `now()` (epoch seconds) and `call_at(when, callback)`:
- `ManualClock`: time moves only when a test calls `advance(seconds)` or code under test calls
  `sleep(seconds)`, which then run, in order, every callback that came due. Tests advance the
  clock instead of sleeping; patched in as the function's `pacing.clock` / `pacing.sleep` (the
  `fake_clock` fixture of tests/conftest.py), a wait moves time on at once and every figure that
  depends on time is exact.
- `SharedClock`: a ManualClock whose time other processes read too, from a file it rewrites before
  anything comes due (FC's instance processes, whose own clock must agree with FC's).
- `RealClock`: wall-clock time; a background thread runs each callback when it comes due (the
  demo, with delays of a few seconds).
Callbacks run outside the clock's lock and must not block for long.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


class ManualClock:
    """Time that moves only when told to: by a test (`advance`) or by a wait (`sleep`).

    `overlapping_sleeps=True` is for code that waits on several threads at once: a sleep ends
    `seconds` after the sleeping thread last read the clock (or now, if that is later), so two
    threads that each wait one second move time on by one second, not two. By default sleeps add
    up, as on one thread.
    """

    def __init__(self, start: float | None = None, *, overlapping_sleeps: bool = False):
        self._now = time.time() if start is None else float(start)
        self.start = self._now
        self.slept: list[float] = []  # every sleep(seconds) asked for, in order
        self._overlapping = overlapping_sleeps
        self._read = threading.local()  # when this thread last read the clock (overlapping sleeps)
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            self._read.at = self._now
            return self._now

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        with self._lock:
            return self._now - self.start

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run `callback` once the clock reaches `when` (at the next advance() that gets there)."""
        with self._lock:
            heapq.heappush(self._due, (when, next(self._order), callback))

    def advance(self, seconds: float) -> int:
        """Move time on by `seconds` and run what came due, earliest first; how many ran."""
        if seconds < 0:
            raise ValueError(f"time does not go back: advance({seconds})")
        with self._lock:
            self._now += seconds
            due = self._take_due()
        return self._run(due)

    def sleep(self, seconds: float) -> None:
        """What `time.sleep` would do, at once: time moves on by the wait (never back), and what
        came due runs."""
        with self._lock:
            self.slept.append(seconds)
            start = getattr(self._read, "at", self._now) if self._overlapping else self._now
            self._now = max(self._now, start + max(0.0, seconds))
            due = self._take_due()
        self._run(due)

    def _take_due(self) -> list[Callable[[], None]]:
        due = []
        while self._due and self._due[0][0] <= self._now:
            due.append(heapq.heappop(self._due)[2])
        return due

    @staticmethod
    def _run(due: list[Callable[[], None]]) -> int:
        for callback in due:
            callback()
        return len(due)

    @property
    def pending(self) -> int:
        """Callbacks not yet due."""
        with self._lock:
            return len(self._due)

    def next_due(self) -> float | None:
        """When the earliest callback not yet run comes due, or None: where a driver that jumps
        from one due moment to the next moves the clock."""
        with self._lock:
            return self._due[0][0] if self._due else None


class SharedClock(ManualClock):
    """A ManualClock whose time other processes read too: `path` holds `repr(now)`, rewritten
    before anything comes due, so what runs then reads the new time."""

    def __init__(self, path: str | Path, start: float | None = None):
        super().__init__(start=start)
        self.path = Path(path)
        self._publish(self.now())

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError(f"time does not go back: advance({seconds})")
        self._publish(self.now() + seconds)  # before anything comes due
        return super().advance(seconds)

    def _publish(self, now: float) -> None:
        # Whole or not at all: a reader between a truncate and a write read "" (a background
        # thread of an instance, polling the clock while the driver moved it).
        fresh = self.path.with_name(self.path.name + ".new")
        fresh.write_text(repr(now))
        os.replace(fresh, self.path)


class RealClock:
    """Wall-clock time; callbacks run on a daemon thread when they come due."""

    def __init__(self):
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._due, (when, next(self._order), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="localcloud-clock", daemon=True)
                self._thread.start()
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.time():
                    self._cond.wait(None if not self._due else self._due[0][0] - time.time())
                callback = heapq.heappop(self._due)[2]
            callback()
