"""Signed, self-contained messages: a plan token, a continuation and a scheduled rerun carry their own proof.

FC 3.0 runs each invocation in a process of its own, with no memory shared between them (and the
HTTP function's dry run and its real run are two invocations, maybe on two instances). So nothing
is remembered server-side: a message is its content plus an HMAC-SHA256 over it, and any instance
of either function checks it with the same key.

The key is `RERUN_SIGNING_KEY`, a setting of its own. Not the role's credentials: FC hands the
function STS credentials that rotate under a running instance, so a token signed with one secret
would stop verifying a few minutes later on another instance. A dedicated random value does not
rotate unless someone changes it: `scripts/deploy` generates one (32 random bytes) the first time
and keeps it in `.dwrerun/signing-key`, so every later deploy passes the same one. Changing it
invalidates plan tokens (minutes-lived: make the dry run again) and continuations still queued
(their instances are recorded `config-error`: select them again). Who can read the functions'
configuration can read the key; that person can already invoke the functions.

Every message has a purpose label that is signed with it, so a plan token never passes for a
continuation payload or the reverse. The message itself is canonical JSON (sorted keys, no
spaces), so the same content always signs the same. Nothing here logs, and no error message
repeats a key or a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from dwrerun import strictjson

PLAN = "dwrerun/plan-token/v1"
CONTINUATION = "dwrerun/continuation/v1"
SCHEDULED = "dwrerun/scheduled-rerun/v1"


class BadSignature(ValueError):
    """The message was not signed with this key for this purpose: forged, altered, or another key."""


class Malformed(ValueError):
    """The text is not a message of this shape at all. The message says what is wrong."""


def canonical(content: object) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, ASCII."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signature(key: str, purpose: str, content: object) -> str:
    """base64url HMAC-SHA256 of `purpose` and the canonical content, keyed with `key`."""
    mac = hmac.new(key.encode("utf-8"), purpose.encode("ascii") + b"\n" + canonical(content), hashlib.sha256)
    return _b64(mac.digest())


def verify(key: str, purpose: str, content: object, claimed: object) -> None:
    """Raise BadSignature unless `claimed` is the signature of `content` for `purpose` (constant time)."""
    if not isinstance(claimed, str) or not hmac.compare_digest(signature(key, purpose, content), claimed):
        raise BadSignature("the signature does not verify")


def seal(key: str, purpose: str, content: dict) -> str:
    """A self-contained token: `<base64url canonical JSON>.<base64url signature>`."""
    return f"{_b64(canonical(content))}.{signature(key, purpose, content)}"


def unseal(key: str, purpose: str, token: object, max_chars: int = 4096) -> dict:
    """The content of a token `seal` made. Raises Malformed or BadSignature."""
    if not isinstance(token, str) or not 0 < len(token) <= max_chars or token.count(".") != 1:
        raise Malformed("it is not a token this function issued (expected <content>.<signature>)")
    body, claimed = token.split(".")
    try:
        content = strictjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("its content is not base64url JSON") from None
    if not isinstance(content, dict):
        raise Malformed("its content is not a JSON object")
    verify(key, purpose, content, claimed)
    return content


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
