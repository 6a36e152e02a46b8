"""The real-I/O tier: the Runtime end to end over real sockets, processes and files.

Nothing here is in-process make-believe. The model is either a real adapter
(`AnthropicModel` through the ``anthropic`` SDK, `OpenAICompatibleModel` over httpx)
talking HTTP to a scripted server on 127.0.0.1 (see `tests/_loopback.py`), or a
`ScriptedModel` that makes the run call tools which themselves do real I/O: httpx, a
socket that never answers, aiosqlite, worker threads, subprocesses, their own task
groups and timeouts, asyncio's timeouts and gathers.

Every scenario checks the outcome a user relies on, and that the Runtime exits cleanly:
the ``async with`` block ends without an exception (no ExceptionGroup), within a deadline
(no hang), and the journal holds the run's terminal event. Each runs with the in-memory
and with the SQLite journal.

The conftest switches `corral.models.ALLOW_MODEL_REQUESTS` off; these tests opt in the
supported way, by handing each adapter its own HTTP client (pointed at the loopback
server). `test_an_adapter_without_its_own_client_still_refuses_to_send` shows the guard
still holds for an adapter that was not given one.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anthropic
import anyio
import anyio.to_thread
import httpx
import pytest

from corral import Limits, RunResult, Runtime, SubAgent
from corral.models import (
    AnthropicModel,
    Model,
    ModelRequest,
    OpenAICompatibleModel,
    ScriptedModel,
    ToolResultMessage,
    call,
)
from corral.store import Journal, MemoryJournal, SqliteJournal
from corral.tools import RetryPolicy, Tool, tool

from ._loopback import (
    CLOSE,
    HANG,
    BlackHole,
    LoopbackServer,
    Received,
    Reply,
    black_hole_fixture,  # noqa: F401 - the black_hole fixture
    error,
    loopback_fixture,  # noqa: F401 - the loopback fixture
    ok,
    recorded,
    refused_port_fixture,  # noqa: F401 - the refused_port fixture
)

# The httpx flavour the installed anthropic SDK takes (httpx2 for anthropic 2.x).
sdk_httpx: Any = importlib.import_module(
    next(
        c.__module__.split(".")[0]
        for c in anthropic.DefaultAsyncHttpxClient.__mro__
        if c.__name__ == "AsyncClient"
    )
)

ANTHROPIC_KEY = "sk-ant-api03-loopback-0123456789abcdef"
OPENAI_KEY = "sk-proj-loopback-0123456789abcdef"

RUN_DEADLINE = 5.0
"""Seconds a whole scenario (Runtime start, run, Runtime exit) may take before it counts as
a hang. Passing scenarios take well under a second."""

FAST = RetryPolicy(max_retries=2, initial_delay=0.01, multiplier=1.0, jitter=0.0)
"""Retries 10 ms apart, so a retried scenario stays fast (and a Retry-After stands out)."""
NO_RETRY = RetryPolicy(max_retries=0)

INVOICES = [
    {"invoice_id": "INV-000101", "customer": "Acme Corp", "status": "unpaid", "total": 1250.0},
    {"invoice_id": "INV-000102", "customer": "Acme Corp", "status": "unpaid", "total": 310.5},
]


# -- harness ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    """Each scenario runs once with the in-memory journal and once with a SQLite file."""
    if request.param == "memory":
        yield MemoryJournal()
    else:
        async with SqliteJournal(tmp_path / "x.db") as store:
            yield store


async def run_to_end(
    journal: Journal,
    agent: SubAgent,
    task: str = "Reconcile Acme Corp's unpaid invoices.",
    **options: Any,
) -> RunResult:
    """Run one task through a fresh Runtime, which must start, finish and exit cleanly.

    An ExceptionGroup escaping ``async with Runtime`` (from a broken cancel scope, say)
    fails the test as "did not exit cleanly", any other exception as itself; a run or a
    shutdown that hangs fails it with a TimeoutError after `RUN_DEADLINE`.
    """
    try:
        with anyio.fail_after(RUN_DEADLINE):
            async with Runtime(agents=[agent], journal=journal, seed=7, **options) as runtime:
                result = await runtime.run(task)
    except BaseExceptionGroup as group:
        raise AssertionError(f"the Runtime did not exit cleanly: {group!r}") from group
    assert result.status == "finished"
    stored = await journal.read(result.run_id)
    last = stored[-1]
    assert last.kind == "run_finished"
    assert last.outcome == result.outcome  # type: ignore[attr-defined]
    return result


def make_agent(
    model: Model, tools: list[Tool], *, limits: Limits | None = None, name: str = "billing"
) -> SubAgent:
    return SubAgent(
        name,
        instructions="You reconcile invoices. Use the tools.",
        tools=tools,
        model=model,
        limits=limits or Limits(model_retry=FAST),
    )


def of_kind(events: Any, kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


def echo_last_result(request: ModelRequest) -> str:
    """A scripted model's final answer: what the last tool result said, as the model saw it."""
    last = request.messages[-1]
    assert isinstance(last, ToolResultMessage)
    return f"{'ERROR' if last.is_error else 'OK'} {last.content}"


def tool_results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


# -- the real adapters, on the loopback server --------------------------------------------


@dataclass(frozen=True)
class Provider:
    """One wire format: the adapter to build and the recorded bodies to answer with."""

    name: str
    path: str
    tool_call: str
    answer: str
    rate_limited: str
    server_error: str
    answer_text: str = "All 3 unpaid invoices of Acme Corp match their line items."

    def adapter(self, base_url: str, http: Any, **options: Any) -> Model:
        if self.name == "anthropic":
            return AnthropicModel(
                "claude-sonnet-5-5",
                base_url=base_url,
                api_key=ANTHROPIC_KEY,
                http_client=http,
                **options,
            )
        return OpenAICompatibleModel(
            "gpt-4o", base_url=f"{base_url}/v1", api_key=OPENAI_KEY, http_client=http, **options
        )

    def http_client(self) -> Any:
        """The test's own HTTP client: handing it to the adapter is what allows the request."""
        return sdk_httpx.AsyncClient() if self.name == "anthropic" else httpx.AsyncClient()

    def tool_call_body(self, name: str, arguments: dict[str, Any], call_id: str) -> Any:
        """A recorded tool-call body, re-aimed at another tool and arguments."""
        body = recorded(self.tool_call)
        if self.name == "anthropic":
            block = body["content"][1]
            block.update(id=call_id, name=name, input=arguments)
        else:
            wire = body["choices"][0]["message"]["tool_calls"][0]
            wire["id"] = call_id
            wire["function"] = {"name": name, "arguments": json.dumps(arguments)}
        return body

    def results_sent(self, body: Any) -> dict[str, tuple[str, bool]]:
        """The tool results in a request body, by call id: (content, is_error)."""
        out: dict[str, tuple[str, bool]] = {}
        if self.name == "anthropic":
            for message in body["messages"]:
                for block in message["content"]:
                    if block.get("type") == "tool_result":
                        content = block.get("content", "")
                        out[block["tool_use_id"]] = (content, bool(block.get("is_error")))
        else:
            for message in body["messages"]:
                if message["role"] == "tool":
                    content = message["content"]
                    out[message["tool_call_id"]] = (content, content.startswith("Error:"))
        return out


ANTHROPIC = Provider(
    "anthropic",
    "/v1/messages",
    tool_call="anthropic_tool_use",
    answer="anthropic_text",
    rate_limited="anthropic_error_429",
    server_error="anthropic_error_500",
)
OPENAI = Provider(
    "openai",
    "/v1/chat/completions",
    tool_call="openai_tool_call",
    answer="openai_text",
    rate_limited="openai_error_429",
    server_error="openai_error_500",
)
OVERLOADED = {
    "anthropic": "anthropic_error_529",
    "openai": {"error": {"message": "Overloaded", "type": "overloaded_error", "code": None}},
}


@pytest.fixture(params=[ANTHROPIC, OPENAI], ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    return request.param  # type: ignore[no-any-return]


@asynccontextmanager
async def real_model(provider: Provider, base_url: str, **options: Any) -> AsyncIterator[Model]:
    """The provider's real adapter on `base_url`, with an HTTP client the test owns."""
    async with provider.http_client() as http:
        yield provider.adapter(base_url, http, **options)


def invoice_tools(server: LoopbackServer) -> list[Tool]:
    """The billing tools, fetching their data from the loopback server over real HTTP."""
    server.documents["/invoices"] = INVOICES

    @tool(timeout=2.0, retry=NO_RETRY)
    async def search_invoices(customer: str, status: str = "any") -> Any:
        """Search invoices by customer name and status."""
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get(
                "/invoices", params={"customer": customer, "status": status}
            )
            response.raise_for_status()
            return response.json()

    @tool(
        timeout=2.0,
        retry=NO_RETRY,
        schema={
            "type": "object",
            "properties": {"invoice_id": {"type": "string", "pattern": "^INV-[0-9]{6}$"}},
            "required": ["invoice_id"],
        },
    )
    async def get_invoice(invoice_id: str) -> Any:
        """Fetch one invoice."""
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/invoices")
            return next(i for i in response.json() if i["invoice_id"] == invoice_id)

    return [search_invoices, get_invoice]


# -- real adapters: the provider scenarios --------------------------------------------------


async def test_tool_call_then_answer(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(ok(provider.tool_call), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "completed", result.reason
    assert result.output == provider.answer_text
    # The tool fetched its data over HTTP, with the arguments the provider sent.
    gets = [r for r in loopback.received if r.method == "GET"]
    assert [(g.path, g.query) for g in gets] == [
        ("/invoices", {"customer": ["Acme Corp"], "status": ["unpaid"]})
    ]
    # The provider got its own wire format: key, system prompt, tools, then the result.
    first, second = loopback.api_calls()
    assert first.path == second.path == provider.path
    if provider is ANTHROPIC:
        # The SDK sends the key as x-api-key (1.x) or as a bearer token (2.x).
        sent_key = first.headers.get("x-api-key") or first.headers["authorization"][7:]
        assert sent_key == ANTHROPIC_KEY
        assert "anthropic-version" in first.headers
        assert first.body["system"].startswith("You reconcile invoices.")
        assert [t["name"] for t in first.body["tools"]] == ["search_invoices", "get_invoice"]
        call_id = "toolu_01A09q90qw90lq917835lq9"
        assert result.tokens == (921 + 78) + (412 + 19 + 2048 + 1024)
    else:
        assert first.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert first.body["messages"][0]["role"] == "system"
        assert [t["function"]["name"] for t in first.body["tools"]] == [
            "search_invoices",
            "get_invoice",
        ]
        call_id = "call_12345xyz"
        assert result.tokens == (301 + 23) + 1917
    content, is_error = provider.results_sent(second.body)[call_id]
    assert not is_error
    assert json.loads(content) == INVOICES
    assert loopback.pending == 0


async def test_rate_limited_retry_waits_as_long_as_retry_after_says(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    # As both providers send it: milliseconds, and whole seconds for older clients.
    headers = {"retry-after-ms": "300", "retry-after": "1"}
    loopback.script(error(429, provider.rate_limited, headers=headers), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "completed", result.reason
    assert result.output == provider.answer_text
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "RateLimited"
    assert failed.will_retry
    assert failed.delay_s == pytest.approx(0.3)  # the server's wait, not the 10 ms backoff
    first, second = loopback.api_calls()
    assert second.at - first.at >= 0.3
    assert "rate limit" in failed.error.lower()


@pytest.mark.parametrize(
    ("status", "error_type", "headers"),
    [
        (529, "RateLimited", {}),
        (500, "ModelError", {}),
        (503, "RateLimited", {"retry-after": "0"}),  # a server shedding load
    ],
    ids=["529-overloaded", "500", "503-retry-after"],
)
async def test_overloaded_and_failing_servers_are_retried_then_succeed(
    provider: Provider,
    loopback: LoopbackServer,
    journal: Journal,
    status: int,
    error_type: str,
    headers: dict[str, str],
) -> None:
    body = OVERLOADED[provider.name] if status == 529 else provider.server_error
    loopback.script(
        error(status, body, headers=headers),
        error(status, body, headers=headers),
        ok(provider.answer),
    )
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "completed", result.reason
    failures = of_kind(result.events, "model_failed")
    assert [(f.error_type, f.attempt, f.will_retry) for f in failures] == [
        (error_type, 1, True),
        (error_type, 2, True),
    ]
    assert all(f"HTTP {status}" in f.error for f in failures)
    (called,) = of_kind(result.events, "model_called")
    assert called.attempt == 3
    assert len(loopback.api_calls()) == 3


async def test_server_errors_past_the_retry_limit_fail_the_run_with_the_servers_message(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(*[error(500, provider.server_error)] * 3)
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "failed"
    assert "model call failed after 3 attempt(s)" in result.reason
    message = recorded(provider.server_error)["error"]["message"]
    assert message in result.reason
    assert [f.will_retry for f in of_kind(result.events, "model_failed")] == [True, True, False]


async def test_malformed_tool_arguments_are_fed_back_and_the_model_corrects_itself(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    corrected = provider.tool_call_body("get_invoice", {"invoice_id": "INV-000101"}, "fixed_1")
    if provider is OPENAI:
        # A local server's recorded answer: two calls whose arguments are not a JSON
        # object (truncated JSON, a list) and one good search.
        bad = ok("openai_malformed_arguments")
        bad_ids = ["chatcmpl-tool-1b2c", "chatcmpl-tool-3d4e"]
    else:
        # The Messages API always sends an object; a bad one breaks the tool's schema.
        bad = ok(provider.tool_call_body("get_invoice", {"invoice_id": "101"}, "toolu_bad"))
        bad_ids = ["toolu_bad"]
    loopback.script(bad, ok(corrected), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "completed", result.reason
    rejected = of_kind(result.events, "tool_call_rejected")
    assert [r.call_id for r in rejected] == bad_ids
    # What the provider was told about each broken call, in its own wire format.
    sent = provider.results_sent(loopback.api_calls()[1].body)
    for call_id in bad_ids:
        content, is_error = sent[call_id]
        assert is_error
        assert "get_invoice" in content
    if provider is OPENAI:
        assert "not valid JSON" in sent["chatcmpl-tool-1b2c"][0]
        assert "JSON object" in sent["chatcmpl-tool-3d4e"][0]
        assert json.loads(sent["chatcmpl-tool-5f6a"][0]) == INVOICES  # the good one ran
    else:
        assert "INV-[0-9]{6}" in sent["toolu_bad"][0]
    # The corrected call ran and its result reached the provider.
    content, is_error = provider.results_sent(loopback.api_calls()[2].body)["fixed_1"]
    assert not is_error
    assert json.loads(content) == INVOICES[0]


async def test_a_response_slower_than_the_model_timeout_is_cut_and_retried(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    # The timeout leaves the prompt retry room on a loaded machine; the slow answer would
    # take far longer than the whole run may.
    loopback.script(ok(provider.answer, delay=10.0), ok(provider.answer))
    limits = Limits(model_timeout_s=0.6, model_retry=FAST)
    started = time.monotonic()
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, [], limits=limits))

    assert result.outcome == "completed", result.reason
    assert time.monotonic() - started < 4.0  # it did not wait for the slow answer
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelTimeout"
    assert "did not answer within 0.6 s" in failed.error
    assert failed.will_retry


async def test_the_adapters_own_timeout_is_a_model_timeout_too(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(ok(provider.answer, delay=10.0), ok(provider.answer))
    async with real_model(provider, loopback.url, timeout=0.6) as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelTimeout"
    assert "timed out" in failed.error
    assert failed.will_retry


async def test_connection_refused_is_retried_then_fails_the_run(
    provider: Provider, refused_port: int, journal: Journal
) -> None:
    async with real_model(provider, f"http://127.0.0.1:{refused_port}") as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "failed"
    assert "could not reach the API" in result.reason
    failures = of_kind(result.events, "model_failed")
    assert [f.will_retry for f in failures] == [True, True, False]
    assert all(f.error_type == "ModelError" for f in failures)
    assert all("Connect" in f.error for f in failures)


async def test_a_server_that_accepts_and_never_answers_times_out_and_fails_the_run(
    provider: Provider, black_hole: BlackHole, journal: Journal
) -> None:
    limits = Limits(
        model_timeout_s=0.2, model_retry=RetryPolicy(max_retries=1, initial_delay=0.01, jitter=0.0)
    )
    async with real_model(provider, black_hole.url) as model:
        result = await run_to_end(journal, make_agent(model, [], limits=limits))

    assert result.outcome == "failed"
    assert "did not answer within 0.2 s" in result.reason
    failures = of_kind(result.events, "model_failed")
    assert [(f.error_type, f.will_retry) for f in failures] == [
        ("ModelTimeout", True),
        ("ModelTimeout", False),
    ]
    assert black_hole.accepted  # it really connected, and heard nothing back


async def test_a_request_the_server_never_answers_is_cut_and_the_retry_succeeds(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(HANG, ok(provider.answer))
    limits = Limits(model_timeout_s=0.25, model_retry=FAST)
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, [], limits=limits))

    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelTimeout"
    assert len(loopback.api_calls()) == 2


async def test_a_dropped_connection_is_retried(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(CLOSE, ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelError"
    assert "could not reach the API" in failed.error
    assert failed.will_retry


async def test_a_connection_dropped_halfway_through_the_body_is_retried(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.script(Reply(200, provider.answer, action="truncate"), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "completed", result.reason
    assert result.output == provider.answer_text
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelError"
    assert "could not reach the API" in failed.error
    assert "complete message body" in failed.error


async def test_keep_alive_connections_the_server_drops_between_calls_cost_nothing(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    # As a load balancer closing idle connections does: no "Connection: close", just gone.
    loopback.script(
        Reply(200, provider.tool_call, close_after=True),
        Reply(200, provider.answer, close_after=True),
    )
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, invoice_tools(loopback)))

    assert result.outcome == "completed", result.reason
    assert of_kind(result.events, "model_failed") == []
    assert len(loopback.api_calls()) == 2


PAGE = b"<html><head><title>Sign in to the network</title></head><body>Log in</body></html>"
"""What a captive portal or a misconfigured proxy answers instead of the API."""


@pytest.mark.parametrize("status", [200, 502])
async def test_a_page_that_is_not_the_api_is_retried_as_unreadable(
    provider: Provider, loopback: LoopbackServer, journal: Journal, status: int
) -> None:
    # A 200 page is not a crash of the adapter (the anthropic SDK hands it back as a str):
    # it is a provider failure, retried like any other.
    loopback.script(Reply(status, PAGE, content_type="text/html"), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "model_failed")
    assert failed.error_type == "ModelError"
    assert failed.will_retry
    if status == 200:
        assert "the API returned a response Corral cannot read" in failed.error
    else:
        assert "HTTP 502" in failed.error
    assert "Sign in to the network" in failed.error  # the page says what went wrong


async def test_a_rejected_key_fails_the_run_at_once_and_the_key_is_never_shown(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    def echo_the_key(request: Received) -> Any:
        key = request.headers.get("x-api-key") or request.headers["authorization"][7:]
        return {
            "error": {
                "message": f"Incorrect API key provided: {key}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }

    loopback.script(Reply(401, echo_the_key))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, []))

    assert result.outcome == "failed"
    assert "HTTP 401" in result.reason
    assert "check the API key" in result.reason
    assert len(loopback.api_calls()) == 1  # not retried: another try cannot help
    (failed,) = of_kind(result.events, "model_failed")
    assert not failed.will_retry
    key = ANTHROPIC_KEY if provider is ANTHROPIC else OPENAI_KEY
    stored = await journal.read(result.run_id)
    assert key not in result.reason
    assert all(key not in e.model_dump_json() for e in stored)


async def test_a_tool_cut_by_its_timeout_is_reported_to_the_real_provider(
    provider: Provider, loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    @tool(timeout=0.2, retry=NO_RETRY)
    async def search_invoices(customer: str, status: str = "any") -> Any:
        """Search invoices (on a server that never answers)."""
        async with httpx.AsyncClient(timeout=None) as client:
            return (await client.get(f"{black_hole.url}/invoices")).json()

    loopback.script(ok(provider.tool_call), ok(provider.answer))
    async with real_model(provider, loopback.url) as model:
        result = await run_to_end(journal, make_agent(model, [search_invoices]))

    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "tool_call_failed")
    assert failed.error_type == "ToolTimeout"
    assert failed.final
    call_id = "toolu_01A09q90qw90lq917835lq9" if provider is ANTHROPIC else "call_12345xyz"
    content, is_error = provider.results_sent(loopback.api_calls()[1].body)[call_id]
    assert is_error
    assert "did not finish within its 0.2 s timeout" in content


async def test_an_adapter_without_its_own_client_still_refuses_to_send(
    provider: Provider, loopback: LoopbackServer, journal: Journal
) -> None:
    if provider is ANTHROPIC:
        model: Model = AnthropicModel(
            "claude-sonnet-5-5", base_url=loopback.url, api_key=ANTHROPIC_KEY
        )
    else:
        model = OpenAICompatibleModel("gpt-4o", base_url=f"{loopback.url}/v1", api_key=OPENAI_KEY)
    loopback.script(ok(provider.answer))
    result = await run_to_end(journal, make_agent(model, []))
    await model.aclose()  # type: ignore[attr-defined]

    assert result.outcome == "failed"
    assert "ALLOW_MODEL_REQUESTS" in result.reason
    assert loopback.received == []


# -- tools doing real I/O inside a run (scripted model) ----------------------------------


async def run_tool(
    journal: Journal,
    the_tool: Tool,
    arguments: dict[str, Any] | None = None,
    *,
    then: list[Any] | None = None,
    tools: list[Tool] | None = None,
) -> RunResult:
    """One run whose model calls `the_tool` once, then answers with what it saw."""
    steps = [call(the_tool.name, **(arguments or {})), *(then or []), echo_last_result]
    model = ScriptedModel(steps)
    result = await run_to_end(journal, make_agent(model, [the_tool, *(tools or [])]))
    assert model.remaining == 0
    return result


def ok_output(result: RunResult) -> Any:
    """The tool result the model saw, decoded; the run must have completed with it."""
    assert result.outcome == "completed", result.reason
    assert result.output is not None and result.output.startswith("OK "), result.output
    return json.loads(result.output[3:])


def timed_out(result: RunResult, seconds: float) -> None:
    """The call was cut by Corral's tool timeout, the model was told, the run completed."""
    assert result.outcome == "completed", result.reason
    (failed,) = of_kind(result.events, "tool_call_failed")
    assert failed.error_type == "ToolTimeout", failed.error
    assert failed.final
    assert result.output is not None
    assert result.output.startswith("ERROR ")
    assert f"did not finish within its {seconds:g} s timeout" in result.output


async def test_tool_httpx_get_to_a_loopback_server(
    loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.documents["/rates"] = {"EUR": 1.08, "GBP": 1.27}

    @tool(timeout=2.0)
    async def rates() -> Any:
        """Exchange rates."""
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{loopback.url}/rates")
            response.raise_for_status()
            return response.json()

    result = await run_tool(journal, rates)
    assert ok_output(result) == {"EUR": 1.08, "GBP": 1.27}
    assert [r.path for r in loopback.received] == ["/rates"]


async def test_tool_httpx_to_a_socket_that_never_answers_is_cut_and_the_run_goes_on(
    loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    loopback.documents["/rates"] = {"EUR": 1.08}

    @tool(timeout=0.2, retry=NO_RETRY)
    async def stuck() -> Any:
        """A service that never answers."""
        async with httpx.AsyncClient(timeout=None) as client:
            return (await client.get(f"{black_hole.url}/rates")).json()

    @tool(timeout=2.0)
    async def rates() -> Any:
        """Exchange rates."""
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{loopback.url}/rates")).json()

    seen: list[ToolResultMessage] = []

    def after_timeout(request: ModelRequest) -> Any:
        seen.extend(tool_results(request))
        return call("rates")

    result = await run_tool(journal, stuck, then=[after_timeout], tools=[rates])
    assert ok_output(result) == {"EUR": 1.08}  # the run went on, and the next tool worked
    (told,) = seen
    assert told.is_error
    assert "did not finish within its 0.2 s timeout" in told.content
    assert len(of_kind(result.events, "tool_call_failed")) == 1
    assert [e.tool for e in of_kind(result.events, "tool_call_finished")] == ["rates"]
    assert black_hole.accepted


async def test_tool_httpx_timeouts_are_its_own_when_shorter(
    black_hole: BlackHole, journal: Journal
) -> None:
    @tool(timeout=2.0, retry=NO_RETRY)
    async def impatient() -> Any:
        """Gives up on a silent server after 50 ms, by httpx's own timeout."""
        async with httpx.AsyncClient(timeout=0.05) as client:
            try:
                await client.get(black_hole.url)
            except httpx.ReadTimeout:
                return {"gave_up": "httpx"}
        return {"gave_up": None}

    assert ok_output(await run_tool(journal, impatient)) == {"gave_up": "httpx"}


async def test_tool_aiosqlite_on_a_file(tmp_path: Path, journal: Journal) -> None:
    db = tmp_path / "ledger.db"

    @tool(timeout=2.0, side_effect="read")
    async def ledger(account: str) -> Any:
        """Book two entries and read the balance back."""
        async with aiosqlite.connect(db) as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS entries (account TEXT, amount REAL)")
            await conn.executemany(
                "INSERT INTO entries VALUES (?, ?)", [(account, 100.0), (account, -25.5)]
            )
            await conn.commit()
            async with conn.execute(
                "SELECT count(*), sum(amount) FROM entries WHERE account = ?", (account,)
            ) as cursor:
                count, total = await cursor.fetchone()  # type: ignore[misc]
        return {"entries": count, "balance": total}

    assert ok_output(await run_tool(journal, ledger, {"account": "acme"})) == {
        "entries": 2,
        "balance": 74.5,
    }
    async with aiosqlite.connect(db) as conn:  # it really reached the file
        async with conn.execute("SELECT count(*) FROM entries") as cursor:
            assert await cursor.fetchone() == (2,)


async def test_tool_runs_blocking_work_with_anyio_to_thread(journal: Journal) -> None:
    loop_thread = threading.get_ident()

    def blocking() -> dict[str, Any]:
        time.sleep(0.02)
        return {"same_thread": threading.get_ident() == loop_thread, "sum": sum(range(10_000))}

    @tool(timeout=2.0)
    async def crunch() -> Any:
        """Crunch numbers in a worker thread."""
        return await anyio.to_thread.run_sync(blocking)

    assert ok_output(await run_tool(journal, crunch)) == {"same_thread": False, "sum": 49995000}


async def test_sync_tool_with_a_blocking_http_request(
    loopback: LoopbackServer, journal: Journal
) -> None:
    loopback.documents["/status"] = {"up": True}

    @tool(timeout=2.0)
    def status() -> Any:
        """Service status, fetched with the standard library (blocking)."""
        with urllib.request.urlopen(f"{loopback.url}/status", timeout=2) as response:
            return json.loads(response.read())

    assert ok_output(await run_tool(journal, status)) == {"up": True}


async def test_tool_runs_a_subprocess(journal: Journal) -> None:
    @tool(timeout=5.0)
    async def add(a: int, b: int) -> Any:
        """Add two numbers in a child Python process."""
        done = await anyio.run_process(
            [sys.executable, "-c", "import sys; print(sum(map(int, sys.argv[1:])))", str(a), str(b)]
        )
        return {"sum": int(done.stdout), "returncode": done.returncode}

    assert ok_output(await run_tool(journal, add, {"a": 2, "b": 40})) == {
        "sum": 42,
        "returncode": 0,
    }


async def test_tool_subprocess_cut_by_the_timeout_is_killed(journal: Journal) -> None:
    pids: list[int] = []

    @tool(timeout=0.5, retry=NO_RETRY)
    async def forever() -> Any:
        """A child process that never ends."""
        async with await anyio.open_process(
            [sys.executable, "-c", "import time; time.sleep(60)"]
        ) as process:
            pids.append(process.pid)
            await process.wait()
        return "unreachable"

    timed_out(await run_tool(journal, forever), 0.5)
    (pid,) = pids
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


async def test_tool_with_its_own_task_group(loopback: LoopbackServer, journal: Journal) -> None:
    for i in range(3):
        loopback.documents[f"/part/{i}"] = {"part": i}

    @tool(timeout=2.0)
    async def fan_out() -> Any:
        """Fetch three parts concurrently."""
        parts: dict[int, Any] = {}

        async def fetch(client: httpx.AsyncClient, i: int) -> None:
            parts[i] = (await client.get(f"{loopback.url}/part/{i}")).json()

        async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(fetch, client, i)
        return [parts[i] for i in range(3)]

    assert ok_output(await run_tool(journal, fan_out)) == [{"part": 0}, {"part": 1}, {"part": 2}]


async def test_tool_task_group_stuck_on_a_silent_socket_is_cut_by_the_timeout(
    loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    loopback.documents["/fast"] = {"fast": True}

    @tool(timeout=0.2, retry=NO_RETRY)
    async def fan_out() -> Any:
        """One fast fetch, one that never answers."""
        async with httpx.AsyncClient(timeout=None) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.get, f"{loopback.url}/fast")
            tg.start_soon(client.get, black_hole.url)
        return "unreachable"

    timed_out(await run_tool(journal, fan_out), 0.2)


async def test_tool_with_its_own_fail_after_and_move_on_after(
    black_hole: BlackHole, journal: Journal
) -> None:
    @tool(timeout=2.0, retry=NO_RETRY)
    async def patient() -> Any:
        """Gives a silent server 50 ms twice, by anyio's own timeouts."""
        outcome: dict[str, Any] = {}
        async with httpx.AsyncClient(timeout=None) as client:
            try:
                with anyio.fail_after(0.05):
                    await client.get(black_hole.url)
            except TimeoutError:
                outcome["fail_after"] = "timed out"
            with anyio.move_on_after(0.05) as scope:
                await client.get(black_hole.url)
            outcome["move_on_after"] = scope.cancelled_caught
        return outcome

    assert ok_output(await run_tool(journal, patient)) == {
        "fail_after": "timed out",
        "move_on_after": True,
    }


async def test_corral_timeout_wins_over_a_tools_longer_fail_after(
    black_hole: BlackHole, journal: Journal
) -> None:
    @tool(timeout=0.2, retry=NO_RETRY)
    async def generous() -> Any:
        """Would give a silent server 30 s."""
        async with httpx.AsyncClient(timeout=None) as client:
            with anyio.fail_after(30):
                await client.get(black_hole.url)
        return "unreachable"

    timed_out(await run_tool(journal, generous), 0.2)


async def test_tool_with_asyncio_timeout(black_hole: BlackHole, journal: Journal) -> None:
    @tool(timeout=2.0, retry=NO_RETRY)
    async def bounded() -> Any:
        """Gives a silent server 50 ms with asyncio.timeout."""
        async with httpx.AsyncClient(timeout=None) as client:
            try:
                async with asyncio.timeout(0.05):
                    await client.get(black_hole.url)
            except TimeoutError:
                return {"asyncio.timeout": "timed out"}
        return {"asyncio.timeout": None}

    assert ok_output(await run_tool(journal, bounded)) == {"asyncio.timeout": "timed out"}


async def test_corral_timeout_wins_over_a_longer_asyncio_timeout(
    black_hole: BlackHole, journal: Journal
) -> None:
    @tool(timeout=0.2, retry=NO_RETRY)
    async def generous() -> Any:
        """Would give a silent server 30 s with asyncio.timeout."""
        async with httpx.AsyncClient(timeout=None) as client, asyncio.timeout(30):
            await client.get(black_hole.url)
        return "unreachable"

    timed_out(await run_tool(journal, generous), 0.2)


async def test_tool_with_asyncio_wait_for(
    loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    loopback.documents["/quote"] = {"price": 9.5}

    @tool(timeout=2.0, retry=NO_RETRY)
    async def quote() -> Any:
        """A quote, with a silent backup server given 50 ms."""
        async with httpx.AsyncClient(timeout=None) as client:
            main = await asyncio.wait_for(client.get(f"{loopback.url}/quote"), timeout=1.0)
            try:
                await asyncio.wait_for(client.get(black_hole.url), timeout=0.05)
                backup = "answered"
            except TimeoutError:
                backup = "timed out"
        return {"main": main.json(), "backup": backup}

    assert ok_output(await run_tool(journal, quote)) == {
        "main": {"price": 9.5},
        "backup": "timed out",
    }


async def test_tool_with_asyncio_gather(loopback: LoopbackServer, journal: Journal) -> None:
    for name in ("a", "b", "c"):
        loopback.documents[f"/{name}"] = {"name": name}

    @tool(timeout=2.0)
    async def gather() -> Any:
        """Fetch three documents with asyncio.gather."""
        async with httpx.AsyncClient() as client:
            responses = await asyncio.gather(
                *(client.get(f"{loopback.url}/{name}") for name in ("a", "b", "c"))
            )
        return [r.json() for r in responses]

    assert ok_output(await run_tool(journal, gather)) == [
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
    ]


async def test_asyncio_gather_with_a_silent_member_is_cut_by_the_timeout(
    loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    loopback.documents["/a"] = {"name": "a"}

    @tool(timeout=0.2, retry=NO_RETRY)
    async def gather() -> Any:
        """Gather a fast document and a silent server."""
        async with httpx.AsyncClient(timeout=None) as client:
            await asyncio.gather(client.get(f"{loopback.url}/a"), client.get(black_hole.url))
        return "unreachable"

    timed_out(await run_tool(journal, gather), 0.2)


async def test_a_timed_out_tool_is_retried_under_its_policy(
    loopback: LoopbackServer, black_hole: BlackHole, journal: Journal
) -> None:
    loopback.documents["/rates"] = {"EUR": 1.08}
    attempts: list[int] = []

    @tool(timeout=0.4, retry=FAST)
    async def flaky() -> Any:
        """Silent on the first attempt, fine on the second."""
        attempts.append(len(attempts) + 1)
        target = black_hole.url if len(attempts) == 1 else f"{loopback.url}/rates"
        async with httpx.AsyncClient(timeout=None) as client:
            return (await client.get(target)).json()

    result = await run_tool(journal, flaky)
    assert ok_output(result) == {"EUR": 1.08}
    assert attempts == [1, 2]
    (failed,) = of_kind(result.events, "tool_call_failed")
    assert (failed.error_type, failed.will_retry) == ("ToolTimeout", True)
