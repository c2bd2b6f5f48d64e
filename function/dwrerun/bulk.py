"""Bulk reruns by filter, the HTTP function's side: plan (a dry run), or apply.

A dry run decides every selected instance as the real run would and gives a plan token
(plan.py); a real run checks the token when the selection is large, hands parts 2..n to
continuations (handoff.py), works on part 1 itself in batches (batches.py) until its time is
up, and hands what is left on. Both return typed results (`Planned`, `Applied`) and raise typed
errors; the HTTP function (http_function.py) turns them into statuses and answer bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dwrerun import handoff, pacing, plan, schedule, schema, selection
from dwrerun.batches import (
    HAND_ON_RESERVE,
    SLICE_SHARE,
    bare,
    filter_job,
    per_instance_seconds,
    slice_size,
    summary,
    work,
    write,
)
from dwrerun.config import ConfigError, Settings
from dwrerun.continuation import Continuation
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Target
from dwrerun.outcome import Outcome
from dwrerun.rerun import RetryLater, run
from dwrerun.schema import Reason, Summary


@dataclass(frozen=True)
class Request:
    """An HTTP request's filter form, checked (http_function.py parses it)."""

    filter: selection.Filter
    comment: str | None = None
    dry_run: bool = False
    force: bool = False
    ignore_rules: bool = False
    use_latest_config: bool | None = None
    plan_token: str | None = None

    def options(self) -> dict:
        """What a plan token binds besides the filter: the options that change what happens."""
        return {"Force": self.force, "IgnoreRules": self.ignore_rules, "UseLatestConfig": bool(self.use_latest_config)}


@dataclass(frozen=True)
class Planned:
    """A dry run over a filter: every selected instance decided, and the token that applies the plan."""

    request_id: str
    filter: dict  # the filter, canonical (as the token binds it)
    selected: int
    outcomes: tuple[Outcome, ...]
    logs_not_read: int  # decided by the guards alone: the time for their logs ran out
    token: str
    expires: str  # UTC ISO 8601
    required_above: int  # RERUN_PLAN_REQUIRED_ABOVE


@dataclass(frozen=True)
class Applied:
    """A real rerun over a filter: what this invocation did, and the parts it handed on."""

    request_id: str
    filter: dict
    selected: int
    outcomes: tuple[Outcome, ...]  # this invocation's, and the instances whose hand-off FC refused
    handed: tuple[Continuation, ...]  # the parts queued for the event function
    continuation_function: str  # the event function that runs them
    quota: str | None = None  # DataWorks' daily limit or edition quota code, when it stopped the work

    @property
    def continuing(self) -> int:
        return sum(len(c.instances) for c in self.handed)


def plan_or_apply(
    request: Request, settings: Settings, rule_set, invocation: Invocation, dataworks, functions
) -> Planned | Applied:
    """One filter-form request: a dry run (the plan, with its token) or a real rerun (the apply).

    `dataworks` is the DataWorks client; `functions()` makes the FC client for the hand-offs.
    Raises plan.PlanError, selection.TooLarge, DataWorksError (listing failed), ConfigError,
    pacing.DeadlineReached (listing took the whole invocation).
    """
    key = settings.signing_key
    if key is None:
        raise ConfigError("RERUN_SIGNING_KEY is unset: the filter form needs it to sign plan tokens and continuations")
    dry_run = settings.dry_run or request.dry_run
    filter_, options = request.filter.canonical(), request.options()
    checked = None
    if not dry_run and request.plan_token is not None:  # a bad token fails before any call
        checked = plan.check(key, request.plan_token, filter_, options, schedule.clock())
    started = pacing.clock()
    job = filter_job(invocation, settings, rule_set, request, origin_request_id=invocation.request_id, dry_run=dry_run)
    selected = selection.select(dataworks, request.filter, settings, job.deadline)
    targets = [Target(i.id, listed=i, failed_run=i.run_number) for i in selected]
    if dry_run:
        written, unread = _dry_run(job, targets, dataworks)
        token, expires = plan.issue(
            key, filter_, options, len(targets), invocation.request_id, schedule.clock(), settings.plan_ttl,
            _runs(targets),
        )  # fmt: skip
        summary(job, written, started, outcome=Summary.DONE)
        return Planned(
            invocation.request_id, filter_, len(targets), tuple(written), unread, token, expires,
            settings.plan_required_above,
        )  # fmt: skip
    if len(targets) > settings.plan_required_above:
        if checked is None:
            raise plan.PlanError(
                "PlanRequired",
                f"the filter selects {len(targets)} failed instances, more than RERUN_PLAN_REQUIRED_ABOVE="
                f"{settings.plan_required_above}: make a dry run (DryRun: true) over the same filter and options, "
                f"then send its PlanToken within RERUN_PLAN_TTL_SECONDS={settings.plan_ttl}",
            )
        plan.check_selection(checked, len(targets))
    unplanned = []
    if checked is not None:  # apply the runs the plan showed, and only those (issue 24)
        late = set(plan.not_planned(checked, _runs(targets)))
        unplanned = [_not_in_plan(t, checked) for t in targets if t.instance_id in late]
        write(job, unplanned)
        targets = [t for t in targets if t.instance_id not in late]
    return _apply(job, request, targets, invocation, dataworks, functions, started, unplanned)


def _runs(targets: list[Target]) -> list[plan.Run]:
    return [(t.instance_id, t.failed_run, t.listed.finished_time) for t in targets]


def _not_in_plan(target: Target, checked: plan.Plan) -> Outcome:
    message = (
        f"not rerun: its failed run {target.failed_run} is not one the plan (dry run {checked.request_id}) showed "
        "(it ended after the plan's last failed run): make a dry run to review it"
    )
    return bare(target.instance_id, Reason.NOT_IN_PLAN, message, instance=target.listed)


def _apply(
    job: Job, request: Request, targets: list[Target], invocation: Invocation, dataworks, functions, started,
    unplanned: list[Outcome],
):  # fmt: skip
    """Hand parts 2..n on, work on part 1 until the time is up, hand what is left on. `unplanned`:
    the outcomes (written) of what the plan token kept out."""
    size = slice_size(job.settings, invocation.timeout, job.reads_logs, len(targets))
    own = min(len(targets), _fits(job, invocation.deadline, size))
    parts = [targets[n : n + size] for n in range(own, len(targets), size)]
    handed, refused = handoff.hand_on_parts(job, request, functions, parts, first_part=1, invocation=invocation)
    done = work(job, targets[:own], dataworks)
    written = unplanned + refused + done.outcomes
    if done.leftover and done.quota is None:
        more = [done.leftover[n : n + size] for n in range(0, len(done.leftover), size)]
        handed_more, refused_more = handoff.hand_on_parts(
            job, request, functions, more, first_part=len(parts) + 1, invocation=invocation
        )
        handed += handed_more
        written += refused_more
    summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED if done.quota else Summary.DONE)
    return Applied(
        invocation.request_id,
        request.filter.canonical(),
        len(targets),
        tuple(written),
        tuple(handed),
        handoff.continuation_function(invocation.function_name),
        done.quota,
    )


def _dry_run(job: Job, targets: list[Target], dataworks) -> tuple[list[Outcome], int]:
    """Decide every target as the real run would. Logs are read while time lasts; the rest are
    decided by the guards alone, their records saying the log was not read. (records, how many)"""
    done = work(job, targets, dataworks)
    if not done.leftover:
        return done.outcomes, 0
    guards_only = replace(job, rules=None, deadline=job.deadline + HAND_ON_RESERVE)
    try:
        rest = run(guards_only, done.leftover, dataworks)
    except RetryLater as exc:  # a GetTask the guards needed kept failing: those stay undecided
        rest = exc.outcomes
    note = "; its failed run's log was not read: this dry run ran out of time (the real run reads it)"
    rest = [replace(o, message=o.message + note) if o.decision == schema.DRY_RUN else o for o in rest]
    write(job, rest)
    return done.outcomes + rest, sum(1 for o in rest if o.decision == schema.DRY_RUN)


def _fits(job: Job, deadline: float, size: int) -> int:
    """How many instances this invocation can do itself before `deadline`, at most one part."""
    left = deadline - HAND_ON_RESERVE - pacing.clock()
    return max(0, min(size, int(left / per_instance_seconds(job.settings, job.reads_logs) * SLICE_SHARE)))
