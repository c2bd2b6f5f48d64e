"""The local SLS (localcloud.sls) runs SLS queries over the local Logstore as SLS would.

It is what `make demo` and `make report` evaluate template.yml's alert and chart queries with,
so every one of those queries is run here too: a query it cannot run fails this test, not a demo.
"""

from __future__ import annotations

import json

import pytest

import sls_views
from dwrerun import records, schema, storm
from dwrerun.outcome import Origin, Outcome
from localcloud import sls

NOW = 1_800_000_000.0
INDEX = sls.Index(schema.json_key_indices())


class FakeInstance:
    """What records.instance_record reads from an Outcome's policy.Instance."""

    def __init__(self, **fields):
        self.__dict__.update(
            dict(
                run_number=1,
                project_id=48213,
                task_id=700000004417,
                task_name="ods_orders_di",
                project_env="Prod",
                status="Failure",
                finished_time=int((NOW - 600) * 1000),
            )
        )
        self.__dict__.update(fields)


def line(record: dict | str, age: float = 0, topic: str = "FCLogs:dwrerun-event") -> dict:
    """A Logstore line as FC writes it: the record, a JSON string, in `message`."""
    message = record if isinstance(record, str) else json.dumps(record)
    return {"__time__": int(NOW - age), "__topic__": topic, "functionName": topic.split(":")[-1], "message": message}


def entry(record: dict | str, age: float = 0, topic: str = "FCLogs:dwrerun-event") -> sls.Entry:
    return sls.entry_of(line(record, age, topic))


def instance(*args, **fields) -> sls.Entry:
    return sls.entry_of(instance_line(*args, **fields))


def instance_line(reason="eligible", decision=schema.RERUN, success=True, age=0, instance_id=1, **fields) -> dict:
    """The line of an instance record, written by the function's own record writer."""
    details = {k: fields.pop(k) for k in list(fields) if k in FakeInstance().__dict__}
    origin = Origin(
        fields.pop("trigger", schema.EVENTBRIDGE),
        fields.pop("request_id", f"1-req-{instance_id}"),
        fields.pop("comment", None),
        fields.pop("origin_request_id", None),
    )
    message = fields.pop("message", f"why {reason}")
    outcome = Outcome(instance_id, decision, reason, message, success, instance=FakeInstance(**details), **fields)
    return line(records.instance_record(outcome, origin), age)


def run(entries, text, **window):
    return sls.query(entries, text, INDEX, now=NOW, **window)


# --- the search part ---------------------------------------------------------------------------


def test_search_terms_and_or_not_and_parentheses_select_records():
    entries = [
        instance("eligible", instance_id=1),
        instance("cap-reached", schema.SKIP, None, instance_id=2),
        instance("eligible", instance_id=3, trigger=schema.HTTP),
        entry("FC Invoke Start RequestId: 1-abc"),  # FC's own line: no record
    ]

    def ids(search):
        return [row["instanceId"] for row in run(entries, search)]

    assert ids("message.kind: instance and message.trigger: eventbridge") == [1, 2]
    assert ids("message.reason: cap-reached or message.trigger: http") == [2, 3]
    assert ids("message.kind: instance and not message.reason: eligible") == [2]
    assert ids("message.kind: instance and (message.instanceId > 2 or message.instanceId = 1)") == [1, 3]
    assert ids("message.trigger: HTTP") == [3]  # values are not (SLS's text index is not)
    assert ids("message.reason: cap*") == [2]
    assert len(ids("*")) == 4 and len(ids("")) == 4
    assert ids("message.kind: instance and message.matchedLine: *") == []  # * needs a value


def test_search_on_fc_fields_of_the_entry():
    entries = [instance(instance_id=1), entry(json.loads(json.dumps({"kind": "instance", "instanceId": 2})))]
    http = sls.entry_of({"__time__": int(NOW), "__topic__": "FCLogs:dwrerun-http", "functionName": "dwrerun-http"})
    rows = run([*entries, http], '__topic__: "FCLogs:dwrerun-http"')
    assert len(rows) == 1 and rows[0]["functionName"] == "dwrerun-http"


@pytest.mark.parametrize(
    ("search", "problem"),
    [
        ("message.reasons: x", "message.reasons is not an indexed key"),
        ("reason: x", "reason is not an indexed key"),
        ("message.reason > 3", "is text, compared with >"),
        ("message.runNumber > many", "is a number, compared with 'many'"),
        ("cap-reached", "free text is not emulated"),
        ("(message.kind: instance", "ends too early"),
        ("message.kind: instance )", "unexpected ')'"),
    ],
)
def test_a_search_this_cannot_run_says_what_is_wrong(search, problem):
    with pytest.raises(sls.QueryError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        run([instance()], search)


# --- the SQL part ------------------------------------------------------------------------------


def test_sql_sees_each_key_by_alias_and_as_message_key_typed_as_the_index_types_it():
    (row,) = run(
        [instance(lookup_ms=12.34, rule="oom", matched_line="java.lang.OutOfMemoryError")],
        'message.kind: instance | select instanceId, "message.instanceId" as same, success, "message.message" as '
        "detail, lookupMs, rerunMs, finishedTime, rule, matchedLine, typeof(instanceId) as t from log",
    )
    assert row["instanceId"] == row["same"] == 1 and row["t"] == "integer"
    assert row["success"] == "true"  # a JSON true is the text "true" in a text key
    assert row["detail"] == "why eligible"
    assert row["lookupMs"] == 12.3 and row["rerunMs"] is None  # a JSON null is SQL NULL
    assert row["finishedTime"] == int((NOW - 600) * 1000)
    assert (row["rule"], row["matchedLine"]) == ("oom", "java.lang.OutOfMemoryError")


def test_sls_functions_date_trunc_count_if_percentile_max_by_now():
    entries = [instance(instance_id=n, age=n * 100, lookup_ms=float(n)) for n in range(1, 11)]
    (row,) = run(
        entries,
        "message.kind: instance | select date_trunc('hour', max(__time__)) as hour, count_if(instanceId > 7) as big, "
        "approx_percentile(lookupMs, 0.5) as p50, approx_percentile(lookupMs, 0.95) as p95, "
        "max_by(instanceId, __time__) as newest, min_by(instanceId, __time__) as oldest, "
        "to_unixtime(now()) - max(__time__) as age from log",
        start="-1h",
    )
    newest = int(NOW) - 100
    assert row["hour"] == newest - newest % 3600
    assert row["big"] == 3
    assert (row["p50"], row["p95"]) == (5.0, 10.0)  # nearest rank
    assert (row["newest"], row["oldest"]) == (1, 10)
    assert row["age"] == pytest.approx(100)


def test_like_is_case_sensitive_and_window_functions_work():
    entries = [
        instance(instance_id=1, age=30, error_code="Throttling.User", run_number=1),
        instance(instance_id=1, age=20, error_code="throttling.user", run_number=2),
        instance(instance_id=1, age=10, run_number=3),
    ]
    rows = run(
        entries,
        "message.kind: instance | select runNumber, errorCode like 'Throttling%' as throttled, "
        "lead(runNumber) over (partition by instanceId order by __time__) as next from log order by runNumber",
    )
    assert [(r["throttled"], r["next"]) for r in rows] == [(1, 2), (0, 3), (None, None)]
    # the same without FROM: the window's ORDER BY, inside parentheses, is not where FROM goes
    assert rows == run(
        entries,
        "message.kind: instance | select runNumber, errorCode like 'Throttling%' as throttled, "
        "lead(runNumber) over (partition by instanceId order by __time__) as next order by runNumber",
    )


@pytest.mark.parametrize(
    "sql",
    [
        "select reason, count(*) as n group by reason order by n desc, reason",
        "select reason, count(*) as n from log group by reason order by n desc, reason",
        "SELECT reason, count(*) AS n GROUP BY reason ORDER BY n DESC, reason",
    ],
)
def test_an_analytic_statement_without_from_reads_the_logstore_as_sls_does(sql):
    # SLS: without a FROM clause, an analytic statement analyzes the current Logstore (its query
    # syntax page). The queries an operator copies from the console often leave it out.
    entries = [instance(instance_id=n, reason=r) for n, r in enumerate(["eligible", "cap-reached", "eligible"])]
    rows = run(entries, f"message.kind: instance | {sql}")
    assert rows == [{"reason": "eligible", "n": 2}, {"reason": "cap-reached", "n": 1}]


def test_the_time_range_is_relative_to_now():
    entries = [instance(instance_id=1, age=30), instance(instance_id=2, age=400), instance(instance_id=3, age=90000)]
    assert [r["instanceId"] for r in run(entries, "*", start="-5m")] == [1]
    assert [r["instanceId"] for r in run(entries, "*", start="-24h")] == [1, 2]
    assert [r["instanceId"] for r in run(entries, "*", start="-604800s", end="-1m")] == [2, 3]
    with pytest.raises(sls.QueryError, match="expected 'now' or -<n>"):
        run(entries, "*", start="yesterday")


def test_an_sql_function_sls_has_but_this_does_not_fails_loudly():
    with pytest.raises(sls.QueryError, match="no such function: histogram"):
        run([instance()], "* | select histogram(reason) from log")


def test_an_index_key_of_another_type_is_refused():
    with pytest.raises(sls.QueryError, match="type 'json' is not text, long or double"):
        sls.Index([{"Name": "x", "Type": "json"}])


def test_the_logstore_files_are_read_in_time_order(tmp_path):
    older = {"__time__": 100, "__topic__": "FCLogs:a", "functionName": "a", "message": '{"kind": "summary"}'}
    newer = {"__time__": 200, "__topic__": "FCLogs:b", "functionName": "b", "message": "not json {"}
    (tmp_path / "b.jsonl").write_text(json.dumps(newer) + "\n\n")
    (tmp_path / "a.jsonl").write_text(json.dumps(older) + "\n")
    (tmp_path / "other.txt").write_text("ignored")
    first, second = sls.read_logstore(tmp_path)
    assert (first.time, first.record) == (100, {"kind": "summary"})
    assert (second.time, second.record, second.message) == (200, None, "not json {")


# --- template.yml's own queries ----------------------------------------------------------------


def every_kind_of_record() -> list[dict]:
    """The lines of a Logstore holding each kind of record the function writes."""
    summary = records.summary_record(Origin(schema.EVENTBRIDGE, "1-req-9"), [], 3.0, dryRunMode=False, outcome="retry")
    due = "2027-01-15T08:00:00Z"
    return [
        instance_line(instance_id=1, lookup_ms=20.0, rerun_ms=5.0, rule="default", failure_class="unknown"),
        instance_line("cap-reached", schema.SKIP, None, instance_id=2, run_number=4, age=5),
        instance_line(
            "not-retryable", schema.SKIP, None, instance_id=3, rule="sql-syntax", matched_line="ParseException: x"
        ),
        # a scheduled rerun and its delayed invocation's rerun; another still waiting
        instance_line(
            "eligible", schema.SCHEDULED, None, instance_id=4, delay_seconds=120, due_at=due, async_task_id="t4", age=9
        ),
        instance_line(instance_id=4, due_at=due, async_task_id="t4", rerun_ms=3.0, rule="default"),
        instance_line(
            "eligible", schema.SCHEDULED, None, instance_id=6, delay_seconds=240, due_at=due, async_task_id="t6"
        ),
        instance_line("deferred", schema.SKIP, None, instance_id=5, error_code="Throttling.User"),
        # a storm (storm.py): opened, one instance held, one that gave up
        line(
            records.storm_record(storm.Note(storm.OPENED, STORM_CAUSE, 1, "opened", 7, 20), Origin("eventbridge", "r"))
        ),
        instance_line(
            "storm", schema.HELD, None, instance_id=8, storm_cause=STORM_CAUSE.label, storm_id=STORM_ID, due_at=due
        ),
        instance_line(
            "storm-hold-expired", schema.SKIP, None, instance_id=9, storm_cause=STORM_CAUSE.label, storm_id=STORM_ID
        ),
        # the sweep's decision of a failed run whose event was lost (docs/sweep.md)
        instance_line(instance_id=10, trigger=schema.SWEEP, async_task_id="t10", swept=True, missed_event=True),
        line(summary),
    ]


STORM_CAUSE = storm.Cause(10001, "default")
STORM_ID = storm.release_tag(STORM_CAUSE, 1)


@pytest.mark.parametrize(
    "view",
    [*(r.logical_id for r in sls_views.load().alerts), *(c.title for c in sls_views.load().charts)],
)
def test_each_alert_and_chart_query_of_the_template_runs_locally(view):
    views = sls_views.load()
    (query, start, end) = next(
        (v.query, v.start, v.end)
        for v in [*views.alerts, *views.charts]
        if view in (getattr(v, "logical_id", ""), v.title)
    )
    entries = [sls.entry_of(line) for line in every_kind_of_record()]
    rows = sls.query(entries, query, sls.Index(views.json_key_indices), start=start, end=end, now=NOW)
    assert isinstance(rows, list)
