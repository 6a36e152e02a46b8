"""The Anthropic adapter, driven through the real SDK over a mock transport.

Response bodies are Anthropic's wire format, recorded under tests/fixtures/providers/.
The anthropic 2.x SDK runs on httpx2 (a fork of httpx with the same API) and refuses
httpx objects, so the transport comes from whichever package the installed SDK uses.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

import corral.models
from corral.errors import ConfigError, ModelError, ModelTimeout, RateLimited, UsageError
from corral.models import (
    AnthropicModel,
    AssistantMessage,
    Model,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)

from ._support import GET, SEARCH, ask

FIXTURES = Path(__file__).parent / "fixtures" / "providers"
KEY = "sk-ant-api03-test-0123456789abcdef"

# The httpx flavour the installed SDK takes: httpx2 for anthropic 2.x, httpx before.
sdk_httpx: Any = importlib.import_module(
    next(
        c.__module__.split(".")[0]
        for c in anthropic.DefaultAsyncHttpxClient.__mro__
        if c.__name__ == "AsyncClient"
    )
)


def body(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def reply(status: int, name: str, headers: dict[str, str] | None = None) -> Any:
    return sdk_httpx.Response(status, json=body(name), headers=headers)


class FakeAnthropic:
    """The Messages API: answers each request with the next scripted reply, records them."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        step = self.replies.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(request)
        return step

    def sent(self, index: int = -1) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.requests[index].content)
        return payload


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    yield FakeAnthropic()


@pytest.fixture
async def model(api: FakeAnthropic) -> AsyncIterator[AnthropicModel]:
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(api)) as http:
        client = anthropic.AsyncAnthropic(api_key=KEY, http_client=http, max_retries=0)
        yield AnthropicModel("claude-sonnet-5-5", client=client)


# -- responses --------------------------------------------------------------------------------


async def test_plain_text_answer_with_every_usage_field(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    response = await model.request(ask())
    assert response.text == "All 3 unpaid invoices of Acme Corp match their line items."
    assert response.tool_calls == ()
    assert response.stop_reason == "end_turn"
    assert response.model == "claude-sonnet-5-5"
    assert response.usage == Usage(
        input_tokens=412, output_tokens=19, cache_read_tokens=2048, cache_write_tokens=1024
    )


async def test_request_places_system_prompt_top_level_and_sends_max_tokens(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    await model.request(ask(max_tokens=777))
    request = api.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/messages"
    sent = api.sent()
    assert sent["system"] == "You are the billing reconciliation agent."
    assert all(m["role"] in ("user", "assistant") for m in sent["messages"])
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Reconcile Acme Corp's unpaid invoices."}],
        }
    ]
    assert sent["max_tokens"] == 777
    assert sent["model"] == "claude-sonnet-5-5"
    assert "tools" not in sent
    assert "run_id" not in request.content.decode()  # Corral's bookkeeping stays home


async def test_api_key_is_sent_and_sdk_retries_are_off(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    await model.request(ask())
    headers = api.requests[0].headers
    assert KEY in (
        headers.get("x-api-key", ""),
        headers.get("authorization", "").removeprefix("Bearer "),
    )
    assert headers.get("anthropic-version")
    assert headers.get("x-stainless-retry-count", "0") == "0"
    assert KEY not in repr(model)
    assert repr(model) == "AnthropicModel('claude-sonnet-5-5')"


async def test_one_tool_call_and_the_tool_definitions_sent(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_tool_use"))
    response = await model.request(ask(tools=(SEARCH, GET)))
    assert response.stop_reason == "tool_use"
    assert response.text == "I'll search for Acme Corp's unpaid invoices first."
    assert response.tool_calls == (
        ToolCall(
            id="toolu_01A09q90qw90lq917835lq9",
            name="search_invoices",
            arguments={"customer": "Acme Corp", "status": "unpaid"},
        ),
    )
    assert api.sent()["tools"] == [
        {
            "name": "search_invoices",
            "description": "Search invoices by customer name and status.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "customer": {"type": "string"},
                    "status": {"enum": ["paid", "unpaid", "any"]},
                },
                "required": ["customer"],
            },
        },
        {
            "name": "get_invoice",
            "description": "Fetch one invoice with its line items.",
            "input_schema": {
                "type": "object",
                "properties": {"invoice_id": {"type": "string", "pattern": "^INV-[0-9]{6}$"}},
                "required": ["invoice_id"],
            },
        },
    ]


async def test_several_tool_calls_keep_their_order(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_tool_use_many"))
    response = await model.request(ask(tools=(GET,)))
    assert response.text == ""
    assert [(c.id, c.arguments["invoice_id"]) for c in response.tool_calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "INV-000101"),
        ("toolu_01E5aFqW2kVbCYrJ7PzWn3Hd", "INV-000102"),
        ("toolu_01Lk8Qd9dZ4aMYxVv2NnR5Tc", "INV-000103"),
    ]
    assert all(c.parse_error is None for c in response.tool_calls)
    assert response.usage == Usage(input_tokens=1310, output_tokens=142)


async def test_max_tokens_stop(api: FakeAnthropic, model: AnthropicModel) -> None:
    api.replies.append(reply(200, "anthropic_max_tokens"))
    response = await model.request(ask(max_tokens=24))
    assert response.stop_reason == "max_tokens"
    assert response.text.endswith("whose recorded total")
    assert response.usage == Usage(input_tokens=1502, output_tokens=24)


@pytest.mark.parametrize(
    ("wire", "corral"),
    [
        ("stop_sequence", "stop_sequence"),
        ("refusal", "refusal"),
        ("model_context_window_exceeded", "max_tokens"),
        ("pause_turn", "other"),
    ],
)
async def test_other_stop_reasons(
    api: FakeAnthropic, model: AnthropicModel, wire: str, corral: str
) -> None:
    payload = body("anthropic_text") | {"stop_reason": wire}
    api.replies.append(sdk_httpx.Response(200, json=payload))
    assert (await model.request(ask())).stop_reason == corral


# -- the conversation Corral sends back ------------------------------------------------------


async def test_tool_results_go_back_as_one_user_turn_with_is_error(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    calls = (
        ToolCall(id="toolu_1", name="get_invoice", arguments={"invoice_id": "INV-000101"}),
        ToolCall(id="toolu_2", name="get_invoice", arguments={"invoice_id": "INV-101"}),
    )
    await model.request(
        ask(
            UserMessage(content="Reconcile Acme Corp's unpaid invoices."),
            AssistantMessage(text="Fetching both.", tool_calls=calls),
            ToolResultMessage(call_id="toolu_1", tool="get_invoice", content='{"total": 1250}'),
            ToolResultMessage(
                call_id="toolu_2",
                tool="get_invoice",
                content="Invalid arguments for 'get_invoice': invoice_id must match ^INV-[0-9]{6}$",
                is_error=True,
            ),
            UserMessage(content="Note: 80% of the token budget is used."),
            tools=(GET,),
        )
    )
    assert api.sent()["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Reconcile Acme Corp's unpaid invoices."}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Fetching both."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_invoice",
                    "input": {"invoice_id": "INV-000101"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_invoice",
                    "input": {"invoice_id": "INV-101"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"total": 1250}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "Invalid arguments for 'get_invoice': invoice_id must match "
                    "^INV-[0-9]{6}$",
                    "is_error": True,
                },
                {"type": "text", "text": "Note: 80% of the token budget is used."},
            ],
        },
    ]


async def test_roles_alternate_and_tool_results_open_their_turn(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    call = ToolCall(id="toolu_9", name="flag_discrepancy", arguments={"invoice_id": "INV-000102"})
    await model.request(
        ask(
            UserMessage(content="Task."),
            UserMessage(content="Second note."),
            AssistantMessage(text="", tool_calls=(call,)),
            UserMessage(content="A person rejected the call: amounts are being disputed."),
            ToolResultMessage(
                call_id="toolu_9", tool="flag_discrepancy", content="rejected", is_error=True
            ),
            AssistantMessage(text=""),  # an empty answer carries nothing: the API refuses it
            UserMessage(content="Go on."),
        )
    )
    messages = api.sent()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[0]["content"]] == ["text", "text"]
    assert messages[1]["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_9",
            "name": "flag_discrepancy",
            "input": {"invoice_id": "INV-000102"},
        }
    ]
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text", "text"]


async def test_thinking_blocks_are_echoed_verbatim_with_the_tool_results(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies += [reply(200, "anthropic_thinking_tool_use"), reply(200, "anthropic_text")]
    first = await model.request(ask(tools=(SEARCH,)))
    assert [c.name for c in first.tool_calls] == ["search_invoices"]
    assert first.text == ""  # thinking is not part of the answer
    await model.request(
        ask(
            UserMessage(content="Reconcile Acme Corp's unpaid invoices."),
            AssistantMessage(
                text=first.text, tool_calls=first.tool_calls, provider_data=first.provider_data
            ),
            ToolResultMessage(call_id=first.tool_calls[0].id, tool="search_invoices", content="[]"),
            tools=(SEARCH,),
        )
    )
    # The blocks travel in provider_data, which the journal keeps: a restarted process
    # (a fresh adapter) sends them back too.
    assert first.provider_data is not None
    assistant = api.sent()["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": body("anthropic_thinking_tool_use")["content"],
    }


async def test_non_object_tool_input_becomes_a_parse_error(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    payload = body("anthropic_tool_use")
    payload["content"][1]["input"] = "INV-000101"
    api.replies.append(sdk_httpx.Response(200, json=payload))
    response = await model.request(ask(tools=(SEARCH,)))
    (call,) = response.tool_calls
    assert call.arguments == {} and call.parse_error is not None
    assert "JSON object" in call.parse_error


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({}, None),
    ],
)
async def test_429_is_rate_limited_with_retry_after(
    api: FakeAnthropic,
    model: AnthropicModel,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    api.replies.append(reply(429, "anthropic_error_429", headers))
    with pytest.raises(RateLimited) as caught:
        await model.request(ask())
    error = caught.value
    assert error.retryable is True
    assert error.retry_after == expected
    assert error.status_code == 429
    assert "50,000 input tokens per minute" in str(error)
    assert isinstance(error.__cause__, anthropic.RateLimitError)  # chained, not leaked
    assert len(api.requests) == 1  # the SDK did not retry behind Corral's back


async def test_sdk_retries_stay_off_even_on_a_client_that_had_them(api: FakeAnthropic) -> None:
    api.replies += [reply(529, "anthropic_error_529")] * 3
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(api)) as http:
        client = anthropic.AsyncAnthropic(api_key=KEY, http_client=http, max_retries=5)
        with pytest.raises(RateLimited):
            await AnthropicModel("claude-sonnet-5-5", client=client).request(ask())
    assert len(api.requests) == 1


async def test_529_overloaded_is_rate_limited(api: FakeAnthropic, model: AnthropicModel) -> None:
    api.replies.append(reply(529, "anthropic_error_529", {"retry-after": "3"}))
    with pytest.raises(RateLimited) as caught:
        await model.request(ask())
    assert caught.value.status_code == 529
    assert caught.value.retry_after == 3.0
    assert "overloaded_error: Overloaded" in str(caught.value)


async def test_400_surfaces_the_api_message_and_is_not_retried(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(reply(400, "anthropic_error_400"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    error = caught.value
    assert not isinstance(error, RateLimited | ModelTimeout)
    assert error.retryable is False
    assert error.status_code == 400
    message = body("anthropic_error_400")["error"]["message"]
    assert message in str(error)
    assert "invalid_request_error" in str(error)


async def test_401_is_not_retried_and_never_shows_the_key(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    echo = {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}}
    api.replies.append(sdk_httpx.Response(401, json=echo))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is False and caught.value.status_code == 401
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value) and "check the API key" in str(caught.value)


async def test_500_is_retryable(api: FakeAnthropic, model: AnthropicModel) -> None:
    api.replies.append(reply(500, "anthropic_error_500"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is True
    assert caught.value.status_code == 500
    assert "Internal server error" in str(caught.value)


async def test_timeout_is_a_model_timeout(api: FakeAnthropic, model: AnthropicModel) -> None:
    api.replies.append(sdk_httpx.ReadTimeout("read timed out"))
    with pytest.raises(ModelTimeout) as caught:
        await model.request(ask())
    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)


async def test_connection_error_is_retryable(api: FakeAnthropic, model: AnthropicModel) -> None:
    api.replies.append(sdk_httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    error = caught.value
    assert not isinstance(error, ModelTimeout)
    assert error.retryable is True and error.status_code is None
    assert "Connection refused" in str(error)


async def test_an_unreadable_success_is_a_retryable_model_error(
    api: FakeAnthropic, model: AnthropicModel
) -> None:
    api.replies.append(
        sdk_httpx.Response(
            200, text="<html>gateway</html>", headers={"content-type": "application/json"}
        )
    )
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is True


# -- construction, protocol and the spend guard ------------------------------------------------


async def test_is_a_model_named_by_its_id(model: AnthropicModel) -> None:
    assert isinstance(model, Model)
    assert model.name == "claude-sonnet-5-5"


async def test_requests_are_refused_without_a_transport_when_disallowed() -> None:
    assert corral.models.ALLOW_MODEL_REQUESTS is False  # set by tests/conftest.py
    real = AnthropicModel("claude-sonnet-5-5", api_key=KEY)
    try:
        with pytest.raises(UsageError, match="ALLOW_MODEL_REQUESTS"):
            await real.request(ask())
    finally:
        await real.aclose()


async def test_an_injected_http_client_is_allowed_and_stays_open(api: FakeAnthropic) -> None:
    api.replies.append(reply(200, "anthropic_text"))
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(api)) as http:
        async with AnthropicModel("claude-haiku-4-5", api_key=KEY, http_client=http) as model:
            assert (await model.request(ask())).text
        assert not http.is_closed


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        AnthropicModel("  ")
    with pytest.raises(ConfigError):
        AnthropicModel("claude-sonnet-5-5", api_key=KEY, timeout=0)
    client = anthropic.AsyncAnthropic(api_key=KEY)
    with pytest.raises(UsageError, match="not both"):
        AnthropicModel("claude-sonnet-5-5", client=client, api_key=KEY)


async def test_missing_key_is_a_config_error(
    api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(api)) as http:
        model = AnthropicModel("claude-sonnet-5-5", http_client=http)
        with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
            await model.request(ask())
    assert api.requests == []
