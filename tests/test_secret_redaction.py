"""Secrets in errors: tool exceptions and provider error bodies are redacted like tool
results before they reach the journal, the model or a log."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import Durability, MockClock, Runtime, SubAgent, tool
from corral.errors import ModelError
from corral.events import EventAdapter
from corral.guardrails import ProposedCall, check_policies, policy_from_callable, redact_secrets
from corral.models import (
    AnthropicModel,
    FunctionModel,
    ModelRequest,
    OpenAICompatibleModel,
    ToolResultMessage,
    UserMessage,
    call,
)
from corral.store import SqliteJournal
from corral.tools import RetryPolicy

ANTHROPIC_KEY = "sk-ant-api03-" + "Zq8xW2vN5mK7pL1rT4yB6hJ9cF3dG0sA" * 3
OTHER_KEY = "sk-ant-api03-" + "Lk3jH5gF7dS9aQ2wE4rT6yU8iO0pZxCv" * 3
"""A key the server echoes that the adapter was not given (so only detection can catch it)."""


# -- the helper ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "marker", "secret"),
    [
        (f"auth failed for key {ANTHROPIC_KEY}", "[REDACTED:API_KEY]", ANTHROPIC_KEY),
        ("AWS said no to AKIAZ7QXW3RT5YU8IO2P", "[REDACTED:API_KEY]", "AKIAZ7QXW3RT5YU8IO2P"),
        ("connect failed: password=Tr0ub4dor&3x", "[REDACTED:SECRET]", "Tr0ub4dor&3x"),
        (
            "postgres://billing:s3cr3t-pw@db.internal:5432/ledger refused",
            "[REDACTED:SECRET]",
            "s3cr3t-pw",
        ),
        (
            "401 for Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
            "[REDACTED:BEARER_TOKEN]",
            "abcdefghijklmnopqrstuvwxyz012345",
        ),
    ],
)
def test_redact_secrets_replaces_each_kind_of_credential(
    text: str, marker: str, secret: str
) -> None:
    redacted = redact_secrets(text)
    assert secret not in redacted and marker in redacted


def test_text_without_secrets_comes_back_as_it_is() -> None:
    for text in [
        "",
        "tool 'lookup' did not finish within its 5 s timeout",
        "HTTP 500 from the billing service: internal error, retry later",
        "customer jane.doe@example.com has no open invoice",  # personal data is not a secret
        "token limit reached: max_tokens=1024",
    ]:
        assert redact_secrets(text) is text


def test_a_failing_policy_does_not_leak_its_secret_into_the_verdict() -> None:
    def broken(c: ProposedCall) -> bool:
        raise RuntimeError(f"policy store said: invalid key {ANTHROPIC_KEY}")

    verdict = check_policies([policy_from_callable(broken, name="store")], ProposedCall(tool="t"))
    assert verdict.blocked
    assert ANTHROPIC_KEY not in verdict.reason and "[REDACTED:API_KEY]" in verdict.reason


# -- provider error bodies, from a real HTTP server on a loopback port ------------------------


@pytest.fixture
def leaky_server() -> Iterator[str]:
    """Answers every POST with a 401 whose body echoes credentials."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("content-length", 0)))
            message = (
                f"invalid x-api-key {OTHER_KEY}; the request also carried "
                f"Authorization: Bearer {ANTHROPIC_KEY}"
            )
            if self.path.startswith("/v1/messages"):
                body = {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": message},
                }
            else:
                body = {"error": {"message": message, "type": "invalid_request_error"}}
            raw = json.dumps(body).encode()
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


REQUEST = ModelRequest(
    system="You are a test agent.",
    messages=(UserMessage(content="hello"),),
    max_tokens=64,
    run_id="run_1",
    step=1,
)


async def test_an_openai_compatible_error_body_is_redacted(leaky_server: str) -> None:
    async with httpx.AsyncClient() as http:
        model = OpenAICompatibleModel(
            "gpt-4o", base_url=f"{leaky_server}/v1", api_key=ANTHROPIC_KEY, http_client=http
        )
        with pytest.raises(ModelError) as caught:
            await model.request(REQUEST)
    message = str(caught.value)
    assert "HTTP 401" in message and "invalid x-api-key" in message  # still useful
    assert OTHER_KEY not in message and ANTHROPIC_KEY not in message
    assert "sk-ant" not in message


async def test_an_anthropic_error_body_is_redacted(leaky_server: str) -> None:
    import anthropic

    client = anthropic.AsyncAnthropic(api_key="local-test", base_url=leaky_server, max_retries=0)
    model = AnthropicModel("claude-test", client=client)
    try:
        with pytest.raises(ModelError) as caught:
            await model.request(REQUEST)
    finally:
        await client.close()
    message = str(caught.value)
    assert "HTTP 401" in message and "authentication_error" in message
    assert OTHER_KEY not in message and ANTHROPIC_KEY not in message
    assert "sk-ant" not in message


# -- a tool's exception, through the runtime ------------------------------------------------------


def answer_after_tool(request: ModelRequest) -> Any:
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return f"the tool said: {last.content}"
    return call("charge", customer="acme")


async def test_a_tool_exception_leaves_no_trace_of_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="corral")

    @tool(timeout=5, retry=RetryPolicy(max_retries=1, initial_delay=1.0, jitter=0.0))
    async def charge(customer: str) -> str:
        """Charge a customer."""
        raise RuntimeError(f"auth failed for key {ANTHROPIC_KEY}")

    model = FunctionModel(answer_after_tool)
    agent = SubAgent("billing", instructions="Charge customers.", tools=[charge], model=model)
    db = tmp_path / "journal.db"
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent],
            journal=journal,
            clock=MockClock(),
            durability=Durability(poll_interval_s=None),
        ) as rt:
            result = await rt.run("charge acme")
        stored = await journal.read(result.run_id)

    assert result.outcome == "completed"
    failures = [e for e in stored if e.kind == "tool_call_failed"]
    assert len(failures) == 2  # the first attempt and its retry
    assert all("auth failed for key [REDACTED:API_KEY]" in f.error for f in failures)
    dumped = json.dumps([EventAdapter.dump_python(e, mode="json") for e in stored])
    assert "sk-ant" not in dumped
    # What the model was sent next: the error, in words it can act on, without the key.
    told = model.requests[-1].messages[-1]
    assert isinstance(told, ToolResultMessage) and told.is_error
    assert "auth failed for key [REDACTED:API_KEY]" in told.content
    assert all("sk-ant" not in repr(r) for r in model.requests)
    # Not in the database file either (nor its write-ahead log), nor in any log or output.
    for path in tmp_path.iterdir():
        assert ANTHROPIC_KEY.encode() not in path.read_bytes(), path.name
    out = capsys.readouterr()
    assert "sk-ant" not in caplog.text + out.out + out.err


async def test_a_model_exception_leaves_no_trace_of_the_key() -> None:
    def broken(request: ModelRequest) -> Any:
        raise RuntimeError(f"upstream refused key {ANTHROPIC_KEY}")

    agent = SubAgent(
        "billing", instructions="Charge customers.", tools=[], model=FunctionModel(broken)
    )
    async with Runtime(
        agents=[agent], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        result = await rt.run("charge acme")
    assert result.outcome == "failed"
    assert "[REDACTED:API_KEY]" in result.reason
    dumped = json.dumps([EventAdapter.dump_python(e, mode="json") for e in result.events])
    assert "sk-ant" not in dumped and "sk-ant" not in result.reason


def test_card_numbers_are_secrets_in_errors_too() -> None:
    # Issue 12, item 6: card numbers are redacted wherever secrets are.
    for text in [
        "charge failed for card 4111 1111 1111 1111 (declined)",
        "charge failed for card 4111-1111-1111-1111",
        "charge failed for card 4111111111111111",
    ]:
        redacted = redact_secrets(text)
        assert "4111" not in redacted and "[REDACTED:CARD]" in redacted
    # grouped digits that are not a card (an order number, a date) stay
    text = "order 2024 0412 shipped on 2024-05-01"
    assert redact_secrets(text) is text
