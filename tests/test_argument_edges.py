"""Arguments at the edges of JSON, through the real adapters over a real socket.

A provider (or a proxy, or a local server) may send tool-call arguments that Python's
``json`` reads but no tool can use: ``NaN`` and ``Infinity`` (not JSON), ``1e400`` (read as
``inf``), nesting 40 levels deep or 5,000 (past the interpreter's recursion limit), a lone
UTF-16 surrogate (``"\\ud800"``, which no journal can write as UTF-8), an integer of 5,000
digits. For each, through `AnthropicModel` and `OpenAICompatibleModel` talking HTTP to
`tests._loopback.LoopbackServer`, with the in-memory and the SQLite journal: the tool never
runs with it, the model is told what to fix, its corrected call runs, and the run
completes. The checks of the chain (`check_arguments_parsed`, `check_schema`, `Range`)
refuse such values too, for a call that reached them some other way.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx
import pytest

from corral import Limits, Runtime, SubAgent, tool
from corral.guardrails import Range, check_arguments_parsed, check_schema
from corral.models import (
    AnthropicModel,
    FunctionModel,
    Model,
    ModelRequest,
    OpenAICompatibleModel,
    ScriptedModel,
    ToolCall,
    UserMessage,
    call,
    reply,
)
from corral.models._decode import MAX_ARGUMENT_DEPTH, argument_problem, loads_arguments
from corral.store import Journal, MemoryJournal, SqliteJournal
from corral.tools import RetryPolicy

from ._loopback import LoopbackServer, Reply, loopback_fixture, ok, recorded  # noqa: F401

sdk_httpx: Any = importlib.import_module(
    next(
        c.__module__.split(".")[0]
        for c in anthropic.DefaultAsyncHttpxClient.__mro__
        if c.__name__ == "AsyncClient"
    )
)

RUN_DEADLINE_S = 5.0
FAST = RetryPolicy(max_retries=0)
MARK = "__ARGUMENTS__"
"""Stands in a body for the raw arguments text, spliced in after encoding."""


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


EDGES: dict[str, tuple[str, str]] = {
    # name: (the arguments as JSON text, what the model must be told)
    "nan": ('{"amount": NaN}', "NaN"),
    "infinity": ('{"amount": Infinity}', "Infinity"),
    "minus infinity": ('{"amount": -Infinity}', "-Infinity"),
    "overflow": ('{"amount": 1e400}', "Infinity"),
    "nested 40": (f'{{"amount": 1, "note": {_deep(40)}}}', "deeper than 32 levels"),
    "nested 5000": (f'{{"amount": 1, "note": {_deep(5000)}}}', "deeper than 32 levels"),
    "lone surrogate": ('{"amount": 1, "note": "ok \\ud800"}', "unpaired UTF-16 surrogate"),
    "surrogate key": ('{"amount": 1, "\\udc00": 2}', "unpaired UTF-16 surrogate"),
    "5000 digits": ('{"amount": ' + "9" * 5000 + "}", "5,000 digits"),
}


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    if request.param == "memory":
        yield MemoryJournal()
    else:
        async with SqliteJournal(tmp_path / "edges.db") as store:
            yield store


def anthropic_call(arguments: str, call_id: str) -> bytes:
    body = recorded("anthropic_tool_use")
    block = body["content"][1]
    block.update(id=call_id, name="convert", input=MARK)
    return json.dumps(body).replace(f'"{MARK}"', arguments).encode()


def openai_call(arguments: str, call_id: str, *, as_object: bool = False) -> bytes:
    body = recorded("openai_tool_call")
    wire = body["choices"][0]["message"]["tool_calls"][0]
    wire.update(id=call_id, function={"name": "convert", "arguments": MARK})
    text = json.dumps(body)
    if as_object:  # older Ollama sends the arguments as an object, not a string
        return text.replace(f'"{MARK}"', arguments).encode()
    return text.replace(f'"{MARK}"', json.dumps(arguments)).encode()


def answer(provider: str, text: str) -> Reply:
    if provider == "anthropic":
        body = recorded("anthropic_text")
        body["content"][0]["text"] = MARK
    else:
        body = recorded("openai_text")
        body["choices"][0]["message"]["content"] = MARK
    # The text is spliced in raw so a lone surrogate escape reaches the adapter as sent.
    return ok(json.dumps(body).replace(f'"{MARK}"', f'"{text}"').encode())


def adapter(provider: str, server: LoopbackServer, http: Any) -> Model:
    if provider == "anthropic":
        return AnthropicModel(
            "claude-sonnet-5-5", base_url=server.url, api_key="sk-ant-loopback", http_client=http
        )
    return OpenAICompatibleModel(
        "gpt-4o", base_url=f"{server.url}/v1", api_key="sk-loopback", http_client=http
    )


def converter(ran: list[dict[str, Any]]) -> Any:
    @tool(timeout=2.0, retry=FAST)
    async def convert(amount: float, note: Any = None) -> str:
        """Convert an amount to euros."""
        ran.append({"amount": amount, "note": note})
        return f"{amount * 0.9:.2f} EUR"

    return convert


async def run_with(
    provider: str, server: LoopbackServer, journal: Journal
) -> tuple[Any, list[Any]]:
    ran: list[dict[str, Any]] = []
    client = sdk_httpx.AsyncClient() if provider == "anthropic" else httpx.AsyncClient()
    async with client as http:
        agent = SubAgent(
            "fx",
            instructions="Convert amounts.",
            tools=[converter(ran)],
            model=adapter(provider, server, http),
            limits=Limits(model_retry=FAST),
        )
        with anyio.fail_after(RUN_DEADLINE_S):
            async with Runtime(agents=[agent], journal=journal, seed=7) as rt:
                result = await rt.run("Convert 12.50 USD to euros.")
    return result, ran


def results_sent(provider: str, body: Any) -> list[str]:
    if provider == "anthropic":
        return [
            block["content"]
            for message in body["messages"]
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("edge", list(EDGES))
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_unusable_arguments_are_refused_for_the_model_to_fix_and_the_run_goes_on(
    provider: str, edge: str, loopback: LoopbackServer, journal: Journal
) -> None:
    arguments, told = EDGES[edge]
    build = anthropic_call if provider == "anthropic" else openai_call
    loopback.script(
        ok(build(arguments, "call_bad")),
        ok(build('{"amount": 12.5}', "call_good")),
        answer(provider, "12.50 USD is 11.25 EUR."),
    )
    result, ran = await run_with(provider, loopback, journal)
    assert result.outcome == "completed", result.reason
    assert ran == [{"amount": 12.5, "note": None}]  # only the corrected call reached the tool
    assert result.steps == 1
    (rejected,) = [e for e in result.events if e.kind == "tool_call_rejected"]
    assert rejected.guardrail == "arguments" and told in rejected.message
    (proposed, _) = [e for e in result.events if e.kind == "tool_call_proposed"]
    assert proposed.arguments == {} and proposed.parse_error is not None
    second = loopback.api_calls()[1].body
    (error_text,) = results_sent(provider, second)
    assert "The arguments for 'convert' are not valid JSON" in error_text and told in error_text
    stored = await journal.read(result.run_id)
    assert stored[-1].kind == "run_finished"


@pytest.mark.parametrize("levels", [40, 5000])
async def test_ollama_style_object_arguments_nested_too_deep_are_refused(
    levels: int, loopback: LoopbackServer
) -> None:
    loopback.script(
        ok(openai_call(f'{{"amount": 1, "note": {_deep(levels)}}}', "c1", as_object=True)),
        ok(openai_call('{"amount": 12.5}', "c2")),
        answer("openai", "done"),
    )
    result, ran = await run_with("openai", loopback, MemoryJournal())
    assert result.outcome == "completed" and ran == [{"amount": 12.5, "note": None}]
    (rejected,) = [e for e in result.events if e.kind == "tool_call_rejected"]
    assert "deeper than 32 levels" in rejected.message


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_lone_surrogate_in_the_answer_becomes_a_replacement_character(
    provider: str, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(answer(provider, "Done \\ud800 here"))
    result, _ = await run_with(provider, loopback, journal)
    assert result.outcome == "completed" and result.output == "Done \ufffd here"
    assert (await journal.read(result.run_id))[-1].kind == "run_finished"


# -- the same refusals without a network -------------------------------------------------


def test_every_model_builds_its_calls_through_the_same_check() -> None:
    nan = call("convert", amount=float("nan"))
    assert nan.arguments == {} and nan.parse_error is not None and "NaN" in nan.parse_error
    built = ToolCall(id="c\ud800", name="convert\udfff", arguments={"amount": 1})
    assert (built.id, built.name) == ("c\ufffd", "convert\ufffd")
    fine = ToolCall(id="c", name="convert", arguments={"amount": 1e308, "note": "😀"})
    assert fine.parse_error is None
    given = ToolCall(id="c", name="x", arguments={"a": math.inf}, parse_error="bad JSON")
    assert given.parse_error == "bad JSON"  # the adapter's own error is kept


async def test_the_fakes_refuse_what_the_adapters_refuse() -> None:
    request = ModelRequest(system="s", messages=(UserMessage(content="go"),))
    scripted = ScriptedModel([call("convert", amount=float("-inf")), reply("x")])
    response = await scripted.request(request)
    assert "-Infinity" in (response.tool_calls[0].parse_error or "")
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    function = FunctionModel(lambda _: ToolCall(id="c", name="convert", arguments={"note": deep}))
    (refused,) = (await function.request(request)).tool_calls
    assert refused.arguments == {} and "deeper than 32" in (refused.parse_error or "")


def test_depth_is_counted_from_the_arguments_object() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(levels - 1):
            value = [value]
        return {"x": value}

    assert argument_problem(nested(MAX_ARGUMENT_DEPTH)) is None
    problem = argument_problem(nested(MAX_ARGUMENT_DEPTH + 1))
    assert problem is not None and problem.startswith("the arguments nest deeper than 32")
    assert loads_arguments('{"a": [1, 2], "b": {"c": null}}') == (
        {"a": [1, 2], "b": {"c": None}},
        None,
    )
    assert loads_arguments("[1]")[1] == "arguments must be a JSON object, got list: [1]"


def test_the_chain_refuses_non_finite_values_that_bypassed_the_model_types() -> None:
    bypassed = ToolCall.model_construct(id="c", name="convert", arguments={"amount": math.nan})
    verdict = check_arguments_parsed(bypassed)
    assert verdict.blocked and "NaN" in verdict.message
    convert = converter([])
    schema = check_schema(bypassed, convert)
    assert schema.blocked and "Fix the errors" in schema.message and "$.amount" in schema.message
    assert not check_schema(
        ToolCall(id="c", name="convert", arguments={"amount": 1.5}), convert
    ).blocked
    for bad in (math.nan, math.inf, -math.inf):
        assert Range("amount", min=0, max=100).check("convert", {"amount": bad}).blocked


def test_range_refuses_bounds_that_are_not_finite_numbers() -> None:
    from corral.errors import ConfigError

    with pytest.raises(ConfigError, match="not NaN"):
        Range("amount", min=math.nan)
    with pytest.raises(ConfigError, match="not NaN"):
        Range("amount", max=math.nan)
    assert not Range("amount", min=0, max=math.inf).check("convert", {"amount": 1e300}).blocked
