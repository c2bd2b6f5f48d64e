"""The local Logstore: a function's log as a JSON-lines file, one object per line it wrote.

Every line an invocation writes to stdout or stderr becomes one object with the fields FC's log
lines carry in SLS, as far as they apply locally: `__time__`, `__topic__` ("FCLogs:<function>"),
`functionName`, `qualifier`, `instanceId`, `requestId`, `stream` and `message`, between FC's own
`FC Invoke Start/End RequestId: …` lines. Both ways of running a function (the in-process harness
and the instance processes) write it; `localcloud.sls` queries it, `make report` and
`scripts/alerts.py` read it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

from localcloud.fc.runtime import QUALIFIER


class Logstore:
    """The local stand-in for a function's Logstore: one JSON object per line a function wrote."""

    def __init__(self, path: str | os.PathLike | None, function_name: str):
        # Without a path, a temporary directory of its own: a shared default (it was the working
        # directory's .localcloud/logs) let tests on parallel workers append to one another's file
        # and to the demo's. The demo and the benchmarks name their files.
        if not path:
            path = Path(tempfile.mkdtemp(prefix="localcloud-logs-")) / f"{function_name}.jsonl"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.function_name = function_name
        self._lock = threading.Lock()

    def append(self, request_id: str, instance_id: str, stream: str, message: str) -> None:
        # The fields FC's log lines carry in SLS, as far as they apply locally.
        entry = {
            "__time__": int(time.time()),
            "__topic__": f"FCLogs:{self.function_name}",
            "functionName": self.function_name,
            "qualifier": QUALIFIER,
            "instanceId": instance_id,
            "requestId": request_id,
            "stream": stream,
            "message": message,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)

    def lines(self) -> list[dict]:
        """Every line of the file, parsed."""
        if not self.path.exists():
            return []
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
