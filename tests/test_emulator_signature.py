"""The DataWorks emulator checks ACS3-HMAC-SHA256 signatures as the real gateway does."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from localcloud import openapi
from localcloud.acs3 import Credentials, NonceCache, SignatureError, sign, verify
from localcloud.dataworks import DataWorksEmulator

CREDS = Credentials("LTAItestkeyid0001", "test-secret-do-not-log", "test-sts-token-do-not-log")
VERSION = "2024-05-18"


@pytest.fixture
def emu():
    with DataWorksEmulator(credentials=[CREDS]) as emu:
        emu.backend.add_instance(id=1000012345678, task_id=700000004417, project_id=48213, status="Failure")
        yield emu


def generic_client(emu, creds=CREDS):
    return openapi.client(emu.endpoint, creds)


def get_instance(client, instance_id: str = "1000012345678") -> dict:
    return openapi.call(client, "GetTaskInstance", "GET", Id=instance_id)


def signed_request(emu, creds=CREDS, *, action="RerunTaskInstances", query=None, form=None, **sign_kw):
    """(method, path, headers, body) signed by hand with acs3.sign."""
    query = query or {}
    body = urlencode(form).encode() if form is not None else b""
    headers = {"host": emu.endpoint, "x-acs-action": action, "x-acs-version": VERSION}
    if form is not None:
        headers["content-type"] = "application/x-www-form-urlencoded"
    headers.update(sign("POST" if form is not None else "GET", "/", query, headers, body, creds, **sign_kw))
    path = "/" + ("?" + urlencode(query) if query else "")
    return ("POST" if form is not None else "GET"), path, headers, body


def send(emu, method, path, headers, body) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_generic_client_with_sts_credentials_is_accepted(emu):
    # WHEN the function's own client calls with its STS credentials
    body = get_instance(generic_client(emu))["body"]
    # THEN the call is answered
    assert body["TaskInstance"]["Id"] == 1000012345678
    assert body["RequestId"]


def test_hand_signed_get_and_post_are_accepted(emu):
    status, body = send(emu, *signed_request(emu, action="GetTaskInstance", query={"Id": "1000012345678"}))
    assert status == 200 and body["TaskInstance"]["Status"] == "Failure"
    status, body = send(emu, *signed_request(emu, form={"Ids": "[1000012345678]", "Comment": "hand signed ~ é"}))
    assert status == 200 and body["SuccessInfo"]["1000012345678"]["Success"] is True


def test_query_values_needing_percent_encoding_verify(emu):
    # Spaces, unicode, '~' and reserved characters must canonicalise the same on both sides.
    query = {"ProjectId": "48213", "Bizdate": "1764172800000", "TaskName": "订单 & ~*'()+/="}
    status, body = send(emu, *signed_request(emu, action="ListTaskInstances", query=query))
    assert status == 200, body


def test_tampered_signature_is_refused(emu):
    method, path, headers, body = signed_request(emu, form={"Ids": "[1000012345678]"})
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    status, answer = send(emu, method, path, headers, body)
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    assert emu.backend.instance(1000012345678).run_number == 1


def test_generic_client_with_wrong_secret_gets_signature_does_not_match(emu):
    wrong = Credentials(CREDS.access_key_id, "not-the-secret", CREDS.security_token)
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu, wrong))
    assert (err.value.code, err.value.status_code) == ("SignatureDoesNotMatch", 400)


def test_unknown_access_key_id_is_refused(emu):
    stranger = Credentials("LTAIunknown000000", "whatever", None)
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu, stranger))
    assert (err.value.code, err.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_wrong_token_is_refused(emu):
    forged = Credentials(CREDS.access_key_id, CREDS.access_key_secret, "some-other-token")
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu, forged))
    assert err.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_missing_token_for_sts_key_is_refused(emu):
    no_token = Credentials(CREDS.access_key_id, CREDS.access_key_secret, None)
    status, answer = send(emu, *signed_request(emu, no_token, form={"Ids": "[1]"}))
    assert (status, answer["Code"]) == (400, "MissingSecurityToken")


def test_rotated_sts_credentials_old_ones_expire(emu):
    # GIVEN the function's STS credentials were rotated (new key id and token)
    rotated = Credentials("STS.NewKeyId0002", "new-secret-do-not-log", "new-sts-token-do-not-log")
    emu.set_credentials([rotated])
    # THEN the old ones are refused as expired, the new ones accepted
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu, CREDS))
    assert (err.value.code, err.value.status_code) == ("InvalidSecurityToken.Expired", 400)
    assert get_instance(generic_client(emu, rotated))["statusCode"] == 200


def test_rotated_token_for_same_key_expires_the_old_token(emu):
    emu.set_credentials([CREDS._replace(security_token="second-token-do-not-log")])
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu, CREDS))
    assert err.value.code == "InvalidSecurityToken.Expired"


@pytest.mark.parametrize("offset", [16 * 60.0, -16 * 60.0])
def test_clock_skew_beyond_15_minutes_is_refused(emu, offset):
    emu.clock_offset = offset
    with pytest.raises(ClientException) as err:
        get_instance(generic_client(emu))
    assert (err.value.code, err.value.status_code) == ("InvalidTimeStamp.Expired", 400)


def test_clock_skew_within_15_minutes_is_accepted(emu):
    emu.clock_offset = 14 * 60.0
    assert get_instance(generic_client(emu))["statusCode"] == 200


def test_replayed_request_is_refused_and_not_executed(emu):
    # GIVEN a signed rerun request that was accepted once
    request = signed_request(emu, form={"Ids": "[1000012345678]"})
    assert send(emu, *request)[0] == 200
    emu.backend.finish(1000012345678, "Failure")
    # WHEN the same bytes are sent again
    status, answer = send(emu, *request)
    # THEN the nonce is refused and the instance was not rerun twice
    assert (status, answer["Code"]) == (400, "SignatureNonceUsed")
    assert emu.backend.instance(1000012345678).run_number == 2
    assert len(emu.journal.calls("RerunTaskInstances")) == 1


def test_body_changed_after_signing_is_refused(emu):
    method, path, headers, _ = signed_request(emu, form={"Ids": "[1000012345678]"})
    tampered = urlencode({"Ids": "[1000012345679]"}).encode()
    status, answer = send(emu, method, path, headers, tampered)
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    assert "SHA-256" in answer["Message"]


def test_missing_or_garbled_authorization_is_refused(emu):
    method, path, headers, body = signed_request(emu, form={"Ids": "[1]"})
    for value in (
        None,
        "Bearer abc",
        "ACS3-HMAC-SHA256 Credential=x",
        "ACS3-HMAC-SM3 Credential=a,SignedHeaders=b,Signature=c",
    ):
        trial = {k: v for k, v in headers.items() if k != "Authorization"}
        if value:
            trial["Authorization"] = value
        status, answer = send(emu, method, path, trial, body)
        assert status == 400
        assert answer["Code"] in ("IncompleteSignature", "InvalidSignatureMethod")


def test_unsigned_acs_header_is_refused(emu):
    method, path, headers, body = signed_request(emu, form={"Ids": "[1]"})
    headers["x-acs-extra"] = "added after signing"
    status, answer = send(emu, method, path, headers, body)
    assert (status, answer["Code"]) == (400, "IncompleteSignature")
    assert "x-acs-extra" in answer["Message"]


def test_verify_round_trip_without_a_server():
    # acs3 is independent of DataWorks: the FC gateway reuses it.
    headers = {"host": "fc.example", "content-type": "application/json"}
    body = b'{"Ids":[1]}'
    headers.update(sign("POST", "/rerun", {"a": "b c"}, headers, body, CREDS, now=1_000_000.0, nonce="n1"))
    nonces = NonceCache()
    args = ("POST", "/rerun", {"a": "b c"}, headers, body, [CREDS])
    assert verify(*args, now=1_000_100.0, nonces=nonces) == CREDS
    with pytest.raises(SignatureError) as err:
        verify(*args, now=1_000_100.0, nonces=nonces)
    assert (err.value.code, err.value.status) == ("SignatureNonceUsed", 400)
    with pytest.raises(SignatureError) as err:
        verify("POST", "/other", {"a": "b c"}, headers, body, [CREDS], now=1_000_100.0)
    assert err.value.code == "SignatureDoesNotMatch"


def test_credentials_repr_hides_secret_and_token():
    text = repr(CREDS) + str(CREDS) + f"{CREDS}"
    assert CREDS.access_key_id in text
    assert CREDS.access_key_secret not in text and CREDS.security_token not in text


def test_journal_never_holds_secrets(emu):
    get_instance(generic_client(emu))
    method, path, headers, body = signed_request(emu, action="GetTaskInstance", query={"Id": "1000012345678"})
    send(emu, method, path, headers, body)
    signature = headers["Authorization"].rsplit("Signature=", 1)[1]
    dump = repr(emu.journal.entries())
    for secret in (CREDS.access_key_secret, CREDS.security_token, signature):
        assert secret not in dump
    assert emu.journal.count(action="GetTaskInstance", status=200) == 2
