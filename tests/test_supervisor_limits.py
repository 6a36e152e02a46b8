"""Each supervisor limit: steps, tokens (never overshot), loops, breakers, wall clock, stop."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral import BreakerPolicy, Limits, MockClock, SubAgent, tool
from corral.actors import ActorSystem
from corral.errors import ConfigError, ToolError
from corral.events import Event
from corral.models import (
    FunctionModel,
    ModelRequest,
    ScriptedModel,
    ToolResultMessage,
    call,
    reply,
)
from corral.store import MemoryJournal
from corral.supervisor import BreakerState, Supervisor
from corral.supervisor._supervisor import Deny, OpenRun, ReserveModel, SettleModel
from corral.tools import RetryPolicy

from ._support import agent, of_kind, runtime

NO_RETRY = RetryPolicy(max_retries=0)


def counting_tools(ran: list[str]) -> list[Any]:
    @tool(timeout=5)
    async def alpha(n: int = 0) -> str:
        """Alpha."""
        ran.append("alpha")
        return "a"

    @tool(timeout=5)
    async def beta(n: int = 0) -> str:
        """Beta."""
        ran.append("beta")
        return "b"

    return [alpha, beta]


async def test_step_cap_stops_the_run_and_keeps_the_partial_answer() -> None:
    ran: list[str] = []

    def alternate(request: ModelRequest) -> Any:
        n = len(request.messages)
        return [call("alpha" if n % 4 == 1 else "beta", n=n)]

    model = FunctionModel(alternate)
    limits = Limits(max_tool_calls=3)
    async with runtime(agent(counting_tools(ran), model, limits=limits)) as rt:
        result = await rt.run("never stop")
    assert result.outcome == "stopped_steps"
    assert result.reason == "tool-call limit reached: 3 of 3"
    assert len(ran) == 3
    assert len(of_kind(result.events, "tool_call_proposed")) == 4
    assert result.events[-1].kind == "run_finished"


async def test_steps_count_the_calls_that_ran_not_the_refused_proposals() -> None:
    ran: list[str] = []

    def alternate(request: ModelRequest) -> Any:
        n = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        return [call("alpha" if n % 2 == 0 else "beta", n=n)]

    # Two tools in turn, each always answering the same: a loop, unless that rule is off.
    limits = Limits(max_tool_calls=20, max_stale_streak=None)
    async with runtime(agent(counting_tools(ran), FunctionModel(alternate), limits=limits)) as rt:
        capped = await rt.run("never stop")
    assert capped.outcome == "stopped_steps" and len(ran) == 20
    assert len(of_kind(capped.events, "tool_call_proposed")) == 21  # the 21st was refused
    assert capped.steps == 20

    model = ScriptedModel([call("gamma"), call("alpha", n=1), reply("done")])
    async with runtime(agent(counting_tools([]), model)) as rt:
        refused = await rt.run("one unknown tool, one real one")
    assert of_kind(refused.events, "tool_call_rejected")[0].tool == "gamma"
    assert refused.outcome == "completed" and refused.steps == 1


async def test_breaker_states_report_every_tool_closed_ones_too() -> None:
    @tool(timeout=5, retry=NO_RETRY)
    async def payments(order: str) -> str:
        """Payment API."""
        raise ToolError("payments 503")

    @tool(timeout=5)
    async def cached_ledger(order: str) -> str:
        """Ledger copy."""
        return "ok"

    @tool(timeout=5, fallback=cached_ledger)
    async def ledger(order: str) -> str:
        """Ledger lookup."""
        return "ok"

    model = ScriptedModel([call("payments", order="1"), reply("failed")])
    async with runtime(agent([payments, ledger], model)) as rt:
        closed = BreakerState("closed", 0, None)
        before = await rt.breaker_states()
        assert before == {"cached_ledger": closed, "ledger": closed, "payments": closed}
        await rt.run("pay")
        after = await rt.breaker_states()
    assert after == {
        "cached_ledger": closed,
        "ledger": closed,
        "payments": BreakerState("closed", 1, None),  # one failure: not open yet
    }


async def test_same_tool_more_than_three_times_in_a_row_is_a_loop() -> None:
    # The old streak rule is a setting now (off by default): a sweep is not a loop.
    ran: list[str] = []
    model = ScriptedModel([call("alpha", n=i) for i in range(10)])
    limits = Limits(max_consecutive_same_tool=3)
    async with runtime(agent(counting_tools(ran), model, limits=limits)) as rt:
        result = await rt.run("loop")
    assert result.outcome == "stopped_loop"
    assert "'alpha' called 4 times in a row (limit 3)" in result.reason
    assert ran == ["alpha"] * 3


async def test_token_budget_is_never_overshot_and_output_cap_shrinks_to_fit() -> None:
    ran: list[str] = []
    big = "word " * 60  # about 75 output tokens per answer; its input bound is 300

    def chatty(request: ModelRequest) -> Any:
        n = len(request.messages)
        from corral.models import ModelResponse, ToolCall

        return ModelResponse(
            text=big, tool_calls=(ToolCall(id=f"c{n}", name="alpha" if n % 4 == 1 else "beta"),)
        )

    model = FunctionModel(chatty)
    # alpha(), beta(), alpha(), ... is a loop the identical-call rule would stop first.
    limits = Limits(
        max_tokens=3000, output_tokens=1000, min_output_tokens=50, max_repeated_calls=None
    )
    async with runtime(agent(counting_tools(ran), model, limits=limits)) as rt:
        result = await rt.run("spend")
    assert result.outcome == "stopped_budget"
    assert result.reason.startswith("token budget reached")
    called = of_kind(result.events, "model_called")
    used = sum(c.response.usage.total_tokens for c in called)
    assert used == result.tokens <= 3000
    granted = [r.max_tokens for r in model.requests]
    assert granted[0] == 1000
    assert granted[-1] < 1000  # the last call was given only what was left
    assert [c.max_tokens for c in called] == granted  # each call journals its grant
    assert all(0 < c.response.usage.total_tokens <= c.reserved_tokens for c in called)


async def test_shared_budget_across_runs_with_one_budget_key() -> None:
    clock = MockClock()
    async with ActorSystem() as system:
        sup = await system.spawn(lambda: Supervisor(clock=clock), name="supervisor")
        limits = Limits(
            max_tokens=1000,
            output_tokens=300,
            min_output_tokens=100,
            warn_at=1.0,
            estimate_margin=1.25,
        )
        await sup.ask(OpenRun("r1", limits, clock.now(), budget_key="wf"))
        await sup.ask(OpenRun("r2", limits, clock.now(), budget_key="wf"))
        p1 = await sup.ask(ReserveModel("r1", estimated_input=200, max_tokens=300))
        assert (p1.max_tokens, p1.reserved) == (300, 550)  # 200 * 1.25 + 300
        p2 = await sup.ask(ReserveModel("r2", estimated_input=200, max_tokens=300))
        assert (p2.max_tokens, p2.reserved) == (200, 450)  # only 450 left in the shared budget
        denied = await sup.ask(ReserveModel("r1", estimated_input=10, max_tokens=300))
        assert isinstance(denied, Deny) and denied.outcome == "stopped_budget"
        await sup.tell(SettleModel("r1", reserved=550, used=400))
        again = await sup.ask(ReserveModel("r1", estimated_input=40, max_tokens=300))
        assert (again.max_tokens, again.reserved) == (100, 150)  # 1000 - 400 - 450 = 150 left


async def test_open_breaker_is_shared_by_all_runs_and_its_tool_is_not_offered() -> None:
    attempts: list[int] = []

    @tool(timeout=5, retry=NO_RETRY)
    async def payments(order: str) -> str:
        """Payment API."""
        attempts.append(1)
        raise ToolError("payments 503")

    @tool(timeout=5)
    async def ledger(order: str) -> str:
        """Ledger lookup."""
        return "ok"

    clock = MockClock()
    policy = BreakerPolicy(failure_threshold=2, cooldown_s=30)
    model = ScriptedModel(
        [
            call("payments", order="1"),
            reply("failed 1"),
            call("payments", order="2"),
            reply("failed 2"),
            call("payments", order="3"),
            reply("used the ledger instead"),
        ]
    )
    async with runtime(agent([payments, ledger], model), clock=clock, breakers=policy) as rt:
        first = await rt.run("pay 1")
        second = await rt.run("pay 2")
        states = await rt.breaker_states()
        assert states["payments"].state == "open"
        third = await rt.run("pay 3")
    assert first.outcome == second.outcome == third.outcome == "completed"
    assert len(attempts) == 2  # the third run never reached the tool
    offered = [t.name for t in model.requests[4].tools]
    assert offered == ["ledger"]
    assert (
        "'payments' is temporarily unavailable (its circuit breaker is open"
        in model.requests[4].system
    )
    (rejected,) = of_kind(third.events, "tool_call_rejected")
    assert rejected.guardrail == "breaker"
    assert "temporarily unavailable" in model.requests[5].messages[-1].content


async def test_open_breaker_offers_the_fallback_and_half_open_trial_closes_it() -> None:
    healthy = {"up": False}
    attempts: list[str] = []

    @tool(timeout=5)
    async def cached_quote(sku: str) -> str:
        """Cached quote."""
        attempts.append("fallback")
        return "cached"

    @tool(timeout=5, retry=NO_RETRY, fallback=cached_quote)
    async def quote(sku: str) -> str:
        """Live quote."""
        attempts.append("live")
        if not healthy["up"]:
            raise ToolError("quote service down")
        return "live"

    def pick(request: ModelRequest) -> Any:
        from corral.models import ToolResultMessage

        if isinstance(request.messages[-1], ToolResultMessage):
            return f"answer: {request.messages[-1].content}"
        return call(request.tools[0].name, sku="A")

    clock = MockClock()
    policy = BreakerPolicy(failure_threshold=1, cooldown_s=30)
    model = FunctionModel(pick)
    async with runtime(agent([quote], model), clock=clock, breakers=policy) as rt:
        r0 = await rt.run("q0")  # live fails -> fallback runs; breaker opens
        assert attempts == ["live", "fallback"] and r0.output == "answer: cached"
        r1 = await rt.run("q1")  # open: the fallback is offered instead of the tool
        assert [t.name for t in model.requests[-2].tools] == ["cached_quote"]
        assert attempts[-1] == "fallback" and r1.output == "answer: cached"
        clock.advance(31)
        healthy["up"] = True
        r2 = await rt.run("q2")  # cooldown over: offered again; one trial call succeeds
        assert attempts[-1] == "live"
        closed = BreakerState("closed", 0, None)  # every tool is reported, closed ones too
        assert await rt.breaker_states() == {"cached_quote": closed, "quote": closed}
    assert r2.output == "answer: live"


async def test_wall_clock_limit_stops_the_run() -> None:
    clock = MockClock()

    @tool(timeout=5)
    async def slow_job() -> str:
        """Takes ten minutes of (mock) time."""
        clock.advance(600)
        return "done"

    model = ScriptedModel([call("slow_job"), call("slow_job"), reply("x")])
    async with runtime(agent([slow_job], model), clock=clock) as rt:
        result = await rt.run("go")
    assert result.outcome == "stopped_budget"
    assert result.reason.startswith("wall-clock limit reached: 600.0 s of 300 s")


async def test_real_wall_clock_deadline_interrupts_an_in_flight_call() -> None:
    @tool(timeout=30)
    async def forever() -> str:
        """Hangs."""
        await anyio.sleep_forever()
        return ""

    model = ScriptedModel([call("forever")])
    async with runtime(agent([forever], model, limits=Limits(max_wall_clock_s=0.1))) as rt:
        result = await rt.run("go")
    assert result.outcome == "stopped_budget"
    assert "wall-clock limit of 0.1 s" in result.reason


async def test_cancel_stops_a_run_mid_tool_call_and_leaves_a_consistent_journal() -> None:
    entered = anyio.Event()
    cleaned: list[bool] = []

    @tool(timeout=30)
    async def long_export() -> str:
        """Slow export."""
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append(True)
        return ""

    model = ScriptedModel([call("long_export")])
    async with runtime(agent([long_export], model)) as rt:
        handle = await rt.submit("export")
        await entered.wait()
        assert await handle.cancel("operator pressed stop")
        result = await handle.result(timeout=5)
        assert await rt.usage(handle.run_id) is None  # the supervisor forgot the run
        assert not await handle.cancel()
    assert result.outcome == "cancelled"
    assert result.reason == "operator pressed stop"
    assert cleaned == [True]
    assert [e.kind for e in result.events][-3:] == [
        "tool_call_proposed",
        "tool_call_started",
        "run_finished",
    ]


def test_a_sixth_tool_is_refused_at_construction() -> None:
    tools = []
    for i in range(6):

        @tool(name=f"t{i}", timeout=5)
        async def t() -> None:
            """Doc."""

        tools.append(t)
    with pytest.raises(ValueError, match="has 6 tools .* the limit is 5") as info:
        SubAgent("crowded", instructions="x", tools=tools, model=ScriptedModel([]))
    assert isinstance(info.value, ConfigError)
    SubAgent("fits", instructions="x", tools=tools[:5], model=ScriptedModel([]))
    SubAgent("raised", instructions="x", tools=tools, model=ScriptedModel([]), max_tools=6)


class CrashOnceJournal(MemoryJournal):
    """A journal whose Nth append fails once, as a crashing disk would, mid-run."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.appends = 0
        self.crash_at = crash_at
        self.failed_kind: str | None = None

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        self.appends += 1
        if self.appends == self.crash_at:
            self.failed_kind = event.kind
            raise OSError("disk went away")
        return await super().append(event, wait=wait)


def plan(request: ModelRequest) -> Any:
    """A deterministic model: alpha, then beta, then the answer (a repeat gets the same)."""
    from corral.models import ToolResultMessage

    done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    return [call("alpha"), call("beta"), "done"][done]


@pytest.mark.parametrize("crash_at", range(2, 12))  # every append of the run
async def test_a_crashed_run_actor_resumes_from_its_journal_without_repeating_calls(
    crash_at: int,
) -> None:
    from corral.actors import RestartPolicy

    ran: list[str] = []
    model = FunctionModel(plan)
    journal = CrashOnceJournal(crash_at)
    worker = SubAgent(
        "worker",
        instructions="x",
        tools=counting_tools(ran),
        model=model,
        restart=RestartPolicy(max_restarts=3, backoff=0.0),
    )
    async with runtime(worker, journal=journal) as rt:
        result = await rt.run("go")
        assert await rt.usage(result.run_id) is None
    assert journal.failed_kind is not None
    assert result.outcome == "completed", result.reason
    assert result.output == "done"
    called = of_kind(result.events, "model_called")
    assert [c.step for c in called] == [1, 2, 3]
    # A model call whose result reached the journal is never made again; only the one
    # whose record was lost is repeated.
    assert len(model.requests) == 3 + (journal.failed_kind == "model_called")
    # A tool whose outcome reached the journal never runs again; a read tool whose
    # outcome was lost in the crash is run again (it is idempotent).
    repeated = 1 if journal.failed_kind == "tool_call_finished" else 0
    assert len(ran) == 2 + repeated
    assert ran[:1] == ["alpha"] and ran[-1] == "beta"
    kinds_ = [e.kind for e in result.events]
    assert kinds_.count("tool_call_proposed") == 2
    assert kinds_.count("run_finished") == 1


async def test_an_open_breaker_survives_a_restart() -> None:
    attempts: list[int] = []

    @tool(timeout=5, retry=NO_RETRY)
    async def payments(order: str) -> str:
        """Payment API."""
        attempts.append(1)
        raise ToolError("payments 503")

    journal, clock = MemoryJournal(), MockClock()
    policy = BreakerPolicy(failure_threshold=1, cooldown_s=300)
    model = ScriptedModel(
        [
            call("payments", order="1"),
            reply("failed"),
            call("payments", order="2"),
            reply("skipped"),
        ]
    )
    worker = agent([payments], model)
    async with runtime(worker, clock=clock, breakers=policy, journal=journal) as rt:
        await rt.run("pay 1")
    async with runtime(worker, clock=clock, breakers=policy, journal=journal) as rt:
        assert (await rt.breaker_states())["payments"].state == "open"
        second = await rt.run("pay 2")
    assert len(attempts) == 1  # after the restart the open breaker still protects the API
    (rejected,) = of_kind(second.events, "tool_call_rejected")
    assert rejected.guardrail == "breaker"
