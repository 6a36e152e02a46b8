"""The conformance suite, part 4: blobs, breaker states, retention and closing."""

from __future__ import annotations

import hashlib

import pytest

from ...errors import UsageError
from .._contract import Journal
from . import _events as ev
from ._events import T0

__all__ = ["UpkeepContract"]


@pytest.mark.asyncio
class UpkeepContract:
    """Blobs (`corral.store.Blobs`), `corral.store.Upkeep`, and ``close``.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    # -- blobs ----------------------------------------------------------------------------------

    async def test_blobs_are_stored_once_by_content(self, journal: Journal) -> None:
        """`put_blob` returns the SHA-256 hex digest; the same bytes give the same blob."""
        data = bytes(range(256)) * 40
        digest = await journal.put_blob(data)
        assert digest == hashlib.sha256(data).hexdigest()
        assert await journal.put_blob(data) == digest
        assert await journal.get_blob(digest) == data
        empty = await journal.put_blob(b"")
        assert await journal.get_blob(empty) == b""
        assert await journal.get_blob(hashlib.sha256(b"never stored").hexdigest()) is None

    # -- breakers and retention -----------------------------------------------------------------

    async def test_breaker_states_are_replaced_not_merged(self, journal: Journal) -> None:
        """Each save replaces every saved state; states are JSON data."""
        assert await journal.load_breakers() == {}
        first = {"lookup": {"state": "open", "failures": 3, "opened_at": T0}, "refund": {}}
        await journal.save_breakers(first)
        assert await journal.load_breakers() == first
        await journal.save_breakers({"refund": {"state": "half_open", "failures": 1}})
        assert await journal.load_breakers() == {"refund": {"state": "half_open", "failures": 1}}
        with pytest.raises(UsageError):
            await journal.save_breakers({"lookup": {"when": object()}})
        await journal.save_breakers({})
        assert await journal.load_breakers() == {}

    async def test_prune_deletes_only_finished_runs_older_than_the_cutoff(
        self, journal: Journal
    ) -> None:
        """Finished before the cutoff: gone with its events and gates. Unfinished: never."""
        await journal.append(ev.started("old"))
        await journal.append(ev.gate_opened("old", "g-old"))
        await journal.append(ev.decision("old", "g-old"))
        await journal.append(ev.finished("old", ts=T0 + 9))
        await journal.append(ev.started("edge"))
        await journal.append(ev.finished("edge", ts=T0 + 100))  # at the cutoff: kept
        await journal.append(ev.started("recent"))
        await journal.append(ev.finished("recent", ts=T0 + 500))
        await journal.append(ev.started("stuck"))
        await journal.append(ev.gate_opened("stuck", "g-stuck"))
        await journal.append(ev.started("idle"))
        assert await journal.prune(older_than_s=100, now=T0 + 200) == 1
        assert await journal.read("old") == []
        assert await journal.run("old") is None
        assert await journal.gate("g-old") is None
        assert [g.opened.gate_id for g in await journal.gates(status=None)] == ["g-stuck"]
        assert sorted(info.run_id for info in await journal.runs()) == [
            "edge",
            "idle",
            "recent",
            "stuck",
        ]
        assert await journal.prune(older_than_s=0, now=T0 + 10_000) == 2  # edge, recent
        assert sorted(await journal.unfinished_runs()) == ["idle", "stuck"]
        assert ev.seqs(await journal.read("stuck")) == [1, 2]
        assert await journal.prune(older_than_s=0, now=T0 + 10_000) == 0

    async def test_vacuum_keeps_everything_and_the_journal_goes_on(self, journal: Journal) -> None:
        """After `prune` and `vacuum`, what was kept reads the same and appends continue."""
        await journal.append(ev.started("gone"))
        await journal.append(ev.finished("gone"))
        await journal.append(ev.started("kept"))
        await journal.append(ev.proposed("kept"))
        before = await journal.read("kept")
        assert await journal.prune(older_than_s=0, now=T0 + 100) == 1
        await journal.vacuum()
        assert await journal.read("kept") == before
        assert (await journal.append(ev.proposed("kept", "c2"))).seq == 3

    async def test_close_refuses_appends_and_closing_twice_is_fine(self, journal: Journal) -> None:
        """After `close`, `append` raises `UsageError`; a second `close` does nothing."""
        await journal.append(ev.started("r1"))
        await journal.close()
        with pytest.raises(UsageError):
            await journal.append(ev.proposed("r1"))
        await journal.close()
