"""The ``corral`` command line as an operator uses it, on SQLite journals in ``tmp_path``.

Runs are made with the demo application (``corral.demo:app``, scripted models) and, for
waits on external events, `collector_app` below. Commands run in-process through
`corral.cli.main` (stdout and stderr captured), and as real ``python -m corral``
processes where the process itself matters (a closed pipe, ``-m``, a missing extra).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral.cli import EXIT_PIPE, main
from corral.runtime import App
from corral.store import SqliteStore

from .test_gates_and_waits import payment_agent

ROOT = Path(__file__).resolve().parents[1]
ISO_S = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
COLLECTOR = "tests.test_cli_operator:collector_app"


def collector_app() -> App:
    """One agent, whose run waits for ``payment:INV-000102`` to be delivered."""
    return App(agents=[payment_agent()])


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CORRAL_") or key == "COLUMNS":
            monkeypatch.delenv(key)


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


def corral(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``corral ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = corral(capsys, *argv)
    assert code == 0, err
    return json.loads(out)  # stdout is JSON and nothing else


def waiting_demo(capsys: pytest.CaptureFixture[str], db: str) -> dict[str, Any]:
    """Start the demo; it waits at its two gates. Returns its result (as JSON)."""
    result: dict[str, Any] = as_json(capsys, "--db", db, "-o", "json", "demo")["result"]
    assert result["status"] == "waiting" and len(result["gates"]) == 2
    return result


def python_m_corral(
    *args: str, cwd: Path, stdout: Any = subprocess.PIPE, **kwargs: Any
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "corral", *args],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# -- reading never creates a journal ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "list"],
        ["runs", "show", "run_x"],
        ["runs", "export", "run_x"],
        ["runs", "cancel", "run_x"],
        ["approvals", "list"],
        ["trace", "run_x"],
        ["store", "vacuum", "--dry-run"],
        ["approve", "--all", "--as", "ana"],
        ["reject", "gate_x", "--as", "ana", "--reason", "no"],
    ],
)
def test_a_command_that_reads_or_decides_never_creates_a_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "typo.db"
    code, out, err = corral(capsys, "--db", f"sqlite:///{missing}", *command)
    assert (code, out) == (2, "")
    assert err == (
        f"corral: UsageError: no journal at {missing}: nothing has been recorded there yet "
        "(check --db, CORRAL_DB or the settings' db)\n"
    )
    assert not missing.exists()


def test_unknown_runs_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = db_url(tmp_path)
    assert corral(capsys, "--db", db, "deliver", "k")[0] == 0  # deliver creates the journal
    for command in (["runs", "show", "run_x"], ["runs", "cancel", "run_x"], ["trace", "run_x"]):
        code, _, err = corral(capsys, "--db", db, *command)
        assert (code, err) == (2, "corral: UsageError: no run 'run_x' in the journal\n")


# -- global options ---------------------------------------------------------------------------


def test_global_options_go_before_the_command_and_are_accepted_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    assert corral(capsys, "--db", db, "run", "reset my password")[0] == 0
    before = as_json(capsys, "--db", db, "-o", "json", "runs", "list")
    after = as_json(capsys, "runs", "list", "--db", db, "-o", "json")
    deprecated = as_json(capsys, "runs", "list", "--db", db, "--json")
    assert before == after == deprecated and len(before) == 1
    code, _, err = corral(capsys, "--db", db, "--server", "http://127.0.0.1:9", "runs", "list")
    assert (code, err) == (
        2,
        "corral: UsageError: give --db (the journal) or --server (a service), not both\n",
    )


def test_the_config_option_names_the_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "named.db"
    named = tmp_path / "ops.toml"
    named.write_text(f'db = "sqlite:///{db}"\n[limits]\nmax_tokens = 54321\n')
    payload = as_json(capsys, "--config", str(named), "-o", "json", "demo")
    (started,) = [e for e in payload["events"] if e["kind"] == "run_started"]
    assert started["limits"]["max_tokens"] == 54321
    assert db.is_file() and not (tmp_path / "corral.db").exists()
    named.write_text("[limits]\nmax_tokens = 0\n")
    code, out, err = corral(capsys, "--config", str(named), "runs", "list")
    assert (code, out) == (2, "")
    assert err == (
        f"corral: ConfigError: {named}: limits.max_tokens: Input should be greater than 0\n"
    )


@pytest.mark.parametrize("command", [["resume"], ["store", "vacuum"], ["serve"], ["demo"]])
def test_commands_that_work_here_refuse_server(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = corral(capsys, "--server", "http://127.0.0.1:9", *command)
    assert (code, out) == (2, "")
    assert err.startswith(f"corral: UsageError: `corral {' '.join(command)}` works on the journal")
    assert "drop --server" in err


# -- tables and JSON --------------------------------------------------------------------------


def test_runs_list_is_a_table_with_headers_iso_times_and_one_line_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_url(tmp_path)
    long_task = "reset my password\nplease, " + "it is urgent " * 40
    assert corral(capsys, "--db", db, "run", long_task)[0] == 0
    assert corral(capsys, "--db", db, "run", "login broken", "--tenant", "acme")[0] == 0
    code, out, err = corral(capsys, "--db", db, "runs", "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["RUN", "ID", "STATUS", "OUTCOME", "AGENT", "CREATED", "TASK"]
    assert len(rows) == 2  # the task's newline and length do not break its row
    newest, oldest = (row.split() for row in rows)
    assert newest[1:4] == ["finished", "completed", "support"] and ISO_S.match(newest[4])
    assert newest[5:] == ["login", "broken"]
    assert re.fullmatch(r"run_[0-9a-f]{16}", oldest[0])
    assert rows[1].endswith("…") and "it is urgent" in rows[1]
    assert all(len(line) <= 160 for line in out.splitlines())

    # A narrow console cuts the task, never the id or the status.
    monkeypatch.setenv("COLUMNS", "60")
    code, narrow, _ = corral(capsys, "--db", db, "runs", "list")
    assert [line.split()[:3] for line in narrow.splitlines()[1:]] == [
        newest[:3],
        oldest[:3],
    ]
    assert len(narrow.splitlines()) == 3

    listed = as_json(capsys, "--db", db, "-o", "json", "runs", "list")
    assert [r["tenant"] for r in listed] == ["acme", "default"]
    assert listed[1]["task"] == long_task
    assert set(listed[0]) == {
        "run_id", "agent", "tenant", "status", "outcome", "task", "created_at", "updated_at"
    }  # fmt: skip
    assert ISO_MS.match(listed[0]["created_at"]) and ISO_MS.match(listed[0]["updated_at"])


def test_runs_list_filters_and_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = db_url(tmp_path)
    waiting_demo(capsys, db)
    for text in ("reset my password", "login broken", "account locked"):
        assert corral(capsys, "--db", db, "run", text)[0] == 0
    assert corral(capsys, "--db", db, "run", "export my data", "--tenant", "acme")[0] == 0

    def ids(*options: str) -> list[str]:
        return [
            r["task"] for r in as_json(capsys, "--db", db, "-o", "json", "runs", "list", *options)
        ]

    assert ids("--status", "waiting") == [ids("--agent", "billing")[0]]
    assert ids("--agent", "support", "--outcome", "completed") == [
        "export my data", "account locked", "login broken", "reset my password"
    ]  # fmt: skip
    assert ids("--tenant", "acme") == ["export my data"]
    assert ids("--outcome", "cancelled") == []

    code, out, err = corral(capsys, "--db", db, "-o", "json", "runs", "list", "--limit", "2")
    first = json.loads(out)
    assert [r["task"] for r in first] == ["export my data", "account locked"]
    (cursor,) = re.findall(r"^more runs: add --cursor (\S+)$", err, flags=re.MULTILINE)
    code, out, err = corral(
        capsys, "--db", db, "-o", "json", "runs", "list", "--limit", "2", "--cursor", cursor
    )
    assert [r["task"] for r in json.loads(out)] == ["login broken", "reset my password"]
    code, out, err = corral(
        capsys,
        "--db",
        db,
        "runs",
        "list",
        "--limit",
        "2",
        "--cursor",
        json.loads(out)[-1]["run_id"],
    )
    assert code == 0 and err == "" and len(out.splitlines()) == 2  # the header and the demo
    assert corral(capsys, "--db", db, "runs", "list", "--limit", "0")[0] == 2


def test_runs_show_gives_the_summary_then_the_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    result = waiting_demo(capsys, db)
    run_id = result["run_id"]
    code, out, err = corral(capsys, "--db", db, "runs", "show", run_id)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"run       {run_id}"
    assert lines[1] == "agent     billing (rule billing-kind: kind == 'billing')"
    assert lines[3] == "status    waiting"
    assert re.fullmatch(r"created   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[5])
    assert sum(line.startswith("gate      gate_") and "open" in line for line in lines) == 2
    assert "RateLimited: invoice API: 429 Too Many Requests" in out  # the trail follows

    shown = as_json(capsys, "--db", db, "-o", "json", "runs", "show", run_id)
    view = shown["run"]
    assert (view["run_id"], view["status"], view["outcome"]) == (run_id, "waiting", None)
    assert view["route"] == {"rule": "billing-kind", "reason": "kind == 'billing'"}
    assert view["model_calls"] == 10 and view["tokens"] > 0
    assert [g["status"] for g in view["gates"]] == ["open", "open"]
    assert [g["agent"] for g in view["gates"]] == ["billing", "billing"]
    assert [e["seq"] for e in shown["events"]] == list(range(1, len(shown["events"]) + 1))


def test_runs_export_writes_the_run_and_every_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    run_id = waiting_demo(capsys, db)["run_id"]
    document = as_json(capsys, "--db", db, "runs", "export", run_id)
    assert set(document) == {"run", "events", "exported_at"}
    assert ISO_MS.match(document["exported_at"])
    assert document["run"]["run_id"] == run_id
    assert document["events"][0]["kind"] == "run_started"
    assert document["events"][-1]["kind"] == "gate_opened"

    target = tmp_path / "out" / "run.json"
    target.parent.mkdir()
    code, out, err = corral(capsys, "--db", db, "runs", "export", run_id, "--file", str(target))
    count = len(document["events"])
    assert (code, out, err) == (0, f"exported run {run_id} ({count} events) to {target}\n", "")
    written = json.loads(target.read_text())
    assert written["events"] == document["events"] and written["run"] == document["run"]


# -- deciding records and returns -------------------------------------------------------------


def test_approve_and_reject_print_what_was_recorded_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    first, second = (g["gate_id"] for g in waiting_demo(capsys, db)["gates"])
    rejected = as_json(
        capsys, "--db", db, "-o", "json", "reject", first, "--as", "ana", "--reason", "credited"
    )
    assert (rejected["gate_id"], rejected["status"]) == (first, "rejected")
    assert (rejected["decided_by"], rejected["note"]) == ("ana", "credited")
    assert ISO_MS.match(rejected["decided_at"])
    (approved,) = as_json(capsys, "--db", db, "-o", "json", "approve", "--all", "--as", "bob")
    assert (approved["gate_id"], approved["status"], approved["decided_by"]) == (
        second,
        "approved",
        "bob",
    )
    assert as_json(capsys, "--db", db, "-o", "json", "approve", "--all", "--as", "bob") == []
    code, out, _ = corral(capsys, "--db", db, "approve", "--all", "--as", "bob")
    assert (code, out) == (0, "no gates waiting\n")


def test_deciding_needs_a_name_and_one_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    first = waiting_demo(capsys, db)["gates"][0]["gate_id"]
    code, _, err = corral(capsys, "--db", db, "approve", first)
    assert (code, err) == (
        2,
        "corral: UsageError: say who decides: --as NAME (recorded in the audit trail)\n",
    )
    code, _, err = corral(capsys, "--db", db, "approve", first, "--all", "--as", "ana")
    assert (code, err) == (2, "corral: UsageError: name one gate, or pass --all\n")
    code, _, err = corral(capsys, "--db", db, "approve", first, "--as", "ana", "--args", "[1]")
    assert (code, err) == (2, "corral: UsageError: --args must be a JSON object\n")
    assert as_json(capsys, "--db", db, "-o", "json", "approvals", "list")[0]["gate_id"] == first


def test_deliver_says_when_no_run_waits_and_who_continues_the_one_that_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    code, out, _ = corral(capsys, "--db", db, "run", "collect INV-000102", "--app", COLLECTOR)
    assert code == 0
    assert "The run waits for an external event on 'payment:INV-000102'" in out
    assert f"  corral --db {db} deliver payment:INV-000102 --payload JSON" in out
    (run,) = as_json(capsys, "--db", db, "-o", "json", "runs", "list")

    code, out, _ = corral(capsys, "--db", db, "deliver", "payment:INV-000103")
    assert (code, out) == (
        0,
        "no run waits on 'payment:INV-000103' yet; the event is kept for it\n",
    )
    assert as_json(capsys, "--db", db, "-o", "json", "deliver", "payment:INV-000104") == {
        "key": "payment:INV-000104",
        "run_id": None,
        "delivered": False,
    }
    paid = '{"status": "paid"}'
    code, out, _ = corral(
        capsys, "--db", db, "deliver", "payment:INV-000102", "--payload", paid, "--app", COLLECTOR
    )
    assert code == 0
    assert out.splitlines() == [
        f"delivered 'payment:INV-000102' to run {run['run_id']}",
        f"The event is recorded; run {run['run_id']} is ready to go on, and the next process "
        f"that loads agent 'collector' continues it: `corral --db {db} serve --app {COLLECTOR}` "
        f"or `corral --db {db} resume --app {COLLECTOR}` (or a Runtime with that agent polling "
        "this journal).",
    ]
    (resumed,) = as_json(capsys, "--db", db, "-o", "json", "resume", "--app", COLLECTOR)
    assert (resumed["run_id"], resumed["output"]) == (run["run_id"], 'ok: {"status": "paid"}')


# -- cancelling -------------------------------------------------------------------------------


def test_runs_cancel_ends_a_waiting_run_and_its_gates_are_no_longer_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    run_id = waiting_demo(capsys, db)["run_id"]
    code, out, err = corral(capsys, "--db", db, "runs", "cancel", run_id, "--reason", "not today")
    assert (code, out, err) == (0, f"cancelled run {run_id}\n", "")
    view = as_json(capsys, "--db", db, "-o", "json", "runs", "show", run_id)["run"]
    assert (view["status"], view["outcome"], view["reason"]) == (
        "finished",
        "cancelled",
        "not today",
    )
    assert as_json(capsys, "--db", db, "-o", "json", "approvals", "list") == []
    assert corral(capsys, "--db", db, "approvals", "list")[1] == "no gates waiting\n"
    # Cancelling it again: nothing to do, and the exit code says so.
    result = corral(capsys, "--db", db, "-o", "json", "runs", "cancel", run_id)
    assert result[0] == 1
    assert json.loads(result[1])["cancelled"] is False


def test_runs_cancel_ends_a_run_ready_to_go_on_that_nobody_drives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    run_id = waiting_demo(capsys, db)["run_id"]
    assert corral(capsys, "--db", db, "approve", "--all", "--as", "ana")[0] == 0
    (run,) = as_json(capsys, "--db", db, "-o", "json", "runs", "list")
    assert run["status"] == "running"  # decided, waiting for a process to drive it
    cancelled = as_json(capsys, "--db", db, "-o", "json", "runs", "cancel", run_id)
    assert cancelled["cancelled"] is True and cancelled["run"]["outcome"] == "cancelled"
    assert as_json(capsys, "--db", db, "-o", "json", "resume") == []  # nothing left to drive


def test_runs_cancel_asks_the_live_process_driving_the_run_to_end_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    run_id = waiting_demo(capsys, db)["run_id"]

    async def hold() -> None:
        async with SqliteStore(tmp_path / "corral.db") as store:
            assert await store.claim(run_id, "worker-7", lease_s=3600, now=time.time())

    async def requests() -> dict[str, str]:
        async with SqliteStore(tmp_path / "corral.db") as store:
            return await store.cancel_requests([run_id])

    anyio.run(hold)
    code, out, err = corral(capsys, "--db", db, "runs", "cancel", run_id, "--reason", "dup")
    assert (code, err) == (0, "")
    assert out == (
        f"asked the worker driving run {run_id} to cancel it: it ends the run as soon as it "
        "hears (corral workers lists the workers)\n"
    )
    assert anyio.run(requests) == {run_id: "dup"}
    (run,) = as_json(capsys, "--db", db, "-o", "json", "runs", "list")
    assert run["status"] == "waiting"  # the log is the holder's: it ends the run itself


# -- upkeep, trace ----------------------------------------------------------------------------


def test_store_vacuum_dry_run_counts_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    waiting_demo(capsys, db)  # unfinished: never pruned
    assert corral(capsys, "--db", db, "run", "reset my password")[0] == 0
    assert as_json(capsys, "--db", db, "-o", "json", "store", "vacuum", "--dry-run") == {
        "dry_run": True,
        "older_than_days": 30.0,
        "runs": 0,
    }
    code, out, _ = corral(
        capsys, "--db", db, "store", "vacuum", "--dry-run", "--older-than-days", "0"
    )
    assert out == "would prune 1 finished run(s) older than 0 days; nothing was changed (dry run)\n"
    assert len(as_json(capsys, "--db", db, "-o", "json", "runs", "list")) == 2
    pruned = as_json(capsys, "--db", db, "-o", "json", "store", "vacuum", "--older-than-days", "0")
    assert pruned == {"dry_run": False, "older_than_days": 0.0, "runs": 1}
    assert len(as_json(capsys, "--db", db, "-o", "json", "runs", "list")) == 1
    assert corral(capsys, "--db", db, "store", "vacuum", "--older-than-days", "-1")[0] == 2


def test_trace_prints_the_reasoning_tree_or_the_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    run_id = waiting_demo(capsys, db)["run_id"]
    code, out, err = corral(capsys, "--db", db, "trace", run_id)
    assert (code, err) == (0, "")
    assert run_id in out and "search_invoices" in out and "RateLimited" in out
    assert "├──" in out or "└──" in out
    events = as_json(capsys, "--db", db, "-o", "json", "trace", run_id)
    assert events[0]["kind"] == "run_started" and events[0]["run_id"] == run_id


# -- the process -------------------------------------------------------------------------------


def test_python_m_corral_works_and_a_closed_pipe_ends_it_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with python_m_corral("--version", cwd=tmp_path) as version:
        out, err = version.communicate(timeout=30)
    assert (version.returncode, out, err) == (0, "corral 0.1.0\n", "")

    db = db_url(tmp_path)
    for text in ("reset my password", "login broken"):
        assert corral(capsys, "--db", db, "run", text)[0] == 0
    # `corral runs list | head -0`: the reader is gone before anything is written.
    for output in ("table", "json"):
        with python_m_corral("--db", db, "-o", output, "runs", "list", cwd=tmp_path) as listing:
            assert listing.stdout is not None and listing.stderr is not None
            listing.stdout.close()
            err = listing.stderr.read()
            code = listing.wait(timeout=30)
        assert (code, err) == (EXIT_PIPE, ""), output


def test_serve_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['fastapi'] = None; "  # `import fastapi` now fails
        "from corral.cli import main; sys.exit(main(['serve']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "corral: the server needs its extra: pip install 'corral[server]'\n"
