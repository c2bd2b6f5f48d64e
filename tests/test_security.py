"""Secrets stay out of output, SDK debug dumps stay off, oversized requests cost nothing.

The audit itself (tests/secrets_audit.py) runs around every test; these tests show it can fail.
The allow-list on the HTTP path: tests/test_http_function.py::test_the_allow_list_keeps_other_projects_out_of_reach.
The HTTP trigger is never anonymous: tests/test_template.py.
"""

import base64
import json
import logging
import os

import pytest

import secrets_audit
from conftest import CREDS, FAILED_ID, ROOT, ROTATED, make_function, reruns, sample, sample_bytes, seed_failed

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (f"token={CREDS.security_token}", "CREDS.security_token"),
        (f"{{'secret': '{CREDS.access_key_secret}'}}", "CREDS.access_key_secret"),
        (f"x-acs-security-token : {ROTATED.security_token}", "ROTATED.security_token"),
        (ROTATED.access_key_secret, "ROTATED.access_key_secret"),
        ("> Authorization : ACS3-HMAC-SHA256 Credential=LTAI,SignedHeaders=host,Signature=0a1b2c", "Signature="),
    ],
)
def test_the_audit_finds_a_planted_secret_without_repeating_it(text, name):
    (finding,) = secrets_audit.leaks(text, "a planted line")
    assert name in finding and "a planted line" in finding
    assert all(value not in finding for value in secrets_audit.secrets().values())


def test_the_audit_passes_clean_text_and_key_ids():
    assert secrets_audit.leaks(f"key id {CREDS.access_key_id}, SignatureDoesNotMatch", "a line") == []


def test_a_test_that_prints_a_token_fails_under_the_audit(pytester, monkeypatch):
    # In a subprocess: in-process, the inner test's log record would reach this test's log capture.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(str(ROOT / d) for d in ("tests", "function", "scripts")))
    pytester.makepyfile(
        test_leaky="""
        import logging
        from conftest import CREDS

        def test_prints():
            print("token", CREDS.security_token)

        def test_logs():
            logging.getLogger("x").warning("secret %s", CREDS.access_key_secret)

        def test_clean():
            print("nothing to see")
        """
    )
    result = pytester.runpytest_subprocess("-p", "secrets_audit", "--show-capture=no", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*secrets leaked: CREDS.security_token in Captured stdout call*"])
    result.stdout.fnmatch_lines(["*secrets leaked: CREDS.access_key_secret in Captured log call*"])
    assert CREDS.security_token not in result.stdout.str()


def test_a_token_in_a_process_model_result_fails_under_the_audit(pytester, monkeypatch):
    # The instance's result never reaches a log or a captured stream: only the audit's hook on
    # every process-model attempt (Function.record_attempt) can see it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(str(ROOT / d) for d in ("tests", "function", "scripts")))
    pytester.makepyfile(
        test_leaky_instance="""
        import tempfile
        from conftest import CREDS
        from localcloud.fc import Function

        def test_returns_the_token():
            code = tempfile.mkdtemp()
            with open(code + "/index.py", "w") as out:
                out.write("import os\\ndef handler(event, context):\\n    return os.environ['ALIBABA_CLOUD_SECURITY_TOKEN']\\n")
            with Function("index.handler", code_dir=code, credentials=CREDS, reserved_concurrency=1,
                          logstore=code + "/logs.jsonl") as fn:
                assert fn.invoke(b"{}").error is None
        """
    )
    result = pytester.runpytest_subprocess("-p", "secrets_audit", "--show-capture=no", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*secrets leaked: CREDS.security_token in invocation*"])


def test_debug_sdk_logging_stays_off(dataworks, tmp_path):
    # darabonba-core dumps every request's headers (security token, Authorization with its
    # Signature=) when DEBUG=sdk is in the environment; the function raises that logger's level.
    sdk_logger = logging.getLogger("darabonba-core")
    seen = []
    listener = logging.Handler()
    listener.emit = lambda record: seen.append(record.getMessage())
    sdk_logger.addHandler(listener)
    try:
        seed_failed(dataworks)
        with make_function(dataworks, tmp_path, DEBUG="sdk") as fn:
            inv = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    finally:
        sdk_logger.removeHandler(listener)
    assert inv.error is None and len(reruns(dataworks)) == 1
    assert seen == []
    output = "\n".join(inv.stdout + inv.stderr)
    assert "x-acs-security-token" not in output.lower() and secrets_audit.leaks(output, "output") == []


def test_debug_sdk_would_dump_the_token_if_the_function_did_not_silence_it(dataworks, tmp_path, mocker):
    # The control for the test above: it can see a dump when there is one.
    from dwrerun import dataworks as wire

    mocker.patch.object(wire, "_silence_sdk_debug_logging")
    sdk_logger = logging.getLogger("darabonba-core")
    seen = []
    listener = logging.Handler()
    listener.emit = lambda record: seen.append(record.getMessage())
    # Only the listener hears it, so the dump never reaches any captured stream.
    mocker.patch.object(sdk_logger, "handlers", [listener])
    mocker.patch.object(sdk_logger, "propagate", False)
    sdk_logger.setLevel(logging.DEBUG)
    try:
        seed_failed(dataworks)
        with make_function(dataworks, tmp_path, DEBUG="sdk") as fn:
            fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    finally:
        sdk_logger.setLevel(logging.WARNING)
    assert any(CREDS.security_token in line for line in seen)


@pytest.mark.parametrize("encoded", [False, True])
def test_a_10_mb_body_is_refused_with_413_before_it_is_parsed(dataworks, tmp_path, mocker, encoded):
    from dwrerun import http_request

    body = json.dumps({"Ids": [FAILED_ID] * 2_000_000})  # ~30 MB of ids, valid JSON
    body = body[: 10 * 1024 * 1024 - 2] + "]}"
    event = sample("fc-http-rerun-request.json")
    event["body"] = base64.b64encode(body.encode()).decode() if encoded else body
    event["isBase64Encoded"] = encoded
    loads = mocker.spy(http_request.strictjson.json, "loads")  # what strictjson.loads calls
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        inv = fn.invoke(json.dumps(event).encode())
    # One parse: FC's event envelope. The body inside it never reaches json.loads.
    assert loads.call_count == 1 and len(loads.call_args.args[0]) > 10 * 1024 * 1024
    response = inv.result
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["Code"] == "PayloadTooLarge"
    assert len(dataworks.journal) == 0
