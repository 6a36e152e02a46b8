"""The conformance suite, part 6: the registry of worker processes (`corral.store.Workers`)."""

from __future__ import annotations

import pytest

from .._contract import WORKER_FORGET_S, Journal, WorkerInfo
from . import _events as ev
from ._events import T0

__all__ = ["WorkersContract"]


def worker(owner: str, *, seen_at: float, started_at: float = T0, pid: int = 100) -> WorkerInfo:
    """A worker on host ``node-1``."""
    return WorkerInfo(
        owner=owner,
        host="node-1",
        pid=pid,
        started_at=started_at,
        seen_at=seen_at,
        max_active_runs=50,
        version="1.0",
    )


@pytest.mark.asyncio
class WorkersContract:
    """Heartbeats, the live workers with their leases, retirement.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    async def test_a_heartbeat_lists_the_worker_with_its_live_leases(
        self, journal: Journal
    ) -> None:
        """Leases counted: the worker's own, live, on unfinished runs."""
        for run_id in ("r1", "r2", "r3", "r4"):
            await journal.append(ev.started(run_id))
        assert await journal.claim("r1", "w1", lease_s=60, now=T0)
        assert await journal.claim("r2", "w1", lease_s=5, now=T0)  # expired at T0 + 10
        assert await journal.claim("r3", "w2", lease_s=60, now=T0)
        assert await journal.claim("r4", "w1", lease_s=60, now=T0)
        await journal.append(ev.finished("r4"))
        await journal.heartbeat(worker("w1", seen_at=T0 + 10))
        await journal.heartbeat(worker("w2", seen_at=T0 + 10, started_at=T0 + 1, pid=101))
        found = await journal.workers(now=T0 + 10, within_s=30)
        assert [(w.owner, w.leases) for w in found] == [("w1", 1), ("w2", 1)]
        assert found[0] == WorkerInfo("w1", "node-1", 100, T0, T0 + 10, 50, "1.0", leases=1)

    async def test_a_worker_not_seen_lately_is_not_listed_and_a_heartbeat_replaces(
        self, journal: Journal
    ) -> None:
        """One row per owner: the latest heartbeat; the window leaves out the silent."""
        await journal.heartbeat(worker("w1", seen_at=T0))
        await journal.heartbeat(worker("w2", seen_at=T0))
        await journal.heartbeat(worker("w1", seen_at=T0 + 50, pid=200))
        found = await journal.workers(now=T0 + 60, within_s=30)
        assert [(w.owner, w.pid, w.seen_at) for w in found] == [("w1", 200, T0 + 50)]
        assert len(await journal.workers(now=T0 + 60, within_s=3600)) == 2

    async def test_a_retired_worker_is_gone_and_the_long_silent_are_forgotten(
        self, journal: Journal
    ) -> None:
        """`retire` removes at once; a heartbeat deletes workers unseen for a week."""
        await journal.heartbeat(worker("w1", seen_at=T0))
        await journal.heartbeat(worker("w2", seen_at=T0))
        await journal.retire("w1")
        await journal.retire("nobody")
        everyone = 10 * WORKER_FORGET_S
        assert [w.owner for w in await journal.workers(now=T0, within_s=everyone)] == ["w2"]
        await journal.heartbeat(worker("w3", seen_at=T0 + WORKER_FORGET_S + 1))
        found = await journal.workers(now=T0 + WORKER_FORGET_S + 1, within_s=everyone)
        assert [w.owner for w in found] == ["w3"]
