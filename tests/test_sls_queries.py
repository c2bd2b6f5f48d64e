"""Every SLS query of the alerts and the dashboard uses only what the records' index defines.

An SLS query is `<search> | <SQL>`. In the search part a record key is `message.<key>` (the json
index on the entry's `message`); in SQL it is the key's alias, or `"message.<key>"` for a key with
none. This checks, without an account, that each query names only keys of dwrerun/schema.py
(which the template's index is checked against), in the right form, and uses them with the right
type: numbers for long and double keys, text for text keys. SLS itself (its functions, its
tokenizer) is not emulated: that each query runs is checked only in the console (docs/alerts-and-dashboard.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sls_views
from dwrerun import schema

# Fields of the log entry itself (FC's), indexed beside the json `message`.
ENTRY_SEARCH_KEYS = {"__topic__", "functionName"}
ENTRY_SQL_KEYS = {"__time__", "__topic__", "functionName"}
SQL_WORDS = set(
    """select from where and or not group by order asc desc limit as is null in like between case when
    then else end having distinct over partition true false log interval on join with union all filter
    rows range preceding following unbounded current row""".split()
)
NUMERIC_FUNCTIONS = {"sum", "avg", "approx_percentile", "stddev", "variance"}
ALIASES = {f.alias: f for f in schema.FIELDS.values() if f.alias is not None}
NUMERIC = {schema.LONG, schema.DOUBLE}


def problems(query: str) -> list[str]:
    """What is wrong with one query against the records' index; empty when nothing is."""
    search, _, sql = query.partition("|")
    return _search_problems(search) + (_sql_problems(sql) if sql.strip() else [])


def _search_problems(search: str) -> list[str]:
    found = []
    for key, operator, value in re.findall(r"([A-Za-z_][\w.]*)\s*(:|>=|<=|>|<|=)\s*(\"[^\"]*\"|[^\s()]+)", search):
        if key in ENTRY_SEARCH_KEYS:
            continue
        name = key.removeprefix("message.")
        field = schema.FIELDS.get(name) if key.startswith("message.") else None
        if field is None:
            hint = f" (search a record key as message.{key})" if key in schema.FIELDS else ""
            found.append(f"search: {key} is not an indexed key{hint}")
        elif field.type in NUMERIC and not re.fullmatch(r"-?\d+(\.\d+)?", value):
            found.append(f"search: {key} is {field.type}, compared with {value}")
        elif field.type == schema.TEXT and operator != ":":
            found.append(f"search: {key} is text, compared with {operator}")
    return found


def _sql_problems(sql: str) -> list[str]:
    found = []
    text = re.sub(r"'(?:[^']|'')*'", "'…'", sql)  # string literals say nothing about keys
    defined = set(re.findall(r"\bas\s+(\w+)", text, flags=re.I))
    defined |= set(re.findall(r'\bas\s+"([^"]+)"', text, flags=re.I))
    for quoted in re.findall(r'"([^"]+)"', text):
        if quoted in defined:
            continue
        name = quoted.removeprefix("message.")
        if not (quoted.startswith("message.") and name in schema.FIELDS):
            found.append(f'SQL: "{quoted}" is neither an alias made here nor "message.<indexed key>"')
    bare = re.sub(r'"[^"]*"', " ", text)
    if re.search(r"\bmessage\.\w", bare):
        found.append('SQL: a record key is its alias here (or "message.<key>" for one without)')
    for match in re.finditer(r"\b([A-Za-z_]\w*)\b(\s*\()?", bare):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in SQL_WORDS or word in defined or word in ENTRY_SQL_KEYS:
            continue
        if word not in ALIASES:
            found.append(f"SQL: {word} is not an alias of the index")
    for function, word in re.findall(r"\b(\w+)\s*\(\s*(\w+)\s*[,)]", bare):
        if function.lower() in NUMERIC_FUNCTIONS and word in ALIASES and ALIASES[word].type not in NUMERIC:
            found.append(f"SQL: {function}({word}) needs a number, {word} is {ALIASES[word].type}")
    for word, literal in re.findall(r"\b(\w+)\s*(?:=|!=|<>|>=|<=|>|<|\blike\b)\s*('…'|-?\d+(?:\.\d+)?)", bare):
        field = ALIASES.get(word)
        if field is None or word in defined:
            continue
        if literal == "'…'" and field.type != schema.TEXT:
            found.append(f"SQL: {word} is {field.type}, compared with text")
        if literal != "'…'" and field.type not in NUMERIC:
            found.append(f"SQL: {word} is text, compared with a number")
    return found


VIEWS = sls_views.load()  # template.yml's alerts and charts, as ROS resolves them (Fn::Join, Ref)
QUERIES = {f"{rule.logical_id} query": rule.query for rule in VIEWS.alerts}
QUERIES |= {f"Dashboard: {chart.title}": chart.query for chart in VIEWS.charts}


def test_the_template_has_the_alerts_and_panels_these_checks_cover():
    assert {rule.name.removeprefix("dwrerun-") for rule in VIEWS.alerts} == {
        "cap-reached",
        "not-retryable",
        "rerun-refused",
        "quota-exhausted",
        "config-error",
        "retries-exhausted",
        "storm",
        "events-missing",
    }
    assert len(VIEWS.charts) == 11


@pytest.mark.parametrize("where", QUERIES)
def test_each_query_uses_only_indexed_keys_with_their_types_and_aliases(where):
    assert problems(QUERIES[where]) == []


ALERT_COLUMNS = (
    "taskId",
    "taskName",
    "instanceId",
    "runNumber",
    "reason",
    "errorCode",
    "rule",
    "matchedLine",
    "detail",
)


def test_each_alert_groups_by_task_and_cause_and_selects_what_its_message_names():
    for rule in VIEWS.alerts:
        if rule.logical_id == "EventsMissingAlert":
            continue  # one per workspace: its own test below
        # one alert per task and cause; a storm's is one per storm (its id is the `rule` column)
        assert rule.group_fields == (("rule", "reason") if rule.name.endswith("-storm") else ("taskId", "reason"))
        columns = rule.query.partition("|")[2].split(" from log ")[0]
        for column in ALERT_COLUMNS:
            # each column by its own name, as the annotation refers to it: `x` or `... as x`
            assert re.search(rf"(^|,)\s*({column}|.* as {column})\s*(,|$)", columns.replace("select ", "", 1)), (
                column,
                rule.logical_id,
            )
        # the task and instance, the run number, the rule or reason, the matched log line
        for column in ALERT_COLUMNS:
            assert "${" + column + "}" in rule.annotations["desc"], (column, rule.logical_id)
        assert "message.instanceId: ${instanceId}" in rule.annotations["records"]


def test_the_events_missing_alert_names_the_workspace_and_what_to_check():
    (rule,) = [r for r in VIEWS.alerts if r.logical_id == "EventsMissingAlert"]
    assert rule.group_fields == ("projectId",)
    columns = rule.query.partition("|")[2].split(" from log ")[0]
    for column in ("projectId", "missed", "instanceId", "taskName"):
        assert f" as {column}" in columns and "${" + column + "}" in rule.annotations["desc"]
    for check in ("rule's pattern", "OpenEvent", "distribution channel", "trigger", "event age"):
        assert check in rule.annotations["desc"]
    assert "message.projectId: ${projectId}" in rule.annotations["records"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("message.kind: instance and message.taskname: x", "message.taskname is not an indexed key"),
        ("message.kind: instance and reason: cap-reached", "search a record key as message.reason"),
        ("message.runNumber: four", "message.runNumber is long, compared with four"),
        ("message.reason > 3", "message.reason is text, compared with >"),
        ("* | select reasons from log", "reasons is not an alias of the index"),
        ("* | select message.reason from log", "a record key is its alias here"),
        ('* | select "message.reasons" from log', '"message.reasons" is neither'),
        ("* | select sum(taskName) as n from log", "sum(taskName) needs a number"),
        ("* | select count(*) as n from log where runNumber = '4'", "runNumber is long, compared with text"),
        ("* | select count(*) as n from log where reason = 4", "reason is text, compared with a number"),
    ],
)
def test_a_query_with_a_mistake_is_caught(query, problem):
    assert any(problem in p for p in problems(query)), problems(query)


def test_a_correct_query_passes():
    query = (
        'message.kind: instance and message.runNumber > 3 and __topic__: "FCLogs:dwrerun-event" | '
        'select taskName, count(*) as n, avg(lookupMs) as "p", "message.message" as detail from log '
        "where reason = 'cap-reached' and runNumber >= 4 group by taskName order by n desc"
    )
    assert problems(query) == []


def test_the_deploy_guides_sample_queries_pass_too():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    section = guide.split("## Try it", 1)[1].split("\n## ", 1)[0]
    samples = [line for line in section.splitlines() if line.startswith(("__topic__", "message."))]
    assert len(samples) >= 2
    for sample in samples:
        assert problems(sample) == [], sample
