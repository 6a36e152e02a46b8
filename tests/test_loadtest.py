"""`corral loadtest`: profiles, the report, its invariants, the wire, the CLI and --server."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from corral.errors import ConfigError
from corral.events import Event, ToolCallRejected
from corral.loadtest import (
    Ledger,
    LoadTest,
    _command,
    app,
    load_profile,
    profile_names,
    render_report,
    report_json,
    run_loadtest,
)
from corral.loadtest._profiles import FaultRates, Profile
from tests._serve_process import TOKEN, served

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_profiles_load() -> None:
    assert profile_names() == ["flaky-provider", "hostile", "production"]
    for name in profile_names():
        profile = load_profile(name)
        assert profile.name == name
        assert 0 <= profile.good_rate < 1
    assert load_profile("production").faults.injection == 0.01


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('name = "x"\n[faults]\ninjection = 1.5\n', "faults.injection"),
        ('name = "x"\n[faults]\ninjecton = 0.1\n', "faults.injecton"),
        ('name = "x"\n[limits]\nmax_tokens = -3\n', "max_tokens"),
        ('name = "x"\n[faults]\ninjection = 0.7\ncascade = 0.7\n', "sum to 1.4"),
        ('name = "x"\n[timing]\ntool_timeout_s = "soon"\n', "timing.tool_timeout_s"),
        ("name = [\n", "not valid TOML"),
    ],
)
def test_a_bad_profile_file_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="mine.toml") as info:
        load_profile(path)
    assert field in str(info.value)


def test_a_user_profile_loads_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[faults]\ninvented_tool = 0.5\n[recovery]\ninvented_tool = 0.1\n")
    profile = load_profile(path)
    assert profile.name == "mine"
    assert profile.recovery.of("invented_tool") == 0.1
    assert profile.recovery.of("cascade") == 0.7
    with pytest.raises(ConfigError, match="no chaos profile 'nope'"):
        load_profile("nope")


def _sabotage(event: Event, ledger: Ledger) -> None:
    """A runtime that runs the calls it refused: a ledger entry for each rejected call."""
    if isinstance(event, ToolCallRejected):
        ledger.record(
            "tool", run_id=event.run_id, call_id=event.call_id, tool=event.tool, effect=True
        )


async def test_a_refused_call_that_runs_breaks_an_invariant_and_the_exit_code() -> None:
    args = _command.add_parser(argparse.ArgumentParser().add_subparsers()).parse_args(
        ["--runs", "12", "--concurrency", "6", "--profile", "hostile", "--no-unguarded"]
    )
    result = await run_loadtest(
        LoadTest(
            profile=load_profile("hostile"), runs=12, concurrency=6, unguarded=False, tap=_sabotage
        )
    )
    broken = {i.name: i for i in result.accounting.invariants if not i.held}
    assert "no blocked tool call executed" in broken
    assert "refused by" in broken["no blocked tool call executed"].detail
    console = Console(record=True, width=200)
    render_report(result, console)
    assert "BROKEN no blocked tool call executed" in console.export_text()
    assert await _command.run(args, tap=_sabotage) == 1
    assert await _command.run(args) == 0


async def test_the_model_over_a_real_socket_through_the_anthropic_adapter() -> None:
    result = await run_loadtest(
        LoadTest(
            profile=Profile(name="wire", faults=FaultRates(rate_limit=0.4, provider_error=0.4)),
            runs=16,
            concurrency=8,
            seed=2,
            wire="anthropic",
            unguarded=False,
        )
    )
    a = result.accounting
    assert a.ok, [i for i in a.invariants if not i.held]
    assert result.wire_statuses.get(429, 0) > 0
    assert sum(n for status, n in result.wire_statuses.items() if status >= 500) > 0
    assert a.rows["rate_limit"].buckets["retry"] == a.rows["rate_limit"].injected > 0
    assert a.economy["correct_runs"] == 16


async def test_pass_k_with_repeat() -> None:
    result = await run_loadtest(
        LoadTest(profile=load_profile("hostile"), runs=6, repeat=3, concurrency=9, unguarded=False)
    )
    pk = result.accounting.pass_k
    assert result.accounting.runs == 18 and pk["tasks"] == 6
    assert 0 <= pk["pass^3"] <= pk["pass^2"] <= pk["pass^1"] <= 1
    assert report_json(result)["pass_k"] == pk


def test_corral_loadtest_as_a_process_writes_the_json_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "corral",
            "loadtest",
            "--runs",
            "20",
            "--concurrency",
            "10",
            "--profile",
            "hostile",
            "--seed",
            "11",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "Fault accounting" in done.stdout and "held" in done.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["runs"] == 20
    for row in report["faults"]:
        assert row["injected"] == sum(row["buckets"].values()) == row["bucket_sum"]
    assert report["unguarded"]["runs"] == 20
    assert {i["name"] for i in report["invariants"]} >= {
        "no run lost",
        "no budget exceeded",
        "no blocked tool call executed",
        "no side effect executed twice for one idempotency key",
        "no completed model call repeated",
    }
    bad = subprocess.run(
        [sys.executable, "-m", "corral", "loadtest", "--profile", "missing.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "ConfigError" in bad.stderr


def test_the_app_factory_reads_its_environment(tmp_path: Path) -> None:
    application = app(
        {"CORRAL_LOADTEST_PROFILE": "hostile", "CORRAL_LOADTEST_LEDGER": str(tmp_path / "l.jsonl")}
    )
    assert [a.name for a in application.agents] == ["orders"]
    with pytest.raises(ConfigError):
        app({"CORRAL_LOADTEST_PROFILE": str(tmp_path / "none.toml")})


async def test_server_mode_drives_corral_serve_and_answers_gates_through_the_api(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "gates.toml"
    profile.write_text('name = "gates"\n[faults]\ninjection = 0.6\ninvented_tool = 0.2\n')
    ledger = tmp_path / "ledger.jsonl"
    with served(
        tmp_path,
        app="corral.loadtest:app",
        CORRAL_LOADTEST_PROFILE=str(profile),
        CORRAL_LOADTEST_LEDGER=str(ledger),
        CORRAL_SERVER__ALLOW_SELF_APPROVAL="true",
        CORRAL_SERVER__RATE_LIMIT_PER_MINUTE="100000",
    ) as server:
        result = await run_loadtest(
            LoadTest(
                profile=load_profile(profile),
                runs=10,
                concurrency=5,
                seed=3,
                server=server.url,
                token=TOKEN,
                ledger_path=ledger,
            )
        )
        gates = server.get("/v1/approvals")["approvals"]
    a = result.accounting
    assert a.ok, [i for i in a.invariants if not i.held]
    assert a.runs == 10 and not gates
    assert a.rows["injection"].buckets["gate"] > 0
    decided = [e for r in result.records for e in r.events if e.kind == "gate_decided"]
    assert decided and {e.by for e in decided} == {"ops"}
    assert ledger.exists()
