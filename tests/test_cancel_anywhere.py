"""`Runtime.cancel` on runs this process does not drive: paused, left by a crashed worker,
or held by another live process (which is asked to end it, and does at its next tick)."""

from __future__ import annotations

from corral import Durability, MockClock, Runtime
from corral.demo import app
from corral.events import RunStarted
from corral.store import SqliteJournal

T0 = 1_800_000_000.0


async def _orphan(journal: SqliteJournal, run_id: str) -> None:
    """A run started by a worker that died before anything else: no lease, not paused."""
    await journal.append(RunStarted(run_id=run_id, ts=T0, agent="billing", task="Reconcile Globex"))


def _bystander(journal: SqliteJournal) -> Runtime:
    """A runtime that drives nothing on its own (no resume, no polling)."""
    return Runtime(
        **app().runtime_options(),
        journal=journal,
        clock=MockClock(start=T0 + 5),
        durability=Durability(resume=False, poll_interval_s=None),
    )


async def test_a_run_nobody_drives_is_claimed_and_cancelled(tmp_path) -> None:
    async with SqliteJournal(tmp_path / "c.db") as journal:
        await _orphan(journal, "run_orphan")
        async with _bystander(journal) as runtime:
            assert await runtime.cancel("run_orphan", reason="customer withdrew") is True
            result = await runtime.result("run_orphan")
            assert (result.outcome, result.reason) == ("cancelled", "customer withdrew")
            info = await journal.run("run_orphan")
            assert info is not None and info.owner is None  # the claim was released
            assert await runtime.cancel("run_orphan") is False  # already ended


async def test_a_run_another_live_process_holds_is_asked_of_it_not_touched(tmp_path) -> None:
    async with SqliteJournal(tmp_path / "c.db") as journal:
        await _orphan(journal, "run_held")
        assert await journal.claim("run_held", "worker-2", lease_s=60, now=T0)
        async with _bystander(journal) as runtime:
            assert await runtime.cancel("run_held", reason="duplicate") is False
            info = await journal.run("run_held")
            assert info is not None and (info.status, info.owner) == ("running", "worker-2")
            assert await journal.cancel_requests(["run_held"]) == {"run_held": "duplicate"}
            assert [e.kind for e in await journal.read("run_held")] == ["run_started"]


async def test_the_worker_driving_a_run_ends_it_when_another_asks(tmp_path) -> None:
    import anyio

    from corral.store import SqliteStore

    from ._support import stalling_agent

    stalling = stalling_agent(30)
    agent = stalling.agent
    path = tmp_path / "shared.db"
    async with SqliteStore(path) as store_a, SqliteStore(path) as store_b:
        async with (
            Runtime(
                agents=[agent], journal=store_a, durability=Durability(poll_interval_s=0.05)
            ) as worker_a,
            Runtime(
                agents=[agent],
                journal=store_b,
                durability=Durability(resume=False, poll_interval_s=None),
            ) as worker_b,
        ):
            handle = await worker_a.submit("Look up INV-1")
            with anyio.fail_after(10):
                await stalling.stalled.wait()
            assert await worker_b.cancel(handle.run_id, reason="the customer called") is False
            with anyio.fail_after(10):
                result = await handle.result()
            seen_by_b = await worker_b.wait(handle.run_id)
    assert (result.outcome, result.reason) == ("cancelled", "the customer called")
    assert seen_by_b.outcome == "cancelled" and stalling.ran == ["INV-1"]
