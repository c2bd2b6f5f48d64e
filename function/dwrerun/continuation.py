"""The part of a bulk rerun that outlives its request: a signed payload for an asynchronous invocation.

A selection that cannot finish within the HTTP function's timeout continues in asynchronous
invocations of the event function (FC InvokeFunction; the HTTP function may have no other
trigger, but it may invoke another function). Each carries a `Continuation`: the instance ids it
is to handle, each with the run the selection found failed, and the request's options.

Why signed (dwrerun/signing.py): the event function has no HTTP authentication, so anyone allowed
`fc:InvokeFunction` on it can hand it a payload. A failure event gives that caller no more than
the event path's guards allow; an operator's options (Force lifts the cap, IgnoreRules the failure
rules, UseLatestConfig changes what runs) must not be forgeable that way. So the whole payload is
signed with RERUN_SIGNING_KEY and parsed strictly (as schedule.py parses a scheduled rerun); one
that does not verify is refused, and each instance it names is recorded `config-error`.

Why a replayed payload is harmless: every instance goes through every guard again, and it is
rerun only while the run the selection found failed is still its latest (`already-rerun`
otherwise). That is also what makes FC's retry of a continuation that died midway safe.

Task ids (FC's async task mode, on for the event function): `dwrerun-bulk-<request>-<part>-<hop>`.
A part that runs out of time hands its unfinished instances to its next hop; FC refuses a task id
it has seen with 409, so a retried hand-off never queues the same part twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dwrerun import signing, strictjson
from dwrerun.config import PROJECT_ENVS
from dwrerun.values import INT64_MAX, MAX_RUN_NUMBER, whole

PAYLOAD_KEY = "bulkRerun"
FIELDS = (
    "originRequestId",
    "part",
    "hop",
    "stalls",
    "projectId",
    "bizdate",
    "projectEnv",
    "instances",
    "comment",
    "force",
    "ignoreRules",
    "useLatestConfig",
    "signature",
)
MAX_INSTANCES = 500  # one ListTaskInstances call rereads them all
MAX_COMMENT = 500
MAX_PART = 100_000
MAX_HOPS = 1000
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidContinuation(ValueError):
    """A payload that says it is a continuation but is not a well-formed one. The message says why."""


class UntrustedContinuation(ValueError):
    """A well-formed continuation whose signature does not verify (or no key to verify it with).
    `instance_ids` are the ids it names, to be recorded, never acted on."""

    def __init__(self, message: str, instance_ids: list[int], origin_request_id: str):
        super().__init__(message)
        self.instance_ids = instance_ids
        self.origin_request_id = origin_request_id


@dataclass(frozen=True)
class Continuation:
    origin_request_id: str  # the HTTP request that selected the instances
    part: int  # which part of the selection (1, 2, ...)
    hop: int  # 0 for the part as first handed on; +1 each time it hands its remainder on
    stalls: int  # hops in a row that finished no instance (a chain that makes no progress stops)
    project_id: int
    bizdate: int
    project_env: str
    instances: tuple[tuple[int, int], ...]  # (instance id, the run the selection found failed)
    comment: str | None = None
    force: bool = False
    ignore_rules: bool = False
    use_latest_config: bool | None = None

    @property
    def task_id(self) -> str:
        return f"dwrerun-bulk-{self.origin_request_id}-{self.part}-{self.hop}"

    def content(self) -> dict:
        return {
            "originRequestId": self.origin_request_id,
            "part": self.part,
            "hop": self.hop,
            "stalls": self.stalls,
            "projectId": self.project_id,
            "bizdate": self.bizdate,
            "projectEnv": self.project_env,
            "instances": [list(pair) for pair in self.instances],
            "comment": self.comment,
            "force": self.force,
            "ignoreRules": self.ignore_rules,
            "useLatestConfig": self.use_latest_config,
        }

    def to_payload(self, key: str) -> bytes:
        content = self.content()
        content["signature"] = signing.signature(key, signing.CONTINUATION, self.content())
        return json.dumps({PAYLOAD_KEY: content}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(body: bytes | str, key: str | None) -> Continuation | None:
    """The continuation a payload carries; None when it is not one (a failure event, a scheduled rerun).

    Raises InvalidContinuation (malformed, naming the field) or UntrustedContinuation (well formed,
    but not signed with `key`, or no key is set).
    """
    marker = PAYLOAD_KEY.encode() if isinstance(body, bytes) else PAYLOAD_KEY
    if marker not in body:  # a cheap test first: failure events never carry it
        return None
    try:
        payload = strictjson.loads(body)  # a repeated key: left to the event parser, which names it
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # not JSON at all: the event parser reports it
    if not isinstance(payload, dict) or PAYLOAD_KEY not in payload:
        return None
    if len(payload) != 1:
        raise InvalidContinuation(f"a continuation payload has only {PAYLOAD_KEY!r}")
    inner = payload[PAYLOAD_KEY]
    if not isinstance(inner, dict):
        raise InvalidContinuation(f"{PAYLOAD_KEY} must be a JSON object")
    unknown = sorted(set(inner) - set(FIELDS))
    if unknown:
        raise InvalidContinuation(f"{PAYLOAD_KEY} has unknown field(s) {', '.join(map(str, unknown))}")
    missing = [n for n in FIELDS if n not in inner]
    if missing:
        raise InvalidContinuation(f"{PAYLOAD_KEY} lacks {', '.join(missing)}")
    origin = inner["originRequestId"]
    if not isinstance(origin, str) or not _REQUEST_ID.fullmatch(origin):
        raise InvalidContinuation("originRequestId must be an FC request id (letters, digits, '-', '_')")
    pairs = _pairs(inner["instances"])
    env = inner["projectEnv"]
    if env not in PROJECT_ENVS:
        raise InvalidContinuation("projectEnv must be Prod or Dev")
    comment = inner["comment"]
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidContinuation(f"comment must be null or a string of at most {MAX_COMMENT} characters")
    flags = {}
    for name in ("force", "ignoreRules"):
        if not isinstance(inner[name], bool):
            raise InvalidContinuation(f"{name} must be true or false")
        flags[name] = inner[name]
    latest = inner["useLatestConfig"]
    if latest is not None and not isinstance(latest, bool):
        raise InvalidContinuation("useLatestConfig must be true, false or null")
    continuation = Continuation(
        origin_request_id=origin,
        part=_int(inner["part"], "part", MAX_PART),
        hop=_int(inner["hop"], "hop", MAX_HOPS, minimum=0),
        stalls=_int(inner["stalls"], "stalls", MAX_HOPS, minimum=0),
        project_id=_int(inner["projectId"], "projectId", INT64_MAX),
        bizdate=_int(inner["bizdate"], "bizdate", INT64_MAX),
        project_env=env,
        instances=tuple(pairs),
        comment=comment,
        force=flags["force"],
        ignore_rules=flags["ignoreRules"],
        use_latest_config=latest,
    )
    _verify(continuation, inner["signature"], key)
    return continuation


def _pairs(raw: object) -> list[tuple[int, int]]:
    """The payload's instances: [instance id, the run the selection found failed], each once."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_INSTANCES:
        raise InvalidContinuation(f"instances must be a list of 1 to {MAX_INSTANCES} [instance id, failed run]")
    pairs = []
    for n, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise InvalidContinuation(f"instances[{n}] must be [instance id, failed run number]")
        pairs.append(
            (_int(pair[0], f"instances[{n}][0]", INT64_MAX), _int(pair[1], f"instances[{n}][1]", MAX_RUN_NUMBER))
        )
    if len({i for i, _ in pairs}) != len(pairs):
        raise InvalidContinuation("instances names an instance twice")
    return pairs


def _verify(continuation: Continuation, signature: object, key: str | None) -> None:
    """Raise UntrustedContinuation unless `signature` is the continuation's, made with `key`."""
    ids = [i for i, _ in continuation.instances]
    if key is None:
        raise UntrustedContinuation(
            "RERUN_SIGNING_KEY is unset, so no continuation can be verified", ids, continuation.origin_request_id
        )
    try:
        signing.verify(key, signing.CONTINUATION, continuation.content(), signature)
    except signing.BadSignature:
        raise UntrustedContinuation(
            "the continuation's signature does not verify with RERUN_SIGNING_KEY (it changed since the request, "
            "or the payload was not made by this function)",
            ids,
            continuation.origin_request_id,
        ) from None


def _int(value: object, name: str, maximum: int, minimum: int = 1) -> int:
    if not whole(value, minimum, maximum):
        raise InvalidContinuation(f"{name} must be an integer from {minimum} to {maximum}")
    return value
