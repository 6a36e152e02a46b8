"""An application for `corral serve` subprocess tests: two lookups, one slow, and a ledger.

`corral serve --app tests.serve_app:app` loads it. Each lookup appends its item to the
file named by ``CORRAL_TEST_LEDGER`` when it starts (the outside world's record of what
ran), then sleeps ``CORRAL_TEST_SLOW_S`` seconds for item ``b``. The model's decisions
are a function of the tool results it has seen, so a restarted process asks for the same
next step as the one that stopped.
"""

from __future__ import annotations

import os

import anyio

from corral import App, SubAgent, tool
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call


@tool(timeout=30)
async def lookup(item: str) -> dict[str, str]:
    """Look an item up in the slow inventory system."""
    with open(os.environ["CORRAL_TEST_LEDGER"], "a", encoding="utf-8") as ledger:
        ledger.write(item + "\n")
    if item == "b":
        await anyio.sleep(float(os.environ.get("CORRAL_TEST_SLOW_S", "1.0")))
    return {"item": item, "stock": "12"}


def _decide(request: ModelRequest) -> object:
    seen = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    if seen == 0:
        return call("lookup", item="a")
    if seen == 1:
        return call("lookup", item="b")
    return "Both items are in stock."


def app() -> App:
    """The inventory agent alone (no router needed)."""
    agent = SubAgent(
        "inventory",
        instructions="You check stock.",
        tools=[lookup],
        model=FunctionModel(_decide, name="inventory-script"),
    )
    return App(agents=[agent])
