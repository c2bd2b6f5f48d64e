"""A headless Chromium driven over the DevTools protocol (CDP), for the report's browser test.

Just enough of CDP over one websocket (websocket-client, already pinned): start Chromium with a
fresh profile and `--remote-debugging-port=0`, read the port it chose from `DevToolsActivePort`,
open a page as a flat session (`Target.attachToTarget`), load a URL and collect what the console
and the page report: `Runtime.consoleAPICalled` of type error or assert, `Runtime.exceptionThrown`
(an uncaught error), and `Log.entryAdded` of level error (a resource that failed to load, a CSP
refusal). The flags are the machine's: no sandbox, no GPU, no background traffic.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import websocket

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find() -> str | None:
    """The Chromium binary: $CHROMIUM, else Debian's `chromium` (or a usual name) on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class BrowserError(RuntimeError):
    pass


class Chromium:
    def __init__(self, binary: str, timeout: float = 60):
        self.binary = binary
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def __enter__(self) -> Chromium:
        self.profile = tempfile.mkdtemp(prefix="dwrerun-chromium-")
        self.process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            port, path = self._active_port()
            # No Origin header: Chromium refuses a websocket from an origin it was not told to allow.
            self.socket = websocket.create_connection(
                f"ws://127.0.0.1:{port}{path}", timeout=self.timeout, suppress_origin=True
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.kill()
        self.process.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _active_port(self) -> tuple[str, str]:
        # Chromium writes the port and the browser's websocket path once it listens.
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"{self.binary} exited: {self.process.stderr.read().decode()[-2000:]}")
            if marker.exists():
                lines = marker.read_text().split()
                if len(lines) == 2:
                    return lines[0], lines[1]
            time.sleep(0.1)
        raise BrowserError(f"{self.binary} did not open its DevTools port within {self.timeout} s")

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One command; the events that arrive meanwhile are kept in `events`."""
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str) -> dict:
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        while True:  # the socket's timeout bounds each wait
            event = json.loads(self.socket.recv())
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop()

    def load(self, url: str) -> Page:
        """A new page with `url` loaded (its load event fired)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session)


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str):
        """The expression's value (JSON-serialisable), evaluated in the page."""
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """What the console and the page reported as errors so far."""
        self.evaluate("0")  # a round trip: events sent before it have arrived
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console." + params["type"] + ": " + " ".join(str(a.get("value")) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        return found
