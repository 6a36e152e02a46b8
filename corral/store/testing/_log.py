"""The conformance suite, part 1: the event log (`corral.store.EventLog`)."""

from __future__ import annotations

import pytest

from ...events import ToolCallFinished
from .._contract import Blobs, EventLog, Journal, Leases, RunIndex, Upkeep
from . import _events as ev
from ._events import T0

__all__ = ["EventLogContract"]


@pytest.mark.asyncio
class EventLogContract:
    """The event log: numbering, stored copies, queued appends, lazy reads.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    # -- the event log --------------------------------------------------------------------------

    async def test_a_journal_implements_every_part_of_the_contract(self, journal: Journal) -> None:
        """The backend has every method of every protocol (nothing found by ``getattr``)."""
        for part in (EventLog, RunIndex, Leases, Blobs, Upkeep, Journal):
            assert isinstance(journal, part), part.__name__

    async def test_append_numbers_each_run_from_one_without_gaps(self, journal: Journal) -> None:
        """Seqs are 1, 2, ... per run, whatever the other runs do."""
        got = [
            (await journal.append(ev.started("r1"))).seq,
            (await journal.append(ev.started("r2"))).seq,
            (await journal.append(ev.proposed("r1", "a"))).seq,
            (await journal.append(ev.proposed("r1", "b"))).seq,
            (await journal.append(ev.proposed("r2", "a"))).seq,
        ]
        assert got == [1, 1, 2, 3, 2]
        assert ev.seqs(await journal.read("r1")) == [1, 2, 3]
        assert ev.seqs(await journal.read("r2")) == [1, 2]

    async def test_append_returns_the_stored_copy_and_never_changes_its_argument(
        self, journal: Journal
    ) -> None:
        """The stored event is ``event.model_copy(update={"seq": n})``; `event` stays as it was."""
        await journal.append(ev.started("r1"))
        event = ev.proposed("r1")
        before = event.model_copy(deep=True)
        stored = await journal.append(event)
        assert event == before and event.seq == 0
        assert stored is not event
        assert stored.seq == 2
        assert stored == event.model_copy(update={"seq": 2})
        assert (await journal.read("r1"))[-1] == stored

    async def test_appends_without_waiting_are_numbered_at_once_and_kept_in_order(
        self, journal: Journal
    ) -> None:
        """``wait=False`` returns the seq at once; after `flush` every event is there, in order."""
        await journal.append(ev.started("r1"), wait=False)
        queued = [await journal.append(ev.proposed("r1", f"q{i}"), wait=False) for i in range(3)]
        assert ev.seqs(queued) == [2, 3, 4]
        await journal.flush()
        events = await journal.read("r1")
        assert ev.seqs(events) == [1, 2, 3, 4]
        assert [getattr(e, "call_id", None) for e in events] == [None, "q0", "q1", "q2"]
        assert events[1:] == queued

    async def test_read_lazily_equals_read(self, journal: Journal) -> None:
        """The lazy sequence has the same events, by index, slice and equality."""
        await journal.append(ev.started("r1"))
        await journal.append(
            ToolCallFinished(
                run_id="r1",
                ts=T0 + 1,
                step=1,
                call_id="c1",
                tool="lookup",
                attempt=1,
                content="é ✓ \u2028 " + "x" * 500,
                duration_s=0.5,
            )
        )
        await journal.append(ev.gate_opened("r1"))
        await journal.append(ev.finished("r1"))
        eager = await journal.read("r1")
        lazy = await journal.read_lazily("r1")
        assert len(lazy) == 4 and lazy == eager
        assert lazy[0] == eager[0] and lazy[-1] == eager[-1] and lazy[1:3] == eager[1:3]
        assert [e.kind for e in lazy] == [e.kind for e in eager]
        assert await journal.read("unknown") == []
        assert len(await journal.read_lazily("unknown")) == 0
