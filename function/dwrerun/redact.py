"""Secret-looking values out of a line of a task's log, before the line goes anywhere.

Task logs hold what scripts print: JDBC URLs with passwords, AccessKeys on an `odpscmd` or
`ossutil` command line, tokens in URLs, `Authorization: Bearer ...` headers. A record may carry
one matched line of a log (never more); `redact` is applied to it first. Redaction is by shape,
so it errs on the side of hiding: a value is replaced by `***`, the name before it is kept so a
person still sees what was there. docs/redaction.md states the model: which shapes a secret takes
in DataWorks node logs, and what is hidden for each; tests/secrets/corpus.jsonl holds lines of
every shape with the secrets that must not survive.

Cost: `redact` first cuts its input to MAX_CHARS (a line longer than that is shown shorter), so no
pattern ever sees more; and no pattern has two unbounded repetitions that can take the same
characters (patterns.explosive checks it, tests/test_text_cost.py pins both), so each costs at
most a fixed number of steps per character of that bounded input.
"""

from __future__ import annotations

import re

MASK = "***"
MAX_CHARS = 4096  # what redaction looks at: a longer line is cut first, and shown cut
# A cut through the middle of a token could leave half a secret that no longer looks like one
# (`…ssw0rd@host`), so the token the cut falls in goes too, up to this many characters of it.
TOKEN_CHARS = 512
ELLIPSIS = "…"

_QUOTED_OR_WORD = r"""(?:"[^"\n]*"?|'[^'\n]*'?|\{[^}\n]*\}?|[^\s"'&;,)}\]]+)"""
# Names a secret goes by in key=value, key: value, "key": "value", key => value, in config files,
# URLs, JSON, YAML, ODBC strings and scripts. Short names must stand alone (`pw`, not `pwned`).
_LONG_NAMES = (
    r"password|passwd|passphrase|secret|token|credentials?|api[_\-]?key|access[_\-]?key[_\-]?secret|"
    r"private[_\-]?key|signature|session[_\-]?(?:id|token)|auth"
)
_SHORT_NAMES = r"pwd|pw|pass|sk|mima"
_OTHER_LANGUAGES = (
    r"密码|口令|密钥|パスワード|비밀번호|passwort|kennwort|contrase[ñn]a|senha|mot[_\- ]de[_\- ]passe|"
    r"wachtwoord|parola|пароль"
)

# Each pattern keeps group 1 (what names the value) and replaces the rest of the match.
_RULES = (
    # A private key: nothing after its BEGIN line is shown.
    r"(-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----).*",
    # Authorization headers (all of the value, whatever the scheme) and bearer tokens anywhere
    r"(?i)(\bAuthorization\s*[:=])[^\n\"']+",
    r"(?i)(\bBearer\s+)(?!\*\*\*)[\w\-.~+/=]+",
    # user:password@ in any URL (jdbc:mysql://etl:pw@host, mongodb+srv://u:p@host, redis://:pw@host):
    # the password runs to the token's last @, so an @ inside it is hidden too.
    r"(://[^\s:/@\"'<>]{0,256}:)[^\s\"'<>]{1,512}(?=@)",
    # Oracle: jdbc:oracle:thin:user/password@host, and user/password on the tools' command lines
    r"(?i)(jdbc:oracle:(?:thin|oci8?|kprb):[^\s/@:\"']{0,128}/)[^\s\"']{1,512}(?=@)",
    r"(?i)(\b(?:sqlplus|sqlldr|expdp|impdp|exp|imp|rman|dgmgrl|conn|connect)\s+(?:-\w+\s+)*"
    r"[^\s/@\"'\-][^\s/@\"']{0,127}/)[^\s\"']{1,512}",
    # user/password@host:port anywhere else
    r"(\b[A-Za-z][\w.$#\-]{0,63}/)[^\s/@\"']{1,256}(?=@[\w.\-]{1,253}:\d)",
    # curl -u user:password
    r"((?<!\S)(?:-u|--user)[ =][^\s:\"']{1,128}:)[^\s\"']+",
    # mysql -p<password> (attached: mysql reads -p then a space as "ask for it"); -P is the port
    r"((?i:\b(?:mysql\w*|mariadb\w*))\b[^\n|;&]{0,512}?(?<!\S)-p)(?:'[^'\n]*'?|\"[^\"\n]*\"?|[^\s'\"]+)",
    # command-line flags that take a secret: odpscmd -p, ossutil -k, --password, --access-key-secret
    r"((?<!\S)(?:-p|-k|(?i:--(?:password|passwd|pass|pwd|access-?key-?secret|secret(?:-?key)?|sk|"
    r"(?:sts-|security-|auth-)?token)))(?:[ =]|(?==)))(?:'[^'\n]*'?|\"[^\"\n]*\"?|\S+)",
    # SQL: IDENTIFIED BY pw, [WITH] PASSWORD 'pw', SET PASSWORD = PASSWORD('pw'), OPTIONS (password 'pw')
    r"(?i)(\bIDENTIFIED\b[^'\"\n]{0,64}?\bBY\s+(?:PASSWORD\s+)?)(?:'[^'\n]*'?|\"[^\"\n]*\"?|[^\s;,)]+)",
    r"(?i)(\bPASSWORD(?:\s*=\s*PASSWORD\s*\(\s*|\s*=\s*|\s*\(\s*|\s+))(?:'[^'\n]*'?|\"[^\"\n]*\"?)",
    # key=value / key: value / "key": "value" / key => value, a quoted value whole (spaces and all)
    (
        rf"(?i)((?:{_LONG_NAMES}|(?<![A-Za-z])(?:{_SHORT_NAMES})(?![A-Za-z])|{_OTHER_LANGUAGES})"
        rf"[\w.\-]{{0,32}}[\"']?\s*(?:=>|[=:：])\s*)(?!\*\*\*){_QUOTED_OR_WORD}"
    ),
    # Alibaba Cloud AccessKey ids (LTAI...) and STS key ids (STS....): the id, then anything after it
    r"(\bLTAI)[A-Za-z0-9]{8,40}",
    r"(\bSTS\.)[A-Za-z0-9]{8,80}",
    # STS security tokens (CAIS...), bare: base64 with + / =
    r"(\bCAIS)[A-Za-z0-9+/=_\-]{8,}",
    # long opaque strings (tokens, keys, signatures, base64): 40+ letters, digits, + / _ - with both
    # letters and digits and a stretch of 16 without _ or -, so file paths and snake_case names stay
    # readable.
    r"()(?<![\w+/\-])(?=[\w+/\-]*\d)(?=[\w+/\-]*[A-Za-z])(?=[\w+/\-]*?[A-Za-z0-9+]{16})[\w+/\-]{40,}={0,2}",
)
# On a line that holds an AccessKey id, a bare 20-40 character word beside it is taken for its
# secret (`sync.py LTAI5t... Zx8Qm2...`, `ODPS('LTAI5t...', 'Zx8Qm2...')`).
_KEY_PAIR = r"()(?<![\w+/=\-])[A-Za-z0-9]{20,40}(?![\w+/=\-])"
_KEY_ID = r"\bLTAI[A-Za-z0-9]{8}|\bSTS\.[A-Za-z0-9]{8}"


def redact(text: str) -> str:
    """`text` with every secret-looking value replaced by ***, cut to MAX_CHARS first."""
    text = cut(text, MAX_CHARS)
    paired = re.search(_KEY_ID, text) is not None
    for pattern in _RULES:  # text until used: re compiles and caches each on the first line redacted
        text = re.sub(pattern, _mask, text)
    if paired:
        text = re.sub(_KEY_PAIR, _mask, text)
    return text


def cut(text: str, limit: int, keep_end: bool = False) -> str:
    """`text` if it is at most `limit` characters, else its start (and with `keep_end` its end),
    an ellipsis where the rest was.

    The token a cut falls in is dropped (up to TOKEN_CHARS of it): half a secret may not look like
    one any more (`u/Pw` without the `@host` that shows where a password ends), so it would
    survive redaction.
    """
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    if not keep_end:
        return _head(text, room) + ELLIPSIS
    return _head(text, room - room // 2) + ELLIPSIS + _tail(text, room // 2)


def _head(text: str, size: int) -> str:
    head = text[:size]
    if not text[size].isspace():
        floor = max(0, size - TOKEN_CHARS)
        space = max(head.rfind(" ", floor), head.rfind("\t", floor))
        head = head[: space + 1] if space >= 0 else head[:floor]
    return head


def _tail(text: str, size: int) -> str:
    tail = text[len(text) - size :]
    if not text[len(text) - size - 1].isspace():
        ceiling = min(size, TOKEN_CHARS)
        spaces = [i for i in (tail.find(" ", 0, ceiling), tail.find("\t", 0, ceiling)) if i >= 0]
        tail = tail[min(spaces) :] if spaces else tail[ceiling:]
    return tail


def patterns() -> list[re.Pattern]:
    """Every pattern redaction runs, compiled (for the checks of tests/test_text_cost.py)."""
    return [re.compile(p) for p in (*_RULES, _KEY_PAIR, _KEY_ID)]


def _mask(match: re.Match) -> str:
    return match.group(1) + MASK
