"""The event function as it schedules its own reruns on the local cloud: instance processes
(`localcloud.fc.Function`, async task mode on) that call the local FC OpenAPI (`FunctionComputeApi`:
InvokeFunction with delays and task ids, ListAsyncTasks, GetAsyncTask) and whose delayed
invocations come due on a `SharedClock`, the time the instance processes read too.

One place builds it for the tests of scheduled reruns and the storm guard (tests/test_scheduled_reruns.py's
`cloud` fixture) and for the benchmarks that drive its clock (scripts/bench/storm_cloud.py).
"""

from __future__ import annotations

from typing import Any

from localcloud.clock import SharedClock
from localcloud.fc.function import Function

# Each instance reads the shared clock for what the function dates (schedule.clock: `dueAt`, the
# storm guard's `now`), as FC's and the function's clocks agree in the cloud.
READS_SHARED_CLOCK = "from dwrerun import schedule\nschedule.clock = lambda: float(open({path!r}).read())\n"
# An instance whose waits (the rate limiter's spacing, a retry's backoff: `pacing.sleep`) end at
# once: on a clock that stands still while FC runs what came due, they would pass in real time
# only, and move nothing the figures or the tests read.
NO_WAITS = "from dwrerun import pacing\npacing.sleep = lambda seconds: None\n"
# The function's own waits (its limiters' spacing, a retry's backoff) on a clock that stands still
# while FC runs what came due: each instance keeps its own time, the shared clock's or later, and a
# wait moves only that on at once. So an instance's limiter spaces its calls in clock time and its
# deadline comes as it would (with real time for the waits, or the waits skipped, a busy instance
# ran its limiter's slots ahead of the clock until no call fitted before the deadline).
WAITS_ON_SHARED_CLOCK = """from dwrerun import pacing
_own = [0.0]
def _clock():
    return max(float(open({path!r}).read()), _own[0])
def _sleep(seconds):
    _own[0] = _clock() + max(0.0, seconds)
pacing.clock, pacing.sleep = _clock, _sleep
"""


def clock_setup(clock: SharedClock) -> str:
    """The instance setup (a `Function`'s `instance_setup`) that puts the function's clock on `clock`."""
    return READS_SHARED_CLOCK.format(path=str(clock.path))


def waits_on(clock: SharedClock) -> str:
    """The instance setup whose waits end at once, moving the instance's own time on from `clock`'s
    (WAITS_ON_SHARED_CLOCK): for a driver that moves the clock only between moments."""
    return WAITS_ON_SHARED_CLOCK.format(path=str(clock.path))


def scheduling_function(
    fc_api: Any, clock: SharedClock, *, handler: str = "index.handle_event", setup: str = "", **settings: Any
) -> Function:
    """The function with async task mode on, its delayed invocations due on `clock`, its instances
    reading `clock` (then running `setup`), served by `fc_api` so it can invoke itself.

    `settings` are the Function's own (code_dir, env, credentials, reserved_concurrency...); the
    env must name `fc_api.url` as FUNCTION_COMPUTE_ENDPOINT for the function to reach it.
    """
    settings.setdefault("function_name", "dwrerun-event" if handler.endswith("event") else "dwrerun-http")
    fn = Function(
        handler=handler,
        async_task=True,
        clock=clock,
        instance_setup=clock_setup(clock) + setup,
        **settings,
    )
    fc_api.register(fn)
    return fn
