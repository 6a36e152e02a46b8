"""What Corral makes of an MCP server's tools: levels from annotations, results as values.

See `corral.tools.mcp` for the rules; this module holds them as code, with no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from mcp.types import Tool as RemoteTool

from ..errors import ToolError
from ._tool import SideEffect

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_ERROR_CHARS",
    "McpToolInfo",
    "classify",
    "description",
    "hints",
    "result_value",
]

MAX_ERROR_CHARS = 2_000
"""The longest server error text (an ``isError`` result) passed on to the model."""

MAX_DESCRIPTION_CHARS = 1_024
"""The longest tool description taken from a server (the rest is cut)."""


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    """One tool of an MCP server, and what Corral makes of it."""

    name: str
    """The tool's name on the server."""
    description: str
    """Its description (cut to `MAX_DESCRIPTION_CHARS`)."""
    side_effect: SideEffect
    """The level it gets."""
    idempotent: bool
    """Whether an in-doubt call is retried (True) or waits for a person (False)."""
    why: str
    """Why: the annotations read, the defaults taken, or the developer's override."""
    annotations: Mapping[str, Any]
    """The hints the server sent, by their wire names (``readOnlyHint``...)."""
    input_schema: Mapping[str, Any]
    """The server's ``inputSchema``."""


def classify(
    annotations: ToolAnnotations | None, *, trust: bool = True
) -> tuple[SideEffect, bool, str]:
    """The side-effect level and idempotence a tool's MCP annotations give it, and why.

    Args:
        annotations: the tool's annotations, or None when the server sent none.
        trust: False ignores them (the tool is ``destructive`` and not idempotent).

    Returns:
        ``(side_effect, idempotent, why)``.
    """
    if not trust:
        return "destructive", False, "annotations ignored (trust_annotations=False)"
    if annotations is None:
        return (
            "destructive",
            False,
            "no annotations: the MCP defaults (destructiveHint, openWorldHint true)",
        )
    if annotations.read_only_hint is True:
        return "read", True, "readOnlyHint: true"

    def hint(name: str, value: bool | None) -> str:
        return (
            f"{name}: {'true' if value else 'false'}"
            if value is not None
            else (f"{name} not set (MCP default true)")
        )

    level: SideEffect
    if annotations.destructive_hint is not False:
        level, why = "destructive", hint("destructiveHint", annotations.destructive_hint)
    elif annotations.open_world_hint is not False:
        level = "external"
        why = f"destructiveHint: false, {hint('openWorldHint', annotations.open_world_hint)}"
    else:
        level, why = "write", "destructiveHint: false, openWorldHint: false"
    idempotent = annotations.idempotent_hint is True
    if idempotent:
        why += ", idempotentHint: true"
    return level, idempotent, why


def result_value(result: CallToolResult, remote: str) -> Any:
    """What the model is shown of a tool result (see the module docstring)."""
    if result.is_error:
        text = _render(result.content) or "the tool reported an error and said nothing more"
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS] + " [cut]"
        raise ToolError(text, retryable=False)
    others = [block for block in result.content if not isinstance(block, TextContent)]
    if result.structured_content is not None:
        if not others:
            return result.structured_content
        structured = json.dumps(result.structured_content, ensure_ascii=False, default=str)
        return "\n\n".join([structured, *(_block(block) for block in others)])
    return _render(result.content) or f"[{remote} returned no content]"


def _render(blocks: Sequence[Any]) -> str:
    return "\n\n".join(text for text in (_block(block) for block in blocks) if text)


def _block(block: Any) -> str:
    """One content block as text: text as is, anything else described."""
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        kind = "image" if isinstance(block, ImageContent) else "audio"
        return f"[{kind} {block.mime_type}, {_size(len(block.data) * 3 // 4)}]"
    if isinstance(block, ResourceLink):
        mime = f", {block.mime_type}" if block.mime_type else ""
        return f"[resource link {block.name}: {block.uri}{mime}]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        mime = f", {resource.mime_type}" if resource.mime_type else ""
        if isinstance(resource, TextResourceContents):
            return f"[resource {resource.uri}{mime}]\n{resource.text}"
        if isinstance(resource, BlobResourceContents):
            return f"[resource {resource.uri}{mime}, {_size(len(resource.blob) * 3 // 4)}]"
    kind = getattr(block, "type", type(block).__name__)
    return f"[{kind} content, not shown]"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def description(spec: RemoteTool, server: str) -> str:
    """The tool's description for the model: the server's, else its title, cut to size."""
    title = spec.annotations.title if spec.annotations is not None else None
    text = (spec.description or spec.title or title or "").strip()
    if not text:
        text = f"The {spec.name} tool of the MCP server {server}."
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[:MAX_DESCRIPTION_CHARS].rstrip() + "..."
    return text


def hints(annotations: ToolAnnotations | None) -> dict[str, Any]:
    """The hints the server sent, by their wire names (``readOnlyHint``...)."""
    if annotations is None:
        return {}
    wire = annotations.model_dump(by_alias=True, exclude_none=True)
    return {k: v for k, v in wire.items() if k.endswith("Hint")}
