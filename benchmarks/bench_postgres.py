"""Durable steps/s on PostgreSQL, beside SQLite: the standard workload (``_workload.py``).

10-step runs, the instant model, each step committed (``Durability(mode="step")``). The
benchmark starts its own throwaway PostgreSQL cluster (``tests/_postgres.py``: initdb and
pg_ctl on 127.0.0.1, a free port), with the server's durable defaults (``fsync=on``,
``synchronous_commit=on``: a commit returns once flushed to disk). Printed and recorded:

* durable steps/s, 1 run at a time and 100 started together, on PostgreSQL and on SQLite
  (WAL, ``synchronous=NORMAL``, the embedded default) measured the same way, in
  interleaved rounds (medians);
* the same on PostgreSQL with ``synchronous_commit=off`` (labelled: a server crash may lose
  the last commits, as a power loss may with SQLite's NORMAL; a crash of a Corral worker
  loses nothing either way);
* the same with every run's tenant under a daily budget (``Tenants(default=...)``), so each
  model call also reserves and settles its tenant's share in the journal (two more
  transactions per step: `corral.store.TenantBudgets`), on both backends;
* 1, 2 and 4 worker processes on one database: each a subprocess with its own `Runtime`,
  claiming its share of the runs through leases (``claim_runs``: ``FOR UPDATE SKIP
  LOCKED``) and driving them together; the figure is every step of every worker over the
  wall time from the common start to the last worker done. The runs are created first as
  ``run_started`` events (as a submission queued by another process leaves them); worker
  ``i`` drives the runs of agent ``bench-i``, so each takes the same share.

Run: ``python benchmarks/bench_postgres.py [--quick]`` (``--quick``: tiny counts, a smoke
test; its figures mean nothing).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _instant import LIMITS, InstantModel, flag, lookup  # noqa: E402
from _measure import STEPS  # noqa: E402
from _table import is_quick, record, record_missing  # noqa: E402
from _workload import agent, durability  # noqa: E402

from corral import Runtime, SubAgent, Tenants  # noqa: E402
from corral.events import RunStarted  # noqa: E402
from corral.store import Journal, PostgresStore, SqliteJournal  # noqa: E402
from corral.supervisor import TenantLimits  # noqa: E402
from tests._postgres import Cluster, PostgresUnavailable, create_database  # noqa: E402

BENCH = "bench_postgres"
HERE = Path(__file__).resolve()


async def steps_per_s(
    journal: Journal, *, concurrent: int, runs: int, budgeted: bool = False
) -> float:
    """Durable steps/s of `runs` 10-step runs, `concurrent` started together at a time.

    One warm-up run first (not counted), on the open journal given. `budgeted`: every run's
    tenant has a daily budget (never reached), reserved in the journal at each model call.
    """
    tenants = Tenants(default=TenantLimits(daily_tokens=10**12)) if budgeted else Tenants()
    async with Runtime(
        agents=[agent()], journal=journal, durability=durability(), tenants=tenants
    ) as rt:
        await rt.run("warm up")
        start = time.perf_counter()
        for first in range(0, runs, concurrent):
            handles = [
                await rt.submit(f"task {i}", tenant="acme")
                for i in range(first, first + concurrent)
            ]
            for handle in handles:
                result = await handle.result()
                if result.outcome != "completed" or result.steps != STEPS:
                    raise RuntimeError(f"a benchmark run ended {result.outcome}")
        elapsed = time.perf_counter() - start
    return runs * STEPS / elapsed


async def on_postgres(url: str, *, concurrent: int, runs: int, budgeted: bool = False) -> float:
    """`steps_per_s` on the PostgreSQL database at `url`."""
    async with PostgresStore(url) as journal:
        return await steps_per_s(journal, concurrent=concurrent, runs=runs, budgeted=budgeted)


async def on_sqlite(path: Path, *, concurrent: int, runs: int, budgeted: bool = False) -> float:
    """`steps_per_s` on a fresh SQLite file at `path`."""
    async with SqliteJournal(path) as journal:
        return await steps_per_s(journal, concurrent=concurrent, runs=runs, budgeted=budgeted)


# -- several workers on one database --------------------------------------------------------------


def worker_agent(index: int) -> SubAgent:
    """The agent worker `index` drives: the benchmark's, named ``bench-<index>``."""
    return SubAgent(
        f"bench-{index}",
        instructions="Benchmark.",
        tools=[lookup, flag],
        model=InstantModel(STEPS),
        limits=LIMITS,
    )


async def queue_runs(url: str, workers: int, per_worker: int) -> None:
    """Create ``workers * per_worker`` runs as ``run_started`` events, nobody driving them."""
    now = time.time()
    async with PostgresStore(url) as journal:
        for i in range(workers * per_worker):
            event = RunStarted(
                run_id=f"run-{i:05d}",
                ts=now,
                agent=f"bench-{i % workers}",
                task=f"task {i}",
                limits=LIMITS.model_dump(mode="json"),
            )
            await journal.append(event, wait=False)
        await journal.flush()


async def worker(url: str, index: int, go: Path) -> dict[str, Any]:
    """One worker process: claim this worker's runs through leases, drive them, report.

    It says it is ready (a file beside `go`), then waits for `go` to start.
    """
    async with PostgresStore(url) as journal:
        async with Runtime(
            agents=[worker_agent(index)],
            journal=journal,
            durability=durability().model_copy(update={"resume": False}),
        ) as rt:
            (go.parent / f"{go.name}.ready-{index}").touch()
            while not go.exists():  # every worker is connected and ready: start together
                await anyio.sleep(0.005)
            start = time.time()
            resumed = await rt.resume()
            steps = 0
            for run_id in resumed:
                result = await rt.wait(run_id, timeout=600)
                if result.outcome != "completed" or result.steps != STEPS:
                    raise RuntimeError(f"a benchmark run ended {result.outcome}")
                steps += result.steps
            end = time.time()
    return {"start": start, "end": end, "runs": len(resumed), "steps": steps}


def workers_steps_per_s(url: str, workers: int, per_worker: int, tmp: Path) -> float:
    """Durable steps/s of `workers` processes sharing the database at `url`."""
    anyio.run(queue_runs, url, workers, per_worker)
    go = tmp / f"go-{workers}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), "worker", url, str(i), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp / f"{go.name}.ready-{i}").exists() for i in range(workers)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker did not get ready")
        time.sleep(0.01)
    go.touch()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker failed ({proc.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    if sum(r["runs"] for r in reports) != workers * per_worker:
        raise RuntimeError(f"workers drove {[r['runs'] for r in reports]} runs")
    if min(r["start"] for r in reports) + 0.5 < max(r["start"] for r in reports):
        raise RuntimeError("the workers did not start together")
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return sum(r["steps"] for r in reports) / elapsed


# -- the benchmark --------------------------------------------------------------------------------


LABELS = {
    "postgres": "PostgreSQL (synchronous_commit=on)",
    "postgres-async": "PostgreSQL (synchronous_commit=off)",
    "sqlite": "SQLite (WAL, synchronous=NORMAL)",
    "postgres-budget": "PostgreSQL, tenant budget held in the database",
    "sqlite-budget": "SQLite, tenant budget held in the file",
}
WHAT = {1: "1 run at a time", 100: "100 started together"}
WORKERS = (1, 2, 4)


def figure_names() -> list[str]:
    """Every figure this benchmark records, by name."""
    names = [
        f"durable steps/s, {WHAT[concurrent]}, {LABELS[backend]}"
        for concurrent in WHAT
        for backend in LABELS
    ]
    return names + [f"durable steps/s, {w} worker(s) on one PostgreSQL database" for w in WORKERS]


def main() -> None:
    quick = is_quick()
    rounds, serial_runs, per_worker = (1, 3, 10) if quick else (3, 30, 200)
    try:
        if importlib.util.find_spec("asyncpg") is None:
            raise PostgresUnavailable("asyncpg is not installed: pip install 'corral[postgres]'")
        cluster = Cluster.start(fsync=True)
    except PostgresUnavailable as exc:
        print(f"bench_postgres: not measured: {exc}")
        for name in figure_names():
            record_missing(BENCH, name, "steps/s", str(exc).splitlines()[0], quick=quick)
        return
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            print(
                "bench_postgres: 10-step runs, instant model, each step committed; PostgreSQL "
                f"{cluster.bindir.parent.name} on 127.0.0.1 (fsync=on) beside SQLite (WAL, NORMAL)"
            )
            rates: dict[tuple[str, int], list[float]] = {}
            n = 0
            for _round in range(rounds):
                for concurrent, runs in ((1, serial_runs), (100, 100)):
                    for backend in LABELS:
                        n += 1
                        budgeted = backend.endswith("-budget")
                        if backend.startswith("sqlite"):
                            path = d / f"s{n}.db"
                            rate = anyio.run(_sqlite_rate, path, concurrent, runs, budgeted)
                        else:
                            url = anyio.run(create_database, cluster.url(), f"bench_{n}")
                            if backend == "postgres-async":
                                url += "?synchronous_commit=off"
                            rate = anyio.run(_pg_rate, url, concurrent, runs, budgeted)
                        rates.setdefault((backend, concurrent), []).append(rate)
            for (backend, concurrent), values in rates.items():
                rate = statistics.median(values)
                what = WHAT[concurrent]
                print(f"  durable steps/s, {what:<21} {LABELS[backend]:<48} {rate:>9,.0f}")
                record(
                    BENCH,
                    f"durable steps/s, {what}, {LABELS[backend]}",
                    rate,
                    "steps/s",
                    quick=quick,
                    note=(
                        "a server crash may lose the last commits"
                        if backend == "postgres-async"
                        else ""
                    ),
                )
            for workers in WORKERS:
                n += 1
                url = anyio.run(create_database, cluster.url(), f"bench_workers_{workers}")
                rate = workers_steps_per_s(url, workers, per_worker, d)
                print(
                    f"  durable steps/s, {workers} worker process(es) on one database, "
                    f"{per_worker} runs each at once: {rate:>9,.0f}"
                )
                record(
                    BENCH,
                    f"durable steps/s, {workers} worker(s) on one PostgreSQL database",
                    rate,
                    "steps/s",
                    quick=quick,
                    note=f"{per_worker} runs per worker, started together; synchronous_commit=on",
                )
    finally:
        cluster.destroy()


async def _pg_rate(url: str, concurrent: int, runs: int, budgeted: bool) -> float:
    return await on_postgres(url, concurrent=concurrent, runs=runs, budgeted=budgeted)


async def _sqlite_rate(path: Path, concurrent: int, runs: int, budgeted: bool) -> float:
    return await on_sqlite(path, concurrent=concurrent, runs=runs, budgeted=budgeted)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        url, index, go = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
        report = anyio.run(worker, url, index, go)
        print(json.dumps(report), flush=True)
    else:
        main()
