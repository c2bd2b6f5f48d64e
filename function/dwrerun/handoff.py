"""The part of a rerun by filter that outlives its request: handing parts on, and running them.

    HTTP function (bulk.py)                         event function (asynchronous invocations)
    list the selection (ListTaskInstances)
    check the plan token (plan.py)
    hand parts 2..n on (InvokeFunction) ----------> part k: reread its instances (ListTaskInstances
    work on part 1 until the time is up                     by Ids), work until the time is up,
    hand what is left on, answer 202                        hand what is left on to its next hop

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

from dataclasses import replace

from dwrerun import continuation, pacing, selection
from dwrerun.batches import Work, bare, filter_job, quota_skip, summary, work, write
from dwrerun.config import ConfigError, Settings
from dwrerun.continuation import Continuation
from dwrerun.dataworks import DataWorksError
from dwrerun.function_compute import InvokeFunctionError
from dwrerun.invocation import Invocation
from dwrerun.job import Job, Target
from dwrerun.outcome import Outcome
from dwrerun.schema import Reason, Summary

MAX_STALLS = 3  # hops in a row that finish no instance: the chain stops and records why


class ContinueLater(Exception):
    """A continuation could not start its work or hand its rest on (DataWorks or FC kept failing
    transiently): raised on purpose so FC retries it. Its records are already written."""


def continuation_function(own_name: str) -> str:
    """The event function that runs continuations: template.yml names the two functions
    `<namePrefix>-event` and `<namePrefix>-http`; the event function continues itself."""
    return own_name[: -len("-http")] + "-event" if own_name.endswith("-http") else own_name


# --- the HTTP function's side -----------------------------------------------------------------


def hand_on_parts(
    job: Job, request, functions, parts: list[list[Target]], first_part: int, invocation: Invocation
) -> tuple[list[Continuation], list[Outcome]]:
    """Queue each part of `request` (a bulk.Request) as an asynchronous invocation; (the
    continuations queued, outcomes of the instances whose part FC refused, written)."""
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
            invoke(job, functions, cont, invocation)
        except InvokeFunctionError as exc:
            written += _refused(cont, part, exc)
            continue
        handed.append(cont)
    write(job, written)
    return handed, written


def invoke(job: Job, functions, cont: Continuation, invocation: Invocation) -> None:
    """InvokeFunction (async) of the event function with the part; retried while transient and
    time is left. FC's 409 for the part's task id means it is queued already: done.
    A part larger than a continuation carries is refused before any call (PartTooLarge, not
    transient): the event function would refuse its payload, and its instances would end unrecorded."""
    if len(cont.instances) > continuation.MAX_INSTANCES:
        raise InvokeFunctionError(
            "PartTooLarge",
            f"{len(cont.instances)} instances, more than the {continuation.MAX_INSTANCES} a continuation carries",
            transient=False,
        )
    target = continuation_function(invocation.function_name)
    payload = cont.to_payload(job.settings.signing_key)
    clients = [_client(functions)]  # the first before any time check, as a bad setting comes first

    def queue(left: float) -> None:
        client = clients.pop() if clients else _client(functions)  # each attempt with a fresh client
        try:
            client.invoke_async(
                target, payload, delay=0, task_id=cont.task_id, timeout=min(left, job.settings.read_timeout)
            )
        except InvokeFunctionError as exc:
            if not exc.duplicate:  # a duplicate: an earlier attempt (ours, or the part's retry) queued it
                raise

    try:
        pacing.retry(queue, deadline=invocation.deadline, transient=_transient)
    except pacing.DeadlineReached:
        raise InvokeFunctionError("DeadlineReached", "no time left to hand the rest on", transient=True) from None


def _client(functions):
    """The FC client `functions()` makes; no client is a configuration error, never retried."""
    try:
        if functions is None:
            raise ConfigError("no FC client to hand work on with")
        return functions()
    except ConfigError as exc:
        raise InvokeFunctionError("ConfigError", str(exc), transient=False) from None


def _transient(exc: Exception) -> bool:
    return isinstance(exc, InvokeFunctionError) and exc.transient


def _refused(cont: Continuation, part: list[Target], exc: InvokeFunctionError) -> list[Outcome]:
    message = (
        f"not rerun: handing it to a continuation ({cont.task_id}) failed: InvokeFunction {exc.code}: {exc.message}. "
        "Send the same filter again to pick it up"
    )
    return [bare(t.instance_id, Reason.DEFERRED, message, exc.code, t.listed) for t in part]


# --- the event function's side ----------------------------------------------------------------


def continue_(
    cont: Continuation, settings: Settings, rule_set, rules_error, invocation: Invocation, dataworks_for, functions
) -> dict:
    """Run one continuation part in the event function; returns the invocation's summary record.

    `dataworks_for()` makes the DataWorks client. Raises ContinueLater (records written) when FC
    should retry the whole part: nothing is lost, and nothing is rerun twice.
    """
    started = pacing.clock()
    job = filter_job(
        invocation, settings, rule_set, cont, origin_request_id=cont.origin_request_id, dry_run=settings.dry_run
    )
    ids = [i for i, _ in cont.instances]
    if rules_error is not None:  # a bad rules file: FC retrying cannot fix it
        written = [bare(i, Reason.CONFIG_ERROR, str(rules_error)) for i in ids]
        write(job, written)
        return summary(job, written, started, outcome=Summary.DONE)
    dataworks = dataworks_for()
    try:
        current = selection.reread(
            dataworks, cont.project_id, cont.bizdate, cont.project_env, ids, settings, job.deadline
        )
    except DataWorksError as exc:
        if exc.quota_exhausted:
            written = [quota_skip(i, exc.code) for i in ids]
            write(job, written)
            return summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED)
        summary(job, [], started, outcome=Summary.RETRY, error=exc.code)
        raise ContinueLater(f"ListTaskInstances kept failing ({exc.code}): FC retries the continuation") from None
    except pacing.DeadlineReached:
        summary(job, [], started, outcome=Summary.RETRY, error="DeadlineReached")
        raise ContinueLater("no time left to reread the continuation's instances") from None
    missing = [
        bare(i, Reason.LOOKUP_FAILED, "ListTaskInstances no longer lists it (deleted, or no longer in this project, "
             "business date and environment): not rerun")
        for i in ids
        if i not in current
    ]  # fmt: skip
    write(job, missing)
    targets = [Target(i, listed=current[i], failed_run=run_) for i, run_ in cont.instances if i in current]
    done = work(job, targets, dataworks)
    written = missing + done.outcomes
    if done.leftover and done.quota is None:
        written += _carry_on(job, cont, done, written, functions, invocation, started)
    return summary(job, written, started, outcome=Summary.QUOTA_EXHAUSTED if done.quota else Summary.DONE)


def _carry_on(
    job: Job, cont: Continuation, done: Work, written: list[Outcome], functions, invocation: Invocation, started: float
) -> list[Outcome]:
    """Hand what the part left to its next hop; or, after MAX_STALLS hops in a row that finished
    nothing (`written` is what this one finished), stop and record why. Returns the outcomes this
    wrote: the instances not handed on."""
    stalls = 0 if written else cont.stalls + 1
    if stalls >= MAX_STALLS:
        why = done.error.code if done.error else "the time ran out"
        gave_up = [
            bare(t.instance_id, Reason.DEFERRED,
                 f"not rerun: {MAX_STALLS} continuations in a row finished no instance ({why}); send the filter "
                 "again once DataWorks answers", done.error.code if done.error else None, t.listed)
            for t in done.leftover
        ]  # fmt: skip
        write(job, gave_up)
        return gave_up
    nxt = replace(
        cont, hop=cont.hop + 1, stalls=stalls, instances=tuple((t.instance_id, t.failed_run) for t in done.leftover)
    )
    try:
        invoke(job, functions, nxt, invocation)
    except InvokeFunctionError as exc:
        if exc.transient:
            summary(job, written, started, outcome=Summary.RETRY, error=exc.code)
            raise ContinueLater(f"InvokeFunction kept failing ({exc.code}): FC retries the continuation") from None
        refused = _refused(nxt, done.leftover, exc)
        write(job, refused)
        return refused
    return []
