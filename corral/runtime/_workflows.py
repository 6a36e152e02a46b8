"""Hosting workflows: submitting them, and the `WorkflowHost` their engine talks to.

The engine (`corral.workflows`) never reaches into the runtime: it journals, starts and
waits for sub-agent runs, and learns where to wait for a child's end, through the
`WorkflowHost` protocol, which `RuntimeHost` implements here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._task import new_id
from ..errors import UsageError
from ..events import Event, RunFinished, RunStarted, StepStarted
from ..store import Journal
from ..workflows import ChildOutcome, Workflow, WorkflowHost
from ._children import child_done_key
from ._results import RunHandle, RunResult, RunResults

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["RuntimeHost", "WorkflowRuns"]


class RuntimeHost(WorkflowHost):
    """The runtime as the workflow engine sees it."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def journal(self) -> Journal:
        """The runtime's journal."""
        return self._runtime.journal

    @property
    def clock(self) -> Clock:
        """The runtime's clock."""
        return self._runtime.clock

    @property
    def gate_ttl_s(self) -> float:
        """The runtime's gate deadline (`Durability.gate_ttl_s`)."""
        return self._runtime.durability.gate_ttl_s

    async def record(self, event: Event) -> Event:
        """Journal the event durably and publish it."""
        return await self._runtime._record(event)

    async def start_child(
        self, *, run_id: str, agent: str, task: str, parent_run_id: str, tenant: str
    ) -> None:
        """Open the step's sub-agent run, carrying what its finished siblings spent."""
        runtime = self._runtime
        if await runtime.journal.read(run_id):
            return  # submitted before a crash: it resumes by itself
        # Sibling runs share the workflow's budget: carry what the finished ones spent.
        used_tokens, used_cost = 0, 0.0
        for event in await runtime.journal.read(parent_run_id):
            if isinstance(event, StepStarted) and event.child_run_id not in (None, run_id):
                sibling = await runtime.journal.read(event.child_run_id)
                if sibling and isinstance(sibling[-1], RunFinished):
                    used_tokens += sibling[-1].tokens
                    used_cost += sibling[-1].cost_usd
        await runtime._open_run(
            run_id,
            agent,
            task,
            tenant=tenant,
            budget_used_tokens=used_tokens,
            budget_used_cost=used_cost,
            rule="(workflow step)",
            route_reason=f"step of workflow run {parent_run_id}",
            parent_run_id=parent_run_id,
            budget_key=parent_run_id,
        )

    async def wait_child(self, run_id: str) -> ChildOutcome:
        """Wait for the child run to finish or pause."""
        result = await self._runtime.wait(run_id)
        return ChildOutcome(result.status, result.outcome, result.output, result.reason)

    def child_done_key(self, run_id: str) -> str:
        """The key the runtime delivers a child's end under."""
        return child_done_key(run_id)

    async def workflow_stopped(self, run_id: str) -> None:
        """Release the workflow run here, and pick it back up if it was woken meanwhile."""
        await self._runtime._release(run_id)


class WorkflowRuns(RunResults):
    """Starting workflow runs (the `Workflow`s given to the runtime)."""

    async def submit_workflow(
        self,
        workflow: Workflow | str,
        input: Any = None,
        *,
        tenant: str = "default",
        run_id: str | None = None,
    ) -> RunHandle:
        """Start a workflow run and return at once (`input` must be JSON-serialisable).

        Raises:
            UsageError: the workflow is not registered with this runtime.
        """
        self._require_running()
        name = workflow if isinstance(workflow, str) else workflow.name
        registered = self.workflows.get(name)
        if registered is None or (not isinstance(workflow, str) and registered is not workflow):
            raise UsageError(
                f"workflow {name!r} is not registered: pass it in Runtime(workflows=[...]) so "
                "its runs can be resumed"
            )
        run_id = run_id or new_id("run")
        started = RunStarted(
            run_id=run_id,
            ts=self.clock.now(),
            agent=registered.agent_name,
            task=json.dumps(input),
            tenant=tenant,
            rule="(workflow)",
            route_reason=f"workflow {name!r}",
            limits=self.limits.model_dump(mode="json"),
        )
        stored = await self._record(started)
        await self._start(run_id, registered.agent_name, [stored])
        return RunHandle(self, run_id, registered.agent_name, None)

    async def run_workflow(
        self, workflow: Workflow | str, input: Any = None, *, tenant: str = "default"
    ) -> RunResult:
        """Run a workflow until it finishes or pauses; its output is the last step's output."""
        handle = await self.submit_workflow(workflow, input, tenant=tenant)
        return await handle.result()
