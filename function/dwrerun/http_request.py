"""The HTTP function's request, checked whole before any work: its route, its body, its fields.

A request that breaks a rule raises `BadRequest` (a 4xx with a `Code` naming the rule and a
message naming the field); nothing here calls DataWorks. The ids form comes back as a dict, the
filter form as a bulk.Request.
"""

from __future__ import annotations

import base64
import binascii

from dwrerun import strictjson
from dwrerun.config import Settings
from dwrerun.continuation import MAX_COMMENT as MAX_COMMENT_CHARS
from dwrerun.values import from_digits, json_type, positive_int64, preview

MAX_BODY_BYTES = 64 * 1024  # far above 100 ids and a comment; refused before it is parsed
ID_FIELDS = ("Ids", "Comment", "DryRun", "Force", "UseLatestConfig")
FILTER_FIELDS = ("ProjectId", "Bizdate", "TaskIds", "ProjectEnv", "FinishedTimeStart", "FinishedTimeEnd")
FILTER_OPTIONS = ("IgnoreRules", "PlanToken")  # meaningful with a filter only
FIELDS = ID_FIELDS + FILTER_FIELDS + FILTER_OPTIONS
RERUN_PATHS = ("/rerun", "/")
HEALTH_PATH = "/health"


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def route(request: dict) -> tuple[str, str]:
    context = request.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    http = http if isinstance(http, dict) else {}
    method = str(http.get("method") or "").upper()
    path = str(request.get("rawPath") or http.get("path") or "/")
    if path != "/":
        path = path.rstrip("/")
    if path == HEALTH_PATH:
        allowed = "GET, HEAD"
    elif path in RERUN_PATHS:
        allowed = "POST"
    else:
        raise BadRequest(404, "NotFound", f"no such path {path!r}: use POST /rerun or GET /health")
    if method not in allowed.split(", "):
        raise BadRequest(
            405, "MethodNotAllowed", f"{method or 'no method'} is not allowed on {path}", {"Allow": allowed}
        )
    return method, path


def parse_rerun_body(request: dict, settings: Settings) -> dict:
    headers = request.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadRequest(400, "InvalidRequest", f"the event's headers must be an object, got {json_type(headers)}")
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BadRequest(415, "UnsupportedMediaType", f"Content-Type must be application/json, got {content_type!r}")
    raw = request.get("body") or ""
    if not isinstance(raw, str):
        raise BadRequest(400, "InvalidBody", "the request body must be text")
    if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:  # checked before decoding, so a huge body costs nothing
        raise BadRequest(413, "PayloadTooLarge", f"the body is over {MAX_BODY_BYTES} bytes")
    if request.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(400, "InvalidBody", "isBase64Encoded is true but the body is not valid base64") from None
    else:
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY_BYTES:
        raise BadRequest(413, "PayloadTooLarge", f"the body is over {MAX_BODY_BYTES} bytes")
    body = json_object(data, "the request body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(400, "UnknownField", f"unknown field(s) {', '.join(unknown)}: allowed are {', '.join(FIELDS)}")
    filtered = [name for name in FILTER_FIELDS if name in body]
    if "Ids" in body and filtered:
        raise BadRequest(
            400,
            "InvalidParameter",
            f"give either Ids or a filter (ProjectId, Bizdate, ...), not both: got Ids and {', '.join(filtered)}",
        )
    if filtered:
        return _filter_request(body, settings)
    options = [name for name in FILTER_OPTIONS if name in body]
    if options and "Ids" in body:
        raise BadRequest(
            400,
            "InvalidParameter",
            f"{', '.join(options)} go with a filter only: failure rules never hold back a rerun of ids you name, "
            "and ids need no plan",
        )
    if "Ids" not in body:
        raise BadRequest(400, "MissingParameter", "Ids is required, or a filter: ProjectId and Bizdate")
    return {
        "Ids": _ids(body.get("Ids"), settings.http_max_ids),
        "Comment": _comment(body.get("Comment")),
        "DryRun": _flag(body, "DryRun"),
        "Force": _flag(body, "Force"),
        "UseLatestConfig": _optional_flag(body, "UseLatestConfig"),
    }


def _filter_request(body: dict, settings: Settings):
    from dwrerun import bulk, plan, selection

    try:
        wanted = selection.parse(body, settings, settings.http_max_ids)
    except selection.InvalidFilter as exc:
        # An element's field (TaskIds[0]) is in the body when its list is: invalid, not missing.
        field = exc.field.split("[", 1)[0]
        status, code = (400, "MissingParameter") if body.get(field) is None else (400, "InvalidParameter")
        raise BadRequest(status, code, str(exc)) from None
    token = body.get("PlanToken")
    if token is not None and (not isinstance(token, str) or not 0 < len(token) <= plan.MAX_TOKEN_CHARS):
        raise BadRequest(400, "InvalidParameter", "PlanToken must be the PlanToken string a dry run answered")
    return bulk.Request(
        filter=wanted,
        comment=_comment(body.get("Comment")),
        dry_run=_flag(body, "DryRun"),
        force=_flag(body, "Force"),
        ignore_rules=_flag(body, "IgnoreRules"),
        use_latest_config=_optional_flag(body, "UseLatestConfig"),
        plan_token=token,
    )


def json_object(data, what: str) -> dict:
    try:
        value = strictjson.loads(data)
    except strictjson.DuplicateKey as exc:  # which value counts would depend on the reader: none does
        raise BadRequest(400, "InvalidJSON", f"{what} is not valid here: {exc}") from None
    except (ValueError, UnicodeDecodeError, TypeError, RecursionError):  # RecursionError: nested too deep
        raise BadRequest(400, "InvalidJSON", f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(400, "InvalidJSON", f"{what} must be a JSON object, got {json_type(value)}")
    return value


def _ids(value, max_ids: int) -> list[int]:
    if value is None:
        raise BadRequest(400, "MissingParameter", "Ids is required: a list of task instance ids")
    if not isinstance(value, list):
        raise BadRequest(400, "InvalidParameter", f"Ids must be a list of task instance ids, got {json_type(value)}")
    if not value:
        raise BadRequest(400, "InvalidParameter", "Ids must not be empty")
    if len(value) > max_ids:
        raise BadRequest(400, "TooManyIds", f"Ids has {len(value)} ids, more than RERUN_HTTP_MAX_IDS={max_ids}")
    ids, seen = [], set()
    for n, item in enumerate(value):
        item = from_digits(item)  # int64 ids as strings survive JavaScript clients
        if positive_int64(item) is None:
            raise BadRequest(
                400, "InvalidParameter", f"Ids[{n}] must be a positive int64 instance id, got {preview(item)}"
            )
        if item in seen:
            raise BadRequest(400, "InvalidParameter", f"Ids[{n}] repeats instance {item}")
        seen.add(item)
        ids.append(item)
    return ids


def _comment(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(400, "InvalidParameter", f"Comment must be a string, got {json_type(value)}")
    if len(value) > MAX_COMMENT_CHARS:
        raise BadRequest(
            400, "InvalidParameter", f"Comment has {len(value)} characters, at most {MAX_COMMENT_CHARS} are allowed"
        )
    try:
        value.encode("utf-8")  # what DataWorks is sent: JSON may escape a half of a surrogate pair alone
    except UnicodeEncodeError as exc:
        raise BadRequest(
            400,
            "InvalidParameter",
            f"Comment has a lone surrogate ({value[exc.start]!r}) at character {exc.start}: it is not text "
            "DataWorks can store",
        ) from None
    return value.strip() or None


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(400, "InvalidParameter", f"{name} must be true or false, got {json_type(value)}")
    return value


def _optional_flag(body: dict, name: str) -> bool | None:
    return None if body.get(name) is None else _flag(body, name)
