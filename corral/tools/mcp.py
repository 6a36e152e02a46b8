"""MCP tools under supervision: a Model Context Protocol server's tools as ordinary `Tool`s.

Install the extra (``pip install 'corral[mcp]'``, the official ``mcp`` SDK, 2.x). Then::

    async with McpServer.stdio("python", ["-m", "mcp_server_time"]) as clock:
        agent = SubAgent("clock", instructions="...", tools=await clock.tools("get_current_time"),
                         model=model)
        async with Runtime(agents=[agent]) as runtime:
            ...

**Tools.** `McpServer.tools` returns one `corral.tools.Tool` per name asked for, built with
the server's description and its ``inputSchema`` as the strict schema, around an async
function that calls the server. Nothing else is special about them, so every Corral check
applies as to a ``@tool`` function: the schema is checked before the call and violations
go back to the model, then scopes, policies, gates, the hard timeout, retries with
backoff, the breaker, the fallback, budgets, result filtering and screening, and
provenance (results are untrusted text: ``trusted=False`` unless the developer says
otherwise). A `SubAgent` still takes at most five tools, MCP ones and ``@tool`` ones
mixed. Tools are asked for by name: a server that adds tools later does not add them to an
agent.

**Side-effect levels.** Annotations come from the server, which is not trusted, so they
only fill in what the developer did not declare (``overrides=``, which always win), and an
absent hint takes the MCP specification's default:

==========================================  =================  ==========
annotations (absent hint: the spec default)  Corral level       idempotent
==========================================  =================  ==========
``readOnlyHint: true``                       ``read``           yes
``destructiveHint: true`` (default true)     ``destructive``    if ``idempotentHint``
``openWorldHint: true`` (default true)       ``external``       if ``idempotentHint``
otherwise                                    ``write``          if ``idempotentHint``
none at all                                  ``destructive``    no
==========================================  =================  ==========

So an unannotated tool waits at a gate by default, and a non-idempotent one whose call was
in flight during a crash waits for a person (an idempotent one is retried with the same
idempotency key). A ``side_effect`` the developer declares without ``idempotent`` keeps
the server's ``idempotentHint``, not the read-only default. ``trust_annotations=False``
ignores the annotations: every tool is ``destructive`` unless the developer says otherwise.
``corral mcp tools SERVER`` shows the level each tool would get, and why.

**Calls.** The call carries Corral's idempotency key in its ``_meta`` as
``corral/idempotency_key`` (with ``corral/run_id`` and ``corral/attempt``), stable across
retries and restarts, for servers that can honour it. What comes back:

* ``structuredContent`` is the result when present; otherwise the text parts, joined by
  blank lines. Images, audio and resources are described, never silently dropped
  (``[image image/png, 2.0 KB]``; an embedded text resource is included). With both
  structured content and non-text parts, the result is the structured content's JSON
  followed by the descriptions.
* ``isError: true`` raises `ToolError` (not retryable: the same call is expected to fail
  the same way) with the server's text, cut to `MAX_ERROR_CHARS`; the model reads it and
  can correct its call.
* Protocol errors are translated once, here: an invalid-params, unknown-method or
  malformed-request error is not retryable; another JSON-RPC error is; a result the SDK
  cannot parse is not; a closed connection, or a call while the server is down, raises
  `McpServerUnavailable` (retryable): the breaker counts it, the fallback takes over.

**Lifecycle.** An `McpServer` is an async context manager that owns its connection in a
task group of its own, so the subprocess of a stdio server lives exactly as long as the
``async with`` block: it is stopped when the block exits, on an error or a cancellation
too (the SDK's shutdown closes its stdin, then terminates and kills its process group,
each wait bounded, about 4.5 s at worst). Enter it around the `Runtime` that uses its
tools. Entering fails with `McpServerUnavailable` when the first connection cannot be
made within `connect_timeout`.

**Failures.** A connection is lost when the server's process exits (its stdout closes,
noticed at once), when a Streamable HTTP request fails, or when the server stops
answering: after a call is cancelled unanswered (its timeout, say), the server is asked
for its tool list, and one that does not answer within `probe_timeout` is restarted.
While the connection is down calls fail at once as unavailable; it is remade in the
background after ``restart_backoff`` seconds, doubled for each failed attempt up to
``max_restart_backoff``, for as long as the block runs. A call made while a connection is
being made waits for it (within the tool's timeout). A durable run resumed by a new
process calls the new process's `McpServer`: its tools have the same names, so the run
goes on where it stopped.

Errors meant for the model never carry the server's URL or environment: the server is
named by `McpServer.name` (the module or script for stdio, host and path for HTTP).

**Written here, not taken from the SDK**, because the SDK has neither: the supervision
loop (its `Client` is one connection, never remade) and `_WatchedTransport`, a wrapper
around the SDK's own transport whose read stream reports its end, the one sign that a
stdio server exited between calls. Everything on the wire (the handshake, JSON-RPC, the
stdio subprocess and its shutdown, Streamable HTTP) is the SDK's.

Layout: ``_mcp_server`` holds the connection, its supervision and the calls;
``_mcp_content`` the rules without I/O (levels from annotations, results as values). This
module checks the extra is installed, re-exports them, and reads a server from a command
line for ``corral mcp tools``. ``import corral`` and ``import corral.tools`` never import
the SDK.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..errors import ConfigError

try:
    import httpx2  # noqa: F401 - the extra's dependencies, checked here once
    import mcp  # noqa: F401
except ImportError as exc:  # the optional extra is missing
    raise ConfigError("corral.tools.mcp needs the MCP SDK: pip install 'corral[mcp]'") from exc

from ._mcp_content import MAX_DESCRIPTION_CHARS as MAX_DESCRIPTION_CHARS
from ._mcp_content import MAX_ERROR_CHARS as MAX_ERROR_CHARS
from ._mcp_content import McpToolInfo as McpToolInfo
from ._mcp_content import classify as classify
from ._mcp_server import IDEMPOTENCY_META_KEY as IDEMPOTENCY_META_KEY
from ._mcp_server import McpServer as McpServer
from ._mcp_server import McpServerUnavailable as McpServerUnavailable
from ._mcp_server import State as State

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "MAX_DESCRIPTION_CHARS",
    "MAX_ERROR_CHARS",
    "McpServer",
    "McpServerUnavailable",
    "McpToolInfo",
    "State",
    "classify",
    "list_tools_command",
    "server_from_spec",
]


def server_from_spec(spec: str, **options: Any) -> McpServer:
    """The server a command line names: an http(s) URL, or a command such as ``uvx x``.

    Args:
        spec: ``https://host/mcp``, or a command line split as a shell would
            (``"python -m mcp_server_time --local-timezone UTC"``).
        **options: any keyword argument of `McpServer`.

    Returns:
        The server, not yet started.

    Raises:
        ConfigError: an empty command.
    """
    if spec.startswith(("http://", "https://")):
        return McpServer.http(spec, **options)
    argv = shlex.split(spec)
    if not argv:
        raise ConfigError("name an MCP server: a command line, or an http(s) URL")
    return McpServer.stdio(argv[0], argv[1:], **options)


async def list_tools_command(
    spec: str, *, output: str = "table", connect_timeout: float = 30.0
) -> int:
    """``corral mcp tools SERVER``: print a server's tools, the level each gets, and why.

    Args:
        spec: the server, as `server_from_spec` reads it.
        output: ``table`` or ``json`` (a list of objects).
        connect_timeout: seconds to wait for the server to start and list its tools.

    Returns:
        The exit code, 0.

    Raises:
        McpServerUnavailable: the server could not be started or reached.
        ConfigError: an empty command, or a URL that is not http(s).
    """
    server = server_from_spec(spec, connect_timeout=connect_timeout)
    async with server:
        infos = server.describe()
    if output == "json":
        rows = [
            {
                "name": i.name,
                "side_effect": i.side_effect,
                "idempotent": i.idempotent,
                "why": i.why,
                "annotations": dict(i.annotations),
                "description": i.description,
                "input_schema": dict(i.input_schema),
            }
            for i in infos
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not infos:
        print(f"MCP server {server.name} has no tools")
        return 0
    headers = ["TOOL", "LEVEL", "IDEMPOTENT", "WHY", "DESCRIPTION"]
    table = [
        [i.name, i.side_effect, "yes" if i.idempotent else "no", i.why, _first_line(i.description)]
        for i in infos
    ]
    widths = [max(len(h), *(len(r[c]) for r in table)) for c, h in enumerate(headers)]
    for row in [headers, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _first_line(text: str, limit: int = 60) -> str:
    line = " ".join(text.split("\n", 1)[0].split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
