"""The two ways a decided rerun goes out: queued for later (InvokeFunction), or now (RerunTaskInstances).

`schedule` queues each rerun that waits a delay as a delayed invocation of the event function,
with an async task id per instance and failed run: FC refuses a copy with 409, which is
`already-scheduled`. FC refusing for good (no permission, task mode off) falls back to a rerun at
once.

`rerun` sends the others in chunks of RERUN_CHUNK_SIZE, one RerunTaskInstances call per chunk of
instances that start the same run number, so each call's Comment says which run it starts. Its
`SuccessInfo` is read per instance: accepted is recorded; refused or unclear (no entry, a lost
answer) sends the instance back to be read again, because someone else may have rerun it first,
or our own request may have gone through (rerun.py reads the RunNumber to tell).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from dwrerun import function_compute, pacing, schema, storm
from dwrerun import schedule as timing
from dwrerun.config import ConfigError
from dwrerun.dataworks import DataWorks, DataWorksError
from dwrerun.function_compute import FunctionCompute, InvokeFunctionError
from dwrerun.job import Item, Job, QuotaWatch, Refusal, Unclear, paced, time_left
from dwrerun.outcome import refused
from dwrerun.schedule import ScheduledRerun
from dwrerun.schema import Reason

COMMENT_EVENTS = 3  # event ids named in one RerunTaskInstances Comment, to keep it short


def guard(job: Job, functions: Callable[[], FunctionCompute] | None, items: list[Item]) -> None:
    """The storm guard (storm.py), for the event path's failures and delayed invocations: an item of
    a cause in storm is held (done: `held`), or becomes the storm's canary (done: `scheduled`); the
    others go on. Any error of the guard's own calls lets the item go on, as if no guard existed."""
    limits = storm.Limits.of(job.settings)
    if not job.storm_guarded or not limits.on or functions is None:
        return
    tasks = None
    for item in items:
        if not item.open or item.decision is None or not item.decision.rerun:
            continue
        scheduled = item.target.scheduled
        swept = scheduled is not None and scheduled.swept  # the sweep's: counted as its event would have been
        if scheduled is not None and scheduled.storm is not None:
            continue  # a storm's own release or canary: the guard let it go already
        if scheduled is None and not item.delay:
            continue  # rerun at once (FC refused to schedule, or a zero hint): nothing to coordinate with
        rule = item.verdict.rule if item.verdict is not None else (scheduled.rule if scheduled else None)
        project = item.instance.project_id if item.instance is not None else None
        if rule is None or project is None or item.instance.run_number is None:
            continue  # no log read, so no cause to count it under: as today
        if tasks is None:
            try:
                tasks = function_compute.AsyncTasks(
                    functions(), job.function_name, job.settings.read_timeout, job.settings.signing_key
                )
            except ConfigError:
                return
        cause = storm.Cause(project, rule)
        said = storm.on_failure(
            tasks,
            limits,
            cause,
            item.target.instance_id,
            item.instance.run_number,
            timing.clock(),
            delay=item.delay or (1 if swept else 0),
            event_id=item.target.event_id,
            counts=scheduled is None or swept,
        )
        _guarded(job, item, said)


def _guarded(job: Job, item: Item, said: storm.Decision) -> None:
    cause = said.cause
    tag = storm.release_tag(cause, said.epoch) if said.epoch else None
    fields = {"storm_cause": cause.label, "storm_id": tag, "notes": tuple(said.notes)}
    if said.action == storm.PROCEED:
        if said.error is not None:
            item.guard_note = f"{said.message} (failed open)"
            item.decision = replace(item.decision, message=f"{item.decision.message}; {item.guard_note}")
        return
    if said.action == storm.CANARY_ACTION:
        item.finish(
            job,
            schema.SCHEDULED,
            None,
            Reason.ELIGIBLE,
            said.message,
            due_at=timing.due_at(item.delay),
            async_task_id=storm.canary_id(cause, said.epoch, 1),
            **fields,
        )
        return
    item.delay = 0
    item.finish(
        job,
        schema.HELD,
        None,
        Reason.STORM,
        said.message,
        due_at=timing.due_at(0, said.next_check),
        **fields,
    )


def schedule(job: Job, functions: Callable[[], FunctionCompute] | None, items: list[Item]) -> None:
    """Queue each item's rerun as a delayed invocation of this function (FC InvokeFunction)."""
    for item in items:
        item.error = None
        scheduled = ScheduledRerun(
            instance_id=item.target.instance_id,
            failed_run_number=item.instance.run_number,
            due_at=item.due_at,
            event_id=item.target.event_id,
            rule=item.verdict.rule if item.verdict else None,
        )
        try:
            if functions is None:
                raise ConfigError("this invocation cannot schedule (no FC client)")
            client = functions()
        except ConfigError as exc:
            _rerun_at_once(item, InvokeFunctionError("ConfigError", str(exc), transient=False))
            continue
        timeout = time_left(job)
        item.attempts += 1
        try:
            client.invoke_async(
                job.function_name,
                scheduled.to_payload(job.settings.signing_key),
                delay=item.delay,
                task_id=scheduled.async_task_id,
                timeout=timeout,
            )
        except InvokeFunctionError as exc:
            if exc.duplicate and item.schedule_sent:  # our own earlier request got through
                _scheduled(job, item, scheduled, "FC's 409 confirms the earlier request")
            elif exc.duplicate:
                item.due_at, item.delay = None, 0
                item.finish(
                    job,
                    schema.SKIP,
                    None,
                    Reason.ALREADY_SCHEDULED,
                    f"the rerun of run {scheduled.failed_run_number} is already scheduled (FC async task "
                    f"{scheduled.async_task_id} exists: a copy of this failure got there first)",
                    async_task_id=scheduled.async_task_id,
                )
            elif exc.transient:
                item.error = exc
                item.schedule_sent = item.schedule_sent or exc.ambiguous
            else:
                _rerun_at_once(item, exc)
            continue
        _scheduled(job, item, scheduled)


def _scheduled(job: Job, item: Item, scheduled: ScheduledRerun, note: str = "") -> None:
    message = (
        f"run {scheduled.failed_run_number} failed: rerun as run {scheduled.failed_run_number + 1} "
        f"in {item.delay} s, at about {item.due_at} (FC async task {scheduled.async_task_id})"
    )
    message = f"{message}; {note}" if note else message
    item.finish(
        job,
        schema.SCHEDULED,
        None,
        Reason.ELIGIBLE,
        f"{message}; {item.guard_note}" if item.guard_note else message,
        async_task_id=scheduled.async_task_id,
    )


def _rerun_at_once(item: Item, refusal: InvokeFunctionError) -> None:
    """FC will not schedule (no permission, async task mode off, no endpoint): rerun now instead."""
    item.schedule_refused = refusal
    item.delay, item.due_at = 0, None


def rerun(job: Job, dataworks: DataWorks, items: list[Item], quota: QuotaWatch) -> None:
    """RerunTaskInstances for the items, a chunk per call; stops at a used-up quota."""
    by_run: dict[int, list[Item]] = {}
    for item in items:
        by_run.setdefault((item.instance.run_number or 0) + 1, []).append(item)
    size = job.settings.chunk_size
    for next_run, group in sorted(by_run.items()):
        for start in range(0, len(group), size):
            if quota.error is not None:  # the daily limit or edition quota: send nothing more
                return
            chunk = group[start : start + size]
            _rerun_chunk(job, dataworks, comment(job, next_run, chunk), chunk, quota)


def _rerun_chunk(job: Job, dataworks: DataWorks, comment: str, chunk: list[Item], quota: QuotaWatch) -> None:
    limiter = pacing.limiter("write", job.settings.write_qps)
    limiter.acquire(job.deadline - pacing.MIN_CALL_SECONDS)
    timeout = time_left(job)
    for item in chunk:
        item.error = None
        item.attempts += 1
    started = pacing.clock()
    try:
        request_id, success_info = dataworks.rerun_task_instances(
            [item.target.instance_id for item in chunk], comment, timeout, use_latest_config=job.use_latest_config
        )
    except DataWorksError as exc:
        paced(limiter, exc)
        if exc.quota_exhausted:  # refused before anything happened: nothing to read back
            quota.saw(exc)
        for item in chunk:
            item.rerun_ms = (pacing.clock() - started) * 1000
            if exc.quota_exhausted:
                continue
            if not exc.transient:
                message = refused("RerunTaskInstances", exc, item.instance.project_id)
                item.finish(job, schema.RERUN, False, Reason.RERUN_REFUSED, message, exc)
                continue
            item.error = exc
            if exc.ambiguous:  # it may have happened: read the instance again before resending
                item.unclear = Unclear(item.instance.run_number, exc)
                item.read_again()
        return
    limiter.passed()
    for item in chunk:
        item.rerun_ms = (pacing.clock() - started) * 1000
        _answered(job, item, success_info.get(str(item.target.instance_id)), request_id)


def _answered(job: Job, item: Item, info, request_id: str) -> None:
    """One instance's SuccessInfo entry."""
    if not isinstance(info, dict) or not isinstance(info.get("Success"), bool):
        # No verdict for this id: treat like an unanswered request and read the instance again.
        missing = DataWorksError("RerunTaskInstances", "MissingSuccessInfo", "no SuccessInfo entry", transient=True)
        item.unclear = Unclear(item.instance.run_number, missing)
        item.read_again(missing)
        return
    if not info["Success"]:
        # Refused. If someone else reran the instance since it was read (another copy of the
        # event on another FC instance, an operator), that is why: read it again to tell.
        item.refusal = Refusal(item.instance.run_number, str(info.get("Message") or "no message"), request_id)
        item.read_again()
        return
    # Accepted. DataWorks' own message, else (when a log was looked at) why it was rerun: the rule
    # that matched, or why no log could be read.
    message = str(info.get("Message") or (item.decision.message if item.verdict else ""))
    item.finish(job, schema.RERUN, True, Reason.ELIGIBLE, message, dataworks_request_id=request_id)


def comment(job: Job, next_run: int, chunk: list[Item]) -> str:
    """What DataWorks' operation log shows for the call: who reran, why, and which run this starts."""
    latest = ", with the latest configuration" if job.use_latest_config else ""
    if job.manual:
        origin = f"{job.comment} " if job.comment else ""
        if job.origin_request_id is not None:  # a bulk rerun by filter: the HTTP request that selected it
            how = f"bulk rerun by filter over HTTP, FC request {job.origin_request_id}"
            if job.request_id != job.origin_request_id:
                how += f" (continued in {job.request_id})"
        else:
            how = f"manual rerun over HTTP, FC request {job.request_id}"
        return f"{origin}[{job.function_name}: {how}, run {next_run}{latest}]"
    scheduled = [item.target.scheduled for item in chunk if item.target.scheduled]
    if scheduled and scheduled[0].swept:  # a failed run the sweep found undecided: one instance
        return (
            f"[{job.function_name}: rerun by the sweep (FC async task {scheduled[0].async_task_id}): no failure "
            f"event had been handled for run {next_run - 1}; run {next_run} of at most {job.settings.max_reruns + 1}]"
        )
    if scheduled:  # a delayed invocation: one instance
        first = scheduled[0]
        return (
            f"[{job.function_name}: scheduled rerun (FC async task {first.async_task_id}, due {first.due_at}) "
            f"after failure event {first.event_id or '(RawData)'}; run {next_run} of at most {job.settings.max_reruns + 1}]"
        )
    event_ids = [item.target.event_id or "(RawData)" for item in chunk]
    shown = ", ".join(event_ids[:COMMENT_EVENTS])
    if len(event_ids) > COMMENT_EVENTS:  # the SLS records of the FC request list every one
        shown += f" and {len(event_ids) - COMMENT_EVENTS} more, FC request {job.request_id}"
    return (
        f"[{job.function_name}: automatic rerun after failure event {shown}; "
        f"run {next_run} of at most {job.settings.max_reruns + 1}]"
    )
