"""Loop detection: sweeps, pages and polls finish; repeats and fruitless streaks stop.

Three levels: the rule itself (`LoopState`, fed the runtime's own call keys and result
digests), the supervisor actor (its messages, and its state rebuilt from `OpenRun` on
resume), and whole runs through the `Runtime`. The figures of ``benchmarks/bench_loops.py``
(false stops on benign traces, loops caught, old rule against new) are asserted here.

The run tells the supervisor each result's digest (`CallFinished`); the runtime tests that
need it are marked `NEEDS_DIGESTS` and are expected to fail until the run sends them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from corral import Guards, Limits, MockClock, RetryPolicy, tool
from corral.actors import ActorSystem
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call
from corral.subagents import RunState
from corral.subagents._state import call_key
from corral.supervisor import Supervisor
from corral.supervisor._loops import LoopState, identity, result_digest
from corral.supervisor._supervisor import (
    CallFailed,
    CallFinished,
    Deny,
    OpenRun,
    Permit,
    ReserveTool,
)

from ._support import agent, of_kind, runtime

NEEDS_DIGESTS = pytest.mark.xfail(
    not hasattr(RunState("r"), "results"),
    reason="the run does not tell the supervisor its results' digests yet (CallFinished)",
    strict=True,
)
"""For runtime tests of the result-aware rules: they pass once the run sends digests."""


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loops.py"
    spec = importlib.util.spec_from_file_location("bench_loops", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_loops", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _bench()


# -- the figures -------------------------------------------------------------------------


def test_the_old_rule_stops_most_benign_sweeps_and_the_new_one_almost_none() -> None:
    old, new = bench.score(bench.OLD), bench.score(bench.NEW)
    assert old.benign == new.benign == 38
    assert len(old.false_stops) == 33  # 86.8 %: every sweep, page, poll and broadcast
    assert new.false_stops == [  # 5.3 %: the two cases built to be borderline
        "hard: 8 folders, 5 empty in a row",
        "hard: poll sees 'running' three times",
    ]
    assert new.false_stop_rate < 0.06 < 0.8 < old.false_stop_rate


def test_the_new_rule_catches_more_loops_than_the_old_one() -> None:
    old, new = bench.score(bench.OLD), bench.score(bench.NEW)
    assert (old.caught, new.caught, new.loops) == (8, 10, 10)
    assert old.missed == ["two calls in alternation", "two-tool cycle, nothing found"]
    assert new.missed == []  # the two-tool cycle too: its stale results count across tools
    assert new.wasted <= 4  # calls a caught loop makes past its first repeat, on average


@pytest.mark.parametrize("limits", [Limits(), Limits(max_repeated_calls=1, max_stale_streak=2)])
def test_a_resumed_state_decides_as_the_live_one_at_every_point_of_every_trace(
    limits: Limits,
) -> None:
    """Rebuilt from what a journal holds (keys, digests, the last streak), the state stops
    exactly where the live one does."""
    for trace in [*bench.benign_traces(), *bench.looping_traces()]:
        live = bench.stopped_at(trace, limits)
        end = len(trace.calls) if live is None else live
        for cut in range(end + 1):
            state = _resumed(trace.calls[:cut])
            assert _continue(state, trace.calls[cut:], limits, cut) == live, (trace.name, cut)


def _resumed(calls: Sequence[Any]) -> LoopState:
    history: list[tuple[str, str | None, bool]] = []
    failed: set[str] = set()
    streak: list[str] = []
    for c in calls:
        key = call_key(c.tool, c.args)
        digest = None if c.result is None else result_digest(c.result)
        history.append((key, digest, c.acted))
        if c.result is None:
            failed.add(key)
        streak = [*streak, c.tool] if streak and streak[-1] == c.tool else [c.tool]
    return LoopState.resume(history, last_tools=streak if calls else (), failed=failed)


def _continue(state: LoopState, calls: Sequence[Any], limits: Limits, offset: int) -> int | None:
    for index, c in enumerate(calls):
        key = call_key(c.tool, c.args)
        if state.propose(c.tool, key, limits) is not None:
            return offset + index
        if c.result is None:
            state.fail(key)
        else:
            state.result(c.tool, key, result_digest(c.result), acted=c.acted)
    return None


# -- the rule ----------------------------------------------------------------------------


def test_identity_folds_case_whitespace_and_integral_floats_in_values_only() -> None:
    same = [
        call_key("search", {"q": "Acme  Corp", "n": 1}),
        call_key("search", {"q": " acme corp ", "n": 1.0}),
        call_key("search", {"q": "ＡＣＭＥ\tCORP", "n": 1}),  # full-width letters, a tab
    ]
    assert len({identity(k) for k in same}) == 1
    assert identity(call_key("search", {"Q": "a"})) != identity(call_key("search", {"q": "a"}))
    assert identity(call_key("Search", {"q": "a"})) != identity(call_key("search", {"q": "a"}))
    assert identity(call_key("search", {"q": "a", "n": 1.5})) == 'search({"n":1.5,"q":"a"})'
    plain = call_key("get_invoice", {"invoice_id": "inv-1"})
    assert identity(plain) == plain  # the quick path
    undecodable = call_key("x", {}, parse_error="bad", call_id="c1")
    assert identity(undecodable) == undecodable


def feed(
    limits: Limits, calls: Sequence[tuple[str, dict[str, Any], str | None]], *, acted: bool = False
) -> tuple[int | None, str | None]:
    """Run calls through a fresh state: the index of the refused one and why, or (None, None)."""
    state = LoopState()
    for index, (name, args, result) in enumerate(calls):
        key = call_key(name, args)
        reason = state.propose(name, key, limits)
        if reason is not None:
            return index, reason
        if result is None:
            state.fail(key)
        else:
            state.result(name, key, result_digest(result), acted=acted)
    return None, None


def test_a_call_repeated_with_an_unchanged_answer_is_refused_at_its_third_repeat() -> None:
    poll = [("get_job_status", {"job": "J-1"}, "running")] * 6
    at, reason = feed(Limits(), poll)
    assert at == 3
    assert reason == (
        "loop detected: 'get_job_status' called again with the same arguments after 3 calls "
        'with an unchanged answer (limit 2 repeats): get_job_status({"job":"J-1"})'
    )
    assert feed(Limits(max_repeated_calls=1), poll)[0] == 2
    assert feed(Limits(max_repeated_calls=None, max_stale_streak=None), poll) == (None, None)


def test_a_poll_whose_answer_changes_is_never_refused() -> None:
    poll = [("get_job_status", {"job": "J-1"}, f"running {k}%") for k in range(0, 100, 5)]
    assert feed(Limits(), poll) == (None, None)


def test_without_results_identical_calls_are_counted_by_their_arguments_alone() -> None:
    state = LoopState()
    key = call_key("get_job_status", {"job": "J-1"})
    decided = [state.propose("get_job_status", key, Limits()) for _ in range(4)]
    assert decided[:3] == [None, None, None] and decided[3] is not None


def test_a_new_answer_resets_the_count_of_repeats() -> None:
    answers = ["queued", "queued", "running", "running", "done", "done"]
    poll = [("get_job_status", {"job": "J-1"}, a) for a in answers]
    assert feed(Limits(), poll) == (None, None)  # counted by arguments alone: refused at 4


def test_results_already_seen_in_a_streak_stop_it_after_three() -> None:
    searches = [("search", {"q": f"invoice {k}"}, "No results.") for k in range(8)]
    at, reason = feed(Limits(), searches)
    assert at == 4  # the first answer was news; three more like it, then refused
    assert reason == (
        "loop detected: 'search' called 5 times in a row, its last 3 results all already "
        "seen in this run (limit 3)"
    )
    assert feed(Limits(max_stale_streak=None), searches) == (None, None)


def test_another_tool_or_a_new_result_breaks_a_stale_streak() -> None:
    calls: list[tuple[str, dict[str, Any], str | None]] = []
    for k in range(4):
        calls += [("search", {"q": f"a{k}"}, "No results.")] * 1
        calls += [("search", {"q": f"b{k}"}, "No results.")]
        calls += [("search", {"q": f"c{k}"}, f"found {k}")]  # news: the streak starts again
    assert feed(Limits(), calls) == (None, None)
    switched = [("search", {"q": f"q{k}"}, "[]") for k in range(3)]
    switched += [("get_user", {"id": 1}, "{}")]
    switched += [("search", {"q": f"r{k}"}, "[]") for k in range(3)]
    assert feed(Limits(), switched) == (None, None)


def test_calls_with_side_effects_are_progress_whatever_they_answer() -> None:
    sends = [("send_message", {"to": f"user-{k}"}, "sent") for k in range(10)]
    assert feed(Limits(), sends, acted=True) == (None, None)
    same = [("send_message", {"to": "user-1"}, "sent")] * 5
    assert feed(Limits(), same, acted=True)[0] == 3  # the same message again is still a loop


def test_a_failed_call_repeated_stops_at_once_and_the_old_rule_is_a_setting() -> None:
    at, reason = feed(Limits(), [("get_invoice", {"invoice_id": "X"}, None)] * 3)
    assert at == 1 and reason is not None and "already failed" in reason
    sweep = [("get_members", {"channel": f"c{k}"}, f"[{k}]") for k in range(10)]
    assert feed(Limits(), sweep) == (None, None)
    at, reason = feed(Limits(max_consecutive_same_tool=3), sweep)
    assert at == 3 and reason == "loop detected: 'get_members' called 4 times in a row (limit 3)"


# -- the supervisor ----------------------------------------------------------------------


async def test_the_supervisor_stops_on_results_it_is_told_and_rebuilds_them_on_resume() -> None:
    clock = MockClock()
    limits = Limits()
    keys = [call_key("search", {"q": f"q{k}"}) for k in range(5)]
    nothing = result_digest("No results.")
    async with ActorSystem() as system:
        sup = await system.spawn(lambda: Supervisor(clock=clock), name="supervisor")
        await sup.ask(OpenRun("live", limits, clock.now()))
        for key in keys[:4]:
            assert isinstance(await sup.ask(ReserveTool("live", "search", call_key=key)), Permit)
            await sup.tell(CallFinished("live", "search", key, nothing))
        denied = await sup.ask(ReserveTool("live", "search", call_key=keys[4]))
        assert isinstance(denied, Deny) and denied.outcome == "stopped_loop"

        history = tuple((key, nothing, False) for key in keys[:4])
        await sup.ask(
            OpenRun(
                "resumed",
                limits,
                clock.now(),
                tool_calls=4,
                last_tools=("search",) * 4,
                calls=history,
            )
        )
        again = await sup.ask(ReserveTool("resumed", "search", call_key=keys[4]))
        assert isinstance(again, Deny) and again.reason == denied.reason
        # Without the history (a run actor that sends only its streak) the count restarts.
        await sup.ask(OpenRun("forgetful", limits, clock.now(), last_tools=("search",) * 4))
        assert isinstance(
            await sup.ask(ReserveTool("forgetful", "search", call_key=keys[4])), Permit
        )


async def test_the_supervisor_counts_a_failed_call_and_a_repeat_without_news() -> None:
    clock = MockClock()
    key = call_key("get_job_status", {"job": "J-1"})
    async with ActorSystem() as system:
        sup = await system.spawn(lambda: Supervisor(clock=clock), name="supervisor")
        await sup.ask(OpenRun("r", Limits(), clock.now()))
        for _ in range(3):
            assert isinstance(
                await sup.ask(ReserveTool("r", "get_job_status", call_key=key)), Permit
            )
            await sup.tell(CallFinished("r", "get_job_status", key, result_digest("running")))
        denied = await sup.ask(ReserveTool("r", "get_job_status", call_key=key))
        assert isinstance(denied, Deny) and "unchanged answer" in denied.reason
        other = call_key("get_invoice", {"invoice_id": "X"})
        await sup.ask(OpenRun("f", Limits(), clock.now()))
        assert isinstance(await sup.ask(ReserveTool("f", "get_invoice", call_key=other)), Permit)
        await sup.tell(CallFailed("f", other))
        denied = await sup.ask(ReserveTool("f", "get_invoice", call_key=other))
        assert isinstance(denied, Deny) and "already failed" in denied.reason


# -- whole runs --------------------------------------------------------------------------


def calls_then_answer(calls: Sequence[tuple[str, dict[str, Any]]]) -> FunctionModel:
    """A model that makes `calls` one per turn, then answers with the last result."""

    def respond(request: ModelRequest) -> Any:
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        if done < len(calls):
            name, args = calls[done]
            return call(name, **args)
        last = request.messages[-1]
        return f"done: {last.content if isinstance(last, ToolResultMessage) else ''}"

    return FunctionModel(respond)


@pytest.mark.parametrize("n", [4, 7, 10])
async def test_reading_the_members_of_n_channels_finishes_and_the_old_rule_stops_it(
    n: int,
) -> None:
    @tool(timeout=5)
    async def get_users_in_channel(channel: str) -> list[str]:
        """Members of a channel."""
        return [f"{channel}-alice", f"{channel}-bob"]

    sweep = [("get_users_in_channel", {"channel": f"channel-{k}"}) for k in range(n)]
    async with runtime(agent([get_users_in_channel], calls_then_answer(sweep))) as rt:
        result = await rt.run("Who is in each channel?")
    assert result.outcome == "completed" and result.steps == n
    old = Limits(max_consecutive_same_tool=3)
    model = calls_then_answer(sweep)
    async with runtime(agent([get_users_in_channel], model, limits=old)) as rt:
        stopped = await rt.run("Who is in each channel?")
    assert stopped.outcome == "stopped_loop" and stopped.steps == 3


async def test_a_poll_that_never_changes_is_stopped_at_its_fourth_call() -> None:
    ran: list[int] = []

    @tool(timeout=5)
    async def get_job_status(job: str) -> str:
        """A job's status."""
        ran.append(1)
        return "running"

    poll = [("get_job_status", {"job": "J-1"})] * 10
    async with runtime(agent([get_job_status], calls_then_answer(poll))) as rt:
        result = await rt.run("Wait for job J-1.")
    assert result.outcome == "stopped_loop" and "unchanged answer" in result.reason
    assert len(ran) == result.steps == 3


@NEEDS_DIGESTS
async def test_a_poll_whose_status_changes_runs_until_done() -> None:
    statuses = iter(["queued", *(f"running {k}0%" for k in range(1, 10)), "done"])

    @tool(timeout=5)
    async def get_job_status(job: str) -> str:
        """A job's status."""
        return next(statuses)

    poll = [("get_job_status", {"job": "J-1"})] * 11
    async with runtime(agent([get_job_status], calls_then_answer(poll))) as rt:
        result = await rt.run("Wait for job J-1.")
    assert result.outcome == "completed" and result.output == "done: done"
    assert result.steps == 11


@NEEDS_DIGESTS
async def test_pages_the_api_ignores_stop_the_run() -> None:
    @tool(timeout=5)
    async def list_transactions(page: int) -> list[str]:
        """One page of transactions (this API ignores the page)."""
        return ["tx-1", "tx-2"]

    pages = [("list_transactions", {"page": k}) for k in range(1, 12)]
    async with runtime(agent([list_transactions], calls_then_answer(pages))) as rt:
        result = await rt.run("List every transaction.")
    assert result.outcome == "stopped_loop" and "already seen" in result.reason
    assert result.steps == 4


async def test_sending_one_message_to_each_person_is_not_a_loop() -> None:
    @tool(timeout=5, side_effect="write")
    async def send_direct_message(to: str, body: str) -> str:
        """Send a message."""
        return "sent"

    people = [f"user-{k}" for k in range(8)]
    sends = [("send_direct_message", {"to": p, "body": "Moved to 3pm."}) for p in people]
    task = f"Tell {', '.join(people)}: Moved to 3pm."
    model = calls_then_answer(sends)
    async with runtime(agent([send_direct_message], model), guards=Guards(gated=())) as rt:
        result = await rt.run(task)
    assert result.outcome == "completed" and result.steps == 8


@NEEDS_DIGESTS
async def test_the_count_of_unchanged_answers_survives_a_gate() -> None:
    """Three polls answered "running", a gated write, a person approves, the run resumes
    from its journal: the fourth poll is still the fourth."""

    @tool(timeout=5)
    async def get_job_status(job: str) -> str:
        """A job's status."""
        return "running"

    @tool(timeout=5, side_effect="write")
    async def nudge_job(job: str) -> str:
        """Ask the scheduler to hurry a job."""
        return "nudged"

    script = [("get_job_status", {"job": "J-1"})] * 3 + [("nudge_job", {"job": "J-1"})]
    script += [("get_job_status", {"job": "J-1"})] * 3
    clock = MockClock()
    async with runtime(
        agent([get_job_status, nudge_job], calls_then_answer(script)), clock=clock
    ) as rt:
        paused = await rt.run("Wait for job J-1.")
        assert paused.status == "waiting"
        await rt.approve(paused.gates[0].opened.gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "stopped_loop" and "unchanged answer" in result.reason
    assert [e.tool for e in of_kind(result.events, "tool_call_started")] == [
        "get_job_status",
        "get_job_status",
        "get_job_status",
        "nudge_job",
    ]


# -- cascades and alternations -------------------------------------------------------------


def test_failures_in_a_row_across_tools_stop_the_run_at_the_third() -> None:
    chain = [("parse_invoice", {"raw": f"v{k}"}, None) for k in range(2)]
    chain += [("get_customer", {"id": "x"}, None), ("refund", {"amount": 1}, "ok")]
    at, reason = feed(Limits(), chain)
    assert at == 3  # three different failed calls, then the next proposal is refused
    assert reason == (
        "3 tool calls in a row refused or failed (parse_invoice, get_customer), limit 3: "
        "the run is failing in cascade"
    )
    assert feed(Limits(max_failure_chain=None), chain) == (None, None)


def test_a_result_ends_a_chain_of_failures() -> None:
    calls: list[tuple[str, dict[str, Any], str | None]] = []
    for k in range(5):  # two failures, then a result: never three in a row
        calls += [("parse", {"raw": f"a{k}"}, None), ("parse", {"raw": f"b{k}"}, None)]
        calls += [("lookup", {"id": k}, f"record {k}")]
    assert feed(Limits(), calls) == (None, None)


def test_a_chain_of_failures_is_rebuilt_on_resume() -> None:
    keys = [call_key("parse", {"raw": f"v{k}"}) for k in range(2)]
    state = LoopState.resume([(k, None, False) for k in keys], failed=keys)
    assert state.cascade(Limits()) is None
    state.fail(call_key("lookup", {"id": 1}))
    assert state.cascade(Limits()) is not None


def test_two_tools_taking_turns_with_nothing_new_are_a_loop() -> None:
    cycle = [
        ("search", {"q": f"bob {k}"}, "No results.")
        if k % 2 == 0
        else ("get_user", {"name": f"bob{k}"}, "not found")
        for k in range(12)
    ]
    at, reason = feed(Limits(), cycle)
    assert at == 5  # two answers that were news, three stale ones, then refused
    assert reason == (
        "loop detected: 'search' and 'get_user' called in turn, the last 3 results all "
        "already seen in this run (limit 3)"
    )


async def test_a_cascade_of_bad_values_stops_the_run_before_another_model_call() -> None:
    """The 7-of-20 failure: bad data from one tool breaks the next, with new values each
    round, so no call repeats; the run must not go on until a wrong answer."""
    from corral.errors import ToolError

    @tool(timeout=5)
    async def get_rate(currency: str) -> str:
        """An exchange rate (this one answers in the wrong shape)."""
        return "rate: about one"

    @tool(timeout=5, retry=RetryPolicy(max_retries=0))
    async def convert(amount: float, rate: str) -> str:
        """Convert an amount."""
        raise ToolError(f"rate {rate!r} is not a number", retryable=False)

    def respond(request: ModelRequest) -> Any:
        n = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        if n == 0:
            return call("get_rate", currency="EUR")
        if n < 8:
            return call("convert", amount=100.0, rate=f"about one ({n})")  # new values
        return "100 EUR is 100 USD"  # the wrong answer it would end with

    model = FunctionModel(respond)
    async with runtime(agent([get_rate, convert], model)) as rt:
        result = await rt.run("Convert 100 EUR to USD.")
    assert result.outcome == "stopped_breaker" and "in cascade" in result.reason
    assert len(of_kind(result.events, "tool_call_failed")) == 3
    assert len(of_kind(result.events, "model_called")) == 4  # none after the third failure
