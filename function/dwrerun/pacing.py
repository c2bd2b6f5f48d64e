"""When the next DataWorks call may go out: the instance's adaptive rate limiter and the retry backoff.

DataWorks meters calls per account and region (Enterprise: 50 reads/s, 20 writes/s), and that
quota is shared with the console, every other client of the account and the function's other
instances. Each instance paces its calls at a configured rate (one limiter per kind of call,
shared by every thread of the invocation), and adapts when DataWorks says the quota is full:

- a throttling answer halves the rate (at most once per second, the quota's window, so one
  burst of throttled answers counts once), down to a floor of 1/20 of the configured rate;
- each call that passes adds back `configured rate / RECOVERY_SECONDS / rate`, so an instance
  that keeps calling regains about `configured rate / RECOVERY_SECONDS` calls/s every second,
  up to the configured rate and never above it;
- an `x-acs-retry-after` holds every caller of the limiter for that long.

Calls are spaced by when they go out, not by when their slots were handed out: a caller that
wakes late from its wait (a cold start, a loaded CPU, another thread's turn) moves the next slot
to a whole interval after its own call, and a caller whose slot came up checks, as it goes, that
no call went out less than an interval before it (another thread's late one), else waits again.
So a call sent late never bunches with the next one. One lateness happens after the limiter:
an instance's first call opens its connection (the TLS context, the TCP and TLS handshakes) once
it has left the limiter, and reaches DataWorks up to its whole duration later. So the first answer
a limiter hears of (`passed()` or `throttled()`) counts as that call's sending: the next call
goes out an interval after it. Later calls reuse the connection.

The state lives in the instance's process and is lost with it: it only saves wasted calls.
Correctness never rests on it (a throttled call was not carried out, and is retried).
Retries back off exponentially with full jitter, and never past the invocation's deadline.

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
MIN_CALL_SECONDS = 0.5  # a call is not started with less time than this left before its deadline
# What the reads leave for the rerun call after them: the least time a call is started with, plus
# one call's read timeout, at most this much.
RERUN_RESERVE_SECONDS = 3.0

DECREASE = 0.5  # a throttling answer multiplies the rate by this
DECREASE_SPACING = 1.0  # seconds: throttling answers closer together than the quota's window count once
RECOVERY_SECONDS = 20.0  # calls that pass regain configured_rate / RECOVERY_SECONDS calls/s per second
FLOOR_SHARE = 0.05  # the rate never drops below this share of the configured rate


class DeadlineReached(Exception):
    """The invocation has no time left for the next call."""


class RateLimiter:
    """At most `rate` calls a second, evenly spaced by when they go out, across every thread that shares it.

    `rate` starts at the configured rate (`ceiling`) and adapts to DataWorks' answers:
    `throttled()` after a throttling answer, `passed()` after a call that was not throttled.
    """

    def __init__(self, rate: float):
        self.ceiling = rate
        self.rate = rate
        self.floor = rate * FLOOR_SHARE
        self._step = rate / RECOVERY_SECONDS
        self._next_slot = 0.0  # the slot the next caller is given
        self._last_sent: float | None = None  # when the last call went out (acquire returned)
        self._hold_until = 0.0  # a server's retry-after: no call before then
        self._last_decrease: float | None = None
        self._answered = False  # whether an answer came back yet (the first call opens the connection)
        self._lock = threading.Lock()

    def acquire(self, deadline: float | None = None) -> None:
        """Wait for this call's slot, and return when the call may go out: at least one interval
        (1 / rate) after the last call that did, whenever that one's slot was. Raises
        DeadlineReached, without waiting further, when the call could not go out by `deadline`."""
        with self._lock:
            now = clock()
            slot = max(now, self._next_slot)
            self._check(slot, now, deadline)
            self._next_slot = slot + 1.0 / self.rate
        if slot > now:
            sleep(slot - now)
        with self._lock:
            now = clock()
            # Another caller's call may have gone out late, close before this slot, or a retry-after
            # came meanwhile: keep the spacing. The send moment is claimed here, under the lock, so
            # a caller waking meanwhile spaces itself after this one; one more wait at most.
            sent = max(now, self._hold_until, self._spaced_after_last_send())
            if sent > now:
                self._check(sent, now, deadline)
            self._last_sent = sent
            # The next call goes out an interval after this one, even if its slot was earlier.
            self._next_slot = max(self._next_slot, sent + 1.0 / self.rate)
        if sent > now:
            sleep(sent - now)
            with self._lock:  # that wait too may end late
                now = clock()
                self._last_sent = max(self._last_sent, now)
                self._next_slot = max(self._next_slot, now + 1.0 / self.rate)

    def _spaced_after_last_send(self) -> float:
        return float("-inf") if self._last_sent is None else self._last_sent + 1.0 / self.rate

    def _first_answer(self, now: float) -> None:
        """The first call may have reached DataWorks only now (its connection opened after the
        limiter let it go): the next call goes out an interval after that. Called with the lock held."""
        if self._answered:
            return
        self._answered = True
        self._last_sent = now if self._last_sent is None else max(self._last_sent, now)
        self._next_slot = max(self._next_slot, now + 1.0 / self.rate)

    @staticmethod
    def _check(slot: float, now: float, deadline: float | None) -> None:
        if deadline is not None and slot > deadline:
            raise DeadlineReached(f"the next call slot is {slot - now:.1f}s away, past the deadline")

    def throttled(self, retry_after: float | None = None) -> None:
        """DataWorks throttled a call: slow down, and hold every caller for `retry_after` seconds."""
        with self._lock:
            now = clock()
            self._first_answer(now)
            if self._last_decrease is None or now - self._last_decrease >= DECREASE_SPACING:
                self.rate = max(self.floor, self.rate * DECREASE)
                self._last_decrease = now
            # The next call waits at least one interval at the new rate, and the server's retry-after
            # (which also holds the callers already given a slot).
            self._hold_until = max(self._hold_until, now + (retry_after or 0.0))
            self._next_slot = max(self._next_slot, now + 1.0 / self.rate, self._hold_until)

    def passed(self) -> None:
        """A call went through: recover a little toward the configured rate."""
        with self._lock:
            self._first_answer(clock())
            if self.rate < self.ceiling:
                self.rate = min(self.ceiling, self.rate + self._step / self.rate)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter(kind: str, rate: float) -> RateLimiter:
    """The instance's limiter for one kind of call ("read" or "write"), shared by its threads."""
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


def retry(
    attempt,
    *,
    deadline: float,
    transient,
    attempts: int = MAX_ATTEMPTS,
    limiter: RateLimiter | None = None,
    margin: float = MIN_CALL_SECONDS,
    what: str = "make the call",
):
    """`attempt(left)` until it returns, `left` being the seconds before `deadline`: the one retry loop.

    Each attempt waits for `limiter`'s slot (if given) and starts only with `margin` seconds left,
    else DeadlineReached is raised. An exception `transient(exc)` calls transient is tried again,
    after `backoff` (at least its `retry_after`), while attempts remain and the wait leaves
    `margin` before the deadline; any other exception, and the last transient one, is raised.
    """
    tries = 0
    while True:
        if limiter is not None:
            limiter.acquire(deadline - margin)
        left = deadline - clock()
        if left < margin:
            raise DeadlineReached(f"no time left to {what}")
        tries += 1
        try:
            return attempt(left)
        except Exception as exc:
            if not transient(exc) or tries >= attempts:
                raise
            delay = backoff(tries, getattr(exc, "retry_after", None))
            if clock() + delay + margin > deadline:
                raise
            sleep(delay)
