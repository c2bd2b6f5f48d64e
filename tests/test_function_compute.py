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
    server.seen, server.plan = [], []
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
