"""The conformance suite, part 7: tenants' daily budgets (`corral.store.TenantBudgets`).

A model call of a budgeted tenant holds its tokens and cost of the tenant's UTC day, and
gives the hold back with what it used. Holds live as long as their owner's lease on the
run: one whose owner stopped renewing counts as spent, whole. `SharedTenantBudgetsContract`
checks the same with two store objects on one database (two processes): together they
never grant more than the day holds.
"""

from __future__ import annotations

import anyio
import pytest

from .._contract import Journal, TenantAsk, TenantDenied, TenantHold, tenant_day
from . import _events as ev
from ._events import T0

__all__ = ["SharedTenantBudgetsContract", "TenantBudgetsContract"]

DAY = 86_400.0


def ask(
    tenant: str = "acme",
    *,
    run_id: str = "r1",
    owner: str = "A",
    input_tokens: int = 100,
    max_output: int = 400,
    min_output: int = 50,
    daily_tokens: int | None = 1_000,
    daily_cost_usd: float | None = None,
    input_cost: float = 0.0,
    output_price: float = 0.0,
) -> TenantAsk:
    """A model call's ask: 100 input tokens, up to 400 out, of a 1,000-token day."""
    return TenantAsk(
        tenant=tenant,
        run_id=run_id,
        owner=owner,
        input_tokens=input_tokens,
        input_cost_usd=input_cost,
        max_output=max_output,
        min_output=min_output,
        output_price=output_price,
        daily_tokens=daily_tokens,
        daily_cost_usd=daily_cost_usd,
    )


async def held(journal: Journal, request: TenantAsk, *, now: float = T0) -> TenantHold:
    """Reserve, and fail the test if refused."""
    hold = await journal.reserve_tenant(request, now=now, until=now + 30)
    assert isinstance(hold, TenantHold), hold
    return hold


@pytest.mark.asyncio
class TenantBudgetsContract:
    """Reservations, settlements, expiry with the lease, days, tenants apart, retention.

    Needs an async ``journal`` fixture: see `corral.store.testing`.
    """

    async def test_a_hold_grants_what_the_day_leaves_and_settling_counts_what_was_used(
        self, journal: Journal
    ) -> None:
        """The output is capped by the room left; a settlement frees the rest."""
        first = await held(journal, ask())
        assert (first.tokens, first.max_output, first.day) == (500, 400, tenant_day(T0))
        second = await held(journal, ask(run_id="r2"))  # 500 left: all of it
        assert (second.tokens, second.max_output) == (500, 400)
        spend = await journal.tenant_spend("acme", now=T0)
        assert (spend.tokens, spend.reserved) == (0, 1_000)
        assert await journal.settle_tenant(first, tokens=180, cost_usd=0.01)
        spend = await journal.tenant_spend("acme", now=T0 + 1)
        assert (spend.tokens, spend.reserved, spend.cost_usd) == (180, 500, 0.01)
        third = await held(journal, ask(run_id="r3"), now=T0 + 1)  # 320 left: 220 out
        assert (third.tokens, third.max_output) == (320, 220)
        assert not await journal.settle_tenant(
            TenantHold("nope", "acme", first.day, 5, 0, 1), tokens=5, cost_usd=0.0
        )

    async def test_a_call_the_day_has_no_room_for_is_refused_and_holds_nothing(
        self, journal: Journal
    ) -> None:
        """Fewer than ``min_output`` tokens left: refused, with the figures in the reason."""
        await held(journal, ask(input_tokens=500, max_output=460))
        refused = await journal.reserve_tenant(ask(run_id="r2"), now=T0 + 1, until=T0 + 31)
        assert isinstance(refused, TenantDenied)
        assert refused.reason == (
            "tenant 'acme' daily token budget reached: 0 used and 960 reserved of 1,000 today"
        )
        assert (await journal.tenant_spend("acme", now=T0 + 1)).reserved == 960

    async def test_a_cost_limit_caps_the_output_by_its_price(self, journal: Journal) -> None:
        """$1 a day, $0.20 of input, $0.002 per output token: at most 400 out."""
        request = ask(
            daily_tokens=None,
            daily_cost_usd=1.0,
            input_cost=0.2,
            output_price=0.002,
            max_output=1_000,
        )
        hold = await held(journal, request)
        assert hold.max_output == 400 and hold.cost_usd == pytest.approx(1.0)
        refused = await journal.reserve_tenant(request, now=T0, until=T0 + 30)
        assert isinstance(refused, TenantDenied)
        assert "tenant 'acme' daily cost budget reached" in refused.reason

    async def test_a_hold_whose_lease_lapsed_counts_as_spent_whole(self, journal: Journal) -> None:
        """Its process died mid-call: the next reservation counts it, settling is refused."""
        lost = await journal.reserve_tenant(ask(), now=T0, until=T0 + 10)
        assert isinstance(lost, TenantHold)
        spend = await journal.tenant_spend("acme", now=T0 + 10)
        assert (spend.tokens, spend.reserved) == (500, 0)
        later = await held(journal, ask(run_id="r2", owner="B"), now=T0 + 11)
        assert later.tokens == 500  # 500 left after the lapsed hold
        assert not await journal.settle_tenant(lost, tokens=10, cost_usd=0.0)
        spend = await journal.tenant_spend("acme", now=T0 + 11)
        assert (spend.tokens, spend.reserved) == (500, 500)

    async def test_renewing_a_lease_keeps_the_holds_made_for_that_run(
        self, journal: Journal
    ) -> None:
        """A's lease on r1 renewed: its hold lives on; its hold on r2 (taken over) lapses."""
        for run_id in ("r1", "r2"):
            await journal.append(ev.started(run_id))
            assert await journal.claim(run_id, "A", lease_s=10, now=T0)
        kept = await journal.reserve_tenant(ask(run_id="r1"), now=T0, until=T0 + 10)
        lapsed = await journal.reserve_tenant(ask(run_id="r2"), now=T0, until=T0 + 10)
        assert isinstance(kept, TenantHold) and isinstance(lapsed, TenantHold)
        assert await journal.renew_leases("A", lease_s=30, now=T0 + 5, run_ids=["r1"]) == 1
        assert await journal.claim("r2", "B", lease_s=30, now=T0 + 10)
        assert await journal.renew_leases("A", lease_s=30, now=T0 + 10) == 1  # r1 only
        spend = await journal.tenant_spend("acme", now=T0 + 20)
        assert (spend.tokens, spend.reserved) == (500, 500)
        assert await journal.settle_tenant(kept, tokens=300, cost_usd=0.0)
        assert (await journal.tenant_spend("acme", now=T0 + 20)).tokens == 800

    async def test_each_utc_day_and_each_tenant_has_its_own_budget(self, journal: Journal) -> None:
        """A new day starts empty; a hold settled after midnight counts on its own day."""
        yesterday = await held(journal, ask(input_tokens=400, max_output=500))
        other = await held(journal, ask("globex", input_tokens=400, max_output=500))
        assert other.tokens == 900
        tomorrow = T0 + DAY
        fresh = await held(journal, ask(input_tokens=400, max_output=500), now=tomorrow)
        assert fresh.tokens == 900 and fresh.day == tenant_day(tomorrow) != yesterday.day
        assert await journal.settle_tenant(yesterday, tokens=700, cost_usd=0.0)
        assert (await journal.tenant_spend("acme", now=T0)).tokens == 700
        today = await journal.tenant_spend("acme", now=tomorrow)
        assert (today.tokens, today.reserved) == (0, 900)

    async def test_retention_drops_the_days_before_the_cutoff(self, journal: Journal) -> None:
        """`prune` forgets old days (and their holds), keeps the cutoff's own day."""
        old = await held(journal, ask())
        assert await journal.settle_tenant(old, tokens=100, cost_usd=0.0)
        await held(journal, ask(run_id="r2"))
        now = T0 + 10 * DAY
        recent = await held(journal, ask(), now=now - DAY)
        assert await journal.settle_tenant(recent, tokens=50, cost_usd=0.0)
        await journal.prune(older_than_s=5 * DAY, now=now)
        gone = await journal.tenant_spend("acme", now=T0)
        assert (gone.tokens, gone.reserved) == (0, 0)
        assert (await journal.tenant_spend("acme", now=now - DAY)).tokens == 50


@pytest.mark.asyncio
class SharedTenantBudgetsContract:
    """Two processes reserving of one tenant's day never grant more than it holds.

    Needs ``journal`` and ``second_journal`` (another store object on the same
    database), as `corral.store.testing.FencingContract` does.
    """

    async def test_two_processes_reserving_at_once_grant_the_day_once(
        self, journal: Journal, second_journal: Journal
    ) -> None:
        """20 calls of 100 tokens at once, 10 from each, on a 1,000-token day: 10 held."""
        results: list[TenantHold | TenantDenied] = []

        async def reserve(store: Journal, n: int) -> None:
            request = ask(run_id=f"r{n}", input_tokens=50, max_output=50, min_output=50)
            results.append(await store.reserve_tenant(request, now=T0, until=T0 + 30))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(reserve, journal if n % 2 else second_journal, n)
        holds = [r for r in results if isinstance(r, TenantHold)]
        assert len(holds) == 10 and sum(h.tokens for h in holds) == 1_000
        spend = await second_journal.tenant_spend("acme", now=T0)
        assert (spend.tokens, spend.reserved) == (0, 1_000)
        for n, hold in enumerate(holds):
            settle_with = journal if n % 2 else second_journal
            assert await settle_with.settle_tenant(hold, tokens=60, cost_usd=0.0)
        assert (await journal.tenant_spend("acme", now=T0)).tokens == 600
