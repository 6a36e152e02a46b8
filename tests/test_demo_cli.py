from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corral import Runtime
from corral.cli import main
from corral.demo import DEMO_TASK, InvoiceBook, billing_agent, demo_router, support_agent


async def test_demo_scenario_meets_every_production_failure_and_finishes() -> None:
    book = InvoiceBook(retry_after=0.01)
    async with Runtime(
        agents=[billing_agent(book=book), support_agent()], router=demo_router()
    ) as rt:
        paused = await rt.run(DEMO_TASK, kind="billing")
        # Writes wait for a person: both flags are proposed together, so two gates open.
        assert paused.status == "waiting" and paused.outcome is None
        assert [(g.opened.tool, g.opened.arguments["invoice_id"]) for g in paused.gates] == [
            ("flag_discrepancy", "INV-000102"),
            ("flag_discrepancy", "INV-000103"),
        ]
        assert book.flags == []  # nothing was written before the approval
        for gate in paused.gates:
            await rt.approve(gate.opened.gate_id, by="controller@acme.test", note="checked")
        result = await rt.wait(paused.run_id, timeout=10)
    assert result.status == "finished" and result.outcome == "completed"
    ev = result.events
    failed = [e for e in ev if e.kind == "tool_call_failed"]
    assert [(e.tool, e.error_type, e.will_retry) for e in failed] == [
        ("search_invoices", "RateLimited", True)
    ]
    assert failed[0].delay_s >= 0.01  # Retry-After honoured
    rejected = [(e.tool, e.guardrail) for e in ev if e.kind == "tool_call_rejected"]
    assert rejected == [("calculate_invoice", "schema"), ("lookup_exchange_rate", "registered")]
    # The model corrected itself: the next calls after each rejection are valid ones.
    proposed = [e for e in ev if e.kind == "tool_call_proposed"]
    bad = next(i for i, e in enumerate(proposed) if e.arguments.get("invoice_id") == "INV-101")
    assert proposed[bad + 1].tool == "calculate_invoice"
    assert proposed[bad + 1].arguments["invoice_id"] == "INV-000101"
    unknown = next(i for i, e in enumerate(proposed) if e.tool == "lookup_exchange_rate")
    assert proposed[unknown + 1].tool == "get_invoice"
    assert [f["invoice_id"] for f in book.flags] == ["INV-000102", "INV-000103"]
    assert [f["difference"] for f in book.flags] == [40.0, -15.0]
    assert result.output is not None and "2 discrepancies found, 2 flagged" in result.output
    assert book.calls["search_invoices"] == 2


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


def test_corral_demo_stops_at_the_gate_approve_records_and_resume_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    assert main(["--db", db, "demo"]) == 0
    out = capsys.readouterr().out
    assert "agent billing" in out and "rule billing-kind" in out
    for expected in [
        "RateLimited: invoice API: 429 Too Many Requests",
        "retry in 0.20 s",
        "blocked: schema",
        "$.invoice_id: 'INV-101' does not match",
        "blocked: registered",
        "unknown tool 'lookup_exchange_rate'",
        "needs approval",
        "/100,000",
        "The run is waiting for a person before it changes anything (2 gate(s))",
        f"corral --db {db} approve --all --as you@example.com",
    ]:
        assert expected in out, expected
    gates = re.findall(r"corral --db \S+ approve (gate_\w+) --as", out)
    assert gates

    assert main(["--db", db, "approvals", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[0].split() == [
        "GATE",
        "ID",
        "RUN",
        "ID",
        "AGENT",
        "TOOL",
        "EXPIRES",
        "ARGUMENTS",
        "REASON",
    ]
    assert listed.count("  flag_discrepancy  ") == 2

    # Approving records the decisions and returns: it drives nothing, and says who will.
    assert (
        main(["--db", db, "approve", "--all", "--as", "ana@example.com", "--note", "checked"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("approved by ana@example.com: checked") == 2
    assert "is ready to go on" in out and "`corral --db" in out
    assert "completed" not in out and "discrepancies found" not in out
    assert main(["--db", db, "-o", "json", "runs", "list"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["status"], run["outcome"]) == ("running", None)

    assert main(["--db", db, "resume"]) == 0
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("completed"))
    assert "steps=9" in summary and "model_calls=11" in summary and "time=" in summary
    assert "2 discrepancies found, 2 flagged" in out

    assert main(["--db", db, "-o", "json", "runs", "list"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["status"] == "finished" and run["outcome"] == "completed"
    assert main(["--db", db, "approve", gates[0], "--as", "bob"]) == 2
    assert "was already approved by ana@example.com" in capsys.readouterr().err


def test_rejecting_a_gate_is_fed_back_and_the_run_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_url(tmp_path)
    assert main(["--db", db, "-o", "json", "demo"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"]["status"] == "waiting"
    first, second = (g["gate_id"] for g in payload["result"]["gates"])
    assert main(["--db", db, "reject", first, "--as", "ana", "--reason", "already credited"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "approve", second, "--as", "ana"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "resume"]) == 0
    out = capsys.readouterr().out
    assert (
        "INV-000102: recorded 1235.00 USD, line items 1195.00 (+40.00) (not flagged: refused)"
        in out
    )
    assert main(["--db", db, "-o", "json", "runs", "show", payload["result"]["run_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["outcome"] == "completed"
    rejected = [
        e
        for e in shown["events"]
        if e["kind"] == "tool_call_rejected" and e["guardrail"] == "person"
    ]
    assert rejected and "already credited" in rejected[0]["reason"]


def test_corral_run_routes_by_keyword_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "run",
                "I cannot login, how do I reset my password?",
                "--json",
                "--db",
                db_url(tmp_path),
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"]["agent"] == "support"
    assert payload["result"]["outcome"] == "completed"
    assert "Passwords are reset" in payload["result"]["output"]
    kinds = [e["kind"] for e in payload["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert payload["events"][0]["rule"] == "support-words"


def test_corral_run_with_toml_routes_and_explain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = Path(__file__).resolve().parents[1] / "examples" / "routes.toml"
    code = main(
        ["run", "export my data", "--routes", str(routes), "--explain", "--db", db_url(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "support-words" in out and "export" in out


def test_corral_run_unroutable_task_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "what is the weather like", "--db", db_url(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "RoutingError" in err and "no rule" in err


def test_deliver_and_vacuum_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = db_url(tmp_path)
    assert main(["deliver", "payment:INV-1", "--payload", '{"ok": true}', "--db", db]) == 0
    assert (
        "no run waits on 'payment:INV-1' yet; the event is kept for it" in capsys.readouterr().out
    )
    assert main(["deliver", "k", "--payload", "{not json", "--db", db]) == 2
    assert main(["run", "reset password", "--db", db]) == 0
    capsys.readouterr()
    assert main(["--db", db, "store", "vacuum", "--older-than-days", "0", "--dry-run"]) == 0
    assert "would prune 1 finished run(s) older than 0 days; nothing was changed" in (
        capsys.readouterr().out
    )
    assert main(["store", "vacuum", "--older-than-days", "0", "--db", db]) == 0
    assert "pruned 1 finished run(s)" in capsys.readouterr().out
    assert main(["runs", "list", "--db", db]) == 0
    assert "no runs" in capsys.readouterr().out


def test_bad_database_url_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", "mysql://x"]) == 2
    assert "unknown journal URL" in capsys.readouterr().err


def test_console_script_runs_the_demo_as_json(tmp_path: Path) -> None:
    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.cli", *args, "--db", db_url(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    proc = corral("demo", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["result"]["status"] == "waiting" and len(payload["result"]["gates"]) == 2
    approved = corral("approve", "--all", "--as", "ops@example.com")
    assert approved.returncode == 0, approved.stderr
    listed = json.loads(corral("runs", "list", "--json").stdout)
    assert listed[0]["status"] == "running"  # decided; the next process continues it
    resumed = corral("resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    listed = json.loads(corral("runs", "list", "--json").stdout)
    assert listed[0]["outcome"] == "completed"
