"""Budgets that cannot be overshot: run tokens and cost, tenant daily budgets, notices,
repeated failed calls and cascades."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import Limits, MockClock, Runtime, SubAgent, Tenants, tool
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolCall, Usage, call
from corral.supervisor import TenantLimits
from corral.tools import RetryPolicy

from ._support import agent, of_kind, ping, pong, runtime

PRICES = {"priced": (3.0, 15.0)}  # USD per million input / output tokens


def cost(model: str, usage: Usage) -> float:
    inp, out = PRICES.get(model, (0.0, 0.0))
    return (usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000


def busy_model(text: str = "", name: str = "priced") -> FunctionModel:
    def respond(request: ModelRequest) -> Any:
        n = len(request.messages)
        return ModelResponse(
            text=text,
            tool_calls=(
                ToolCall(id=f"c{n}", name="ping" if n % 4 == 1 else "pong", arguments={"n": n}),
            ),
        )

    return FunctionModel(respond, name=name)


async def test_cost_budget_is_reserved_before_the_call_and_never_overshot() -> None:
    limits = Limits(
        max_cost_usd=0.02,
        output_tokens=1000,
        min_output_tokens=200,  # more than an answer needs: a smaller grant is refused
        max_tool_calls=100,
        max_consecutive_same_tool=None,
    )
    async with runtime(agent([ping, pong], busy_model("x" * 400), limits=limits), cost=cost) as rt:
        result = await rt.run("spend money")
    assert result.outcome == "stopped_budget"
    assert result.reason.startswith("cost budget reached")
    assert 0 < result.cost_usd <= 0.02
    assert result.cost_usd == sum(e.cost_usd for e in of_kind(result.events, "model_called"))


async def test_budget_notice_is_given_once_past_the_warning_level() -> None:
    limits = Limits(max_tool_calls=10, max_stale_streak=None)  # ping, pong: same answers
    model = busy_model(name="free")
    async with runtime(agent([ping, pong], model, limits=limits)) as rt:
        result = await rt.run("work")
    assert result.outcome == "stopped_steps"
    (notice,) = of_kind(result.events, "guardrail_verdict")
    assert notice.guardrail == "budget" and notice.decision == "flag"
    assert notice.reason.startswith("Budget notice: this run has used 80% of a limit. Remaining:")
    assert "2 tool calls" in notice.reason
    noticed = [
        r
        for r in model.requests
        if any(getattr(m, "content", "") == notice.reason for m in r.messages)
    ]
    assert noticed and noticed[0].messages[-1].content == notice.reason
    assert model.requests.index(noticed[0]) == notice.step - 1


async def test_tenant_daily_budget_is_shared_by_concurrent_runs_and_resets_next_day() -> None:
    clock = MockClock()
    limits = Limits(
        output_tokens=200, min_output_tokens=20, max_tool_calls=1000, max_stale_streak=None
    )
    worker = agent([ping, pong], busy_model(name="free"), limits=limits)
    async with runtime(
        worker, clock=clock, tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=6000)})
    ) as rt:
        handles = [await rt.submit("work", tenant="acme") for _ in range(5)]
        other = await rt.submit("work", tenant="globex", agent="worker")
        await other.cancel()
        results = [await h.result() for h in handles]
        usage = await rt.tenant_usage("acme")
        assert usage.tokens == sum(r.tokens for r in results) <= 6000
        assert usage.reserved == 0
        clock.advance(86_400)
        tomorrow = await rt.run("work", tenant="acme")
    assert all(r.outcome == "stopped_budget" for r in results)
    assert any("tenant 'acme' daily token budget reached" in r.reason for r in results)
    assert tomorrow.tokens > 0  # a new day, a fresh budget


async def test_repeating_an_identical_failed_call_stops_the_run() -> None:
    from corral.errors import ToolError

    @tool(timeout=5, retry=RetryPolicy(max_retries=0))
    async def lookup(invoice_id: str) -> str:
        """Lookup."""
        raise ToolError(f"no invoice {invoice_id}", retryable=False)

    model = FunctionModel(lambda request: call("lookup", invoice_id="INV-9"))
    async with runtime(agent([lookup], model)) as rt:
        result = await rt.run("find INV-9")
    assert result.outcome == "stopped_loop"
    assert result.reason == (
        'loop detected: the model repeated a call that already failed: lookup({"invoice_id":"INV-9"})'
    )
    assert len(of_kind(result.events, "tool_call_started")) == 1


async def test_cascading_errors_trip_the_run_breaker() -> None:
    def bad(request: ModelRequest) -> Any:
        n = len(request.messages)
        return call("ping" if n % 4 == 1 else "pong", n=f"not-a-number-{n}")

    limits = Limits(max_errors=3, max_failure_chain=None)  # the count of errors alone
    async with runtime(agent([ping, pong], FunctionModel(bad), limits=limits)) as rt:
        result = await rt.run("go")
    assert result.outcome == "stopped_breaker"
    assert result.reason.startswith(
        "run breaker: 4 errors, rejections and fallbacks in this run (limit 3)"
    )
    assert len(of_kind(result.events, "tool_call_rejected")) == 4


responses = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3000),  # characters of text
        st.integers(min_value=0, max_value=2),  # tool calls in the response
        st.integers(min_value=0, max_value=1500),  # characters of tool result
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=responses,
    max_tokens=st.integers(min_value=300, max_value=20_000),
    max_cost=st.one_of(st.none(), st.floats(min_value=0.001, max_value=0.2)),
    max_calls=st.integers(min_value=1, max_value=15),
    daily=st.one_of(st.none(), st.integers(min_value=500, max_value=30_000)),
)
def test_no_budget_is_ever_exceeded(
    script: list[tuple[int, int, int]],
    max_tokens: int,
    max_cost: float | None,
    max_calls: int,
    daily: int | None,
) -> None:
    results: dict[str, int] = {}

    @tool(timeout=5)
    async def fetch(n: int = 0) -> str:
        """Fetch."""
        return "r" * results.get("size", 0)

    def respond(request: ModelRequest) -> Any:
        i = min(request.step - 1, len(script) - 1)
        chars, calls, size = script[i]
        results["size"] = size
        if request.step > len(script):
            return "final answer"
        tool_calls = tuple(
            ToolCall(
                id=f"s{request.step}c{j}", name="fetch", arguments={"n": request.step * 10 + j}
            )
            for j in range(calls)
        )
        return ModelResponse(text="t" * chars, tool_calls=tool_calls)

    limits = Limits(
        max_tokens=max_tokens,
        max_cost_usd=max_cost,
        max_tool_calls=max_calls,
        output_tokens=800,
        min_output_tokens=16,
        max_consecutive_same_tool=None,
    )

    async def main() -> None:
        worker = SubAgent(
            "worker",
            instructions="Fetch things.",
            tools=[fetch],
            model=FunctionModel(respond, name="priced"),
            limits=limits,
        )
        tenants = Tenants(limits={"t": TenantLimits(daily_tokens=daily)} if daily else {})
        async with Runtime(agents=[worker], clock=MockClock(), cost=cost, tenants=tenants) as rt:
            handles = [await rt.submit("go", tenant="t") for _ in range(3)]
            finished = [await h.result() for h in handles]
        for r in finished:
            called = of_kind(r.events, "model_called")
            assert r.tokens == sum(c.response.usage.total_tokens for c in called) <= max_tokens
            assert len(of_kind(r.events, "tool_call_started")) <= max_calls
            ran = {e.call_id for e in of_kind(r.events, "tool_call_started")}
            assert r.steps == len(ran) <= max_calls  # a refused proposal is not a step
            if max_cost is not None:
                assert r.cost_usd <= max_cost + 1e-12
        if daily:
            assert sum(r.tokens for r in finished) <= daily

    anyio.run(main)


async def test_a_tenants_daily_spend_survives_a_restart() -> None:
    from corral.store import MemoryJournal

    journal, clock = MemoryJournal(), MockClock()
    limits = Limits(
        output_tokens=200, min_output_tokens=20, max_tool_calls=4, max_consecutive_same_tool=None
    )
    tenants = Tenants(limits={"acme": TenantLimits(daily_tokens=50_000)})
    worker = agent([ping, pong], busy_model(name="free"), limits=limits)
    async with runtime(worker, clock=clock, journal=journal, tenants=tenants) as rt:
        first = await rt.run("work", tenant="acme")
        spent = (await rt.tenant_usage("acme")).tokens
    assert spent == first.tokens > 0
    async with runtime(worker, clock=clock, journal=journal, tenants=tenants) as rt:
        assert (await rt.tenant_usage("acme")).tokens == spent  # not reset by the restart
    clock.advance(86_400)
    async with runtime(worker, clock=clock, journal=journal, tenants=tenants) as rt:
        assert (await rt.tenant_usage("acme")).tokens == 0  # a new day
