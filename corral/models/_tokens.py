"""Token estimates used to reserve budget before a model call.

The estimate is characters / 4 (rounded up) for text and for the JSON of tool schemas and
tool-call arguments, plus 4 tokens of framing per message. For English prose and JSON this
is within about ±25 % of the Anthropic and OpenAI tokenizers; the supervisor reserves the
estimate times `Limits.estimate_margin` plus the output cap, then settles with the real
usage the provider reports, so an estimate error never lets a budget be overshot.
The fake models report usage with this same function, so budgets behave in tests as they
do with a real model.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from ._types import AssistantMessage, Message, ModelRequest, ToolResultMessage, UserMessage

MESSAGE_OVERHEAD = 4
"""Tokens of role/framing counted per message."""


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of a text: one token per four characters, rounded up."""
    return (len(text) + 3) // 4


def _json_len(value: Any) -> int:
    """Length of `value` as compact JSON (UTF-8 bytes: a slight overestimate for non-ASCII)."""
    return len(pydantic_core.to_json(value, fallback=str))


def estimate_message_tokens(message: Message) -> int:
    """Estimate the tokens one message adds to a prompt."""
    if isinstance(message, UserMessage):
        chars = len(message.content)
    elif isinstance(message, AssistantMessage):
        chars = len(message.text) + sum(
            len(c.name) + _json_len(c.arguments) for c in message.tool_calls
        )
    elif isinstance(message, ToolResultMessage):
        chars = len(message.content)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not a message: {message!r}")
    return (chars + 3) // 4 + MESSAGE_OVERHEAD


def estimate_request_tokens(request: ModelRequest) -> int:
    """Estimate the input tokens of a whole request: system, messages and tool specs."""
    total = estimate_tokens(request.system)
    for message in request.messages:
        total += estimate_message_tokens(message)
    for spec in request.tools:
        total += (len(spec.name) + len(spec.description) + _json_len(spec.input_schema) + 3) // 4
    return total


def estimate_output_tokens(text: str, tool_calls: Any = ()) -> int:
    """Estimate the output tokens of a response's text and tool calls."""
    chars = len(text) + sum(len(c.name) + _json_len(c.arguments) for c in tool_calls)
    return (chars + 3) // 4
