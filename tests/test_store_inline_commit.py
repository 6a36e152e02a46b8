"""Small commits run on the event loop, and still never block it.

With each step durable, a run alone commits once per step; the SQLite store writes small
batches on the event loop's thread (no hop to aiosqlite's). These tests hold it to what
that must not cost: a write lock held by another process sends the batch to the
writer's thread (the loop keeps running meanwhile, and the append still waits for its
commit), a full disk fails the batch as before, and the write-ahead log is checkpointed
though SQLite's automatic checkpoints are off on the writer.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from corral.errors import JournalError
from corral.events import ModelCalled, ResponseRecord, RunStarted
from corral.store import SqliteStore


def _started(run_id: str) -> RunStarted:
    return RunStarted(run_id=run_id, ts=1.0, agent="a", task="t")


def _called(run_id: str, step: int, text: str = "ok") -> ModelCalled:
    return ModelCalled(
        run_id=run_id,
        ts=2.0,
        step=step,
        model="m",
        response=ResponseRecord(text=text),
        duration_s=0.0,
    )


async def test_small_batches_commit_on_the_loop_and_are_on_disk_when_append_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path) as store:
        await store.append(_started("r1"))
        for step in range(1, 6):
            await store.append(_called("r1", step))
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            (count,) = con.execute("SELECT count(*) FROM events WHERE run_id='r1'").fetchone()
            con.close()
            assert count == step + 1
        assert store.statistics().transactions == 6


async def test_a_write_lock_held_elsewhere_waits_on_the_thread_not_on_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path, busy_timeout_s=10) as store:
        await store.append(_started("r1"))
        # Another process takes the write lock and holds it until told to let go.
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import sqlite3, sys
                    con = sqlite3.connect({str(path)!r}, isolation_level=None)
                    con.execute("BEGIN IMMEDIATE")
                    print("locked", flush=True)
                    sys.stdin.readline()
                    con.execute("COMMIT")
                    """
                ),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            ticks = 0
            done = anyio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await anyio.sleep(0.005)

            async def append() -> None:
                await store.append(_called("r1", 1))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                tg.start_soon(append)
                await anyio.sleep(0.2)
                assert not done.is_set()  # it waits for the lock...
                assert ticks >= 10  # ...and the loop went on meanwhile
                holder.stdin.write("\n")
                holder.stdin.flush()
                with anyio.fail_after(5):
                    await done.wait()
        finally:
            holder.kill()
            holder.communicate()  # closes its pipes too
        events = await store.read("r1")
        assert [e.kind for e in events] == ["run_started", "model_called"]


async def test_a_lock_held_past_the_busy_timeout_fails_the_append_clearly(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteStore(path, busy_timeout_s=0.2) as store:
        await store.append(_started("r1"))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(JournalError, match="busy timeout") as caught:
                await store.append(_called("r1", 1))
            assert caught.value.sqlite_error.startswith("SQLITE_BUSY")
        finally:
            other.execute("ROLLBACK")
            other.close()
        await store.append(_called("r1", 1))  # nothing was numbered: the next one fits
        assert [e.seq for e in await store.read("r1")] == [1, 2]


async def test_the_write_ahead_log_is_checkpointed_without_automatic_checkpoints(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    wal = Path(f"{path}-wal")
    text = "x" * 4000
    async with SqliteStore(path) as store:
        await store.append(_started("r1"))
        for step in range(1, 1500):  # ~6 MB of answers, one commit each
            await store.append(_called("r1", step, text))
        # Checkpointed as it went: the database file holds most of it...
        assert path.stat().st_size > 4_000_000
        # ...and the log is reused from its start, not grown to the whole history.
        assert wal.stat().st_size < 12_000_000
        assert len(await store.read("r1")) == 1500
