"""Runs workflows: one actor per workflow run, its state a fold over the run's events.

Every step's result is journaled, so a crash resumes at the first unfinished step. Gates,
webhook waits and sub-agent runs that wait for a person pause the workflow through the
same gate and wait events an agent run uses: a paused workflow holds no task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import anyio

from .._clock import Clock
from .._task import new_id
from ..actors import OneShotActor
from ..events import (
    Event,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
    WaitResolved,
    WaitStarted,
)
from ..store import Journal
from ._workflow import (
    INPUT,
    AgentStep,
    CallStep,
    FanOut,
    GateStep,
    Inputs,
    Step,
    WaitStep,
    Workflow,
    call_fn,
)

__all__ = ["ChildOutcome", "WorkflowActor", "WorkflowHost", "WorkflowState"]

_FOREVER = 10 * 365 * 86_400.0
_SHIELD_S = 5.0


class ChildOutcome(NamedTuple):
    """Where a workflow's sub-agent run stands, as `WorkflowHost.wait_child` reports it."""

    status: str
    """``finished``, or ``waiting`` at a gate or for an event."""
    outcome: str | None
    output: str | None
    reason: str


class WorkflowHost(Protocol):
    """What the workflow engine needs from the runtime that hosts it (`corral.Runtime`).

    The engine journals through `record`, starts and waits for sub-agent runs through
    `start_child` and `wait_child`, and pauses on the key `child_done_key` names until the
    host delivers a child's end there.
    """

    @property
    def journal(self) -> Journal:
        """The journal the workflow's events go to."""
        ...

    @property
    def clock(self) -> Clock:
        """The runtime's clock: every event's timestamp and every deadline."""
        ...

    @property
    def gate_ttl_s(self) -> float:
        """Seconds before an undecided gate step expires into a rejection."""
        ...

    async def record(self, event: Event) -> Event:
        """Journal `event` durably and tell the runtime's subscribers; return it as stored."""
        ...

    async def start_child(
        self, *, run_id: str, agent: str, task: str, parent_run_id: str, tenant: str
    ) -> None:
        """Start sub-agent run `run_id` for a step (nothing happens if it already exists)."""
        ...

    async def wait_child(self, run_id: str) -> ChildOutcome:
        """Return where the child run stands once it finishes or pauses."""
        ...

    def child_done_key(self, run_id: str) -> str:
        """The correlation key under which the host delivers the end of child `run_id`."""
        ...

    async def workflow_stopped(self, run_id: str) -> None:
        """Called once the workflow's actor has stopped (finished or paused)."""
        ...


@dataclass
class WorkflowState:
    """A workflow run rebuilt from its events."""

    run_id: str
    input: Any = None
    tenant: str = "default"
    outputs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)
    """Child run id by step name, for sub-agent steps that started."""
    open_gates: set[str] = field(default_factory=set)
    decisions: dict[str, GateDecided] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    resolved: dict[str, WaitResolved] = field(default_factory=dict)
    failed: StepFailed | None = None
    finished: RunFinished | None = None

    def apply(self, event: Event) -> None:
        """Apply one event."""
        if isinstance(event, RunStarted):
            self.input = json.loads(event.task)
            self.tenant = event.tenant
        elif isinstance(event, StepStarted):
            if event.child_run_id is not None:
                self.children[event.step] = event.child_run_id
        elif isinstance(event, StepFinished):
            self.outputs[event.step] = event.output
        elif isinstance(event, StepFailed):
            self.failed = event
        elif isinstance(event, GateOpened):
            self.open_gates.add(event.call_id)
        elif isinstance(event, GateDecided):
            self.open_gates.discard(event.call_id)
            self.decisions[event.call_id] = event
        elif isinstance(event, WaitStarted):
            self.waiting.add(event.call_id)
        elif isinstance(event, WaitResolved):
            self.waiting.discard(event.call_id)
            self.resolved[event.call_id] = event
        elif isinstance(event, RunFinished):
            self.finished = event


class _Pause(Exception):
    pass


class _Failed(Exception):
    def __init__(self, step: str, error: str) -> None:
        super().__init__(error)
        self.step = step
        self.error = error


class WorkflowActor(OneShotActor):
    """Drives one workflow run from its journal to an outcome or a pause."""

    mailbox_size = 8

    def __init__(
        self,
        workflow: Workflow,
        run_id: str,
        host: WorkflowHost,
        *,
        events: Sequence[Event] | None = None,
    ) -> None:
        """`events`: the run's whole journal so far, if the caller has it (else it is read)."""
        self.workflow = workflow
        self.run_id = run_id
        self.host = host
        self._events = events

    async def run_once(self) -> None:
        """Drive the workflow from its journal to its end or a pause."""
        await self._drive()

    async def _record(self, state: WorkflowState, kind: type[Event], **fields: Any) -> None:
        """Make an event of `kind` for this run, stamped now, journal it and apply it."""
        event = kind(run_id=self.run_id, ts=self.host.clock.now(), **fields)
        state.apply(await self.host.record(event))

    async def _drive(self) -> None:
        state = WorkflowState(self.run_id)
        events, self._events = self._events, None
        if events is None:
            events = await self.host.journal.read(self.run_id)
        for event in events:
            state.apply(event)
        self.after_stop = lambda: self.host.workflow_stopped(self.run_id)
        if state.finished is not None:
            return
        try:
            for step in self.workflow.steps:
                if step.name in state.outputs:
                    continue
                inputs = self._inputs(step, state)
                if isinstance(step, FanOut):
                    output: Any = await self._fan_out(step, state)
                else:
                    output = await self._run_step(step, step.name, inputs, state)
                await self._record(state, StepFinished, step=step.name, output=output)
        except _Pause:
            return
        except _Failed as failed:
            await self._finish(
                state, "failed", None, f"step {failed.step!r} failed: {failed.error}"
            )
            return
        last = self.workflow.steps[-1].name
        final = state.outputs.get(last)
        await self._finish(
            state,
            "completed",
            final if isinstance(final, str) else json.dumps(final, default=str),
            "",
        )

    async def _finish(
        self, state: WorkflowState, outcome: Any, output: str | None, reason: str
    ) -> None:
        with anyio.move_on_after(_SHIELD_S, shield=True):
            await self._record(
                state,
                RunFinished,
                outcome=outcome,
                output=output,
                reason=reason,
                steps=len(state.outputs),
            )

    def _inputs(self, step: Step, state: WorkflowState) -> Inputs:
        return {need: state.input if need == INPUT else state.outputs[need] for need in step.needs}

    async def _fan_out(self, fan: FanOut, state: WorkflowState) -> dict[str, Any]:
        limiter = anyio.CapacityLimiter(fan.limit)
        paused: list[str] = []
        failures: list[_Failed] = []

        async def branch(b: Step) -> None:
            full = f"{fan.name}.{b.name}"
            if full in state.outputs:
                return
            async with limiter:
                try:
                    out = await self._run_step(b, full, self._inputs(b, state), state)
                except _Pause:
                    paused.append(full)
                    return
                except _Failed as exc:
                    failures.append(exc)
                    return
                await self._record(state, StepFinished, step=full, output=out)

        async with anyio.create_task_group() as tg:
            for b in fan.branches:
                tg.start_soon(branch, b)
        if failures:
            raise failures[0]
        if paused:
            raise _Pause()
        return {b.name: state.outputs[f"{fan.name}.{b.name}"] for b in fan.branches}

    async def _run_step(self, step: Step, name: str, inputs: Inputs, state: WorkflowState) -> Any:
        if isinstance(step, CallStep):
            await self._record(state, StepStarted, step=name)
            try:
                output = await call_fn(step.fn, inputs)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if _jsonable(output):
                    return output
                error = f"its output is not JSON-serialisable: {type(output).__name__}"
            await self._record(state, StepFailed, step=name, error=error)
            raise _Failed(name, error)
        if isinstance(step, AgentStep):
            return await self._agent_step(step, name, inputs, state)
        if isinstance(step, GateStep):
            return await self._gate_step(step, name, inputs, state)
        if isinstance(step, WaitStep):
            return await self._wait_step(step, name, inputs, state)
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover - checked at definition

    async def _agent_step(
        self, step: AgentStep, name: str, inputs: Inputs, state: WorkflowState
    ) -> Any:
        if name in state.waiting:
            raise _Pause()  # the child run still waits for a person
        child = state.children.get(name)
        if child is None:
            child = new_id("run")
            await self._record(state, StepStarted, step=name, child_run_id=child)
            await self.host.start_child(
                run_id=child,
                agent=step.agent_name,
                task=step.render(inputs),
                parent_run_id=self.run_id,
                tenant=state.tenant,
            )
        tool = f"agent:{step.agent_name}"
        while True:
            status, outcome, output, reason = await self.host.wait_child(child)
            if status != "waiting":
                break
            # The child paused: pause too. Its end is delivered under this key; a delivery
            # made while we were getting here is found at once.
            key = self.host.child_done_key(child)
            await self._record(
                state,
                WaitStarted,
                step=0,
                call_id=name,
                tool=tool,
                key=key,
                expires_at=self.host.clock.now() + _FOREVER,
            )
            found, _ = await self.host.journal.take_delivery(key)
            if not found:
                raise _Pause()
            await self._record(state, WaitResolved, call_id=name, tool=tool, key=key)
        if outcome != "completed":
            error = f"run {child} of agent {step.agent_name!r} ended {outcome}: {reason}"
            await self._record(state, StepFailed, step=name, error=error)
            raise _Failed(name, error)
        return output

    async def _gate_step(
        self, step: GateStep, name: str, inputs: Inputs, state: WorkflowState
    ) -> Any:
        decision = state.decisions.get(name)
        if decision is not None:
            if decision.decision == "approved":
                return {"approved_by": decision.by, "note": decision.note}
            error = f"{decision.decision}" + (f" by {decision.by}" if decision.by else "")
            error += f": {decision.note}" if decision.note else ""
            await self._record(state, StepFailed, step=name, error=error)
            raise _Failed(name, error)
        if name not in state.open_gates:
            await self._record(
                state,
                GateOpened,
                step=0,
                call_id=name,
                gate_id=new_id("gate"),
                tool=f"workflow:{self.workflow.name}/{name}",
                arguments={k: v for k, v in inputs.items() if _jsonable(v)},
                side_effect="write",
                reason=step.prompt,
                expires_at=self.host.clock.now() + self.host.gate_ttl_s,
            )
        raise _Pause()

    async def _wait_step(
        self, step: WaitStep, name: str, inputs: Inputs, state: WorkflowState
    ) -> Any:
        resolved = state.resolved.get(name)
        if resolved is not None:
            if resolved.timed_out:
                error = f"the event {resolved.key!r} did not arrive within {step.timeout_s:g} s"
                await self._record(state, StepFailed, step=name, error=error)
                raise _Failed(name, error)
            return resolved.payload
        if name in state.waiting:
            raise _Pause()
        key = step.render_key(inputs)
        await self._record(
            state,
            WaitStarted,
            step=0,
            call_id=name,
            tool=f"workflow:{self.workflow.name}",
            key=key,
            expires_at=self.host.clock.now() + step.timeout_s,
        )
        found, payload = await self.host.journal.take_delivery(key)
        if not found:
            raise _Pause()
        await self._record(
            state,
            WaitResolved,
            call_id=name,
            tool=f"workflow:{self.workflow.name}",
            key=key,
            payload=payload,
        )
        return payload


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
