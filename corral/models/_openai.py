"""Any OpenAI-compatible chat-completions server over httpx: OpenAI, vLLM, Ollama, llama.cpp.

Wire format (``POST {base_url}/chat/completions``):

* The system prompt is the first message, ``{"role": "system"}``.
* `AssistantMessage` -> ``{"role": "assistant", "content": text or null, "tool_calls":
  [{"id", "type": "function", "function": {"name", "arguments": "<JSON string>"}}]}``.
* `ToolResultMessage` -> ``{"role": "tool", "tool_call_id", "content"}``. The format has
  no error flag, so an error result is prefixed with ``Error:`` unless it already says so.
* `ToolSpec` -> ``{"type": "function", "function": {"name", "description", "parameters"}}``.
* The output cap is sent as ``max_completion_tokens`` to api.openai.com (its reasoning
  models refuse ``max_tokens``) and as ``max_tokens`` elsewhere (what local servers read);
  `max_tokens_field` overrides the choice.
* From the response: ``choices[0].message`` content and ``tool_calls``. A call whose
  ``arguments`` is not valid JSON, or not a JSON object, or holds what no tool can use
  (``NaN``, ``Infinity``, nesting past 32 levels, a lone surrogate: see
  `corral.models._decode`), becomes a `ToolCall` with ``parse_error`` set and empty
  arguments: the runtime feeds the error back to the model, nothing crashes.
  ``finish_reason`` ``stop`` -> ``end_turn``, ``tool_calls`` (or the legacy
  ``function_call``) -> ``tool_use``, ``length`` -> ``max_tokens``,
  ``content_filter`` -> ``refusal``, anything else -> ``other``; a response with tool calls
  is ``tool_use`` whatever the server said (Ollama says ``stop``).
* Usage: ``prompt_tokens`` includes cached tokens, so ``input_tokens`` is
  ``prompt_tokens - prompt_tokens_details.cached_tokens`` and ``cache_read_tokens`` is
  ``cached_tokens``; ``completion_tokens`` -> ``output_tokens``. A server that reports no
  usage is charged Corral's estimate (see `corral.models._tokens`), never zero.

Errors (see `corral.models._errors`): 429 -> `RateLimited` with ``retry-after``; 503 with
a ``Retry-After`` header (a server shedding load) -> `RateLimited`; other 5xx -> retryable
`ModelError`; 4xx -> `ModelError(retryable=False)` with the server's message; a success
whose body is not JSON (a proxy's or captive portal's page) -> retryable `ModelError`
quoting its content type and first characters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, ModelError
from ._decode import loads_arguments, loads_body
from ._errors import ensure_requests_allowed, error_for_status, map_model_errors, redact
from ._plain import plain_json as _plain
from ._tokens import estimate_output_tokens, estimate_request_tokens
from ._types import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = ["DEFAULT_TIMEOUT", "OPENAI_BASE_URL", "OpenAICompatibleModel"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""OpenAI's own API."""

DEFAULT_TIMEOUT = 120.0
"""Seconds one request may take before it fails with `ModelTimeout`. Default 120 s."""

_FINISH_REASONS: Mapping[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


# -- the response, validated at the boundary -------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Function(_Lenient):
    name: str
    arguments: str | dict[str, Any] | None = None


class _WireToolCall(_Lenient):
    id: str | None = None
    function: _Function


class _WireMessage(_Lenient):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[_WireToolCall] | None = None


class _Choice(_Lenient):
    message: _WireMessage
    finish_reason: str | None = None


class _PromptDetails(_Lenient):
    cached_tokens: int | None = None


class _WireUsage(_Lenient):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None


class _Completion(_Lenient):
    model: str | None = None
    choices: list[_Choice]
    usage: _WireUsage | None = None


# -- request ------------------------------------------------------------------------------------


def tool_param(spec: ToolSpec) -> dict[str, Any]:
    """Convert a tool spec to an OpenAI function tool.

    Args:
        spec: the tool as offered to the model.

    Returns:
        ``{"type": "function", "function": {"name", "description", "parameters"}}``.
    """
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": _plain(spec.input_schema),
        },
    }


def _error_text(content: str) -> str:
    return content if content.lstrip().lower().startswith("error") else f"Error: {content}"


def message_params(system: str, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Convert a system prompt and a Corral conversation to chat-completions messages.

    Args:
        system: the system prompt (omitted when empty).
        messages: the conversation, oldest first.

    Returns:
        The ``messages`` field of the request body.
    """
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for message in messages:
        if isinstance(message, UserMessage):
            out.append({"role": "user", "content": message.content})
        elif isinstance(message, AssistantMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": json.dumps(_plain(call.arguments), ensure_ascii=False),
                        },
                    }
                    for call in message.tool_calls
                ]
            else:
                entry["content"] = message.text
            out.append(entry)
        elif isinstance(message, ToolResultMessage):
            content = _error_text(message.content) if message.is_error else message.content
            out.append({"role": "tool", "tool_call_id": message.call_id, "content": content})
    return out


# -- response -----------------------------------------------------------------------------------


def _parse_arguments(raw: str | dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Decode a tool call's arguments; returns (arguments, parse_error)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}, None  # a call without arguments
    if isinstance(raw, dict):
        return raw, None  # some servers (older Ollama) send an object; `ToolCall` checks it
    return loads_arguments(raw)


def _decode_body(response: httpx.Response) -> Any:
    """The response's JSON, even nested past the recursion limit or holding an endless integer.

    Such a body is decoded by `loads_body`, so that only the call holding the value is
    refused; the plain decoder would fail the whole response (`RecursionError`).

    Raises:
        json.JSONDecodeError: the body is not JSON.
    """
    try:
        return response.json()
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError):
        return loads_body(response.text)


def parse_completion(body: Any, *, model: str, request: ModelRequest) -> ModelResponse:
    """Convert a chat-completions response body to a Corral response.

    Args:
        body: the decoded JSON body.
        model: the model asked for, used when the body names none.
        request: the request, to estimate usage when the server reports none.

    Returns:
        The response.

    Raises:
        pydantic.ValidationError: the body is not a chat completion (translated to
            `ModelError` by the caller's `map_model_errors`).
        ModelError: the completion has no choices.
    """
    completion = _Completion.model_validate(body)
    if not completion.choices:
        raise ModelError(f"openai {model!r}: the response has no choices", retryable=True)
    choice = completion.choices[0]
    message = choice.message
    calls: list[ToolCall] = []
    for wire in message.tool_calls or ():
        arguments, error = _parse_arguments(wire.function.arguments)
        calls.append(
            ToolCall(
                id=wire.id or f"call_{uuid.uuid4().hex[:24]}",
                name=wire.function.name,
                arguments=arguments,
                parse_error=error,
            )
        )
    text = message.content or ""
    stop = _FINISH_REASONS.get(choice.finish_reason or "", "other")
    if message.refusal:
        text, stop = text or message.refusal, "refusal"
    if calls and stop in ("end_turn", "other"):
        stop = "tool_use"
    wire_usage = completion.usage
    if wire_usage is not None and wire_usage.prompt_tokens is not None:
        details = wire_usage.prompt_tokens_details
        cached = (details.cached_tokens or 0) if details is not None else 0
        usage = Usage(
            input_tokens=max(wire_usage.prompt_tokens - cached, 0),
            output_tokens=wire_usage.completion_tokens or 0,
            cache_read_tokens=cached,
        )
    else:
        usage = Usage(
            input_tokens=estimate_request_tokens(request),
            output_tokens=estimate_output_tokens(text, calls),
        )
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        usage=usage,
        stop_reason=stop,
        model=completion.model or model,
    )


def _display_url(url: str) -> str:
    """The URL without any user:password part, for reprs and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint, as a Corral `Model`.

    Example, a local vLLM or Ollama server::

        model = OpenAICompatibleModel("llama3.1:8b", base_url="http://localhost:11434/v1")

    Use it as an async context manager (or call `aclose`) to close the connection pool
    the adapter created; an `http_client` you pass in stays yours to close.

    Args:
        model: the model name the server knows, such as ``gpt-4o`` or
            ``Qwen/Qwen2.5-7B-Instruct``.
        base_url: the API root, ending in ``/v1`` (``http://localhost:8000/v1``).
            Default OpenAI's (`OPENAI_BASE_URL`).
        api_key: sent as ``Authorization: Bearer ...``; None sends no key (local servers).
        http_client: the ``httpx.AsyncClient`` to use (tests pass one with a
            ``MockTransport``). Default: one the adapter creates.
        timeout: seconds one request may take, connecting included. Default 120 s.
        headers: extra headers sent with every request.
        max_tokens_field: the body field that carries the output cap. Default
            ``max_completion_tokens`` for api.openai.com, ``max_tokens`` elsewhere.

    Raises:
        ConfigError: an empty model, a base URL that is not http(s), or a non-positive
            timeout.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = OPENAI_BASE_URL,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError("OpenAICompatibleModel needs a model name, such as 'gpt-4o'")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"base_url must be an http(s) URL like http://localhost:8000/v1, "
                f"got {_display_url(base_url)!r}"
            )
        if timeout <= 0:
            raise ConfigError(f"OpenAICompatibleModel timeout must be > 0 seconds, got {timeout}")
        self._model = model.strip()
        self._base_url = base_url.strip().rstrip("/")
        self._url = f"{self._base_url}/chat/completions"
        self._api_key = api_key or None
        self._timeout = timeout
        self._headers = {"Accept": "application/json", **(headers or {})}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        if max_tokens_field is None:
            is_openai = parts.hostname == "api.openai.com"
            max_tokens_field = "max_completion_tokens" if is_openai else "max_tokens"
        self._max_tokens_field = max_tokens_field
        self._client = http_client
        self._injected = http_client is not None
        self._owns_client = http_client is None

    @property
    def name(self) -> str:
        """The model name, as used in events and price look-ups."""
        return self._model

    @property
    def base_url(self) -> str:
        """The API root requests go to (without any credentials it may embed)."""
        return _display_url(self._base_url)

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel({self._model!r}, base_url={self.base_url!r})"

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """Build the JSON body sent for a request (useful to inspect or log).

        Args:
            request: the Corral request.

        Returns:
            The chat-completions body: model, messages, output cap and tools.
        """
        body: dict[str, Any] = {
            "model": self._model,
            "messages": message_params(request.system, request.messages),
            self._max_tokens_field: request.max_tokens,
        }
        if request.tools:
            body["tools"] = [tool_param(spec) for spec in request.tools]
        return body

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one chat-completions request and return the response.

        Args:
            request: the system prompt, conversation, tools and output cap.

        Returns:
            The model's text, tool calls, usage and stop reason.

        Raises:
            RateLimited: 429, or 503 with ``Retry-After``; `retry_after` from the headers.
            ModelTimeout: the request timed out.
            ModelError: any other failure; `retryable` is False for 4xx errors, whose
                message carries the server's explanation.
            UsageError: `corral.models.ALLOW_MODEL_REQUESTS` is False and the adapter
                would reach a real server.
        """
        ensure_requests_allowed(self._model, injected=self._injected)
        body = self.request_body(request)
        secrets = (self._api_key,)
        with map_model_errors(provider="openai", model=self._model, secrets=secrets):
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self._timeout)
            response = await self._client.post(
                self._url, json=body, headers=self._headers, timeout=self._timeout
            )
            if response.status_code >= 400:
                try:
                    error_body = response.json()
                except ValueError:
                    error_body = None
                raise error_for_status(
                    response.status_code,
                    provider="openai",
                    model=self._model,
                    headers=response.headers,
                    body=error_body,
                    text=response.text,
                    secrets=secrets,
                )
            try:
                payload = _decode_body(response)
            except ValueError as exc:  # a proxy's or captive portal's page, say
                kind = response.headers.get("content-type", "no content type")
                snippet = " ".join(response.text.split())[:120]
                raise ModelError(
                    redact(
                        f"openai {self._model!r}: the API returned a response Corral cannot "
                        f"read: HTTP {response.status_code} {kind} body is not JSON: "
                        f"{snippet!r}",
                        secrets,
                    ),
                    retryable=True,
                ) from exc
            return parse_completion(payload, model=self._model, request=request)

    async def aclose(self) -> None:
        """Close the connection pool, if the adapter created it."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> OpenAICompatibleModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
