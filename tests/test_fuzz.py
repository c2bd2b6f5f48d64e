"""Property-based tests: both handlers against arbitrary and mutated input, in-process.

`index.handle_event` and `index.handle_http` are called directly (bytes and a context stub, as
FC calls them) with DATAWORKS_ENDPOINT pointing at a running emulator, so any DataWorks call the
input causes is in its journal. Stdout is a strict UTF-8 stream, like FC's: a record that
cannot be written fails the property.

Examples per property: FUZZ_EXAMPLES (default 500); docs/reliability.md gives the
run time. Deadlines are off: the machines are shared and noisy. The examples are derandomized
(the same ones on every run, on every xdist worker, in any test order): a failure here replays,
and nothing rests on a chance find. FUZZ_EXPLORE=1 draws new ones, to hunt for fresh inputs.
"""

import base64
import contextlib
import copy
import io
import json
import os
import types

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import CREDS, EVENTS, function_env
from localcloud.dataworks import DataWorksEmulator

# The autouse fixtures (warm-instance reset, secrets audit) are per test, not per example:
# each example resets what it needs itself.
settings.register_profile(
    "dwrerun-fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "500")),
    deadline=None,
    database=None,  # nothing written into the tree; a failure prints its reproduction blob
    derandomize=os.environ.get("FUZZ_EXPLORE") != "1",
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("dwrerun-fuzz")

STATUS_CHANGE = "dataworks:InstanceStatusChanges:InstanceStatusChanges"
RERUN_FIELDS = ("Ids", "Comment", "DryRun", "Force")
SAMPLES = {path.name: json.loads(path.read_text()) for path in sorted(EVENTS.glob("*.json"))}
EVENT_SAMPLES = [v for k, v in SAMPLES.items() if k.startswith("dataworks-")]
HTTP_SAMPLES = [v for k, v in SAMPLES.items() if k.startswith("fc-http-")]


def _failure(**data) -> bytes:
    event = copy.deepcopy(SAMPLES["dataworks-instance-failed.json"])
    event["data"].update(data)
    return json.dumps(event).encode("utf-8", "surrogatepass")


def _http(body: str, **changes) -> bytes:
    event = copy.deepcopy(SAMPLES["fc-http-rerun-request.json"])
    event.update(body=body, **changes)
    return json.dumps(event).encode("utf-8", "surrogatepass")


# Inputs that broke the handlers before they were fixed; kept as fixed examples.
DEEP = "[" * 100_000 + "]" * 100_000

# --- strategies ----------------------------------------------------------------------------------

# Values that have broken parsers before: digit strings past int()'s 4300-digit limit, int64
# edges, lone surrogates (valid in JSON, unwritable as UTF-8), non-ASCII digits.
TRICKY = st.sampled_from(
    ["5", "05", "٥", "", " 5", "-1", "0", "1" * 5000, str(2**63), str(2**63 - 1), "\ud800", "x\udfffy", "1e3"]
    + [5, 0, -5, 2**63, 2**63 - 1, 2**64, 5.0, 1e308, True, False, None, [], {}, [5], {"taskId": 5}]
).map(copy.deepcopy)  # sampled_from hands out the same list or dict each time: mutation_of would
# edit it in place, so later examples (and their replays) would start from another value.
TEXT = st.text(max_size=20) | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT | TRICKY
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield prefix + (key,)
            yield from _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield prefix + (index,)
            yield from _paths(inner, prefix + (index,))


@st.composite
def mutation_of(draw, samples, hot_paths=()):
    """A sample with fields dropped, replaced or retyped, the ones the handler reads most often."""
    value = copy.deepcopy(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(value))
        hot = [p for p in hot_paths if p[:-1] in paths or len(p) == 1]
        if not paths:
            break
        path = draw(st.sampled_from(hot) if hot and draw(st.booleans()) else st.sampled_from(paths))
        parent = value
        try:
            for key in path[:-1]:
                parent = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):
            continue
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, dict) or (isinstance(path[-1], int) and path[-1] < len(parent)):
            parent[path[-1]] = draw(JSON)
    return value


EVENT_HOT = [("data", "taskId"), ("data", "status"), ("data",), ("id",), ("source",), ("type",)]
EVENT_HOT += [("data", "eventCode"), ("data", "taskType"), ("specversion",)]


@st.composite
def event_payloads(draw):
    """Bytes as FC hands them to the event function."""
    kind = draw(st.sampled_from(["bytes", "json", "mutation", "data-only", "data-as-string", "array"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    event = draw(mutation_of(EVENT_SAMPLES, EVENT_HOT))
    if kind == "data-only" and isinstance(event, dict) and "data" in event:
        event = event["data"]
    elif kind == "data-as-string" and isinstance(event, dict) and "data" in event:
        event["data"] = json.dumps(event["data"])
    elif kind == "array":
        event = [event] + draw(st.lists(mutation_of(EVENT_SAMPLES, EVENT_HOT) | JSON, max_size=3))
    return json.dumps(event).encode("utf-8", "surrogatepass")


IDS = st.lists(st.integers(-1, 2**64) | TRICKY | st.sampled_from(["1000012345678", 7]), max_size=5)
IDS |= st.lists(st.integers(1, 1000), min_size=99, max_size=102, unique=True)


@st.composite
def http_events(draw):
    """HTTP-trigger events: random methods, paths, headers, bodies, base64 flags, broken envelopes."""
    kind = draw(st.sampled_from(["bytes", "json", "request", "request", "request", "mutation"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode("utf-8", "surrogatepass")
    if kind == "mutation":
        hot = [("body",), ("headers",), ("requestContext",), ("requestContext", "http"), ("rawPath",)]
        hot += [("requestContext", "http", "method"), ("isBase64Encoded",)]
        return json.dumps(draw(mutation_of(HTTP_SAMPLES, hot))).encode("utf-8", "surrogatepass")
    event = copy.deepcopy(draw(st.sampled_from(HTTP_SAMPLES)))
    event["requestContext"]["http"]["method"] = draw(st.sampled_from(["POST", "GET", "HEAD", "PUT", "post"]) | TEXT)
    event["rawPath"] = draw(st.sampled_from(["/rerun", "/", "/health", "/rerun/", "/reruns", ""]) | TEXT)
    content_type = draw(st.sampled_from(["application/json", "Application/JSON; charset=utf-8", "text/plain"]) | TEXT)
    event["headers"] = {**draw(st.dictionaries(TEXT, TEXT, max_size=3)), "Content-Type": content_type}
    fields = st.fixed_dictionaries(
        {}, optional={"Ids": IDS | JSON, "Comment": TEXT | JSON | st.text(min_size=490, max_size=510), "DryRun": JSON}
    )
    body = draw(fields | st.dictionaries(TEXT, JSON, max_size=3) | JSON)
    body = draw(st.just(json.dumps(body)) | TEXT | st.just("x" * 70_000))
    if draw(st.booleans()):
        event["isBase64Encoded"] = True
        body = draw(st.just(base64.b64encode(body.encode("utf-8", "surrogatepass")).decode()) | st.just(body))
    event["body"] = body
    return json.dumps(event).encode("utf-8", "surrogatepass")


# --- the in-process function ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator():
    with DataWorksEmulator(credentials=[CREDS]) as emu:
        yield emu


@pytest.fixture
def fc_env(emulator):
    """os.environ as FC sets it for the function, pointing at the emulator."""
    env = {
        **function_env(emulator),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": CREDS.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CREDS.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": CREDS.security_token,
        "FC_REGION": "cn-hangzhou",
        "FC_FUNCTION_NAME": "dwrerun-fuzz",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield emulator


CONTEXT = types.SimpleNamespace(
    request_id="1-fuzz", region="cn-hangzhou", function=types.SimpleNamespace(name="dwrerun-fuzz", timeout=30)
)


def call(handler, payload: bytes):
    """Run a handler with a strict UTF-8 stdout, as FC's runtime has; returns (result, records)."""
    from dwrerun import event_function

    event_function.handled_events = event_function.HandledEvents()  # each example on a fresh instance
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    with contextlib.redirect_stdout(out):
        result = handler(payload, CONTEXT)
    text = out.buffer.getvalue().decode("utf-8")
    records = [json.loads(line) for line in text.splitlines()]  # every line a JSON record
    return result, records


def looked_up(emulator) -> list[int]:
    return [int(e.params["Id"]) for e in emulator.journal if e.action == "GetTaskInstance"]


# --- an independent statement of what counts as a failure event ----------------------------------


def _int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def failed_instances(payload: bytes) -> tuple[set[int], int]:
    """(instance ids reported failed, number of events) per FACTS section 1, for the oracle."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return set(), 1
    events = value if isinstance(value, list) and value else [value]
    ids = set()
    for event in events:
        if not isinstance(event, dict):
            continue
        if {"source", "type", "specversion"} & set(event):
            if event.get("source") != "acs.dataworks" or event.get("type") != STATUS_CHANGE:
                continue
            data = event.get("data")
            if isinstance(data, str):
                with contextlib.suppress(ValueError, RecursionError):
                    data = json.loads(data)
        elif "taskId" in event and "status" in event:
            data = event
        else:
            continue
        if not isinstance(data, dict) or data.get("eventCode") not in (None, "instance-status-changes"):
            continue
        instance_id = _int(data.get("taskId"))
        if instance_id is not None and 0 < instance_id < 2**63 and _int(data.get("status")) == 5:
            ids.add(instance_id)
    return ids, len(events)


# --- the event function --------------------------------------------------------------------------


@FUZZ
@given(payload=event_payloads())
@example(payload=_failure(taskId="1" * 5000))  # int() refused it with a ValueError
@example(payload=DEEP.encode())  # json.loads raised RecursionError
@example(payload=json.dumps({**SAMPLES["dataworks-instance-failed.json"], "data": DEEP}).encode())
@example(payload=_failure(taskId="\ud800", status="\udfff"))  # a record stdout could not encode
@example(payload=json.dumps({**SAMPLES["dataworks-instance-failed.json"], "id": "\ud800"}).encode())
def test_the_event_handler_records_every_event_and_calls_dataworks_only_for_failures(fc_env, payload):
    import index

    fc_env.journal.clear()
    result, records = call(index.handle_event, payload)
    expected_ids, events = failed_instances(payload)
    assert set(looked_up(fc_env)) <= expected_ids  # no call for anything but a failure
    if not expected_ids:
        assert len(fc_env.journal) == 0
    instance_records = [r for r in records if r["kind"] == "instance"]
    assert len(instance_records) == events == result["instances"] == len(result["outcomes"])
    assert records[-1]["kind"] == "summary" and records[-1]["outcome"] == "done"
    assert all(r["message"] and r["reason"] for r in instance_records)
    json.dumps(result)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 3, 10))
@given(payload=event_payloads())
def test_the_event_handler_raises_only_retry_later_when_dataworks_keeps_failing(fc_env, payload):
    import index
    from dwrerun.rerun import RetryLater

    fc_env.faults.set("*", server_error=None)
    try:
        try:
            result, _ = call(index.handle_event, payload)
        except RetryLater as exc:
            assert any(o.reason == "deferred" for o in exc.outcomes)
            assert all(o.reason and o.message for o in exc.outcomes)
        else:
            assert result["outcome"] == "done"
    finally:
        fc_env.faults.clear()


# --- the HTTP function ---------------------------------------------------------------------------


def rerun_ids(event_bytes: bytes):
    """The ids of a request the function must act on, or None: an independent reading of the API."""
    try:
        event = json.loads(event_bytes)
        http = event["requestContext"]["http"]
        path = event.get("rawPath") or http.get("path") or "/"
        content_type = {str(k).lower(): str(v) for k, v in event["headers"].items()}.get("content-type", "")
        raw = event["body"]
        body = json.loads(base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw)
        method = http["method"]
    except Exception:  # noqa: BLE001 - anything unreadable is not a rerun request
        return None
    ok = (
        isinstance(path, str)
        and isinstance(raw, str)
        and method == "POST"
        and (path.rstrip("/") or "/") in ("/rerun", "/")
        and content_type.split(";")[0].strip().lower() == "application/json"
        and len(raw) <= 64 * 1024
        and isinstance(body, dict)
        and set(body) <= set(RERUN_FIELDS)
        and isinstance(body.get("Ids"), list)
        and 0 < len(body["Ids"]) <= 100
        and all(isinstance(body.get(f, False), bool) for f in ("DryRun", "Force"))
        and (body.get("Comment") is None or (isinstance(body["Comment"], str) and len(body["Comment"]) <= 500))
        and _is_text(body.get("Comment") or "")  # a lone surrogate is refused up front (400)
    )
    ids = [_int(i) for i in body["Ids"]] if ok else []
    if not ok or any(i is None or not 0 < i < 2**63 for i in ids) or len(set(ids)) != len(ids):
        return None
    return ids


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@FUZZ
@given(event=http_events())
@example(event=_http("[" * 30_000))  # RecursionError: a 500 instead of a 400
@example(event=_http("{}", requestContext={"http": "POST"}))  # AttributeError: a 500
@example(event=_http("{}", headers=["Content-Type"]))  # AttributeError: a 500
@example(event=_http('{"Ids": [1], "Comment": "\ud800"}'))  # the records could not be written; now a 400
@example(event=_http("{}", rawPath="/\ud800"))  # the answer was not UTF-8
def test_the_http_handler_always_answers_well_formed_json_and_calls_dataworks_only_for_valid_requests(fc_env, event):
    import index

    fc_env.journal.clear()
    response, _ = call(index.handle_http, event)
    assert set(response) == {"statusCode", "headers", "isBase64Encoded", "body"}
    assert isinstance(response["statusCode"], int) and isinstance(response["isBase64Encoded"], bool)
    assert isinstance(response["headers"], dict) and all(isinstance(v, str) for v in response["headers"].values())
    response["body"].encode("utf-8")  # FC must be able to send it
    answer = json.loads(response["body"])
    status = response["statusCode"]
    assert status == 200 or 400 <= status < 500, answer  # bad input is never a 5xx
    ids = rerun_ids(event)
    if status >= 400:
        assert isinstance(answer["Code"], str) and isinstance(answer["Message"], str) and answer["Message"]
        assert len(fc_env.journal) == 0
        assert ids is None, f"a valid request was refused: {answer}"
    elif ids is None:
        assert len(fc_env.journal) == 0  # GET /health
    else:
        assert sorted(looked_up(fc_env)) == sorted(ids)
        assert set(answer["SuccessInfo"]) | set(answer["Skipped"]) == {str(i) for i in ids}
