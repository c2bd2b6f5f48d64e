"""Trigger payloads -> failures, from the sample events."""

import json
from pathlib import Path

import pytest

from dwrerun import events

EVENTS = Path(__file__).parent / "events"


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_the_failure_sample_is_a_failure_of_its_task_id():
    (item,) = events.parse((EVENTS / "dataworks-instance-failed.json").read_bytes())
    assert item == events.Failure(
        instance_id=1000012345678,
        event_id="0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01",
        task_id=700000004417,
        project_id=48213,
        task_type=0,
        finished_at=1764270065000,  # its finishTime
    )


@pytest.mark.parametrize(
    ("times", "finished_at"),
    [
        ({"finishTime": 5, "modifyTime": 7}, 5),
        ({"finishTime": None, "modifyTime": 7}, 7),  # no finishTime: the last change stands in
        ({"finishTime": "x", "modifyTime": "9"}, 9),
        ({"finishTime": 0, "modifyTime": -1}, None),
        ({"finishTime": 2.5, "modifyTime": True}, None),
    ],
)
def test_when_the_failed_run_ended_comes_from_finish_time_else_modify_time(times, finished_at):
    event = sample("dataworks-instance-failed.json")
    event["data"].update(times)
    (item,) = events.parse(json.dumps(event))
    assert item.finished_at == finished_at


def test_the_frozen_sample_carries_its_task_type():
    (item,) = events.parse(json.dumps(sample("dataworks-instance-failed-frozen.json")))
    assert isinstance(item, events.Failure) and item.task_type == 2


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("dataworks-instance-running.json", "status 4 (running) is not a failure"),
        ("dataworks-instance-succeeded.json", "status 6 (succeeded) is not a failure"),
        ("dataworks-workflow-failed.json", "not a task-instance status change"),
        ("dataworks-rerun-operation.json", "not a task-instance status change"),
        ("fc-http-rerun-request.json", "neither a CloudEvent"),
    ],
)
def test_other_samples_are_ignored_with_a_reason(name, words):
    (item,) = events.parse((EVENTS / name).read_bytes())
    assert isinstance(item, events.Ignored)
    assert words in item.reason


def test_rawdata_delivery_is_the_data_object_alone():
    (item,) = events.parse(json.dumps(sample("dataworks-instance-failed.json")["data"]))
    assert isinstance(item, events.Failure)
    assert item.instance_id == 1000012345678 and item.event_id is None


def test_the_older_envelope_without_event_code_is_accepted():
    event = sample("dataworks-instance-failed.json")
    del event["data"]["eventCode"]
    (item,) = events.parse(json.dumps(event))
    assert isinstance(item, events.Failure)


def test_an_array_gives_one_item_per_event():
    batch = [sample("dataworks-instance-failed.json"), sample("dataworks-instance-running.json"), 42]
    items = events.parse(json.dumps(batch))
    assert [type(i).__name__ for i in items] == ["Failure", "Ignored", "Ignored"]
    assert items[2].reason.startswith("item 2 of the array")


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"", "not JSON"),
        (b"[]", "empty JSON array"),
        (b'"a string"', "must be a JSON object"),
        (b'{"source":"acs.dataworks","type":"dataworks:InstanceStatusChanges:InstanceStatusChanges"}', "data"),
        (b'{"taskId": true, "status": 5}', "data.taskId"),
        (b'{"taskId": -4, "status": 5}', "data.taskId"),
        (b'{"taskId": "12x", "status": 5}', "data.taskId"),
        (b'{"taskId": 12, "status": "5.0"}', "is not a failure"),
        (b'{"taskId": 12, "status": 5, "eventCode": "rerun-instance"}', "eventCode"),
    ],
)
def test_malformed_input_is_ignored_with_a_reason_that_names_it(payload, words):
    (item,) = events.parse(payload)
    assert isinstance(item, events.Ignored)
    assert words in item.reason


def test_digit_strings_are_accepted_as_ids():
    (item,) = events.parse(b'{"taskId": "1000012345678", "status": "5"}')
    assert isinstance(item, events.Failure) and item.instance_id == 1000012345678


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "the payload is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
         "(char 1))"),
        (b"[]", "the payload is an empty JSON array"),
        (b'[1, {"taskId": 1}]', None),
        (b'{"taskId": "' + b"9" * 80 + b'", "status": 5}', "data.taskId (the instance id) must be a positive "
         "integer, got '" + "9" * 76 + "..."),
        (b'{"taskId": "' + b"9" * 78 + b'", "status": 5}', "data.taskId (the instance id) must be a positive "
         "integer, got '" + "9" * 78 + "'"),
        (b'{"taskId": 12, "status": 4}', "status 4 (running) is not a failure"),
        (b'{"taskId": 12, "status": 42}', "status 42 (unknown) is not a failure"),
        (b'{"taskId": 12, "status": null}', "status None (missing) is not a failure"),
        (b'{"taskId": 12, "status": 5, "eventCode": "x"}', "data.eventCode is 'x', not 'instance-status-changes'"),
        (b'{"source": "acs.oss", "type": "t", "id": "e1"}', "not a task-instance status change (source 'acs.oss', "
         "type 't')"),
        (b'{"source": "acs.dataworks", "type": "dataworks:InstanceStatusChanges:InstanceStatusChanges", "data": "[1]"}',
         "the event's data must be a JSON object"),
        (b'{"a": 1}', "neither a CloudEvent nor a DataWorks event's data (no source/type, no taskId/status)"),
    ],
)  # fmt: skip
def test_each_reason_says_what_was_wrong_in_words(payload, reason):
    items = events.parse(payload)
    if reason is None:  # an array: each item says where it was
        assert [i.reason for i in items] == [
            "item 0 of the array: an event must be a JSON object, got int",
            "item 1 of the array: neither a CloudEvent nor a DataWorks event's data (no source/type, no taskId/status)",
        ]
        return
    (item,) = items
    assert item.reason == reason


def test_an_ignored_event_keeps_its_ids_for_the_record():
    (item,) = events.parse(b'{"id": "e1", "source": "acs.dataworks", "type": "dataworks:InstanceStatusChanges:'
                           b'InstanceStatusChanges", "data": {"taskId": 12, "status": 6}}')  # fmt: skip
    assert (item.event_id, item.instance_id, item.event_type) == (
        "e1",
        12,
        "dataworks:InstanceStatusChanges:InstanceStatusChanges",
    )


CHANGE = events.STATUS_CHANGE


def _cloudevent(data, **fields) -> bytes:
    return json.dumps({"id": "e1", "source": "acs.dataworks", "type": CHANGE, "data": data, **fields}).encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # data sent as a JSON string is read as the object it holds
        (_cloudevent(json.dumps({"taskId": 12, "status": 5, "nodeId": "7", "appId": 3, "taskType": "2"})),
         events.Failure(12, "e1", 7, 3, 2, None)),
        (_cloudevent("not json"), events.Ignored("the event's data must be a JSON object", "e1", None, CHANGE)),
        (_cloudevent({"taskId": 12, "status": 5, "finishTime": 0, "modifyTime": "9", "appId": 0}),
         events.Failure(12, "e1", None, None, None, 9)),
        (_cloudevent({"taskId": 2**63 - 1, "status": 5}), events.Failure(2**63 - 1, "e1", None, None, None)),
        (_cloudevent({"taskId": 2**63, "status": 5}),
         events.Ignored(f"data.taskId (the instance id) must be a positive integer, got {2**63}", "e1", None, CHANGE)),
        (_cloudevent({"taskId": 0, "status": 5}),
         events.Ignored("data.taskId (the instance id) must be a positive integer, got 0", "e1", None, CHANGE)),
        (_cloudevent({"taskId": 12, "status": 5, "eventCode": "x"}),
         events.Ignored("data.eventCode is 'x', not 'instance-status-changes'", "e1", 12, CHANGE)),
        (_cloudevent({"taskId": 12, "status": 5, "eventCode": "instance-status-changes"}),
         events.Failure(12, "e1", None, None, None)),
        (_cloudevent({"taskId": 12, "status": 6}),
         events.Ignored("status 6 (succeeded) is not a failure", "e1", 12, CHANGE)),
        (_cloudevent({"taskId": 12, "status": 5}, id=7), events.Failure(12, None, None, None, None)),
        (b'{"source": "acs.dataworks", "type": 5, "id": "e2"}',
         events.Ignored("not a task-instance status change (source 'acs.dataworks', type 5)", "e2", None, None)),
        (json.dumps({"source": "acs.oss", "type": CHANGE}).encode(),
         events.Ignored(f"not a task-instance status change (source 'acs.oss', type {CHANGE!r})", None, None, CHANGE)),
        (b'{"taskId": 1, "status": 5}', events.Failure(1, None, None, None, None)),  # the smallest id
        # past 19 digits a string is no number at all (int64), not an unknown one
        (b'{"taskId": 12, "status": "' + b"5" * 20 + b'"}',
         events.Ignored("status '" + "5" * 20 + "' (missing) is not a failure", None, 12, CHANGE)),
        # a "source" alone makes it a CloudEvent, whatever else it holds
        (b'{"source": "acs.oss", "taskId": 12, "status": 5}',
         events.Ignored("not a task-instance status change (source 'acs.oss', type None)")),
        (b'{"specversion": "1.0"}', events.Ignored("not a task-instance status change (source None, type None)")),
        (b'{"type": "x"}', events.Ignored("not a task-instance status change (source None, type 'x')", None, None, "x")),
        (b'{"taskId": 12}', events.Ignored("neither a CloudEvent nor a DataWorks event's data (no source/type, no "
                                           "taskId/status)")),
        (b'{"status": 5}', events.Ignored("neither a CloudEvent nor a DataWorks event's data (no source/type, no "
                                          "taskId/status)")),
        (b'{"taskId": "' + b"1" * 19 + b'", "status": 5}', events.Failure(int("1" * 19), None, None, None, None)),
        (b'{"taskId": "' + b"1" * 20 + b'", "status": 5}',
         events.Ignored("data.taskId (the instance id) must be a positive integer, got '" + "1" * 20 + "'", None,
                        None, CHANGE)),
        ('{"taskId": "\u0661\u0662", "status": 5}'.encode(),  # Arabic-Indic digits: isdigit(), not an id
         events.Ignored("data.taskId (the instance id) must be a positive integer, got '\u0661\u0662'", None, None,
                        CHANGE)),
        (b'{"taskId": 12, "status": 5, "taskType": 2.0, "nodeId": true}', events.Failure(12, None, None, None, None)),
    ],
)  # fmt: skip
def test_each_payload_parses_to_exactly_this(payload, expected):
    assert events.parse(payload) == [expected]


def test_a_payload_nested_too_deep_is_not_json_and_does_not_raise():
    (item,) = events.parse(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(item, events.Ignored) and item.reason.startswith("the payload is not JSON (")


def test_a_long_reason_is_cut_to_80_characters():
    (item,) = events.parse(json.dumps({"taskId": "x" * 200, "status": 5}))
    assert item.reason == "data.taskId (the instance id) must be a positive integer, got '" + "x" * 76 + "..."


def test_why_a_payload_is_not_json_is_cut_to_80_characters():
    # a UTF-8 sequence cut short after 100,000 spaces: the decoder's message is longer than 80
    (item,) = events.parse(b" " * 100_000 + b"\xe4\xb8")
    shown = "'utf-8' codec can't decode bytes in position 100000-100001: unexpected end of..."
    assert len(shown) == 80
    assert item.reason == f"the payload is not JSON ({shown})"
