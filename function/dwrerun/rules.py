"""Failure rules: which failures a rerun can fix, matched against the failed run's log.

A rules file is one JSON document, an ordered list of rules; the first rule that matches the log
wins. A rule names the error lines it recognises (regular expressions), the node types it applies
to, and what to do: `rerun` (a rerun can fix it) or `skip` (it fails again until a person fixes
the cause). The shipped set is `failure_rules.json` beside this module; `RERUN_RULES_FILE` points
at another. docs/failure-rules.md is the operator's guide.

    {"rules": [
      {"name": "maxcompute-table-not-found",
       "source": "https://help.aliyun.com/...",   (required: where the error is documented)
       "description": "...",                       (optional)
       "taskTypes": ["ODPS_SQL"],                  (optional: TaskType of GetTaskInstance)
       "patterns": ["FAILED: ODPS-0130131:"],
       "action": "skip",
       "maxReruns": 1,                             (optional, rerun only: at most this many reruns)
       "delaySeconds": 600}                        (optional, rerun only: wait this long first)
    ]}

How a log is matched: only its tail (`TAIL_CHARS`) is scanned, because failures are reported at
the end. Each pattern is searched in it (Python `re`, multi-line: `^` and `$` are line ends).
A hit on a noise line does not count and the search goes on below it: warnings and debug lines,
Java and Python stack frames, the source lines a Python traceback echoes, comment lines (`--`,
`#`, `//`: echoed SQL and scripts), bash's `set -x` trace lines (`+ `), and a hit inside a
single-quoted string (an SQL literal or script quoting an error). The matched line is
then redacted (dwrerun/redact.py) and cut to `LINE_CHARS`.

The file is parsed and checked once per instance (cached by path, size and modification time):
a bad file raises `RulesError`, which names the file, the rule and the problem.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dwrerun import strictjson
from dwrerun.config import RERUN_RULES_FILE, RULE_ACTIONS, ConfigError
from dwrerun.patterns import explosive
from dwrerun.redact import cut, redact

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the code package: index.py's directory
DEFAULT_FILE = Path(__file__).resolve().with_name("failure_rules.json")
DEFAULT_RULE = "default"  # the `rule` recorded when a log was read and no rule matched
TAIL_CHARS = 64 * 1024
LINE_CHARS = 300
# What one regular expression is handed at most (issue 24 item 1). Python's `re` backtracks: a
# pattern with one unbounded repetition, searched over n characters of what it takes, costs n^2/2
# steps (a lazy `[\w.-]*?` in redaction took 164 s over a 60 KiB hex run). So each line of the tail
# is cut to SCAN_LINE_CHARS before any pattern runs (its start and its end kept: an error is
# printed before or after what it echoes), and each pattern searches the tail in chunks of whole
# lines of at most SCAN_CHUNK_CHARS: a call costs at most about 2 M steps whatever the log holds,
# and load refuses the patterns that would cost more than quadratic (`explosive`).
SCAN_LINE_CHARS = 2000
SCAN_CHUNK_CHARS = 2048
# Terminal escapes (colours, cursor moves, window titles) are removed before matching and showing:
# a coloured `WARN` is still a warning, and escapes have no place in a record. CSI (ESC [ or the
# one-byte 0x9b), OSC (ESC ] ... BEL or ESC \\), charset designations and two-byte escapes. Each
# repetition stops at a character its escape cannot hold, so it is linear.
_ESCAPES = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[()*+][ -~]?|\x1b[ -~]?"
MAX_RULES = 200
MAX_PATTERN_CHARS = 2000
MAX_DELAY_SECONDS = 24 * 3600
RERUN, SKIP = RULE_ACTIONS
RULE_KEYS = {"name", "source", "description", "taskTypes", "patterns", "action", "maxReruns", "delaySeconds"}
# Regular expressions here stay text until used (re caches them): importing this module on a cold
# instance compiles nothing, and a function that reads no logs never compiles them.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_TASK_TYPE = r"[A-Za-z0-9_]{1,64}"

# A log line that is never the failure: what a pattern hit on it does not count.
_STAMP = r"[ \t]*(?:\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?\]?[ \t]+)?"
_NOISE = (
    ("a warning or debug line", _STAMP + r"(?:\[[^\]\n]*\][ \t]+)?(?:WARN(?:ING)?|DEBUG|TRACE)\b"),
    ("a Java stack frame", r"[ \t]+(?:at [\w$.<>/-]+\(|\.\.\. \d+ (?:more|common frames omitted))"),
    ("a Python stack frame", r"[ \t]*File \"[^\"\n]*\", line \d+"),
    # Code a log echoes: the error codes people paste into comments, and bash's `set -x` trace.
    ("a comment line (SQL, shell or Python)", r"[ \t]*(?:--|#|//)"),
    ("a shell trace line (set -x)", r"\++ "),
)
_PYTHON_FRAME = _NOISE[2][1]


class RulesError(ConfigError):
    """The rules file cannot be used. The message names the file, the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    action: str  # "rerun" or "skip"
    patterns: tuple[re.Pattern, ...]
    source: str
    description: str | None = None
    task_types: frozenset[str] | None = None  # None: every node type
    max_reruns: int | None = None
    delay_seconds: int | None = None
    # Per pattern, text every match must start with ("" if none): `in` finds it 5x faster than re.
    literals: tuple[str, ...] = ()

    def applies_to(self, task_type: str | None) -> bool:
        return self.task_types is None or (task_type or "").upper() in self.task_types


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    path: str  # as shown to people: relative to the code package when inside it

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True)
class Ignored:
    """A pattern hit that did not count, and why (for the explain command)."""

    rule: str
    line_number: int
    why: str


@dataclass(frozen=True)
class Match:
    """What matching a log found. `rule` is None when no rule matched."""

    rule: Rule | None
    line: str | None = None  # the matched line, redacted and cut to LINE_CHARS
    line_number: int | None = None  # 1-based, in the whole log
    pattern: str | None = None
    lines: int = 0  # lines in the whole log
    first_scanned_line: int = 1  # where the scanned tail starts
    not_applicable: tuple[str, ...] = ()  # rules skipped for the node type
    ignored: tuple[Ignored, ...] = field(default=())


# With RERUN_READ_LOGS=false no log is read, so the rules file is not read either (nor checked).
NOT_LOADED = RuleSet((), "(not read: RERUN_READ_LOGS is false)")

# --- loading -------------------------------------------------------------------------------------

_cache: dict[Path, tuple[tuple[int, int], RuleSet]] = {}
_cache_lock = threading.Lock()


def resolve(rules_file: str | None) -> Path:
    """The rules file to use: RERUN_RULES_FILE, absolute or relative to the code package."""
    if not rules_file:
        return DEFAULT_FILE
    path = Path(rules_file)
    return path if path.is_absolute() else PACKAGE_ROOT / path


def load(rules_file: str | None = None) -> RuleSet:
    """The checked rules of `rules_file` (None: the shipped set), parsed once per file version."""
    path = resolve(rules_file)
    shown = _shown(path)
    try:
        stat = path.stat()
    except OSError as exc:
        where = f"{RERUN_RULES_FILE}={rules_file!r}" if rules_file else "the shipped rules file"
        raise RulesError(f"failure rules: cannot read {where} ({shown}): {exc.strerror or exc}") from None
    version = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"failure rules in {shown}: cannot read the file: {exc}") from None
    rule_set = parse(text, shown)
    with _cache_lock:
        _cache[path] = (version, rule_set)
    return rule_set


def parse(text: str, shown: str = "<rules>") -> RuleSet:
    """Check a rules document and compile it. Raises RulesError naming what is wrong."""

    def fail(message: str) -> RulesError:
        return RulesError(f"failure rules in {shown}: {message}")

    try:
        document = strictjson.loads(text)
    except strictjson.DuplicateKey as exc:  # two "action"s: which one was meant is anyone's guess
        raise fail(str(exc)) from None
    except json.JSONDecodeError as exc:
        hint = ""
        if "escape" in exc.msg:
            hint = r'; in JSON a backslash is written twice, so the regular expression \d+ is written "\\d+"'
        raise fail(f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg}){hint}") from None
    except RecursionError:
        raise fail("not valid JSON (nested too deep)") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise fail('the file must be a JSON object with a list "rules": {"rules": [...]}')
    unknown = sorted(set(document) - {"rules", "description"})
    if unknown:
        raise fail(f"unknown top-level key(s) {', '.join(unknown)}: allowed are rules, description")
    if len(document["rules"]) > MAX_RULES:
        raise fail(f"{len(document['rules'])} rules, at most {MAX_RULES} are allowed")
    rules, names = [], set()
    for n, raw in enumerate(document["rules"], start=1):
        rule = _rule(raw, n, fail)
        if rule.name in names:
            raise fail(f'rule {n} "{rule.name}": the name is already used by an earlier rule')
        names.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), shown)


def _rule(raw, n: int, fail) -> Rule:
    if not isinstance(raw, dict):
        raise fail(f"rule {n}: a rule must be a JSON object, got {type(raw).__name__}")
    name = raw.get("name")
    label = f'rule {n} "{name}"' if isinstance(name, str) and name else f"rule {n}"
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise fail(f"{label}: unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(RULE_KEYS))}")
    if not isinstance(name, str) or not re.fullmatch(_NAME, name):
        raise fail(f"{label}: name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    if name == DEFAULT_RULE:
        raise fail(f'{label}: the name "{DEFAULT_RULE}" is reserved for "no rule matched"')
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise fail(f"{label}: source is required: where the error and its meaning are documented (a URL)")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise fail(f"{label}: description must be text")
    action = raw.get("action")
    if action not in RULE_ACTIONS:
        raise fail(f"{label}: action must be 'rerun' or 'skip', got {action!r}")
    patterns = raw.get("patterns")
    if not isinstance(patterns, list) or not patterns:
        raise fail(f"{label}: patterns must be a non-empty list of regular expressions")
    compiled = tuple(_pattern(p, f"{label}: patterns[{i}]", fail) for i, p in enumerate(patterns))
    task_types = raw.get("taskTypes")
    if task_types is not None:
        if not isinstance(task_types, list) or not task_types:
            raise fail(f"{label}: taskTypes must be a non-empty list of node types such as ODPS_SQL (or left out)")
        for t in task_types:
            if not isinstance(t, str) or not re.fullmatch(_TASK_TYPE, t):
                raise fail(f"{label}: taskTypes must hold node types such as ODPS_SQL or DIDE_SHELL, got {t!r}")
        task_types = frozenset(t.upper() for t in task_types)
    max_reruns = _whole(raw, "maxReruns", 0, None, label, fail)
    delay = _whole(raw, "delaySeconds", 1, MAX_DELAY_SECONDS, label, fail)
    if action == SKIP and (max_reruns is not None or delay is not None):
        raise fail(f"{label}: maxReruns and delaySeconds only apply to action 'rerun'")
    literals = tuple(_leading_literal(p) for p in patterns)
    return Rule(name, action, compiled, source.strip(), description, task_types, max_reruns, delay, literals)


def _pattern(raw, where: str, fail) -> re.Pattern:
    if not isinstance(raw, str) or not raw:
        raise fail(f"{where} must be a non-empty string")
    if len(raw) > MAX_PATTERN_CHARS:
        raise fail(f"{where} is {len(raw)} characters long, at most {MAX_PATTERN_CHARS} are allowed")
    try:
        pattern = re.compile(raw, re.MULTILINE)
    except re.error as exc:
        raise fail(f"{where} {raw!r} is not a valid regular expression: {exc}") from None
    if pattern.search("") is not None:
        raise fail(f"{where} {raw!r} matches an empty line, so it would match every log")
    why = explosive(raw, re.MULTILINE)
    if why:
        raise fail(
            f"{where} {raw!r} can take exponential or polynomial time to match ({why}): "
            "docs/failure-rules.md, Patterns that are refused, says how to write it"
        )
    return pattern


def _leading_literal(pattern: str) -> str:
    """The plain text every match of `pattern` starts with, or "" when that is not certain."""
    text, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 == len(pattern) or pattern[i + 1].isalnum():  # \d, \b, \1...: not plain text
                break
            char, step = pattern[i + 1], 2
        elif char in ".^$*+?{}[]()|":
            break
        else:
            step = 1
        if pattern[i + step : i + step + 1] in ("*", "?", "{"):  # this character may be absent
            break
        text.append(char)
        i += step
    literal = "".join(text)
    return literal if len(literal) >= 3 and not _top_level_alternation(pattern) else ""


def _top_level_alternation(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1 if pattern[i + 1 : i + 2] != "]" else 2  # a ] first in a class is a member
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


def _whole(raw: dict, key: str, minimum: int, maximum: int | None, label: str, fail) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(f"{label}: {key} must be a whole number of at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise fail(f"{label}: {key} must be at most {maximum}, got {value!r}")
    return value


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(PACKAGE_ROOT))
    except ValueError:
        return str(path)


# --- matching ------------------------------------------------------------------------------------


def match(rule_set: RuleSet, log: str, task_type: str | None = None) -> Match:
    """The first rule, in file order, with a pattern on a line of the log's tail that is not noise."""
    tail_start = max(0, len(log) - TAIL_CHARS)
    if tail_start:  # start at a whole line
        newline = log.find("\n", tail_start - 1)
        tail_start = len(log) if newline < 0 else newline + 1
    text = scanned(log[tail_start:])
    chunks = _chunks(text)
    lines_before = log.count("\n", 0, tail_start)
    lines = log.count("\n") + (1 if log and not log.endswith("\n") else 0)
    skipped, ignored = [], []
    present: dict[str, bool] = {}  # literal -> in the tail? (rules share many: "ODPS-0010000:", "Code:[")
    for rule in rule_set.rules:
        if not rule.applies_to(task_type):
            skipped.append(rule.name)
            continue
        for pattern, literal in zip(rule.patterns, rule.literals, strict=True):
            if literal:
                if literal not in present:
                    present[literal] = literal in text
                if not present[literal]:
                    continue
            for hit in _hits(pattern, text, chunks):
                start = text.rfind("\n", 0, hit.start()) + 1
                end = text.find("\n", hit.start())
                end = len(text) if end < 0 else end
                line = text[start:end]
                number = lines_before + text.count("\n", 0, start) + 1
                why = _noise(text, start, line, hit.start() - start)
                if why is None:
                    return Match(
                        rule,
                        _shown_line(line, pattern),
                        number,
                        pattern.pattern,
                        lines,
                        lines_before + 1,
                        tuple(skipped),
                        tuple(ignored),
                    )
                if len(ignored) < 20:
                    ignored.append(Ignored(rule.name, number, why))
    return Match(None, lines=lines, first_scanned_line=lines_before + 1, not_applicable=tuple(skipped),
                 ignored=tuple(ignored))  # fmt: skip


def scanned(tail: str) -> str:
    """The tail as the patterns see it: each line cut to SCAN_LINE_CHARS (its middle left out),
    terminal escapes removed.
    Lines keep their count and order, so line numbers hold."""
    lines = tail.split("\n")
    if any(len(line) > SCAN_LINE_CHARS for line in lines):
        tail = "\n".join(cut(line, SCAN_LINE_CHARS, keep_end=True) for line in lines)
    if "\x1b" in tail or "\x9b" in tail:
        tail = "".join(re.sub(_ESCAPES, "", tail[begin:end]) for begin, end in _chunks(tail))
    return tail


def _chunks(text: str) -> list[tuple[int, int]]:
    """(start, end) of consecutive pieces of `text`, whole lines, each at most SCAN_CHUNK_CHARS long."""
    spans, start = [], 0
    while len(text) - start > SCAN_CHUNK_CHARS:
        # Lines are cut shorter than a chunk, so a chunk's window always holds a newline.
        end = text.rfind("\n", start, start + SCAN_CHUNK_CHARS) + 1
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    return spans


def _hits(pattern: re.Pattern, text: str, chunks: list[tuple[int, int]]):
    """Each hit of `pattern` in `text`, chunk by chunk, the next one searched from the line after."""
    for begin, end in chunks:
        position = begin
        while position < end:
            hit = pattern.search(text, position, end)  # endpos: the pattern sees no further
            if hit is None:
                break
            yield hit
            newline = text.find("\n", hit.start(), end)
            position = end if newline < 0 else newline + 1


def _noise(text: str, start: int, line: str, column: int) -> str | None:
    """Why the hit at `column` of the line at `start` is noise, or None when it may be the failure."""
    for why, pattern in _NOISE:
        if re.match(pattern, line):
            return why
    if line.count("'", 0, column) % 2:
        # Inside a single-quoted string: SQL or a script echoed into the log, quoting an error.
        return "inside a quoted string (echoed code)"
    if line[:1] in (" ", "\t") and start:
        # A Python traceback echoes the source line under each frame: code, not the error.
        previous = text.rfind("\n", 0, start - 1) + 1
        if re.match(_PYTHON_FRAME, text[previous:start]):
            return "a source line in a Python stack trace"
    return None


def _shown_line(line: str, pattern: re.Pattern) -> str:
    """The line as a record may carry it: redacted, then cut to LINE_CHARS around the match."""
    line = redact(line.rstrip("\r"))
    if len(line) <= LINE_CHARS:
        return line
    hit = pattern.search(line)  # found again: redaction may have moved it
    width = LINE_CHARS - 2  # room for an ellipsis at each end
    begin = 0 if hit is None else max(0, min(hit.start() - LINE_CHARS // 4, len(line) - width))
    end = begin + width
    return ("…" if begin else "") + line[begin:end] + ("…" if end < len(line) else "")
