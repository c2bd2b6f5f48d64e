"""Reruns by filter (issue 16) on one HTTP-function instance: the selection, the plan token, the
safety, UseLatestConfig on the wire. The continuations across instances are
tests/test_bulk_continuation.py.

The HTTP function runs in the FC harness against the DataWorks emulator over real HTTP with
signature checks. Every selection here fits in one invocation, so nothing continues.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import CREDS, PROJECT_ID, TASK_ID, instance_records, make_function, reruns, sample
from dwrerun import continuation, pacing, plan, schema, selection, signing
from dwrerun.config import Settings
from dwrerun.dataworks import DataWorksError
from dwrerun.http_function import PLAN_STATUSES
from dwrerun.job import Job, Mode
from dwrerun.values import INT64_MAX
from localcloud.fc import FunctionComputeApi

LOGS = Path(__file__).parent / "logs"
KEY = "k" * 40  # RERUN_SIGNING_KEY of these tests: at least 32 characters
BIZDATE = 1_795_708_800_000  # 2026-11-27 00:00 +08:00
DAY = "2026-11-27"
OTHER_DAY = BIZDATE - 86_400_000
FIRST = 2_000_000_000_000
HELD_BACK = FIRST + 90  # its failed run's log says a rerun cannot fix it


def seed(dataworks, instance_id, **fields):
    values = dict(
        id=instance_id,
        task_id=TASK_ID + instance_id - FIRST,
        project_id=PROJECT_ID,
        status="Failure",
        run_number=1,
        bizdate=BIZDATE,
        finished_time=BIZDATE + 26 * 3_600_000,  # 02:00 the next day, long before the test runs
    )
    values.update(fields)
    dataworks.backend.add_instance(**values)


def seed_outage(dataworks, failures=5):
    """`failures` plain failures, and the cases every guard and the filter itself must sort out."""
    for n in range(failures):
        seed(dataworks, FIRST + n)
    seed(dataworks, FIRST + 80, run_number=4)  # past RERUN_MAX_RERUNS=3: cap-reached
    seed(dataworks, FIRST + 81, rerun_mode="AllDenied")
    seed(dataworks, FIRST + 82, trigger_recurrence="Pause")
    seed(dataworks, HELD_BACK, task_type="ODPS_SQL", log=(LOGS / "odps_sql_table_not_found.log").read_text())
    # Not selected: not a failure, another business date, another project, the Dev environment.
    seed(dataworks, FIRST + 95, status="Success")
    seed(dataworks, FIRST + 96, bizdate=OTHER_DAY)
    seed(dataworks, FIRST + 97, project_id=PROJECT_ID + 1)
    seed(dataworks, FIRST + 98, project_env="Dev")


@pytest.fixture
def http(dataworks, tmp_path):
    with make_function(
        dataworks, tmp_path, handler="index.handle_http", RERUN_SIGNING_KEY=KEY, RERUN_PLAN_REQUIRED_ABOVE="8"
    ) as fn:
        yield fn


SEEN: list = []  # every invocation `call` made, for their records


def call(fn, body: dict) -> tuple[int, dict]:
    event = sample("fc-http-rerun-request.json")
    event["body"] = json.dumps(body)
    invocation = fn.invoke(json.dumps(event).encode())
    SEEN.append(invocation)
    result = invocation.result
    return result["statusCode"], json.loads(result["body"])


@pytest.fixture(autouse=True)
def _seen():
    SEEN.clear()


FILTER = {"ProjectId": PROJECT_ID, "Bizdate": DAY}


def test_a_dry_run_selects_the_failures_decides_each_and_reruns_nothing(dataworks, http):
    # GIVEN an outage's failures, and instances the filter or the guards must leave alone
    seed_outage(dataworks)
    # WHEN the operator plans a rerun of everything that failed in the project that day
    status, answer = call(http, {**FILTER, "DryRun": True})
    # THEN the selection is the day's Prod failures, each decision counted by reason
    assert status == 200 and answer["DryRun"] is True
    assert answer["Filter"] == {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"}
    assert answer["Selected"] == 9
    assert answer["Counts"] == {"cap-reached": 1, "dry-run": 5, "not-retryable": 1, "paused": 1, "rerun-denied": 1}
    assert answer["Decisions"]["dry-run"] == [FIRST + n for n in range(5)]
    # the held-back instance is listed whole: the rule, the log's line, and the message its record
    # carries (why a rerun cannot fix it), so the operator needs no Logstore query to see why
    (held,) = [r for r in instance_records(SEEN[-1]) if r["reason"] == "not-retryable"]
    assert answer["NotRetryable"] == {
        str(HELD_BACK): {
            "Rule": "maxcompute-table-not-found",
            "MatchedLine": "FAILED: ODPS-0130131:[10,11] Table not found - table sales_prod.dim_buyer cannot be resolved",
            "Message": held["message"],
        }
    }
    assert held["message"].startswith(
        "failure rule 'maxcompute-table-not-found' matched line 25 of the log of run 1: ODPS-0130131 Table not found"
    )
    assert held["message"].endswith("A rerun cannot fix it: the instance stays Failure for a person to fix and rerun")
    assert answer["LogsNotRead"] == 0
    assert answer["PlanToken"] and answer["PlanExpiresAt"].endswith("Z")
    # one ListTaskInstances page, no GetTaskInstance (the rows carry the guards' fields), no rerun
    assert dataworks.journal.count(action="ListTaskInstances") == 1
    assert dataworks.journal.count(action="GetTaskInstance") == 0
    assert reruns(dataworks) == []
    records = instance_records(SEEN[-1])
    assert len(records) == 9 and {r["originRequestId"] for r in records} == {answer["RequestId"]}


def test_the_real_run_reruns_once_and_holds_back_what_a_rule_says_a_rerun_cannot_fix(dataworks, http):
    seed_outage(dataworks, failures=2)
    status, answer = call(http, {**FILTER, "Comment": "after the outage"})
    assert status == 200 and answer["Selected"] == 6 and answer["Continuing"] == 0
    assert answer["Started"] == 2 and set(answer["SuccessInfo"]) == {str(FIRST), str(FIRST + 1)}
    assert answer["Skipped"][str(HELD_BACK)].startswith("not-retryable: failure rule 'maxcompute-table-not-found'")
    assert answer["NotRetryable"][str(HELD_BACK)]["Rule"] == "maxcompute-table-not-found"
    (call_,) = reruns(dataworks)
    assert json.loads(call_.params["Ids"]) == [FIRST, FIRST + 1]
    assert call_.params["Comment"].startswith(
        f"after the outage [dwrerun-http: bulk rerun by filter over HTTP, FC request {answer['RequestId']}"
    )
    assert "UseLatestConfig" not in call_.params  # not asked: DataWorks' default, the snapshot
    # WHEN the same filter is applied again THEN nothing is selected twice: the reruns left Failure
    status, again = call(http, FILTER)
    assert (status, again["Selected"], again["Started"]) == (200, 4, 0)  # what the guards and the rule held back
    assert len(reruns(dataworks)) == 1


def test_ignore_rules_reruns_what_a_rule_held_back_and_force_lifts_only_the_cap(dataworks, http):
    seed_outage(dataworks, failures=0)
    status, answer = call(http, {**FILTER, "IgnoreRules": True, "Force": True})
    assert status == 200
    assert set(answer["SuccessInfo"]) == {str(HELD_BACK), str(FIRST + 80)}  # the rule's and the cap's
    assert answer["Counts"] == {"eligible": 2, "paused": 1, "rerun-denied": 1}
    assert dataworks.journal.count(action="GetTaskInstanceLog") == 0  # IgnoreRules: no log to read


def test_a_time_window_and_task_ids_narrow_the_selection(dataworks, http):
    for n in range(4):
        seed(dataworks, FIRST + n, finished_time=BIZDATE + (25 + n) * 3_600_000)  # 01:00, 02:00, 03:00, 04:00
    body = {
        **FILTER,
        "FinishedTimeStart": "2026-11-28T02:00:00+08:00",
        "FinishedTimeEnd": BIZDATE + 28 * 3_600_000,
        "TaskIds": [TASK_ID + 1, TASK_ID + 2, TASK_ID + 3],
        "DryRun": True,
    }
    status, answer = call(http, body)
    assert status == 200 and answer["Decisions"] == {"dry-run": [FIRST + 1, FIRST + 2, FIRST + 3]}
    (listing,) = dataworks.journal.calls("ListTaskInstances")
    assert json.loads(listing.params["Filter"]) == {
        "finishedTimeStart": BIZDATE + 26 * 3_600_000,
        "finishedTimeEnd": BIZDATE + 28 * 3_600_000,
    }
    assert json.loads(listing.params["TaskIds"]) == [TASK_ID + 1, TASK_ID + 2, TASK_ID + 3]
    assert listing.params["Status"] == "Failure" and listing.params["PageSize"] == "500"


def _options(**given):
    return {"Force": False, "IgnoreRules": False, "UseLatestConfig": False, **given}


def _token(filter_=None, options=None, selected=9, now=None, ttl=900, key=KEY):
    canonical = filter_ or {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"}
    token, _ = plan.issue(key, canonical, options or _options(), selected, "1-plan", now or time.time(), ttl)
    return token


@pytest.mark.parametrize(
    ("token", "status", "code", "says"),
    [
        (None, 428, "PlanRequired", "more than RERUN_PLAN_REQUIRED_ABOVE=8"),
        (_token(now=time.time() - 1000, ttl=60), 409, "PlanExpired", "expired at"),
        (
            _token(filter_={"ProjectId": PROJECT_ID, "Bizdate": OTHER_DAY, "ProjectEnv": "Prod"}),
            409,
            "PlanMismatch",
            "Bizdate",
        ),
        (_token(options=_options(IgnoreRules=True)), 409, "PlanMismatch", "IgnoreRules"),
        (_token(selected=8), 409, "PlanOutdated", "saw 8"),
        (_token(key="x" * 40), 400, "InvalidPlanToken", "signature does not verify"),
        ("not-a-token", 400, "InvalidPlanToken", "not a token this function issued"),
    ],
    ids=["missing", "expired", "another-filter", "other-options", "more-failed-since", "another-key", "garbage"],
)
def test_a_real_rerun_of_more_than_the_threshold_needs_a_fresh_plan_for_the_same_filter(
    dataworks, http, token, status, code, says
):
    seed_outage(dataworks)  # 9 selected, RERUN_PLAN_REQUIRED_ABOVE=8
    body = {**FILTER, **({"PlanToken": token} if token else {})}
    got, answer = call(http, body)
    assert (got, answer["Code"]) == (status, code)
    assert says in answer["Message"]
    assert reruns(dataworks) == []
    if code not in ("PlanRequired", "PlanOutdated"):
        assert len(dataworks.journal) == 0  # a bad token fails before any call


def test_a_plan_made_without_the_latest_configuration_does_not_apply_with_it(dataworks, http):
    # UseLatestConfig changes what the reruns run: the reviewed plan said nothing of it
    seed_outage(dataworks)
    got, answer = call(http, {**FILTER, "UseLatestConfig": True, "PlanToken": _token()})
    assert (got, answer["Code"]) == (409, "PlanMismatch") and "UseLatestConfig" in answer["Message"]
    assert reruns(dataworks) == []


def test_a_selection_of_exactly_the_threshold_runs_without_a_plan(dataworks, http):
    # RERUN_PLAN_REQUIRED_ABOVE=8 asks for a plan above 8: a selection of 8 is rerun at once.
    seed_outage(dataworks, failures=4)  # 8 selected
    status, answer = call(http, FILTER)
    assert (status, answer["Started"]) == (200, 4)
    assert len(json.loads(reruns(dataworks)[0].params["Ids"])) == 4


def test_plan_then_apply_with_the_dry_runs_token(dataworks, http):
    seed_outage(dataworks)
    _, planned = call(http, {**FILTER, "DryRun": True})
    status, applied = call(http, {**FILTER, "PlanToken": planned["PlanToken"]})
    assert status == 200 and applied["Started"] == 5
    assert sorted(json.loads(reruns(dataworks)[0].params["Ids"])) == planned["Decisions"]["dry-run"]


def test_a_plan_applied_to_another_filter_names_the_dry_run_that_made_it(dataworks, http):
    seed_outage(dataworks)
    _, planned = call(http, {**FILTER, "DryRun": True})
    status, answer = call(http, {**FILTER, "TaskIds": [TASK_ID], "PlanToken": planned["PlanToken"]})
    assert (status, answer["Code"]) == (409, "PlanMismatch")
    assert f"(dry run {planned['RequestId']})" in answer["Message"]


def test_use_latest_config_reaches_the_wire_for_a_filter_and_for_ids(dataworks, http):
    seed(dataworks, FIRST)
    seed(dataworks, FIRST + 1)
    status, by_filter = call(http, {**FILTER, "TaskIds": [TASK_ID], "UseLatestConfig": True})
    assert status == 200 and by_filter["Started"] == 1
    status, by_ids = call(http, {"Ids": [FIRST + 1], "UseLatestConfig": True})
    assert status == 200 and by_ids["SuccessInfo"][str(FIRST + 1)]["Success"] is True
    for call_ in reruns(dataworks):
        assert call_.params["UseLatestConfig"] == "True"  # the form value the SDK sends (FACTS section 2)
        assert call_.params["Comment"].endswith("with the latest configuration]")
    assert dataworks.backend.instance(FIRST).use_latest_config is True
    assert dataworks.backend.instance(FIRST + 1).use_latest_config is True
    rerun_records = [r for inv in SEEN for r in instance_records(inv) if r["decision"] == "rerun"]
    assert [r["useLatestConfig"] for r in rerun_records] == [True, True]


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"ProjectId": PROJECT_ID}, 400, "MissingParameter", "Bizdate is required"),
        ({"Bizdate": DAY}, 400, "MissingParameter", "ProjectId is required with a filter"),
        ({"Comment": "no ids"}, 400, "MissingParameter", "Ids is required, or a filter"),
        ({**FILTER, "Bizdate": "27/11/2026"}, 400, "InvalidParameter", "a date like 2026-11-27"),
        ({**FILTER, "ProjectEnv": "Staging"}, 400, "InvalidParameter", "Prod or Dev"),
        ({**FILTER, "FinishedTimeStart": "2026-11-28T02:00:00"}, 400, "InvalidParameter", "with its offset"),
        (
            {**FILTER, "FinishedTimeStart": BIZDATE + 2, "FinishedTimeEnd": BIZDATE + 1},
            400,
            "InvalidParameter",
            "before",
        ),
        ({**FILTER, "Ids": [FIRST]}, 400, "InvalidParameter", "either Ids or a filter"),
        ({"Ids": [FIRST], "IgnoreRules": True}, 400, "InvalidParameter", "with a filter only"),
        ({**FILTER, "PlanToken": 42}, 400, "InvalidParameter", "PlanToken"),
        ({**FILTER, "ProjectId": PROJECT_ID + 1}, 403, "ProjectNotAllowed", "RERUN_PROJECT_IDS"),
        ({**FILTER, "ProjectEnv": "Dev"}, 403, "WrongEnvironment", "RERUN_PROJECT_ENV is Prod"),
    ],
)
def test_a_bad_filter_is_refused_naming_the_field_before_any_call(dataworks, tmp_path, body, status, code, says):
    env = {"RERUN_SIGNING_KEY": KEY, "RERUN_PROJECT_IDS": str(PROJECT_ID)}
    with make_function(dataworks, tmp_path, handler="index.handle_http", **env) as fn:
        got, answer = call(fn, body)
    assert (got, answer["Code"]) == (status, code), answer
    assert says in answer["Message"]
    assert len(dataworks.journal) == 0


def test_the_filter_form_needs_the_signing_key_the_ids_form_does_not(dataworks, tmp_path):
    seed(dataworks, FIRST)
    with make_function(dataworks, tmp_path, handler="index.handle_http") as fn:
        status, answer = call(fn, FILTER)
        assert (status, answer["Code"]) == (500, "InvalidConfiguration")
        assert answer["Message"].startswith(
            "RERUN_SIGNING_KEY is unset: the filter form needs it to sign plan tokens and continuations"
        )
        assert call(fn, {"Ids": [FIRST]})[0] == 200
    with make_function(dataworks, tmp_path, handler="index.handle_http", RERUN_SIGNING_KEY="short") as fn:
        status, answer = call(fn, {"Ids": [FIRST]})
        assert (
            status == 500
            and "at least 32 characters (scripts/deploy generates one), got 5 characters" in answer["Message"]
        )
        assert "short" not in json.dumps(answer)  # the length, never the key


def forged_part(**changes) -> dict:
    part = continuation.Continuation(
        origin_request_id="1-origin",
        part=1,
        hop=0,
        stalls=0,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=((FIRST + 80, 4),),
    )
    payload = json.loads(part.to_payload(KEY))
    payload["bulkRerun"].update(changes)
    return payload


@pytest.mark.parametrize(
    "payload",
    [forged_part(force=True), forged_part(signature="A" * 43), forged_part(instances=[[FIRST + 81, 1]])],
    ids=["force-added", "made-up-signature", "other-instance"],
)
def test_a_continuation_not_signed_by_the_function_is_refused_and_recorded(dataworks, tmp_path, payload):
    # GIVEN an instance past the cap, which only an operator's Force may rerun
    seed(dataworks, FIRST + 80, run_number=4)
    seed(dataworks, FIRST + 81)
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as event_fn:
        # WHEN someone allowed to invoke the event function hands it an altered continuation
        inv = event_fn.invoke(json.dumps(payload).encode())
    # THEN it is not acted on: no call at all, each instance it names recorded config-error
    assert inv.ok and len(dataworks.journal) == 0
    (record,) = instance_records(inv)
    assert record["reason"] == "config-error" and "signature does not verify" in record["message"]
    assert record["originRequestId"] == "1-origin"


def test_a_malformed_continuation_is_recorded_as_not_one(dataworks, tmp_path):
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as event_fn:
        inv = event_fn.invoke(json.dumps({"bulkRerun": {"part": 1}}).encode())
    (record,) = instance_records(inv)
    assert record["reason"] == "not-a-failure" and "not a valid continuation" in record["message"]
    assert len(dataworks.journal) == 0


def test_the_new_record_fields_are_in_the_schema():
    assert {"originRequestId", "useLatestConfig"} <= set(schema.INSTANCE_NAMES)
    assert "originRequestId" in schema.SUMMARY_NAMES


def test_neither_the_key_nor_the_token_reach_a_record(dataworks, http):
    seed(dataworks, FIRST)
    _, answer = call(http, {**FILTER, "DryRun": True})
    text = json.dumps(answer)
    assert CREDS.access_key_secret not in text and KEY not in text
    logged = "\n".join(SEEN[-1].stdout + SEEN[-1].stderr)
    assert KEY not in logged and answer["PlanToken"] not in logged  # the token is in the answer only


def signed_part(*instances) -> bytes:
    part = continuation.Continuation(
        origin_request_id="1-origin",
        part=1,
        hop=0,
        stalls=0,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=tuple(instances),
    )
    return part.to_payload(KEY)


def test_a_continuation_reruns_only_what_is_still_at_the_failed_run_and_in_failure(dataworks, tmp_path):
    # GIVEN three instances the selection found failed at run 1: one still is; one was rerun
    # since (run 2); one an operator set successful (still run 1, AllAllowed)
    seed(dataworks, FIRST)
    seed(dataworks, FIRST + 1, run_number=2, status="Failure")
    seed(dataworks, FIRST + 2, status="Success", rerun_mode="AllAllowed")
    with make_function(dataworks, tmp_path, RERUN_SIGNING_KEY=KEY) as event_fn:
        inv = event_fn.invoke(signed_part((FIRST, 1), (FIRST + 1, 1), (FIRST + 2, 1)))
    assert inv.ok
    reasons = {r["instanceId"]: r["reason"] for r in instance_records(inv)}
    assert reasons == {FIRST: "eligible", FIRST + 1: "already-rerun", FIRST + 2: "not-failed"}
    assert [json.loads(c.params["Ids"]) for c in reruns(dataworks)] == [[FIRST]]
    # one ListTaskInstances rereads them all: no GetTaskInstance one by one
    assert dataworks.journal.count(action="ListTaskInstances") == 1
    assert dataworks.journal.count(action="GetTaskInstance") == 0


def test_dataworks_own_rerun_is_asked_about_only_for_a_failure_young_enough_to_get_one(dataworks, http):
    # GIVEN a node DataWorks reruns itself (RerunTimes 3), and two of its failures: one a minute
    # old, one from the night before
    dataworks.backend.add_task(id=TASK_ID, project_id=PROJECT_ID, rerun_times=3, rerun_interval=600)
    seed(dataworks, FIRST, task_id=TASK_ID, finished_time=int(time.time() * 1000) - 60_000)
    seed(dataworks, FIRST + 1, task_id=TASK_ID)
    status, answer = call(http, {**FILTER, "DryRun": True})
    # THEN only the young one waits for DataWorks; the old one DataWorks has given up on
    assert status == 200 and answer["Decisions"] == {"dataworks-auto-rerun": [FIRST], "dry-run": [FIRST + 1]}
    assert dataworks.journal.count(action="GetTask") == 1


def test_a_log_the_deadline_left_unread_defers_the_instance_never_reruns_it_unchecked(dataworks, tmp_path):
    # GIVEN 50 failures whose logs take half a second each to read, more than one invocation
    # has time for, and a role that may not invoke the event function to hand the rest on
    for n in range(50):
        seed(dataworks, FIRST + n)
    dataworks.faults.set("GetTaskInstanceLog", latency=0.5)
    with FunctionComputeApi(credentials=[CREDS]) as api:
        api.faults.set(deny=None)
        env = {"RERUN_SIGNING_KEY": KEY, "DATAWORKS_READ_TIMEOUT": "1", "FUNCTION_COMPUTE_ENDPOINT": api.url}
        with make_function(dataworks, tmp_path, handler="index.handle_http", timeout=8, **env) as fn:
            status, answer = call(fn, FILTER)
    records = instance_records(SEEN[-1])
    # THEN what had its log read was rerun; the rest is deferred, and says the hand-off failed
    deferred = [r for r in records if r["reason"] == "deferred"]
    assert status == 502 and answer["Code"] == "ContinuationFailed" and deferred
    assert {r["errorCode"] for r in deferred} == {"AccessDenied"}
    assert "Send the same filter again" in deferred[0]["message"]
    rerun_ids = {i for c in reruns(dataworks) for i in json.loads(c.params["Ids"])}
    assert rerun_ids and not rerun_ids & {r["instanceId"] for r in deferred}
    assert all(r["rule"] == "default" for r in records if r["decision"] == "rerun")  # each log was read
    assert sorted(r["instanceId"] for r in records) == [FIRST + n for n in range(50)]


def test_a_filter_reruns_success_info_names_each_rerun_with_its_success_and_message(dataworks, http):
    seed(dataworks, FIRST)
    seed(dataworks, FIRST + 80, run_number=4)  # cap-reached: under Skipped, not under SuccessInfo
    status, answer = call(http, FILTER)
    assert status == 200
    (record,) = [r for r in instance_records(SEEN[-1]) if r["decision"] == "rerun"]
    # the same keys as the ids form's SuccessInfo (docs/http-api.md): Success and Message
    assert answer["SuccessInfo"] == {str(FIRST): {"Success": True, "Message": record["message"]}}
    assert list(answer["Skipped"]) == [str(FIRST + 80)]


def test_a_filter_rerun_that_meets_a_used_up_daily_limit_answers_429_quota_exhausted(dataworks, http):
    # GIVEN two failures and DataWorks' daily limit of OpenAPI calls used up at the rerun
    seed(dataworks, FIRST)
    seed(dataworks, FIRST + 1)
    dataworks.faults.set("RerunTaskInstances", throttle=True, throttle_code="Throttling.Api.Risk")
    status, answer = call(http, FILTER)
    # THEN the whole answer: the HTTP API's QuotaExhausted code and wording, then the body of any
    # filter rerun, both instances skipped as quota-exhausted and nothing handed on
    skipped = (
        "quota-exhausted: not rerun: the daily limit of DataWorks OpenAPI calls is used up (Throttling.Api.Risk); "
        "it does not clear within minutes, so this is not retried. Rerun it over HTTP once the limit clears."
    )
    assert (status, answer) == (
        429,
        {
            "Code": "QuotaExhausted",
            "Message": (
                "DataWorks refused the calls: the daily limit of DataWorks OpenAPI calls for this account and region "
                "is used up (Throttling.Api.Risk); it clears when DataWorks counts a new day (inferred), not within "
                "minutes. The ids under Skipped with reason 'quota-exhausted' were not rerun: send them again then"
            ),
            "RequestId": SEEN[-1].request_id,
            "DryRun": False,
            "Filter": {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"},
            "Selected": 2,
            "Started": 0,
            "Counts": {"quota-exhausted": 2},
            "Decisions": {"quota-exhausted": [FIRST, FIRST + 1]},
            "NotRetryable": {},
            "SuccessInfo": {},
            "Skipped": {str(FIRST): skipped, str(FIRST + 1): skipped},
            "Continuing": 0,
        },
    )
    assert reruns(dataworks) == [] and dataworks.journal.count(action="RerunTaskInstances") == 1  # not retried
    # the invocation's summary says why it stopped: the quota, not "done"
    (summary,) = [r for r in SEEN[-1].records if r.get("kind") == "summary"]
    assert isinstance(summary.pop("durationMs"), float)
    assert summary == {
        "kind": "summary",
        "trigger": "http",
        "requestId": SEEN[-1].request_id,
        "instances": 2,
        "rerun": 0,
        "rerunSucceeded": 0,
        "rerunFailed": 0,
        "skipped": 2,
        "dryRun": 0,
        "scheduled": 0,
        "outcome": "quota-exhausted",
        "dryRunMode": False,
        "originRequestId": SEEN[-1].request_id,
    }


# --- the pieces, called directly: the plan token, its signature, a filter's errors, a part's fields --

CANONICAL = {"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "ProjectEnv": "Prod"}
ISSUED_AT = 1_795_800_000  # 2026-11-27T17:20:00Z


def test_a_plan_token_carries_its_plan_readably_and_expires_ttl_seconds_after_the_dry_run():
    runs = [(FIRST + 1, 2, 1_795_790_000_000), (FIRST, 1, 1_795_780_000_000)]
    token, expires = plan.issue(KEY, CANONICAL, _options(), 2, "1-plan", ISSUED_AT + 0.9, 900, runs)
    assert expires == "2026-11-27T17:35:00Z"
    body, sig = token.split(".")
    content = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    # the instances and runs it showed: a digest of the (id, run) pairs in id order, and when the
    # latest of those runs ended
    shown = base64.urlsafe_b64encode(hashlib.sha256(f"[[{FIRST},1],[{FIRST + 1},2]]".encode()).digest()[:16]).decode()
    assert content == {
        "v": 2,
        "filter": CANONICAL,
        "options": _options(),
        "selected": 2,
        "expires": ISSUED_AT + 900,
        "plan": "1-plan",
        "shown": shown,
        "finishedUpTo": 1_795_790_000_000,
    }
    assert sig == signing.signature(KEY, signing.PLAN, content)
    checked = plan.check(KEY, token, CANONICAL, _options(), ISSUED_AT + 900)  # the last second it holds
    assert checked == plan.Plan(CANONICAL, _options(), 2, ISSUED_AT + 900, "1-plan", shown, 1_795_790_000_000)


def _padded(length: int) -> str:
    """A token of `length` characters: a plan's content and a made-up signature. Issued at a fixed
    time: a test's parameters are made at collection, and every xdist worker must make the same."""
    body = _token(now=ISSUED_AT).split(".")[0]
    return body + "." + "A" * (length - len(body) - 1)


def plan_error(token, filter_=CANONICAL, options=None, now=ISSUED_AT) -> plan.PlanError:
    with pytest.raises(plan.PlanError) as raised:
        plan.check(KEY, token, filter_, options or _options(), now)
    return raised.value


def test_a_plan_token_is_refused_a_second_after_it_expires_naming_when_and_which_dry_run():
    token, _ = plan.issue(KEY, CANONICAL, _options(), 9, "1-plan", ISSUED_AT, 60)
    error = plan_error(token, now=ISSUED_AT + 61)
    assert (PLAN_STATUSES[error.code], error.code, error.message) == (
        409,
        "PlanExpired",
        "PlanToken expired at 2026-11-27T17:21:00Z (dry run 1-plan; plans last RERUN_PLAN_TTL_SECONDS): make the "
        "dry run again and apply its token",
    )
    assert str(error) == error.message


def test_a_plan_for_another_filter_or_options_names_each_difference():
    token, _ = plan.issue(KEY, CANONICAL, _options(), 9, "1-plan", ISSUED_AT, 900)
    asked = {**CANONICAL, "TaskIds": [TASK_ID], "ProjectEnv": "Dev"}
    error = plan_error(token, asked, _options(Force=True))
    assert (PLAN_STATUSES[error.code], error.code, error.message) == (
        409,
        "PlanMismatch",
        "PlanToken was made for another request (dry run 1-plan): ProjectEnv is 'Dev' here, 'Prod' in the plan; "
        f"TaskIds is [{TASK_ID}] here, absent in the plan; Force is True here, False in the plan. Apply a plan "
        "with the same filter and options, or make the dry run for this one",
    )
    # and the other way round: what the plan had and this request lacks
    token, _ = plan.issue(KEY, asked, _options(), 9, "1-plan", ISSUED_AT, 900)
    assert f"TaskIds is absent here, [{TASK_ID}] in the plan" in plan_error(token, asked | {"TaskIds": None}).message


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (None, "PlanToken is not valid: it is not a token this function issued (expected <content>.<signature>)"),
        ("", "PlanToken is not valid: it is not a token this function issued (expected <content>.<signature>)"),
        ("a.b.c", "PlanToken is not valid: it is not a token this function issued (expected <content>.<signature>)"),
        (_padded(plan.MAX_TOKEN_CHARS), "PlanToken's signature does not verify"),  # checked: as long as it may be
        (_padded(plan.MAX_TOKEN_CHARS + 1), "PlanToken is not valid: it is not a token this function issued"),
        (".", "PlanToken is not valid: its content is not base64url JSON"),  # one character is long enough
        ("!!!!.sig", "PlanToken is not valid: its content is not base64url JSON"),
        ("bm90IGpzb24.sig", "PlanToken is not valid: its content is not base64url JSON"),  # "not json"
        ("WzEsMl0.sig", "PlanToken is not valid: its content is not a JSON object"),  # [1,2]
    ],
    ids=["none", "empty", "three-parts", "longest", "too-long", "dot", "not-base64", "not-json", "not-an-object"],
)
def test_a_token_this_function_did_not_issue_is_refused_saying_why(token, says):
    error = plan_error(token)
    assert (PLAN_STATUSES[error.code], error.code) == (400, "InvalidPlanToken")
    assert error.message.startswith(says)


def test_a_token_signed_with_another_key_or_for_another_purpose_does_not_verify():
    content = plan.Plan(CANONICAL, _options(), 9, ISSUED_AT + 900, "1-plan").to_content()
    for token in (
        signing.seal("x" * 40, signing.PLAN, content),
        signing.seal(KEY, signing.CONTINUATION, content),  # a continuation's signature is not a plan's
    ):
        error = plan_error(token)
        assert (PLAN_STATUSES[error.code], error.code, error.message) == (
            400,
            "InvalidPlanToken",
            "PlanToken's signature does not verify: it was altered, or made with another RERUN_SIGNING_KEY (the key "
            "changed since the dry run?). Make the dry run again",
        )


@pytest.mark.parametrize("drop", ["filter", "options", "selected", "expires", "plan", "shown", "finishedUpTo"])
def test_a_signed_token_of_another_shape_is_not_a_plan_token_of_this_version(drop):
    content = plan.Plan(CANONICAL, _options(), 9, ISSUED_AT + 900, "1-plan").to_content()
    del content[drop]
    error = plan_error(signing.seal(KEY, signing.PLAN, content))
    assert (PLAN_STATUSES[error.code], error.code, error.message) == (
        400,
        "InvalidPlanToken",
        "PlanToken is not a plan token of this version",
    )


def test_a_version_1_token_is_not_a_plan_token_of_this_version():
    # Version 1 bound a count, not the instances (issue 24): its tokens are refused, not applied.
    content = {**plan.Plan(CANONICAL, _options(), 9, ISSUED_AT + 900, "1-plan").to_content(), "v": 1}
    error = plan_error(signing.seal(KEY, signing.PLAN, content))
    assert (error.code, error.message) == ("InvalidPlanToken", "PlanToken is not a plan token of this version")


def test_a_real_run_may_select_what_the_plan_saw_or_fewer_never_more():
    planned = plan.Plan(CANONICAL, _options(), 9, ISSUED_AT, "1-plan")
    plan.check_selection(planned, 9)
    plan.check_selection(planned, 3)
    with pytest.raises(plan.PlanError) as raised:
        plan.check_selection(planned, 10)
    assert (PLAN_STATUSES[raised.value.code], raised.value.code, raised.value.message) == (
        409,
        "PlanOutdated",
        "the filter now selects 10 failed instances, the plan (dry run 1-plan) saw 9: instances failed since the "
        "plan. Make the dry run again and look at them",
    )


def test_a_signature_is_hmac_sha256_of_the_purpose_and_the_canonical_json():
    content = {"b": [1, "é"], "a": None}
    assert signing.canonical(content) == b'{"a":null,"b":[1,"\\u00e9"]}'
    mac = hmac.new(KEY.encode(), b"dwrerun/plan-token/v1\n" + signing.canonical(content), hashlib.sha256)
    expected = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    assert signing.signature(KEY, signing.PLAN, content) == expected and len(expected) == 43
    signing.verify(KEY, signing.PLAN, {"a": None, "b": [1, "é"]}, expected)  # key order does not matter
    for claimed in (expected[:-1] + ("A" if expected[-1] != "A" else "B"), None, 42):
        with pytest.raises(signing.BadSignature):
            signing.verify(KEY, signing.PLAN, content, claimed)
    token = signing.seal(KEY, signing.PLAN, content)
    assert token == base64.urlsafe_b64encode(signing.canonical(content)).rstrip(b"=").decode() + "." + expected
    assert signing.unseal(KEY, signing.PLAN, token) == content
    with pytest.raises(signing.Malformed):
        signing.unseal(KEY, signing.PLAN, token, max_chars=len(token) - 1)
    assert signing.unseal(KEY, signing.PLAN, token, max_chars=len(token)) == content


# The filter's errors repeat the value given as JSON (the form the caller wrote), cut to 40 characters.
@pytest.mark.parametrize(
    ("value", "shown"),
    [("a" * 38, '"' + "a" * 38 + '"'), ("a" * 39, '"' + "a" * 36 + "..."), (None, "null")],
)
def test_a_bad_id_is_repeated_in_the_error_cut_to_40_characters(value, shown):
    body = {"ProjectId": PROJECT_ID, "Bizdate": DAY, "TaskIds": [value]}
    with pytest.raises(selection.InvalidFilter) as raised:
        selection.parse(body, Settings(), 100)
    assert raised.value.field == "TaskIds[0]"
    assert str(raised.value) == f"TaskIds[0] must be a positive int64 id, got {shown}"


class Listing:
    """ListTaskInstances answering `total` for every page, with no rows."""

    def __init__(self, total):
        self.total = total

    def list_task_instances(self, params, timeout):
        return [], self.total


def test_a_filter_that_selects_more_than_max_selection_is_too_large():
    wanted = selection.Filter(PROJECT_ID, BIZDATE, "Prod")
    assert selection.select(Listing(selection.MAX_SELECTION), wanted, Settings(), time.monotonic() + 60) == []
    with pytest.raises(selection.TooLarge) as raised:
        selection.select(Listing(selection.MAX_SELECTION + 1), wanted, Settings(), time.monotonic() + 60)
    assert raised.value.count == 20_001 and str(raised.value) == "20001"


def part_payload(**changes) -> bytes:
    payload = json.loads(signed_part((FIRST, 1)))
    payload["bulkRerun"].update(changes)
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("part", True, "part must be an integer from 1 to 100000"),
        ("part", "1", "part must be an integer from 1 to 100000"),
        ("part", 0, "part must be an integer from 1 to 100000"),
        ("part", 100_001, "part must be an integer from 1 to 100000"),
        ("hop", -1, "hop must be an integer from 0 to 1000"),
        ("hop", 1001, "hop must be an integer from 0 to 1000"),
        ("stalls", 1.0, "stalls must be an integer from 0 to 1000"),
        ("instances", [[FIRST, 1_000_001]], "instances[0][1] must be an integer from 1 to 1000000"),
    ],
)
def test_a_continuation_field_out_of_range_is_named(field, value, says):
    with pytest.raises(continuation.InvalidContinuation) as raised:
        continuation.parse(part_payload(**{field: value}), KEY)
    assert str(raised.value) == says


def test_a_continuation_takes_each_range_up_to_its_end():
    part = continuation.Continuation(
        origin_request_id="1-origin",
        part=continuation.MAX_PART,
        hop=continuation.MAX_HOPS,
        stalls=0,
        project_id=PROJECT_ID,
        bizdate=BIZDATE,
        project_env="Prod",
        instances=((FIRST, continuation.MAX_RUN_NUMBER),),
    )
    assert continuation.parse(part.to_payload(KEY), KEY) == part


def raw_payload(**changes) -> dict:
    payload = json.loads(signed_part((FIRST, 1), (FIRST + 1, 2)))
    payload["bulkRerun"].update(changes)
    return payload


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({**raw_payload(), "id": "evt-1"}, "a continuation payload has only 'bulkRerun'"),
        ({"bulkRerun": [1]}, "bulkRerun must be a JSON object"),
        (raw_payload(zeta=1, alpha=2), "bulkRerun has unknown field(s) alpha, zeta"),
        (
            {"bulkRerun": {"part": 1, "comment": None}},
            "bulkRerun lacks originRequestId, hop, stalls, projectId, "
            "bizdate, projectEnv, instances, force, ignoreRules, useLatestConfig, signature",
        ),  # fmt: skip
        (raw_payload(originRequestId=42), "originRequestId must be an FC request id (letters, digits, '-', '_')"),
        (raw_payload(originRequestId="1 origin"), "originRequestId must be an FC request id"),
        (raw_payload(originRequestId="x" * 65), "originRequestId must be an FC request id"),
        (raw_payload(originRequestId=""), "originRequestId must be an FC request id"),
        (raw_payload(instances={"a": 1}), "instances must be a list of 1 to 500 [instance id, failed run]"),
        (raw_payload(instances=[]), "instances must be a list of 1 to 500 [instance id, failed run]"),
        (raw_payload(instances=[[FIRST + n, 1] for n in range(501)]), "instances must be a list of 1 to 500"),
        (raw_payload(instances=[[FIRST, 1], [FIRST + 1]]), "instances[1] must be [instance id, failed run number]"),
        (raw_payload(instances=[(FIRST, 1, 2)]), "instances[0] must be [instance id, failed run number]"),
        (raw_payload(instances=[[0, 1]]), "instances[0][0] must be an integer from 1 to 9223372036854775807"),
        (raw_payload(instances=[[FIRST, 0]]), "instances[0][1] must be an integer from 1 to 1000000"),
        (raw_payload(instances=[[FIRST, 1], [FIRST, 2]]), "instances names an instance twice"),
        (raw_payload(projectEnv="prod"), "projectEnv must be Prod or Dev"),
        (raw_payload(comment=42), "comment must be null or a string of at most 500 characters"),
        (raw_payload(comment="c" * 501), "comment must be null or a string of at most 500 characters"),
        (raw_payload(force=1), "force must be true or false"),
        (raw_payload(ignoreRules=None), "ignoreRules must be true or false"),
        (raw_payload(useLatestConfig="true"), "useLatestConfig must be true, false or null"),
        (raw_payload(projectId=0), "projectId must be an integer from 1 to 9223372036854775807"),
        (raw_payload(bizdate=2**63), "bizdate must be an integer from 1 to 9223372036854775807"),
        (raw_payload(stalls=-1), "stalls must be an integer from 0 to 1000"),
    ],
)
def test_a_malformed_continuation_is_refused_naming_the_field(payload, says):
    for body in (json.dumps(payload), json.dumps(payload).encode()):
        with pytest.raises(continuation.InvalidContinuation) as raised:
            continuation.parse(body, KEY)
        assert str(raised.value).startswith(says)
        if says.endswith(")") or says.endswith("twice") or "Dev" in says:
            assert str(raised.value) == says


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt-1"}',
        b"bulkRerun, not JSON",
        b'["bulkRerun"]',
        b'{"data": "bulkRerun"}',
        "\ud800bulkRerun",
        b'{"bulkRerun": ' + b"[" * 100_000,
    ],
)
def test_what_is_not_a_continuation_is_left_to_the_event_parser(body):
    assert continuation.parse(body, KEY) is None


def test_a_continuation_takes_the_longest_fields_it_allows_and_every_option():
    part = continuation.Continuation(
        origin_request_id="A-z_9" + "x" * 59,
        part=1,
        hop=0,
        stalls=continuation.MAX_HOPS,
        project_id=2**63 - 1,
        bizdate=2**63 - 1,
        project_env="Dev",
        instances=tuple((FIRST + n, 1) for n in range(continuation.MAX_INSTANCES)),
        comment="c" * continuation.MAX_COMMENT,
        force=True,
        ignore_rules=True,
        use_latest_config=False,
    )
    assert continuation.parse(part.to_payload(KEY), KEY) == part
    assert continuation.parse(part.to_payload(KEY).decode(), KEY) == part
    assert part.task_id == "dwrerun-bulk-A-z_9" + "x" * 59 + "-1-0"


def test_a_continuation_is_signed_over_its_whole_content_and_sent_as_compact_json():
    part = continuation.Continuation("1-origin", 2, 1, 0, PROJECT_ID, BIZDATE, "Prod", ((FIRST, 3),), "é")
    content = {
        "originRequestId": "1-origin",
        "part": 2,
        "hop": 1,
        "stalls": 0,
        "projectId": PROJECT_ID,
        "bizdate": BIZDATE,
        "projectEnv": "Prod",
        "instances": [[FIRST, 3]],
        "comment": "é",
        "force": False,
        "ignoreRules": False,
        "useLatestConfig": None,
    }
    assert part.content() == content
    signature = signing.signature(KEY, signing.CONTINUATION, content)
    expected = json.dumps({"bulkRerun": {**content, "signature": signature}}, ensure_ascii=False, separators=(",", ":"))
    assert part.to_payload(KEY) == expected.encode("utf-8")


def test_an_unverifiable_continuation_names_its_instances_and_request_to_be_recorded():
    with pytest.raises(continuation.UntrustedContinuation) as raised:
        continuation.parse(signed_part((FIRST, 1), (FIRST + 1, 2)), None)
    assert str(raised.value) == "RERUN_SIGNING_KEY is unset, so no continuation can be verified"
    assert (raised.value.instance_ids, raised.value.origin_request_id) == ([FIRST, FIRST + 1], "1-origin")
    with pytest.raises(continuation.UntrustedContinuation) as raised:
        continuation.parse(json.dumps(raw_payload(hop=1)), KEY)
    assert str(raised.value) == (
        "the continuation's signature does not verify with RERUN_SIGNING_KEY (it changed since the request, or the "
        "payload was not made by this function)"
    )
    assert (raised.value.instance_ids, raised.value.origin_request_id) == ([FIRST, FIRST + 1], "1-origin")


# --- selection, directly: the filter's fields and errors, the rows it keeps, the pages it reads ----


class Python310Datetime(datetime):
    """datetime as FC's python3.10 has it: fromisoformat refuses a "Z" suffix (3.11 reads it)."""

    @classmethod
    def fromisoformat(cls, value):
        if value.endswith("Z"):
            raise ValueError(f"Invalid isoformat string: {value!r}")
        return super().fromisoformat(value)


def test_a_time_ending_in_z_is_read_on_python_3_10_too(monkeypatch):
    monkeypatch.setattr(selection, "datetime", Python310Datetime)
    wanted = selection.parse({**FILTER, "FinishedTimeEnd": "2026-11-27T18:00:00Z"}, Settings(), 3)
    assert wanted.finished_to == BIZDATE + 26 * 3_600_000


def test_a_filter_reads_ids_as_numbers_or_digits_dates_in_china_time_and_times_with_their_offset():
    body = {
        "ProjectId": str(PROJECT_ID),
        "Bizdate": DAY,
        "TaskIds": [TASK_ID + 2, str(TASK_ID), TASK_ID + 2],
        "FinishedTimeStart": "2026-11-28T02:00:00+08:00",
        "FinishedTimeEnd": "2026-11-27T18:00:00Z",  # the same moment: a window of one instant
    }
    wanted = selection.parse(body, Settings(), 3)
    moment = BIZDATE + 26 * 3_600_000
    assert wanted == selection.Filter(PROJECT_ID, BIZDATE, "Prod", (TASK_ID, TASK_ID + 2), moment, moment)
    assert wanted.canonical() == {
        "ProjectId": PROJECT_ID,
        "Bizdate": BIZDATE,
        "ProjectEnv": "Prod",
        "TaskIds": [TASK_ID, TASK_ID + 2],
        "FinishedTimeStart": moment,
        "FinishedTimeEnd": moment,
    }
    assert wanted.list_params() == {
        "ProjectId": PROJECT_ID,
        "Bizdate": BIZDATE,
        "ProjectEnv": "Prod",
        "Status": "Failure",
        "SortBy": "Id Asc",
        "TaskIds": [TASK_ID, TASK_ID + 2],
        "Filter": {"finishedTimeStart": moment, "finishedTimeEnd": moment},
    }
    bare_filter = selection.parse({"ProjectId": PROJECT_ID, "Bizdate": BIZDATE, "FinishedTimeEnd": 0}, Settings(), 1)
    assert bare_filter.canonical() == {**CANONICAL, "FinishedTimeEnd": 0}
    assert bare_filter.list_params() == {
        "ProjectId": PROJECT_ID,
        "Bizdate": BIZDATE,
        "ProjectEnv": "Prod",
        "Status": "Failure",
        "SortBy": "Id Asc",
        "Filter": {"finishedTimeEnd": 0},
    }
    assert "Filter" not in selection.Filter(PROJECT_ID, BIZDATE, "Prod").list_params()


@pytest.mark.parametrize(("setting", "env"), [("Prod", "Prod"), ("Dev", "Dev"), ("any", "Prod")])
def test_a_filter_without_projectenv_takes_the_functions_environment_or_prod(setting, env):
    wanted = selection.parse({"ProjectId": PROJECT_ID, "Bizdate": DAY}, Settings(project_env=setting), 1)
    assert wanted.project_env == env


@pytest.mark.parametrize(
    ("given", "field", "says"),
    [
        ({"ProjectId": None}, "ProjectId", "ProjectId is required with a filter (ListTaskInstances requires it)"),
        ({"ProjectId": 0}, "ProjectId", "ProjectId must be a positive int64 id, got 0"),
        ({"ProjectId": True}, "ProjectId", "ProjectId must be a positive int64 id, got true"),
        ({"ProjectId": 2**63}, "ProjectId", "ProjectId must be a positive int64 id, got 9223372036854775808"),
        ({"ProjectId": "1" * 20}, "ProjectId", 'ProjectId must be a positive int64 id, got "' + "1" * 20 + '"'),
        ({"ProjectId": "١٢"}, "ProjectId", 'ProjectId must be a positive int64 id, got "\\u0661\\u0662"'),
        ({"Bizdate": None}, "Bizdate", "Bizdate is required with a filter (ListTaskInstances requires it)"),
        (
            {"Bizdate": "27/11/2026"},
            "Bizdate",
            'Bizdate must be a date like 2026-11-27 or epoch milliseconds, got "27/11/2026"',
        ),  # fmt: skip
        ({"Bizdate": 0}, "Bizdate", "Bizdate must be a date like 2026-11-27 or epoch milliseconds, got 0"),
        ({"Bizdate": False}, "Bizdate", "Bizdate must be a date like 2026-11-27 or epoch milliseconds, got false"),
        (
            {"Bizdate": 2**63},
            "Bizdate",
            "Bizdate must be a date like 2026-11-27 or epoch milliseconds, got 9223372036854775808",
        ),  # fmt: skip
        ({"ProjectEnv": "Staging"}, "ProjectEnv", 'ProjectEnv must be Prod or Dev, got "Staging"'),
        ({"TaskIds": []}, "TaskIds", "TaskIds must be a non-empty list of task (node) ids"),
        ({"TaskIds": TASK_ID}, "TaskIds", "TaskIds must be a non-empty list of task (node) ids"),
        ({"TaskIds": [1, 2, 3, 4]}, "TaskIds", "TaskIds has 4 ids, more than RERUN_HTTP_MAX_IDS=3"),
        ({"TaskIds": [[7]]}, "TaskIds[0]", "TaskIds[0] must be a positive int64 id, got a list"),  # named, not shown
        (
            {"FinishedTimeStart": "2026-11-28T02:00:00"},
            "FinishedTimeStart",
            "FinishedTimeStart must be epoch milliseconds or an ISO 8601 time with its offset, got "
            '"2026-11-28T02:00:00"',
        ),  # fmt: skip
        (
            {"FinishedTimeStart": "soon"},
            "FinishedTimeStart",
            'FinishedTimeStart must be epoch milliseconds or an ISO 8601 time with its offset, got "soon"',
        ),  # fmt: skip
        (
            {"FinishedTimeEnd": -1},
            "FinishedTimeEnd",
            "FinishedTimeEnd must be epoch milliseconds or an ISO 8601 time with its offset, got -1",
        ),  # fmt: skip
        (
            {"FinishedTimeEnd": True},
            "FinishedTimeEnd",
            "FinishedTimeEnd must be epoch milliseconds or an ISO 8601 time with its offset, got true",
        ),  # fmt: skip
        (
            {"FinishedTimeEnd": 2**63},
            "FinishedTimeEnd",
            "FinishedTimeEnd must be epoch milliseconds or an ISO 8601 time with its offset, got 9223372036854775808",
        ),  # fmt: skip
        (
            {"FinishedTimeStart": 2, "FinishedTimeEnd": 1},
            "FinishedTimeEnd",
            "FinishedTimeEnd is before FinishedTimeStart",
        ),  # fmt: skip
    ],
)
def test_each_bad_filter_field_is_named_with_the_rule_and_the_value(given, field, says):
    body = {"ProjectId": PROJECT_ID, "Bizdate": DAY, **given}
    with pytest.raises(selection.InvalidFilter) as raised:
        selection.parse({k: v for k, v in body.items() if v is not None}, Settings(), 3)
    assert (raised.value.field, str(raised.value)) == (field, says)


def row(instance_id: int, **fields) -> dict:
    values = {
        "Id": instance_id,
        "TaskId": TASK_ID,
        "ProjectId": PROJECT_ID,
        "ProjectEnv": "Prod",
        "Status": "Failure",
        "Bizdate": BIZDATE,
        "RunNumber": 1,
        "FinishedTime": BIZDATE + 26 * 3_600_000,
    }
    values.update(fields)
    return values


class Pages:
    """ListTaskInstances over `rows`, by page, the total answered as `totals` says (one per call)."""

    def __init__(self, rows: list[dict], totals: list[int] | None = None):
        self.rows, self.totals, self.calls = rows, list(totals or []), []

    def list_task_instances(self, params, timeout):
        self.calls.append(dict(params))
        start = (params["PageNumber"] - 1) * params["PageSize"]
        total = self.totals.pop(0) if self.totals else len(self.rows)
        return self.rows[start : start + params["PageSize"]], total


def test_a_selection_keeps_only_the_rows_its_filter_holds_whatever_the_api_answered():
    moment = BIZDATE + 26 * 3_600_000
    wanted = selection.Filter(PROJECT_ID, BIZDATE, "Prod", (TASK_ID,), moment, moment)
    rows = [
        row(1),
        row(2, Status="Success"),
        row(3, ProjectId=PROJECT_ID + 1),
        row(4, ProjectEnv="Dev"),
        row(5, Bizdate=str(BIZDATE)),  # the API's text form of the same day
        row(6, Bizdate=OTHER_DAY),
        row(7, Bizdate="not a day"),
        row(8, TaskId=TASK_ID + 1),
        row(9, FinishedTime=moment - 1),
        row(10, FinishedTime=moment + 1),
        row(11, FinishedTime=None),
    ]
    selected = selection.select(Pages(rows), wanted, Settings(), time.monotonic() + 60)
    assert [i.id for i in selected] == [1, 5]
    unbounded = selection.Filter(PROJECT_ID, BIZDATE, "Prod")
    selected = selection.select(Pages(rows), unbounded, Settings(), time.monotonic() + 60)
    assert [i.id for i in selected] == [1, 5, 8, 9, 10, 11]


def test_a_selection_reads_every_page_and_lists_again_when_the_total_moved():
    rows = [row(n) for n in range(1, 1002)]  # three pages: 500, 500, 1
    listing = Pages(rows)
    selected = selection.select(listing, selection.Filter(PROJECT_ID, BIZDATE, "Prod"), Settings(), 1e12)
    assert [i.id for i in selected] == list(range(1, 1002))
    assert [(c["PageNumber"], c["PageSize"]) for c in listing.calls] == [(1, 500), (2, 500), (3, 500)]
    # an exact multiple of the page size ends on the page that reaches the total
    listing = Pages(rows[:1000])
    selection.select(listing, selection.Filter(PROJECT_ID, BIZDATE, "Prod"), Settings(), 1e12)
    assert [c["PageNumber"] for c in listing.calls] == [1, 2]
    # the total moved between pages (an instance left Failure): the listing starts again, at most 3 times
    listing = Pages(rows, totals=[1001, 1000, 1001, 1000, 1001, 999])
    selected = selection.select(listing, selection.Filter(PROJECT_ID, BIZDATE, "Prod"), Settings(), 1e12)
    assert [c["PageNumber"] for c in listing.calls] == [1, 2, 1, 2, 1, 2]
    assert len(selected) == 500  # what the last listing found stands


class Flaky:
    """ListTaskInstances failing with `errors` (one a call) before it answers one empty page."""

    def __init__(self, *errors):
        self.errors, self.timeouts = list(errors), []

    def list_task_instances(self, params, timeout):
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        return [], 0


def dw_error(code: str, transient: bool = True, **flags) -> DataWorksError:
    return DataWorksError("ListTaskInstances", code, f"{code} said no", transient=transient, **flags)


@pytest.fixture
def slept(fake_clock, mocker):
    """pacing's clock stands at 1000 s and moves only by what the code waits: the waits."""
    mocker.patch.object(pacing, "uniform", lambda low, high: high)
    return fake_clock.slept


def listed(dataworks, deadline=1060.0, settings=None) -> None:
    selection.select(dataworks, selection.Filter(PROJECT_ID, BIZDATE, "Prod"), settings or Settings(), deadline)


def test_a_listing_is_retried_while_dataworks_fails_transiently_then_answers(slept):
    listing = Flaky(dw_error("ServiceUnavailable"), dw_error("InternalError"))
    listed(listing, settings=Settings(read_qps=1000.0))
    assert len(listing.timeouts) == 3 and slept[:1] == [0.2] and slept[1] == pytest.approx(0.4, abs=0.002)
    assert listing.timeouts[0] == 10.0  # the read timeout: the deadline is a minute away


def test_a_listing_gives_up_after_max_attempts_or_on_a_lasting_error(slept):
    listing = Flaky(*[dw_error("ServiceUnavailable") for _ in range(10)])
    with pytest.raises(DataWorksError):
        listed(listing, settings=Settings(read_qps=1000.0))
    assert len(listing.timeouts) == pacing.MAX_ATTEMPTS
    for error in (dw_error("Forbidden", transient=False), dw_error("InvalidSecurityToken.Expired",
                                                                    needs_new_invocation=True)):  # fmt: skip
        listing = Flaky(error, error)
        with pytest.raises(DataWorksError) as raised:
            listed(listing)
        assert raised.value is error and len(listing.timeouts) == 1


def test_a_throttled_listing_slows_the_read_limiter_and_waits_what_dataworks_asks(slept):
    listing = Flaky(dw_error("Throttling.User", retry_after=2.0))
    listed(listing, settings=Settings(read_qps=4.0))
    assert pacing.limiter("read", 4.0).rate == 2.0 + pacing.limiter("read", 4.0)._step / 2.0  # halved, then one pass
    assert 2.0 in slept and len(listing.timeouts) == 2


def test_a_listing_starts_no_call_with_less_than_half_a_second_left(slept):
    listing = Flaky()
    with pytest.raises(pacing.DeadlineReached):
        listed(listing, deadline=1000.49)
    assert listing.timeouts == []
    listed(listing, deadline=1000.5 + 1e-9)
    assert listing.timeouts == [pytest.approx(0.5)]


def test_a_listing_retry_that_would_end_past_the_deadline_is_not_made(slept):
    listing = Flaky(dw_error("ServiceUnavailable", retry_after=1.0), dw_error("ServiceUnavailable"))
    with pytest.raises(DataWorksError):
        listed(listing, deadline=1001.25, settings=Settings(read_qps=1000.0))
    assert len(listing.timeouts) == 1 and slept == []


@pytest.fixture
def shanghai_local_time(monkeypatch):
    """The process's local time zone is UTC+8 (FC lets a function set TZ)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_plans_expiry_is_written_in_utc_whatever_the_local_time_zone(shanghai_local_time):
    assert time.localtime(ISSUED_AT).tm_hour == 1  # 17:20 UTC is 01:20 in Shanghai
    _, expires = plan.issue(KEY, CANONICAL, _options(), 9, "1-plan", ISSUED_AT, 900)
    assert expires == "2026-11-27T17:35:00Z"


def test_a_dry_run_with_ignore_rules_reads_the_log_only_to_say_which_rule_it_ignores(dataworks, http):
    # The plan an operator reviews before an IgnoreRules run: the instance a rule would hold back
    # is listed to be rerun, and its record says which rule matched and that it holds nothing back.
    seed_outage(dataworks, failures=0)
    status, answer = call(http, {**FILTER, "IgnoreRules": True, "DryRun": True})
    assert status == 200 and HELD_BACK in answer["Decisions"]["dry-run"]
    (record,) = [r for r in instance_records(SEEN[-1]) if r["instanceId"] == HELD_BACK]
    assert record["message"] == (
        "dry run: run 1 Failure: rerun as run 2; failure rule 'maxcompute-table-not-found' matched line 25 of "
        "the log of run 1: ODPS-0130131 Table not found: the table does not exist (or is not visible to the "
        "account). (IgnoreRules: rules hold nothing back)"
    )


def test_started_counts_only_the_reruns_dataworks_accepted(dataworks, http):
    # DataWorks refuses one of the two (Success false in its SuccessInfo): the answer's Started is
    # what an operator reads as "rerun now", so it counts the one accepted; SuccessInfo has both.
    seed_outage(dataworks, failures=2)
    dataworks.faults.set("RerunTaskInstances", partial_failure={FIRST + 1: "the instance is being rerun"})
    status, answer = call(http, FILTER)
    assert status == 200 and answer["Started"] == 1
    assert answer["SuccessInfo"][str(FIRST)]["Success"] is True
    assert answer["SuccessInfo"][str(FIRST + 1)] == {"Success": False, "Message": "the instance is being rerun"}


def test_every_positive_int64_is_a_bizdate_in_epoch_milliseconds_up_to_the_largest():
    # The API's Bizdate is an int64 of epoch ms: its largest value is passed on as it is (and
    # 2**63, one more, is refused: test_each_bad_filter_field_is_named_with_the_rule_and_the_value).
    wanted = selection.parse({"ProjectId": PROJECT_ID, "Bizdate": INT64_MAX}, Settings(), 100)
    assert wanted.bizdate == INT64_MAX == 2**63 - 1


def test_a_dry_runs_summary_says_done_like_every_other_summary(dataworks, http):
    # Queries and alerts on `outcome` (done, retry, quota-exhausted) see every invocation. Before,
    # a dry run by filter wrote its summary without one.
    seed_outage(dataworks, failures=1)
    status, _ = call(http, {**FILTER, "DryRun": True})
    summary = SEEN[-1].records[-1]
    assert (status, summary["kind"], summary["dryRunMode"], summary["outcome"]) == (200, "summary", True, "done")


def test_force_lifts_a_failure_rules_own_rerun_cap_too(dataworks, http):
    # The tunnel's flow control allows 2 reruns (maxReruns); this node failed run 3 with it. Without
    # Force it stays; with Force an operator's bulk rerun goes ahead, as Force lifts RERUN_MAX_RERUNS.
    log = (LOGS / "di_tunnel_flow_exceeded.log").read_text(encoding="utf-8")
    seed(dataworks, FIRST, task_type="DI", run_number=3, log=log)
    status, answer = call(http, FILTER)
    assert (status, answer["Counts"]) == (200, {"cap-reached": 1})
    status, answer = call(http, {**FILTER, "Force": True})
    assert (status, answer["Started"], answer["Counts"]) == (200, 1, {"eligible": 1})


def test_a_bulk_rerun_asks_gettask_up_to_exactly_dataworks_last_rerun_time(mocker):
    # A failure DataWorks could still be rerunning (at most 30 minutes after it, plus a minute of
    # margin) is asked about; one a millisecond older is not.
    from dataclasses import replace

    from dwrerun import autorerun, schedule
    from test_policy import FAILED as FAILED_INSTANCE

    now_ms = 1_795_800_000_000
    mocker.patch.object(schedule, "clock", lambda: now_ms / 1000)
    job = Job(Mode.FILTER, "req-1", "dwrerun-http", Settings(), deadline=0.0)

    def failed(finished_ms):
        return replace(FAILED_INSTANCE, finished_time=finished_ms)

    limit = autorerun.DATAWORKS_MAX_RERUN_INTERVAL_MS
    assert autorerun.worth_asking(job, failed(now_ms - limit)) is True
    assert autorerun.worth_asking(job, failed(now_ms - limit - 1)) is False
