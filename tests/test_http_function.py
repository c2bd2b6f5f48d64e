"""The HTTP function through the local HTTP gateway: real HTTP in, FC's HTTP-trigger events, the emulator behind."""

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import rerun_client
from conftest import (
    CREDS,
    FAILED_ID,
    FUNCTION_DIR,
    PROJECT_ID,
    instance_records,
    make_function,
    reruns,
    sample,
    sample_bytes,
    seed_failed,
)
from localcloud.gateway import HttpGateway

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
