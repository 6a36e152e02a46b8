"""A tenant's daily budget holds across every worker sharing the journal, and across a crash.

Each model call of a budgeted tenant holds its share of the tenant's day in the journal
(`corral.store.TenantBudgets`) before it goes out. Two runtimes on one SQLite file, or on
one PostgreSQL database, stand for two worker processes (each store object has
connections of its own); a worker SIGKILLed in the middle of a call is a real subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Limits, MockClock, Runtime, SubAgent, Tenants
from corral.events import ModelCalled
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolCall
from corral.runtime import RunResult
from corral.store import Journal, PostgresStore, SqliteStore
from corral.supervisor import TenantLimits

from ._support import agent, ping, pong

DAILY = 6_000
LIMITS = Limits(output_tokens=200, min_output_tokens=20, max_tool_calls=1000, max_stale_streak=None)
REPO = Path(__file__).resolve().parents[1]


def busy_model() -> FunctionModel:
    """Calls ping and pong for ever: each run goes on until a budget stops it."""

    def respond(request: ModelRequest) -> Any:
        n = len(request.messages)
        name = "ping" if n % 4 == 1 else "pong"
        return ModelResponse(tool_calls=(ToolCall(id=f"c{n}", name=name, arguments={"n": n}),))

    return FunctionModel(respond, name="free")


def worker_runtime(journal: Journal, clock: MockClock, owner: str) -> Runtime:
    return Runtime(
        agents=[agent([ping, pong], busy_model(), limits=LIMITS)],
        journal=journal,
        clock=clock,
        seed=7,
        tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=DAILY)}),
        durability=Durability(owner=owner, poll_interval_s=None, resume=False),
    )


async def run_on_two_workers(first: Journal, second: Journal) -> list[RunResult]:
    """Five runs of tenant acme on each worker at once; every result."""
    clock = MockClock()
    results: list[RunResult] = []
    async with (
        worker_runtime(first, clock, "worker-a") as a,
        worker_runtime(second, clock, "worker-b") as b,
    ):
        handles = [await rt.submit("work", tenant="acme") for rt in (a, b) for _ in range(5)]
        results = [await h.result() for h in handles]
        usage_a, usage_b = await a.tenant_usage("acme"), await b.tenant_usage("acme")
    spent = sum(r.tokens for r in results)
    assert 0 < spent <= DAILY  # each worker alone would have let it spend 6,000
    assert usage_a == usage_b
    assert usage_a.across_processes and usage_a.reserved == 0
    assert usage_a.tokens == spent  # every call settled with what it used
    assert all(r.outcome == "stopped_budget" for r in results)
    assert any("tenant 'acme' daily token budget reached" in r.reason for r in results)
    return results


async def test_two_workers_on_one_sqlite_file_share_a_tenants_day(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SqliteStore(path) as first, SqliteStore(path) as second:
        results = await run_on_two_workers(first, second)
    assert sum(r.tokens for r in results[:5]) > 0 and sum(r.tokens for r in results[5:]) > 0


async def test_two_workers_on_one_postgresql_database_share_a_tenants_day(pg_url: str) -> None:
    async with PostgresStore(pg_url) as first, PostgresStore(pg_url) as second:
        results = await run_on_two_workers(first, second)
    assert sum(r.tokens for r in results[:5]) > 0 and sum(r.tokens for r in results[5:]) > 0


async def test_a_tenants_budget_shrinks_the_output_a_call_may_ask_for() -> None:
    """200 tokens left today, about 60 of them for the input: the call asks for the rest."""
    sent: list[int] = []

    def respond(request: ModelRequest) -> ModelResponse:
        sent.append(request.max_tokens)
        return ModelResponse(text="done")

    worker = SubAgent(
        "worker", instructions="Answer.", tools=[], model=FunctionModel(respond), limits=LIMITS
    )
    async with Runtime(
        agents=[worker],
        clock=MockClock(),
        tenants=Tenants(default=TenantLimits(daily_tokens=200)),
    ) as rt:
        first = await rt.run("go", tenant="t")
        usage = await rt.tenant_usage("t")
    assert first.outcome == "completed"
    called = next(e for e in first.events if isinstance(e, ModelCalled))
    held_input = called.reserved_tokens - LIMITS.output_tokens  # the run's own reservation
    assert 0 < held_input and sent == [called.max_tokens] == [200 - held_input]
    assert usage.tokens == first.tokens and usage.reserved == 0


HANGING_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import anyio

    from corral import Durability, Limits, Runtime, SubAgent, Tenants
    from corral.models import FunctionModel
    from corral.store import SqliteStore
    from corral.supervisor import TenantLimits

    async def hang(request):
        Path(sys.argv[2]).write_text("calling")
        await anyio.sleep_forever()

    async def main():
        worker = SubAgent(
            "worker",
            instructions="Answer.",
            tools=[],
            model=FunctionModel(hang, name="free"),
            limits=Limits(output_tokens=200, min_output_tokens=20),
        )
        async with SqliteStore(sys.argv[1]) as store, Runtime(
            agents=[worker],
            journal=store,
            tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=1000)}),
            durability=Durability(owner="doomed", lease_s=30, poll_interval_s=None),
        ) as rt:
            await rt.run("go", tenant="acme")

    anyio.run(main)
    """
)


async def test_a_killed_workers_hold_counts_as_spent_once_its_lease_lapses(
    tmp_path: Path,
) -> None:
    """SIGKILL mid-call: its hold stays reserved, then counts whole; nothing is freed early."""
    db, marker, script = tmp_path / "shared.db", tmp_path / "calling", tmp_path / "worker.py"
    script.write_text(HANGING_WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(marker)], env=env)
    try:
        with anyio.fail_after(30):
            while not marker.exists() and proc.poll() is None:
                await anyio.sleep(0.02)
        assert marker.exists(), f"the worker exited with {proc.returncode} before calling"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    async with SqliteStore(db) as store:
        now = (await store.runs(limit=1))[0].created_at
        during = await store.tenant_spend("acme", now=now + 1)
        assert during.tokens == 0 and 0 < during.reserved <= 1000  # the lease still holds it
        after = await store.tenant_spend("acme", now=now + 40)
        assert (after.tokens, after.reserved) == (during.reserved, 0)  # counted whole
        clock = MockClock(now + 40)
        rt = Runtime(
            agents=[agent([ping], FunctionModel(lambda r: ModelResponse(text="ok"), name="free"))],
            journal=store,
            clock=clock,
            tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=1000)}),
            durability=Durability(owner="survivor", poll_interval_s=None, resume=False),
        )
        async with rt:
            usage = await rt.tenant_usage("acme")
            assert usage.tokens == during.reserved
            result = await rt.run("go", tenant="acme")
        spent = await store.tenant_spend("acme", now=now + 41)
    assert result.outcome == "completed"  # what the dead worker held is gone, not the rest
    assert spent.tokens == during.reserved + result.tokens <= 1000


@pytest.mark.parametrize("tenant", ["acme", "globex"])
async def test_a_tenant_without_a_budget_is_not_held_in_the_journal(
    tmp_path: Path, tenant: str
) -> None:
    """Only budgeted tenants pay for the journal round trips; others are tallied here."""
    async with SqliteStore(tmp_path / "j.db") as store:
        rt = Runtime(
            agents=[agent([ping], FunctionModel(lambda r: ModelResponse(text="ok"), name="free"))],
            journal=store,
            clock=MockClock(),
            tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=100_000)}),
        )
        async with rt:
            result = await rt.run("go", tenant=tenant)
            usage = await rt.tenant_usage(tenant)
            journal_day = await store.tenant_spend(tenant, now=rt.clock.now())
    assert usage.tokens == result.tokens > 0
    assert usage.across_processes is (tenant == "acme")
    assert journal_day.tokens == (result.tokens if tenant == "acme" else 0)
