"""The local EventBridge rule delivers events to the event function like an FC async target."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from localcloud.eventbridge import EventBridge, matches
from localcloud.fc import FunctionCompute

EVENTS = Path(__file__).parent / "events"
FAILURE_PATTERN = {
    "source": ["acs.dataworks"],
    "type": ["dataworks:InstanceStatusChanges:InstanceStatusChanges"],
    "data": {"status": [{"numeric": ["=", 5]}]},
}

# Records every event it receives; an event with "failTimes": N fails its first N deliveries.
HANDLER = """
import json

RECEIVED = []

def handler(event, context):
    RECEIVED.append(event)
    payload = json.loads(event)
    fail_times = payload.get("failTimes", 0) if isinstance(payload, dict) else 0
    if len(RECEIVED) <= fail_times:
        raise ConnectionError("DataWorks endpoint unreachable")
    return {"received": len(RECEIVED)}
"""


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def fn(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(HANDLER), encoding="utf-8")
    with FunctionCompute(
        handler="index.handler", code_dir=code, function_name="dwrerun-event", logstore=tmp_path / "logs.jsonl"
    ) as function:
        yield function


def received(invocations) -> list[bytes]:
    return [inv.event for inv in invocations]


def test_cloudevents_schema_delivers_the_whole_envelope_as_bytes(fn):
    event = sample("dataworks-instance-failed.json")

    attempts = EventBridge(fn).publish(event)

    assert len(attempts) == 1 and attempts[0].error is None
    delivered = json.loads(attempts[0].event)
    assert delivered == event
    assert delivered["data"]["taskId"] == 1000012345678


def test_rawdata_schema_delivers_only_the_data(fn):
    event = sample("dataworks-instance-failed.json")

    attempts = EventBridge(fn).publish(event, schema="RawData")

    assert json.loads(attempts[0].event) == event["data"]


def test_duplicate_delivery_sends_the_same_bytes_twice(fn):
    event = sample("dataworks-instance-failed.json")

    attempts = EventBridge(fn).publish(event, duplicate=True)

    assert len(attempts) == 2
    assert attempts[0].event == attempts[1].event
    assert attempts[0].request_id != attempts[1].request_id  # two separate async invocations
    assert [a.result for a in attempts] == [{"received": 1}, {"received": 2}]


def test_a_raising_handler_is_retried_until_it_succeeds(fn):
    event = {**sample("dataworks-instance-failed.json"), "failTimes": 2}

    attempts = EventBridge(fn).publish(event)

    assert [a.error and a.error["errorType"] for a in attempts] == ["ConnectionError", "ConnectionError", None]
    assert len({a.event for a in attempts}) == 1
    assert len({a.request_id for a in attempts}) == 1  # one async invocation, retried


def test_retries_stop_after_max_retries(fn):
    event = {**sample("dataworks-instance-failed.json"), "failTimes": 10}

    attempts = EventBridge(fn, max_retries=2).publish(event)

    assert len(attempts) == 3 and all(a.error for a in attempts)


def test_a_timed_out_handler_is_retried(tmp_path):
    # GIVEN a handler whose first delivery hangs (a marker file survives the instance restart)
    code = tmp_path / "slow"
    code.mkdir()
    (code / "index.py").write_text(
        textwrap.dedent(
            """
            import os, threading
            def handler(event, context):
                marker = os.environ["FIRST_CALL_MARKER"]
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    threading.Event().wait(2)  # well past the timeout; the daemon thread ends soon after
                return "done"
            """
        )
    )
    env = {"FIRST_CALL_MARKER": str(tmp_path / "first-call")}
    with FunctionCompute(
        handler="index.handler", code_dir=code, timeout=0.3, env=env, logstore=tmp_path / "l.jsonl"
    ) as slow:
        # WHEN the event is published
        attempts = EventBridge(slow).publish(sample("dataworks-instance-failed.json"))

    # THEN the timeout counted as a failure and the retry ran on a fresh instance
    assert [a.timed_out for a in attempts] == [True, False]
    assert attempts[0].error["errorType"] == "FunctionTimeout"
    assert attempts[1].result == "done" and attempts[1].cold_start


def test_the_rule_filter_delivers_only_matching_events(fn):
    bridge = EventBridge(fn, filter_pattern=FAILURE_PATTERN)

    assert bridge.publish(sample("dataworks-instance-succeeded.json")) == []
    assert len(bridge.publish(sample("dataworks-instance-failed.json"))) == 1


def test_a_batch_is_one_invocation_with_a_json_array(fn):
    events = [sample("dataworks-instance-failed.json"), sample("dataworks-instance-failed-frozen.json")]

    attempts = EventBridge(fn).publish_batch(events, schema="RawData")

    assert len(attempts) == 1
    assert json.loads(attempts[0].event) == [e["data"] for e in events]


def test_bad_input_is_refused_clearly(fn):
    bridge = EventBridge(fn)
    with pytest.raises(ValueError, match="schema"):
        bridge.publish(sample("dataworks-instance-failed.json"), schema="Xml")
    with pytest.raises(ValueError, match="data"):
        bridge.publish({"id": "x"}, schema="RawData")
    with pytest.raises(TypeError, match="dict"):
        bridge.publish("not an event")
    with pytest.raises(ValueError, match="max_retries"):
        EventBridge(fn, max_retries=9)
    with pytest.raises(ValueError, match="data.status"):
        EventBridge(fn, filter_pattern={"data": {"status": 5}})


# --- the event-pattern matcher ---------------------------------------------------------------


def test_only_task_instance_failures_match_the_failure_pattern():
    matched = sorted(p.name for p in EVENTS.glob("dataworks-*.json") if matches(FAILURE_PATTERN, sample(p.name)))
    assert matched == ["dataworks-instance-failed-frozen.json", "dataworks-instance-failed.json"]


def test_the_documented_dataworks_pattern_matches_every_status_change():
    pattern = {"source": ["acs.dataworks"], "type": ["dataworks:InstanceStatusChanges:InstanceStatusChanges"]}
    for name in ("failed", "failed-frozen", "running", "succeeded"):
        assert matches(pattern, sample(f"dataworks-instance-{name}.json"))
    assert not matches(pattern, sample("dataworks-workflow-failed.json"))
    assert not matches(pattern, sample("dataworks-rerun-operation.json"))


EVENT = {
    "source": "acs.dataworks",
    "type": "dataworks:InstanceStatusChanges:InstanceStatusChanges",
    "aliyunpublishaddr": "10.0.0.1",
    "data": {"status": 5, "taskType": 2, "eventCode": "instance-status-changes", "tags": ["a", "b"], "ok": True},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["acs.dataworks", "acs.oss"]}, True),
        ({"source": ["acs.oss"]}, False),
        ({"data": {"status": ["5"]}}, False),  # JSON types: "5" is not 5
        ({"data": {"eventCode": ["instance-status-changes"]}}, True),
        ({"data": {"missing": ["5"]}}, False),
        ({"source": [{"prefix": "acs."}]}, True),
        ({"type": [{"suffix": ":InstanceStatusChanges"}]}, True),
        ({"type": [{"contains": "Status"}]}, True),
        ({"data": {"taskType": [{"anything-but": 2}]}}, False),
        ({"data": {"taskType": [{"anything-but": [0, 1]}]}}, True),
        ({"data": {"eventCode": [{"anything-but": {"prefix": "dag-"}}]}}, True),
        ({"data": {"status": [{"numeric": [">=", 5, "<", 6]}]}}, True),
        ({"data": {"status": [{"numeric": [">", 5]}]}}, False),
        ({"aliyunpublishaddr": [{"cidr": "10.0.0.0/24"}]}, True),
        ({"aliyunpublishaddr": [{"cidr": "192.168.0.0/16"}]}, False),
        ({"data": {"finishTime": [{"exists": False}]}}, True),
        ({"data": {"status": [{"exists": True}]}}, True),
        ({"data": {"tags": ["b"]}}, True),  # any element of an array may match
        ({"data": {"status": [{"numeric": ["=", 6]}, {"numeric": ["=", 5]}]}}, True),  # any matcher
    ],
)
def test_pattern_operators(pattern, expected):
    assert matches(pattern, EVENT) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({"source": "acs.dataworks"}, "must be a list"),
        ({"source": []}, "empty list"),
        ({"source": [{"regex": ".*"}]}, "unknown operator"),
        ({"data": {"status": [{"numeric": [">", "5"]}]}}, "numeric"),
        ({"source": [{"prefix": 1}]}, "prefix"),
        # Exact values are documented for strings only: a number is matched with numeric.
        ({"data": {"status": [5]}}, "numeric"),
        ({"data": {"ok": [True]}}, "strings only"),
    ],
)
def test_a_malformed_pattern_is_an_error_naming_the_field(pattern, message):
    with pytest.raises(ValueError, match=message):
        matches(pattern, EVENT)


# --- the template's own pattern, one test per documented operator it uses ---------------------


def _template_pattern() -> dict:
    import yaml

    spec = yaml.safe_load((Path(__file__).parent.parent / "template.yml").read_text(encoding="utf-8"))
    resources = spec["resources"]["infra"]["props"]["template"]["Resources"]
    return resources["FailureRule"]["Properties"]["FilterPattern"]


def test_the_template_pattern_uses_only_exact_strings_and_numeric():
    pattern = _template_pattern()
    assert pattern["source"] == ["acs.dataworks"]
    assert pattern["type"] == ["dataworks:InstanceStatusChanges:InstanceStatusChanges"]
    assert pattern["data"]["status"] == [{"numeric": ["=", 5]}]


def test_exact_string_operator_as_the_template_uses_it():
    # "Exact value: Field equals the specified string": source and type.
    pattern = {"source": _template_pattern()["source"]}
    assert matches(pattern, {"source": "acs.dataworks"})
    assert not matches(pattern, {"source": "acs.dataworks.extra"})
    assert not matches(pattern, {"source": "ACS.DATAWORKS"})  # case-sensitive
    assert not matches(pattern, {"other": "acs.dataworks"})  # the field must exist


def test_numeric_equals_operator_as_the_template_uses_it():
    # "numeric: Field value falls within a numeric range", here ["=", 5]: failures only.
    pattern = {"data": {"status": _template_pattern()["data"]["status"]}}
    assert matches(pattern, {"data": {"status": 5}})
    assert matches(pattern, {"data": {"status": 5.0}})
    for other in (4, 6, "5", None, True):
        assert not matches(pattern, {"data": {"status": other}}), other


def test_the_template_pattern_matches_the_failed_samples_and_not_the_others():
    pattern = _template_pattern()
    matched = sorted(p.name for p in EVENTS.glob("dataworks-*.json") if matches(pattern, sample(p.name)))
    assert matched == ["dataworks-instance-failed-frozen.json", "dataworks-instance-failed.json"]


# --- a synchronous push, throttled by reservedConcurrency, then pushed again -------------------

# Blocks while a flag file is absent: the one instance stays busy until the test releases it.
BLOCKING = """
import json, os, time

def handler(event, context):
    payload = json.loads(event)
    flag = payload.get("holdUntil")
    while flag and not os.path.exists(flag):
        time.sleep(0.01)
    return {"got": payload.get("data", {}).get("taskId")}
"""


def _running(handle, limit: float = 60) -> None:
    """Wait until the only instance has taken `handle` (it blocks there until released)."""
    import time

    end = time.monotonic() + limit
    while handle.status != "Running":
        assert time.monotonic() < end, f"never started: {handle.status}"
        time.sleep(0.01)


def test_a_synchronous_push_over_reserved_concurrency_is_throttled_then_pushed_again(tmp_path):
    from localcloud.fc.function import Function

    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(BLOCKING), encoding="utf-8")
    flag = tmp_path / "release"
    with Function(
        handler="index.handler", code_dir=code, function_name="dwrerun-event", reserved_concurrency=1, timeout=60
    ) as function:
        _running(function.invoke_async(json.dumps({"holdUntil": str(flag)}).encode()))
        bridge = EventBridge(function, filter_pattern=_template_pattern())

        def release(n):  # EventBridge waits between pushes; meanwhile the instance frees up
            flag.write_text("go")
            function.drain()

        push = bridge.push_sync(sample("dataworks-instance-failed.json"), between_pushes=release)
        assert push.throttled == 1  # the first push found the one instance busy: FC's 429
        assert push.delivered and not push.dropped
        assert push.invocation.error is None
        # The succeeded sample never reaches the function.
        assert not bridge.push_sync(sample("dataworks-instance-succeeded.json")).delivered


def test_a_push_throttled_on_every_retry_is_dropped_not_silently_delivered(tmp_path):
    from localcloud.fc.function import Function

    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(BLOCKING), encoding="utf-8")
    flag = tmp_path / "release"
    with Function(handler="index.handler", code_dir=code, function_name="dwrerun-event", reserved_concurrency=1) as fn:
        _running(fn.invoke_async(json.dumps({"holdUntil": str(flag)}).encode()))
        push = EventBridge(fn).push_sync(sample("dataworks-instance-failed.json"), strategy="BACKOFF_RETRY")
        assert (push.throttled, push.delivered, push.dropped) == (4, False, True)  # 1 push + 3 retries
        flag.write_text("go")
        fn.drain()
