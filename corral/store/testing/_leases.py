"""The conformance suite, part 3: leases, timers and expiry (`corral.store.Leases`)."""

from __future__ import annotations

import pytest

from .._contract import Journal
from . import _events as ev
from ._events import T0

__all__ = ["LeasesContract"]


@pytest.mark.asyncio
class LeasesContract:
    """Leases, timers and the batched expiry of gates and waits.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    # -- leases ---------------------------------------------------------------------------------

    async def test_a_live_lease_of_another_owner_is_refused_and_an_expired_one_taken(
        self, journal: Journal
    ) -> None:
        """A lease ends at ``lease_until``: from that instant another owner may claim."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert not await journal.claim("r1", "B", lease_s=10, now=T0 + 5)
        assert not await journal.claim("r1", "B", lease_s=10, now=T0 + 9.9)
        assert await journal.claim("r1", "B", lease_s=10, now=T0 + 10)
        info = await journal.run("r1")
        assert info is not None and (info.owner, info.lease_until) == ("B", T0 + 20)
        assert not await journal.claim("r1", "A", lease_s=10, now=T0 + 15)

    async def test_claiming_again_renews_the_owners_own_lease(self, journal: Journal) -> None:
        """An owner's claim on its own run extends the lease."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert await journal.claim("r1", "A", lease_s=10, now=T0 + 8)
        assert not await journal.claim("r1", "B", lease_s=10, now=T0 + 12)
        assert await journal.claim("r1", "B", lease_s=10, now=T0 + 18)

    async def test_finished_and_unknown_runs_cannot_be_claimed(self, journal: Journal) -> None:
        """Only unfinished runs have leases."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.finished("r1"))
        assert not await journal.claim("r1", "A", lease_s=10, now=T0)
        assert not await journal.claim("nope", "A", lease_s=10, now=T0)
        assert await journal.claim_many(["r1", "nope"], "A", lease_s=10, now=T0) == []

    async def test_a_run_started_without_waiting_can_be_claimed_at_once(
        self, journal: Journal
    ) -> None:
        """A claim right after a ``wait=False`` start sees the run (and makes it durable)."""
        await journal.append(ev.started("r1"), wait=False)
        await journal.append(ev.proposed("r1"), wait=False)
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert ev.seqs(await journal.read("r1")) == [1, 2]
        assert not await journal.claim("r1", "B", lease_s=10, now=T0 + 1)

    async def test_claim_many_takes_what_claim_would_in_the_order_given(
        self, journal: Journal
    ) -> None:
        """Free, expired and own leases are taken; another owner's live lease is not."""
        for run_id in ("a", "b", "c", "d"):
            await journal.append(ev.started(run_id))
        assert await journal.claim("b", "B", lease_s=10, now=T0)
        assert await journal.claim("d", "B", lease_s=1, now=T0)
        assert await journal.claim("c", "A", lease_s=10, now=T0)
        got = await journal.claim_many(["d", "c", "b", "a", "nope"], "A", lease_s=10, now=T0 + 5)
        assert got == ["d", "c", "a"]
        assert await journal.claim_many([], "A", lease_s=10, now=T0) == []
        info = await journal.run("d")
        assert info is not None and (info.owner, info.lease_until) == ("A", T0 + 15)

    async def test_claim_runs_takes_only_ready_runs_oldest_first(self, journal: Journal) -> None:
        """Not waiting, not finished, no timer pending, no other owner's live lease."""
        await journal.append(ev.started("waiting", ts=T0))
        await journal.append(ev.gate_opened("waiting", ts=T0 + 1))
        await journal.append(ev.started("b", ts=T0 + 2))
        await journal.append(ev.started("finished", ts=T0 + 3))
        await journal.append(ev.finished("finished", ts=T0 + 4))
        await journal.append(ev.started("sleeping", ts=T0 + 4))
        assert await journal.set_wake("sleeping", T0 + 50)
        await journal.append(ev.started("held", ts=T0 + 5))
        assert await journal.claim("held", "B", lease_s=30, now=T0)
        await journal.append(ev.started("a", ts=T0 + 1))
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 10) == ["a", "b"]
        info = await journal.run("a")
        assert info is not None and (info.owner, info.lease_until) == ("A", T0 + 40)

    async def test_claim_runs_keeps_to_agents_exclude_and_limit(self, journal: Journal) -> None:
        """Only the agents given, never the runs excluded, at most `limit`."""
        await journal.append(ev.started("a", ts=T0))
        await journal.append(ev.started("s", ts=T0 + 1, agent="support"))
        await journal.append(ev.started("b", ts=T0 + 2))
        await journal.append(ev.started("c", ts=T0 + 3))
        assert await journal.claim_runs("A", lease_s=30, now=T0, agents=["support"]) == ["s"]
        assert await journal.claim_runs("A", lease_s=30, now=T0, agents=[]) == []
        got = await journal.claim_runs("A", lease_s=30, now=T0, agents={"billing"}, exclude={"b"})
        assert got == ["a", "c"]
        assert await journal.claim_runs("A", lease_s=30, now=T0, limit=2) == ["a", "s"]
        assert await journal.claim_runs("A", lease_s=30, now=T0, exclude=["a", "s"], limit=1) == [
            "b"
        ]
        info = await journal.run("b")
        assert info is not None and info.owner == "A"

    async def test_claim_runs_takes_a_due_timer_an_expired_lease_and_its_own_runs(
        self, journal: Journal
    ) -> None:
        """A timer at `now` is due; a lease ending at `now` is over; an owner's runs come back."""
        await journal.append(ev.started("sleeping", ts=T0))
        assert await journal.set_wake("sleeping", T0 + 50)
        await journal.append(ev.started("held", ts=T0 + 1))
        assert await journal.claim("held", "B", lease_s=50, now=T0)
        await journal.append(ev.started("mine", ts=T0 + 2))
        assert await journal.claim("mine", "A", lease_s=500, now=T0)
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 49) == ["mine"]
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 50) == [
            "sleeping",
            "held",
            "mine",
        ]
        assert not await journal.claim("held", "B", lease_s=30, now=T0 + 51)

    async def _queue_of_three_tenants(self, journal: Journal) -> None:
        """``big`` queues 4 runs, ``mid`` 3, ``small`` 1; appended out of age order."""
        queued = [  # (run, tenant, age): b3 and s1 are as old, b3 started first
            ("m3", "mid", 6),
            ("b2", "big", 3),
            ("b1", "big", 0),
            ("m1", "mid", 1),
            ("b3", "big", 4),
            ("s1", "small", 4),
            ("m2", "mid", 2),
            ("b4", "big", 5),
        ]
        for run_id, tenant, age in queued:
            await journal.append(ev.started(run_id, ts=T0 + age, tenant=tenant))

    async def test_a_fair_claim_takes_the_runs_round_robin_by_tenant(
        self, journal: Journal
    ) -> None:
        """Each tenant's oldest run, then each one's second-oldest...; each round by age."""
        await self._queue_of_three_tenants(journal)
        got = await journal.claim_runs("A", lease_s=30, now=T0 + 10, fair=True)
        assert got == ["b1", "m1", "s1", "m2", "b2", "b3", "m3", "b4"]
        for run_id in got:
            info = await journal.run(run_id)
            assert info is not None and (info.owner, info.lease_until) == ("A", T0 + 40)
        assert await journal.claim_runs("B", lease_s=30, now=T0 + 10, fair=True) == []

    async def test_an_unfair_claim_still_takes_the_oldest_first(self, journal: Journal) -> None:
        """Without `fair` (or with ``fair=False``), one tenant's backlog comes first."""
        await self._queue_of_three_tenants(journal)
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 10, limit=3) == [
            "b1",
            "m1",
            "m2",
        ]
        got = await journal.claim_runs("B", lease_s=30, now=T0 + 10, fair=False)
        assert got == ["b2", "b3", "s1", "b4", "m3"]

    async def test_a_fair_claim_cut_by_limit_ranks_what_is_left_next_time(
        self, journal: Journal
    ) -> None:
        """`limit` cuts a round short; the next claim ranks what is left after what is held."""
        await self._queue_of_three_tenants(journal)
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 10, limit=4, fair=True) == [
            "b1",
            "m1",
            "s1",
            "m2",
        ]
        # Left: big b2, b3, b4 and mid m3. A drives 1 of big's and 2 of mid's: b2 evens
        # them, then b3 is older than m3.
        got = await journal.claim_runs("B", lease_s=30, now=T0 + 10, limit=3, fair=True)
        assert got == ["b2", "b3", "m3"]
        assert await journal.claim_runs("C", lease_s=30, now=T0 + 10, limit=1, fair=True) == ["b4"]

    async def test_a_fair_claim_ranks_only_the_runs_it_may_take(self, journal: Journal) -> None:
        """Runs of other agents, excluded (unleased), waiting or sleeping take no turn."""
        await journal.append(ev.started("x", ts=T0, agent="support", tenant="small"))
        await journal.append(ev.started("held", ts=T0, tenant="big"))
        assert await journal.claim("held", "B", lease_s=30, now=T0)
        await journal.append(ev.started("gated", ts=T0, tenant="mid"))
        await journal.append(ev.gate_opened("gated", ts=T0 + 1))
        await journal.append(ev.started("sleeping", ts=T0, tenant="mid"))
        assert await journal.set_wake("sleeping", T0 + 50)
        for run_id, tenant, age in [
            ("b1", "big", 1),
            ("b2", "big", 2),
            ("b3", "big", 3),
            ("m1", "mid", 4),
            ("m2", "mid", 5),
            ("s1", "small", 6),
        ]:
            await journal.append(ev.started(run_id, ts=T0 + age, tenant=tenant))
        got = await journal.claim_runs(
            "A", lease_s=100, now=T0 + 10, agents={"billing"}, exclude={"b1", "m1"}, fair=True
        )
        assert got == ["m2", "s1", "b2", "b3"]  # B drives "held": big's first turn
        assert await journal.claim_runs("A", lease_s=100, now=T0 + 10, agents=[], fair=True) == []
        got = await journal.claim_runs("A", lease_s=100, now=T0 + 10, agents=["support"], fair=True)
        assert got == ["x"]
        # At T0 + 50 the timer is due and B's lease on "held" is over; A's still hold:
        # 2 of big's, 1 of mid's.
        got = await journal.claim_runs("C", lease_s=30, now=T0 + 50, exclude={"b1"}, fair=True)
        assert got == ["sleeping", "held", "m1"]

    async def test_a_fair_claim_counts_the_runs_a_tenant_already_has_in_flight(
        self, journal: Journal
    ) -> None:
        """Another owner's live leases, and the claimer's own on runs it excludes, are turns.

        A worker with room for one run at a time still shares it: the tenant with runs
        being driven waits for one that has none, however old its backlog.
        """
        for i in range(4):
            await journal.append(ev.started(f"b{i}", ts=T0 + i, tenant="big"))
        await journal.append(ev.started("s0", ts=T0 + 10, tenant="small"))
        await journal.append(ev.started("s1", ts=T0 + 11, tenant="small"))
        assert await journal.claim_many(["b0", "b1"], "A", lease_s=30, now=T0) == ["b0", "b1"]
        mine = {"b0", "b1"}
        assert await journal.claim_runs(
            "A", lease_s=30, now=T0 + 20, limit=1, exclude=mine, fair=True
        ) == ["s0"]
        assert await journal.claim_runs("A", lease_s=30, now=T0 + 20, limit=1, exclude=mine) == [
            "b2"
        ]
        # B sees A's live leases on b0, b1, b2 and s0: small has fewer in flight.
        assert await journal.claim_runs("B", lease_s=30, now=T0 + 20, limit=1, fair=True) == ["s1"]
        # Once A's leases run out they are no one's turns: they are ready again, by age.
        assert await journal.claim_runs("C", lease_s=30, now=T0 + 50, limit=2, fair=True) == [
            "b0",
            "s0",
        ]

    async def test_renewal_extends_only_leases_still_held_and_never_claims(
        self, journal: Journal
    ) -> None:
        """Released, taken-over and other owners' runs are left alone; the count says so."""
        for run_id in ("a", "b", "c", "d"):
            await journal.append(ev.started(run_id))
        for run_id in ("a", "b", "d"):
            assert await journal.claim(run_id, "A", lease_s=10, now=T0)
        assert await journal.claim("c", "B", lease_s=10, now=T0)
        await journal.release("b", "A")
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 5) == 2  # a and d
        assert not await journal.claim("a", "B", lease_s=10, now=T0 + 12)  # renewed to +15
        assert await journal.claim("b", "B", lease_s=10, now=T0 + 5)  # free: not re-claimed
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 6, run_ids=["c", "b"]) == 0
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 6, run_ids=[]) == 0
        assert await journal.renew_leases("A", lease_s=20, now=T0 + 6, run_ids=["d"]) == 1
        assert await journal.claim("a", "B", lease_s=10, now=T0 + 15)  # a's lease ran out
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 16) == 1  # d only
        info = await journal.run("d")
        assert info is not None and (info.owner, info.lease_until) == ("A", T0 + 26)
        info = await journal.run("a")
        assert info is not None and info.owner == "B"

    async def test_release_frees_the_run_only_for_its_owner(self, journal: Journal) -> None:
        """Another owner's release does nothing; the owner's lets anyone claim at once."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        await journal.release("r1", "B")
        assert not await journal.claim("r1", "B", lease_s=10, now=T0 + 1)
        await journal.release("r1", "A")
        info = await journal.run("r1")
        assert info is not None and info.owner is None and info.lease_until is None
        assert await journal.claim("r1", "B", lease_s=10, now=T0 + 1)

    async def test_finishing_a_run_ends_its_lease_and_its_timer(self, journal: Journal) -> None:
        """``run_finished`` clears the owner, the lease and the timer."""
        await journal.append(ev.started("r1"))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert await journal.set_wake("r1", T0 + 5)
        await journal.append(ev.finished("r1"))
        info = await journal.run("r1")
        assert info is not None
        assert (info.owner, info.lease_until, info.wake_at) == (None, None, None)
        assert await journal.due_runs(T0 + 100) == []
        assert await journal.renew_leases("A", lease_s=10, now=T0 + 1) == 0

    # -- timers and expiry ----------------------------------------------------------------------

    async def test_timers_come_due_earliest_first(self, journal: Journal) -> None:
        """`set_wake` sets or clears a timer; `due_runs` lists those due at `now`."""
        for run_id in ("a", "b", "c"):
            await journal.append(ev.started(run_id))
        assert await journal.set_wake("a", T0 + 30)
        assert await journal.set_wake("b", T0 + 10)
        assert await journal.set_wake("c", T0 + 20)
        assert not await journal.set_wake("nope", T0)
        info = await journal.run("a")
        assert info is not None and info.wake_at == T0 + 30
        assert await journal.due_runs(T0 + 5) == []
        assert await journal.due_runs(T0 + 20) == ["b", "c"]
        assert await journal.due_runs(T0 + 40, limit=2) == ["b", "c"]
        assert await journal.set_wake("b", None)
        assert await journal.due_runs(T0 + 40) == ["c", "a"]
        await journal.append(ev.finished("c"))
        assert not await journal.set_wake("c", T0)
        assert await journal.due_runs(T0 + 40) == ["a"]

    async def test_overdue_gates_expire_once(self, journal: Journal) -> None:
        """Each open gate at or past its deadline gets one ``expired`` decision at `now`."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.gate_opened("r1", "g1", expires_at=T0 + 50))
        await journal.append(ev.started("r2"))
        await journal.append(ev.gate_opened("r2", "g2", expires_at=T0 + 100))
        await journal.append(ev.started("r3"))
        await journal.append(ev.gate_opened("r3", "g3", expires_at=T0 + 50))
        assert await journal.decide_gate(ev.decision("r3", "g3"))
        assert await journal.expire_gates(T0 + 49) == []
        (record,) = await journal.expire_gates(T0 + 50, note="no decision within 1 h")
        assert record.run_id == "r1" and record.opened.gate_id == "g1"
        decided = record.decided
        assert decided is not None
        assert (decided.decision, decided.ts) == ("expired", T0 + 50)
        assert decided.note == "no decision within 1 h"
        assert decided.seq == 3 and (await journal.read("r1"))[-1] == decided
        assert await journal.gate("g1") == record
        assert await ev.status(journal, "r1") == "running"
        assert await journal.expire_gates(T0 + 60) == []
        assert not await journal.decide_gate(ev.decision("r1", "g1", "expired", ts=T0 + 60))
        assert [g.opened.gate_id for g in await journal.expire_gates(T0 + 100)] == ["g2"]
        assert [e.kind for e in await journal.read("r3")][-1] == "gate_decided"
        assert len(await journal.read("r3")) == 3

    async def test_overdue_waits_time_out_once(self, journal: Journal) -> None:
        """Each open wait at or past its deadline gets one timed-out ``wait_resolved`` at `now`."""
        await journal.append(ev.started("r1"))
        await journal.append(ev.wait_started("r1", "k1", expires_at=T0 + 50))
        await journal.append(ev.started("r2"))
        await journal.append(ev.wait_started("r2", "k2", expires_at=T0 + 100))
        assert await journal.expire_waits(T0 + 49) == []
        (resolved,) = await journal.expire_waits(T0 + 50)
        assert (resolved.run_id, resolved.key, resolved.ts) == ("r1", "k1", T0 + 50)
        assert resolved.timed_out and resolved.payload is None
        assert (resolved.call_id, resolved.tool) == ("call-k1", "await_payment")
        assert resolved.seq == 3 and (await journal.read("r1"))[-1] == resolved
        assert await ev.status(journal, "r1") == "running"
        assert await journal.expire_waits(T0 + 60) == []
        assert await journal.deliver("k1", {"late": True}, now=T0 + 61) is None
        assert len(await journal.read("r1")) == 3
        assert [w.key for w in await journal.expire_waits(T0 + 100)] == ["k2"]

    # -- cancellation requests ------------------------------------------------------------------

    async def test_a_cancellation_asked_of_a_runs_holder_is_kept_until_the_run_ends(
        self, journal: Journal
    ) -> None:
        """Any process may ask; the latest reason stands; a finished run has none."""
        for run_id in ("r1", "r2"):
            await journal.append(ev.started(run_id))
        assert await journal.claim("r1", "A", lease_s=10, now=T0)
        assert await journal.cancel_requests(["r1", "r2", "nope"]) == {}
        assert await journal.request_cancel("r1", "stop: wrong customer", now=T0 + 1)
        assert await journal.request_cancel("r1", "stop: the customer called", now=T0 + 2)
        assert await journal.cancel_requests(["r1", "r2"]) == {"r1": "stop: the customer called"}
        assert await journal.cancel_requests([]) == {}
        info = await journal.run("r1")
        assert info is not None and info.owner == "A"  # asking does not touch the lease
        await journal.append(ev.finished("r1"))
        assert await journal.cancel_requests(["r1"]) == {}
        assert not await journal.request_cancel("r1", "too late", now=T0 + 10)
        assert not await journal.request_cancel("nope", "unknown", now=T0 + 10)
        assert ev.seqs(await journal.read("r1")) == [1, 2]  # the log is the holder's alone
