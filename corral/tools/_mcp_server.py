"""The connection to one MCP server, supervised, and its tools as `Tool`s.

See `corral.tools.mcp` for the lifecycle, the failures and what is hand-written here.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, Literal, TextIO, cast
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Tool as RemoteTool
from pydantic import ValidationError

from .._log import get_logger
from .._retry import RetryPolicy
from ..errors import ConfigError, ToolError, UsageError
from ._mcp_content import McpToolInfo, classify, description, hints, result_value
from ._tool import Tool, ToolContext

__all__ = ["IDEMPOTENCY_META_KEY", "McpServer", "McpServerUnavailable", "State"]

log = get_logger("corral.tools.mcp")

IDEMPOTENCY_META_KEY = "corral/idempotency_key"
"""The ``_meta`` key of a call that carries Corral's idempotency key."""

_MAX_PAGES = 100
"""Pages of ``tools/list`` read at most: a server whose cursor never ends cannot hang us."""

_CONTEXT_PARAM = "_corral_mcp_context"
"""The parameter of the calling function that receives the `ToolContext`."""

_OPTIONS = frozenset(
    {
        "name",
        "description",
        "side_effect",
        "idempotent",
        "timeout",
        "retry",
        "fallback",
        "scopes",
        "trusted",
        "reconcile",
        "reconcile_timeout",
        "reconcile_retry",
    }
)
"""What an override may set: any keyword argument of `Tool` but the function and schema."""

_NOT_RETRYABLE = frozenset(
    {
        mcp_types.INVALID_PARAMS,
        mcp_types.METHOD_NOT_FOUND,
        mcp_types.INVALID_REQUEST,
        mcp_types.PARSE_ERROR,
    }
)
"""JSON-RPC errors that the same call will meet again."""

_RUNNERS = ("python", "python3", "uv", "uvx", "npx", "node", "pipx", "bun", "bunx", "deno")
"""Commands whose first argument, not themselves, names a stdio server."""

State = Literal["connecting", "up", "down", "closed"]
"""Where a server's connection is: being made, usable, lost (remade soon), or closed."""


class McpServerUnavailable(ToolError):
    """An MCP server cannot be reached: it crashed, stopped answering, or is being restarted.

    Raised by every call of its tools while its connection is down (retryable, so the
    breaker counts it and the fallback takes over), and by entering the `McpServer` when
    the first connection fails.

    Attributes:
        server: the server's name.
    """

    def __init__(self, message: str, *, server: str, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)
        self.server = server


class _Connection:
    """One live session with the server, and what the calls made on it noticed."""

    __slots__ = ("alarm", "client", "lost", "suspect", "tools")

    def __init__(self, client: Client, tools: dict[str, RemoteTool]) -> None:
        self.client = client
        self.tools = tools
        self.lost: str | None = None
        """Why the connection is gone, once it is."""
        self.suspect = False
        """A call went unanswered: the server should be asked whether it still answers."""
        self.alarm = anyio.Event()
        """Set when `lost` or `suspect` changes; replaced once the supervisor has looked."""

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        self.alarm.set()

    def doubt(self) -> None:
        self.suspect = True
        self.alarm.set()


class _WatchedRead:
    """The transport's read stream, telling the server when it ends (the process exited)."""

    def __init__(self, inner: Any, ended: Callable[[], None]) -> None:
        self._inner = inner
        self._ended = ended

    def __getattr__(self, name: str) -> Any:  # last_context, and whatever else is asked
        return getattr(self._inner, name)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedRead:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.aclose()


class _WatchedTransport:
    """An SDK transport whose read stream reports its end (see `_WatchedRead`)."""

    def __init__(self, inner: Any, ended: Callable[[], None]) -> None:
        self._inner = inner
        self._ended = ended

    async def __aenter__(self) -> tuple[Any, Any]:
        read, write = await self._inner.__aenter__()
        return _WatchedRead(read, self._ended), write

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return cast("bool | None", await self._inner.__aexit__(exc_type, exc, tb))


class McpServer:
    """One MCP server: its connection, restarted when it fails, and its tools as `Tool`s.

    Build one with `McpServer.stdio` or `McpServer.http`, and use it as an async context
    manager around the `Runtime` whose agents use its tools (see the module docstring
    for the lifecycle, the side-effect levels and the failures).

    Args:
        target: what to connect to (the constructors build it).
        name: how errors and logs name the server.
        headers: HTTP headers for every request (Streamable HTTP only).
        stderr: where a stdio server's stderr goes. Default: this process's stderr.
        connect_timeout: seconds one connection attempt may take, tool listing
            included. Default 10 s.
        probe_timeout: seconds the server has to list its tools after a call went
            unanswered, before it is restarted. Default 5 s.
        restart_backoff: seconds before the first reconnection attempt after a
            connection is lost; doubled after each failed attempt. Default 0.5 s.
        max_restart_backoff: cap on that delay, in seconds. Default 30 s.
        trust_annotations: take the side-effect levels from the server's annotations
            where the developer declared none. Default True; False makes every
            undeclared tool ``destructive``.

    Raises:
        ConfigError: a timeout or backoff that is not a positive finite number of seconds.
    """

    def __init__(
        self,
        target: StdioServerParameters | str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        stderr: TextIO | None = None,
        connect_timeout: float = 10.0,
        probe_timeout: float = 5.0,
        restart_backoff: float = 0.5,
        max_restart_backoff: float = 30.0,
        trust_annotations: bool = True,
    ) -> None:
        for option, value in (
            ("connect_timeout", connect_timeout),
            ("probe_timeout", probe_timeout),
            ("restart_backoff", restart_backoff),
            ("max_restart_backoff", max_restart_backoff),
        ):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigError(
                    f"McpServer {name!r}: {option} must be a finite number of seconds > 0, "
                    f"got {value!r}"
                )
        self._target = target
        self.name = name
        """How errors and logs name the server (never its URL or environment)."""
        self._headers = dict(headers or {})
        self._stderr = stderr
        self.connect_timeout = float(connect_timeout)
        self.probe_timeout = float(probe_timeout)
        self.restart_backoff = float(restart_backoff)
        self.max_restart_backoff = float(max_restart_backoff)
        self.trust_annotations = bool(trust_annotations)
        self._state: State = "closed"
        self._changed = anyio.Event()
        self._conn: _Connection | None = None
        self._tools: dict[str, RemoteTool] = {}
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._last_error = ""
        self._retry_in = 0.0
        self.connections = 0
        """Connections made so far (1 after entering; each restart adds one)."""

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        name: str | None = None,
        **options: Any,
    ) -> McpServer:
        """A server Corral starts as a subprocess and talks to over its stdin and stdout.

        Args:
            command: the program, such as ``python`` or ``uvx``.
            args: its arguments, such as ``["-m", "mcp_server_time"]``.
            env: environment variables for it, on top of the SDK's safe few (``PATH``,
                ``HOME``, ``USER``...): the server does not inherit this process's
                environment, so pass what it needs (its API keys) here.
            cwd: its working directory. Default: this process's.
            name: how errors name it. Default: the module after ``-m``, else the script
                or package a runner (``python``, ``uvx``, ``npx``...) starts, else the
                command.
            **options: any keyword argument of `McpServer`.

        Returns:
            The server, not yet started: enter it with ``async with``.
        """
        params = StdioServerParameters(
            command=command, args=list(args), env=dict(env) if env is not None else None, cwd=cwd
        )
        return cls(params, name=name or _stdio_name(command, list(args)), **options)

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> McpServer:
        """A server reached over Streamable HTTP.

        Args:
            url: its endpoint, such as ``http://127.0.0.1:8000/mcp``.
            headers: sent with every request (an ``Authorization`` header, say); never
                logged.
            name: how errors name it. Default: the URL's host, port and path.
            **options: any keyword argument of `McpServer`.

        Returns:
            The server, not yet connected: enter it with ``async with``.

        Raises:
            ConfigError: the URL is not http(s).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"an MCP server URL must be http(s)://host/path, got {url!r}")
        default = f"{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return cls(url, name=name or default, headers=headers, **options)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``connecting``, ``up``, ``down`` (lost, to be remade) or ``closed``."""
        return self._state

    async def __aenter__(self) -> McpServer:
        if self._entered:
            raise UsageError(f"MCP server {self.name!r} is already open; enter it once")
        self._entered = True
        stack = AsyncExitStack()
        await stack.__aenter__()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            await task_group.start(self._supervise)
        except BaseException:
            task_group.cancel_scope.cancel()
            await stack.aclose()
            self._set_state("closed")
            raise
        self._stack, self._task_group = stack, task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, task_group = self._stack, self._task_group
        self._stack = self._task_group = None
        if task_group is not None:
            task_group.cancel_scope.cancel()
        try:
            if stack is not None:
                await stack.aclose()  # waits for the subprocess to be stopped
        finally:
            self._conn = None
            self._set_state("closed")

    def _set_state(self, state: State) -> None:
        self._state = state
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _transport(self, ended: Callable[[], None]) -> _WatchedTransport:
        target = self._target
        if isinstance(target, StdioServerParameters):
            inner: Any = stdio_client(target, errlog=self._stderr or _stderr())
        else:
            # The SDK's own defaults: 30 s to connect and write, 300 s to read a stream.
            client = httpx2.AsyncClient(
                headers=self._headers or None, timeout=httpx2.Timeout(30.0, read=300.0)
            )
            inner = streamable_http_client(target, http_client=client)
            inner = _OwningHttp(inner, client)
        return _WatchedTransport(inner, ended)

    async def _supervise(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep a connection up: make it, watch it, remake it with backoff when lost."""
        failures = 0
        first = True
        while True:
            self._set_state("connecting")
            holder: list[_Connection] = []

            def ended(holder: list[_Connection] = holder) -> None:
                if holder:
                    holder[0].lose("the connection closed (the server exited?)")

            reason: str | None = None
            try:
                with anyio.CancelScope() as scope:
                    scope.deadline = anyio.current_time() + self.connect_timeout
                    async with Client(self._transport(ended), cache=None) as client:
                        tools = await _list_tools(client)
                        scope.deadline = math.inf  # connected: no deadline any more
                        conn = _Connection(client, tools)
                        holder.append(conn)
                        self._tools, self._conn = tools, conn
                        self.connections += 1
                        failures = 0
                        self._set_state("up")
                        log.info("mcp.connected", server=self.name, tools=len(tools))
                        if first:
                            first = False
                            task_status.started()
                        await self._watch(conn)
                        reason = conn.lost or "the connection was lost"
                        failures += 1
                        self._down(reason, failures)  # calls fail at once during the teardown
                if scope.cancelled_caught and reason is None:
                    reason = f"no connection within {self.connect_timeout:g} s"
            except Exception as exc:  # the transport or the handshake failed
                reason = reason or _describe(exc)
            reason = reason or "the connection ended"
            self._conn = None
            if first:
                verb = "started" if isinstance(self._target, StdioServerParameters) else "reached"
                raise McpServerUnavailable(
                    f"MCP server {self.name!r} could not be {verb}: {reason}", server=self.name
                )
            if self._state != "down":
                failures += 1
                self._down(reason, failures)
            log.warning(
                "mcp.lost", server=self.name, reason=reason, retry_in_s=round(self._retry_in, 3)
            )
            await anyio.sleep(self._retry_in)

    def _down(self, reason: str, failures: int) -> None:
        """The connection is gone: say why, and when the next attempt is."""
        delay = min(self.restart_backoff * 2 ** (failures - 1), self.max_restart_backoff)
        self._conn = None
        self._last_error, self._retry_in = reason, delay * random.uniform(0.9, 1.1)
        self._set_state("down")

    async def _watch(self, conn: _Connection) -> None:
        """Return once the connection is lost, or the server failed to answer a probe."""
        while True:
            await conn.alarm.wait()
            conn.alarm = anyio.Event()
            if conn.lost is not None:
                return
            if conn.suspect:
                conn.suspect = False
                with anyio.move_on_after(self.probe_timeout) as probe:
                    try:
                        await _list_tools(conn.client)
                    except Exception as exc:  # noqa: BLE001 - any failure means: restart it
                        conn.lose(f"it failed to list its tools ({_describe(exc)})")
                        return
                if probe.cancelled_caught:
                    conn.lose(f"it stopped answering (no answer within {self.probe_timeout:g} s)")
                    return

    async def _connection(self) -> _Connection:
        """The live connection, waiting for one being made; raise when there is none."""
        while True:
            state, conn = self._state, self._conn
            if state == "up" and conn is not None and conn.lost is None:
                return conn
            if state == "closed":
                raise McpServerUnavailable(
                    f"MCP server {self.name!r} is closed (its `async with` block has ended)",
                    server=self.name,
                    retryable=False,
                )
            if state == "down":
                raise McpServerUnavailable(
                    f"MCP server {self.name!r} is unavailable ({self._last_error}); it is "
                    f"being restarted (next attempt within {self._retry_in:.1f} s)",
                    server=self.name,
                )
            await self._changed.wait()

    # -- tools ----------------------------------------------------------------------------

    def describe(self, *names: str) -> list[McpToolInfo]:
        """The server's tools (or those named) with the level each gets without overrides.

        Raises:
            UsageError: the server is not open.
            ConfigError: a name the server does not have.
        """
        listing = self._listing()
        chosen = self._chosen(names, listing) if names else list(listing)
        infos = []
        for remote in chosen:
            spec = listing[remote]
            level, idempotent, why = classify(spec.annotations, trust=self.trust_annotations)
            infos.append(
                McpToolInfo(
                    name=remote,
                    description=description(spec, self.name),
                    side_effect=level,
                    idempotent=idempotent,
                    why=why,
                    annotations=hints(spec.annotations),
                    input_schema=dict(spec.input_schema),
                )
            )
        return infos

    async def tools(
        self,
        *names: str,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        scopes: Iterable[str] = (),
    ) -> list[Tool]:
        """The named tools of the server, as Corral `Tool`s, in the order asked.

        Args:
            *names: the tools' names on the server (at least one: tools are chosen, never
                taken wholesale).
            overrides: per tool name, keyword arguments of `Tool` that win over the
                annotations and the defaults here: ``name`` (what the model calls it,
                needed when the server's name is not 1-64 letters, digits, ``_`` or
                ``-``), ``description``, ``side_effect``, ``idempotent``, ``timeout``,
                ``retry``, ``fallback``, ``scopes``, ``trusted``, ``reconcile``,
                ``reconcile_timeout``, ``reconcile_retry``.
            timeout: hard limit for one call, in seconds, unless overridden. Default 30 s.
            retry: retry policy unless overridden. Default `RetryPolicy()`.
            scopes: permissions the calling agent must hold, unless overridden.

        Returns:
            One `Tool` per name.

        Raises:
            UsageError: the server is not open, or no name was given.
            ConfigError: a name the server does not have, an override naming a tool not
                asked for or an option `Tool` does not take, or a tool `Tool` refuses
                (its name, its schema).
        """
        if not names:
            available = ", ".join(sorted(self._listing())) or "none"
            raise UsageError(
                f"name the tools of MCP server {self.name!r} to use (at most five per "
                f"agent); it has: {available}"
            )
        listing = self._listing()
        chosen = self._chosen(names, listing)
        overrides = dict(overrides or {})
        stray = sorted(set(overrides) - set(chosen))
        if stray:
            raise ConfigError(
                f"overrides name {', '.join(map(repr, stray))}, which are not among the tools "
                f"asked of MCP server {self.name!r} ({', '.join(chosen)})"
            )
        built = []
        for remote in chosen:
            options = dict(overrides.get(remote, {}))
            unknown = sorted(set(options) - _OPTIONS)
            if unknown:
                raise ConfigError(
                    f"override of MCP tool {remote!r}: unknown option(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(sorted(_OPTIONS))}"
                )
            built.append(
                self._tool(listing[remote], options, timeout=timeout, retry=retry, scopes=scopes)
            )
        return built

    def _listing(self) -> dict[str, RemoteTool]:
        """The tools the server listed when last connected."""
        if self._state == "closed":
            raise UsageError(
                f"MCP server {self.name!r} is not open: use it as `async with server:` "
                "before asking for its tools"
            )
        return self._tools

    def _chosen(self, names: Sequence[str], listing: Mapping[str, RemoteTool]) -> list[str]:
        missing = [n for n in names if n not in listing]
        if missing:
            raise ConfigError(
                f"MCP server {self.name!r} has no tool {', '.join(map(repr, missing))}; it has: "
                f"{', '.join(sorted(listing)) or 'none'}"
            )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"MCP tool(s) asked twice: {', '.join(duplicates)}")
        return list(names)

    def _tool(
        self,
        spec: RemoteTool,
        options: dict[str, Any],
        *,
        timeout: float,
        retry: RetryPolicy | None,
        scopes: Iterable[str],
    ) -> Tool:
        remote = spec.name
        level, idempotent, _ = classify(spec.annotations, trust=self.trust_annotations)
        if "side_effect" in options and "idempotent" not in options:
            # A level the developer declared keeps Corral's default for it (idempotent
            # only when read), unless the server's idempotentHint agrees to more.
            options["idempotent"] = options["side_effect"] == "read" or (
                idempotent and level != "read"
            )
        properties = spec.input_schema.get("properties")
        if isinstance(properties, Mapping) and _CONTEXT_PARAM in properties:
            raise ConfigError(
                f"MCP tool {remote!r} has an argument named {_CONTEXT_PARAM!r}, which "
                "Corral reserves"
            )
        name = options.pop("name", remote)
        settings: dict[str, Any] = {
            "description": description(spec, self.name),
            "side_effect": level,
            "idempotent": idempotent,
            "timeout": timeout,
            "retry": retry,
            "scopes": scopes,
            **options,
        }
        try:
            return Tool(self._caller(remote), name=name, schema=spec.input_schema, **settings)
        except ConfigError as exc:
            hint = ""
            if name == remote and "tool name" in str(exc):
                hint = f"; rename it with overrides={{{remote!r}: {{'name': ...}}}}"
            raise ConfigError(f"MCP server {self.name!r}: {exc}{hint}") from exc

    def _caller(self, remote: str) -> Callable[..., Any]:
        async def call_mcp_tool(_corral_mcp_context: ToolContext, **arguments: Any) -> Any:
            return await self._call(remote, arguments, _corral_mcp_context)

        call_mcp_tool.__name__ = f"mcp_{remote}"
        return call_mcp_tool

    async def _call(self, remote: str, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Call the tool once on the live connection; translate what can go wrong."""
        conn = await self._connection()
        meta = cast(
            "mcp_types.RequestParamsMeta",
            {
                IDEMPOTENCY_META_KEY: context.idempotency_key,
                "corral/run_id": context.run_id,
                "corral/attempt": context.attempt,
            },
        )
        answered = False
        try:
            result = await conn.client.call_tool(remote, arguments, meta=meta)
            answered = True
        except MCPError as exc:
            answered = exc.code != mcp_types.CONNECTION_CLOSED
            if not answered:
                conn.lose("the connection closed during a call")
                raise McpServerUnavailable(
                    f"MCP server {self.name!r} is unavailable: the connection closed during "
                    f"the call of {remote!r}; it is being restarted",
                    server=self.name,
                ) from exc
            raise ToolError(
                f"MCP server {self.name!r} refused the call of {remote!r}: {exc.error.message}",
                retryable=exc.code not in _NOT_RETRYABLE,
            ) from exc
        except ValidationError as exc:
            answered = True
            raise ToolError(
                f"MCP server {self.name!r} answered the call of {remote!r} with a malformed "
                f"result ({exc.error_count()} validation error(s))",
                retryable=False,
            ) from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            conn.lose("the connection broke during a call")
            raise McpServerUnavailable(
                f"MCP server {self.name!r} is unavailable: the connection broke during the "
                f"call of {remote!r}; it is being restarted",
                server=self.name,
            ) from exc
        except Exception as exc:
            answered = True
            raise ToolError(
                f"MCP server {self.name!r}: the call of {remote!r} failed: {_describe(exc)}"
            ) from exc
        finally:
            if not answered and conn.lost is None:
                conn.doubt()  # cancelled unanswered (a timeout): does it still answer?
        return result_value(result, remote)

    def __repr__(self) -> str:
        return f"McpServer({self.name!r}, state={self._state!r})"


class _OwningHttp:
    """The Streamable HTTP transport, closing the HTTP client it was given when it ends."""

    def __init__(self, inner: Any, client: Any) -> None:
        self._inner = inner
        self._client = client

    async def __aenter__(self) -> Any:
        await self._client.__aenter__()
        try:
            return await self._inner.__aenter__()
        except BaseException:
            await self._client.aclose()
            raise

    async def __aexit__(self, *exc: Any) -> bool | None:
        try:
            return cast("bool | None", await self._inner.__aexit__(*exc))
        finally:
            with anyio.CancelScope(shield=True):
                await self._client.aclose()


def _stderr() -> TextIO:
    """This process's stderr for a child, or the original one when it has been replaced.

    A child process needs a file descriptor: a replaced `sys.stderr` (captured output in
    a test runner or a notebook) may have none.
    """
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (OSError, ValueError, AttributeError):
            continue
    raise ConfigError("this process has no stderr to give an MCP server: pass stderr=")


async def _list_tools(client: Client) -> dict[str, RemoteTool]:
    tools: dict[str, RemoteTool] = {}
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        for spec in page.tools:
            tools[spec.name] = spec
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _describe(exc: BaseException) -> str:
    """A failure in a few words: the leaf of nested exception groups, type and message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.error.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stdio_name(command: str, args: list[str]) -> str:
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1]
    stem = PurePath(command).stem
    if stem.startswith(_RUNNERS):
        for arg in args:
            if not arg.startswith("-"):
                return PurePath(arg).stem or arg
    return stem or command
