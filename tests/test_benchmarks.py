"""The benchmark table and the durability benchmarks: figures judged right, scripts that run.

`make bench` ends with one table of every figure and its target (``benchmarks/_table.py``);
a reader trusts its ``met`` / ``NOT met`` / ``not measured`` column, so the judging is
checked here on figures with known values. ``bench_durable.py --quick`` and
``compare.py --quick`` run as real subprocesses (a real SQLite file, a child process
killed with SIGKILL and resumed) and must exit 0 having recorded their figures. The
comparison's peers (LangGraph, DBOS) are the optional ``compare`` extra: one run hides
them (a package on ``PYTHONPATH`` that raises ImportError) and checks their figures are
recorded as not measured, with the install hint; the other runs with whatever this venv
has and checks each peer is measured exactly when it imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _table_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_table", BENCHMARKS / "_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_table", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


table = _table_module()


def _run(script: str, *args: str, figures: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, table.ENV: str(figures), **env},
        check=False,
    )


def _by_name(figures: list[Any]) -> dict[str, Any]:
    return {f.name: f for f in figures}


# -- the table ---------------------------------------------------------------------------------------


def test_record_appends_each_figure_and_the_table_judges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(table.ENV, str(path))
    table.record("b", "fast enough", 12.5, "us/step", target=("<=", 60.0))
    table.record("b", "too slow", 3.1, "s", target=("<", 1.0), note="imports included")
    table.record("b", "at the bound", 20.0, "x", target=(">=", 20.0))
    table.record("b", "just under", 19.99, "x", target=(">=", 20.0))
    table.record("b", "no target", 9_535.0, "commits/s")
    table.record("c", "smoke", 5.0, "s", target=("<", 1.0), quick=True)
    table.record_missing("compare", "peer steps/s", "steps/s", "not measured: pip install x")
    table.record_missing(
        "compare", "peer ratio", "x", "not measured: pip install x", target=(">=", 10.0)
    )

    figures = table.load(path)
    assert [f.name for f in figures] == [
        "fast enough",
        "too slow",
        "at the bound",
        "just under",
        "no target",
        "smoke",
        "peer steps/s",
        "peer ratio",
    ]
    assert [f.met for f in figures] == [True, False, True, False, None, False, None, None]
    rendered = table.render(figures).splitlines()
    row = {name: next(line for line in rendered if name in line) for name in _by_name(figures)}
    assert row["fast enough"].split()[-1] == "met"
    assert "<= 60.0 us/step" in row["fast enough"]
    assert "NOT met" in row["too slow"] and "imports included" in row["too slow"]
    assert "3.10 s" in row["too slow"]
    assert "NOT met" not in row["at the bound"] and row["at the bound"].rstrip().endswith("met")
    assert "NOT met" in row["just under"]
    assert "met" not in row["no target"] and "9,535 commits/s" in row["no target"]
    assert "QUICK" in row["smoke"]
    for missing in ("peer steps/s", "peer ratio"):
        assert "not measured" in row[missing] and "pip install x" in row[missing]
        assert "NOT met" not in row[missing]
    assert ">= 10.00 x" in row["peer ratio"]
    summary = rendered[-1]
    assert summary.startswith("8 figures, 5 measured with a target: 2 met, 3 NOT met")
    assert "b too slow" in summary and "b just under" in summary and "c smoke" in summary
    assert "2 not measured" in summary and "QUICK run" in summary


def test_record_keeps_nothing_without_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(table.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    figure = table.record("b", "alone", 1.0, "s", target=("<", 2.0))
    assert figure.met is True
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_comparison_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(table.ENV, raising=False)
    with pytest.raises(ValueError, match="unknown comparison '=<'"):
        table.record("b", "typo", 1.0, "s", target=("=<", 2.0))
    with pytest.raises(ValueError, match="unknown comparison"):
        table.record_missing("b", "typo", "s", "why", target=("~", 2.0))


def test_the_table_script_prints_a_file_and_refuses_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "figures.jsonl"
    path.write_text(
        json.dumps(
            {
                "bench": "b",
                "name": "per step",
                "value": 136.0,
                "unit": "us/step",
                "op": "<=",
                "bound": 60.0,
                "note": "",
                "quick": False,
            }
        )
        + "\n"
    )
    script = [sys.executable, str(BENCHMARKS / "_table.py")]
    shown = subprocess.run([*script, str(path)], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "136 us/step" in shown.stdout and "NOT met" in shown.stdout
    empty = subprocess.run(
        [*script, str(tmp_path / "none.jsonl")], capture_output=True, text=True, check=False
    )
    assert empty.returncode == 1 and "no figures recorded" in empty.stderr
    usage = subprocess.run(script, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr


# -- the scripts, as real processes ------------------------------------------------------------------


def test_bench_durable_quick_runs_and_records_its_figures_with_targets(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.jsonl"
    done = _run("bench_durable.py", "--quick", figures=figures_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model calls per run 11..11" in done.stdout  # no model call asked twice after SIGKILL
    figures = _by_name(table.load(figures_path))
    assert all(f.quick and f.bench == "bench_durable" for f in figures.values())
    targets = {name: (f.op, f.bound) for name, f in figures.items() if f.op}
    assert targets == {
        "  Corral minus bare journal (RSS)": ("<=", 1.0),
        "memory per further paused run (RSS)": ("<", 1024),
        "  same, Python heap": ("<", 1024),
        "resume 20 after SIGKILL, spawn to done": ("<", 1.0),
        "disk per finished gated 10-step run": ("<=", 4096),
    }
    for name in (
        "durable steps/s, 1 run at a time (step)",
        "durable steps/s, 100 started together (step)",
        "commit floor, aiosqlite, 1 row/txn",
    ):
        assert figures[name].value is not None and figures[name].value > 0


def _peer_figures(figures: dict[str, Any], peer: str) -> list[Any]:
    return [f for name, f in figures.items() if name.endswith(peer) or f"/ {peer}" in name]


def test_compare_quick_without_the_peers_records_them_as_not_measured(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    for package in ("langgraph", "dbos"):
        (hidden / package).mkdir(parents=True)
        (hidden / package / "__init__.py").write_text(
            f"raise ImportError('{package} hidden by the test')\n"
        )
    figures_path = tmp_path / "figures.jsonl"
    done = _run("compare.py", "--quick", figures=figures_path, PYTHONPATH=str(hidden))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LangGraph is not installed (langgraph hidden by the test)" in done.stdout
    assert "DBOS is not installed (dbos hidden by the test)" in done.stdout
    figures = _by_name(table.load(figures_path))
    peers = []
    for peer in ("LangGraph", "DBOS"):
        missing = _peer_figures(figures, peer)
        # steps/s and the ratio at 1 and 100 runs; memory, per further run, resume, disk
        assert len(missing) == 8, [f.name for f in missing]
        assert all(f.value is None and "pip install -e '.[compare]'" in f.note for f in missing)
        peers += missing
    ratio = figures["Corral / LangGraph steps/s, 1 run"]
    assert (ratio.op, ratio.bound, ratio.met) == (">=", 10.0, None)
    corral = [f for f in figures.values() if f not in peers]
    assert len(corral) >= 10 and all(f.value is not None for f in corral)
    assert "not measured" in table.render(list(figures.values()))


def _importable(module: str) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_compare_quick_measures_each_installed_peer(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.jsonl"
    done = _run("compare.py", "--quick", figures=figures_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = _by_name(table.load(figures_path))
    installed = {
        "LangGraph": _importable("langgraph.checkpoint.sqlite.aio"),
        "DBOS": _importable("dbos"),
    }
    for peer, present in installed.items():
        peer_figures = _peer_figures(figures, peer)
        assert peer_figures
        assert all((f.value is not None) == present for f in peer_figures), peer
        assert (f"{peer} is not installed" in done.stdout) is not present
    for name in (
        "memory from cold, 10 paused, Corral minus bare journal",
        "resume 10 after SIGKILL, spawn to done, Corral",
        "disk per finished gated run, Corral",
    ):
        assert figures[name].value is not None and figures[name].op
    assert figures["commit floor, sqlite3 (no thread hop), 1 row/txn"].value > 0
