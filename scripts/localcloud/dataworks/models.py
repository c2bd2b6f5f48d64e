"""The emulated DataWorks scheduler: task instances, their runs and logs (the backend).

State moves only when an operation or a test says so (moto style, no clocks in tests):
- RerunTaskInstances starts a new run: RunNumber + 1, Status Running. A paused (frozen) instance
  fails at once and a dry-run (Skip*) one succeeds at once, as DataWorks does when it schedules them.
- `finish(id, status)` ends the current run now; `advance()` ends every Running instance's run with
  the next outcome scripted by `script_runs(id, [...])` (an instance with no script keeps running).
- Tasks (nodes) carry DataWorks' own automatic rerun (`RerunTimes`, `RerunInterval`): `add_task`
  sets them; `auto_rerun(id)` is DataWorks starting one of those reruns (a test says when). A task
  never added is known through its instances and has no automatic rerun.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .exceptions import InvalidParameter, TaskInstanceLogNotFound, TaskInstanceNotFound, TaskNotFound

STATUSES = (
    "NotRun",
    "Running",
    "WaitTime",
    "CheckingCondition",
    "WaitResource",
    "Failure",
    "Success",
    "Checking",
    "WaitTrigger",
)
FINISHED = ("Failure", "Success")
RERUN_MODES = ("AllDenied", "FailureAllowed", "AllAllowed")
PROJECT_ENVS = ("Prod", "Dev")
TRIGGER_TYPES = ("Scheduler", "Manual")
TRIGGER_RECURRENCES = (
    "Normal",
    "Manual",
    "Pause",
    "Skip",
    "SkipUnchoose",
    "SkipCycle",
    "ConditionUnchoose",
    "RealtimeDeprecated",
    "PauseCalendar",
    "SkipCalendar",
)
PAUSED = ("Pause", "PauseCalendar")
DRY_RUN = ("Skip", "SkipUnchoose", "SkipCycle", "ConditionUnchoose", "RealtimeDeprecated", "SkipCalendar")
CHINA = timezone(timedelta(hours=8))

# Why a rerun is refused (SuccessInfo Message). The real wording is not public; these say why.
NOT_FOUND = "The instance does not exist."
REFUSED_ALL_DENIED = "The task's rerun property is AllDenied: its instances cannot be rerun."
REFUSED_FAILURE_ONLY = "The task's rerun property is FailureAllowed: only a failed instance can be rerun."
REFUSED_NOT_FINISHED = "The instance is {status}: only a finished (Failure or Success) instance can be rerun."


def _now_ms() -> int:
    return int(time.time() * 1000)


def _default_bizdate() -> int:
    """Yesterday 00:00 in China time, in ms: the business date of today's scheduled instances."""
    today = datetime.now(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=1)).timestamp() * 1000)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass
class TaskInstance:
    """One task instance, with the fields of the 2024-05-18 API's TaskInstance (snake_case here)."""

    id: int
    task_id: int
    project_id: int
    status: str = "Failure"
    run_number: int = 1
    rerun_mode: str = "FailureAllowed"
    project_env: str = "Prod"
    trigger_type: str = "Scheduler"
    trigger_recurrence: str = "Normal"
    task_name: str = ""
    task_type: str = "DIDE_SHELL"
    workflow_id: int = 0
    workflow_name: str = ""
    workflow_instance_id: int = 0
    workflow_instance_type: str = "Normal"
    unified_workflow_instance_id: int = 0
    bizdate: int = field(default_factory=_default_bizdate)
    period_number: int = 1
    baseline_id: int | None = None
    owner: str = "207947397706614299"
    create_user: str = "207947397706614299"
    modify_user: str = "207947397706614299"
    description: str = ""
    priority: int = 1
    timeout: int = 0
    operation_type: str | None = None
    trigger_time: int | None = None
    create_time: int | None = None
    modify_time: int | None = None
    waiting_trigger_time: int | None = None
    waiting_resource_time: int | None = None
    started_time: int | None = None
    finished_time: int | None = None
    resource_group_id: str = "Serverless_res_group_524257424564736_6831777003194368"
    data_source: str = ""
    # Not API fields: the comment of the latest RerunTaskInstances call, and its UseLatestConfig.
    comment: str | None = None
    use_latest_config: bool | None = None

    def __post_init__(self):
        for name, allowed in (
            ("status", STATUSES),
            ("rerun_mode", RERUN_MODES),
            ("project_env", PROJECT_ENVS),
            ("trigger_type", TRIGGER_TYPES),
            ("trigger_recurrence", TRIGGER_RECURRENCES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.run_number < 1:
            raise ValueError(f"run_number must be >= 1, not {self.run_number}")
        self.task_name = self.task_name or f"task_{self.task_id}"
        self.workflow_id = self.workflow_id or self.task_id
        self.workflow_name = self.workflow_name or f"{self.task_name}_flow"
        self.workflow_instance_id = self.workflow_instance_id or self.id - 1
        self.unified_workflow_instance_id = self.unified_workflow_instance_id or self.workflow_instance_id
        # 02:00 the next day, or ten minutes ago when that is still to come (a seeded instance
        # has run: its times are past, so a failure event stamped now is about its current run).
        self.trigger_time = self.trigger_time or min(self.bizdate + 26 * 3600 * 1000, _now_ms() - 600_000)
        self.create_time = self.create_time or min(self.bizdate + 25 * 3600 * 1000, self.trigger_time)
        self.modify_time = self.modify_time or self.create_time
        self.waiting_trigger_time = self.waiting_trigger_time or self.create_time
        if self.status not in ("NotRun", "WaitTime"):
            self.waiting_resource_time = self.waiting_resource_time or self.trigger_time
            self.started_time = self.started_time or self.trigger_time + 2000
        if self.status in FINISHED:
            self.finished_time = self.finished_time or self.started_time + 63_000

    def to_api(self, shape: str = "get") -> dict:
        """The instance as GetTaskInstance (`shape="get"`) or ListTaskInstances (`"list"`) render it."""
        internal = {"comment", "use_latest_config", "resource_group_id", "data_source"}
        out = {_pascal(k): v for k, v in asdict(self).items() if k not in internal and v is not None}
        out["RuntimeResource"] = {"ResourceGroupId": self.resource_group_id, "Cu": "0.25"}
        out["Runtime"] = {"Gateway": "cn-hangzhou.1.2", "ProcessId": f"T3_{self.id}_{self.run_number}"}
        out["DataSource"] = {"Name": self.data_source}
        if shape == "get":
            out["Tags"] = []
            out["Script"] = {"Content": "", "Parameters": ""}
            out["Inputs"] = {"Variables": []}
            out["Outputs"] = {"TaskOutputs": [], "Variables": []}
        else:
            out["ScriptParameters"] = ""
        return out


@dataclass
class Task:
    """One task (node) in one environment, with the fields of the 2024-05-18 API's Task (snake_case)."""

    id: int
    project_id: int
    project_env: str = "Prod"
    name: str = ""
    type: str = "DIDE_SHELL"
    rerun_mode: str = "FailureAllowed"
    # DataWorks' own automatic rerun after a failure: at most 10, at most 30 minutes apart (FACTS §2).
    rerun_times: int = 0
    rerun_interval: int = 0  # seconds
    owner: str = "207947397706614299"
    workflow_id: int = 0
    timeout: int = 0
    priority: int = 1
    description: str = ""
    trigger_type: str = "Scheduler"
    trigger_recurrence: str = "Normal"

    def __post_init__(self):
        for name, allowed in (("rerun_mode", RERUN_MODES), ("project_env", PROJECT_ENVS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if not 0 <= self.rerun_times <= 10:
            raise ValueError(f"rerun_times must be 0..10 (DataWorks' limit), not {self.rerun_times}")
        if not 0 <= self.rerun_interval <= 1800:
            raise ValueError(f"rerun_interval must be 0..1800 seconds (DataWorks' limit), not {self.rerun_interval}")
        self.name = self.name or f"task_{self.id}"
        self.workflow_id = self.workflow_id or self.id

    def to_api(self) -> dict:
        """The task as GetTask renders it."""
        return {
            "Id": self.id,
            "Name": self.name,
            "Type": self.type,
            "ProjectId": self.project_id,
            "ProjectEnv": self.project_env,
            "EnvType": self.project_env,
            "Owner": self.owner,
            "WorkflowId": self.workflow_id,
            "Description": self.description,
            "Priority": self.priority,
            "Timeout": self.timeout,
            "RerunMode": self.rerun_mode,
            "RerunTimes": self.rerun_times,
            "RerunInterval": self.rerun_interval,
            "InstanceMode": "T+1",
            "Trigger": {"Type": self.trigger_type, "Recurrence": self.trigger_recurrence, "Cron": "00 00 02 * * ?"},
            "RuntimeResource": {"ResourceGroupId": "Serverless_res_group_524257424564736_6831777003194368"},
            "Tags": [],
        }


_TASK_FIELDS = {f.name for f in fields(Task)}
_TASK_ONLY = {"rerun_times", "rerun_interval"}  # seed keys of a task that its instances do not inherit
_FIELDS = {f.name for f in fields(TaskInstance)}
_PASCAL_FIELDS = {_pascal(name): name for name in _FIELDS}


def default_log(inst: TaskInstance) -> str:
    """A shell node's log for the instance's current run, as DataWorks prints it."""

    def stamp(ms: int | None) -> str:
        return datetime.fromtimestamp((ms or _now_ms()) / 1000, CHINA).strftime("%Y-%m-%d %H:%M:%S")

    start = stamp(inst.started_time)
    lines = [
        f"{start} INFO =================================================================",
        f"{start} INFO Exec Target: {inst.resource_group_id}",
        f"{start} INFO Instance {inst.id} (task {inst.task_id} {inst.task_name}), run {inst.run_number}",
        f"{start} INFO Running shell command: sh ./{inst.task_id}.sh",
    ]
    end = stamp(inst.finished_time)
    if inst.status == "Running":
        lines.append(f"{start} INFO Current task status: RUNNING")
    elif inst.trigger_recurrence in PAUSED:
        lines = [f"{end} INFO The instance is paused (frozen): set to failed without running.",
                 f"{end} INFO Current task status: ERROR"]  # fmt: skip
    elif inst.status == "Failure":
        lines += [
            f"{end} ERROR ods source table partition not ready: dt={stamp(inst.bizdate)[:10]}",
            f"{end} INFO Exit code of the Shell command 1",
            f"{end} INFO --- Invocation of Shell command completed ---",
            f"{end} ERROR Shell run failed!",
            f"{end} INFO Current task status: ERROR",
        ]
    elif inst.status == "Success":
        lines += [
            f"{end} INFO Exit code of the Shell command 0",
            f"{end} INFO --- Invocation of Shell command completed ---",
            f"{end} INFO Shell run successfully!",
            f"{end} INFO Current task status: FINISH",
        ]
    else:
        lines = []
    return "\n".join(lines) + ("\n" if lines else "")


class DataWorksBackend:
    """All task instances of one emulated account, and the operations on them (thread-safe)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._instances: dict[int, TaskInstance] = {}
        self._history: dict[int, dict[int, dict]] = {}  # id -> RunNumber -> row of a finished run
        self._logs: dict[tuple[int, int], str | None] = {}  # None: the run's log is gone
        self._scripts: dict[int, deque[str]] = {}
        self._tasks: dict[tuple[int, str], Task] = {}

    # --- seeding and driving (for tests and the demo) ---

    def add_instance(self, *, log: str | None = None, next_runs: list[str] | None = None, **values) -> TaskInstance:
        """Add (or replace) an instance; any TaskInstance field may be given, the rest get defaults.
        `log` is the current run's log, `next_runs` how its next runs end (see script_runs)."""
        unknown = set(values) - _FIELDS
        if unknown:
            raise ValueError(f"unknown TaskInstance fields: {', '.join(sorted(unknown))}")
        inst = TaskInstance(**values)
        with self._lock:
            self._instances[inst.id] = inst
            self._history[inst.id] = {}
            self._scripts.pop(inst.id, None)
            if log is not None:
                self._logs[(inst.id, inst.run_number)] = log
            if next_runs:
                self.script_runs(inst.id, next_runs)
        return replace(inst)

    def load_json(self, path: str | Path, now: float | None = None) -> list[int]:
        """Seed from a JSON file: a list of instances, or {"tasks": [...], "instances": [...]} where an
        instance inherits its task's fields (by task_id). Keys are snake_case or the API's PascalCase.

        A seed with a top-level `"now"` (ISO 8601 with its offset) is dated relative to the moment
        it is loaded, `now` (epoch seconds; default the clock's): its times move by the time
        between its "now" and this one, and its business dates by whole days of China time. So a
        seed written for "now" 2025-11-28T03:02+08:00 with bizdate 2025-11-27 always holds
        yesterday's business date, and a run it says ended at 03:01:05 ended 55 s ago."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tasks: dict[int, dict] = {}
        shift = None
        if isinstance(data, dict):
            unknown = set(data) - {"now", "tasks", "instances"}
            if unknown:
                raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}; expected now, tasks, instances")
            if "now" in data:
                shift = _Shift(data["now"], time.time() if now is None else now, path)
            for task in data.get("tasks", []):
                task = self._snake(task, path)
                if "task_id" not in task:
                    raise ValueError(f"{path}: every task needs a task_id")
                own = {k: task.pop(k) for k in list(task) if k in _TASK_ONLY}
                if own:
                    self.add_task(
                        id=task["task_id"],
                        project_id=task.get("project_id", 0),
                        project_env=task.get("project_env", "Prod"),
                        name=task.get("task_name", ""),
                        rerun_mode=task.get("rerun_mode", "FailureAllowed"),
                        **own,
                    )
                tasks[task["task_id"]] = task
            data = data.get("instances", [])
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of instances")
        ids = []
        for raw in data:
            values = self._snake(raw, path)
            merged = {**tasks.get(values.get("task_id"), {}), **values}
            ids.append(self.add_instance(**(shift(merged) if shift else merged)).id)
        return ids

    @staticmethod
    def _snake(raw: dict, path) -> dict:
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: every task and instance must be a JSON object, not {raw!r}")
        extra = {"log", "next_runs", "Log", "NextRuns"}
        out = {}
        for key, value in raw.items():
            name = _PASCAL_FIELDS.get(key, key)
            if key in ("Log", "NextRuns"):
                name = {"Log": "log", "NextRuns": "next_runs"}[key]
            if name not in _FIELDS and name not in extra and name not in _TASK_ONLY:
                raise ValueError(f"{path}: unknown field {key!r}")
            out[name] = value
        return out

    def add_task(self, **values) -> Task:
        """Add (or replace) a task in one environment; any Task field may be given."""
        unknown = set(values) - _TASK_FIELDS
        if unknown:
            raise ValueError(f"unknown Task fields: {', '.join(sorted(unknown))}")
        task = Task(**values)
        with self._lock:
            self._tasks[(task.id, task.project_env)] = task
        return replace(task)

    def auto_rerun(self, instance_id: int) -> TaskInstance:
        """DataWorks' own automatic rerun of a failed instance: a new run starts, as a rerun does.

        Refused (ValueError) unless the instance is Failure and its task still has automatic reruns
        left (run N failed: N - 1 used of RerunTimes) [inferred: the docs do not say how DataWorks counts]."""
        with self._lock:
            inst = self._get(instance_id)
            task = self._task_of(inst.task_id, inst.project_env)
            if inst.status != "Failure":
                raise ValueError(f"instance {instance_id} is {inst.status}: DataWorks reruns only a failure")
            if task.rerun_mode == "AllDenied":
                raise ValueError(f"task {task.id} has RerunMode AllDenied: DataWorks does not rerun it")
            if task.rerun_times < inst.run_number:
                raise ValueError(f"task {task.id} has no automatic rerun left for run {inst.run_number}")
            self._start_run(inst, f"automatic rerun {inst.run_number} of {task.rerun_times}", None)
            return replace(inst)

    def _task_of(self, task_id: int, project_env: str) -> Task:
        task = self._tasks.get((task_id, project_env))
        if task is not None:
            return task
        # A task known only through its instances: the latest one's settings, no automatic rerun.
        known = [i for i in self._instances.values() if i.task_id == task_id and i.project_env == project_env]
        if not known:
            raise TaskNotFound(task_id, project_env)
        inst = max(known, key=lambda i: i.id)
        return Task(
            id=task_id,
            project_id=inst.project_id,
            project_env=project_env,
            name=inst.task_name,
            type=inst.task_type,
            rerun_mode=inst.rerun_mode,
            owner=inst.owner,
            workflow_id=inst.workflow_id,
            timeout=inst.timeout,
            priority=inst.priority,
            trigger_type=inst.trigger_type,
        )

    def instance(self, instance_id: int) -> TaskInstance:
        """A snapshot of the instance (KeyError if unknown)."""
        with self._lock:
            if instance_id not in self._instances:
                raise KeyError(f"no task instance {instance_id}")
            return replace(self._instances[instance_id])

    def instances(self) -> list[TaskInstance]:
        with self._lock:
            return [replace(i) for i in self._instances.values()]

    def set_log(self, instance_id: int, run_number: int, text: str) -> None:
        """Store the log of one run (otherwise a default shell log is made from the run's outcome)."""
        with self._lock:
            self._get(instance_id)
            self._logs[(instance_id, run_number)] = text

    def remove_log(self, instance_id: int, run_number: int) -> None:
        """Make the log of one run unavailable: GetTaskInstanceLog answers 404 for it."""
        with self._lock:
            self._get(instance_id)
            self._logs[(instance_id, run_number)] = None

    def script_runs(self, instance_id: int, outcomes: list[str]) -> None:
        """Queue how this instance's next runs end, in order ("Failure" or "Success")."""
        bad = [o for o in outcomes if o not in FINISHED]
        if bad:
            raise ValueError(f"a run ends in Failure or Success, not {bad}")
        with self._lock:
            self._get(instance_id)
            self._scripts.setdefault(instance_id, deque()).extend(outcomes)

    def finish(self, instance_id: int, status: str = "Failure", log: str | None = None) -> TaskInstance:
        """End the current run of a Running instance now, with `status`."""
        if status not in FINISHED:
            raise ValueError(f"a run ends in Failure or Success, not {status!r}")
        with self._lock:
            inst = self._get(instance_id)
            if inst.status != "Running":
                raise ValueError(f"instance {instance_id} is {inst.status}, not Running")
            self._end_run(inst, status, log)
            return replace(inst)

    def advance(self) -> list[int]:
        """End every Running instance's run with its next scripted outcome; return the ids changed."""
        changed = []
        with self._lock:
            for inst in self._instances.values():
                script = self._scripts.get(inst.id)
                if inst.status == "Running" and script:
                    self._end_run(inst, script.popleft(), None)
                    changed.append(inst.id)
        return changed

    def _end_run(self, inst: TaskInstance, status: str, log: str | None) -> None:
        inst.status = status
        inst.finished_time = inst.modify_time = _now_ms()
        if log is not None:
            self._logs[(inst.id, inst.run_number)] = log

    def _get(self, instance_id: int) -> TaskInstance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise TaskInstanceNotFound(instance_id)
        return inst

    # --- the OpenAPI operations ---

    def get_task(self, task_id: int, project_env: str = "Prod") -> dict:
        with self._lock:
            return self._task_of(task_id, project_env).to_api()

    def get_task_instance(self, instance_id: int) -> dict:
        with self._lock:
            return self._get(instance_id).to_api("get")

    def rerun_task_instances(
        self,
        ids: list[int],
        comment: str | None = None,
        use_latest_config: bool | None = None,
        refuse: dict[int, str] | None = None,
    ) -> dict[str, dict]:
        """SuccessInfo: one {"Success", "Message"} per id. `refuse` forces a failure for some ids."""
        refuse = refuse or {}
        result = {}
        with self._lock:
            for instance_id in ids:
                inst = self._instances.get(instance_id)
                reason = refuse.get(instance_id) or self._why_not(inst)
                if reason:
                    result[str(instance_id)] = {"Success": False, "Message": reason}
                    continue
                self._start_run(inst, comment, use_latest_config)
                result[str(instance_id)] = {"Success": True, "Message": ""}
        return result

    @staticmethod
    def _why_not(inst: TaskInstance | None) -> str | None:
        if inst is None:
            return NOT_FOUND
        if inst.status not in FINISHED:
            return REFUSED_NOT_FINISHED.format(status=inst.status)
        if inst.rerun_mode == "AllDenied":
            return REFUSED_ALL_DENIED
        if inst.rerun_mode == "FailureAllowed" and inst.status != "Failure":
            return REFUSED_FAILURE_ONLY
        return None

    def _start_run(self, inst: TaskInstance, comment: str | None, use_latest_config: bool | None) -> None:
        self._history[inst.id][inst.run_number] = inst.to_api("list")
        now = _now_ms()
        inst.run_number += 1
        inst.comment, inst.use_latest_config = comment, use_latest_config
        inst.operation_type = "Rerun"
        inst.started_time = inst.modify_time = inst.waiting_resource_time = now
        inst.finished_time = None
        inst.status = "Running"
        # DataWorks fails a paused instance and passes a dry-run one without running them.
        if inst.trigger_recurrence in PAUSED:
            self._end_run(inst, "Failure", None)
        elif inst.trigger_recurrence in DRY_RUN:
            self._end_run(inst, "Success", None)

    def list_task_instances(
        self,
        filters: list[tuple[str, object]],
        page_number: int,
        page_size: int,
        sort_by: str,
        runs_of: int | None = None,
    ) -> dict:
        """PagingInfo for ListTaskInstances. `filters` are (field, value, list of values or Window)
        pairs; `runs_of` lists every run of that one instance (finished runs first), as the API's Id does.

        Instances are filtered and sorted on their fields, and only the page is rendered: listing
        thousands of instances a page at a time stays cheap."""
        key, _, order = sort_by.partition(" ")
        attribute = _snake_name(key)
        with self._lock:
            if runs_of is not None:
                inst = self._instances.get(runs_of)
                rows = [*self._history[runs_of].values(), inst.to_api("list")] if inst else []
                rows = [r for r in rows if _matches(r, filters)]
                rows.sort(key=lambda r: (r.get(key) or 0, r["RunNumber"]), reverse=order != "Asc")
                total, page = len(rows), rows[(page_number - 1) * page_size :][:page_size]
            else:
                found = [i for i in self._instances.values() if _matches(i, filters)]
                found.sort(key=lambda i: (getattr(i, attribute) or 0, i.run_number), reverse=order != "Asc")
                start = (page_number - 1) * page_size
                total, page = len(found), [i.to_api("list") for i in found[start : start + page_size]]
        return {"TaskInstances": page, "PageNumber": page_number, "PageSize": page_size, "TotalCount": total}

    def get_task_instance_log(self, instance_id: int, run_number: int | None) -> str:
        with self._lock:
            inst = self._get(instance_id)
            run = inst.run_number if run_number is None else run_number
            if not 1 <= run <= inst.run_number:
                raise InvalidParameter("RunNumber", f"instance {instance_id} has runs 1 to {inst.run_number}.")
            if (instance_id, run) in self._logs:
                log = self._logs[(instance_id, run)]
                if log is None:
                    raise TaskInstanceLogNotFound(instance_id, run)
                return log
            if run == inst.run_number:
                return default_log(inst)
            past = self._history[instance_id].get(run)
            if past is None:  # a run from before the emulator knew the instance: assume it failed
                return default_log(replace(inst, run_number=run, status="Failure", trigger_recurrence="Normal"))
            return default_log(
                replace(
                    inst,
                    run_number=run,
                    status=past["Status"],
                    started_time=past.get("StartedTime"),
                    finished_time=past.get("FinishedTime"),
                    trigger_recurrence=past["TriggerRecurrence"],
                )
            )


@dataclass(frozen=True)
class Window:
    """A time field's bounds in epoch ms, both inclusive (the API's `Filter`, e.g. finishedTimeStart
    and finishedTimeEnd [inferred: the docs do not say whether the bounds are inclusive]). An
    instance with no such time yet (a run still going has no FinishedTime) is outside any window."""

    start: int | None
    end: int | None

    def holds(self, value) -> bool:
        if value is None:
            return False
        return (self.start is None or value >= self.start) and (self.end is None or value <= self.end)


# The times of an instance a seed dated relative to its loading moves by the same amount.
_MOMENTS = (
    "create_time",
    "trigger_time",
    "started_time",
    "finished_time",
    "modify_time",
    "waiting_trigger_time",
    "waiting_resource_time",
)


class _Shift:
    """A seed's dates moved from the "now" it was written for to the moment it is loaded."""

    def __init__(self, seed_now, now: float, path):
        try:
            written = datetime.fromisoformat(seed_now)
        except (TypeError, ValueError):
            written = None
        if written is None or written.tzinfo is None:
            raise ValueError(f'{path}: "now" must be ISO 8601 with its offset, like 2025-11-28T03:02:00+08:00')
        loaded = datetime.fromtimestamp(now, CHINA)
        self.now_ms = round(now * 1000)
        self.ms = round((loaded - written).total_seconds() * 1000)
        self.days = (loaded.date() - written.astimezone(CHINA).date()).days

    def __call__(self, values: dict) -> dict:
        out = dict(values)
        for name in _MOMENTS:
            if isinstance(out.get(name), int):
                out[name] += self.ms
        if isinstance(out.get("bizdate"), int):
            out["bizdate"] += self.days * 86_400_000
            if out.get("trigger_time") is None:
                # The default trigger time, as TaskInstance makes it, but at the moment the seed is
                # loaded for rather than the wall clock's: a seed loaded for a moment is of it.
                out["trigger_time"] = min(out["bizdate"] + 26 * 3600 * 1000, self.now_ms - 600_000)
        return out


def _snake_name(pascal: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in pascal).lstrip("_")


def _matches(row: TaskInstance | dict, filters: list[tuple[str, object]]) -> bool:
    """Whether an instance (or a rendered row of a past run) passes every filter."""
    for name, wanted in filters:
        value = row.get(_pascal(name)) if isinstance(row, dict) else getattr(row, name)
        if name == "task_name":
            if wanted.lower() not in str(value).lower():  # the API's TaskName filter is a fuzzy match
                return False
        elif isinstance(wanted, Window):
            if not wanted.holds(value):
                return False
        elif isinstance(wanted, (list, tuple, set, frozenset)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True
