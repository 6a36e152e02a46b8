"""The conformance suite, part 5: fencing between processes that share one database.

A worker that stalls past its lease (a long pause, a partitioned network) must not write
to a run another worker has since taken over: each claim that takes a run over advances
its lease epoch, and the events of an older epoch are refused, in the transaction that
would write them, with `corral.errors.LeaseLostError`. Two store objects on one database
stand for two processes (each a connection of its own).
"""

from __future__ import annotations

import pytest

from ...errors import LeaseLostError
from .._contract import Journal
from . import _events as ev
from ._events import T0

__all__ = ["FencingContract"]


@pytest.mark.asyncio
class FencingContract:
    """Fencing by lease epoch, for a backend several processes share.

    Needs two async fixtures: ``journal`` (see `corral.store.testing`) and
    ``second_journal``, another store object opened on the same database, as a second
    process would (not the same object, nor its connection).
    """

    async def test_a_run_taken_over_refuses_the_previous_holders_writes(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """Once B claims an expired lease, A's next write fails and writes nothing."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        await journal.append(ev.proposed("r1", "c1"))
        assert await second_journal.claim("r1", "B", lease_s=10, now=T0 + 11)
        await second_journal.append(ev.proposed("r1", "c2"))
        with pytest.raises(LeaseLostError) as lost:
            await journal.append(ev.proposed("r1", "c3"))
        assert lost.value.run_id == "r1" and lost.value.holder == "B"
        assert "taken over by B" in str(lost.value)
        events = await second_journal.read("r1")
        assert ev.seqs(events) == [1, 2, 3]
        assert [getattr(e, "call_id", None) for e in events] == [None, "c1", "c2"]
        # B goes on writing; A stays refused, also for writes queued without waiting (the
        # next append of the run says so), and its release leaves B's lease alone.
        await second_journal.append(ev.proposed("r1", "c4"))
        await journal.append(ev.proposed("r1", "c5"), wait=False)
        await journal.flush()
        with pytest.raises(LeaseLostError):
            await journal.append(ev.proposed("r1", "c6"))
        with pytest.raises(LeaseLostError):
            await journal.append(ev.proposed("r1", "c7"))
        await journal.release("r1", "A")
        info = await second_journal.run("r1")
        assert info is not None and info.owner == "B"
        assert ev.seqs(await second_journal.read("r1")) == [1, 2, 3, 4]

    async def test_a_second_process_under_the_same_owner_name_still_takes_over(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """The epoch, not the owner's name, decides: a restarted "w" fences the old "w"."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "w", lease_s=10, now=T0)
        assert await second_journal.claim("r1", "w", lease_s=10, now=T0 + 1)
        await second_journal.append(ev.proposed("r1", "c1"))
        with pytest.raises(LeaseLostError):
            await journal.append(ev.proposed("r1", "c2"))
        await journal.release("r1", "w")  # the old claim: the new one stays
        info = await second_journal.run("r1")
        assert info is not None and info.owner == "w"
        await second_journal.append(ev.proposed("r1", "c3"))
        assert ev.seqs(await second_journal.read("r1")) == [1, 2, 3]

    async def test_renewing_its_own_lease_keeps_the_right_to_write(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """Claiming again, renewing, or claiming an expired lease nobody took: all renewals."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert await journal.claim("r1", "A", lease_s=10, now=T0 + 5)
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 8) == 1
        assert await journal.claim("r1", "A", lease_s=10, now=T0 + 60)  # expired, not taken
        await journal.append(ev.proposed("r1", "c1"))
        assert not await second_journal.claim("r1", "B", lease_s=10, now=T0 + 61)
        assert ev.seqs(await second_journal.read("r1")) == [1, 2]

    async def test_a_run_claimed_again_after_release_is_written_by_its_new_holder_only(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """A paused run is released; whoever claims it next holds the only live epoch."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        await journal.release("r1", "A")
        assert await second_journal.claim("r1", "B", lease_s=10, now=T0 + 1)
        await second_journal.append(ev.proposed("r1", "c1"))
        # B stalls past its lease; A takes the run back.
        assert await journal.claim("r1", "A", lease_s=10, now=T0 + 12)
        await journal.append(ev.proposed("r1", "c2"))
        with pytest.raises(LeaseLostError):
            await second_journal.append(ev.proposed("r1", "c3"))
        assert ev.seqs(await journal.read("r1")) == [1, 2, 3]

    async def test_writes_to_runs_a_store_does_not_hold_are_not_fenced(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """A decision recorded by any process (the run paused, nobody holds it) is written."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        await journal.append(ev.gate_opened("r1", "g1"))
        await journal.release("r1", "A")
        assert await second_journal.decide_gate(ev.decision("r1", "g1"))
        assert ev.seqs(await journal.read("r1")) == [1, 2, 3]
        assert await journal.claim("r1", "A", lease_s=10, now=T0 + 6)
        await journal.append(ev.proposed("r1", "c2"))
        assert ev.seqs(await second_journal.read("r1")) == [1, 2, 3, 4]

    async def test_only_the_run_taken_over_fails_in_a_shared_commit(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """Events of other runs committed in the same batch are written."""
        for run_id in ("r1", "r2"):
            await journal.append(ev.started(run_id))
            assert await journal.claim(run_id, "A", lease_s=10, now=T0)
        assert await second_journal.claim("r1", "B", lease_s=10, now=T0 + 11)
        await journal.append(ev.proposed("r2", "c1"), wait=False)
        await journal.append(ev.proposed("r1", "c1"), wait=False)
        await journal.flush()
        assert ev.seqs(await second_journal.read("r2")) == [1, 2]
        assert ev.seqs(await second_journal.read("r1")) == [1]
        with pytest.raises(LeaseLostError):
            await journal.append(ev.proposed("r1", "c2"))

    async def test_a_release_commits_the_runs_queued_events_before_it_lets_go(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """Events appended without waiting are written under the lease, not after it."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        await journal.append(ev.proposed("r1", "c1"), wait=False)
        await journal.release("r1", "A")
        assert await second_journal.claim("r1", "B", lease_s=10, now=T0 + 1)
        assert ev.seqs(await second_journal.read("r1")) == [1, 2]
        await second_journal.append(ev.proposed("r1", "c2"))
        await journal.flush()
        events = await second_journal.read("r1")
        assert [getattr(e, "call_id", None) for e in events] == [None, "c1", "c2"]
