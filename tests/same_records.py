"""Same records before and after: the fault matrix's records, compared with a golden file.

Registered from tests/conftest.py (`pytest_plugins = [..., "same_records"]`); the demo's half and
the checks of this plugin are in tests/test_same_records.py, docs/reliability.md ("Same records
before and after") says why and how to update.

Design. The fault matrix (tests/test_faults.py) is not run twice: around each of its scenarios an
autouse fixture collects the records that scenario's own run wrote, normalises them, and at
teardown compares them with the scenario's entry in tests/golden/faults.json (keyed by the test's
id without the file, e.g. `test_a_transient_fault_ends_in_exactly_one_rerun[throttled-reads]`).
A difference fails the scenario at teardown ("ERROR at teardown of test_…"), naming the
invocation, the record and the field. A scenario whose own assertions failed is not compared: its
own failure says more. Nothing in tests/test_faults.py changed for this; the records come from
where the scenario already puts them:
- the local Logstore file every harness of the scenario writes, `tmp_path/logstore.jsonl`
  (tests/conftest.py make_function / make_instances): every stdout line that is a JSON object,
  grouped into invocation attempts by FC's `FC Invoke Start RequestId: …` lines (an FC retry
  keeps its request id, so it is a new attempt, not a new request);
- the scenarios that call `rerun.run` directly (the `run_directly` fixture) write no Logstore line:
  for them, the records of the outcomes `rerun.run` returned (or of the `RetryLater` it raised), one group
  per call, captured by wrapping `dwrerun.rerun.run` for that test only. These are the records the
  event function would write.

Normalisation (`normalise`) masks only what varies between runs of unchanged code:
- FC request ids (`1-<hex epoch>-<24 hex>`, in any string) -> `<fc-request-id>`, DataWorks request
  ids (upper-case UUIDs) -> `<dataworks-request-id>`: the fields requestId, dataworksRequestId,
  originRequestId and the same ids inside message text;
- durations: lookupMs, rerunMs, durationMs -> `<ms>` (null stays null: whether a call was timed is
  behaviour);
- wall-clock times: finishedTime (the emulator's "now" at seeding), a sweep's windowStart and
  windowEnd -> `<time>`, and a sweep's pages and calls -> `<n>` when not 0 (its window spans two
  business dates, or three when it crosses midnight China time: the time of day decides), and dueAt and
  ISO-8601 times in text -> `<time>`, except in the `run_directly` scenarios, whose clock is
  patched (their dueAt is exact and compared);
- attempts (the calls made for an instance, retries included) -> `<n>` when not 0: it varies run to
  run. The read order is random by design (`rerun.shuffle`, a seam of randomness), and calls shared
  by several instances (GetTask, cached per task; the one RerunTaskInstances of a chunk) count for
  whichever instance came first; and after a malformed answer the emulator closes the connection,
  so a retry on the pooled connection may or may not cost one more try. The messages that state a
  count ("6 attempts failed", "3 attempt(s)") are compared exactly: they are stable;
- in the two scenarios of `RACES`, the one value a race of the local cloud decides (named there);
- the demo only: delaySeconds and "in N s" in text -> `<delay>`. The demo's schedule draws its
  jitter from `random` in unseeded instance processes (2-4 s); the fault matrix's scheduled
  reruns patch `schedule.uniform`, and its Logstore scenarios reschedule nothing
  (RERUN_BACKOFF_BASE_SECONDS=0), so there the delay is exact.
Everything else is compared exactly: decision, reason, success, message text, rule, failureClass,
matchedLine, runNumber, errorCode, asyncTaskId, eventId, the summary's counts and outcome, field order.

Order. Within an invocation its records are in the order written (target order, then the
summary): exact. Across invocations, in-process scenarios keep the order they ran in; the
`separate_process` scenarios (two FC instances at once) and the demo sort their invocations by
their normalised JSON, since which instance serves which copy, and which copy wins a race, is
thread timing.

Updating: `.venv/bin/pytest -n 0 -p no:randomly tests/test_faults.py tests/test_same_records.py
--update-golden` rewrites the entries of the scenarios (and the demo) that ran; entries are merged
into the file under a lock, so `-n 2` works too.
"""

from __future__ import annotations

import fcntl
import functools
import json
import re
import tempfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
FAULTS_GOLDEN = GOLDEN / "faults.json"
DEMO_GOLDEN = GOLDEN / "demo.json"
FAULTS_MODULE = "test_faults"

FC_REQUEST_ID = re.compile(r"\b1-[0-9a-f]{8}-[0-9a-f]{24}\b")
DATAWORKS_REQUEST_ID = re.compile(r"\b[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\b")
ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
DELAY_IN_TEXT = re.compile(r"\bin \d+ s\b")
DURATIONS = ("lookupMs", "rerunMs", "durationMs")

# Scenarios where a race of the local cloud, not the code, decides a value: (field, pattern, mask).
RACES = {
    # The emulator closes the connection after the HTML body: the next try on the pooled connection
    # fails as ConnectionError or reaches DataWorks as MalformedAnswer (the scenario allows both).
    "test_a_log_that_cannot_be_read_never_holds_a_rerun_back[log-read-malformed-throughout]": [
        ("message", re.compile(r"\((?:MalformedAnswer|ConnectionError), "), "(<MalformedAnswer|ConnectionError>, "),
    ],
    # Two events at once on two instances: which event id's invocation wins the rerun is timing.
    "test_two_failure_events_for_one_instance_at_once_rerun_it_once": [
        ("eventId", re.compile(r"^evt-[12]$"), "<evt-1|evt-2>"),
    ],
}
MAX_DIFFERENCES = 12

update_key = pytest.StashKey[dict]()
deselected_key = pytest.StashKey[set]()


# --- normalisation ---------------------------------------------------------------------------------


def _text(value: str, *, fixed_clock: bool, jitter: bool) -> str:
    value = FC_REQUEST_ID.sub("<fc-request-id>", value)
    value = DATAWORKS_REQUEST_ID.sub("<dataworks-request-id>", value)
    if not fixed_clock:
        value = ISO_TIME.sub("<time>", value)
    if jitter:
        value = DELAY_IN_TEXT.sub("in <delay> s", value)
    return value


def normalise(record: dict, *, fixed_clock: bool = False, jitter: bool = False) -> dict:
    """The record with what varies between runs masked (the module docstring lists what)."""
    out = {}
    for name, value in record.items():
        if name in DURATIONS and value is not None:
            value = "<ms>"
        elif name in ("attempts", "pages", "calls") and value:
            value = "<n>"
        elif name in ("finishedTime", "windowStart", "windowEnd") and value is not None:
            value = "<time>"
        elif name == "dueAt" and value is not None and not fixed_clock:
            value = "<time>"
        elif name == "delaySeconds" and value is not None and jitter:
            value = "<delay>"
        elif isinstance(value, str):
            value = _text(value, fixed_clock=fixed_clock, jitter=jitter)
        elif isinstance(value, (dict, list)):
            value = json.loads(_text(json.dumps(value), fixed_clock=fixed_clock, jitter=jitter))
        out[name] = value
    return out


def logstore_invocations(lines: list[dict]) -> list[list[dict]]:
    """A Logstore file's records (the stdout lines that are JSON objects), one list per invocation
    attempt, in the order the attempts started."""
    attempts: list[list[dict]] = []
    current: dict[str, list[dict]] = {}  # request id -> its latest attempt
    for line in lines:
        message, request_id = line.get("message", ""), line.get("requestId")
        if message.startswith("FC Invoke Start RequestId: "):
            current[request_id] = []
            attempts.append(current[request_id])
            continue
        if line.get("stream") != "stdout" or not message.startswith("{"):
            continue
        try:
            record = json.loads(message)
        except ValueError:
            continue
        if isinstance(record, dict):
            if request_id not in current:  # a record outside FC's Start/End lines: its own group
                current[request_id] = []
                attempts.append(current[request_id])
            current[request_id].append(record)
    return [attempt for attempt in attempts if attempt]


def read_logstore(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def unraced(record: dict, races) -> dict:
    for field, pattern, mask in races:
        if isinstance(record.get(field), str):
            record[field] = pattern.sub(mask, record[field])
    return record


def normalised(
    invocations: list[list[dict]], *, ordered: bool, fixed_clock: bool = False, jitter: bool = False, races=()
) -> list[list[dict]]:
    groups = [
        [unraced(normalise(r, fixed_clock=fixed_clock, jitter=jitter), races) for r in group] for group in invocations
    ]
    if not ordered:
        groups.sort(key=lambda group: json.dumps(group, sort_keys=True))
    return groups


# --- the comparison, readable --------------------------------------------------------------------


def _shown(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _label(n: int, record) -> str:
    if not isinstance(record, dict):
        return f"record {n}"
    instance = f", instance {record['instanceId']}" if record.get("instanceId") is not None else ""
    return f"record {n} ({record.get('kind')}{instance})"


def differences(golden: list, actual: list) -> list[str]:
    """Each difference as one line: its place (invocation, record, field), then golden and now."""
    found = []
    if len(golden) != len(actual):
        found.append(f"{len(golden)} invocations in the golden, {len(actual)} now")
    for i, (old, new) in enumerate(zip(golden, actual, strict=False), 1):
        if len(old) != len(new):
            found.append(f"invocation {i}: {len(old)} records in the golden, {len(new)} now")
        for n, (was, now) in enumerate(zip(old, new, strict=False), 1):
            where = f"invocation {i}, {_label(n, now)}"
            if list(was) != list(now):
                found.append(f"{where}: fields {list(was)} in the golden, {list(now)} now")
            for name in was:
                if name in now and was[name] != now[name]:
                    found.append(
                        f"{where}, field {name!r}:\n      golden: {_shown(was[name])}\n      now:    {_shown(now[name])}"
                    )
        for n, record in enumerate(old[len(new) :], len(new) + 1):
            found.append(f"invocation {i}, {_label(n, record)} only in the golden: {_shown(record)}")
        for n, record in enumerate(new[len(old) :], len(old) + 1):
            found.append(f"invocation {i}, {_label(n, record)} only now: {_shown(record)}")
    for i, group in enumerate(golden[len(actual) :], len(actual) + 1):
        found.append(f"invocation {i} only in the golden: {_shown(group)}")
    for i, group in enumerate(actual[len(golden) :], len(golden) + 1):
        found.append(f"invocation {i} only now: {_shown(group)}")
    return found


def compare(golden, actual, name: str, golden_file: Path) -> None:
    """Fails with the differences, each naming its place, if `actual` is not the golden."""
    if golden == actual:
        return
    found = differences(golden, actual)
    shown = found[:MAX_DIFFERENCES] + (
        [f"... and {len(found) - MAX_DIFFERENCES} more"] if len(found) > MAX_DIFFERENCES else []
    )
    pytest.fail(
        f"records of {name} differ from {golden_file.relative_to(golden_file.parents[2])}:\n  "
        + "\n  ".join(shown or ["(the same content in another form)"])
        + "\n(if the change is intended: pytest --update-golden, docs/reliability.md 'Same records before and after')",
        pytrace=False,
    )


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@functools.cache
def golden_file(path: Path) -> dict:
    """The golden file, read once per process (it changes only at the end of an update run)."""
    return load(path)


def merge_into(path: Path, entries: dict) -> None:
    """Writes `entries` into the golden file at `path`, keeping its other entries; under a lock, as
    every xdist worker merges its own scenarios."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"dwrerun-golden-{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load(path)
        data.update(entries)
        path.write_text(json.dumps(dict(sorted(data.items())), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def scenario_key(item) -> str:
    """The test's id without its file, and without the "@group" suffix xdist's loadgroup adds."""
    name = item.nodeid.split("::", 1)[1]
    for mark in item.iter_markers("xdist_group"):
        name = name.removesuffix(f"@{mark.args[0]}")
    return name


def updating(config) -> bool:
    return config.getoption("update_golden")


def record_update(config, path: Path, key: str, value) -> None:
    config.stash.setdefault(update_key, {}).setdefault(path, {})[key] = value


# --- pytest hooks and the fixture ----------------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="write the records of the fault matrix and the demo that ran into tests/golden/ instead of comparing",
    )


def pytest_deselected(items):
    if items:
        items[0].config.stash.setdefault(deselected_key, set()).update(i.nodeid for i in items)


call_failed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[call_failed] = report.failed
    return report


def pytest_sessionfinish(session):
    for path, entries in session.config.stash.get(update_key, {}).items():
        merge_into(path, entries)


@pytest.fixture(autouse=True)
def same_records(request, monkeypatch):
    """Around each fault-matrix scenario: its records against tests/golden/faults.json."""
    if request.module.__name__ != FAULTS_MODULE:
        yield
        return
    direct = "run_directly" in request.fixturenames
    calls: list[list[dict]] = []
    if direct:
        from dwrerun import records, rerun

        real_run = rerun.run

        def run(job, *args, **kwargs):
            # The records the outcomes make, as the event function would write them.
            try:
                outcomes = real_run(job, *args, **kwargs)
            except rerun.RetryLater as raised:
                calls.append([records.instance_record(o, job.origin) for o in raised.outcomes])
                raise
            calls.append([records.instance_record(o, job.origin) for o in outcomes])
            return outcomes

        monkeypatch.setattr(rerun, "run", run)
    yield
    if request.node.stash.get(call_failed, True):
        return
    key = scenario_key(request.node)
    races = RACES.get(key, ())
    if direct:
        actual = normalised(calls, ordered=True, fixed_clock=True, races=races)
    else:
        tmp_path = request.node.funcargs.get("tmp_path")
        lines = read_logstore(tmp_path / "logstore.jsonl") if isinstance(tmp_path, Path) else []
        ordered = request.node.get_closest_marker("separate_process") is None
        actual = normalised(logstore_invocations(lines), ordered=ordered, races=races)
    if updating(request.config):
        record_update(request.config, FAULTS_GOLDEN, key, actual)
        return
    golden = golden_file(FAULTS_GOLDEN)
    if key not in golden:
        pytest.fail(f"no records for {key} in tests/golden/faults.json: run pytest --update-golden", pytrace=False)
    compare(golden[key], actual, key, FAULTS_GOLDEN)
