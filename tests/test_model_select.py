from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.errors import ConfigError
from corral.models import (
    AnthropicModel,
    Model,
    ModelRequest,
    OpenAICompatibleModel,
    UserMessage,
    has_credentials,
    model_from_string,
)

ANTHROPIC_KEY = "sk-ant-api03-select-0123456789"
OPENAI_KEY = "sk-proj-select-0123456789"


def test_anthropic_spec_reads_its_key_from_env() -> None:
    model = model_from_string(
        "anthropic:claude-sonnet-5-5", env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    )
    assert isinstance(model, AnthropicModel) and isinstance(model, Model)
    assert model.name == "claude-sonnet-5-5"
    assert ANTHROPIC_KEY not in repr(model)


def test_anthropic_without_key_names_the_variable_to_set() -> None:
    with pytest.raises(ConfigError, match="set ANTHROPIC_API_KEY"):
        model_from_string("anthropic:claude-sonnet-5-5", env={})
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        model_from_string("anthropic:claude-sonnet-5-5", env={"ANTHROPIC_API_KEY": "  "})


def test_env_is_the_only_source_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("CORRAL_OPENAI_API_KEY", OPENAI_KEY)
    with pytest.raises(ConfigError):
        model_from_string("anthropic:claude-sonnet-5-5", env={})
    with pytest.raises(ConfigError):
        model_from_string("openai:gpt-4o", env={})
    # Without env, the process environment is read (once, here at the edge).
    assert model_from_string("openai:gpt-4o").name == "gpt-4o"


def test_openai_defaults_to_openai_and_needs_a_key_there() -> None:
    with pytest.raises(ConfigError, match="set CORRAL_OPENAI_API_KEY") as caught:
        model_from_string("openai:gpt-4o", env={})
    assert "CORRAL_OPENAI_BASE_URL" in str(caught.value)
    model = model_from_string("openai:gpt-4o", env={"CORRAL_OPENAI_API_KEY": OPENAI_KEY})
    assert isinstance(model, OpenAICompatibleModel)
    assert model.base_url == "https://api.openai.com/v1"
    assert OPENAI_KEY not in repr(model)


def test_openai_spec_on_a_local_server_needs_no_key() -> None:
    env = {"CORRAL_OPENAI_BASE_URL": "http://localhost:11434/v1"}
    model = model_from_string("openai:llama3.1:8b", env=env)
    assert isinstance(model, OpenAICompatibleModel)
    assert model.name == "llama3.1:8b"  # the model name may itself hold a colon
    assert model.base_url == "http://localhost:11434/v1"


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("claude-sonnet-5-5", "did you mean 'anthropic:claude-sonnet-5-5'"),
        ("gpt-4o", "did you mean 'openai:gpt-4o'"),
        ("gemini:gemini-2.5-pro", "'anthropic:<model>'"),
        ("scripted", "'openai:<model>'"),
    ],
)
def test_unknown_providers_are_config_errors_with_a_hint(spec: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="unknown model") as caught:
        model_from_string(spec, env={})
    assert hint in str(caught.value)


@pytest.mark.parametrize("spec", ["anthropic:", "openai:  "])
def test_a_spec_must_name_a_model(spec: str) -> None:
    with pytest.raises(ConfigError, match="names no model"):
        model_from_string(spec, env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY})


@pytest.mark.parametrize(
    ("spec", "env", "expected"),
    [
        ("anthropic:claude-haiku-4-5", {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}, True),
        ("anthropic:claude-haiku-4-5", {}, False),
        ("ANTHROPIC:claude-haiku-4-5", {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}, True),
        ("openai:gpt-4o", {}, False),
        ("openai:gpt-4o", {"CORRAL_OPENAI_API_KEY": OPENAI_KEY}, True),
        ("openai:qwen2.5", {"CORRAL_OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, True),
    ],
)
def test_has_credentials(spec: str, env: dict[str, str], expected: bool) -> None:
    assert has_credentials(spec, env) is expected


def test_has_credentials_rejects_typos() -> None:
    with pytest.raises(ConfigError):
        has_credentials("antropic:claude-haiku-4-5", {})


async def test_the_built_openai_model_talks_through_the_given_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "model": "qwen2.5-7b-instruct",
                "choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2},
            },
        )

    env = {"CORRAL_OPENAI_BASE_URL": "http://vllm:8000/v1", "CORRAL_OPENAI_API_KEY": OPENAI_KEY}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        model = model_from_string(
            "openai:qwen2.5-7b-instruct", env=env, http_client=http, timeout=5
        )
        response = await model.request(
            ModelRequest(system="Be brief.", messages=(UserMessage(content="hi"),), max_tokens=50)
        )
    assert response.text == "hello"
    assert str(seen[0].url) == "http://vllm:8000/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    sent: dict[str, Any] = json.loads(seen[0].content)
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["max_tokens"] == 50


async def test_the_built_anthropic_model_uses_the_base_url_from_env() -> None:
    import anthropic

    # The httpx flavour the installed SDK takes: httpx2 for anthropic 2.x, httpx before.
    sdk_httpx: Any = importlib.import_module(
        next(
            c.__module__.split(".")[0]
            for c in anthropic.DefaultAsyncHttpxClient.__mro__
            if c.__name__ == "AsyncClient"
        )
    )
    seen: list[Any] = []
    text = (Path(__file__).parent / "fixtures" / "providers" / "anthropic_text.json").read_text()

    def handler(request: Any) -> Any:
        seen.append(request)
        return sdk_httpx.Response(200, json=json.loads(text))

    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": "https://llm-gateway.internal"}
    async with sdk_httpx.AsyncClient(transport=sdk_httpx.MockTransport(handler)) as http:
        model = model_from_string("anthropic:claude-sonnet-5-5", env=env, http_client=http)
        response = await model.request(
            ModelRequest(system="Be brief.", messages=(UserMessage(content="hi"),))
        )
    assert response.stop_reason == "end_turn"
    assert str(seen[0].url) == "https://llm-gateway.internal/v1/messages"
    assert anthropic.__version__  # the real SDK did the talking
