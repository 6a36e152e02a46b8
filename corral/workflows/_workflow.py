"""Workflow definitions: chains, fan-outs and human gates, checked when they are defined.

Each step declares the earlier outputs it needs (``needs=``) and receives only those, so a
chain passes compressed hand-offs (a sub-agent step's output is its final answer, never
its transcript). The workflow's input is available as ``"input"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["AgentStep", "CallStep", "FanOut", "GateStep", "Step", "WaitStep", "Workflow"]

INPUT = "input"
"""The name under which every step can ask for the workflow's input."""

Inputs = Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """Base of every step: a unique name and the earlier outputs it needs."""

    name: str
    needs: tuple[str, ...] = ()

    @staticmethod
    def call(name: str, fn: Callable[[Inputs], Any], *, needs: Iterable[str] = ()) -> CallStep:
        """A plain Python step: ``fn(inputs)`` (sync or async) returns its JSON-able output.

        Plain functions may run again if the process dies while they run: make them
        idempotent, or put the side effect in a tool behind a gate.
        """
        return CallStep(name, tuple(needs), fn)

    @staticmethod
    def agent(
        name: str,
        *,
        agent: str,
        task: str | Callable[[Inputs], str],
        needs: Iterable[str] = (),
    ) -> AgentStep:
        """A sub-agent run. `task` is a ``str.format`` template over the inputs, or a function.

        The step's output is the run's final answer; a run that does not complete fails
        the workflow.
        """
        return AgentStep(name, tuple(needs), agent, task)

    @staticmethod
    def gate(name: str, *, prompt: str, needs: Iterable[str] = ()) -> GateStep:
        """A human gate: the workflow waits for a person; a rejection fails the workflow."""
        return GateStep(name, tuple(needs), prompt)

    @staticmethod
    def wait(
        name: str,
        *,
        key: str | Callable[[Inputs], str],
        timeout_s: float = 86_400.0,
        needs: Iterable[str] = (),
    ) -> WaitStep:
        """Wait for an external event (a webhook) by correlation key; its payload is the output."""
        return WaitStep(name, tuple(needs), key, timeout_s)

    @staticmethod
    def fan_out(name: str, branches: Sequence[Step], *, limit: int = 4) -> FanOut:
        """Run branches concurrently (at most `limit` at once); the output maps branch to output.

        A branch may need only steps before the fan-out: siblings run at the same time
        and cannot see each other's output.
        """
        return FanOut(name, (), tuple(branches), limit)


@dataclass(frozen=True)
class CallStep(Step):
    """Runs a Python function of the inputs."""

    fn: Callable[[Inputs], Any | Awaitable[Any]] = field(default=lambda inputs: None)


@dataclass(frozen=True)
class AgentStep(Step):
    """Runs a sub-agent on a task built from the inputs."""

    agent_name: str = ""
    task: str | Callable[[Inputs], str] = ""

    def render(self, inputs: Inputs) -> str:
        """Build the task text from the inputs."""
        if callable(self.task):
            return self.task(inputs)
        try:
            return self.task.format(**inputs)
        except KeyError as exc:
            raise ConfigError(
                f"step {self.name!r}: the task template uses {{{exc.args[0]}}}, which is not in "
                f"its needs ({', '.join(self.needs) or 'none'})"
            ) from exc


@dataclass(frozen=True)
class GateStep(Step):
    """Waits for a person's decision."""

    prompt: str = ""


@dataclass(frozen=True)
class WaitStep(Step):
    """Waits for an external event."""

    key: str | Callable[[Inputs], str] = ""
    timeout_s: float = 86_400.0

    def render_key(self, inputs: Inputs) -> str:
        """Build the correlation key from the inputs."""
        return self.key(inputs) if callable(self.key) else self.key.format(**inputs)


@dataclass(frozen=True)
class FanOut(Step):
    """Runs its branches concurrently."""

    branches: tuple[Step, ...] = ()
    limit: int = 4


class Workflow:
    """A named sequence of steps, validated at definition time.

    Args:
        name: lowercase identifier (runs show as ``workflow:<name>``).
        steps: the steps, in order.

    Raises:
        ConfigError: duplicate names, a need that is not an earlier step, a fan-out branch
            that needs a sibling (a hidden dependency), or an unknown step kind.
    """

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"workflow name {name!r} must be letters, digits, '_' or '-'")
        if not steps:
            raise ConfigError(f"workflow {name!r} has no steps")
        self.name = name
        self.steps: tuple[Step, ...] = tuple(steps)
        self._check()

    @property
    def agent_name(self) -> str:
        """The name its runs carry in the journal."""
        return f"workflow:{self.name}"

    def _check(self) -> None:
        seen: set[str] = {INPUT}
        for step in self.steps:
            self._check_step(step, seen, siblings=())
            if isinstance(step, FanOut):
                if step.limit < 1:
                    raise ConfigError(f"fan-out {step.name!r}: limit must be at least 1")
                if not step.branches:
                    raise ConfigError(f"fan-out {step.name!r} has no branches")
                names = [b.name for b in step.branches]
                for branch in step.branches:
                    if isinstance(branch, FanOut):
                        raise ConfigError(
                            f"fan-out {step.name!r}: branch {branch.name!r} is itself a fan-out; "
                            "nest them as separate steps"
                        )
                    self._check_step(branch, seen, siblings=names)
                for branch in step.branches:
                    seen.add(f"{step.name}.{branch.name}")
            seen.add(step.name)

    def _check_step(self, step: Step, seen: set[str], *, siblings: Sequence[str]) -> None:
        if not isinstance(step, CallStep | AgentStep | GateStep | WaitStep | FanOut):
            raise ConfigError(f"workflow {self.name!r}: {step!r} is not a step")
        if not step.name or "." in step.name:
            raise ConfigError(
                f"workflow {self.name!r}: step name {step.name!r} is empty or has '.'"
            )
        all_names = {s.name for s in self.steps} | {
            f"{s.name}.{b.name}" for s in self.steps if isinstance(s, FanOut) for b in s.branches
        }
        if step.name in seen or (siblings and list(siblings).count(step.name) > 1):
            raise ConfigError(f"workflow {self.name!r}: two steps are named {step.name!r}")
        for need in step.needs:
            if need in siblings:
                raise ConfigError(
                    f"workflow {self.name!r}: branch {step.name!r} needs {need!r}, a sibling "
                    "in the "
                    "same fan-out: siblings run at the same time and cannot see each other's "
                    f"output (a hidden dependency). Move {need!r} before the fan-out, or merge "
                    "after it."
                )
            if need not in seen:
                later = " (it comes later)" if need in all_names else ""
                raise ConfigError(
                    f"workflow {self.name!r}: step {step.name!r} needs {need!r}, which is not an "
                    f"earlier step{later}; known so far: {', '.join(sorted(seen))}"
                )
        if isinstance(step, CallStep) and not callable(step.fn):
            raise ConfigError(f"step {step.name!r}: fn must be callable")

    def step(self, name: str) -> Step:
        """Return a step (``fan.branch`` for a branch) by name."""
        for s in self.steps:
            if s.name == name:
                return s
            if isinstance(s, FanOut):
                for b in s.branches:
                    if f"{s.name}.{b.name}" == name:
                        return b
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={[s.name for s in self.steps]})"


async def call_fn(fn: Callable[[Inputs], Any], inputs: Inputs) -> Any:
    """Call a step function, async, or sync on a daemon thread (it cannot hold the process)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(inputs)
    from .._timeout import run_sync_in_thread

    result = await run_sync_in_thread(lambda: fn(inputs), name=f"step function {fn.__name__!r}")
    if inspect.isawaitable(result):
        return await result
    return result
