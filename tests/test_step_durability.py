"""Each step is durable by default: a model call's answer is on disk before the next step.

A read-only tool opens the SQLite file on its own connection (as another process would
after a crash) and counts the run's committed ``model_called`` events: with the default
``Durability(mode="step")`` the answer that proposed the call is always there, so a crash
at any point of the tool call can never make the runtime ask the model again for it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from corral import Durability, Runtime, SubAgent, tool
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolResultMessage, call
from corral.store import SqliteJournal

STEPS = 6


def _agent(db: Path, seen: list[tuple[int, int]]) -> SubAgent:
    @tool(timeout=5)
    async def count(step: int) -> str:
        """Count this run's committed model answers, from another connection."""
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (committed,) = con.execute(
                "SELECT count(*) FROM events WHERE kind = 'model_called'"
            ).fetchone()
        finally:
            con.close()
        seen.append((step, committed))
        return f"step {step}: {committed} answers on disk"

    def respond(request: ModelRequest) -> ModelResponse | str:
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        if done < STEPS:
            return call("count", step=done + 1)
        return "done"

    return SubAgent("counter", instructions="Count.", tools=[count], model=FunctionModel(respond))


@pytest.mark.parametrize("concurrent", [1, 5])
async def test_every_model_answer_is_committed_before_the_step_that_uses_it(
    tmp_path: Path, concurrent: int
) -> None:
    db = tmp_path / "journal.db"
    seen: list[tuple[int, int]] = []
    async with SqliteJournal(db) as journal:
        async with Runtime(agents=[_agent(db, seen)], journal=journal) as rt:
            handles = [await rt.submit(f"count {i}", agent="counter") for i in range(concurrent)]
            results = [await h.result() for h in handles]
    assert [r.outcome for r in results] == ["completed"] * concurrent
    assert len(seen) == STEPS * concurrent
    if concurrent == 1:
        # The answer proposing step N is the N-th on disk when step N's tool runs.
        assert seen == [(step, step) for step in range(1, STEPS + 1)]
    else:
        # With other runs interleaved, at least this run's own N answers are on disk.
        assert all(committed >= step for step, committed in seen), seen


def test_step_is_the_default_and_batched_is_a_setting() -> None:
    assert Durability().mode == "step"
    assert Durability(mode="batched").mode == "batched"
    with pytest.raises(ValueError, match="mode"):
        Durability(mode="sometimes")  # type: ignore[arg-type]
