"""Item 7 of issue 24: a rules file with a pattern whose matching time can explode is refused at
load, naming the rule, and the explain command says the same. Python's `re` backtracks: `(a+)+$`
takes twice as long per extra `a` on a line of a's with no match, so such a pattern in
RERUN_RULES_FILE would hold every failure event past the function's timeout."""

from __future__ import annotations

import json
import sys

import pytest

from dwrerun import patterns, rules

# Atomic groups, `(?>...)`, are Python 3.11+: re on 3.10 cannot compile them.
ATOMIC = pytest.mark.skipif(sys.version_info < (3, 11), reason="atomic groups (?>...) need Python 3.11+")


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
        # under ignore case [a-z] takes A-Z too: AXAXA...AXA! splits its turns every way
        (r"(?i)(?:[a-z]x[a-z]+)+$", "nested unbounded repetition"),
        # re folds the Kelvin sign (U+212A) to k: the inner repeat takes k's and K's, which start the turn
        (r"(?i)(?:k\u212a+)+$", "nested unbounded repetition"),
        # the atomic group still tries its unbounded repeat after each length of \w+: cubic on a line of w's
        pytest.param(r"\w+(?>\w+)x", "two unbounded repetitions that can match the same characters", marks=ATOMIC),
        # the character named only inside the atomic group is one the class before it can take
        pytest.param("[\u4e00-\u9fa5]+(?>\u8bef+)x", "two unbounded repetitions", marks=ATOMIC),
        # the same inside an atomic group: it backtracks inside until it first matches (2^n on a's)
        pytest.param(r"(?>(a+)+b)", "nested unbounded repetition", marks=ATOMIC),
        pytest.param(r"(?i)(?>A+a+x)", "two unbounded repetitions", marks=ATOMIC),  # cubic on a line of a's
        # ignore case reaches every group, repeat, alternative and lookahead: each is cubic on a's
        (r"(?i)(?:A+a+)?x", "two unbounded repetitions that can match the same characters"),
        (r"(?i)(A+a+)x", "two unbounded repetitions that can match the same characters"),
        (r"(?i)(?:b|A+a+)x", "two unbounded repetitions that can match the same characters"),
        (r"(?i)(?=A+a+x)", "two unbounded repetitions that can match the same characters"),
        # and the start of an unbounded repeat: the Kelvin sign starts the turn, k's follow (2^n on k's)
        (r"(?i)(?:\u212ak+)+$", "nested unbounded repetition"),
        # an unbounded repeat inside a fixed-count one inside an unbounded one, under ignore case
        (r"(?i)(?:k(?:\u212a+){2})+$", "nested unbounded repetition"),
        (r"(?i)(?:a|A\w)+x", "alternatives that can match the same characters"),  # a or Aa: 2^n on a's
        (r"(?:b|xb+)+$", "nested unbounded repetition"),
        # a? ends each turn's run of a's or starts the next: baabaa... splits 2^n ways
        (
            r"(?:a?ba+)+$",
            "a repetition of variable count inside an unbounded repetition",
        ),  # b+ inside an alternative: xbbbb... splits 4^n ways
        # a class counts every item, a range both its ends, a category all its members (cubic each)
        (r"[x\d]+x+y", "two unbounded repetitions that can match the same characters"),
        (r"[a-z]+a+x", "two unbounded repetitions that can match the same characters"),
        (r"[a-z]+z+x", "two unbounded repetitions that can match the same characters"),
        (r"_+\w+x", "two unbounded repetitions that can match the same characters"),  # \w takes _
        (r"\s+ +x", "two unbounded repetitions that can match the same characters"),
        # under ignore case a range takes the other case of every character in it, and only those
        (r"(?i)[0-9a-z]+0+x", "two unbounded repetitions that can match the same characters"),
        (r"(?i)[A-K]+\u212a+x", "two unbounded repetitions that can match the same characters"),  # k
        # a scoped flag counts: (?i:a) takes A's too (cubic on A's)
        (r"(?i:a)+A+x", "two unbounded repetitions that can match the same characters"),
        (r"(?i:a+)A+x", "two unbounded repetitions that can match the same characters"),
        # characters past Latin-1 are seen: a CJK range, `.` and \w all take \u8bef (cubic on it)
        (r"[\u4e00-\u9fa5]+\u8bef+x", "two unbounded repetitions that can match the same characters"),
        (r"[\u4e01-\u9fa5]+[\u4e02-\u4e03]+x", "two unbounded repetitions that can match the same characters"),
        (r".*\u8bef+x", "two unbounded repetitions that can match the same characters"),
        (r"\w+\u8bef+x", "two unbounded repetitions that can match the same characters"),
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
        r"(?:ab|cd)+$",  # alternatives that start differently, neither empty: each turn is read one way
        r"(?:a(?:b|c?))+$",  # c? can match nothing, beside b: neither b nor c can start the turn again (a)
        r"([\"']).*?\1",  # a back reference is taken to match anything: nothing unbounded after it
        pytest.param(r"a+(?>b)a+", marks=ATOMIC),  # the atomic group takes a b, which ends the first repeat
        r"(?i)[^a]+A+$",  # under ignore case [^a] takes no A either
        r"(?i)[^ab]+A+$",  # under ignore case [^ab] takes no A: the repeats share nothing
        r"(?i)[g-z]+[0-9a-f]+$",  # in either case no character is both g-z and hex
        r"(?i)[a-k]+l+$",  # a range takes the other case of its own characters only: no L
        r"(?-i:a)+A+x",  # (?-i:...) keeps a case-sensitive: a's then A's
        r"[\u4e00-\u9fa5]+:\d+",  # a CJK range, then a colon neither takes
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
