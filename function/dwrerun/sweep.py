"""The sweep: find every failed run that no event decided, and hand each to a decision (issue 23).

Events are the fast path; a failure whose event never comes (a rule pattern that does not match,
OpenEvent off or pointed at another bus, EventBridge or FC giving up, the function redeployed) is
found here. For workspaces without OpenEvent (below Enterprise) the sweep is the only path.

    FC timer trigger (vars.sweepSchedule) -> event function, payload "dwrerun-sweep"
      for each workspace in RERUN_PROJECT_IDS, each business date the window covers:
        ListTaskInstances (Status Failure, Prod, FinishedTime in [now - lookback, now - grace])
      for each failed run listed, oldest first:
        claim it: InvokeFunction with the async task id of its rerun, dwrerun-<instance>-run-<N>
          409 -> already decided (an event scheduled its rerun, or an earlier sweep claimed it)
          202 -> missed: the delayed invocation decides it as its event would have
      one summary record (kind summary, trigger sweep)

The decided-check is the claim (docs/sweep.md says why, and where it can be wrong): the FC async
task id that the event path already uses for the rerun of a failed run. Every failed run the sweep
hands on is claimed under that id first, so FC's 409 keeps it to one decision against the event
path, against an overlapping sweep and against the sweep's own retry. A failed run the event path
reran at once is no longer a failed run at that RunNumber: ListTaskInstances does not show it, and
DataWorks' state (the `failed_run` guard, a refused rerun read back) is the last line.

The claimed run is decided in the delayed invocation (event_function, `Job.for_sweep`): the
event path's guards, DataWorks' own rerun, the failure rules, then a rerun at once (the claim
waited what was left of the run's backoff). Its record says `trigger: sweep` and `missedEvent`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dwrerun import pacing, records, schedule, selection, strictjson
from dwrerun.config import FC_MAX_ASYNC_DELAY, ConfigError, Settings
from dwrerun.dataworks import DataWorksError
from dwrerun.function_compute import InvokeFunctionError
from dwrerun.invocation import Invocation
from dwrerun.job import Job
from dwrerun.outcome import Outcome, skipped
from dwrerun.policy import Instance
from dwrerun.schema import Reason, Summary

PAYLOAD = "dwrerun-sweep"  # the timer trigger's payload (template.yml): how the function knows a sweep
TIMER_KEYS = frozenset({"triggerTime", "triggerName", "payload"})  # FC's timer event (docs/inferred-facts.md)
PROJECT_ENV = "Prod"  # the sweep looks at production instances only
CLAIM_RESERVE = 3.0  # seconds kept at the end to write the records
CLAIM_TRIES = 3  # InvokeFunction attempts per claim on a transient error; then the next sweep takes it
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Timer:
    """FC's timer event: `{"triggerTime": "2026-12-07T02:10:00Z", "triggerName": "sweep", "payload": "..."}`."""

    trigger_time: str
    trigger_name: str


def parse(event: bytes | str) -> Timer | None:
    """The sweep's timer event; None for anything else (a timer with another payload is left to
    the event parser, which ignores it as not a failure)."""
    raw = event.encode() if isinstance(event, str) else event
    if b'"triggerName"' not in raw:  # cheap: a CloudEvent or a scheduled rerun never carries it
        return None
    try:
        body = strictjson.loads(raw)  # a repeated key: left to the event parser, which names it
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(body, dict) or set(body) != TIMER_KEYS or not all(isinstance(v, str) for v in body.values()):
        return None
    if body["payload"].strip() != PAYLOAD:
        return None
    return Timer(body["triggerTime"], body["triggerName"])


@dataclass(frozen=True)
class Window:
    """The failed runs a sweep looks at: those whose failed run ended in [start, end] (epoch ms)."""

    start: int
    end: int

    @classmethod
    def at(cls, now: float, settings: Settings) -> Window:
        now_ms = int(now * 1000)
        return cls(now_ms - settings.sweep_lookback * 1000, now_ms - settings.sweep_grace * 1000)

    def bizdates(self) -> list[int]:
        """The business dates (00:00 China time, epoch ms) whose instances can have failed runs in the window.

        A periodic instance scheduled on day D carries business date D - 1, and its run can end on D
        or, late or rerun, on D + 1: so the dates run from the window's first day - 2 to its last
        day - 1. A backfill's older dates, and a run that ends more than a day after its scheduled
        day, are not seen (docs/sweep.md)."""
        first = _day(self.start) - timedelta(days=2)
        last = _day(self.end) - timedelta(days=1)
        days = []
        while first <= last:
            days.append(int(first.timestamp() * 1000))
            first += timedelta(days=1)
        return days


def _day(ms: int) -> datetime:
    moment = datetime.fromtimestamp(ms / 1000, selection.BIZDATE_ZONE)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Tally:
    """What the sweep did, for its summary record."""

    listed: int = 0
    already_decided: int = 0
    missed: int = 0
    left: int = 0
    calls: int = 0
    pages: int = 0
    error: str | None = None
    outcome: str = Summary.DONE
    written: list[Outcome] = field(default_factory=list)


class _Counted:
    """The DataWorks client, counting ListTaskInstances pages (every call the sweep makes there)."""

    def __init__(self, client, tally: Tally):
        self._client, self._tally = client, tally

    def list_task_instances(self, params, timeout):
        self._tally.pages += 1
        self._tally.calls += 1
        return self._client.list_task_instances(params, timeout)


def handle(timer: Timer, context, invocation: Invocation, settings: Settings, config_error, started: float) -> dict:
    """One sweep, from the timer's invocation; returns its summary record (written last)."""
    from dwrerun import function_compute
    from dwrerun.dataworks import client_for, credentials_from

    job = Job.for_sweep(invocation, settings, None)
    window = Window.at(schedule.clock(), settings)
    tally = Tally()
    if config_error is not None:
        _config_error(tally, f"the sweep did not run: {config_error}")
    elif not settings.sweep_projects:
        # ListProjects would list the workspaces of the tenant, not those where the function's role
        # is a member with an O&M role (docs/sweep.md): guessing would read and alert on others'.
        _config_error(
            tally,
            "the sweep needs RERUN_PROJECT_IDS (vars.projectIds) or RERUN_SWEEP_PROJECT_IDS: the workspaces "
            "to look at. It did nothing; failure events are still handled",
        )
    else:
        try:
            credentials = credentials_from(os.environ, context)
            dataworks = client_for(credentials, settings, invocation.region)
            functions = function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)
            run(job, window, dataworks, functions, tally)
        except ConfigError as exc:
            _config_error(tally, f"the sweep did not run: {exc}")
    return write(job, window, tally, started)


def run(job: Job, window: Window, dataworks, functions, tally: Tally) -> None:
    """List the window's failed runs, then claim each; fills `tally`."""
    failed = _list(job, window, _Counted(dataworks, tally), tally)
    failed.sort(key=lambda i: (i.finished_time or 0, i.id))  # oldest first: the closest to leaving the window
    tally.listed += len(failed)
    for n, instance in enumerate(failed):
        if job.deadline - pacing.clock() < CLAIM_RESERVE + job.settings.read_timeout:
            tally.left += len(failed) - n
            tally.outcome = Summary.PARTIAL
            tally.error = tally.error or "DeadlineReached"
            return
        if not _claim(job, functions, instance, tally):
            tally.left += len(failed) - n
            return


def _list(job: Job, window: Window, dataworks, tally: Tally) -> list[Instance]:
    found: dict[int, Instance] = {}
    for project_id in sorted(job.settings.sweep_projects):
        for bizdate in window.bizdates():
            wanted = selection.Filter(project_id, bizdate, PROJECT_ENV, (), window.start, window.end)
            try:
                for instance in selection.select(dataworks, wanted, job.settings, job.deadline - CLAIM_RESERVE):
                    found[instance.id] = instance
            except DataWorksError as exc:
                tally.error = exc.code
                if exc.quota_exhausted:
                    # Claim nothing: each claim's decision would meet the same limit and stay claimed,
                    # unfinished. A sweep after the limit clears finds them all (docs/sweep.md).
                    tally.outcome = Summary.QUOTA_EXHAUSTED
                    tally.left += len(found)
                    return []
                # What was listed is claimed; the rest waits for the next sweep (the window overlaps).
                tally.outcome = Summary.PARTIAL
                return list(found.values())
            except selection.TooLarge as exc:
                tally.error = f"TooLarge: {exc.count} failed instances for business date {bizdate}"
                tally.outcome = Summary.PARTIAL
                tally.left += exc.count
            except pacing.DeadlineReached:
                tally.error = "DeadlineReached"
                tally.outcome = Summary.PARTIAL
                return list(found.values())
    return list(found.values())


def _claim(job: Job, functions, instance: Instance, tally: Tally) -> bool:
    """Claim one failed run and hand it to its decision. False: no claim can be made (stop)."""
    settings = job.settings
    run_number = instance.run_number or 1
    now = schedule.clock()
    # What is left of the backoff its event would have waited (the grace usually covers it all).
    waited = now - (instance.finished_time or 0) / 1000
    backoff = schedule.delay_seconds(run_number, settings.backoff_base, settings.backoff_max)
    delay = int(min(FC_MAX_ASYNC_DELAY - 1, max(1, backoff - waited)))
    claim = schedule.ScheduledRerun(instance.id, run_number, schedule.due_at(delay, now), swept=True)
    for attempt in range(1, CLAIM_TRIES + 1):
        tally.calls += 1
        try:
            functions.invoke_async(
                job.function_name,
                claim.to_payload(settings.signing_key),  # unsigned, it is decided as a failure event
                delay=delay,
                task_id=claim.async_task_id,
                timeout=min(settings.read_timeout, max(pacing.MIN_CALL_SECONDS, job.deadline - pacing.clock())),
            )
        except InvokeFunctionError as exc:
            if exc.duplicate:  # decided before: its rerun was scheduled, or an earlier sweep claimed it
                tally.already_decided += 1
                return True
            if not exc.transient:
                _config_error(
                    tally,
                    f"the sweep cannot claim failed runs: InvokeFunction refused ({exc.code}: {exc.message}). "
                    "It decides nothing it has not claimed, so nothing is rerun twice; give the role "
                    "fc:InvokeFunction on the event function and keep asyncInvokeConfig.asyncTask on",
                    error_code=exc.code,
                )
                return False
            if attempt == CLAIM_TRIES or job.deadline - pacing.clock() < CLAIM_RESERVE + settings.read_timeout:
                # Not claimed, or claimed without an answer: either way the next sweep asks again,
                # and a claim that did go through answers it 409.
                tally.left += 1
                tally.outcome = Summary.PARTIAL
                tally.error = exc.code
                return True
            pacing.sleep(pacing.backoff(attempt, exc.retry_after))
            continue
        tally.missed += 1
        return True
    return True


def _config_error(tally: Tally, message: str, error_code: str | None = None) -> None:
    tally.written.append(skipped(None, Reason.CONFIG_ERROR, message, error_code=error_code))


def write(job: Job, window: Window, tally: Tally, started: float) -> dict:
    """The sweep's records: its config errors, if any, then one summary."""
    records.write_outcomes(tally.written, job.origin)
    extra = {"error": tally.error} if tally.error else {}
    return records.write_summary(
        job.origin,
        tally.written,
        (pacing.clock() - started) * 1000,
        dryRunMode=job.dry_run,
        outcome=tally.outcome,
        projects=",".join(str(p) for p in sorted(job.settings.sweep_projects)) or None,
        windowStart=window.start,
        windowEnd=window.end,
        listed=tally.listed,
        alreadyDecided=tally.already_decided,
        missed=tally.missed,
        left=tally.left,
        calls=tally.calls,
        pages=tally.pages,
        **extra,
    )
