"""Credentials, endpoint and error classification of the DataWorks client."""

import pytest

from dwrerun.config import ConfigError, Settings
from dwrerun.dataworks import Credentials, DataWorks, DataWorksError, credentials_from, endpoint_for

ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token",
}


class Context310:
    class credentials:  # noqa: N801 - the runtime's attribute name
        access_key_id, access_key_secret, security_token = "ctx-id", "ctx-secret", "ctx-token"


class Context312:
    pass  # python3.12 contexts carry no credentials


def test_credentials_come_from_the_variables_first():
    assert credentials_from(ENV, Context310) == Credentials("env-id", "env-secret", "env-token")


def test_python310_context_credentials_are_the_fallback():
    assert credentials_from({}, Context310) == Credentials("ctx-id", "ctx-secret", "ctx-token")


def test_a_key_id_without_its_secret_in_the_variables_falls_back_to_the_context():
    partial = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token"}
    assert credentials_from(partial, Context310) == Credentials("ctx-id", "ctx-secret", "ctx-token")
    only_secret = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}
    assert credentials_from(only_secret, Context310) == Credentials("ctx-id", "ctx-secret", "ctx-token")


class ContextWithoutToken:
    class credentials:  # noqa: N801 - the runtime's attribute name
        access_key_id, access_key_secret = "ctx-id", "ctx-secret"


class ContextWithEmptyCredentials:
    class credentials:  # noqa: N801 - an object with none of the attributes
        pass


def test_context_credentials_without_a_token_are_used_without_one():
    assert credentials_from({}, ContextWithoutToken) == Credentials("ctx-id", "ctx-secret", None)


def test_context_credentials_without_a_key_id_are_no_credentials():
    with pytest.raises(ConfigError) as caught:
        credentials_from({}, ContextWithEmptyCredentials)
    assert str(caught.value) == (
        "no credentials: ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are unset. "
        "Give the function a role (template.yml `role`) so FC injects them."
    )


@pytest.mark.parametrize(
    "environ", [{"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id"}, {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}]
)
def test_half_a_key_pair_and_no_context_credentials_is_no_credentials(environ):
    with pytest.raises(ConfigError, match="^no credentials: "):
        credentials_from(environ, Context312)


def test_no_credentials_is_a_clear_error():
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        credentials_from({}, Context312)


def test_credentials_repr_hides_the_secret_and_the_token():
    text = repr(Credentials("env-id", "env-secret", "env-token"))
    assert "env-id" in text and "env-secret" not in text and "env-token" not in text


@pytest.mark.parametrize(
    ("settings", "region", "expected"),
    [
        (Settings(), "cn-hangzhou", ("dataworks.cn-hangzhou.aliyuncs.com", "https")),
        (Settings(network="vpc"), "cn-shanghai", ("dataworks-vpc.cn-shanghai.aliyuncs.com", "https")),
        (Settings(endpoint="dataworks.example.internal:8443"), None, ("dataworks.example.internal:8443", "https")),
        (Settings(endpoint="https://dw.example.com/"), None, ("dw.example.com", "https")),
        (Settings(endpoint="http://127.0.0.1:9000"), None, ("127.0.0.1:9000", "http")),
        (Settings(endpoint="http://localhost:9000"), None, ("localhost:9000", "http")),
    ],
)
def test_endpoint(settings, region, expected):
    assert endpoint_for(settings, region) == expected


@pytest.mark.parametrize(
    "endpoint", ["http://dataworks.cn-hangzhou.aliyuncs.com", "ftp://x", "https://x/path", "http://10.0.0.1:80"]
)
def test_unsafe_or_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(ConfigError, match="DATAWORKS_ENDPOINT"):
        endpoint_for(Settings(endpoint=endpoint), "cn-hangzhou")


def test_no_region_and_no_endpoint_is_a_clear_error():
    with pytest.raises(ConfigError, match="FC_REGION"):
        endpoint_for(Settings(), None)


def test_throttling_is_transient_but_not_ambiguous():
    error = DataWorksError("RerunTaskInstances", "Throttling.User", "slow down", transient=True)
    assert error.throttled and not error.ambiguous


@pytest.mark.parametrize(
    ("code", "status", "retry_after", "throttled", "quota_exhausted", "transient"),
    [
        ("Throttling.User", 429, None, True, False, True),
        ("Throttling.Api", 429, None, True, False, True),
        ("Throttling.System", 429, None, True, False, True),
        ("Throttling.User", 429, 2000, True, False, True),  # ThrottlingException, retry-after in ms
        ("Throttling.Api.Risk", 429, None, False, True, False),  # the daily limit
        ("Throttling.Resource", 429, None, False, True, False),  # the edition's quota
        ("Throttling.Api.Risk", 429, 1000, False, True, False),  # even with a retry-after
    ],
)
def test_rate_limits_are_retried_and_quota_limits_are_not(
    code, status, retry_after, throttled, quota_exhausted, transient
):
    from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

    from dwrerun.dataworks import _classify

    if retry_after:
        exc = ThrottlingException(code=code, message="m", status_code=status, retry_after=retry_after)
    else:
        exc = ClientException(code=code, message="m", status_code=status, data={"Message": "m"})
    error = _classify("RerunTaskInstances", exc)
    assert (error.throttled, error.quota_exhausted, error.transient, error.ambiguous) == (
        throttled,
        quota_exhausted,
        transient,
        False,
    )


@pytest.fixture
def canned():
    """A loopback server answering every call with the JSON in `canned.answer` (no signature check)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            self.server.requests.append((self.command, self.rfile.read(length).decode()))
            body = json.dumps(self.server.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815 - http.server's name; a method it does not know gets 501

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _client_of(canned):
    return DataWorks(Credentials("id", "secret", "token"), f"127.0.0.1:{canned.server_port}", "http", None, Settings())


@pytest.mark.parametrize(
    "task_instance", [{"Id": "not a number", "Status": "Failure"}, {"Id": 99, "Status": "Failure"}, None]
)
def test_an_answer_about_another_or_no_instance_is_a_transient_malformed_answer(canned, task_instance):
    # Before: an Id that is not a number crashed the invocation outside the retry loop.
    # DataWorks and DataWorksError are this file's module-level imports: they stay the classes the
    # client raises even after a test's FC harness closed (it restores the modules it found).
    canned.answer = {"RequestId": "r", "TaskInstance": task_instance}
    with pytest.raises(DataWorksError) as caught:
        _client_of(canned).get_task_instance(1000012345678, timeout=5)
    error = caught.value
    # Pinned whole, as the other malformed answers are: read again, not acted on, and its text names
    # the answer that was wrong (the records of a retry that gave up carry only its code).
    assert (error.action, error.code, error.message, error.transient, error.ambiguous) == (
        "GetTaskInstance",
        "MalformedAnswer",
        "the answer has no TaskInstance with this Id",
        True,
        False,
    )
    assert str(error) == "GetTaskInstance: MalformedAnswer: the answer has no TaskInstance with this Id"


@pytest.mark.parametrize(
    "task", [{"Id": 700000004418, "RerunTimes": 2}, {"Id": "not a number"}, {"RerunTimes": 2}, None]
)
def test_a_get_task_answer_about_another_or_no_node_is_a_transient_malformed_answer(canned, task):
    # The node's own rerun settings decide whether DataWorks reruns the instance itself: an answer
    # about another node, or none, is not one to decide on. GetTask is a read, so it is read again;
    # the error's text names the answer that was wrong (records carry only its code).
    canned.answer = {"RequestId": "r-task", "Task": task}
    with pytest.raises(DataWorksError) as caught:
        _client_of(canned).get_task(700000004417, "Prod", timeout=5)
    error = caught.value
    assert (error.action, error.code, error.message, error.transient, error.ambiguous) == (
        "GetTask",
        "MalformedAnswer",
        "the answer has no Task with this Id",
        True,
        False,
    )
    assert str(error) == "GetTask: MalformedAnswer: the answer has no Task with this Id"


def test_list_task_instances_posts_every_set_parameter_as_the_sdk_does(canned):
    from urllib.parse import parse_qs

    canned.answer = {"RequestId": "r", "PagingInfo": {"TaskInstances": [{"Id": 1}], "TotalCount": 7}}
    params = {"Bizdate": 1764518400000, "Ids": [1, 2], "PageNumber": None, "ProjectId": 42, "Status": "Failure"}
    rows, total = _client_of(canned).list_task_instances(params, timeout=5)
    assert (rows, total) == ([{"Id": 1}], 7)
    method, body = canned.requests[-1]
    form = {name: values[0] for name, values in parse_qs(body).items()}
    # None is left out, and only it (the fields after it are sent); lists are compact JSON
    assert method == "POST"
    assert {k: form[k] for k in ("Bizdate", "Ids", "ProjectId", "Status")} == {
        "Bizdate": "1764518400000",
        "Ids": "[1,2]",
        "ProjectId": "42",
        "Status": "Failure",
    }
    assert "PageNumber" not in form


@pytest.mark.parametrize(
    "paging",
    [None, "not an object", ["a list"], {"TotalCount": 1}, {"TaskInstances": "x"}, {"TaskInstances": [{"Status": 1}]}],
)
def test_a_page_without_its_rows_is_a_transient_malformed_answer(canned, paging):
    canned.answer = {"RequestId": "r", "PagingInfo": paging}
    with pytest.raises(DataWorksError) as caught:
        _client_of(canned).list_task_instances({"ProjectId": 42}, timeout=5)
    error = caught.value
    assert (error.action, error.code, error.transient) == ("ListTaskInstances", "MalformedAnswer", True)
    assert error.message == "the answer has no PagingInfo.TaskInstances"


@pytest.mark.parametrize("total", [None, True, "7", 2.0])
def test_a_page_without_a_whole_total_counts_its_own_rows(canned, total):
    canned.answer = {"RequestId": "r", "PagingInfo": {"TaskInstances": [{"Id": 1}, {"Id": 2}], "TotalCount": total}}
    assert _client_of(canned).list_task_instances({"ProjectId": 42}, timeout=5) == ([{"Id": 1}, {"Id": 2}], 2)


# --- classifying what the SDK raises, field by field ---------------------------------------------


def dw_fields(exc, action="RerunTaskInstances"):
    from dwrerun.dataworks import _classify

    error = _classify(action, exc)
    assert isinstance(error, DataWorksError)
    return {
        "action": error.action,
        "code": error.code,
        "message": error.message,
        "status": error.status,
        "request_id": error.request_id,
        "retry_after": error.retry_after,
        "transient": error.transient,
        "ambiguous": error.ambiguous,
        "needs_new_invocation": error.needs_new_invocation,
    }


def dw_refusal(**fields):
    from alibabacloud_tea_openapi.exceptions import ClientException

    return ClientException(**fields)


def test_a_refusals_message_and_request_id_come_from_the_body_first():
    exc = dw_refusal(
        code="Forbidden.Access",
        message="sdk message",
        status_code=403,
        request_id="r-sdk",
        data={"Message": "body message", "RequestId": "r-body"},
    )
    assert dw_fields(exc, "GetTaskInstance") == {
        "action": "GetTaskInstance",
        "code": "Forbidden.Access",
        "message": "body message",
        "status": 403,
        "request_id": "r-body",
        "retry_after": None,
        "transient": False,
        "ambiguous": False,
        "needs_new_invocation": False,
    }


@pytest.mark.parametrize(
    ("code", "message", "data", "expected_code", "expected_message"),
    [
        ("Forbidden.Access", "sdk message", None, "Forbidden.Access", "sdk message"),  # no body: the SDK's
        ("Forbidden.Access", None, {}, "Forbidden.Access", "Forbidden.Access"),  # no message: the code
        (None, None, None, "Unknown", "Unknown"),
    ],
)
def test_without_a_body_the_sdks_fields_are_used_then_the_code(code, message, data, expected_code, expected_message):
    found = dw_fields(dw_refusal(code=code, message=message, status_code=400, request_id="r-sdk", data=data))
    assert (found["code"], found["message"], found["request_id"]) == (expected_code, expected_message, "r-sdk")
    assert not found["transient"]


def test_a_long_dataworks_message_is_cut_to_300_characters():
    assert dw_fields(dw_refusal(code="X", status_code=400, data={"Message": "y" * 400}))["message"] == "y" * 300


@pytest.mark.parametrize(
    ("code", "status", "transient", "ambiguous", "needs_new_invocation"),
    [
        ("Boom", 500, True, True, False),  # any 5xx may have been carried out: read back before resending
        ("Boom", 503, True, True, False),
        ("Boom", 499, False, False, False),
        ("Boom", None, False, False, False),
        ("InternalError", 400, True, True, False),  # a transient code whatever the status
        ("RequestTimeout", None, True, True, False),
        ("InvalidSecurityToken.Expired", 400, True, False, True),  # DataWorks did nothing
        ("InvalidTimeStamp.Expired", 400, True, False, True),
        ("Throttling.User", 503, True, False, False),  # a rate limit: refused, not carried out
        ("Throttling.Api.Risk", 503, False, False, False),  # a quota: never retried, even on a 5xx
    ],
)
def test_each_refusal_is_transient_and_ambiguous_as_it_should_be(
    code, status, transient, ambiguous, needs_new_invocation
):
    found = dw_fields(dw_refusal(code=code, status_code=status, data={}))
    assert (found["transient"], found["ambiguous"], found["needs_new_invocation"]) == (
        transient,
        ambiguous,
        needs_new_invocation,
    )
    assert (found["code"], found["status"]) == (code, status)


def test_a_dataworks_retry_after_in_milliseconds_becomes_seconds():
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    exc = ThrottlingException(code="Throttling.User", status_code=429, retry_after=1500, data={})
    assert dw_fields(exc)["retry_after"] == 1.5


class ReadTimeout(Exception):
    pass


class ConnectTimeout(Exception):
    pass


class ConnectionError(Exception):  # noqa: A001 - requests' name, which is what is classified
    pass


class SSLError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "code", "kind"),
    [
        (ReadTimeout("read timed out"), "ReadTimeout", "ReadTimeout"),
        (ConnectTimeout("connect timed out"), "Timeout", "ConnectTimeout"),
        (ConnectionError("refused"), "ConnectionError", "ConnectionError"),
        (ValueError("unparsable body"), "MalformedAnswer", "ValueError"),
        (SSLError("bad handshake"), "TransportError", "SSLError"),
        (RuntimeError("no context"), "TransportError", "RuntimeError"),
    ],
)
def test_a_dataworks_transport_failure_is_named_by_its_kind_and_is_transient_and_ambiguous(exc, code, kind):
    assert dw_fields(exc, "ListTaskInstances") == {
        "action": "ListTaskInstances",
        "code": code,
        "message": kind,
        "status": None,
        "request_id": None,
        "retry_after": None,
        "transient": True,
        "ambiguous": True,
        "needs_new_invocation": False,
    }


def test_an_errors_text_names_the_action_the_code_and_the_message():
    error = DataWorksError("RerunTaskInstances", "Throttling.User", "slow down", transient=True)
    assert str(error) == "RerunTaskInstances: Throttling.User: slow down"


# --- answers that are not what the action promises ------------------------------------------------


@pytest.mark.parametrize("answer", [["a", "list"], "text", 7])
def test_an_answer_that_is_not_a_json_object_is_a_transient_ambiguous_malformed_answer(canned, answer):
    canned.answer = answer
    with pytest.raises(DataWorksError) as caught:
        _client_of(canned).get_task_instance(1000012345678, timeout=5)
    error = caught.value
    assert (error.action, error.code, error.message, error.transient, error.ambiguous, error.request_id) == (
        "GetTaskInstance",
        "MalformedAnswer",
        "the answer is not a JSON object",
        True,
        True,
        None,
    )
    assert str(error) == "GetTaskInstance: MalformedAnswer: the answer is not a JSON object"


@pytest.mark.parametrize("success_info", [None, "ok", ["1000012345678"]])
def test_a_rerun_answer_without_success_info_is_ambiguous_and_keeps_its_request_id(canned, success_info):
    # The rerun may have been carried out: the request id is what ties it to DataWorks' own records.
    canned.answer = {"RequestId": "r-rerun", "SuccessInfo": success_info}
    with pytest.raises(DataWorksError) as caught:
        _client_of(canned).rerun_task_instances([1000012345678], "dwrerun", timeout=5)
    error = caught.value
    assert (error.action, error.code, error.message, error.transient, error.ambiguous, error.request_id) == (
        "RerunTaskInstances",
        "MalformedAnswer",
        "the answer has no SuccessInfo",
        True,
        True,
        "r-rerun",
    )
    assert str(error) == "RerunTaskInstances: MalformedAnswer: the answer has no SuccessInfo"


# --- the warm instance's client --------------------------------------------------------------------


@pytest.fixture
def no_cached_client(monkeypatch):
    from dwrerun import dataworks

    monkeypatch.setattr(dataworks, "_cached", None)


CREDS = Credentials("id", "secret", "token")


def test_the_client_is_kept_while_the_credentials_and_the_endpoint_do_not_change(no_cached_client):
    from dwrerun.dataworks import client_for

    first = client_for(CREDS, Settings(), "cn-shanghai")
    assert first.endpoint == "dataworks.cn-shanghai.aliyuncs.com"
    # An equal but new Credentials and Settings, as each invocation builds them: the same client.
    again = client_for(Credentials("id", "secret", "token"), Settings(), "cn-shanghai")
    assert again is first


@pytest.mark.parametrize(
    ("credentials", "settings", "region"),
    [
        (Credentials("id", "secret", "next-token"), Settings(), "cn-shanghai"),  # STS rotation
        (CREDS, Settings(), "cn-hangzhou"),
        (CREDS, Settings(network="vpc"), "cn-shanghai"),
        (CREDS, Settings(read_timeout=20.0), "cn-shanghai"),
        (CREDS, Settings(connect_timeout=1.0), "cn-shanghai"),
    ],
)
def test_new_credentials_endpoint_or_timeouts_build_a_new_client(no_cached_client, credentials, settings, region):
    from dwrerun.dataworks import client_for, endpoint_for

    first = client_for(CREDS, Settings(), "cn-shanghai")
    second = client_for(credentials, settings, region)
    assert second is not first and second.endpoint == endpoint_for(settings, region)[0]
    assert client_for(credentials, settings, region) is second  # and then that one is kept


@pytest.mark.parametrize("client_class", ["DataWorks", "FunctionCompute"])
def test_the_configured_connect_timeout_is_the_one_the_sdk_client_connects_with(client_class):
    # DATAWORKS_CONNECT_TIMEOUT bounds the wait for a connection, for DataWorks and FC calls alike.
    # Each call's RuntimeOptions carry only a read timeout, so tea-openapi 0.4.6 connects with its
    # client Config's connect timeout (milliseconds); without one it silently uses darabonba's 5 s.
    from dwrerun import function_compute

    make = DataWorks if client_class == "DataWorks" else function_compute.FunctionCompute
    settings = Settings.from_env({"DATAWORKS_CONNECT_TIMEOUT": "1.5"})
    client = make(CREDS, "127.0.0.1:9", "http", "cn-shanghai", settings)
    assert client._client._connect_timeout == 1500
