"""Conversation memory: every model call's context within the agent's token budget.

Judged on what the model receives: each `ModelRequest` of long runs, whose tools return
long results, is within ``context_tokens``, keeps the pinned part, keeps tool calls and
their results paired, and was summarised oldest first; a resumed run sends what an
uninterrupted one does; a model-backed summariser is paid from the run's budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Guards, Limits, Runtime, SubAgent, ToolContext, tool
from corral.errors import ConfigError
from corral.events import ContextSummarised, GuardrailVerdict, ModelCalled
from corral.memory._context import ContextPolicy, ContextWindow, build_context
from corral.memory._context_tokens import context_window, message_tokens, text_tokens
from corral.memory._summarise import ExtractiveSummariser, ModelSummariser
from corral.models import (
    AssistantMessage,
    FunctionModel,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    estimate_request_tokens,
)
from corral.models._tokens import tools_token_bound
from corral.store import SqliteStore

INSTRUCTIONS = "You audit ledgers. Always cite the page you read. Never invent totals."
TASK = "Read every page of the Globex ledger and report the grand total."
STEPS = 50
WINDOW = 6_000
RESULT_WORDS = 3_300
"""Words per page: about 20,000 characters, 5,000 tokens."""


def ledger_tool() -> Any:
    @tool(timeout=5)
    async def read_page(page: int, ctx: ToolContext) -> str:
        """Read one page of the ledger."""
        words = " ".join(f"entry{page}-{i}" for i in range(RESULT_WORDS))
        return f"Page {page} subtotal is {page * 100} USD. {words}"

    return read_page


def ledger_reader(steps: int = STEPS) -> Any:
    """Reads page after page (call id ``c<step>``), then answers."""

    def respond(request: ModelRequest) -> Any:
        if request.step > steps:
            return "The grand total is 127500 USD."
        return ModelResponse(
            text=f"Reading page {request.step}.",
            tool_calls=(
                ToolCall(id=f"c{request.step}", name="read_page", arguments={"page": request.step}),
            ),
        )

    return respond


LIMITS = Limits(
    max_tool_calls=200,
    max_tokens=50_000_000,
    max_consecutive_same_tool=None,
    output_tokens=1_000,
    max_result_tokens=4_000,  # the filter cuts at 4,000 tokens, the window further
)


def agent(model: Any, **options: Any) -> SubAgent:
    return SubAgent(
        "auditor",
        instructions=INSTRUCTIONS,
        tools=[ledger_tool()],
        model=model,
        limits=options.pop("limits", LIMITS),
        **options,
    )


def request_tokens(request: ModelRequest) -> int:
    """The request as conversation memory measures it (never below the plain estimate)."""
    return (
        32
        + text_tokens(request.system)
        + tools_token_bound(request.tools)
        + sum(message_tokens(m) for m in request.messages)
    )


def assert_paired(request: ModelRequest) -> None:
    """Every tool result follows its call, and every call has its result."""
    calls: set[str] = set()
    results: set[str] = set()
    for message in request.messages:
        if isinstance(message, AssistantMessage):
            calls.update(c.id for c in message.tool_calls)
        elif isinstance(message, ToolResultMessage):
            assert message.call_id in calls, f"result of {message.call_id} without its call"
            results.add(message.call_id)
    assert calls == results


async def run_ledger(model: FunctionModel, **options: Any) -> tuple[Any, list[Any]]:
    async with Runtime(agents=[agent(model, **options)], guards=Guards(screen=None)) as rt:
        result = await rt.run(TASK, timeout=60)
        events = await rt.journal.read(result.run_id)
    return result, events


async def test_a_50_step_run_of_long_results_stays_in_the_window_with_its_pinned_part() -> None:
    model = FunctionModel(ledger_reader())
    result, events = await run_ledger(model, context_tokens=WINDOW)
    assert result.outcome == "completed", result.reason
    assert result.model_calls == STEPS + 1
    assert len(model.requests) == STEPS + 1
    notices = [
        e.reason for e in events if isinstance(e, GuardrailVerdict) and e.guardrail == "budget"
    ]
    for request in model.requests:
        assert estimate_request_tokens(request) <= WINDOW
        assert request_tokens(request) <= WINDOW
        assert request.system == INSTRUCTIONS
        assert request.messages[0] == UserMessage(content=TASK)
        assert_paired(request)
        # The latest result always reaches the model (cut, with its pointer).
        if request.step > 1:
            last = request.messages[-1]
            assert isinstance(last, ToolResultMessage) and last.call_id == f"c{request.step - 1}"
            assert f"Page {request.step - 1} subtotal is" in last.content
    assert not notices  # (the notice's pinning is tested below, with a budget)
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert summaries, "a 50-step run of 5,000-token results must have been summarised"
    # Fewer summaries than steps: each one makes room for several turns.
    assert len(summaries) <= STEPS // 3, len(summaries)
    final = model.requests[-1]
    summary = next(
        m for m in final.messages if isinstance(m, UserMessage) and "Summary" in m.content
    )
    assert "read_page" in summary.content
    # The cut results point at the full result.
    cut = [
        m for m in final.messages if isinstance(m, ToolResultMessage) and "[cut to fit" in m.content
    ]
    assert cut and all(f"call {m.call_id}" in m.content for m in cut)
    assert all("blob sha256:" in m.content for m in cut)


async def test_older_turns_are_summarised_oldest_first_and_recent_turns_stay_verbatim() -> None:
    model = FunctionModel(ledger_reader(30))
    result, events = await run_ledger(model, context_tokens=WINDOW)
    assert result.outcome == "completed"
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert len(summaries) >= 2
    covered = 0
    for event in summaries:
        assert event.first_turn == covered  # each takes in the turns right after the last
        assert event.through_turn > event.first_turn
        assert event.summariser == "extractive"
        assert event.tokens_after < event.tokens_before
        covered = event.through_turn
    # Summarised turns' lines appear in order in the rolling summary.
    last = summaries[-1].summary
    positions = [last.find(f'read_page({{"page":{n}}})') for n in range(1, covered + 1)]
    kept = [p for p in positions if p >= 0]
    assert kept == sorted(kept) and kept
    # In each request the verbatim turns are the latest ones, after the summary.
    by_step = {e.step: e for e in summaries}
    through = 0
    for request in model.requests:
        if request.step in by_step:
            through = by_step[request.step].through_turn
        ids = [
            c.id for m in request.messages if isinstance(m, AssistantMessage) for c in m.tool_calls
        ]
        expected = [f"c{n}" for n in range(through + 1, request.step)]
        assert ids == expected


async def test_a_budget_notice_is_pinned_once_given() -> None:
    limits = LIMITS.model_copy(update={"max_tool_calls": 30})  # a notice at 24 calls
    model = FunctionModel(ledger_reader(40))
    result, events = await run_ledger(model, context_tokens=WINDOW, limits=limits)
    notices = [e for e in events if isinstance(e, GuardrailVerdict) and e.guardrail == "budget"]
    assert notices, f"the budget should have given a notice ({result.tokens} tokens used)"
    notice = notices[0]
    after = [r for r in model.requests if r.step >= notice.step]
    assert len(after) >= 3
    summarised_after = [
        e for e in events if isinstance(e, ContextSummarised) and e.step > notice.step
    ]
    assert summarised_after, "the notice's turn should have been summarised since"
    for request in after:
        assert UserMessage(content=notice.reason) in request.messages
        assert request.messages[0] == UserMessage(content=TASK)
        assert estimate_request_tokens(request) <= WINDOW


async def test_a_short_run_sends_the_whole_conversation_as_before() -> None:
    small = FunctionModel(ledger_reader(3))
    default = FunctionModel(ledger_reader(3))
    await run_ledger(small, context_tokens=200_000)
    await run_ledger(default)
    for a, b in zip(small.requests, default.requests, strict=True):
        assert a.messages == b.messages
    last = default.requests[-1]
    assert len(last.messages) == 1 + 2 * 3  # the task, then each call and its whole result
    assert not any("[cut to fit" in getattr(m, "content", "") for m in last.messages)


def crashing(reader: Any, at: int, reached: anyio.Event) -> Any:
    async def respond(request: ModelRequest) -> Any:
        if request.step == at:
            reached.set()
            await anyio.sleep_forever()
        return reader(request)

    return respond


async def test_a_resumed_run_sends_the_context_an_uninterrupted_run_sends(tmp_path: Path) -> None:
    at = 27
    durability = Durability(poll_interval_s=None)
    straight = FunctionModel(ledger_reader(40))
    async with SqliteStore(tmp_path / "straight.db") as journal:
        rt = Runtime(
            agents=[agent(straight, context_tokens=WINDOW)],
            journal=journal,
            guards=Guards(screen=None),
            durability=durability,
        )
        async with rt:
            expected = await rt.run(TASK, timeout=60)
    assert expected.outcome == "completed"

    path = tmp_path / "crashed.db"
    reached = anyio.Event()
    first = FunctionModel(crashing(ledger_reader(40), at, reached))
    async with SqliteStore(path) as journal:
        rt = Runtime(
            agents=[agent(first, context_tokens=WINDOW)],
            journal=journal,
            guards=Guards(screen=None),
            durability=durability,
        )
        async with rt:
            handle = await rt.submit(TASK)
            with anyio.fail_after(30):
                await reached.wait()
        # The process is gone mid-call: the run is unfinished in the file.
    resumed = FunctionModel(ledger_reader(40))
    async with SqliteStore(path) as journal:
        before = await journal.read(handle.run_id)
        assert not any(e.kind == "run_finished" for e in before)
        assert any(isinstance(e, ContextSummarised) for e in before)
        rt = Runtime(
            agents=[agent(resumed, context_tokens=WINDOW)],
            journal=journal,
            guards=Guards(screen=None),
            durability=durability,
        )
        async with rt:
            result = await rt.wait(handle.run_id, timeout=60)
        events = await journal.read(handle.run_id)
    assert result.outcome == "completed"
    assert resumed.requests[0].step == at
    wanted = {r.step: r for r in straight.requests}
    for request in resumed.requests:
        twin = wanted[request.step]
        assert request.system == twin.system
        assert request.tools == twin.tools
        assert request.messages == twin.messages, f"step {request.step} differs"
    # The summaries made before the crash were read back, not made again.
    summaries = [(e.first_turn, e.through_turn) for e in events if isinstance(e, ContextSummarised)]
    assert len(summaries) == len(set(summaries))


async def test_a_model_summariser_is_paid_from_the_run_budget() -> None:
    asked: list[ModelRequest] = []

    def cheap(request: ModelRequest) -> ModelResponse:
        asked.append(request)
        return ModelResponse(
            text="Pages read so far; subtotals 100, 200, 300 USD.",
            usage=Usage(input_tokens=700, output_tokens=40),
        )

    policy = ContextPolicy(summariser=ModelSummariser(FunctionModel(cheap, name="cheap-model")))
    model = FunctionModel(ledger_reader(16))

    def price(name: str, usage: Usage) -> float:
        return usage.input_tokens * 1e-6 + usage.output_tokens * 2e-6

    async with Runtime(
        agents=[agent(model, context_tokens=WINDOW, context=policy)],
        guards=Guards(screen=None),
        cost=price,
    ) as rt:
        result = await rt.run(TASK, timeout=60)
        events = await rt.journal.read(result.run_id)
    assert result.outcome == "completed"
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert summaries and len(asked) == len(summaries)
    assert all(
        e.summariser == "model:cheap-model" and e.usage.total_tokens == 740 for e in summaries
    )
    assert all(e.reserved_tokens > 0 for e in summaries)
    assert all(r.run_id == result.run_id for r in asked)
    main = sum(e.response.usage.total_tokens for e in events if isinstance(e, ModelCalled))
    assert result.tokens == main + 740 * len(summaries)
    main_cost = sum(e.cost_usd for e in events if isinstance(e, ModelCalled))
    assert result.cost_usd == pytest.approx(main_cost + len(summaries) * (700e-6 + 80e-6))
    assert any("Pages read so far" in str(m) for m in model.requests[-1].messages)


async def test_a_model_summariser_past_the_budget_stops_the_run() -> None:
    def greedy(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="A summary.", usage=Usage(input_tokens=440_000))

    policy = ContextPolicy(summariser=ModelSummariser(FunctionModel(greedy, name="greedy")))
    limits = LIMITS.model_copy(update={"max_tokens": 450_000})
    model = FunctionModel(ledger_reader(40))
    result, events = await run_ledger(model, context_tokens=WINDOW, context=policy, limits=limits)
    assert result.outcome == "stopped_budget"
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert len(summaries) == 1
    # Stopped at the first reservation after the summary's 440,000 tokens were counted.
    assert all(e.step < summaries[0].step for e in events if isinstance(e, ModelCalled))
    assert result.tokens >= 440_000


async def test_a_failing_model_summariser_falls_back_to_the_extractive_summary() -> None:
    def broken(request: ModelRequest) -> ModelResponse:
        raise RuntimeError("summariser down")

    policy = ContextPolicy(summariser=ModelSummariser(FunctionModel(broken, name="broken")))
    result, events = await run_ledger(
        FunctionModel(ledger_reader(20)), context_tokens=WINDOW, context=policy
    )
    assert result.outcome == "completed"
    summaries = [e for e in events if isinstance(e, ContextSummarised)]
    assert summaries
    assert all(e.summariser.startswith("extractive (after model:broken failed") for e in summaries)


async def test_a_pinned_part_larger_than_the_window_fails_the_run_with_its_reason() -> None:
    model = FunctionModel(ledger_reader(1))
    async with Runtime(agents=[agent(model, context_tokens=300)], guards=Guards(screen=None)) as rt:
        result = await rt.run("x" * 4_000, timeout=30)
    assert result.outcome == "failed"
    assert "pinned part of the context" in result.reason
    assert model.requests == []


# -- the window on its own -------------------------------------------------------------------


def transcript(turns: int, result_chars: int = 8_000) -> list[Any]:
    messages: list[Any] = [UserMessage(content=TASK)]
    for n in range(turns):
        messages.append(
            AssistantMessage(
                text=f"Turn {n}.",
                tool_calls=(ToolCall(id=f"t{n}", name="read_page", arguments={"page": n}),),
            )
        )
        body = f"Page {n} total {n * 7} USD. " + "x" * result_chars
        messages.append(
            ToolResultMessage(
                call_id=f"t{n}",
                tool="read_page",
                content=body + "\n[full result stored as blob sha256:0123456789abcdef]",
            )
        )
        if n == 2:
            messages.append(UserMessage(content="Budget notice: 80% used."))
    return messages


def test_the_window_keeps_notices_pairs_and_points_at_cut_results() -> None:
    window = ContextWindow(4_000)
    messages = transcript(12)
    built, summary, through = build_context(messages, context_tokens=4_000, window=window)
    assert built.compacted and through > 2 and built.summarised_through == through
    assert built.tokens <= 4_000
    sent = list(built.messages)
    assert sent[0] == UserMessage(content=TASK)
    assert UserMessage(content="Budget notice: 80% used.") in sent
    request = ModelRequest(system="", messages=tuple(sent))
    assert_paired(request)
    cut = [m for m in sent if isinstance(m, ToolResultMessage) and "[cut to fit" in m.content]
    assert cut
    for m in cut:
        assert f"tool_call_finished of call {m.call_id}" in m.content
        assert "blob sha256:0123456789abcdef" in m.content
    assert "Page 0 total 0 USD" in summary  # the gist keeps the first sentence


def test_the_window_sends_a_conversation_that_fits_unchanged() -> None:
    window = ContextWindow(100_000)
    messages = transcript(3, result_chars=200)
    built = window.build(messages)
    assert not built.compacted
    assert built.messages == tuple(messages)


def test_the_extractive_summary_keeps_the_newest_lines_within_its_share() -> None:
    summariser = ExtractiveSummariser()
    window = ContextWindow(4_000)
    messages = transcript(30)
    job_turns = window.turns(messages, 0, 30)
    from corral.memory._summarise import SummaryJob

    text = summariser.summarise_now(SummaryJob("", job_turns, max_tokens=200))
    assert text_tokens(text) <= 200
    assert text.startswith("(") and "earlier turns omitted" in text.splitlines()[0]
    assert "30. Turn 29." in text
    again = summariser.summarise_now(SummaryJob(text, window.turns(messages, 0, 1), 200))
    omitted = int(again.split()[0].strip("("))
    assert omitted > int(text.split()[0].strip("("))  # the count carries over


def test_context_windows_and_settings() -> None:
    class Declared:
        name = "local"
        context_window = 8_192

    class Named:
        name = "claude-sonnet-4-5"

    assert context_window(Declared()) == 8_192
    assert context_window(Named()) == 200_000
    assert context_window(FunctionModel(lambda r: "x")) == 128_000
    auditor = agent(FunctionModel(lambda r: "x"))
    assert auditor.window_tokens(1_000) == 127_000
    assert agent(FunctionModel(lambda r: "x"), context_tokens=5_000).window_tokens(1_000) == 5_000
    with pytest.raises(ConfigError):
        agent(FunctionModel(lambda r: "x"), context_tokens=10)
    with pytest.raises(ConfigError):
        ContextPolicy(result_share=1.5)
    assert text_tokens("abcd" * 10) == 10
    assert text_tokens("总计" * 10) == 60  # CJK: one token per byte, never too low
