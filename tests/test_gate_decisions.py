"""Deciding gates: never after the deadline, and `corral approve` / `reject` record and return."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, MockClock, Runtime
from corral.cli import main
from corral.errors import GateExpired, UsageError
from corral.events import GateDecided
from corral.store import Journal, MemoryJournal, SqliteStore

from .test_gates_and_waits import refund_agent

OPENED = 1_700_000_000.0  # the MockClock's start: the gates below open then
DEADLINE = "2023-11-14 23:13:20 UTC"  # an hour later


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    if request.param == "memory":
        yield MemoryJournal()
        return
    async with SqliteStore(tmp_path / "j.db") as store:
        yield store


async def test_approving_rejecting_or_editing_after_the_deadline_is_refused(
    journal: Journal,
) -> None:
    done: list[dict[str, Any]] = []
    clock = MockClock(OPENED)
    async with Runtime(
        agents=[refund_agent(done)],
        journal=journal,
        clock=clock,
        durability=Durability(poll_interval_s=None, gate_ttl_s=3600),
    ) as rt:
        paused = await rt.run("refund ORD-7")
        gate_id = paused.gates[0].opened.gate_id
        clock.advance(3600)  # the deadline itself: too late; no poller has expired it yet
        assert await rt.pending_approvals() == []  # nothing left to decide
        attempts = [
            rt.approve(gate_id, by="ana"),
            rt.reject(gate_id, by="ana", reason="no"),
            rt.approve(gate_id, by="ana", args={"order_id": "ORD-7", "amount": 1.0}),
        ]
        for attempt in attempts:
            with pytest.raises(GateExpired) as info:
                await attempt
            assert str(info.value) == (
                f"gate {gate_id} (run {paused.run_id}) expired at {DEADLINE}: an expired gate "
                "counts as a rejection, and can no longer be approved, rejected or edited"
            )
            assert (info.value.gate_id, info.value.expires_at) == (gate_id, OPENED + 3600)
            assert isinstance(info.value, UsageError)
        # The first refusal recorded the expiry: the gate is no longer listed as open,
        # and the next tick continues the run with it, as a rejection.
        assert await rt.pending_approvals() == []
        (record,) = await journal.gates(status=None)
        assert record.status == "expired" and record.decided is not None
        assert record.decided.ts == OPENED + 3600
        await rt.tick()
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert result.output is not None and "(expired)" in result.output
    assert done == []
    assert [e.decision for e in result.events if isinstance(e, GateDecided)] == ["expired"]


async def test_a_gate_the_poller_expired_is_refused_as_expired(journal: Journal) -> None:
    clock = MockClock(OPENED)
    async with Runtime(
        agents=[refund_agent([])],
        journal=journal,
        clock=clock,
        durability=Durability(poll_interval_s=None, gate_ttl_s=3600),
    ) as rt:
        paused = await rt.run("refund ORD-7")
        clock.advance(4000)
        await rt.tick()
        with pytest.raises(GateExpired, match=f"expired at {DEADLINE}"):
            await rt.approve(paused.gates[0].opened.gate_id, by="ana")


async def test_the_store_checks_the_deadline_in_the_same_step_as_the_decision(
    journal: Journal,
) -> None:
    # A process whose clock says "not yet" still loses to the deadline: the journal checks
    # the decision's time against the gate's expiry when it records it.
    clock = MockClock(OPENED)
    async with Runtime(
        agents=[refund_agent([])],
        journal=journal,
        clock=clock,
        durability=Durability(poll_interval_s=None, gate_ttl_s=3600),
    ) as rt:
        first, second = await rt.run("refund ORD-7"), await rt.run("refund ORD-8")
    late, in_time = first.gates[0].opened, second.gates[0].opened

    def decision(gate: Any, run_id: str, ts: float, kind: Any = "approved") -> GateDecided:
        by = "ana" if kind != "expired" else ""
        return GateDecided(
            run_id=run_id, ts=ts, gate_id=gate.gate_id, call_id=gate.call_id, decision=kind, by=by
        )

    with pytest.raises(GateExpired, match=late.gate_id):
        await journal.decide_gate(decision(late, first.run_id, late.expires_at))
    assert (await journal.gate(late.gate_id)).status == "open"  # type: ignore[union-attr]
    assert await journal.decide_gate(decision(in_time, second.run_id, in_time.expires_at - 0.001))
    expiry = decision(late, first.run_id, late.expires_at, "expired")
    assert await journal.decide_gate(expiry)  # expiring it is what is left
    assert (await journal.gate(late.gate_id)).status == "expired"  # type: ignore[union-attr]


# -- the command line -------------------------------------------------------------------------

ELSEWHERE = '''
from corral.demo import App, support_agent


def app():
    """An application without the billing agent: approvals only."""
    return App(agents=[support_agent()])
'''


def corral(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`corral ...` in a fresh process, with the `elsewhere` app importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "corral.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )


@pytest.fixture
def waiting_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, list[str]]:
    """A journal with the demo run waiting at its two gates: (db URL, run id, gate ids)."""
    (tmp_path / "elsewhere.py").write_text(ELSEWHERE)
    db = f"sqlite:///{tmp_path / 'corral.db'}"
    assert main(["demo", "--db", db, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    return db, result["run_id"], [g["gate_id"] for g in result["gates"]]


def test_approve_with_an_app_without_the_runs_agent_records_it_and_exits(
    tmp_path: Path, waiting_demo: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, run_id, gates = waiting_demo
    started = time.monotonic()
    done = corral(tmp_path, "--db", db, "approve", "--all", "--as", "ana", "--app", "elsewhere:app")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20  # it used to print "approved" and hang
    assert done.stdout.count("approved by ana") == 2
    assert (
        f"The decision is recorded; run {run_id} is ready to go on, and the next process "
        f"that loads agent 'billing' continues it: `corral --db {db} serve --app "
        f"MODULE:FACTORY` or `corral --db {db} resume --app MODULE:FACTORY` with an "
        "application that has it (or a Runtime with that agent polling this journal)."
    ) in done.stdout
    # As it says: `corral resume` with an application that has the agent finishes the run.
    assert main(["--db", db, "-o", "json", "resume"]) == 0
    (resumed,) = json.loads(capsys.readouterr().out)
    assert (resumed["run_id"], resumed["outcome"]) == (run_id, "completed")
    assert main(["--db", db, "-o", "json", "runs", "show", run_id]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e["by"] for e in events if e["kind"] == "gate_decided"] == ["ana", "ana"]


def test_edited_arguments_are_refused_when_the_app_cannot_check_them(
    tmp_path: Path, waiting_demo: tuple[str, str, list[str]]
) -> None:
    db, run_id, (first, _) = waiting_demo
    edited = '{"invoice_id": "INV-000102", "difference": 40.0, "reason": "checked"}'
    refused = corral(
        tmp_path, "--db", db, "approve", first, "--as", "ana", "--args", edited,
        "--app", "elsewhere:app",
    )  # fmt: skip
    assert refused.returncode == 2
    assert (
        f"cannot check the edited arguments of gate {first}: --app elsewhere:app does not "
        "load agent 'billing'"
    ) in refused.stderr
    bad = corral(tmp_path, "--db", db, "approve", first, "--as", "ana", "--args", '{"x": 1}')
    assert bad.returncode == 2 and "edited arguments for 'flag_discrepancy' are invalid" in (
        bad.stderr
    )
    done = corral(
        tmp_path, "--db", db, "-o", "json", "approve", first, "--as", "ana", "--args", edited
    )
    assert done.returncode == 0, done.stderr
    gate = json.loads(done.stdout)
    assert (gate["status"], gate["edited_arguments"]["reason"]) == ("approved", "checked")


def test_reject_then_approve_while_another_process_holds_the_run_names_that_process(
    tmp_path: Path, waiting_demo: tuple[str, str, list[str]]
) -> None:
    db, run_id, (first, second) = waiting_demo
    done = corral(tmp_path, "--db", db, "reject", first, "--as", "ana", "--reason", "credited")
    assert done.returncode == 0, done.stderr
    assert "rejected by ana: credited" in done.stdout
    assert "The run is waiting for a person" in done.stdout  # the second gate is still open
    assert f"corral --db {db} approve {second} --as you@example.com" in done.stdout

    # Another process holds the run's lease (it may be driving it, or have died holding
    # it): the command says that process goes on with it.
    async def hold() -> None:
        async with SqliteStore(tmp_path / "corral.db") as store:
            assert await store.claim(run_id, "worker-7", lease_s=3600, now=time.time())

    anyio.run(hold)
    done = corral(tmp_path, "--db", db, "approve", second, "--as", "ana")
    assert done.returncode == 0, done.stderr
    assert "approved by ana" in done.stdout
    assert (
        f"The decision is recorded; process 'worker-7', which holds the lease of run {run_id}, "
        "continues it."
    ) in done.stdout


def test_the_printed_commands_work_as_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text("from corral.demo import app\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    db = f"sqlite:///{tmp_path / 'elsewhere' / 'corral.db'}"
    task = "Reconcile the unpaid invoices of Acme Corp"
    assert main(["--db", db, "run", task, "--kind", "billing", "--app", "mine:app"]) == 0
    out = capsys.readouterr().out
    (command,) = re.findall(r"^  (corral .* approve --all .*)$", out, flags=re.MULTILINE)
    assert command == f"corral --db {db} approve --all --as you@example.com --app mine:app"
    argv = [a.replace("you@example.com", "ana") for a in shlex.split(command)[1:]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (resume,) = re.findall(r"or `(corral [^`]*)` \(or a Runtime", out)
    assert resume == f"corral --db {db} resume --app mine:app"
    assert main(shlex.split(resume)[1:]) == 0
    assert "2 discrepancies found, 2 flagged" in capsys.readouterr().out


STUCK = """
import anyio

from corral.demo import app as demo_app
from corral.models import FunctionModel


async def never(request):
    await anyio.sleep_forever()


def app():
    \"\"\"The demo, with a billing model that never answers.\"\"\"
    return demo_app(model=FunctionModel(never, name="stuck"))
"""


def test_approve_never_drives_the_run_even_with_its_agent_loaded(
    tmp_path: Path, waiting_demo: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Its model never answers: an approve that drove the run would hang until --wait.
    db, run_id, _ = waiting_demo
    (tmp_path / "stuck.py").write_text(STUCK)
    args = ["--db", db, "approve", "--all", "--as", "ana", "--app", "stuck:app"]
    started = time.monotonic()
    done = corral(tmp_path, *args, "--wait", "30")
    assert time.monotonic() - started < 20
    assert done.returncode == 0, done.stderr
    assert "--wait is ignored: `corral approve` records and returns" in done.stderr
    assert f"run {run_id} is ready to go on" in done.stdout
    assert main(["--db", db, "-o", "json", "runs", "list"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["status"], run["outcome"]) == ("running", None)  # decided, left resumable
    info = anyio.run(_run_info, tmp_path / "corral.db", run_id)
    assert info.owner is None or info.lease_until is None or info.lease_until <= time.time()


async def _run_info(path: Path, run_id: str) -> Any:
    async with SqliteStore(path) as store:
        return await store.run(run_id)


def test_resume_is_bounded_by_wait(
    tmp_path: Path, waiting_demo: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, run_id, _ = waiting_demo
    (tmp_path / "stuck.py").write_text(STUCK)
    app = ["--app", "stuck:app"]
    approved = corral(tmp_path, "--db", db, "approve", "--all", "--as", "ana", *app)
    assert approved.returncode == 0, approved.stderr
    started = time.monotonic()
    done = corral(tmp_path, "--db", db, "resume", *app, "--wait", "0.5")
    assert time.monotonic() - started < 20
    assert done.returncode == 1, done.stderr
    assert (
        "corral: 1 resumed run(s) did not finish or pause within --wait 0.5 s; they stay "
        f"unfinished in the journal, and `corral --db {db} resume --app stuck:app` continues them"
    ) in done.stderr
    assert main(["--db", db, "-o", "json", "runs", "list"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["run_id"], run["status"]) == (run_id, "running")
    assert corral(tmp_path, "--db", db, "resume", *app, "--wait", "0").returncode == 2
