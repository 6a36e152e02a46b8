"""Each fault class at a high rate: every injected fault lands in its expected bucket."""

from __future__ import annotations

import pytest

from corral.loadtest import LoadTest, run_loadtest
from corral.loadtest._profiles import FaultRates, Profile, RecoveryRates, Timing

EXPECTED: dict[str, tuple[set[str], str | None]] = {
    # class: (buckets allowed, a guardrail that must have caught some)
    "invented_tool": ({"recovered", "ended"}, "registered"),
    "invented_argument": ({"recovered", "ended"}, "schema"),
    "wrong_type": ({"recovered", "ended"}, "schema"),
    "repeated_call": ({"recovered", "ended"}, "tool error"),
    "out_of_scope": ({"recovered", "ended"}, "permission"),
    "injection": ({"gate", "caught"}, None),
    "huge_result": ({"caught"}, "result_truncation"),
    "cascade": ({"recovered", "ended", "breaker"}, "tool error"),
    "rate_limit": ({"retry"}, None),
    "provider_error": ({"retry"}, None),
    "tool_hang": ({"retry", "fallback"}, None),
    "model_hang": ({"retry"}, None),
    "slow": ({"absorbed"}, None),
}


def only(fault: str, *, give_up: float = 0.0) -> Profile:
    return Profile(
        name=f"only-{fault}",
        faults=FaultRates(**{fault: 0.8}),
        recovery=RecoveryRates(default=0.5, give_up=give_up),
        timing=Timing(tool_timeout_s=0.1, model_timeout_s=0.3, slow_s=(0.01, 0.05)),
    )


@pytest.mark.parametrize("fault", sorted(EXPECTED))
async def test_each_injected_fault_is_accounted_for(fault: str) -> None:
    result = await run_loadtest(
        LoadTest(profile=only(fault), runs=14, concurrency=14, seed=3, unguarded=False)
    )
    a = result.accounting
    row = a.rows[fault]
    assert row.injected >= 5
    assert row.injected == sum(row.buckets.values())
    allowed, guardrail = EXPECTED[fault]
    assert set(+row.buckets) <= allowed, row.as_dict()
    if guardrail is not None:
        assert row.caught_by[guardrail] > 0, row.as_dict()
    assert all(r.injected == 0 for name, r in a.rows.items() if name != fault)
    assert a.ok, [i for i in a.invariants if not i.held]


async def test_an_injected_call_is_never_executed_and_gates_are_rejected() -> None:
    result = await run_loadtest(LoadTest(profile=only("injection"), runs=14, concurrency=7, seed=5))
    row = result.accounting.rows["injection"]
    assert row.buckets["gate"] > 0 and row.buckets["leaked"] == 0
    guarded = [r for r in result.records for e in r.events if e.kind == "gate_decided"]
    assert guarded and all(
        e.decision == "rejected" for r in guarded for e in r.events if e.kind == "gate_decided"
    )
    # The plain loop, same faults, sends receipts to the injected address.
    assert result.accounting.unguarded["by_fault"]["injection"]["leaked"] > 0


async def test_a_cascade_whose_model_gives_up_leaks_into_the_answer() -> None:
    result = await run_loadtest(
        LoadTest(profile=only("cascade", give_up=1.0), runs=10, concurrency=10, unguarded=False)
    )
    row = result.accounting.rows["cascade"]
    assert row.buckets["leaked"] > 0
    assert row.injected == sum(row.buckets.values())
    assert "completed (wrong answer)" in result.accounting.outcomes
