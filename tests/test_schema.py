"""The record schema is defined once (dwrerun/schema.py): the records, the index and the queries follow it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dwrerun import records, schema
from dwrerun.outcome import Origin, Outcome
from dwrerun.schema import Reason
from test_template import load, ros_template


def _message_index() -> dict:
    index = ros_template(load())["Resources"]["Index"]["Properties"]
    (message,) = [k for k in index["KeyIndices"] if k["Name"] == "message"]
    return message


def _yaml(indices: list[dict]) -> str:
    return "\n".join("- {" + ", ".join(f"{k}: {v}" for k, v in index.items()) + "}" for index in indices)


def test_the_logstore_index_in_the_template_is_the_schemas():
    message = _message_index()
    assert message["Type"] == "json" and message["EnableAnalytics"] is True
    expected = schema.json_key_indices()
    assert message["JsonKeyIndices"] == expected, (
        "template.yml's JsonKeyIndices differ from dwrerun/schema.py; they should read:\n" + _yaml(expected)
    )


def test_a_field_has_one_type_and_aliases_are_unique_and_shadow_no_entry_field():
    aliases = [f.alias for f in schema.FIELDS.values() if f.alias is not None]
    assert len(aliases) == len(set(aliases))
    # `message` and `functionName` are fields of the log entry itself (FC's), not of the record
    assert not {"message", "functionName"} & set(aliases)
    assert {f.type for f in schema.FIELDS.values()} <= {schema.TEXT, schema.LONG, schema.DOUBLE}
    with pytest.raises(ValueError, match="text, long or double"):
        schema.Field("x", "json", "x")


def test_records_carry_exactly_the_schemas_fields_in_its_order():
    rerun = Outcome(1, schema.RERUN, Reason.ELIGIBLE, "", True)
    instance = records.instance_record(rerun, Origin(schema.HTTP, ""))
    assert tuple(instance) == tuple(n for n in schema.INSTANCE_NAMES if n not in schema.INSTANCE_OPTIONAL)
    held = Outcome(1, schema.HELD, Reason.STORM, "", storm_cause="1/r", storm_id="k0123456789-1")
    assert tuple(records.instance_record(held, Origin(schema.EVENTBRIDGE, ""))) == tuple(
        n for n in schema.INSTANCE_NAMES if n != "missedEvent"
    )
    swept = Outcome(1, schema.RERUN, Reason.ELIGIBLE, "", True, swept=True, missed_event=True)
    assert tuple(records.instance_record(swept, Origin(schema.SWEEP, ""))) == tuple(
        n for n in schema.INSTANCE_NAMES if n not in ("stormCause", "stormId")
    )
    event = Origin(schema.EVENTBRIDGE, "")
    retried = records.summary_record(event, [rerun], 1.0, dryRunMode=False, outcome="retry", error="ServiceUnavailable")
    assert tuple(retried) == tuple(n for n in schema.SUMMARY_NAMES if n == "error" or n not in schema.SUMMARY_OPTIONAL)
    http_summary = records.summary_record(Origin(schema.HTTP, ""), [rerun], 1.0, dryRunMode=False, outcome="done")
    assert tuple(http_summary) == tuple(n for n in schema.SUMMARY_NAMES if n not in schema.SUMMARY_OPTIONAL)
    with_held = records.summary_record(event, [held], 1.0, dryRunMode=False, outcome="retry", error="x")
    assert with_held["held"] == 1
    assert tuple(with_held) == tuple(
        n for n in schema.SUMMARY_NAMES if n in ("error", "held") or n not in schema.SUMMARY_OPTIONAL
    )
    sweep_fields = {n: 0 for n in schema.SUMMARY_OPTIONAL - {"error", "held"}}
    sweep_summary = records.summary_record(
        Origin(schema.SWEEP, ""), [], 1.0, dryRunMode=False, outcome="done", **sweep_fields
    )
    assert tuple(sweep_summary) == tuple(n for n in schema.SUMMARY_NAMES if n not in ("error", "held"))


def test_a_record_field_outside_the_schema_is_refused():
    # A field the schema does not list would be written but never indexed nor queried.
    http = Origin(schema.HTTP, "")
    with pytest.raises(ValueError, match=r"unknown \['ruleName'\]"):
        records.summary_record(http, [], 1.0, dryRunMode=False, outcome="done", ruleName="x")
    with pytest.raises(ValueError, match=r"missing \['dryRunMode', 'outcome'\]"):
        records.summary_record(http, [], 1.0)


def test_an_outcome_speaks_only_the_schemas_vocabulary():
    # A decision or reason outside schema.py would be written, and no query, alert or panel would see it.
    with pytest.raises(ValueError, match="not in dwrerun/schema.py"):
        Outcome(1, "retried", Reason.ELIGIBLE, "")
    with pytest.raises(ValueError, match="not in dwrerun/schema.py"):
        Outcome(1, schema.SKIP, "not-rerun", "")
    assert Reason.QUOTA_EXHAUSTED in schema.REASONS and "ELIGIBLE" not in schema.REASONS


def test_a_field_is_queried_by_its_own_name_unless_it_names_another_or_none():
    # Called here, not only at import: the SQL alias rule itself is what is pinned
    assert schema._field("runNumber", schema.LONG) == schema.Field("runNumber", schema.LONG, "runNumber")
    assert schema._field("message", schema.TEXT, alias=None) == schema.Field("message", schema.TEXT, None)
    assert schema._field("durationMs", schema.DOUBLE, alias="ms").alias == "ms"
    assert schema.FIELDS["runNumber"].alias == "runNumber" and schema.FIELDS["message"].alias is None


def test_a_field_defined_twice_differently_is_refused_naming_it(mocker):
    mocker.patch.object(schema, "SUMMARY_FIELDS", schema.SUMMARY_FIELDS + (schema._field("trigger", schema.LONG),))
    with pytest.raises(ValueError, match=r"^trigger is defined twice, differently$"):
        schema._all_fields()


def test_a_field_defined_twice_alike_is_one_field():
    fields = schema._all_fields()
    assert list(fields) == list(dict.fromkeys(schema.INSTANCE_NAMES + schema.SUMMARY_NAMES + schema.STORM_NAMES))
    assert fields["trigger"] == schema.Field("trigger", schema.TEXT, "trigger")


# --- the record writers (dwrerun/records.py): every field from its argument -----------------------


def test_an_instance_record_carries_each_argument_in_its_field():
    instance = SimpleNamespace(
        run_number=2,
        project_id=3,
        task_id=4,
        task_name="ods",
        project_env="Prod",
        status="Failure",
        finished_time=5,
    )
    outcome = Outcome(
        1,
        schema.SCHEDULED,
        Reason.ELIGIBLE,
        "m",
        False,
        instance=instance,
        event_id="evt",
        error_code="E",
        dataworks_request_id="dwreq",
        attempts=6,
        lookup_ms=12.34,
        rerun_ms=0.06,
        rule="rule",
        failure_class="retryable",
        matched_line="line",
        delay_seconds=7,
        due_at="2026-11-28T02:10:00Z",
        async_task_id="task",
        schedule_error_code="SE",
        use_latest_config=True,
        trusted=True,
    )
    record = records.instance_record(outcome, Origin(schema.EVENTBRIDGE, "req", "c", "origin"))
    assert record == {
        "kind": "instance",
        "instanceId": 1,
        "decision": "scheduled",
        "success": False,
        "message": "m",
        "reason": "eligible",
        "trigger": "eventbridge",
        "requestId": "req",
        "eventId": "evt",
        "runNumber": 2,
        "projectId": 3,
        "taskId": 4,
        "taskName": "ods",
        "projectEnv": "Prod",
        "status": "Failure",
        "finishedTime": 5,
        "errorCode": "E",
        "dataworksRequestId": "dwreq",
        "comment": "c",
        "attempts": 6,
        "lookupMs": 12.3,  # one decimal
        "rerunMs": 0.1,
        "rule": "rule",
        "failureClass": "retryable",
        "matchedLine": "line",
        "delaySeconds": 7,
        "dueAt": "2026-11-28T02:10:00Z",
        "asyncTaskId": "task",
        "scheduleErrorCode": "SE",
        "trusted": True,
        "originRequestId": "origin",
        "useLatestConfig": True,
    }


def test_an_instance_record_without_an_instance_read_has_its_fields_null():
    record = records.instance_record(Outcome(None, schema.SKIP, Reason.NOT_FAILED, ""), Origin(schema.HTTP, ""))
    assert {k for k, v in record.items() if v is not None} == {
        "kind",
        "decision",
        "message",
        "reason",
        "trigger",
        "requestId",
        "attempts",
    }
    assert (record["attempts"], record["lookupMs"], record["rerunMs"]) == (0, None, None)


def _decided(decision: str, success: bool | None = None) -> Outcome:
    return Outcome(1, decision, Reason.ELIGIBLE, "", success)


def test_a_summary_counts_each_decision_and_each_reruns_outcome():
    written = (
        [_decided(schema.RERUN, True)] * 3
        + [_decided(schema.RERUN, False)] * 2
        + [_decided(schema.RERUN, None)] * 2  # no answer read
        + [_decided(schema.SKIP)] * 4
        + [_decided(schema.DRY_RUN)] * 5
        + [_decided(schema.SCHEDULED)] * 6
        + [_decided(schema.SKIP, True), _decided(schema.DRY_RUN, False)]  # not reruns: not counted as such
    )
    origin = Origin(schema.HTTP, "req", None, "origin")
    summary = records.summary_record(origin, written, 9.87, dryRunMode=True, outcome="done")
    assert summary == {
        "kind": "summary",
        "trigger": "http",
        "requestId": "req",
        "instances": 24,
        "rerun": 7,
        "rerunSucceeded": 3,
        "rerunFailed": 2,
        "skipped": 5,
        "dryRun": 6,
        "scheduled": 6,
        "durationMs": 9.9,
        "outcome": "done",
        "dryRunMode": True,
        "originRequestId": "origin",
    }
    empty = records.summary_record(Origin(schema.HTTP, ""), [], 0, dryRunMode=False, outcome="done")
    assert (empty["instances"], empty["rerun"], empty["skipped"], empty["dryRun"], empty["scheduled"]) == (0,) * 5


def test_a_record_missing_a_field_is_refused_naming_both_lists():
    with pytest.raises(
        ValueError, match=r"^record fields differ from dwrerun/schema.py: unknown \[\], missing \['b'\]$"
    ):
        records._shaped({"a": 1}, ("a", "b"))
    assert records._shaped({"b": 2, "a": 1}, ("a", "b", "c"), optional=frozenset({"c"})) == {"a": 1, "b": 2}
    assert list(records._shaped({"b": 2, "a": 1}, ("a", "b"))) == ["a", "b"]  # the schema's order


def test_records_are_written_one_compact_json_line_each_summary_last(capsys):
    outcome, origin = _decided(schema.RERUN, True), Origin(schema.HTTP, "req")
    summary = records.write_invocation([outcome], origin, 1.0, dryRunMode=False, outcome="done")
    lines = capsys.readouterr().out.split("\n")
    assert lines[-1] == "" and len(lines) == 3
    record = records.instance_record(outcome, origin)
    assert lines[0] == records.to_json(record, separators=(",", ":")) and lines[0].startswith('{"kind":"instance",')
    assert json.loads(lines[1]) == summary and summary["instances"] == 1


def test_json_text_keeps_non_ascii_and_escapes_a_lone_surrogate():
    assert records.to_json({"a": "é\ud800"}) == '{"a": "é\\ud800"}'
    assert records.to_json(["x", 1], separators=(",", ":")) == '["x",1]'
