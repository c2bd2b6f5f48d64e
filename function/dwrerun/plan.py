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

The token also binds the instances and runs the plan showed (issue 24): a digest of its (instance,
run) pairs, and the latest FinishedTime among those runs (DataWorks' own clock). A real run applies
only the failed runs that ended by then: a run that ended later (a new failure, or a rerun that
failed again) is not the plan's and is reported, never rerun, so one token never reruns one failed
run twice. If what is left has as many instances as the plan and is not the plan's (the digest
differs), the whole request is refused (`PlanOutdated`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from dwrerun import signing

VERSION = 2  # 2: binds the instances and runs shown (issue 24); a version 1 token is refused
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
    shown: str = ""  # digest of the (instance id, run) pairs the dry run showed
    finished_up_to: int | None = None  # the latest FinishedTime (epoch ms) of those runs

    def to_content(self) -> dict:
        return {
            "v": VERSION,
            "filter": self.filter,
            "options": self.options,
            "selected": self.selected,
            "expires": self.expires,
            "plan": self.request_id,
            "shown": self.shown,
            "finishedUpTo": self.finished_up_to,
        }


# A selected failed run: (instance id, RunNumber, FinishedTime in epoch ms or None).
Run = tuple[int, int | None, int | None]


def issue(
    key: str,
    filter_: dict,
    options: dict,
    selected: int,
    request_id: str,
    now: float,
    ttl: int,
    runs: Sequence[Run] = (),
) -> tuple[str, str]:
    """(the token, when it expires as UTC ISO 8601) for a dry run that selected `selected` instances,
    the failed `runs` it showed."""
    times = [finished for _, _, finished in runs if finished is not None]
    plan = Plan(filter_, options, selected, int(now) + ttl, request_id, digest(runs), max(times, default=None))
    return signing.seal(key, signing.PLAN, plan.to_content()), _iso(plan.expires)


def digest(runs: Sequence[Run]) -> str:
    """The (instance id, run) pairs, in one canonical order, hashed (SHA-256, 128 bits shown)."""
    pairs = sorted([instance_id, run] for instance_id, run, _ in runs)
    return base64.urlsafe_b64encode(hashlib.sha256(signing.canonical(pairs)).digest()[:16]).decode("ascii")


def not_planned(plan: Plan, runs: Sequence[Run]) -> list[int]:
    """The ids among `runs` (the selection now) whose failed run the plan did not show: it ended
    after the latest run the plan showed, or its end is unknown. Raises PlanError PlanOutdated
    when the others are as many as the plan's and are not the plan's."""
    up_to = plan.finished_up_to
    late = [i for i, _, finished in runs if finished is None or up_to is None or finished > up_to]
    rest = [run for run in runs if run[0] not in set(late)]
    if len(rest) >= plan.selected and digest(rest) != plan.shown:
        raise PlanError(
            "PlanOutdated",
            f"the filter selects {len(rest)} failed runs that ended by the plan's last one, but not the ones the "
            f"plan (dry run {plan.request_id}) showed: an instance's run changed since. Make the dry run again",
        )
    return late


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
            shown=str(content["shown"]),
            finished_up_to=None if content["finishedUpTo"] is None else int(content["finishedUpTo"]),
        )
        if content["v"] != VERSION:
            raise ValueError(content["v"])
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
