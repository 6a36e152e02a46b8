"""Token counts: typical estimates for display and caps, and upper bounds for budgets.

Two families, for two jobs:

* **Estimates** (`estimate_tokens`, `estimate_request_tokens`, `estimate_output_tokens`):
  characters / 4, rounded up, plus 4 tokens of framing per message. About right for
  English prose, code and JSON (±25 % against the Anthropic and OpenAI tokenizers), far
  too low for other text: a CJK character is 1 to 3 tokens, not a quarter. They size
  tool-result truncation and input screening, and the fake models report usage with them.
* **Bounds** (`token_bound`, `request_token_bound`, `input_bound`): what a model call is
  reserved before it is made. They must never be below the real count, or a budget is
  overshot (a 2,100-character Chinese task estimated at 525 tokens is 2,045 tokens in
  ``cl100k_base``, and up to 4,960 for rarer characters).

Why UTF-8 bytes bound the tokens. The tokenizers of Claude, GPT (``cl100k_base``,
``o200k_base``), Llama 3, Qwen and most open models are byte-level BPE: the text is split
into chunks, each chunk starts as its UTF-8 bytes, and merges only ever join neighbouring
pieces. A token therefore covers at least one byte, so a text of ``n`` bytes is at most
``n`` tokens. SentencePiece with byte fallback (Llama 2, Mistral) also never yields more
pieces than bytes, apart from one dummy-prefix piece per text, which the per-message
framing covers. One adjustment: a tokenizer that normalises to NFC first (Qwen's does)
may see a longer text, because NFC decomposes a few precomposed characters (Devanagari
nukta letters, Hebrew presentation forms); the bound takes the larger of the two byte
counts. NFKC (compatibility) normalisation is not covered: no chat model's tokenizer we
know applies it; a model adapter that needs it supplies its own `count_tokens`.

No ratio below one token per byte holds for every text, ASCII included: measured with
``cl100k_base`` / ``o200k_base``, control characters and rare CJK (extension B) are 1.0
token per byte, base64 0.72, punctuation runs 0.66, single spaced letters 0.5, CJK
0.33-0.79, emoji 0.70; English and code are 0.24-0.25. So the byte bound of a whole
request is about four times its real input for English and code (1.3-3 times for CJK and
emoji), and a long run would be stopped by a budget it could still afford.

The provider's own count keeps that cost to one step. Every later request of a run is the
previous request plus the model's answer and the messages that followed (tool results, a
budget notice): a conversation only grows, and a chat template writes each message
between special tokens, so the earlier messages tokenize as before. `input_bound` is
therefore given the input the provider reported for the previous request (``input_tokens
+ cache_read_tokens + cache_write_tokens``) and the byte bound of what was added since,
the answer included (its ``output_tokens`` do not bound it: the adapter writes the tool
calls' arguments back in its own JSON). The system prompt and the tools are added whole
on top: they may differ from the previous request's (an open circuit breaker swaps a tool
for its fallback and adds a note; a run resumed by a newer deployment may have new
instructions) and nothing says how much of the reported count they were. The smaller of
that and the whole request's byte bound is reserved. Only the first call of a run, and a
call after one whose provider reported no input, reserve the whole byte bound. Over a
30-step run of English tool results this reserves 1.13 times the real input at the last
step instead of 4 (``tests/test_token_bounds.py``). An adapter that can count exactly says
so with a ``count_tokens(request) -> int`` method, which `input_bound` uses first.

Framing the text does not show is added per message (`FRAMING_PER_MESSAGE`), per request
(`FRAMING_PER_REQUEST`), per tool offered (`FRAMING_PER_TOOL`) and once when any tool is
offered (`TOOL_PROMPT`): see each constant for the figures it covers.

Cost: `token_bound` is O(1) for an ASCII string (``str.isascii`` reads a flag CPython
keeps) and one UTF-8 encode plus an NFC quick check otherwise: measured per 2 KB string,
0.1 µs for ASCII, 2 µs for CJK or emoji, 3.4 µs for a mix (the characters / 4 estimate:
0.1 µs). A run adds each message's bound once, when the message is added, so a step's
reservation costs 0.2 µs whatever the conversation's length (0.1 µs before).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic_core

from .._log import get_logger
from ._types import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)

__all__ = [
    "FRAMING_PER_MESSAGE",
    "FRAMING_PER_REQUEST",
    "FRAMING_PER_TOOL",
    "MESSAGE_OVERHEAD",
    "TOOL_PROMPT",
    "estimate_message_tokens",
    "estimate_output_tokens",
    "estimate_request_tokens",
    "estimate_tokens",
    "input_bound",
    "message_token_bound",
    "request_token_bound",
    "token_bound",
    "tools_token_bound",
]

log = get_logger("corral.models")

MESSAGE_OVERHEAD = 4
"""Tokens of role/framing counted per message by the estimates (not the bounds)."""

FRAMING_PER_MESSAGE = 8
"""Bound on the tokens a chat format adds around one message or one tool call: OpenAI's
documented format costs 3 (4 with a name); Llama 3 and Qwen templates 5 special tokens."""

FRAMING_PER_REQUEST = 32
"""Bound on the tokens added once per request: start-of-text, the primed assistant turn
(3 to 5) and the date lines Llama 3.1's template writes into every system prompt (~20)."""

FRAMING_PER_TOOL = 64
"""Bound on the tokens a provider renders around one tool's name, description and schema
(``{"type": "function", "function": {...}}`` is 40 bytes; XML-style tags less)."""

TOOL_PROMPT = 400
"""Bound on the instructions a provider adds once when tools are offered. Anthropic
documents its tool-use system prompt at 346 tokens for its current models (313 with a
forced tool choice); OpenAI-compatible servers' tool templates (Hermes, Qwen, Llama 3.1)
add 100-300, OpenAI's own about 10. (Retired Claude 3 Opus added 530: give such a model a
``count_tokens``.)"""

_ERROR_PREFIX = 16
"""Bound on the words an adapter puts before an error result (``Error: ``)."""


# -- estimates (typical, not bounds) -----------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of a text: one token per four characters, rounded up.

    A typical figure for English and code, not a bound: use `token_bound` to reserve.
    """
    return (len(text) + 3) // 4


def _json_len(value: Any) -> int:
    """Length of `value` as compact JSON, in UTF-8 bytes (non-ASCII is not escaped)."""
    return len(pydantic_core.to_json(value, fallback=str))


def estimate_message_tokens(message: Message) -> int:
    """Estimate the tokens one message adds to a prompt (typical, not a bound)."""
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
    """Estimate the input tokens of a whole request: system, messages and tool specs.

    Typical, not a bound (the fakes report it as usage); `request_token_bound` bounds it.
    """
    total = estimate_tokens(request.system)
    for message in request.messages:
        total += estimate_message_tokens(message)
    for spec in request.tools:
        total += (len(spec.name) + len(spec.description) + _json_len(spec.input_schema) + 3) // 4
    return total


def estimate_output_tokens(text: str, tool_calls: Any = ()) -> int:
    """Estimate the output tokens of a response's text and tool calls (typical)."""
    chars = len(text) + sum(len(c.name) + _json_len(c.arguments) for c in tool_calls)
    return (chars + 3) // 4


# -- bounds (never below the real count of a byte-level BPE tokenizer) ---------------------------


def token_bound(text: str) -> int:
    """An upper bound on the tokens of `text` for byte-level BPE tokenizers.

    Its UTF-8 size in bytes, or that of its NFC form when larger (see the module
    docstring for why). Lone surrogates count 3 bytes each.

    Args:
        text: any string.

    Returns:
        The bound, in tokens.
    """
    if text.isascii():
        return len(text)
    size = _utf8_len(text)
    if not unicodedata.is_normalized("NFC", text):
        size = max(size, _utf8_len(unicodedata.normalize("NFC", text)))
    return size


def _utf8_len(text: str) -> int:
    try:
        return len(text.encode())
    except UnicodeEncodeError:  # lone surrogates: 3 bytes each, as "surrogatepass" writes them
        return len(text.encode("utf-8", "surrogatepass"))


def message_token_bound(message: Message) -> int:
    """An upper bound on the tokens one message adds to a prompt.

    Counts its text, each tool call's id, name and JSON arguments, a tool result's call id
    and content, and any provider data sent back with the turn (Claude's thinking blocks),
    plus `FRAMING_PER_MESSAGE` for the message and for each tool call.
    """
    if isinstance(message, UserMessage):
        return token_bound(message.content) + FRAMING_PER_MESSAGE
    if isinstance(message, ToolResultMessage):
        size = token_bound(message.call_id) + token_bound(message.content) + FRAMING_PER_MESSAGE
        return size + _ERROR_PREFIX if message.is_error else size
    if isinstance(message, AssistantMessage):
        size = token_bound(message.text) + FRAMING_PER_MESSAGE
        for call in message.tool_calls:
            size += token_bound(call.id) + token_bound(call.name) + _json_bound(call.arguments)
            size += FRAMING_PER_MESSAGE
        if message.provider_data:
            size += _json_bound(message.provider_data)
        return size
    raise TypeError(f"not a message: {message!r}")  # pragma: no cover - the union is closed


def tools_token_bound(tools: Iterable[ToolSpec]) -> int:
    """An upper bound on the tokens of the tools offered.

    0 for none; else `TOOL_PROMPT` plus, per tool, `FRAMING_PER_TOOL` and its name,
    description and schema as compact JSON: some chat templates (Qwen's, Hermes') write
    the tools into the prompt as JSON, where a quote, a newline or a control character in a
    description takes 2 to 6 bytes.
    """
    total = 0
    for spec in tools:
        total += _json_bound(spec.name) + _json_bound(spec.description)
        total += _json_bound(spec.input_schema) + FRAMING_PER_TOOL
    return total + TOOL_PROMPT if total else 0


def _json_bound(value: Any) -> int:
    """`token_bound` of `value` written as compact JSON (quotes and escapes included)."""
    return token_bound(pydantic_core.to_json(value, fallback=str).decode())


def request_token_bound(request: ModelRequest) -> int:
    """An upper bound on the input tokens of a whole request (system, messages, tools).

    Args:
        request: the request as it will be sent.

    Returns:
        The bound, in tokens, framing included.
    """
    total = FRAMING_PER_REQUEST + token_bound(request.system)
    for message in request.messages:
        total += message_token_bound(message)
    return total + tools_token_bound(request.tools)


_warned: set[str] = set()


def input_bound(
    model: object,
    system: str,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    messages_bound: int | None = None,
    tools_bound: int | None = None,
    previous_input: int = 0,
    added_bound: int = 0,
) -> int:
    """The input tokens to reserve for a model call.

    A model adapter that knows its tokenizer exposes ``count_tokens(request) -> int``
    (synchronous, local and fast: it runs before every call) returning the request's
    input tokens, exactly or as an upper bound; it is used when present. A
    ``count_tokens`` that raises or returns anything but an int >= 0 is logged once per
    model (``models.count_tokens_failed``) and ignored, so a broken counter never weakens
    a budget.

    Otherwise the byte bound of the whole request (`request_token_bound`) is reserved or,
    when the provider reported the previous request's input (`previous_input` > 0), the
    smaller of that and ``previous_input + added_bound`` plus the bound of `system` and
    `tools` (see the module docstring for why that is a bound too).

    Args:
        model: the model about to be called.
        system: the system prompt.
        messages: the conversation so far.
        tools: the tools offered.
        messages_bound: ``sum(message_token_bound(m) for m in messages)``, when the caller
            keeps it incrementally (a run does: O(1) per step).
        tools_bound: ``tools_token_bound(tools)``, when the caller has it cached.
        previous_input: the input tokens the provider reported for the previous request of
            this conversation, cache reads and writes included; 0 when there was none or
            it reported none.
        added_bound: ``sum(message_token_bound(m) ...)`` over the messages added since
            that request: the model's answer to it and everything after.

    Returns:
        The input tokens to reserve.
    """
    count = getattr(model, "count_tokens", None)
    if callable(count):
        request = ModelRequest.model_construct(
            system=system, messages=tuple(messages), tools=tuple(tools)
        )
        try:
            counted = count(request)
        except Exception as exc:
            counted = exc
        if isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0:
            return counted
        name = str(getattr(model, "name", type(model).__name__))
        if name not in _warned:
            _warned.add(name)
            problem = (
                f"raised {counted!r}"
                if isinstance(counted, Exception)
                else f"returned {counted!r}, not an int >= 0"
            )
            log.warning(
                "models.count_tokens_failed",
                model=name,
                problem=problem,
                hint="the UTF-8 byte bound is reserved instead",
            )
    if messages_bound is None:
        messages_bound = sum(message_token_bound(m) for m in messages)
    if tools_bound is None:
        tools_bound = tools_token_bound(tools)
    offer = token_bound(system) + tools_bound
    whole = FRAMING_PER_REQUEST + offer + messages_bound
    if previous_input <= 0:
        return whole
    grown = previous_input + added_bound + offer
    return min(whole, grown)
