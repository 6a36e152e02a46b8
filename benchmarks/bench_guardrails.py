"""Cost of the pure guardrail checks, in microseconds (median of many runs, in process).

Prints the median cost of:

* `InputScreen.screen` on a 2 KB JSON tool result (injection + PII) and on 2 KB of prose;
* `filter_result` on a 2 KB JSON result, given as an object and as a JSON string;
* the argument rules, permission check, scope policies and approval decision for a
  typical tool call;
* the whole `CheckChain` the agent loop runs before a call (registered name, arguments,
  schema, permission, policies, approval), context included;
* the chain per tool call: checks before the call, then filter and screen the result as
  the agent loop does (whole raw result, the text shown, personal data flagged);
* the provenance check on that call with ten 2 KB results in the run's context: once the
  results are normalised (each is, once, on the first trace after it arrives), and
  including that normalisation of all ten (the worst case: every result new). The
  issue's target is under 50 µs per call.

The issue's target for the whole chain is a median under 200 µs for a typical call with
a 2 KB result. Figures only; nothing is asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _table import record  # noqa: E402

from corral import tool  # noqa: E402
from corral._pii import PERSONAL_KINDS, SECRET_KINDS, PIIDetector  # noqa: E402
from corral.guardrails import (  # noqa: E402
    Allowlist,
    ApprovalPolicy,
    ApprovalRule,
    ArgumentPolicy,
    NoPathTraversal,
    NoSQLFragments,
    ProposedCall,
    Range,
    check_permission,
    check_policies,
    policy_from_callable,
)
from corral.guardrails._chain import CallContext, CheckChain  # noqa: E402
from corral.guardrails._detector import InjectionDetector  # noqa: E402
from corral.guardrails._provenance import Origin, ProvenanceCheck, Sources  # noqa: E402
from corral.guardrails._results import filter_result  # noqa: E402
from corral.guardrails._screen import InputScreen  # noqa: E402
from corral.models import ToolCall  # noqa: E402

RUNS = 3_000


def median_us(fn: Callable[[], Any], runs: int = RUNS) -> float:
    for _ in range(200):  # warm caches (pattern set, fold table)
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def two_kb_rows() -> list[dict[str, Any]]:
    rows = [
        {
            "invoice_id": f"INV-{i:06d}",
            "customer": "Acme Corp",
            "status": "paid" if i % 3 else "unpaid",
            "total": round(120.5 + i * 3.25, 2),
            "currency": "EUR",
            "due": "2024-07-01",
            "note": "Thanks for your business; statement attached.",
        }
        for i in range(40)
    ]
    while len(json.dumps(rows)) > 2048:
        rows.pop()
    return rows


ROWS = two_kb_rows()
RESULT_TEXT = json.dumps(ROWS)
PROSE = (
    "Hello team, the customer reported that the invoice total was wrong. Please check the "
    "billing system and update the record. Finance said to apply a 10% discount for orders "
    "above 500 EUR. Let me know if you need anything else. Regards, Sam.\n"
) * 10
PROSE = PROSE[:2048]

DETECTOR = InjectionDetector()
PII = PIIDetector()
SCREEN = InputScreen()
SCREEN_NO_PII = InputScreen(pii="off")
RULES = ArgumentPolicy(
    [
        Range("amount", min=0.01, max=5_000, tools=["refund"]),
        Allowlist("account_id", ["ACC-1*", "ACC-2*"]),
        NoPathTraversal(),
        NoSQLFragments(),
    ]
)
POLICIES = [
    policy_from_callable(lambda c: c.tenant == "acme" or "wrong tenant", name="tenant"),
]
APPROVAL = ApprovalPolicy(
    [
        ApprovalRule("auto", tool="refund", when=Range("amount", max=49.99)),
        ApprovalRule("block", side_effect="destructive"),
    ]
)
CALL = ProposedCall(
    run_id="run-1",
    agent="billing",
    agent_scopes=frozenset({"invoices:read", "refunds:write"}),
    tool="refund",
    side_effect="write",
    tool_scopes=frozenset({"refunds:write"}),
    arguments={
        "account_id": "ACC-1042",
        "invoice_id": "INV-000102",
        "amount": 20.0,
        "reason": "Customer was charged twice for the same order.",
    },
    tenant="acme",
)


@tool(timeout=5, side_effect="write", scopes={"refunds:write"})
async def refund(account_id: str, invoice_id: str, amount: float, reason: str) -> str:
    """Refund an invoice."""
    return "refunded"


TOOL_CALL = ToolCall(id="call-1", name="refund", arguments=dict(CALL.arguments))
OFFERED = {"refund": refund}
CHAIN = CheckChain.default(policies=[RULES, *POLICIES], approval=APPROVAL)


def chain_run() -> None:
    """What `_handle_call` does per call: describe it, then run the chain."""
    proposed = ProposedCall.of(
        refund,
        TOOL_CALL.arguments,
        run_id=CALL.run_id,
        agent=CALL.agent,
        agent_scopes=CALL.agent_scopes,
        tenant=CALL.tenant,
        call_id=TOOL_CALL.id,
    )
    CHAIN.run(
        CallContext(
            call=TOOL_CALL,
            tool=refund,
            proposed=proposed,
            offered=OFFERED,
            unavailable=frozenset(),
            approval_settled=False,
        )
    )


def call_checks() -> None:
    check_permission(
        CALL.agent_scopes,
        CALL.tool_scopes,
        CALL.side_effect,
        None,
        tool=CALL.tool,
        agent=CALL.agent,
    )
    RULES.check(CALL)
    check_policies(POLICIES, CALL)
    APPROVAL.decide(CALL)


RESULT_SCREEN = SCREEN_NO_PII.for_run()
SECRETS = PIIDetector(kinds=SECRET_KINDS)
PERSONAL = PIIDetector(kinds=PERSONAL_KINDS, name="result_pii")


def chain() -> None:
    """What the agent loop does per call: check it, then filter and screen its result.

    As `corral.subagents._run`: secrets redacted JSON-aware, the whole raw result and the
    text shown screened (with the seam to the previous result), personal data flagged.
    """
    call_checks()
    filtered = filter_result(ROWS, detector=SECRETS)
    whole = filtered.content if not (filtered.truncated or filtered.redactions) else RESULT_TEXT
    RESULT_SCREEN.screen(whole, shown=filtered.content)
    PERSONAL.check(filtered.content, action="flag")


PROVENANCE = ProvenanceCheck(instructions="You are a billing agent. Refund what is owed.")
RESULTS = [
    (json.dumps(ROWS[i % 3 :]).replace("Acme", f"Acme {i}"), Origin("tool", "search", f"c{i}", i))
    for i in range(10)
]
PROVENANCE_CTX = CallContext(
    call=TOOL_CALL,
    tool=refund,
    proposed=CALL,
    offered=OFFERED,
    sources=Sources([("Refund what INV-000102 was overcharged.", Origin("task")), *RESULTS]),
)


def provenance_cold() -> None:
    """The check when all ten results are new to it (each is normalised on this trace)."""
    ctx = PROVENANCE_CTX._replace(sources=Sources(RESULTS))
    PROVENANCE.check(ctx)


def main() -> None:
    print(f"2 KB JSON result: {len(RESULT_TEXT):,} chars; prose: {len(PROSE):,} chars")
    figures = [
        (
            "InputScreen, 2 KB JSON tool result",
            lambda: SCREEN.screen(RESULT_TEXT, source="tool_result"),
        ),
        ("InputScreen, 2 KB prose", lambda: SCREEN.screen(PROSE, source="tool_result")),
        ("  injection scan only, 2 KB JSON", lambda: DETECTOR.scan(RESULT_TEXT)),
        ("  PII find only, 2 KB JSON", lambda: PII.find(RESULT_TEXT)),
        ("filter_result, 2 KB JSON object", lambda: filter_result(ROWS)),
        ("filter_result, 2 KB JSON string", lambda: filter_result(RESULT_TEXT)),
        ("filter_result, 20 KB JSON object -> 800 tokens", lambda: filter_result(ROWS * 10)),
        (
            "permission check",
            lambda: check_permission(
                CALL.agent_scopes, CALL.tool_scopes, CALL.side_effect, None, tool=CALL.tool
            ),
        ),
        ("argument rules (4 rules)", lambda: RULES.check(CALL)),
        ("scope policies (1 callable)", lambda: check_policies(POLICIES, CALL)),
        ("approval decision", lambda: APPROVAL.decide(CALL)),
        ("all call checks", call_checks),
        ("check chain per call (CheckChain.run, 7 checks)", chain_run),
        ("chain: call checks + filter_result + screen (2 KB)", chain),
        (
            "provenance check, 10 x 2 KB results in context",
            lambda: PROVENANCE.check(PROVENANCE_CTX),
        ),
        ("  same, the ten results new (normalised on the call)", provenance_cold),
    ]
    targets = {  # the headline figures, recorded for `make bench`'s table, with the issue's targets
        "chain: call checks + filter_result + screen (2 KB)": 200.0,
        "provenance check, 10 x 2 KB results in context": 50.0,
        "  same, the ten results new (normalised on the call)": None,
    }
    width = max(len(name) for name, _ in figures)
    for name, fn in figures:
        cost = median_us(fn)
        print(f"{name:<{width}}  {cost:8.1f} us")
        if name in targets:
            bound = targets[name]
            target = None if bound is None else ("<", bound)
            record("bench_guardrails", name, cost, "us", target=target, note="median, in process")


if __name__ == "__main__":
    main()
