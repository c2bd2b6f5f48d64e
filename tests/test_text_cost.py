"""Issue 24 item 1: every text step on a log (noise filter, rules, redaction) is bounded by
construction. No wall time is measured: a stand-in for the `re` module inside rules.py and
redact.py runs the real one and records how much text each regular-expression call is handed.
Each step must hand no call more than its stated bound (rules.SCAN_CHUNK_CHARS for matching and
the noise filter, redact.MAX_CHARS for redaction), and all calls together no more than a fixed
multiple of the tail: no step searches again from every position.

Why that bounds the time: no pattern the function runs has two unbounded repetitions that can take
the same characters (patterns.explosive, checked below for every one of them), so one call costs at
most a constant times the square of what it is handed."""

from __future__ import annotations

import json
import re
import sys

import pytest

from dwrerun import patterns, redact, rules

TAIL = rules.TAIL_CHARS - 64  # with the lines around it, the whole line is in the scanned tail


class RecordingRe:
    """The `re` module, recording the length of every text a pattern is run on."""

    def __init__(self):
        self.sizes: list[int] = []
        self.limit = sys.maxsize  # a call handed more fails at once, before the real re runs on it

    def saw(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> None:
        size = max(0, min(endpos, len(string)) - pos)
        self.sizes.append(size)
        if size > self.limit:
            raise AssertionError(f"a regular expression was handed {size} characters, over {self.limit}")

    def compile(self, pattern, flags=0):
        return RecordingPattern(re.compile(pattern, flags), self)

    def search(self, pattern, string, flags=0):
        self.saw(string)
        return re.search(pattern, string, flags)

    def match(self, pattern, string, flags=0):
        self.saw(string)
        return re.match(pattern, string, flags)

    def fullmatch(self, pattern, string, flags=0):
        self.saw(string)
        return re.fullmatch(pattern, string, flags)

    def sub(self, pattern, repl, string, count=0, flags=0):
        self.saw(string)
        return re.sub(pattern, repl, string, count=count, flags=flags)

    def __getattr__(self, name):  # constants (re.MULTILINE), re.error, re.Pattern...
        return getattr(re, name)


class RecordingPattern:
    def __init__(self, compiled: re.Pattern, recorder: RecordingRe):
        self.compiled, self.recorder = compiled, recorder
        self.pattern, self.flags = compiled.pattern, compiled.flags

    def search(self, string, pos=0, endpos=sys.maxsize):
        self.recorder.saw(string, pos, endpos)
        return self.compiled.search(string, pos, endpos)

    def match(self, string, pos=0, endpos=sys.maxsize):
        self.recorder.saw(string, pos, endpos)
        return self.compiled.match(string, pos, endpos)


@pytest.fixture
def recorder(monkeypatch):
    recording = RecordingRe()
    monkeypatch.setattr(rules, "re", recording)
    monkeypatch.setattr(redact, "re", recording)
    return recording


# Lines that make a backtracking engine work hardest: one long run of the characters a pattern's
# repetition takes, the text a pattern starts with repeated, what redaction looks for repeated.
WORST = {
    "word run": "a" * TAIL,
    "hex run (DataX dirty data)": "0123456789abcdef" * (TAIL // 16),
    "base64 run": "QUJD+/==" * (TAIL // 8),
    "spaces": " " * TAIL,
    "newlines": "\n" * TAIL,
    "quotes": "'" * TAIL,
    "password= repeated": "password=" * (TAIL // 9),
    "pass word repeated": "pass " * (TAIL // 5),
    ":// repeated": "://a:" * (TAIL // 5),
    "LTAI repeated": "LTAI" * (TAIL // 4),
    "CAIS repeated": "CAIS" * (TAIL // 4),
    "mysql -p repeated": "mysql -p " * (TAIL // 9),
    "IDENTIFIED repeated": "IDENTIFIED " * (TAIL // 11),
    "escape codes": "\x1b[" * (TAIL // 2),
    "escape parameters": "\x1b[" + "1;" * (TAIL // 2 - 2),
    "BEGIN repeated": "-----BEGIN " * (TAIL // 11),
    "error code then a run": "ODPS-0130131: " + "9" * (TAIL - 20),
    "many short lines": "x\n" * (TAIL // 2),
    "long lines": ("b" * 5000 + "\n") * (TAIL // 5001),
}
# Patterns an operator may write that the load check accepts, at their worst on those lines:
# one unbounded repetition tried from every position (quadratic in what a call is handed).
ACCEPTED = [r"\w+x", r"\s+x", r"[^;]+;x", r"(?:'[^']*')+x", r"a\d+b"]


def rule_set_with(*patterns: str) -> rules.RuleSet:
    shipped = json.loads(rules.DEFAULT_FILE.read_text(encoding="utf-8"))
    shipped["rules"].append({"name": "operator", "source": "s", "patterns": list(patterns), "action": "skip"})
    return rules.parse(json.dumps(shipped))


@pytest.mark.parametrize("line", list(WORST.values()), ids=list(WORST))
def test_matching_hands_no_regular_expression_more_than_a_chunk(recorder, line):
    rule_set = rule_set_with(*ACCEPTED)
    calls_at_load = len(recorder.sizes)
    patterns = sum(len(rule.patterns) for rule in rule_set.rules) + len(rules._NOISE) + 2
    recorder.limit = rules.SCAN_CHUNK_CHARS
    rules.match(rule_set, "header\n" + line + "\nFAILED: nothing matches\n", "ODPS_SQL")
    sizes = recorder.sizes[calls_at_load:]
    assert max(sizes) <= rules.SCAN_CHUNK_CHARS
    # Each pattern goes over the tail once, chunk by chunk (plus the noise filter and redaction
    # on the lines it hits): nothing is searched again from every position.
    assert sum(sizes) <= (patterns + 4) * (TAIL + rules.SCAN_CHUNK_CHARS)


@pytest.mark.parametrize("line", list(WORST.values()), ids=list(WORST))
def test_redaction_hands_no_regular_expression_more_than_its_bound(recorder, line):
    recorder.limit = redact.MAX_CHARS
    redact.redact(line)
    assert max(recorder.sizes) <= redact.MAX_CHARS
    assert len(recorder.sizes) <= len(redact.patterns())


@pytest.mark.parametrize("line", list(WORST.values()), ids=list(WORST))
def test_the_line_a_record_shows_is_cut_and_redacted_whatever_the_line(line):
    rule_set = rule_set_with(r"ODPS-0130131: ", r"a{5}")
    found = rules.match(rule_set, line + "\n")
    assert found.line is None or len(found.line) <= rules.LINE_CHARS


def test_every_pattern_the_function_runs_on_log_text_passes_the_load_check():
    everything = [re.compile(p, re.MULTILINE) for _, p in rules._NOISE]
    everything += [re.compile(rules._ESCAPES), *redact.patterns()]
    everything += [p for rule in rules.load().rules for p in rule.patterns]
    for pattern in everything:
        assert patterns.explosive(pattern.pattern, pattern.flags) is None, pattern.pattern


ERROR = "FAILED: ODPS-0130131:[1,2] Table not found"


def test_a_long_line_keeps_its_start_and_its_end_and_the_tokens_the_cuts_fall_in_go():
    # Cut right after "u/Pw", the URL no longer has the "@" that shows where its password ends;
    # the end kept begins inside another password: what is left of either token must go.
    room = rules.SCAN_LINE_CHARS - len(redact.ELLIPSIS)
    head = "x" * (room - room // 2 - len(ERROR) - len(" jdbc:oracle:thin:u/Pw") - 1) + " " + ERROR
    head += " jdbc:oracle:thin:u/Pw"
    tail = "cret2@host some text "
    tail += "y" * (room // 2 - len(tail))  # the end kept starts at "cret2"
    middle = "Secret@host " + "z " * 1000 + "jdbc:oracle:thin:u/PwSe"
    line = head + middle + tail
    scanned = rules.scanned(line)
    assert len(scanned) <= rules.SCAN_LINE_CHARS
    assert scanned.startswith("x") and scanned.endswith("y")
    assert "Pw" not in scanned and "cret" not in scanned
    found = rules.match(rules.load(), line + "\n")
    assert found.rule is not None and found.rule.name == "maxcompute-table-not-found"
    assert "Pw" not in found.line and "cret" not in found.line


def test_an_error_printed_after_a_long_echo_is_still_found():
    line = "x " * 3000 + ERROR
    found = rules.match(rules.load(), line + "\n")
    assert found.rule is not None and found.line.endswith(ERROR)
