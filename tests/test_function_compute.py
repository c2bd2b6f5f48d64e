"""The InvokeFunction client: endpoint, signed request, and how each answer is classified.

A small fake FC OpenAPI on loopback checks the ACS3 signature (localcloud.acs3) and answers what
each test plans; the whole path through the local FC (queue, delay, 409 per task id) is tested
in tests/test_scheduled_reruns.py.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import CREDS
from dwrerun.config import ConfigError, Settings
from dwrerun.dataworks import Credentials
from dwrerun.function_compute import FunctionCompute, InvokeFunctionError, endpoint_for
from localcloud import acs3

FN_CREDS = Credentials(CREDS.access_key_id, CREDS.access_key_secret, CREDS.security_token)


class FakeFC(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        try:
            acs3.verify("POST", split.path, dict(parse_qsl(split.query)), self.headers.items(), body, [CREDS])
        except acs3.SignatureError as exc:
            return self._answer(exc.status, {"Code": exc.code, "Message": exc.message})
        self.server.seen.append((split.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.server.peers.append(self.client_address)  # one per connection the client opened
        status, answer, headers = self.server.plan.pop(0) if self.server.plan else (202, None, {})
        if status == "hang":
            threading.Event().wait(3)
            return
        self._answer(status, answer, headers)

    def _answer(self, status, answer, headers=None):
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        self.send_header("x-fc-request-id", "1-fake-request")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_fc():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFC)
    server.daemon_threads = True
    server.seen, server.plan, server.peers = [], [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def invoke(server, settings=None):
    fc = FunctionCompute(FN_CREDS, f"127.0.0.1:{server.server_port}", "http", "cn-hangzhou", settings or Settings())
    return fc.invoke_async("dwrerun-event", b'{"scheduledRerun":{}}', delay=90, task_id="dwrerun-1-run-1", timeout=5)


def test_an_accepted_invocation_is_signed_and_carries_the_async_headers(fake_fc):
    assert invoke(fake_fc) == "1-fake-request"
    ((path, headers, body),) = fake_fc.seen
    assert path == "/2023-03-30/functions/dwrerun-event/invocations"
    assert (headers["x-fc-invocation-type"], headers["x-fc-async-delay"]) == ("Async", "90")
    assert headers["x-fc-async-task-id"] == "dwrerun-1-run-1"
    assert body == b'{"scheduledRerun":{}}'


def test_an_answer_with_a_body_leaves_the_connection_to_the_next_call(fake_fc):
    # FC's 202 may carry a body: the SDK reads it whole (bytes), so the invocation's next scheduled
    # rerun or hand-off goes out on the same connection, not a new one
    fake_fc.plan = [(202, {"ok": True}, {}), (202, {"ok": True}, {})]
    fc = FunctionCompute(FN_CREDS, f"127.0.0.1:{fake_fc.server_port}", "http", "cn-hangzhou", Settings())
    for n in (1, 2):
        assert fc.invoke_async("dwrerun-event", b"{}", delay=0, task_id=f"t-{n}", timeout=5) == "1-fake-request"
    assert len(fake_fc.peers) == 2 and fake_fc.peers[0] == fake_fc.peers[1]


@pytest.mark.parametrize(
    ("status", "code", "duplicate", "transient", "ambiguous"),
    [
        (409, "AsyncTaskAlreadyExists", True, False, False),  # the task id is taken: already scheduled
        (403, "AccessDenied", False, False, False),  # no fc:InvokeFunction: fall back to rerunning now
        (400, "InvalidArgument", False, False, False),  # e.g. async task mode off [inferred]
        (404, "FunctionNotFound", False, False, False),
        (429, "ResourceThrottled", False, True, False),
        (500, "InternalError", False, True, True),  # may have been queued: resending is safe (409)
        (503, "ServiceUnavailable", False, True, True),
    ],
)
def test_each_answer_is_classified(fake_fc, status, code, duplicate, transient, ambiguous):
    fake_fc.plan.append((status, {"Code": code, "Message": f"{code} here", "RequestId": "r-1"}, {}))
    with pytest.raises(InvokeFunctionError) as caught:
        invoke(fake_fc)
    error = caught.value
    assert (error.code, error.status) == (code, status)
    assert (error.duplicate, error.transient, error.ambiguous) == (duplicate, transient, ambiguous)
    assert error.action == "InvokeFunction"


def test_an_error_body_in_fcs_older_shape_still_gives_the_code(fake_fc):
    fake_fc.plan.append((403, {"ErrorCode": "AccessDenied", "ErrorMessage": "no permission"}, {}))
    with pytest.raises(InvokeFunctionError) as caught:
        invoke(fake_fc)
    assert (caught.value.code, caught.value.message) == ("AccessDenied", "no permission")


def test_an_expired_token_needs_a_new_invocation(fake_fc):
    fake_fc.plan.append((400, {"Code": "InvalidSecurityToken.Expired", "Message": "expired"}, {}))
    with pytest.raises(InvokeFunctionError) as caught:
        invoke(fake_fc)
    assert caught.value.transient and caught.value.needs_new_invocation


def test_a_wrong_signature_is_a_permanent_refusal(fake_fc):
    wrong = Credentials(CREDS.access_key_id, "not-the-secret", CREDS.security_token)
    fc = FunctionCompute(wrong, f"127.0.0.1:{fake_fc.server_port}", "http", "cn-hangzhou", Settings())
    with pytest.raises(InvokeFunctionError) as caught:
        fc.invoke_async("dwrerun-event", b"{}", delay=1, task_id="t", timeout=5)
    assert caught.value.code == "SignatureDoesNotMatch" and not caught.value.transient


def test_no_answer_in_time_is_transient_and_ambiguous(fake_fc):
    fake_fc.plan.append(("hang", None, {}))
    with pytest.raises(InvokeFunctionError) as caught:
        invoke(fake_fc, Settings(read_timeout=1))
    assert caught.value.transient and caught.value.ambiguous
    assert caught.value.code in ("ReadTimeout", "Timeout")


def test_nobody_listening_is_transient():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFC)
    port = server.server_port
    server.server_close()
    fc = FunctionCompute(FN_CREDS, f"127.0.0.1:{port}", "http", "cn-hangzhou", Settings())
    with pytest.raises(InvokeFunctionError) as caught:
        fc.invoke_async("dwrerun-event", b"{}", delay=1, task_id="t", timeout=2)
    assert caught.value.transient


# --- the endpoint ------------------------------------------------------------------------------


def test_the_endpoint_is_the_accounts_regional_fc_endpoint():
    assert endpoint_for(Settings(), "cn-shanghai", "1877700012345678") == (
        "1877700012345678.cn-shanghai.fc.aliyuncs.com",
        "https",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "1877700012345678.cn-hangzhou-internal.fc.aliyuncs.com",
            ("1877700012345678.cn-hangzhou-internal.fc.aliyuncs.com", "https"),
        ),
        ("http://127.0.0.1:9000", ("127.0.0.1:9000", "http")),
        ("https://fcv3.cn-hangzhou.aliyuncs.com/", ("fcv3.cn-hangzhou.aliyuncs.com", "https")),
    ],
)
def test_function_compute_endpoint_overrides_it(value, expected):
    assert endpoint_for(Settings(function_compute_endpoint=value), None, None) == expected


@pytest.mark.parametrize("value", ["http://fc.example.com", "ftp://127.0.0.1", "https://host/path"])
def test_a_bad_override_is_a_config_error_naming_the_variable(value):
    with pytest.raises(ConfigError, match="FUNCTION_COMPUTE_ENDPOINT"):
        endpoint_for(Settings(function_compute_endpoint=value), "cn-hangzhou", "1")


def test_without_account_or_region_there_is_no_endpoint():
    with pytest.raises(ConfigError) as caught:
        endpoint_for(Settings(), "cn-hangzhou", None)
    assert str(caught.value) == (
        "no FC endpoint: the region or the account id is unknown (FC_REGION / FC_ACCOUNT_ID); "
        "set FUNCTION_COMPUTE_ENDPOINT"
    )


# --- classifying what the SDK raises, one field at a time ----------------------------------------
# The fake FC above always answers a JSON body whose Code, Message and RequestId the SDK copies into
# the exception too, so it cannot tell which source each field was taken from. These build the
# SDK's exceptions directly, each source alone, and check the whole InvokeFunctionError.


def classified(exc):
    from dwrerun.function_compute import _classify

    error = _classify(exc)
    assert isinstance(error, InvokeFunctionError) and error.action == "InvokeFunction"
    return error


def fields(error):
    return {
        "code": error.code,
        "message": error.message,
        "status": error.status,
        "request_id": error.request_id,
        "retry_after": error.retry_after,
        "transient": error.transient,
        "ambiguous": error.ambiguous,
        "duplicate": error.duplicate,
        "needs_new_invocation": error.needs_new_invocation,
    }


def refusal(**fields_):
    from alibabacloud_tea_openapi.exceptions import ClientException

    return ClientException(**fields_)


PERMANENT = {"retry_after": None, "transient": False, "ambiguous": False, "duplicate": False}
PERMANENT["needs_new_invocation"] = False


@pytest.mark.parametrize(
    ("data", "expected_code", "expected_message", "expected_request_id"),
    [
        # FC 3.0's body: Code, Message, RequestId (what the SDK's own fields also say: here they differ)
        ({"Code": "Denied", "Message": "no fc:InvokeFunction", "RequestId": "r-body"}, "Denied", "no fc:InvokeFunction", "r-body"),
        ({"code": "denied", "message": "lower case", "requestId": "r-camel"}, "denied", "lower case", "r-camel"),
        ({"ErrorCode": "OldDenied", "ErrorMessage": "older shape"}, "OldDenied", "older shape", "r-sdk"),
        ({}, "SdkCode", "SdkCode", "r-sdk"),  # no body: the SDK's code, and the code as the message
    ],
)  # fmt: skip
def test_each_field_of_a_refusal_is_taken_from_the_body_first_then_from_the_sdk(
    data, expected_code, expected_message, expected_request_id
):
    exc = refusal(code="SdkCode", message="sdk message", status_code=403, request_id="r-sdk", data=data)
    assert fields(classified(exc)) == {
        "code": expected_code,
        "message": expected_message,
        "status": 403,
        "request_id": expected_request_id,
        **PERMANENT,
    }


@pytest.mark.parametrize(
    ("sdk_code", "status", "expected"),
    [
        (None, 404, "404"),  # no code anywhere: the HTTP status stands for it
        (None, None, "Unknown"),
        ("None", 404, "404"),  # the SDK's str(None) is no code either
        ("None", None, "Unknown"),
        ("AccessDenied", None, "AccessDenied"),  # a code without a status is kept
    ],
)
def test_a_refusal_without_a_code_is_named_by_its_status_or_unknown(sdk_code, status, expected):
    error = classified(refusal(code=sdk_code, status_code=status, data=None))
    assert (error.code, error.message, error.status) == (expected, expected, status)
    assert error.request_id is None and not error.transient


@pytest.mark.parametrize("request_id", [None, "None"])
def test_a_missing_request_id_is_none_not_the_text_none(request_id):
    assert classified(refusal(code="Denied", status_code=403, request_id=request_id, data={})).request_id is None


def test_a_long_message_is_cut_to_300_characters():
    error = classified(refusal(code="Denied", status_code=403, data={"Message": "x" * 400}))
    assert error.message == "x" * 300


def test_a_taken_task_id_keeps_the_code_and_message_and_is_a_duplicate_not_a_retry():
    exc = refusal(code="ResourceAlreadyExists", message="sdk", status_code=409, request_id="r-409")
    exc.data = {"Code": "AsyncTaskAlreadyExists", "Message": "task id dwrerun-1-run-1 exists"}
    error = classified(exc)
    assert (error.code, error.message, error.status) == (
        "AsyncTaskAlreadyExists",
        "task id dwrerun-1-run-1 exists",
        409,
    )
    assert (error.duplicate, error.transient, error.ambiguous) == (True, False, False)


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("throttling", "Whatever", 400),  # ThrottlingException alone says so
        ("client", "Whatever", 429),  # the status alone
        ("client", "Throttling.User", 400),  # the code's prefix alone
        ("client", "TooManyRequests", 400),  # one of FC's throttling codes alone
        ("client", "ResourceThrottled", 400),
        ("client", "ResourceExhausted", 400),
    ],
)
def test_any_one_sign_of_throttling_makes_it_transient_but_not_ambiguous(kind, code, status):
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    make = ThrottlingException if kind == "throttling" else refusal
    error = classified(make(code=code, status_code=status, data={}))
    assert (error.transient, error.ambiguous, error.duplicate, error.needs_new_invocation) == (
        True,
        False,
        False,
        False,
    )


@pytest.mark.parametrize("status", [400, 403, 404, 428, 430, 499])
def test_other_4xx_refusals_are_permanent(status):
    error = classified(refusal(code="Refused", status_code=status, data={}))
    assert (error.transient, error.ambiguous) == (False, False)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_transient_and_ambiguous(status):
    error = classified(refusal(code="Boom", status_code=status, data={}))
    assert (error.transient, error.ambiguous, error.duplicate) == (True, True, False)


def test_retry_after_in_milliseconds_becomes_seconds():
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    error = classified(ThrottlingException(code="TooManyRequests", status_code=429, retry_after=2500, data={}))
    assert error.retry_after == 2.5
    assert classified(refusal(code="Boom", status_code=503, retry_after=4000, data={})).retry_after == 4.0
    assert classified(refusal(code="Boom", status_code=503, retry_after=0, data={})).retry_after is None


def test_every_field_of_a_throttled_refusal_is_kept():
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    exc = ThrottlingException(code="TooManyRequests", status_code=429, retry_after=1000, request_id="r-sdk", data={})
    assert fields(classified(exc)) == {
        "code": "TooManyRequests",
        "message": "TooManyRequests",
        "status": 429,
        "request_id": "r-sdk",
        "retry_after": 1.0,
        "transient": True,
        "ambiguous": False,
        "duplicate": False,
        "needs_new_invocation": False,
    }


# Transport failures: darabonba raises what requests raised, or wraps it; only the class name counts.
class ReadTimeout(Exception):
    pass


class ConnectTimeout(Exception):
    pass


class ConnectionError(Exception):  # noqa: A001 - requests' name, which is what is classified
    pass


class SSLError(Exception):
    pass


def wrapped(inner):
    # What darabonba does: raise its own error while handling requests' one (__context__).
    try:
        try:
            raise inner
        except Exception:
            raise RuntimeError(str(inner))  # noqa: B904 - __context__ is the point
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "code", "kind"),
    [
        (ReadTimeout("read timed out"), "ReadTimeout", "ReadTimeout"),
        (ConnectTimeout("connect timed out"), "Timeout", "ConnectTimeout"),
        (ConnectionError("refused"), "ConnectionError", "ConnectionError"),
        (SSLError("bad handshake"), "TransportError", "SSLError"),
        (wrapped(ReadTimeout("x")), "ReadTimeout", "ReadTimeout"),
        (wrapped(ConnectionError("x")), "ConnectionError", "ConnectionError"),
        (RuntimeError("no context"), "TransportError", "RuntimeError"),
    ],
)
def test_a_transport_failure_is_named_by_its_kind_and_is_transient_and_ambiguous(exc, code, kind):
    assert fields(classified(exc)) == {
        "code": code,
        "message": kind,
        "status": None,
        "request_id": None,
        "retry_after": None,
        "transient": True,
        "ambiguous": True,
        "duplicate": False,
        "needs_new_invocation": False,
    }


def test_the_inner_exception_darabonba_keeps_is_the_one_classified():
    outer = RuntimeError("wrapped")
    outer.inner_exception = ConnectTimeout("connect timed out")
    assert (classified(outer).code, classified(outer).message) == ("Timeout", "ConnectTimeout")


# --- the warm instance's client ------------------------------------------------------------------


@pytest.fixture
def no_cached_client(monkeypatch):
    from dwrerun import function_compute

    monkeypatch.setattr(function_compute, "_cached", None)


def test_the_client_is_built_for_the_accounts_regional_endpoint_and_kept_while_nothing_changes(no_cached_client):
    from dwrerun.function_compute import client_for

    first = client_for(FN_CREDS, Settings(), "cn-shanghai", "1877700012345678")
    assert first.endpoint == "1877700012345678.cn-shanghai.fc.aliyuncs.com"
    assert first._client._region_id == "cn-shanghai"
    assert client_for(FN_CREDS, Settings(), "cn-shanghai", "1877700012345678") is first


def test_rotated_credentials_or_another_endpoint_build_a_new_client(no_cached_client):
    from dwrerun.function_compute import client_for

    first = client_for(FN_CREDS, Settings(), "cn-shanghai", "1877700012345678")
    rotated = Credentials(FN_CREDS.access_key_id, FN_CREDS.access_key_secret, "next-token")
    second = client_for(rotated, Settings(), "cn-shanghai", "1877700012345678")
    assert second is not first
    third = client_for(rotated, Settings(), "cn-hangzhou", "1877700012345678")
    assert third is not second and third.endpoint == "1877700012345678.cn-hangzhou.fc.aliyuncs.com"


def test_a_slash_in_the_function_name_is_escaped_in_the_path(fake_fc):
    # quote(..., safe=""): the name is one path segment whatever it holds.
    fc = FunctionCompute(FN_CREDS, f"127.0.0.1:{fake_fc.server_port}", "http", "cn-hangzhou", Settings())
    fc.invoke_async("svc/fn", b"{}", delay=0, task_id="t-1", timeout=5)
    assert fake_fc.seen[0][0] == "/2023-03-30/functions/svc%2Ffn/invocations"


def test_x_fc_async_delay_stays_inside_fcs_documented_open_interval():
    # FC 3.0 documents x-fc-async-delay as (0, 3600): 0 and 3600 are never sent.
    from dwrerun.config import FC_MAX_ASYNC_DELAY
    from dwrerun.function_compute import async_delay

    assert FC_MAX_ASYNC_DELAY == 3599
    assert [async_delay(d) for d in (0, 0.4, 1, 1800, 3599, 3600, 99_999)] == [None, 1, 1, 1800, 3599, 3599, 3599]
