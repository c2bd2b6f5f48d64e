"""What Function Compute tells one invocation: request id, function name, region, deadline.

FC 3.0's python3.10 and python3.12 runtimes hand over differently shaped context objects; this
reads both, falling back to the variables FC injects.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from dwrerun import pacing
from dwrerun.config import FC_ACCOUNT_ID, FC_FUNCTION_NAME, FC_REGION

DEFAULT_TIMEOUT = 60  # seconds, when neither the context nor the environment says


@dataclass(frozen=True)
class Invocation:
    request_id: str
    function_name: str
    region: str | None
    deadline: float  # pacing.clock() time by which DataWorks calls must have ended
    account_id: str | None = None  # for FC's own endpoint (a scheduled rerun invokes this function)
    timeout: float = DEFAULT_TIMEOUT  # the function's timeout in seconds (a bulk rerun sizes its slices by it)

    @classmethod
    def from_context(cls, context, environ=None) -> Invocation:
        env = os.environ if environ is None else environ
        function = getattr(context, "function", None)
        timeout = _positive(getattr(function, "timeout", None)) or DEFAULT_TIMEOUT
        return cls(
            request_id=str(getattr(context, "request_id", None) or f"local-{uuid.uuid4()}"),
            function_name=str(getattr(function, "name", None) or env.get(FC_FUNCTION_NAME) or "dwrerun"),
            region=getattr(context, "region", None) or env.get(FC_REGION) or None,
            deadline=pacing.clock() + timeout - margin(timeout),
            account_id=str(getattr(context, "account_id", None) or env.get(FC_ACCOUNT_ID) or "") or None,
            timeout=timeout,
        )


def margin(timeout: float) -> float:
    """Seconds kept back from FC's timeout to write the records and return before FC cuts the
    invocation off; the reserve (reserve.py) goes off halfway through them."""
    return min(2.0, timeout * 0.1)


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
