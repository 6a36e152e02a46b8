"""The instant model and tool the benchmarks share: they cost nothing, so what is measured
is Corral's own work around them.

`InstantModel` answers step N with one tool call (`lookup` by default) until its step count
is reached, then with a final answer; with `gated_step`, that step calls `flag` (a write,
which waits at an approval gate) instead. Unlike `FunctionModel` it keeps no record of the requests it saw (a
test fake holding every request of a 2,000-step run would dominate the figures).
"""

from __future__ import annotations

from typing import Any

from corral import Limits, tool
from corral.models import ModelRequest, ModelResponse, ToolCall, Usage

USAGE = Usage(input_tokens=10, output_tokens=5)
LIMITS = Limits(
    max_tokens=10**9, max_tool_calls=10**6, max_consecutive_same_tool=None, max_wall_clock_s=3600
)
"""Limits that never stop a benchmark run (the checks still run at every step)."""


@tool(timeout=5)
async def lookup(invoice_id: str) -> dict[str, Any]:
    """Instant lookup."""
    return {"invoice_id": invoice_id, "total": 10}


@tool(timeout=5, side_effect="write")
async def flag(invoice_id: str) -> str:
    """Instant write: waits at a gate under the default guards."""
    return "flagged"


class InstantModel:
    """Answers at once: a call to `tool` per step for `steps` steps, then "done".

    With `gated_step`, that step calls `flag` instead (the agent must have it).
    """

    def __init__(self, steps: int, *, tool: str = "lookup", gated_step: int | None = None) -> None:
        self.steps = steps
        self.tool = tool
        self.gated_step = gated_step

    @property
    def name(self) -> str:
        """The model's name in events."""
        return "instant"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The answer to step `request.step`."""
        step = request.step
        if step > self.steps:
            return ModelResponse(text="done", usage=USAGE, model="instant")
        name = "flag" if step == self.gated_step else self.tool
        call = ToolCall(id=f"c{step}", name=name, arguments={"invoice_id": f"INV-{step}"})
        return ModelResponse(
            tool_calls=(call,), usage=USAGE, stop_reason="tool_use", model="instant"
        )
