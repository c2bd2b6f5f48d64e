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
from dataclasses import replace

from dwrerun import function_compute, pacing, records, schedule, schema, storm
from dwrerun.dataworks import DataWorksError, client_for, credentials_from, task_instance
from dwrerun.job import Job, Target, time_left
from dwrerun.outcome import Outcome
from dwrerun.rerun import RetryLater, run
from dwrerun.schema import Reason, Summary


def handle(job: Job, step: storm.Step, settings, invocation, context, started: float, write_all) -> dict:
    """Run one storm step; `write_all(job, outcomes, started, outcome=...)` writes the records."""
    if step.step in ("tally", "opened"):
        return {"kind": "storm", "step": step.step}
    credentials = credentials_from(os.environ, context)
    tag = storm.release_tag(step.cause, step.epoch)

    def functions():
        return function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)

    def dataworks():
        return client_for(credentials, settings, invocation.region)

    tasks = function_compute.AsyncTasks(functions(), job.function_name, settings.read_timeout)
    limits = storm.Limits.of(settings)
    now = schedule.clock()
    origin = job.origin
    if step.step == "close":
        note = storm.Note(
            storm.CLOSED,
            step.cause,
            step.epoch,
            f"storm {step.cause.label} #{step.epoch} closed: its release is over ({step.get('released', 0)} released)",
            count=step.get("released"),
        )
        records.write(records.storm_record(note, origin))
        return write_all(job, [], started, outcome=Summary.DONE)
    instance_id, run_number = step.get("instanceId"), step.get("runNumber")
    fields = {"storm_cause": step.cause.label, "storm_id": tag}
    if step.step == "canary":
        outcomes: list[Outcome] = []

        def rerun_now(instance: int, failed_run: int) -> bool:
            outcomes.extend(_rerun(job, step, tag, instance, failed_run, dataworks(), functions))
            return any(o.started for o in outcomes)

        result = storm.on_canary(step, tasks, limits, now, rerun_now)
        slot_id = storm.canary_id(step.cause, step.epoch, step.get("slot", 1))
        outcomes = [replace(o, async_task_id=slot_id, **fields) for o in outcomes]
        return _done(job, outcomes, result, origin, started, write_all)
    if step.step == "check":
        client = dataworks()

        def read(instance: int):
            limiter = pacing.limiter("read", settings.read_qps)
            try:
                limiter.acquire(job.deadline - pacing.MIN_CALL_SECONDS)
                seen = task_instance(client.get_task_instance(instance, time_left(job)))
            except (DataWorksError, pacing.DeadlineReached):
                return None  # looked at again in a minute
            limiter.passed()
            return seen.status, seen.run_number

        result = storm.on_check(step, tasks, limits, now, read)
        return _done(job, [], result, origin, started, write_all)
    # hold
    if not limits.on:  # the guard was turned off meanwhile: today's behaviour, at once
        return write_all(
            job, _rerun(job, step, tag, instance_id, run_number, dataworks(), functions), started, outcome=Summary.DONE
        )
    result = storm.on_hold(step, tasks, limits, now)
    due = schedule.due_at(0, result.next_check) if result.next_check is not None else None
    if result.verdict == "held":
        outcome = Outcome(instance_id, schema.HELD, Reason.STORM, result.message, due_at=due, **fields)
    elif result.verdict == "released":
        release = schedule.ScheduledRerun(instance_id, run_number, due or schedule.due_at(0), storm=tag)
        message = f"{result.message}: released (FC async task {release.async_task_id})"
        outcome = Outcome(
            instance_id,
            schema.SCHEDULED,
            Reason.ELIGIBLE,
            message,
            due_at=due,
            async_task_id=release.async_task_id,
            **fields,
        )
    elif result.verdict == "expired":
        outcome = Outcome(instance_id, schema.SKIP, Reason.STORM_HOLD_EXPIRED, result.message, **fields)
    else:  # fail-open: FC unreachable even to queue its release: rerun now, as today
        return write_all(
            job, _rerun(job, step, tag, instance_id, run_number, dataworks(), functions), started, outcome=Summary.DONE
        )
    return _done(job, [outcome], result, origin, started, write_all)


def _rerun(job: Job, step: storm.Step, tag: str, instance_id: int, run_number: int, dataworks, functions):
    """The pipeline for one instance at once, as a delayed invocation of its failed run (every guard
    again; rerun only if that run is still its latest). Tagged with the storm, so the guard lets it go."""
    scheduled = schedule.ScheduledRerun(
        instance_id, run_number, schedule.due_at(0), step.get("eventId"), step.cause.rule, storm=tag
    )
    try:
        return run(job, [Target(instance_id, step.get("eventId"), scheduled=scheduled)], dataworks, functions)
    except RetryLater as exc:  # FC retries the task; the records say so
        return exc.outcomes


def _done(job: Job, outcomes: list[Outcome], result: storm.Result, origin, started: float, write_all) -> dict:
    for note in result.notes:
        records.write(records.storm_record(note, origin))
    return write_all(job, outcomes, started, outcome=Summary.DONE)
