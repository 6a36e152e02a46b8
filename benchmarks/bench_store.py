"""Figures of the SQLite store alone (no runtime): throughput, bytes per step, resume reads.

Prints:
  1. a bare aiosqlite group-commit insert loop (executemany of N rows per transaction into
     a minimal table, WAL, synchronous=NORMAL), in rows/s: the ceiling here;
  2. SqliteStore.append throughput with 1 appender and with 100 concurrent appenders
     (realistic events: a ToolCallFinished with 500 characters of content), every append
     waiting, and in runtime-shaped steps (4 events: the model call and the proposal
     queued, the 2 around a side-effecting tool call waiting), with the ratio to (1);
  3. bytes per step (4 events) for runs of 10 and of 200 steps: must not grow with length;
  4. time to list 1,000 unfinished runs and read all their events after reopening.

Targets (issue 4, for the runtime on top): >= 5,000 durable steps/s at 100 concurrent runs
(~20,000 events/s through the store) and >= 2,000 steps/s at one run (~8,000 events/s);
resume of 1,000 runs in < 1 s. Run: ``python benchmarks/bench_store.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _table import record  # noqa: E402

from corral.events import (  # noqa: E402
    Event,
    EventAdapter,
    ModelCalled,
    ResponseRecord,
    RunStarted,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallStarted,
)
from corral.models import ModelResponse, ToolCall, Usage  # noqa: E402
from corral.store._sqlite import SqliteStore  # noqa: E402

CONTENT = ("Invoice INV-000102 from Acme Corp: 3 lines, total 1,235.00 EUR, due 2026-12-01. " * 7)[
    :500
]


def finished_event(run_id: str, step: int) -> ToolCallFinished:
    return ToolCallFinished(
        run_id=run_id,
        step=step,
        call_id=f"toolu_{step:04d}",
        tool="lookup_invoice",
        attempt=1,
        content=CONTENT,
        duration_s=0.0012,
        result_chars=500,
        ts=1_764_000_000.0 + step,
    )


def step_events(run_id: str, step: int) -> list[tuple[Event, bool]]:
    """One agent step as the runtime journals it: (event, wait)."""
    call = ToolCall(id=f"toolu_{step:04d}", name="lookup_invoice", arguments={"id": "INV-102"})
    response = ModelResponse(
        tool_calls=(call,),
        usage=Usage(input_tokens=812, output_tokens=41),
        stop_reason="tool_use",
        model="claude-sonnet-4-5",
    )
    ts = 1_764_000_000.0 + step
    return [
        (
            ModelCalled(
                run_id=run_id,
                step=step,
                model="claude-sonnet-4-5",
                response=ResponseRecord.from_response(response),
                duration_s=0.8,
                cost_usd=0.0031,
                reserved_tokens=5_000,
                max_tokens=1_024,
                ts=ts,
            ),
            False,
        ),
        (
            ToolCallProposed(
                run_id=run_id,
                step=step,
                call_id=call.id,
                tool=call.name,
                arguments=dict(call.arguments),
                offered=["lookup_invoice", "flag_discrepancy"],
                ts=ts,
            ),
            False,
        ),
        (
            ToolCallStarted(
                run_id=run_id,
                step=step,
                call_id=call.id,
                tool=call.name,
                attempt=1,
                idempotency_key=f"{run_id}:{step}:1",
                ts=ts,
            ),
            True,
        ),
        (finished_event(run_id, step), True),
    ]


EVENTS_PER_STEP = len(step_events("run", 1))


def start(run_id: str) -> RunStarted:
    return RunStarted(
        run_id=run_id, agent="billing", task="Check invoice INV-000102", ts=1_764_000_000.0
    )


# -- 1. the bare loop ------------------------------------------------------------------------------


async def bare_loop(path: Path, rows: int, runs: int, per_run: int) -> float:
    """Insert `rows` rows, `runs` x `per_run` per transaction (public aiosqlite API)."""
    payload = EventAdapter.dump_json(finished_event("run-0000000000000000", 1)).decode()
    batch = runs * per_run
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE t (run_id TEXT, seq INTEGER, payload TEXT, PRIMARY KEY (run_id, seq))"
        )
        started = time.perf_counter()
        for b in range(rows // batch):
            await db.execute("BEGIN")
            await db.executemany(
                "INSERT INTO t VALUES (?, ?, ?)",
                [
                    (f"run-{r:016d}", b * per_run + i, payload)
                    for r in range(runs)
                    for i in range(per_run)
                ],
            )
            await db.execute("COMMIT")
        return (rows // batch * batch) / (time.perf_counter() - started)


# -- 2. append throughput --------------------------------------------------------------------------


async def appends(path: Path, appenders: int, per_appender: int) -> tuple[float, float]:
    """Every append waits. Returns (events/s, events per transaction)."""
    async with SqliteStore(path) as store:
        for a in range(appenders):
            await store.append(start(f"run-{a:016d}"), wait=False)
        await store.flush()
        before = store.statistics()

        prepared = [
            [finished_event(f"run-{a:016d}", i) for i in range(per_appender)]
            for a in range(appenders)
        ]

        async def appender(a: int) -> None:
            for event in prepared[a]:
                await store.append(event)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for a in range(appenders):
                tg.start_soon(appender, a)
        elapsed = time.perf_counter() - started
        after = store.statistics()
    events = appenders * per_appender
    return events / elapsed, events / max(1, after.transactions - before.transactions)


async def steps(path: Path, runs: int, per_run: int) -> tuple[float, float]:
    """Runtime-shaped steps. Returns (steps/s, events per transaction)."""
    async with SqliteStore(path) as store:
        prepared = {
            r: [step_events(f"run-{r:016d}", s) for s in range(per_run)] for r in range(runs)
        }
        for r in range(runs):
            await store.append(start(f"run-{r:016d}"), wait=False)
        await store.flush()
        before = store.statistics()

        async def run(r: int) -> None:
            for events in prepared[r]:
                for event, wait in events:
                    await store.append(event, wait=wait)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for r in range(runs):
                tg.start_soon(run, r)
        elapsed = time.perf_counter() - started
        after = store.statistics()
    total = runs * per_run
    return total / elapsed, (after.events - before.events) / max(
        1, after.transactions - before.transactions
    )


# -- 3. bytes per step -----------------------------------------------------------------------------


async def bytes_per_step(path: Path, runs: int, per_run: int) -> tuple[float, float]:
    """Returns (bytes of pages in use per step, bytes of file per step)."""
    async with SqliteStore(path) as store:
        await store.append(start("warm-up"))
        before = await store.size_bytes()
        for r in range(runs):
            run_id = f"run-{r:016d}"
            await store.append(start(run_id), wait=False)
            for s in range(per_run):
                for event, _ in step_events(run_id, s):
                    await store.append(event, wait=False)
        await store.flush()
        after = await store.size_bytes()
        await store.vacuum()
    steps_total = runs * per_run
    return (after - before) / steps_total, path.stat().st_size / steps_total


# -- 4. resume reads -------------------------------------------------------------------------------


async def resume_reads(path: Path, runs: int = 1_000, per_run: int = 2) -> tuple[float, float, int]:
    """Returns (seconds sequentially, seconds with concurrent readers, events read)."""
    async with SqliteStore(path) as store:
        for r in range(runs):
            run_id = f"run-{r:016d}"
            await store.append(start(run_id), wait=False)
            for s in range(per_run):
                for event, _ in step_events(run_id, s):
                    await store.append(event, wait=False)
    async with SqliteStore(path) as store:
        started = time.perf_counter()
        unfinished = await store.unfinished_runs()
        read = [await store.read(run_id) for run_id in unfinished]
        sequential = time.perf_counter() - started
        assert len(unfinished) == runs
    async with SqliteStore(path) as store:
        started = time.perf_counter()
        unfinished = await store.unfinished_runs()
        limiter = anyio.CapacityLimiter(50)
        count = 0

        async def read_one(run_id: str) -> None:
            nonlocal count
            async with limiter:
                count += len(await store.read(run_id))

        async with anyio.create_task_group() as tg:
            for run_id in unfinished:
                tg.start_soon(read_one, run_id)
        concurrent = time.perf_counter() - started
    return sequential, concurrent, sum(len(events) for events in read)


def median(fn: Callable[[int], float], times: int = 3) -> float:
    return statistics.median(fn(i) for i in range(times))


def main() -> None:
    quick = "--quick" in sys.argv
    scale = 5 if quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print("bench_store (SQLite file on disk, WAL, synchronous=NORMAL)")
        print("1. bare aiosqlite group-commit insert loop (the same 700-byte rows and key):")
        bare: dict[int, float] = {}
        for runs, per_run, rows in ((1, 1, 5_000), (100, 1, 100_000), (100, 3, 150_000)):
            batch = runs * per_run
            bare[batch] = median(
                lambda i, r=runs, p=per_run, n=rows: anyio.run(
                    bare_loop, d / f"bare{r}_{p}_{i}.db", n // scale, r, p
                )
            )
            print(
                f"   {batch:>4} row(s) per transaction ({runs} run(s) x {per_run}): "
                f"{bare[batch]:>10,.0f} rows/s"
            )

        print("2. SqliteStore.append, realistic events:")
        for appenders, per, ref in ((1, 20_000, 1), (100, 300, 100)):
            figures = [
                anyio.run(appends, d / f"a{appenders}_{i}.db", appenders, per // scale)
                for i in range(3)
            ]
            rate = statistics.median(f[0] for f in figures)
            batch = statistics.median(f[1] for f in figures)
            print(
                f"   {appenders:>3} appender(s), every append waits: {rate:>10,.0f} events/s "
                f"({batch:,.0f} events/transaction; {rate / bare[ref]:.0%} of the bare loop "
                f"at {ref})"
            )
        for runs, per, target, ref in ((1, 3_000, 2_000, 1), (100, 60, 5_000, 300)):
            figures = [
                anyio.run(steps, d / f"s{runs}_{i}.db", runs, max(1, per // scale))
                for i in range(3)
            ]
            rate = statistics.median(f[0] for f in figures)
            batch = statistics.median(f[1] for f in figures)
            print(
                f"   {runs:>3} run(s), runtime-shaped steps: {rate:>10,.0f} steps/s = "
                f"{rate * EVENTS_PER_STEP:>8,.0f} events/s ({batch:,.0f} events/transaction; "
                f"{rate * EVENTS_PER_STEP / bare[ref]:.0%} of the bare loop at {ref}; runtime target "
                f">= {target:,} steps/s)"
            )
            record(
                "bench_store",
                f"SqliteStore runtime-shaped steps/s, {runs} run(s)",
                rate,
                "steps/s",
                target=(">=", float(target)),
                quick=quick,
                note="store alone, 4 events a step; the target is the runtime's",
            )

        print("3. bytes per step (4 events), same total steps:")
        for runs, per in ((100, 10), (5, 200)):
            used, on_disk = anyio.run(bytes_per_step, d / f"b{per}.db", runs, per)
            print(
                f"   runs of {per:>3} steps: {used:>6,.0f} bytes/step in pages "
                f"({on_disk:,.0f} bytes/step of file after vacuum)"
            )
            record("bench_store", f"bytes per step, runs of {per} steps", used, "B", quick=quick)

        print("4. resume: list 1,000 unfinished runs and read their events (after reopening):")
        sequential, concurrent, events = anyio.run(resume_reads, d / "resume.db")
        print(
            f"   {events:,} events: {sequential * 1000:,.0f} ms one by one, "
            f"{concurrent * 1000:,.0f} ms with 50 concurrent readers (target < 1,000 ms)"
        )
        record(
            "bench_store",
            "resume reads, 1,000 unfinished runs, 50 readers",
            concurrent * 1000,
            "ms",
            target=("<", 1000.0),
            quick=quick,
        )


if __name__ == "__main__":
    main()
