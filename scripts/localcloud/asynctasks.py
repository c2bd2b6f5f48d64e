"""FC 3.0's async task store in memory: task ids, their statuses, ListAsyncTasks and GetAsyncTask.

What the storm guard (function/dwrerun/storm.py) coordinates through, without the HTTP wire: the
guard's unit tests and the storm simulation (scripts/bench_storm.py) drive it with a number for a
clock. It follows FC's documented behaviour, and the guard's inferred one where nothing is
documented (docs/inferred-facts.md):

- a task id is taken for good: a repeat is refused (FC's 409, `create` returns False);
- a delayed task lists as `Enqueued` until it is due [inferred], and is listed at once [inferred];
- `list` filters by id prefix and status, and returns at most `limit` (FC pages by 100: the
  adapter in function_compute follows nextToken, this returns them all at once);
- `fail` makes every call raise `error` (FC's API unreachable; storm.CoordinationError for the guard),
  to pin failing open;
- `lose` drops a task as if its invocation were lost (it ends `Failed` without running).
"""

from __future__ import annotations

import bisect
import heapq
import json
import threading
from dataclasses import dataclass, field
from typing import NamedTuple


class Task(NamedTuple):
    """What ListAsyncTasks / GetAsyncTask say of one task: its id, status and payload (parsed)."""

    task_id: str
    status: str
    payload: dict | None


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    task_id: str = field(compare=False)
    payload: bytes = field(compare=False)
    status: str = field(compare=False, default="Enqueued")


class AsyncTasks:
    """One function's async tasks. `now` is the clock (a callable); `due(until)` hands out what came due."""

    def __init__(self, now, error: type[Exception] = RuntimeError):
        self.now = now
        self.error = error
        self.tasks: dict[str, _Entry] = {}
        self._heap: list[_Entry] = []
        self._ids: list[str] = []  # sorted: a prefix is a range of it
        self._seq = 0
        self.failing = False
        self._failing_calls: tuple[str, ...] = ()
        self.calls = {"create": 0, "list": 0, "get": 0}
        self._lock = threading.Lock()  # instances call it from many threads at once: one answer each

    # --- the Tasks interface -------------------------------------------------------------------

    def create(self, task_id: str, delay: int, payload: bytes) -> bool:
        self._call("create")
        with self._lock:
            if task_id in self.tasks:
                return False
            self._seq += 1
            entry = _Entry(self.now() + delay, self._seq, task_id, payload)
            self.tasks[task_id] = entry
            heapq.heappush(self._heap, entry)
            bisect.insort(self._ids, task_id)
            return True

    def list(self, prefix: str, *, status: str | None = None, limit: int = 100) -> list[Task]:
        self._call("list")
        with self._lock:
            low, high = bisect.bisect_left(self._ids, prefix), bisect.bisect_left(self._ids, prefix + "\U0010ffff")
            entries = sorted((self.tasks[i] for i in self._ids[low:high]), key=lambda e: e.seq)  # oldest first
        found = [e for e in entries if status is None or e.status == status]
        return [self._task(e) for e in found[:limit]]

    def get(self, task_id: str) -> Task | None:
        self._call("get")
        entry = self.tasks.get(task_id)
        return self._task(entry) if entry is not None else None

    # --- the platform's side -------------------------------------------------------------------

    def due(self, until: float) -> list[tuple[str, bytes]]:
        """Every task due by `until`, in due order, now `Running` (the caller runs them)."""
        out = []
        while self._heap and self._heap[0].due <= until:
            entry = heapq.heappop(self._heap)
            if entry.status != "Enqueued":
                continue
            entry.status = "Running"
            out.append((entry.task_id, entry.payload))
        return out

    def next_due(self) -> float | None:
        while self._heap and self._heap[0].status != "Enqueued":
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def finish(self, task_id: str, ok: bool = True) -> None:
        self.tasks[task_id].status = "Succeeded" if ok else "Failed"

    def lose(self, task_id: str) -> None:
        """The invocation is lost: the task ends without running."""
        self.tasks[task_id].status = "Failed"

    def fail(self, failing: bool = True, calls: tuple[str, ...] = ("create", "list", "get")) -> None:
        """Make these calls raise `error` (all three by default; ("list", "get"): FC's reads alone)."""
        self.failing = failing
        self._failing_calls = calls

    def _call(self, kind: str) -> None:
        self.calls[kind] += 1
        if self.failing and kind in self._failing_calls:
            raise self.error(f"{kind}: ServiceUnavailable (injected)")

    @staticmethod
    def _task(entry: _Entry) -> Task:
        try:
            payload = json.loads(entry.payload)
        except ValueError:
            payload = None
        return Task(entry.task_id, entry.status, payload if isinstance(payload, dict) else None)
