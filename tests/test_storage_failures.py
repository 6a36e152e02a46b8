"""Storage failures on real SQLite files: a full disk, a lock held too long, an I/O error.

Each ends the affected runs (or raises to the caller) promptly with a `JournalError`
naming the database and SQLite's error, never a hang; what was committed stays intact, and
a run whose events could not be written stays unfinished, for a later Runtime to resume.

The failures are real: ``SQLITE_FULL`` from SQLite's ``max_page_count`` (the store's
`max_size_bytes`) once another connection has taken the room; ``SQLITE_BUSY`` from a
second connection holding ``BEGIN EXCLUSIVE``; ``SQLITE_IOERR_WRITE`` from the kernel
refusing a write (``EFBIG``) under a file-size limit (``RLIMIT_FSIZE``), in a subprocess.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Guards, MockClock, Runtime, SubAgent, tool
from corral.actors import RestartPolicy
from corral.errors import ConfigError, JournalError
from corral.events import RunFinished, RunStarted, ToolCallProposed
from corral.models import ScriptedModel, call
from corral.store import SqliteStore, open_store

MAX_SIZE = 512 * 1024
"""The store's size cap in these tests: small, so filling it is cheap."""

LONG_ANSWER = "All invoices reconciled. " * 400
"""A final answer of 10 KB: its run_finished needs new pages, so a full file refuses it."""


def started(run_id: str) -> RunStarted:
    return RunStarted(run_id=run_id, agent="billing", task=f"task of {run_id}", ts=1.0)


def proposed(run_id: str, call_id: str, *, size: int = 0) -> ToolCallProposed:
    return ToolCallProposed(
        run_id=run_id,
        step=1,
        call_id=call_id,
        tool="lookup",
        arguments={"id": call_id, "pad": "x" * size},
        ts=2.0,
    )


def raw(path: Path) -> sqlite3.Connection:
    """A second, plain connection: another program using the same file (or disk)."""
    return sqlite3.connect(path, isolation_level=None, timeout=0)


def take_the_room(path: Path) -> None:
    """Another connection fills the file up to (and past) the store's cap."""
    other = raw(path)
    try:
        other.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
        other.execute("INSERT INTO filler VALUES (zeroblob(?))", (MAX_SIZE,))
    finally:
        other.close()


def give_the_room_back(path: Path) -> None:
    other = raw(path)
    try:
        other.execute("DROP TABLE filler")  # its pages go to the free list, for reuse
    finally:
        other.close()


async def committed(path: Path, run_id: str) -> list[Any]:
    """The run's events as a fresh store on the file reads them (what a restart would see)."""
    async with SqliteStore(path) as fresh:
        return await fresh.read(run_id)


async def status(path: Path, run_id: str) -> str | None:
    async with SqliteStore(path) as fresh:
        row = await fresh.get_run(run_id)
        return None if row is None else row.status


# -- the store -----------------------------------------------------------------------------------


async def test_a_full_file_fails_the_append_naming_database_run_and_sqlite_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with SqliteStore(path, max_size_bytes=MAX_SIZE) as store:
        await store.append(started("r1"))
        await store.append(proposed("r1", "kept"))
        take_the_room(path)
        began = time.perf_counter()
        with pytest.raises(JournalError) as caught:
            await store.append(proposed("r1", "lost", size=20_000))
        elapsed = time.perf_counter() - began
        error = caught.value
        assert error.sqlite_error == "SQLITE_FULL"
        assert error.path == str(path) and error.run_id == "r1"
        assert str(path) in str(error) and "events 3..3 of run 'r1' were not written" in str(error)
        assert "database or disk is full (SQLITE_FULL)" in str(error)
        assert f"max_size_bytes={MAX_SIZE}" in str(error)
        assert isinstance(error.__cause__, sqlite3.OperationalError)
        assert elapsed < 1.0  # no waiting, no retrying: the disk is full
        # What was committed is intact, as another process reading the file sees it.
        assert [getattr(e, "call_id", None) for e in await committed(path, "r1")] == [None, "kept"]
        # Room again: the store goes on, numbering after the last committed event.
        give_the_room_back(path)
        again = await store.append(proposed("r1", "again", size=20_000))
        assert again.seq == 3
    assert [getattr(e, "call_id", None) for e in await committed(path, "r1")] == [
        None,
        "kept",
        "again",
    ]


async def test_a_lock_held_past_the_busy_timeout_fails_the_append_naming_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with SqliteStore(path, busy_timeout_s=0.2) as store:
        await store.append(started("r1"))
        blocker = raw(path)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            began = time.perf_counter()
            with pytest.raises(JournalError) as caught:
                await store.append(proposed("r1", "lost"))
            elapsed = time.perf_counter() - began
            error = caught.value
            assert error.sqlite_error == "SQLITE_BUSY" and error.run_id == "r1"
            assert str(path) in str(error)
            assert "database is locked (SQLITE_BUSY)" in str(error)
            assert "held the database's write lock for longer than the busy timeout (0.2 s)" in (
                str(error)
            )
            assert 0.15 <= elapsed < 1.5  # waited for the lock as configured, then gave up
            # Every write says so, not only appends; reads are not blocked (WAL).
            with pytest.raises(JournalError, match="write lock.*busy timeout"):
                await store.claim("r1", "me", lease_s=30, now=10.0)
            assert [e.seq for e in await store.read("r1")] == [1]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        event = await store.append(proposed("r1", "after"))
        assert event.seq == 2


def test_busy_timeout_and_max_size_are_url_options() -> None:
    store = open_store("sqlite:///x.db?busy_timeout=0.25&max_size_mb=1.5", env={})
    assert store.busy_timeout_s == 0.25
    assert store.max_size_bytes == int(1.5 * 2**20)
    assert open_store("sqlite:///x.db", env={}).max_size_bytes is None
    for bad in ("0", "-2", "nan", "big"):
        with pytest.raises(ConfigError, match="max_size_mb must be MiB > 0"):
            open_store(f"sqlite:///x.db?max_size_mb={bad}", env={})
    with pytest.raises(ConfigError, match="max_size_bytes must be positive"):
        SqliteStore("x.db", max_size_bytes=0)


# -- runs ----------------------------------------------------------------------------------------


def billing_agent(model: ScriptedModel, *tools: Any) -> SubAgent:
    return SubAgent(
        "billing",
        instructions="Reconcile invoices. Use the tools.",
        tools=list(tools),
        model=model,
    )


async def test_a_full_disk_ends_the_run_promptly_and_a_later_runtime_resumes_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    filled: list[float] = []

    @tool
    async def list_invoices(customer: str) -> str:
        """List a customer's unpaid invoices."""
        if not filled:  # while the run works, another program takes the disk's room
            take_the_room(path)
            filled.append(time.perf_counter())
        return "INV-000101, INV-000102"

    model = ScriptedModel(
        ["Nothing to reconcile.", call("list_invoices", customer="Acme"), LONG_ANSWER]
    )
    store = SqliteStore(path, max_size_bytes=MAX_SIZE)
    async with store:
        clock = MockClock()
        runtime = Runtime(
            agents=[billing_agent(model, list_invoices)],
            journal=store,
            clock=clock,
            durability=Durability(poll_interval_s=None, owner="first"),
        )
        with anyio.fail_after(10):
            async with runtime:
                done = await runtime.run("Reconcile Globex")  # committed before the disk fills
                assert done.ok
                handle = await runtime.submit("Reconcile Acme")
                with pytest.raises(JournalError) as caught:
                    await handle.result()
                seen = time.perf_counter()
                # Asking again is told at once too: the run is not driven here any more,
                # and this runtime does not retry it (each try would ask the model again).
                with pytest.raises(JournalError):
                    await runtime.wait(handle.run_id)
                assert await runtime.resume() == []
            exited = time.perf_counter()
    error = caught.value
    assert error.sqlite_error == "SQLITE_FULL" and error.path == str(path)
    assert error.run_id == handle.run_id
    assert handle.run_id in str(error) and "database or disk is full" in str(error)
    assert "stays unfinished in the journal" in str(error)
    assert seen - filled[0] < 1.0 and exited - seen < 1.0
    assert len(model.requests) == 3  # no restart loop asking the model again and again
    # The first run is intact; the second is unfinished in the file, not "failed".
    first = await committed(path, done.run_id)
    assert [e.seq for e in first] == [e.seq for e in done.events]
    assert isinstance(first[-1], RunFinished) and first[-1].outcome == "completed"
    assert await status(path, handle.run_id) == "running"
    assert await committed(path, handle.run_id)  # its start (and claim) were committed

    # The disk has room again: the next process resumes the run and finishes it.
    give_the_room_back(path)
    again = ScriptedModel([call("list_invoices", customer="Acme"), LONG_ANSWER])
    clock.advance(60)  # the first owner's lease, if it could not release it, has run out
    async with SqliteStore(path) as reopened:
        with anyio.fail_after(10):
            async with Runtime(
                agents=[billing_agent(again, list_invoices)],
                journal=reopened,
                clock=clock,
                durability=Durability(poll_interval_s=None, owner="second"),
            ) as later:
                result = await later.wait(handle.run_id)
    assert result.ok and result.output == LONG_ANSWER
    assert await status(path, handle.run_id) == "finished"


async def test_a_lock_held_past_the_busy_timeout_ends_the_run_and_the_runtime_still_exits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    blocker = raw(path)
    locked: list[float] = []
    busy = anyio.Event()

    @tool
    async def list_invoices(customer: str) -> str:
        """List a customer's unpaid invoices."""
        if not locked:  # the first time, a backup job takes the write lock, and keeps it
            blocker.execute("BEGIN EXCLUSIVE")
            locked.append(time.perf_counter())
        return "INV-000101"

    @tool(side_effect="write")
    async def export_ledger(period: str) -> str:
        """Export the ledger (slow: still running when the program exits)."""
        busy.set()
        await anyio.sleep_forever()
        return "never"

    def billing(model: ScriptedModel) -> SubAgent:
        return SubAgent("billing", instructions="Reconcile.", tools=[list_invoices], model=model)

    exporter = SubAgent(
        "exporter",
        instructions="Export.",
        tools=[export_ledger],
        model=ScriptedModel([call("export_ledger", period="2025-05")]),
    )
    model = ScriptedModel([call("list_invoices", customer="Acme"), "Done."])
    try:
        async with SqliteStore(path, busy_timeout_s=0.2) as store:
            runtime = Runtime(
                agents=[billing(model), exporter],
                journal=store,
                clock=MockClock(),
                guards=Guards(gated=()),
                durability=Durability(poll_interval_s=None),
            )
            with anyio.fail_after(10):
                async with runtime:
                    export = await runtime.submit("Export May", agent="exporter")
                    await busy.wait()  # its start is committed; it holds a lease here
                    with pytest.raises(JournalError) as caught:
                        await runtime.run("Reconcile Acme", agent="billing")
                    seen = time.perf_counter()
                left = time.perf_counter()  # the runtime exited, with the lock still held
            blocker.execute("ROLLBACK")  # the backup job ends
    finally:
        blocker.close()
    error = caught.value
    assert error.sqlite_error == "SQLITE_BUSY" and error.path == str(path)
    assert "held the database's write lock for longer than the busy timeout (0.2 s)" in str(error)
    assert 0.15 <= seen - locked[0] < 1.5  # the busy timeout, then the error: no hang
    assert left - seen < 1.5  # one try to release the exporter's lease, then it runs out
    assert len(model.requests) == 2  # asked once per step: no restarts replaying the run
    failed = error.run_id
    assert await status(path, failed) == "running"
    assert await status(path, export.run_id) == "running"
    assert [e.kind for e in await committed(path, export.run_id)][-1] == "tool_call_started"

    # The lock is gone: a later runtime resumes the run from what was committed.
    clock = MockClock()
    clock.advance(60)  # past every lease the first runtime held (30 s)
    again = ScriptedModel([call("list_invoices", customer="Acme"), "Done."])
    async with SqliteStore(path) as reopened:
        with anyio.fail_after(10):
            async with Runtime(
                agents=[billing(again)],
                journal=reopened,
                clock=clock,
                durability=Durability(poll_interval_s=None),
            ) as later:
                result = await later.wait(failed)
    assert result.ok and result.output == "Done."


IO_WORKER = textwrap.dedent(
    '''
    """Run two runs; during the second, the kernel starts refusing to grow files (EFBIG)."""

    import json, os, resource, signal, sys, time

    import anyio

    from corral import Durability, MockClock, Runtime, SubAgent, tool
    from corral.errors import JournalError
    from corral.models import ScriptedModel, call
    from corral.store import SqliteStore

    DB = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write fails; it does not kill us
    SOFT, HARD = resource.getrlimit(resource.RLIMIT_FSIZE)
    broken = []


    @tool
    async def list_invoices(customer: str) -> str:
        """List a customer's unpaid invoices."""
        if customer == "Acme" and not broken:
            # From here on no file may grow: the journal's next write-ahead-log frames are
            # refused by the kernel, as on a failing or over-quota disk.
            sizes = [os.path.getsize(DB + s) for s in ("", "-wal") if os.path.exists(DB + s)]
            resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes), HARD))
            broken.append(time.perf_counter())
        return "INV-000101"


    async def main() -> None:
        model = ScriptedModel(
            [call("list_invoices", customer="Globex"), "Globex done.",
             call("list_invoices", customer="Acme"), "Acme done."]
        )
        agent = SubAgent("billing", instructions="Reconcile.", tools=[list_invoices], model=model)
        out = {}
        async with SqliteStore(DB) as store:
            with anyio.fail_after(20):
                async with Runtime(
                    agents=[agent], journal=store, clock=MockClock(),
                    durability=Durability(poll_interval_s=None),
                ) as runtime:
                    first = await runtime.run("Reconcile Globex")
                    out["first"] = first.run_id
                    handle = await runtime.submit("Reconcile Acme")
                    try:
                        await handle.result()
                    except JournalError as exc:
                        out["after_s"] = time.perf_counter() - broken[0]
                        out["error"] = str(exc)
                        out["sqlite_error"] = exc.sqlite_error
                        out["run_id"] = exc.run_id
                    resource.setrlimit(resource.RLIMIT_FSIZE, (SOFT, HARD))  # the disk recovers
                    out["second"] = handle.run_id
                    out["model_requests"] = len(model.requests)
        print("RESULT " + json.dumps(out), flush=True)


    anyio.run(main)
    '''
)


async def test_an_io_error_ends_the_run_promptly_and_the_file_stays_sound(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    worker = tmp_path / "io_worker.py"
    worker.write_text(IO_WORKER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(worker), str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    out = json.loads(lines[-1].removeprefix("RESULT "))
    # A real I/O error from the kernel, reported as such, promptly, to the caller.
    assert out["sqlite_error"].startswith("SQLITE_IOERR"), out
    assert "disk I/O error" in out["error"] and str(path) in out["error"]
    assert out["run_id"] == out["second"] and "stays unfinished in the journal" in out["error"]
    assert out["after_s"] < 1.0
    assert out["model_requests"] == 4  # each step asked once: no restart loop
    # The file is sound, the first run intact, the second unfinished, and resumable.
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()
    first = await committed(path, out["first"])
    assert isinstance(first[-1], RunFinished) and first[-1].output == "Globex done."
    assert await status(path, out["second"]) == "running"
    clock = MockClock()
    clock.advance(60)  # past the worker's lease, if it could not release it

    @tool
    async def list_invoices(customer: str) -> str:
        """List a customer's unpaid invoices."""
        return "INV-000101"

    model = ScriptedModel([call("list_invoices", customer="Acme"), "Acme done."])
    async with SqliteStore(path) as reopened:
        with anyio.fail_after(10):
            async with Runtime(
                agents=[billing_agent(model, list_invoices)],
                journal=reopened,
                clock=clock,
                durability=Durability(poll_interval_s=None),
            ) as later:
                result = await later.wait(out["second"])
    assert result.ok and result.output == "Acme done."


async def test_runs_in_flight_when_the_disk_fills_each_end_promptly_and_agree_with_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    filled = anyio.Event()
    submitted = anyio.Event()

    @tool
    async def list_invoices(customer: str) -> str:
        """List a customer's unpaid invoices."""
        if customer == "Acme":
            await submitted.wait()
            take_the_room(path)
            filled.set()
        else:
            await filled.wait()  # the others are mid-run when the room runs out
        return "INV-000101"

    customers = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"]
    models = {
        c: ScriptedModel([call("list_invoices", customer=c), f"{c}: {LONG_ANSWER}"])
        for c in customers
    }
    agents = [
        SubAgent(c.lower(), instructions="Reconcile.", tools=[list_invoices], model=models[c])
        for c in customers
    ]
    outcomes: dict[str, Any] = {}
    async with SqliteStore(path, max_size_bytes=MAX_SIZE) as store:
        with anyio.fail_after(10):
            async with Runtime(
                agents=agents,
                journal=store,
                clock=MockClock(),
                durability=Durability(poll_interval_s=None),
            ) as runtime:
                handles = {
                    c: await runtime.submit(f"Reconcile {c}", agent=c.lower()) for c in customers
                }
                submitted.set()

                async def settle(customer: str) -> None:
                    try:
                        outcomes[customer] = await handles[customer].result()
                    except JournalError as exc:
                        outcomes[customer] = exc

                async with anyio.create_task_group() as tg:
                    for customer in customers:
                        tg.start_soon(settle, customer)
    failed = [c for c, o in outcomes.items() if isinstance(o, JournalError)]
    assert "Acme" in failed  # its 10 KB answer cannot fit
    for customer, outcome in outcomes.items():
        run_id = handles[customer].run_id
        if isinstance(outcome, JournalError):
            assert outcome.run_id == run_id and outcome.sqlite_error == "SQLITE_FULL"
            assert await status(path, run_id) == "running"
        else:
            assert outcome.ok  # it fitted: finished, in the file too, event for event
            assert await status(path, run_id) == "finished"
            assert [e.seq for e in await committed(path, run_id)] == [e.seq for e in outcome.events]
        # No run asked its model again: each step once (a run whose first answer could not
        # be committed ends there, each step being durable before the next).
        steps = [r.step for r in models[customer].requests]
        assert steps in ([1], [1, 2]) if isinstance(outcome, JournalError) else steps == [1, 2]


async def test_a_new_run_on_a_full_disk_is_refused_to_the_caller_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    model = ScriptedModel(["never asked"])
    async with SqliteStore(path, max_size_bytes=MAX_SIZE) as store:
        take_the_room(path)
        with anyio.fail_after(10):
            async with Runtime(
                agents=[billing_agent(model)],
                journal=store,
                clock=MockClock(),
                durability=Durability(poll_interval_s=None),
            ) as runtime:
                began = time.perf_counter()
                with pytest.raises(JournalError, match=r"SQLITE_FULL") as caught:
                    await runtime.run("Reconcile these invoices: " + "INV-000101 " * 1000)
                elapsed = time.perf_counter() - began
        assert await store.runs() == []  # not half-started: no run at all
    assert caught.value.sqlite_error == "SQLITE_FULL" and elapsed < 1.0
    assert model.requests == []


async def test_a_crashed_run_whose_failure_cannot_be_journaled_is_reported_not_hung(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    blocker = raw(path)

    def cost(model: str, usage: Any) -> float:
        if not blocker.in_transaction:  # the lock is taken while the run keeps crashing
            blocker.execute("BEGIN EXCLUSIVE")
        raise RuntimeError("price table unavailable")  # a bug: the run actor crashes

    agent = SubAgent(
        "billing",
        instructions="Reconcile.",
        tools=[],
        model=ScriptedModel(["never reached"]),
        restart=RestartPolicy(max_restarts=2, backoff=0.0),
    )
    try:
        async with SqliteStore(path, busy_timeout_s=0.2) as store:
            with anyio.fail_after(10):
                async with Runtime(
                    agents=[agent],
                    journal=store,
                    clock=MockClock(),
                    cost=cost,
                    durability=Durability(poll_interval_s=None),
                ) as runtime:
                    handle = await runtime.submit("Reconcile Acme")
                    with pytest.raises(JournalError, match="write lock") as caught:
                        await handle.result()
            blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    # Its end ("failed: crashed repeatedly") could not be written: it stays unfinished.
    assert caught.value.run_id == handle.run_id and caught.value.sqlite_error == "SQLITE_BUSY"
    assert "crashed repeatedly: RuntimeError('price table unavailable')" in str(caught.value)
    assert await status(path, handle.run_id) == "running"
