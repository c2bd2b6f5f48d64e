"""The emulator's record of every request it received, refused ones included (thread-safe, list-like)."""

from __future__ import annotations

import threading
from typing import NamedTuple

# Request parameters that carry credentials in the older RPC signature; never recorded.
SECRET_PARAMS = frozenset({"signature", "securitytoken", "accesskeyid", "bearertoken"})


class JournalEntry(NamedTuple):
    """One request. `time` is when it was admitted (epoch seconds; the quota window uses the same
    value); `status` 0 means no HTTP answer was sent (hang/reset fault); `accepted` means the call
    reached the backend; `fault` names the injected fault that hit it, if any."""

    time: float
    action: str
    params: dict
    status: int
    code: str | None
    request_id: str
    accepted: bool = False
    fault: str | None = None
    duration: float = 0.0


def public_params(params: dict) -> dict:
    """The parameters without anything secret."""
    return {k: v for k, v in params.items() if k.lower() not in SECRET_PARAMS}


class Journal:
    def __init__(self):
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._entries)

    def __iter__(self):
        return iter(self.entries())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __getitem__(self, index):
        with self._lock:
            return self._entries[index]

    def calls(self, action: str | None = None) -> list[JournalEntry]:
        """Requests for `action` (any action if None) that reached the backend."""
        return [e for e in self.entries() if e.accepted and (action is None or e.action == action)]

    def count(
        self, *, action: str | None = None, code: str | None = None, status: int | None = None, fault: str | None = None
    ) -> int:
        """How many requests match every criterion given (e.g. `count(code="Throttling.User")`)."""
        return sum(
            1
            for e in self.entries()
            if (action is None or e.action == action)
            and (code is None or e.code == code)
            and (status is None or e.status == status)
            and (fault is None or e.fault == fault)
        )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
