"""The secrets corpus (tests/secrets/corpus.jsonl): lines in the shapes secrets take in DataWorks
node logs (docs/redaction.md) and the secret substrings that must not survive redaction, nor the
way a record shows a matched line (redacted, then cut)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dwrerun import rules
from dwrerun.redact import redact

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parent / "secrets" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def test_the_corpus_covers_every_shape_of_the_model_with_variants():
    shapes = {}
    for case in CORPUS:
        shapes[case["shape"]] = shapes.get(case["shape"], 0) + 1
    model = {"url", "oracle-thin", "oracle-cli", "user-pass-host", "odbc", "mysql-p", "cli-flag", "sql", "kv",
             "kv-short", "kv-lang", "quoted", "accesskey", "sts", "bearer", "private-key", "signature", "opaque"}  # fmt: skip
    assert set(shapes) == model
    assert len(CORPUS) >= 80


def _id(case: dict) -> str:
    # ASCII only: pytest shows other letters as \u escapes, which mutmut cannot hand back to it to
    # select the test (its run stops: "not found")
    return f"{case['shape']}:{case['line'][:40]}".encode("ascii", "replace").decode("ascii")


@pytest.mark.parametrize("case", CORPUS, ids=_id)
def test_no_secret_of_the_corpus_survives_redaction(case):
    shown = redact(case["line"])
    for secret in case["secrets"]:
        assert secret not in shown, f"{secret!r} survived in {shown!r}"
    for kept in case["keep"]:
        assert kept in shown, f"{kept!r} was lost from {shown!r}"


@pytest.mark.parametrize("case", CORPUS, ids=_id)
def test_no_secret_survives_in_a_matched_line_even_far_into_a_long_line(case):
    # The line a record carries is redacted and cut: the secret must not survive either step, with
    # the error text before it or after it pushing it to the edge of what is shown.
    rule_set = rules.parse(
        json.dumps({"rules": [{"name": "e", "source": "s", "patterns": ["ERRX"], "action": "skip"}]})
    )
    for line in (f"ERRX {case['line']}", f"{'x' * 500} ERRX {case['line']}", f"ERRX {'y ' * 140}{case['line']}"):
        shown = rules.match(rule_set, line + "\n").line
        for secret in case["secrets"]:
            assert secret not in shown, f"{secret!r} survived in {shown!r}"
