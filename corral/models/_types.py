"""The model protocol: one request in, one response out.

Everything a provider adapter needs is here; adapters translate these to and from their
wire format and nothing above `corral.models` sees a provider type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._decode import argument_problem, clean_text

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "other"]
"""Why the model stopped producing output."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Usage(_Frozen):
    """Tokens one model call consumed, as the provider (or the fake) reported them."""

    input_tokens: int = 0
    """Prompt tokens billed at the normal rate."""
    output_tokens: int = 0
    """Generated tokens."""
    cache_read_tokens: int = 0
    """Prompt tokens served from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the provider's prompt cache."""

    @property
    def total_tokens(self) -> int:
        """All tokens of the call, the figure budgets are counted in."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class ToolCall(_Frozen):
    """One tool call the model proposed.

    Arguments no tool can use are refused when the call is built, whoever builds it (an
    adapter, a fake, your own `Model`): a float that is not finite (``NaN``,
    ``Infinity``), an integer of more than 4,300 digits, nesting deeper than 32 levels, or
    a lone UTF-16 surrogate in a string. The call then has empty `arguments` and a
    `parse_error` saying what to fix, which the check chain gives the model; the run goes
    on. Lone surrogates in `id` and `name` become U+FFFD, so the journal can store them.
    """

    id: str
    """Provider-assigned call id, echoed back with the result."""
    name: str
    """Tool name as the model wrote it (it may not exist)."""
    arguments: Mapping[str, Any] = Field(default_factory=dict)
    """Arguments as decoded JSON; empty when `parse_error` is set."""
    parse_error: str | None = None
    """Set when the provider sent arguments that are not a JSON object, or values no
    tool can use (see above); written for the model."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unusable_arguments(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("parse_error") is not None:
            return data
        arguments = data.get("arguments")
        if not isinstance(arguments, Mapping) or not arguments:
            return data
        problem = argument_problem(arguments)
        if problem is None:
            return data
        return {**data, "arguments": {}, "parse_error": problem}

    @field_validator("id", "name", "parse_error")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        return clean_text(value) if value is not None else None


class UserMessage(_Frozen):
    """Text from the user (the task) or from the runtime (a notice)."""

    role: Literal["user"] = "user"
    content: str


class AssistantMessage(_Frozen):
    """What the model said: text and/or tool calls."""

    role: Literal["assistant"] = "assistant"
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    provider_data: Mapping[str, Any] | None = None
    """Opaque data the provider needs back verbatim with this turn (Claude's thinking
    blocks); kept in the journal, so it survives a restart."""


class ToolResultMessage(_Frozen):
    """The result (or the error) of one tool call, as fed back to the model."""

    role: Literal["tool"] = "tool"
    call_id: str
    tool: str
    content: str
    is_error: bool = False


Message = Annotated[UserMessage | AssistantMessage | ToolResultMessage, Field(discriminator="role")]
"""One entry of a conversation."""


class ToolSpec(_Frozen):
    """A tool as offered to the model: name, description and JSON Schema of its input."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


class ModelRequest(_Frozen):
    """Everything a model gets for one call."""

    system: str
    """System prompt (the agent's instructions)."""
    messages: tuple[Message, ...]
    """The conversation so far, oldest first."""
    tools: tuple[ToolSpec, ...] = ()
    """Tools the model may call."""
    max_tokens: int = 4096
    """Cap on output tokens for this call (the supervisor may lower it to fit a budget)."""
    run_id: str = ""
    """Run this call belongs to (for logs and fakes; never sent to a provider)."""
    step: int = 0
    """Index of this model call within the run, starting at 1."""


class ModelResponse(_Frozen):
    """What a model returned."""

    text: str = ""
    """Assistant text; the final answer when there are no tool calls (lone UTF-16
    surrogates, which no journal can store, become U+FFFD)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls to run, in order."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens consumed by this call."""
    stop_reason: StopReason = "end_turn"
    """Why the model stopped."""
    model: str = ""
    """The model that answered, as the provider named it."""
    provider_data: Mapping[str, Any] | None = None
    """Opaque data the provider needs back with this turn (see `AssistantMessage`)."""

    @field_validator("text")
    @classmethod
    def _valid_unicode(cls, value: str) -> str:
        return clean_text(value)


@runtime_checkable
class Model(Protocol):
    """A language model. Implement `request` and a `name` to plug in any provider."""

    @property
    def name(self) -> str:
        """Model identifier, used in events and price look-ups."""
        ...

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the response.

        Raises:
            RateLimited: the provider asked to slow down (429, 529).
            ModelError: any other provider failure; `retryable` says whether to try again.
        """
        ...
