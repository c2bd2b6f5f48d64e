"""The one place that knows the DataWorks OpenAPI wire format (2024-05-18).

Calls go through the generic `alibabacloud-tea-openapi` client with the same `Params` the official
DataWorks SDK uses, so the bytes on the wire are the SDK's (tests/test_wire_parity.py proves it)
at about half the import cost. The SDK is imported on first use, not at module import, so the
HTTP function's health check never pays for it.

Every failure comes out as a `DataWorksError` that says whether retrying can help.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from dwrerun.config import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN, ConfigError, Settings, parse_endpoint
from dwrerun.policy import AutoRerun, Instance
from dwrerun.values import positive_int, shown

VERSION = "2024-05-18"
GET_TASK_INSTANCE = "GetTaskInstance"
GET_TASK = "GetTask"
RERUN_TASK_INSTANCES = "RerunTaskInstances"
GET_TASK_INSTANCE_LOG = "GetTaskInstanceLog"
LIST_TASK_INSTANCES = "ListTaskInstances"
# Every DataWorks action the function calls: template.yml's RAM policy grants exactly these.
ACTIONS = (GET_TASK_INSTANCE, GET_TASK, RERUN_TASK_INSTANCES, GET_TASK_INSTANCE_LOG, LIST_TASK_INSTANCES)
# The rest are writes, which DataWorks meters separately.
READS = frozenset({GET_TASK_INSTANCE, GET_TASK, GET_TASK_INSTANCE_LOG, LIST_TASK_INSTANCES})
MAX_PAGE_SIZE = 500  # ListTaskInstances' PageSize, at most (SDK model doc)

# Codes DataWorks (and the OpenAPI gateway in front of it) answers when a caller goes too fast
# or the service is busy (HTTP 429: Throttling.User, .Api, .System). 5xx answers are transient
# whatever their code.
THROTTLING_PREFIX = "Throttling"
# Throttling codes that are not about speed: the account's daily call limit and the edition's quota
# of calls (also 429; FACTS §2, the DataWorks error-code page). They do not clear within minutes,
# so a retry in this invocation, or FC's retry of it, would only spend calls: never retried.
QUOTA_LIMITS = {
    "Throttling.Api.Risk": "the daily limit of DataWorks OpenAPI calls",
    "Throttling.Resource": "the DataWorks edition's quota of OpenAPI calls",
}
TRANSIENT_CODES = frozenset({"ServiceUnavailable", "InternalError", "RequestTimeout"})
# Refusals of the request itself, not of the instance: the STS token expired before FC handed the
# instance the next one, or this host's clock is more than 15 minutes off. DataWorks did nothing.
# The same token and clock fail again at once; a new invocation (new token, maybe another host) may not.
NEW_INVOCATION_CODES = frozenset({"InvalidSecurityToken.Expired", "InvalidTimeStamp.Expired"})


@dataclass(frozen=True)
class Credentials:
    """The function role's STS credentials. repr() never shows the secret or the token."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=***, security_token=***)"


class DataWorksError(Exception):
    """A DataWorks call that did not give an answer. `transient` says whether a retry can help."""

    def __init__(
        self,
        action: str,
        code: str,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
        needs_new_invocation: bool = False,
    ):
        super().__init__(f"{action}: {code}: {message}")
        self.action = action
        self.code = code
        self.message = message
        self.transient = transient
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        # The request may have reached DataWorks and been carried out (timeout, reset, unreadable
        # answer): before a write is sent again, the instance is read back to see.
        self.ambiguous = ambiguous
        # Not worth retrying in this invocation, only in FC's retry of it.
        self.needs_new_invocation = needs_new_invocation

    @property
    def throttled(self) -> bool:
        """DataWorks said slow down: a rate limit, which clears within seconds."""
        return self.code.startswith(THROTTLING_PREFIX) and not self.quota_exhausted

    @property
    def quota_exhausted(self) -> bool:
        """DataWorks' daily call limit or the edition's quota is used up: no retry helps for hours."""
        return self.code in QUOTA_LIMITS


def task_instance(answer: dict) -> Instance:
    """The guards' facts from a `TaskInstance` object (GetTaskInstance, or a ListTaskInstances row).
    Never raises for a field's value: a wrong one is None, and named in `malformed`."""
    bad: list[tuple[str, str]] = []

    def number(name: str) -> int | None:
        return positive_int(answer, name, bad)

    def text(name: str) -> str | None:
        value = answer.get(name)
        if value is None or isinstance(value, str):
            return value
        bad.append((name, shown(value)))
        return None

    return Instance(
        id=int(answer["Id"]),
        task_id=number("TaskId"),
        task_name=text("TaskName"),
        project_id=number("ProjectId"),
        project_env=text("ProjectEnv"),
        status=text("Status"),
        run_number=number("RunNumber"),
        rerun_mode=text("RerunMode"),
        trigger_recurrence=text("TriggerRecurrence"),
        trigger_type=text("TriggerType"),
        task_type=text("TaskType"),
        finished_time=number("FinishedTime"),
        started_time=number("StartedTime"),
        malformed=tuple(bad),
    )


def auto_rerun(task: dict) -> AutoRerun:
    """A node's own automatic-rerun settings from GetTask's `Task` object."""
    return AutoRerun(
        task_id=int(task["Id"]),
        rerun_mode=task.get("RerunMode"),
        rerun_times=_non_negative(task.get("RerunTimes")),
        rerun_interval=_non_negative(task.get("RerunInterval")),
    )


def _non_negative(value: object) -> int:
    """A count or a number of seconds from GetTask; anything else (absent, `true`, 2.5, `Infinity`,
    a word, a negative number) is read as 0: no automatic rerun of DataWorks' own (inferred)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 0


def credentials_from(environ, context) -> Credentials:
    """The role's credentials for this invocation: FC's variables, else python3.10's context.credentials.

    Read per invocation because FC rotates STS tokens under a warm instance.
    """
    key_id, secret = environ.get(ACCESS_KEY_ID), environ.get(ACCESS_KEY_SECRET)
    token = environ.get(SECURITY_TOKEN)
    if not (key_id and secret):
        creds = getattr(context, "credentials", None)  # python3.12 contexts have none
        if creds is not None and getattr(creds, "access_key_id", None):
            key_id, secret = creds.access_key_id, creds.access_key_secret
            token = getattr(creds, "security_token", None)
    if not (key_id and secret):
        raise ConfigError(
            f"no credentials: {ACCESS_KEY_ID} and {ACCESS_KEY_SECRET} are unset. "
            "Give the function a role (template.yml `role`) so FC injects them."
        )
    return Credentials(key_id, secret, token or None)


def endpoint_for(settings: Settings, region: str | None) -> tuple[str, str]:
    """(host[:port], protocol) of the DataWorks OpenAPI this function calls."""
    if settings.endpoint:
        return parse_endpoint(settings.endpoint)
    if not region:
        raise ConfigError("no region: FC_REGION is unset and the context has none; or set DATAWORKS_ENDPOINT")
    host = "dataworks-vpc" if settings.network == "vpc" else "dataworks"
    return f"{host}.{region}.aliyuncs.com", "https"


def generic_client(credentials: Credentials, endpoint: str, protocol: str, region: str | None, settings):
    """(client, utils_models, RuntimeOptions): the generic OpenAPI client for one set of credentials
    and one endpoint, shared by the DataWorks and the FC clients. Imported here, on first use."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_tea_openapi import utils_models
    from alibabacloud_tea_openapi.client import Client
    from darabonba.runtime import RuntimeOptions

    _silence_sdk_debug_logging()
    # An explicit STS credential does no I/O; the default chain would probe the network.
    credential = CredentialClient(
        CredentialConfig(
            type="sts" if credentials.security_token else "access_key",
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
        )
    )
    client = Client(
        utils_models.Config(
            credential=credential,
            endpoint=endpoint,
            protocol=protocol,
            region_id=region,
            connect_timeout=int(settings.connect_timeout * 1000),
            read_timeout=int(settings.read_timeout * 1000),
        )
    )
    return client, utils_models, RuntimeOptions


class DataWorks:
    """A DataWorks OpenAPI client for one set of credentials and one endpoint."""

    def __init__(self, credentials: Credentials, endpoint: str, protocol: str, region: str | None, settings):
        self._client, self._models, self._runtime = generic_client(credentials, endpoint, protocol, region, settings)
        self.endpoint = endpoint

    def get_task_instance(self, instance_id: int, timeout: float) -> dict:
        """The `TaskInstance` object GetTaskInstance answers for one instance."""
        body = self._call(GET_TASK_INSTANCE, "GET", timeout, query={"Id": str(instance_id)})
        task_instance = body.get("TaskInstance")
        # An answer about another instance, or none, is not one to act on: read it again.
        if not isinstance(task_instance, dict) or str(task_instance.get("Id")) != str(instance_id):
            raise DataWorksError(
                GET_TASK_INSTANCE, "MalformedAnswer", "the answer has no TaskInstance with this Id", transient=True
            )
        return task_instance

    def get_task_instance_log(self, instance_id: int, run_number: int, timeout: float) -> str:
        """The whole log of one run of an instance (`TaskInstanceLog`; "" when DataWorks has none).

        `run_number` is always sent: without it DataWorks answers the latest run's log, which after
        a rerun is the new run's, not the failed one's.
        """
        query = {"Id": str(instance_id), "RunNumber": str(run_number)}
        body = self._call(GET_TASK_INSTANCE_LOG, "GET", timeout, query=query)
        log = body.get("TaskInstanceLog")
        if log is None:  # inferred: a run that never started may answer no log at all
            return ""
        if not isinstance(log, str):
            raise DataWorksError(
                GET_TASK_INSTANCE_LOG, "MalformedAnswer", "the answer's TaskInstanceLog is not text", transient=True
            )
        return log

    def get_task(self, task_id: int, project_env: str | None, timeout: float) -> dict:
        """The `Task` object GetTask answers for one task (node): its own rerun settings among others."""
        query = {"Id": str(task_id)}
        if project_env:
            query["ProjectEnv"] = project_env
        body = self._call(GET_TASK, "GET", timeout, query=query)
        task = body.get("Task")
        if not isinstance(task, dict) or str(task.get("Id")) != str(task_id):
            raise DataWorksError(GET_TASK, "MalformedAnswer", "the answer has no Task with this Id", transient=True)
        return task

    def list_task_instances(self, params: dict[str, object], timeout: float) -> tuple[list[dict], int]:
        """(TaskInstances, TotalCount) of one ListTaskInstances page.

        `params` are the API's own (ProjectId, Bizdate, Status, PageNumber, PageSize, SortBy...):
        lists (Ids, TaskIds) and `Filter` travel as JSON strings, as the SDK sends them; every value
        goes in the form body (POST), numbers as their decimal text.
        """
        form = {}
        for name, value in sorted(params.items()):  # the SDK's order: its fields are alphabetical
            if value is None:
                continue
            if isinstance(value, (list, tuple, dict)):
                value = json.dumps(value, separators=(",", ":"))
            form[name] = str(value)
        body = self._call(LIST_TASK_INSTANCES, "POST", timeout, form=form)
        paging = body.get("PagingInfo")
        rows = paging.get("TaskInstances") if isinstance(paging, dict) else None
        total = paging.get("TotalCount") if isinstance(paging, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "Id" in r for r in rows):
            raise DataWorksError(
                LIST_TASK_INSTANCES, "MalformedAnswer", "the answer has no PagingInfo.TaskInstances", transient=True
            )
        if isinstance(total, bool) or not isinstance(total, int):
            total = len(rows)
        return rows, total

    def rerun_task_instances(
        self, instance_ids: list[int], comment: str, timeout: float, use_latest_config: bool | None = None
    ) -> tuple[str | None, dict]:
        """(RequestId, SuccessInfo) for one RerunTaskInstances call; SuccessInfo keys are str ids.

        `use_latest_config` True reruns with the node's latest configuration rather than the
        instance's snapshot; it travels as the form value `True`/`False`, as the SDK sends a
        boolean (FACTS §2); None leaves it out (DataWorks' default, the snapshot).
        """
        form = {"Ids": json.dumps(instance_ids, separators=(",", ":")), "Comment": comment}
        if use_latest_config is not None:
            form["UseLatestConfig"] = str(bool(use_latest_config))
        body = self._call(RERUN_TASK_INSTANCES, "POST", timeout, form=form)
        success_info = body.get("SuccessInfo")
        if not isinstance(success_info, dict):
            raise DataWorksError(
                RERUN_TASK_INSTANCES,
                "MalformedAnswer",
                "the answer has no SuccessInfo",
                transient=True,
                ambiguous=True,
                request_id=body.get("RequestId"),
            )
        return body.get("RequestId"), success_info

    def _call(self, action: str, method: str, timeout: float, *, query=None, form=None) -> dict:
        """One call; `timeout` (seconds) bounds the wait for the answer so it ends by the deadline."""
        params = self._models.Params(
            action=action,
            version=VERSION,
            protocol="HTTPS",
            pathname="/",
            method=method,
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = self._models.OpenApiRequest(query=query, body=form)
        try:
            answer = self._client.call_api(params, request, self._runtime(read_timeout=max(1, int(timeout * 1000))))
        except Exception as exc:  # the SDK raises several unrelated types; classify them all here
            raise _classify(action, exc) from None
        body = answer.get("body")
        if not isinstance(body, dict):
            raise DataWorksError(
                action, "MalformedAnswer", "the answer is not a JSON object", transient=True, ambiguous=True
            )
        return body


def _classify(action: str, exc: Exception) -> DataWorksError:
    # Only the code and a short message are kept: the SDK's exceptions carry the request,
    # whose headers hold the security token, and that must never reach a log line.
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException

    if isinstance(exc, AlibabaCloudException):
        code = str(exc.code or "Unknown")
        status = exc.status_code
        needs_new_invocation = code in NEW_INVOCATION_CODES
        transient = code not in QUOTA_LIMITS and (
            isinstance(exc, ThrottlingException)
            or code.startswith(THROTTLING_PREFIX)
            or code in TRANSIENT_CODES
            or (status is not None and status >= 500)
            or needs_new_invocation
        )
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("Message") or exc.message or code)
        retry_after = getattr(exc, "retry_after", None)
        return DataWorksError(
            action,
            code,
            message[:300],
            transient=transient,
            status=status,
            request_id=data.get("RequestId") or exc.request_id,
            retry_after=retry_after / 1000 if retry_after else None,
            ambiguous=transient and not code.startswith(THROTTLING_PREFIX) and not needs_new_invocation,
            needs_new_invocation=needs_new_invocation,
        )
    # Timeouts, refused or reset connections, unreadable answers: darabonba wraps them all, and
    # re-raises what requests raised as RetryError(str(e)), an unparsable body as RuntimeError:
    # the original is the exception that was being handled then.
    inner = getattr(exc, "inner_exception", exc)
    inner = inner.__context__ or inner
    kind = type(inner).__name__
    if "Timeout" in kind:
        code = "ReadTimeout" if "Read" in kind else "Timeout"
    elif "Connection" in kind:
        code = "ConnectionError"
    elif isinstance(inner, ValueError):
        code = "MalformedAnswer"
    else:
        code = "TransportError"
    return DataWorksError(action, code, kind, transient=True, ambiguous=True)


def _silence_sdk_debug_logging() -> None:
    # darabonba-core logs every request's headers, security token included, when DEBUG is set
    # in the environment. Its logger is raised above DEBUG so that can never happen here.
    logging.getLogger("darabonba-core").setLevel(logging.WARNING)


_client_lock = threading.Lock()
_cached: tuple[tuple, DataWorks] | None = None


def client_for(credentials: Credentials, settings: Settings, region: str | None) -> DataWorks:
    """The warm instance's client, rebuilt only when the credentials or the endpoint change.

    Reusing it keeps its HTTP connections open across invocations; STS rotation makes a new one.
    """
    global _cached
    endpoint, protocol = endpoint_for(settings, region)
    key = (credentials, endpoint, protocol, region, settings.connect_timeout, settings.read_timeout)
    with _client_lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, DataWorks(credentials, endpoint, protocol, region, settings))
        return _cached[1]
