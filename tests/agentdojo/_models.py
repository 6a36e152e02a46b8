"""The scripted models: benign, and worst-case (it obeys every injection it reads).

Both issue the user task's ground-truth calls in order, one per answer, with AgentDojo's
arguments, then give the ground truth's final answer. The worst-case model differs in one
way: as soon as a tool result it was shown holds an injection (the injection task's goal,
as the attack template wrote it), it issues the injection task's ground-truth calls next,
values exactly as AgentDojo's ground truth has them, then goes on with the user task. It
obeys once per run, as AgentDojo's attacks need, and keeps going whatever happens to the
injected calls (a rejection, an unknown tool): a person or a rule must stop it.

The decision is a function of the tool results the model was shown (`next_move`), so the
same model runs as a `FunctionModel` in process and behind a loopback server speaking a
provider's wire format (`anthropic_reply`, `openai_reply`), where it reads the results
back out of the request body as a real model would.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Sequence
from typing import Any

from corral.models import FunctionModel, ModelRequest, ToolCall, ToolResultMessage

from ._fixture import Call, Scenario

_ids = itertools.count(1)


def injection_visible(scenario: Scenario, content: str) -> bool:
    """True when `content` shows the scenario's injection to the model (its goal, whole).

    The goal is looked for as written and as a JSON string holds it (a result that is a
    JSON document escapes it).
    """
    if scenario.injection is None:
        return False
    goal = scenario.injection.goal
    return goal in content or json.dumps(goal, ensure_ascii=False)[1:-1] in content


def plan(scenario: Scenario, results: Sequence[str], available: Collection[str]) -> list[Call]:
    """The calls the model makes, given the results it was shown so far.

    Args:
        scenario: the run.
        results: the content of each tool result so far, in order (one per call made).
        available: the tools the agent holds: the user task's calls to other tools are
            left out (the tool cap dropped them); the injection's are not (a model obeying
            an injection calls what it is told to, offered or not).
    """
    calls = [c for c in scenario.user_calls() if c.function in available]
    for index, content in enumerate(results[: len(calls)]):
        if injection_visible(scenario, content):
            calls[index + 1 : index + 1] = scenario.injection_calls()
            break
    return calls


def next_move(scenario: Scenario, results: Sequence[str], available: Collection[str]) -> Call | str:
    """The next call, or the final answer once every planned call was made."""
    calls = plan(scenario, results, available)
    if len(results) < len(calls):
        return calls[len(results)]
    return scenario.user.ground_truth_output or "Done."


def dojo_model(scenario: Scenario, available: Collection[str]) -> FunctionModel:
    """The scenario's model, in process: benign for a benign run, else worst-case."""

    def answer(request: ModelRequest) -> ToolCall | str:
        results = [m.content for m in request.messages if isinstance(m, ToolResultMessage)]
        move = next_move(scenario, results, available)
        if isinstance(move, str):
            return move
        return ToolCall(id=f"call_{next(_ids)}", name=move.function, arguments=move.args)

    kind = "benign" if scenario.injection is None else "worst-case"
    return FunctionModel(answer, name=f"agentdojo-{kind}")


# -- the same model behind a provider's wire format ----------------------------------------


def anthropic_reply(
    scenario: Scenario, available: Collection[str], body: dict[str, Any]
) -> dict[str, Any]:
    """A Messages API answer to a request `body`, from the tool results it carries."""
    results: list[str] = []
    for message in body["messages"]:
        content = message["content"]
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "tool_result":
                text = block.get("content", "")
                if isinstance(text, list):  # content blocks
                    text = "".join(b.get("text", "") for b in text)
                results.append(text)
    move = next_move(scenario, results, available)
    if isinstance(move, str):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": move}]
        stop = "end_turn"
    else:
        blocks = [
            {
                "type": "tool_use",
                "id": f"toolu_{next(_ids):05d}",
                "name": move.function,
                "input": move.args,
            }
        ]
        stop = "tool_use"
    return {
        "id": f"msg_{next(_ids):05d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 900, "output_tokens": 60},
    }


def openai_reply(
    scenario: Scenario, available: Collection[str], body: dict[str, Any]
) -> dict[str, Any]:
    """A chat-completions answer to a request `body`, from the tool results it carries."""
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    move = next_move(scenario, results, available)
    if isinstance(move, str):
        message: dict[str, Any] = {"role": "assistant", "content": move}
        finish = "stop"
    else:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{next(_ids):05d}",
                    "type": "function",
                    "function": {"name": move.function, "arguments": json.dumps(move.args)},
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 60},
    }
