"""Budgets hold for real text: reservations bound CJK, emoji, code, base64 and long numbers.

The models here report a pessimistic but possible usage: one token per UTF-8 byte of
everything they are sent (the most any byte-level BPE tokenizer can make of it) plus the
tokens a chat template and a tool-use prompt add. A reservation must cover that, or a
budget is overshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import math
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import (
    BreakerPolicy,
    Durability,
    Guards,
    Limits,
    MockClock,
    Runtime,
    SubAgent,
    Tenants,
    tool,
)
from corral.errors import ConfigError, ToolError
from corral.models import (
    AssistantMessage,
    FunctionModel,
    ModelRequest,
    ModelResponse,
    PriceTable,
    ScriptedModel,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    estimate_tokens,
    request_token_bound,
    token_bound,
)
from corral.supervisor import TenantLimits
from corral.tools import RetryPolicy

from ._support import of_kind

PRICES = {"priced": (3.0, 15.0)}  # USD per million input / output tokens


def cost(model: str, usage: Usage) -> float:
    inp, out = PRICES.get(model, (0.0, 0.0))
    return (usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000


# -- a pessimistic tokenizer, written from the wire formats, not from corral's bound --------


def utf8(text: str) -> int:
    """Bytes a byte-level BPE tokenizer starts from (after NFC, as Qwen's normalises)."""
    nfc = unicodedata.normalize("NFC", text)
    return max(
        len(text.encode("utf-8", "surrogatepass")), len(nfc.encode("utf-8", "surrogatepass"))
    )


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


LLAMA3_PER_MESSAGE = 5  # <|start_header_id|> role <|end_header_id|> \n\n ... <|eot_id|>
LLAMA3_PER_REQUEST = 5 + 20  # <|begin_of_text|>, the primed answer, the date lines
ANTHROPIC_TOOL_PROMPT = 346  # Anthropic's documented tool-use system prompt


def worst_case_input(request: ModelRequest, count: Callable[[str], int] = utf8) -> int:
    """One token per byte of every string the model is sent, plus template tokens.

    With another `count`, that tokenizer's count of every string, plus the same tokens.
    """
    n = count(request.system) + LLAMA3_PER_REQUEST + LLAMA3_PER_MESSAGE
    for m in request.messages:
        n += LLAMA3_PER_MESSAGE
        if isinstance(m, UserMessage):
            n += count(m.content)
        elif isinstance(m, AssistantMessage):
            n += count(m.text)
            for c in m.tool_calls:
                n += count(c.id) + count(c.name) + count(compact(dict(c.arguments)))
                n += LLAMA3_PER_MESSAGE
        else:
            assert isinstance(m, ToolResultMessage)
            n += count(m.call_id) + count(("Error: " if m.is_error else "") + m.content)
    if request.tools:
        n += ANTHROPIC_TOOL_PROMPT
        for spec in request.tools:  # the OpenAI wire form, wrapper included
            function = {
                "name": spec.name,
                "description": spec.description,
                "parameters": dict(spec.input_schema),
            }
            n += count(compact({"type": "function", "function": function}))
    return n


def worst_case_response(
    request: ModelRequest,
    text: str,
    calls: tuple[ToolCall, ...],
    count: Callable[[str], int] = utf8,
) -> Any:
    """The answer, with usage as the pessimistic tokenizer counts it; cut at the cap."""
    output = utf8(text) + sum(utf8(c.name) + utf8(compact(dict(c.arguments))) for c in calls)
    stop = "tool_use" if calls else "end_turn"
    if output > request.max_tokens:  # as a real model does: stop mid-answer at the cap
        text = text.encode()[: request.max_tokens].decode(errors="ignore")
        calls, output, stop = (), min(utf8(text), request.max_tokens), "max_tokens"
    usage = Usage(input_tokens=worst_case_input(request, count), output_tokens=output)
    return ModelResponse(text=text, tool_calls=calls, usage=usage, stop_reason=stop)


# -- corpora --------------------------------------------------------------------------------

CODE = Path(__file__).resolve().parents[1].joinpath("corral", "supervisor", "_supervisor.py")
CODE_LINES = CODE.read_text(encoding="utf-8").splitlines(keepends=True)


def chars(low: int, high: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(
        alphabet=st.characters(min_codepoint=low, max_codepoint=high), min_size=1, max_size=max_size
    )


corpus = st.one_of(
    chars(0x4E00, 0x9FFF, 400),  # CJK unified ideographs
    chars(0x3040, 0x30FF, 400),  # kana
    chars(0x20000, 0x2A6DF, 200),  # CJK extension B: one token per byte in cl100k
    st.lists(
        st.sampled_from(["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🧑🏿‍🚀", "🤖"]),
        min_size=1,
        max_size=150,
    ).map("".join),
    st.integers(0, len(CODE_LINES) - 40).map(lambda i: "".join(CODE_LINES[i : i + 40])),
    st.binary(min_size=1, max_size=900).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="0123456789", min_size=1, max_size=1200),  # long numbers
    chars(0, 31, 600),  # control characters: a token per byte
    st.lists(st.sampled_from(["\u0958", "\ufb2c", "\U0001d160"]), min_size=1, max_size=100).map(
        "".join
    ),  # characters NFC decomposes into more bytes
)
mixed = st.lists(corpus, min_size=1, max_size=3).map("".join)


@given(text=st.text() | mixed)
def test_the_bound_is_at_least_one_token_per_utf8_byte_of_the_text_and_its_nfc_form(
    text: str,
) -> None:
    assert token_bound(text) >= utf8(text)
    assert token_bound(text) >= 0
    if text.isascii():
        assert token_bound(text) == len(text)


@given(
    system=mixed,
    turns=st.lists(st.tuples(mixed, mixed, mixed), max_size=4),
    description=mixed,
)
def test_a_requests_bound_covers_the_pessimistic_count_of_everything_it_sends(
    system: str, turns: list[tuple[str, str, str]], description: str
) -> None:
    from corral.models import ToolSpec

    messages: list[Any] = [UserMessage(content=system[::-1])]
    for i, (text, argument, result) in enumerate(turns):
        call = ToolCall(id=f"call_{i}", name="lookup", arguments={"q": argument})
        messages.append(AssistantMessage(text=text, tool_calls=(call,)))
        messages.append(ToolResultMessage(call_id=call.id, tool="lookup", content=result))
    spec = ToolSpec(
        name="lookup",
        description=description,
        input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
    )
    request = ModelRequest(system=system, messages=tuple(messages), tools=(spec,))
    assert request_token_bound(request) >= worst_case_input(request)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    task=mixed,
    script=st.lists(
        st.tuples(corpus, st.integers(min_value=1, max_value=2), mixed, corpus),
        min_size=1,
        max_size=8,
    ),
    max_tokens=st.integers(min_value=2_000, max_value=120_000),
    max_cost=st.one_of(st.none(), st.floats(min_value=0.005, max_value=0.5)),
    daily=st.one_of(st.none(), st.integers(min_value=5_000, max_value=250_000)),
    warn_at=st.floats(min_value=0.05, max_value=1.0),
)
def test_no_budget_is_exceeded_by_real_text(
    task: str,
    script: list[tuple[str, int, str, str]],
    max_tokens: int,
    max_cost: float | None,
    daily: int | None,
    warn_at: float,
) -> None:
    results: dict[str, str] = {}

    @tool(timeout=5)
    async def fetch(query: str) -> str:
        """Fetch a document about the query."""
        return results.get("next", "")

    def respond(request: ModelRequest) -> Any:
        if request.step > len(script):
            return worst_case_response(request, "最终答案 ✅ 42", ())
        text, n_calls, result, argument = script[request.step - 1]
        results["next"] = result
        calls = tuple(
            ToolCall(
                id=f"s{request.step}c{j}", name="fetch", arguments={"query": argument + str(j)}
            )
            for j in range(n_calls)
        )
        return worst_case_response(request, text, calls)

    limits = Limits(
        max_tokens=max_tokens,
        max_cost_usd=max_cost,
        max_tool_calls=12,
        output_tokens=4096,
        min_output_tokens=16,
        max_consecutive_same_tool=None,
        warn_at=warn_at,
    )

    async def main() -> None:
        worker = SubAgent(
            "worker",
            instructions="Fetch things. 请用中文回答。",
            tools=[fetch],
            model=FunctionModel(respond, name="priced"),
            limits=limits,
        )
        tenants = {"t": TenantLimits(daily_tokens=daily)} if daily else {}
        async with Runtime(
            agents=[worker],
            clock=MockClock(),
            cost=cost,
            guards=Guards(screen=None),
            tenants=Tenants(limits=tenants),
        ) as rt:
            handles = [await rt.submit(task, tenant="t") for _ in range(3)]
            finished = [await h.result() for h in handles]
        for r in finished:
            called = of_kind(r.events, "model_called")
            for c in called:  # each reservation covered what the call really used
                assert c.response.usage.total_tokens <= c.reserved_tokens
            assert r.tokens == sum(c.response.usage.total_tokens for c in called) <= max_tokens
            if max_cost is not None:
                assert r.cost_usd <= max_cost + 1e-12
        if daily:
            assert sum(r.tokens for r in finished) <= daily

    anyio.run(main)


def english_kind(text: str) -> int:
    """A tokenizer as kind to English and code as the real ones (a token per 4 ASCII
    characters) and as hard on everything else as any can be (a token per byte)."""
    n = 0
    for is_ascii, run in itertools.groupby(text, str.isascii):
        chunk = "".join(run)
        n += (len(chunk) + 3) // 4 if is_ascii else utf8(chunk)
    return n


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    task=mixed,
    script=st.lists(st.tuples(corpus, mixed, corpus), min_size=1, max_size=10),
    max_tokens=st.integers(min_value=2_000, max_value=60_000),
    warn_at=st.floats(min_value=0.05, max_value=1.0),
)
def test_no_budget_is_exceeded_when_the_previous_count_is_far_below_the_bytes(
    task: str, script: list[tuple[str, str, str]], max_tokens: int, warn_at: float
) -> None:
    """Reported counts a quarter of the bytes make later reservations use them, not bytes.

    Three pages of code first: the conversation's count is then far below its bytes, and
    a step that adds text the tokenizer is hard on must still fit in its reservation.
    """
    code = ["".join(CODE_LINES[i * 40 : i * 40 + 40]) for i in range(3)]
    script = [("", page, f"page {i}") for i, page in enumerate(code)] + script
    results: dict[str, str] = {}

    @tool(timeout=5)
    async def fetch(query: str) -> str:
        """Fetch a document about the query."""
        return results.get("next", "")

    def respond(request: ModelRequest) -> Any:
        if request.step > len(script):
            return worst_case_response(request, "Final answer: 42 ✅", (), english_kind)
        text, result, argument = script[request.step - 1]
        results["next"] = result
        call = ToolCall(id=f"s{request.step}", name="fetch", arguments={"query": argument})
        return worst_case_response(request, text, (call,), english_kind)

    limits = Limits(
        max_tokens=max_tokens,
        max_tool_calls=12,
        output_tokens=2_000,
        min_output_tokens=16,
        max_consecutive_same_tool=None,
        max_result_tokens=4_000,
        warn_at=warn_at,
    )

    async def main() -> None:
        worker = SubAgent(
            "worker",
            instructions="Fetch things. 请用中文回答。",
            tools=[fetch],
            model=FunctionModel(respond),
            limits=limits,
        )
        async with Runtime(agents=[worker], clock=MockClock(), guards=Guards(screen=None)) as rt:
            result = await rt.run(task)
        called = of_kind(result.events, "model_called")
        for c in called:
            assert c.response.usage.total_tokens <= c.reserved_tokens
            assert real_input(c) <= input_reserved(c)  # the input part alone covers it
        assert result.tokens == sum(c.response.usage.total_tokens for c in called) <= max_tokens

    anyio.run(main)


CJK_TASK = ("请核对客户发票的付款状态，并把所有逾期未付的发票整理成一份清单发给财务部门。" * 60)[
    :2100
]


def writer(model: Any, limits: Limits) -> SubAgent:
    return SubAgent(
        "writer", instructions="Summarise the task.", tools=[], model=model, limits=limits
    )


async def test_a_2100_character_cjk_task_cannot_overshoot_a_2000_token_budget() -> None:
    assert len(CJK_TASK) == 2100 and estimate_tokens(CJK_TASK) == 525  # the old reservation
    model = FunctionModel(lambda request: worst_case_response(request, "已完成。", ()))
    tight = Limits(max_tokens=2_000, output_tokens=500, min_output_tokens=16)
    async with Runtime(
        agents=[writer(model, tight)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        refused = await rt.run(CJK_TASK)
    assert refused.outcome == "stopped_budget" and refused.tokens == 0 <= 2_000
    assert refused.reason.startswith("token budget reached: 0 used and 0 reserved of 2,000")
    assert model.requests == []  # refused before the call: the task alone is 6,300 bytes

    roomy = Limits(max_tokens=10_000, output_tokens=500, min_output_tokens=16)
    async with Runtime(
        agents=[writer(model, roomy)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        done = await rt.run(CJK_TASK)
    assert done.outcome == "completed" and done.output == "已完成。"
    (called,) = of_kind(done.events, "model_called")
    assert worst_case_input(model.requests[0]) > 6_300
    assert done.tokens == called.response.usage.total_tokens <= called.reserved_tokens <= 10_000


async def test_an_open_breakers_note_and_fallback_are_inside_the_reservation() -> None:
    @tool(timeout=5, description="备用：" + "从缓存读取发票数据。" * 40)
    async def backup(invoice: str) -> str:
        """Read the cached copy."""
        return "缓存：" + invoice * 20

    @tool(timeout=5, retry=RetryPolicy(max_retries=0), fallback=backup)
    async def primary(invoice: str) -> str:
        """Read the invoice."""
        raise ToolError("503 from the invoice API", retryable=False)

    def respond(request: ModelRequest) -> Any:
        if request.step > 3:
            return worst_case_response(request, "完成", ())
        name = "backup" if any(t.name == "backup" for t in request.tools) else "primary"
        call = ToolCall(id=f"c{request.step}", name=name, arguments={"invoice": "发票" * 50})
        return worst_case_response(request, "", (call,))

    model = FunctionModel(respond)
    agent = SubAgent(
        "billing",
        instructions="Reconcile.",
        tools=[primary],
        model=model,
        limits=Limits(max_consecutive_same_tool=None, output_tokens=800),
    )
    async with Runtime(
        agents=[agent],
        clock=MockClock(),
        breakers=BreakerPolicy(failure_threshold=1, cooldown_s=3600),
        guards=Guards(screen=None),
    ) as rt:
        result = await rt.run("对账")
    noted = [r for r in model.requests if "temporarily unavailable" in r.system]
    assert noted and {t.name for t in noted[0].tools} == {"backup"}
    called = of_kind(result.events, "model_called")
    assert len(called) == len(model.requests) >= 3
    assert all(c.response.usage.total_tokens <= c.reserved_tokens for c in called)


class CountingModel:
    """A model whose adapter knows its tokenizer: a token per 4 characters, 3 per message."""

    def __init__(self, *, with_counter: bool) -> None:
        self.name = "counting"
        self.requests: list[ModelRequest] = []
        if with_counter:
            self.count_tokens = self._count

    @staticmethod
    def _count(request: ModelRequest) -> int:
        texts = [request.system, *(getattr(m, "content", "") for m in request.messages)]
        return sum((len(t) + 3) // 4 for t in texts) + 3 * (len(request.messages) + 1)

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        usage = Usage(input_tokens=self._count(request), output_tokens=2)
        return ModelResponse(text="ok", usage=usage, model=self.name)


async def test_a_models_own_count_tokens_is_reserved_instead_of_the_bound() -> None:
    task = "Reconcile the March invoices for Acme Corp and list the unpaid ones. " * 90
    limits = Limits(max_tokens=3_000, output_tokens=200, min_output_tokens=16, warn_at=1.0)
    counted = CountingModel(with_counter=True)
    async with Runtime(
        agents=[writer(counted, limits)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        done = await rt.run(task)
    assert done.outcome == "completed" and done.output == "ok"
    (called,) = of_kind(done.events, "model_called")
    assert called.reserved_tokens == counted._count(counted.requests[0]) + called.max_tokens
    assert done.tokens <= called.reserved_tokens <= 3_000

    bounded = CountingModel(with_counter=False)  # same model, no counter: the byte bound
    async with Runtime(
        agents=[writer(bounded, limits)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        refused = await rt.run(task)
    assert refused.outcome == "stopped_budget" and bounded.requests == []


@pytest.mark.parametrize("broken", [-1, "12", True, None, ValueError("no vocabulary")])
async def test_a_broken_count_tokens_falls_back_to_the_bound_and_is_logged_once(
    broken: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def count_tokens(request: ModelRequest) -> Any:
        if isinstance(broken, Exception):
            raise broken
        return broken

    model = ScriptedModel(["one", "two"], name=f"broken-counter-{broken!r}")
    model.count_tokens = count_tokens  # type: ignore[attr-defined]
    task = "x" * 3_000  # its bound, 3,000+, does not fit: the budget refuses the call
    limits = Limits(max_tokens=2_000, output_tokens=200, min_output_tokens=16)
    with caplog.at_level(logging.WARNING, logger="corral"):
        async with Runtime(
            agents=[writer(model, limits)], clock=MockClock(), guards=Guards(screen=None)
        ) as rt:
            first = await rt.run(task)
            second = await rt.run(task)
    assert first.outcome == second.outcome == "stopped_budget"
    assert model.requests == []
    warnings = [
        r for r in caplog.records if r.getMessage().startswith("models.count_tokens_failed")
    ]
    assert len(warnings) == 1 and warnings[0].name == "corral.models"
    assert warnings[0].corral["model"] == model.name  # type: ignore[attr-defined]


# -- USD budgets need prices ------------------------------------------------------------------


def usd_agent(name: str = "scripted", limits: Limits | None = None) -> SubAgent:
    return SubAgent(
        "billing",
        instructions="Bill.",
        tools=[],
        model=ScriptedModel(["ok"], name=name),
        limits=limits,
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "the runtime has no cost function"),
        ({"cost": PriceTable.default().cost}, "it is not in the price table"),
        ({"cost": lambda model, usage: 0.0}, "the cost function prices it at $0"),
    ],
)
def test_a_usd_budget_over_a_model_without_a_price_is_refused_at_start(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Runtime(agents=[usd_agent()], limits=Limits(max_cost_usd=1.0), **options)
    message = str(caught.value)
    assert message.startswith(
        "agent 'billing' has a USD budget (max_cost_usd=$1) but the price of its model "
        f"'scripted' is unknown: {problem}, so every call would count as $0."
    )


def test_a_tenants_usd_budget_needs_every_agents_price_too() -> None:
    with pytest.raises(ConfigError, match=r"tenant 'acme' daily_cost_usd=\$5\) but the price"):
        Runtime(
            agents=[usd_agent()], tenants=Tenants(limits={"acme": TenantLimits(daily_cost_usd=5.0)})
        )
    with pytest.raises(ConfigError, match=r"\(default daily_cost_usd=\$2\)"):
        Runtime(agents=[usd_agent()], tenants=Tenants(default=TenantLimits(daily_cost_usd=2.0)))


async def test_priced_free_or_unbudgeted_models_start() -> None:
    free = PriceTable.default().with_prices({"scripted": {"input": 0.0, "output": 0.0}})
    own = Limits(max_cost_usd=0.5)
    for runtime in [
        Runtime(agents=[usd_agent(limits=own)], cost=free.cost),  # an explicit $0: a free model
        Runtime(agents=[usd_agent("claude-sonnet-4-5", own)], cost=PriceTable.default().cost),
        Runtime(agents=[usd_agent("priced", own)], cost=cost),
        Runtime(agents=[usd_agent()]),  # no USD budget: an unknown price is only counted as $0
    ]:
        async with runtime as rt:
            assert (await rt.run("bill")).outcome == "completed"


# -- the provider's count of the previous request keeps long runs affordable ------------------

LINE = (
    "Invoice INV-{n:05d} for Acme Corp was issued on 3 March, is due on 2 April and is still "
    "unpaid; the customer asked for a copy of the signed delivery note before paying. "
)


def ledger_page(n: int) -> str:
    """About 4 KB of English, different on every page."""
    return "".join(LINE.format(n=n * 100 + i) for i in range(24))


def english(text: str) -> int:
    return (len(text) + 3) // 4


def realistic_input(request: ModelRequest) -> int:
    """A tokenizer like cl100k_base on English: a token per 4 characters, 3 per message."""
    n = english(request.system) + 3
    for m in request.messages:
        n += 3
        if isinstance(m, AssistantMessage):
            n += english(m.text) + sum(
                english(c.id + c.name + compact(c.arguments)) for c in m.tool_calls
            )
        else:
            n += english(m.content)
    for spec in request.tools:
        n += english(compact({"name": spec.name, "description": spec.description}))
        n += english(compact(dict(spec.input_schema))) + 10
    return n + (300 if request.tools else 0)


class ReportingModel:
    """Answers a fixed script and reports its usage as a provider with a prompt cache does:
    the previous request's tokens as cache reads, the rest as input. With ``silent_steps``
    it reports no input at all on those steps (as some OpenAI-compatible servers do)."""

    def __init__(self, steps: int, *, gate_at: int = 0, silent_steps: frozenset[int] = frozenset()):
        self.name = "reporting"
        self.steps, self.gate_at, self.silent_steps = steps, gate_at, silent_steps
        self.requests: list[ModelRequest] = []
        self.cached = 0

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        step = request.step
        if step >= self.steps:
            text, calls = "Every invoice in the ledger is unpaid.", ()
        else:
            name = "file_report" if step == self.gate_at else "fetch"
            calls = (ToolCall(id=f"call_{step}", name=name, arguments={"page": step}),)
            text = ""
        total = realistic_input(request)
        cached = min(self.cached, total)
        self.cached = total
        output = english(text) + sum(english(c.name + compact(c.arguments)) for c in calls) + 5
        usage = (
            Usage(output_tokens=output)
            if step in self.silent_steps
            else Usage(input_tokens=total - cached, cache_read_tokens=cached, output_tokens=output)
        )
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=usage,
            stop_reason="tool_use" if calls else "end_turn",
            model=self.name,
        )


def reader(model: ReportingModel, limits: Limits) -> SubAgent:
    @tool(timeout=5)
    async def fetch(page: int) -> str:
        """Fetch one page of the invoice ledger."""
        return ledger_page(page)

    @tool(timeout=5, side_effect="external")
    async def file_report(page: int) -> str:
        """File the overdue-invoice report with the finance team."""
        return f"report filed after page {page}"

    return SubAgent(
        "reader",
        instructions="Read the ledger page by page, then list the unpaid invoices.",
        tools=[fetch, file_report],
        model=model,
        limits=limits,
    )


LONG_RUN = Limits(
    max_tokens=10_000_000,
    max_tool_calls=100,
    max_consecutive_same_tool=None,
    max_result_tokens=2_000,
    output_tokens=1_000,
    min_output_tokens=16,
    warn_at=1.0,
)


def input_reserved(called: Any) -> int:
    return int(called.reserved_tokens - called.max_tokens)


def real_input(called: Any) -> int:
    usage = called.response.usage
    return int(usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens)


async def test_a_long_english_run_reserves_close_to_its_real_input_not_four_times_it() -> None:
    model = ReportingModel(30)
    async with Runtime(
        agents=[reader(model, LONG_RUN)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        done = await rt.run("List the unpaid invoices of the ledger.")
    assert done.outcome == "completed", done.reason
    called = of_kind(done.events, "model_called")
    assert len(called) == len(model.requests) == 30
    conversation = sum(len(getattr(m, "content", "")) for m in model.requests[-1].messages)
    assert conversation > 110_000  # 29 pages of about 4 KB
    for c in called:  # each reservation covered what the call used, cache reads included
        assert c.response.usage.total_tokens <= c.reserved_tokens
        assert real_input(c) <= input_reserved(c)  # the input part alone covers it
    last, request = called[-1], model.requests[-1]
    assert real_input(last) > 25_000 and last.response.usage.cache_read_tokens > 25_000
    assert input_reserved(last) <= 1.3 * real_input(last)  # the previous count plus one page
    assert request_token_bound(request) >= 3.5 * real_input(last)  # the byte bound: ~4x
    # Only the first call had nothing to go on but the bytes.
    assert input_reserved(called[0]) >= request_token_bound(model.requests[0])


async def test_a_run_that_fits_its_budget_is_not_stopped_by_the_byte_bound() -> None:
    probe = ReportingModel(30)
    async with Runtime(
        agents=[reader(probe, LONG_RUN)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        measured = await rt.run("List the unpaid invoices of the ledger.")
    budget = math.ceil(measured.tokens * 1.1)
    called = of_kind(measured.events, "model_called")
    before_last = measured.tokens - called[-1].response.usage.total_tokens
    # Reserving the last call's byte bound would not have fitted in what remained.
    assert before_last + request_token_bound(probe.requests[-1]) + 16 > budget

    model = ReportingModel(30)
    limits = LONG_RUN.model_copy(update={"max_tokens": budget})
    async with Runtime(
        agents=[reader(model, limits)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        done = await rt.run("List the unpaid invoices of the ledger.")
    assert done.outcome == "completed", done.reason
    assert done.tokens == measured.tokens <= budget


async def test_a_provider_that_reports_no_input_gets_the_whole_byte_bound_next() -> None:
    silent = frozenset(range(2, 30, 3))  # steps 2, 5, 8, ...: usage without input tokens
    model = ReportingModel(30, silent_steps=silent)
    async with Runtime(
        agents=[reader(model, LONG_RUN)], clock=MockClock(), guards=Guards(screen=None)
    ) as rt:
        done = await rt.run("List the unpaid invoices of the ledger.")
    assert done.outcome == "completed", done.reason
    called = of_kind(done.events, "model_called")
    assert len(called) == 30
    for c, request in zip(called[1:], model.requests[1:], strict=True):
        whole = request_token_bound(request)
        if c.step - 1 in silent:  # nothing reported: the bytes of the whole request
            assert input_reserved(c) >= whole
        else:  # the reported count plus the bytes of one step, once the run is long
            assert realistic_input(request) <= input_reserved(c)
            assert c.step < 10 or input_reserved(c) < 0.5 * whole


async def test_a_resumed_run_reserves_what_the_uninterrupted_run_reserves(
    tmp_path: Path,
) -> None:
    from corral.store import SqliteJournal

    task = "List the unpaid invoices of the ledger."
    straight = ReportingModel(12, gate_at=6)
    async with SqliteJournal(tmp_path / "straight.db") as journal:
        async with Runtime(
            agents=[reader(straight, LONG_RUN)],
            journal=journal,
            clock=MockClock(),
            guards=Guards(screen=None, gated=()),
        ) as rt:
            uninterrupted = await rt.run(task)
    assert uninterrupted.outcome == "completed", uninterrupted.reason

    path = tmp_path / "resumed.db"
    first = ReportingModel(12, gate_at=6)
    async with SqliteJournal(path) as journal:
        async with Runtime(
            agents=[reader(first, LONG_RUN)],
            journal=journal,
            clock=MockClock(),
            guards=Guards(screen=None),
        ) as rt:
            paused = await rt.run(task)
    assert paused.status == "waiting" and len(first.requests) == 6
    second = ReportingModel(12, gate_at=6)
    second.cached = first.cached  # the provider's cache outlives the process
    async with SqliteJournal(path) as journal:  # a new process: state only from the file
        async with Runtime(
            agents=[reader(second, LONG_RUN)],
            journal=journal,
            clock=MockClock(),
            guards=Guards(screen=None),
            durability=Durability(poll_interval_s=None),
        ) as rt:
            await rt.approve(paused.gates[0].opened.gate_id, by="ana")
            resumed = await rt.wait(paused.run_id, timeout=5)
    assert resumed.outcome == "completed", resumed.reason
    assert len(second.requests) == 6
    straight_calls = of_kind(uninterrupted.events, "model_called")
    resumed_calls = of_kind(resumed.events, "model_called")
    assert [c.reserved_tokens for c in resumed_calls] == [c.reserved_tokens for c in straight_calls]
    # ...and after the restart they are the tight ones, not the whole byte bound again.
    seventh = resumed_calls[6]
    assert input_reserved(seventh) < 0.5 * request_token_bound(second.requests[0])


async def test_a_fallback_offered_late_in_a_long_run_is_inside_the_reservation() -> None:
    """The previous count knew nothing of the fallback's large Chinese description."""

    @tool(timeout=5, description="备用：" + "从缓存读取发票数据。" * 200)
    async def backup(page: int) -> str:
        """Read the cached copy."""
        return f"缓存第 {page} 页：无逾期发票。"

    @tool(timeout=5, retry=RetryPolicy(max_retries=0), fallback=backup)
    async def primary(page: int) -> str:
        """Read one page of the ledger."""
        if page > 6:
            raise ToolError("503 from the ledger API", retryable=False)
        return ledger_page(page)

    def respond(request: ModelRequest) -> Any:
        if request.step > 10:
            return worst_case_response(request, "Done.", (), english_kind)
        name = "backup" if any(t.name == "backup" for t in request.tools) else "primary"
        call = ToolCall(id=f"c{request.step}", name=name, arguments={"page": request.step})
        return worst_case_response(request, "", (call,), english_kind)

    model = FunctionModel(respond)
    agent = SubAgent(
        "ledger",
        instructions="Read the ledger page by page.",
        tools=[primary],
        model=model,
        limits=LONG_RUN,
    )
    async with Runtime(
        agents=[agent],
        clock=MockClock(),
        breakers=BreakerPolicy(failure_threshold=1, cooldown_s=3600),
        guards=Guards(screen=None),
    ) as rt:
        result = await rt.run("Read the ledger.")
    assert result.outcome == "completed", result.reason
    called = of_kind(result.events, "model_called")
    assert len(called) == len(model.requests) == 11
    switched = next(
        i for i, r in enumerate(model.requests) if "temporarily unavailable" in r.system
    )
    assert {t.name for t in model.requests[switched].tools} == {"backup"}
    before, after = model.requests[switched - 1], model.requests[switched]
    grew = worst_case_input(after, english_kind) - worst_case_input(before, english_kind)
    assert grew > 5_000  # the fallback's description, a token per byte of its Chinese
    for c, request in zip(called, model.requests, strict=True):
        assert c.response.usage.total_tokens <= c.reserved_tokens
        assert real_input(c) <= input_reserved(c)  # the input part alone covers it
        if c.step > switched:  # from the switch on: the previous count, not the bytes
            assert input_reserved(c) < 0.7 * request_token_bound(request)
