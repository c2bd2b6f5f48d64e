"""Reading loose values: ids and counts given as numbers or digit strings, and bad values shown short.

DataWorks, FC and callers send int64 ids as JSON numbers, and sometimes as strings of digits (a
JavaScript client keeps them exact that way). Every place that reads one uses `positive_int64`,
so 3.9, `true`, `Infinity`, 0, -5 and a 5,000-digit string are refused alike (int() would make 3
or 1 of the first two, and refuses strings past 4,300 digits with a ValueError). A bad value is
named in a message as the caller wrote it, cut short (`preview`, `shown`). A payload this function
signed itself takes exact JSON integers only (`whole`).
"""

from __future__ import annotations

import json

INT64_MAX = 2**63 - 1
MAX_DIGITS = 19  # an int64
MAX_RUN_NUMBER = 1_000_000  # the largest RunNumber a payload this function signed may carry


def from_digits(value: object) -> object:
    """The int a string of at most 19 ASCII digits spells; any other value as it is."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        return int(value)
    return value


def integer(value: object) -> int | None:
    """`value` if it is an integer (not a bool), or a string of at most 19 digits; else None."""
    value = from_digits(value)
    return None if isinstance(value, bool) or not isinstance(value, int) else value


def positive_int64(value: object) -> int | None:
    """`value` if it is a positive int64, or a string of its digits; else None."""
    number = integer(value)
    return number if number is not None and 0 < number <= INT64_MAX else None


def whole(value: object, minimum: int, maximum: int) -> bool:
    """Whether `value` is a JSON integer (not a bool, not a string) from `minimum` to `maximum`."""
    return not isinstance(value, bool) and isinstance(value, int) and minimum <= value <= maximum


def positive_int(answer: dict, name: str, bad: list[tuple[str, str]] | None = None) -> int | None:
    """`answer[name]` if it is a positive int64 (a string of its digits too), else None. A value
    that is there but wrong goes into `bad`, as JSON, for the record to name."""
    value = answer.get(name)
    if value is None:
        return None
    number = positive_int64(value)
    if number is None and bad is not None:
        bad.append((name, shown(value)))
    return number


def shown(value: object) -> str:
    """A value from an answer as JSON, cut short: what a record says DataWorks sent."""
    return _cut(json.dumps(value, ensure_ascii=False))


def json_type(value) -> str:
    """What kind of JSON value a body holds here, for an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def preview(value) -> str:
    """A bad value of a request body as the caller wrote it (JSON: "x", null), for an error message."""
    return _cut(json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else json_type(value))


def short_repr(value: object, limit: int = 40) -> str:
    """A value of a payload as Python shows it (an exception: its message), cut to `limit` characters."""
    return _cut(str(value) if isinstance(value, Exception) else repr(value), limit)


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
