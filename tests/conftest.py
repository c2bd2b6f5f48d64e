"""Shared fixtures: the local cloud (DataWorks emulator + FC harness) and the sample events.

Every test that runs the function runs it the way FC does (bytes in, context object, injected
variables) against the emulator over real HTTP with signature checks.
"""

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from localcloud.acs3 import Credentials
from localcloud.clock import ManualClock
from localcloud.dataworks import DataWorksEmulator
from localcloud.fc import Function, FunctionCompute, FunctionComputeApi
from localcloud.scheduled import NO_WAITS

pytest_plugins = ["secrets_audit", "same_records"]

ROOT = Path(__file__).resolve().parents[1]
# The code package (FC's code root). `make mutation` runs these tests on a copy that holds it as
# src/, the layout mutmut needs (scripts/mutation.py): DWRERUN_CODE_PACKAGE says so.
FUNCTION_DIR = ROOT / os.environ.get("DWRERUN_CODE_PACKAGE", "function")
EVENTS = Path(__file__).parent / "events"
SHARED = ROOT.parent / "shared"

CREDS = Credentials("LTAItestkeyid0001", "test-secret-do-not-log", "test-sts-token-do-not-log")
ROTATED = Credentials("LTAItestkeyid0002", "rotated-secret-do-not-log", "rotated-sts-token-do-not-log")

FAILED_ID = 1000012345678  # the instance in dataworks-instance-failed.json
FROZEN_ID = 1000012345699  # the instance in dataworks-instance-failed-frozen.json
TASK_ID = 700000004417
PROJECT_ID = 48213


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def sample_bytes(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def failure_event(instance_id: int, event_id: str | None = None, **data) -> dict:
    """The failure sample for another instance (and a fresh event id), about a run that ended now:
    DataWorks publishes a run's failure when it ends, so its finishTime is not before the run the
    instance is at (an event about an earlier run is a stale copy, which reruns nothing)."""
    event = sample("dataworks-instance-failed.json")
    event["id"] = event_id or f"evt-{instance_id}"
    now = int(time.time() * 1000)
    event["data"].update(taskId=instance_id, finishTime=now, modifyTime=now)
    event["data"].update(data)
    return event


def seed_failed(emulator, instance_id: int = FAILED_ID, **fields) -> None:
    values = dict(
        id=instance_id,
        task_id=TASK_ID,
        project_id=PROJECT_ID,
        status="Failure",
        run_number=1,
        rerun_mode="FailureAllowed",
        project_env="Prod",
        trigger_recurrence="Normal",
        task_name="ods_orders_di",
    )
    values.update(fields)
    emulator.backend.add_instance(**values)


@pytest.fixture
def dataworks():
    """A fresh DataWorks emulator on loopback, accepting CREDS."""
    with DataWorksEmulator(credentials=[CREDS]) as emulator:
        yield emulator


def function_env(dataworks, **overrides) -> dict:
    env = {
        "DATAWORKS_ENDPOINT": dataworks.url,
        # Tests are not about pacing (tests/test_pacing.py is): no limiter wait slows them.
        "DATAWORKS_READ_QPS": "1000",
        "DATAWORKS_WRITE_QPS": "1000",
        "DATAWORKS_READ_TIMEOUT": "2",
        # Reruns at once unless a test is about scheduled reruns (tests/test_scheduled_reruns.py).
        "RERUN_BACKOFF_BASE_SECONDS": "0",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def make_function(dataworks, tmp_path, handler="index.handle_event", runtime="python3.12", timeout=30, **env):
    fn = FunctionCompute(
        handler=handler,
        code_dir=str(FUNCTION_DIR),
        runtime=runtime,
        timeout=timeout,
        function_name="dwrerun-event" if handler.endswith("event") else "dwrerun-http",
        region="cn-hangzhou",
        env=function_env(dataworks, **env),
        credentials=CREDS,
        logstore=str(tmp_path / "logstore.jsonl"),
    )
    return fn


# The process model's instances cannot be patched from here: each runs this before its first
# invocation, so its retries take the clock's word for a wait, as in fresh_instance_state below.
NO_BACKOFF_SLEEP = NO_WAITS


@contextmanager
def waiting_queue(start: float):
    """(the local FC OpenAPI, the event function's own queue it serves) on a clock that never moves:
    what the function queues waits there (ListAsyncTasks and GetAsyncTask see it) and never runs,
    so a test of the function in this process stays in it."""
    with FunctionComputeApi(credentials=[CREDS]) as api:
        queue = Function(
            handler="index.handle_event",
            code_dir=str(FUNCTION_DIR),
            function_name="dwrerun-event",
            reserved_concurrency=1,
            async_task=True,
            clock=ManualClock(start=start),
        )
        api.register(queue)
        try:
            yield api, queue
        finally:
            queue.close()


def make_instances(
    dataworks, tmp_path, reserved_concurrency=2, handler="index.handle_event", timeout=30, retries=3, **env
) -> Function:
    """The function as FC 3.0 runs it: up to `reserved_concurrency` instance processes, an
    asynchronous queue and FC's retries (localcloud.fc.function)."""
    return Function(
        handler=handler,
        code_dir=str(FUNCTION_DIR),
        runtime="python3.12",
        timeout=timeout,
        function_name="dwrerun-event" if handler.endswith("event") else "dwrerun-http",
        region="cn-hangzhou",
        env=function_env(dataworks, **env),
        credentials=CREDS,
        logstore=str(tmp_path / "logstore.jsonl"),
        reserved_concurrency=reserved_concurrency,
        max_async_retry_attempts=retries,
        instance_setup=NO_BACKOFF_SLEEP,
    )


@pytest.fixture(autouse=True)
def fresh_instance_state(mocker):
    """Each test starts on what is, for the function, a cold instance, whose retries never sleep.

    The function's modules are the ones the test files imported: a harness serves its first
    instance with the modules it finds and puts them back when it closes (localcloud/fc/harness.py), so
    they live for the whole session and their warm-instance state is reset here, whatever ran
    before. The backoff's sleep (a seam of time) is replaced on those very modules: tests take the
    clock's word for a wait.
    """
    from dwrerun import autorerun, dataworks, event_function, function_compute, pacing, rules

    event_function.handled_events = event_function.HandledEvents()
    dataworks._cached = None
    function_compute._cached = None
    autorerun.task_cache = autorerun.TaskCache()
    pacing._limiters.clear()
    rules._cache.clear()
    mocker.patch.object(pacing, "sleep")


# --- the one fake clock ----------------------------------------------------------------------------

FAKE_START = 1000.0  # where the fake clock starts unless a test needs a date


def install_fake_clock(mocker, start: float = FAKE_START, *, overlapping_sleeps: bool = False) -> ManualClock:
    """The function's time seam (`pacing.clock`, `pacing.sleep`) on one ManualClock: time moves
    only when the function waits (or the test advances it), so every wait and deadline is exact."""
    from dwrerun import pacing

    clock = ManualClock(start=start, overlapping_sleeps=overlapping_sleeps)
    mocker.patch.object(pacing, "clock", clock.now)
    mocker.patch.object(pacing, "sleep", clock.sleep)
    return clock


@pytest.fixture
def fake_clock(mocker) -> ManualClock:
    """The function's clock and sleep on a ManualClock at FAKE_START."""
    return install_fake_clock(mocker)


@pytest.fixture
def event_function(dataworks, tmp_path):
    with make_function(dataworks, tmp_path) as fn:
        yield fn


def instance_records(invocation) -> list[dict]:
    return [r for r in invocation.records if r.get("kind") == "instance"]


def reruns(dataworks) -> list:
    """The RerunTaskInstances calls DataWorks accepted."""
    return [e for e in dataworks.journal.calls("RerunTaskInstances") if e.status == 200]


@pytest.fixture(scope="session")
def demo_logs(tmp_path_factory) -> Path:
    """The demo's Logstore directory: its own, as .localcloud/logs may be another `make demo`'s."""
    return tmp_path_factory.mktemp("demo-logs")


@pytest.fixture(scope="session")
def demo_run(demo_logs):
    """`make demo`, once per session: what it printed; its records stay in `demo_logs`."""
    return subprocess.run(
        [sys.executable, "scripts/demo.py", "--logs", str(demo_logs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


# tryfirst: xdist's own hook turns each xdist_group mark into the "@group" suffix of a test's id,
# which is what its scheduler groups by. Run after it, these marks came too late: the demo's tests
# were spread over workers, each ran `make demo`, and one worker's demo emptied the Logstore while
# another's tests read it (a rare CI failure of test_demo).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`--dist loadgroup`): the tests that share a costly module- or
    session-scoped fixture (a build, a benchmark, the demo) go to one worker, so it is made once.
    The demo's tests all go to one worker: `make demo` rewrites .localcloud/logs, which one
    process at a time may do. Without xdist the marks change nothing."""
    for item in items:
        if "demo_run" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("demo"))
            continue
        definitions = getattr(item, "_fixtureinfo", None)
        for name in item.fixturenames:
            defs = definitions.name2fixturedefs.get(name) if definitions else None
            if defs and defs[-1].scope == "module":
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))
                break
