"""Checks every proposed tool call passes first: registered name, decodable arguments, schema.

Permission (scopes, side-effect levels) is `check_permission` in `_permission`.

The adapters already refuse arguments no tool can use (``NaN``, ``Infinity``, nesting
past 32 levels, lone surrogates: `corral.models.ToolCall` sets ``parse_error``); the
arguments and schema checks look again, so a call that reached them another way (built
with ``model_construct``) is refused too: JSON Schema's ``number`` admits ``NaN``.

Each returns a `Verdict`; a blocking verdict's `message` is written for the model, so
it can correct itself on the next turn.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .._verdict import Verdict
from ..models import ToolCall
from ..models._decode import argument_problem
from ..tools import Tool

__all__ = ["check_arguments_parsed", "check_registered", "check_schema"]

_MAX_VIOLATIONS = 10


# Allow verdicts carry nothing call-specific: one of each, rather than one per call.
_REGISTERED = Verdict("registered", "allow")
_PARSED = Verdict("arguments", "allow")
_VALID = Verdict("schema", "allow")


def check_registered(
    call: ToolCall, tools: Mapping[str, Tool], *, unavailable: Collection[str] = ()
) -> Verdict:
    """Block a call to a tool that is not offered, listing the tools that are.

    Args:
        call: the proposed call.
        tools: the tools offered at this step, by name.
        unavailable: the agent's tools left out because their circuit breaker is open.
    """
    if call.name in tools:
        return _REGISTERED
    if call.name in unavailable:
        offered = ", ".join(repr(name) for name in tools) or "(none)"
        return Verdict(
            "breaker",
            "block",
            reason=f"tool {call.name!r} is unavailable: its circuit breaker is open",
            message=(
                f"Tool {call.name!r} is temporarily unavailable: it failed repeatedly and its "
                f"circuit breaker is open. Available tools: {offered}. Use one of these or "
                "answer with what you have."
            ),
        )
    available = ", ".join(repr(name) for name in tools) or "(none)"
    return Verdict(
        "registered",
        "block",
        reason=f"unknown tool {call.name!r}",
        message=(
            f"Unknown tool name: {call.name!r}. Available tools: {available}. "
            "Call one of these by its exact name."
        ),
        details={"available": list(tools)},
    )


def check_arguments_parsed(call: ToolCall) -> Verdict:
    """Block a call whose arguments the provider could not decode as a JSON object.

    Also blocks arguments that decoded but hold what JSON has no value for (``NaN``,
    ``Infinity``), nest past 32 levels or hold a lone surrogate.
    """
    error = call.parse_error
    if error is None and call.arguments:
        error = argument_problem(call.arguments)
    if error is None:
        return _PARSED
    return Verdict(
        "arguments",
        "block",
        reason=f"arguments are not a JSON object: {error}",
        message=(
            f"The arguments for {call.name!r} are not valid JSON ({error}). "
            "Send the arguments as one JSON object matching the tool's schema."
        ),
    )


def check_schema(call: ToolCall, tool: Tool) -> Verdict:
    """Block arguments that break the tool's strict JSON Schema, naming each violation.

    A value JSON has no number for (``NaN``, ``Infinity``), which the schema's ``number``
    admits, is a violation too.
    """
    problem = argument_problem(call.arguments) if call.arguments else None
    if problem is not None:
        return Verdict(
            "schema",
            "block",
            reason=problem,
            message=(
                f"Invalid arguments for tool {call.name!r}:\n- {problem}\n"
                "Fix the errors and try again."
            ),
            details={"violations": [{"path": "", "message": problem}]},
        )
    violations = tool.validate(call.arguments)
    if not violations:
        return _VALID
    shown = violations[:_MAX_VIOLATIONS]
    lines = "\n".join(f"- {v}" for v in shown)
    more = len(violations) - len(shown)
    if more:
        lines += f"\n- ... and {more} more"
    return Verdict(
        "schema",
        "block",
        reason="; ".join(str(v) for v in shown),
        message=(
            f"Invalid arguments for tool {call.name!r}:\n{lines}\nFix the errors and try again."
        ),
        details={"violations": [{"path": v.path, "message": v.message} for v in violations]},
    )
