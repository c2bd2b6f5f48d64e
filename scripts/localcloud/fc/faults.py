"""Refusals injected into the local FC OpenAPI, per upcoming call (`api.faults`).

`deny` answers 403 AccessDenied, as FC does for a caller whose RAM policy lacks
fc:InvokeFunction; `throttle` answers 429 (ResourceExhausted, or the `throttle_code` given). A
count is how many upcoming calls a fault hits; None, every call.
"""

from __future__ import annotations

import threading

FAULT_KINDS = ("deny", "throttle")  # the order they are taken in


class Faults:
    """Injected refusals, per upcoming call: `deny` (403 AccessDenied, as for a role without
    fc:InvokeFunction) and `throttle` (429). A count is how many calls it hits; None, every call."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int | None] = {}
        self.throttle_code = "ResourceExhausted"

    def set(self, *, deny: int | None | bool = False, throttle: int | None | bool = False, throttle_code=None) -> None:
        for kind, count in (("deny", deny), ("throttle", throttle)):
            if count is False:
                continue
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise ValueError(f"{kind} must be a count of calls (int >= 0) or None for every call, not {count!r}")
            with self._lock:
                self._counts[kind] = count
        if throttle_code:
            self.throttle_code = throttle_code

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def take(self) -> str | None:
        """The fault for this call, if any, using up its count (deny before throttle)."""
        with self._lock:
            for kind in FAULT_KINDS:
                left = self._counts.get(kind, 0)
                if left is None or left > 0:
                    if left is not None:
                        self._counts[kind] = left - 1
                    return kind
        return None
