"""The record schema is defined once (dwrerun/schema.py): the records, the index and the queries follow it."""

from __future__ import annotations

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
            trigger="http", request_id="", records=[], duration_ms=1.0, dryRunMode=False, ruleName="x"
        )
    with pytest.raises(ValueError, match=r"missing \['dryRunMode'\]"):
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
