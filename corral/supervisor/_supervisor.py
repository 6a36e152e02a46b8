"""The supervisor actor: shared budgets, step caps, loop detection and circuit breakers.

Every run asks it before each model call and each tool call. Its handlers only do
in-memory bookkeeping and never await a model or a tool, so one supervisor keeps up
with every run in the process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._clock import Clock
from ..actors import Actor
from ..errors import UsageError
from ..events import Outcome
from ._limits import BreakerPolicy, Limits

__all__ = [
    "BreakerState",
    "CloseRun",
    "Deny",
    "OpenRun",
    "Permit",
    "ReserveModel",
    "ReserveTool",
    "RunUsage",
    "SettleModel",
    "StopRun",
    "Supervisor",
    "ToolOutcome",
    "UsageSnapshot",
    "GetUsage",
    "GetBreakers",
]


# -- messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenRun:
    """Register a run before its first step (ask)."""

    run_id: str
    limits: Limits
    started_at: float
    budget_key: str | None = None
    """Runs with the same key share one budget (a workflow's sub-agent runs). Default: run_id."""
    stop: Callable[[Outcome, str], None] | None = None
    """Called by the supervisor to stop the run at once (cancels its in-flight call)."""
    used_tokens: int = 0
    """Tokens already used (when a run is resumed from its journal)."""
    used_cost: float = 0.0
    tool_calls: int = 0
    last_tools: tuple[str, ...] = ()
    """The run's most recent consecutive same-tool calls, for loop detection on resume."""


@dataclass(frozen=True, slots=True)
class ReserveModel:
    """Ask to make a model call (ask); answered with `Permit` or `Deny`."""

    run_id: str
    estimated_input: int
    max_tokens: int


@dataclass(frozen=True, slots=True)
class SettleModel:
    """Replace a model call's reservation by its real usage (tell)."""

    run_id: str
    reserved: int
    used: int
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class ReserveTool:
    """Ask to run a proposed tool call (ask); answered with `Permit` or `Deny`."""

    run_id: str
    tool: str
    registered: bool = True
    """False for a name the agent does not have: counted, but no breaker applies."""
    has_fallback: bool = False


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """Report one tool attempt's success or failure, for the breaker (tell)."""

    tool: str
    ok: bool


@dataclass(frozen=True, slots=True)
class CloseRun:
    """Forget a finished run (tell)."""

    run_id: str


@dataclass(frozen=True, slots=True)
class StopRun:
    """Stop a run now (ask); answers True if the run was running."""

    run_id: str
    reason: str = "stopped by request"
    outcome: Outcome = "cancelled"


@dataclass(frozen=True, slots=True)
class GetUsage:
    """Ask for a run's usage so far (ask); answers a `UsageSnapshot` or None."""

    run_id: str


@dataclass(frozen=True, slots=True)
class GetBreakers:
    """Ask for every breaker's state (ask); answers ``dict[str, BreakerState]``."""


@dataclass(frozen=True, slots=True)
class Permit:
    """The call may go ahead."""

    max_tokens: int = 0
    """For a model call: the output cap granted (may be lower than asked)."""
    reserved: int = 0
    """For a model call: tokens set aside, to settle later."""
    use_fallback: bool = False
    """For a tool call: the tool's breaker is open, call its fallback instead."""
    trial: bool = False
    """For a tool call: this is the half-open breaker's single trial call."""


@dataclass(frozen=True, slots=True)
class Deny:
    """The call must not happen; the run stops with `outcome`."""

    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """A run's consumption against its limits."""

    tokens: int
    reserved: int
    cost_usd: float
    tool_calls: int
    elapsed_s: float
    limits: Limits


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One tool's circuit breaker."""

    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: float | None


# -- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Budget:
    key: str
    limits: Limits
    tokens: int = 0
    reserved: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    runs: int = 0


@dataclass(slots=True)
class RunUsage:
    """Per-run bookkeeping held by the supervisor."""

    run_id: str
    budget: _Budget
    started_at: float
    stop: Callable[[Outcome, str], None] | None
    reserved: int = 0
    """Tokens this run has reserved and not settled (released if the run closes)."""
    last_tool: str | None = None
    same_tool_streak: int = 0
    stopped: tuple[Outcome, str] | None = None


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    half_open: bool = False
    trial_at: float | None = None
    """When the half-open trial call was let through (another is allowed a cooldown later)."""


class Supervisor(Actor):
    """The actor every run consults before each model call and tool call.

    Args:
        clock: time source (inject a `MockClock` in tests).
        breakers: circuit-breaker policy shared by all runs.
    """

    mailbox_size = 4096

    def __init__(self, *, clock: Clock, breakers: BreakerPolicy | None = None) -> None:
        self._clock = clock
        self._policy = breakers or BreakerPolicy()
        self._runs: dict[str, RunUsage] = {}
        self._budgets: dict[str, _Budget] = {}
        self._breakers: dict[str, _Breaker] = {}

    async def receive(self, message: Any) -> Any:
        """Dispatch one message to its handler."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return await super().receive(message)
        return handler(self, message)

    # -- runs ---------------------------------------------------------------------------

    def _open(self, m: OpenRun) -> None:
        if m.run_id in self._runs:  # re-opened by a restarted run actor: start clean
            self._close(CloseRun(m.run_id))
        key = m.budget_key or m.run_id
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget(
                key=key,
                limits=m.limits, tokens=m.used_tokens, cost=m.used_cost, tool_calls=m.tool_calls
            )
        budget.runs += 1
        run = RunUsage(m.run_id, budget, m.started_at, m.stop)
        if m.last_tools:
            run.last_tool = m.last_tools[-1]
            run.same_tool_streak = len(m.last_tools)
        self._runs[m.run_id] = run

    def _close(self, m: CloseRun) -> None:
        run = self._runs.pop(m.run_id, None)
        if run is None:
            return
        run.budget.reserved -= run.reserved
        run.budget.runs -= 1
        if run.budget.runs <= 0:
            self._budgets.pop(run.budget.key, None)

    def _run(self, run_id: str) -> RunUsage:
        run = self._runs.get(run_id)
        if run is None:
            raise UsageError(f"run {run_id!r} is not registered with the supervisor")
        return run

    def _stop(self, m: StopRun) -> bool:
        run = self._runs.get(m.run_id)
        if run is None or run.stopped is not None:
            return False
        run.stopped = (m.outcome, m.reason)
        if run.stop is not None:
            run.stop(m.outcome, m.reason)
        return True

    def _common_checks(self, run: RunUsage) -> Deny | None:
        if run.stopped is not None:
            return Deny(*run.stopped)
        limits = run.budget.limits
        elapsed = self._clock.now() - run.started_at
        if elapsed >= limits.max_wall_clock_s:
            return Deny(
                "stopped_budget",
                f"wall-clock limit reached: {elapsed:.1f} s of {limits.max_wall_clock_s:g} s",
            )
        if limits.max_cost_usd is not None and run.budget.cost >= limits.max_cost_usd:
            return Deny(
                "stopped_budget",
                f"cost budget reached: ${run.budget.cost:.4f} of ${limits.max_cost_usd:.4f}",
            )
        return None

    # -- model calls --------------------------------------------------------------------

    def _reserve_model(self, m: ReserveModel) -> Permit | Deny:
        run = self._run(m.run_id)
        denied = self._common_checks(run)
        if denied is not None:
            return denied
        budget = run.budget
        limits = budget.limits
        input_reservation = math.ceil(m.estimated_input * limits.estimate_margin)
        available = limits.max_tokens - budget.tokens - budget.reserved
        granted = min(m.max_tokens, available - input_reservation)
        if granted < limits.min_output_tokens:
            return Deny(
                "stopped_budget",
                f"token budget reached: {budget.tokens:,} used and {budget.reserved:,} reserved "
                f"of {limits.max_tokens:,}; the next call needs about "
                f"{input_reservation + limits.min_output_tokens:,}",
            )
        reserved = input_reservation + granted
        budget.reserved += reserved
        run.reserved += reserved
        return Permit(max_tokens=granted, reserved=reserved)

    def _settle_model(self, m: SettleModel) -> None:
        run = self._runs.get(m.run_id)
        if run is None:
            return
        budget = run.budget
        budget.reserved -= m.reserved
        run.reserved -= m.reserved
        budget.tokens += m.used
        budget.cost += m.cost_usd

    # -- tool calls ---------------------------------------------------------------------

    def _reserve_tool(self, m: ReserveTool) -> Permit | Deny:
        run = self._run(m.run_id)
        denied = self._common_checks(run)
        if denied is not None:
            return denied
        budget = run.budget
        limits = budget.limits
        if budget.tool_calls >= limits.max_tool_calls:
            return Deny(
                "stopped_steps",
                f"tool-call limit reached: {budget.tool_calls} of {limits.max_tool_calls}",
            )
        if m.tool == run.last_tool:
            run.same_tool_streak += 1
        else:
            run.last_tool, run.same_tool_streak = m.tool, 1
        cap = limits.max_consecutive_same_tool
        if cap is not None and run.same_tool_streak > cap:
            return Deny(
                "stopped_loop",
                f"loop detected: {m.tool!r} called {run.same_tool_streak} times in a row "
                f"(limit {cap})",
            )
        budget.tool_calls += 1
        if not m.registered:
            return Permit()
        return self._breaker_permit(m.tool, m.has_fallback)

    def _breaker_permit(self, tool: str, has_fallback: bool) -> Permit | Deny:
        breaker = self._breakers.get(tool)
        if breaker is None or breaker.opened_at is None:
            return Permit()
        now = self._clock.now()
        waited = now - breaker.opened_at
        trial_due = breaker.trial_at is None or now - breaker.trial_at >= self._policy.cooldown_s
        if waited >= self._policy.cooldown_s and trial_due:
            breaker.half_open = True
            breaker.trial_at = now
            return Permit(trial=True)
        if has_fallback:
            return Permit(use_fallback=True)
        retry_in = max(self._policy.cooldown_s - waited, 0.0)
        return Deny(
            "stopped_breaker",
            f"circuit breaker for {tool!r} is open after {breaker.failures} consecutive "
            f"failures; it allows a trial call in {retry_in:.0f} s and the tool has no fallback",
        )

    def _tool_outcome(self, m: ToolOutcome) -> None:
        breaker = self._breakers.get(m.tool)
        if m.ok:
            if breaker is not None:
                del self._breakers[m.tool]
            return
        if breaker is None:
            breaker = self._breakers[m.tool] = _Breaker()
        breaker.failures += 1
        if breaker.half_open:
            breaker.half_open = False
            breaker.trial_at = None
            breaker.opened_at = self._clock.now()
        elif breaker.opened_at is None and breaker.failures >= self._policy.failure_threshold:
            breaker.opened_at = self._clock.now()

    # -- queries ------------------------------------------------------------------------

    def _usage(self, m: GetUsage) -> UsageSnapshot | None:
        run = self._runs.get(m.run_id)
        if run is None:
            return None
        b = run.budget
        return UsageSnapshot(
            tokens=b.tokens,
            reserved=b.reserved,
            cost_usd=b.cost,
            tool_calls=b.tool_calls,
            elapsed_s=self._clock.now() - run.started_at,
            limits=b.limits,
        )

    def _breaker_states(self, m: GetBreakers) -> dict[str, BreakerState]:
        out: dict[str, BreakerState] = {}
        for tool, b in self._breakers.items():
            state: Literal["closed", "open", "half_open"] = (
                "half_open" if b.half_open else "open" if b.opened_at is not None else "closed"
            )
            out[tool] = BreakerState(state, b.failures, b.opened_at)
        return out

    _handlers: dict[type, Callable[[Supervisor, Any], Any]] = {
        OpenRun: _open,
        CloseRun: _close,
        StopRun: _stop,
        ReserveModel: _reserve_model,
        SettleModel: _settle_model,
        ReserveTool: _reserve_tool,
        ToolOutcome: _tool_outcome,
        GetUsage: _usage,
        GetBreakers: _breaker_states,
    }
