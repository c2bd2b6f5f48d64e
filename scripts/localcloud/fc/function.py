"""A local FC 3.0 function on a Python built-in runtime, as it runs under load: many instances.

FC 3.0's standard runtimes (python3.10, python3.12) serve ONE invocation per instance; concurrent
invocations run on separate instances, each its own process with its own module state, clients,
limiter and cold start. `concurrencyConfig.reservedConcurrency` caps the function's concurrent
invocations, hence its instances; asynchronous invocations above the cap wait in FC's queue.
An asynchronous invocation that raises, times out or crashes is retried up to
`asyncInvokeConfig.maxAsyncRetryAttempts` times (0-8, default 3); a normal return is success;
synchronous invocations are never retried. Sources: FACTS section 5 (FC "3.0 vs 2.0" comparison,
"Configure a retry mechanism").

`Function` models exactly that with real OS processes (`localcloud.fc.instances`):
- `invoke_async(event)` puts an invocation in the function's queue and returns its handle at once.
  The queue dispatches to an idle instance if there is one (the most recently used first), starts
  a new instance only when every instance is busy and fewer than `reserved_concurrency` exist,
  and otherwise waits. A failed attempt goes back to the end of the queue with its request id
  until the retries run out. `drain()` waits until nothing is queued or running.
- `invoke_async(event, delay=30)` comes due 30 s later on the function's `clock`
  (`localcloud.clock`: a ManualClock that tests advance, or real time); 0-3600 s, as FC allows.
  With `async_task=True` (asyncInvokeConfig.asyncTask) `task_id=` is de-duplicated: a task id used
  before is refused with `TaskAlreadyExists` (FC's 409). A task id must follow FC's rule (a letter
  or `_` first, then letters, digits, `_`, `-`; at most 128 characters).
- `invoke(event)` is a synchronous invocation on an idle or new instance; with every allowed
  instance busy it raises `ConcurrencyExceeded` (FC answers 429) [the error code is inferred].
- Payloads above FC's limits (32 MB synchronous, 128 KB asynchronous) raise `EntityTooLarge`.
  `localcloud.fc.server` serves all of this over FC's OpenAPI (`InvokeFunction`).
- An invocation that outlives `timeout` is answered with FunctionTimeout and its instance is
  killed: the next invocation there is a cold start on a new instance.
- Every instance's stdout/stderr lines go, per request id, into the local Logstore
  (`logstore=`, else a temporary directory of its own; `localcloud.fc.logstore`).

Where the model simplifies, on purpose: retries go back to the queue at once rather than after
FC's backoff (seconds to minutes); idle instances are never reclaimed (FC stops them after some
idle minutes), so the instances a test sees are the ones it caused.

`instance_setup` is a test seam FC does not have: Python source run in each instance before its
first invocation, for the seams tests replace (e.g. the backoff's sleep), since a test process
cannot patch another process.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localcloud.clock import RealClock
from localcloud.fc.exceptions import ConcurrencyExceeded, EntityTooLarge, InvalidArgument, TaskAlreadyExists
from localcloud.fc.instances import META_FIELDS, InstanceProcess
from localcloud.fc.logstore import Logstore
from localcloud.fc.runtime import (
    Invocation,
    check_function,
    function_environment,
    new_instance_id,
    new_request_id,
    timeout_error,
)

MAX_ASYNC_RETRIES = 8  # FC: maxAsyncRetryAttempts is 0-8
MAX_ASYNC_DELAY = 3600  # FC: x-fc-async-delay is 0-3600 seconds
MAX_SYNC_PAYLOAD = 32 * 1024 * 1024  # FC: 32 MB for a synchronous invocation
MAX_ASYNC_PAYLOAD = 128 * 1024  # FC: 128 KB for an asynchronous one
# FC's rule for an async task id: a letter or `_` first, then letters, digits, `_`, `-`; <= 128 chars.
TASK_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")


@dataclass
class AsyncInvocation:
    """One asynchronous invocation: every attempt FC made at it, under one request id."""

    request_id: str
    event: bytes
    task_id: str | None = None  # x-fc-async-task-id, when the caller gave one
    due_at: float | None = None  # when a delayed invocation comes due (the function's clock)
    attempts: list[Invocation] = field(default_factory=list)
    status: str = "Enqueued"  # FC's task statuses: Enqueued (delayed ones too), Running, Succeeded, Failed
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def final(self) -> Invocation | None:
        """The last attempt, once the invocation is done."""
        return self.attempts[-1] if self.done and self.attempts else None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until FC is done with it (succeeded, or failed with its retries used up)."""
        return self._done.wait(timeout)


@dataclass
class InstanceInfo:
    """What a test may read about one instance, now."""

    instance_id: str
    pid: int
    invocations: int
    peak_rss_mib: float  # the process's peak resident memory (ru_maxrss) after its last invocation
    ended: str | None  # None while it lives; "timeout", "crashed" or "stopped" once gone


class Function:
    """One FC 3.0 function with up to `reserved_concurrency` instance processes. Use it as a context
    manager, or call close(), so its instance processes end."""

    def __init__(
        self,
        handler: str,
        code_dir: str = "function",
        runtime: str = "python3.12",
        timeout: float = 60,
        memory: int = 256,
        function_name: str = "dwrerun",
        region: str = "cn-hangzhou",
        account_id: str = "1877700012345678",
        env: Mapping[str, str] | None = None,
        credentials: Any = None,
        logstore: str | None = None,
        initializer: str | None = None,
        log_project: str = "localcloud",
        log_store: str | None = None,
        version_id: str = "",
        *,
        reserved_concurrency: int,
        max_async_retry_attempts: int = 3,
        async_task: bool = False,
        clock: Any = None,
        instance_setup: str | None = None,
    ):
        self.code_dir, self.env = check_function(handler, initializer, runtime, timeout, code_dir, env)
        if not isinstance(reserved_concurrency, int) or reserved_concurrency < 1:
            raise ValueError(
                f"reserved_concurrency must be a whole number of instances >= 1, got {reserved_concurrency!r}"
            )
        if not isinstance(max_async_retry_attempts, int) or not 0 <= max_async_retry_attempts <= MAX_ASYNC_RETRIES:
            raise ValueError(
                f"max_async_retry_attempts must be 0..{MAX_ASYNC_RETRIES} (FC's maxAsyncRetryAttempts), "
                f"got {max_async_retry_attempts!r}"
            )
        self.handler = handler
        self.initializer = initializer
        self.runtime = runtime
        self.timeout = timeout
        self.memory = memory
        self.function_name = function_name
        self.region = region
        self.account_id = account_id
        self.credentials = credentials
        self.log_project = log_project
        self.log_store = log_store or function_name
        self.version_id = version_id
        self.reserved_concurrency = reserved_concurrency
        self.max_async_retry_attempts = max_async_retry_attempts
        self.async_task = async_task  # asyncInvokeConfig.asyncTask: task ids are de-duplicated
        self.clock = clock or RealClock()  # delayed invocations come due on it
        self.instance_setup = instance_setup
        self._logstore = Logstore(logstore, function_name)
        self.logstore = self._logstore.path

        self._cond = threading.Condition()
        self._idle: list[InstanceProcess] = []  # most recently used last
        self._live = 0  # instances alive or starting: never above reserved_concurrency
        self._started: list[InstanceProcess] = []
        self._queue: deque[AsyncInvocation] = deque()
        self._running = 0  # asynchronous attempts in flight
        self._delayed = 0  # delayed invocations not yet due
        self._task_ids: set[str] = set()  # every task id taken (FC keeps tasks for 7 days)
        self._workers: list[threading.Thread] = []
        self._closed = False
        self.invocations: list[Invocation] = []  # every attempt, synchronous or not, in the order they ended
        self.async_invocations: list[AsyncInvocation] = []

    # -- lifecycle

    def __enter__(self) -> Function:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop taking invocations, end every instance process. Queued invocations are dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            instances = list(self._started)
            workers = list(self._workers)
            self._cond.notify_all()
        for instance in instances:
            instance.stop()
        for worker in workers:
            worker.join(timeout=10)

    def rotate_credentials(self, credentials: Any) -> None:
        """An STS rotation: invocations from now on, on every instance, get the new keys."""
        self.credentials = credentials

    # -- invoking

    def invoke(self, event: bytes | bytearray | str, request_id: str | None = None) -> Invocation:
        """A synchronous invocation: run it now on an idle or new instance, never retried. Raises
        ConcurrencyExceeded when every instance the reserved concurrency allows is busy."""
        event = _event_bytes(event, MAX_SYNC_PAYLOAD)
        with self._cond:
            self._check_open()
            instance = self._take_instance()
            if instance is False:
                raise ConcurrencyExceeded(
                    f"function {self.function_name!r} already runs {self.reserved_concurrency} invocations "
                    f"(reservedConcurrency {self.reserved_concurrency})"
                )
        return self._attempt(event, request_id or new_request_id(), instance)

    def invoke_async(
        self,
        event: bytes | bytearray | str,
        request_id: str | None = None,
        *,
        delay: float = 0,
        task_id: str | None = None,
    ) -> AsyncInvocation:
        """An asynchronous invocation: queued now (or `delay` seconds from now on the function's
        clock, 0-3600), run when an instance is free, retried if it raises, times out or crashes.
        Returns its handle at once. With async task mode on, a `task_id` used before is refused
        (TaskAlreadyExists, FC's 409)."""
        payload = _event_bytes(event, MAX_ASYNC_PAYLOAD)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_ASYNC_DELAY:
            raise InvalidArgument(f"the delay must be 0-{MAX_ASYNC_DELAY} seconds, got {delay!r}")
        if task_id is not None:
            if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
                raise InvalidArgument(
                    f"task id {task_id!r} is not valid: a letter or '_' first, then letters, digits, '_' or '-', "
                    "at most 128 characters"
                )
            if not self.async_task:
                # FC documents that task mode must be on to set a task id; that it refuses rather
                # than ignores the id when it is off is inferred.
                raise InvalidArgument(
                    f"function {self.function_name!r} does not have async task mode on (asyncInvokeConfig.asyncTask): "
                    "it takes no task id"
                )
        task = AsyncInvocation(request_id or new_request_id(), payload, task_id=task_id)
        with self._cond:
            self._check_open()
            if task_id is not None:
                if task_id in self._task_ids:
                    raise TaskAlreadyExists(f"async task {task_id!r} of function {self.function_name!r} already exists")
                self._task_ids.add(task_id)
            self.async_invocations.append(task)
            if delay > 0:
                task.due_at = self.clock.now() + delay
                self._delayed += 1
            else:
                self._queue.append(task)
                self._dispatch()
        if task.due_at is not None:
            self.clock.call_at(task.due_at, lambda: self._come_due(task))
        return task

    def list_async_tasks(self, prefix: str = "", status: str | None = None) -> list[dict]:
        """FC's AsyncTask objects of the tasks with an id starting with `prefix` (ListAsyncTasks), oldest
        first. A delayed task not yet due is `Enqueued` [inferred], and listed as soon as it is queued."""
        with self._cond:
            tasks = [t for t in self.async_invocations if t.task_id is not None and t.task_id.startswith(prefix)]
        return [_task_object(t) for t in tasks if status is None or t.status == status]

    def get_async_task(self, task_id: str) -> dict | None:
        """FC's AsyncTask object of one task (GetAsyncTask), or None."""
        with self._cond:
            found = [t for t in self.async_invocations if t.task_id == task_id]
        return _task_object(found[0]) if found else None

    def drain(self, timeout: float = 120) -> None:
        """Wait until no asynchronous invocation is queued or running (delayed ones that are not
        due yet do not count: advance the clock first). Raises TimeoutError, naming what is left,
        if that takes longer than `timeout` seconds."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"function {self.function_name!r}: {len(self._queue)} queued and {self._running} running "
                        f"after {timeout} s"
                    )
                self._cond.wait(left)

    def wait_for(self, predicate, timeout: float = 60) -> None:
        """Wait until `predicate()` holds; it is checked whenever an attempt ends (e.g. "the first
        attempt of this invocation failed"). Raises TimeoutError after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"function {self.function_name!r}: still waiting after {timeout} s")

    # -- what tests read

    @property
    def delayed(self) -> int:
        """Delayed asynchronous invocations that have not come due yet."""
        with self._cond:
            return self._delayed

    @property
    def instances(self) -> list[InstanceInfo]:
        """Every instance this function started, in start order (ended ones included)."""
        with self._cond:
            started = list(self._started)
        return [
            InstanceInfo(i.instance_id, i.pid, i.invocations, round(i.peak_rss_kib / 1024, 1), i.ended) for i in started
        ]

    def logstore_lines(self) -> list[dict]:
        """Every line of the local Logstore file, parsed."""
        return self._logstore.lines()

    def record_attempt(self, invocation: Invocation) -> None:
        """Every attempt, synchronous or asynchronous, passes here once it ended (tests/secrets_audit.py
        wraps this to read them all)."""
        with self._cond:
            self.invocations.append(invocation)

    # -- internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"function {self.function_name!r} is closed")

    def _take_instance(self) -> InstanceProcess | None | bool:
        """Under the lock: an idle instance, None for "start a new one" (its slot is taken), or
        False when the reserved concurrency is used up."""
        if self._idle:
            return self._idle.pop()
        if self._live < self.reserved_concurrency:
            self._live += 1
            return None
        return False

    def _come_due(self, task: AsyncInvocation) -> None:
        with self._cond:
            self._delayed -= 1
            if self._closed:
                return
            self._queue.append(task)
            self._dispatch()
            self._cond.notify_all()

    def _dispatch(self) -> None:
        """Under the lock: hand queued invocations to free instances, as many as there are."""
        while self._queue and not self._closed:
            instance = self._take_instance()
            if instance is False:
                return
            task = self._queue.popleft()
            task.status = "Running"
            self._running += 1
            worker = threading.Thread(
                target=self._run_async, args=(task, instance), name=f"fc-async-{task.request_id}", daemon=True
            )
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()

    def _run_async(self, task: AsyncInvocation, instance: InstanceProcess | None) -> None:
        invocation = self._attempt(task.event, task.request_id, instance)
        with self._cond:
            self._running -= 1
            task.attempts.append(invocation)
            if (
                invocation.error is not None
                and len(task.attempts) <= self.max_async_retry_attempts
                and not self._closed
            ):
                task.status = "Enqueued"
                self._queue.append(task)  # FC's retry keeps the request id
            else:
                task.status = "Succeeded" if invocation.error is None else "Failed"
                task._done.set()
            self._dispatch()
            self._cond.notify_all()

    def _attempt(self, event: bytes, request_id: str, instance: InstanceProcess | None) -> Invocation:
        """One invocation on `instance` (None: start one first); the instance goes back to the idle
        list afterwards, unless it ended."""
        started = time.perf_counter()
        lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        instance_id = ""
        try:
            if instance is None:
                try:
                    instance = self._start_instance()
                except OSError as exc:  # no process could be started: the attempt fails, FC may retry
                    outcome = {
                        "result": None,
                        "error": {"errorType": "InstanceStartFailed", "errorMessage": f"no instance started: {exc}"},
                        "cold_start": True,
                        "timed_out": False,
                    }
                    return self._ended(event, request_id, "", outcome, lines, started)
            instance_id = instance.instance_id

            def on_line(line_request_id: str, stream: str, text: str) -> None:
                self._logstore.append(line_request_id or request_id, instance_id, stream, text)
                if line_request_id == request_id:
                    lines[stream].append(text)

            self._logstore.append(request_id, instance_id, "stdout", f"FC Invoke Start RequestId: {request_id}")
            outcome = instance.invoke(request_id, event, self.credentials, self.timeout, on_line)
            self._logstore.append(request_id, instance_id, "stdout", f"FC Invoke End RequestId: {request_id}")
        finally:
            with self._cond:
                if instance is not None and instance.alive and not self._closed:
                    self._idle.append(instance)
                else:
                    self._live -= 1
                self._dispatch()
                self._cond.notify_all()
        return self._ended(event, request_id, instance_id, outcome, lines, started)

    def _ended(self, event, request_id, instance_id, outcome, lines, started) -> Invocation:
        error = timeout_error(self.timeout) if outcome["timed_out"] else outcome["error"]
        invocation = Invocation(
            request_id=request_id,
            event=event,
            result=outcome["result"],
            error=error,
            timed_out=outcome["timed_out"],
            stdout=lines["stdout"],
            stderr=lines["stderr"],
            duration=time.perf_counter() - started,
            cold_start=outcome["cold_start"],
            instance_id=instance_id,
        )
        self.record_attempt(invocation)
        return invocation

    def _start_instance(self) -> InstanceProcess:
        instance_id = new_instance_id()
        variables = {k: v for k, v in function_environment(self, instance_id).items() if v is not None}
        meta = {name: getattr(self, name) for name in META_FIELDS}
        meta["code_dir"] = str(self.code_dir)
        instance = InstanceProcess(instance_id, meta, variables, self.instance_setup)
        with self._cond:
            self._started.append(instance)
            closed = self._closed
        if closed:  # close() ran while this one was starting: it must not outlive the function
            instance.stop()
        return instance


def _event_bytes(event: bytes | bytearray | str, limit: int) -> bytes:
    if isinstance(event, str):
        event = event.encode("utf-8")
    if not isinstance(event, (bytes, bytearray)):
        raise TypeError(f"the event must be bytes (FC passes bytes), got {type(event).__name__}")
    if len(event) > limit:
        raise EntityTooLarge(f"payload size exceeds maximum allowed size ({limit} bytes)")
    return bytes(event)


def _task_object(task: AsyncInvocation) -> dict:
    """The fields of FC's AsyncTask struct the local cloud knows (api-fc-2023-03-30-struct-asynctask)."""
    return {
        "taskId": task.task_id,
        "status": task.status,
        "requestId": task.request_id,
        "taskPayload": task.event.decode("utf-8", "replace"),
        "alreadyRetriedTimes": max(0, len(task.attempts) - 1),
    }
