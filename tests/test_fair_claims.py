"""Fair pulls: a worker with `Durability.fair_tenants` shares its room between tenants.

A capped worker (`max_active_runs`) pulls queued runs as its runs finish. Oldest first, a
tenant that queued a backlog holds back every run queued after it; round-robin by tenant,
the others' runs go next. Each run here waits on its own event after its first model
call, so the test finishes runs one at a time and reads the exact order runs start in.
The same claims on PostgreSQL, where other workers lock rows at the same time
(``FOR UPDATE SKIP LOCKED``), are tested at the end. The round-robin order itself is in
the conformance suite (`corral.store.testing.LeasesContract`), on every backend.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from corral import Durability, Runtime, SubAgent
from corral.models import FunctionModel, ModelRequest
from corral.store import PostgresStore, SqliteStore
from corral.store.testing import _events as ev


class Queue:
    """A ``billing`` agent whose runs announce their start, then wait to be let go."""

    def __init__(self) -> None:
        self.release: dict[str, anyio.Event] = {}
        self._send, self.starts = anyio.create_memory_object_stream[str](100)

    def agent(self) -> SubAgent:
        async def respond(request: ModelRequest) -> str:
            task = str(request.messages[0].content)  # type: ignore[union-attr]
            await self._send.send(task)
            await self.release.setdefault(task, anyio.Event()).wait()
            return "done"

        return SubAgent(
            "billing", instructions="You answer.", tools=[], model=FunctionModel(respond)
        )

    def close(self) -> None:
        self._send.close()
        self.starts.close()


async def next_start(starts: MemoryObjectReceiveStream[str]) -> str:
    with anyio.fail_after(10):
        return await starts.receive()


async def start_order(path: Path, *, fair: bool) -> list[str]:
    """Big queues 20 runs, then small 2, on a worker with room for 2; return start order.

    The oldest run being driven is let go each time, and the run pulled in its place
    awaited, until every run has run.
    """
    queue = Queue()
    durability = Durability(max_active_runs=2, fair_tenants=fair, poll_interval_s=None)
    with contextlib.closing(queue):
        return await drive(queue, path, durability)


async def drive(queue: Queue, path: Path, durability: Durability) -> list[str]:
    async with SqliteStore(path) as store:
        async with Runtime(agents=[queue.agent()], journal=store, durability=durability) as rt:
            handles = [await rt.submit(f"big-{i}", tenant="big") for i in range(20)]
            handles += [await rt.submit(f"small-{i}", tenant="small") for i in range(2)]
            order = [await next_start(queue.starts), await next_start(queue.starts)]
            for done in range(len(handles)):
                queue.release.setdefault(order[done], anyio.Event()).set()
                if len(order) < len(handles):
                    order.append(await next_start(queue.starts))
            with anyio.fail_after(10):
                results = [await h.result() for h in handles]
    assert all(r.outcome == "completed" for r in results)
    return order


@pytest.mark.timeout(60)
async def test_a_fair_worker_drives_a_small_tenant_before_a_big_backlog_drains(
    tmp_path: Path,
) -> None:
    order = await start_order(tmp_path / "fair.db", fair=True)
    # Room for one at a time: the tenant with fewer runs in flight gets it.
    assert order[:6] == ["big-0", "big-1", "small-0", "big-2", "small-1", "big-3"]
    assert order[6:] == [f"big-{i}" for i in range(4, 20)]


@pytest.mark.timeout(60)
async def test_an_unfair_worker_drives_the_backlog_first(tmp_path: Path) -> None:
    """The default: oldest first, so the small tenant waits for all 20 of big's runs."""
    order = await start_order(tmp_path / "fifo.db", fair=False)
    assert order == [f"big-{i}" for i in range(20)] + ["small-0", "small-1"]


async def queue_three_tenants(store: PostgresStore) -> None:
    for run_id, tenant, age in [
        ("b0", "big", 0),
        ("b1", "big", 1),
        ("b2", "big", 2),
        ("b3", "big", 3),
        ("s0", "small", 4),
        ("s1", "small", 5),
        ("m0", "mid", 6),
    ]:
        await store.append(ev.started(run_id, ts=ev.T0 + age, tenant=tenant), wait=False)
    await store.flush()


async def test_a_fair_claim_on_postgres_passes_over_a_row_another_worker_locks(
    pg_url: str,
) -> None:
    """``SKIP LOCKED``: the batch is still full, the rest still taken round by round."""
    async with PostgresStore(pg_url) as store:
        await queue_three_tenants(store)
        other = await asyncpg.connect(pg_url)
        try:
            async with other.transaction():  # another worker in the middle of claiming s0
                await other.execute("SELECT 1 FROM corral.runs WHERE run_id = 's0' FOR UPDATE")
                got = await store.claim_runs("A", lease_s=30, now=ev.T0, limit=4, fair=True)
                assert got == ["b0", "m0", "b1", "s1"]
        finally:
            await other.close()
        # A drives 2 of big's, 1 of small's and mid's: s0 evens small with big.
        assert await store.claim_runs("B", lease_s=30, now=ev.T0, limit=2, fair=True) == [
            "s0",
            "b2",
        ]


async def test_two_fair_workers_claiming_at_once_take_disjoint_runs(pg_url: str) -> None:
    """Every ready run goes to exactly one worker, and each takes its batch fairly."""
    async with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        for i in range(30):
            tenant = "big" if i < 20 else f"t{i % 5}"
            await a.append(ev.started(f"r{i:02d}", ts=ev.T0 + i, tenant=tenant), wait=False)
        await a.flush()
        got: dict[str, list[str]] = {}
        batches: list[list[str]] = []

        async def claim(store: PostgresStore, owner: str) -> None:
            got[owner] = []
            for _ in range(4):
                batch = await store.claim_runs(
                    owner, lease_s=30, now=ev.T0 + 30, limit=5, exclude=got[owner], fair=True
                )
                got[owner] += batch
                batches.append(batch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim, a, "A")
            tg.start_soon(claim, b, "B")
        assert not set(got["A"]) & set(got["B"])
        assert sorted(got["A"] + got["B"]) == [f"r{i:02d}" for i in range(30)]
        # However the claims interleave, each worker took every small tenant's run (its
        # first or second turn) before big's third run or any later one.
        small = {f"r{i:02d}" for i in range(20, 30)}
        assert len(small & set(batches[0])) >= 2, batches  # oldest first: none
        for ids in got.values():
            smalls = [n for n, run_id in enumerate(ids) if run_id in small]
            backlog = [n for n, run_id in enumerate(ids) if "r02" <= run_id < "r20"]
            assert not smalls or not backlog or max(smalls) < min(backlog), ids
