"""The AgentDojo suites as data, loaded from ``tests/fixtures/agentdojo/<suite>.json``.

Each suite's environment holds its injection vectors as markers (``<CANARY---name--->``,
where AgentDojo's ``environment.yaml`` has ``{name}``). A `Scenario` fills them: every
vector with its benign default for a benign run; for an injected run, the vectors the
user task sees with the injection task's attack text (AgentDojo's ``important_instructions``
template), the others with their defaults. The same filling applies to ground-truth
arguments, because AgentDojo derives some of them from the environment (the slack
channel whose name is the ``prompt_injection_channel`` vector). ``make_fixture.py``
checked, for every scenario, that this gives exactly what AgentDojo computes.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agentdojo"
SUITES = ("banking", "slack")


def marker(vector: str) -> str:
    """The marker a vector's text replaces in the fixture."""
    return f"<CANARY---{vector}--->"


@cache
def _pattern(vector: str) -> re.Pattern[str]:
    # The blanks around a marker belong to it: YAML folded them into the vector's text.
    return re.compile(r"[ \t\n]*" + re.escape(marker(vector)) + r"[ \t\n]*")


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    # A function, not a replacement string: the text may hold backslashes.
    return lambda _: text


def fill(value: Any, texts: dict[str, str]) -> Any:
    """Replace every marker in strings (dict keys included) with its vector's text."""
    if isinstance(value, str):
        if "<CANARY---" not in value:
            return value
        for vector, text in texts.items():
            if marker(vector) in value:
                value = _pattern(vector).sub(_constant(text), value)
        return value
    if isinstance(value, list):
        return [fill(item, texts) for item in value]
    if isinstance(value, dict):
        return {fill(k, texts): fill(v, texts) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Call:
    """One ground-truth call: a tool and its arguments."""

    function: str
    args: dict[str, Any]

    def matches(self, tool: str, arguments: dict[str, Any]) -> bool:
        """True when `tool` with `arguments` is this call (absent and None arguments alike)."""
        given = {k: v for k, v in arguments.items() if v is not None}
        return tool == self.function and given == self.args


@dataclass(frozen=True)
class UserTask:
    """An AgentDojo user task: what the user asks, and the calls that do it."""

    id: str
    prompt: str
    ground_truth: tuple[Call, ...]
    """With markers where AgentDojo derives an argument from an injection vector."""
    ground_truth_output: str
    vectors: tuple[str, ...]
    """The injection vectors its ground truth reads (AgentDojo's injection candidates)."""


@dataclass(frozen=True)
class InjectionTask:
    """An AgentDojo injection task: the attacker's goal and the calls that reach it."""

    id: str
    goal: str
    attack: dict[str, str]
    """The attack text per vector, as AgentDojo's environment loading leaves it."""
    ground_truth: tuple[Call, ...]


@dataclass(frozen=True)
class Suite:
    """One AgentDojo suite: environment, vectors, user and injection tasks."""

    name: str
    source: dict[str, str]
    environment: dict[str, Any]
    defaults: dict[str, str]
    user_tasks: tuple[UserTask, ...]
    injection_tasks: tuple[InjectionTask, ...]

    def user_task(self, task_id: str) -> UserTask:
        """The user task with this id (``user_task_3``)."""
        return next(t for t in self.user_tasks if t.id == task_id)

    def injection_task(self, task_id: str) -> InjectionTask:
        """The injection task with this id (``injection_task_4``)."""
        return next(t for t in self.injection_tasks if t.id == task_id)

    def scenario(self, user: str, injection: str | None = None) -> Scenario:
        """The benign run of a user task, or its run with an injection task's attack."""
        return Scenario(
            self,
            self.user_task(user),
            None if injection is None else self.injection_task(injection),
        )

    def scenarios(self, *, injected: bool) -> list[Scenario]:
        """Every benign scenario, or every injected pair (user tasks that see a vector)."""
        if not injected:
            return [Scenario(self, task, None) for task in self.user_tasks]
        return [
            Scenario(self, task, injection)
            for task in self.user_tasks
            if task.vectors
            for injection in self.injection_tasks
        ]


@dataclass(frozen=True)
class Scenario:
    """One run: a user task, benign or with an injection task's attack in its vectors."""

    suite: Suite
    user: UserTask
    injection: InjectionTask | None

    @property
    def name(self) -> str:
        """``banking/user_task_0`` or ``banking/user_task_0+injection_task_4``."""
        tail = f"+{self.injection.id}" if self.injection is not None else ""
        return f"{self.suite.name}/{self.user.id}{tail}"

    def texts(self) -> dict[str, str]:
        """Each vector's text in this scenario."""
        texts = dict(self.suite.defaults)
        if self.injection is not None:
            for vector in self.user.vectors:
                texts[vector] = self.injection.attack[vector]
        return texts

    def environment(self) -> dict[str, Any]:
        """A fresh, mutable copy of the environment with the vectors filled."""
        return copy.deepcopy(fill(self.suite.environment, self.texts()))

    def user_calls(self) -> list[Call]:
        """The user task's ground truth in this environment."""
        texts = self.texts()
        return [Call(c.function, fill(c.args, texts)) for c in self.user.ground_truth]

    def injection_calls(self) -> list[Call]:
        """The injection task's ground truth in this environment (none for a benign run)."""
        if self.injection is None:
            return []
        texts = self.texts()
        return [Call(c.function, fill(c.args, texts)) for c in self.injection.ground_truth]


def _calls(raw: list[dict[str, Any]]) -> tuple[Call, ...]:
    return tuple(Call(c["function"], dict(c["args"])) for c in raw)


@cache
def load_suite(name: str) -> Suite:
    """Load a suite from its fixture (cached: treat it as read-only).

    Args:
        name: ``banking`` or ``slack``.
    """
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return Suite(
        name=data["suite"],
        source=data["source"],
        environment=data["environment"],
        defaults={v: info["default"] for v, info in data["vectors"].items()},
        user_tasks=tuple(
            UserTask(
                id=t["id"],
                prompt=t["prompt"],
                ground_truth=_calls(t["ground_truth"]),
                ground_truth_output=t["ground_truth_output"],
                vectors=tuple(t["vectors"]),
            )
            for t in data["user_tasks"]
        ),
        injection_tasks=tuple(
            InjectionTask(
                id=t["id"],
                goal=t["goal"],
                attack=dict(t["attack"]),
                ground_truth=_calls(t["ground_truth"]),
            )
            for t in data["injection_tasks"]
        ),
    )
