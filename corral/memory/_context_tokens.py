"""The token estimate conversation memory budgets with, and the models' context windows.

`text_tokens` is the tokenizers' typical four characters per token for ASCII text, and
one token per UTF-8 byte for everything else (a CJK character is 1 to 3 tokens, never
more than its 3 bytes). So it is about right for English, code and JSON, and never too
low for other scripts, where the plain characters / 4 estimate
(`corral.models.estimate_tokens`) is 4 to 12 times too low. It is never below that
estimate, so a context within `context_tokens` by this count is within it by
`corral.models.estimate_request_tokens` too. Cost: O(1) for ASCII (``str.isascii``),
two C-speed encodes otherwise.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from ..models import AssistantMessage, Message, ToolResultMessage, UserMessage
from ..models._tokens import MESSAGE_OVERHEAD

__all__ = [
    "CONTEXT_WINDOWS",
    "DEFAULT_CONTEXT_WINDOW",
    "context_window",
    "message_tokens",
    "text_tokens",
]

CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("claude-", 200_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("llama-3", 128_000),
    ("qwen2.5", 32_768),
    ("mistral-large", 128_000),
)
"""Context windows (input and output tokens together) of well-known models, by name
prefix (after any ``provider/``), as their providers document them. First match wins."""

DEFAULT_CONTEXT_WINDOW = 128_000
"""The window assumed for a model not in `CONTEXT_WINDOWS` that declares none: the
common size of current hosted models. A local model served with a smaller context
(Ollama's default is 2,048 to 8,192) should set ``SubAgent(context_tokens=...)``."""


def context_window(model: object) -> int:
    """The context window of a model, in tokens: input and output together.

    A model object may declare its own as an int attribute ``context_window``; else the
    name is looked up in `CONTEXT_WINDOWS`; else `DEFAULT_CONTEXT_WINDOW`.

    Args:
        model: any `corral.models.Model`.

    Returns:
        The window, in tokens.
    """
    declared = getattr(model, "context_window", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > 0:
        return declared
    name = str(getattr(model, "name", "")).lower().rsplit("/", 1)[-1]
    for prefix, window in CONTEXT_WINDOWS:
        if name.startswith(prefix):
            return window
    return DEFAULT_CONTEXT_WINDOW


def text_tokens(text: str) -> int:
    """Estimated tokens of a text: ASCII characters / 4 (rounded up), plus 1 per other byte.

    Args:
        text: any string.

    Returns:
        The estimate, never below ``(len(text) + 3) // 4``.
    """
    if text.isascii():
        return (len(text) + 3) // 4
    plain = len(text.encode("ascii", "ignore"))
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # lone surrogates: 3 bytes each
        size = len(text.encode("utf-8", "surrogatepass"))
    return (plain + 3) // 4 + size - plain


def _json_tokens(value: Any) -> int:
    return text_tokens(pydantic_core.to_json(value, fallback=str).decode())


def message_tokens(message: Message) -> int:
    """Estimated tokens one message adds to a request (`text_tokens` of its parts).

    Never below `corral.models.estimate_message_tokens` of the same message.
    """
    if isinstance(message, ToolResultMessage):
        return text_tokens(message.content) + text_tokens(message.call_id) + MESSAGE_OVERHEAD
    if isinstance(message, UserMessage):
        return text_tokens(message.content) + MESSAGE_OVERHEAD
    if isinstance(message, AssistantMessage):
        size = text_tokens(message.text) + MESSAGE_OVERHEAD
        for call in message.tool_calls:
            size += text_tokens(call.id) + text_tokens(call.name) + _json_tokens(call.arguments)
        if message.provider_data:
            size += _json_tokens(message.provider_data)
        return size
    raise TypeError(f"not a message: {message!r}")  # pragma: no cover - the union is closed
