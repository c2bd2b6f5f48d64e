"""Issue 24 item 5: terminal escapes (colours) are removed before matching and showing. A coloured
WARN line is still a warning, and no escape code reaches `matchedLine`."""

from __future__ import annotations

import pytest

from dwrerun import rules

RED, YELLOW, GREEN, RESET = "\x1b[31m", "\x1b[1;33m", "\x1b[32m", "\x1b[0m"


def test_a_coloured_warning_above_a_real_reset_does_not_make_the_failure_not_retryable():
    log = (
        f"{GREEN}2024-11-28 06:00:01{RESET} INFO start\n"
        f"{YELLOW}WARN{RESET} [main] FAILED: ODPS-0130131:[1,2] Table not found - table tmp.x, created later\n"
        f"{RED}java.net.SocketException: Connection reset{RESET}\n"
    )
    found = rules.match(rules.load(), log, "DI")
    assert found.rule is not None and found.rule.name == "network-reset-or-timeout"
    assert found.line == "java.net.SocketException: Connection reset" and found.line_number == 3
    assert [(i.rule, i.line_number, i.why) for i in found.ignored] == [
        ("maxcompute-table-not-found", 2, "a warning or debug line")
    ]


@pytest.mark.parametrize(
    "escape",
    [
        "\x1b[0m",
        "\x1b[38;5;196m",
        "\x1b[38;2;255;0;0m",
        "\x1b[2K",
        "\x1b[?25l",
        "\x9b31m",  # the one-byte CSI
        "\x1b]0;title\x07",  # a window title (OSC)
        "\x1b]8;;https://x\x1b\\",  # a hyperlink (OSC ended by ST)
        "\x1b(B",  # a charset designation
        "\x1b=",
    ],
)
def test_no_escape_code_reaches_the_matched_line(escape):
    log = f"{escape}FAILED: {escape}ODPS-0130131:[1,2] Table not found{escape} - table x\n"
    found = rules.match(rules.load(), log)
    assert found.rule is not None and found.rule.name == "maxcompute-table-not-found"
    assert found.line == "FAILED: ODPS-0130131:[1,2] Table not found - table x"


def test_escapes_on_other_lines_keep_the_line_numbers():
    log = f"{RED}a\n{RED}\n\x1b]0;t\x07b\nFAILED: ODPS-0130131: Table not found\n"
    found = rules.match(rules.load(), log)
    assert found.line_number == 4
