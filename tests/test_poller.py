"""The poller's tick under load: runs start and pause while it renews leases.

Two runtimes (two owners, as two processes) share one SQLite file. The store's lease
writes can be held up, as on a busy disk, so that runs move on while a tick waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, MockClock, Runtime, SubAgent, tool
from corral.events import RunStarted
from corral.models import (
    FunctionModel,
    ModelRequest,
    ScriptedModel,
    ToolResultMessage,
    UserMessage,
    call,
)
from corral.store import MemoryJournal, SqliteStore

from ._support import of_kind


class BusyLeases(SqliteStore):
    """A real store whose lease writes (claims and renewals) wait while `hold` is unset."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hold: anyio.Event | None = None
        self.entered = anyio.Event()
        """Set when a lease write starts waiting."""

    async def _busy(self) -> None:
        if self.hold is not None and not self.hold.is_set():
            self.entered.set()
            await self.hold.wait()

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        await self._busy()
        return await super().claim(run_id, owner, lease_s=lease_s, now=now)

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        await self._busy()
        return await super().claim_many(run_ids, owner, lease_s=lease_s, now=now)

    async def renew_leases(self, owner: str, **options: Any) -> int:
        await self._busy()
        return await super().renew_leases(owner, **options)


def payments(proceed: anyio.Event) -> SubAgent:
    """Looks an order up (order SLOW waits for `proceed`), then refunds it behind a gate."""

    @tool(timeout=5)
    async def lookup(order_id: str) -> str:
        """Look up an order."""
        if order_id == "SLOW":
            await proceed.wait()
        return f"{order_id}: paid"

    @tool(side_effect="external", timeout=5)
    async def refund(order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    def respond(request: ModelRequest) -> Any:
        task = next(m for m in request.messages if isinstance(m, UserMessage))
        order = task.content.split()[-1]
        results = [m for m in request.messages if isinstance(m, ToolResultMessage)]
        if not results:
            return call("lookup", order_id=order)
        if len(results) == 1:
            return call("refund", order_id=order)
        return f"done: {results[-1].content}"

    return SubAgent(
        "payments", instructions="x", tools=[lookup, refund], model=FunctionModel(respond)
    )


def approvals_service() -> SubAgent:
    """An agent of another process that only decides gates."""
    return SubAgent("other", instructions="x", tools=[], model=ScriptedModel([]))


async def started_calling(rt: Runtime, run_id: str) -> None:
    """Return once the run is inside its first tool call (and so active here)."""
    with anyio.fail_after(5):
        while not of_kind(await rt.events(run_id), "tool_call_started"):
            await anyio.sleep(0.001)


@asynccontextmanager
async def host(
    path: Path, clock: MockClock, owner: str, *agents: SubAgent
) -> AsyncIterator[tuple[Runtime, BusyLeases]]:
    async with BusyLeases(path) as store:
        async with Runtime(
            agents=list(agents),
            journal=store,
            clock=clock,
            durability=Durability(owner=owner, lease_s=5, poll_interval_s=None),
        ) as rt:
            yield rt, store


async def test_a_run_pausing_while_a_tick_renews_leases_is_not_claimed_again(
    tmp_path: Path,
) -> None:
    path, clock, proceed = tmp_path / "j.db", MockClock(), anyio.Event()
    tick_errors: list[Exception] = []

    async def tick(rt: Runtime) -> None:
        try:
            await rt.tick()
        except Exception as exc:
            tick_errors.append(exc)

    async with host(path, clock, "a", payments(proceed)) as (a, store):
        slow = await a.submit("refund SLOW")
        await started_calling(a, slow.run_id)
        store.hold = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick, a)
            await store.entered.wait()  # the tick is renewing the lease of the active run
            proceed.set()  # ... which now reaches its gate, pauses and releases its lease
            paused = await slow.result(timeout=5)
            assert paused.status == "waiting"
            store.hold.set()
        row = await store.get_run(slow.run_id)
        assert row is not None and row.owner is None  # the paused run holds no lease
    assert tick_errors == []

    # Process a is gone. Process b approves the gate and continues the run at once; the
    # clock has not moved, so a lease left behind by a would block b until it ran out.
    async with host(path, clock, "b", payments(proceed)) as (b, _):
        await b.approve(paused.gates[0].opened.gate_id, by="ana")
        result = await b.wait(slow.run_id, timeout=5)
    assert result.outcome == "completed" and result.output == "done: refunded SLOW"


async def test_runs_pausing_during_a_tick_do_not_skip_the_rest_of_it(tmp_path: Path) -> None:
    path, clock, proceed = tmp_path / "j.db", MockClock(), anyio.Event()
    async with host(path, clock, "a", payments(proceed)) as (a, store):
        first = await a.run("refund ORD-1")
        assert first.status == "waiting"
        # Another process approves the first run's gate; it has not the agent, so the run
        # waits, ready, for this process's next tick.
        async with host(path, clock, "b", approvals_service()) as (b, _):
            await b.approve(first.gates[0].opened.gate_id, by="ana")
        slow = await a.submit("refund SLOW")
        await started_calling(a, slow.run_id)
        store.hold = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.tick)  # raises, failing the test, if any part of it fails
            await store.entered.wait()
            proceed.set()  # the active set shrinks while the tick renews its leases
            assert (await slow.result(timeout=5)).status == "waiting"
            store.hold.set()
        # The rest of that same tick ran: it resumed the run approved elsewhere.
        result = await a.wait(first.run_id, timeout=5)
    assert result.outcome == "completed" and result.output == "done: refunded ORD-1"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_renewing_leases_extends_only_those_still_held(kind: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        journal: Any = MemoryJournal()
        if kind == "sqlite":
            journal = await stack.enter_async_context(SqliteStore(tmp_path / "j.db"))
        held, released, theirs = "held", "released", "theirs"
        for run_id in (held, released, theirs):
            await journal.append(RunStarted(run_id=run_id, ts=1.0, agent="a", task="t"))
        for run_id in (held, released):
            assert await journal.claim(run_id, "a", lease_s=5, now=100)
        assert await journal.claim(theirs, "b", lease_s=5, now=100)
        await journal.release(released, "a")  # paused at a gate
        assert await journal.renew_leases("a", lease_s=5, now=104, run_ids=[held, released]) == 1
        assert not await journal.claim(held, "b", lease_s=5, now=108)  # renewed to 109
        assert await journal.claim(released, "b", lease_s=5, now=104)  # free: never re-claimed
        assert not await journal.renew_leases("a", lease_s=5, now=104, run_ids=[theirs])


class LostWaits(MemoryJournal):
    """A journal whose wait index cannot be read (a failing disk)."""

    async def waits(self) -> Any:
        raise OSError("I/O error reading the waits index")


@pytest.mark.parametrize("poller", [False, True], ids=["tick", "poller"])
async def test_one_failing_part_of_a_tick_does_not_skip_the_others(
    poller: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = MockClock()
    async with Runtime(
        agents=[payments(anyio.Event())],
        journal=LostWaits(),
        clock=clock,
        durability=Durability(gate_ttl_s=60, poll_interval_s=0.01 if poller else None),
    ) as rt:
        paused = await rt.run("refund ORD-1")
        assert paused.status == "waiting"
        clock.advance(61)
        if not poller:
            with pytest.raises(OSError, match="waits index"):
                await rt.tick()  # the failure is raised once every part has run
        # Expiring gates (before the failure) and resuming runs (after it) both ran.
        with anyio.fail_after(5):
            while (result := await rt.wait(paused.run_id)).status == "waiting":
                await anyio.sleep(0.01)  # the poller's next tick
    assert result.outcome == "completed"
    assert result.output is not None and "(expired)" in result.output
    logged = [getattr(r, "corral", {}) for r in caplog.records if r.name == "corral.runtime"]
    assert {"event": "runtime.tick_failed", "part": "expire_waits"}.items() <= logged[0].items()
    assert "I/O error reading the waits index" in logged[0]["error"]
