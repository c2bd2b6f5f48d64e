"""The one place that writes records: one line of pure JSON on stdout per decision.

FC ships stdout to the function's Logstore line by line and keeps a line that is pure JSON as
JSON, so SLS can index every field (template.yml creates the index). The fields, their order and
their index types are defined once, in schema.py: a record carries exactly those. Records are
built from plain values only: nothing here ever sees a credential.
"""

from __future__ import annotations

import json
import sys

from . import schema

RERUN = "rerun"
SKIP = "skip"
DRY_RUN = "dry-run"
SCHEDULED = "scheduled"  # a rerun queued as a delayed invocation of the event function (schedule.py)

EVENTBRIDGE = "eventbridge"
HTTP = "http"


def instance_record(
    *,
    instance_id: int | None,
    decision: str,
    success: bool | None,
    message: str,
    reason: str,
    trigger: str,
    request_id: str,
    event_id: str | None = None,
    instance=None,
    error_code: str | None = None,
    dataworks_request_id: str | None = None,
    comment: str | None = None,
    attempts: int = 0,
    lookup_ms: float | None = None,
    rerun_ms: float | None = None,
    rule: str | None = None,
    failure_class: str | None = None,
    matched_line: str | None = None,
    delay_seconds: int | None = None,
    due_at: str | None = None,
    async_task_id: str | None = None,
    schedule_error_code: str | None = None,
    origin_request_id: str | None = None,
    use_latest_config: bool | None = None,
) -> dict:
    """One instance's decision and outcome. `instance` is the policy.Instance read, if any.

    `rule`, `failure_class` and `matched_line` say what the failed run's log showed (dwrerun/
    failure.py); `matched_line` is already redacted and cut, the log itself never comes here.
    `async_task_id` is FC's async task id of a scheduled rerun (not `taskId`, which is the DataWorks
    task): the scheduling record and the delayed invocation's record both carry it, and the
    delayed one also the original `eventId`, so SLS joins the two.
    """
    record = {
        "kind": "instance",
        "instanceId": instance_id,
        "decision": decision,
        "success": success,
        "message": message,
        "reason": reason,
        "trigger": trigger,
        "requestId": request_id,
        "eventId": event_id,
        "runNumber": getattr(instance, "run_number", None),
        "projectId": getattr(instance, "project_id", None),
        "taskId": getattr(instance, "task_id", None),
        "taskName": getattr(instance, "task_name", None),
        "projectEnv": getattr(instance, "project_env", None),
        "status": getattr(instance, "status", None),
        "finishedTime": getattr(instance, "finished_time", None),
        "errorCode": error_code,
        "dataworksRequestId": dataworks_request_id,
        "comment": comment,
        "attempts": attempts,
        "lookupMs": _ms(lookup_ms),
        "rerunMs": _ms(rerun_ms),
        "rule": rule,
        "failureClass": failure_class,
        "matchedLine": matched_line,
        "delaySeconds": delay_seconds,
        "dueAt": due_at,
        "asyncTaskId": async_task_id,
        "scheduleErrorCode": schedule_error_code,
        "originRequestId": origin_request_id,
        "useLatestConfig": use_latest_config,
    }
    return _shaped(record, schema.INSTANCE_NAMES)


def summary_record(
    *,
    trigger: str,
    request_id: str,
    records: list[dict],
    duration_ms: float,
    origin_request_id: str | None = None,
    **extra,
) -> dict:
    """The invocation's totals, written after its instance records. `origin_request_id`: the HTTP
    request of a bulk rerun by filter this invocation worked for (dwrerun/bulk.py)."""
    counts = {RERUN: 0, SKIP: 0, DRY_RUN: 0, SCHEDULED: 0}
    for record in records:
        counts[record["decision"]] += 1
    record = {
        "kind": "summary",
        "trigger": trigger,
        "requestId": request_id,
        "instances": len(records),
        "rerun": counts[RERUN],
        "rerunSucceeded": sum(1 for r in records if r["decision"] == RERUN and r["success"] is True),
        "rerunFailed": sum(1 for r in records if r["decision"] == RERUN and r["success"] is False),
        "skipped": counts[SKIP],
        "dryRun": counts[DRY_RUN],
        "scheduled": counts[SCHEDULED],
        "durationMs": _ms(duration_ms),
        "originRequestId": origin_request_id,
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


def write_invocation(written: list[dict], **summary_fields) -> dict:
    """Write an invocation's instance records, then its summary record; returns the summary."""
    for record in written:
        write(record)
    summary = summary_record(records=written, **summary_fields)
    write(summary)
    return summary


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
