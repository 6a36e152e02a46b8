"""The OpenAI-compatible adapter over httpx, driven through a mock transport.

Response bodies are the chat-completions wire format of OpenAI, vLLM and Ollama, recorded
under tests/fixtures/providers/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import corral.models
from corral.errors import ConfigError, ModelError, ModelTimeout, RateLimited, UsageError
from corral.models import (
    AssistantMessage,
    Model,
    OpenAICompatibleModel,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)

from ._support import GET, ask

FIXTURES = Path(__file__).parent / "fixtures" / "providers"
KEY = "sk-test-SECRET-0123456789"
LOCAL = "http://localhost:8000/v1"


def body(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def reply(status: int, name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body(name), headers=headers)


class FakeServer:
    """A chat-completions server: answers with the next scripted reply, records requests."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.replies.pop(0)
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, httpx.Response)
        return step

    def sent(self, index: int = -1) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.requests[index].content)
        return payload


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def http(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        yield client


@pytest.fixture
def model(http: httpx.AsyncClient) -> OpenAICompatibleModel:
    return OpenAICompatibleModel("gpt-4o", base_url=LOCAL, api_key=KEY, http_client=http)


# -- responses --------------------------------------------------------------------------------


async def test_plain_text_with_cached_prompt_tokens(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_text"))
    response = await model.request(ask())
    assert response.text == "All 3 unpaid invoices of Acme Corp match their line items."
    assert response.stop_reason == "end_turn"
    assert response.model == "gpt-4o-2024-08-06"
    # prompt_tokens includes the cached ones: they are counted once, as cache reads.
    assert response.usage == Usage(input_tokens=364, output_tokens=17, cache_read_tokens=1536)


async def test_request_shape_system_first_and_max_tokens(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_text"))
    await model.request(ask(max_tokens=321))
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://localhost:8000/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    sent = server.sent()
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [
        {"role": "system", "content": "You are the billing reconciliation agent."},
        {"role": "user", "content": "Reconcile Acme Corp's unpaid invoices."},
    ]
    assert sent["max_tokens"] == 321 and "max_completion_tokens" not in sent
    assert "tools" not in sent


async def test_openai_itself_gets_max_completion_tokens(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    server.replies.append(reply(200, "openai_text"))
    model = OpenAICompatibleModel("gpt-4o", api_key=KEY, http_client=http)
    await model.request(ask(max_tokens=99))
    assert str(server.requests[0].url) == "https://api.openai.com/v1/chat/completions"
    sent = server.sent()
    assert sent["max_completion_tokens"] == 99 and "max_tokens" not in sent


async def test_one_tool_call_and_the_function_tools_sent(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_tool_call"))
    response = await model.request(ask(tools=(GET,)))
    assert response.stop_reason == "tool_use"
    assert response.text == ""
    assert response.tool_calls == (
        ToolCall(
            id="call_12345xyz",
            name="search_invoices",
            arguments={"customer": "Acme Corp", "status": "unpaid"},
        ),
    )
    assert server.sent()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_invoice",
                "description": "Fetch one invoice with its line items.",
                "parameters": {
                    "type": "object",
                    "properties": {"invoice_id": {"type": "string", "pattern": "^INV-[0-9]{6}$"}},
                    "required": ["invoice_id"],
                },
            },
        }
    ]


async def test_several_tool_calls(server: FakeServer, model: OpenAICompatibleModel) -> None:
    server.replies.append(reply(200, "openai_tool_calls_many"))
    response = await model.request(ask(tools=(GET,)))
    assert response.text == "Fetching the three invoices."
    assert [(c.id, c.arguments) for c in response.tool_calls] == [
        ("call_a1", {"invoice_id": "INV-000101"}),
        ("call_a2", {"invoice_id": "INV-000102"}),
        ("call_a3", {"invoice_id": "INV-000103"}),
    ]
    assert response.usage == Usage(input_tokens=655, output_tokens=71)


async def test_malformed_arguments_become_parse_errors_not_crashes(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_malformed_arguments"))
    response = await model.request(ask(tools=(GET,)))
    truncated, not_object, fine = response.tool_calls
    assert truncated.arguments == {} and truncated.parse_error is not None
    assert "not valid JSON" in truncated.parse_error
    assert "line 1 column" in truncated.parse_error
    assert not_object.arguments == {} and not_object.parse_error is not None
    assert "JSON object" in not_object.parse_error and "list" in not_object.parse_error
    assert fine.parse_error is None and fine.arguments == {"customer": "Acme Corp"}
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(input_tokens=512, output_tokens=48)


async def test_length_is_max_tokens(server: FakeServer, model: OpenAICompatibleModel) -> None:
    server.replies.append(reply(200, "openai_length"))
    response = await model.request(ask(max_tokens=16))
    assert response.stop_reason == "max_tokens"
    assert response.text.endswith("the first discrepancy is on")


async def test_ollama_tool_calls_with_stop_and_no_usage(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_ollama_tool_call"))
    response = await model.request(ask(tools=(GET,)))
    assert response.stop_reason == "tool_use"  # Ollama says "stop"
    assert [c.name for c in response.tool_calls] == ["search_invoices"]
    # No usage reported: Corral's estimate is charged, never a free call.
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.model == "llama3.1:8b"


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
        ("eos", "other"),
        (None, "other"),
    ],
)
async def test_other_finish_reasons(
    server: FakeServer, model: OpenAICompatibleModel, finish: str | None, stop: str
) -> None:
    payload = body("openai_text")
    payload["choices"][0]["finish_reason"] = finish
    server.replies.append(httpx.Response(200, json=payload))
    assert (await model.request(ask())).stop_reason == stop


async def test_a_refusal_is_the_text(server: FakeServer, model: OpenAICompatibleModel) -> None:
    payload = body("openai_text")
    payload["choices"][0]["message"] |= {"content": None, "refusal": "I can't help with that."}
    server.replies.append(httpx.Response(200, json=payload))
    response = await model.request(ask())
    assert (response.text, response.stop_reason) == ("I can't help with that.", "refusal")


# -- the conversation Corral sends back ------------------------------------------------------


async def test_tool_calls_and_results_go_back_in_openai_form(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(200, "openai_text"))
    calls = (
        ToolCall(id="call_1", name="get_invoice", arguments={"invoice_id": "INV-000101"}),
        ToolCall(id="call_2", name="get_invoice", arguments={"invoice_id": "INV-101"}),
        ToolCall(id="call_3", name="get_invoice", parse_error="arguments are not valid JSON"),
    )
    await model.request(
        ask(
            UserMessage(content="Reconcile Acme Corp's unpaid invoices."),
            AssistantMessage(text="", tool_calls=calls),
            ToolResultMessage(call_id="call_1", tool="get_invoice", content='{"total": 1250}'),
            ToolResultMessage(
                call_id="call_2",
                tool="get_invoice",
                content="Invalid arguments for 'get_invoice': invoice_id must match ^INV-[0-9]{6}$",
                is_error=True,
            ),
            ToolResultMessage(
                call_id="call_3", tool="get_invoice", content="Error: not JSON", is_error=True
            ),
            AssistantMessage(text="Let me check the totals."),
            UserMessage(content="Note: 80% of the token budget is used."),
            tools=(GET,),
        )
    )
    messages = server.sent()["messages"]
    assert messages[0] == {"role": "system", "content": "You are the billing reconciliation agent."}
    assert messages[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_invoice", "arguments": '{"invoice_id": "INV-000101"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_invoice", "arguments": '{"invoice_id": "INV-101"}'},
            },
            {
                "id": "call_3",
                "type": "function",
                "function": {"name": "get_invoice", "arguments": "{}"},
            },
        ],
    }
    assert messages[3:6] == [
        {"role": "tool", "tool_call_id": "call_1", "content": '{"total": 1250}'},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": "Error: Invalid arguments for 'get_invoice': invoice_id must match "
            "^INV-[0-9]{6}$",
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "Error: not JSON"},
    ]
    assert messages[6:] == [
        {"role": "assistant", "content": "Let me check the totals."},
        {"role": "user", "content": "Note: 80% of the token budget is used."},
    ]
    for call in messages[2]["tool_calls"]:
        assert isinstance(json.loads(call["function"]["arguments"]), dict)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "228"}, 0.228), ({}, None)],
)
async def test_429_is_rate_limited_with_retry_after(
    server: FakeServer,
    model: OpenAICompatibleModel,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    server.replies.append(reply(429, "openai_error_429", headers))
    with pytest.raises(RateLimited) as caught:
        await model.request(ask())
    assert caught.value.retry_after == expected
    assert caught.value.status_code == 429 and caught.value.retryable
    assert "Rate limit reached for gpt-4o-mini" in str(caught.value)


async def test_429_out_of_quota_is_not_retried(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(reply(429, "openai_error_insufficient_quota"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert not isinstance(caught.value, RateLimited)
    assert caught.value.retryable is False and caught.value.status_code == 429
    assert "exceeded your current quota" in str(caught.value)


async def test_503_with_retry_after_is_rate_limited_without_is_a_retryable_error(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies += [
        httpx.Response(503, text="Service Unavailable", headers={"retry-after": "5"}),
        httpx.Response(503, text="Service Unavailable"),
    ]
    with pytest.raises(RateLimited) as shedding:
        await model.request(ask())
    assert (shedding.value.status_code, shedding.value.retry_after) == (503, 5.0)
    with pytest.raises(ModelError) as down:
        await model.request(ask())
    assert not isinstance(down.value, RateLimited)
    assert down.value.retryable is True and down.value.status_code == 503
    assert "Service Unavailable" in str(down.value)


@pytest.mark.parametrize("fixture", ["openai_error_400", "vllm_error_400"])
async def test_400_surfaces_the_server_message_and_is_not_retried(
    server: FakeServer, model: OpenAICompatibleModel, fixture: str
) -> None:
    server.replies.append(reply(400, fixture))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    payload = body(fixture)
    message = payload["error"]["message"] if "error" in payload else payload["message"]
    assert message in str(caught.value)
    assert caught.value.retryable is False and caught.value.status_code == 400


async def test_401_never_shows_the_key(server: FakeServer, model: OpenAICompatibleModel) -> None:
    server.replies.append(reply(401, "openai_error_401"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is False and caught.value.status_code == 401
    assert KEY not in str(caught.value)
    assert "Incorrect API key provided: ***" in str(caught.value)


async def test_500_is_retryable(server: FakeServer, model: OpenAICompatibleModel) -> None:
    server.replies.append(reply(500, "openai_error_500"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is True and caught.value.status_code == 500
    assert "server had an error" in str(caught.value)


async def test_timeout_is_a_model_timeout(server: FakeServer, model: OpenAICompatibleModel) -> None:
    server.replies.append(httpx.ReadTimeout("timed out"))
    with pytest.raises(ModelTimeout) as caught:
        await model.request(ask())
    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_connection_error_is_retryable(
    server: FakeServer, model: OpenAICompatibleModel
) -> None:
    server.replies.append(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert not isinstance(caught.value, ModelTimeout)
    assert caught.value.retryable is True and caught.value.status_code is None
    assert "Connection refused" in str(caught.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>502 Bad Gateway</html>"),
        httpx.Response(200, json={"object": "chat.completion", "choices": []}),
        httpx.Response(200, json={"choices": [{"message": "hello"}]}),
    ],
)
async def test_an_unreadable_success_is_a_retryable_model_error(
    server: FakeServer, model: OpenAICompatibleModel, response: httpx.Response
) -> None:
    server.replies.append(response)
    with pytest.raises(ModelError) as caught:
        await model.request(ask())
    assert caught.value.retryable is True
    assert "cannot read" in str(caught.value) or "no choices" in str(caught.value)


# -- construction, protocol and the spend guard ------------------------------------------------


def test_is_a_model_and_keeps_secrets_out_of_its_repr(model: OpenAICompatibleModel) -> None:
    assert isinstance(model, Model)
    assert model.name == "gpt-4o"
    assert KEY not in repr(model)
    hidden = OpenAICompatibleModel("m", base_url="https://user:pa55word@llm.internal/v1")
    assert "pa55word" not in repr(hidden) and hidden.base_url == "https://llm.internal/v1"


async def test_no_key_sends_no_authorization(server: FakeServer, http: httpx.AsyncClient) -> None:
    server.replies.append(reply(200, "openai_text"))
    local = OpenAICompatibleModel("llama3.1:8b", base_url=LOCAL + "/", http_client=http)
    await local.request(ask())
    assert "authorization" not in server.requests[0].headers
    assert str(server.requests[0].url) == "http://localhost:8000/v1/chat/completions"


async def test_requests_are_refused_without_a_transport_when_disallowed() -> None:
    assert corral.models.ALLOW_MODEL_REQUESTS is False  # set by tests/conftest.py
    async with OpenAICompatibleModel("gpt-4o", api_key=KEY) as real:
        with pytest.raises(UsageError, match="ALLOW_MODEL_REQUESTS"):
            await real.request(ask())


async def test_an_injected_client_stays_open(server: FakeServer, http: httpx.AsyncClient) -> None:
    server.replies.append(reply(200, "openai_text"))
    async with OpenAICompatibleModel("gpt-4o", base_url=LOCAL, http_client=http) as model:
        await model.request(ask())
    assert not http.is_closed


@pytest.mark.parametrize(
    "options",
    [
        {"model": ""},
        {"model": "gpt-4o", "base_url": "localhost:8000/v1"},
        {"model": "gpt-4o", "base_url": "ftp://example.com/v1"},
        {"model": "gpt-4o", "timeout": 0},
    ],
)
def test_options_are_checked(options: dict[str, Any]) -> None:
    model = options.pop("model")
    with pytest.raises(ConfigError):
        OpenAICompatibleModel(model, **options)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Wed, 25 Nov 2026 06:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 25 Nov 2026 05:59:00 GMT"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], expected: float | None) -> None:
    from corral._retry import parse_retry_after

    now = 1795586400.0  # 2026-11-25 06:00:00 UTC
    assert parse_retry_after(httpx.Headers(headers), now=now) == expected
