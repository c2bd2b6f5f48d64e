"""The storm guard's own tasks when they come due: the event function's side of storm.py.

storm.py decides; this runs what it decided with the event function's clients and writes the
records. Each task is an asynchronous invocation of the event function whose payload is a storm step:

    tally, opened   nothing to do (they exist to be listed)
    canary          rerun the canary now, through the pipeline (rerun.run), then check it
    check           read the canary (one GetTaskInstance): release, look again, or the next canary
    hold            a held instance looks again: released, held on, or given up
    close           the release's ramp is over: the storm's closing record

A held instance's release is a ScheduledRerun tagged with its storm (schedule.py), which the
event function runs like any delayed invocation; the guard lets a tagged one through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from dwrerun import canary, function_compute, pacing, records, schedule, schema, storm
from dwrerun.dataworks import DataWorksError, client_for, credentials_from, task_instance
from dwrerun.job import Job, Target, time_left
from dwrerun.outcome import Outcome
from dwrerun.rerun import RetryLater, run
from dwrerun.schema import Reason, Summary


@dataclass
class _Ctx:
    """What every step needs: the job, its clients (made when first used), the guard's limits, now."""

    job: Job
    step: storm.Step
    settings: object
    functions: object  # () -> FunctionCompute
    dataworks: object  # () -> DataWorks
    tasks: object  # function_compute.AsyncTasks
    limits: storm.Limits
    now: float

    @property
    def tag(self) -> str:
        return storm.release_tag(self.step.cause, self.step.epoch)

    @property
    def fields(self) -> dict:
        return {"storm_cause": self.step.cause.label, "storm_id": self.tag}

    def rerun(self, instance_id: int, run_number: int) -> list[Outcome]:
        return _rerun(self.job, self.step, self.tag, instance_id, run_number, self.dataworks(), self.functions)


# Steps whose task only marks a moment (a failure counted, a storm opened, its release begun),
# which the guard reads by listing or getting it: nothing to do when due.
MARKERS = ("tally", "opened", "release")


def handle(job: Job, step: storm.Step, settings, invocation, context, started: float, write_all) -> dict:
    """Run one storm step; `write_all(job, outcomes, started, outcome=...)` writes the records."""
    if step.step in MARKERS:
        return {"kind": schema.STORM_KIND, "step": step.step}
    credentials = credentials_from(os.environ, context)

    def functions():
        return function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)

    def dataworks():
        return client_for(credentials, settings, invocation.region)

    tasks = function_compute.AsyncTasks(functions(), job.function_name, settings.read_timeout, settings.signing_key)
    ctx = _Ctx(job, step, settings, functions, dataworks, tasks, storm.Limits.of(settings), schedule.clock())
    if step.step == "close":
        released = step.get("released", 0)
        message = f"storm {step.cause.label} #{step.epoch} closed: its release is over ({released} released)"
        note = storm.Note(storm.CLOSED, step.cause, step.epoch, message, count=step.get("released"))
        return _done(job, [], canary.Result([note]), started, write_all)
    try:
        outcomes, result = {"canary": _canary, "check": _check}.get(step.step, _hold)(ctx)
    except RetryLater as exc:  # DataWorks kept failing: FC retries the step, and its records say so
        write_all(job, exc.outcomes, started, outcome=Summary.RETRY, error=exc.error.code if exc.error else None)
        raise
    return _done(job, outcomes, result, started, write_all)


def _canary(ctx: _Ctx) -> tuple[list[Outcome], canary.Result]:
    """Rerun the canary now, through the pipeline; its records name the canary's task."""
    outcomes: list[Outcome] = []

    slot_id = storm.canary_id(ctx.step.cause, ctx.step.epoch, ctx.step.get("slot", 1))

    def rerun_now(instance: int, failed_run: int) -> bool:
        try:
            outcomes.extend(ctx.rerun(instance, failed_run))
        except RetryLater as exc:  # not "not rerun": undecided, so the chain waits for FC's retry
            exc.outcomes = [replace(o, async_task_id=slot_id, **ctx.fields) for o in exc.outcomes]
            raise
        return any(o.started for o in outcomes)

    result = canary.on_canary(ctx.step, ctx.tasks, ctx.limits, ctx.now, rerun_now)
    return [replace(o, async_task_id=slot_id, **ctx.fields) for o in outcomes], result


def _check(ctx: _Ctx) -> tuple[list[Outcome], canary.Result]:
    """Read the canary once (paced like every read); an unread canary is looked at again."""
    client, job = ctx.dataworks(), ctx.job

    def read(instance: int):
        limiter = pacing.limiter("read", ctx.settings.read_qps)
        try:
            limiter.acquire(job.deadline - pacing.MIN_CALL_SECONDS)
            seen = task_instance(client.get_task_instance(instance, time_left(job)))
        except (DataWorksError, pacing.DeadlineReached):
            return None
        limiter.passed()
        return seen.status, seen.run_number

    return [], canary.on_check(ctx.step, ctx.tasks, ctx.limits, ctx.now, read)


def _hold(ctx: _Ctx) -> tuple[list[Outcome], canary.Result]:
    """A held instance's look: its record says held on, released, or given up."""
    step = ctx.step
    instance_id, run_number = step.get("instanceId"), step.get("runNumber")
    if not ctx.limits.on:  # the guard was turned off meanwhile: today's behaviour, at once
        return ctx.rerun(instance_id, run_number), canary.Result()
    result = canary.on_hold(step, ctx.tasks, ctx.limits, ctx.now)
    due = schedule.due_at(0, result.next_check) if result.next_check is not None else None
    if result.verdict == "held":
        return [Outcome(instance_id, schema.HELD, Reason.STORM, result.message, due_at=due, **ctx.fields)], result
    if result.verdict == "released":
        release = schedule.ScheduledRerun(instance_id, run_number, due or schedule.due_at(0), storm=ctx.tag)
        message = f"{result.message}: released (FC async task {release.async_task_id})"
        released = Outcome(
            instance_id,
            schema.SCHEDULED,
            Reason.ELIGIBLE,
            message,
            due_at=due,
            async_task_id=release.async_task_id,
            **ctx.fields,
        )
        return [released], result
    if result.verdict == "expired":
        return [Outcome(instance_id, schema.SKIP, Reason.STORM_HOLD_EXPIRED, result.message, **ctx.fields)], result
    return ctx.rerun(instance_id, run_number), result  # fail-open: FC unreachable: rerun now, as today


def _rerun(job: Job, step: storm.Step, tag: str, instance_id: int, run_number: int, dataworks, functions):
    """The pipeline for one instance at once, as a delayed invocation of its failed run (every guard
    again; rerun only if that run is still its latest). Tagged with the storm, so the guard lets it go."""
    scheduled = schedule.ScheduledRerun(
        instance_id, run_number, schedule.due_at(0), step.get("eventId"), step.cause.rule, storm=tag
    )
    # RetryLater (DataWorks kept failing transiently) goes up to handle(): FC retries the step.
    return run(job, [Target(instance_id, step.get("eventId"), scheduled=scheduled)], dataworks, functions)


def _done(job: Job, outcomes: list[Outcome], result: canary.Result, started: float, write_all) -> dict:
    """Write the step's storm records, then its instance records and summary."""
    for note in result.notes:
        records.write(records.storm_record(note, job.origin))
    return write_all(job, outcomes, started, outcome=Summary.DONE)
