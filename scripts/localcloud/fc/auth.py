"""FC's signature rules: the HTTP trigger's `authType: function`, and FC's query canonicalisation.

`sign()` / `verify()` are the trigger's check (the local gateway, localcloud.gateway, and the
signing client, scripts/rerun_client.py); `canonical_query()` is also how FC's OpenAPI
(localcloud.fc.server) canonicalises a query before the shared ACS3 check (localcloud.acs3).

FC's gateway checks an ACS3-HMAC-SHA256 signature made with an Alibaba Cloud AccessKey and answers
403 without a valid one. Sources for the exact computation:
- FC doc "Configure signature authentication for HTTP triggers" (help.aliyun.com/.../configure-
  signature-authentication-for-http-triggers): the trigger follows the SDK signature mechanism;
  `x-acs-date` (UTC, ISO 8601) is required, `x-acs-security-token` when the key is an STS key; its
  Python sample signs with `alibabacloud_openapi_util` `get_authorization(request,
  'ACS3-HMAC-SHA256', '', ak, secret)`, where the request carries the URL's path (`$` as `%24`),
  the query's first value per key, and exactly the headers it signs.
- That function, as shipped in alibabacloud-tea-openapi 0.4.x (`alibabacloud_tea_openapi.utils`):
  canonical request = METHOD \\n path \\n query \\n headers \\n signed-header-names \\n payload, where
  every header handed to it is signed (lower-case names, sorted, trimmed values), query values are
  RFC 3986 encoded (`quote(v, safe='~')`), keys are sorted; string to sign =
  `ACS3-HMAC-SHA256\\n` + hex SHA-256 of the canonical request; signature = hex HMAC-SHA256 keyed
  with the secret; header `ACS3-HMAC-SHA256 Credential=<ak>,SignedHeaders=<a;b>,Signature=<hex>`.
The documented sample signs an empty payload, so the body is not covered. `sign()` here also sends
and signs `x-acs-content-sha256` (the hex SHA-256 of the body, the OpenAPI convention) and then
uses it as the payload; `verify()` accepts both forms, and when the header is present it must
match the body. The 15-minute clock window is the OpenAPI gateways' rule [inferred for FC].
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from localcloud import acs3

ALGORITHM = acs3.ALGORITHM
DATE_HEADER = "x-acs-date"
TOKEN_HEADER = "x-acs-security-token"
CONTENT_SHA256_HEADER = "x-acs-content-sha256"
MAX_CLOCK_SKEW = timedelta(minutes=15)


class AuthError(Exception):
    """A request the gateway refuses (403). `code` is the error code FC's gateways use where one
    is documented; the message never contains the signature or a secret."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def sign(
    method: str,
    url: str,
    credentials: Any,
    body: bytes = b"",
    now: datetime | None = None,
    sign_body: bool = True,
) -> dict[str, str]:
    """The headers to add to a request so an HTTP trigger with authType function accepts it.

    `credentials` has access_key_id, access_key_secret and security_token (None or "" for a
    long-term AccessKey). `url` is the full trigger URL, query included, as it will be sent.
    """
    if not getattr(credentials, "access_key_id", None) or not getattr(credentials, "access_key_secret", None):
        raise ValueError("signing needs credentials with an access_key_id and an access_key_secret")
    parts = urlsplit(url)
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    headers = {DATE_HEADER: stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
    token = getattr(credentials, "security_token", None)
    if token:
        headers[TOKEN_HEADER] = token
    payload = ""
    if sign_body:
        payload = hashlib.sha256(body).hexdigest()
        headers[CONTENT_SHA256_HEADER] = payload
    signed_names = sorted(headers)
    signature = _signature(
        credentials.access_key_secret,
        method,
        _canonical_path(parts.path),
        canonical_query(parts.query),
        [(name, headers[name]) for name in signed_names],
        payload,
    )
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id},"
        f"SignedHeaders={';'.join(signed_names)},Signature={signature}"
    )
    return headers


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    keys: Mapping[str, Any],
    now: datetime | None = None,
) -> str:
    """Check a request's signature the way FC's gateway does; return the AccessKey id that signed.

    `raw_path` and `raw_query` are as they arrived on the wire (still percent-encoded); `headers`
    are (name, value) pairs; `keys` maps AccessKey id -> credentials allowed to invoke.
    Raises AuthError for anything the gateway would answer 403 to.
    """
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    authorization = ",".join(values.get("authorization", []))
    if not authorization:
        raise AuthError("MissingAuthorization", "the request has no Authorization header")
    ak, signed_names, signature = _parse_authorization(authorization)

    creds = keys.get(ak)
    if creds is None:
        raise AuthError("InvalidAccessKeyId.NotFound", f"AccessKey id {ak!r} is not allowed to invoke this function")
    for name in signed_names:
        if name not in values:
            raise AuthError("SignatureDoesNotMatch", f"signed header {name!r} is missing from the request")
    for name in (DATE_HEADER, TOKEN_HEADER, CONTENT_SHA256_HEADER):
        if name in values and name not in signed_names:
            raise AuthError("SignatureDoesNotMatch", f"header {name!r} must be signed")
    if DATE_HEADER not in values:
        raise AuthError("MissingDate", f"the request has no {DATE_HEADER} header")
    _check_date(values[DATE_HEADER][0], now or datetime.now(timezone.utc))

    expected_token = getattr(creds, "security_token", None) or None
    sent_token = values.get(TOKEN_HEADER, [None])[0] or None
    if expected_token != sent_token:
        raise AuthError(
            "InvalidSecurityToken.MismatchWithAccessKey",
            "the security token does not belong to the AccessKey id",
        )

    payload = ""
    if CONTENT_SHA256_HEADER in values:
        payload = values[CONTENT_SHA256_HEADER][0].strip()
        if not hmac.compare_digest(payload, hashlib.sha256(body).hexdigest()):
            raise AuthError("SignatureDoesNotMatch", f"{CONTENT_SHA256_HEADER} does not match the body")

    expected = _signature(
        creds.access_key_secret,
        method,
        _canonical_path(raw_path),
        canonical_query(raw_query),
        [(name, ",".join(sorted(v.strip() for v in values[name]))) for name in signed_names],
        payload,
    )
    if not hmac.compare_digest(expected, signature):
        raise AuthError("SignatureDoesNotMatch", "the request signature does not match")
    return ak


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError("InvalidAuthorization", f"the Authorization header must use {ALGORITHM}")
    fields = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key] = val
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise AuthError(
            "InvalidAuthorization", "the Authorization header needs Credential, SignedHeaders and Signature"
        )
    signed = fields["SignedHeaders"].lower().split(";")
    if signed != sorted(signed):
        raise AuthError("InvalidAuthorization", "SignedHeaders must be sorted")
    return fields["Credential"], signed, fields["Signature"]


def _check_date(value: str, now: datetime) -> None:
    # The documented Python sample sends seconds, the Node.js one milliseconds: take both.
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            stamp = datetime.strptime(value.strip(), fmt).replace(tzinfo=timezone.utc)
            break
        except ValueError:
            continue
    else:
        raise AuthError("InvalidTimeStamp.Format", f"{DATE_HEADER} must be UTC ISO 8601, like 2026-11-28T02:10:00Z")
    if abs(now - stamp) > MAX_CLOCK_SKEW:
        raise AuthError("InvalidTimeStamp.Expired", f"{DATE_HEADER} is more than 15 minutes from the gateway's clock")


def _canonical_path(path: str) -> str:
    # The documented sample signs the URL's path as written, with '$' encoded.
    return (path or "/").replace("$", "%24")


def canonical_query(raw_query: str) -> str:
    """FC's canonical query: first value per key, keys sorted, values RFC 3986 encoded (what the
    documented sample and the tea-openapi client sign). Shared with the local FC OpenAPI."""
    query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))


def _signature(secret: str, method: str, path: str, query: str, headers: list[tuple[str, str]], payload: str) -> str:
    values = {name: value.strip() for name, value in headers}
    signed = [name for name, _ in headers]
    return acs3.signature_of(secret, acs3.canonical_request(method, path, query, values, signed, payload))
