"""``corral serve``: the API on uvicorn, one `Runtime` driving runs, graceful shutdown.

Start: load the application (``--app module:factory``), open the journal, start the
runtime (which resumes every unfinished run it can drive and polls the journal for
decisions made elsewhere), then serve the API. ``/readyz`` says ``ready`` from then on.

Stop (SIGTERM or SIGINT): ``/readyz`` turns 503 and submissions are refused (503), the
runs in flight get ``server.grace_s`` seconds to finish or pause at a gate, then the
listener closes, open event streams end, and the runtime stops: a run still in flight is
cancelled where it stands, with everything it did already in the journal, and the next
start resumes it without repeating a completed model or tool call. The process exits 0.
A second signal skips the grace period.

uvicorn's own signal handling is replaced (it re-raises the signal after shutting down,
which would end the process with -SIGTERM instead of 0).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from .._log import get_logger
from .._settings import ServerSettings, Settings, TokenSpec
from ..errors import ConfigError
from ..runtime import Runtime, load_app
from ..runtime._app import DEFAULT_APP
from ..store import journal_from_url, store_url
from ..store._open import redact_url
from ._api import create_app
from ._auth import hash_token, new_token
from ._service import Service

__all__ = ["DEFAULT_APP", "Server", "serve"]

log = get_logger("corral.server")


TOKEN_FILE = ".corral-token"
"""Where `serve` writes the admin token it generates when no token is configured."""


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: `Server` decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    """The API of a `Service` on uvicorn, started and stopped by its owner.

    ``corral serve`` uses it; so can a test or a program that embeds the service::

        async with Runtime(agents=[...], journal=journal) as runtime:
            server = Server(Service(runtime, settings.server))
            async with anyio.create_task_group() as tg:
                url = await tg.start(server.run)
                ...
                await server.shutdown()

    Args:
        service: the operations, on a running runtime.
        metrics: a `corral.observability.Metrics` subscribed to the runtime, or None.
    """

    def __init__(self, service: Service, *, metrics: Any | None = None) -> None:
        self.service = service
        settings = service.settings
        self.api = create_app(service, metrics=metrics)
        self._uvicorn = _Uvicorn(
            uvicorn.Config(
                self.api,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                proxy_headers=False,
                timeout_graceful_shutdown=5,
                timeout_keep_alive=5,
            )
        )
        self.url = ""
        self._stopped = anyio.Event()
        self._hurry = anyio.Event()
        self._listener: socket.socket | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until `shutdown`; reports the URL (the real port, for port 0) once listening.

        Cancelled instead (its task group failed), it still closes its listening sockets.
        """
        try:
            await self._serve(task_status)
        finally:
            for server in getattr(self._uvicorn, "servers", ()):
                server.close()  # idempotent; after a clean stop uvicorn closed them already
            if self._listener is not None:
                self._listener.close()

    async def _serve(self, task_status: anyio.abc.TaskStatus[str]) -> None:
        settings = self.service.settings
        try:  # bound here, so a taken port is a clear error (uvicorn would sys.exit)
            listener = socket.create_server((settings.host, settings.port), reuse_port=False)
            # Accepted connections inherit this. asyncio sets it only on sockets whose
            # proto is IPPROTO_TCP, and create_server's are 0: without it, a reused
            # keep-alive connection waits ~40 ms per response (Nagle and delayed ACKs).
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} "
                "(--host, --port, server.host, server.port)"
            ) from None
        self._listener = listener
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(self._uvicorn.serve, sockets=[listener]))
            while not self._uvicorn.started:
                if self._uvicorn.should_exit:  # pragma: no cover - stopped while starting
                    break
                await anyio.sleep(0.01)
            host, port = listener.getsockname()[:2]
            self.url = f"http://{_url_host(host)}:{port}"
            self.service.ready = True
            task_status.started(self.url)
        self._stopped.set()

    async def shutdown(self, *, grace_s: float | None = None) -> None:
        """Drain: refuse new runs, give runs in flight `grace_s` to settle, stop listening.

        Args:
            grace_s: how long runs in flight may take to finish or pause. Default: the
                settings' ``grace_s``.
        """
        service = self.service
        service.draining = True
        grace = service.settings.grace_s if grace_s is None else grace_s
        log.info("server.draining", runs_in_flight=service.runtime.active_runs(), grace_s=grace)
        with anyio.move_on_after(grace):
            while service.runtime.active_runs() and not self._hurry.is_set():
                await anyio.sleep(0.05)
        left = service.runtime.active_runs()
        if left:
            log.warning("server.grace_over", runs_in_flight=left)
        self._uvicorn.should_exit = True
        await self._stopped.wait()

    def hurry(self) -> None:
        """Skip what is left of the grace period, and stop waiting for open connections."""
        self._hurry.set()
        self._uvicorn.should_exit = True
        self._uvicorn.force_exit = True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    *,
    settings: Settings,
    app: str = DEFAULT_APP,
    db: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run ``corral serve`` until SIGTERM or SIGINT; returns the exit code (0).

    Args:
        settings: the loaded settings (``server``, ``db``, limits, durability...).
        app: the application, ``module:factory``.
        db: the journal URL. Default: the settings' ``db``.
        host: listen on this address. Default: ``server.host`` (127.0.0.1).
        port: listen on this port (0: any free one). Default: ``server.port`` (8000).

    Raises:
        UsageError: the application cannot be loaded.
        ConfigError: invalid settings or journal URL.
    """
    from ..observability import Metrics, configure_json_logs

    application = load_app(app)
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    server_settings = settings.server.model_copy(update=updates)
    if not server_settings.tokens:
        server_settings = _with_generated_token(server_settings)
    restore_logs = configure_json_logs(settings.log_level)
    url = store_url(db or settings.db)
    try:
        journal = journal_from_url(url)
        durability = settings.durability.model_copy(update={"resume": True})
        async with journal:
            async with Runtime.from_settings(
                settings, journal=journal, durability=durability, **application.runtime_options()
            ) as runtime:
                metrics = Metrics()
                runtime.subscribe(metrics)
                _subscribe_spans(runtime)
                server = Server(Service(runtime, server_settings), metrics=metrics)
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async with anyio.create_task_group() as tg:
                        address = await tg.start(server.run)
                        _say(f"listening on {address} (journal {redact_url(url)}, app {app})")
                        log.info("server.started", url=address, app=app)
                        async for signum in signals:
                            _say(f"{signal.Signals(signum).name}: draining")
                            tg.start_soon(_second_signal, signals, server)
                            await server.shutdown()
                            break
                        tg.cancel_scope.cancel()
        _say("stopped; every run is in the journal")
        log.info("server.stopped")
        return 0
    finally:
        restore_logs()


async def _second_signal(signals: Any, server: Server) -> None:
    """A second signal while draining: skip the rest of the grace period."""
    async for _ in signals:
        _say("second signal: stopping now")
        server.hurry()
        return


def _subscribe_spans(runtime: Runtime) -> None:
    """Subscribe OpenTelemetry spans, when the ``otel`` extra is installed.

    They are exported only once an SDK tracer provider is set up; the API alone records
    nothing.
    """
    try:
        from ..observability import OtelSpans

        runtime.subscribe(OtelSpans())
    except Exception as exc:  # the extra is missing: no spans, and nothing else changes
        log.debug("server.no_otel", error=repr(exc))


def _with_generated_token(settings: ServerSettings) -> ServerSettings:
    """No token configured: make an admin token for this process, in `TOKEN_FILE` (0600)."""
    token = new_token()
    path = Path.cwd() / TOKEN_FILE
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    except OSError as exc:
        raise ConfigError(
            f"no API tokens configured (server.tokens), and the admin token for this "
            f"process cannot be written to {path}: {exc.strerror}; configure tokens "
            "(`corral token new NAME --role admin`) or start from a writable directory"
        ) from None
    _say(
        f"no API tokens configured (server.tokens): generated an admin token for this "
        f"process in {path} (mode 600); clients read it with --token-file {TOKEN_FILE}"
    )
    spec = TokenSpec(name="admin", sha256=hash_token(token), roles=frozenset({"admin"}))
    return settings.model_copy(update={"tokens": [spec]})


def _say(message: str) -> None:
    print(f"corral serve: {message}", file=sys.stderr, flush=True)
