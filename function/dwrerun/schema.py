"""The records' schema: every field a record carries, with its type in the SLS index.

The one definition of the record fields. `records.py` builds records from it (a field not listed
here cannot be written), the Logstore index in template.yml is checked against it
(`json_key_indices()`, tests/test_schema.py), and the SLS queries of the alerts and dashboard
use only the keys it defines.

FC writes each stdout line as the `message` field of a log entry, so the index is a json index
on `message`: a record key is searched as `message.<key>`, and in SQL by its alias. SLS json keys
are `text`, `long` or `double`; true/false/null fields (`success`, `dryRunMode`) are text.
"""

from __future__ import annotations

from dataclasses import dataclass

# The vocabulary records speak: each decision, trigger, reason and summary outcome is defined here
# once, and code names it by its constant (queries, alerts and the dashboard use the text).

# decision: what happened to the instance.
RERUN = "rerun"  # RerunTaskInstances was called for it (`success` says how DataWorks answered)
SKIP = "skip"  # nothing was sent: `reason` says why
DRY_RUN = "dry-run"  # it would have been rerun; nothing was sent
SCHEDULED = "scheduled"  # its rerun is queued as a delayed invocation of the event function (schedule.py)
HELD = "held"  # a storm is open for its cause: held until a canary succeeds (storm.py)
STORM_KIND = "storm"  # the `kind` of a storm record (records.storm_record)
DECISIONS = (RERUN, SKIP, DRY_RUN, SCHEDULED, HELD)

# trigger: which path asked.
EVENTBRIDGE = "eventbridge"  # a failure event, a delayed invocation
HTTP = "http"  # an operator's request, and the continuations of a rerun by filter
SWEEP = "sweep"  # the scheduled sweep (sweep.py): its summary, and the decisions of the failed runs it found


class Reason:
    """Every `reason` a record may carry; docs/records.md says what each means for an operator."""

    ELIGIBLE = "eligible"  # every guard and failure rule let it through
    DRY_RUN = "dry-run"
    # Before any call: the delivery itself.
    NOT_A_FAILURE = "not-a-failure"  # the event is not about a failed instance
    DUPLICATE = "duplicate"  # the same instance twice in one request
    DUPLICATE_EVENT = "duplicate-event"  # this warm instance already handled this event
    CONFIG_ERROR = "config-error"  # a bad setting, rules file or payload: a fix to the deployment is needed
    # The guards (policy.py) and what DataWorks says of the instance.
    PROJECT_NOT_ALLOWED = "project-not-allowed"
    TASK_EXCLUDED = "task-excluded"
    WRONG_ENVIRONMENT = "wrong-environment"
    PAUSED = "paused"
    RERUN_DENIED = "rerun-denied"
    NOT_FAILED = "not-failed"
    NOT_FINISHED = "not-finished"
    UNKNOWN_RUN_NUMBER = "unknown-run-number"
    CAP_REACHED = "cap-reached"
    ALREADY_RERUN = "already-rerun"
    ALREADY_SCHEDULED = "already-scheduled"
    LOOKUP_FAILED = "lookup-failed"
    DATAWORKS_AUTO_RERUN = "dataworks-auto-rerun"  # DataWorks reruns the node itself (autorerun.py)
    NOT_RETRYABLE = "not-retryable"  # a failure rule says a rerun cannot fix it (failure.py)
    NOT_IN_PLAN = "not-in-plan"  # a rerun by filter's plan token did not show this failed run (plan.py)
    # The calls.
    RERUN_REFUSED = "rerun-refused"  # RerunTaskInstances refused the call for good
    QUOTA_EXHAUSTED = "quota-exhausted"  # DataWorks' daily limit or the edition's quota is used up
    DEFERRED = "deferred"  # not finished in this invocation: FC retries it, or the caller sends it again
    # The storm guard (storm.py).
    STORM = "storm"  # held: many failures of the same cause; a canary is rerun first
    STORM_HOLD_EXPIRED = "storm-hold-expired"  # held past RERUN_STORM_MAX_HOLD_SECONDS: given up, alerted


REASONS = frozenset(value for name, value in vars(Reason).items() if name.isupper())


class Summary:
    """A summary record's `outcome`: how the invocation ended."""

    DONE = "done"
    RETRY = "retry"  # the event path raised so that FC retries it
    QUOTA_EXHAUSTED = "quota-exhausted"
    UPSTREAM_ERROR = "upstream-error"  # the HTTP path answered an error because DataWorks kept failing
    PARTIAL = "partial"  # a sweep that could not list or claim everything: the next sweep takes the rest


TEXT = "text"
LONG = "long"
DOUBLE = "double"


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # its SLS index type: text, long or double
    # The SQL name. None for `message`: an alias `message` would shadow the log entry's own field.
    alias: str | None

    def __post_init__(self):
        if self.type not in (TEXT, LONG, DOUBLE):
            raise ValueError(f"{self.name}: SLS json keys are text, long or double, not {self.type!r}")


def _field(name: str, type_: str, alias: str | None = "") -> Field:
    return Field(name, type_, name if alias == "" else alias)


# One instance's decision and outcome (records.instance_record), in the order written.
INSTANCE_FIELDS = (
    _field("kind", TEXT),  # "instance"
    _field("instanceId", LONG),
    _field("decision", TEXT),  # rerun | skip | dry-run | scheduled
    _field("success", TEXT),  # true | false | null (no rerun call)
    _field("message", TEXT, alias=None),
    _field("reason", TEXT),
    _field("trigger", TEXT),  # eventbridge | http | sweep
    _field("requestId", TEXT),  # the FC invocation's
    _field("eventId", TEXT),  # the CloudEvent's id (eventbridge only)
    _field("runNumber", LONG),
    _field("projectId", LONG),
    _field("taskId", LONG),
    _field("taskName", TEXT),
    _field("projectEnv", TEXT),
    _field("status", TEXT),
    # When the run that was read ended: GetTaskInstance's FinishedTime, epoch ms (null while it runs).
    # For a rerun it is the failed run's end, so `__time__ - finishedTime / 1000` is the time from
    # the failure to its rerun (the dashboard's panel).
    _field("finishedTime", LONG),
    _field("errorCode", TEXT),
    _field("dataworksRequestId", TEXT),
    _field("comment", TEXT),
    _field("attempts", LONG),
    _field("lookupMs", DOUBLE),
    _field("rerunMs", DOUBLE),
    # What the failed run's log showed (failure rules, dwrerun/failure.py).
    _field("rule", TEXT),  # the matched rule's name, "default", or null when no log was read
    _field("failureClass", TEXT),  # retryable | not-retryable | unknown
    _field("matchedLine", TEXT),  # the one matched line, redacted and cut; never the log
    # Scheduled reruns (decision "scheduled", and the delayed invocation's record).
    _field("delaySeconds", LONG),
    _field("dueAt", TEXT),  # ISO 8601 UTC: when the delayed invocation (or DataWorks' own rerun) is due
    _field("asyncTaskId", TEXT),  # FC's async task id; joins a scheduling record and its delayed one
    _field("scheduleErrorCode", TEXT),  # why FC refused to schedule (the rerun then went out at once)
    # A delayed invocation's: true when RERUN_SIGNING_KEY signed its payload; false when it did not
    # (decided as a failure event, issue 24); null for every other record.
    _field("trusted", TEXT),
    # Bulk reruns by filter (dwrerun/bulk.py): the HTTP request that selected the instance, on the
    # records of that request and of every continuation it handed work to; one query follows all.
    _field("originRequestId", TEXT),
    _field("useLatestConfig", TEXT),  # true | false: RerunTaskInstances' UseLatestConfig; null: not sent
    # The storm guard (storm.py): the cause ("<projectId>/<rule>") and the storm ("<key>-<epoch>").
    _field("stormCause", TEXT),
    _field("stormId", TEXT),
    # The sweep (sweep.py), on its decisions only: true when the failed run was still undecided and
    # still failed when decided (no event had been handled for it); false when someone got there first.
    _field("missedEvent", TEXT),
)
# Instance fields written only when set: records without a storm, and the other paths' records
# without the sweep's missedEvent, stay as they were.
INSTANCE_OPTIONAL = frozenset({"stormCause", "stormId", "missedEvent"})

# What happened to a storm (records.storm_record): opened, each canary, the release and each of its
# groups, closed; give-ups are the instances' own records (reason storm-hold-expired).
STORM_FIELDS = (
    _field("kind", TEXT),  # "storm"
    _field("stormEvent", TEXT),  # opened | canary | canary-failed | canary-restored | release | release-group | closed
    _field("stormCause", TEXT),
    _field("stormId", TEXT),
    _field("message", TEXT, alias=None),
    _field("instanceId", LONG),  # the opener, the canary
    _field("count", LONG),  # failures that opened it, failed canaries, instances released (in the group)
    _field("stormSlot", LONG),  # the canary's or the release group's number
    _field("dueAt", TEXT),
    _field("trigger", TEXT),
    _field("requestId", TEXT),
)

# An invocation's totals (records.summary_record), in the order written.
SUMMARY_FIELDS = (
    _field("kind", TEXT),  # "summary"
    _field("trigger", TEXT),
    _field("requestId", TEXT),
    _field("instances", LONG),
    _field("rerun", LONG),
    _field("rerunSucceeded", LONG),
    _field("rerunFailed", LONG),
    _field("skipped", LONG),
    _field("dryRun", LONG),
    _field("scheduled", LONG),
    _field("held", LONG),  # written only when the storm guard held one
    _field("durationMs", DOUBLE),
    _field(
        "outcome", TEXT
    ),  # done | retry (event: FC retries it) | quota-exhausted | upstream-error (HTTP) | partial (sweep)
    _field("dryRunMode", TEXT),  # true | false
    _field("originRequestId", TEXT),  # a bulk rerun's HTTP request (its own, or the one it continues)
    _field("error", TEXT),  # event, outcome retry: the DataWorks error code behind it, or an unexpected error's type
    # A sweep's summary only (sweep.py): what it looked at and what it found.
    _field("projects", TEXT),  # the workspaces swept, comma-separated
    _field("windowStart", LONG),  # epoch ms: failed runs that ended from here ...
    _field("windowEnd", LONG),  # ... to here (now - RERUN_SWEEP_GRACE_SECONDS)
    _field("listed", LONG),  # failed runs ListTaskInstances answered in the window
    _field("alreadyDecided", LONG),  # of those, decided before (their FC async task existed: 409)
    _field("missed", LONG),  # of those, undecided: claimed now and handed to a decision
    _field("left", LONG),  # of those, not claimed in this sweep's time: the next sweep takes them
    _field("calls", LONG),  # DataWorks and FC calls this sweep made
    _field("pages", LONG),  # ListTaskInstances pages among them
)


def _all_fields() -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for field in INSTANCE_FIELDS + SUMMARY_FIELDS + STORM_FIELDS:
        if fields.setdefault(field.name, field) != field:
            raise ValueError(f"{field.name} is defined twice, differently")
    return fields


FIELDS = _all_fields()
INSTANCE_NAMES = tuple(f.name for f in INSTANCE_FIELDS)
SUMMARY_NAMES = tuple(f.name for f in SUMMARY_FIELDS)
STORM_NAMES = tuple(f.name for f in STORM_FIELDS)
# Summary fields a record may leave out (written only in some outcomes). Never `outcome`: queries
# and alerts on it must see every invocation.
SUMMARY_OPTIONAL = frozenset(
    {
        "error",
        "held",
        "projects",
        "windowStart",
        "windowEnd",
        "listed",
        "alreadyDecided",
        "missed",
        "left",
        "calls",
        "pages",
    }
)


def json_key_indices() -> list[dict]:
    """The `JsonKeyIndices` of the Logstore's json index on `message` (template.yml)."""
    indices = []
    for field in FIELDS.values():
        index = {"Name": field.name, "Type": field.type}
        if field.alias is not None:
            index["Alias"] = field.alias
        indices.append(index)
    return indices
