"""The emulated DataWorks OpenAPI gateway: a real HTTP server on loopback.

Each request goes: route (x-acs-action / x-acs-version) -> ACS3 signature -> quota (rate, daily
limit, edition) -> faults -> backend -> JSON answer, and is recorded in the journal whatever happens.

    with DataWorksEmulator(credentials=[creds], seed="seed.json") as emu:
        ...  # point the client at emu.endpoint with protocol "http"

Command line: `PYTHONPATH=scripts python -m localcloud.dataworks --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..acs3 import Credentials, NonceCache, SignatureError, verify
from ..loopback import LoopbackServer
from .exceptions import SERVER_ERRORS, DataWorksError, InternalError, ResourceNotAuthorized, Throttling
from .faults import ABSENT, UNSET, Faults, Quota
from .journal import Journal, JournalEntry, public_params
from .models import DataWorksBackend
from .responses import DataWorksResponse

MAX_BODY = 8 * 1024 * 1024
MALFORMED_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
CONCURRENT_COMMENT = "rerun by another client (the emulator's concurrent_rerun fault)"


class DataWorksEmulator:
    """The DataWorks OpenAPI 2024-05-18 on 127.0.0.1, checking ACS3 signatures against `credentials`.

    `port=0` picks a free port; `seed` is an optional JSON file for `backend.load_json`, dated
    relative to `seed_now` (epoch seconds; default: when it is loaded) if it says it is relative.
    """

    def __init__(
        self,
        credentials: list[Credentials],
        port: int = 0,
        seed: str | Path | None = None,
        host: str = "127.0.0.1",
        seed_now: float | None = None,
    ):
        self.backend = DataWorksBackend()
        self.responses = DataWorksResponse(self.backend)
        self.faults = Faults()
        self.journal = Journal()
        self._quota = Quota()
        self._nonces = NonceCache()
        self._credentials: list[Credentials] = []
        self._expired: list[Credentials] = []
        self._credentials_lock = threading.Lock()
        self.set_credentials(credentials)
        self.clock_offset = 0.0
        self._loopback = LoopbackServer(
            self._handle,
            name="dataworks-emulator",
            server_version="DataWorksEmulator/1.0",
            methods=("GET", "POST"),
            host=host,
            port=port,
        )
        self._stopping = self._loopback.stopping  # set by stop(): hung requests wait on it
        if seed is not None:
            self.backend.load_json(seed, now=seed_now)

    # --- lifecycle ---

    def start(self) -> DataWorksEmulator:
        if self._loopback.running:
            raise RuntimeError("the emulator is already running")
        self._loopback.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung requests included; returns promptly."""
        self._loopback.stop()

    def __enter__(self) -> DataWorksEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._loopback.running:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._loopback.port

    @property
    def endpoint(self) -> str:
        """host:port, what a generic client's `endpoint` takes (with protocol "http").

        The function's DATAWORKS_ENDPOINT takes `url`: without the scheme it would mean https."""
        return f"{self._loopback.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    # --- knobs ---

    def set_credentials(self, credentials: list[Credentials]) -> None:
        """Accept only these from now on. Dropped STS credentials answer InvalidSecurityToken.Expired."""
        credentials = list(credentials)
        if not credentials or not all(isinstance(c, Credentials) for c in credentials):
            raise ValueError("credentials must be a non-empty list of localcloud.acs3.Credentials")
        with self._credentials_lock:
            kept = {c.security_token for c in credentials}
            self._expired += [c for c in self._credentials if c.security_token and c.security_token not in kept]
            self._credentials = credentials

    def quota(
        self,
        read_qps: int | None = None,
        write_qps: int | None = None,
        code: str = "Throttling.User",
        retry_after: int | None = None,
        *,
        daily_limit: int | None = None,
        edition_exhausted: bool = False,
        neighbour: float = 0.0,
    ) -> None:
        """Enforce DataWorks' metering (see faults.Quota); `emu.quota()` turns it all off.

        read_qps / write_qps: rate limits (reads = Get*/List*, writes = the rest; None = no limit);
        a call over them gets 429 `code` (Throttling.User, .Api or .System), with
        x-acs-retry-after when `retry_after` is given. neighbour: the share of both rate limits
        another client of the account uses all the time. daily_limit: calls a day, then 429
        Throttling.Api.Risk on everything. edition_exhausted: 429 Throttling.Resource on everything.
        """
        self._quota.configure(
            read_qps,
            write_qps,
            code,
            retry_after,
            daily_limit=daily_limit,
            edition_exhausted=edition_exhausted,
            neighbour=neighbour,
        )

    def new_day(self) -> None:
        """A new day for the daily call limit: its count goes back to 0."""
        self._quota.new_day()

    @property
    def calls_today(self) -> int:
        """Calls admitted today, as the daily limit counts them (since the last quota() or new_day())."""
        return self._quota.calls_today

    @property
    def quota_clock(self):
        """Where the quota reads the time (epoch seconds): a seam a test may replace."""
        return self._quota.clock

    @quota_clock.setter
    def quota_clock(self, clock) -> None:
        self._quota.clock = clock

    def now(self) -> float:
        """The server's clock: real time plus `clock_offset`."""
        return time.time() + self.clock_offset

    # --- one request ---

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        admitted_at = time.time()
        request_id = str(uuid.uuid4()).upper()
        split = urlsplit(h.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:  # an unreadable body: answer, then drop the connection
            h.close_connection = True
            length = 0
        body = h.rfile.read(length) if length else b""
        params = dict(query)
        if "x-www-form-urlencoded" in (h.headers.get("Content-Type") or ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = h.headers.get("x-acs-action") or query.get("Action") or ""
        version = h.headers.get("x-acs-version") or query.get("Version") or ""

        accepted, fault, misbehave = False, None, None
        status, answer, headers = 200, {}, {}
        try:
            self.responses.check_route(action, version)
            self._verify(h.command, split.path or "/", query, h.headers.items(), body)
            refusal, admitted_at = self._quota.admit(self.responses.is_read(action))
            if refusal is not None:
                raise refusal
            plan = self.faults.take(action)
            if plan.latency:
                self._stopping.wait(plan.latency)
            fault = plan.kind
            if fault == "throttle":
                raise Throttling(plan.throttle_code, plan.retry_after)
            if fault == "server_error":
                raise SERVER_ERRORS[plan.server_error_code]()
            if fault == "refuse":
                raise ResourceNotAuthorized()
            if fault in ("hang", "reset", "malformed"):
                misbehave = fault
            if fault == "concurrent_rerun" and action == "RerunTaskInstances":
                # Another client (the console, a second copy of the function) gets there first.
                self.responses.rerun_task_instances({"Ids": params.get("Ids", ""), "Comment": CONCURRENT_COMMENT})
            if misbehave is None or plan.after_backend:
                accepted = True
                refuse = plan.partial_failure if action == "RerunTaskInstances" else None
                answer = self.responses.dispatch(action, params, refuse)
                _rewrite(answer, plan.answer_fields, plan.success_info)
        except (SignatureError, DataWorksError) as exc:
            status, answer = exc.status, {"Code": exc.code, "Message": exc.message}
            headers = getattr(exc, "headers", {})
        except Exception:
            traceback.print_exc(file=sys.stderr)  # for whoever runs the emulator, never to the caller
            err = InternalError()
            status, answer = err.status, {"Code": err.code, "Message": err.message}
        if misbehave and status == 200:
            status = 200 if misbehave == "malformed" else 0
        else:
            misbehave = None
        # Recorded before answering, so a test reading the journal after its call sees the call.
        self.journal.record(
            JournalEntry(
                time=admitted_at,
                action=action,
                params=public_params(params),
                status=status,
                code=answer.get("Code") if status != 200 else None,
                request_id=request_id,
                accepted=accepted,
                fault=fault,
                duration=time.monotonic() - started,
            )
        )
        try:
            if misbehave:
                self._misbehave(h, misbehave)
            elif status == 200:
                self._send(h, 200, {"RequestId": request_id, **answer}, request_id)
            else:
                self._send_error(h, status, answer["Code"], answer["Message"], request_id, headers)
        except OSError:  # the client went away; nothing more to say
            h.close_connection = True

    def _verify(self, method, path, query, headers, body) -> None:
        with self._credentials_lock:
            accepted, expired = list(self._credentials), list(self._expired)
        verify(method, path, query, headers, body, accepted, expired=expired, now=self.now(), nonces=self._nonces)

    def _misbehave(self, h: BaseHTTPRequestHandler, fault: str) -> None:
        """Answer badly on purpose: never, with a TCP RST, or with a body that is not JSON."""
        h.close_connection = True
        if fault == "hang":
            self._stopping.wait()  # until stop(); the client's read timeout fires first
        elif fault == "reset":
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        else:
            h.send_response(200)
            h.send_header("Content-Type", "application/json;charset=utf-8")
            h.send_header("Content-Length", str(len(MALFORMED_BODY)))
            h.end_headers()
            h.wfile.write(MALFORMED_BODY)

    def _send_error(self, h, status, code, message, request_id, headers) -> None:
        body = {
            "RequestId": request_id,
            "HostId": h.headers.get("Host", ""),
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=dataworks-public&requestId={request_id}",
        }
        self._send(h, status, body, request_id, headers)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict, request_id: str, headers: dict | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", "application/json;charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-acs-request-id", request_id)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)


def _rewrite(answer: dict, fields: dict, success_info) -> None:
    """Put a fault's answer_fields into the answer's TaskInstance or Task object, and its
    success_info into a RerunTaskInstances answer (see Faults.set)."""
    if "SuccessInfo" in answer and success_info is not UNSET:
        if isinstance(success_info, dict):
            for instance_id, entry in success_info.items():
                if entry is ABSENT:
                    answer["SuccessInfo"].pop(str(instance_id), None)
                else:
                    answer["SuccessInfo"][str(instance_id)] = entry
        elif success_info is ABSENT:
            del answer["SuccessInfo"]
        else:
            answer["SuccessInfo"] = success_info
    for key in ("TaskInstance", "Task"):
        target = answer.get(key)
        if isinstance(target, dict):
            for name, value in fields.items():
                if value is ABSENT:
                    target.pop(name, None)
                else:
                    target[name] = value


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Local DataWorks OpenAPI 2024-05-18 emulator.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--seed", help="JSON file of instances to load (see seed.json)")
    parser.add_argument("--access-key-id", default=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAItestkeyid0001"))
    parser.add_argument(
        "--access-key-secret", default=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret-do-not-log")
    )
    parser.add_argument("--security-token", default=os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None)
    parser.add_argument("--read-qps", type=int, help="enforce a read quota (Get*/List* calls per second)")
    parser.add_argument("--write-qps", type=int, help="enforce a write quota (other calls per second)")
    parser.add_argument("--daily-limit", type=int, help="calls a day, then 429 Throttling.Api.Risk")
    parser.add_argument(
        "--neighbour", type=float, default=0.0, help="share of the read and write quotas another client uses (0-1)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument(
        "--advance-every", type=float, default=0.0, help="end scripted runs every N seconds (backend.advance())"
    )
    args = parser.parse_args(argv)

    creds = Credentials(args.access_key_id, args.access_key_secret, args.security_token)
    emu = DataWorksEmulator([creds], port=args.port, seed=args.seed)
    emu.quota(args.read_qps, args.write_qps, daily_limit=args.daily_limit, neighbour=args.neighbour)
    if args.latency:
        emu.faults.set("*", latency=args.latency)
    emu.start()
    print(f"DataWorks emulator on {emu.url} (key id {creds.access_key_id}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(args.advance_every or 3600)
            if args.advance_every:
                for instance_id in emu.backend.advance():
                    inst = emu.backend.instance(instance_id)
                    print(f"instance {instance_id} run {inst.run_number} ended: {inst.status}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0
