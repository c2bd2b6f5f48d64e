"""Failure rules: the shipped set against whole logs of every node type, the noise they must ignore,
and the checks a rules file has to pass before the function will use it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dwrerun import rules
from dwrerun.redact import redact

LOGS = Path(__file__).parent / "logs"
CASES = json.loads((LOGS / "cases.json").read_text(encoding="utf-8"))["cases"]
SHIPPED = rules.load()


def log_of(case: dict) -> str:
    return (LOGS / case["log"]).read_text(encoding="utf-8")


def case_id(case: dict) -> str:
    return case["log"].removesuffix(".log")


# --- the shipped rules against the logs ----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_each_log_is_matched_by_its_rule_on_its_error_line(case):
    found = rules.match(SHIPPED, log_of(case), case["taskType"])
    if case["rule"] == rules.DEFAULT_RULE:
        assert found.rule is None, f"{found.rule and found.rule.name} matched line {found.line_number}: {found.line}"
        return
    assert found.rule is not None and found.rule.name == case["rule"]
    assert case["line"] in found.line
    lines = log_of(case).splitlines()
    assert found.line.strip("…") in redact(lines[found.line_number - 1])  # the line number is the whole log's


def test_every_shipped_rule_has_a_log_that_shows_it():
    shown = {case["rule"] for case in CASES}
    assert {rule.name for rule in SHIPPED.rules} <= shown


@pytest.mark.parametrize("rule", SHIPPED.rules, ids=lambda rule: rule.name)
def test_a_rule_matches_no_other_log(rule):
    # Alone, so that no earlier rule hides a wrong match: noise, echoes and other errors stay unmatched.
    alone = rules.RuleSet((rule,), "one rule")
    for case in CASES:
        if case["rule"] != rule.name:
            found = rules.match(alone, log_of(case), case["taskType"])
            assert found.rule is None, f"{rule.name} matched {case['log']} line {found.line_number}: {found.line}"


def test_not_retryable_rules_come_before_retryable_ones():
    # A log showing a permanent error next to a transient one must not be rerun.
    actions = [rule.action for rule in SHIPPED.rules]
    assert actions == sorted(actions, key=lambda action: action == rules.RERUN)


def test_every_shipped_rule_names_a_public_source():
    for rule in SHIPPED.rules:
        assert rule.source.startswith("https://"), rule.name
        assert rule.description, rule.name


@pytest.mark.parametrize(
    ("log", "task_type", "rule", "why"),
    [
        ("odps_sql_table_not_found.log", "ODPS_SQL", "maxcompute-table-not-found", "a comment line"),
        ("odps_sql_unknown_with_noise.log", "ODPS_SQL", "maxcompute-internal-error", "a comment line"),
        ("odps_sql_unknown_with_noise.log", "ODPS_SQL", "shell-command-not-found", "a comment line"),
        ("odps_sql_unknown_with_noise.log", "ODPS_SQL", "jdbc-connection-failed", "inside a quoted string"),
        ("odps_sql_unknown_with_noise.log", "ODPS_SQL", "hologres-connection-limit", "inside a quoted string"),
        ("odps_sql_unknown_with_noise.log", "ODPS_SQL", "network-reset-or-timeout", "a warning or debug line"),
        ("di_connection_refused.log", "DI", "jdbc-connection-failed", None),
        ("pyodps_missing_module.log", "PYODPS3", "python-missing-module", "a source line in a Python stack trace"),
        ("shell_command_not_found.log", "DIDE_SHELL", "shell-command-not-found", None),
    ],
)
def test_noise_lines_are_seen_and_passed_over(log, task_type, rule, why):
    # Each kind of noise in the logs is recognised for what it is: the explain command shows these.
    found = rules.match(SHIPPED, (LOGS / log).read_text(encoding="utf-8"), task_type)
    reasons = {ignored.why for ignored in found.ignored if ignored.rule == rule}
    if why is None:
        assert found.rule.name == rule
    else:
        assert any(reason.startswith(why) for reason in reasons), reasons


def test_a_warning_is_passed_over_and_the_error_below_it_found():
    log = (
        "2024-11-28 01:05:43.218 [job-0] WARN  DBUtil - Code:[MYSQLErrCode-02] Communications link failure, retry 1\n"
        "2024-11-28 01:05:44 INFO connected on retry 2\n"
        "\tat com.mysql.jdbc.ConnectionImpl.connectWithRetries(ConnectionImpl.java:2350) Code:[MYSQLErrCode-02]\n"
        "com.alibaba.datax.common.exception.DataXException: Code:[MYSQLErrCode-02], Description:[...]\n"
    )
    found = rules.match(SHIPPED, log, "DI")
    assert found.rule.name == "jdbc-connection-failed" and found.line_number == 4
    assert [i.why for i in found.ignored] == ["a warning or debug line", "a Java stack frame"]


def test_task_types_limit_a_rule_and_say_so():
    log = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'\n"
    assert rules.match(SHIPPED, log, "PYODPS3").rule.name == "python-missing-module"
    assert rules.match(SHIPPED, log, "pyodps3").rule.name == "python-missing-module"  # case does not matter
    other = rules.match(SHIPPED, log, "ODPS_SQL")
    assert other.rule is None and "python-missing-module" in other.not_applicable
    assert rules.match(SHIPPED, log, None).rule is None  # unknown node type: only rules for every type


# --- the tail, the line ----------------------------------------------------------------------------


def test_only_the_tail_is_scanned_and_line_numbers_count_the_whole_log():
    early = "FAILED: ODPS-0130131:[1,1] Table not found - table a.b cannot be resolved\n"
    filler = "".join(f"2024-11-28 01:{n // 60 % 60:02d}:{n % 60:02d} INFO M1_job_0:{n}/0/9[50%]\n" for n in range(3000))
    assert len(filler) > rules.TAIL_CHARS
    late = "FAILED: ODPS-0010000:System internal error - fuxi JobMaster error\n"
    found = rules.match(SHIPPED, early + filler + late, "ODPS_SQL")
    assert found.rule.name == "maxcompute-internal-error"  # the early error is outside the tail
    assert found.line_number == 3002 == found.lines
    assert found.first_scanned_line > 2
    assert rules.match(SHIPPED, early + filler, "ODPS_SQL").rule is None


def test_a_long_matched_line_is_cut_around_the_match_and_redacted():
    sql = "select " + ", ".join(f"col_{n}" for n in range(200))
    line = (
        f"DataXException: Code:[DBUtilErrorCode-07] - 执行的SQL为: {sql} jdbcUrl=jdbc:mysql://u:hunter2@h/db 具体错误信息为："
        "com.mysql.jdbc.exceptions.jdbc4.CommunicationsException: Communications link failure"
    )
    found = rules.match(SHIPPED, line + "\n", "DI")
    assert found.rule.name == "jdbc-connection-failed"
    assert len(found.line) <= rules.LINE_CHARS
    assert "Communications link failure" in found.line and found.line.startswith("…")
    assert "hunter2" not in found.line


def test_an_empty_log_and_a_log_without_newlines_are_handled():
    empty = rules.match(SHIPPED, "", "ODPS_SQL")
    assert (empty.rule, empty.lines, empty.line) == (None, 0, None)
    found = rules.match(SHIPPED, "FAILED: ODPS-0130161:[1,8] Parse exception - invalid token", "ODPS_SQL")
    assert found.rule.name == "maxcompute-syntax-error" and found.line_number == 1 == found.lines


# --- checking a rules file --------------------------------------------------------------------------

GOOD = {"name": "r1", "source": "https://example.com/doc", "patterns": ["boom"], "action": "skip"}


def doc(*rule_list, **top) -> str:
    return json.dumps({"rules": list(rule_list), **top})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"rules": [\n  {"name": "r1",}\n]}', "line 2 column 17: not valid JSON (Expecting property name"),
        ('{"rules": [{"name": "r1", "patterns": ["a\\d"]}]}', "a backslash is written twice"),
        ("[]", 'a JSON object with a list "rules"'),
        (doc(GOOD, extra=1), "unknown top-level key(s) extra"),
        (doc({**GOOD, "pattern": ["x"]}), 'rule 1 "r1": unknown key(s) pattern'),
        (doc({**GOOD, "name": "has space"}), 'rule 1 "has space": name must be'),
        (doc({**GOOD, "name": "default"}), 'the name "default" is reserved'),
        (doc(GOOD, GOOD), 'rule 2 "r1": the name is already used'),
        (doc({k: v for k, v in GOOD.items() if k != "source"}), 'rule 1 "r1": source is required'),
        (doc({**GOOD, "action": "retry"}), "action must be 'rerun' or 'skip', got 'retry'"),
        (doc({**GOOD, "patterns": []}), "patterns must be a non-empty list"),
        (doc({**GOOD, "patterns": "boom"}), "patterns must be a non-empty list"),
        (doc({**GOOD, "patterns": ["ok", "(unclosed"]}), "patterns[1] '(unclosed' is not a valid regular expression"),
        (doc({**GOOD, "patterns": ["x*"]}), "patterns[0] 'x*' matches an empty line"),
        (doc({**GOOD, "patterns": ["x" * 3000]}), "at most 2000 are allowed"),
        (doc({**GOOD, "taskTypes": []}), "taskTypes must be a non-empty list"),
        (doc({**GOOD, "taskTypes": ["ODPS SQL"]}), "got 'ODPS SQL'"),
        (doc({**GOOD, "action": "rerun", "maxReruns": -1}), "maxReruns must be a whole number of at least 0"),
        (doc({**GOOD, "action": "rerun", "maxReruns": True}), "maxReruns must be a whole number"),
        (doc({**GOOD, "action": "rerun", "delaySeconds": 86401}), "delaySeconds must be at most 86400"),
        (doc({**GOOD, "maxReruns": 1}), "maxReruns and delaySeconds only apply to action 'rerun'"),
        (doc(*[{**GOOD, "name": f"r{n}"} for n in range(201)]), "201 rules, at most 200"),
        (doc("not a rule"), "rule 1: a rule must be a JSON object"),
    ],
)
def test_a_bad_rules_file_is_refused_with_a_message_naming_the_rule_and_the_problem(text, message):
    with pytest.raises(rules.RulesError) as raised:
        rules.parse(text, "my-rules.json")
    assert str(raised.value).startswith("failure rules in my-rules.json: ")
    assert message in str(raised.value)


def test_a_good_rule_keeps_every_field():
    (rule,) = rules.parse(
        doc(
            {
                "name": "odps-quota",
                "description": "quota",
                "source": "https://example.com",
                "taskTypes": ["odps_sql"],
                "patterns": ["AllOrNothingResourceWaitTimeout"],
                "action": "rerun",
                "maxReruns": 1,
                "delaySeconds": 600,
            }
        )
    ).rules
    assert (rule.name, rule.action, rule.max_reruns, rule.delay_seconds) == ("odps-quota", "rerun", 1, 600)
    assert rule.task_types == {"ODPS_SQL"} and rule.description == "quota"


def test_load_names_the_setting_for_a_missing_file_and_resolves_relative_paths(tmp_path):
    with pytest.raises(rules.RulesError, match=r"RERUN_RULES_FILE='no/such.json' \(no/such.json\)"):
        rules.load("no/such.json")
    assert rules.resolve("dwrerun/failure_rules.json") == rules.DEFAULT_FILE  # relative to the code package
    assert rules.load("dwrerun/failure_rules.json") is rules.load(None)  # one parse per file version
    absolute = tmp_path / "rules.json"
    absolute.write_text(doc(GOOD))
    assert rules.load(str(absolute)).path == str(absolute)


def test_an_edited_file_is_parsed_again_and_a_broken_edit_is_refused(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(doc(GOOD))
    first = rules.load(str(path))
    assert rules.load(str(path)) is first
    path.write_text(doc({**GOOD, "name": "r2"}))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert rules.load(str(path)).rules[0].name == "r2"
    path.write_text(doc({**GOOD, "action": "maybe"}))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000))
    with pytest.raises(rules.RulesError, match="action must be"):
        rules.load(str(path))


def test_a_rules_error_is_a_config_error():
    # The HTTP function answers 500 InvalidConfiguration for every ConfigError, this one included.
    # (rules' own ConfigError: the FC harness may have reloaded dwrerun.config since this import.)
    assert issubclass(rules.RulesError, rules.ConfigError)


DIRTY = next(rule for rule in SHIPPED.rules if rule.name == "di-dirty-data")


@pytest.mark.parametrize(
    ("log", "why"),
    [
        ("2024-11-28 01:00:00.123 [job-0] WARN  Checker - Code:[Framework-14] is near\n", "a warning or debug line"),
        ("WARNING:odps.pyodpswrapper:Code:[Framework-14]\n", "a warning or debug line"),
        ("\tat com.example.Checker.check(Code:[Framework-14].java:12)\n", "a Java stack frame"),
        ('  File "/jobs/Code:[Framework-14].py", line 3, in <module>\n', "a Python stack frame"),
        (
            '  File "/jobs/etl.py", line 3, in <module>\n    raise Stop("Code:[Framework-14]")\n',
            "a source line in a Python",
        ),
        ("-- seen before: Code:[Framework-14]\n", "a comment line"),
        ("# retry on Code:[Framework-14]\n", "a comment line"),
        ("+ echo 'Code:[Framework-14]'\n", "a shell trace line"),
        ("select * from t where msg = 'Code:[Framework-14]';\n", "inside a quoted string"),
    ],
)
def test_each_kind_of_noise_is_passed_over(log, why):
    alone = rules.RuleSet((DIRTY,), "one rule")
    found = rules.match(alone, log, "DI")
    assert found.rule is None and found.ignored[0].why.startswith(why)
    # the same error on a line of its own is found
    real = rules.match(alone, log + "DataXException: Code:[Framework-14], Description:[...]\n", "DI")
    assert real.rule is DIRTY and real.line_number == log.count("\n") + 1


def test_the_tail_starts_at_a_whole_line():
    # The tail's first character falls inside a comment line, right after its "-- ": the cut line
    # must not be scanned as if it began with the error code.
    line = "-- FAILED: ODPS-0130131:[1,1] Table not found\n"
    filler = "x" * 99 + "\n"
    body = filler * (rules.TAIL_CHARS // len(filler) + 1)
    log = line + body[: rules.TAIL_CHARS - (len(line) - 3)]
    assert len(log) - rules.TAIL_CHARS == 3
    assert rules.match(SHIPPED, log, "ODPS_SQL").rule is None


def test_a_tail_that_starts_at_a_line_start_keeps_that_line_and_numbers_it():
    # The tail's first character is the first of a line (the one before ends just before it):
    # that line is whole, so it is scanned, and it is the first scanned line.
    tail = "boom\n" + "x" * 99 + "\n"
    tail += ("x" * 99 + "\n") * ((rules.TAIL_CHARS - len(tail)) // 100)
    tail += "y" * (rules.TAIL_CHARS - len(tail) - 1) + "\n"
    log = "first\n" + tail
    assert len(log) - rules.TAIL_CHARS == len("first\n")
    found = rules.match(BOOM, log)
    assert (found.rule.name, found.line_number, found.line, found.first_scanned_line) == ("boom", 2, "boom", 2)
    assert found.lines == log.count("\n")
    unmatched = rules.match(BOOM, log.replace("boom", "fine"))
    assert (unmatched.rule, unmatched.first_scanned_line) == (None, 2)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r"ODPS-0130131:\s?Table", "ODPS-0130131:"),
        (r"java\.net\.ConnectException", "java.net.ConnectException"),
        (r"Code:\[x\]", "Code:[x]"),
        (r"abcd?", "abc"),  # d may be absent
        (r"abcde*f", "abcd"),
        (r"abcd{0,2}", "abc"),
        (r"abc|xyz", ""),  # a top-level alternative: no text every match starts with
        (r"abc(?:x|y)", "abc"),
        (r"(?i)abcdef", ""),  # flags change what matches
        (r"^abc", ""),
        (r"[|]abc", ""),
        # A | in a character class is a member, not an alternative; the class ends at its ].
        (r"abc[x|]", "abc"),
        (r"abc[x]|y", ""),  # y alone matches: no text every match starts with
        (r"abc[]|]", "abc"),  # a ] first in a class is a member, not its end
        (r"abc[\]|]", "abc"),  # so is an escaped ] anywhere in it
        (r"ab\dcd", ""),  # too short before \d
        (r"abc\ def", "abc def"),
        (r"\(abcd", "(abcd"),
        (r"\(abc|xyz", ""),  # the escaped ( opens no group: the | is top-level, xyz alone matches
    ],
)
def test_the_text_a_pattern_must_start_with_is_never_wrong(pattern, literal):
    # A wrong literal would hide a match (the pattern is skipped when its literal is absent).
    assert rules._leading_literal(pattern) == literal


def test_an_escape_before_a_top_level_alternative_does_not_hide_the_alternative():
    # "Connection refused\." or "Connection reset": the escaped "." is one character, so the | right
    # after it is a top-level alternative and the second one alone matches. Taking text every match
    # starts with ("Connection refused.") would skip this rule for a log that has only the reset.
    (rule,) = rules.parse(doc({**GOOD, "name": "net", "patterns": [r"Connection refused\.|Connection reset"]})).rules
    log = "2024-11-28 01:05:43 INFO start\njava.net.SocketException: Connection reset\n"
    found = rules.match(rules.RuleSet((rule,), "net-rules.json"), log)
    assert (found.rule, found.line_number, found.line) == (rule, 2, "java.net.SocketException: Connection reset")


def test_a_group_closed_before_a_top_level_alternative_does_not_hide_the_alternative():
    # "Connection (refused)" or "timed out": the group is closed before the |, so the | is a
    # top-level alternative and "timed out" alone matches. Counting the closed group as still open
    # would take "Connection " as text every match starts with, and skip the rule for this log.
    (rule,) = rules.parse(doc({**GOOD, "name": "net", "patterns": [r"Connection (refused)|timed out"]})).rules
    log = "2024-11-28 01:05:43 INFO start\nread timed out after 30000 ms\n"
    found = rules.match(rules.RuleSet((rule,), "net-rules.json"), log)
    assert (found.rule, found.line_number, found.line) == (rule, 2, "read timed out after 30000 ms")


def test_a_hit_that_starts_on_an_empty_first_line_shows_that_line_not_the_rest_of_the_log():
    # A pattern spanning lines (here the newline before "boom") is shown by the line its match
    # starts on: the log's empty first line, never the whole log after it.
    spanning = rules.parse(doc({**GOOD, "name": "spanning", "patterns": ["\nboom"]}), "spanning-rules.json")
    found = rules.match(spanning, "\nboom\nnext line\n")
    assert (found.rule.name, found.line_number, found.line, found.lines) == ("spanning", 1, "", 3)


def test_a_tail_of_exactly_one_chunk_is_searched_whole_so_a_pattern_may_span_its_last_newline():
    # SCAN_CHUNK_CHARS characters, the last line without a newline: one chunk, not two
    spanning = rules.parse(doc({**GOOD, "name": "spanning", "patterns": ["Caused by\nboom"]}), "spanning-rules.json")
    before = "x" * 1000 + "\n" + "x" * (rules.SCAN_CHUNK_CHARS - 1000 - len("Caused by\nboom") - 2) + "\n"
    log = before + "Caused by\nboom"
    assert len(log) == rules.SCAN_CHUNK_CHARS
    found = rules.match(spanning, log)
    assert (found.rule.name, found.line_number, found.line) == ("spanning", 3, "Caused by")


def test_a_log_longer_than_a_chunk_is_cut_at_the_last_newline_a_chunk_holds_not_the_first():
    # A chunk is as many whole lines as fit: cut after every line, a pattern spanning two lines
    # (here "Caused by" and the "boom" under it) would never be seen in a long log.
    spanning = rules.parse(doc({**GOOD, "name": "spanning", "patterns": ["Caused by\nboom"]}), "spanning-rules.json")
    log = "start\nCaused by\nboom\n" + ("x" * 99 + "\n") * (2 * rules.SCAN_CHUNK_CHARS // 100 + 1)
    assert len(log) > 2 * rules.SCAN_CHUNK_CHARS
    found = rules.match(spanning, log)
    assert (found.rule.name, found.line_number, found.line) == ("spanning", 2, "Caused by")


def test_nothing_is_searched_past_the_end_of_the_log_after_a_hit_on_its_last_line():
    # The hit on the last line is echoed code (noise), and the search goes on from the line
    # after it: there is none. An empty match there (here after a quote and the newline) would be
    # a hit on a line the log does not have.
    (rule,) = rules.parse(doc({**GOOD, "name": "edge", "patterns": ["boom|(?<='\n)"]})).rules
    assert rules.match(rules.RuleSet((rule,), "edge-rules.json"), "x 'boom'\n").rule is None


# --- noise and the shown line, with a one-rule set ------------------------------------------------

BOOM = rules.parse(doc({**GOOD, "name": "boom", "patterns": ["boom"]}), "boom-rules.json")
ECHOED = "inside a quoted string (echoed code)"
SOURCE_LINE = "a source line in a Python stack trace"


def ignored_as(log: str) -> list[tuple[int, str]]:
    found = rules.match(BOOM, log)
    assert found.rule is None, f"matched line {found.line_number}: {found.line!r}"
    return [(hit.line_number, hit.why) for hit in found.ignored]


def matched_line(log: str, pattern_rules=BOOM) -> tuple[int, str]:
    found = rules.match(pattern_rules, log)
    assert found.rule is not None, f"ignored: {found.ignored}"
    return found.line_number, found.line


@pytest.mark.parametrize(
    "line",
    [
        "job='etl' failed: boom",  # a closed quoted value before the error
        "'etl' failed: boom",  # one that opens the line
        "a='x' b='y' boom",
    ],
)
def test_a_hit_after_closed_quotes_is_the_error(line):
    assert matched_line(line + "\n") == (1, line)


@pytest.mark.parametrize("line", ["echo 'boom'", "a='x' b='boom", "'x' 'y' 'boom'"])
def test_a_hit_inside_an_open_single_quote_is_echoed_code(line):
    assert ignored_as(line + "\n") == [(1, ECHOED)]


@pytest.mark.parametrize(
    "log",
    [
        'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\n    boom()\n',
        'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\n\tboom()\n',  # a tab
        '\n  File "job.py", line 3, in <module>\n    boom()\n',  # the frame right after an empty first line
        'File "job.py", line 3, in <module>\n    boom()\n',  # the frame opens the log, not indented
    ],
)
def test_the_source_line_under_a_python_frame_is_code_not_the_error(log):
    (number,) = [n for n, line in enumerate(log.split("\n"), start=1) if "boom" in line]
    assert ignored_as(log) == [(number, SOURCE_LINE)]


def test_an_indented_line_after_an_empty_line_is_not_a_frames_source_line():
    assert matched_line('  File "job.py", line 3, in <module>\n\n    boom()\n') == (3, "    boom()")


@pytest.mark.parametrize(
    ("log", "shown"),
    [
        ("failed: boom at X\r\n", "failed: boom at X"),  # only the CR of a CRLF goes
        ("failed: boom  \r\n", "failed: boom  "),  # trailing spaces stay
        ("\rfailed: boom\r\n", "\rfailed: boom"),
    ],
)
def test_a_crlf_lines_carriage_return_is_not_shown(log, shown):
    assert matched_line(log) == (1, shown)


def test_a_line_of_exactly_line_chars_is_shown_whole():
    line = "boom " + "." * (rules.LINE_CHARS - 5)
    assert matched_line(line + "\n") == (1, line)


@pytest.mark.parametrize(
    ("before", "after", "begin", "leading", "trailing"),
    [
        (500, 500, 500 - rules.LINE_CHARS // 4, "…", "…"),  # a quarter of the room before the hit
        (0, 500, 0, "", "…"),  # at the start: nothing cut before it
        (500, 0, 504 - (rules.LINE_CHARS - 2), "…", ""),  # at the end: the window ends with the line
        (10, 500, 0, "", "…"),
    ],
)
def test_a_long_line_is_cut_to_line_chars_around_the_hit_with_an_ellipsis_where_cut(
    before, after, begin, leading, trailing
):
    line = "a" * before + "boom" + "b" * after
    number, shown = matched_line(line + "\n")
    width = rules.LINE_CHARS - 2
    assert shown == leading + line[begin : begin + width] + trailing
    assert len(shown) == len(leading) + width + len(trailing)


def test_a_long_line_whose_hit_redaction_hid_is_shown_from_its_start():
    secret = rules.parse(doc({**GOOD, "name": "pw", "patterns": ["password=hunter2"]}), "pw-rules.json")
    line = "word " * 80 + "password=hunter2 failed " + "tail " * 20
    number, shown = matched_line(line + "\n", secret)
    redacted = redact(line)
    assert "hunter2" not in redacted
    assert shown == redacted[: rules.LINE_CHARS - 2] + "…"


@pytest.mark.parametrize("task_types", [["ODPS_SQL"], ["XXXX"], ["X"]])
def test_a_rule_for_named_node_types_never_applies_when_the_type_is_unknown(task_types):
    (rule,) = rules.parse(doc({**GOOD, "taskTypes": task_types})).rules
    assert not rule.applies_to(None) and not rule.applies_to("")
    assert rule.applies_to(task_types[0].lower())


def test_a_missing_shipped_rules_file_is_named_as_such(monkeypatch, tmp_path):
    monkeypatch.setattr(rules, "DEFAULT_FILE", tmp_path / "gone.json")
    with pytest.raises(rules.RulesError) as raised:
        rules.load(None)
    assert str(raised.value) == (
        f"failure rules: cannot read the shipped rules file ({tmp_path / 'gone.json'}): No such file or directory"
    )


def test_a_missing_rules_file_is_named_by_the_setting_with_the_systems_reason(tmp_path):
    missing = tmp_path / "gone.json"
    with pytest.raises(rules.RulesError) as raised:
        rules.load(str(missing))
    assert str(raised.value) == (
        f"failure rules: cannot read RERUN_RULES_FILE={str(missing)!r} ({missing}): No such file or directory"
    )


def test_a_rules_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(
        json.dumps({"rules": [{**GOOD, "description": "caf\u00e9"}]}, ensure_ascii=False).encode("latin-1")
    )
    with pytest.raises(rules.RulesError) as raised:
        rules.load(str(path))
    assert str(raised.value).startswith(f"failure rules in {path}: cannot read the file: 'utf-8' codec can't decode")


def test_a_rules_file_in_utf8_is_read_as_utf8(tmp_path):
    path = tmp_path / "utf8.json"
    path.write_bytes(
        json.dumps({"rules": [{**GOOD, "description": "caf\u00e9 \u4e2d\u6587"}]}, ensure_ascii=False).encode()
    )
    assert rules.load(str(path)).rules[0].description == "caf\u00e9 \u4e2d\u6587"


ALLOWED_KEYS = "action, delaySeconds, description, maxReruns, name, patterns, source, taskTypes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"rules": [\n  {"name": "r1",}\n]}',
         "line 2 column 17: not valid JSON (Expecting property name enclosed in double quotes)"),
        ('{"rules": [{"name": "r1", "patterns": ["a\\d"]}]}',
         'line 1 column 42: not valid JSON (Invalid \\escape); in JSON a backslash is written twice, so the '
         'regular expression \\d+ is written "\\\\d+"'),
        ("[" * 100_000, "not valid JSON (nested too deep)"),
        ("[]", 'the file must be a JSON object with a list "rules": {"rules": [...]}'),
        ('{"rules": {}}', 'the file must be a JSON object with a list "rules": {"rules": [...]}'),
        (doc(GOOD, zzz=2, extra=1), "unknown top-level key(s) extra, zzz: allowed are rules, description"),
        (doc({**GOOD, "pattern": ["x"]}), f'rule 1 "r1": unknown key(s) pattern: allowed are {ALLOWED_KEYS}'),
        (doc({**GOOD, "zzz": 1, "pattern": ["x"]}),
         f'rule 1 "r1": unknown key(s) pattern, zzz: allowed are {ALLOWED_KEYS}'),
        (doc({**GOOD, "name": "has space"}),
         "rule 1 \"has space\": name must be 1-64 letters, digits, '.', '_' or '-', got 'has space'"),
        (doc({**GOOD, "name": 5}), "rule 1: name must be 1-64 letters, digits, '.', '_' or '-', got 5"),
        (doc({**GOOD, "name": ""}), "rule 1: name must be 1-64 letters, digits, '.', '_' or '-', got ''"),
        (doc({**GOOD, "name": "default"}), 'rule 1 "default": the name "default" is reserved for "no rule matched"'),
        (doc(GOOD, GOOD), 'rule 2 "r1": the name is already used by an earlier rule'),
        (doc({**GOOD, "source": "  "}),
         'rule 1 "r1": source is required: where the error and its meaning are documented (a URL)'),
        (doc({**GOOD, "description": 5}), 'rule 1 "r1": description must be text'),
        (doc({**GOOD, "action": "retry"}), "rule 1 \"r1\": action must be 'rerun' or 'skip', got 'retry'"),
        (doc({**GOOD, "patterns": []}), 'rule 1 "r1": patterns must be a non-empty list of regular expressions'),
        (doc({**GOOD, "patterns": ["ok", ""]}), 'rule 1 "r1": patterns[1] must be a non-empty string'),
        (doc({**GOOD, "patterns": ["ok", 5]}), 'rule 1 "r1": patterns[1] must be a non-empty string'),
        (doc({**GOOD, "patterns": ["x*"]}),
         "rule 1 \"r1\": patterns[0] 'x*' matches an empty line, so it would match every log"),
        # A pattern for empty lines only (it matches no "x") names no error either: refused the same.
        (doc({**GOOD, "patterns": ["^$"]}),
         "rule 1 \"r1\": patterns[0] '^$' matches an empty line, so it would match every log"),
        (doc({**GOOD, "patterns": ["x" * 2001]}),
         'rule 1 "r1": patterns[0] is 2001 characters long, at most 2000 are allowed'),
        (doc({**GOOD, "taskTypes": []}),
         'rule 1 "r1": taskTypes must be a non-empty list of node types such as ODPS_SQL (or left out)'),
        (doc({**GOOD, "taskTypes": "ODPS_SQL"}),
         'rule 1 "r1": taskTypes must be a non-empty list of node types such as ODPS_SQL (or left out)'),
        (doc({**GOOD, "taskTypes": ["ODPS_SQL", 5]}),
         'rule 1 "r1": taskTypes must hold node types such as ODPS_SQL or DIDE_SHELL, got 5'),
        (doc({**GOOD, "action": "rerun", "maxReruns": 1.5}),
         'rule 1 "r1": maxReruns must be a whole number of at least 0, got 1.5'),
        (doc({**GOOD, "action": "rerun", "delaySeconds": 0}),
         'rule 1 "r1": delaySeconds must be a whole number of at least 1, got 0'),
        (doc({**GOOD, "action": "rerun", "delaySeconds": 86401}),
         'rule 1 "r1": delaySeconds must be at most 86400, got 86401'),
        (doc({**GOOD, "delaySeconds": 1}), "rule 1 \"r1\": maxReruns and delaySeconds only apply to action 'rerun'"),
        (doc(*[{**GOOD, "name": f"r{n}"} for n in range(201)]), "201 rules, at most 200 are allowed"),
        (doc("not a rule"), "rule 1: a rule must be a JSON object, got str"),
    ],
)  # fmt: skip
def test_a_bad_rules_document_is_refused_with_the_whole_message(text, message):
    with pytest.raises(rules.RulesError) as raised:
        rules.parse(text)
    assert str(raised.value) == f"failure rules in <rules>: {message}"


def test_an_invalid_regular_expression_is_refused_with_res_reason():
    with pytest.raises(rules.RulesError) as raised:
        rules.parse(doc({**GOOD, "patterns": ["ok", "(unclosed"]}))
    assert str(raised.value) == (
        "failure rules in <rules>: rule 1 \"r1\": patterns[1] '(unclosed' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0"
    )


def test_the_limits_of_a_rules_document_are_accepted():
    most = doc(*[{**GOOD, "name": f"r{n}"} for n in range(200)])
    assert len(rules.parse(most)) == 200
    (rule,) = rules.parse(
        doc({**GOOD, "action": "rerun", "maxReruns": 0, "delaySeconds": 86400, "patterns": ["x" * 2000]})
    ).rules
    assert (rule.max_reruns, rule.delay_seconds, rule.patterns[0].pattern) == (0, 86400, "x" * 2000)
    assert (rule.source, rule.description, rule.task_types) == ("https://example.com/doc", None, None)
    assert rules.parse(doc(GOOD, description="top-level text")).path == "<rules>"
