"""`Runtime.cancel` on runs this process does not drive: paused, left by a crashed worker,
or held by another live process (which must cancel it itself)."""

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


async def test_a_run_another_live_process_holds_is_left_to_it(tmp_path) -> None:
    async with SqliteJournal(tmp_path / "c.db") as journal:
        await _orphan(journal, "run_held")
        assert await journal.claim("run_held", "worker-2", lease_s=60, now=T0)
        async with _bystander(journal) as runtime:
            assert await runtime.cancel("run_held") is False
            info = await journal.run("run_held")
            assert info is not None and (info.status, info.owner) == ("running", "worker-2")
