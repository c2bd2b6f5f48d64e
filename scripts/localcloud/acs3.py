"""ACS3-HMAC-SHA256, the request signature of Alibaba Cloud's OpenAPI gateway (V3 signature).

`sign()` is the client side (for tests and scripts that build a request by hand); `verify()` is the
server side the local stand-ins use. Nothing here knows about DataWorks, so the FC HTTP gateway can
reuse `verify()` for `authType: function` triggers.

Canonical request (FACTS §4, and `alibabacloud_tea_openapi.utils.Utils.get_authorization`):
    METHOD \\n PATH \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n HashedPayload
String to sign: "ACS3-HMAC-SHA256\\n" + hex(sha256(canonical request)); signature: hex HMAC-SHA256
keyed with the AccessKey secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The gateway refuses a request whose x-acs-date is further than this from its clock.
MAX_CLOCK_SKEW = 15 * 60.0

# Headers the gateway insists are covered by the signature when present (besides every x-acs-* one).
_MUST_SIGN = ("host", "content-type")
_REQUIRED = ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")


class Credentials(NamedTuple):
    """An AccessKey pair, with the STS token when it is temporary. repr() hides secret and token."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        token = ", security_token=<hidden>" if self.security_token else ""
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=<hidden>{token})"

    __str__ = __repr__


class SignatureError(Exception):
    """The gateway refused the request's authentication. `code` and `status` are the real service's."""

    # code -> (HTTP status, message). Statuses: Alibaba Cloud's common error-code tables list
    # InvalidAccessKeyId.NotFound as 404 and the other codes as 400 (see dataworks/exceptions.py).
    REFUSALS = {
        "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
        "InvalidSignatureMethod": (400, "Specified signature method is not supported."),
        "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
        "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
        "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
        "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
        "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
        "MissingSecurityToken": (400, "SecurityToken is mandatory for this action."),
        "InvalidSecurityToken.MismatchWithAccessKey": (400, "Specified security token mismatch with access key."),
        "InvalidSecurityToken.Expired": (400, "Specified SecurityToken is expired."),
    }

    def __init__(self, code: str, detail: str = ""):
        self.code = code
        self.status, message = self.REFUSALS[code]
        self.message = f"{message} {detail}".strip()
        super().__init__(f"{code}: {self.message}")


def canonical_query(query: Mapping[str, str]) -> str:
    """The decoded query re-encoded with RFC 3986 (`~` kept), sorted by key, joined by `&`."""
    pairs = sorted((k, v) for k, v in query.items() if v is not None)
    return "&".join(f"{quote(k, safe='~')}={quote(str(v), safe='~')}" for k, v in pairs)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], signed: list[str], payload: str
) -> str:
    """METHOD, path, canonical query, `name:value` per signed header, the signed names, the payload hash.
    Shared with fc/auth.py: FC's HTTP trigger signs the same way, with its own query canonicalisation."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '')}\n" for name in signed)
    return "\n".join([method.upper(), path or "/", query, canonical_headers, ";".join(signed), payload])


def signature_of(secret: str, canonical_request: str) -> str:
    """Hex HMAC-SHA256, keyed with the secret, of the string to sign for `canonical_request`."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{digest}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined by `,` in sorted order, as the SDK canonicalises them."""
    items = headers.items() if hasattr(headers, "items") else headers
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(name.lower(), []).append(str(value).strip())
    return {name: ",".join(sorted(values)) for name, values in grouped.items()}


def sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Sign a request; return the headers to add (x-acs-date, nonce, content hash, STS headers,
    Authorization). Every header passed in `headers` is signed too: pass host, content-type and the
    x-acs-action / x-acs-version headers."""
    added = {
        "x-acs-date": datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime(DATE_FORMAT),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if credentials.security_token:
        added["x-acs-security-token"] = credentials.security_token
        added["x-acs-accesskey-id"] = credentials.access_key_id
    lowered = _lower_headers({**headers, **added})
    signed = sorted(lowered)
    canonical = canonical_request(method, path, canonical_query(query), lowered, signed, added["x-acs-content-sha256"])
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id},SignedHeaders={';'.join(signed)},"
        f"Signature={signature_of(credentials.access_key_secret, canonical)}"
    )
    return added


class NonceCache:
    """Nonces seen within the clock-skew window; a replayed nonce is refused (thread-safe)."""

    def __init__(self, ttl: float = 2 * MAX_CLOCK_SKEW):
        self._ttl = ttl
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, now: float) -> bool:
        """Record `nonce`; False when it was already used."""
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {n: t for n, t in self._seen.items() if now - t < self._ttl}
            seen = self._seen.get(nonce)
            if seen is not None and now - seen < self._ttl:
                return False
            self._seen[nonce] = now
            return True


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm.startswith("ACS3-"):
            raise SignatureError("InvalidSignatureMethod", f"Only {ALGORITHM} is accepted, not {algorithm}.")
        raise SignatureError("IncompleteSignature", f"The Authorization header must start with {ALGORITHM}.")
    fields = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise SignatureError("IncompleteSignature", f"The Authorization header lacks {', '.join(missing)}.")
    return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]


def verify(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    credentials: Iterable[Credentials],
    *,
    expired: Iterable[Credentials] = (),
    now: float | None = None,
    nonces: NonceCache | None = None,
    max_skew: float = MAX_CLOCK_SKEW,
    canonical_query_string: str | None = None,
) -> Credentials:
    """Check an ACS3-HMAC-SHA256 request; return the Credentials it was signed with.

    `credentials` are the ones accepted now; `expired` are STS credentials that used to be valid
    (answered with InvalidSecurityToken.Expired rather than "not found"). `query` is the decoded
    query string; a service that canonicalises its query its own way (FC: fc.auth.canonical_query)
    passes the result as `canonical_query_string`. Raises SignatureError with the gateway's code.
    """
    now = time.time() if now is None else now
    lowered = _lower_headers(headers)
    authorization = lowered.get("authorization")
    if not authorization:
        raise SignatureError("IncompleteSignature", "The Authorization header is missing.")
    key_id, signed, signature = _parse_authorization(authorization)
    for name in _REQUIRED:
        if not lowered.get(name):
            raise SignatureError("IncompleteSignature", f"The {name} header is missing.")
    must_sign = [n for n in lowered if n.startswith("x-acs-") or n in _MUST_SIGN]
    unsigned = [n for n in must_sign if n not in signed]
    if unsigned:
        raise SignatureError("IncompleteSignature", f"These headers must be signed: {', '.join(unsigned)}.")
    absent = [n for n in signed if n not in lowered]
    if absent:
        raise SignatureError("IncompleteSignature", f"Signed headers are absent: {', '.join(absent)}.")

    try:
        signed_at = datetime.strptime(lowered["x-acs-date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("InvalidTimeStamp.Format", "x-acs-date must look like 2025-01-31T08:00:00Z.") from None
    if abs(signed_at.timestamp() - now) > max_skew:
        raise SignatureError("InvalidTimeStamp.Expired", "x-acs-date is more than 15 minutes from server time.")

    known = {c.access_key_id: c for c in credentials}
    creds = known.get(key_id)
    if creds is None:
        if any(c.access_key_id == key_id and c.security_token for c in expired):
            raise SignatureError("InvalidSecurityToken.Expired")
        raise SignatureError("InvalidAccessKeyId.NotFound")
    token = lowered.get("x-acs-security-token")
    if creds.security_token:
        if not token:
            raise SignatureError("MissingSecurityToken")
        if not hmac.compare_digest(token, creds.security_token):
            if any(c.security_token and hmac.compare_digest(token, c.security_token) for c in expired):
                raise SignatureError("InvalidSecurityToken.Expired")
            raise SignatureError("InvalidSecurityToken.MismatchWithAccessKey")
        if lowered.get("x-acs-accesskey-id", key_id) != key_id:
            raise SignatureError("InvalidSecurityToken.MismatchWithAccessKey", "x-acs-accesskey-id differs.")
    elif token:
        raise SignatureError("InvalidSecurityToken.MismatchWithAccessKey", "This AccessKey takes no token.")

    # The gateway hashes the body itself: a body changed after signing breaks the signature.
    payload = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(payload, lowered["x-acs-content-sha256"]):
        raise SignatureError("SignatureDoesNotMatch", "The body's SHA-256 differs from x-acs-content-sha256.")
    query_string = canonical_query(query) if canonical_query_string is None else canonical_query_string
    canonical = canonical_request(method, path, query_string, lowered, signed, payload)
    if not hmac.compare_digest(signature_of(creds.access_key_secret, canonical), signature):
        raise SignatureError("SignatureDoesNotMatch")
    # Only a correctly signed request may burn a nonce, or anyone could block a replayable one.
    if nonces is not None and not nonces.claim(lowered["x-acs-signature-nonce"], now):
        raise SignatureError("SignatureNonceUsed")
    return creds
