"""FC 3.0's timer trigger on the local FC: an asynchronous invocation with FC's timer event, on the function's clock.

FC's timer event (FC's "formats of event for different triggers" page):
`{"triggerTime": "2018-02-09T05:49:00Z", "triggerName": "timer-trigger", "payload": "awesome-fc"}`,
where `payload` is the trigger's configured string (TimerTriggerConfig: cronExpression, enable,
payload). Here the schedule is FC's interval form, `@every 10m` (also `s`, `h`), which
TimerTriggerConfig documents beside cron expressions. That FC invokes a timer asynchronously (so
it retries a raising handler) is inferred; nothing in the sweep relies on that retry.

With a ManualClock a test moves time on and the timer fires as it passes each tick (one
`advance` runs each tick it crosses at most once: advance in steps of the interval, or call
`fire()` for one now). With a RealClock it fires in real time (the demo).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone

EVERY = re.compile(r"@every\s+(\d+)([smh])")
UNIT = {"s": 1, "m": 60, "h": 3600}


def interval_seconds(expression: str) -> int:
    """Seconds between ticks of an `@every <n><s|m|h>` expression (the local FC's only form)."""
    match = EVERY.fullmatch(expression.strip())
    if not match:
        raise ValueError(f"the local FC's timer takes '@every <n>s|m|h', got {expression!r}")
    seconds = int(match.group(1)) * UNIT[match.group(2)]
    if seconds < 60:
        raise ValueError(f"FC's timer fires at most once a minute, got {expression!r}")
    return seconds


class TimerTrigger:
    """One timer trigger of one local FC function (`localcloud.fc.Function`)."""

    def __init__(self, fn, name: str, expression: str, payload: str, enable: bool = True):
        self.fn = fn
        self.name = name
        self.every = interval_seconds(expression)
        self.payload = payload
        self.enable = enable
        self.fired: list = []  # the AsyncInvocation of every tick
        self._stopped = False
        self._lock = threading.Lock()
        if enable:
            self._next(fn.clock.now() + self.every)

    def event(self, when: float) -> bytes:
        moment = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"triggerTime": moment, "triggerName": self.name, "payload": self.payload}
        return json.dumps(body, separators=(",", ":")).encode()

    def fire(self):
        """One tick now, as FC would send it; returns its AsyncInvocation."""
        handle = self.fn.invoke_async(self.event(self.fn.clock.now()))
        with self._lock:
            self.fired.append(handle)
        return handle

    def stop(self) -> None:
        self._stopped = True

    def _next(self, when: float) -> None:
        self.fn.clock.call_at(when, lambda: self._tick(when))

    def _tick(self, when: float) -> None:
        if self._stopped:
            return
        self.fire()
        self._next(when + self.every)
