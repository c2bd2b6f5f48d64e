"""When the next DataWorks call may go out: the warm instance's rate limiter and the retry backoff.

DataWorks meters calls per account and region (Enterprise: 50 reads/s, 20 writes/s). Concurrent
invocations of one warm instance share one limiter per kind, so a burst of failures is paced
below the quota instead of being throttled and retried. Retries back off exponentially with
full jitter, and never past the invocation's deadline.

`clock`, `sleep` and `uniform` are module attributes so tests can replace them (the seams of time
and randomness).
"""

from __future__ import annotations

import random
import threading
import time

clock = time.monotonic
sleep = time.sleep
uniform = random.uniform

BACKOFF_BASE = 0.2  # seconds before the first retry, at most
BACKOFF_CAP = 5.0  # no single wait is longer
MAX_ATTEMPTS = 6  # per invocation; FC's own async retries come on top


class DeadlineReached(Exception):
    """The invocation has no time left for the next call."""


class RateLimiter:
    """At most `rate` calls a second, evenly spaced, across every thread that shares it."""

    def __init__(self, rate: float):
        self.rate = rate
        self._interval = 1.0 / rate
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def acquire(self, deadline: float | None = None) -> None:
        """Wait for this call's slot. Raises DeadlineReached, without waiting, if it comes too late."""
        with self._lock:
            now = clock()
            slot = max(now, self._next_slot)
            if deadline is not None and slot > deadline:
                raise DeadlineReached(f"the next call slot is {slot - now:.1f}s away, past the deadline")
            self._next_slot = slot + self._interval
        if slot > now:
            sleep(slot - now)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter(kind: str, rate: float) -> RateLimiter:
    """The warm instance's shared limiter for one kind of call ("read" or "write")."""
    with _limiters_lock:
        key = (kind, rate)
        if key not in _limiters:
            _limiters[key] = RateLimiter(rate)
        return _limiters[key]


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full jitter, at least `retry_after`."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    delay = uniform(0, ceiling)
    return max(delay, retry_after or 0.0)
