"""JSON that refuses an object with a key given twice.

Python's json keeps the last value of a repeated key; other readers keep the first, or refuse.
`{"Ids": [...], "DryRun": true, "DryRun": false}` reran for real here while a reviewer, a proxy
or a log reader that keeps the first key saw a dry run (issue 24 item 6). Every body the functions
parse (the HTTP trigger's event and request body, EventBridge payloads and an event's `data`
string, scheduled reruns, continuations, signed tokens) and the rules file go through `loads`, so
what the function acts on is the only reading there is.
"""

from __future__ import annotations

import json

SHOWN_KEY_CHARS = 64  # a key is quoted in the message, cut to this: a body may be 64 KiB of one key


class DuplicateKey(ValueError):
    """An object names the same key twice. A ValueError, as json's own errors are."""

    def __init__(self, key: str, keys: list[str]):
        self.key = key
        others = [_shown(k) for k in dict.fromkeys(keys) if k != key][:5]
        where = f" (the object with {', '.join(others)})" if others else ""
        super().__init__(f"the key {_shown(key)} is given twice in one JSON object{where}")


def loads(data: str | bytes | bytearray):
    """json.loads, raising DuplicateKey for an object with a repeated key."""
    return json.loads(data, object_pairs_hook=_object)


def _object(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key, [k for k, _ in pairs])
        result[key] = value
    return result


def _shown(key: str) -> str:
    text = json.dumps(key, ensure_ascii=False)
    return text if len(text) <= SHOWN_KEY_CHARS else text[: SHOWN_KEY_CHARS - 4] + '..."'
