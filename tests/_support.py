"""Helpers shared by the runtime tests (fakes at the seams, never mocks of our own code)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from corral import Limits, MockClock, Runtime, SubAgent
from corral.events import Event
from corral.models import (
    FunctionModel,
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSpec,
    UserMessage,
)
from corral.tools import RetryPolicy, Tool, tool

TINY_RETRY = RetryPolicy(initial_delay=1.0, multiplier=4.0, max_retries=3, jitter=0.0)
"""The production backoff shape (1 s, 4 s, 16 s), without jitter; tests use a MockClock."""


def agent(
    tools: Sequence[Tool],
    model: Model,
    *,
    name: str = "worker",
    scopes: Sequence[str] = (),
    limits: Limits | None = None,
) -> SubAgent:
    return SubAgent(
        name,
        instructions="You are a test agent. Use the tools.",
        tools=tools,
        model=model,
        scopes=scopes,
        limits=limits,
    )


@dataclass
class Stalling:
    """A ``billing`` agent whose one tool call hangs: a run in flight, for tests to stop."""

    agent: SubAgent
    stalled: anyio.Event = field(default_factory=anyio.Event)
    """Set once the call started."""
    ran: list[str] = field(default_factory=list)
    """The invoice ids the tool body was called with."""


def stalling_agent(seconds: float = 60.0) -> Stalling:
    """An agent that calls ``lookup(INV-1)``, which waits `seconds` before answering."""
    holder: list[Stalling] = []

    @tool(timeout=seconds + 1)
    async def lookup(invoice_id: str) -> str:
        """Look an invoice up (it takes its time)."""
        holder[0].ran.append(invoice_id)
        holder[0].stalled.set()
        await anyio.sleep(seconds)
        return "found"

    def respond(request: ModelRequest) -> ModelResponse:
        call = ToolCall(id="c1", name="lookup", arguments={"invoice_id": "INV-1"})
        return ModelResponse(tool_calls=(call,))

    made = SubAgent(
        "billing", instructions="Look up.", tools=[lookup], model=FunctionModel(respond)
    )
    holder.append(Stalling(made))
    return holder[0]


@tool(timeout=5)
async def ping(n: int = 0) -> str:
    """Ping."""
    return "pong"


@tool(timeout=5)
async def pong(n: int = 0) -> str:
    """Pong."""
    return "ping"


def runtime(*agents: SubAgent, clock: MockClock | None = None, **options: Any) -> Runtime:
    return Runtime(agents=list(agents), clock=clock or MockClock(), seed=7, **options)


def kinds(events: Sequence[Event]) -> list[str]:
    return [e.kind for e in events]


def of_kind(events: Sequence[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


# -- provider adapter tests: one request shape both adapters are driven with -----------

SEARCH = ToolSpec(
    name="search_invoices",
    description="Search invoices by customer name and status.",
    input_schema={
        "type": "object",
        "properties": {
            "customer": {"type": "string"},
            "status": {"enum": ["paid", "unpaid", "any"]},
        },
        "required": ["customer"],
    },
)
GET = ToolSpec(
    name="get_invoice",
    description="Fetch one invoice with its line items.",
    input_schema={
        "type": "object",
        "properties": {"invoice_id": {"type": "string", "pattern": "^INV-[0-9]{6}$"}},
        "required": ["invoice_id"],
    },
)


def ask(*messages: Any, tools: tuple[ToolSpec, ...] = (), max_tokens: int = 1024) -> ModelRequest:
    return ModelRequest(
        system="You are the billing reconciliation agent.",
        messages=messages or (UserMessage(content="Reconcile Acme Corp's unpaid invoices."),),
        tools=tools,
        max_tokens=max_tokens,
        run_id="run_1",
        step=1,
    )


def lookup_and_refund(lookup_result: str) -> list[Tool]:
    """An invoice ``lookup`` whose first attempt fails (retried after 1 s, no jitter), and an
    ``external`` ``refund``; `lookup_result` is what a lookup of ``INV`` returns after it."""
    failures = [1]

    @tool(timeout=5, retry=RetryPolicy(max_retries=2, initial_delay=1.0, jitter=0.0))
    async def lookup(invoice_id: str) -> str:
        """Look up an invoice (the first attempt fails)."""
        if failures:
            failures.pop()
            raise ConnectionError("ledger unreachable")
        return f"{invoice_id}: {lookup_result}"

    @tool(side_effect="external", timeout=5)
    async def refund(invoice_id: str, amount: float) -> str:
        """Refund an invoice."""
        return f"refunded {amount:.2f} on {invoice_id}"

    return [lookup, refund]
