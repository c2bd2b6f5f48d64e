"""The local FC OpenAPI answers InvokeFunction as FC 3.0 does, to the clients the function may use.

The generic tea-openapi client with the Params the FC SDK itself uses is the caller (it is what the
function will use, issue 12); the official fc20230330 SDK checks the wire form once. Delays run on a
ManualClock: tests advance it, nothing sleeps.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import textwrap
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from darabonba.runtime import RuntimeOptions

from conftest import CREDS, ROTATED
from localcloud import acs3, openapi
from localcloud.clock import ManualClock
from localcloud.fc import Function, FunctionComputeApi
from localcloud.fc.exceptions import InvalidArgument

HANDLER = """
import json, os

def handler(event, context):
    request = json.loads(event or b"{}")
    marker = os.path.join(os.environ["MARKERS"], context.request_id)
    if request.get("fail_first") and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    print(json.dumps({"got": request}))
    return {"got": request, "requestId": context.request_id}
"""


@pytest.fixture
def clock():
    return ManualClock(start=1_800_000_000)


@pytest.fixture
def fn(tmp_path, clock):
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(HANDLER), encoding="utf-8")
    with Function(
        "index.handler",
        code_dir=str(code),
        function_name="dwrerun-event",
        env={"MARKERS": str(tmp_path)},
        logstore=str(tmp_path / "logs.jsonl"),
        reserved_concurrency=2,
        async_task=True,
        clock=clock,
    ) as function:
        yield function


@pytest.fixture
def api(fn):
    with FunctionComputeApi([fn], credentials=[CREDS]) as server:
        yield server


@pytest.fixture
def client(api):
    return openapi.client(api.endpoint, CREDS)


def invoke(client, body: bytes, headers=None, name="dwrerun-event", qualifier=None) -> dict:
    """InvokeFunction with the generic client and the FC SDK's own Params."""
    params = utils_models.Params(
        action="InvokeFunction",
        version="2023-03-30",
        protocol="HTTP",
        pathname=f"/2023-03-30/functions/{name}/invocations",
        method="POST",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="binary",
    )
    request = utils_models.OpenApiRequest(
        headers=dict(headers or {}), query={"qualifier": qualifier} if qualifier else None, stream=io.BytesIO(body)
    )
    return client.call_api(params, request, RuntimeOptions(autoretry=False))


def read(body) -> bytes:
    """The answer's body: bytes, or a stream of them, depending on the client's version."""
    return body if isinstance(body, bytes) else body.read()


def refused(client, body=b"{}", headers=None, **kwargs) -> ClientException:
    with pytest.raises(ClientException) as caught:
        invoke(client, body, headers, **kwargs)
    return caught.value


ASYNC = {"x-fc-invocation-type": "Async"}


def test_an_async_invocation_is_accepted_with_202_and_runs_under_that_request_id(client, api, fn):
    answer = invoke(client, b'{"n": 1}', ASYNC, qualifier="LATEST")
    assert answer["statusCode"] == 202
    request_id = answer["headers"]["x-fc-request-id"]
    fn.drain()
    (handle,) = fn.async_invocations
    assert handle.request_id == request_id and handle.status == "Succeeded"
    assert handle.final.result == {"got": {"n": 1}, "requestId": request_id}
    (call,) = api.calls()
    assert (call.function, call.invocation_type, call.status, call.access_key_id) == (
        "dwrerun-event",
        "Async",
        202,
        CREDS.access_key_id,
    )


def test_a_delayed_invocation_comes_due_on_the_clock(client, api, fn, clock):
    t0 = clock.now()
    assert invoke(client, b"{}", {**ASYNC, "x-fc-async-delay": "30"})["statusCode"] == 202
    (handle,) = fn.async_invocations
    fn.drain()  # nothing is due yet: nothing runs
    assert (fn.delayed, handle.attempts, handle.due_at) == (1, [], t0 + 30)

    assert clock.advance(29) == 0
    assert fn.delayed == 1 and handle.status == "Enqueued"
    assert clock.advance(1) == 1
    fn.drain()
    assert fn.delayed == 0 and handle.status == "Succeeded"
    assert api.calls()[0].delay == 30 and api.calls()[0].time == t0


def test_a_delayed_invocation_that_raises_is_retried_by_fc(client, fn, clock):
    invoke(client, b'{"fail_first": true}', {**ASYNC, "x-fc-async-delay": "5"})
    clock.advance(5)
    fn.drain()
    (handle,) = fn.async_invocations
    assert [a.error and a.error["errorType"] for a in handle.attempts] == ["RuntimeError", None]
    assert handle.status == "Succeeded"


def test_a_repeated_task_id_is_refused_with_409_in_async_task_mode(client, api, fn):
    first = invoke(client, b"{}", {**ASYNC, "x-fc-async-task-id": "dwrerun-1000012345678-1", "x-fc-async-delay": "60"})
    assert first["statusCode"] == 202 and first["headers"]["x-fc-async-task-id"] == "dwrerun-1000012345678-1"

    again = refused(client, headers={**ASYNC, "x-fc-async-task-id": "dwrerun-1000012345678-1"})
    assert again.status_code == 409 and again.code == "AsyncTaskAlreadyExists"
    assert "dwrerun-1000012345678-1" in again.message and again.request_id

    other = invoke(client, b"{}", {**ASYNC, "x-fc-async-task-id": "dwrerun-1000012345678-2"})
    assert other["statusCode"] == 202
    assert [c.status for c in api.calls()] == [202, 409, 202]
    assert len(fn.async_invocations) == 2  # the refused copy was never queued


@pytest.mark.parametrize("task_id", ["_a", "a-1_B", "x" * 128])
def test_task_ids_that_follow_fcs_rule_are_taken(client, task_id):
    assert invoke(client, b"{}", {**ASYNC, "x-fc-async-task-id": task_id})["statusCode"] == 202


@pytest.mark.parametrize("task_id", ["1abc", "-a", "a b", "a.b", "x" * 129, "é"])
def test_task_ids_that_break_fcs_rule_are_refused(client, task_id):
    error = refused(client, headers={**ASYNC, "x-fc-async-task-id": task_id})
    assert (error.status_code, error.code) == (400, "InvalidArgument") and "task id" in error.message


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        ({**ASYNC, "x-fc-async-delay": "3601"}, "x-fc-async-delay"),
        ({**ASYNC, "x-fc-async-delay": "3600"}, "x-fc-async-delay"),  # outside the documented (0, 3600)
        ({**ASYNC, "x-fc-async-delay": "0"}, "x-fc-async-delay"),
        ({**ASYNC, "x-fc-async-delay": "1.5"}, "x-fc-async-delay"),
        ({**ASYNC, "x-fc-async-delay": "-1"}, "x-fc-async-delay"),
        ({"x-fc-invocation-type": "Later"}, "x-fc-invocation-type"),
        ({"x-fc-async-delay": "5"}, "need x-fc-invocation-type Async"),
        ({"x-fc-log-type": "All"}, "x-fc-log-type"),
    ],
)
def test_bad_invocation_headers_are_refused_naming_the_header(client, fn, headers, names):
    error = refused(client, headers=headers)
    assert (error.status_code, error.code) == (400, "InvalidArgument") and names in error.message
    assert fn.async_invocations == []


def test_a_task_id_without_async_task_mode_is_refused(client, fn):
    fn.async_task = False
    error = refused(client, headers={**ASYNC, "x-fc-async-task-id": "t1"})
    assert error.status_code == 400 and "async task mode" in error.message


def test_an_async_payload_above_128_kb_is_refused(client, fn):
    error = refused(client, body=b"x" * (128 * 1024 + 1), headers=ASYNC)
    assert (error.status_code, error.code) == (400, "EntityTooLarge")


def test_injected_refusals_answer_403_and_429_then_clear(client, api, fn):
    api.faults.set(deny=1)
    denied = refused(client, headers=ASYNC)
    assert (denied.status_code, denied.code) == (403, "AccessDenied")
    assert "fc:InvokeFunction" in denied.message and "acs:fc:cn-hangzhou:" in denied.message

    api.faults.set(throttle=2)
    assert [refused(client, headers=ASYNC).status_code for _ in range(2)] == [429, 429]
    assert invoke(client, b"{}", ASYNC)["statusCode"] == 202
    assert [c.code for c in api.calls()] == ["AccessDenied", "ResourceExhausted", "ResourceExhausted", None]
    assert len(fn.async_invocations) == 1


def test_unknown_function_and_qualifier_are_404(client):
    assert (refused(client, name="nope").status_code, refused(client, name="nope").code) == (404, "FunctionNotFound")
    alias = refused(client, qualifier="prod")
    assert (alias.status_code, alias.code) == (404, "AliasNotFound")


def test_a_sync_invocation_answers_the_result_and_the_error_type(client, fn):
    answer = invoke(client, b'{"n": 2}', {"x-fc-log-type": "Tail"})
    assert answer["statusCode"] == 200
    assert json.loads(read(answer["body"]))["got"] == {"n": 2}
    assert base64.b64decode(answer["headers"]["x-fc-log-result"]).decode() == '{"got": {"n": 2}}'

    failed = invoke(client, b'{"fail_first": true}')
    assert failed["statusCode"] == 200 and failed["headers"]["x-fc-error-type"] == "UnhandledInvocationError"
    assert json.loads(read(failed["body"]))["errorType"] == "RuntimeError"
    assert fn.async_invocations == []  # never queued, never retried


# --- the signature -----------------------------------------------------------------------------


def test_a_wrong_secret_an_unknown_key_and_a_replay_are_403(api, client):
    wrong = openapi.client(api.endpoint, acs3.Credentials(CREDS.access_key_id, "not-the-secret", CREDS.security_token))
    assert (refused(wrong).status_code, refused(wrong).code) == (403, "SignatureNotMatch")
    unknown = openapi.client(api.endpoint, ROTATED)
    assert (refused(unknown).status_code, refused(unknown).code) == (403, "InvalidAccessKeyID")

    body = b"{}"
    path = "/2023-03-30/functions/dwrerun-event/invocations"
    headers = {"host": api.endpoint, "x-fc-invocation-type": "Async", "content-type": "application/octet-stream"}
    headers.update(acs3.sign("POST", path, {}, headers, body, CREDS))
    codes = []
    for _ in range(2):
        request = urllib.request.Request(api.url + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                codes.append(answer.status)
        except urllib.error.HTTPError as error:
            codes.append((error.code, json.loads(error.read())["Code"]))
    assert codes == [202, (403, "SignatureNonceUsed")]


def test_a_query_is_signed_the_way_fc_canonicalises_it(api):
    # A qualifier that needs percent-encoding: the generic client signs the encoded value.
    client = openapi.client(api.endpoint, CREDS)
    error = refused(client, headers=ASYNC, qualifier="a b~c")
    assert (error.status_code, error.code) == (404, "AliasNotFound")  # past the signature check


# --- the official SDK ------------------------------------------------------------------------------


def test_the_official_fc_sdk_is_accepted_too(api, fn):
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_fc20230330 import models
    from alibabacloud_fc20230330.client import Client

    credential = CredentialClient(
        CredentialConfig(
            type="sts",
            access_key_id=CREDS.access_key_id,
            access_key_secret=CREDS.access_key_secret,
            security_token=CREDS.security_token,
        )
    )
    sdk = Client(utils_models.Config(credential=credential, endpoint=api.endpoint, protocol="http"))
    answer = sdk.invoke_function_with_options(
        "dwrerun-event",
        models.InvokeFunctionRequest(body=io.BytesIO(b'{"sdk": true}'), qualifier="LATEST"),
        models.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_async_task_id="sdk_1"),
        RuntimeOptions(autoretry=False),
    )
    assert answer.status_code == 202
    fn.drain()
    assert fn.async_invocations[0].task_id == "sdk_1"
    assert fn.async_invocations[0].final.result["got"] == {"sdk": True}


# --- a function that schedules itself, from its own instance process (what issue 12 builds on) ---------

SCHEDULES_ITSELF = """
import io, json, os

def handler(event, context):
    request = json.loads(event)
    if request.get("scheduled"):
        print(json.dumps({"ran": request}))
        return "ran"
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_tea_openapi import utils_models
    from alibabacloud_tea_openapi.client import Client
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
    from darabonba.runtime import RuntimeOptions

    credential = CredentialClient(CredentialConfig(
        type="sts",
        access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        security_token=os.environ["ALIBABA_CLOUD_SECURITY_TOKEN"],
    ))
    client = Client(utils_models.Config(credential=credential, endpoint=os.environ["FUNCTION_COMPUTE_ENDPOINT"], protocol="http"))
    params = utils_models.Params(
        action="InvokeFunction", version="2023-03-30", protocol="HTTP",
        pathname=f"/2023-03-30/functions/{context.function.name}/invocations", method="POST", auth_type="AK",
        style="ROA", req_body_type="json", body_type="binary",
    )
    headers = {"x-fc-invocation-type": "Async", "x-fc-async-delay": "10", "x-fc-async-task-id": request["task"]}
    payload = json.dumps({"scheduled": request["task"]}).encode()
    try:
        answer = client.call_api(params, utils_models.OpenApiRequest(headers=headers, stream=io.BytesIO(payload)),
                                 RuntimeOptions(autoretry=False))
    except ClientException as exc:
        return {"refused": exc.status_code}
    return {"scheduled": answer["statusCode"]}
"""


def test_an_instance_schedules_its_function_through_the_api_and_a_copy_gets_409(tmp_path, clock):
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent(SCHEDULES_ITSELF), encoding="utf-8")
    with FunctionComputeApi(credentials=[CREDS]) as api:
        with Function(
            "index.handler",
            code_dir=str(code),
            function_name="dwrerun-event",
            env={"FUNCTION_COMPUTE_ENDPOINT": api.endpoint},  # the API starts first: its endpoint is a variable
            credentials=CREDS,  # the role's STS keys, which the API accepts
            logstore=str(tmp_path / "logs.jsonl"),
            reserved_concurrency=2,
            async_task=True,
            clock=clock,
        ) as fn:
            api.register(fn)
            copies = [fn.invoke_async(json.dumps({"task": "t_1000012345678_1"}).encode()) for _ in range(2)]
            fn.drain()
            assert sorted(json.dumps(c.final.result) for c in copies) == ['{"refused": 409}', '{"scheduled": 202}']
            assert fn.delayed == 1
            clock.advance(10)
            fn.drain()
    delayed = fn.async_invocations[-1]
    assert delayed.task_id == "t_1000012345678_1" and delayed.final.result == "ran"
    assert [c.status for c in api.calls()] in ([202, 409], [409, 202])  # journal order is arrival order


def test_credentials_dropped_by_a_rotation_are_refused_as_expired(api, client):
    api.set_credentials([ROTATED])
    error = refused(client, headers=ASYNC)
    assert (error.status_code, error.code) == (403, "InvalidSecurityToken.Expired")
    assert invoke(openapi.client(api.endpoint, ROTATED), b"{}", ASYNC)["statusCode"] == 202


def raw_post(url: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict]:
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_other_paths_and_oversized_bodies_are_refused_before_anything_else(api):
    status, body = raw_post(api.url, "/2023-03-30/functions/dwrerun-event", {})
    assert (status, body["Code"]) == (400, "PathNotSupported") and body["RequestId"]
    status, body = raw_post(api.url, "/2023-03-30/functions/x/invocations", {"Content-Length": str(40 * 1024 * 1024)})
    assert (status, body["Code"]) == (400, "EntityTooLarge")


def test_an_internal_error_is_a_500_without_details(client, fn, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the stand-in, with a secret-looking detail")

    monkeypatch.setattr(fn, "invoke_async", broken)
    with pytest.raises(ServerException) as caught:
        invoke(client, b"{}", ASYNC)
    error = caught.value
    assert (error.status_code, error.code) == (500, "InternalServerError")
    assert "secret-looking" not in error.message
    assert "a bug in the stand-in" in capsys.readouterr().err  # for whoever runs it


def test_bad_setup_is_refused_with_a_clear_error(api, fn):
    with pytest.raises(ValueError, match="count of calls"):
        api.faults.set(deny=-1)
    with pytest.raises(ValueError, match="Function objects"):
        api.register(object())
    with pytest.raises(ValueError, match="Credentials"):
        api.set_credentials([])
    with pytest.raises(InvalidArgument, match="delay"):
        fn.invoke_async(b"{}", delay=True)
    with pytest.raises(InvalidArgument, match="delay"):
        fn.invoke_async(b"{}", delay="5")
    with pytest.raises(InvalidArgument, match="delay"):
        fn.invoke_async(b"{}", delay=3600.5)
