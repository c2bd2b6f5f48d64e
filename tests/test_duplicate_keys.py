"""Issue 24 item 6: a JSON body with a key given twice is refused, naming the key, in every body the
functions parse. `{"Ids":[...],"DryRun":true,"DryRun":false}` really reran (Python keeps the last
value); a reviewer, a proxy or a log reader that keeps the first would believe it was a dry run."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import FAILED_ID, instance_records, sample_bytes, seed_failed
from dwrerun import continuation, events, rules, schedule, signing, strictjson
from localcloud.gateway import HttpGateway
from test_http_function import post

DRY_RUN_TWICE = f'{{"Ids": [{FAILED_ID}], "DryRun": true, "DryRun": false}}'.encode()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"a": 1, "a": 2}', "a"),
        ('{"outer": {"b": 1, "c": 2, "b": 1}}', "b"),  # the same value twice is still two keys
        ('[{"x": 1}, {"y": 1, "y": 2}]', "y"),
        ('{"\\u0044ryRun": true, "DryRun": false}', "DryRun"),  # an escape spells the same key
    ],
)
def test_a_duplicate_key_anywhere_is_refused_naming_it(text, key):
    with pytest.raises(strictjson.DuplicateKey) as raised:
        strictjson.loads(text)
    assert raised.value.key == key and f'"{key}"' in str(raised.value)


def test_without_duplicates_it_reads_what_json_reads():
    text = '{"a": [1, 2.5, "x", null, true, {"b": {}}], "c": "\\u00e9"}'
    assert strictjson.loads(text) == json.loads(text)
    assert strictjson.loads(text.encode()) == json.loads(text)


def test_a_long_key_is_shown_short():
    with pytest.raises(strictjson.DuplicateKey) as raised:
        strictjson.loads(json.dumps({"k": 1})[:-1] + ', "' + "k" * 5000 + '": 1, "' + "k" * 5000 + '": 2}')
    assert len(str(raised.value)) < 300


def test_the_message_names_the_key_cut_to_shown_key_chars_and_the_objects_other_keys():
    long = "k" * 100
    with pytest.raises(strictjson.DuplicateKey) as raised:
        strictjson.loads(json.dumps({"Ids": [1], long: 1})[:-1] + f', "DryRun": true, "{long}": 2}}')
    shown = '"' + "k" * (strictjson.SHOWN_KEY_CHARS - 5) + '..."'
    assert len(shown) == strictjson.SHOWN_KEY_CHARS
    assert str(raised.value) == f'the key {shown} is given twice in one JSON object (the object with "Ids", "DryRun")'


@pytest.fixture
def gateway(dataworks, tmp_path):
    from conftest import make_function

    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn, HttpGateway(fn) as gw:
        yield gw


def test_a_body_with_dryrun_twice_gets_400_naming_the_key_and_reruns_nothing(dataworks, gateway):
    seed_failed(dataworks)
    status, _, answer = post(gateway, DRY_RUN_TWICE)
    assert status == 400 and answer["Code"] == "InvalidJSON"
    assert '"DryRun"' in answer["Message"] and "twice" in answer["Message"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 1 and len(dataworks.journal) == 0


def test_the_trigger_event_and_a_base64_body_are_parsed_strictly_too():
    from dwrerun import http_function

    event = {
        "rawPath": "/rerun",
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/rerun"}},
        "isBase64Encoded": True,
        "body": base64.b64encode(DRY_RUN_TWICE).decode(),
    }
    answer = http_function.handle(json.dumps(event).encode(), None)
    assert answer["statusCode"] == 400 and '"DryRun"' in json.loads(answer["body"])["Message"]
    twice = json.dumps(event)[:-1] + ', "rawPath": "/health"}'
    answer = http_function.handle(twice.encode(), None)
    assert answer["statusCode"] == 400 and '"rawPath"' in json.loads(answer["body"])["Message"]


def test_an_event_with_a_duplicate_key_is_recorded_ignored_naming_it(dataworks, event_function):
    seed_failed(dataworks)
    event = sample_bytes("dataworks-instance-failed.json").decode()
    twice = event.replace('"status"', '"status": 6, "status"', 1)
    assert twice != event
    inv = event_function.invoke(twice.encode())
    assert inv.error is None
    (record,) = instance_records(inv)
    assert record["decision"] == "skip" and record["reason"] == "not-a-failure"
    assert '"status"' in record["message"] and "twice" in record["message"]
    assert dataworks.backend.instance(FAILED_ID).run_number == 1 and len(dataworks.journal) == 0


def test_event_data_sent_as_a_string_is_parsed_strictly():
    envelope = json.loads(sample_bytes("dataworks-instance-failed.json"))
    data = json.dumps(envelope["data"])[:-1] + ', "taskId": 1}'
    envelope["data"] = data
    (ignored,) = events.parse(json.dumps(envelope))
    assert isinstance(ignored, events.Ignored) and '"taskId"' in ignored.reason
    # ... and it is still known for what it claimed to be: its id and type go to its record
    assert (ignored.event_id, ignored.event_type) == (envelope["id"], envelope["type"])


def test_a_scheduled_rerun_or_continuation_with_a_duplicate_key_is_left_to_the_event_parser():
    for key in (schedule.PAYLOAD_KEY, continuation.PAYLOAD_KEY):
        body = f'{{"{key}": {{}}, "{key}": {{}}}}'
        assert schedule.parse(body) is None and continuation.parse(body, "k") is None
        (ignored,) = events.parse(body)
        assert f'"{key}"' in ignored.reason


def test_a_signed_token_with_a_duplicate_key_is_malformed():
    content = b'{"a": 1, "a": 2}'
    token = base64.urlsafe_b64encode(content).rstrip(b"=").decode() + ".sig"
    with pytest.raises(signing.Malformed):
        signing.unseal("key", "purpose", token)


def test_a_rules_file_with_a_duplicate_key_is_refused_naming_it():
    text = '{"rules": [{"name": "a", "source": "s", "patterns": ["x"], "action": "rerun", "action": "skip"}]}'
    with pytest.raises(rules.RulesError) as raised:
        rules.parse(text, "mine.json")
    assert '"action"' in str(raised.value) and "mine.json" in str(raised.value)
