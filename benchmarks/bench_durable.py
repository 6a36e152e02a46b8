"""Durability figures: a SQLite journal on disk, an instant model and instant tools.

Prints:
  * a bare aiosqlite group-commit insert loop (rows/s), the ceiling for any journal here;
  * durable steps per second for 1 run and for 100 concurrent runs (100 callers each
    submitting a run and awaiting its result), and their ratio to the bare loop;
  * journal bytes per step for runs of 10 and of 200 steps (must not grow with length);
  * memory added by 10,000 runs waiting at approval gates (Python heap, exact, and
    resident, noisier), after 500 warm-up runs;
  * seconds to resume 1,000 unfinished runs after a restart.

A step is one model call and the tool call it proposes: 4 events (model_called,
tool_call_proposed, tool_call_started, tool_call_finished), each committed before the run
ends. Targets (issue 4): >= 5,000 durable steps/s at 100 concurrent runs and >= 2,000 at
one run; 10,000 waiting runs add < 10 MB; 1,000 runs resumed in < 1 s.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiosqlite
import anyio

from corral import Durability

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _instant import LIMITS, USAGE, InstantModel, lookup  # noqa: E402

from corral import RunResult, Runtime, SubAgent, tool  # noqa: E402
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolCall  # noqa: E402
from corral.store import SqliteJournal  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@tool(timeout=5, side_effect="write")
async def flag(invoice_id: str) -> str:
    """A write: waits at a gate."""
    return "flagged"


async def bare_insert_loop(path: Path, rows: int = 60_000, batch: int = 1_000) -> float:
    payload = "x" * 300
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE t (run_id TEXT, seq INTEGER, payload TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        start = time.perf_counter()
        for b in range(rows // batch):
            await db.execute("BEGIN")
            await db.executemany(
                "INSERT INTO t VALUES (?, ?, ?)", [(f"r{b}", i, payload) for i in range(batch)]
            )
            await db.execute("COMMIT")
        return rows / (time.perf_counter() - start)


async def run_all(rt: Runtime, count: int) -> list[RunResult]:
    """`count` callers at once, each submitting a run and waiting for its result."""
    results: dict[int, RunResult] = {}

    async def caller(i: int) -> None:
        handle = await rt.submit(f"task {i}")
        results[i] = await handle.result()

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(caller, i)
    return [results[i] for i in range(count)]


async def durable_steps(path: Path, concurrent: int, steps: int) -> tuple[float, float]:
    agent = SubAgent(
        "bench",
        instructions="Benchmark.",
        tools=[lookup],
        model=InstantModel(steps),
        limits=LIMITS,
    )
    async with SqliteJournal(path) as journal:
        async with Runtime(
            agents=[agent], journal=journal, durability=Durability(poll_interval_s=None)
        ) as rt:
            start = time.perf_counter()
            results = await run_all(rt, concurrent)
            elapsed = time.perf_counter() - start
        assert all(r.outcome == "completed" for r in results)
        events = sum(len(r.events) for r in results)
    total_steps = concurrent * steps
    return total_steps / elapsed, events / total_steps


async def bytes_per_step(path: Path, steps: int, runs: int = 20) -> float:
    agent = SubAgent(
        "bench",
        instructions="Benchmark.",
        tools=[lookup],
        model=InstantModel(steps),
        limits=LIMITS,
    )
    async with SqliteJournal(path) as journal:
        before = await journal.size_bytes()
        async with Runtime(
            agents=[agent], journal=journal, durability=Durability(poll_interval_s=None)
        ) as rt:
            for i in range(runs):
                await rt.run(f"task {i}")
        after = await journal.size_bytes()
    return (after - before) / (runs * steps)


async def waiting_memory(
    path: Path, runs: int = 10_000, warm_up: int = 500
) -> tuple[float, float, float]:
    """Memory added by `runs` runs waiting at a gate: (Python heap MB, resident MB, seconds).

    `warm_up` gated runs first fill what does not grow with the number of runs (the
    allocator's pools, SQLite's page caches). The Python heap figure (tracemalloc: what is
    still allocated of what the waiting runs allocated) is exact; the resident one is what
    the operating system sees, noisier (memory freed earlier may be reused, or returned).
    """
    agent = SubAgent(
        "gated", instructions="x", tools=[flag], model=InstantModel(1, tool="flag"), limits=LIMITS
    )

    async def to_gates(rt: Runtime, first: int, count: int) -> None:
        for chunk in range(first, first + count, 500):
            handles = [
                await rt.submit(f"task {i}") for i in range(chunk, min(chunk + 500, first + count))
            ]
            for h in handles:
                assert (await h.result()).status == "waiting"

    async with SqliteJournal(path) as journal:
        async with Runtime(
            agents=[agent], journal=journal, durability=Durability(poll_interval_s=None)
        ) as rt:
            await to_gates(rt, 0, warm_up)
            gc.collect()
            before = rss_bytes()
            tracemalloc.start()
            start = time.perf_counter()
            await to_gates(rt, warm_up, runs)
            elapsed = time.perf_counter() - start
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            after = rss_bytes()
            assert len(await journal.gates()) == warm_up + runs
    return held / 1e6, (after - before) / 1e6, elapsed


async def resume_time(path: Path, runs: int = 1_000) -> float:
    block = anyio.Event()

    async def first_life(request: ModelRequest) -> ModelResponse:
        if request.step >= 2:
            await block.wait()  # the process "dies" here: step 2 never completes
        return ModelResponse(
            tool_calls=(ToolCall(id="c1", name="lookup", arguments={"invoice_id": "INV-1"}),),
            usage=USAGE,
            model="instant",
        )

    async with SqliteJournal(path) as journal:
        dying = SubAgent(
            "worker",
            instructions="x",
            tools=[lookup],
            model=FunctionModel(first_life),
            limits=LIMITS,
        )
        async with Runtime(
            agents=[dying],
            journal=journal,
            durability=Durability(poll_interval_s=None, owner="host"),
        ) as rt:
            for i in range(runs):
                await rt.submit(f"task {i}")
            while len([r for r in await journal.runs(status="running", limit=runs + 1)]) < runs:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)
        assert len(await journal.unfinished_runs()) == runs
    async with SqliteJournal(path) as journal:
        healthy = SubAgent(
            "worker", instructions="x", tools=[lookup], model=InstantModel(1), limits=LIMITS
        )
        start = time.perf_counter()
        async with Runtime(
            agents=[healthy],
            journal=journal,
            durability=Durability(poll_interval_s=None, owner="host"),
        ):
            while len(await journal.runs(status="finished", limit=runs + 1)) < runs:
                await anyio.sleep(0.005)
            elapsed = time.perf_counter() - start
        assert all(i.outcome == "completed" for i in await journal.runs(limit=runs + 1))
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        bare = statistics.median(anyio.run(bare_insert_loop, d / f"bare{i}.db") for i in range(3))
        print("bench_durable (SQLite on disk, WAL, synchronous=NORMAL)")
        print(f"  bare aiosqlite group-commit insert loop: {bare:>10,.0f} rows/s")
        for concurrent, steps, target in ((1, 200, 2_000), (100, 20, 5_000)):
            figures = [
                anyio.run(durable_steps, d / f"s{concurrent}_{i}.db", concurrent, steps)
                for i in range(3)
            ]
            rate = statistics.median(f[0] for f in figures)
            per_step = figures[0][1]
            print(
                f"  durable steps/s, {concurrent:>3} run(s):      {rate:>10,.0f} steps/s "
                f"({per_step:.1f} events/step = {rate * per_step:,.0f} events/s, "
                f"{rate * per_step / bare:.0%} of the bare loop; target >= {target:,})"
            )
        for steps in (10, 200):
            b = anyio.run(bytes_per_step, d / f"b{steps}.db", steps)
            print(f"  journal bytes per step, {steps:>3}-step runs:  {b:>8,.0f} B")
        heap, rss, took = anyio.run(waiting_memory, d / "wait.db")
        print(
            f"  memory added by 10,000 runs waiting at gates: {heap:.1f} MB of Python heap, "
            f"{rss:+.1f} MB resident (target < 10 MB; {took:.1f} s to get them there)"
        )
        seconds = anyio.run(resume_time, d / "resume.db")
        print(
            f"  resume 1,000 unfinished runs after a restart: {seconds:.2f} s to all completed (target < 1 s)"
        )


if __name__ == "__main__":
    main()
