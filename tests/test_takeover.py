"""Takeover between workers sharing one journal: a stalled worker loses the run, writes nothing.

Two runtimes on one SQLite file, each with its own store (connection) and its own clock,
as two worker processes would be. Worker A drives a run and stalls inside a model call
without renewing its lease (its maintenance tick is off, as in a process frozen by a
long pause); worker B's clock passes A's lease, B claims the run and finishes it. When
A wakes up, its model answer is refused by the journal (the lease epoch moved on): A
stops driving the run, its waiter gets B's result, and no step is recorded or executed
twice. The multi-process version of this (SIGKILL, several `corral serve`) is in
tests/test_crash_recovery.py and the PostgreSQL tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Runtime, SubAgent, tool
from corral._clock import MockClock
from corral.events import ModelCalled, RunFinished, ToolCallStarted
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolCall
from corral.observability import configure_json_logs
from corral.store import SqliteStore

T0 = 1_800_000_000.0
LEASE_S = 10.0


def worker_agent(model: FunctionModel, ledger: list[tuple[str, str]], worker: str) -> SubAgent:
    @tool(timeout=5)
    async def lookup(invoice_id: str) -> dict[str, Any]:
        """Look an invoice up."""
        ledger.append((worker, invoice_id))  # outside Corral: what really ran, and where
        return {"invoice_id": invoice_id, "total": 10}

    return SubAgent(
        "billing",
        instructions="You look invoices up.",
        tools=[lookup],
        model=model,
    )


def first_step(request: ModelRequest) -> ModelResponse | None:
    if request.step == 1:
        return ModelResponse(
            tool_calls=(ToolCall(id="c1", name="lookup", arguments={"invoice_id": "INV-1"}),)
        )
    return None


@pytest.mark.timeout(30)
async def test_a_worker_stalled_past_its_lease_loses_the_run_and_records_nothing_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    ledger: list[tuple[str, str]] = []
    stalled, wake_a = anyio.Event(), anyio.Event()
    stores: list[SqliteStore] = []

    async def model_a(request: ModelRequest) -> Any:
        answer = first_step(request)
        if answer is not None:
            return answer
        # A read's result goes with the next commit (here: the model's answer), so a
        # takeover now would run the read again, as a crash would; commit it first, so
        # what B must not repeat is a step known to be done.
        await stores[0].flush()
        stalled.set()
        await wake_a.wait()  # frozen past its lease
        return "A's answer"

    def model_b(request: ModelRequest) -> Any:
        return first_step(request) or "B's answer"

    quiet = Durability(lease_s=LEASE_S, poll_interval_s=None)
    clock_a, clock_b = MockClock(T0), MockClock(T0)
    out = io.StringIO()
    undo = configure_json_logs("warning", stream=out)
    try:
        async with SqliteStore(path) as store_a, SqliteStore(path) as store_b:
            stores.append(store_a)
            async with (
                Runtime(
                    agents=[worker_agent(FunctionModel(model_a), ledger, "A")],
                    journal=store_a,
                    clock=clock_a,
                    durability=quiet,
                ) as worker_a,
                Runtime(
                    agents=[worker_agent(FunctionModel(model_b), ledger, "B")],
                    journal=store_b,
                    clock=clock_b,
                    durability=quiet,
                ) as worker_b,
            ):
                handle = await worker_a.submit("Look up INV-1", agent="billing")
                with anyio.fail_after(10):
                    await stalled.wait()
                assert await worker_b.resume() == []  # A's lease is live: B leaves the run
                clock_b.advance(LEASE_S + 1)
                assert await worker_b.resume() == [handle.run_id]
                with anyio.fail_after(10):
                    finished = await worker_b.wait(handle.run_id)
                assert finished.outcome == "completed" and finished.output == "B's answer"

                wake_a.set()  # A wakes up and tries to record its answer
                with anyio.fail_after(10):
                    seen_by_a = await handle.result()
            events = await store_a.read(handle.run_id)

    finally:
        undo()
    logs = [json.loads(line) for line in out.getvalue().splitlines()]

    assert seen_by_a.outcome == "completed" and seen_by_a.output == "B's answer"
    # The step A finished before it stalled ran once; nothing ran or was recorded twice.
    assert ledger == [("A", "INV-1")]
    steps = [e.step for e in events if isinstance(e, ModelCalled)]
    assert steps == [1, 2]
    assert len([e for e in events if isinstance(e, ToolCallStarted)]) == 1
    assert [e.output for e in events if isinstance(e, RunFinished)] == ["B's answer"]
    assert all("A's answer" not in e.model_dump_json() for e in events)
    lost = [entry for entry in logs if entry["event"] == "runtime.lease_lost"]
    assert [(e["run_id"], e["epoch"]) for e in lost] == [(handle.run_id, 2)]
