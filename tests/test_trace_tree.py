"""`render_trace`: a run's reasoning trail as a tree, from real runs and a real journal."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console

from corral import Durability, MockClock, Runtime, SubAgent, tool
from corral.events import Event
from corral.models import ScriptedModel, call, reply
from corral.observability import render_trace
from corral.store import SqliteStore

from ._support import lookup_and_refund


def draw(events: Sequence[Event], width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    render_trace(events, console)
    return console.export_text().splitlines()


def line_with(lines: list[str], *parts: str) -> str:
    found = [line for line in lines if all(part in line for part in parts)]
    assert found, f"no line with {parts!r} in:\n" + "\n".join(lines)
    return found[0]


def billing_tools() -> list[Any]:
    return lookup_and_refund("paid [bold]120.00[/]")


async def test_the_tree_shows_each_step_its_calls_results_and_verdicts(tmp_path: Path) -> None:
    clock = MockClock()
    model = ScriptedModel(
        [
            call("lookup", invoice_id="INV-4417"),
            [call("made_up", x=1), call("refund", invoice_id="INV-4417", amount=120.0)],
            reply("Refunded 120.00."),
        ]
    )
    agent = SubAgent("billing", instructions="Refund.", tools=billing_tools(), model=model)
    async with (
        SqliteStore(tmp_path / "j.db") as journal,
        Runtime(
            agents=[agent],
            journal=journal,
            clock=clock,
            durability=Durability(poll_interval_s=None),
        ) as rt,
    ):
        paused = await rt.run("refund INV-4417", tenant="acme")
        waiting = draw(paused.events, 120)
        (gate,) = paused.gates
        clock.advance(30)
        await rt.approve(gate.opened.gate_id, by="ana", note="checked with the customer")
        result = await rt.wait(paused.run_id, timeout=5)
        events = result.events  # read lazily from SQLite: decoded as the tree reads them
        assert not isinstance(events, list)
        lines = draw(events, 120)

    assert line_with(waiting, "outcome", "not finished")
    assert line_with(lines, "run", result.run_id)
    assert line_with(lines, "agent", "billing")
    assert line_with(lines, "route", "(single agent)")
    assert line_with(lines, "tenant", "acme")
    assert line_with(lines, "outcome", "completed")
    assert line_with(lines, "usage", f"{result.tokens:,} tokens", "3 model calls", "2 steps")

    called = [e for e in result.events if e.kind == "model_called"]
    for n, event in enumerate(called, start=1):
        usage = event.response.usage
        line_with(
            lines, f"step {n}", "scripted", f"{usage.input_tokens} in / {usage.output_tokens} out"
        )
    assert line_with(lines, "offered", "2 tools", "lookup, refund")
    assert line_with(lines, "call", "lookup", '{"invoice_id": "INV-4417"}')
    assert line_with(
        lines, "error", "ConnectionError", "attempt 1: ledger unreachable; retry in 1.00 s"
    )
    assert line_with(lines, "retry", "lookup", "attempt 2")
    # the result as the model saw it, markup and all (never interpreted)
    assert line_with(lines, "result", "lookup", "INV-4417: paid [bold]120.00[/]")
    assert line_with(lines, "call", "made_up", '{"x": 1}')
    assert line_with(lines, "blocked", "registered", "unknown tool 'made_up'")
    assert line_with(lines, "approve", "approval", "gate by default for external tools")
    assert line_with(lines, "gate", "needs approval", gate.opened.gate_id)
    assert line_with(lines, "approved", "by ana", "after 30.00 s: checked with the customer")
    assert line_with(lines, "result", "refund", "refunded 120.00 on INV-4417")
    assert line_with(lines, "answer", "Refunded 120.00.")

    # Each row sits under its own step, in order.
    order = [
        line_with(lines, "step 1"),
        line_with(lines, "result", "lookup"),
        line_with(lines, "step 2"),
        line_with(lines, "blocked", "registered"),
        line_with(lines, "approved", "by ana"),
        line_with(lines, "result", "refunded 120.00"),
        line_with(lines, "step 3"),
        line_with(lines, "answer"),
    ]
    assert [lines.index(line) for line in order] == sorted(lines.index(line) for line in order)


async def test_long_names_and_values_never_break_the_columns() -> None:
    real = "t" + "x" * 63  # the longest name a tool may have
    invented = "n" * 200  # a model may call anything

    @tool(timeout=5, name=real)
    async def find(q: str) -> str:
        """Find."""
        return "y" * 5_000

    model = ScriptedModel(
        [call(real, q="z" * 2_000), call(invented, a="w" * 300), reply("done " * 500)]
    )
    agent = SubAgent("a" * 60, instructions="x", tools=[find], model=model)
    async with Runtime(agents=[agent], clock=MockClock()) as rt:
        result = await rt.run("go", tenant="T" * 200)
    lines = draw(result.events, 80)
    assert max(cell_len(line) for line in lines) <= 80
    assert line_with(lines, "call", real[:10], "…")  # the name cut with an ellipsis
    assert line_with(lines, "call", invented[:10], "…")
    assert line_with(lines, "blocked", "registered")
    # long values are cut before they are folded: the tree stays short
    assert len(lines) < 80
    assert sum("y" * 30 in line for line in lines) < 15


def test_no_events_draws_an_empty_trail() -> None:
    assert line_with(draw([], 80), "no events")
