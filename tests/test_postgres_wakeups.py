"""Wake-ups across processes on PostgreSQL: NOTIFY in the committing transaction, LISTEN
on a connection of the store's own, reconnecting after the connection is killed.

Two `PostgresStore` objects on one database stand for two processes (each has its own
pool and its own listening connection). A throwaway cluster is started (it fails, never
skips, when PostgreSQL cannot start), or ``CORRAL_TEST_PG_URL`` is used.
"""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from corral.events import GateDecided, GateOpened, RunFinished, RunStarted, WaitStarted
from corral.store import PostgresStore
from corral.store._contract import WAKEUP_KINDS, WakeupSource
from corral.store._postgres_sql import SCHEMA_VERSION

T0 = 1_800_000_000.0


class Heard:
    """What one store's `watch_wakeups` reported, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._changed = anyio.Event()

    async def __call__(self, kind: str, run_id: str) -> None:
        self.items.append((kind, run_id))
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, item: tuple[str, str], *, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while item not in self.items:
                await self._changed.wait()


async def listening(url: str) -> int:
    """How many listening connections the database has (the stores' ``LISTEN``)."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'corral listen %'"
            )
        )
    finally:
        await conn.close()


async def until_listening(url: str, count: int) -> None:
    with anyio.fail_after(10):
        while await listening(url) != count:
            await anyio.sleep(0.02)


def test_the_postgres_store_is_a_wakeup_source_and_sqlite_is_not(tmp_path) -> None:
    from corral.store import MemoryJournal, SqliteJournal

    assert isinstance(PostgresStore("postgresql://u@h/db"), WakeupSource)
    assert not isinstance(SqliteJournal(tmp_path / "j.db"), WakeupSource)
    assert not isinstance(MemoryJournal(), WakeupSource)
    assert SCHEMA_VERSION >= 3


async def test_each_change_another_process_may_act_on_is_heard_by_every_store(pg_url: str) -> None:
    heard = Heard()
    async with (
        PostgresStore(pg_url) as writer,
        PostgresStore(pg_url) as other,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(other.watch_wakeups, heard)
        await until_listening(pg_url, 1)

        # A run nobody claims when it is submitted: queued for any worker with room.
        await writer.append(RunStarted(run_id="r1", ts=T0, agent="a", task="t"))
        await heard.until(("run_queued", "r1"))
        # A run claimed in the transaction that starts it is not announced.
        await writer.append(RunStarted(run_id="r2", ts=T0, agent="a", task="t"), wait=False)
        assert await writer.claim("r2", "w1", lease_s=30, now=T0)

        # A gate decided by anyone: the run may go on wherever it can be driven.
        assert await writer.claim("r1", "w1", lease_s=30, now=T0)
        await writer.append(
            GateOpened(
                run_id="r1",
                ts=T0,
                step=1,
                call_id="c1",
                gate_id="g1",
                tool="refund",
                expires_at=T0 + 60,
            )
        )
        await writer.release("r1", "w1")  # paused at its gate: not ready, not announced
        decision = GateDecided(
            run_id="r1", ts=T0 + 1, gate_id="g1", call_id="c1", decision="approved", by="ann"
        )
        assert await other.decide_gate(decision)  # this store's own changes are heard too
        await heard.until(("gate_decided", "r1"))

        # A delivery resolving a wait, and a lease released while the run is ready.
        assert await writer.claim("r1", "w1", lease_s=30, now=T0 + 1)
        await writer.append(
            WaitStarted(
                run_id="r1",
                ts=T0 + 2,
                step=2,
                call_id="c2",
                tool="wait",
                key="k1",
                expires_at=T0 + 60,
            )
        )
        await writer.release("r1", "w1")
        assert await writer.deliver("k1", {"paid": True}, now=T0 + 3) == "r1"
        await heard.until(("wait_resolved", "r1"))
        assert await writer.claim("r1", "w1", lease_s=30, now=T0 + 3)
        await writer.release("r1", "w1")
        await heard.until(("run_queued", "r1"))

        # A run that ends (finished, failed, cancelled): whoever waits for it is told.
        await writer.append(RunFinished(run_id="r2", ts=T0 + 4, outcome="cancelled"))
        await heard.until(("run_finished", "r2"))
        tasks.cancel_scope.cancel()

    assert ("run_queued", "r2") not in heard.items
    assert heard.items.count(("run_queued", "r1")) == 2
    assert {kind for kind, _ in heard.items} <= set(WAKEUP_KINDS)


async def test_a_killed_listening_connection_is_made_again_then_resyncs(pg_url: str) -> None:
    heard = Heard()
    async with (
        PostgresStore(pg_url, listen_retry_s=0.2, listen_check_s=0.5) as writer,
        PostgresStore(pg_url, listen_retry_s=0.2, listen_check_s=0.5) as other,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(other.watch_wakeups, heard)
        await until_listening(pg_url, 1)
        conn = await asyncpg.connect(pg_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'corral listen %'"
            )
        finally:
            await conn.close()
        assert killed == 1
        # Changed while nobody listened: that notification is lost, and a resync says so.
        await writer.append(RunStarted(run_id="lost", ts=T0, agent="a", task="t"))
        await heard.until(("resync", ""))
        await until_listening(pg_url, 1)
        await writer.append(RunStarted(run_id="after", ts=T0, agent="a", task="t"))
        await heard.until(("run_queued", "after"))
        tasks.cancel_scope.cancel()
    assert ("run_queued", "lost") not in heard.items
    assert heard.items.index(("resync", "")) < heard.items.index(("run_queued", "after"))


async def test_a_failing_callback_is_logged_and_the_next_wakeup_still_comes(pg_url: str) -> None:
    heard = Heard()

    async def flaky(kind: str, run_id: str) -> None:
        if run_id == "bad":
            raise RuntimeError("the callback broke")
        await heard(kind, run_id)

    async with (
        PostgresStore(pg_url) as writer,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(writer.watch_wakeups, flaky)
        await until_listening(pg_url, 1)
        await writer.append(RunStarted(run_id="bad", ts=T0, agent="a", task="t"))
        await writer.append(RunStarted(run_id="good", ts=T0, agent="a", task="t"))
        await heard.until(("run_queued", "good"))
        tasks.cancel_scope.cancel()


def test_listen_options_come_from_the_url_and_must_be_positive() -> None:
    from corral.errors import ConfigError

    store = PostgresStore("postgresql://u@h/db?listen_retry=3&listen_check=0.5")
    assert (store._listen_retry_s, store._listen_check_s) == (3.0, 0.5)
    with pytest.raises(ConfigError, match="listen_retry"):
        PostgresStore("postgresql://u@h/db?listen_retry=0")


# -- two runtimes: the wake-ups as a runtime acts on them ------------------------------------------


def _agent(gate: anyio.Event | None, ran: list[tuple[str, str]], worker: str) -> object:
    from corral import SubAgent, tool
    from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call

    @tool(timeout=30)
    async def check(order: str) -> str:
        """Check an order (the first one waits until the test lets it go)."""
        ran.append((worker, order))
        if gate is not None and order == "ORD-1":
            await gate.wait()
        return "ok"

    def answer(request: ModelRequest) -> object:
        if any(isinstance(m, ToolResultMessage) for m in request.messages):
            return "checked"
        return call("check", order=str(request.messages[0].content).split()[-1])

    return SubAgent("checker", instructions="x", tools=[check], model=FunctionModel(answer))


async def test_a_run_queued_beyond_one_workers_cap_is_pulled_by_another_at_once(
    pg_url: str,
) -> None:
    from corral import Durability, Guards, Runtime

    release = anyio.Event()
    ran: list[tuple[str, str]] = []
    slow = {"poll_interval_s": 30.0, "lease_s": 120.0}  # only a notification can explain it
    async with (
        PostgresStore(pg_url) as store_a,
        PostgresStore(pg_url) as store_b,
        Runtime(
            agents=[_agent(release, ran, "A")],  # type: ignore[list-item]
            journal=store_a,
            guards=Guards(gated=()),
            durability=Durability(owner="A", max_active_runs=1, **slow),
        ) as a,
        Runtime(
            agents=[_agent(None, ran, "B")],  # type: ignore[list-item]
            journal=store_b,
            guards=Guards(gated=()),
            durability=Durability(owner="B", **slow),
        ),
    ):
        await until_listening(pg_url, 2)
        busy = await a.submit("check ORD-1")  # A's only slot, held until released
        queued = await a.submit("check ORD-2")  # beyond A's cap: journaled, unclaimed
        with anyio.fail_after(5):
            result = await a.wait(queued.run_id)  # A's waiter hears B finish it, too
        assert (result.status, result.outcome) == ("finished", "completed")
        assert ("B", "ORD-2") in ran and ("A", "ORD-2") not in ran  # B pulled it: A was full
        assert a.drives(busy.run_id)
        release.set()
        with anyio.fail_after(5):
            assert (await a.wait(busy.run_id)).outcome == "completed"
    assert sorted(ran) == [("A", "ORD-1"), ("B", "ORD-2")]


# -- closing --------------------------------------------------------------------------------------


async def test_closing_commits_the_events_appended_without_waiting(pg_url: str) -> None:
    """What a stopping worker's runs appended with ``wait=False`` is written, not lost."""
    async with PostgresStore(pg_url) as store:
        await store.append(RunStarted(run_id="r1", ts=T0, agent="a", task="t"))
        await store.append(RunFinished(run_id="r1", ts=T0 + 1, outcome="cancelled"), wait=False)
    async with PostgresStore(pg_url) as store:
        assert [e.kind for e in await store.read("r1")] == ["run_started", "run_finished"]


async def test_closing_the_store_ends_its_watch(pg_url: str) -> None:
    heard = Heard()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            store = PostgresStore(pg_url)
            await store.open()
            tasks.start_soon(store.watch_wakeups, heard)
            await until_listening(pg_url, 1)
            await store.close()  # the watch returns: the task group ends without a cancel
    await until_listening(pg_url, 0)  # its connection is gone (the server notices it at once)


async def test_a_cancellation_asked_through_another_worker_ends_the_run_at_once(
    pg_url: str,
) -> None:
    """The holder polls every 30 s: only the notification can end the run in time."""
    from corral import Durability, Runtime

    from ._support import stalling_agent

    stalling = stalling_agent(60)
    agent = stalling.agent
    async with PostgresStore(pg_url) as store_a, PostgresStore(pg_url) as store_b:
        async with (
            Runtime(
                agents=[agent], journal=store_a, durability=Durability(poll_interval_s=30)
            ) as holder,
            Runtime(
                agents=[agent],
                journal=store_b,
                durability=Durability(resume=False, poll_interval_s=None),
            ) as other,
        ):
            with anyio.fail_after(10):
                while await listening(pg_url) < 1:  # the holder's listener is up
                    await anyio.sleep(0.02)
            handle = await holder.submit("Look up INV-1")
            with anyio.fail_after(10):
                await stalling.stalled.wait()
            asked = anyio.current_time()
            assert await other.cancel(handle.run_id, reason="the customer called") is False
            with anyio.fail_after(5):
                result = await handle.result()
            took = anyio.current_time() - asked
    assert (result.outcome, result.reason) == ("cancelled", "the customer called")
    assert took < 1.0, f"took {took:.2f} s: the holder did not hear of it"
