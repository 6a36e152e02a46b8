"""Memory through the real Anthropic adapter, over a socket, on a real SQLite file.

The other memory tests judge the `ModelRequest` a fake model receives. Here the provider
is a scripted Messages API on 127.0.0.1 (`tests/_loopback.py`) and what is judged is the
HTTP body Corral sent: a run that searches semantic memory kept in the journal's own
SQLite file (the memory tool), then reads twelve pages of about 5,000 tokens each, in a
6,000-token window. Every request must carry the instructions and the task, stay within
the window, keep each ``tool_result`` after its ``tool_use``, and the summary the journal
holds must be what the provider was sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import anyio
import pytest

from corral import Guards, Limits, Runtime, SubAgent, ToolContext, tool
from corral.events import ContextSummarised
from corral.memory import SemanticMemory, memory_tool
from corral.models import AnthropicModel
from corral.store import SqliteStore

from ._loopback import (
    LoopbackServer,
    Received,
    loopback_fixture,  # noqa: F401 - the loopback fixture
    ok,
)

INSTRUCTIONS = "You audit ledgers. Check the runbook first. Never invent totals."
TASK = "Read the twelve pages of the Globex ledger and report the grand total."
PAGES = 12
WINDOW = 6_000
KEY = "sk-ant-api03-loopback-0123456789abcdef"
RUNBOOK = (
    "# Runbook\n\n## Ledgers\n\nTo total a ledger, read every page and add the page "
    "subtotals. Pages are numbered from 1.\n\n## Refunds\n\nA refund takes five business "
    "days and goes back to the card used.\n"
)


@tool(timeout=5)
async def read_page(page: int, ctx: ToolContext) -> str:
    """Read one page of the ledger (about 5,000 tokens)."""
    entries = " ".join(f"entry{page}-{i}" for i in range(3_300))
    return f"Page {page} subtotal is {page * 100} USD. {entries}"


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def answer(done: int) -> Any:
    """The provider's answer to its request number `done` (from 0): search the runbook,
    read page after page (the request carries the last result), then answer."""
    return lambda received: _answer(done, received)


def _answer(done: int, received: Received) -> dict[str, Any]:
    if done:  # the previous call's result is the last thing sent
        assert tool_results(received.body)[-1]["tool_use_id"] == (
            "toolu_search" if done == 1 else f"toolu_p{done - 1}"
        )
    if done == 0:
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": "toolu_search",
            "name": "search_memory",
            "input": {"query": "how do I total a ledger"},
        }
    elif done <= PAGES:
        block = {
            "type": "tool_use",
            "id": f"toolu_p{done}",
            "name": "read_page",
            "input": {"page": done},
        }
    else:
        block = {
            "type": "text",
            "text": f"The grand total is {sum(range(1, PAGES + 1)) * 100} USD.",
        }
    return {
        "id": f"msg_{done}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [block],
        "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1_000, "output_tokens": 20},
    }


def text_of(body: dict[str, Any]) -> str:
    """Every piece of text a request carries (system, messages, tool results)."""
    parts = [
        body.get("system")
        if isinstance(body.get("system"), str)
        else json.dumps(body.get("system"))
    ]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content:
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                parts.append(inner if isinstance(inner, str) else json.dumps(inner))
            elif block.get("type") == "tool_use":
                parts.append(json.dumps(block["input"]))
    return "\n".join(parts)


@pytest.mark.timeout(60)
async def test_a_long_run_over_the_wire_keeps_its_pinned_part_and_journals_its_summaries(
    loopback: LoopbackServer,
    tmp_path: Path,
) -> None:
    path = tmp_path / "corral.db"
    with SemanticMemory.open(f"sqlite:///{path}") as memory:
        memory.add_text(RUNBOOK, source="runbook.md", tenant="globex")
        search = memory_tool(memory, tenant="globex", k=2)
        loopback.script(*[ok(answer(n)) for n in range(PAGES + 2)])
        # The test's own HTTP client (the SDK's): handing it over is what allows requests.
        http = anthropic.DefaultAsyncHttpxClient()
        model = AnthropicModel(
            "claude-sonnet-5-5", base_url=loopback.url, api_key=KEY, http_client=http
        )
        auditor = SubAgent(
            "auditor",
            instructions=INSTRUCTIONS,
            tools=[search, read_page],
            model=model,
            limits=Limits(
                max_tool_calls=40,
                max_tokens=5_000_000,
                max_consecutive_same_tool=None,
                output_tokens=1_000,
            ),
            context_tokens=WINDOW,
        )
        async with SqliteStore(path) as journal:
            with anyio.fail_after(45):
                async with Runtime(
                    agents=[auditor], journal=journal, guards=Guards(screen=None)
                ) as runtime:
                    result = await runtime.run(TASK, tenant="globex")
            events = await journal.read(result.run_id)
        await http.aclose()

    assert result.outcome == "completed", result.reason
    assert result.output == "The grand total is 7800 USD."
    bodies = [r.body for r in loopback.api_calls()]
    assert len(bodies) == PAGES + 2 and loopback.pending == 0
    # The memory tool answered from the journal's own file, with its source.
    first_result = tool_results(bodies[1])[0]
    shown = (
        first_result["content"]
        if isinstance(first_result["content"], str)
        else json.dumps(first_result["content"])
    )
    assert "runbook.md > Runbook > Ledgers" in shown and "Refunds" not in shown
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert summaries, "twelve 5,000-token pages in a 6,000-token window need a summary"
    for body in bodies:
        assert body["system"] == INSTRUCTIONS or INSTRUCTIONS in json.dumps(body["system"])
        first = body["messages"][0]
        first_text = (
            first["content"] if isinstance(first["content"], str) else first["content"][0]["text"]
        )
        assert first["role"] == "user" and TASK in first_text
        # Within the window as Corral counts it (ASCII characters / 4), tools included.
        assert len(text_of(body)) / 4 + len(json.dumps(body["tools"])) / 4 <= WINDOW
        uses = [
            b["id"]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_use"
        ]
        assert [b["tool_use_id"] for b in tool_results(body)] == uses  # paired, in order
    # What the journal says was summarised is what the provider was sent.
    last = summaries[-1]
    assert any(last.summary in text_of(b) for b in bodies)
    final = text_of(bodies[-1])
    # Page 1's full result is gone from the last request, its fact kept in the summary.
    assert "entry1-3000" not in final and "Page 1 subtotal is 100 USD" in last.summary
    # The latest page is sent, cut to its share of the window, with where the rest is.
    assert "Page 12 subtotal is 1200 USD" in final
    assert "the full result: blob sha256:" in final and "of call toolu_p12" in final
