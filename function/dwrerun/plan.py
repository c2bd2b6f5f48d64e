"""Plan, then apply: the token a dry run over a filter gives, and the check a real rerun makes.

A real rerun by filter of more than `RERUN_PLAN_REQUIRED_ABOVE` instances is refused unless it
carries the `PlanToken` of a dry run over the same filter, with the same options (Force,
IgnoreRules, UseLatestConfig: they change what happens), made in the last
`RERUN_PLAN_TTL_SECONDS`. The habit is Terraform's: look at the plan, then apply that plan.

The token is self-contained and signed (dwrerun/signing.py): the filter, the options, how many
instances the dry run selected, when it expires and the dry run's request id, in readable
base64url JSON, plus an HMAC. Any instance of the function checks it without shared state.
A real run that now selects more instances than the plan saw is refused too (`PlanOutdated`):
new failures appeared since the plan, and nobody has looked at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from dwrerun import signing

VERSION = 1
MAX_TOKEN_CHARS = 32 * 1024  # a few hundred characters; a long TaskIds list makes it longer


class PlanError(Exception):
    """A real rerun the plan check refuses: `code`, the kind of refusal (InvalidPlanToken,
    PlanExpired, PlanMismatch, PlanOutdated, PlanRequired), and a message naming the problem.
    The HTTP function maps each code to its status."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Plan:
    """What a dry run planned, as its token carries it."""

    filter: dict
    options: dict
    selected: int
    expires: int  # epoch seconds
    request_id: str

    def to_content(self) -> dict:
        return {
            "v": VERSION,
            "filter": self.filter,
            "options": self.options,
            "selected": self.selected,
            "expires": self.expires,
            "plan": self.request_id,
        }


def issue(
    key: str, filter_: dict, options: dict, selected: int, request_id: str, now: float, ttl: int
) -> tuple[str, str]:
    """(the token, when it expires as UTC ISO 8601) for a dry run that selected `selected` instances."""
    plan = Plan(filter_, options, selected, int(now) + ttl, request_id)
    return signing.seal(key, signing.PLAN, plan.to_content()), _iso(plan.expires)


def check(key: str, token: object, filter_: dict, options: dict, now: float) -> Plan:
    """The plan a token carries, if it is this function's, unexpired, for this filter and options.

    Raises PlanError: InvalidPlanToken (not a token of this function: cut, forged, or signed
    with another RERUN_SIGNING_KEY), PlanExpired, PlanMismatch (naming what differs).
    """
    try:
        content = signing.unseal(key, signing.PLAN, token, MAX_TOKEN_CHARS)
    except signing.Malformed as exc:
        raise PlanError("InvalidPlanToken", f"PlanToken is not valid: {exc}") from None
    except signing.BadSignature:
        raise PlanError(
            "InvalidPlanToken",
            "PlanToken's signature does not verify: it was altered, or made with another RERUN_SIGNING_KEY "
            "(the key changed since the dry run?). Make the dry run again",
        ) from None
    try:
        plan = Plan(
            filter=dict(content["filter"]),
            options=dict(content["options"]),
            selected=int(content["selected"]),
            expires=int(content["expires"]),
            request_id=str(content["plan"]),
        )
    except (KeyError, TypeError, ValueError):
        raise PlanError("InvalidPlanToken", "PlanToken is not a plan token of this version") from None
    if now > plan.expires:
        raise PlanError(
            "PlanExpired",
            f"PlanToken expired at {_iso(plan.expires)} (dry run {plan.request_id}; plans last "
            f"RERUN_PLAN_TTL_SECONDS): make the dry run again and apply its token",
        )
    differences = _differences(plan.filter, filter_) + _differences(plan.options, options)
    if differences:
        raise PlanError(
            "PlanMismatch",
            f"PlanToken was made for another request (dry run {plan.request_id}): {'; '.join(differences)}. "
            "Apply a plan with the same filter and options, or make the dry run for this one",
        )
    return plan


def check_selection(plan: Plan, selected: int) -> None:
    """Refuse (PlanOutdated) a real run that selects more instances than its plan saw."""
    if selected > plan.selected:
        raise PlanError(
            "PlanOutdated",
            f"the filter now selects {selected} failed instances, the plan (dry run {plan.request_id}) saw "
            f"{plan.selected}: instances failed since the plan. Make the dry run again and look at them",
        )


def _differences(planned: dict, asked: dict) -> list[str]:
    names = sorted(set(planned) | set(asked))
    return [
        f"{n} is {_shown(asked.get(n))} here, {_shown(planned.get(n))} in the plan"
        for n in names
        if planned.get(n) != asked.get(n)
    ]


def _shown(value) -> str:
    return "absent" if value is None else repr(value)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
