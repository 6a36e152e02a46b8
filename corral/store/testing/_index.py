"""The conformance suite, part 2: the run index (`corral.store.RunIndex`)."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from ...errors import GateExpired, UsageError
from ...events import WaitResolved
from .._contract import Journal
from . import _events as ev
from ._events import T0

__all__ = ["RunIndexContract"]


@pytest.mark.asyncio
class RunIndexContract:
    """The run index: status, listing runs, gates and their decisions, waits and deliveries.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    # -- the run index --------------------------------------------------------------------------

    async def test_a_run_waits_at_a_gate_or_a_wait_and_finishes_once(
        self, journal: Journal
    ) -> None:
        """Status: running, waiting at a gate, running, waiting for an event, running, finished."""
        assert await journal.run("r1") is None
        statuses = []
        for event in (
            ev.started("r1"),
            ev.gate_opened("r1"),
            ev.decision("r1"),
            ev.wait_started("r1", "pay:1"),
            ev.resolved("r1", "pay:1"),
            ev.finished("r1"),
        ):
            await journal.append(event)
            info = await journal.run("r1")
            assert info is not None
            statuses.append(info.status)
        assert statuses == ["running", "waiting", "running", "waiting", "running", "finished"]
        info = await journal.run("r1")
        assert info is not None
        assert (info.run_id, info.agent, info.tenant, info.task) == (
            "r1",
            "billing",
            "acme",
            "task of r1",
        )
        assert info.outcome == "completed"
        assert (info.created_at, info.updated_at) == (T0, T0 + 9)

    async def test_a_run_waits_until_every_gate_and_wait_is_resolved(
        self, journal: Journal
    ) -> None:
        """Deciding one of two gates, or the gates but not the wait, leaves the run waiting."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.gate_opened("r1", "g1"))
        await journal.append(ev.gate_opened("r1", "g2", ts=T0 + 2.5))
        assert await journal.decide_gate(ev.decision("r1", "g1"))
        assert await ev.status(journal, "r1") == "waiting"
        await journal.append(ev.wait_started("r1", "k"))
        assert await journal.decide_gate(ev.decision("r1", "g2", "rejected", ts=T0 + 4.5))
        assert await ev.status(journal, "r1") == "waiting"
        assert await journal.resolve_wait(ev.resolved("r1", "k"))
        assert await ev.status(journal, "r1") == "running"

    async def test_finished_is_final_and_updated_at_is_the_latest_time(
        self, journal: Journal
    ) -> None:
        """After ``run_finished`` a run stays finished; an older ``ts`` never moves time back."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.proposed("r1", ts=T0 + 5))
        await journal.append(ev.proposed("r1", "late", ts=T0 + 2))
        info = await journal.run("r1")
        assert info is not None and info.updated_at == T0 + 5
        await journal.append(ev.finished("r1", ts=T0 + 6))
        await journal.append(ev.gate_opened("r1", ts=T0 + 7))
        info = await journal.run("r1")
        assert info is not None and info.status == "finished" and info.updated_at == T0 + 7

    async def test_runs_are_listed_newest_first_with_filters(self, journal: Journal) -> None:
        """`runs` filters by status, agents and time of the latest event, and limits."""
        await journal.append(ev.started("a", ts=T0))
        await journal.append(ev.started("b", ts=T0 + 10, agent="support"))
        await journal.append(ev.gate_opened("b", ts=T0 + 11))
        await journal.append(ev.started("c", ts=T0 + 20))
        await journal.append(ev.finished("c", ts=T0 + 30))

        async def ids(**filters: Any) -> list[str]:
            return [info.run_id for info in await journal.runs(**filters)]

        assert await ids() == ["c", "b", "a"]
        assert await ids(status="finished") == ["c"]
        assert await ids(status="waiting") == ["b"]
        assert await ids(status="running") == ["a"]
        assert await ids(agents=["billing"]) == ["c", "a"]
        assert await ids(agents={"support", "billing"}, status="waiting") == ["b"]
        assert await ids(agents=[]) == []
        assert await ids(updated_since=T0 + 11) == ["c", "b"]  # at the instant counts
        assert await ids(updated_since=T0 + 11.5) == ["c"]
        assert await ids(limit=2) == ["c", "b"]
        assert await ids(limit=None) == ["c", "b", "a"]
        await journal.append(ev.started("d", ts=T0 + 40))
        await journal.append(ev.started("e", ts=T0 + 40))
        assert await ids(limit=2) == ["e", "d"]  # same time: the one created later first
        (info,) = await journal.runs(status="finished")
        assert (info.agent, info.tenant, info.outcome, info.task) == (
            "billing",
            "acme",
            "completed",
            "task of c",
        )

    async def test_runs_filter_by_tenant_outcome_and_creation_time(self, journal: Journal) -> None:
        """`runs` filters by tenant, outcome, and a half-open window of creation times."""
        await journal.append(ev.started("a", ts=T0))
        await journal.append(ev.finished("a", ts=T0 + 1, outcome="stopped_budget"))
        await journal.append(ev.started("b", ts=T0 + 10, tenant="globex"))
        await journal.append(ev.finished("b", ts=T0 + 11))
        await journal.append(ev.started("c", ts=T0 + 20))

        async def ids(**filters: Any) -> list[str]:
            return [info.run_id for info in await journal.runs(**filters)]

        assert await ids(tenant="acme") == ["c", "a"]
        assert await ids(tenant="globex") == ["b"]
        assert await ids(tenant="initech") == []
        assert await ids(outcome="completed") == ["b"]
        assert await ids(outcome="stopped_budget", tenant="acme") == ["a"]
        assert await ids(created_after=T0 + 10) == ["c", "b"]  # at the instant counts
        assert await ids(created_before=T0 + 10) == ["a"]  # the end is excluded
        assert await ids(created_after=T0 + 5, created_before=T0 + 15) == ["b"]

    async def test_runs_page_with_a_cursor_in_listing_order(self, journal: Journal) -> None:
        """``after=`` continues after a run id, ties on ``created_at`` included; no repeats."""
        for run_id, ts in (("a", T0), ("b", T0 + 5), ("c", T0 + 5), ("d", T0 + 5), ("e", T0 + 9)):
            await journal.append(ev.started(run_id, ts=ts))
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = [i.run_id for i in await journal.runs(limit=2, after=cursor)]
            if not page:
                break
            pages.append(page)
            cursor = page[-1]
        assert pages == [["e", "d"], ["c", "b"], ["a"]]
        assert [i.run_id for i in await journal.runs(after="c", status="running")] == ["b", "a"]
        assert await journal.runs(after="no-such-run") == []

    async def test_unfinished_runs_are_listed_oldest_first(self, journal: Journal) -> None:
        """Running and waiting runs, not finished ones, oldest first."""
        await journal.append(ev.started("b", ts=T0 + 1))
        await journal.append(ev.started("a", ts=T0))
        await journal.append(ev.started("c", ts=T0 + 2))
        await journal.append(ev.gate_opened("c", ts=T0 + 3))
        await journal.append(ev.started("d", ts=T0 + 3))
        await journal.append(ev.finished("d", ts=T0 + 4))
        assert await journal.unfinished_runs() == ["a", "b", "c"]

    # -- gates ----------------------------------------------------------------------------------

    async def test_gates_are_listed_oldest_first_by_status_and_run(self, journal: Journal) -> None:
        """`gates` lists open ones by default; `status=None` lists all; `run_id` narrows."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.started("r2"))
        opened = await journal.append(ev.gate_opened("r1", "g1", ts=T0 + 2))
        await journal.append(ev.gate_opened("r2", "g2", ts=T0 + 3))
        await journal.append(ev.gate_opened("r1", "g3", ts=T0 + 4))
        assert await journal.decide_gate(ev.decision("r1", "g1", ts=T0 + 5))

        async def ids(**filters: Any) -> list[str]:
            return [g.opened.gate_id for g in await journal.gates(**filters)]

        assert await ids() == ["g2", "g3"]
        assert await ids(status="approved") == ["g1"]
        assert await ids(status="rejected") == []
        assert await ids(status=None) == ["g1", "g2", "g3"]
        assert await ids(status=None, run_id="r1") == ["g1", "g3"]
        assert await ids(run_id="r2") == ["g2"]
        record = await journal.gate("g1")
        assert record is not None
        assert record.run_id == "r1" and record.status == "approved"
        assert record.opened == opened
        assert record.decided is not None and record.decided.by == "ana"
        assert record.decided.seq == 4  # r1: started, g1, g3, the decision
        assert await journal.gate("nope") is None

    async def test_a_gate_is_decided_once_only(self, journal: Journal) -> None:
        """The first decision wins; later ones and unknown gates return False and append nothing."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.gate_opened("r1"))
        first = ev.decision("r1", by="ana")
        assert await journal.decide_gate(first)
        assert first.seq == 0  # the argument is not changed
        assert not await journal.decide_gate(ev.decision("r1", "g1", "rejected", by="bo"))
        assert not await journal.decide_gate(ev.decision("r1", "nope"))
        events = await journal.read("r1")
        assert [e.kind for e in events] == ["run_started", "gate_opened", "gate_decided"]
        assert events[-1] == first.model_copy(update={"seq": 3})
        record = await journal.gate("g1")
        assert record is not None and record.status == "approved" and record.decided == events[-1]

    async def test_a_decision_at_or_after_the_deadline_is_refused(self, journal: Journal) -> None:
        """An approval or rejection at ``expires_at`` or later raises; an expiry may come later."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.gate_opened("r1", "g1", expires_at=T0 + 100))
        late: list[tuple[float, Literal["approved", "rejected"]]] = [
            (T0 + 100, "approved"),
            (T0 + 150, "rejected"),
        ]
        for ts, decision in late:
            with pytest.raises(GateExpired) as caught:
                await journal.decide_gate(ev.decision("r1", "g1", decision, ts=ts))
            assert (caught.value.gate_id, caught.value.run_id) == ("g1", "r1")
            assert caught.value.expires_at == T0 + 100
        record = await journal.gate("g1")
        assert record is not None and record.status == "open"
        assert len(await journal.read("r1")) == 2
        assert await journal.decide_gate(ev.decision("r1", "g1", "expired", ts=T0 + 150, by=""))
        await journal.append(ev.gate_opened("r1", "g2", ts=T0 + 151, expires_at=T0 + 200))
        assert await journal.decide_gate(ev.decision("r1", "g2", ts=T0 + 199.5))

    async def test_a_decision_naming_another_run_is_refused(self, journal: Journal) -> None:
        """A decision must name the gate's own run."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.started("r2"))
        await journal.append(ev.gate_opened("r1"))
        with pytest.raises(UsageError):
            await journal.decide_gate(ev.decision("r2", "g1"))
        record = await journal.gate("g1")
        assert record is not None and record.status == "open"

    # -- waits and deliveries -------------------------------------------------------------------

    async def test_a_delivery_before_its_wait_is_kept_and_the_first_payload_wins(
        self, journal: Journal
    ) -> None:
        """Kept until the wait on its key is resolved; taking it does not use it up."""
        assert await journal.take_delivery("pay:1") == (False, None)
        assert await journal.deliver("pay:1", {"n": 1, "items": [1, 2]}, now=T0) is None
        assert await journal.deliver("pay:1", {"n": 2}, now=T0 + 1) is None
        assert await journal.take_delivery("pay:1") == (True, {"n": 1, "items": [1, 2]})
        assert await journal.take_delivery("pay:1") == (True, {"n": 1, "items": [1, 2]})
        await journal.append(ev.started("r1"))
        await journal.append(ev.wait_started("r1", "pay:1"))
        assert await journal.take_delivery("pay:1") == (True, {"n": 1, "items": [1, 2]})
        assert await journal.resolve_wait(ev.resolved("r1", "pay:1", {"n": 1, "items": [1, 2]}))
        assert await journal.take_delivery("pay:1") == (False, None)
        assert await ev.status(journal, "r1") == "running"

    async def test_a_delivery_to_a_waiting_run_resolves_its_wait_once(
        self, journal: Journal
    ) -> None:
        """The run's ``wait_resolved`` carries the payload; a second delivery does nothing."""
        await journal.append(ev.started("r1"))
        started = await journal.append(ev.wait_started("r1", "pay:1"))
        assert [(w.run_id, w.started) for w in await journal.waits()] == [("r1", started)]
        assert await ev.status(journal, "r1") == "waiting"
        assert await journal.deliver("pay:1", {"ok": True}, now=T0 + 10) == "r1"
        events = await journal.read("r1")
        resolved = events[-1]
        assert isinstance(resolved, WaitResolved)
        assert (resolved.seq, resolved.ts, resolved.key) == (3, T0 + 10, "pay:1")
        assert (resolved.call_id, resolved.tool) == ("call-pay:1", "await_payment")
        assert resolved.payload == {"ok": True} and not resolved.timed_out
        assert await ev.status(journal, "r1") == "running"
        assert await journal.waits() == []
        assert await journal.deliver("pay:1", {"ok": False}, now=T0 + 11) is None
        assert len(await journal.read("r1")) == 3
        assert await journal.take_delivery("pay:1") == (False, None)

    async def test_a_wait_over_a_kept_delivery_is_resolved_with_the_first_payload(
        self, journal: Journal
    ) -> None:
        """A run that started waiting after a delivery (and stopped) gets the first payload."""
        assert await journal.deliver("pay:1", "first", now=T0) is None
        await journal.append(ev.started("r1"))
        await journal.append(ev.wait_started("r1", "pay:1"))
        assert await journal.deliver("pay:1", "second", now=T0 + 10) == "r1"
        resolved = (await journal.read("r1"))[-1]
        assert isinstance(resolved, WaitResolved) and resolved.payload == "first"

    async def test_a_payload_that_is_not_json_is_refused(self, journal: Journal) -> None:
        """Deliveries are JSON data."""
        with pytest.raises(UsageError):
            await journal.deliver("pay:1", object(), now=T0)
        assert await journal.take_delivery("pay:1") == (False, None)

    async def test_a_wait_is_resolved_once_only_and_only_by_its_run(self, journal: Journal) -> None:
        """`resolve_wait` appends only while the run's wait on the key is open."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.started("r2"))
        await journal.append(ev.wait_started("r1", "k"))
        assert not await journal.resolve_wait(ev.resolved("r2", "k"))
        assert not await journal.resolve_wait(ev.resolved("r1", "other"))
        resolution = ev.resolved("r1", "k", {"x": 1})
        assert await journal.resolve_wait(resolution)
        assert resolution.seq == 0  # the argument is not changed
        assert not await journal.resolve_wait(ev.resolved("r1", "k", {"x": 2}))
        events = await journal.read("r1")
        assert [e.kind for e in events] == ["run_started", "wait_started", "wait_resolved"]
        assert events[-1] == resolution.model_copy(update={"seq": 3})
        assert ev.seqs(await journal.read("r2")) == [1]  # the refused resolution left no trace

    async def test_waits_are_listed_oldest_first_until_resolved(self, journal: Journal) -> None:
        """`waits` lists the open waits of every run."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.started("r2"))
        await journal.append(ev.wait_started("r2", "k2", ts=T0 + 4))
        await journal.append(ev.wait_started("r1", "k1", ts=T0 + 5))
        assert [w.started.key for w in await journal.waits()] == ["k2", "k1"]
        assert await journal.resolve_wait(ev.resolved("r2", "k2"))
        assert [(w.run_id, w.started.key) for w in await journal.waits()] == [("r1", "k1")]
