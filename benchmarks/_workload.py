"""The standard durability workload, on Corral, and the helpers every peer's figures share.

The workload (issue 17): runs of 10 steps (a step is one call of the instant model and the
tool call it proposes; the run ends with the model's 11th call, a final answer); every
step durable (a model call's result is committed before the next step starts); SQLite on
disk in WAL mode with ``synchronous=NORMAL``. A *gated* run reads for 9 steps, then its
10th step calls a write tool, which waits at an approval gate; once approved the call
runs and the model answers.

Figures:

* durable steps/s, one run at a time, and 100 runs started together;
* memory of 1,000 runs paused at their gate, counted from a cold start: a fresh
  subprocess measures its resident set (RSS) and, in a second subprocess, its Python heap
  (tracemalloc, which would inflate the RSS) after its imports and before it creates the
  journal and the runtime, then after 1 run paused, after 1,000, and after 2,000 (the
  growth per further paused run); beside it the same measure of a bare aiosqlite journal
  writing as many rows, of the same size, as Corral wrote for those runs;
* resume after SIGKILL: a subprocess pauses 1,000 gated runs and is killed with
  ``os.kill(pid, SIGKILL)``; a new process approves all 1,000 and drives them to the end,
  timed from its spawn (imports included) to the moment all are done, and in-process
  (from after its imports);
* disk bytes per finished gated run: the file's size (database and WAL, after a
  ``wal_checkpoint(TRUNCATE)``) less the size of an empty journal, over the runs;
* the commit floors: aiosqlite committing one row per transaction, one after another
  (one hop to its thread per commit), and the stdlib ``sqlite3`` module doing the same
  on the calling thread.

Subprocesses are this file run as a script: ``python _workload.py memory|park|resume ...``
(see `child`); `compare.py`'s peers (``_peers.py``) answer the same commands.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _instant import LIMITS, InstantModel, flag, lookup  # noqa: E402
from _measure import GATED_STEP, STEPS, MemoryProbe, file_bytes  # noqa: E402

from corral import Durability, Runtime, SubAgent  # noqa: E402
from corral.store import SqliteJournal  # noqa: E402

PAYLOAD = "x" * 300
"""The row the commit floors write."""


def agent(*, gated: bool = False) -> SubAgent:
    """The benchmark's agent: instant model, `lookup` (read) and `flag` (write) tools."""
    return SubAgent(
        "gated" if gated else "bench",
        instructions="Benchmark.",
        tools=[lookup, flag],
        model=InstantModel(STEPS, gated_step=GATED_STEP if gated else None),
        limits=LIMITS,
    )


def durability(mode: str = "step") -> Durability:
    """No poller (nothing waits on a clock here); `mode` ``step`` (default) or ``batched``."""
    return Durability(poll_interval_s=None, mode=mode)  # type: ignore[arg-type]


# -- in-process figures -------------------------------------------------------------------------


async def corral_steps_per_s(
    path: Path, *, concurrent: int, runs: int, mode: str = "step"
) -> float:
    """Durable steps/s of `runs` 10-step runs, `concurrent` started together at a time.

    One warm-up run first (not counted), on a fresh journal at `path`.
    """
    async with SqliteJournal(path) as journal:
        async with Runtime(agents=[agent()], journal=journal, durability=durability(mode)) as rt:
            await rt.run("warm up")
            start = time.perf_counter()
            for first in range(0, runs, concurrent):
                handles = [await rt.submit(f"task {i}") for i in range(first, first + concurrent)]
                for handle in handles:
                    result = await handle.result()
                    if result.outcome != "completed" or result.steps != STEPS:
                        raise RuntimeError(f"a benchmark run ended {result.outcome}")
            elapsed = time.perf_counter() - start
    return runs * STEPS / elapsed


async def aiosqlite_floor(path: Path, commits: int) -> float:
    """Transactions/s of aiosqlite committing one row each, one after another."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, payload TEXT)")
        start = time.perf_counter()
        for i in range(commits):
            await db.execute("INSERT INTO t VALUES (?, ?)", (i, PAYLOAD))  # autocommit: 1 txn
        return commits / (time.perf_counter() - start)


def sqlite3_floor(path: Path, commits: int) -> float:
    """Transactions/s of the stdlib sqlite3 module committing one row each, on this thread."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, payload TEXT)")
        start = time.perf_counter()
        for i in range(commits):
            db.execute("INSERT INTO t VALUES (?, ?)", (i, PAYLOAD))
        return commits / (time.perf_counter() - start)
    finally:
        db.close()


async def empty_journal_bytes(path: Path) -> int:
    """Size of a Corral journal with its schema and nothing else."""
    async with SqliteJournal(path):
        pass
    return file_bytes(path)


# -- subprocess figures (the child's side, Corral and the bare journal) -------------------------------


async def _pause(rt: Runtime, first: int, count: int) -> None:
    """Submit `count` gated runs, 100 at a time, and wait until each waits at its gate."""
    for chunk in range(first, first + count, 100):
        handles = [
            await rt.submit(f"task {i}") for i in range(chunk, min(chunk + 100, first + count))
        ]
        for handle in handles:
            result = await handle.result()
            if result.status != "waiting":
                raise RuntimeError(f"a gated run did not pause: {result.status} {result.outcome}")


async def _corral_memory(db: Path, runs: int, probe: MemoryProbe) -> dict[str, Any]:
    start = probe.now()
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(gated=True)], journal=journal, durability=durability()
        ) as rt:
            await _pause(rt, 0, 1)
            one = probe.now()
            await _pause(rt, 1, runs - 1)
            at_runs = probe.now()
            await _pause(rt, runs, runs)
            twice = probe.now()
    return {"start": start, "one": one, "runs": at_runs, "twice": twice}


async def _bare_memory(
    db: Path, runs: int, probe: MemoryProbe, rows_per_run: int, row_bytes: int
) -> dict[str, Any]:
    """A bare journal: the same rows, 100 runs' worth of one step's rows per transaction."""
    start = probe.now()
    payload = "x" * row_bytes
    marks: dict[str, int] = {}
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(
            "CREATE TABLE events (run_id TEXT, seq INTEGER, payload TEXT, "
            "PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        for name, first, count in (("one", 0, 1), ("runs", 1, runs - 1), ("twice", runs, runs)):
            for chunk in range(first, first + count, 100):
                ids = range(chunk, min(chunk + 100, first + count))
                for seq in range(rows_per_run):
                    await conn.execute("BEGIN")
                    await conn.executemany(
                        "INSERT INTO events VALUES (?, ?, ?)",
                        [(f"r{i}", seq, payload) for i in ids],
                    )
                    await conn.execute("COMMIT")
            marks[name] = probe.now()
    return {"start": start, **marks}


async def _corral_park(db: Path, runs: int) -> None:
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(gated=True)], journal=journal, durability=durability()
        ) as rt:
            await _pause(rt, 0, runs)
            print("READY", flush=True)
            await anyio.sleep_forever()


async def _corral_resume(db: Path, runs: int, imported: float) -> dict[str, Any]:
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(gated=True)], journal=journal, durability=durability()
        ) as rt:
            gates = await rt.pending_approvals()
            if len(gates) != runs:
                raise RuntimeError(f"{len(gates)} gates open after the restart, not {runs}")
            outcomes: list[str | None] = []

            async def approve(run_id: str, gate_id: str) -> None:
                await rt.approve(gate_id, by="bench")
                outcomes.append((await rt.wait(run_id)).outcome)

            async with anyio.create_task_group() as tg:
                for gate in gates:
                    tg.start_soon(approve, gate.run_id, gate.opened.gate_id)
            done = time.time()
            completed = outcomes.count("completed")
    return {"done_at": done, "in_process_s": done - imported, "completed": completed}


def model_calls_per_run(db: Path) -> tuple[int, int]:
    """(fewest, most) ``model_called`` events of one run in a Corral journal."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM events "
            "WHERE kind = 'model_called' GROUP BY run_id)"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def journal_rows(db: Path) -> tuple[int, int]:
    """(events, total payload bytes) in a Corral journal."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT count(*), sum(length(payload)) FROM events").fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def child(argv: Sequence[str], imported: float) -> None:
    """The subprocess commands: ``memory corral|bare DB RUNS rss|heap [ROWS BYTES]``,
    ``park corral DB RUNS`` and ``resume corral DB RUNS``; each prints one JSON line."""
    command, kind, db, runs = argv[0], argv[1], Path(argv[2]), int(argv[3])
    if command == "memory":
        probe = MemoryProbe(heap=argv[4] == "heap")
        if kind == "corral":
            answer = anyio.run(_corral_memory, db, runs, probe)
        else:
            answer = anyio.run(_bare_memory, db, runs, probe, int(argv[5]), int(argv[6]))
        print(json.dumps(answer))
    elif command == "park":
        anyio.run(_corral_park, db, runs)
    elif command == "resume":
        print(json.dumps(anyio.run(_corral_resume, db, runs, imported)))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    child(sys.argv[1:], time.time())
