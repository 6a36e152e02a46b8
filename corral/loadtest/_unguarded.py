"""The comparison: the same workload through a plain agent loop, with no guard at all.

A ``while`` loop as agent frameworks write it: ask the model, call whatever tool it
names with whatever arguments it sends, append the result (or the exception's text),
repeat until a final answer. No registered-name or schema check, no scopes, no
provenance, no result truncation, no loop detection, no retries with backoff beyond
asking again, no budget. It gets the same chaos model decisions and the same tool bodies
as Corral (same seeds, same faults), and only two things that let it end: each call has
the tool's own timeout (a hang would otherwise never return) and the loop stops after
`MAX_STEPS` model calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..models import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from ..tools import ToolContext
from ._workload import (
    AGENT_NAME,
    INSTRUCTIONS,
    Case,
    ChaosAgent,
    ChaosAgentModel,
    ToolBodies,
)

__all__ = ["MAX_STEPS", "UnguardedRun", "run_unguarded"]

MAX_STEPS = 50
"""The plain loop's only stop: this many model calls."""


@dataclass(frozen=True, slots=True)
class UnguardedRun:
    """How one case went through the plain loop."""

    case: Case
    output: str | None
    """Its final answer, or None when it hit `MAX_STEPS`."""
    tokens: int
    model_calls: int
    tool_calls: int
    duration_s: float
    cost_usd: float = 0.0

    @property
    def correct(self) -> bool:
        """It answered, and the answer is the expected one."""
        return self.output == self.case.expected


async def run_unguarded(
    case: Case,
    agent: ChaosAgent,
    bodies: ToolBodies,
    specs: tuple[Any, ...],
    *,
    model_timeout_s: float,
    cost: Callable[[str, Usage], float] | None = None,
) -> UnguardedRun:
    """Run one case through the plain loop.

    Args:
        case: the task.
        agent: the chaos model's decisions (its own, so attempt counts are its own).
        bodies: the chaos tools' functions.
        specs: the tool specs offered to the model (the same as Corral offers).
        model_timeout_s: the HTTP client's timeout, the one wait the loop bounds.
        cost: USD of a model call's usage, by model name. Default: none.

    Returns:
        What happened.
    """
    model = ChaosAgentModel(agent)
    run_id = f"plain_{case.tag}"
    messages: list[Message] = [UserMessage(content=case.task)]
    tokens = model_calls = tool_calls = 0
    usd = 0.0
    started = time.perf_counter()
    output: str | None = None
    while model_calls < MAX_STEPS:
        model_calls += 1
        request = ModelRequest(
            system=INSTRUCTIONS, messages=tuple(messages), tools=specs, run_id=run_id
        )
        try:
            with anyio.fail_after(model_timeout_s):
                response = await model.request(request)
        except Exception:  # what a plain loop does with a provider error: ask again
            continue
        tokens += response.usage.total_tokens
        if cost is not None:
            usd += cost(model.name, response.usage)
        messages.append(AssistantMessage(text=response.text, tool_calls=response.tool_calls))
        if not response.tool_calls:
            output = response.text
            break
        for call in response.tool_calls:
            tool_calls += 1
            content, is_error = await _call(bodies, run_id, call.id, call.name, call.arguments)
            messages.append(
                ToolResultMessage(
                    call_id=call.id, tool=call.name, content=content, is_error=is_error
                )
            )
    return UnguardedRun(
        case, output, tokens, model_calls, tool_calls, time.perf_counter() - started, usd
    )


async def _call(
    bodies: ToolBodies, run_id: str, call_id: str, name: str, arguments: Any
) -> tuple[str, bool]:
    function = bodies.functions.get(name)
    if function is None:
        return f"KeyError: {name!r}", True
    context = ToolContext(
        run_id=run_id, call_id=call_id, agent=AGENT_NAME, attempt=1, idempotency_key=call_id
    )
    try:
        with anyio.fail_after(bodies.timeout_s):
            value = await function(**dict(arguments), ctx=context)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}", True
    return json.dumps(value, separators=(",", ":")), False
