"""The local HTTP gateway turns real HTTP requests into FC 3.0 HTTP-trigger events and back."""

from __future__ import annotations

import base64
import http.client
import json
import textwrap
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localcloud.acs3 import Credentials
from localcloud.fc import FunctionCompute, auth
from localcloud.gateway import HttpGateway

EVENTS = Path(__file__).parent / "events"
CALLER = Credentials("LTAI-caller", "caller-secret")
STS_CALLER = Credentials("STS.caller", "sts-secret", "sts-token")

HANDLER = """
import base64, json

def handler(event, context):
    request = json.loads(event)
    path = request["rawPath"]
    if path == "/error":
        raise RuntimeError("DataWorks said no")
    if path == "/binary":
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"}, "isBase64Encoded": True,
                "body": base64.b64encode(b"\\x89PNG\\x00\\xff").decode()}
    if path == "/plain":
        return "just text"
    if path == "/bad":
        return {"statusCode": "two hundred", "body": ""}
    return {
        "statusCode": 201 if request["requestContext"]["http"]["method"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "X-Rerun": "yes", "x-fc-forged": "1",
                    "Set-Cookie": ["a=1", "b=2"]},
        "isBase64Encoded": False,
        "body": json.dumps(request),
    }
"""


@pytest.fixture
def fn(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(HANDLER), encoding="utf-8")
    with FunctionCompute(
        handler="index.handler",
        code_dir=code,
        function_name="dwrerun-http",
        logstore=tmp_path / "logs.jsonl",
        timeout=30,
    ) as function:
        yield function


@pytest.fixture
def gateway(fn):
    with HttpGateway(fn) as gw:
        yield gw


def call(url, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def shape(value):
    """The nested keys of an event, without the free-form maps."""
    if isinstance(value, dict):
        return {k: (None if k in ("headers", "queryParameters") else shape(v)) for k, v in value.items()}
    return type(value).__name__


def test_a_post_becomes_the_documented_event_and_the_answer_the_response(gateway):
    # GIVEN a JSON body like an operator's bulk rerun request
    body = json.dumps({"Ids": [1000012345678], "Comment": "rerun after upstream fix"}).encode()

    # WHEN it is POSTed through the gateway
    status, headers, raw = call(
        gateway.url + "/rerun", "POST", body, {"Content-Type": "application/json", "User-Agent": "curl/8.5.0"}
    )

    # THEN the handler got an event shaped exactly like FC's sample
    event = json.loads(raw)
    sample = json.loads((EVENTS / "fc-http-rerun-request.json").read_text())
    assert shape(event) == shape(sample)
    assert event["version"] == "v1" and event["rawPath"] == "/rerun"
    assert event["body"] == body.decode() and event["isBase64Encoded"] is False
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["headers"]["User-Agent"] == "curl/8.5.0"
    assert "Host" not in event["headers"] and "Content-Length" not in event["headers"]
    ctx = event["requestContext"]
    assert ctx["accountId"] == "1877700012345678"
    assert ctx["domainName"] == f"{ctx['domainPrefix']}.cn-hangzhou.fcapp.run"
    assert ctx["http"] == {
        "method": "POST",
        "path": "/rerun",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8.5.0",
    }
    assert ctx["timeEpoch"].isdigit() and ctx["time"].endswith("Z")

    # AND the handler's response struct is the HTTP response, minus x-fc-* headers
    assert status == 201
    assert headers["X-Rerun"] == "yes"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers["x-fc-forged"] is None
    assert headers["x-fc-request-id"] == ctx["requestId"] == gateway.invocations[-1].request_id


def test_a_get_carries_its_query_and_repeated_headers_comma_joined(gateway):
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.putrequest("GET", "/health?project=48213&id=1&id=2&empty=")
    connection.putheader("X-Multi", "a")
    connection.putheader("X-Multi", "b")
    connection.endheaders()
    response = connection.getresponse()
    event = json.loads(response.read())
    connection.close()

    assert response.status == 200
    assert event["rawPath"] == "/health" and event["body"] == ""
    assert event["queryParameters"] == {"project": "48213", "id": "1,2", "empty": ""}
    assert event["headers"]["X-Multi"] == "a,b"
    assert event["requestContext"]["http"]["method"] == "GET"


def test_an_encoded_path_is_raw_in_rawpath_and_decoded_in_http_path(gateway):
    _, _, raw = call(gateway.url + "/a%20b")
    event = json.loads(raw)
    assert event["rawPath"] == "/a%20b" and event["requestContext"]["http"]["path"] == "/a b"


def test_a_binary_body_arrives_base64_encoded(gateway):
    payload = b"\x00\x01\xfe\xff"
    _, _, raw = call(gateway.url + "/upload", "POST", payload, {"Content-Type": "application/octet-stream"})
    event = json.loads(raw)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload

    # text that is not UTF-8 cannot travel as text either
    _, _, raw = call(gateway.url + "/upload", "POST", b"caf\xe9", {"Content-Type": "text/plain"})
    assert json.loads(raw)["isBase64Encoded"] is True


def test_a_base64_response_body_is_decoded(gateway):
    status, headers, raw = call(gateway.url + "/binary")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert raw == b"\x89PNG\x00\xff"


def test_a_plain_return_value_is_the_body(gateway):
    status, _, raw = call(gateway.url + "/plain")
    assert (status, raw) == (200, b"just text")


def test_a_handler_error_is_a_502_without_a_traceback(gateway):
    status, headers, raw = call(gateway.url + "/error", "POST", b"{}", {"Content-Type": "application/json"})

    assert status == 502
    assert headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert headers["x-fc-request-id"]
    body = json.loads(raw)
    assert body == {"errorType": "RuntimeError", "errorMessage": "DataWorks said no"}
    assert b"Traceback" not in raw and b"index.py" not in raw
    # the stack trace is in the function's log instead
    assert any("Traceback" in line for line in gateway.invocations[-1].stderr)


def test_a_malformed_response_struct_is_a_502(gateway):
    status, headers, raw = call(gateway.url + "/bad")
    assert status == 502 and json.loads(raw)["errorType"] == "InvalidResponse"


# --- authType: function ------------------------------------------------------------------------


@pytest.fixture
def signed_gateway(fn):
    with HttpGateway(fn, auth_type="function", credentials=[CALLER, STS_CALLER]) as gw:
        yield gw


def test_an_unsigned_request_is_refused_with_403(signed_gateway):
    status, headers, raw = call(signed_gateway.url + "/rerun", "POST", b"{}")
    assert status == 403
    assert json.loads(raw)["Code"] == "MissingAuthorization"
    assert not signed_gateway.invocations  # the function never ran


@pytest.mark.parametrize("caller", [CALLER, STS_CALLER], ids=["accesskey", "sts"])
def test_a_signed_request_is_served(signed_gateway, caller):
    url = signed_gateway.url + "/rerun?dryRun=true"
    body = b'{"Ids": [1]}'
    headers = auth.sign("POST", url, caller, body)

    status, _, raw = call(url, "POST", body, {**headers, "Content-Type": "application/json"})

    assert status == 201
    event = json.loads(raw)
    # the signature and the token never reach the function
    assert not {k.lower() for k in event["headers"]} & {"authorization", "x-acs-security-token"}
    assert headers["authorization"].split("Signature=")[1] not in raw.decode()


@pytest.mark.parametrize(
    "tamper",
    ["body", "query", "path", "method", "secret", "token", "stale"],
)
def test_a_tampered_request_is_refused_with_403(signed_gateway, tamper):
    url = signed_gateway.url + "/rerun?dryRun=true"
    body = b'{"Ids": [1]}'
    caller = STS_CALLER
    now = None
    if tamper == "secret":
        caller = Credentials(STS_CALLER.access_key_id, "guessed-secret", STS_CALLER.security_token)
    if tamper == "stale":
        now = datetime.now(timezone.utc) - timedelta(minutes=20)
    headers = auth.sign("POST", url, caller, body, now=now)
    method = "POST"
    if tamper == "body":
        body = b'{"Ids": [1, 2, 3]}'
    if tamper == "query":
        url = url.replace("true", "false")
    if tamper == "path":
        url = url.replace("/rerun", "/rerun-all")
    if tamper == "method":
        method = "PUT"
    if tamper == "token":
        headers["x-acs-security-token"] = "someone-elses-token"

    status, _, raw = call(url, method, body, headers)

    assert status == 403
    assert "Code" in json.loads(raw)
    assert not signed_gateway.invocations


def test_the_documented_sdk_signing_sample_is_accepted(signed_gateway):
    # The FC doc's Python sample: alibabacloud openapi util's get_authorization over x-acs-date
    # and x-acs-security-token, with an empty payload.
    from alibabacloud_tea_openapi.utils import Utils
    from Tea.request import TeaRequest

    path, query = "/rerun", {"foo": "bar"}
    headers = {
        "x-acs-date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-security-token": STS_CALLER.security_token,
    }
    auth_request = TeaRequest()
    auth_request.method = "POST"
    auth_request.pathname = path
    auth_request.headers = headers
    auth_request.query = query
    headers["authorization"] = Utils.get_authorization(
        auth_request, "ACS3-HMAC-SHA256", "", STS_CALLER.access_key_id, STS_CALLER.access_key_secret
    )

    status, _, _ = call(signed_gateway.url + path + "?foo=bar", "POST", b"hello world", headers)

    assert status == 201


def test_sign_matches_the_sdk_when_the_body_is_not_signed():
    from alibabacloud_tea_openapi.utils import Utils
    from Tea.request import TeaRequest

    now = datetime(2026, 11, 28, 2, 10, tzinfo=timezone.utc)
    ours = auth.sign("GET", "https://x.cn-hangzhou.fcapp.run/health?b=2&a=%20x", STS_CALLER, now=now, sign_body=False)
    request = TeaRequest()
    request.method, request.pathname, request.query = "GET", "/health", {"b": "2", "a": " x"}
    request.headers = {"x-acs-date": "2026-11-28T02:10:00Z", "x-acs-security-token": "sts-token"}
    sdk = Utils.get_authorization(request, "ACS3-HMAC-SHA256", "", "STS.caller", "sts-secret")
    assert ours["authorization"] == sdk


def test_function_auth_needs_the_allowed_callers(fn):
    with pytest.raises(ValueError, match="credentials"):
        HttpGateway(fn, auth_type="function")
    with pytest.raises(ValueError, match="auth_type"):
        HttpGateway(fn, auth_type="jwt")
