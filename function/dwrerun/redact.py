"""Secret-looking values out of a line of a task's log, before the line goes anywhere.

Task logs hold what scripts print: JDBC URLs with passwords, AccessKeys on an `odpscmd` or
`ossutil` command line, tokens in URLs, `Authorization: Bearer ...` headers. A record may carry
one matched line of a log (never more); `redact` is applied to it first. Redaction is by shape,
so it errs on the side of hiding: a value is replaced by `***`, the name before it is kept so a
person still sees what was there.
"""

from __future__ import annotations

import re

MASK = "***"

# Each pattern keeps group 1 (what names the value) and replaces the rest of the match.
_RULES = (
    # Authorization headers (all of the value, whatever the scheme) and bearer tokens anywhere
    r"(?i)(\bAuthorization\s*[:=]\s*)[^\n\"']+",
    r"(?i)(\bBearer\s+)(?!\*\*\*)[\w\-.~+/=]+",
    # user:password@ in any URL (jdbc:mysql://etl:pw@host, https://u:p@host, mongodb://...)
    r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>]+:)[^\s@/\"'<>]+(?=@)",
    # key=value / key: value / "key": "value" for names that hold secrets, in URLs, JSON and scripts
    (
        r"(?i)((?:[\w.\-]*?)(?:password|passwd|pwd|secret|token|credential|api[_\-]?key|"
        r"access[_\-]?key(?:[_\-]?secret)?|signature|sessionid|auth)(?:[\w.\-]*?)"
        r"[\"']?\s*(?:=|:)\s*[\"']?)(?!\*\*\*)[^\s\"'&;,)}\]]+"
    ),
    # command-line flags that take a secret: odpscmd -p, ossutil -k, --password, --access-key-secret
    r"(?i)((?:^|\s)(?:-p|-k|--password|--passwd|--access-?key-?secret|--secret|--token)[ =])\S+",
    # Alibaba Cloud AccessKey ids (LTAI...) and STS key ids (STS....): the id, then anything after it
    r"(\bLTAI)[A-Za-z0-9]{8,40}",
    r"(\bSTS\.)[A-Za-z0-9]{8,80}",
    # long opaque strings (tokens, keys, signatures): 40+ letters, digits, + _ - with both letters and
    # digits. "/" is left out so that file paths stay readable; a token split by it is still hidden
    # piecewise when a piece is that long.
    r"()(?<![\w+\-])(?=[\w+\-]*\d)(?=[\w+\-]*[A-Za-z])[\w+\-]{40,}={0,2}",
)


def redact(text: str) -> str:
    """`text` with every secret-looking value replaced by ***."""
    for pattern in _RULES:  # text until used: re compiles and caches each on the first line redacted
        text = re.sub(pattern, _mask, text)
    return text


def _mask(match: re.Match) -> str:
    return match.group(1) + MASK
