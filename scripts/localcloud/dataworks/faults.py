"""What can go wrong between the function and DataWorks, on demand: injected faults and the quota.

Faults are set per action ("*" = every action). Each count is how many upcoming calls the fault
hits (None = every call, 0 = off). When several are armed, one call gets at most one of them, in
this order: throttle, server_error, refuse, hang, reset, malformed, concurrent_rerun. Latency delays
every call; a partial_failure map applies to every RerunTaskInstances call that reaches the backend;
an answer_fields map rewrites the object every GetTaskInstance / GetTask answer carries, and
success_info rewrites every RerunTaskInstances answer's SuccessInfo.

The quota is DataWorks' metering of one account and region: rate limits per category, a daily
call limit, the edition's quota, and a neighbour (another client of the same account) using part
of the rate limits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .exceptions import SERVER_ERRORS, Throttling

KINDS = ("throttle", "server_error", "refuse", "hang", "reset", "malformed", "concurrent_rerun")
# Inferred: DataWorks' daily limit counts calendar days in China time (no public source says).
CHINA = timezone(timedelta(hours=8))
_UNSET = object()  # "not given", since None already means "every call"
ABSENT = object()  # an answer_fields value: leave the field out of the answer
UNSET = _UNSET


@dataclass
class _Rule:
    latency: float = 0.0
    counts: dict = field(default_factory=dict)  # kind -> calls left (None = every call)
    throttle_code: str = "Throttling.User"
    retry_after: int | None = None
    server_error_code: str = "ServiceUnavailable"
    partial_failure: dict = field(default_factory=dict)
    after_backend: bool = False
    answer_fields: dict = field(default_factory=dict)
    success_info: object = _UNSET  # see Faults.set
    success_info: object = _UNSET


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one call."""

    latency: float = 0.0
    kind: str | None = None
    throttle_code: str = "Throttling.User"
    retry_after: int | None = None
    server_error_code: str = "ServiceUnavailable"
    partial_failure: dict = field(default_factory=dict)
    # hang/reset/malformed after the backend ran the call: the state changed, the answer is lost.
    after_backend: bool = False
    answer_fields: dict = field(default_factory=dict)
    success_info: object = _UNSET  # see Faults.set


class Faults:
    def __init__(self):
        self._rules: dict[str, _Rule] = {}
        self._lock = threading.Lock()

    def set(
        self,
        action: str = "*",
        *,
        latency: float | None = None,
        throttle=_UNSET,
        throttle_code: str | None = None,
        retry_after: int | None = None,
        server_error=_UNSET,
        server_error_code: str | None = None,
        refuse=_UNSET,
        hang=_UNSET,
        reset=_UNSET,
        malformed=_UNSET,
        concurrent_rerun=_UNSET,
        partial_failure: dict[int, str] | None = None,
        after_backend: bool | None = None,
        answer_fields: dict | None = None,
        success_info=_UNSET,
    ) -> None:
        """Arm faults for `action`, keeping the ones already armed that are not mentioned.

        latency: seconds added to every call. throttle: answer Throttling (throttle_code, default
        Throttling.User; retry_after adds x-acs-retry-after). server_error: answer 503
        ServiceUnavailable or 500 InternalError (server_error_code). refuse: answer 403
        ResourceNotAuthorized.Api (RAM refuses the call). hang: never answer. reset:
        close the connection with a TCP RST. malformed: 200 with a body that is not JSON.
        concurrent_rerun (RerunTaskInstances): another client reruns the call's instances just
        before the backend runs it, as if it had between the caller's read and its rerun; the
        caller's rerun is then refused (Success false: not finished).
        partial_failure: {instance id: message} answered Success=false, state unchanged.
        after_backend: hang/reset/malformed only after the backend has executed the call.
        answer_fields: {field: value} put into the TaskInstance (GetTaskInstance) or Task (GetTask)
        object of every answer, as an odd or older DataWorks might send it: any JSON value,
        float("inf") included (sent as `Infinity`), or ABSENT to leave the field out.
        success_info (RerunTaskInstances, after the backend ran the call): a dict {instance id:
        entry or ABSENT} rewrites those entries of SuccessInfo; any other value (a list, None,
        ABSENT) stands for the whole SuccessInfo.
        """
        if throttle_code is not None:
            Throttling(throttle_code)  # validates the code
        if server_error_code is not None and server_error_code not in SERVER_ERRORS:
            raise ValueError(f"server_error_code must be one of {sorted(SERVER_ERRORS)}, not {server_error_code!r}")
        given = {"throttle": throttle, "server_error": server_error, "refuse": refuse, "hang": hang, "reset": reset}
        given["malformed"] = malformed
        given["concurrent_rerun"] = concurrent_rerun
        for kind, count in given.items():
            if count is not _UNSET and count is not None and (not isinstance(count, int) or count < 0):
                raise ValueError(f"{kind} must be a count of calls (int >= 0) or None for every call, not {count!r}")
        with self._lock:
            rule = self._rules.setdefault(action, _Rule())
            if latency is not None:
                rule.latency = float(latency)
            for kind, count in given.items():
                if count is not _UNSET:
                    rule.counts[kind] = count
            rule.throttle_code = throttle_code or rule.throttle_code
            rule.retry_after = retry_after if retry_after is not None else rule.retry_after
            rule.server_error_code = server_error_code or rule.server_error_code
            if partial_failure is not None:
                rule.partial_failure = {int(k): str(v) for k, v in partial_failure.items()}
            if after_backend is not None:
                rule.after_backend = after_backend
            if answer_fields is not None:
                rule.answer_fields = dict(answer_fields)
            if success_info is not _UNSET:
                rule.success_info = success_info

    def clear(self, action: str | None = None) -> None:
        """Disarm every fault (or those set for one action)."""
        with self._lock:
            if action is None:
                self._rules.clear()
            else:
                self._rules.pop(action, None)

    def take(self, action: str) -> FaultPlan:
        """Decide the faults for one call now, using up the counts it consumes."""
        with self._lock:
            rules = [r for r in (self._rules.get(action), self._rules.get("*")) if r is not None]
            if not rules:
                return FaultPlan()
            partial, fields, success_info = {}, {}, _UNSET
            for rule in reversed(rules):  # the action's own map wins over "*"
                partial.update(rule.partial_failure)
                fields.update(rule.answer_fields)
                success_info = rule.success_info if rule.success_info is not _UNSET else success_info
            latency = max(r.latency for r in rules)
            for kind in KINDS:
                for rule in rules:
                    left = rule.counts.get(kind, 0)
                    if left is None or left > 0:
                        if left is not None:
                            rule.counts[kind] = left - 1
                        return FaultPlan(
                            latency,
                            kind,
                            rule.throttle_code,
                            rule.retry_after,
                            rule.server_error_code,
                            partial,
                            rule.after_backend,
                            fields,
                            success_info,
                        )
            return FaultPlan(latency=latency, partial_failure=partial, answer_fields=fields, success_info=success_info)


class Quota:
    """DataWorks' metering of one account and region (FACTS §2), checked in this order:

    - the edition's quota (`edition_exhausted`): every call gets 429 Throttling.Resource;
    - the daily call limit (`daily_limit`, reads and writes together): once that many calls were
      admitted in a day, every call gets 429 Throttling.Api.Risk until the next day (China time,
      inferred) or `new_day()`;
    - the rate limits per category (read = Get*/List*, write = the rest) as a sliding window: a
      call is admitted when fewer than the limit were admitted in the last second, i.e. in every
      window (t - 1 s, t] at most that many. A `neighbour` (another client of the same account,
      the console, a script) uses that share of each limit all the time, so this caller gets the
      rest; over it, 429 with `code` (Throttling.User by default).

    `clock` (epoch seconds) is a seam: a test may replace it to drive the windows without waiting.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.clock = time.time
        self.configure()

    def configure(
        self,
        read_qps: int | None = None,
        write_qps: int | None = None,
        code: str = "Throttling.User",
        retry_after=None,
        *,
        daily_limit: int | None = None,
        edition_exhausted: bool = False,
        neighbour: float = 0.0,
    ) -> None:
        if code not in Throttling.RATE_CODES:
            raise ValueError(f"code must be one of {', '.join(Throttling.RATE_CODES)}, not {code!r}")
        for name, value in (("read_qps", read_qps), ("write_qps", write_qps), ("daily_limit", daily_limit)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive int or None (no limit), not {value!r}")
        if not 0.0 <= neighbour < 1.0:
            raise ValueError(f"neighbour must be a share of the rate limits in [0, 1), not {neighbour!r}")
        limits = {}
        for category, qps in (("read", read_qps), ("write", write_qps)):
            # What the neighbour leaves of the limit; at least one call a second stays for this caller.
            limits[category] = None if qps is None else max(1, qps - round(qps * neighbour))
        with self._lock:
            self._limits = limits
            self._admitted: dict[str, deque[float]] = {"read": deque(), "write": deque()}
            self.code, self.retry_after = code, retry_after
            self.daily_limit, self.edition_exhausted = daily_limit, edition_exhausted
            self._day, self._calls_today = None, 0

    def new_day(self) -> None:
        """Start a new day now: the daily count goes back to 0."""
        with self._lock:
            self._day, self._calls_today = self._today(self.clock()), 0

    @property
    def calls_today(self) -> int:
        with self._lock:
            return self._calls_today

    def admit(self, is_read: bool) -> tuple[Throttling | None, float]:
        """(the refusal to answer, or None if admitted; the time of the decision) for one call."""
        category = "read" if is_read else "write"
        with self._lock:
            now = self.clock()
            if self.edition_exhausted:
                return Throttling(Throttling.EDITION_QUOTA), now
            today = self._today(now)
            if today != self._day:
                self._day, self._calls_today = today, 0
            if self.daily_limit is not None and self._calls_today >= self.daily_limit:
                return Throttling(Throttling.DAILY_LIMIT), now
            limit = self._limits[category]
            if limit is not None:
                window = self._admitted[category]
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= limit:
                    return Throttling(self.code, self.retry_after), now
                window.append(now)
            self._calls_today += 1
            return None, now

    @staticmethod
    def _today(now: float):
        return datetime.fromtimestamp(now, CHINA).date()
