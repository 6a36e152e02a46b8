"""The SQLite store, on real files in tmp_path: log, indexes, group commit, processes, URLs."""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest

from corral._clock import MockClock
from corral.errors import ConfigError, CorralError, UsageError
from corral.events import (
    BudgetReserved,
    BudgetSettled,
    CallReconciled,
    ContextSummarised,
    EpisodesRecalled,
    Event,
    EventAdapter,
    GateDecided,
    GateOpened,
    GuardrailVerdict,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    UsageRecord,
    WaitResolved,
    WaitStarted,
)
from corral.models import ModelResponse, ToolCall, Usage
from corral.store import Journal, MemoryJournal
from corral.store._migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from corral.store._open import DEFAULT_DB_URL, journal_from_url, open_store
from corral.store._sqlite import SqliteStore

# -- helpers ---------------------------------------------------------------------------------------


def started(run_id: str, ts: float = 1.0, **kw: Any) -> RunStarted:
    return RunStarted(run_id=run_id, agent="billing", task=f"task of {run_id}", ts=ts, **kw)


def proposed(run_id: str, call_id: str = "c1", ts: float = 2.0) -> ToolCallProposed:
    return ToolCallProposed(
        run_id=run_id, step=1, call_id=call_id, tool="lookup", arguments={"id": call_id}, ts=ts
    )


def gate_opened(
    run_id: str, gate_id: str = "g1", expires_at: float = 100.0, ts: float = 3.0
) -> GateOpened:
    return GateOpened(
        run_id=run_id,
        step=1,
        call_id="c1",
        gate_id=gate_id,
        tool="refund",
        arguments={"order": "ORD-7", "amount": 12.5},
        reason="refunds need a person",
        expires_at=expires_at,
        ts=ts,
    )


def decision(
    run_id: str, gate_id: str = "g1", decision: str = "approved", by: str = "ana", ts: float = 4.0
) -> GateDecided:
    return GateDecided(
        run_id=run_id,
        gate_id=gate_id,
        call_id="c1",
        decision=decision,  # type: ignore[arg-type]
        by=by,
        note="ok",
        ts=ts,
    )


def wait_started(run_id: str, key: str, expires_at: float = 100.0, ts: float = 5.0) -> WaitStarted:
    return WaitStarted(
        run_id=run_id,
        step=2,
        call_id="c2",
        tool="await_payment",
        key=key,
        expires_at=expires_at,
        ts=ts,
    )


def finished(run_id: str, ts: float = 9.0, outcome: str = "completed") -> RunFinished:
    return RunFinished(run_id=run_id, outcome=outcome, output="done", ts=ts)  # type: ignore[arg-type]


async def seqs(store: SqliteStore, run_id: str) -> list[int]:
    return [e.seq for e in await store.read(run_id)]


def raw(path: Path) -> sqlite3.Connection:
    """A second, plain connection, as another program (or a careless person) would open."""
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "journal.db") as opened:
        yield opened


def every_kind(run_id: str) -> list[Event]:
    response = ModelResponse(
        text="",
        tool_calls=(ToolCall(id="c1", name="lookup", arguments={"id": "INV-1"}),),
        usage=Usage(input_tokens=120, output_tokens=14),
        stop_reason="tool_use",
        model="fake-1",
        provider_data={"thinking": [{"signature": "abc"}]},
    )
    return [
        started(run_id, tags=["urgent"], limits={"max_tokens": 1000}, budget_key="wf-1"),
        BudgetReserved(run_id=run_id, step=1, tokens=500, max_tokens=200, ts=1.1),  # legacy
        BudgetSettled(run_id=run_id, step=1, reserved=500, used=134, cost_usd=0.001, ts=1.2),
        ModelFailed(
            run_id=run_id,
            step=1,
            model="fake-1",
            error="overloaded",
            error_type="RateLimited",
            attempt=1,
            will_retry=True,
            delay_s=1.0,
            ts=1.3,
        ),
        ModelCalled(
            run_id=run_id,
            step=1,
            model="fake-1",
            response=response.model_dump(mode="json"),  # (the journal keeps its own record)
            duration_s=0.2,
            ts=1.4,
            cost_usd=0.001,
            reserved_tokens=500,
            max_tokens=200,
        ),
        proposed(run_id),
        ToolCallRejected(
            run_id=run_id,
            step=1,
            call_id="c0",
            tool="nope",
            guardrail="registered",
            reason="unknown tool",
            message="Unknown tool name: 'nope'.",
            ts=2.1,
        ),
        GuardrailVerdict(
            run_id=run_id, guardrail="pii", decision="redact", reason="an email", ts=2.2
        ),
        ToolCallStarted(
            run_id=run_id,
            step=1,
            call_id="c1",
            tool="lookup",
            attempt=1,
            idempotency_key="k-1",
            ts=2.3,
        ),
        ToolCallFailed(
            run_id=run_id,
            step=1,
            call_id="c1",
            tool="lookup",
            attempt=1,
            error="timeout",
            error_type="ToolTimeout",
            retryable=True,
            will_retry=True,
            ts=2.4,
        ),
        CallReconciled(
            run_id=run_id,
            step=1,
            call_id="c1",
            tool="lookup",
            attempt=1,
            idempotency_key="k-1",
            answer="unknown",
            detail="the provider has no lookup",
            probe_attempts=2,
            duration_s=0.5,
            ts=2.45,
        ),
        ToolCallFinished(
            run_id=run_id,
            step=1,
            call_id="c1",
            tool="lookup",
            attempt=2,
            content="é ✓ \u2028 " + "x" * 500,
            duration_s=0.01,
            truncated=True,
            result_chars=9000,
            result_blob="0" * 64,
            ts=2.5,
        ),
        ContextSummarised(
            run_id=run_id,
            step=3,
            first_turn=0,
            through_turn=2,
            summary="turn 0: lookup(c1) -> 10 USD; turn 1: lookup(c2) ->   ✓",
            summariser="model:cheap",
            tokens_before=9000,
            tokens_after=2100,
            model="cheap",
            usage=UsageRecord(input_tokens=800, output_tokens=60),
            cost_usd=0.0004,
            reserved_tokens=1200,
            duration_s=0.02,
            ts=2.6,
        ),
        EpisodesRecalled(
            run_id=run_id,
            episodes=[{"run_id": "run_old", "score": 0.71}],
            text="Past example (not instructions): ...",
            tokens=12,
            ts=2.7,
        ),
        gate_opened(run_id),
        decision(run_id),
        wait_started(run_id, key=f"pay:{run_id}"),
        WaitResolved(
            run_id=run_id,
            call_id="c2",
            tool="await_payment",
            key=f"pay:{run_id}",
            payload={"paid": True, "amount": [1, 2.5, None]},
            ts=6.0,
        ),
        StepStarted(run_id=run_id, step="extract", child_run_id="child-1", ts=7.0),
        StepFinished(run_id=run_id, step="extract", output={"total": 10}, ts=7.1),
        StepFailed(run_id=run_id, step="merge", error="boom", ts=7.2),
        finished(run_id),
    ]


# -- the log ---------------------------------------------------------------------------------------


async def test_the_store_is_a_journal(store: SqliteStore) -> None:
    journal: Journal = store
    assert isinstance(journal, Journal)


async def test_every_event_kind_round_trips(store: SqliteStore) -> None:
    events = every_kind("r1")
    union = {cls.model_fields["kind"].default for cls in get_args(get_args(Event)[0])}
    assert {e.kind for e in events} == union  # a new kind must be added here
    events = [await store.append(event) for event in events]  # the stored copies
    read = await store.read("r1")
    assert [e.seq for e in read] == list(range(1, len(events) + 1))
    assert [EventAdapter.dump_python(e) for e in read] == [
        EventAdapter.dump_python(e) for e in events
    ]
    assert await store.read("unknown") == []
    for event in events:  # the store writes model_dump_json: the same text, twice as fast
        assert event.model_dump_json() == EventAdapter.dump_json(event).decode()


async def test_100_concurrent_appenders_on_20_runs_get_gap_free_ordered_seqs(
    store: SqliteStore,
) -> None:
    for r in range(20):
        await store.append(started(f"r{r}"))

    async def appender(task: int) -> None:
        for i in range(10):
            await store.append(proposed(f"r{task % 20}", call_id=f"{task}-{i}"), wait=i % 3 != 0)

    async with anyio.create_task_group() as tg:
        for task in range(100):
            tg.start_soon(appender, task)
    for r in range(20):
        events = await store.read(f"r{r}")
        assert [e.seq for e in events] == list(range(1, 52))  # run_started + 5 tasks x 10
        calls = [e.call_id for e in events if isinstance(e, ToolCallProposed)]
        assert len(set(calls)) == 50
        for task in range(r, 100, 20):  # each appender's events in its own order
            assert [c for c in calls if c.startswith(f"{task}-")] == [
                f"{task}-{i}" for i in range(10)
            ]
    assert (await store.get_run("r7")).last_seq == 51  # type: ignore[union-attr]


async def test_appends_of_one_tick_are_committed_in_one_transaction(store: SqliteStore) -> None:
    for r in range(100):
        await store.append(started(f"r{r}"), wait=False)
    await store.flush()
    before = store.statistics()
    async with anyio.create_task_group() as tg:
        for r in range(100):
            tg.start_soon(store.append, proposed(f"r{r}"))
    after = store.statistics()
    assert after.transactions - before.transactions == 1
    assert after.largest_batch == 100 and after.events == 200


async def test_group_commit_batches_under_continuous_load(store: SqliteStore) -> None:
    async def run(r: int) -> None:
        await store.append(started(f"r{r}"))
        for i in range(20):
            await store.append(proposed(f"r{r}", call_id=f"c{i}"))

    async with anyio.create_task_group() as tg:
        for r in range(50):
            tg.start_soon(run, r)
    stats = store.statistics()
    assert stats.events == 50 * 21
    assert stats.transactions <= stats.events / 20  # not one commit per event


async def test_wait_false_is_queued_in_order_and_rides_with_the_next_batch(
    store: SqliteStore,
) -> None:
    await store.append(started("r1"))
    before = store.statistics().transactions
    for i in range(5):
        event = await store.append(proposed("r1", call_id=f"q{i}"), wait=False)
        assert event.seq == i + 2  # numbered at once
    assert store.statistics().pending_events == 5
    assert store.statistics().transactions == before
    await store.append(proposed("r1", call_id="sync"))
    assert store.statistics().transactions == before + 1
    assert [getattr(e, "call_id", None) for e in await store.read("r1")] == [
        None,
        "q0",
        "q1",
        "q2",
        "q3",
        "q4",
        "sync",
    ]


async def test_reads_see_events_queued_without_waiting(store: SqliteStore) -> None:
    await store.append(started("r1"), wait=False)
    await store.append(proposed("r1"), wait=False)
    assert await seqs(store, "r1") == [1, 2]
    assert await store.unfinished_runs() == ["r1"]


async def test_the_queue_is_bounded(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "j.db", max_pending_events=10) as store:
        await store.append(started("r1"))
        for i in range(50):
            await store.append(proposed("r1", call_id=f"c{i}"), wait=False)
            assert store.statistics().pending_events <= 10
        assert await seqs(store, "r1") == list(range(1, 52))
    async with SqliteStore(tmp_path / "k.db", max_pending_bytes=2_000) as store:
        await store.append(started("r1"))
        for i in range(50):
            await store.append(proposed("r1", call_id=f"c{i}"), wait=False)
            assert store.statistics().pending_bytes <= 2_000 + 400
        assert len(await store.read("r1")) == 51


async def test_close_commits_queued_events_and_reopening_continues_the_seqs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    store = SqliteStore(path)
    await store.open()
    await store.append(started("r1"))
    await store.append(proposed("r1"), wait=False)
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(UsageError, match="not open"):
        await store.append(proposed("r1"))
    async with SqliteStore(path) as again:
        assert await seqs(again, "r1") == [1, 2]
        event = await again.append(proposed("r1", call_id="c9"))
        assert event.seq == 3
        assert await again.unfinished_runs() == ["r1"]
    await store.open()  # the same object opens again
    try:
        assert await seqs(store, "r1") == [1, 2, 3]
        with pytest.raises(UsageError, match="already open"):
            await store.open()
    finally:
        await store.close()


async def test_a_paused_or_finished_run_keeps_nothing_in_memory(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    assert store.statistics().cached_runs == 2
    await store.append(gate_opened("r1"))
    await store.append(finished("r2"))
    assert store.statistics().cached_runs == 0
    await store.append(proposed("r1"))  # counter reloaded from the file
    assert await seqs(store, "r1") == [1, 2, 3]


async def test_in_memory_store(tmp_path: Path) -> None:
    async with open_store("sqlite://:memory:") as store:
        await store.append(started("r1"))
        assert await seqs(store, "r1") == [1]
        assert await store.put_blob(b"x") == await store.put_blob(b"x")


# -- failures --------------------------------------------------------------------------------------


async def test_a_constraint_broken_by_one_run_fails_only_that_run(store: SqliteStore) -> None:
    for r in ("r1", "r2", "r3"):
        await store.append(started(r))
    results: dict[str, BaseException | None] = {}

    async def append(event: Event) -> None:
        try:
            await store.append(event)
            results[event.run_id] = None
        except CorralError as exc:
            results[event.run_id] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, started("r1"))  # the same run id started twice
        tg.start_soon(append, proposed("r2"))
        tg.start_soon(append, proposed("r3"))
    assert results["r2"] is None and results["r3"] is None
    error = results["r1"]
    assert isinstance(error, CorralError)
    assert "events 2..2 of run 'r1' were not written" in str(error)
    assert isinstance(error.__cause__, sqlite3.IntegrityError)
    assert store.statistics().failed_batches == 1
    await store.append(proposed("r1"))  # numbering resumes after the last committed event
    assert await seqs(store, "r1") == [1, 2]
    assert await seqs(store, "r2") == [1, 2]


async def test_a_failed_batch_reaches_every_appender_and_lost_queued_events_are_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path, busy_timeout_s=0.05) as store:
        await store.append(started("r1"))
        await store.append(started("r2"))
        blocker = raw(path)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            await store.append(proposed("r1", call_id="lost"), wait=False)
            with pytest.raises(CorralError, match="run 'r2' were not written.*locked"):
                await store.append(proposed("r2"))
            assert store.statistics().failed_batches == 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with pytest.raises(CorralError, match="events 2..2 of run 'r1' were not written"):
            await store.append(proposed("r1", call_id="next"))  # told at the next append
        event = await store.append(proposed("r1", call_id="again"))
        assert event.seq == 2  # no gap where the lost event was
        assert [getattr(e, "call_id", None) for e in await store.read("r1")] == [None, "again"]


async def test_waiters_on_events_dropped_after_a_failure_are_told_not_stuck(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path, busy_timeout_s=0.2) as store:
        await store.append(started("r1"))
        blocker = raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        errors: list[str] = []

        async def append(call_id: str) -> None:
            try:
                await store.append(proposed("r1", call_id=call_id))
            except CorralError as exc:
                errors.append(f"{call_id}: {exc}")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(append, "first")  # its commit waits for the lock
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(append, "second")  # queued behind it, numbered after it
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert sorted(e.split(":")[0] for e in errors) == ["first", "second"]
        assert "events 2..2 of run 'r1' were not written" in errors[0]
        assert "events 3..3 of run 'r1' were dropped, because events 2..2" in errors[1]
        await store.append(proposed("r1", call_id="third"))
        assert [getattr(e, "call_id", None) for e in await store.read("r1")] == [None, "third"]


async def test_close_reports_queued_events_that_no_one_was_told_about(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    store = SqliteStore(path, busy_timeout_s=0.05)
    await store.open()
    await store.append(started("r1"))
    blocker = raw(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        await store.append(proposed("r1"), wait=False)
        with pytest.raises(CorralError, match="wait=False lost"):
            await store.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def test_a_second_writer_on_a_run_is_caught_and_the_counter_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as first, SqliteStore(path) as second:
        await first.append(started("r1"))
        await second.append(proposed("r1", call_id="other"))  # ignores the lease protocol
        with pytest.raises(CorralError, match="UNIQUE constraint failed"):
            await first.append(proposed("r1", call_id="mine"))
        await first.append(proposed("r1", call_id="mine"))
        assert await seqs(first, "r1") == [1, 2, 3]


async def test_an_invalid_stored_event_is_an_error_naming_run_and_seq(
    tmp_path: Path, store: SqliteStore
) -> None:
    await store.append(started("r1"))
    conn = raw(tmp_path / "journal.db")
    conn.execute(
        "INSERT INTO events VALUES ('r1', 2, 'tool_call_proposed', 0, ?)",
        ('{"kind": "tool_call_proposed", "run_id": "r1", "seq": 2, "ts": 0}',),
    )
    conn.execute("INSERT INTO events VALUES ('r2', 1, 'run_started', 0, ?)", ("not json",))
    conn.execute(
        "INSERT INTO events VALUES ('r3', 1, 'run_started', 0, ?)",
        (EventAdapter.dump_json(started("r9")).decode(),),
    )
    conn.close()
    with pytest.raises(CorralError, match=r"event 2 of run 'r1' is not a valid event \(.*step"):
        await store.read("r1")
    with pytest.raises(CorralError, match="event 1 of run 'r2' is not a valid event"):
        await store.read("r2")
    with pytest.raises(CorralError, match="stored as event 0 of run 'r9'"):
        await store.read("r3")
    lazy = await store.read_lazily("r1")  # nothing decoded yet: no error until looked at
    assert len(lazy) == 2 and lazy[0].kind == "run_started"
    with pytest.raises(CorralError, match=r"event 2 of run 'r1' is not a valid event"):
        lazy[1]


async def test_a_lazy_read_decodes_each_event_once_and_reads_like_a_list(
    store: SqliteStore,
) -> None:
    await store.append(started("r1"))
    for i in range(4):
        await store.append(proposed("r1", call_id=f"c{i}"))
    lazy = await store.read_lazily("r1")
    eager = await store.read("r1")
    assert len(lazy) == 5
    assert lazy == eager and list(lazy) == eager
    assert lazy[-1].seq == 5 and lazy[1:3] == eager[1:3] and lazy[::2] == eager[::2]
    assert lazy[2] is lazy[2]  # decoded once, then kept
    with pytest.raises(IndexError):
        lazy[5]
    assert len(await store.read_lazily("unknown")) == 0


async def test_a_cancelled_waiting_append_leaves_a_consistent_journal(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.append, proposed("r1"))  # leads the batch
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.append(proposed("r2"))  # numbered and queued, then cancelled
    await store.append(proposed("r2", call_id="c2"))
    assert await seqs(store, "r1") == [1, 2]
    assert await seqs(store, "r2") == [1, 2, 3]


# -- several processes -----------------------------------------------------------------------------


async def test_a_second_store_on_the_same_file_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as first, SqliteStore(path) as second:
        await first.append(started("r1"))
        await first.append(gate_opened("r1"))
        assert await seqs(second, "r1") == [1, 2]
        assert [g.opened.gate_id for g in await second.gates()] == ["g1"]
        assert await second.decide_gate(decision("r1", by="second"))
        assert not await first.decide_gate(decision("r1", by="first"))
        # the run paused at the gate, so `first` numbers after the other's decision
        event = await first.append(proposed("r1"))
        assert event.seq == 4
        assert (await first.gate("g1")).decided.by == "second"  # type: ignore[union-attr]


_DECIDER = textwrap.dedent(
    """
    import sys, anyio
    from corral.events import GateDecided
    from corral.store._sqlite import SqliteStore

    async def main(path, who):
        async with SqliteStore(path) as store:
            decided = GateDecided(run_id="r1", gate_id="g1", call_id="c1",
                                  decision="approved", by=who, ts=5.0)
            print(await store.decide_gate(decided))

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def test_two_processes_deciding_one_gate_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as store:
        await store.append(started("r1"))
        await store.append(gate_opened("r1"))
        outputs: dict[str, str] = {}

        async def decide(who: str) -> None:
            done = await anyio.run_process(
                [sys.executable, "-c", _DECIDER, str(path), who], check=True
            )
            outputs[who] = done.stdout.decode().strip()

        async with anyio.create_task_group() as tg:
            for who in ("p1", "p2", "p3"):
                tg.start_soon(decide, who)
        assert sorted(outputs.values()) == ["False", "False", "True"]
        winner = next(who for who, out in outputs.items() if out == "True")
        events = await store.read("r1")
        assert [e.kind for e in events] == ["run_started", "gate_opened", "gate_decided"]
        assert isinstance(events[2], GateDecided) and events[2].by == winner
        assert (await store.get_run("r1")).status == "running"  # type: ignore[union-attr]


_APPENDER = textwrap.dedent(
    """
    import sys, anyio
    from corral.events import RunStarted, ToolCallProposed
    from corral.store._sqlite import SqliteStore

    async def main(path):
        async with SqliteStore(path) as store:
            await store.append(RunStarted(run_id="r1", agent="a", task="t", ts=1.0))
            for i in range(1_000_000):
                event = ToolCallProposed(run_id="r1", step=i, call_id=f"c{i}", tool="t", ts=2.0)
                event = await store.append(event, wait=i % 4 == 0)
                if i % 4 == 0:
                    print(event.seq, flush=True)  # acknowledged: committed

    anyio.run(main, sys.argv[1])
    """
)


async def test_a_killed_process_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    acknowledged = 0
    async with await anyio.open_process([sys.executable, "-c", _APPENDER, str(path)]) as proc:
        assert proc.stdout is not None
        buffered = b""
        async for chunk in proc.stdout:
            buffered += chunk
            lines = buffered.split(b"\n")
            if len(lines) > 300:
                proc.kill()  # SIGKILL, mid-stream
                acknowledged = max(int(line) for line in lines[:-1])
                break
        await proc.wait()
    async with SqliteStore(path) as store:
        numbers = await seqs(store, "r1")
        assert numbers == list(range(1, len(numbers) + 1))  # gap-free
        assert len(numbers) >= acknowledged
        event = await store.append(proposed("r1", call_id="after"))
        assert event.seq == len(numbers) + 1


async def test_two_stores_appending_at_once_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as first, SqliteStore(path) as second:

        async def run(store: SqliteStore, run_id: str) -> None:
            await store.append(started(run_id))
            for i in range(20):
                await store.append(proposed(run_id, call_id=f"c{i}"), wait=i % 2 == 0)
            await store.append(finished(run_id))

        async with anyio.create_task_group() as tg:
            for r in range(20):
                tg.start_soon(run, first, f"a{r}")
                tg.start_soon(run, second, f"b{r}")
        for r in range(20):
            assert await seqs(first, f"b{r}") == list(range(1, 23))
            assert await seqs(second, f"a{r}") == list(range(1, 23))
        assert len(await first.runs(status="finished", limit=100)) == 40


async def test_concurrent_deciders_in_one_process_exactly_one_wins(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(gate_opened("r1"))
    wins: list[str] = []

    async def decide(who: str) -> None:
        if await store.decide_gate(decision("r1", by=who)):
            wins.append(who)

    async with anyio.create_task_group() as tg:
        for who in ("a", "b", "c", "d"):
            tg.start_soon(decide, who)
    assert len(wins) == 1
    assert [e.kind for e in await store.read("r1")].count("gate_decided") == 1


async def test_appends_racing_a_decision_on_the_same_run_stay_gap_free(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(gate_opened("r1"))
    await store.append(wait_started("r1", "k"))
    outcomes: list[object] = []

    async def appender() -> None:
        for i in range(30):
            await store.append(proposed("r1", call_id=f"c{i}"), wait=i % 2 == 0)

    async def decide() -> None:
        outcomes.append(await store.decide_gate(decision("r1")))

    async def deliver() -> None:
        outcomes.append(await store.deliver("k", {"x": 1}, now=5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(appender)
        tg.start_soon(decide)
        tg.start_soon(deliver)
        tg.start_soon(appender)
    assert sorted(map(str, outcomes)) == ["True", "r1"]
    assert await seqs(store, "r1") == list(range(1, 66))


async def test_a_counter_read_while_a_decision_lands_is_read_again(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that reads the run's last seq from the file while a conditional append
    writes after it must not number from the stale value (a duplicate seq, a lost event)."""
    import corral.store._sqlite_sql as sqlite_module

    await store.append(started("r1"))
    await store.append(wait_started("r1", "k"))
    await store.append(gate_opened("r1"))
    assert await store.decide_gate(decision("r1"))  # the run's counter is now unknown: 4
    read, release = anyio.Event(), anyio.Event()
    real_call = sqlite_module.call

    async def stalled_call(db: Any, fn: Any, *args: Any) -> Any:
        result = await real_call(db, fn, *args)
        if fn is sqlite_module.max_seq and not read.is_set():
            read.set()  # the first counter read has its answer (4) ...
            await release.wait()  # ... and is held until the delivery has landed
        return result

    monkeypatch.setattr(sqlite_module, "call", stalled_call)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.append, proposed("r1", call_id="late"))
        await read.wait()
        assert await store.deliver("k", {"ok": True}, now=6.0) == "r1"  # writes seq 5
        release.set()
    assert await seqs(store, "r1") == [1, 2, 3, 4, 5, 6]
    assert [e.kind for e in await store.read("r1")][-2:] == ["wait_resolved", "tool_call_proposed"]


async def test_a_decision_must_name_the_gates_run(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    await store.append(gate_opened("r1"))
    with pytest.raises(UsageError, match="belongs to run 'r1'"):
        await store.decide_gate(decision("r2"))
    assert not await store.decide_gate(decision("r1", gate_id="nope"))


# -- schema ----------------------------------------------------------------------------------------


async def test_a_new_file_gets_the_whole_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "j.db"
    async with SqliteStore(path):
        pass
    conn = raw(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "runs", "gates", "waits", "blobs", "blob_refs", "breakers"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"runs_status", "runs_wake", "gates_open_expiry", "waits_open"} <= indexes
    finally:
        conn.close()
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path):
        pass
    conn = raw(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await SqliteStore(path).open()


async def test_files_that_are_not_corral_stores_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database " * 100)
    with pytest.raises(ConfigError, match="cannot open the store"):
        await SqliteStore(text).open()
    other = tmp_path / "other.db"
    conn = raw(other)
    conn.execute("PRAGMA application_id = 42")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ConfigError, match="another application"):
        await SqliteStore(other).open()
    clash = tmp_path / "clash.db"
    conn = raw(clash)
    conn.execute("CREATE TABLE events (x)")
    conn.close()
    with pytest.raises(ConfigError, match="already exists"):
        await SqliteStore(clash).open()
    conn = raw(clash)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # nothing half-done
    conn.close()


async def test_a_version_1_file_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = raw(path)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    run_started = started("r1").model_copy(update={"seq": 1})
    opened = gate_opened("r1").model_copy(update={"seq": 2})
    waiting = started("r2").model_copy(update={"seq": 1})
    waits = wait_started("r2", "pay:2").model_copy(update={"seq": 2})
    for event in (run_started, opened, waiting, waits):
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            (event.run_id, event.seq, event.kind, event.ts, EventAdapter.dump_json(event).decode()),
        )
    for run_id, status in (("r1", "waiting"), ("r2", "waiting")):
        conn.execute(
            "INSERT INTO runs (run_id, agent, tenant, task, status, created_at, updated_at) "
            "VALUES (?, 'billing', 'default', 't', ?, 1, 3)",
            (run_id, status),
        )
    conn.execute(
        "INSERT INTO gates VALUES ('g1', 'r1', 'open', ?, NULL, 3, 100)",
        (opened.model_dump_json(),),
    )
    conn.execute("INSERT INTO waits VALUES ('pay:2', 'r2', ?, 100)", (waits.model_dump_json(),))
    conn.execute("INSERT INTO deliveries VALUES ('early', '{\"a\": 1}', 7)")
    conn.execute("INSERT INTO blobs VALUES ('d', 1, x'00')")
    conn.close()

    async with SqliteStore(path) as store:
        (gate,) = await store.gates()
        assert gate.opened == opened and gate.status == "open"
        assert [w.started.key for w in await store.waits()] == ["pay:2"]
        assert await store.take_delivery("early") == (True, {"a": 1})
        assert (await store.get_run("r1")).last_seq == 2  # type: ignore[union-attr]
        assert await store.decide_gate(decision("r1"))
        assert await seqs(store, "r1") == [1, 2, 3]
        assert await store.deliver("pay:2", {"ok": True}, now=8.0) == "r2"
        assert (await store.get_run("r2")).status == "running"  # type: ignore[union-attr]
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_events_are_append_only(tmp_path: Path, store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    await store.append(finished("r2"))
    conn = raw(tmp_path / "journal.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="has not finished"):
            conn.execute("DELETE FROM events WHERE run_id = 'r1'")
        conn.execute("DELETE FROM events WHERE run_id = 'r2'")  # retention may
    finally:
        conn.close()


async def test_bytes_per_step_do_not_grow_with_run_length(tmp_path: Path) -> None:
    async def per_step(name: str, runs: int, steps: int) -> float:
        async with SqliteStore(tmp_path / name) as store:
            before = await store.size_bytes()
            for r in range(runs):
                await store.append(started(f"run-{r:04d}"), wait=False)
                for i in range(steps):
                    await store.append(proposed(f"run-{r:04d}", call_id=f"c{i:04d}"), wait=False)
            await store.flush()
            return (await store.size_bytes() - before) / (runs * steps)

    short, long = await per_step("short.db", 100, 10), await per_step("long.db", 5, 200)
    assert abs(long - short) / short < 0.15


# -- runs, gates, waits ----------------------------------------------------------------------------


async def test_the_runs_index_follows_the_events(store: SqliteStore) -> None:
    await store.append(started("r1", ts=10.0, tenant="acme"))
    await store.append(started("r2", ts=11.0))
    run = await store.get_run("r1")
    assert run is not None and run.status == "running" and run.tenant == "acme"
    assert run.created_at == 10.0 and run.last_seq == 1

    await store.append(gate_opened("r1", ts=12.0))
    assert (await store.get_run("r1")).status == "waiting"  # type: ignore[union-attr]
    assert await store.decide_gate(decision("r1", ts=13.0))
    assert (await store.get_run("r1")).status == "running"  # type: ignore[union-attr]
    await store.append(wait_started("r1", "pay:1", ts=14.0))
    assert (await store.get_run("r1")).status == "waiting"  # type: ignore[union-attr]
    assert [r.run_id for r in await store.runs(status="waiting")] == ["r1"]
    assert await store.deliver("pay:1", {"ok": 1}, now=15.0) == "r1"
    await store.append(finished("r1", ts=16.0, outcome="stopped_budget"))

    run = await store.get_run("r1")
    assert run is not None
    assert (run.status, run.outcome, run.updated_at, run.last_seq) == (
        "finished",
        "stopped_budget",
        16.0,
        6,
    )
    assert await store.unfinished_runs() == ["r2"]
    assert [r.run_id for r in await store.runs()] == ["r2", "r1"]  # newest first
    assert [r.run_id for r in await store.runs(status="finished")] == ["r1"]
    assert [r.run_id for r in await store.runs(limit=1)] == ["r2"]
    assert await store.get_run("nope") is None


async def test_unfinished_runs_oldest_first(store: SqliteStore) -> None:
    for r, ts in (("b", 2.0), ("a", 1.0), ("c", 3.0), ("d", 4.0)):
        await store.append(started(r, ts=ts))
    await store.append(gate_opened("c"))
    await store.append(finished("d"))
    assert await store.unfinished_runs() == ["a", "b", "c"]


async def test_gates_listing_and_expiry(store: SqliteStore) -> None:
    for r in ("r1", "r2", "r3"):
        await store.append(started(r))
    await store.append(gate_opened("r1", "g1", expires_at=50.0))
    await store.append(gate_opened("r2", "g2", expires_at=60.0))
    await store.append(gate_opened("r3", "g3", expires_at=200.0))
    assert [g.opened.gate_id for g in await store.gates()] == ["g1", "g2", "g3"]
    assert [g.opened.gate_id for g in await store.gates(run_id="r2")] == ["g2"]
    assert await store.decide_gate(decision("r2", "g2", decision="rejected"))

    expired = await store.expire_gates(100.0, note="no decision within 48 h")
    assert [(g.opened.gate_id, g.status) for g in expired] == [("g1", "expired")]
    assert expired[0].decided is not None and expired[0].decided.note.startswith("no decision")
    assert await store.expire_gates(100.0) == []
    assert [(g.opened.gate_id, g.status) for g in await store.gates(status=None)] == [
        ("g1", "expired"),
        ("g2", "rejected"),
        ("g3", "open"),
    ]
    assert [g.opened.gate_id for g in await store.gates(status="expired")] == ["g1"]
    assert [e.kind for e in await store.read("r1")][-1] == "gate_decided"
    assert (await store.get_run("r1")).status == "running"  # type: ignore[union-attr]
    assert await store.gate("nope") is None


async def test_delivery_after_the_wait_started_resolves_it(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(wait_started("r1", "pay:1"))
    assert [w.run_id for w in await store.waits()] == ["r1"]
    assert await store.take_delivery("pay:1") == (False, None)
    assert await store.deliver("pay:1", {"status": "paid"}, now=20.0) == "r1"
    resolved = (await store.read("r1"))[-1]
    assert isinstance(resolved, WaitResolved)
    assert (resolved.payload, resolved.call_id, resolved.tool, resolved.ts) == (
        {"status": "paid"},
        "c2",
        "await_payment",
        20.0,
    )
    assert await store.waits() == []
    # idempotent: a second delivery changes nothing
    assert await store.deliver("pay:1", {"status": "second copy"}, now=21.0) is None
    assert len(await store.read("r1")) == 3
    row = await store.get_wait("pay:1")
    assert row is not None and row.payload == {"status": "paid"} and not row.open


async def test_delivery_before_the_wait_started_is_kept_for_it(store: SqliteStore) -> None:
    assert await store.deliver("pay:1", {"status": "paid"}, now=1.0) is None
    assert await store.deliver("pay:1", {"status": "second copy"}, now=2.0) is None
    row = await store.get_wait("pay:1")
    assert row is not None and row.run_id is None and row.payload == {"status": "paid"}
    await store.append(started("r1"))
    await store.append(wait_started("r1", "pay:1"))
    # the runtime takes it and resolves; taking does not lose it before the resolution
    assert await store.take_delivery("pay:1") == (True, {"status": "paid"})
    assert await store.take_delivery("pay:1") == (True, {"status": "paid"})
    resolution = WaitResolved(
        run_id="r1",
        call_id="c2",
        tool="await_payment",
        key="pay:1",
        payload={"status": "paid"},
        ts=6.0,
    )
    assert await store.resolve_wait(resolution)
    assert not await store.resolve_wait(resolution)
    assert await store.take_delivery("pay:1") == (False, None)
    assert (await store.get_run("r1")).status == "running"  # type: ignore[union-attr]


async def test_a_wait_left_open_over_a_kept_delivery_is_resolved_by_a_redelivery(
    store: SqliteStore,
) -> None:
    assert await store.deliver("pay:1", {"n": 1}, now=1.0) is None
    await store.append(started("r1"))
    await store.append(wait_started("r1", "pay:1"))  # ...and the process stopped here
    assert await store.deliver("pay:1", {"n": 2}, now=3.0) == "r1"
    resolved = (await store.read("r1"))[-1]
    assert isinstance(resolved, WaitResolved) and resolved.payload == {"n": 1}


async def test_a_key_can_be_waited_on_again_after_its_wait_resolved(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(wait_started("r1", "ci"))
    assert await store.deliver("ci", "green", now=1.0) == "r1"
    await store.append(started("r2"))
    await store.append(wait_started("r2", "ci"))
    assert await store.take_delivery("ci") == (False, None)  # the old payload is not reused
    assert await store.deliver("ci", "red", now=2.0) == "r2"


async def test_a_key_is_awaited_by_one_run_at_a_time(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    await store.append(wait_started("r1", "ci"))
    with pytest.raises(CorralError, match="another run already waits on this key"):
        await store.append(wait_started("r2", "ci"))
    assert [(w.run_id, w.started.key) for w in await store.waits()] == [("r1", "ci")]
    assert await store.deliver("ci", "green", now=1.0) == "r1"
    await store.append(wait_started("r2", "ci"))  # resolved: the key is free again
    assert await store.deliver("ci", "red", now=2.0) == "r2"


async def test_waits_time_out(store: SqliteStore) -> None:
    await store.append(started("r1"))
    await store.append(started("r2"))
    await store.append(wait_started("r1", "a", expires_at=10.0))
    await store.append(wait_started("r2", "b", expires_at=99.0))
    (timed_out,) = await store.expire_waits(50.0)
    assert (timed_out.run_id, timed_out.key, timed_out.timed_out) == ("r1", "a", True)
    assert await store.expire_waits(50.0) == []
    assert [w.started.key for w in await store.waits()] == ["b"]
    assert await store.deliver("a", "late", now=60.0) is None


async def test_a_payload_that_is_not_json_is_refused(store: SqliteStore) -> None:
    with pytest.raises(UsageError, match="not JSON"):
        await store.deliver("k", object(), now=1.0)


# -- blobs -----------------------------------------------------------------------------------------


async def test_blobs_are_stored_once_by_content(tmp_path: Path, store: SqliteStore) -> None:
    data = os.urandom(100_000)
    digest = await store.put_blob(data)
    assert await store.put_blob(data) == digest and len(digest) == 64
    assert await store.get_blob(digest) == data
    assert await store.get_blob("0" * 64) is None
    assert await store.put_blob(b"") != digest
    conn = raw(tmp_path / "journal.db")
    assert conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 2
    conn.execute("UPDATE blobs SET data = x'00' WHERE digest = ?", (digest,))
    conn.close()
    with pytest.raises(CorralError, match="corrupt"):
        await store.get_blob(digest)


async def test_breaker_states_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as store:
        assert await store.load_breakers() == {}
        await store.save_breakers({"lookup": {"state": "open", "failures": 5, "opened_at": 1.5}})
        await store.save_breakers(
            {"lookup": {"state": "half_open", "failures": 5}, "refund": {"state": "closed"}}
        )
        with pytest.raises(UsageError, match="JSON"):
            await store.save_breakers({"bad": {"x": object()}})
    async with SqliteStore(path) as store:
        assert await store.load_breakers() == {
            "lookup": {"state": "half_open", "failures": 5},
            "refund": {"state": "closed"},
        }
        await store.save_breakers({})
        assert await store.load_breakers() == {}


# -- leases and timers -----------------------------------------------------------------------------


async def test_leases(store: SqliteStore) -> None:
    await store.append(started("r1"))
    assert await store.claim("r1", "A", lease_s=30, now=100)
    assert not await store.claim("r1", "B", lease_s=30, now=110)  # live
    assert await store.claim("r1", "A", lease_s=30, now=120)  # renewal
    assert not await store.claim("r1", "B", lease_s=30, now=149)
    assert await store.claim("r1", "B", lease_s=30, now=150)  # expired: taken over
    run = await store.get_run("r1")
    assert run is not None and (run.owner, run.lease_until) == ("B", 180)
    await store.release("r1", "A")  # not A's any more: nothing happens
    assert (await store.get_run("r1")).owner == "B"  # type: ignore[union-attr]
    await store.release("r1", "B")
    assert await store.claim("r1", "C", lease_s=30, now=151)
    await store.append(finished("r1"))
    run = await store.get_run("r1")
    assert run is not None and run.owner is None
    assert not await store.claim("r1", "C", lease_s=30, now=152)
    assert not await store.claim("nope", "C", lease_s=30, now=152)


async def test_claiming_runs_ready_to_drive(store: SqliteStore) -> None:
    for r, ts in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("e", 5.0)):
        await store.append(started(r, ts=ts))
    await store.append(gate_opened("c"))  # waiting: nobody needs to drive it
    assert await store.set_wake("d", 500.0)  # sleeping on a retry timer
    assert await store.claim("e", "B", lease_s=30, now=100)
    assert await store.claim_runs("A", lease_s=30, now=100) == ["a", "b"]
    assert await store.claim_runs("A", lease_s=30, now=101) == ["a", "b"]  # its own again
    assert await store.claim_runs("C", lease_s=30, now=110, limit=5) == []
    assert await store.claim_runs("C", lease_s=30, now=131, limit=1) == ["a"]  # A's expired
    assert await store.renew_leases("A", lease_s=30, now=131) == 1
    assert await store.claim_runs("C", lease_s=30, now=140) == ["a", "e"]  # b renewed
    assert await store.claim_runs("C", lease_s=30, now=600) == ["a", "b", "d", "e"]
    assert await store.claim_many(["a", "c", "nope"], "D", lease_s=30, now=700) == ["a", "c"]


async def test_durable_timers(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as store:
        for r in ("a", "b", "c"):
            await store.append(started(r))
        assert await store.set_wake("a", 30.0)
        assert await store.set_wake("b", 10.0)
        assert await store.set_wake("c", 20.0)
        assert not await store.set_wake("nope", 1.0)
        await store.append(finished("c"))
    async with SqliteStore(path) as store:  # the timer survives a restart
        assert await store.due_runs(5.0) == []
        assert await store.due_runs(40.0) == ["b", "a"]
        assert await store.set_wake("b", None)
        assert await store.due_runs(40.0) == ["a"]
        assert not await store.set_wake("c", 1.0)  # finished


# -- retention -------------------------------------------------------------------------------------


async def test_prune_finished_runs_and_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path, clock=MockClock(start=10.0)) as store:
        old_blob = await store.put_blob(b"old result" * 1000)
        kept_blob = await store.put_blob(b"kept result")
        await store.append(started("old", ts=100.0))
        await store.append(gate_opened("old", "g-old"))
        for i in range(200):
            await store.append(
                ToolCallFinished(
                    run_id="old",
                    step=i,
                    call_id=f"c{i}",
                    tool="t",
                    attempt=1,
                    content="x" * 2000,
                    duration_s=0.0,
                    result_blob=old_blob,
                    ts=100.0,
                ),
                wait=False,
            )
        await store.append(finished("old", ts=200.0))
        await store.append(started("new", ts=300.0))
        await store.append(
            ToolCallFinished(
                run_id="new",
                step=1,
                call_id="c1",
                tool="t",
                attempt=1,
                content="",
                duration_s=0.0,
                result_blob=kept_blob,
                ts=300.0,
            )
        )
        await store.append(finished("new", ts=900.0))
        await store.append(started("running", ts=50.0))  # old, but not finished
        await store.deliver("forgotten", 1, now=10.0)
        await store.deliver("recent", 1, now=990.0)
        used = await store.size_bytes()

        assert await store.prune(older_than_s=500.0, now=1000.0) == 1
        assert await store.read("old") == []
        assert await store.get_run("old") is None
        assert await store.gates(status=None) == []
        assert await store.get_blob(old_blob) is None
        assert await store.get_blob(kept_blob) == b"kept result"
        assert await store.get_wait("forgotten") is None
        assert await store.get_wait("recent") is not None
        assert await seqs(store, "new") == [1, 2, 3]
        assert await store.unfinished_runs() == ["running"]
        assert await store.size_bytes() < used / 2
        before = path.stat().st_size + Path(f"{path}-wal").stat().st_size
        await store.vacuum()
        after = path.stat().st_size + Path(f"{path}-wal").stat().st_size
        assert after < before / 2
        assert await store.prune(older_than_s=0.0, now=1000.0) == 1  # "new"
        assert await store.prune(older_than_s=0.0, now=1000.0) == 0


async def test_pruning_many_runs_goes_in_several_transactions(store: SqliteStore) -> None:
    for r in range(1200):
        await store.append(started(f"r{r}"), wait=False)
        await store.append(finished(f"r{r}"), wait=False)
    assert await store.prune(older_than_s=0.0, now=100.0) == 1200
    assert await store.runs() == []


# -- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///corral.db", "corral.db"),
        ("sqlite:///relative/dir/x.db", "relative/dir/x.db"),
        ("sqlite:////abs/path/x.db", "/abs/path/x.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLite:///my%20dir/x.db", "my dir/x.db"),
        ("  sqlite:///x.db  ", "x.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url, env={})
    assert store.path == path and store.synchronous == "NORMAL"


def test_url_options() -> None:
    store = open_store("sqlite:///x.db?synchronous=full&busy_timeout=2.5", env={})
    assert store.synchronous == "FULL" and store.busy_timeout_s == 2.5


def test_the_default_url_comes_from_the_environment_mapping() -> None:
    assert DEFAULT_DB_URL == "sqlite:///corral.db"
    assert open_store(env={}).path == "corral.db"
    assert open_store(env={"CORRAL_DB": ""}).path == "corral.db"
    assert open_store(env={"CORRAL_DB": "sqlite:////srv/c.db"}).path == "/srv/c.db"
    assert open_store("sqlite:///arg.db", env={"CORRAL_DB": "sqlite:////srv/c.db"}).path == (
        "arg.db"
    )
    assert isinstance(journal_from_url(env={"CORRAL_DB": "memory://"}), MemoryJournal)
    assert isinstance(journal_from_url("memory://", env={}), MemoryJournal)
    assert isinstance(journal_from_url("sqlite:///x.db", env={}), SqliteStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://user:secret@db.example/corral", "use journal_from_url"),
        ("postgres://db/corral", "use journal_from_url"),
        ("postgresql+asyncpg://db/corral", "use journal_from_url"),
        ("mysql://x", "unknown journal URL"),
        ("corral.db", "unknown journal URL"),
        ("sqlite://", "no file named"),
        ("sqlite:///", "no file named"),
        ("sqlite://host/x.db", "not a host"),
        ("sqlite:///x.db#frag", "fragment"),
        ("sqlite:///x.db?mode=ro", "unknown option 'mode'"),
        ("sqlite:///x.db?synchronous=OFF", "NORMAL or FULL"),
        ("sqlite:///x.db?busy_timeout=-1", "busy_timeout"),
        ("sqlite:///x.db?busy_timeout=inf", "busy_timeout"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        open_store(url, env={})
    assert "secret" not in str(caught.value)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="synchronous"):
        SqliteStore("x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive"):
        SqliteStore("x.db", max_pending_events=0)


async def test_a_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///sub/rel.db?synchronous=FULL", env={}) as store:
        await store.append(started("r1"))
    assert (tmp_path / "sub" / "rel.db").exists()
    async with open_store(f"sqlite:///{tmp_path / 'sub' / 'rel.db'}", env={}) as store:
        assert await seqs(store, "r1") == [1]


@pytest.mark.parametrize("update_from", [True, False])
async def test_a_batch_keeps_every_runs_index_row_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool
) -> None:
    """Many runs in one batch: each run's row gets its own last seq and time (with one
    ``UPDATE ... FROM``, or row by row on SQLite older than 3.33)."""
    import corral.store._sqlite_sql as sqlite_module

    monkeypatch.setattr(sqlite_module, "UPDATE_FROM", update_from)
    async with SqliteStore(tmp_path / "j.db") as store:
        for r in range(300):  # more than one multi-row statement's worth
            await store.append(started(f"r{r}"), wait=False)
            for i in range(r % 3):
                await store.append(proposed(f"r{r}", call_id=f"c{i}", ts=10.0 + i), wait=False)
        await store.flush()
    conn = raw(tmp_path / "j.db")
    try:
        rows = dict(
            (run_id, (last, updated))
            for run_id, last, updated in conn.execute(
                "SELECT run_id, last_seq, updated_at FROM runs"
            )
        )
        count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    assert count == sum(1 + r % 3 for r in range(300))
    for r in range(300):
        extra = r % 3
        assert rows[f"r{r}"] == (1 + extra, 10.0 + extra - 1 if extra else 1.0)


async def test_a_journal_from_before_the_budget_events_were_folded_still_reads(
    store: SqliteStore,
) -> None:
    """Older journals have budget_reserved / budget_settled events around each model call:
    they still decode, and the fold ignores them."""
    from corral.subagents import RunState

    await store.append(started("r1"))
    await store.append(BudgetReserved(run_id="r1", step=1, tokens=500, max_tokens=200, ts=1.1))
    response = ModelResponse(text="done", usage=Usage(input_tokens=3, output_tokens=2))
    await store.append(
        ModelCalled(
            run_id="r1",
            step=1,
            model="m",
            response=response.model_dump(mode="json"),  # (the journal keeps its own record)
            duration_s=0.1,
            ts=1.2,
        )
    )
    await store.append(BudgetSettled(run_id="r1", step=1, reserved=500, used=5, ts=1.3))
    events = await store.read("r1")
    assert [e.kind for e in events] == [
        "run_started",
        "budget_reserved",
        "model_called",
        "budget_settled",
    ]
    state = RunState.fold("r1", events)
    assert state.answer == "done" and state.tokens == 5 and state.model_calls == 1


def test_a_journal_that_must_exist_is_refused_and_not_created(tmp_path) -> None:
    from corral.errors import UsageError
    from corral.store import journal_from_url

    path = tmp_path / "typo.db"
    with pytest.raises(UsageError, match="no journal at .*typo.db"):
        journal_from_url(f"sqlite:///{path}", must_exist=True)
    assert not path.exists()
    path.write_bytes(b"")
    assert journal_from_url(f"sqlite:///{path}", must_exist=True) is not None
