"""The memory tool: semantic memory as one of an agent's tools (a ``read`` tool)."""

from __future__ import annotations

from ..tools import Tool
from ._semantic import SemanticMemory

__all__ = ["memory_tool"]


def memory_tool(
    memory: SemanticMemory,
    *,
    name: str = "search_memory",
    tenant: str = "default",
    k: int = 3,
    timeout: float = 10.0,
) -> Tool:
    """A tool that searches `memory` for the model, returning hits with their sources.

    The model gives a query; the tool answers with at most `k` chunks that cleared the
    relevance threshold, each with its source and heading path, or a plain "Nothing
    relevant found" so the model does not mistake a neighbour for an answer. The tenant
    is fixed here, not chosen by the model.

    Args:
        memory: the semantic memory to search.
        name: the tool's name. Default ``search_memory``.
        tenant: whose memory it searches.
        k: the most hits per call.
        timeout: the tool's timeout, seconds.

    Returns:
        A ``read`` tool taking ``{"query": str}``.
    """

    async def search_memory(query: str) -> str:
        result = await memory.asearch(query, tenant=tenant, k=k)
        return result.as_text()

    return Tool(
        search_memory,
        name=name,
        description=(
            "Search the documents in memory for passages relevant to a question. Returns "
            "the passages with their sources, or says that nothing relevant was found."
        ),
        schema={
            "type": "object",
            "properties": {"query": {"type": "string", "description": "what to look for"}},
            "required": ["query"],
        },
        side_effect="read",
        timeout=timeout,
    )
