"""Real sockets on 127.0.0.1 for the real-I/O tests: a scripted provider, a black hole, a dead port.

`LoopbackServer` is a stdlib ``ThreadingHTTPServer`` on a free loopback port, run in a
background thread. It speaks two wire formats:

* ``POST /v1/messages``: the Anthropic Messages API;
* ``POST /v1/chat/completions``: the OpenAI chat-completions API;

and answers each such request with the next scripted `Reply` (a recorded provider body
from ``tests/fixtures/providers``, a status, headers such as ``Retry-After``, an optional
delay), or hangs (reads the request, never answers), or drops the connection. Every
request it receives is recorded (`Received`) so a test can assert what Corral sent.
``GET`` serves plain JSON documents (`LoopbackServer.documents`) for tools to fetch.

`BlackHole` listens and accepts connections and never sends a byte; `refused_port`
returns a port nothing listens on. All of it is torn down at the end of the test: hanging
handlers are released, sockets closed, threads joined.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "providers"

API_PATHS = ("/v1/messages", "/v1/chat/completions")
"""The model endpoints the server answers from its script."""


def recorded(name: str) -> Any:
    """A recorded provider body from tests/fixtures/providers, decoded."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Reply:
    """One scripted answer to a model request.

    `body` is a JSON value, the name of a recorded body (``"anthropic_text"``), raw
    ``bytes``, or a function of the `Received` request returning one of those (for answers
    that depend on what Corral sent).
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (the request is read first)."""
    action: Literal["reply", "hang", "close", "truncate"] = "reply"
    """``hang``: read the request and never answer; ``close``: drop the connection unanswered;
    ``truncate``: send the headers and half the body, then drop the connection."""
    close_after: bool = False
    """Close the connection right after answering, without saying so (``Connection: close``),
    as a load balancer dropping idle keep-alive connections does."""
    content_type: str = "application/json"
    """Sent as ``Content-Type``; a `body` that is ``bytes`` is sent as is (an HTML error page)."""


def ok(body: Any, **options: Any) -> Reply:
    """A 200 reply with `body` (a recorded body's name, a JSON value or a function)."""
    return Reply(200, body, **options)


def error(status: int, body: Any, *, headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error reply, such as ``error(429, "anthropic_error_429", headers=...)``."""
    return Reply(status, body, headers=headers or {})


HANG = Reply(action="hang")
CLOSE = Reply(action="close")


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any
    """The decoded JSON body (None when there was none)."""
    at: float
    """``time.monotonic()`` when the request had been read."""


class LoopbackServer:
    """A scripted Anthropic / OpenAI-compatible API and JSON document server on 127.0.0.1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._received: list[Received] = []
        self.documents: dict[str, Any] = {}
        """``GET path`` answers ``documents[path]`` as JSON (404 for other paths)."""
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler, self)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"loopback:{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next model requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted answers not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def received(self) -> list[Received]:
        """Every request received so far, model calls and document GETs, in order."""
        with self._lock:
            return list(self._received)

    def api_calls(self) -> list[Received]:
        """The model requests received so far."""
        return [r for r in self.received if r.path in API_PATHS]

    def _next(self) -> Reply | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def close(self) -> None:
        """Release hanging handlers, stop serving and join the thread."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd.join_handlers(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], owner: LoopbackServer
    ) -> None:
        self.owner = owner
        self._handlers: list[tuple[threading.Thread, socket.socket]] = []
        self._handlers_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._handlers_lock:
            self._handlers = [(t, s) for t, s in self._handlers if t.is_alive()]
            self._handlers.append((thread, request))
        thread.start()

    def join_handlers(self, timeout: float) -> None:
        """End every connection (idle keep-alive ones block in a read) and join the handlers."""
        with self._handlers_lock:
            handlers = list(self._handlers)
        for _, conn in handlers:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        deadline = time.monotonic() + timeout
        for thread, _ in handlers:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client went away (it timed out, was cancelled): that is the point of
        # several tests, not a server failure worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def _read(self) -> Received:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        received = Received(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        self.server.owner._record(received)
        return received

    def _send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
        truncate: bool = False,
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if truncate:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        received = self._read()
        owner = self.server.owner
        if received.path in owner.documents:
            self._send_json(200, owner.documents[received.path])
        else:
            self._send_json(404, {"error": f"no document at {received.path}"})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        received = self._read()
        owner = self.server.owner
        if received.path not in API_PATHS:
            self._send_json(404, {"error": f"no endpoint {received.path}"})
            return
        reply = owner._next()
        if reply is None:
            # Not retryable (4xx), so a test whose script ran short fails at once, saying so.
            self._send_json(
                400, {"error": {"type": "loopback", "message": "the loopback script ran out"}}
            )
            return
        if reply.action == "hang":
            owner.stopping.wait()
            self.close_connection = True
            return
        if reply.action == "close":
            self.close_connection = True
            return
        if reply.delay and owner.stopping.wait(reply.delay):
            self.close_connection = True
            return
        payload: Any = reply.body
        if callable(payload):
            payload = payload(received)
        if isinstance(payload, str):
            payload = recorded(payload)
        self._send_json(
            reply.status,
            payload,
            reply.headers,
            content_type=reply.content_type,
            truncate=reply.action == "truncate",
        )
        if reply.close_after:
            self.close_connection = True


class BlackHole:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self._listener.close()


def free_then_closed_port() -> int:
    """A port that was just free on 127.0.0.1 and has nothing listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- fixtures: import them into a test module (``from ._loopback import loopback_fixture``) and
# ask for them by name (``loopback``, ``black_hole``, ``refused_port``).


@pytest.fixture(name="loopback")
def loopback_fixture() -> Iterator[LoopbackServer]:
    """A scripted provider / document server on a free loopback port, for this test only."""
    server = LoopbackServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(name="black_hole")
def black_hole_fixture() -> Iterator[BlackHole]:
    """A loopback port that accepts connections and never answers."""
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


@pytest.fixture(name="refused_port")
def refused_port_fixture() -> int:
    """A loopback port where connecting is refused."""
    return free_then_closed_port()
