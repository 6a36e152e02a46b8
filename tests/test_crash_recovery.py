"""Kill a worker with SIGKILL at random moments and check nothing is lost or done twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_crash_worker.py")
RUNS = 50


def start(db: Path, ledger: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(ledger), str(RUNS), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def crash_repeatedly(db: Path, ledger: Path, seed: int, *extra: str) -> int:
    """Start the worker, SIGKILL it 3 to 6 times at random moments, then let it finish."""
    rng = random.Random(seed)
    kills, target = 0, rng.randint(3, 6)
    for _ in range(40):
        proc = start(db, ledger, *extra)
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        if ready.strip() != "ready":
            _, stderr = proc.communicate(timeout=30)
            raise AssertionError(f"worker failed to start: {stderr}")
        if kills < target:
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
                kills += 1
                continue
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        return kills
    raise AssertionError("the worker never finished")


def ledger_entries(ledger: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_moments_loses_nothing_and_repeats_nothing(
    tmp_path: Path, seed: int
) -> None:
    db, ledger = tmp_path / "journal.db", tmp_path / "ledger.jsonl"
    kills = crash_repeatedly(db, ledger, seed)
    assert kills >= 1, "the worker finished before any kill: the test proved nothing"
    print(f"seed {seed}: {kills} kills")

    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, status, outcome FROM runs").fetchall()
    open_gates = {r for (r,) in con.execute("SELECT run_id FROM gates WHERE status = 'open'")}
    model_steps = con.execute(
        "SELECT run_id, json_extract(payload, '$.step') FROM events WHERE kind = 'model_called'"
    ).fetchall()
    con.close()

    print(f"runs finished: {sum(r[1] == 'finished' for r in rows)}, at a gate: {len(open_gates)}")
    # Every run reached a terminal state or waits at a gate for a person.
    assert len(rows) == RUNS
    for run_id, status, outcome in rows:
        assert (status == "finished" and outcome == "completed") or (
            status == "waiting" and run_id in open_gates
        ), (run_id, status, outcome)

    entries = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    # No side effect executed twice for one idempotency key.
    executed = [(e["tool"], e["key"]) for e in entries if e["kind"] == "exec"]
    assert len(executed) == len(set(executed))
    # No model call recorded as completed was made again.
    assert [e for e in entries if e["kind"] == "VIOLATION"] == []
    # And each run's recorded model calls are steps 1, 2, 3 ... without gaps or repeats.
    by_run: dict[str, list[int]] = {}
    for run_id, step in model_steps:
        by_run.setdefault(run_id, []).append(step)
    for run_id, steps in by_run.items():
        assert sorted(steps) == list(range(1, len(steps) + 1)), (run_id, steps)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [4, 5])
def test_a_status_probe_settles_what_it_can_and_parks_only_what_nobody_knows(
    tmp_path: Path, seed: int
) -> None:
    """`record` has a probe backed by the ledger (Unknown for every fifth run)."""
    db, ledger = tmp_path / "journal.db", tmp_path / "ledger.jsonl"
    kills = crash_repeatedly(db, ledger, seed, "probe")
    assert kills >= 1

    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, status, outcome FROM runs").fetchall()
    gates = con.execute(
        "SELECT o.run_id, json_extract(o.payload, '$.doubt.probe') FROM gates g "
        "JOIN events o ON o.run_id = g.run_id AND o.seq = g.opened_seq WHERE g.status = 'open'"
    ).fetchall()
    settled = con.execute(
        "SELECT run_id, json_extract(payload, '$.tool'), json_extract(payload, '$.answer') "
        "FROM events WHERE kind = 'call_reconciled'"
    ).fetchall()
    con.close()
    entries = ledger_entries(ledger)
    executed = [(e["tool"], e["key"]) for e in entries if e["kind"] == "exec"]
    print(f"seed {seed}: {kills} kills; settled: {sorted(a for _, _, a in settled)}")

    assert len(rows) == RUNS
    assert len(executed) == len(set(executed)), "a call ran twice"
    assert [e for e in entries if e["kind"] == "VIOLATION"] == []
    # Parked: exactly the runs whose probe could not tell; every other run completed.
    unknowable = {
        run
        for run, tool, answer in settled
        if tool == "record"
        and answer
        in (
            "unknown",
            "failed",
        )
    }
    parked = {run for run, status, _ in rows if status == "waiting"}
    assert parked == unknowable
    assert {probe for _, probe in gates} <= {"unknown", "failed"}
    assert all(int(run.removeprefix("run_")) % 5 == 0 for run in parked)
    for run_id, status, outcome in rows:
        assert (status, outcome) == ("finished", "completed") or run_id in parked
    # The probe's Done answers were for calls that had run; NotDone for ones that had not.
    ran = {key for tool, key in executed if tool == "record"}
    for entry in entries:
        if entry["kind"] == "probe" and entry["answer"] == "Done":
            assert entry["key"] in ran
