"""What every benchmark process shares, without importing Corral or a peer.

The constants of the standard workload, memory probes, file sizes, and the parent's side
of the subprocess figures (cold-start memory, SIGKILL and resume), which spawn
``_workload.py`` (Corral, a bare journal) or ``_peers.py`` (LangGraph, DBOS). A peer's
process must not pay for importing Corral, hence this module.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHON = sys.executable
STEPS = 10
"""Tool-calling steps per run (the model is called once more, for the final answer)."""
GATED_STEP = STEPS
"""The step of a gated run whose call (a write) waits at a gate."""


def rss_bytes() -> int:
    """This process's resident set size, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class MemoryProbe:
    """Resident set or Python heap, as chosen when the probe starts (`heap`: tracemalloc)."""

    def __init__(self, heap: bool) -> None:
        self.heap = heap
        gc.collect()
        if heap:
            tracemalloc.start()

    def now(self) -> int:
        """Bytes in use now (after a full collection)."""
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if self.heap else rss_bytes()


def file_bytes(path: Path) -> int:
    """Size of a SQLite file and its WAL after a truncating checkpoint."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# -- subprocess figures (the parent's side) --------------------------------------------------------


def _spawn(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _answer(process: subprocess.Popen[str], what: str, timeout: float = 600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{what} failed ({process.returncode}):\n{err[-3000:]}")
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


@dataclass(frozen=True, slots=True)
class Memory:
    """Memory from a cold start: bytes at the start, after 1, `runs` and 2 x `runs` paused."""

    start: int
    one: int
    runs_paused: int
    twice: int
    runs: int

    @property
    def growth_mb(self) -> float:
        """Growth from the cold start to `runs` paused runs, MB."""
        return (self.runs_paused - self.start) / 1e6

    @property
    def first_run_mb(self) -> float:
        """Growth from the cold start to one paused run (what does not scale), MB."""
        return (self.one - self.start) / 1e6

    @property
    def per_further_run(self) -> float:
        """Bytes per paused run from `runs` to 2 x `runs`."""
        return (self.twice - self.runs_paused) / self.runs


def cold_memory(script: Path, kind: str, db: Path, runs: int, *extra: str, heap: bool) -> Memory:
    """Run ``script memory KIND DB RUNS rss|heap EXTRA...`` in a fresh process."""
    answer = _answer(
        _spawn(script, "memory", kind, str(db), str(runs), "heap" if heap else "rss", *extra),
        f"memory {kind}",
    )
    return Memory(answer["start"], answer["one"], answer["runs"], answer["twice"], runs)


@dataclass(frozen=True, slots=True)
class Resume:
    """After SIGKILL: seconds from spawn to all done, in-process, and to the process's exit."""

    from_spawn_s: float
    in_process_s: float
    to_exit_s: float
    completed: int


def kill_and_resume(script: Path, kind: str, db: Path, runs: int) -> Resume:
    """Park `runs` gated runs in one process, SIGKILL it, finish them from a new one."""
    parked = _spawn(script, "park", kind, str(db), str(runs))
    assert parked.stdout is not None
    line = parked.stdout.readline()
    if line.strip() != "READY":
        _, err = parked.communicate(timeout=60)
        raise RuntimeError(f"park {kind} did not get ready: {line!r}\n{err[-3000:]}")
    os.kill(parked.pid, signal.SIGKILL)
    parked.wait(timeout=60)
    if parked.returncode != -signal.SIGKILL:
        raise RuntimeError(f"park {kind} ended {parked.returncode}, not by SIGKILL")
    parked.communicate()
    spawned = time.time()
    answer = _answer(_spawn(script, "resume", kind, str(db), str(runs)), f"resume {kind}")
    exited = time.time()
    return Resume(
        answer["done_at"] - spawned, answer["in_process_s"], exited - spawned, answer["completed"]
    )
