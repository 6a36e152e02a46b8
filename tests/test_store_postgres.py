"""The PostgreSQL store against a real server: the conformance suite, and what only it has.

One throwaway cluster serves the session (``tests/_postgres.py``; ``CORRAL_TEST_PG_URL``
points the tests at a running server instead), with a fresh database per test. The test
of the server going away mid-run starts a cluster of its own, so stopping it never
disturbs the others. Without the PostgreSQL binaries these tests fail, saying how to
install them: they never skip.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from corral import Durability, MockClock, Runtime, SubAgent, ToolContext, tool
from corral.errors import ConfigError, JournalError, LeaseLostError
from corral.events import GateDecided
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call
from corral.store import Journal, PostgresStore, journal_from_url, open_store
from corral.store._postgres import parse_postgres_url, redact_postgres_url
from corral.store._postgres_sql import SCHEMA_VERSION
from corral.store.testing import FencingContract, JournalContract, SharedTenantBudgetsContract
from corral.store.testing import _events as ev

from ._postgres import (
    PASSWORD,
    Cluster,
    create_database,
    takeover_answer,
)


class TestPostgresStore(JournalContract):
    @pytest.fixture
    async def journal(self, pg_url: str) -> AsyncIterator[Journal]:
        async with PostgresStore(pg_url, clock=MockClock(1_000.0)) as store:
            yield store


class TestPostgresFencing(FencingContract, SharedTenantBudgetsContract):
    """Two store objects on one database: two processes, each with its own pool."""

    @pytest.fixture
    async def journal(self, pg_url: str) -> AsyncIterator[Journal]:
        async with PostgresStore(pg_url, clock=MockClock(1_000.0)) as store:
            yield store

    @pytest.fixture
    async def second_journal(self, pg_url: str) -> AsyncIterator[Journal]:
        async with PostgresStore(pg_url, clock=MockClock(1_000.0)) as store:
            yield store


# -- choosing it by URL ---------------------------------------------------------------------------


def test_postgres_urls_build_a_postgres_store_with_the_password_redacted() -> None:
    for url in (
        f"postgresql://corral:{PASSWORD}@127.0.0.1:5432/app?pool_size=4",
        f"postgres://corral:{PASSWORD}@127.0.0.1:5432/app?pool_size=4",
    ):
        journal = journal_from_url(url)
        assert isinstance(journal, PostgresStore)
        assert journal.url == "postgresql://corral:***@127.0.0.1:5432/app?pool_size=4".replace(
            "postgresql", url.split(":")[0]
        )
        assert PASSWORD not in repr(journal) and PASSWORD not in journal.url
        assert journal._pool_size == 4
    env = {"CORRAL_DB": f"postgresql://corral:{PASSWORD}@db.internal/app"}
    assert isinstance(journal_from_url(env=env), PostgresStore)


def test_corral_options_are_taken_out_and_the_rest_go_to_asyncpg() -> None:
    dsn, where, secret, options = parse_postgres_url(
        "postgresql://u:p%40ss@h:1/d?sslmode=require&connect_timeout=2.5&command_timeout=9"
    )
    assert dsn == "postgresql://u:p%40ss@h:1/d?sslmode=require"
    assert (where, secret) == (
        "postgresql://u:***@h:1/d?sslmode=require&connect_timeout=2.5&command_timeout=9",
        "p@ss",
    )
    assert options == {"connect_timeout": 2.5, "command_timeout": 9.0}
    assert redact_postgres_url("postgresql://h/d?user=u&password=hunter2") == (
        "postgresql://h/d?user=u&password=***"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u:pw@h:1/", "no database named"),
        ("postgresql://u:pw@h:1/d?pool_size=0", "pool_size must be a whole number"),
        ("postgresql://u:pw@h:1/d?pool_size=2.5", "pool_size must be a whole number"),
        ("postgresql://u:pw@h:1/d?connect_timeout=soon", "connect_timeout must be seconds"),
        ("postgresql+psycopg://u:pw@h:1/d", "unknown journal URL"),
    ],
)
def test_a_bad_postgres_url_is_a_config_error_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        journal_from_url(url)
    assert ":pw@" not in str(caught.value)


def test_open_store_points_postgres_urls_to_journal_from_url() -> None:
    """`open_store` builds SQLite stores only (its callers use the file's path)."""
    with pytest.raises(ConfigError, match="journal_from_url") as caught:
        open_store(f"postgresql://corral:{PASSWORD}@127.0.0.1/app")
    assert PASSWORD not in str(caught.value)


async def test_without_asyncpg_opening_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg now raises ImportError
    store = PostgresStore(f"postgresql://corral:{PASSWORD}@127.0.0.1:1/app")
    with pytest.raises(ConfigError, match=r"pip install 'corral\[postgres\]'"):
        await store.open()


def test_importing_corral_does_not_import_asyncpg() -> None:
    code = "import sys, corral, corral.store; print('asyncpg' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- opening: credentials and migrations ----------------------------------------------------------


async def test_a_wrong_password_is_a_clear_error_with_the_password_redacted(pg_url: str) -> None:
    wrong = pg_url.replace(f":{PASSWORD}@", ":not-the-Pa55word@")
    assert wrong != pg_url
    store = PostgresStore(wrong)
    with pytest.raises(ConfigError) as caught:
        await store.open()
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "not-the-Pa55word" not in message and ":***@" in message
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    assert "not-the-Pa55word" not in repr(store)


async def test_an_unreachable_server_is_a_clear_error_within_the_timeout() -> None:
    from ._postgres import free_port

    url = f"postgresql://corral:{PASSWORD}@127.0.0.1:{free_port()}/app?connect_timeout=2"
    with pytest.raises(ConfigError, match="cannot open the store .*connection") as caught:
        await PostgresStore(url).open()
    assert PASSWORD not in str(caught.value)


async def test_migrations_run_once_and_keep_an_existing_database(pg_url: str) -> None:
    """An application's own tables are left alone; reopening migrates nothing again."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE events (id serial PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO events (note) VALUES ('the application''s own')")
    finally:
        await conn.close()
    async with PostgresStore(pg_url) as store:
        await store.append(ev.started("r1"))
        await store.append(ev.gate_opened("r1"))
    async with PostgresStore(pg_url) as store:  # already at the current version
        assert [e.kind for e in await store.read("r1")] == ["run_started", "gate_opened"]
        assert (await store.append(ev.proposed("r1"))).seq == 3
    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch("SELECT version, summary FROM corral.schema_version")
        assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
        assert await conn.fetchval("SELECT note FROM public.events") == "the application's own"
    finally:
        await conn.close()


async def test_two_processes_opening_a_new_database_migrate_it_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        await stores[0].append(ev.started("r1"))
        assert [e.seq for e in await stores[3].read("r1")] == [1]
    finally:
        for store in stores:
            await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM corral.schema_version") == SCHEMA_VERSION
    finally:
        await conn.close()


async def test_a_database_migrated_by_a_newer_corral_is_refused(pg_url: str) -> None:
    async with PostgresStore(pg_url):
        pass
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO corral.schema_version (version, summary) VALUES ($1, 'from the future')",
            SCHEMA_VERSION + 1,
        )
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match="newer than this Corral understands"):
        await PostgresStore(pg_url).open()


# -- the write path --------------------------------------------------------------------------------


async def test_concurrent_appends_share_one_statement(pg_url: str) -> None:
    """Group commit: 50 runs appending in one tick cost one commit, not 50."""
    async with PostgresStore(pg_url) as store:
        for i in range(50):
            await store.append(ev.started(f"r{i}"), wait=False)
        await store.flush()
        before = store.statistics().transactions
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(store.append, ev.proposed(f"r{i}"))
        stats = store.statistics()
        assert stats.transactions - before <= 2
        assert stats.events == 100 and stats.largest_batch >= 25
        for i in range(50):
            assert [e.seq for e in await store.read(f"r{i}")] == [1, 2]


async def test_a_broken_constraint_fails_only_its_own_run(pg_url: str) -> None:
    """A reused run id in a batch fails that run; the other runs of the batch are written."""
    async with PostgresStore(pg_url) as store:
        await store.append(ev.started("taken"))
        await store.flush()
        store._seq.pop("taken")  # as another process would be: it does not know the run

        async def reuse() -> None:
            with pytest.raises(JournalError, match="run 'taken'") as caught:
                await store.append(ev.started("taken"))
            assert caught.value.run_id == "taken"

        async with anyio.create_task_group() as tg:
            tg.start_soon(reuse)
            tg.start_soon(store.append, ev.started("fresh"))
        assert [e.seq for e in await store.read("fresh")] == [1]
        assert [e.kind for e in await store.read("taken")] == ["run_started"]
        assert (await store.append(ev.proposed("taken"))).seq == 2


async def test_the_database_going_away_mid_run_loses_nothing_committed() -> None:
    """pg_ctl stop, then start: a structured error meanwhile, then the store works again."""
    cluster = Cluster.start()
    try:
        url = await create_database(cluster.url(), "app")
        async with PostgresStore(url + "?connect_timeout=2&command_timeout=5") as store:
            for event in (ev.started("r1"), ev.proposed("r1", "c1")):
                await store.append(event)
            await store.append(ev.started("r2"))
            await store.append(ev.gate_opened("r2"))  # r2 paused: its counter left memory
            committed = {run_id: await store.read(run_id) for run_id in ("r1", "r2")}
            await anyio.to_thread.run_sync(cluster.stop_server)

            with pytest.raises(JournalError) as caught:
                await store.append(ev.proposed("r1", "lost"))
            error = caught.value
            assert error.run_id == "r1" and "events 3..3 of run 'r1' were not written" in str(error)
            assert "connection" in str(error) and PASSWORD not in str(error)
            assert error.path == store.url and ":***@" in error.path
            with pytest.raises(JournalError, match="reading the last seq of run 'r2'") as caught:
                await store.append(ev.proposed("r2", "lost"))
            assert caught.value.run_id == "r2"
            with pytest.raises(JournalError, match="connection"):
                await store.read("r1")
            with pytest.raises(JournalError):
                await store.decide_gate(ev.decision("r2"))

            await anyio.to_thread.run_sync(cluster.start_server)
            assert {run_id: await store.read(run_id) for run_id in ("r1", "r2")} == committed
            again = await store.append(ev.proposed("r1", "after"))
            assert again.seq == 3  # numbered after what was committed: no gap, no repeat
            assert [e.seq for e in await store.read("r1")] == [1, 2, 3]
            assert await store.decide_gate(ev.decision("r2"))
            assert (await store.append(ev.proposed("r2", "after"))).seq == 4
            assert (await store.read("r2"))[:2] == committed["r2"]
    finally:
        cluster.destroy()


# -- a real runtime on PostgreSQL ------------------------------------------------------------------


def _refund_agent(done: list[dict[str, Any]]) -> SubAgent:
    @tool(side_effect="external", timeout=5)
    async def refund(order_id: str, amount: float, ctx: ToolContext) -> str:
        """Refund an order through the payment provider."""
        done.append({"order_id": order_id, "key": ctx.idempotency_key})
        return f"refunded {amount:.2f} on {order_id}"

    def answer(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if isinstance(last, ToolResultMessage):
            return f"result: {last.content}"
        return call("refund", order_id="ORD-7", amount=120.0)

    return SubAgent(
        "payments", instructions="Refund orders.", tools=[refund], model=FunctionModel(answer)
    )


async def test_a_runtime_runs_pauses_at_a_gate_and_a_second_runtime_resumes(pg_url: str) -> None:
    """Run on PostgreSQL, stop at the gate; a new runtime on the same database approves
    and finishes it: the refund happens once, and every event is in the database."""
    done: list[dict[str, Any]] = []
    async with PostgresStore(pg_url) as journal:
        async with Runtime(
            agents=[_refund_agent(done)],
            journal=journal,
            durability=Durability(poll_interval_s=None),
        ) as first:
            paused = await first.run("refund ORD-7")
            assert paused.status == "waiting" and done == []
            (gate,) = paused.gates
    async with PostgresStore(pg_url) as journal:  # another process, as after a restart
        info = await journal.run(paused.run_id)
        assert info is not None and info.status == "waiting" and info.owner is None
        async with Runtime(
            agents=[_refund_agent(done)],
            journal=journal,
            durability=Durability(poll_interval_s=None),
        ) as second:
            decided = await second.approve(gate.opened.gate_id, by="ana", note="checked")
            assert decided.status == "approved"
            result = await second.wait(paused.run_id, timeout=10)
        assert result.outcome == "completed"
        assert result.output == "result: refunded 120.00 on ORD-7"
        assert len(done) == 1
        events = await journal.read(paused.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        kinds = [e.kind for e in events]
        assert kinds.index("gate_opened") < kinds.index("gate_decided")
        assert kinds.index("gate_decided") < kinds.index("tool_call_started") < len(kinds) - 1
        assert kinds[-1] == "run_finished"
        info = await journal.run(paused.run_id)
        assert info is not None and info.status == "finished" and info.outcome == "completed"


async def test_a_runtime_resumes_runs_left_unfinished_on_postgres(pg_url: str) -> None:
    """Runs submitted and left unfinished are resumed by the next runtime's `resume`."""
    done: list[dict[str, Any]] = []
    async with PostgresStore(pg_url) as journal:
        async with Runtime(
            agents=[_refund_agent(done)],
            journal=journal,
            durability=Durability(poll_interval_s=None),
        ) as rt:
            paused = [await rt.run(f"refund {i}") for i in range(3)]
        for result in paused:  # approved by another process: only journal writes
            opened = result.gates[0].opened
            decision = GateDecided(
                run_id=result.run_id,
                ts=time.time(),
                gate_id=opened.gate_id,
                call_id=opened.call_id,
                decision="approved",
                by="ana",
            )
            assert await journal.decide_gate(decision)
        assert done == []
    async with PostgresStore(pg_url) as journal:
        async with Runtime(
            agents=[_refund_agent(done)],
            journal=journal,
            durability=Durability(poll_interval_s=None, resume=False),
        ) as rt:
            resumed = await rt.resume()
            assert sorted(resumed) == sorted(r.run_id for r in paused)
            for run_id in resumed:
                assert (await rt.wait(run_id, timeout=10)).outcome == "completed"
    assert len(done) == 3


# -- two processes on one database -----------------------------------------------------------------


async def test_two_processes_deciding_one_gate_at_once_decide_it_once(pg_url: str) -> None:
    """The row lock makes the check and the append one step, across connections."""
    async with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        for i in range(10):
            await a.append(ev.started(f"r{i}"))
            await a.append(ev.gate_opened(f"r{i}", f"g{i}"))
        await a.flush()
        outcomes: dict[str, list[bool]] = {}

        async def decide(store: PostgresStore, who: str, i: int) -> None:
            verdict = "approved" if who == "a" else "rejected"
            won = await store.decide_gate(ev.decision(f"r{i}", f"g{i}", verdict, by=who))
            outcomes.setdefault(f"g{i}", []).append(won)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(decide, a, "a", i)
                tg.start_soon(decide, b, "b", i)
        assert all(sorted(won) == [False, True] for won in outcomes.values())
        for i in range(10):
            kinds = [e.kind for e in await b.read(f"r{i}")]
            assert kinds == ["run_started", "gate_opened", "gate_decided"]


async def test_two_workers_claiming_at_once_take_disjoint_runs(pg_url: str) -> None:
    """``FOR UPDATE SKIP LOCKED``: every ready run goes to exactly one of them."""
    async with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        for i in range(40):
            await a.append(ev.started(f"r{i:02d}", ts=ev.T0 + i), wait=False)
        await a.flush()
        got: dict[str, list[str]] = {}

        async def claim(store: PostgresStore, owner: str) -> None:
            got[owner] = []
            for _ in range(4):
                got[owner] += await store.claim_runs(
                    owner, lease_s=30, now=ev.T0, limit=10, exclude=got[owner]
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim, a, "A")
            tg.start_soon(claim, b, "B")
        assert not set(got["A"]) & set(got["B"])
        assert sorted(got["A"] + got["B"]) == [f"r{i:02d}" for i in range(40)]
        for owner, ids in got.items():
            for run_id in ids:
                info = await a.run(run_id)
                assert info is not None and info.owner == owner


async def test_text_the_server_refuses_fails_only_its_own_run(pg_url: str) -> None:
    """PostgreSQL text cannot hold NUL: that run fails, the others of its batch are written."""
    async with PostgresStore(pg_url) as store:

        async def bad() -> None:
            with pytest.raises(JournalError, match="run 'nul'") as caught:
                await store.append(ev.started("nul").model_copy(update={"task": "a\x00b"}))
            assert caught.value.run_id == "nul"

        async with anyio.create_task_group() as tg:
            tg.start_soon(bad)
            for i in range(5):
                tg.start_soon(store.append, ev.started(f"ok{i}"))
        assert await store.read("nul") == [] and await store.run("nul") is None
        assert sorted(await store.unfinished_runs()) == [f"ok{i}" for i in range(5)]


async def test_a_worker_whose_lease_was_taken_over_can_no_longer_write(pg_url: str) -> None:
    """Fencing by lease epoch: after B takes r1 over, A's appends to it are refused."""
    async with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        await a.append(ev.started("r1"), wait=False)
        assert await a.claim("r1", "A", lease_s=10, now=ev.T0)  # with the start: epoch 1
        await a.append(ev.proposed("r1", "c1"))
        await a.append(ev.started("r2"))
        assert await a.claim("r2", "A", lease_s=10, now=ev.T0)
        # A stalls past its lease; B takes r1 over (its lease ran out), not r2 (renewed).
        assert await a.renew_leases("A", lease_s=30, now=ev.T0 + 9, run_ids=["r2"]) == 1
        assert await b.claim_runs("B", lease_s=10, now=ev.T0 + 10) == ["r1"]
        info = await b.run("r1")
        assert info is not None and info.owner == "B"

        with pytest.raises(LeaseLostError, match="taken over by B") as caught:
            await a.append(ev.proposed("r1", "stale"))
        assert (caught.value.run_id, caught.value.holder) == ("r1", "B")
        assert (await a.append(ev.proposed("r2", "ok"))).seq == 2  # its other runs go on
        assert (await b.append(ev.proposed("r1", "c2"))).seq == 3
        calls = [getattr(e, "call_id", None) for e in await b.read("r1")]
        assert calls == [None, "c1", "c2"]  # nothing of A's after the takeover
        with pytest.raises(JournalError, match="taken over"):
            await a.append(ev.proposed("r1", "stale again"))
        assert await a.renew_leases("A", lease_s=10, now=ev.T0 + 11, run_ids=["r1"]) == 0


async def test_a_worker_killed_mid_call_is_taken_over_once_its_lease_ends(
    pg_url: str, tmp_path: Path
) -> None:
    """Worker A (a process) is killed with SIGKILL inside a tool call, holding its lease:
    worker B claims the run only once the lease is over, and finishes it."""
    marker = tmp_path / "entered"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests._postgres", "crash-worker", pg_url, str(marker)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        with anyio.fail_after(30):
            while not marker.exists():
                assert child.poll() is None, "the worker exited early"
                await anyio.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    run_id = marker.read_text()
    calls: list[str] = []

    @tool(timeout=30)
    async def lookup(order_id: str) -> str:
        """Look an order up."""
        calls.append(order_id)
        return f"{order_id}: paid"

    agent = SubAgent(
        "orders", instructions="x", tools=[lookup], model=FunctionModel(takeover_answer)
    )
    async with PostgresStore(pg_url) as store:
        info = await store.run(run_id)
        assert info is not None and info.owner == "A" and info.lease_until is not None
        clock = MockClock(info.lease_until - 5)  # A's lease has 5 s to go
        takeover = Durability(poll_interval_s=None, lease_s=30, owner="B", resume=False)
        async with Runtime(agents=[agent], journal=store, clock=clock, durability=takeover) as b:
            assert await b.resume() == []  # A's lease is live: nobody may take the run
            clock.advance(5)  # the instant it ends
            assert await b.resume() == [run_id]
            result = await b.wait(run_id, timeout=10)
        assert result.outcome == "completed" and result.output == "found ORD-7: paid"
        assert calls == ["ORD-7"]  # A's call never finished; B's is the one recorded
        events = await store.read(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.kind for e in events].count("tool_call_finished") == 1
        assert events[-1].kind == "run_finished"


def test_without_server_binaries_the_tests_fail_saying_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No initdb anywhere: the cluster helper raises (the fixtures error), it never skips."""
    from . import _postgres

    monkeypatch.setattr(_postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(_postgres.shutil, "which", lambda name: None)
    with pytest.raises(_postgres.PostgresUnavailable, match="apt-get install postgresql"):
        _postgres.Cluster.start()


async def test_a_batch_aborted_as_a_deadlock_victim_is_committed_on_a_retry(pg_url: str) -> None:
    """Another transaction holds r2, then asks for r1 while the batch holds r1 (the append
    function locks its runs in run_id order) and waits for r2: the batch checks for a
    deadlock first (0.5 s into its wait, against 5 s), so PostgreSQL aborts the batch, and
    the store writes it again once the other transaction is done."""
    setup = await asyncpg.connect(pg_url)
    try:  # the store's connections, made after this, check for a deadlock 0.5 s into a wait
        name = await setup.fetchval("SELECT current_database()")
        await setup.execute(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '500ms'")
    finally:
        await setup.close()
    async with PostgresStore(pg_url) as store:
        for run_id in ("r1", "r2"):
            await store.append(ev.started(run_id))
            assert await store.claim(run_id, "A", lease_s=60, now=ev.T0)
        other = await asyncpg.connect(pg_url)
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute("SET deadlock_timeout = '5s'")
            await other.execute("SELECT 1 FROM corral.runs WHERE run_id = 'r2' FOR UPDATE")
            await store.append(ev.proposed("r1", "c1"), wait=False)
            await store.append(ev.proposed("r2", "c2"), wait=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.flush)
                await anyio.sleep(0.15)  # the batch holds r1 and waits for r2
                with anyio.fail_after(10):
                    await other.execute("SELECT 1 FROM corral.runs WHERE run_id = 'r1' FOR UPDATE")
                await tx.commit()
        finally:
            await other.close()
        assert ev.seqs(await store.read("r1")) == [1, 2]
        assert ev.seqs(await store.read("r2")) == [1, 2]
        assert await store.append(ev.proposed("r1", "c3")) is not None  # nothing poisoned
