"""A small MCP server written with the official SDK, one tool per kind of annotation.

Run it as ``python notes.py [stdio|http PORT]``. It keeps its notes in the JSON file named
by ``NOTES_FILE`` and appends one line per call it starts and finishes to ``NOTES_LOG``,
with the call's ``corral/idempotency_key`` and its own pid, so a test can tell which calls
reached it, how often, and in which process. ``append_note`` waits while the file
``NOTES_BLOCK`` exists and is empty or holds the text to append, as a slow backend would;
a call whose key it has already finished is answered without appending again (the server
honours Corral's idempotency key).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ImageContent, TextContent, ToolAnnotations

server = MCPServer("notes", subscriptions=False)

NOTES = pathlib.Path(os.environ.get("NOTES_FILE", "notes.json"))
LOG = pathlib.Path(os.environ.get("NOTES_LOG", "notes.log"))
BLOCK = pathlib.Path(os.environ.get("NOTES_BLOCK", "notes.block"))


def _load() -> dict[str, str]:
    return json.loads(NOTES.read_text()) if NOTES.exists() else {}


def _save(notes: dict[str, str]) -> None:
    NOTES.write_text(json.dumps(notes))


def _log(event: str, tool: str, ctx: Context | None, **fields: Any) -> str:
    meta = ctx.request_context.meta if ctx is not None else None
    key = str((meta or {}).get("corral/idempotency_key", ""))
    line = json.dumps({"event": event, "tool": tool, "key": key, "pid": os.getpid(), **fields})
    with LOG.open("a") as log:
        log.write(line + "\n")
    return key


def _held(text: str) -> bool:
    """Calls are held while the block file exists and is empty or holds their text."""
    try:
        held = BLOCK.read_text()
    except FileNotFoundError:
        return False
    return held in ("", text)


def _finished(key: str) -> bool:
    if not key or not LOG.exists():
        return False
    for line in LOG.read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "finished" and entry["key"] == key:
            return True
    return False


@server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
def read_note(name: str, ctx: Context) -> dict[str, Any]:
    """Read one note by name."""
    _log("started", "read_note", ctx, name=name)
    notes = _load()
    return {"name": name, "text": notes.get(name), "pid": os.getpid()}


@server.tool(
    annotations=ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )
)
async def append_note(name: str, text: str, ctx: Context) -> str:
    """Append text to a note (honours the idempotency key)."""
    key = _log("started", "append_note", ctx, name=name, text=text)
    while _held(text):  # the test holds the call here, as a slow backend would
        await anyio.sleep(0.01)
    if _finished(key):
        return f"already appended (key {key})"
    notes = _load()
    notes[name] = (notes.get(name) or "") + text
    _save(notes)
    _log("finished", "append_note", ctx, name=name, text=text)
    return f"appended {len(text)} characters to {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def delete_note(name: str, ctx: Context) -> str:
    """Delete a note."""
    _log("started", "delete_note", ctx, name=name)
    notes = _load()
    notes.pop(name, None)
    _save(notes)
    return f"deleted {name}"


@server.tool(
    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
)
def send_note(name: str, to: str, ctx: Context) -> str:
    """Email a note to someone."""
    _log("started", "send_note", ctx, name=name, to=to)
    return f"sent {name} to {to}"


@server.tool()
def shred(name: str) -> str:
    """Unannotated: the MCP defaults (destructive, open world) apply."""
    return f"shredded {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami() -> dict[str, int]:
    """The server's process id."""
    return {"pid": os.getpid()}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def fail(reason: str) -> str:
    """Always fails with the reason (an isError result)."""
    raise ValueError(reason)


@server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
def picture() -> list[TextContent | ImageContent]:
    """A caption and a small PNG."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 2040).decode()
    return [TextContent(text="a tiny picture"), ImageContent(data=png, mime_type="image/png")]


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def hang() -> str:
    """Never answers."""
    await anyio.sleep_forever()
    return "unreachable"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
