"""Durability figures of the standard workload on Corral (see ``_workload.py`` for what each is).

10-step runs, an instant model, each step committed (the default, ``Durability(mode=
"step")``; ``mode="batched"`` shown beside it, labelled), SQLite on disk (WAL,
``synchronous=NORMAL``). Prints and records, each with its target (issue 17):

* durable steps/s, 1 run at a time and 100 started together (medians of interleaved
  rounds; the ratio targets against LangGraph are `compare.py`'s);
* memory of 1,000 runs paused at a gate from a cold start (RSS and Python heap), beside a
  bare aiosqlite journal writing as many rows of the same size: within 1 MB of it; and
  per further paused run (1,000 -> 2,000): under 1 KB;
* resume of 1,000 paused runs after SIGKILL, spawn to done: under 1 s (and in-process);
* disk bytes per finished gated run: at most 4 KB;
* the commit floors (aiosqlite and sqlite3, one row per transaction).

Run: ``python benchmarks/bench_durable.py [--quick]`` (``--quick``: tiny counts, a smoke
test; its figures mean nothing).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import cold_memory, file_bytes, kill_and_resume  # noqa: E402
from _table import is_quick, record  # noqa: E402
from _workload import (  # noqa: E402
    aiosqlite_floor,
    corral_steps_per_s,
    empty_journal_bytes,
    journal_rows,
    model_calls_per_run,
    sqlite3_floor,
)

WORKLOAD = Path(__file__).resolve().parent / "_workload.py"
BENCH = "bench_durable"


def main() -> None:
    quick = is_quick()
    rounds, serial_runs, paused = (1, 3, 20) if quick else (3, 30, 1_000)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print("bench_durable: 10-step runs, instant model, SQLite on disk (WAL, NORMAL)")
        rates: dict[tuple[int, str], list[float]] = {}
        for r in range(rounds):
            for concurrent, runs in ((1, serial_runs), (100, 100)):
                for mode in ("step", "batched"):
                    path = d / f"s{r}_{concurrent}_{mode}.db"
                    rate = anyio.run(
                        partial(
                            corral_steps_per_s, path, concurrent=concurrent, runs=runs, mode=mode
                        )
                    )
                    rates.setdefault((concurrent, mode), []).append(rate)
        for (concurrent, mode), values in rates.items():
            label = "each step committed" if mode == "step" else "batched, NOT the default"
            rate = statistics.median(values)
            what = "1 run at a time" if concurrent == 1 else "100 started together"
            print(f"  durable steps/s, {what:<21} {label:<26} {rate:>9,.0f}")
            record(
                BENCH,
                f"durable steps/s, {what} ({mode})",
                rate,
                "steps/s",
                quick=quick,
                note="" if mode == "step" else "not the default: a crash may repeat model calls",
            )
        floors = (
            [anyio.run(aiosqlite_floor, d / f"fa{i}.db", 2_000) for i in range(3)],
            [sqlite3_floor(d / f"fs{i}.db", 5_000) for i in range(3)],
        )
        for name, values in zip(("aiosqlite", "sqlite3 (no thread hop)"), floors, strict=True):
            value, spread = statistics.median(values), f"{min(values):,.0f}..{max(values):,.0f}"
            print(
                f"  commit floor, {name}, 1 row per transaction: {value:>9,.0f} commits/s "
                f"(median of {spread})"
            )
            record(
                BENCH,
                f"commit floor, {name}, 1 row/txn",
                value,
                "commits/s",
                quick=quick,
                note=f"median; tries {spread}",
            )

        db = d / "mem.db"
        rss = cold_memory(WORKLOAD, "corral", db, paused, heap=False)
        heap = cold_memory(WORKLOAD, "corral", d / "heap.db", paused, heap=True)
        events, payload = journal_rows(db)
        rows_per_run, row_bytes = events // (2 * paused), payload // events
        bare_rss = cold_memory(
            WORKLOAD, "bare", d / "bare.db", paused, str(rows_per_run), str(row_bytes), heap=False
        )
        print(
            f"  memory from cold, {paused:,} paused runs: RSS {rss.growth_mb:+.1f} MB "
            f"(first paused run {rss.first_run_mb:+.1f} MB), Python heap {heap.growth_mb:+.1f} MB; "
            f"bare aiosqlite journal ({rows_per_run} rows of {row_bytes} B per run) "
            f"RSS {bare_rss.growth_mb:+.1f} MB"
        )
        print(
            f"  per further paused run ({paused:,} -> {2 * paused:,}): RSS "
            f"{rss.per_further_run:,.0f} B, Python heap {heap.per_further_run:,.0f} B"
        )
        record(
            BENCH,
            f"memory from cold, {paused:,} paused runs (RSS)",
            rss.growth_mb,
            "MB",
            quick=quick,
            note=f"first paused run alone {rss.first_run_mb:+.1f} MB",
        )
        record(BENCH, "  same, Python heap", heap.growth_mb, "MB", quick=quick)
        record(
            BENCH,
            "  bare aiosqlite journal, same rows (RSS)",
            bare_rss.growth_mb,
            "MB",
            quick=quick,
        )
        record(
            BENCH,
            "  Corral minus bare journal (RSS)",
            rss.growth_mb - bare_rss.growth_mb,
            "MB",
            target=("<=", 1.0),
            quick=quick,
        )
        record(
            BENCH,
            "memory per further paused run (RSS)",
            rss.per_further_run,
            "B",
            target=("<", 1024),
            quick=quick,
        )
        record(
            BENCH, "  same, Python heap", heap.per_further_run, "B", target=("<", 1024), quick=quick
        )

        killed = d / "killed.db"
        resume = kill_and_resume(WORKLOAD, "corral", killed, paused)
        fewest, most = model_calls_per_run(killed)
        empty = anyio.run(empty_journal_bytes, d / "empty.db")
        disk = (file_bytes(killed) - empty) / paused
        print(
            f"  resume {paused:,} paused runs after SIGKILL: {resume.from_spawn_s:.2f} s from spawn "
            f"to all done ({resume.in_process_s:.2f} s in-process, {resume.to_exit_s:.2f} s to "
            f"exit); {resume.completed:,} completed; model calls per run {fewest}..{most} "
            f"(11 = none repeated)"
        )
        print(f"  disk per finished gated run: {disk:,.0f} B (empty journal {empty:,} B excluded)")
        record(
            BENCH,
            f"resume {paused:,} after SIGKILL, spawn to done",
            resume.from_spawn_s,
            "s",
            target=("<", 1.0),
            quick=quick,
            note="imports included",
        )
        record(BENCH, "  same, in-process (after imports)", resume.in_process_s, "s", quick=quick)
        record(
            BENCH,
            "disk per finished gated 10-step run",
            disk,
            "B",
            target=("<=", 4096),
            quick=quick,
            note="DB+WAL after checkpoint, empty journal excluded",
        )
        if resume.completed != paused or (fewest, most) != (11, 11):
            raise SystemExit("resume after SIGKILL lost runs or repeated model calls")


if __name__ == "__main__":
    main()
