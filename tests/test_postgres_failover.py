"""Several `corral serve` workers on one PostgreSQL database, as production runs them.

Each test starts its own throwaway cluster (`tests._postgres.Cluster`: it fails, never
skips, when PostgreSQL cannot start) and real ``python -m corral serve`` processes on it,
driven over their HTTP API. The application (`tests.pg_app`) writes a ledger outside
Corral: every tool execution, every side effect applied, every model call, and any step
that ran when it must not have (a completed step asked again, or a step run by a worker
that did not hold the run's lease).
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from tests._postgres import Cluster, create_database, fresh_name
from tests._serve_process import Served, served

RUNS = 200
MAX_TOOL_CALLS = 2
"""Each run makes exactly two tool calls: a call counted twice would stop it."""
MAX_TOKENS = 5_000
LEASE_S = 2.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster.start()
    try:
        yield started
    finally:
        started.destroy()


def database(cluster: Cluster) -> str:
    """A fresh database on `cluster`, migrated (the workers' checks read its tables)."""
    from corral.store import PostgresStore

    async def make() -> str:
        url = await create_database(cluster.url(), fresh_name())
        async with PostgresStore(url):
            pass
        return url

    return anyio.run(make)


def query(url: str, text: str, *args: Any) -> list[Any]:
    """Rows of one query on the journal's database (a connection of its own)."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(text, *args))
        finally:
            await conn.close()

    return anyio.run(run)


def worker_env(owner: str, ledger: Path, url: str, **extra: str) -> dict[str, str]:
    """The settings of one worker: short leases and polls, a run cap, per-run budgets."""
    return {
        "CORRAL_DURABILITY__OWNER": owner,
        "CORRAL_DURABILITY__LEASE_S": str(LEASE_S),
        "CORRAL_DURABILITY__POLL_INTERVAL_S": "0.2",
        "CORRAL_DURABILITY__MAX_ACTIVE_RUNS": "20",
        "CORRAL_LIMITS__MAX_TOOL_CALLS": str(MAX_TOOL_CALLS),
        "CORRAL_LIMITS__MAX_TOKENS": str(MAX_TOKENS),
        "CORRAL_SERVER__RATE_LIMIT_PER_MINUTE": "0",
        "CORRAL_SERVER__ALLOW_SELF_APPROVAL": "true",
        "CORRAL_LOG_LEVEL": "warning",
        "CORRAL_TEST_LEDGER": str(ledger),
        "CORRAL_TEST_JOURNAL": url,
        **extra,
    }


def submit(worker: Served, i: int) -> tuple[int, str]:
    response = worker.client.post(
        "/v1/runs",
        json={"task": f"order ORD-{i}", "agent": "orders"},
        headers={"Idempotency-Key": f"order-{i}"},
    )
    response.raise_for_status()
    return response.status_code, str(response.json()["run_id"])


def ledger_entries(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def wait_until(check: Any, *, timeout: float, what: str, workers: list[Served]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    logs = "\n".join("".join(w.stderr[-40:]) for w in workers)
    raise AssertionError(f"timed out waiting for {what}; worker logs:\n{logs}")


def finished_count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM corral.runs WHERE status = 'finished'")[0][0])


def check_runs(url: str, ledger: Path, run_ids: set[str]) -> list[dict[str, Any]]:
    """Every run completed once, within its budget, no step twice; returns the ledger."""
    runs = query(url, "SELECT status, outcome FROM corral.runs")
    assert len(runs) == len(run_ids)
    assert {(r["status"], r["outcome"]) for r in runs} == {("finished", "completed")}
    entries = ledger_entries(ledger)
    assert [e for e in entries if e["kind"] == "VIOLATION"] == []
    # No side effect twice for one idempotency key, and one per run.
    effects = Counter(e["key"] for e in entries if e["kind"] == "effect")
    assert max(effects.values()) == 1
    assert {e["run"] for e in entries if e["kind"] == "effect"} == run_ids

    events = query(
        url,
        "SELECT run_id, kind, payload FROM corral.events WHERE kind IN "
        "('model_called', 'tool_call_started', 'tool_call_finished', 'call_reconciled', "
        "'run_finished') ORDER BY run_id, seq",
    )
    steps: dict[str, list[int]] = defaultdict(list)
    started_calls: dict[str, set[str]] = defaultdict(set)
    finished_calls: Counter[tuple[str, int, str]] = Counter()
    reconciled: set[str] = set()
    tokens: Counter[str] = Counter()
    for row in events:
        payload = json.loads(row["payload"])
        run_id = row["run_id"]
        if row["kind"] == "model_called":
            steps[run_id].append(payload["step"])
            tokens[run_id] += payload["response"]["usage"]["input_tokens"]
            tokens[run_id] += payload["response"]["usage"]["output_tokens"]
        elif row["kind"] == "tool_call_started":
            started_calls[run_id].add(payload["idempotency_key"])
        elif row["kind"] == "tool_call_finished":
            finished_calls[(run_id, payload["step"], payload["call_id"])] += 1
        elif row["kind"] == "call_reconciled":
            reconciled.add(payload["idempotency_key"])
        else:
            assert payload["tokens"] <= MAX_TOKENS
    for run_id in run_ids:
        # No model step recorded twice, none skipped; the budgets held.
        assert steps[run_id] == [1, 2, 3], (run_id, steps[run_id])
        assert len(started_calls[run_id]) == MAX_TOOL_CALLS
        assert tokens[run_id] <= MAX_TOKENS
    assert set(finished_calls.values()) == {1}, "a tool call finished twice"

    # A call (known by its idempotency key: run, step, index) executed more than once: a
    # read run again, or a write in doubt, reconciled first.
    executions = Counter(e["key"] for e in entries if e["kind"] == "exec")
    tools = {e["key"]: e["tool"] for e in entries if e["kind"] == "exec"}
    for key, count in executions.items():
        if count > 1 and tools[key] == "record":
            assert key in reconciled, key
    return entries


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_way_leaves_every_run_to_the_survivor(
    tmp_path: Path, cluster: Cluster
) -> None:
    url = database(cluster)
    ledger = tmp_path / "ledger.jsonl"
    app = "tests.pg_app:app"
    with (
        served(tmp_path, app=app, db=url, **worker_env("A", ledger, url)) as a,
        served(tmp_path, app=app, db=url, **worker_env("B", ledger, url)) as b,
    ):
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            submitted = list(pool.map(lambda i: submit((a, b)[i % 2], i), range(RUNS)))
        assert [code for code, _ in submitted] == [201] * RUNS
        run_ids = {run_id for _, run_id in submitted}
        assert len(run_ids) == RUNS

        wait_until(
            lambda: finished_count(url) >= RUNS // 3,
            timeout=45,
            what="a third of the runs",
            workers=[a, b],
        )
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=10)
        killed_at = time.monotonic()
        killed_pid = a.process.pid
        held = query(
            url,
            "SELECT run_id FROM corral.runs WHERE owner = 'A' AND status <> 'finished'",
        )
        unfinished = RUNS - finished_count(url)
        print(
            f"killed A after {killed_at - started:.2f} s: {len(held)} leases held, "
            f"{unfinished} runs unfinished"
        )
        assert held, "A held no lease when killed: the test proved nothing"

        # Submitting again through the survivor, with the same keys, starts nothing new.
        with ThreadPoolExecutor(16) as pool:
            again = list(pool.map(lambda i: submit(b, i), range(RUNS)))
        assert {run_id for _, run_id in again} == run_ids
        assert {code for code, _ in again} == {200}

        wait_until(
            lambda: finished_count(url) == RUNS,
            timeout=60,
            what="every run to finish",
            workers=[b],
        )
        done_at = time.monotonic()
        print(
            f"every run finished {done_at - killed_at:.2f} s after the kill "
            f"({done_at - started:.2f} s in all; lease {LEASE_S} s)"
        )
        assert b.process.poll() is None, "".join(b.stderr)

    runs = query(url, "SELECT run_id, lease_epoch FROM corral.runs")
    taken_over = {r["run_id"] for r in runs if r["lease_epoch"] > 1}
    assert {r["run_id"] for r in held} <= taken_over
    entries = check_runs(url, ledger, run_ids)

    # A call executed by both workers: only one A was running when it was killed (in
    # doubt: no recorded outcome), then re-run by B.
    executions: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        if e["kind"] == "exec":
            executions[e["key"]].append(e["pid"])
    twice = {call: pids for call, pids in executions.items() if len(set(pids)) > 1}
    for pids in twice.values():
        assert pids[0] == killed_pid and set(pids[1:]) == {b.process.pid}, pids
    models: dict[tuple[str, int], set[int]] = defaultdict(set)
    for e in entries:
        if e["kind"] == "model":
            models[(e["run"], e["step"])].add(e["pid"])
    resumed = {run for (run, _), pids in models.items() if len(pids) > 1}
    print(
        f"{len(taken_over)} runs taken over, {len(twice)} calls in doubt re-run, "
        f"{len(resumed)} model steps interrupted and asked again"
    )
    survivors = {e["run"] for e in entries if e["kind"] == "model" and e["pid"] != killed_pid}
    assert survivors & {e["run"] for e in entries if e["pid"] == killed_pid}, (
        "no run was started by A and finished by B"
    )


# -- wake-ups across workers ----------------------------------------------------------------------

SLOW_POLL = {"CORRAL_DURABILITY__POLL_INTERVAL_S": "30", "CORRAL_DURABILITY__LEASE_S": "120"}
"""Polling too slow to explain a run going on within seconds: only a notification can."""


def open_refund_gate(front: Served, worker: Served, order: str, url: str) -> tuple[str, str]:
    """Submit a refund through `worker`; return its run id and gate, once the gate is open."""
    response = worker.client.post(
        "/v1/runs", json={"task": f"refund order {order}", "agent": "refunds"}
    )
    response.raise_for_status()
    run_id = str(response.json()["run_id"])

    def gate() -> str | None:
        for approval in front.get("/v1/approvals")["approvals"]:
            if approval["run_id"] == run_id:
                return str(approval["gate_id"])
        return None

    gate_id = wait_until(gate, timeout=15, what="the refund's gate", workers=[front, worker])
    # Paused at its gate, the run is held by nobody: it is only rows in the journal.
    assert query(url, "SELECT owner FROM corral.runs WHERE run_id = $1", run_id)[0]["owner"] is None
    return run_id, gate_id


def approve_and_time(front: Served, gate_id: str, run_id: str) -> float:
    """Approve through `front`; seconds from the approval's answer to the run's end."""
    response = front.client.post(f"/v1/approvals/{gate_id}/approve", json={"note": "ok"})
    response.raise_for_status()
    approved = time.monotonic()
    wait_until(
        lambda: front.get(f"/v1/runs/{run_id}")["status"] == "finished",
        timeout=20,
        what="the approved run to finish",
        workers=[front],
    )
    return time.monotonic() - approved


def listeners(url: str, pid: int) -> int:
    found = query(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        f"corral listen {pid}",
    )
    return int(found[0][0])


@pytest.mark.timeout(90)
def test_an_approval_through_one_worker_wakes_the_run_on_another_at_once(
    tmp_path: Path, cluster: Cluster
) -> None:
    url = database(cluster)
    ledger = tmp_path / "ledger.jsonl"
    # A serves an application without the refunds agent: it records the decision and
    # can drive nothing of it. B drives refunds, and polls every 30 s.
    with (
        served(
            tmp_path,
            app="tests.pg_app:frontdoor",
            db=url,
            **worker_env("A", ledger, url, **SLOW_POLL),
        ) as a,
        served(
            tmp_path, app="tests.pg_app:app", db=url, **worker_env("B", ledger, url, **SLOW_POLL)
        ) as b,
    ):
        wait_until(
            lambda: listeners(url, b.process.pid) == 1, timeout=10, what="B's LISTEN", workers=[b]
        )
        latencies = []
        for order in ("ORD-1", "ORD-2", "ORD-3"):
            run_id, gate_id = open_refund_gate(a, b, order, url)
            latencies.append(approve_and_time(a, gate_id, run_id))
            view = a.get(f"/v1/runs/{run_id}")
            assert (view["outcome"], view["output"]) == ("completed", "refund issued")
        print(
            f"approval through A -> run finished on B: "
            f"{', '.join(f'{s * 1000:.0f} ms' for s in latencies)} (B polls every 30 s)"
        )
        assert max(latencies) < 1.0
        refunds = [e for e in ledger_entries(ledger) if e["kind"] == "exec"]
        assert {e["pid"] for e in refunds} == {b.process.pid}
        assert len(refunds) == 3


@pytest.mark.timeout(90)
def test_a_lost_notification_is_made_up_for_by_polling(tmp_path: Path, cluster: Cluster) -> None:
    url = database(cluster)
    ledger = tmp_path / "ledger.jsonl"
    # B polls every 0.3 s, and waits 60 s before listening again once its LISTEN is lost.
    fast = {"CORRAL_DURABILITY__POLL_INTERVAL_S": "0.3", "CORRAL_DURABILITY__LEASE_S": "5"}
    with (
        served(
            tmp_path,
            app="tests.pg_app:frontdoor",
            db=url,
            **worker_env("A", ledger, url, **SLOW_POLL),
        ) as a,
        served(
            tmp_path,
            app="tests.pg_app:app",
            db=url + "?listen_retry=60",
            **worker_env("B", ledger, url, **fast),
        ) as b,
    ):
        wait_until(
            lambda: listeners(url, b.process.pid) == 1, timeout=10, what="B's LISTEN", workers=[b]
        )
        run_id, gate_id = open_refund_gate(a, b, "ORD-9", url)
        killed = query(
            url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            f"corral listen {b.process.pid}",
        )
        assert killed[0][0] == 1
        wait_until(
            lambda: listeners(url, b.process.pid) == 0, timeout=10, what="the kill", workers=[b]
        )
        latency = approve_and_time(a, gate_id, run_id)
        # B never listened again meanwhile: its poller found the decided run.
        assert listeners(url, b.process.pid) == 0
        print(
            f"approval with B's LISTEN down -> run finished by B's poller in "
            f"{latency * 1000:.0f} ms (poll every 0.3 s)"
        )
        assert a.get(f"/v1/runs/{run_id}")["outcome"] == "completed"
        wait_until(
            lambda: any("store.listen_lost" in line for line in b.stderr),
            timeout=10,
            what="B to log the lost connection",
            workers=[b],
        )


# -- the database restarted under load ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_database_restarted_under_load_loses_nothing_and_every_run_finishes(
    tmp_path: Path, cluster: Cluster
) -> None:
    url = database(cluster)
    ledger = tmp_path / "ledger.jsonl"
    runs = 50
    # Slower tools, so that every run is in flight when the server goes away.
    # Leases longer than the outage: no run is taken over because its lease ran out.
    slow = {
        "CORRAL_DURABILITY__LEASE_S": "10",
        "CORRAL_TEST_TOOL_S": "0.4",
        "CORRAL_DURABILITY__MAX_ACTIVE_RUNS": "40",
        "CORRAL_LOG_LEVEL": "info",
    }
    app = "tests.pg_app:app"
    with (
        served(tmp_path, app=app, db=url, **worker_env("A", ledger, url, **slow)) as a,
        served(tmp_path, app=app, db=url, **worker_env("B", ledger, url, **slow)) as b,
    ):
        with ThreadPoolExecutor(16) as pool:
            submitted = list(pool.map(lambda i: submit((a, b)[i % 2], i), range(runs)))
        run_ids = {run_id for _, run_id in submitted}
        wait_until(
            lambda: sum(e["kind"] == "exec" for e in ledger_entries(ledger)) >= runs,
            timeout=30,
            what="the runs to be under way",
            workers=[a, b],
        )
        in_flight = runs - finished_count(url)
        cluster.stop_server("fast")  # every client disconnected at once
        stopped = time.monotonic()
        time.sleep(1.5)
        cluster.start_server()
        print(
            f"database stopped with {in_flight} runs in flight, back after "
            f"{time.monotonic() - stopped:.2f} s"
        )
        assert in_flight >= runs // 2, "too few runs in flight: the test proved little"

        wait_until(
            lambda: finished_count(url) == runs,
            timeout=60,
            what="every run to finish after the restart",
            workers=[a, b],
        )
        print(f"every run finished {time.monotonic() - stopped:.2f} s after the stop")
        for worker in (a, b):
            assert worker.process.poll() is None, "".join(worker.stderr)
            # It logged the failure, listened again, and drove again the runs it had to stop.
            logged = [json.loads(line) for line in worker.stderr if line.startswith("{")]
            said = {entry["event"] for entry in logged}
            assert {"runtime.journal_failed", "store.listen_lost", "store.listen_restored"} <= said
            back = [e["runs"] for e in logged if e["event"] == "runtime.journal_back"]
            assert back and back[0] > 0, "".join(worker.stderr[-20:])

    entries = check_runs(url, ledger, run_ids)
    pids: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        if e["kind"] == "exec":
            pids[e["key"]].append(e["pid"])
    again = [p for p in pids.values() if len(p) > 1]
    same = sum(len(set(p)) == 1 for p in again)
    print(
        f"{len(again)} calls in doubt run again after the restart, {same} of them by the "
        "worker that had started them"
    )
    assert again, "no call was interrupted: the test proved little"


@pytest.mark.timeout(90)
def test_a_worker_stopped_cleanly_hands_its_runs_over_at_once(
    tmp_path: Path, cluster: Cluster
) -> None:
    url = database(cluster)
    ledger = tmp_path / "ledger.jsonl"
    # Slow polls and long leases: only the release's notification can explain the handover.
    env = {**SLOW_POLL, "CORRAL_TEST_TOOL_S": "1.0", "CORRAL_SERVER__GRACE_S": "0"}
    app = "tests.pg_app:app"
    with (
        served(tmp_path, app=app, db=url, **worker_env("A", ledger, url, **env)) as a,
        served(tmp_path, app=app, db=url, **worker_env("B", ledger, url, **env)) as b,
    ):
        wait_until(
            lambda: listeners(url, b.process.pid) == 1, timeout=10, what="B's LISTEN", workers=[b]
        )
        run_ids = {submit(a, i)[1] for i in range(10)}
        wait_until(
            lambda: sum(e["kind"] == "exec" for e in ledger_entries(ledger)) >= 10,
            timeout=15,
            what="A's runs to be under way",
            workers=[a],
        )
        code = a.stop()  # SIGTERM, no grace: its runs stop where they stand
        assert code == 0, "".join(a.stderr)
        stopped = time.monotonic()
        wait_until(
            lambda: finished_count(url) == 10,
            timeout=20,
            what="B to finish A's runs",
            workers=[b],
        )
        print(f"A stopped: B finished its 10 runs {time.monotonic() - stopped:.2f} s later")
    check_runs(url, ledger, run_ids)
    finishers = {e["pid"] for e in ledger_entries(ledger) if e["kind"] == "effect"}
    assert finishers == {b.process.pid}
