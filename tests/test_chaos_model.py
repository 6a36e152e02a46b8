"""ChaosModel: seeded production failures, and the runtime catching every one of them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from corral import Durability, Limits, MockClock, Runtime, SubAgent, tool
from corral.errors import UsageError
from corral.models import ChaosModel, FunctionModel, ModelRequest, ToolResultMessage, call


@tool(timeout=5)
async def lookup(invoice_id: str) -> str:
    """Look up an invoice."""
    return f"{invoice_id}: 10.00"


def honest(request: ModelRequest) -> Any:
    done = sum(isinstance(m, ToolResultMessage) and not m.is_error for m in request.messages)
    if done >= 2:
        return "done"
    return call("lookup", invoice_id=f"INV-{request.step:06d}")


async def test_chaos_faults_are_seeded_and_each_is_caught() -> None:
    chaos = ChaosModel(
        FunctionModel(honest),
        seed=3,
        rate_limit=0.2,
        error=0.1,
        unknown_tool=0.2,
        malformed_arguments=0.2,
    )
    limits = Limits(max_tool_calls=40, max_errors=40, max_consecutive_same_tool=None)
    agent = SubAgent("w", instructions="x", tools=[lookup], model=chaos, limits=limits)
    outcomes: Counter[str] = Counter()
    async with Runtime(
        agents=[agent], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        for _ in range(20):
            result = await rt.run("check two invoices")
            outcomes[result.outcome or "waiting"] += 1
            for e in result.events:
                if e.kind == "tool_call_rejected":
                    assert e.guardrail in {"registered", "arguments"}
                if e.kind == "model_failed":
                    assert e.error_type in {"RateLimited", "ModelError"}
                    assert e.will_retry or e.attempt == 4  # retried until the policy gives up
            if result.outcome == "failed":
                assert result.reason.startswith("model call failed after 4 attempt(s): chaos:")
    # Every fault was retried or fed back and corrected, unless all four attempts of one
    # model call failed, which ends the run with a clear reason.
    assert set(outcomes) <= {"completed", "failed"}
    assert outcomes["completed"] >= 15
    assert set(chaos.faults) == {"rate_limit", "error", "unknown_tool", "malformed_arguments"}
    again = ChaosModel(
        FunctionModel(honest),
        seed=3,
        rate_limit=0.2,
        error=0.1,
        unknown_tool=0.2,
        malformed_arguments=0.2,
    )
    agent2 = SubAgent("w", instructions="x", tools=[lookup], model=again, limits=limits)
    async with Runtime(
        agents=[agent2], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        for _ in range(20):
            await rt.run("check two invoices")
    assert again.faults == chaos.faults  # the same seed, the same faults


def test_chaos_probabilities_are_checked() -> None:
    with pytest.raises(UsageError, match="rate_limit must be a probability"):
        ChaosModel(FunctionModel(honest), rate_limit=1.5)
