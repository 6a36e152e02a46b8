"""The invoice demo's billing agent, end to end, through each real adapter.

The provider is a mock transport scripted as a conversation: it reads the tool results
Corral sends back (in the provider's wire format) and answers with the next tool calls,
the way the real API would. On the way it sends one malformed call, which Corral rejects
and feeds back as an error the "model" corrects; the invoice search answers 429 once;
the two discrepancy flags wait at gates until a person approves them.
"""

from __future__ import annotations

import importlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest

from corral import Runtime
from corral.demo import BILLING_INSTRUCTIONS, DEMO_TASK, InvoiceBook, billing_agent
from corral.models import AnthropicModel, Model, OpenAICompatibleModel, PriceTable

sdk_httpx: Any = importlib.import_module(
    next(
        c.__module__.split(".")[0]
        for c in anthropic.DefaultAsyncHttpxClient.__mro__
        if c.__name__ == "AsyncClient"
    )
)

BILLING_TOOLS = ["search_invoices", "get_invoice", "calculate_invoice", "flag_discrepancy"]


@dataclass
class Result:
    """One tool result as the provider received it, paired with the call it answers."""

    tool: str
    arguments: dict[str, Any]
    content: str
    is_error: bool


Action = list[tuple[str, Any]] | str
"""The scripted model's next move: tool calls (name, arguments) or a final answer."""

BAD_SEARCH = object()
"""Marker: send the provider's own kind of malformed search call."""


def billing_brain(results: list[Result]) -> Action:
    """Decide the next move from the tool results so far, as a model would."""
    searches = [r for r in results if r.tool == "search_invoices"]
    if not searches:
        return [("search_invoices", BAD_SEARCH)]
    found = [json.loads(r.content) for r in searches if not r.is_error]
    if not found:
        return [("search_invoices", {"customer": "Acme Corp", "status": "unpaid"})]
    invoices = found[-1]
    fetched = {
        data["invoice_id"]: data
        for r in results
        if r.tool == "get_invoice" and not r.is_error
        for data in [json.loads(r.content)]
    }
    missing = [i["invoice_id"] for i in invoices if i["invoice_id"] not in fetched]
    if missing:
        return [("get_invoice", {"invoice_id": iid}) for iid in missing]
    checked = {
        data["invoice_id"]: data
        for r in results
        if r.tool == "calculate_invoice" and not r.is_error
        for data in [json.loads(r.content)]
    }
    unchecked = [iid for iid in fetched if iid not in checked]
    if unchecked:
        return [
            (
                "calculate_invoice",
                {
                    "invoice_id": iid,
                    "amount": fetched[iid]["recorded_total"],
                    "currency": fetched[iid]["currency"],
                },
            )
            for iid in unchecked
        ]
    wrong = [c for c in checked.values() if not c["matches"]]
    flagged = {
        json.loads(r.content)["invoice_id"]
        for r in results
        if r.tool == "flag_discrepancy" and not r.is_error
    }
    to_flag = [c for c in wrong if c["invoice_id"] not in flagged]
    if to_flag:
        return [
            (
                "flag_discrepancy",
                {
                    "invoice_id": c["invoice_id"],
                    "difference": c["difference"],
                    "reason": f"line items sum to {c['computed_total']:.2f}",
                },
            )
            for c in to_flag
        ]
    lines = "; ".join(f"{c['invoice_id']} off by {c['difference']:+.2f}" for c in wrong)
    return f"Checked {len(checked)} unpaid invoices of Acme Corp. Flagged: {lines}."


# -- Anthropic Messages API -------------------------------------------------------------------


class ScriptedClaude:
    """The Messages API, answering each request from `billing_brain`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.bodies.append(body)
        calls: dict[str, tuple[str, dict[str, Any]]] = {}
        results: list[Result] = []
        for message in body["messages"]:
            for block in message["content"]:
                if block["type"] == "tool_use":
                    calls[block["id"]] = (block["name"], block["input"])
                elif block["type"] == "tool_result":
                    name, arguments = calls[block["tool_use_id"]]
                    results.append(
                        Result(
                            name, arguments, block.get("content", ""), block.get("is_error", False)
                        )
                    )
        action = billing_brain(results)
        if isinstance(action, str):
            content: list[dict[str, Any]] = [{"type": "text", "text": action}]
            stop = "end_turn"
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{next(self._ids):04d}",
                    "name": name,
                    # Claude's own kind of mistake: valid JSON that breaks the schema.
                    "input": {"customer": "Acme Corp", "status": "overdue"}
                    if arguments is BAD_SEARCH
                    else arguments,
                }
                for name, arguments in action
            ]
            stop = "tool_use"
        return sdk_httpx.Response(
            200,
            json={
                "id": f"msg_{len(self.bodies):04d}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-5-5",
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 1200,
                    "output_tokens": 80,
                    "cache_read_input_tokens": 400,
                    "cache_creation_input_tokens": 0,
                },
            },
        )


# -- OpenAI-compatible chat completions ---------------------------------------------------------


class ScriptedGPT:
    """A chat-completions server, answering each request from `billing_brain`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        calls: dict[str, tuple[str, dict[str, Any]]] = {}
        results: list[Result] = []
        for message in body["messages"]:
            for call in message.get("tool_calls") or ():
                fn = call["function"]
                calls[call["id"]] = (fn["name"], json.loads(fn["arguments"]))
            if message["role"] == "tool":
                name, arguments = calls[message["tool_call_id"]]
                content = message["content"]
                results.append(Result(name, arguments, content, content.startswith("Error:")))
        action = billing_brain(results)
        if isinstance(action, str):
            message_out: dict[str, Any] = {"role": "assistant", "content": action}
            finish = "stop"
        else:
            message_out = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{next(self._ids):04d}",
                        "type": "function",
                        "function": {
                            "name": name,
                            # A small model's kind of mistake: JSON cut short.
                            "arguments": '{"customer": "Acme Corp", "status": "unpa'
                            if arguments is BAD_SEARCH
                            else json.dumps(arguments),
                        },
                    }
                    for name, arguments in action
                ],
            }
            finish = "tool_calls"
        return httpx.Response(
            200,
            json={
                "id": f"chatcmpl-{len(self.bodies)}",
                "object": "chat.completion",
                "model": "gpt-4.1-mini-2025-04-14",
                "choices": [{"index": 0, "message": message_out, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": 1600,
                    "completion_tokens": 80,
                    "prompt_tokens_details": {"cached_tokens": 400},
                },
            },
        )


# -- the run ------------------------------------------------------------------------------------


async def run_demo(model: Model) -> tuple[Any, InvoiceBook, PriceTable]:
    book = InvoiceBook(retry_after=0.01)
    prices = PriceTable.default()
    async with Runtime(agents=[billing_agent(model, book=book)], cost=prices.cost) as rt:
        paused = await rt.run(DEMO_TASK, timeout=30)
        assert paused.status == "waiting", paused.reason
        assert [g.opened.arguments["invoice_id"] for g in paused.gates] == [
            "INV-000102",
            "INV-000103",
        ]
        assert book.flags == []  # nothing written before a person approved it
        for gate in paused.gates:
            await rt.approve(gate.opened.gate_id, by="controller@acme.test", note="checked")
        result = await rt.wait(paused.run_id, timeout=30)
    return result, book, prices


def assert_trail(result: Any, book: InvoiceBook, prices: PriceTable, bad_guardrail: str) -> None:
    assert result.outcome == "completed", result.reason
    assert result.output == (
        "Checked 3 unpaid invoices of Acme Corp. "
        "Flagged: INV-000102 off by +40.00; INV-000103 off by -15.00."
    )
    assert [f["invoice_id"] for f in book.flags] == ["INV-000102", "INV-000103"]
    events = result.events
    proposed = [e.tool for e in events if e.kind == "tool_call_proposed"]
    assert proposed == [
        "search_invoices",  # malformed: rejected, fed back, corrected
        "search_invoices",
        "get_invoice",
        "get_invoice",
        "get_invoice",
        "calculate_invoice",
        "calculate_invoice",
        "calculate_invoice",
        "flag_discrepancy",
        "flag_discrepancy",
    ]
    rejected = [(e.tool, e.guardrail) for e in events if e.kind == "tool_call_rejected"]
    assert rejected == [("search_invoices", bad_guardrail)]
    failed = [(e.tool, e.error_type, e.will_retry) for e in events if e.kind == "tool_call_failed"]
    assert failed == [("search_invoices", "RateLimited", True)]
    assert [e.kind for e in events].count("gate_opened") == 2
    calls = [e for e in events if e.kind == "model_called"]
    assert len(calls) == result.model_calls == 6
    assert all(e.response.usage.total_tokens > 0 for e in calls)
    # Cost per call is the price table's, for the model the provider said answered.
    for e in calls:
        assert (
            e.cost_usd == pytest.approx(prices.cost(e.model, e.response.usage)) and e.cost_usd > 0
        )
    assert result.cost_usd == pytest.approx(sum(e.cost_usd for e in calls))
    assert not prices.unknown_models
    assert not [e for e in events if e.kind == "model_failed"]


async def test_billing_demo_through_the_anthropic_adapter() -> None:
    claude = ScriptedClaude()
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(claude)) as http:
        client = anthropic.AsyncAnthropic(api_key="test", http_client=http, max_retries=0)
        result, book, prices = await run_demo(AnthropicModel("claude-sonnet-5-5", client=client))
    assert_trail(result, book, prices, bad_guardrail="schema")
    first, second = claude.bodies[0], claude.bodies[1]
    assert first["system"] == BILLING_INSTRUCTIONS
    assert [t["name"] for t in first["tools"]] == BILLING_TOOLS
    assert first["messages"] == [{"role": "user", "content": [{"type": "text", "text": DEMO_TASK}]}]
    # The rejected call went back as an error result Claude can act on.
    (result_block,) = second["messages"][-1]["content"]
    assert result_block["is_error"] is True
    assert "Invalid arguments for tool 'search_invoices'" in result_block["content"]
    # Parallel calls came back as one user turn of results; roles always alternate.
    for body in claude.bodies:
        roles = [m["role"] for m in body["messages"]]
        assert all(a != b for a, b in itertools.pairwise(roles)), roles
    fetched = claude.bodies[3]["messages"][-1]["content"]
    assert [b["type"] for b in fetched] == ["tool_result"] * 3
    assert all("is_error" not in b for b in fetched)


async def test_billing_demo_through_the_openai_compatible_adapter() -> None:
    gpt = ScriptedGPT()
    async with httpx.AsyncClient(transport=httpx.MockTransport(gpt)) as http:
        model = OpenAICompatibleModel(
            "gpt-4.1-mini", base_url="http://localhost:8000/v1", api_key="test", http_client=http
        )
        result, book, prices = await run_demo(model)
    assert_trail(result, book, prices, bad_guardrail="arguments")
    first, second = gpt.bodies[0], gpt.bodies[1]
    assert first["messages"][0] == {"role": "system", "content": BILLING_INSTRUCTIONS}
    assert first["messages"][1] == {"role": "user", "content": DEMO_TASK}
    assert [t["function"]["name"] for t in first["tools"]] == BILLING_TOOLS
    # The cut-short JSON went back as an error the model could act on, not a crash.
    error = second["messages"][-1]
    assert error["role"] == "tool"
    assert error["content"].startswith(
        "Error: The arguments for 'search_invoices' are not valid JSON"
    )
    # Usage: prompt tokens include the cached ones, which are billed once, as cache reads.
    usage = next(e for e in result.events if e.kind == "model_called").response.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (1200, 400, 80)
