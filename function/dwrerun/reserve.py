"""The records an invocation owes, written before FC's timeout whatever the pipeline is doing.

FC ends an invocation that runs past its timeout without a word from it: before this, a step that
ran long (a text step, a bug) left no instance record and no summary, and every other failure of
the same delivery was lost with it (issue 24). The pipeline's own deadline (invocation.py) ends
its DataWorks calls in time; this is the reserve behind it: a timer set to go off halfway through
the margin between that deadline and FC's, which, unless the pipeline has written its records by
then, writes them itself (every instance the delivery named `deferred`, and the summary, outcome
`retry`). Exactly one of the two writes them: whoever `claim`s first.

The timer reads the function's clock (`pacing.clock`, the tests' seam), waking at least every
POLL_SECONDS, so a test's clock moves it as it moves the deadline.

It runs in a thread of its own, so it fires while the pipeline's thread is in Python code
(a long run of bounded regular-expression calls releases the GIL between them). A single C call
that never returns (no call the function makes can, since the text steps are bounded) would hold
the GIL, and the reserve with it: only FC's kill ends that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dwrerun import pacing
from dwrerun.invocation import Invocation, margin

POLL_SECONDS = 0.25  # how often the timer looks at the clock at most (a test's clock jumps)


class ReserveUsed(Exception):
    """The reserve wrote the invocation's records before the pipeline could: raised so FC retries
    the invocation, which the records say it does."""


class Reserve:
    """A timer that writes the invocation's records (`write`) unless the pipeline claims them first."""

    def __init__(self, due: float, write: Callable[[], None]):
        self._lock = threading.Lock()
        self._claimed = False
        self.fired = False
        self._due = due  # pacing.clock() time
        self._write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dwrerun-reserve", daemon=True)

    @classmethod
    def start(cls, invocation: Invocation, write: Callable[[], None]) -> Reserve:
        """A started reserve for `invocation`: it goes off half the margin after its deadline."""
        reserve = cls(records_due(invocation), write)
        reserve._thread.start()
        return reserve

    def claim(self) -> bool:
        """The pipeline writes its records now: True, unless the reserve has written them (False)."""
        with self._lock:  # waits while the reserve writes: its records are whole before this answers
            if self.fired:
                return False
            self._claimed = True
        self._stop.set()
        return True

    def cancel(self) -> None:
        """The invocation ends: the timer, if it has not gone off, never will."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(POLL_SECONDS, max(0.0, self._due - pacing.clock()))):
            if pacing.clock() >= self._due:
                self._fire()
                return

    def _fire(self) -> None:
        with self._lock:
            if self._claimed:
                return
            self.fired = True
            self._write()


def records_due(invocation: Invocation) -> float:
    """The pacing.clock() time by which the reserve writes the records: half the margin after the
    invocation's deadline, half the margin before FC's timeout."""
    return invocation.deadline + margin(invocation.timeout) / 2
