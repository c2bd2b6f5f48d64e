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
import json
import os
import sys
import traceback
from dataclasses import dataclass, field

from dwrerun import pacing, records, schema
from dwrerun.config import ANY_ENV, ConfigError, Settings
from dwrerun.continuation import MAX_COMMENT as MAX_COMMENT_CHARS
from dwrerun.schema import Reason, Summary
from dwrerun.values import from_digits, json_type, positive_int64, preview

MAX_BODY_BYTES = 64 * 1024  # far above 100 ids and a comment; refused before it is parsed
ID_FIELDS = ("Ids", "Comment", "DryRun", "Force", "UseLatestConfig")
FILTER_FIELDS = ("ProjectId", "Bizdate", "TaskIds", "ProjectEnv", "FinishedTimeStart", "FinishedTimeEnd")
FILTER_OPTIONS = ("IgnoreRules", "PlanToken")  # meaningful with a filter only
FIELDS = ID_FIELDS + FILTER_FIELDS + FILTER_OPTIONS
RERUN_PATHS = ("/rerun", "/")
HEALTH_PATH = "/health"
# The status of each refusal of the plan check (plan.PlanError's code).
PLAN_STATUSES = {
    "InvalidPlanToken": 400,
    "PlanExpired": 409,
    "PlanMismatch": 409,
    "PlanOutdated": 409,
    "PlanRequired": 428,
}


@dataclass(frozen=True)
class Answer:
    """An answer before it is rendered: its status, its JSON body, its extra headers."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)


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


def _json_object(data, what: str) -> dict:
    try:
        value = json.loads(data)
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
        result = bulk.plan_or_apply(request, settings, rule_set, invocation, dataworks, functions)
    except plan.PlanError as exc:
        raise BadRequest(PLAN_STATUSES[exc.code], exc.code, exc.message) from None
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
    answer = filter_answer(result)
    return _response(answer.status, answer.body, answer.headers)


def _rerun(body: dict, settings: Settings, rule_set, context) -> dict:
    # Imported here so that GET /health and every refused request stay cheap on a cold instance.
    from dwrerun.dataworks import client_for, credentials_from
    from dwrerun.invocation import Invocation
    from dwrerun.job import Job, Target
    from dwrerun.outcome import first_quota_code
    from dwrerun.rerun import RetryLater, run

    started = pacing.clock()
    invocation = Invocation.from_context(context)
    job = Job.for_ids(
        invocation,
        settings,
        rule_set,
        dry_run=body["DryRun"],
        force=body["Force"],
        comment=body["Comment"],
        use_latest_config=body["UseLatestConfig"],
    )
    dataworks = client_for(credentials_from(os.environ, context), settings, invocation.region)
    try:
        written = run(job, [Target(i) for i in body["Ids"]], dataworks)
        status, error, headers = 200, None, {}
    except RetryLater as exc:
        written, error = exc.outcomes, exc.error
        status, headers = _upstream_status(error)
    exhausted = first_quota_code(written)
    if exhausted:
        # No Retry-After: a client that honours one of a few seconds would spend calls in vain.
        status, headers = 429, {}
    records.write_invocation(
        written,
        job.origin,
        (pacing.clock() - started) * 1000,
        dryRunMode=job.dry_run,
        outcome=Summary.QUOTA_EXHAUSTED if exhausted else Summary.DONE if status == 200 else Summary.UPSTREAM_ERROR,
    )
    answer = {"RequestId": job.request_id, "DryRun": job.dry_run, **rerun_answer(written)}
    if job.dry_run:
        # The explain: per id, what the failed run's log says (no entry: the log was not looked at).
        answer["Explain"] = {
            str(o.instance_id): {"Rule": o.rule, "FailureClass": o.failure_class, "MatchedLine": o.matched_line}
            for o in written
            if o.failure_class is not None
        }
    deferred = [o.instance_id for o in written if o.reason == Reason.DEFERRED]
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


def filter_answer(result) -> Answer:
    """The answer to a rerun by filter: a bulk.Planned (the dry run's plan) or a bulk.Applied."""
    from dwrerun.bulk import Planned

    dry_run = isinstance(result, Planned)
    head = {"RequestId": result.request_id, "DryRun": dry_run, "Filter": result.filter, "Selected": result.selected}
    written = list(result.outcomes)
    if dry_run:
        return Answer(
            200,
            {
                **head,
                **_decisions(written),
                "LogsNotRead": result.logs_not_read,
                "PlanToken": result.token,
                "PlanExpiresAt": result.expires,
                "PlanRequiredAbove": result.required_above,
            },
        )
    body = {
        **head,
        "Started": sum(1 for o in written if o.started),
        **_decisions(written),
        **rerun_answer(written),
        "Continuing": result.continuing,
    }
    if result.handed:
        body["Continuation"] = _continuation(result)
    if result.quota:
        return Answer(429, {"Code": "QuotaExhausted", "Message": quota_message(result.quota), **body})
    failed = [o for o in written if o.reason == Reason.DEFERRED]
    if failed:
        message = (
            f"{len(failed)} instance(s) could not be handed to a continuation ({failed[0].error_code}): they were "
            "not rerun (Skipped, reason deferred); send the same filter again to pick them up"
        )
        return Answer(502, {"Code": "ContinuationFailed", "Message": message, **body})
    return Answer(202 if result.continuing else 200, body)


def _decisions(written) -> dict:
    """Each decision counted by reason, the ids by reason, and what a failure rule held back."""
    by_reason: dict[str, list[int]] = {}
    for o in written:
        by_reason.setdefault(o.reason, []).append(o.instance_id)
    return {
        "Counts": {reason: len(ids) for reason, ids in sorted(by_reason.items())},
        "Decisions": dict(sorted(by_reason.items())),
        "NotRetryable": {
            str(o.instance_id): {"Rule": o.rule, "MatchedLine": o.matched_line, "Message": o.message}
            for o in written
            if o.reason == Reason.NOT_RETRYABLE
        },
    }


def _continuation(applied) -> dict:
    """Where the operator follows the parts handed on: the event function, its async task ids, SLS queries."""
    origin = applied.request_id
    return {
        "Function": applied.continuation_function,
        "Parts": len(applied.handed),
        "AsyncTaskIds": [c.task_id for c in applied.handed],
        "Query": f'message.originRequestId: "{origin}"',
        # Text for the operator to paste into SLS, not run here; the id is FC's own request id.
        "CountQuery": (
            f'message.originRequestId: "{origin}" and message.kind: instance '  # noqa: S608
            "| select reason, count(*) as instances from log group by reason"
        ),
    }


def rerun_answer(outcomes) -> dict:
    """`SuccessInfo` (each rerun call's answer per id, as RerunTaskInstances gives it) and `Skipped`
    (every other id, with its reason): the one place an answer lists outcomes."""
    return {
        "SuccessInfo": {
            str(o.instance_id): {"Success": o.success, "Message": o.message}
            for o in outcomes
            if o.decision == schema.RERUN
        },
        "Skipped": {str(o.instance_id): f"{o.reason}: {o.message}" for o in outcomes if o.decision != schema.RERUN},
    }


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
