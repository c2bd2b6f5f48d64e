"""The HTTP server every stand-in of the local cloud serves from: HTTP/1.1 on 127.0.0.1.

The DataWorks emulator (`localcloud.dataworks.server`), FC's OpenAPI (`localcloud.fc.server`) and
the HTTP trigger's gateway (`localcloud.gateway`) differ in what they answer, not in how they
serve: a threaded server on loopback, keep-alive connections (the SDKs pool them), Nagle off
(else every answer on a reused connection waits ~40 ms for the client's delayed ACK), no request
log (each keeps a journal of its own, and a request line can carry a token), a serving loop on a
daemon thread, and a `stop()` that returns promptly, hung requests included. `LoopbackServer` is
that; a stand-in gives it the function that answers one request (`respond(handler)`, with
http.server's request handler) and the methods it serves.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a hung request
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address, loopback: LoopbackServer):
        self.loopback = loopback
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True
    timeout = 300  # an idle keep-alive connection is dropped after this
    server: _Server

    def version_string(self) -> str:
        return f"{self.server.loopback.server_version} {self.sys_version}"

    def __getattr__(self, name: str):
        # http.server answers a method by its do_<METHOD>; the stand-in says which it serves
        # (any other gets http.server's 501).
        if name.startswith("do_") and name[3:] in self.server.loopback.methods:
            return self._respond
        raise AttributeError(name)

    def _respond(self) -> None:
        self.server.loopback.respond(self)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature; see the module docstring
        pass


class LoopbackServer:
    """Serves `respond(handler)` for each request of `methods` on `host`:`port` (0: a free port),
    from start() to stop()."""

    def __init__(
        self,
        respond: Callable[[BaseHTTPRequestHandler], None],
        *,
        name: str,
        server_version: str,
        methods: Iterable[str] = ALL_METHODS,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.respond = respond
        self.name = name
        self.server_version = server_version
        self.methods = frozenset(methods)
        self.host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Set while stopping: a request that hangs on purpose waits on it.
        self.stopping = threading.Event()

    @property
    def running(self) -> bool:
        """Serving: between start() and stop()."""
        return self._thread is not None

    def bind(self) -> None:
        """Take the port now (start() does it otherwise): for a stand-in whose URL is known before it serves."""
        if self._server is None:
            self._server = _Server((self.host, self._port), self)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        self.stopping.clear()
        self.bind()
        # A short poll interval: stop() waits up to one interval for the serving loop.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung requests included; returns promptly."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self.stopping.set()
        if thread is not None:
            server.shutdown()
        server.server_close()
        with server.connections_lock:
            open_connections = list(server.connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running: call start() first")
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """host:port, what a generic client's `endpoint` takes (with protocol "http")."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"
