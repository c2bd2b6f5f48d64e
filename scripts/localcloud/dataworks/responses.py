"""The wire side of the emulated operations: check the parameters, call the backend, shape the answer.

Parameters arrive as strings (query string and form body merged), exactly as the official SDK and
the generic tea-openapi client send them: list parameters (Ids, TaskIds) are JSON strings.
"""

from __future__ import annotations

import json

from .exceptions import InvalidActionNotFound, InvalidParameter, InvalidVersion, MissingParameter
from .models import PROJECT_ENVS, STATUSES, TRIGGER_RECURRENCES, TRIGGER_TYPES, DataWorksBackend, Window

VERSION = "2024-05-18"
MAX_PAGE_SIZE = 500
SORT_KEYS = ("TriggerTime", "StartedTime", "FinishedTime", "CreateTime", "Id")
# ListTaskInstances' `Filter`: a JSON object of these keys (epoch ms), all combined with AND (SDK model doc).
TIME_FILTERS = {"startedTime": "started_time", "finishedTime": "finished_time", "createTime": "create_time"}


def _int(params: dict, name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise MissingParameter(name)
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, f"expected an integer, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise InvalidParameter(name, f"must be at least {minimum}.")
    return value


def _int_list(params: dict, name: str, *, required: bool = False) -> list[int] | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise MissingParameter(name)
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    # bool is an int in Python; a JSON true is not an instance id.
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InvalidParameter(name, f"expected a JSON list of integers such as [1234,5678], got {raw[:100]!r}.")
    return value


def _id_set(params: dict, name: str) -> frozenset[int] | None:
    ids = _int_list(params, name)
    return None if ids is None else frozenset(ids)


def _bool(params: dict, name: str) -> bool | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false"):
        raise InvalidParameter(name, f"expected true or false, got {raw!r}.")
    return raw.lower() == "true"


def _windows(params: dict) -> list[tuple[str, Window]]:
    """ListTaskInstances' `Filter` as (field, Window) pairs: {"finishedTimeStart": ms, "finishedTimeEnd": ms, ...}."""
    raw = params.get("Filter")
    if raw is None or raw == "":
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    keys = [f"{name}{end}" for name in TIME_FILTERS for end in ("Start", "End")]
    if not isinstance(value, dict):
        raise InvalidParameter(
            "Filter", f"expected a JSON object with keys among {', '.join(keys)}, got {raw[:100]!r}."
        )
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise InvalidParameter("Filter", f"unknown key(s) {', '.join(unknown)}; supported: {', '.join(keys)}.")
    windows = []
    for name, field_name in TIME_FILTERS.items():
        start, end = value.get(f"{name}Start"), value.get(f"{name}End")
        for bound in (start, end):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise InvalidParameter("Filter", f"{name}Start and {name}End must be epoch milliseconds.")
        if start is not None or end is not None:
            windows.append((field_name, Window(start, end)))
    return windows


def _choice(params: dict, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise InvalidParameter(name, f"expected one of {', '.join(allowed)}, got {raw!r}.")
    return raw


class DataWorksResponse:
    """One method per emulated action: params (dict of str) -> the JSON body without RequestId."""

    ACTIONS = ("GetTaskInstance", "RerunTaskInstances", "ListTaskInstances", "GetTaskInstanceLog", "GetTask")
    # How the rate limits classify an action (FACTS §2: separate read and write QPS).
    READ_PREFIXES = ("Get", "List")

    def __init__(self, backend: DataWorksBackend):
        self.backend = backend

    @classmethod
    def check_route(cls, action: str, version: str) -> None:
        """Raise the gateway's error for an action or version this service does not have."""
        if action not in cls.ACTIONS:
            raise InvalidActionNotFound()
        if version != VERSION:
            raise InvalidVersion(f"Specified parameter Version is not valid: {version!r}; this API is {VERSION}.")

    @classmethod
    def is_read(cls, action: str) -> bool:
        return action.startswith(cls.READ_PREFIXES)

    def dispatch(self, action: str, params: dict, refuse: dict[int, str] | None = None) -> dict:
        if action == "RerunTaskInstances":
            return self.rerun_task_instances(params, refuse)
        return getattr(self, _snake(action))(params)

    def get_task_instance(self, params: dict) -> dict:
        instance_id = _int(params, "Id", required=True)
        return {"TaskInstance": self.backend.get_task_instance(instance_id)}

    def rerun_task_instances(self, params: dict, refuse: dict[int, str] | None = None) -> dict:
        ids = _int_list(params, "Ids", required=True)
        if not ids:
            raise InvalidParameter("Ids", "the list of instance ids is empty.")
        info = self.backend.rerun_task_instances(
            ids, comment=params.get("Comment"), use_latest_config=_bool(params, "UseLatestConfig"), refuse=refuse
        )
        return {"SuccessInfo": info}

    def list_task_instances(self, params: dict) -> dict:
        project_id = _int(params, "ProjectId", required=True)
        bizdate = _int(params, "Bizdate", required=True)
        page_number = _int(params, "PageNumber", minimum=1) or 1
        page_size = _int(params, "PageSize", minimum=1) or 10
        if page_size > MAX_PAGE_SIZE:
            raise InvalidParameter("PageSize", f"must be at most {MAX_PAGE_SIZE}.")
        sort_by = params.get("SortBy") or "Id Desc"
        key, _, order = sort_by.partition(" ")
        if key not in SORT_KEYS or order not in ("", "Asc", "Desc"):
            raise InvalidParameter("SortBy", f"expected '<{'|'.join(SORT_KEYS)}> [Asc|Desc]', got {sort_by!r}.")
        # (TaskInstance field, wanted value or list of allowed values); all must match.
        filters = [
            ("project_id", project_id),
            ("bizdate", bizdate),
            ("project_env", _choice(params, "ProjectEnv", PROJECT_ENVS) or "Prod"),
            ("status", _choice(params, "Status", STATUSES)),
            ("trigger_type", _choice(params, "TriggerType", TRIGGER_TYPES)),
            ("trigger_recurrence", _choice(params, "TriggerRecurrence", TRIGGER_RECURRENCES)),
            ("id", _id_set(params, "Ids")),
            ("task_id", _int(params, "TaskId")),
            ("task_id", _id_set(params, "TaskIds")),
            ("workflow_id", _int(params, "WorkflowId")),
            ("workflow_instance_id", _int(params, "WorkflowInstanceId")),
            ("workflow_instance_type", params.get("WorkflowInstanceType") or None),
            ("task_type", params.get("TaskType") or None),
            ("task_name", params.get("TaskName") or None),
            ("owner", params.get("Owner") or None),
        ]
        filters = [(name, wanted) for name, wanted in filters if wanted is not None] + _windows(params)
        paging = self.backend.list_task_instances(
            filters, page_number, page_size, f"{key} {order or 'Desc'}", runs_of=_int(params, "Id")
        )
        return {"PagingInfo": paging}

    def get_task(self, params: dict) -> dict:
        task_id = _int(params, "Id", required=True)
        project_env = _choice(params, "ProjectEnv", PROJECT_ENVS) or "Prod"
        return {"Task": self.backend.get_task(task_id, project_env)}

    def get_task_instance_log(self, params: dict) -> dict:
        instance_id = _int(params, "Id", required=True)
        run_number = _int(params, "RunNumber", minimum=1)
        return {"TaskInstanceLog": self.backend.get_task_instance_log(instance_id, run_number)}


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")
