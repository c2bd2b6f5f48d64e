"""The one place that writes records: one line of pure JSON on stdout per decision.

FC ships stdout to the function's Logstore line by line and keeps a line that is pure JSON as
JSON, so SLS can index every field (template.yml creates the index). The fields, their order and
their index types are defined once, in schema.py: a record carries exactly those. Records are
built from plain values only: nothing here ever sees a credential.
"""

from __future__ import annotations

import json
import sys

from dwrerun import schema
from dwrerun.outcome import Origin, Outcome


def instance_record(outcome: Outcome, origin: Origin) -> dict:
    """One instance's decision and outcome, as the record the invocation (`origin`) writes."""
    instance = outcome.instance
    record = {
        "kind": "instance",
        "instanceId": outcome.instance_id,
        "decision": outcome.decision,
        "success": outcome.success,
        "message": outcome.message,
        "reason": outcome.reason,
        "trigger": origin.trigger,
        "requestId": origin.request_id,
        "eventId": outcome.event_id,
        "runNumber": getattr(instance, "run_number", None),
        "projectId": getattr(instance, "project_id", None),
        "taskId": getattr(instance, "task_id", None),
        "taskName": getattr(instance, "task_name", None),
        "projectEnv": getattr(instance, "project_env", None),
        "status": getattr(instance, "status", None),
        "finishedTime": getattr(instance, "finished_time", None),
        "errorCode": outcome.error_code,
        "dataworksRequestId": outcome.dataworks_request_id,
        "comment": origin.comment,
        "attempts": outcome.attempts,
        "lookupMs": _ms(outcome.lookup_ms),
        "rerunMs": _ms(outcome.rerun_ms),
        "rule": outcome.rule,
        "failureClass": outcome.failure_class,
        "matchedLine": outcome.matched_line,
        "delaySeconds": outcome.delay_seconds,
        "dueAt": outcome.due_at,
        "asyncTaskId": outcome.async_task_id,
        "scheduleErrorCode": outcome.schedule_error_code,
        "trusted": outcome.trusted,
        "originRequestId": origin.origin_request_id,
        "useLatestConfig": outcome.use_latest_config,
    }
    if outcome.storm_cause is not None:
        record["stormCause"] = outcome.storm_cause
        record["stormId"] = outcome.storm_id
    if outcome.swept:
        record["missedEvent"] = outcome.missed_event
    return _shaped(record, schema.INSTANCE_NAMES, optional=schema.INSTANCE_OPTIONAL)


def storm_record(note, origin: Origin) -> dict:
    """What happened to a storm (a storm.Note), as the record the invocation (`origin`) writes."""
    from dwrerun import schedule, storm

    record = {
        "kind": schema.STORM_KIND,
        "stormEvent": note.event,
        "stormCause": note.cause.label,
        "stormId": storm.release_tag(note.cause, note.epoch),
        "message": note.message,
        "instanceId": note.instance_id,
        "count": note.count,
        "stormSlot": note.slot,
        "dueAt": schedule.due_at(0, note.due_at) if note.due_at is not None else None,
        "trigger": origin.trigger,
        "requestId": origin.request_id,
    }
    return _shaped(record, schema.STORM_NAMES)


def summary_record(origin: Origin, outcomes: list[Outcome], duration_ms: float, **extra) -> dict:
    """The invocation's totals, written after its instance records."""
    counts = {decision: 0 for decision in schema.DECISIONS}
    for outcome in outcomes:
        counts[outcome.decision] += 1
    record = {
        "kind": "summary",
        "trigger": origin.trigger,
        "requestId": origin.request_id,
        "instances": len(outcomes),
        "rerun": counts[schema.RERUN],
        "rerunSucceeded": sum(1 for o in outcomes if o.decision == schema.RERUN and o.success is True),
        "rerunFailed": sum(1 for o in outcomes if o.decision == schema.RERUN and o.success is False),
        "skipped": counts[schema.SKIP],
        "dryRun": counts[schema.DRY_RUN],
        "scheduled": counts[schema.SCHEDULED],
        **({"held": counts[schema.HELD]} if counts[schema.HELD] else {}),
        "durationMs": _ms(duration_ms),
        "originRequestId": origin.origin_request_id,
        **extra,
    }
    return _shaped(record, schema.SUMMARY_NAMES, optional=schema.SUMMARY_OPTIONAL)


def _shaped(record: dict, names: tuple[str, ...], optional: frozenset[str] = frozenset()) -> dict:
    """The record with exactly the schema's fields, in its order. A field outside the schema
    would be written but never indexed nor queried: refuse it, in every test that writes it."""
    unknown, missing = set(record) - set(names), set(names) - set(record) - optional
    if unknown or missing:
        raise ValueError(
            f"record fields differ from dwrerun/schema.py: unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return {name: record[name] for name in names if name in record}


def write_outcomes(outcomes: list[Outcome], origin: Origin) -> None:
    """Write each outcome's record, and the storm records its guard step produced."""
    for outcome in outcomes:
        write(instance_record(outcome, origin))
        for note in outcome.notes:
            write(storm_record(note, origin))


def write_summary(origin: Origin, outcomes: list[Outcome], duration_ms: float, **extra) -> dict:
    """Write the invocation's summary record (after its instance records); returns it."""
    summary = summary_record(origin, outcomes, duration_ms, **extra)
    write(summary)
    return summary


def write_invocation(outcomes: list[Outcome], origin: Origin, duration_ms: float, **extra) -> dict:
    """Write an invocation's instance records, then its summary record; returns the summary."""
    write_outcomes(outcomes, origin)
    return write_summary(origin, outcomes, duration_ms, **extra)


def write(record: dict) -> None:
    # One write per line: concurrent invocations in one instance never interleave inside a record.
    sys.stdout.write(to_json(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def to_json(value, **options) -> str:
    """JSON text that a UTF-8 stream can carry. Input JSON may hold lone surrogates ("\\ud800"):
    they stay \\u escapes instead of making the write fail (and the record, or answer, be lost)."""
    return json.dumps(value, ensure_ascii=False, **options).encode("utf-8", "backslashreplace").decode("utf-8")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
