"""Secret-looking values are masked in a log line before a record may carry it."""

import pytest

from dwrerun.redact import ELLIPSIS, MASK, TOKEN_CHARS, cut, redact


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        ("jdbc:mysql://etl:S3cr3t!x@rm-bp1.mysql.rds.aliyuncs.com:3306/orders", "S3cr3t!x", "jdbc:mysql://etl:"),
        ("jdbcUrl=jdbc:postgresql://h:5432/db?user=etl&password=hunter2&ssl=true", "hunter2", "&ssl=true"),
        ("jdbc:sqlserver://h:1433;databaseName=db;password=pa55word;encrypt=true", "pa55word", "encrypt=true"),
        ('{"username": "etl", "password": "hunter2"}', "hunter2", '"username": "etl"'),
        (
            "export ALIBABA_CLOUD_ACCESS_KEY_SECRET=AbCdEfGhIjKlMnOpQrStUvWxYz1234",
            "AbCdEfGhIjKlMnOpQrStUvWxYz1234",
            "export",
        ),
        (
            "odpscmd -u LTAI5tQzX2cFy9wRdPr3mKfA -p AbCdEfGhIjKlMnOpQrStUvWxYz1234 -e 'x'",
            "5tQzX2cFy9wRdPr3mKfA",
            "odpscmd",
        ),
        (
            "odpscmd -u LTAI5tQzX2cFy9wRdPr3mKfA -p AbCdEfGhIjKlMnOpQrStUvWxYz1234 -e 'x'",
            "AbCdEfGhIjKlMnOpQrStUvWxYz",
            "-e 'x'",
        ),
        (
            "ossutil cp a oss://b/c -i LTAI5tQzX2cFy9wRdPr3mKfA -k Zyxwvutsrqponmlkjihgfedcba987",
            "Zyxwvutsrqponmlkj",
            "ossutil cp",
        ),
        ("STS.NUgYrLnoC37mZZCNnAbez2LsTFC4xJfKiDRWRrBV2Dx2 expired", "NUgYrLnoC37mZZCNnAbez2", "expired"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJhbGciOiJIUzI1NiJ9", "Authorization"),
        ("headers {'Authorization': 'Bearer test-sts-token-do-not-log'}", "test-sts-token-do-not-log", "headers"),
        ("retrying with Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig after 401", "eyJhbGciOiJIUzI1NiJ9", "after 401"),
        ("GET /logview?h=x&p=prj&i=20241127&token=bXp4R0ZkN0pWS3hOaW1sZmJr&x=1", "bXp4R0ZkN0pWS3hOaW1sZmJr", "&x=1"),
        ("apikey=test-secret-do-not-log&date=20241127", "test-secret-do-not-log", "&date=20241127"),
        ("signed with Signature=9f2c4d1e0a7b4c3d8e5f1a2b3c4d5e6f", "9f2c4d1e0a7b4c3d8e5f1a2b3c4d5e6f", "signed with"),
        (
            "session 0123456789abcdef0123456789abcdef0123456789abcdef opened",
            "0123456789abcdef0123456789abcdef",
            "opened",
        ),
    ],
)
def test_a_secret_is_masked_and_the_rest_of_the_line_kept(line, secret, kept):
    shown = redact(line)
    assert secret not in shown and MASK in shown
    assert kept in shown


@pytest.mark.parametrize(
    "line",
    [
        "FAILED: ODPS-0130131:[10,11] Table not found - table sales_prod.dim_buyer cannot be resolved",
        "com.alibaba.datax.common.exception.DataXException: Code:[MYSQLErrCode-02], Description:[...]",
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='crm.example.com', port=443)",
        "2024-11-28 06:00:01 INFO Exit code of the Shell command 127",
        "/home/admin/alisatasknode/taskinfo/20241127/diide/00/05/13/abcdefgh/T3_0123456789.log",
        "request 0b6f3f2e-5a41-4c8e-9d0e-2f7c1a9e4b01 failed",
    ],
)
def test_an_error_line_without_secrets_is_left_alone(line):
    assert redact(line) == line


def test_a_text_of_exactly_the_limit_is_not_cut():
    assert cut("a" * 10, 10) == "a" * 10
    assert cut("a" * 10, 10, keep_end=True) == "a" * 10


def test_the_end_kept_starts_at_the_first_space_after_the_token_the_cut_falls_in():
    # limit 21: 10 characters of the start, the ellipsis, 10 of the end ("mmkk ab cd"), whose
    # first token, cut, goes: the end kept starts at its first space, not its last
    text = "head word " + "m" * 30 + "kk ab cd"
    assert cut(text, 21, keep_end=True) == "head word " + ELLIPSIS + " ab cd"


def test_a_start_cut_inside_a_token_longer_than_token_chars_loses_only_token_chars_even_with_a_tab_before():
    # the start kept (1000 characters) ends inside a token of 1200 that a tab comes before: the cut
    # drops TOKEN_CHARS of the token, not everything back to the tab
    text = "a\tb " + "t" * 1200
    shown = cut(text, 1000 + len(ELLIPSIS))
    assert shown == text[: 1000 - TOKEN_CHARS] + ELLIPSIS


def test_the_end_kept_may_start_at_a_tab_as_at_a_space():
    # as above, the cut token ending at a tab: the end kept starts there
    text = "head word " + "m" * 30 + "kk\tab cd"
    assert cut(text, 21, keep_end=True) == "head word " + ELLIPSIS + "\tab cd"


def test_a_cut_token_longer_than_token_chars_loses_only_token_chars_of_it_even_with_a_tab_later():
    # the end kept (604 characters) starts inside a token of 600: TOKEN_CHARS of it go, not all
    # of it up to the tab that ends it
    token = "t" * 600
    text = "a " * 400 + "x" * 100 + token + "\tend"
    shown = cut(text, 2 * 604 + 1, keep_end=True)
    assert shown.endswith(ELLIPSIS + token[TOKEN_CHARS:] + "\tend")
