"""How a run stands: its result, a handle on a submitted run, and waiting for either.

A run's result is read from the journal, never kept in memory: `wait` returns when the
run finishes or pauses (at a gate, or for an event), whether this process drives it or
another one does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from ..errors import (
    BudgetExceeded,
    CircuitOpen,
    JournalError,
    LoopDetected,
    RunCancelled,
    RunError,
    StepLimitExceeded,
    UsageError,
)
from ..events import Event, Outcome
from ..models import Usage
from ..router import Route
from ..store import GateRecord, RunStatus
from ..subagents import RunState
from ..supervisor import BreakerState, TenantUsage, UsageSnapshot
from ..supervisor._supervisor import GetBreakers, GetTenantUsage, GetUsage
from ._base import Waiter
from ._children import child_of_key
from ._driving import RunDriving

__all__ = ["RunHandle", "RunResult", "RunResults"]

_OUTCOME_ERRORS: dict[str, type[RunError]] = {
    "stopped_budget": BudgetExceeded,
    "stopped_steps": StepLimitExceeded,
    "stopped_loop": LoopDetected,
    "stopped_breaker": CircuitOpen,
    "cancelled": RunCancelled,
    "failed": RunError,
}


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended, with its full event trail."""

    run_id: str
    agent: str
    status: RunStatus
    """``finished``, or ``waiting`` at a gate or for an external event (see `gates`)."""
    outcome: Outcome | None
    """How a finished run ended: ``completed``, ``failed``, ``stopped_budget``,
    ``stopped_steps``, ``stopped_loop``, ``stopped_breaker`` or ``cancelled``; None while
    it waits."""
    output: str | None
    """The final answer; for a stopped run, the model's last text (a partial answer)."""
    reason: str
    """Why the run stopped, in words (empty when completed)."""
    steps: int
    """Tool calls executed (at least one attempt started); calls refused before they ran
    (a check, a gate, a limit) are not steps."""
    model_calls: int
    tokens: int
    cost_usd: float
    duration_s: float
    events: Sequence[Event]
    """Every event of the run, in order (read from the journal, each decoded when first
    looked at)."""
    gates: tuple[GateRecord, ...] = ()
    """The run's open gates, while it waits for a person."""
    usage: Usage = field(default_factory=Usage)
    """Its model calls' tokens by kind (input, output, cache reads and writes)."""

    @property
    def ok(self) -> bool:
        """True when the run completed with a final answer."""
        return self.outcome == "completed"

    def raise_for_outcome(self) -> RunResult:
        """Raise unless the run completed, as httpx's ``raise_for_status``; else return self.

        A stopped run is not an exception by default (look at `outcome`); call this where
        anything but a completed run should be one::

            answer = (await runtime.run(task)).raise_for_outcome().output

        Raises:
            BudgetExceeded: ``stopped_budget``.
            StepLimitExceeded: ``stopped_steps``.
            LoopDetected: ``stopped_loop``.
            CircuitOpen: ``stopped_breaker``.
            RunCancelled: ``cancelled``.
            RunError: ``failed``, or the run has not finished (it waits at a gate or for
                an event); every one of these is a `RunError` carrying the result.
        """
        if self.outcome == "completed":
            return self
        if self.outcome is None:
            raise RunError(
                f"run {self.run_id} has not finished: it is {self.status}"
                + (f" at {len(self.gates)} gate(s)" if self.gates else ""),
                result=self,
            )
        error = _OUTCOME_ERRORS[self.outcome]
        raise error(f"run {self.run_id} ended {self.outcome}: {self.reason}", result=self)


class RunHandle:
    """A submitted run. Await `result()` for its outcome; `cancel()` stops it."""

    def __init__(self, runtime: RunResults, run_id: str, agent: str, route: Route | None) -> None:
        self._runtime = runtime
        self.run_id = run_id
        """The run's id."""
        self.agent = agent
        """The sub-agent running it."""
        self.route = route
        """Which routing rule sent it there, and why (None when the agent was named)."""

    async def result(self, *, timeout: float | None = None) -> RunResult:
        """Wait for the run to end and return its result.

        Args:
            timeout: seconds to wait; None waits as long as the run's own limits allow.

        Raises:
            TimeoutError: the run did not end within `timeout` (it keeps running).
        """
        return await self._runtime.wait(self.run_id, timeout=timeout)

    async def cancel(self, reason: str = "cancelled by request") -> bool:
        """Stop the run now; returns False if it had already ended."""
        return await self._runtime.cancel(self.run_id, reason=reason)


def result_of(
    state: RunState, events: Sequence[Event], gates: Sequence[GateRecord] = ()
) -> RunResult:
    """Where a run stands, from its folded state: what `Runtime.wait` and the API report.

    Args:
        state: the run's state, folded from `events`.
        events: its events.
        gates: its open gates, while it waits.
    """
    finished = state.finished
    return RunResult(
        run_id=state.run_id,
        agent=state.agent,
        status="finished" if finished is not None else "waiting" if state.paused else "running",
        outcome=finished.outcome if finished else None,
        output=finished.output if finished else state.last_text or None,
        reason=finished.reason if finished else "",
        steps=len(state.attempts),
        model_calls=state.model_calls,
        tokens=state.tokens,
        cost_usd=state.cost_usd,
        duration_s=finished.duration_s if finished else 0.0,
        events=events,
        gates=tuple(gates),
        usage=state.usage,
    )


class RunResults(RunDriving):
    """Waiting for runs, reading their results, and what the supervisor knows of them."""

    async def wait(self, run_id: str, *, timeout: float | None = None) -> RunResult:
        """Wait until a run finishes or pauses, and return where it stands.

        Raises:
            UsageError: no such run.
            TimeoutError: it neither finished nor paused within `timeout`.
            JournalError: the run stopped here because its events could not be journaled
                (a full disk, an I/O error, the write lock held too long); it stays
                unfinished in the journal, and a Runtime started on it later resumes it.
        """
        with anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
            while True:
                if self._fatal is not None:
                    raise self._fatal
                waiter = self._waiters.setdefault(run_id, Waiter())
                waiter.waiting += 1
                try:
                    woken = waiter.event  # taken before looking, so no wake-up is missed
                    finished = waiter.finished
                    if finished is not None:  # it finished here: no need to fold it again
                        self._waiters.pop(run_id, None)
                        events = await self.journal.read_lazily(run_id)
                        return await self._result(run_id, events, finished)
                    stalled = self._stalled.get(run_id)
                    if stalled is not None and run_id not in self._active:
                        raise _stopped_unjournaled(run_id, stalled)
                    if run_id not in self._active:  # an active run is not worth a read yet
                        events = await self.journal.read(run_id)
                        if not events:
                            raise UsageError(f"no run {run_id!r} in the journal")
                        state = RunState.fold(run_id, events)
                        if state.done or self._system is None or await self._settled(state):
                            self._waiters.pop(run_id, None)  # a paused run costs no memory
                            return await self._result(run_id, events, state)
                    await woken.wait()
                except BaseException:
                    if waiter.waiting == 1 and self._waiters.get(run_id) is waiter:
                        del self._waiters[run_id]  # its last waiter gave up: forget it
                    raise
                finally:
                    waiter.waiting -= 1

    async def _settled(self, state: RunState, depth: int = 0) -> bool:
        """True when a paused run can only move on with outside help (a person, an event).

        A workflow waiting on one of its sub-agent runs is settled only if that run is.
        """
        if not state.paused:
            return False
        for wait in state.waiting.values():
            child_id = child_of_key(wait.key)
            if child_id is None or depth > 8:
                continue
            if child_id in self._active:
                return False
            child = RunState.fold(child_id, await self.journal.read(child_id))
            if child.done or not await self._settled(child, depth + 1):
                return False
        return True

    async def _result(self, run_id: str, events: Sequence[Event], state: RunState) -> RunResult:
        gates: tuple[GateRecord, ...] = ()
        if state.finished is None:
            gates = tuple(await self.journal.gates(status="open", run_id=run_id))
        return result_of(state, events, gates)

    async def result(self, run_id: str) -> RunResult:
        """Return where a run stands now, without waiting: `wait` for one that has not ended.

        Its status is ``running`` while it neither finished nor paused.

        Raises:
            UsageError: no such run.
        """
        events = await self.journal.read_lazily(run_id)
        if not events:
            raise UsageError(f"no run {run_id!r} in the journal")
        return await self._result(run_id, events, RunState.fold(run_id, events))

    async def events(self, run_id: str) -> list[Event]:
        """Return a run's events from the journal."""
        return await self.journal.read(run_id)

    async def usage(self, run_id: str) -> UsageSnapshot | None:
        """Return a running run's consumption against its limits (None when not running)."""
        snapshot: UsageSnapshot | None = await self._require_supervisor().ask(GetUsage(run_id))
        return snapshot

    async def tenant_usage(self, tenant: str) -> TenantUsage:
        """Return a tenant's usage today (UTC) against its daily budget.

        A budgeted tenant's figures are the journal's: what every process sharing it
        spent and holds (``across_processes`` is True). A tenant without a budget is not
        counted in the journal: its figures are this process's since it started.
        """
        limits = self.tenants.limits_for(tenant)
        if limits is None:
            usage: TenantUsage = await self._require_supervisor().ask(GetTenantUsage(tenant))
            return usage
        spend = await self.journal.tenant_spend(tenant, now=self.clock.now())
        return TenantUsage(
            tenant,
            spend.day,
            spend.tokens,
            spend.reserved,
            spend.cost_usd,
            limits,
            spend.reserved_cost_usd,
            across_processes=True,
        )

    async def breaker_states(self) -> dict[str, BreakerState]:
        """Return the circuit breaker of every tool: each agent's tools and their fallbacks.

        Returns:
            ``BreakerState`` by tool name: closed with no failures for a healthy tool, and
            the breakers of tools no agent has any more (kept from before a restart).
        """
        tools: set[str] = set()
        for agent in self.agents.values():
            tools.update(agent.tools)
            tools.update(agent.fallbacks)
        ask = GetBreakers(tools=tuple(sorted(tools)))
        states: dict[str, BreakerState] = await self._require_supervisor().ask(ask)
        return states


def _stopped_unjournaled(run_id: str, error: JournalError) -> JournalError:
    """The error `wait` raises for a run stopped by a journal failure (a fresh one each time)."""
    stopped = JournalError(
        f"run {run_id!r} stopped: its events could not be journaled ({error}). It stays "
        "unfinished in the journal; a Runtime started on the journal once it can be "
        "written again resumes it",
        path=error.path,
        sqlite_error=error.sqlite_error,
        run_id=run_id,
    )
    stopped.__cause__ = error
    return stopped
