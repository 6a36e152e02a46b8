"""``corral export`` and ``corral replay`` as a user runs them: real processes, real files.

Every command here is ``python -m corral ...`` in a subprocess, on a SQLite journal in
``tmp_path`` filled by ``corral run`` itself (with the application in
``tests/fixtures/cassettes/app.py``), or through a real ``corral serve`` on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.cli import main

from ._serve_process import TOKEN, served

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.fixtures.cassettes.app"
SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCD"


def corral(*argv: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m corral ARGV`` from the repository's root, with no CORRAL_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "corral", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


def run_task(db: str, text: str) -> str:
    """``corral --db DB run TEXT --app ...:app``; returns the run's id."""
    done = corral("--db", db, "-o", "json", "run", text, "--app", f"{APP}:app")
    assert done.returncode == 0, done.stderr
    run_id: str = json.loads(done.stdout)["result"]["run_id"]
    return run_id


@dataclass(frozen=True)
class Production:
    """A journal filled by ``corral run`` (and ``approve``, ``resume``): four finished runs."""

    db: str
    small: str
    """Refund invoice INV-1: 40, run without a person."""
    tiny: str
    """Refund invoice INV-3: 8."""
    large: str
    """Refund invoice INV-2: 500, approved at its gate by ana@example.com."""
    helped: str
    """A support question."""


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Production:
    # Replays only read the journal (test_replay_api checks the file is untouched), so the
    # tests of this module share one.
    db = f"sqlite:///{tmp_path_factory.mktemp('production') / 'prod.db'}"
    small = run_task(db, "Refund invoice INV-1")
    tiny = run_task(db, "Refund invoice INV-3")
    large = run_task(db, "Refund invoice INV-2")
    corral("--db", db, "approve", "--all", "--as", "ana@example.com", check=0)
    corral("--db", db, "resume", "--app", f"{APP}:app", "--wait", "30", check=0)
    helped = run_task(db, "help with my password")
    return Production(db, small, tiny, large, helped)


def replay_json(*argv: str, code: int) -> Any:
    """``corral -o json replay ARGV``, parsed; it must exit with `code` and say nothing else."""
    done = corral("-o", "json", "replay", *argv, check=code)
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_replay_of_a_recorded_run_reports_a_new_policy_and_nothing_on_unchanged_code(
    production: Production, tmp_path: Path
) -> None:
    db, run_id = production.db, production.small
    same = corral("--db", db, "replay", run_id, "--app", f"{APP}:app", check=0)
    assert "no divergence: the current code decides as the recording did" in same.stdout
    assert same.stderr == ""
    strict = corral("--db", db, "replay", run_id, "--app", f"{APP}:strict_app", check=1)
    lines = strict.stdout.splitlines()
    assert lines[0] == f"run {run_id} (agent billing): Refund invoice INV-1"
    assert "2 divergence(s):" in lines
    blocked = '  step 2: blocked: refund({"account":"ACC-1","amount":40.0}) is now refused by'
    assert any(line.startswith(f"{blocked} the range check") for line in lines), strict.stdout
    # A lower cap from a settings file (--config) is a limit stop.
    config = tmp_path / "corral.toml"
    config.write_text("[limits]\nmax_tool_calls = 1\n", encoding="utf-8")
    capped = replay_json("--db", db, "--config", str(config), run_id, "--app", f"{APP}:app", code=1)
    assert [d["kind"] for d in capped["divergences"]] == ["step_limit", "steps"]
    assert capped["replayed"]["outcome"] == "stopped_steps"


def test_export_then_replay_the_file(production: Production, tmp_path: Path) -> None:
    db, run_id = production.db, production.small
    file = tmp_path / "run.json"
    wrote = corral("--db", db, "export", run_id, str(file), check=0)
    assert wrote.stdout == f"exported run {run_id} (11 events) to {file}\n"
    # The alias prints the same document as `runs export`, and the file holds it too.
    alias = json.loads(corral("--db", db, "export", run_id, check=0).stdout)
    original = json.loads(corral("--db", db, "runs", "export", run_id, check=0).stdout)
    saved = json.loads(file.read_text(encoding="utf-8"))
    for document in (original, saved):
        assert {**document, "exported_at": alias["exported_at"]} == alias
    # The file is replayed on its own: no --db needed.
    report = replay_json(str(file), "--app", f"{APP}:gated_app", code=1)
    assert report["run_id"] == run_id and report["diverged"] is True
    (gate,) = report["divergences"]
    assert (gate["kind"], gate["step"], gate["tool"]) == ("gate_opened", 2, "refund")
    assert report["replayed"]["status"] == "waiting"
    assert report["stopped"].startswith("a gate opened for 'refund' at step 2")
    rerouted = replay_json(str(file), "--app", f"{APP}:rerouted_app", code=1)
    assert [d["kind"] for d in rerouted["divergences"]] == ["route"]
    assert rerouted["divergences"][0]["replayed"] == {
        "agent": "support",
        "rule": "refunds-to-support",
    }


def test_replay_since_summarises_a_window_of_production_runs(production: Production) -> None:
    p, db, strict = production, production.db, f"{APP}:strict_app"
    summary = replay_json("--db", db, "--since", "1d", "--app", strict, code=1)
    assert (summary["replayed"], summary["diverged"]) == (4, 2)
    # 40 and 500 are over the new cap of 10; 8 is not; support never refunds.
    assert summary["by_kind"]["blocked"] == {"runs": 2, "run_ids": [p.large, p.small]}
    assert set(summary["by_kind"]) == {"blocked", "steps"}
    assert {r["run_id"] for r in summary["runs"] if r["diverged"]} == {p.small, p.large}
    table = corral("--db", db, "replay", "--since", "1d", "--app", strict, check=1)
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["RUN", "ID", "AGENT", "RECORDED", "REPLAYED", "DIVERGENCES"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:6]}
    assert rows == {
        p.helped: ["support", "completed", "completed", "none"],
        p.large: ["billing", "completed", "completed", "blocked,", "steps"],
        p.tiny: ["billing", "completed", "completed", "none"],
        p.small: ["billing", "completed", "completed", "blocked,", "steps"],
    }
    assert "replayed 4 run(s): 2 diverged, 2 did not" in lines
    assert f"  blocked: 2 run(s): {p.large}, {p.small}" in lines
    # Filters, and unchanged code over the same window.
    support = replay_json(
        "--db", db, "--since", "1d", "--agent", "support", "--app", strict, code=0
    )
    assert [r["run_id"] for r in support["runs"]] == [p.helped]
    calm = replay_json("--db", db, "--since", "7d", "--limit", "3", "--app", f"{APP}:app", code=0)
    assert (calm["replayed"], calm["diverged"]) == (3, 0)
    later = replay_json("--db", db, "--since", "2099-01-01", "--app", strict, code=0)
    assert later["replayed"] == 0


def test_export_and_replay_through_a_service(tmp_path: Path) -> None:
    with served(tmp_path, app=f"{APP}:app") as server:
        remote = ["--server", server.url, "--token", TOKEN]
        done = corral(*remote, "-o", "json", "run", "Refund invoice INV-1", check=0)
        run_id = json.loads(done.stdout)["run_id"]
        server.wait_for(lambda: server.get(f"/v1/runs/{run_id}")["status"] == "finished")
        file = tmp_path / "remote.json"
        corral(*remote, "export", run_id, str(file), check=0)
        assert json.loads(file.read_text(encoding="utf-8"))["run"]["run_id"] == run_id
        report = replay_json(*remote, run_id, "--app", f"{APP}:strict_app", code=1)
        assert [d["kind"] for d in report["divergences"]] == ["blocked", "steps"]
        same = replay_json(*remote, run_id, "--app", f"{APP}:app", code=0)
        assert same["divergences"] == []
        refused = corral(*remote, "replay", "--since", "1d", check=2)
        assert "drop --server and give --db" in refused.stderr


def test_a_secret_in_the_recorded_arguments_is_never_printed(tmp_path: Path) -> None:
    document = (ROOT / "tests/fixtures/cassettes/refund_small.json").read_text(encoding="utf-8")
    file = tmp_path / "leaky.json"
    file.write_text(document.replace("ACC-1", SECRET), encoding="utf-8")
    for output in ("table", "json"):
        done = corral("-o", output, "replay", str(file), "--app", f"{APP}:strict_app", check=1)
        assert SECRET not in done.stdout + done.stderr
        assert "[REDACTED:API_KEY]" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "{file}"], "is not a Corral run export"),
        (["--db", "{db}", "replay", "run_nope"], "no run 'run_nope' in the journal"),
        (["replay", "{export}", "--app", "no_such_module:app"], "cannot load the application"),
        (["replay", "{export}", "--app", "nocolon"], "--app must look like module:factory"),
        (["--db", "sqlite:///{tmp}/absent.db", "replay", "run_x"], "no journal at"),
        (["replay"], "give a RUN_ID or an export file to replay, or --since"),
        (["--db", "{db}", "replay", "run_x", "--since", "1d"], "not both"),
        (["--db", "{db}", "replay", "run_x", "--agent", "a"], "--agent select runs for --since"),
        (["--db", "{db}", "replay", "--since", "soon"], "--since 'soon': give a duration"),
        (["export", "run_nope", "--db", "{db}"], "no run 'run_nope' in the journal"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(
    production: Production,
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In this process (`corral.cli.main`), for speed; the real process is checked below.
    for key in [k for k in os.environ if k.startswith("CORRAL_")]:
        monkeypatch.delenv(key)
    (tmp_path / "notes.json").write_text('{"events": "none"}', encoding="utf-8")
    values = {
        "file": str(tmp_path / "notes.json"),
        "db": production.db,
        "export": str(ROOT / "tests/fixtures/cassettes/refund_small.json"),
        "tmp": str(tmp_path),
    }
    assert main([a.format(**values) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("corral: UsageError: ") and message in line


def test_a_file_that_is_not_an_export_is_refused_by_the_real_process(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text("[1, 2, 3]", encoding="utf-8")
    done = corral("replay", str(notes), check=2)
    assert done.stdout == ""
    assert done.stderr == (
        f"corral: UsageError: {notes} is not a Corral run export: expected a JSON object "
        'with "run" and "events" (as `corral export RUN_ID` writes)\n'
    )
