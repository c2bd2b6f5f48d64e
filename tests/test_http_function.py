"""The HTTP function through the local HTTP gateway: real HTTP in, FC's HTTP-trigger events, the emulator behind."""

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import dwrerun.bulk
import dwrerun.http_function
import dwrerun.plan
import dwrerun.rerun
import dwrerun.selection  # noqa: F401 - these five: see below
import rerun_client
from conftest import (
    CREDS,
    FAILED_ID,
    FUNCTION_DIR,
    PROJECT_ID,
    TASK_ID,
    instance_records,
    make_function,
    reruns,
    sample,
    sample_bytes,
    seed_failed,
)
from localcloud.gateway import HttpGateway

# dwrerun.*: the modules the HTTP function loads, imported once for the session. A harness keeps
# the modules it finds (localcloud/fc/harness.py) and would otherwise load these again for every test,
# which takes seconds a test on the mutation run's copy of the code.

OTHER_ID = FAILED_ID + 1  # 1000012345679, the second id in fc-http-rerun-request.json


@pytest.fixture
def http_function(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        yield fn


@pytest.fixture
def gateway(http_function):
    with HttpGateway(http_function) as gw:
        yield gw


def post(gateway, body, path="/rerun", content_type="application/json", method="POST", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        gateway.url + path, data=data, method=method, headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def last_records(gateway):
    return instance_records(gateway.invocations[-1])


def test_the_sample_request_reruns_a_failure_and_an_all_allowed_success(dataworks, http_function):
    # GIVEN a failed instance, and a succeeded one whose RerunMode is AllAllowed (a data fix)
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID, status="Success", rerun_mode="AllAllowed")
    # WHEN FC hands the sample HTTP-trigger event to the function
    inv = http_function.invoke(sample_bytes("fc-http-rerun-request.json"))
    # THEN both are rerun, and the answer holds DataWorks' SuccessInfo for each
    response = inv.result
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "application/json"
    answer = json.loads(response["body"])
    assert answer["SuccessInfo"] == {
        str(FAILED_ID): {"Success": True, "Message": ""},
        str(OTHER_ID): {"Success": True, "Message": ""},
    }
    assert answer["Skipped"] == {}
    (call,) = reruns(dataworks)
    assert call.params["Comment"].startswith("rerun after upstream fix [dwrerun-http: manual rerun over HTTP")
    records = instance_records(inv)
    assert {r["trigger"] for r in records} == {"http"}
    assert {r["comment"] for r in records} == {"rerun after upstream fix"}


def test_a_rerun_over_real_http_with_skips_and_unknown_ids(dataworks, gateway):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID, status="Running")
    status, headers, answer = post(gateway, {"Ids": [FAILED_ID, OTHER_ID, 42], "Comment": "after fix"})
    assert status == 200
    assert answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert answer["Skipped"][str(OTHER_ID)].startswith("not-finished")
    assert answer["Skipped"]["42"].startswith("lookup-failed")  # unknown: reported, never dropped
    assert set(answer["SuccessInfo"]) | set(answer["Skipped"]) == {str(FAILED_ID), str(OTHER_ID), "42"}
    assert headers["x-fc-request-id"] == answer["RequestId"]
    assert {r["instanceId"] for r in last_records(gateway)} == {FAILED_ID, OTHER_ID, 42}


def test_a_base64_body_is_decoded(dataworks, http_function):
    seed_failed(dataworks)
    event = sample("fc-http-rerun-request.json")
    event["body"] = base64.b64encode(json.dumps({"Ids": [FAILED_ID]}).encode()).decode()
    event["isBase64Encoded"] = True
    answer = json.loads(http_function.invoke(json.dumps(event).encode()).result["body"])
    assert answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True


def test_health_answers_without_touching_dataworks(dataworks, http_function):
    response = http_function.invoke(sample_bytes("fc-http-health-request.json")).result
    assert response["statusCode"] == 200 and json.loads(response["body"])["Status"] == "ok"
    assert len(dataworks.journal) == 0


@pytest.mark.separate_process
def test_health_does_not_import_the_sdk():
    code = (
        "import json, sys, types; import index;"
        f"event = open({str(FUNCTION_DIR.parent / 'tests/events/fc-http-health-request.json')!r}, 'rb').read();"
        "r = index.handle_http(event, types.SimpleNamespace(request_id='r'));"
        "assert r['statusCode'] == 200, r;"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('alibabacloud', 'darabonba', 'aiohttp')))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=FUNCTION_DIR, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("fields", "env", "body", "reason"),
    [
        ({}, {"RERUN_PROJECT_IDS": "1"}, {}, "project-not-allowed"),
        ({"project_env": "Dev"}, {}, {}, "wrong-environment"),
        ({"rerun_mode": "AllDenied"}, {}, {}, "rerun-denied"),
        ({"run_number": 4}, {}, {}, "cap-reached"),
        ({"status": "Success"}, {}, {}, "rerun-denied"),  # a success needs AllAllowed
        ({"status": "WaitResource"}, {}, {}, "not-finished"),
        ({"run_number": 4, "rerun_mode": "AllDenied"}, {}, {"Force": True}, "rerun-denied"),
    ],
)
def test_the_event_paths_guards_apply(dataworks, tmp_path, fields, env, body, reason):
    seed_failed(dataworks, **fields)
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn, HttpGateway(fn) as gw:
        status, _, answer = post(gw, {"Ids": [FAILED_ID], **body})
    assert status == 200 and answer["SuccessInfo"] == {}
    assert answer["Skipped"][str(FAILED_ID)].startswith(reason)
    assert reruns(dataworks) == []


def test_the_allow_list_keeps_other_projects_out_of_reach(dataworks, tmp_path):
    # The function's role may rerun anything in the account: the allow-list is what stops a
    # caller of the endpoint from reaching another project through the function.
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID, project_id=99999)
    with make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_PROJECT_IDS=PROJECT_ID) as fn:
        with HttpGateway(fn) as gw:
            _, _, answer = post(gw, {"Ids": [FAILED_ID, OTHER_ID], "Force": True})
    assert list(answer["SuccessInfo"]) == [str(FAILED_ID)]
    assert answer["Skipped"][str(OTHER_ID)].startswith("project-not-allowed")
    assert dataworks.backend.instance(OTHER_ID).run_number == 1


def test_force_lifts_the_cap(dataworks, gateway):
    seed_failed(dataworks, run_number=4)
    status, _, answer = post(gateway, {"Ids": [FAILED_ID], "Force": True})
    assert answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True
    assert dataworks.backend.instance(FAILED_ID).run_number == 5


def test_dry_run_decides_and_records_but_reruns_nothing(dataworks, gateway):
    seed_failed(dataworks)
    status, _, answer = post(gateway, {"Ids": [FAILED_ID], "DryRun": True})
    assert status == 200 and answer["DryRun"] is True and answer["SuccessInfo"] == {}
    assert answer["Skipped"][str(FAILED_ID)].startswith("dry-run")
    assert dataworks.journal.calls("RerunTaskInstances") == []
    assert last_records(gateway)[0]["decision"] == "dry-run"


BIG = 2**63


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "words"),
    [
        (b"{not json", "application/json", 400, "InvalidJSON", "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "InvalidJSON", "must be a JSON object"),
        ({}, "application/json", 400, "MissingParameter", "Ids is required"),
        ({"Ids": "1,2"}, "application/json", 400, "InvalidParameter", "Ids must be a list"),
        ({"Ids": []}, "application/json", 400, "InvalidParameter", "Ids must not be empty"),
        ({"Ids": [True]}, "application/json", 400, "InvalidParameter", "Ids[0] must be a positive int64"),
        ({"Ids": [1.5]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": [5.0]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": [1, -3]}, "application/json", 400, "InvalidParameter", "Ids[1]"),
        ({"Ids": [0]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": [BIG]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": ["12a"]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": [None]}, "application/json", 400, "InvalidParameter", "Ids[0]"),
        ({"Ids": [7, 7]}, "application/json", 400, "InvalidParameter", "repeats"),
        ({"Ids": list(range(1, 102))}, "application/json", 400, "TooManyIds", "RERUN_HTTP_MAX_IDS=100"),
        ({"Ids": [1], "Comment": 5}, "application/json", 400, "InvalidParameter", "Comment must be a string"),
        ({"Ids": [1], "Comment": "x" * 501}, "application/json", 400, "InvalidParameter", "at most 500"),
        # Before: read the instance, sent nothing (the SDK cannot encode it) and answered 503 "may
        # have reached DataWorks".
        (rb'{"Ids": [1], "Comment": "fix \ud800 it"}', "application/json", 400, "InvalidParameter", "lone surrogate"),
        ({"Ids": [1], "Force": "yes"}, "application/json", 400, "InvalidParameter", "Force must be true or false"),
        ({"Ids": [1], "ids": [2], "Extra": 1}, "application/json", 400, "UnknownField", "Extra, ids"),
        (b"x" * 70_000, "application/json", 413, "PayloadTooLarge", "over 65536 bytes"),
        ({"Ids": [1]}, "text/plain", 415, "UnsupportedMediaType", "application/json"),
    ],
)
def test_bad_input_gets_a_clear_json_error_and_no_dataworks_call(
    dataworks, gateway, body, content_type, status, code, words
):
    got_status, _, answer = post(gateway, body, content_type=content_type)
    assert (got_status, answer["Code"]) == (status, code)
    assert words in answer["Message"]
    assert "Traceback" not in answer["Message"]
    assert len(dataworks.journal) == 0
    assert last_records(gateway) == []


def test_digit_strings_are_accepted_as_ids(dataworks, gateway):
    seed_failed(dataworks)
    status, _, answer = post(gateway, {"Ids": [str(FAILED_ID)]})
    assert status == 200 and answer["SuccessInfo"][str(FAILED_ID)]["Success"] is True


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [("GET", "/rerun", 405, "POST"), ("DELETE", "/", 405, "POST"), ("POST", "/health", 405, "GET, HEAD")],
)
def test_a_wrong_method_is_405_with_allow(dataworks, gateway, method, path, status, allow):
    got, headers, answer = post(gateway, b"", path=path, method=method)
    assert (got, headers["Allow"], answer["Code"]) == (status, allow, "MethodNotAllowed")


def test_an_unknown_path_is_404(gateway):
    status, _, answer = post(gateway, {"Ids": [1]}, path="/reruns")
    assert (status, answer["Code"]) == (404, "NotFound")


def test_throttling_that_outlasts_the_retries_is_429_with_retry_after(dataworks, gateway):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=None)
    status, headers, answer = post(gateway, {"Ids": [FAILED_ID]})
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert answer["Code"] == "Throttled" and answer["SuccessInfo"] == {}
    assert answer["Skipped"][str(FAILED_ID)].startswith("deferred")
    assert dataworks.backend.instance(FAILED_ID).run_number == 1


def test_persistent_5xx_is_502_and_says_which_ids_were_rerun(dataworks, gateway):
    seed_failed(dataworks)
    seed_failed(dataworks, OTHER_ID, run_number=2)  # another run number: another RerunTaskInstances call
    dataworks.faults.set("RerunTaskInstances", server_error=None)
    status, _, answer = post(gateway, {"Ids": [FAILED_ID, OTHER_ID]})
    assert status == 502 and answer["Code"] == "UpstreamUnavailable"
    assert set(answer["Skipped"]) == {str(FAILED_ID), str(OTHER_ID)}


def test_the_client_signs_what_an_auth_type_function_gateway_accepts(dataworks, http_function):
    seed_failed(dataworks)
    with HttpGateway(http_function, auth_type="function", credentials=[CREDS]) as gw:
        # Unsigned: FC's gateway refuses before the function runs.
        status, _, answer = post(gw, {"Ids": [FAILED_ID]})
        assert status == 403 and len(dataworks.journal) == 0
        # Signed by the client with the caller's credentials from the environment.
        environ = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": CREDS.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CREDS.access_key_secret,
            "ALIBABA_CLOUD_SECURITY_TOKEN": CREDS.security_token,
        }
        out = io.StringIO()
        argv = [gw.url, "--ids", str(FAILED_ID), "--comment", "fixed"]
        assert rerun_client.main(argv, out=out, environ=environ) == 0
    table = out.getvalue()
    assert str(FAILED_ID) in table and "rerun" in table
    assert CREDS.access_key_secret not in table and CREDS.security_token not in table
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_the_client_prints_json_and_needs_no_signature_locally(dataworks, gateway):
    seed_failed(dataworks)
    out = io.StringIO()
    argv = [gateway.url + "/rerun", "--ids", str(FAILED_ID), "--dry-run", "--json"]
    assert rerun_client.main(argv, out=out, environ={}) == 0
    answer = json.loads(out.getvalue())
    assert answer["status"] == 200 and answer["DryRun"] is True


def test_the_client_refuses_to_send_unsigned_to_a_remote_url(capsys):
    assert rerun_client.main(["https://dwrerun.example.com", "--ids", "1"], environ={}) == 2
    assert "no credentials" in capsys.readouterr().err


def test_the_client_signs_with_an_aliyun_cli_profile(dataworks, http_function, tmp_path, monkeypatch):
    seed_failed(dataworks)
    profile_file = tmp_path / "config.json"
    profile = {
        "name": "ops",
        "mode": "StsToken",
        "access_key_id": CREDS.access_key_id,
        "access_key_secret": CREDS.access_key_secret,
        "sts_token": CREDS.security_token,
    }
    profile_file.write_text(json.dumps({"current": "ops", "profiles": [profile]}))
    monkeypatch.setattr(rerun_client, "PROFILE_FILE", profile_file)
    with HttpGateway(http_function, auth_type="function", credentials=[CREDS]) as gw:
        out = io.StringIO()
        assert rerun_client.main([gw.url, "--ids", str(FAILED_ID), "--profile", "ops"], out=out, environ={}) == 0
        assert rerun_client.main([gw.url, "--ids", str(FAILED_ID), "--profile", "nobody"], environ={}) == 2
    assert dataworks.backend.instance(FAILED_ID).run_number == 2


def test_a_loopback_endpoint_given_as_host_port_is_a_clear_configuration_error(dataworks, tmp_path):
    # Before: every call went out over https to the local emulator and the caller got a 503
    # naming a bare TransportError. Now the setting is refused before any call, saying which form to use.
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, handler="index.handle_http", DATAWORKS_ENDPOINT=dataworks.endpoint) as fn:
        with HttpGateway(fn) as gw:
            status, _, answer = post(gw, {"Ids": [FAILED_ID]})
    assert (status, answer["Code"]) == (500, "InvalidConfiguration")
    assert f"http://{dataworks.endpoint}" in answer["Message"]
    assert len(dataworks.journal) == 0


# --- whole answers, in this process: every refusal's status, headers and body, every summary -------

REQUEST_ID = "1-6747d2a1-http-test-request"
JSON_ONLY = {"Content-Type": "application/json"}
FIELDS_ALLOWED = (
    "Ids, Comment, DryRun, Force, UseLatestConfig, ProjectId, Bizdate, TaskIds, ProjectEnv, "
    "FinishedTimeStart, FinishedTimeEnd, IgnoreRules, PlanToken"
)


def invoke_with(fn, body, /, **event_fields):
    """The invocation of the sample HTTP-trigger event with this body (a str is sent as is) under
    REQUEST_ID; `event_fields` replace the event's own."""
    event = sample("fc-http-rerun-request.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event.update(event_fields)
    return fn.invoke(json.dumps(event).encode(), request_id=REQUEST_ID)


def answer_to(fn, body, /, **event_fields) -> dict:
    """FC's answer to `invoke_with`'s event, its body parsed."""
    return parsed(invoke_with(fn, body, **event_fields))


def parsed(invocation) -> dict:
    assert invocation.error is None, invocation.error
    return {**invocation.result, "body": json.loads(invocation.result["body"])}


def refusal(status: int, code: str, message: str, **headers) -> dict:
    return {
        "statusCode": status,
        "headers": {**JSON_ONLY, **headers},
        "isBase64Encoded": False,
        "body": {"Code": code, "Message": message, "RequestId": REQUEST_ID},
    }


def summary_of(invocation) -> dict:
    (summary,) = [r for r in invocation.records if r.get("kind") == "summary"]
    return summary


POSITIVE = "must be a positive int64 instance id, got"


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({}, 400, "MissingParameter", "Ids is required, or a filter: ProjectId and Bizdate"),
        (
            {"Comment": "no ids", "IgnoreRules": True},
            400,
            "MissingParameter",
            "Ids is required, or a filter: ProjectId and Bizdate",
        ),
        ({"Ids": None}, 400, "MissingParameter", "Ids is required: a list of task instance ids"),
        ({"Ids": "1,2"}, 400, "InvalidParameter", "Ids must be a list of task instance ids, got a string"),
        ({"Ids": {"1": 2}}, 400, "InvalidParameter", "Ids must be a list of task instance ids, got an object"),
        ({"Ids": 7}, 400, "InvalidParameter", "Ids must be a list of task instance ids, got a number"),
        ({"Ids": 7.5}, 400, "InvalidParameter", "Ids must be a list of task instance ids, got a number"),
        ({"Ids": True}, 400, "InvalidParameter", "Ids must be a list of task instance ids, got a boolean"),
        ({"Ids": []}, 400, "InvalidParameter", "Ids must not be empty"),
        ({"Ids": list(range(1, 102))}, 400, "TooManyIds", "Ids has 101 ids, more than RERUN_HTTP_MAX_IDS=100"),
        ({"Ids": [True]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} true"),
        ({"Ids": [1.5]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} 1.5"),
        ({"Ids": [5.0]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} 5.0"),
        ({"Ids": [1, -3]}, 400, "InvalidParameter", f"Ids[1] {POSITIVE} -3"),
        ({"Ids": [0]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} 0"),
        ({"Ids": [BIG]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} 9223372036854775808"),
        ({"Ids": ["12a"]}, 400, "InvalidParameter", f'Ids[0] {POSITIVE} "12a"'),
        ({"Ids": ["-12"]}, 400, "InvalidParameter", f'Ids[0] {POSITIVE} "-12"'),
        (
            {"Ids": ["\u0661\u0662"]},
            400,
            "InvalidParameter",
            f'Ids[0] {POSITIVE} "\\u0661\\u0662"',
        ),  # Arabic-Indic digits
        # 20 digits: not read as an int64, so the string itself is named
        ({"Ids": ["10000000000000000000"]}, 400, "InvalidParameter", f'Ids[0] {POSITIVE} "10000000000000000000"'),
        # 19 digits, above the int64 range: read as a number, named as one
        ({"Ids": ["9223372036854775808"]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} 9223372036854775808"),
        ({"Ids": [None]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} null"),
        ({"Ids": [[1]]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} a list"),
        ({"Ids": [{"Id": 1}]}, 400, "InvalidParameter", f"Ids[0] {POSITIVE} an object"),
        # A long value is cut to 40 characters: 38 characters and the quotes fit whole ...
        ({"Ids": ["x" * 38]}, 400, "InvalidParameter", f'Ids[0] {POSITIVE} "{"x" * 38}"'),
        # ... one more is cut to 37 and "..."
        ({"Ids": ["x" * 39]}, 400, "InvalidParameter", f'Ids[0] {POSITIVE} "{"x" * 36}...'),
        ({"Ids": [7, 8, 7]}, 400, "InvalidParameter", "Ids[2] repeats instance 7"),
        ({"Ids": [7, "7"]}, 400, "InvalidParameter", "Ids[1] repeats instance 7"),
        ({"Ids": [1], "Comment": 5}, 400, "InvalidParameter", "Comment must be a string, got a number"),
        ({"Ids": [1], "Comment": ["fix"]}, 400, "InvalidParameter", "Comment must be a string, got a list"),
        (
            {"Ids": [1], "Comment": "x" * 501},
            400,
            "InvalidParameter",
            "Comment has 501 characters, at most 500 are allowed",
        ),
        (
            '{"Ids": [1], "Comment": "fix \\ud800 it"}',
            400,
            "InvalidParameter",
            "Comment has a lone surrogate ('\\ud800') at character 4: it is not text DataWorks can store",
        ),
        ({"Ids": [1], "Force": "yes"}, 400, "InvalidParameter", "Force must be true or false, got a string"),
        ({"Ids": [1], "DryRun": None}, 400, "InvalidParameter", "DryRun must be true or false, got null"),
        ({"Ids": [1], "DryRun": 1}, 400, "InvalidParameter", "DryRun must be true or false, got a number"),
        (
            {"Ids": [1], "UseLatestConfig": {}},
            400,
            "InvalidParameter",
            "UseLatestConfig must be true or false, got an object",
        ),
        (
            {"Ids": [1], "ids": [2], "Extra": 1},
            400,
            "UnknownField",
            f"unknown field(s) Extra, ids: allowed are {FIELDS_ALLOWED}",
        ),
        (
            {"Ids": [1], "Bizdate": "2026-11-27", "ProjectId": 1},
            400,
            "InvalidParameter",
            "give either Ids or a filter (ProjectId, Bizdate, ...), not both: got Ids and ProjectId, Bizdate",
        ),
        (
            {"Ids": [1], "PlanToken": "t", "IgnoreRules": False},
            400,
            "InvalidParameter",
            "IgnoreRules, PlanToken go with a filter only: failure rules never hold back a rerun of ids you name, "
            "and ids need no plan",
        ),
        ("{not json", 400, "InvalidJSON", "the request body is not valid JSON"),
        ("[1, 2]", 400, "InvalidJSON", "the request body must be a JSON object, got a list"),
        ("null", 400, "InvalidJSON", "the request body must be a JSON object, got null"),
        ('"Ids"', 400, "InvalidJSON", "the request body must be a JSON object, got a string"),
        ("", 400, "InvalidJSON", "the request body is not valid JSON"),
        ("[" * 100_000, 413, "PayloadTooLarge", "the body is over 65536 bytes"),
        ("[" * 60_000, 400, "InvalidJSON", "the request body is not valid JSON"),  # nested too deep
    ],
)
def test_each_refused_body_gets_its_whole_answer_and_reaches_no_api(
    dataworks, http_function, body, status, code, message
):
    inv_answer = answer_to(http_function, body)
    assert inv_answer == refusal(status, code, message)
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize(
    ("event_fields", "status", "code", "message", "headers"),
    [
        (
            {"headers": {"content-type": "text/plain"}},
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json, got 'text/plain'",
            {},
        ),
        ({"headers": {}}, 415, "UnsupportedMediaType", "Content-Type must be application/json, got ''", {}),
        ({"headers": None}, 415, "UnsupportedMediaType", "Content-Type must be application/json, got ''", {}),
        (
            {"headers": {"Content-Type": "application/jsonp; charset=utf-8"}},
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json, got 'application/jsonp; charset=utf-8'",
            {},
        ),
        ({"headers": ["Content-Type"]}, 400, "InvalidRequest", "the event's headers must be an object, got a list", {}),
        (
            {"headers": "Content-Type: application/json"},
            400,
            "InvalidRequest",
            "the event's headers must be an object, got a string",
            {},
        ),
        ({"body": 5}, 400, "InvalidBody", "the request body must be text", {}),
        ({"body": {"Ids": [1]}}, 400, "InvalidBody", "the request body must be text", {}),
        (
            {"body": "!!", "isBase64Encoded": True},
            400,
            "InvalidBody",
            "isBase64Encoded is true but the body is not valid base64",
            {},
        ),
        (
            {"body": "e30", "isBase64Encoded": True},
            400,
            "InvalidBody",
            "isBase64Encoded is true but the body is not valid base64",
            {},
        ),
        (
            {"body": base64.b64encode(b"\xff\xfe{}").decode(), "isBase64Encoded": True},
            400,
            "InvalidJSON",
            "the request body is not valid JSON",
            {},
        ),
        ({"rawPath": "/reruns"}, 404, "NotFound", "no such path '/reruns': use POST /rerun or GET /health", {}),
        ({"rawPath": "/rerunX"}, 404, "NotFound", "no such path '/rerunX': use POST /rerun or GET /health", {}),
        ({"rawPath": "/health/x"}, 404, "NotFound", "no such path '/health/x': use POST /rerun or GET /health", {}),
        (
            {"rawPath": "/rerun", "requestContext": {"http": {"method": "GET"}}},
            405,
            "MethodNotAllowed",
            "GET is not allowed on /rerun",
            {"Allow": "POST"},
        ),
        (
            {"rawPath": "/rerun/", "requestContext": {"http": {"method": "PUT"}}},
            405,
            "MethodNotAllowed",
            "PUT is not allowed on /rerun",
            {"Allow": "POST"},
        ),
        (
            {"rawPath": "/", "requestContext": {"http": {}}},
            405,
            "MethodNotAllowed",
            "no method is not allowed on /",
            {"Allow": "POST"},
        ),
        (
            {"rawPath": "/", "requestContext": "POST"},
            405,
            "MethodNotAllowed",
            "no method is not allowed on /",
            {"Allow": "POST"},
        ),
        (
            {"rawPath": "/", "requestContext": {"http": ["POST"]}},
            405,
            "MethodNotAllowed",
            "no method is not allowed on /",
            {"Allow": "POST"},
        ),
        ({"rawPath": "/health"}, 405, "MethodNotAllowed", "POST is not allowed on /health", {"Allow": "GET, HEAD"}),
        # No rawPath: the path FC decoded
        (
            {"rawPath": None, "requestContext": {"http": {"method": "POST", "path": "/elsewhere"}}},
            404,
            "NotFound",
            "no such path '/elsewhere': use POST /rerun or GET /health",
            {},
        ),
        (
            {"rawPath": "", "requestContext": {"http": {"method": "DELETE"}}},
            405,
            "MethodNotAllowed",
            "DELETE is not allowed on /",
            {"Allow": "POST"},
        ),
    ],
)
def test_each_refused_event_gets_its_whole_answer(
    dataworks, http_function, event_fields, status, code, message, headers
):
    assert answer_to(http_function, {"Ids": [FAILED_ID]}, **event_fields) == refusal(status, code, message, **headers)
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize("event", [b"{not json", b"[]", b"\xff\xfe"], ids=["not-json", "not-an-object", "not-utf8"])
def test_an_event_that_is_not_a_json_object_is_answered_400(dataworks, http_function, event):
    message = (
        "the HTTP trigger event must be a JSON object, got a list"
        if event == b"[]"
        else ("the HTTP trigger event is not valid JSON")
    )
    assert parsed(http_function.invoke(event, request_id=REQUEST_ID)) == refusal(400, "InvalidJSON", message)


@pytest.mark.parametrize(
    ("path", "method"),
    [("/health", "GET"), ("/health/", "HEAD"), ("/health", "get")],
)
def test_health_is_the_whole_answer(dataworks, http_function, path, method):
    got = answer_to(http_function, "", rawPath=path, requestContext={"http": {"method": method}})
    assert got == {
        "statusCode": 200,
        "headers": JSON_ONLY,
        "isBase64Encoded": False,
        "body": {"Status": "ok", "RequestId": REQUEST_ID},
    }
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", " application/json ;x=1"]
)
def test_a_json_content_type_with_parameters_or_capitals_is_accepted(dataworks, http_function, content_type):
    seed_failed(dataworks)
    got = answer_to(http_function, {"Ids": [FAILED_ID]}, headers={"CONTENT-TYPE": content_type})
    assert got["statusCode"] == 200 and got["body"]["SuccessInfo"][str(FAILED_ID)]["Success"] is True


def test_the_path_may_come_from_the_http_context_and_end_in_a_slash(dataworks, http_function):
    seed_failed(dataworks)
    got = answer_to(
        http_function, {"Ids": [FAILED_ID]}, rawPath="", requestContext={"http": {"method": "post", "path": "/rerun/"}}
    )
    assert got["statusCode"] == 200 and got["body"]["SuccessInfo"][str(FAILED_ID)]["Success"] is True


def json_of_size(size: int) -> bytes:
    """{"Ids": [FAILED_ID]} padded with spaces to exactly `size` bytes."""
    text = json.dumps({"Ids": [FAILED_ID]})
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


@pytest.mark.parametrize("encode", [False, True], ids=["text", "base64"])
def test_a_body_of_64_kib_is_read_and_one_byte_more_is_413(dataworks, http_function, encode):
    seed_failed(dataworks)
    for size, status in ((65_536, 200), (65_537, 413)):
        data = json_of_size(size)
        body = base64.b64encode(data).decode() if encode else data.decode()
        got = answer_to(http_function, body, isBase64Encoded=encode)
        assert got["statusCode"] == status, got
    assert got == refusal(413, "PayloadTooLarge", "the body is over 65536 bytes")


def test_an_id_at_the_int64_maximum_is_asked_about_as_a_number_and_as_a_string(dataworks, http_function):
    top = 2**63 - 1
    for ids in ([top], [str(top)]):
        got = answer_to(http_function, {"Ids": ids})
        assert got["statusCode"] == 200 and list(got["body"]["Skipped"]) == [str(top)]
        assert got["body"]["Skipped"][str(top)].startswith("lookup-failed")


def spent_ms(clock) -> float:
    """The time spent so far on the fake clock, as a record rounds it."""
    return round(clock.elapsed * 1000, 1)


@pytest.fixture
def fake_time(fake_clock, mocker):
    """The fake clock, with the backoff's full jitter at its longest."""
    from dwrerun import pacing

    mocker.patch.object(pacing, "uniform", lambda low, high: high)
    return fake_clock


def summary(instances=1, rerun=0, succeeded=0, skipped=0, dry_run=0, duration=0.0, outcome="done", mode=False):
    return {
        "kind": "summary",
        "trigger": "http",
        "requestId": REQUEST_ID,
        "instances": instances,
        "rerun": rerun,
        "rerunSucceeded": succeeded,
        "rerunFailed": 0,
        "skipped": skipped,
        "dryRun": dry_run,
        "scheduled": 0,
        "durationMs": duration,
        "outcome": outcome,
        "dryRunMode": mode,
        "originRequestId": None,
    }


def invoke_ids(fn, ids, **body):
    return invoke_with(fn, {"Ids": ids, **body})


def skipped_of(invocation) -> dict:
    """The answer's Skipped as the instance records say it: "reason: message" by id."""
    return {str(r["instanceId"]): f"{r['reason']}: {r['message']}" for r in instance_records(invocation)}


def test_a_rerun_answers_200_and_records_a_done_summary(dataworks, http_function, fake_time):
    seed_failed(dataworks)
    inv = invoke_ids(http_function, [FAILED_ID])
    assert parsed(inv) == {
        "statusCode": 200,
        "headers": JSON_ONLY,
        "isBase64Encoded": False,
        "body": {
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "SuccessInfo": {str(FAILED_ID): {"Success": True, "Message": ""}},
            "Skipped": {},
        },
    }
    assert summary_of(inv) == summary(rerun=1, succeeded=1, duration=spent_ms(fake_time))


@pytest.mark.parametrize("how", ["body", "setting"])
def test_a_dry_run_answers_its_explain_and_records_dry_run_mode(dataworks, tmp_path, fake_time, how):
    seed_failed(dataworks)
    env = {"RERUN_DRY_RUN": "true"} if how == "setting" else {}
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn:
        inv = invoke_ids(fn, [FAILED_ID], **({"DryRun": True} if how == "body" else {}))
    (record,) = instance_records(inv)
    assert parsed(inv)["body"] == {
        "RequestId": REQUEST_ID,
        "DryRun": True,
        "SuccessInfo": {},
        "Skipped": {str(FAILED_ID): f"dry-run: {record['message']}"},
        "Explain": {str(FAILED_ID): {"Rule": "default", "FailureClass": "unknown", "MatchedLine": None}},
    }
    assert summary_of(inv) == summary(dry_run=1, duration=spent_ms(fake_time), mode=True)


@pytest.mark.parametrize(
    ("retry_after_ms", "retry_after"),
    [(None, "1"), (400, "1"), (1000, "1"), (2600, "3")],
)
def test_throttling_throughout_is_429_with_the_servers_retry_after_and_a_summary_of_the_time_spent(
    dataworks, http_function, fake_time, retry_after_ms, retry_after
):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=None, retry_after=retry_after_ms)
    inv = invoke_ids(http_function, [FAILED_ID])
    assert parsed(inv) == {
        "statusCode": 429,
        "headers": {**JSON_ONLY, "Retry-After": retry_after},
        "isBase64Encoded": False,
        "body": {
            "Code": "Throttled",
            "Message": "DataWorks kept failing (Throttling.User); the ids under Deferred were not rerun",
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "SuccessInfo": {},
            "Skipped": {
                str(
                    FAILED_ID
                ): "deferred: DataWorks kept failing (Throttling.User; 6 attempts failed): not rerun: try again."
            },
            "Deferred": [FAILED_ID],
        },
    }
    # The time spent is the clock's: the backoff's waits, each at least the server's retry-after.
    assert spent_ms(fake_time) > 5000
    assert summary_of(inv) == summary(skipped=1, duration=spent_ms(fake_time), outcome="upstream-error")


def test_a_summary_measures_from_the_invocations_start(dataworks, http_function, fake_time):
    # The first attempt is throttled for 1.5 s, the second passes: 1.5 s on the clock.
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=1, retry_after=1500)
    inv = invoke_ids(http_function, [FAILED_ID])
    assert parsed(inv)["statusCode"] == 200
    assert summary_of(inv) == summary(rerun=1, succeeded=1, duration=1500.0)


@pytest.mark.parametrize("code", ["InternalError", "ServiceUnavailable"])
def test_a_persistent_5xx_of_any_kind_is_502_without_retry_after(dataworks, http_function, fake_time, code):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", server_error=None, server_error_code=code)
    inv = invoke_ids(http_function, [FAILED_ID])
    assert parsed(inv) == {
        "statusCode": 502,
        "headers": JSON_ONLY,
        "isBase64Encoded": False,
        "body": {
            "Code": "UpstreamUnavailable",
            "Message": f"DataWorks kept failing ({code}); the ids under Deferred were not rerun",
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "SuccessInfo": {},
            "Skipped": skipped_of(inv),
            "Deferred": [FAILED_ID],
        },
    }
    assert summary_of(inv)["outcome"] == "upstream-error"


QUOTA_MESSAGES = {
    "Throttling.Api.Risk": (
        "DataWorks refused the calls: the daily limit of DataWorks OpenAPI calls for this account and region is "
        "used up (Throttling.Api.Risk); it clears when DataWorks counts a new day (inferred), not within minutes. "
        "The ids under Skipped with reason 'quota-exhausted' were not rerun: send them again then"
    ),
    "Throttling.Resource": (
        "DataWorks refused the calls: the DataWorks edition's quota of OpenAPI calls for this account and region "
        "is used up (Throttling.Resource); it does not clear within minutes; DataWorks says a higher edition has a "
        "larger quota. The ids under Skipped with reason 'quota-exhausted' were not rerun: send them again then"
    ),
}


@pytest.mark.parametrize("code", sorted(QUOTA_MESSAGES))
def test_an_exhausted_quota_is_429_without_retry_after_and_says_when_it_clears(
    dataworks, http_function, fake_time, code
):
    seed_failed(dataworks)
    dataworks.faults.set("RerunTaskInstances", throttle=None, throttle_code=code)
    inv = invoke_ids(http_function, [FAILED_ID])
    assert parsed(inv) == {
        "statusCode": 429,
        "headers": JSON_ONLY,  # a client that honours a Retry-After of seconds would spend calls in vain
        "isBase64Encoded": False,
        "body": {
            "Code": "QuotaExhausted",
            "Message": QUOTA_MESSAGES[code],
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "SuccessInfo": {},
            "Skipped": skipped_of(inv),
        },
    }
    assert skipped_of(inv)[str(FAILED_ID)].startswith("quota-exhausted: ")
    assert summary_of(inv) == summary(skipped=1, duration=spent_ms(fake_time), outcome="quota-exhausted")


# --- direct calls of the handler: a context of our own ----------------------------------------------


class Context310:
    """python3.10's context: the role's credentials on it; its function's timeout is ours to choose."""

    def __init__(self, timeout=30, credentials=CREDS, region="cn-hangzhou"):
        self.request_id = REQUEST_ID
        self.region = region
        self.account_id = "1877700012345678"
        self.credentials = credentials
        self.function = type("Function", (), {"name": "dwrerun-http", "timeout": timeout})()


def handle_directly(monkeypatch, capsys, body, context, **env) -> tuple[dict, list[dict]]:
    """index.handle_http in this thread, with exactly `env` of the function's variables: (answer,
    records); what it wrote to stderr is left in handle_directly.stderr."""
    import os

    import index

    for name in list(os.environ):
        if name.startswith(("ALIBABA_CLOUD_", "DATAWORKS_", "RERUN_", "FC_", "FUNCTION_COMPUTE_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    event = sample("fc-http-rerun-request.json")
    event["body"] = json.dumps(body)
    capsys.readouterr()
    response = index.handle_http(json.dumps(event).encode(), context)
    out, handle_directly.stderr = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {**response, "body": json.loads(response["body"])}, lines


def test_python310_context_credentials_sign_the_calls_when_the_variables_are_absent(dataworks, monkeypatch, capsys):
    seed_failed(dataworks)
    got, _ = handle_directly(
        monkeypatch,
        capsys,
        {"Ids": [FAILED_ID]},
        Context310(),
        DATAWORKS_ENDPOINT=dataworks.url,
        RERUN_BACKOFF_BASE_SECONDS="0",
    )
    assert got["statusCode"] == 200 and got["body"]["SuccessInfo"] == {str(FAILED_ID): {"Success": True, "Message": ""}}
    assert len(reruns(dataworks)) == 1


def test_no_time_for_a_single_read_is_503_incomplete_and_defers_every_id(monkeypatch, capsys):
    # A 1 s function keeps 0.1 s back and gives the reads at most half the rest: less than a read
    # needs, so no call starts. No DATAWORKS_ENDPOINT: the client is DataWorks' own, in the region.
    got, lines = handle_directly(monkeypatch, capsys, {"Ids": [FAILED_ID]}, Context310(timeout=1))
    (record,) = [r for r in lines if r["kind"] == "instance"]
    assert record["reason"] == "deferred" and record["errorCode"] is None
    assert got == {
        "statusCode": 503,
        "headers": {**JSON_ONLY, "Retry-After": "5"},
        "isBase64Encoded": False,
        "body": {
            "Code": "Incomplete",
            "Message": "the function's time ran out after 0 of 1 ids; the ids under Deferred were not looked at: "
            "send them again",
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "SuccessInfo": {},
            "Skipped": {str(FAILED_ID): f"deferred: {record['message']}"},
            "Deferred": [FAILED_ID],
        },
    }
    assert lines[-1]["outcome"] == "upstream-error"


# --- the filter form: its refusals, whole ------------------------------------------------------------

KEY = "k" * 40  # RERUN_SIGNING_KEY: at least 32 characters
DAY = "2026-11-27"
FILTER = {"ProjectId": PROJECT_ID, "Bizdate": DAY}
FILTER_ENV = {"RERUN_SIGNING_KEY": KEY, "RERUN_PROJECT_IDS": str(PROJECT_ID)}


@pytest.fixture
def filter_function(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, handler="index.handle_http", **FILTER_ENV) as fn:
        yield fn


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (
            {"ProjectId": PROJECT_ID},
            400,
            "MissingParameter",
            "Bizdate is required with a filter (ListTaskInstances requires it)",
        ),
        (
            {"Bizdate": DAY},
            400,
            "MissingParameter",
            "ProjectId is required with a filter (ListTaskInstances requires it)",
        ),
        (
            {**FILTER, "ProjectId": None},
            400,
            "MissingParameter",
            "ProjectId is required with a filter (ListTaskInstances requires it)",
        ),
        ({**FILTER, "ProjectId": "a"}, 400, "InvalidParameter", 'ProjectId must be a positive int64 id, got "a"'),
        ({**FILTER, "ProjectEnv": "Staging"}, 400, "InvalidParameter", 'ProjectEnv must be Prod or Dev, got "Staging"'),
        ({**FILTER, "TaskIds": []}, 400, "InvalidParameter", "TaskIds must be a non-empty list of task (node) ids"),
        # An element of TaskIds that is wrong is an invalid TaskIds, not a missing one
        ({**FILTER, "TaskIds": ["x"]}, 400, "InvalidParameter", 'TaskIds[0] must be a positive int64 id, got "x"'),
        ({**FILTER, "TaskIds": [7, None]}, 400, "InvalidParameter", "TaskIds[1] must be a positive int64 id, got null"),
        (
            {**FILTER, "PlanToken": 42},
            400,
            "InvalidParameter",
            "PlanToken must be the PlanToken string a dry run answered",
        ),
        (
            {**FILTER, "PlanToken": ""},
            400,
            "InvalidParameter",
            "PlanToken must be the PlanToken string a dry run answered",
        ),
        (
            {**FILTER, "PlanToken": "x" * (32 * 1024 + 1)},
            400,
            "InvalidParameter",
            "PlanToken must be the PlanToken string a dry run answered",
        ),
        # One character to 32 KiB: read, then refused by the plan check, before any call
        (
            {**FILTER, "PlanToken": "x"},
            400,
            "InvalidPlanToken",
            "PlanToken is not valid: it is not a token this function issued (expected <content>.<signature>)",
        ),
        (
            {**FILTER, "PlanToken": "x" * (32 * 1024)},
            400,
            "InvalidPlanToken",
            "PlanToken is not valid: it is not a token this function issued (expected <content>.<signature>)",
        ),
        ({**FILTER, "Comment": 5}, 400, "InvalidParameter", "Comment must be a string, got a number"),
        ({**FILTER, "DryRun": "yes"}, 400, "InvalidParameter", "DryRun must be true or false, got a string"),
        ({**FILTER, "Force": 1}, 400, "InvalidParameter", "Force must be true or false, got a number"),
        ({**FILTER, "IgnoreRules": None}, 400, "InvalidParameter", "IgnoreRules must be true or false, got null"),
        (
            {**FILTER, "UseLatestConfig": "no"},
            400,
            "InvalidParameter",
            "UseLatestConfig must be true or false, got a string",
        ),
        (
            {**FILTER, "ProjectId": PROJECT_ID + 1},
            403,
            "ProjectNotAllowed",
            f"project {PROJECT_ID + 1} is not in RERUN_PROJECT_IDS",
        ),
        ({**FILTER, "ProjectEnv": "Dev"}, 403, "WrongEnvironment", "ProjectEnv is Dev, RERUN_PROJECT_ENV is Prod"),
    ],
)
def test_each_refused_filter_gets_its_whole_answer_and_reaches_no_api(
    dataworks, filter_function, body, status, code, message
):
    assert answer_to(filter_function, body) == refusal(status, code, message)
    assert len(dataworks.journal) == 0


BIZDATE = 1_795_708_800_000  # 2026-11-27 00:00 +08:00


def seed_day(dataworks, *ids, **fields):
    for instance_id in ids:
        seed_failed(dataworks, instance_id, task_id=TASK_ID + instance_id - FAILED_ID, bizdate=BIZDATE, **fields)


@pytest.mark.parametrize(
    ("fault", "status", "code", "message", "headers"),
    [
        (
            {"throttle": None, "retry_after": 2000},
            429,
            "Throttled",
            "ListTaskInstances kept failing (Throttling.User): nothing was selected, nothing rerun; try again",
            {"Retry-After": "2"},
        ),
        (
            {"server_error": None, "server_error_code": "InternalError"},
            502,
            "UpstreamUnavailable",
            "ListTaskInstances kept failing (InternalError): nothing was selected, nothing rerun; try again",
            {},
        ),
        (
            {"refuse": None},
            503,
            "UpstreamUnavailable",
            "ListTaskInstances kept failing (ResourceNotAuthorized.Api): nothing was selected, nothing rerun; try again",
            {"Retry-After": "5"},
        ),
        (
            {"throttle": None, "throttle_code": "Throttling.Api.Risk"},
            429,
            "QuotaExhausted",
            QUOTA_MESSAGES["Throttling.Api.Risk"],
            {},
        ),
    ],
    ids=["throttled", "5xx", "refused", "quota"],
)
def test_a_listing_that_keeps_failing_is_answered_whole_and_reruns_nothing(
    dataworks, filter_function, fake_time, fault, status, code, message, headers
):
    seed_day(dataworks, FAILED_ID)
    dataworks.faults.set("ListTaskInstances", **fault)
    assert answer_to(filter_function, FILTER) == refusal(status, code, message, **headers)
    assert reruns(dataworks) == []


def test_a_listing_with_no_time_left_is_503_and_reruns_nothing(dataworks, monkeypatch, capsys):
    # A 3 s function: what is left after the hand-on reserve is no time at all. No
    # DATAWORKS_ENDPOINT: the client is DataWorks' own in the context's region, never called.
    seed_day(dataworks, FAILED_ID)
    got, _ = handle_directly(monkeypatch, capsys, FILTER, Context310(timeout=3), **FILTER_ENV)
    assert got == refusal(
        503,
        "UpstreamUnavailable",
        "listing the selection took the whole invocation: nothing rerun; narrow the filter or try again",
        **{"Retry-After": "5"},
    )
    assert len(dataworks.journal) == 0


def test_a_selection_over_20000_instances_is_refused_asking_to_narrow_it(dataworks, filter_function):
    seed_day(dataworks, *range(FAILED_ID, FAILED_ID + 20_001))
    assert answer_to(filter_function, FILTER) == refusal(
        400,
        "SelectionTooLarge",
        "the filter selects 20001 failed instances, more than 20000: narrow it "
        "(TaskIds, FinishedTimeStart / FinishedTimeEnd)",
    )
    assert reruns(dataworks) == []


def test_a_real_rerun_over_the_plan_threshold_without_a_plan_is_428(dataworks, tmp_path):
    seed_day(dataworks, FAILED_ID, FAILED_ID + 1)
    with make_function(
        dataworks, tmp_path, handler="index.handle_http", RERUN_PLAN_REQUIRED_ABOVE="1", **FILTER_ENV
    ) as fn:
        got = answer_to(fn, FILTER)
    assert got == refusal(
        428,
        "PlanRequired",
        "the filter selects 2 failed instances, more than RERUN_PLAN_REQUIRED_ABOVE=1: make a dry run "
        "(DryRun: true) over the same filter and options, then send its PlanToken within RERUN_PLAN_TTL_SECONDS=900",
    )
    assert reruns(dataworks) == []


@pytest.mark.parametrize(
    ("env", "body"),
    [
        ({"RERUN_SIGNING_KEY": KEY}, {**FILTER, "ProjectId": PROJECT_ID}),  # no allow-list: any project
        ({"RERUN_SIGNING_KEY": KEY, "RERUN_PROJECT_ENV": "any"}, {**FILTER, "ProjectEnv": "Dev"}),
    ],
    ids=["no-allow-list", "any-environment"],
)
def test_a_filter_the_settings_allow_is_answered_with_its_rerun(dataworks, tmp_path, env, body):
    seed_day(dataworks, FAILED_ID, project_env=body.get("ProjectEnv", "Prod"))
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn:
        got = answer_to(fn, {**body, "Comment": "after the fix", "UseLatestConfig": True})
    assert (got["statusCode"], got["headers"]) == (200, JSON_ONLY), got
    assert got["body"]["Counts"] == {"eligible": 1} and got["body"]["RequestId"] == REQUEST_ID
    (call,) = reruns(dataworks)
    assert call.params["Comment"].startswith("after the fix [dwrerun-http: bulk rerun by filter over HTTP")
    assert call.params["UseLatestConfig"] == "True"


def test_a_filter_rerun_done_in_one_invocation_answers_200_and_records_a_done_summary(
    dataworks, filter_function, fake_time
):
    # GIVEN the day's one failure, and one past RERUN_MAX_RERUNS: both fit in this invocation
    seed_day(dataworks, FAILED_ID)
    seed_day(dataworks, FAILED_ID + 1, run_number=4)
    inv = invoke_with(filter_function, FILTER)
    # THEN the whole answer: one rerun, one skip, nothing continuing (no Continuation), 200
    assert parsed(inv) == {
        "statusCode": 200,
        "headers": JSON_ONLY,
        "isBase64Encoded": False,
        "body": {
            "RequestId": REQUEST_ID,
            "DryRun": False,
            "Filter": {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"},
            "Selected": 2,
            "Started": 1,
            "Counts": {"cap-reached": 1, "eligible": 1},
            "Decisions": {"cap-reached": [FAILED_ID + 1], "eligible": [FAILED_ID]},
            "NotRetryable": {},
            "SuccessInfo": {
                str(FAILED_ID): {
                    "Success": True,
                    "Message": "run 1 Failure: rerun as run 2 (no failure rule matched the log of run 1; "
                    "RERUN_RULES_DEFAULT is rerun)",
                }
            },
            "Skipped": {str(FAILED_ID + 1): "cap-reached: run 4 is past RERUN_MAX_RERUNS=3: reruns exhausted"},
            "Continuing": 0,
        },
    }
    # and its summary: the request is done (nothing left to a continuation), under its own id
    assert summary_of(inv) == {
        **summary(instances=2, rerun=1, succeeded=1, skipped=1, duration=spent_ms(fake_time)),
        "originRequestId": REQUEST_ID,
    }


# --- what goes wrong in the function itself: 500, never a trace to the caller ------------------------


def test_a_bad_setting_is_500_invalid_configuration_and_logged(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_HTTP_MAX_IDS="many") as fn:
        event = sample("fc-http-rerun-request.json")
        inv = fn.invoke(json.dumps(event).encode(), request_id=REQUEST_ID)
    assert parsed(inv) == refusal(500, "InvalidConfiguration", "RERUN_HTTP_MAX_IDS must be an integer, got 'many'")
    assert "configuration error: RERUN_HTTP_MAX_IDS must be an integer, got 'many'" in inv.stderr
    assert len(dataworks.journal) == 0


class BrokenContext:
    """A context that fails when read: an error the function did not foresee."""

    request_id = REQUEST_ID

    @property
    def function(self):
        raise RuntimeError("the context broke")


def test_an_unexpected_error_is_500_naming_the_request_and_its_trace_goes_to_the_log(dataworks, monkeypatch, capsys):
    seed_failed(dataworks)
    got, _ = handle_directly(
        monkeypatch, capsys, {"Ids": [FAILED_ID]}, BrokenContext(), DATAWORKS_ENDPOINT=dataworks.url
    )
    assert got == refusal(
        500,
        "InternalError",
        f"an unexpected error; the function's log has the details under request {REQUEST_ID}",
    )
    assert "Traceback" not in json.dumps(got)
    assert "RuntimeError: the context broke" in handle_directly.stderr  # the function's log has it


def test_a_context_without_a_request_id_answers_an_empty_one(monkeypatch, capsys):
    class Bare:
        pass

    got, _ = handle_directly(monkeypatch, capsys, {"Ids": []}, Bare())
    assert got["body"] == {"Code": "InvalidParameter", "Message": "Ids must not be empty", "RequestId": ""}


def test_more_task_ids_than_the_http_limit_is_refused_naming_the_setting(dataworks, tmp_path):
    env = {**FILTER_ENV, "RERUN_HTTP_MAX_IDS": "2"}
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn:
        got = answer_to(fn, {**FILTER, "TaskIds": [1, 2, 3]})
    assert got == refusal(400, "InvalidParameter", "TaskIds has 3 ids, more than RERUN_HTTP_MAX_IDS=2")
    assert len(dataworks.journal) == 0


@pytest.mark.parametrize(("read_logs", "status"), [("true", 500), ("false", 200)], ids=["logs-read", "logs-not-read"])
def test_the_rules_file_is_loaded_only_when_logs_are_read_and_an_unreadable_one_is_500(
    dataworks, tmp_path, read_logs, status
):
    seed_failed(dataworks)
    missing = tmp_path / "no-rules.json"
    env = {"RERUN_READ_LOGS": read_logs, "RERUN_RULES_FILE": str(missing)}
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn:
        got = parsed(invoke_ids(fn, [FAILED_ID]))
    if status == 500:
        assert got == refusal(
            500,
            "InvalidConfiguration",
            f"failure rules: cannot read RERUN_RULES_FILE={str(missing)!r} ({missing}): No such file or directory",
        )
        assert len(dataworks.journal) == 0  # a bad deploy: refused before any call
    else:
        assert got["statusCode"] == 200 and got["body"]["SuccessInfo"][str(FAILED_ID)]["Success"] is True
