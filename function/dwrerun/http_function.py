"""The HTTP function: an operator's manual bulk rerun, over FC 3.0's HTTP trigger.

    POST /rerun  {"Ids": [...], "Comment": "...", "DryRun": false, "Force": false, "UseLatestConfig": false}
    POST /rerun  {"ProjectId": 48213, "Bizdate": "2026-11-27", ...filter..., "PlanToken": "..."}
    GET  /health

Every request is checked whole before any work (http_request.py): a bad one gets a 4xx with
{"Code", "Message"} naming the field and the rule, and reaches no DataWorks API. A good one goes
through the same guards, client and records as the event path, as an operator's. The filter form
(a selection by ListTaskInstances, a plan token, continuations) is dwrerun/bulk.py, which returns
typed results: this module owns every status and answer body.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field

from dwrerun import pacing, records, schema
from dwrerun.config import ANY_ENV, ConfigError, Settings
from dwrerun.http_request import HEALTH_PATH, BadRequest, json_object, parse_rerun_body, route
from dwrerun.schema import Reason, Summary

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


def handle(event: bytes, context) -> dict:
    """One HTTP-trigger event in, FC's response dict out. Never raises."""
    request_id = str(getattr(context, "request_id", None) or "")
    try:
        request = json_object(event, "the HTTP trigger event")
        method, path = route(request)
        if path == HEALTH_PATH:
            return _response(200, {"Status": "ok", "RequestId": request_id})
        settings = Settings.from_env()
        body = parse_rerun_body(request, settings)
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
    return _response(status, _ids_answer(written, job, status, error, exhausted), headers)


def _ids_answer(written, job, status: int, error, exhausted: str | None) -> dict:
    """The answer to a rerun of ids: SuccessInfo and Skipped, a dry run's Explain, the ids to send
    again (Deferred), and when not all went through, the Code and Message saying why."""
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
    return answer


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
