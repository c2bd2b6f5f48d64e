"""A local SLS query over the local Logstore: `<search> | <SQL>` on `.localcloud/logs/*.jsonl`.

The alerts and the dashboard in template.yml are SLS queries over the records' index. This runs
those same query strings locally, so `make demo` can say what the alerts would have fired and
`make report` can draw the dashboard's panels, without an account and without a second copy of
any query.

How each part maps. The index is the one template.yml creates, passed in as its json index on
the entry's `message` (`JsonKeyIndices`: name, type, alias; dwrerun/schema.py's
`json_key_indices()`, which tests/test_schema.py holds equal to the template's):

- The search part (before `|`): `message.<key>: <value>` terms (also `__topic__`,
  `functionName`), `*`, comparisons `> >= < <= =` on long/double keys, joined by `and`, `or`,
  `not` and parentheses. A value matches the whole field, case-insensitively; `*` alone matches
  any value the field has, a trailing `*` a prefix. SLS matches tokens of the text (its
  delimiters), which for the single-word values the records hold (`instance`, `eventbridge`,
  `cap-reached`) is the same.
- The SQL part runs in SQLite on a table `log` with one row per entry in the time range that the
  search matched (a statement without FROM reads it, as SLS reads the Logstore): `__time__`, `__topic__`, `functionName`, and each record key by its alias and as
  `"message.<key>"`, typed as the index types it (text keys hold `true`/`false` for booleans, a
  JSON null is SQL NULL). SLS's functions that SQLite lacks are added: `date_trunc` (on unix
  seconds, UTC), `count_if`, `approx_percentile` (exact here: the nearest-rank value), `max_by`,
  `min_by`, `now()` (unix seconds of the evaluation time; `to_unixtime` passes a number through),
  and `like` is case-sensitive as in SLS.

What is not emulated: SLS's tokenizer and phrase search, SQL functions the queries do not use (a
query calling one fails here with SQLite's "no such function"), and SLS's limits. Each template
query is run here by tests/test_local_sls.py, so a query this cannot run fails a test rather than
a demo.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ENTRY_KEYS = ("__time__", "__topic__", "functionName")
_RELATIVE = re.compile(r"^-(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TEXT, LONG, DOUBLE = "text", "long", "double"
_SQL_TYPES = {TEXT: "TEXT", LONG: "INTEGER", DOUBLE: "REAL"}


class QueryError(ValueError):
    """A query this local SLS cannot run, with what is wrong."""


@dataclass(frozen=True)
class Key:
    """One json key of the index: its name in the record, SLS type, and SQL alias (or None)."""

    name: str
    type: str
    alias: str | None


class Index:
    """The Logstore's json index on `message`, from its `JsonKeyIndices`."""

    def __init__(self, json_key_indices: Iterable[dict]):
        self.keys: dict[str, Key] = {}
        for item in json_key_indices:
            if item["Type"] not in _SQL_TYPES:
                raise QueryError(f"index key {item['Name']}: type {item['Type']!r} is not text, long or double")
            self.keys[item["Name"]] = Key(item["Name"], item["Type"], item.get("Alias"))
        # Each key by its alias and as "message.<key>": (SQL column, record key, type).
        self.columns = [(k.alias, k.name, k.type) for k in self.keys.values() if k.alias is not None]
        self.columns += [(f"message.{k.name}", k.name, k.type) for k in self.keys.values()]


@dataclass(frozen=True)
class Entry:
    """One Logstore line: FC's fields and, when `message` is a JSON object, the record in it."""

    time: int
    topic: str
    function_name: str
    message: str
    record: dict | None


def read_logstore(directory: str | Path) -> list[Entry]:
    """Every entry of every `<function>.jsonl` in `directory` (the local Logstore), oldest first."""
    entries = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entries.append(entry_of(json.loads(line)))
    entries.sort(key=lambda e: e.time)
    return entries


def entry_of(line: dict) -> Entry:
    message = str(line.get("message", ""))
    record = None
    if message.startswith("{"):
        try:
            value = json.loads(message)
        except ValueError:
            value = None
        record = value if isinstance(value, dict) else None
    return Entry(
        time=int(line["__time__"]),
        topic=str(line.get("__topic__", "")),
        function_name=str(line.get("functionName", "")),
        message=message,
        record=record,
    )


def time_of(relative: str, now: float) -> float:
    """An SLS query time (`now`, `-5m`, `-604800s`, `-24h`, `-7d`) as unix seconds."""
    if relative == "now":
        return now
    match = _RELATIVE.match(relative)
    if match is None:
        raise QueryError(f"time {relative!r}: expected 'now' or -<n>[smhd]")
    return now - int(match.group(1)) * _UNITS[match.group(2)]


def query(
    entries: Iterable[Entry],
    text: str,
    index: Index,
    *,
    start: str = "-15m",
    end: str = "now",
    now: float | None = None,
) -> list[dict]:
    """Run one SLS query over the entries in [start, end]; the result rows as dicts."""
    now = time.time() if now is None else now
    low, high = time_of(start, now), time_of(end, now)
    search, bar, sql = text.partition("|")
    matcher = _Search(search, index).parse()
    rows = [e for e in entries if low <= e.time <= high and matcher(e)]
    if not bar:
        return [_row_of(e, index) for e in rows]
    return _run_sql(rows, _with_from(sql.strip()), index, now)


# The clauses a FROM goes before, found at the statement's top level only (see _top_level).
_AFTER_FROM = re.compile(r"\b(?:where|group\s+by|having|order\s+by|limit)\b", re.IGNORECASE)


def _with_from(sql: str) -> str:
    """`sql` reading the table `log` where it has no FROM clause: SLS then analyzes the current
    Logstore (its SQL syntax page), and the console's queries often leave FROM out."""
    top = _top_level(sql)
    if re.search(r"\bfrom\b", top, re.IGNORECASE):
        return sql
    clause = _AFTER_FROM.search(top)
    return f"{sql[: clause.start()]}FROM log {sql[clause.start() :]}" if clause else f"{sql} FROM log"


def _top_level(sql: str) -> str:
    """`sql` with quoted text and everything inside parentheses blanked, the same length: what is
    left is the outer statement's own words (a window's ORDER BY or a subquery's FROM is not)."""
    out, depth, quote = [], 0, None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
            out.append(" ")
        elif char in "'\"":
            quote = char
            out.append(" ")
        else:
            depth += char == "("
            out.append(char if depth == 0 else " ")
            depth -= char == ")"
    return "".join(out)


# --- the search part ---------------------------------------------------------------------------

# A term (key, operator, value: spaces allowed around the operator), a parenthesis, or a word.
_TOKEN = re.compile(r'\s*(\(|\)|[A-Za-z_][\w.]*\s*(?::|>=|<=|>|<|=)\s*(?:"[^"]*"|[^\s()"]+)|"[^"]*"|[^\s()"]+)')


class _Search:
    """A recursive-descent parser of the search syntax above; parse() returns a predicate."""

    def __init__(self, text: str, index: Index):
        self.text = text.strip()
        self.index = index
        self.tokens = [t for t in _TOKEN.findall(self.text) if t]
        self.at = 0

    def parse(self):
        if not self.tokens:
            return lambda entry: True
        predicate = self._or()
        if self.at != len(self.tokens):
            raise QueryError(f"search {self.text!r}: unexpected {self.tokens[self.at]!r}")
        return predicate

    def _peek(self) -> str | None:
        return self.tokens[self.at].lower() if self.at < len(self.tokens) else None

    def _take(self) -> str:
        if self.at >= len(self.tokens):
            raise QueryError(f"search {self.text!r} ends too early")
        self.at += 1
        return self.tokens[self.at - 1]

    def _or(self):
        parts = [self._and()]
        while self._peek() == "or":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def _and(self):
        parts = [self._not()]
        while self._peek() == "and":
            self._take()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def _not(self):
        if self._peek() == "not":
            self._take()
            inner = self._not()
            return lambda e: not inner(e)
        return self._atom()

    def _atom(self):
        token = self._take()
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise QueryError(f"search {self.text!r}: a parenthesis is not closed")
            return inner
        if token == "*":
            return lambda e: True
        match = re.fullmatch(r"([A-Za-z_][\w.]*)\s*(:|>=|<=|>|<|=)\s*(.+)", token)
        if match is None:
            raise QueryError(f"search {self.text!r}: {token!r} is not key:value (free text is not emulated)")
        key, operator, value = match.groups()
        return _term(self.index, key, operator, value.strip('"'), self.text)


def _term(index: Index, key: str, operator: str, value: str, text: str):
    if key in ("__topic__", "functionName"):
        field_type, get = TEXT, (lambda e: e.topic if key == "__topic__" else e.function_name)
    elif key.startswith("message.") and key.removeprefix("message.") in index.keys:
        name = key.removeprefix("message.")
        field_type = index.keys[name].type
        get = lambda e: None if e.record is None else e.record.get(name)  # noqa: E731
    else:
        raise QueryError(f"search {text!r}: {key} is not an indexed key")
    if operator == ":" and field_type == TEXT or value == "*":
        wanted = value.lower()

        def matches(entry):
            found = get(entry)
            if found is None:
                return False
            found = _text(found).lower()
            if wanted == "*":
                return True
            return found.startswith(wanted[:-1]) if wanted.endswith("*") else found == wanted

        return matches
    if field_type == TEXT:
        raise QueryError(f"search {text!r}: {key} is text, compared with {operator}")
    try:
        number = float(value)
    except ValueError:
        raise QueryError(f"search {text!r}: {key} is a number, compared with {value!r}") from None
    compare = {
        ":": float.__eq__,
        "=": float.__eq__,
        ">": float.__gt__,
        ">=": float.__ge__,
        "<": float.__lt__,
        "<=": float.__le__,
    }[operator]

    def compares(entry):
        found = _number(get(entry), float)
        return found is not None and compare(found, number)

    return compares


# --- the SQL part ------------------------------------------------------------------------------


def _row_of(entry: Entry, index: Index) -> dict:
    row = {"__time__": entry.time, "__topic__": entry.topic, "functionName": entry.function_name}
    record = entry.record or {}
    for column, name, field_type in index.columns:
        row[column] = _typed(record.get(name), field_type)
    return row


def _typed(value, field_type: str):
    """A JSON value as the index holds it: text for text keys, a number or NULL for the others."""
    if value is None:
        return None
    if field_type == TEXT:
        return _text(value)
    if field_type == LONG:
        return _number(value, int)
    return _number(value, float)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _number(value, kind):
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if not (isinstance(number, float) and math.isnan(number)) else None


def _run_sql(entries: list[Entry], sql: str, index: Index, now: float) -> list[dict]:
    database = sqlite3.connect(":memory:")
    try:
        _add_functions(database, now)
        database.execute("PRAGMA case_sensitive_like = ON")  # SLS's like is case-sensitive
        names = [*ENTRY_KEYS, *(c for c, _, _ in index.columns)]
        types = ["INTEGER", "TEXT", "TEXT", *(_SQL_TYPES[t] for _, _, t in index.columns)]
        database.execute(
            "CREATE TABLE log (" + ", ".join(f"{_quoted(n)} {t}" for n, t in zip(names, types, strict=True)) + ")"
        )
        rows = [_row_of(e, index) for e in entries]
        placeholders = ", ".join("?" for _ in names)  # only "?"s: the values travel as parameters
        database.executemany(
            f"INSERT INTO log VALUES ({placeholders})",  # noqa: S608
            [[row[n] for n in names] for row in rows],
        )
        try:
            cursor = database.execute(sql)
        except sqlite3.Error as exc:
            raise QueryError(f"SQL {sql!r}: {exc}") from None
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    finally:
        database.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _add_functions(database: sqlite3.Connection, now: float) -> None:
    database.create_function("date_trunc", 2, _date_trunc, deterministic=True)
    database.create_function("now", 0, lambda: now)
    database.create_function("to_unixtime", 1, lambda value: value, deterministic=True)
    database.create_aggregate("count_if", 1, _CountIf)
    database.create_aggregate("approx_percentile", 2, _Percentile)
    database.create_aggregate("max_by", 2, _MaxBy)
    database.create_aggregate("min_by", 2, _MinBy)


_TRUNCATE = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _date_trunc(unit: str, seconds):
    if seconds is None:
        return None
    if unit not in _TRUNCATE:
        raise ValueError(f"date_trunc: unit {unit!r} is not emulated (second, minute, hour, day)")
    return int(seconds) - int(seconds) % _TRUNCATE[unit]


class _CountIf:
    def __init__(self):
        self.count = 0

    def step(self, condition):
        self.count += 1 if condition else 0

    def finalize(self):
        return self.count


class _Percentile:
    def __init__(self):
        self.values, self.fraction = [], None

    def step(self, value, fraction):
        self.fraction = fraction
        if value is not None:
            self.values.append(value)

    def finalize(self):
        if not self.values:
            return None
        ordered = sorted(self.values)
        rank = max(1, math.ceil(float(self.fraction) * len(ordered)))
        return ordered[rank - 1]


class _MaxBy:
    better = staticmethod(lambda key, best: key > best)

    def __init__(self):
        self.value, self.key = None, None

    def step(self, value, key):
        if key is not None and (self.key is None or self.better(key, self.key)):
            self.value, self.key = value, key

    def finalize(self):
        return self.value


class _MinBy(_MaxBy):
    better = staticmethod(lambda key, best: key < best)


# --- the SLS API, for `make verify` (localcloud.controlplane serves it) ----------------------------
#
# What scripts/verify and scripts/deploy call, shaped as SLS answers it (SLS API 2020-12-30, the
# official alibabacloud_sls20201230 SDK's paths): GetLogsV2 (POST /logstores/{logstore}/logs, the
# project in the Host header's first label), GetAlert (GET /alerts/{name}), and the account's
# alert resource records (GET/PUT /resources/{resource}/records/{id}, POST .../records). Requests
# carry SLS's own signature, `LOG <key id>:<signature>` (checked by `verify_signature`).


class SlsApiError(Exception):
    """An SLS error answer: HTTP status, errorCode, errorMessage (SLS's body fields)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def string_to_sign(method: str, path: str, query: dict, headers: dict) -> str:
    """SLS signature version 1's string to sign: the verb, Content-MD5, Content-Type, Date, the
    x-log-/x-acs- headers sorted, then the path with its query sorted (SLS's API signature page)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    lines = [method, lowered.get("content-md5", ""), lowered.get("content-type", ""), lowered.get("date", "")]
    logged = sorted((k, v) for k, v in lowered.items() if k.startswith(("x-log-", "x-acs-")))
    text = "\n".join(lines) + "\n" + "".join(f"{k}:{v}\n" for k, v in logged)
    resource = path
    if query:
        resource += "?" + "&".join(f"{k}={v}" if v is not None else k for k, v in sorted(query.items()))
    return text + resource


def verify_signature(method: str, path: str, query: dict, headers: dict, body: bytes, credentials) -> None:
    """Check a request's `LOG <key id>:<base64 HMAC>` against the accepted credentials (and the STS
    token, and the body's MD5); raise SlsApiError 401 as SLS does."""
    import base64
    import hashlib
    import hmac

    lowered = {k.lower(): v for k, v in headers.items()}
    authorization = lowered.get("authorization", "")
    if not authorization.startswith("LOG ") or ":" not in authorization:
        raise SlsApiError(401, "Unauthorized", "the Authorization header is not LOG <key id>:<signature>")
    key_id, signature = authorization[4:].split(":", 1)
    known = {c.access_key_id: c for c in credentials}
    creds = known.get(key_id)
    if creds is None:
        raise SlsApiError(401, "Unauthorized", "AccessKeyId not found")
    if creds.security_token and lowered.get("x-acs-security-token") != creds.security_token:
        raise SlsApiError(401, "Unauthorized", "the security token is missing or wrong")
    if body and lowered.get("content-md5", "").upper() != hashlib.md5(body).hexdigest().upper():  # noqa: S324 - SLS's own
        raise SlsApiError(400, "InvalidContentMD5", "Content-MD5 does not match the body")
    digest = hashlib.sha256 if lowered.get("x-log-signaturemethod") == "hmac-sha256" else hashlib.sha1
    expected = base64.b64encode(
        hmac.new(
            creds.access_key_secret.encode(), string_to_sign(method, path, query, headers).encode(), digest
        ).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        raise SlsApiError(401, "SignatureNotMatch", "the signature does not match")


class SlsBackend:
    """One SLS project (its Logstore is the local Logstore directory), its alerts, and the
    account's alert resource records (action policies, webhook integrations)."""

    def __init__(self, project: str, logstore: str, logs: str | Path, index: Index):
        self.project, self.logstore, self.logs, self.index = project, logstore, Path(logs), index
        self.alerts: dict[str, dict] = {}  # name -> GetAlert's answer
        self.records: dict[tuple[str, str], dict] = {}  # (resource name, record id) -> record

    def handle(self, method: str, path: str, project: str | None, query: dict, body: bytes) -> tuple[int, object]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["resources"] and len(parts) >= 3 and parts[2] == "records":
            return self._records(method, parts, body)
        if project != self.project:
            raise SlsApiError(404, "ProjectNotExist", f"Project {project} does not exist.")
        if method == "POST" and len(parts) == 3 and parts[0] == "logstores" and parts[2] == "logs":
            if parts[1] != self.logstore:
                raise SlsApiError(404, "LogStoreNotExist", f"logstore {parts[1]} does not exist")
            return 200, self._get_logs(json.loads(body or b"{}"))
        if method == "GET" and len(parts) == 2 and parts[0] == "alerts":
            alert = self.alerts.get(parts[1])
            if alert is None:
                raise SlsApiError(404, "JobNotExist", f"job {parts[1]} does not exist")
            return 200, alert
        raise SlsApiError(404, "NotFound", f"{method} {path} is not served here")

    def _get_logs(self, request: dict) -> dict:
        now = time.time()
        start, end = int(request.get("from", now - 900)), int(request.get("to", now))
        entries = [e for e in read_logstore(self.logs) if start <= e.time <= end] if self.logs.is_dir() else []
        text = request.get("query") or "*"
        if "|" in text:
            data = query(entries, text, self.index, start="-999999999s", now=now)
        else:  # a search answers the entries themselves: FC's fields and the line as `message`
            matcher = _Search(text, self.index).parse()
            data = [
                {"__time__": e.time, "__topic__": e.topic, "functionName": e.function_name, "message": e.message}
                for e in entries
                if matcher(e)
            ]
        data = data[: int(request.get("line", 100))]
        return {"meta": {"progress": "Complete", "count": len(data)}, "data": data}

    def _records(self, method: str, parts: list[str], body: bytes) -> tuple[int, object]:
        resource = parts[1]
        if method == "POST" and len(parts) == 3:
            record = json.loads(body)
            key = (resource, str(record["id"]))
            if key in self.records:
                raise SlsApiError(400, "ResourceRecordAlreadyExist", f"record {record['id']} already exists")
            self.records[key] = {"id": str(record["id"]), "tag": record.get("tag", ""), "value": record["value"]}
            return 200, {}
        if len(parts) != 4:
            raise SlsApiError(404, "NotFound", "no such resource path")
        key = (resource, parts[3])
        if method == "GET":
            if key not in self.records:
                raise SlsApiError(404, "ResourceRecordNotExist", f"record {parts[3]} does not exist")
            return 200, dict(self.records[key])
        if method == "PUT":
            if key not in self.records:
                raise SlsApiError(404, "ResourceRecordNotExist", f"record {parts[3]} does not exist")
            update = json.loads(body)
            self.records[key] = {"id": parts[3], "tag": update.get("tag", ""), "value": update["value"]}
            return 200, None
        raise SlsApiError(405, "MethodNotAllowed", method)
