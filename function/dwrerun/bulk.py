"""Bulk reruns by filter: plan (a dry run), apply, and the continuations that outlive the request.

    HTTP function                                   event function (asynchronous invocations)
    list the selection (ListTaskInstances)
    check the plan token (plan.py)
    hand parts 2..n on (InvokeFunction) ----------> part k: reread its instances (ListTaskInstances
    work on part 1 until the time is up                     by Ids), work until the time is up,
    hand what is left on, answer 202                        hand what is left on to its next hop

Work goes in batches of RERUN_CHUNK_SIZE through rerun.run: the same guards, failure rules,
adaptive pacing and records as every other path, one RerunTaskInstances call per batch. Before a
batch starts, its time is estimated from the QPS limits; a batch that would not end before the
deadline (less the time kept to hand on and answer) is handed on instead. Each continuation part
is sized to use part of a function's timeout (`slice_size`), at most 500 instances (one
ListTaskInstances call rereads them).

Nothing is lost if an invocation dies midway: FC retries an asynchronous invocation that crashed,
timed out or raised, with the same payload. Every instance is read again and rerun only if the
run the selection found failed is still its latest (`already-rerun` otherwise), so a part that
runs twice reruns nothing twice. Every instance a part names ends with a record carrying
`originRequestId`, the HTTP request's id: `message.originRequestId: "<id>"` follows them all.

Pacing: each instance paces its calls with its own limiters (pacing.py), adaptive as on the event
path; FC's reservedConcurrency caps how many instances run, so the deployment's total stays under
DataWorks' quota as the template sizes it (docs/sizing.md). Continuations run on the event
function's instances, beside failure events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dwrerun import pacing, plan, records, schedule, schema, selection
from dwrerun.config import ConfigError, Settings
from dwrerun.continuation import Continuation
from dwrerun.dataworks import MAX_PAGE_SIZE, DataWorksError
from dwrerun.function_compute import InvokeFunctionError
from dwrerun.http_function import rerun_answer
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Target
from dwrerun.outcome import Outcome, first_quota_code, quota_exhausted, skipped
from dwrerun.rerun import RetryLater, run
from dwrerun.schema import Reason, Summary

HAND_ON_RESERVE = 3.0  # seconds kept at the end of an invocation to hand the rest on and answer
SLICE_SHARE = 0.6  # a part is sized to use this share of the function's timeout
# A selection is spread over about this many parts, so they run side by side: the template's 9
# event-function instances and the HTTP one (docs/sizing.md), each at its own QPS limits.
PARALLEL_PARTS = 10
MAX_STALLS = 3  # hops in a row that finish no instance: the chain stops and records why


class ContinueLater(Exception):
    """A continuation could not start its work or hand its rest on (DataWorks or FC kept failing
    transiently): raised on purpose so FC retries it. Its records are already written."""


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


@dataclass
class Work:
    """What a stretch of work did: records written, targets left for a continuation, and why."""

    outcomes: list[Outcome] = field(default_factory=list)
    leftover: list[Target] = field(default_factory=list)
    error: DataWorksError | None = None  # the DataWorks error that left them (None: time ran out)
    quota: str | None = None  # DataWorks' daily limit or edition quota code, when it stopped the work


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


def continuation_function(own_name: str) -> str:
    """The event function that runs continuations: template.yml names the two functions
    `<namePrefix>-event` and `<namePrefix>-http`; the event function continues itself."""
    return own_name[: -len("-http")] + "-event" if own_name.endswith("-http") else own_name


def per_instance_seconds(settings: Settings, reads_logs: bool) -> float:
    """The QPS limits' time for one instance: its log read, and its share of a RerunTaskInstances call."""
    return (1.0 / settings.read_qps if reads_logs else 0.0) + 1.0 / (settings.chunk_size * settings.write_qps)


def slice_size(settings: Settings, timeout: float, reads_logs: bool, count: int) -> int:
    """Instances one part is given: a PARALLEL_PARTS-th of the `count` selected (at least a
    RerunTaskInstances chunk), at most what fits in SLICE_SHARE of a timeout, and at most 500."""
    budget = timeout * SLICE_SHARE - HAND_ON_RESERVE - 1.0 / settings.read_qps  # the reread call
    fits = int(budget / per_instance_seconds(settings, reads_logs))
    spread = max(settings.chunk_size, math.ceil(count / PARALLEL_PARTS))
    return max(1, min(MAX_PAGE_SIZE, fits, spread))


# --- the HTTP function's side -----------------------------------------------------------------


def plan_or_apply(
    request: Request, settings: Settings, rule_set, invocation: Invocation, dataworks, functions
) -> Answer:
    """One filter-form request: a dry run (the plan, with its token) or a real rerun (the apply).

    `dataworks` is the DataWorks client; `functions()` makes the FC client for the hand-offs.
    Raises plan.PlanError, selection.TooLarge, DataWorksError (listing failed), ConfigError.
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
    job = Job.for_filter(
        invocation,
        settings,
        rule_set,
        deadline=invocation.deadline - HAND_ON_RESERVE,
        origin_request_id=invocation.request_id,
        dry_run=dry_run,
        force=request.force,
        comment=request.comment,
        ignore_rules=request.ignore_rules,
        use_latest_config=request.use_latest_config,
    )
    selected = selection.select(dataworks, request.filter, settings, job.deadline)
    targets = [Target(i.id, listed=i, failed_run=i.run_number) for i in selected]
    answer = {"RequestId": invocation.request_id, "DryRun": dry_run, "Filter": filter_, "Selected": len(targets)}
    if dry_run:
        written, unread = _dry_run(job, targets, dataworks)
        token, expires = plan.issue(
            key, filter_, options, len(targets), invocation.request_id, schedule.clock(), settings.plan_ttl
        )
        _summary(job, written, started, outcome=Summary.DONE)
        return Answer(
            200,
            {
                **answer,
                **_decisions(written),
                "LogsNotRead": unread,
                "PlanToken": token,
                "PlanExpiresAt": expires,
                "PlanRequiredAbove": settings.plan_required_above,
            },
        )
    if len(targets) > settings.plan_required_above:
        if checked is None:
            raise plan.PlanError(
                428,
                "PlanRequired",
                f"the filter selects {len(targets)} failed instances, more than RERUN_PLAN_REQUIRED_ABOVE="
                f"{settings.plan_required_above}: make a dry run (DryRun: true) over the same filter and options, "
                f"then send its PlanToken within RERUN_PLAN_TTL_SECONDS={settings.plan_ttl}",
            )
        plan.check_selection(checked, len(targets))
    size = slice_size(settings, invocation.timeout, job.reads_logs, len(targets))
    own = min(len(targets), _fits(job, invocation.deadline, size))
    parts = [targets[n : n + size] for n in range(own, len(targets), size)]
    handed, refused = _hand_on_parts(job, request, functions, parts, first_part=1, invocation=invocation)
    work = _work(job, targets[:own], dataworks)
    written = refused + work.outcomes
    if work.leftover and work.quota is None:
        more = [work.leftover[n : n + size] for n in range(0, len(work.leftover), size)]
        handed_more, refused_more = _hand_on_parts(
            job, request, functions, more, first_part=len(parts) + 1, invocation=invocation
        )
        handed += handed_more
        written += refused_more
    _summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED if work.quota else Summary.DONE)
    continuing = sum(len(c.instances) for c in handed)
    body = {
        **answer,
        "Started": sum(1 for o in written if o.started),
        **_decisions(written),
        **rerun_answer(written),
        "Continuing": continuing,
    }
    if handed:
        body["Continuation"] = {
            "Function": continuation_function(invocation.function_name),
            "Parts": len(handed),
            "AsyncTaskIds": [c.task_id for c in handed],
            "Query": f'message.originRequestId: "{invocation.request_id}"',
            # Text for the operator to paste into SLS, not run here; the id is FC's own request id.
            "CountQuery": (
                f'message.originRequestId: "{invocation.request_id}" and message.kind: instance '  # noqa: S608
                "| select reason, count(*) as instances from log group by reason"
            ),
        }
    if work.quota:
        from dwrerun.http_function import quota_message  # the HTTP API's one wording of it

        return Answer(429, {"Code": "QuotaExhausted", "Message": quota_message(work.quota), **body})
    failed = [o for o in written if o.reason == Reason.DEFERRED]
    if failed:
        message = (
            f"{len(failed)} instance(s) could not be handed to a continuation ({failed[0].error_code}): they were "
            "not rerun (Skipped, reason deferred); send the same filter again to pick them up"
        )
        return Answer(502, {"Code": "ContinuationFailed", "Message": message, **body})
    return Answer(202 if continuing else 200, body)


def _dry_run(job: Job, targets: list[Target], dataworks) -> tuple[list[Outcome], int]:
    """Decide every target as the real run would. Logs are read while time lasts; the rest are
    decided by the guards alone, their records saying the log was not read. (records, how many)"""
    work = _work(job, targets, dataworks)
    if not work.leftover:
        return work.outcomes, 0
    guards_only = replace(job, rules=None, deadline=job.deadline + HAND_ON_RESERVE)
    try:
        rest = run(guards_only, work.leftover, dataworks)
    except RetryLater as exc:  # a GetTask the guards needed kept failing: those stay undecided
        rest = exc.outcomes
    note = "; its failed run's log was not read: this dry run ran out of time (the real run reads it)"
    rest = [replace(o, message=o.message + note) if o.decision == schema.DRY_RUN else o for o in rest]
    _write(job, rest)
    return work.outcomes + rest, sum(1 for o in rest if o.decision == schema.DRY_RUN)


def _fits(job: Job, deadline: float, size: int) -> int:
    """How many instances this invocation can do itself before `deadline`, at most one part."""
    left = deadline - HAND_ON_RESERVE - pacing.clock()
    return max(0, min(size, int(left / per_instance_seconds(job.settings, job.reads_logs) * SLICE_SHARE)))


def _decisions(written: list[Outcome]) -> dict:
    """Each decision counted by reason, the ids by reason, and what a failure rule held back."""
    by_reason: dict[str, list[int]] = {}
    for o in written:
        by_reason.setdefault(o.reason, []).append(o.instance_id)
    return {
        "Counts": {reason: len(ids) for reason, ids in sorted(by_reason.items())},
        "Decisions": dict(sorted(by_reason.items())),
        "NotRetryable": {
            str(o.instance_id): {"Rule": o.rule, "MatchedLine": o.matched_line, "Message": o.message}
            for o in written
            if o.reason == Reason.NOT_RETRYABLE
        },
    }


# --- the event function's side ----------------------------------------------------------------


def continue_(
    cont: Continuation, settings: Settings, rule_set, rules_error, invocation: Invocation, dataworks_for, functions
) -> dict:
    """Run one continuation part in the event function; returns the invocation's summary record.

    `dataworks_for()` makes the DataWorks client. Raises ContinueLater (records written) when FC
    should retry the whole part: nothing is lost, and nothing is rerun twice.
    """
    started = pacing.clock()
    job = Job.for_filter(
        invocation,
        settings,
        rule_set,
        deadline=invocation.deadline - HAND_ON_RESERVE,
        origin_request_id=cont.origin_request_id,
        dry_run=settings.dry_run,
        force=cont.force,
        comment=cont.comment,
        ignore_rules=cont.ignore_rules,
        use_latest_config=cont.use_latest_config,
    )
    ids = [i for i, _ in cont.instances]
    if rules_error is not None:  # a bad rules file: FC retrying cannot fix it
        written = [_bare(job, i, Reason.CONFIG_ERROR, str(rules_error)) for i in ids]
        _write(job, written)
        return _summary(job, written, started, outcome=Summary.DONE)
    dataworks = dataworks_for()
    try:
        current = selection.reread(
            dataworks, cont.project_id, cont.bizdate, cont.project_env, ids, settings, job.deadline
        )
    except DataWorksError as exc:
        if exc.quota_exhausted:
            written = [_quota_exhausted(job, i, exc.code) for i in ids]
            _write(job, written)
            return _summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED)
        _summary(job, [], started, outcome=Summary.RETRY, error=exc.code)
        raise ContinueLater(f"ListTaskInstances kept failing ({exc.code}): FC retries the continuation") from None
    except pacing.DeadlineReached:
        _summary(job, [], started, outcome=Summary.RETRY, error="DeadlineReached")
        raise ContinueLater("no time left to reread the continuation's instances") from None
    missing = [
        _bare(job, i, Reason.LOOKUP_FAILED, "ListTaskInstances no longer lists it (deleted, or no longer in this project, "
              "business date and environment): not rerun")
        for i in ids
        if i not in current
    ]  # fmt: skip
    _write(job, missing)
    targets = [Target(i, listed=current[i], failed_run=run_) for i, run_ in cont.instances if i in current]
    work = _work(job, targets, dataworks)
    written = missing + work.outcomes
    if work.leftover and work.quota is None:
        stalls = 0 if written else cont.stalls + 1
        if stalls >= MAX_STALLS:
            why = work.error.code if work.error else "the time ran out"
            gave_up = [
                _bare(job, t.instance_id, Reason.DEFERRED,
                      f"not rerun: {MAX_STALLS} continuations in a row finished no instance ({why}); send the filter "
                      "again once DataWorks answers", work.error.code if work.error else None, t.listed)
                for t in work.leftover
            ]  # fmt: skip
            _write(job, gave_up)
            written += gave_up
        else:
            nxt = replace(
                cont,
                hop=cont.hop + 1,
                stalls=stalls,
                instances=tuple((t.instance_id, t.failed_run) for t in work.leftover),
            )
            try:
                _invoke(job, functions, nxt, invocation)
            except InvokeFunctionError as exc:
                if exc.transient:
                    _summary(job, written, started, outcome=Summary.RETRY, error=exc.code)
                    raise ContinueLater(
                        f"InvokeFunction kept failing ({exc.code}): FC retries the continuation"
                    ) from None
                refused = _refused_records(job, nxt, work.leftover, exc)
                _write(job, refused)
                written += refused
    return _summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED if work.quota else Summary.DONE)


# --- shared -------------------------------------------------------------------------------------


def _work(job: Job, targets: list[Target], dataworks) -> Work:
    """Run the targets through rerun.run, a batch of RERUN_CHUNK_SIZE at a time, writing each
    batch's records; stop when the next batch would not end before the job's deadline."""
    work = Work()
    size = job.settings.chunk_size
    per = per_instance_seconds(job.settings, job.reads_logs)
    slack = pacing.MIN_CALL_SECONDS + 1.0 / job.settings.write_qps + min(job.settings.read_timeout, 3.0)
    n = 0
    while n < len(targets):
        batch = targets[n : n + size]
        if pacing.clock() + len(batch) * per + slack > job.deadline:
            work.leftover = targets[n:]
            return work
        try:
            written = run(job, batch, dataworks)
        except RetryLater as exc:
            done = [o for o in exc.outcomes if o.reason != Reason.DEFERRED]
            _write(job, done)
            work.outcomes += done
            # Deferred ones go on to a continuation, which writes their record: none here.
            left = [t for t, o in zip(batch, exc.outcomes, strict=True) if o.reason == Reason.DEFERRED]
            work.leftover, work.error = left + targets[n + size :], exc.error
            return work
        _write(job, written)
        work.outcomes += written
        quota = first_quota_code(written)
        if quota:
            rest = [_quota_exhausted(job, t.instance_id, quota, t.listed) for t in targets[n + size :]]
            _write(job, rest)
            work.outcomes += rest
            work.quota = quota
            return work
        n += size
    return work


def _hand_on_parts(
    job: Job, request: Request, functions, parts: list[list[Target]], first_part: int, invocation
) -> tuple[list[Continuation], list[dict]]:
    """Queue each part as an asynchronous invocation; (the continuations queued, records of the
    instances whose part FC refused)."""
    handed, written = [], []
    f = request.filter
    for number, part in enumerate(parts, start=first_part):
        cont = Continuation(
            origin_request_id=invocation.request_id,
            part=number,
            hop=0,
            stalls=0,
            project_id=f.project_id,
            bizdate=f.bizdate,
            project_env=f.project_env,
            instances=tuple((t.instance_id, t.failed_run) for t in part),
            comment=request.comment,
            force=request.force,
            ignore_rules=request.ignore_rules,
            use_latest_config=request.use_latest_config,
        )
        try:
            _invoke(job, functions, cont, invocation)
        except InvokeFunctionError as exc:
            written += _refused_records(job, cont, part, exc)
            continue
        handed.append(cont)
    _write(job, written)
    return handed, written


def _invoke(job: Job, functions, cont: Continuation, invocation: Invocation) -> None:
    """InvokeFunction (async) of the event function with the part; retried while transient and
    time is left. FC's 409 for the part's task id means it is queued already: done."""
    target = continuation_function(invocation.function_name)
    payload = cont.to_payload(job.settings.signing_key)
    attempt = 0
    while True:
        try:
            if functions is None:
                raise ConfigError("no FC client to hand work on with")
            client = functions()
        except ConfigError as exc:
            raise InvokeFunctionError("ConfigError", str(exc), transient=False) from None
        left = invocation.deadline - pacing.clock()
        if left < pacing.MIN_CALL_SECONDS:
            raise InvokeFunctionError("DeadlineReached", "no time left to hand the rest on", transient=True)
        try:
            client.invoke_async(
                target, payload, delay=0, task_id=cont.task_id, timeout=min(left, job.settings.read_timeout)
            )
            return
        except InvokeFunctionError as exc:
            if exc.duplicate:  # an earlier attempt (ours, or the same part's retry) queued it
                return
            attempt += 1
            if not exc.transient or attempt >= pacing.MAX_ATTEMPTS:
                raise
            delay = pacing.backoff(attempt, exc.retry_after)
            if pacing.clock() + delay + pacing.MIN_CALL_SECONDS > invocation.deadline:
                raise
            pacing.sleep(delay)


def _refused_records(job: Job, cont: Continuation, part: list[Target], exc: InvokeFunctionError) -> list[Outcome]:
    message = (
        f"not rerun: handing it to a continuation ({cont.task_id}) failed: InvokeFunction {exc.code}: {exc.message}. "
        "Send the same filter again to pick it up"
    )
    return [_bare(job, t.instance_id, Reason.DEFERRED, message, exc.code, t.listed) for t in part]


def _bare(
    job: Job, instance_id: int, reason: str, message: str, error_code: str | None = None, instance=None
) -> Outcome:
    """The outcome of an instance no rerun.run saw: skipped before any call about it."""
    return skipped(instance_id, reason, message, error_code=error_code, instance=instance)


def _quota_exhausted(job: Job, instance_id: int, code: str, instance=None) -> Outcome:
    return quota_exhausted(instance_id, code, "Send the filter again once the limit clears", instance=instance)


def _write(job: Job, outcomes: list[Outcome]) -> None:
    records.write_outcomes(outcomes, job.origin)


def _summary(job: Job, written: list[Outcome], started: float, *, outcome: str, **extra) -> dict:
    duration_ms = (pacing.clock() - started) * 1000
    return records.write_summary(job.origin, written, duration_ms, dryRunMode=job.dry_run, outcome=outcome, **extra)
