"""In-process models for tests, demos and load tests: scripted, function-driven, chaos.

They never touch the network. They report token usage computed from the text they
receive and return (see `corral.models._tokens`), so budgets behave as with a real model.
"""

from __future__ import annotations

import inspect
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

import anyio

from ..errors import ModelError, RateLimited, UsageError
from ._tokens import estimate_output_tokens, estimate_request_tokens
from ._types import ModelRequest, ModelResponse, ToolCall, Usage

__all__ = [
    "ChaosModel",
    "FunctionModel",
    "ScriptedModel",
    "Step",
    "call",
    "reply",
]

_call_ids = itertools.count(1)

Step: TypeAlias = "ModelResponse | str | ToolCall | Sequence[ToolCall] | BaseException"
"""One scripted answer: a response, final text, one or several tool calls, or an error to raise."""


def call(name: str, /, **arguments: Any) -> ToolCall:
    """Build a tool call for a scripted model: ``call("get_invoice", invoice_id="INV-000101")``."""
    return ToolCall(id=f"call_{next(_call_ids)}", name=name, arguments=arguments)


def reply(text: str) -> ModelResponse:
    """Build a final-answer response for a scripted model."""
    return ModelResponse(text=text, stop_reason="end_turn")


def _to_response(step: Any, request: ModelRequest, model_name: str) -> ModelResponse:
    """Turn a scripted step into a response with usage computed from the texts."""
    if isinstance(step, BaseException):
        raise step
    if isinstance(step, str):
        response = ModelResponse(text=step, stop_reason="end_turn")
    elif isinstance(step, ToolCall):
        response = ModelResponse(tool_calls=(step,), stop_reason="tool_use")
    elif isinstance(step, ModelResponse):
        response = step
    elif isinstance(step, Sequence) and all(isinstance(c, ToolCall) for c in step):
        response = ModelResponse(tool_calls=tuple(step), stop_reason="tool_use")
    else:
        raise UsageError(
            f"a fake model step must be a ModelResponse, str, ToolCall, list of ToolCall or "
            f"exception, not {type(step).__name__}"
        )
    if response.usage.total_tokens == 0:
        output_tokens = estimate_output_tokens(response.text, response.tool_calls)
        if output_tokens > request.max_tokens:
            # As a real model does: stop at the cap, mid-answer, with no complete tool call.
            response = ModelResponse(
                text=response.text[: request.max_tokens * 4], stop_reason="max_tokens"
            )
            output_tokens = min(estimate_output_tokens(response.text), request.max_tokens)
        usage = Usage(input_tokens=estimate_request_tokens(request), output_tokens=output_tokens)
        response = response.model_copy(update={"usage": usage})
    if response.tool_calls and response.stop_reason == "end_turn":
        response = response.model_copy(update={"stop_reason": "tool_use"})
    if not response.model:
        response = response.model_copy(update={"model": model_name})
    return response


class ScriptedModel:
    """A model that plays back a fixed list of answers, one per request.

    Each entry is a `ModelResponse`, a string (final answer), a `ToolCall` (see `call`),
    a list of tool calls, an exception to raise (such as `RateLimited`), or a callable
    taking the `ModelRequest` and returning one of those, for answers that react to what
    the model was sent.

    Attributes:
        requests: every request received, in order, for assertions.
    """

    def __init__(
        self,
        steps: Iterable[Step | Callable[[ModelRequest], Step]],
        *,
        name: str = "scripted",
    ) -> None:
        self._steps = list(steps)
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        """Model name reported in events."""
        return self._name

    @property
    def remaining(self) -> int:
        """Scripted answers not played yet."""
        return len(self._steps) - len(self.requests)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Return the next scripted answer.

        Raises:
            UsageError: the script has no answer left.
        """
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self._steps):
            raise UsageError(
                f"ScriptedModel {self._name!r} ran out of answers after {len(self._steps)} "
                "requests; add more steps to the script"
            )
        step: Any = self._steps[index]
        if callable(step) and not isinstance(step, BaseException):
            step = step(request)
        return _to_response(step, request, self._name)


class FunctionModel:
    """A model whose answers come from a function of the request.

    The function takes the `ModelRequest` and returns anything a `ScriptedModel` step can
    be; it may be sync or async. Use it for models that react to tool results.

    Attributes:
        requests: every request received, in order.
    """

    def __init__(
        self,
        fn: Callable[[ModelRequest], Step | Awaitable[Step]],
        *,
        name: str = "function",
    ) -> None:
        self._fn = fn
        self._name = name
        self._is_async = inspect.iscoroutinefunction(fn)
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        """Model name reported in events."""
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Call the function and return its answer as a response."""
        self.requests.append(request)
        result: Any = self._fn(request)
        if self._is_async or inspect.isawaitable(result):
            result = await result
        return _to_response(result, request, self._name)


class ChaosModel:
    """Wraps a model and injects the failures production throws at agents.

    Every fault is drawn from a seeded random generator, so a load test is repeatable.
    Probabilities are per request and checked in this order: rate limit, provider error,
    hang (sleeps `hang_seconds`, for timeout handling), then on a successful answer with
    tool calls: an invented tool name, or arguments that are not JSON.

    Attributes:
        faults: how many of each fault were injected, by name.
    """

    def __init__(
        self,
        inner: Any,
        *,
        seed: int = 0,
        rate_limit: float = 0.0,
        error: float = 0.0,
        hang: float = 0.0,
        unknown_tool: float = 0.0,
        malformed_arguments: float = 0.0,
        retry_after: float = 0.01,
        hang_seconds: float = 3600.0,
        latency: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        for label, p in [
            ("rate_limit", rate_limit),
            ("error", error),
            ("hang", hang),
            ("unknown_tool", unknown_tool),
            ("malformed_arguments", malformed_arguments),
        ]:
            if not 0.0 <= p <= 1.0:
                raise UsageError(f"ChaosModel {label} must be a probability in [0, 1], got {p}")
        self._inner = inner
        self._rng = random.Random(seed)
        self._p = (rate_limit, error, hang, unknown_tool, malformed_arguments)
        self._retry_after = retry_after
        self._hang_seconds = hang_seconds
        self._latency = latency
        self.faults: Counter[str] = Counter()

    @property
    def name(self) -> str:
        """The wrapped model's name with a ``chaos:`` prefix."""
        return f"chaos:{self._inner.name}"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Forward to the wrapped model, possibly injecting a fault."""
        rate_limit, error, hang, unknown_tool, malformed = self._p
        low, high = self._latency
        if high > 0:
            await anyio.sleep(self._rng.uniform(low, high))
        roll = self._rng.random
        if roll() < rate_limit:
            self.faults["rate_limit"] += 1
            raise RateLimited("chaos: 429 Too Many Requests", retry_after=self._retry_after)
        if roll() < error:
            self.faults["error"] += 1
            raise ModelError("chaos: 500 internal error", retryable=True, status_code=500)
        if roll() < hang:
            self.faults["hang"] += 1
            await anyio.sleep(self._hang_seconds)
        response: ModelResponse = await self._inner.request(request)
        if not response.tool_calls:
            return response
        if roll() < unknown_tool:
            self.faults["unknown_tool"] += 1
            first = response.tool_calls[0]
            bad = first.model_copy(update={"name": first.name + "_v2"})
            return response.model_copy(update={"tool_calls": (bad, *response.tool_calls[1:])})
        if roll() < malformed:
            self.faults["malformed_arguments"] += 1
            first = response.tool_calls[0]
            bad = first.model_copy(
                update={"arguments": {}, "parse_error": "Expecting ',' delimiter: line 1 column 17"}
            )
            return response.model_copy(update={"tool_calls": (bad, *response.tool_calls[1:])})
        return response
