"""The record schema is defined once (dwrerun/schema.py): the records, the index and the queries follow it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dwrerun import records, schema
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
    instance = records.instance_record(
        instance_id=1,
        decision=records.RERUN,
        success=True,
        message="",
        reason="eligible",
        trigger="http",
        request_id="",
    )
    assert tuple(instance) == schema.INSTANCE_NAMES
    retried = records.summary_record(
        trigger="eventbridge",
        request_id="",
        records=[instance],
        duration_ms=1.0,
        dryRunMode=False,
        outcome="retry",
        error="ServiceUnavailable",
    )
    assert tuple(retried) == schema.SUMMARY_NAMES
    http_summary = records.summary_record(
        trigger="http", request_id="", records=[instance], duration_ms=1.0, dryRunMode=False, outcome="done"
    )
    assert tuple(http_summary) == tuple(n for n in schema.SUMMARY_NAMES if n != "error")


def test_a_record_field_outside_the_schema_is_refused():
    # A field the schema does not list would be written but never indexed nor queried.
    with pytest.raises(ValueError, match=r"unknown \['ruleName'\]"):
        records.summary_record(
            trigger="http", request_id="", records=[], duration_ms=1.0, dryRunMode=False, outcome="done", ruleName="x"
        )
    with pytest.raises(ValueError, match=r"missing \['dryRunMode', 'outcome'\]"):
        records.summary_record(trigger="http", request_id="", records=[], duration_ms=1.0)


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
    assert list(fields) == list(dict.fromkeys(schema.INSTANCE_NAMES + schema.SUMMARY_NAMES))
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
    record = records.instance_record(
        instance_id=1,
        decision=records.SCHEDULED,
        success=False,
        message="m",
        reason="r",
        trigger=records.EVENTBRIDGE,
        request_id="req",
        event_id="evt",
        instance=instance,
        error_code="E",
        dataworks_request_id="dwreq",
        comment="c",
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
        origin_request_id="origin",
        use_latest_config=True,
    )
    assert record == {
        "kind": "instance",
        "instanceId": 1,
        "decision": "scheduled",
        "success": False,
        "message": "m",
        "reason": "r",
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
        "originRequestId": "origin",
        "useLatestConfig": True,
    }


def test_an_instance_record_without_an_instance_read_has_its_fields_null():
    record = records.instance_record(
        instance_id=None, decision=records.SKIP, success=None, message="", reason="r", trigger="http", request_id=""
    )
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


def _decided(decision: str, success: bool | None = None) -> dict:
    return records.instance_record(
        instance_id=1, decision=decision, success=success, message="", reason="r", trigger="http", request_id=""
    )


def test_a_summary_counts_each_decision_and_each_reruns_outcome():
    written = (
        [_decided(records.RERUN, True)] * 3
        + [_decided(records.RERUN, False)] * 2
        + [_decided(records.RERUN, None)] * 2  # no answer read
        + [_decided(records.SKIP)] * 4
        + [_decided(records.DRY_RUN)] * 5
        + [_decided(records.SCHEDULED)] * 6
        + [_decided(records.SKIP, True), _decided(records.DRY_RUN, False)]  # not reruns: not counted as such
    )
    summary = records.summary_record(
        trigger="http",
        request_id="req",
        records=written,
        duration_ms=9.87,
        origin_request_id="origin",
        dryRunMode=True,
        outcome="done",
    )
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
    empty = records.summary_record(
        trigger="http", request_id="", records=[], duration_ms=0, dryRunMode=False, outcome="done"
    )
    assert (empty["instances"], empty["rerun"], empty["skipped"], empty["dryRun"], empty["scheduled"]) == (0,) * 5


def test_a_record_missing_a_field_is_refused_naming_both_lists():
    with pytest.raises(
        ValueError, match=r"^record fields differ from dwrerun/schema.py: unknown \[\], missing \['b'\]$"
    ):
        records._shaped({"a": 1}, ("a", "b"))
    assert records._shaped({"b": 2, "a": 1}, ("a", "b", "c"), optional=frozenset({"c"})) == {"a": 1, "b": 2}
    assert list(records._shaped({"b": 2, "a": 1}, ("a", "b"))) == ["a", "b"]  # the schema's order


def test_records_are_written_one_compact_json_line_each_summary_last(capsys):
    record = _decided(records.RERUN, True)
    summary = records.write_invocation(
        [record], trigger="http", request_id="req", duration_ms=1.0, dryRunMode=False, outcome="done"
    )
    lines = capsys.readouterr().out.split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert lines[0] == records.to_json(record, separators=(",", ":")) and lines[0].startswith('{"kind":"instance",')
    assert json.loads(lines[1]) == summary and summary["instances"] == 1


def test_json_text_keeps_non_ascii_and_escapes_a_lone_surrogate():
    assert records.to_json({"a": "é\ud800"}) == '{"a": "é\\ud800"}'
    assert records.to_json(["x", 1], separators=(",", ":")) == '["x",1]'
