from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral import Runtime
from corral.cli import main
from corral.demo import DEMO_TASK, InvoiceBook, billing_agent, demo_router, support_agent


async def test_demo_scenario_meets_every_production_failure_and_finishes() -> None:
    book = InvoiceBook(retry_after=0.01)
    async with Runtime(agents=[billing_agent(book=book), support_agent()], router=demo_router()) as rt:
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


def test_corral_demo_prints_a_trail_a_person_can_follow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "agent billing" in out and "rule billing-kind" in out
    for expected in [
        "RateLimited: invoice API: 429 Too Many Requests",
        "retry in 0.20 s",
        "blocked: schema",
        "$.invoice_id: 'INV-101' does not match",
        "blocked: registered",
        "unknown tool 'lookup_exchange_rate'",
        "flag_discrepancy",
        "/100,000",
    ]:
        assert expected in out, expected
    summary = next(line for line in out.splitlines() if line.startswith("completed"))
    assert "steps=11" in summary and "model_calls=12" in summary and "time=" in summary


def test_corral_run_routes_by_keyword_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "I cannot login, how do I reset my password?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"]["agent"] == "support"
    assert payload["result"]["outcome"] == "completed"
    assert "Passwords are reset" in payload["result"]["output"]
    kinds = [e["kind"] for e in payload["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert payload["events"][0]["rule"] == "support-words"


def test_corral_run_unroutable_task_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "what is the weather like"]) == 2
    err = capsys.readouterr().err
    assert "RoutingError" in err


def test_console_script_runs_the_demo_as_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "corral.cli", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["result"]["outcome"] == "completed"
    assert payload["result"]["steps"] == 11
