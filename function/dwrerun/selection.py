"""Which failed instances a filter selects: `ListTaskInstances`, page by page (bulk reruns by filter).

An operator after an outage says "everything that failed in project 48213 for business date
2026-11-27", not a list of ids. `Filter` is that request, checked; `select` pages through
ListTaskInstances (at most 500 a page, sorted by Id) for its `Failure` instances; `reread` reads
the current state of instances a continuation carries, 500 ids a call.

ListTaskInstances' rows carry every field the guards read: compared with GetTaskInstance's
`TaskInstance` (the SDK's ListTaskInstancesResponseBodyPagingInfoTaskInstances against
GetTaskInstanceResponseBodyTaskInstance, 2024-05-18), a row lacks only Inputs, Outputs, Script and
Tags, which no guard reads. So a selection needs no GetTaskInstance per instance.

The filter is also checked on each row here: the API's own filtering narrows what comes back,
this check makes sure of it (how the API bounds its time window is not documented).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dwrerun import pacing
from dwrerun.config import ANY_ENV, PROJECT_ENVS, Settings
from dwrerun.dataworks import MAX_PAGE_SIZE, DataWorks, DataWorksError, task_instance
from dwrerun.policy import FAILURE, Instance
from dwrerun.values import INT64_MAX, from_digits, positive_int64, preview, whole

MAX_SELECTION = 20_000  # instances one filter may select (40 pages); a larger one asks to narrow it
LISTINGS = 3  # a listing that changed under its pages is started again at most this often
# DataWorks' business date is 00:00 of a day, in epoch ms. A date written YYYY-MM-DD is read in
# China time (UTC+8), as the API's own example (1743350400000 = 2025-03-31 00:00 +08:00) shows
# [inferred for regions on another time zone: give the epoch ms there].
BIZDATE_ZONE = timezone(timedelta(hours=8))


class InvalidFilter(ValueError):
    """A filter field is wrong. `field` is its name; the message says the rule."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class TooLarge(Exception):
    """The filter selects more than MAX_SELECTION instances."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


@dataclass(frozen=True)
class Filter:
    """One bulk rerun's selection: Failure instances of one project and business date."""

    project_id: int
    bizdate: int  # epoch ms
    project_env: str  # Prod | Dev
    task_ids: tuple[int, ...] = ()  # sorted; empty: every task
    finished_from: int | None = None  # epoch ms, inclusive: when the failed run ended
    finished_to: int | None = None

    def canonical(self) -> dict:
        """The filter as a plan token binds it and an answer echoes it (the request's own names)."""
        out: dict = {"ProjectId": self.project_id, "Bizdate": self.bizdate, "ProjectEnv": self.project_env}
        if self.task_ids:
            out["TaskIds"] = list(self.task_ids)
        if self.finished_from is not None:
            out["FinishedTimeStart"] = self.finished_from
        if self.finished_to is not None:
            out["FinishedTimeEnd"] = self.finished_to
        return out

    def list_params(self) -> dict:
        """ListTaskInstances' parameters for this filter (without paging)."""
        params: dict = {
            "ProjectId": self.project_id,
            "Bizdate": self.bizdate,
            "ProjectEnv": self.project_env,
            "Status": FAILURE,
            "SortBy": "Id Asc",
        }
        if self.task_ids:
            params["TaskIds"] = list(self.task_ids)
        window = {}
        if self.finished_from is not None:
            window["finishedTimeStart"] = self.finished_from
        if self.finished_to is not None:
            window["finishedTimeEnd"] = self.finished_to
        if window:
            params["Filter"] = window
        return params

    def holds(self, instance: Instance, row: dict) -> bool:
        """Whether a listed row is one this filter selects (the API filtered; this makes sure)."""
        finished = instance.finished_time
        return (
            instance.status == FAILURE
            and instance.project_id == self.project_id
            and instance.project_env == self.project_env
            and _int(row.get("Bizdate")) == self.bizdate
            and (not self.task_ids or instance.task_id in self.task_ids)
            and (self.finished_from is None or (finished is not None and finished >= self.finished_from))
            and (self.finished_to is None or (finished is not None and finished <= self.finished_to))
        )


def parse(body: dict, settings: Settings, max_task_ids: int) -> Filter:
    """The filter of an HTTP request body (ProjectId, Bizdate, TaskIds, ProjectEnv, FinishedTime*)."""
    project_id = _id(body.get("ProjectId"), "ProjectId", required=True)
    bizdate = _bizdate(body.get("Bizdate"))
    env = body.get("ProjectEnv")
    if env is None:
        env = settings.project_env if settings.project_env != ANY_ENV else "Prod"
    elif env not in PROJECT_ENVS:
        raise InvalidFilter("ProjectEnv", f"ProjectEnv must be Prod or Dev, got {preview(env)}")
    task_ids = body.get("TaskIds")
    if task_ids is not None:
        if not isinstance(task_ids, list) or not task_ids:
            raise InvalidFilter("TaskIds", "TaskIds must be a non-empty list of task (node) ids")
        if len(task_ids) > max_task_ids:
            raise InvalidFilter(
                "TaskIds", f"TaskIds has {len(task_ids)} ids, more than RERUN_HTTP_MAX_IDS={max_task_ids}"
            )
        task_ids = sorted({_id(t, f"TaskIds[{n}]") for n, t in enumerate(task_ids)})
    start = _moment(body.get("FinishedTimeStart"), "FinishedTimeStart")
    end = _moment(body.get("FinishedTimeEnd"), "FinishedTimeEnd")
    if start is not None and end is not None and start > end:
        raise InvalidFilter("FinishedTimeEnd", "FinishedTimeEnd is before FinishedTimeStart")
    return Filter(project_id, bizdate, env, tuple(task_ids or ()), start, end)


def select(dataworks: DataWorks, wanted: Filter, settings: Settings, deadline: float) -> list[Instance]:
    """Every Failure instance the filter selects, by Id. Raises TooLarge, or the DataWorksError
    that kept ListTaskInstances from answering (after retries, as for any read)."""
    for _ in range(LISTINGS):
        found, changed = _list_once(dataworks, wanted, settings, deadline)
        if not changed:
            break
    # Started again LISTINGS times and still moving (reruns in flight): what was found stands;
    # an instance that left Failure meanwhile needs no rerun, one that failed meanwhile is for
    # the next request.
    return [found[i] for i in sorted(found)]


def _list_once(dataworks, wanted: Filter, settings, deadline) -> tuple[dict[int, Instance], bool]:
    """One pass over the pages: (instances by id, whether the total changed between pages). Pages
    are fetched by number, so an instance leaving Failure meanwhile would shift the next page by
    one and hide an instance: a changed total says to list again."""
    params = wanted.list_params()
    found: dict[int, Instance] = {}
    page, total = 1, None
    while True:
        rows, page_total = _call(
            dataworks, {**params, "PageNumber": page, "PageSize": MAX_PAGE_SIZE}, settings, deadline
        )
        if total is None:
            total = page_total
            if total > MAX_SELECTION:
                raise TooLarge(total)
        elif page_total != total:
            return found, True
        for row in rows:
            instance = task_instance(row)
            if wanted.holds(instance, row):
                found[instance.id] = instance
        if len(rows) < MAX_PAGE_SIZE or page * MAX_PAGE_SIZE >= total:
            return found, False
        page += 1


def reread(
    dataworks: DataWorks, project_id: int, bizdate: int, project_env: str, ids: list[int], settings, deadline
) -> dict[int, Instance]:
    """The current state of `ids` (one ListTaskInstances call per 500), by id; an id DataWorks no
    longer lists is absent. Raises the DataWorksError that kept it from answering.

    The API documents `Ids` as a batch filter without a maximum; 500 a call (one page) is this
    function's choice [inferred: that DataWorks takes 500 ids in one call]."""
    current: dict[int, Instance] = {}
    for start in range(0, len(ids), MAX_PAGE_SIZE):
        chunk = ids[start : start + MAX_PAGE_SIZE]
        params = {
            "ProjectId": project_id,
            "Bizdate": bizdate,
            "ProjectEnv": project_env,
            "Ids": chunk,
            "PageNumber": 1,
            "PageSize": MAX_PAGE_SIZE,
        }
        rows, _ = _call(dataworks, params, settings, deadline)
        wanted = set(chunk)
        for row in rows:
            instance = task_instance(row)
            # With an Ids filter DataWorks may answer one row per run of an instance: keep the
            # current run's, the highest RunNumber, whatever order the rows come in.
            if instance.id in wanted and (instance.run_number or 0) >= _run_of(current.get(instance.id)):
                current[instance.id] = instance
    return current


def _run_of(instance: Instance | None) -> int:
    return 0 if instance is None or instance.run_number is None else instance.run_number


def _call(dataworks: DataWorks, params: dict, settings: Settings, deadline: float) -> tuple[list[dict], int]:
    """One page, paced by the read limiter, retried on transient errors until the deadline."""
    limiter = pacing.limiter("read", settings.read_qps)

    def list_page(left: float) -> tuple[list[dict], int]:
        try:
            answer = dataworks.list_task_instances(params, min(left, settings.read_timeout))
        except DataWorksError as exc:
            if exc.throttled:
                limiter.throttled(exc.retry_after)
            raise
        limiter.passed()
        return answer

    return pacing.retry(list_page, deadline=deadline, transient=_transient, limiter=limiter, what="list the selection")


def _transient(exc: Exception) -> bool:
    return isinstance(exc, DataWorksError) and exc.transient and not exc.needs_new_invocation


def _id(value: object, name: str, required: bool = False) -> int:
    if value is None and required:
        raise InvalidFilter(name, f"{name} is required with a filter (ListTaskInstances requires it)")
    number = positive_int64(value)
    if number is None:
        raise InvalidFilter(name, f"{name} must be a positive int64 id, got {preview(from_digits(value))}")
    return number


def _bizdate(value: object) -> int:
    if value is None:
        raise InvalidFilter("Bizdate", "Bizdate is required with a filter (ListTaskInstances requires it)")
    if isinstance(value, str):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=BIZDATE_ZONE)
        except ValueError:
            raise InvalidFilter(
                "Bizdate", f"Bizdate must be a date like 2026-11-27 or epoch milliseconds, got {preview(value)}"
            ) from None
        return int(day.timestamp() * 1000)
    if not whole(value, 1, INT64_MAX):
        raise InvalidFilter(
            "Bizdate", f"Bizdate must be a date like 2026-11-27 or epoch milliseconds, got {preview(value)}"
        )
    return value


def _moment(value: object, name: str) -> int | None:
    """Epoch ms from epoch ms or an ISO 8601 time with its offset (2026-11-28T02:00:00+08:00, ...Z)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise InvalidFilter(
                name, f"{name} must be epoch milliseconds or an ISO 8601 time with its offset, got {preview(value)}"
            )
        return int(moment.timestamp() * 1000)
    if not whole(value, 0, INT64_MAX):
        raise InvalidFilter(
            name, f"{name} must be epoch milliseconds or an ISO 8601 time with its offset, got {preview(value)}"
        )
    return value


def _int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
