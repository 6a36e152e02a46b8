"""Each failure path of the agent loop, judged by what the model was told and the journal."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import pytest

from corral import Limits, MockClock, tool
from corral.errors import ModelError, RateLimited, ToolError
from corral.models import (
    ModelResponse,
    ScriptedModel,
    ToolCall,
    ToolResultMessage,
    Usage,
    call,
    reply,
)
from corral.tools import RetryPolicy

from ._support import TINY_RETRY, agent, kinds, of_kind, runtime


def last_tool_result(model: ScriptedModel, request_index: int = -1) -> ToolResultMessage:
    messages = model.requests[request_index].messages
    result = messages[-1]
    assert isinstance(result, ToolResultMessage)
    return result


def make_lookup(calls: list[dict[str, Any]]) -> Any:
    @tool(retry=TINY_RETRY, timeout=5)
    async def lookup(invoice_id: str) -> dict[str, Any]:
        """Look up an invoice."""
        calls.append({"invoice_id": invoice_id})
        return {"invoice_id": invoice_id, "total": 10}

    return lookup


async def test_happy_path_records_every_decision_in_order() -> None:
    calls: list[dict[str, Any]] = []
    model = ScriptedModel([call("lookup", invoice_id="INV-1"), reply("Total is 10.")])
    async with runtime(agent([make_lookup(calls)], model)) as rt:
        result = await rt.run("What is the total of INV-1?")
    assert result.outcome == "completed"
    assert result.output == "Total is 10."
    assert calls == [{"invoice_id": "INV-1"}]
    assert kinds(result.events) == [
        "run_started",
        "model_called",
        "tool_call_proposed",
        "tool_call_started",
        "tool_call_finished",
        "model_called",
        "run_finished",
    ]
    assert [e.seq for e in result.events] == list(range(1, 8))
    assert result.steps == 1 and result.model_calls == 2
    assert result.tokens == sum(
        e.response.usage.total_tokens for e in of_kind(result.events, "model_called")
    )
    fed_back = last_tool_result(model)
    assert fed_back.content == '{"invoice_id":"INV-1","total":10}'
    assert not fed_back.is_error


async def test_unknown_tool_is_refused_with_the_list_of_tools_that_exist() -> None:
    calls: list[dict[str, Any]] = []
    model = ScriptedModel(
        [call("fetch_invoice", invoice_id="INV-1"), call("lookup", invoice_id="INV-1"), reply("ok")]
    )
    async with runtime(agent([make_lookup(calls)], model)) as rt:
        result = await rt.run("total of INV-1?")
    assert result.outcome == "completed"
    told = last_tool_result(model, 1)
    assert told.is_error
    assert told.content.startswith("Unknown tool name: 'fetch_invoice'. Available tools: 'lookup'.")
    rejected = of_kind(result.events, "tool_call_rejected")
    assert [(r.tool, r.guardrail) for r in rejected] == [("fetch_invoice", "registered")]
    assert calls == [{"invoice_id": "INV-1"}]  # only the corrected call ran


async def test_schema_violations_name_each_json_path_and_nothing_runs() -> None:
    ran: list[Any] = []

    @tool(
        timeout=5,
        schema={
            "type": "object",
            "properties": {
                "invoice_id": {"type": "string", "pattern": "^INV-[0-9]{6}$"},
                "amount": {"type": "number", "minimum": 0},
                "currency": {"enum": ["USD", "EUR", "GBP"]},
            },
            "required": ["invoice_id", "amount", "currency"],
        },
    )
    async def calculate_invoice(invoice_id: str, amount: float, currency: str) -> str:
        """Recompute an invoice."""
        ran.append(invoice_id)
        return "ok"

    model = ScriptedModel(
        [
            call("calculate_invoice", invoice_id="INV-12", amount=-5, currency="JPY", note="x"),
            reply("gave up"),
        ]
    )
    async with runtime(agent([calculate_invoice], model)) as rt:
        result = await rt.run("check it")
    told = last_tool_result(model).content
    assert told.startswith("Invalid arguments for tool 'calculate_invoice':")
    assert "- $: Additional properties are not allowed ('note' was unexpected)" in told
    assert "- $.amount: -5 is less than the minimum of 0" in told
    assert "- $.currency: 'JPY' is not one of ['USD', 'EUR', 'GBP']" in told
    assert "- $.invoice_id: 'INV-12' does not match '^INV-[0-9]{6}$'" in told
    assert told.endswith("Fix the errors and try again.")
    assert ran == []
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == "schema"


async def test_arguments_that_are_not_json_are_fed_back_not_crashed_on() -> None:
    calls: list[dict[str, Any]] = []
    broken = ToolCall(
        id="c1", name="lookup", arguments={}, parse_error="Expecting value: line 1 column 1"
    )
    model = ScriptedModel([broken, reply("sorry")])
    async with runtime(agent([make_lookup(calls)], model)) as rt:
        result = await rt.run("x")
    assert result.outcome == "completed"
    assert "not valid JSON (Expecting value" in last_tool_result(model).content
    assert of_kind(result.events, "tool_call_rejected")[0].guardrail == "arguments"
    assert calls == []


async def test_exception_is_retried_with_exponential_backoff_then_succeeds() -> None:
    attempts: list[int] = []

    @tool(retry=TINY_RETRY, timeout=5)
    async def flaky() -> str:
        """Fails twice."""
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("connection reset")
        return "fine"

    clock = MockClock()
    model = ScriptedModel([call("flaky"), reply("done")])
    async with runtime(agent([flaky], model), clock=clock) as rt:
        result = await rt.run("go")
    assert result.outcome == "completed"
    assert len(attempts) == 3
    assert clock.slept == [1.0, 4.0]
    failed = of_kind(result.events, "tool_call_failed")
    assert [(f.attempt, f.will_retry, f.error_type) for f in failed] == [
        (1, True, "ConnectionError"),
        (2, True, "ConnectionError"),
    ]
    assert of_kind(result.events, "tool_call_finished")[0].attempt == 3
    assert last_tool_result(model).content == "fine"


async def test_timeout_is_hard_and_retried_then_reported_to_the_model() -> None:
    started: list[int] = []

    @tool(timeout=0.05, retry=RetryPolicy(max_retries=1, initial_delay=0.0, jitter=0.0))
    async def hangs() -> str:
        """Never answers."""
        started.append(1)
        await anyio.sleep_forever()
        return "unreachable"

    model = ScriptedModel([call("hangs"), reply("it timed out")])
    async with runtime(agent([hangs], model)) as rt:
        result = await rt.run("go")
    assert result.outcome == "completed"
    assert len(started) == 2
    failed = of_kind(result.events, "tool_call_failed")
    assert [f.error_type for f in failed] == ["ToolTimeout", "ToolTimeout"]
    assert failed[-1].final
    told = last_tool_result(model)
    assert told.is_error
    assert (
        "failed after 2 attempt(s): tool 'hangs' did not finish within its 0.05 s timeout"
        in told.content
    )


async def test_rate_limit_honours_retry_after() -> None:
    attempts: list[int] = []

    @tool(retry=TINY_RETRY, timeout=5)
    async def search() -> str:
        """Rate-limited once."""
        attempts.append(1)
        if len(attempts) == 1:
            raise RateLimited("429", retry_after=7.5)
        return "results"

    clock = MockClock()
    model = ScriptedModel([call("search"), reply("done")])
    async with runtime(agent([search], model), clock=clock) as rt:
        result = await rt.run("go")
    assert result.outcome == "completed"
    assert clock.slept == [7.5]  # Retry-After beats the 1 s backoff
    (failed,) = of_kind(result.events, "tool_call_failed")
    assert failed.error_type == "RateLimited" and failed.delay_s == 7.5


async def test_httpx_429_from_a_tool_becomes_rate_limited_with_retry_after() -> None:
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"})
        return httpx.Response(200, json={"rate": 1.08})

    @tool(retry=TINY_RETRY, timeout=5)
    async def fx_rate() -> Any:
        """Calls an HTTP API."""
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            response = await client.get("https://fx.example/rate")
            response.raise_for_status()
            return response.json()

    clock = MockClock()
    model = ScriptedModel([call("fx_rate"), reply("done")])
    async with runtime(agent([fx_rate], model), clock=clock) as rt:
        result = await rt.run("go")
    (failed,) = of_kind(result.events, "tool_call_failed")
    assert failed.error_type == "RateLimited"
    assert clock.slept == [3.0]
    assert last_tool_result(model).content == '{"rate":1.08}'


async def test_fallback_runs_when_retries_are_exhausted() -> None:
    @tool(timeout=5)
    async def cached_price(sku: str) -> str:
        """Last known price from the cache."""
        return f"{sku}: 9.99 (cached)"

    primary_attempts: list[int] = []

    @tool(timeout=5, retry=TINY_RETRY, fallback=cached_price)
    async def live_price(sku: str) -> str:
        """Live price from the pricing service."""
        primary_attempts.append(1)
        raise ToolError("pricing service 503", retryable=True)

    clock = MockClock()
    model = ScriptedModel([call("live_price", sku="A1"), reply("done")])
    async with runtime(agent([live_price], model), clock=clock) as rt:
        result = await rt.run("price of A1")
    assert len(primary_attempts) == 4  # 1 + 3 retries
    assert clock.slept == [1.0, 4.0, 16.0]
    started = of_kind(result.events, "tool_call_started")
    assert started[-1].tool == "cached_price" and started[-1].fallback_for == "live_price"
    assert last_tool_result(model).content == "A1: 9.99 (cached)"
    assert not last_tool_result(model).is_error
    # Only the fallback's outcome resolves the call.
    assert not any(f.final for f in of_kind(result.events, "tool_call_failed"))


async def test_retries_exhausted_without_fallback_gives_a_structured_error() -> None:
    @tool(timeout=5, retry=RetryPolicy(max_retries=2, initial_delay=0.5, multiplier=2, jitter=0))
    async def broken() -> str:
        """Always fails."""
        raise RuntimeError("disk full")

    clock = MockClock()
    model = ScriptedModel([call("broken"), reply("could not do it")])
    async with runtime(agent([broken], model), clock=clock) as rt:
        result = await rt.run("go")
    assert result.outcome == "completed"
    assert clock.slept == [0.5, 1.0]
    failed = of_kind(result.events, "tool_call_failed")
    assert [f.final for f in failed] == [False, False, True]
    told = last_tool_result(model)
    assert told.is_error
    assert told.content == (
        "Tool 'broken' failed after 3 attempt(s): disk full. It is not available right now; "
        "continue without it or report that it failed."
    )


async def test_non_retryable_error_is_not_retried() -> None:
    attempts: list[int] = []

    @tool(timeout=5, retry=TINY_RETRY)
    async def charge(amount: float) -> str:
        """Charge a card."""
        attempts.append(1)
        raise ToolError("card declined", retryable=False)

    model = ScriptedModel([call("charge", amount=5), reply("declined")])
    async with runtime(agent([charge], model)) as rt:
        await rt.run("go")
    assert attempts == [1]
    assert "Retrying the same call will not help" in last_tool_result(model).content


async def test_read_only_agent_never_reaches_a_destructive_tool() -> None:
    deleted: list[str] = []

    @tool(timeout=5, side_effect="destructive", scopes={"customers:delete"})
    async def delete_customer(customer_id: str) -> str:
        """Delete a customer."""
        deleted.append(customer_id)
        return "deleted"

    model = ScriptedModel([call("delete_customer", customer_id="C1"), reply("not allowed")])
    async with runtime(agent([delete_customer], model, scopes=["customers:read"])) as rt:
        result = await rt.run("delete C1")
    assert deleted == []
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == "permission"
    assert "customers:delete" in rejected.reason
    assert "not permitted" in last_tool_result(model).content


async def test_model_rate_limit_is_retried_after_retry_after() -> None:
    clock = MockClock()
    model = ScriptedModel([RateLimited("529 overloaded", retry_after=2.0), reply("hello")])
    async with runtime(agent([], model), clock=clock) as rt:
        result = await rt.run("hi")
    assert result.outcome == "completed" and result.output == "hello"
    assert clock.slept == [2.0]
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.will_retry and failed.error_type == "RateLimited"


async def test_non_retryable_model_error_fails_the_run_with_its_reason() -> None:
    model = ScriptedModel(
        [ModelError("400 invalid request: bad tool schema", retryable=False, status_code=400)]
    )
    async with runtime(agent([], model)) as rt:
        result = await rt.run("hi")
    assert result.outcome == "failed"
    assert "400 invalid request" in result.reason


async def test_model_timeout_is_enforced_and_retried() -> None:
    answered: list[int] = []

    async def slow_then_fast(request: Any) -> Any:
        answered.append(1)
        if len(answered) == 1:
            await anyio.sleep_forever()
        return reply("late but fine")

    from corral.models import FunctionModel

    limits = Limits(model_timeout_s=0.05)
    clock = MockClock()
    async with runtime(agent([], FunctionModel(slow_then_fast), limits=limits), clock=clock) as rt:
        result = await rt.run("hi")
    assert result.outcome == "completed"
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelTimeout"


async def test_truncated_tool_result_keeps_the_model_context_bounded() -> None:
    @tool(timeout=5)
    async def dump() -> str:
        """Returns a lot."""
        return "x" * 10_000

    model = ScriptedModel([call("dump"), reply("ok")])
    async with runtime(agent([dump], model, limits=Limits(max_result_tokens=100))) as rt:
        result = await rt.run("go")
    (finished,) = of_kind(result.events, "tool_call_finished")
    assert finished.truncated and finished.result_chars == 10_000
    content = last_tool_result(model).content
    assert len(content) < 500
    assert re.search(r"\n… \[9,\d{3} more characters truncated\]", content)


async def test_max_tokens_response_is_capped_like_a_real_model() -> None:
    long = ModelResponse(text="word " * 5000)
    model = ScriptedModel([long])
    async with runtime(
        agent([], model, limits=Limits(output_tokens=100, min_output_tokens=10))
    ) as rt:
        result = await rt.run("write a lot")
    (called,) = of_kind(result.events, "model_called")
    assert called.response.stop_reason == "max_tokens"
    assert called.response.usage.output_tokens <= 100


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_a_tool_refuses_to_exist_without_a_finite_timeout(bad: float) -> None:
    from corral.errors import ConfigError

    with pytest.raises(ConfigError, match="finite timeout"):

        @tool(timeout=bad)
        async def t() -> None:
            """Doc."""


async def test_provider_data_is_journaled_and_given_back_with_its_turn(tmp_path: Any) -> None:
    from corral import Runtime
    from corral.models import AssistantMessage, FunctionModel, ModelRequest
    from corral.store import SqliteJournal

    thinking = {
        "anthropic": {"content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]}
    }
    seen: list[Any] = []

    def respond(request: ModelRequest) -> Any:
        turns = [m for m in request.messages if isinstance(m, AssistantMessage)]
        seen.extend(t.provider_data for t in turns)
        if turns:
            return "done"
        return ModelResponse(
            tool_calls=(ToolCall(id="c1", name="lookup", arguments={"invoice_id": "INV-1"}),),
            provider_data=thinking,
        )

    calls: list[dict[str, Any]] = []
    async with SqliteJournal(tmp_path / "j.db") as journal:
        async with Runtime(
            agents=[agent([make_lookup(calls)], FunctionModel(respond))], journal=journal
        ) as rt:
            result = await rt.run("x")
        events = await journal.read(result.run_id)
    assert seen == [thinking]
    called = [e for e in events if e.kind == "model_called"]
    assert called[0].response.provider_data == thinking  # survives the journal round trip


async def test_two_undecodable_calls_are_not_taken_for_a_repeat_of_each_other() -> None:
    calls: list[dict[str, Any]] = []
    first = ToolCall(id="a", name="lookup", parse_error="Expecting value: line 1 column 1")
    second = ToolCall(id="b", name="lookup", parse_error="Expecting value: line 1 column 1")
    model = ScriptedModel([first, second, call("lookup", invoice_id="INV-1"), reply("ok")])
    async with runtime(agent([make_lookup(calls)], model)) as rt:
        result = await rt.run("x")
    assert result.outcome == "completed"
    assert calls == [{"invoice_id": "INV-1"}]
    assert [e.parse_error is not None for e in of_kind(result.events, "tool_call_proposed")] == [
        True,
        True,
        False,
    ]


def test_a_recorded_response_keeps_the_json_shape_older_journals_have() -> None:
    from corral.events import ResponseRecord

    response = ModelResponse(
        text="checking",
        tool_calls=(
            ToolCall(id="c1", name="lookup", arguments={"invoice_id": "INV-1", "n": [1, {"a": 2}]}),
            ToolCall(id="c2", name="lookup", parse_error="Expecting value"),
        ),
        usage=Usage(input_tokens=12, output_tokens=3, cache_read_tokens=40),
        stop_reason="tool_use",
        model="m-1",
        provider_data={"anthropic": {"content": [{"type": "thinking"}]}},
    )
    record = ResponseRecord.from_response(response)
    assert record.model_dump_json() == response.model_dump_json()  # what used to be embedded
    decoded = ResponseRecord.model_validate_json(response.model_dump_json())
    assert decoded == record and decoded.to_response() == response
    assert decoded.usage.total_tokens == response.usage.total_tokens == 55
    turn = decoded.to_message()
    assert turn.tool_calls == response.tool_calls and turn.provider_data == response.provider_data
    newer = ResponseRecord.model_validate_json('{"text": "x", "stop_reason": "pause_turn"}')
    assert newer.stop_reason == "pause_turn" and newer.to_response().stop_reason == "other"


def test_the_run_finished_event_takes_its_figures_from_the_state() -> None:
    from corral.events import ModelCalled, ResponseRecord, RunStarted, ToolCallProposed
    from corral.subagents import RunState

    t0 = 1_700_000_000.0
    response = ModelResponse(
        text="partial", usage=Usage(input_tokens=10, output_tokens=5), model="m"
    )
    state = RunState.fold(
        "r1",
        [
            RunStarted(run_id="r1", ts=t0, agent="worker", task="go"),
            ModelCalled(
                run_id="r1",
                ts=t0 + 1,
                step=1,
                model="m",
                response=ResponseRecord.from_response(response),
                duration_s=0.5,
                cost_usd=0.25,
            ),
            ToolCallProposed(run_id="r1", ts=t0 + 2, step=1, call_id="c1", tool="lookup"),
        ],
    )
    finished = state.finished_event("stopped_steps", reason="enough", ts=t0 + 30)
    assert (finished.run_id, finished.ts, finished.outcome, finished.reason) == (
        "r1",
        t0 + 30,
        "stopped_steps",
        "enough",
    )
    assert finished.output == "partial"  # the partial answer, by default
    # steps counts calls that ran: the proposal never started, so it is not one
    assert (finished.steps, finished.model_calls, finished.tokens, finished.cost_usd) == (
        0,
        1,
        15,
        0.25,
    )
    assert finished.duration_s == 30.0
    assert state.usage == Usage(input_tokens=10, output_tokens=5)
    assert state.finished_event("completed", reason="", ts=t0, output="final").output == "final"


def test_a_run_ended_while_paused_does_not_count_the_pause_as_run_time() -> None:
    from corral.events import GateDecided, GateOpened, RunStarted
    from corral.subagents import RunState

    t0 = 1_700_000_000.0
    gate = {"run_id": "r1", "call_id": "c1", "gate_id": "g1"}
    state = RunState.fold(
        "r1",
        [
            RunStarted(run_id="r1", ts=t0, agent="worker", task="go"),
            GateOpened(**gate, ts=t0 + 10, step=1, tool="refund"),  # paused for 100 s
            GateDecided(**gate, ts=t0 + 110, decision="approved"),
            GateOpened(**{**gate, "call_id": "c2", "gate_id": "g2"}, ts=t0 + 120, step=2, tool="x"),
        ],
    )
    # 3,600 s after the start, ended while the second gate has waited 3,480 s.
    finished = state.finished_event("cancelled", reason="withdrawn", ts=t0 + 3600)
    assert finished.duration_s == 20.0


def test_tool_for_finds_a_tool_or_the_fallback_of_one() -> None:
    @tool(timeout=5)
    async def backup(invoice_id: str) -> str:
        """Backup lookup."""
        return "b"

    @tool(timeout=5, fallback=backup)
    async def primary(invoice_id: str) -> str:
        """Primary lookup."""
        return "p"

    worker = agent([primary], ScriptedModel([]))
    assert worker.tool_for("primary") is primary
    assert worker.tool_for("backup") is backup  # never offered on its own, still found
    assert worker.tool_for("nothing") is None
    assert list(worker.tools) == ["primary"] and list(worker.fallbacks) == ["backup"]


async def test_an_approved_fallback_call_runs_after_the_run_resumes() -> None:
    from corral import BreakerPolicy, Durability
    from corral.errors import ToolError

    @tool(timeout=5, side_effect="write")
    async def pay_backup(order: str) -> str:
        """Backup payments."""
        return f"paid {order} via backup"

    @tool(timeout=5, retry=RetryPolicy(max_retries=0), fallback=pay_backup)
    async def pay(order: str) -> str:
        """Payments."""
        raise ToolError("payments are down")

    model = ScriptedModel(
        [call("pay", order="A"), reply("no"), call("pay_backup", order="B"), reply("done")]
    )
    breakers = BreakerPolicy(failure_threshold=1, cooldown_s=1000)
    durability = Durability(poll_interval_s=None)
    async with runtime(agent([pay], model), durability=durability, breakers=breakers) as rt:
        await rt.run("pay A")  # opens the breaker: the fallback is offered instead
        paused = await rt.run("pay B")
        assert [g.opened.tool for g in paused.gates] == ["pay_backup"]
        await rt.approve(paused.gates[0].opened.gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert not of_kind(result.events, "tool_call_rejected")  # it was offered when proposed
    finished = of_kind(result.events, "tool_call_finished")
    assert [(e.tool, e.content) for e in finished] == [("pay_backup", "paid B via backup")]


def test_replace_swaps_the_model_and_tools_and_keeps_every_other_setting() -> None:
    from corral import SubAgent
    from corral.errors import ConfigError
    from corral.guardrails import ApprovalPolicy
    from corral.models import ScriptedModel

    @tool(timeout=1)
    async def backup(x: int) -> int:
        """The fallback."""
        return x

    @tool(timeout=1, fallback=backup)
    async def first(x: int) -> int:
        """The first tool."""
        return x

    @tool(timeout=1)
    async def second(y: str) -> str:
        """The second tool."""
        return y

    policy = ApprovalPolicy([])
    original = SubAgent(
        "clerk",
        instructions="Be exact.",
        tools=[first],
        model=ScriptedModel(["a"]),
        scopes={"billing:read"},
        limits=Limits(max_tool_calls=3),
        approval=policy,
        context_tokens=4_000,
        max_tools=2,
    )
    other = ScriptedModel(["b"])
    copy = original.replace(model=other, tools=[second, first])
    assert copy.model is other and list(copy.tools) == ["second", "first"]
    assert [s.name for s in copy.specs] == ["second", "first"]
    assert copy.tool_for("backup") is backup and copy.tool_for("second") is second
    assert (copy.instructions, copy.scopes, copy.limits, copy.approval, copy.context_tokens) == (
        "Be exact.",
        frozenset({"billing:read"}),
        Limits(max_tool_calls=3),
        policy,
        4_000,
    )
    assert list(original.tools) == ["first"] and original.tool_for("second") is None
    assert original.replace().tools == original.tools
    with pytest.raises(ConfigError, match="the limit is 2"):
        original.replace(tools=[first, second, backup])
