"""The HTTP function: an operator's manual bulk rerun, over FC 3.0's HTTP trigger.

    POST /rerun  {"Ids": [...], "Comment": "...", "DryRun": false, "Force": false, "UseLatestConfig": false}
    POST /rerun  {"ProjectId": 48213, "Bizdate": "2026-11-27", ...filter..., "PlanToken": "..."}
    GET  /health

Every request is checked whole before any work: a bad one gets a 4xx with {"Code", "Message"}
naming the field and the rule, and reaches no DataWorks API. A good one goes through the same
guards, client and records as the event path, with `manual=True`. The filter form (a selection
by ListTaskInstances, a plan token, continuations) is dwrerun/bulk.py.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
import traceback

from dwrerun import pacing, records, strictjson
from dwrerun.config import ANY_ENV, INT64_MAX, ConfigError, Settings
from dwrerun.selection import json_type, preview

MAX_BODY_BYTES = 64 * 1024  # far above 100 ids and a comment; refused before it is parsed
MAX_COMMENT_CHARS = 500
ID_FIELDS = ("Ids", "Comment", "DryRun", "Force", "UseLatestConfig")
FILTER_FIELDS = ("ProjectId", "Bizdate", "TaskIds", "ProjectEnv", "FinishedTimeStart", "FinishedTimeEnd")
FILTER_OPTIONS = ("IgnoreRules", "PlanToken")  # meaningful with a filter only
FIELDS = ID_FIELDS + FILTER_FIELDS + FILTER_OPTIONS
MAX_PLAN_TOKEN_CHARS = 32 * 1024  # dwrerun/plan.py MAX_TOKEN_CHARS; the body is at most 64 KiB
RERUN_PATHS = ("/rerun", "/")
HEALTH_PATH = "/health"


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def handle(event: bytes, context) -> dict:
    """One HTTP-trigger event in, FC's response dict out. Never raises."""
    request_id = str(getattr(context, "request_id", None) or "")
    try:
        request = _json_object(event, "the HTTP trigger event")
        method, path = _route(request)
        if path == HEALTH_PATH:
            return _response(200, {"Status": "ok", "RequestId": request_id})
        settings = Settings.from_env()
        body = _parse_rerun_body(request, settings)
        from dwrerun import rules  # here, not at import: GET /health never parses the rules

        # A bad rules file is a bad deploy: answered 500 like any other setting, before any call.
        rule_set = rules.load(settings.rules_file) if settings.read_logs else rules.NOT_LOADED
        if not isinstance(body, dict):
            return _rerun_by_filter(body, settings, rule_set, context)
        return _rerun(body, settings, rule_set, context)
    except BadRequest as exc:
        return _response(exc.status, {"Code": exc.code, "Message": exc.message, "RequestId": request_id}, exc.headers)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return _response(500, {"Code": "InvalidConfiguration", "Message": str(exc), "RequestId": request_id})
    except Exception:
        # The trace goes to the function's own log, never to the caller.
        traceback.print_exc(file=sys.stderr)
        message = f"an unexpected error; the function's log has the details under request {request_id}"
        return _response(500, {"Code": "InternalError", "Message": message, "RequestId": request_id})


def _route(request: dict) -> tuple[str, str]:
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


def _parse_rerun_body(request: dict, settings: Settings) -> dict:
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
    body = _json_object(data, "the request body")
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
    from dwrerun import bulk, selection

    try:
        wanted = selection.parse(body, settings, settings.http_max_ids)
    except selection.InvalidFilter as exc:
        # An element's field (TaskIds[0]) is in the body when its list is: invalid, not missing.
        field = exc.field.split("[", 1)[0]
        status, code = (400, "MissingParameter") if body.get(field) is None else (400, "InvalidParameter")
        raise BadRequest(status, code, str(exc)) from None
    token = body.get("PlanToken")
    if token is not None and (not isinstance(token, str) or not 0 < len(token) <= MAX_PLAN_TOKEN_CHARS):
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


def _json_object(data, what: str) -> dict:
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
        if isinstance(item, str) and item.isascii() and item.isdigit() and len(item) <= 19:
            item = int(item)  # int64 ids as strings survive JavaScript clients
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= INT64_MAX:
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


def _rerun_by_filter(request, settings: Settings, rule_set, context) -> dict:
    """The filter form: refused up front when the settings exclude the project or environment,
    else planned or applied by dwrerun/bulk.py."""
    from dwrerun import bulk, plan, selection
    from dwrerun.dataworks import DataWorksError, client_for, credentials_from
    from dwrerun.invocation import Invocation

    wanted = request.filter
    if settings.project_ids and wanted.project_id not in settings.project_ids:
        raise BadRequest(403, "ProjectNotAllowed", f"project {wanted.project_id} is not in RERUN_PROJECT_IDS")
    if settings.project_env not in (ANY_ENV, wanted.project_env):
        raise BadRequest(
            403, "WrongEnvironment", f"ProjectEnv is {wanted.project_env}, RERUN_PROJECT_ENV is {settings.project_env}"
        )
    invocation = Invocation.from_context(context)
    credentials = credentials_from(os.environ, context)
    dataworks = client_for(credentials, settings, invocation.region)

    def functions():
        from dwrerun import function_compute

        return function_compute.client_for(credentials, settings, invocation.region, invocation.account_id)

    try:
        answer = bulk.plan_or_apply(request, settings, rule_set, invocation, dataworks, functions)
    except plan.PlanError as exc:
        raise BadRequest(exc.status, exc.code, exc.message) from None
    except selection.TooLarge as exc:
        raise BadRequest(
            400,
            "SelectionTooLarge",
            f"the filter selects {exc.count} failed instances, more than {selection.MAX_SELECTION}: narrow it "
            "(TaskIds, FinishedTimeStart / FinishedTimeEnd)",
        ) from None
    except DataWorksError as exc:  # ListTaskInstances kept failing: nothing was rerun
        if exc.quota_exhausted:
            return _response(
                429, {"Code": "QuotaExhausted", "Message": quota_message(exc.code), "RequestId": invocation.request_id}
            )
        status, headers = _upstream_status(exc)
        message = f"ListTaskInstances kept failing ({exc.code}): nothing was selected, nothing rerun; try again"
        code = "Throttled" if status == 429 else "UpstreamUnavailable"
        return _response(status, {"Code": code, "Message": message, "RequestId": invocation.request_id}, headers)
    except pacing.DeadlineReached:
        message = "listing the selection took the whole invocation: nothing rerun; narrow the filter or try again"
        return _response(
            503,
            {"Code": "UpstreamUnavailable", "Message": message, "RequestId": invocation.request_id},
            {"Retry-After": "5"},
        )
    return _response(answer.status, answer.body, answer.headers)


def _rerun(body: dict, settings: Settings, rule_set, context) -> dict:
    # Imported here so that GET /health and every refused request stay cheap on a cold instance.
    from dwrerun.dataworks import client_for, credentials_from
    from dwrerun.invocation import Invocation
    from dwrerun.rerun import Job, RetryLater, Target, run

    started = pacing.clock()
    invocation = Invocation.from_context(context)
    job = Job(
        trigger=records.HTTP,
        request_id=invocation.request_id,
        function_name=invocation.function_name,
        settings=settings,
        deadline=invocation.deadline,
        dry_run=settings.dry_run or body["DryRun"],
        manual=True,
        force=body["Force"],
        operator_comment=body["Comment"],
        rules=rule_set,
        use_latest_config=body["UseLatestConfig"],
    )
    dataworks = client_for(credentials_from(os.environ, context), settings, invocation.region)
    try:
        written = run(job, [Target(i) for i in body["Ids"]], dataworks)
        status, error, headers = 200, None, {}
    except RetryLater as exc:
        written, error = exc.records, exc.error
        status, headers = _upstream_status(error)
    exhausted = next((r["errorCode"] for r in written if r["reason"] == "quota-exhausted"), None)
    if exhausted:
        # No Retry-After: a client that honours one of a few seconds would spend calls in vain.
        status, headers = 429, {}
    records.write_invocation(
        written,
        trigger=job.trigger,
        request_id=job.request_id,
        duration_ms=(pacing.clock() - started) * 1000,
        dryRunMode=job.dry_run,
        outcome="quota-exhausted" if exhausted else "done" if status == 200 else "upstream-error",
    )
    answer = {
        "RequestId": job.request_id,
        "DryRun": job.dry_run,
        "SuccessInfo": {
            str(r["instanceId"]): {"Success": r["success"], "Message": r["message"]}
            for r in written
            if r["decision"] == records.RERUN
        },
        "Skipped": {
            str(r["instanceId"]): f"{r['reason']}: {r['message']}" for r in written if r["decision"] != records.RERUN
        },
    }
    if job.dry_run:
        # The explain: per id, what the failed run's log says (no entry: the log was not looked at).
        answer["Explain"] = {
            str(r["instanceId"]): {
                "Rule": r["rule"],
                "FailureClass": r["failureClass"],
                "MatchedLine": r["matchedLine"],
            }
            for r in written
            if r["failureClass"] is not None
        }
    deferred = [r["instanceId"] for r in written if r["reason"] == "deferred"]
    if deferred:  # what to send again, as a list ready for Ids
        answer["Deferred"] = deferred
    if exhausted:
        answer = {"Code": "QuotaExhausted", "Message": quota_message(exhausted), **answer}
    elif error is None and status != 200:
        # Nothing failed: the invocation's time ran out. What was read was done (SuccessInfo).
        answer = {
            "Code": "Incomplete",
            "Message": f"the function's time ran out after {len(written) - len(deferred)} of {len(written)} ids; "
            "the ids under Deferred were not looked at: send them again",
            **answer,
        }
    elif error is not None or status != 200:
        answer = {
            "Code": "Throttled" if status == 429 else "UpstreamUnavailable",
            "Message": f"DataWorks kept failing ({error.code}); the ids under Deferred were not rerun",
            **answer,
        }
    return _response(status, answer, headers)


def quota_message(code: str) -> str:
    from dwrerun.dataworks import QUOTA_LIMITS

    when = {
        # Inferred: the page names a daily limit, so a new day brings a new budget.
        "Throttling.Api.Risk": "it clears when DataWorks counts a new day (inferred), not within minutes",
        "Throttling.Resource": "it does not clear within minutes; DataWorks says a higher edition has a larger quota",
    }[code]
    return (
        f"DataWorks refused the calls: {QUOTA_LIMITS[code]} for this account and region is used up ({code}); "
        f"{when}. The ids under Skipped with reason 'quota-exhausted' were not rerun: send them again then"
    )


def _upstream_status(error) -> tuple[int, dict]:
    if error is not None and error.throttled:
        return 429, {"Retry-After": str(max(1, round(error.retry_after or 1)))}
    if error is not None and error.status is not None and error.status >= 500:
        return 502, {}
    return 503, {"Retry-After": "5"}


def _response(status: int, body: dict, headers: dict | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "isBase64Encoded": False,
        "body": records.to_json(body),
    }
