"""The local cloud's clock for things that happen later: FC's delayed asynchronous invocations.

Two clocks with one interface, `now()` (epoch seconds) and `call_at(when, callback)`:
- `ManualClock`: time moves only when a test calls `advance(seconds)`, which then runs, in order,
  every callback that came due. Tests advance the clock instead of sleeping.
- `RealClock`: wall-clock time; a background thread runs each callback when it comes due (the
  demo, with delays of a few seconds).
Callbacks run outside the clock's lock and must not block for long.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class ManualClock:
    """Time that moves only when told to."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else float(start)
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

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
            due = []
            while self._due and self._due[0][0] <= self._now:
                due.append(heapq.heappop(self._due)[2])
        for callback in due:
            callback()
        return len(due)

    @property
    def pending(self) -> int:
        """Callbacks not yet due."""
        with self._lock:
            return len(self._due)


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
