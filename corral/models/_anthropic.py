"""Claude through the official ``anthropic`` SDK (the Messages API with tools).

Wire format, both ways:

* The system prompt goes in the top-level ``system`` field, never in ``messages``.
* `UserMessage` -> a ``user`` turn with a text block. `AssistantMessage` -> an
  ``assistant`` turn with a text block (when there is text) then one ``tool_use`` block per
  call. Consecutive `ToolResultMessage` -> one ``user`` turn of ``tool_result`` blocks
  (``is_error: true`` for errors). Turns of the same role are merged so roles alternate,
  with tool results ahead of any text in a merged user turn, as the API requires.
* `ToolSpec` -> ``{"name", "description", "input_schema"}``.
* The response's text blocks are joined with newlines; each ``tool_use`` block becomes a
  `ToolCall`; usage ``input_tokens``, ``output_tokens``, ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens`` become `Usage`; stop reasons ``end_turn``, ``tool_use``,
  ``max_tokens``, ``stop_sequence`` and ``refusal`` map to themselves,
  ``model_context_window_exceeded`` to ``max_tokens``, anything else to ``other``.

Tool inputs are checked as `corral.models.ToolCall` checks every call (``NaN``,
``Infinity``, nesting past 32 levels, lone surrogates become a ``parse_error`` for the
model); a body nested past the interpreter's recursion limit, which the SDK cannot
decode, is decoded by `corral.models._decode.loads_body`, so only the call holding it is
refused.

The SDK's own retries are off (``max_retries=0``, also on a client you pass in), so
Corral's retry policy and budget see every attempt. Errors are translated by
`corral.models._errors.map_model_errors`.

Thinking: models that think (always, on some current Claude models) return ``thinking``
blocks that must be sent back verbatim with the tool results of that turn. The adapter puts
the raw content of such a response in its ``provider_data`` (``{"anthropic": {"content":
[...]}}``); the run journals it with the turn and the adapter echoes it when the turn is
sent back, so it survives a process restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ModelError, UsageError
from ._decode import loads_body
from ._errors import ensure_requests_allowed, map_model_errors, redact
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

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message as AnthropicMessage

__all__ = ["DEFAULT_TIMEOUT", "AnthropicModel"]

DEFAULT_TIMEOUT = 120.0
"""Seconds one request may take before it fails with `ModelTimeout`. Default 120 s."""


_STOP_REASONS: Mapping[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
}
_THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})


def tool_param(spec: ToolSpec) -> dict[str, Any]:
    """Convert a tool spec to an Anthropic tool definition.

    Args:
        spec: the tool as offered to the model.

    Returns:
        ``{"name", "description", "input_schema"}``.
    """
    return {
        "name": spec.name,
        "description": spec.description,
        "input_schema": _plain(spec.input_schema),
    }


def _assistant_blocks(message: AssistantMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _plain(call.arguments)}
        )
    return blocks


def _result_block(message: ToolResultMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.call_id}
    if message.content:
        block["content"] = message.content
    if message.is_error:
        block["is_error"] = True
    return block


def message_params(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Convert a Corral conversation to Anthropic ``messages`` with alternating roles.

    Args:
        messages: the conversation, oldest first.

    Returns:
        The ``messages`` parameter of the Messages API.
    """
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return  # the API refuses empty turns; an empty answer carries nothing anyway
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for message in messages:
        if isinstance(message, UserMessage):
            add("user", [{"type": "text", "text": message.content}] if message.content else [])
        elif isinstance(message, ToolResultMessage):
            add("user", [_result_block(message)])
        elif isinstance(message, AssistantMessage):
            raw = _raw_content(message)
            add("assistant", list(raw) if raw is not None else _assistant_blocks(message))
    for turn in turns:
        if turn["role"] == "user":
            # Tool results must open the user turn that follows the tool calls.
            turn["content"].sort(key=lambda b: 0 if b.get("type") == "tool_result" else 1)
    return turns


def _raw_content(message: AssistantMessage) -> list[dict[str, Any]] | None:
    """The turn's raw content (thinking blocks included), if kept and still matching."""
    data = message.provider_data or {}
    raw = (data.get("anthropic") or {}).get("content")
    if not isinstance(raw, list) or not message.tool_calls:
        return None
    ids = [b.get("id") for b in raw if isinstance(b, dict) and b.get("type") == "tool_use"]
    if ids != [c.id for c in message.tool_calls]:
        return None  # the turn was changed since: rebuild it
    return [dict(b) for b in raw]


def request_params(
    request: ModelRequest,
    *,
    model: str,
) -> dict[str, Any]:
    """Build the keyword arguments of ``client.messages.create`` for a request.

    Args:
        request: the Corral request.
        model: the Anthropic model id.

    Returns:
        ``model``, ``max_tokens``, ``messages`` and, when set, ``system`` and ``tools``.
    """
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": message_params(request.messages),
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [tool_param(spec) for spec in request.tools]
    return params


def parse_message(
    message: AnthropicMessage,
    *,
    model: str,
    request: ModelRequest,
    secrets: Iterable[str | None] = (),
) -> ModelResponse:
    """Convert an Anthropic ``Message`` to a Corral response.

    Args:
        message: the SDK's parsed response.
        model: the model asked for, used when the response names none.
        request: the request, to estimate usage should the response carry none.
        secrets: values to mask in the error message (it may quote the body).

    Returns:
        The response: joined text, tool calls, usage, stop reason and model.

    Raises:
        ModelError: the response has no content list (not a Messages API response, such
            as the text or HTML page a proxy answers with, which the SDK returns as a str).
    """
    content: object = getattr(message, "content", None)
    if not isinstance(content, list):
        if hasattr(message, "content"):
            what = "no content blocks"
        else:  # the SDK hands back a body that is not JSON as it came
            snippet = redact(" ".join(str(message).split())[:120], secrets)
            what = f"not a message but {type(message).__name__} {snippet!r}"
        raise ModelError(
            f"anthropic {model!r}: the API returned a response Corral cannot read ({what})",
            retryable=True,
        )
    texts: list[str] = []
    calls: list[ToolCall] = []
    blocks: list[Any] = content  # SDK block types, read by their ``type``
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            raw_input: object = block.input
            if isinstance(raw_input, Mapping):
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(raw_input)))
            else:
                calls.append(
                    ToolCall(
                        id=block.id,
                        name=block.name,
                        parse_error=(
                            f"tool input must be a JSON object, got {type(raw_input).__name__}"
                        ),
                    )
                )
    text = "\n".join(t for t in texts if t)
    stop = _STOP_REASONS.get(message.stop_reason or "", "other")
    if calls and stop == "end_turn":
        stop = "tool_use"
    wire: Any = getattr(message, "usage", None)
    if wire is not None and getattr(wire, "input_tokens", None) is not None:
        usage = Usage(
            input_tokens=wire.input_tokens or 0,
            output_tokens=getattr(wire, "output_tokens", None) or 0,
            cache_read_tokens=getattr(wire, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(wire, "cache_creation_input_tokens", None) or 0,
        )
    else:  # never zero: a budget must not see a free call
        usage = Usage(
            input_tokens=estimate_request_tokens(request),
            output_tokens=estimate_output_tokens(text, calls),
        )
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        usage=usage,
        stop_reason=stop,
        model=getattr(message, "model", None) or model,
    )


async def _parse_raw(raw: Any) -> Any:
    """The SDK's parse of a raw response, even nested past the recursion limit.

    The SDK decodes the body with the standard ``json``, which fails the whole response
    (`RecursionError`, or a `ValueError` for an integer too long to read) for one call's
    arguments; such a body is decoded by `loads_body` instead, so only that call is refused.
    """
    try:
        return await raw.parse()
    except json.JSONDecodeError:
        raise  # not JSON at all: `map_model_errors` says so
    except (RecursionError, ValueError):
        import anthropic.types  # imported here: the SDK takes about a second to import

        body = loads_body(await raw.text())
        if not isinstance(body, dict):
            raise
        return anthropic.types.Message.construct(**body)


class AnthropicModel:
    """Claude, through ``anthropic.AsyncAnthropic``, as a Corral `Model`.

    Example::

        model = AnthropicModel("claude-sonnet-5-5", api_key=os.environ["ANTHROPIC_API_KEY"])
        agent = SubAgent("billing", instructions=..., tools=..., model=model)

    The SDK's retries are always off: Corral retries, so its budget sees every attempt.
    Use it as an async context manager (or call `aclose`) to close the connection pool
    the adapter created; a client or HTTP client you pass in stays yours to close.

    Args:
        model: the Anthropic model id, such as ``claude-sonnet-5-5``.
        client: an ``AsyncAnthropic`` to use (re-optioned with ``max_retries=0``).
            Exclusive with `api_key`, `base_url` and `http_client`.
        api_key: the API key. Default: the SDK's own resolution (``ANTHROPIC_API_KEY``).
        base_url: the API's base URL. Default: the SDK's (``https://api.anthropic.com``).
        http_client: the HTTP client the SDK should use (with anthropic 2.x an
            ``httpx2.AsyncClient``, e.g. with a ``MockTransport`` in tests).
        timeout: seconds one request may take, connecting included. Default 120 s.
        default_headers: extra headers sent with every request.

    Raises:
        ConfigError: an empty model id or a non-positive timeout.
        UsageError: `client` given together with `api_key`, `base_url` or `http_client`.
    """

    def __init__(
        self,
        model: str,
        *,
        client: AsyncAnthropic | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError("AnthropicModel needs a model id, such as 'claude-sonnet-5-5'")
        if timeout <= 0:
            raise ConfigError(f"AnthropicModel timeout must be > 0 seconds, got {timeout}")
        if client is not None and (
            api_key is not None or base_url is not None or http_client is not None
        ):
            raise UsageError(
                "pass either client= or api_key=/base_url=/http_client=, not both: a client "
                "already holds its key, URL and connection pool"
            )
        import anthropic  # imported here: the SDK takes about a second to import

        self._model = model.strip()
        self._timeout = timeout
        self._api_key = api_key
        self._injected = client is not None or http_client is not None
        self._owns_client = client is None and http_client is None
        if client is None:
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                http_client=http_client,
                timeout=timeout,
                max_retries=0,
                default_headers=default_headers,
            )
        else:
            client = client.with_options(max_retries=0, default_headers=default_headers)
            self._api_key = client.api_key
        self._client: AsyncAnthropic = client

    @property
    def name(self) -> str:
        """The model id, as used in events and price look-ups."""
        return self._model

    def __repr__(self) -> str:
        return f"AnthropicModel({self._model!r})"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request to the Messages API and return the response.

        The call is bounded by the adapter's `timeout`; the runtime's own per-call timeout
        applies on top.

        Args:
            request: the system prompt, conversation, tools and output cap.

        Returns:
            The model's text, tool calls, usage and stop reason.

        Raises:
            RateLimited: 429, 529 or overloaded; `retry_after` from the response headers.
            ModelTimeout: the request timed out.
            ModelError: any other failure; `retryable` is False for 4xx errors, whose
                message carries the API's explanation.
            ConfigError: no API key could be found.
            UsageError: `corral.models.ALLOW_MODEL_REQUESTS` is False and the adapter
                would reach the real API.
        """
        ensure_requests_allowed(self._model, injected=self._injected)
        params = request_params(request, model=self._model)
        with map_model_errors(provider="anthropic", model=self._model, secrets=(self._api_key,)):
            raw = await self._client.messages.with_raw_response.create(
                **params, timeout=self._timeout
            )
            message = await _parse_raw(raw)
            response = parse_message(
                message, model=self._model, request=request, secrets=(self._api_key,)
            )
        if response.tool_calls and any(
            getattr(b, "type", None) in _THINKING_TYPES for b in message.content
        ):
            raw = [block.to_dict() for block in message.content]
            response = response.model_copy(
                update={"provider_data": {"anthropic": {"content": raw}}}
            )
        return response

    async def aclose(self) -> None:
        """Close the connection pool, if the adapter created it."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
