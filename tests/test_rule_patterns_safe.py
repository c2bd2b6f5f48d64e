"""Item 7 of issue 24: a rules file with a pattern whose matching time can explode is refused at
load, naming the rule, and the explain command says the same. Python's `re` backtracks: `(a+)+$`
takes twice as long per extra `a` on a line of a's with no match, so such a pattern in
RERUN_RULES_FILE would hold every failure event past the function's timeout."""

from __future__ import annotations

import json

import pytest

from dwrerun import patterns, rules


def document(*patterns: str) -> str:
    rule = {"name": "slow-one", "source": "https://example.com", "patterns": list(patterns), "action": "skip"}
    return json.dumps({"rules": [{"name": "fine", "source": "s", "patterns": ["ORA-1"], "action": "skip"}, rule]})


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a+)+$", "nested unbounded repetition"),
        ("(?:x*)*y", "nested unbounded repetition"),
        (r"x(\w+\s?)*$", "nested unbounded repetition"),
        (r"ERROR (?:[a-z]+,?)+ end", "nested unbounded repetition"),
        ("(a?)+b", "a repetition of variable count inside an unbounded repetition"),
        ("(a|aa)+c", "alternatives that can match the same characters"),  # re reads it as a(?:|a)
        (r"(?:\d|\w\w)*x", "alternatives that can match the same characters"),
        (r"\w+\w+x", "two unbounded repetitions that can match the same characters"),
        (r"ERROR .*: .*failed", "two unbounded repetitions that can match the same characters"),
        (r"x\d+a?\d*y", "two unbounded repetitions that can match the same characters"),
        (r"(?i)A+a+", "two unbounded repetitions that can match the same characters"),
    ],
)
def test_a_pattern_whose_time_can_explode_is_refused_naming_the_rule(pattern, why):
    with pytest.raises(rules.RulesError) as raised:
        rules.parse(document(pattern), "mine.json")
    message = str(raised.value)
    assert 'rule 2 "slow-one": patterns[0]' in message and why in message and "mine.json" in message


@pytest.mark.parametrize(
    "pattern",
    [
        r"ODPS-0130161:\s?(?:\[\d+,\d+\] ?)?Parse exception",  # repeats separated by a character neither takes
        r"ERROR: +permission denied for ",
        r"(?:, \w+)*;",  # the inner repeat cannot start the group again: no two ways to split a run
        r"\d+-\d+",
        r"[A-Z]+\d+",
        r"x{2,5}y",  # bounded: at most a fixed number of tries
        r"(?:ab){1,3}",
        r"curl: \((?:6|7|28)\) ",  # alternatives that start differently
        r"(a|ab)+c",  # one way to split: a b can only follow an a in the same turn
        r"(?:\w|\d)*x",  # re makes one class of it: one character a turn
        r"\d+\D+",  # a negated class takes none of its base's characters
        r"\S+\s+\S+",
    ],
)
def test_a_pattern_without_explosive_repetition_is_accepted(pattern):
    assert len(rules.parse(document(pattern))) == 2


def test_every_shipped_pattern_passes_the_check():
    for rule in rules.load().rules:
        for pattern in rule.patterns:
            assert patterns.explosive(pattern.pattern, pattern.flags) is None, (rule.name, pattern.pattern)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a+)+$", "nested unbounded repetition (an unbounded repetition inside another)"),
        # a class of two ranges: the first counts as much as the last (x, then any of a-z0-9 again)
        ("(?:[a-z]x[a-z0-9]+)+$", "nested unbounded repetition (an unbounded repetition inside another)"),
        # the unbounded repeat sits inside a fixed-count one inside the unbounded group
        ("(?:a(?:ba+){2})+$", "nested unbounded repetition (an unbounded repetition inside another)"),
        ("(a?)+b", "a repetition of variable count inside an unbounded repetition"),
        ("(a|aa)+c", "alternatives that can match the same characters, inside an unbounded repetition"),
        (r"\w+\w+x", "two unbounded repetitions that can match the same characters follow each other"),
    ],
)
def test_the_reason_a_pattern_is_refused_is_said_whole(pattern, why):
    # explain_rule.py and the load error print it as it is: the whole reason, nothing around it
    assert patterns.explosive(pattern) == why
