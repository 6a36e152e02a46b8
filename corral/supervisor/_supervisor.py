"""The supervisor actor: shared budgets, step caps, loop detection and circuit breakers.

Every run asks it before each model call and each tool call. Its handlers only do
in-memory bookkeeping and never await a model or a tool, so one supervisor keeps up
with every run in the process.

Every limit is enforced by reservation before the call and settlement after: a model call
reserves its estimated input (times a margin) plus its output cap, in tokens and in USD,
against the run's budget, so no in-flight call can push it past its cap. A tenant's daily
budget is not here: several processes share it, so each call of a budgeted tenant reserves
it in the journal (`corral.store.TenantBudgets`), once this actor has granted the run's
part. What the supervisor keeps of tenants is this process's tally of what each spent
today (`GetTenantUsage`), the figure reported for tenants without a daily limit.

Who owns which number:

* A run's facts (tool calls proposed, errors, tokens and cost used) are counted in one
  place, `corral.subagents.RunState.apply`, from the run's events. The supervisor never
  decides what counts: it adds what the run tells it of them, each message sent for one
  recorded event (`ReserveTool` for each ``tool_call_proposed``, `Counted` for the errors
  the state counted, `SettleModel` with a ``model_called``'s tokens and cost), and it is
  seeded from the state when a run opens (`OpenRun`, after a restart). What it keeps is
  the budget those numbers fill: shared by the runs of one budget key, with what is
  reserved and in flight, which only it knows.
* The wall-clock limit is the supervisor's alone: `OpenRun` fixes the run's deadline and
  answers it (`Opened`), every reservation refuses a run past it, and the run arms its
  own cancel scope with that deadline to interrupt a call in flight when it falls.

Loop detection (`corral.supervisor._loops`) is the supervisor's too, as the rule that
decides, on facts the run tells it: each proposed call's key (`ReserveTool`), each call's
result digest (`CallFinished`) or its failure (`CallFailed`), all of them seeded from the
run's state when it opens (`OpenRun.calls`).

The messages of every step (`ReserveModel`, `SettleModel`, `ReserveTool`, `ToolOutcome`,
`Counted`, `CallFailed`, `CallFinished`) and the `Permit` answer are `NamedTuple`s, several times
cheaper to build than frozen dataclasses (as `corral.guardrails.CallContext` is); the
others are frozen dataclasses.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._clock import Clock
from ..actors import NOT_INLINE, Actor
from ..errors import UsageError
from ..events import Outcome
from ..models._tokens import FRAMING_PER_MESSAGE, token_bound
from ._limits import BreakerPolicy, Limits, TenantLimits
from ._loops import LoopState

__all__ = [
    "BreakerState",
    "CallFailed",
    "CallFinished",
    "CloseRun",
    "Counted",
    "Deny",
    "GetBreakers",
    "GetTenantUsage",
    "GetUsage",
    "OpenRun",
    "Opened",
    "Permit",
    "ReserveModel",
    "ReserveTool",
    "SeedBreakers",
    "SettleModel",
    "StopRun",
    "Supervisor",
    "TenantUsage",
    "ToolOutcome",
    "UsageSnapshot",
]


# -- messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenRun:
    """Register a run before its first step (ask); answered with `Opened`."""

    run_id: str
    limits: Limits
    started_at: float
    """When the run started, moved later by the time it spent paused (Unix seconds)."""
    tenant: str = "default"
    budget_key: str | None = None
    """Runs with the same key share one budget (a workflow's sub-agent runs). Default: run_id."""
    stop: Callable[[Outcome, str], None] | None = None
    """Called by the supervisor to stop the run at once (cancels its in-flight call)."""
    used_tokens: int = 0
    """Tokens already used (when a run is resumed from its journal)."""
    used_cost: float = 0.0
    """USD already spent (when a run is resumed from its journal)."""
    tool_calls: int = 0
    """Tool calls already proposed, as the run's state counted them."""
    errors: int = 0
    """Errors so far, as the run's state counted them (the run breaker's count)."""
    last_tools: tuple[str, ...] = ()
    """The run's most recent consecutive same-tool calls, for loop detection on resume."""
    failed_calls: frozenset[str] = frozenset()
    """Keys of calls that already failed (for the repeated-failed-call rule on resume)."""
    calls: tuple[tuple[str, str | None, bool], ...] = ()
    """(call key, result digest or None, acted) of each call already counted
    (`tool_calls` of them), oldest first, for loop detection on resume; the last
    ``len(last_tools)`` are the latest streak. The digest is
    `corral.supervisor._loops.result_digest` of the content the model was shown (None
    for a call with no result); ``acted`` is True for a tool with side effects."""


@dataclass(frozen=True, slots=True)
class Opened:
    """The answer to `OpenRun`: when the run's wall-clock limit falls, and what follows."""

    deadline: float
    """Unix seconds on the supervisor's clock: the run's start plus its wall-clock limit."""
    expired: Deny
    """How the run ends when the deadline falls with a call in flight."""


class Counted(NamedTuple):
    """Errors the run's state counted from an event it just recorded (tell).

    The run sends it after each event that changed its count: a failed attempt, a
    rejected call, a fall back (`corral.subagents.RunState.apply` decides what counts);
    the supervisor adds it to the run breaker's count.
    """

    run_id: str
    errors: int
    """Failed attempts, rejected calls and fallbacks."""


class ReserveModel(NamedTuple):
    """Ask to make a model call (ask); answered with `Permit` or `Deny`."""

    run_id: str
    estimated_input: int
    max_tokens: int
    input_price: float = 0.0
    """USD per input token of the model about to be called (0 when unknown)."""
    output_price: float = 0.0
    """USD per output token of the model about to be called."""


class SettleModel(NamedTuple):
    """Replace a model call's reservation by its real usage (tell)."""

    run_id: str
    reserved: int
    """Tokens the call's `Permit` reserved."""
    used: int
    """Tokens the call used, as the run's state counted them (0 if it failed)."""
    cost_usd: float = 0.0
    """USD the call cost, as the run's state counted it."""
    reserved_cost: float = 0.0
    """USD the call's `Permit` reserved."""


class ReserveTool(NamedTuple):
    """Tell of a proposed tool call and ask to run it (ask); answered with `Permit` or `Deny`.

    Sent once for each ``tool_call_proposed`` the run records: each counts as a tool call,
    as the run's state counts it, whatever the answer.
    """

    run_id: str
    tool: str
    registered: bool = True
    """False for a name the agent does not have: no breaker applies."""
    has_fallback: bool = False
    call_key: str = ""
    """Tool name plus canonical arguments: the same key after a failure is a loop."""


class ToolOutcome(NamedTuple):
    """Report one tool attempt's success or failure, for the breakers (tell)."""

    tool: str
    ok: bool


class CallFailed(NamedTuple):
    """A proposed call was rejected, or failed for good: the same key again is a loop (tell)."""

    run_id: str
    call_key: str


class CallFinished(NamedTuple):
    """A proposed call returned a result, known by its digest (tell).

    Sent once per call that finished (not per attempt), after its ``tool_call_finished``
    is recorded; loop detection compares results by digest: a result seen before brings
    the model nothing new.
    """

    run_id: str
    tool: str
    """The tool the model named (a fallback's result still answers it)."""
    call_key: str
    """The call's key, as in its `ReserveTool`."""
    digest: str
    """`corral.supervisor._loops.result_digest` of the content the model was shown."""
    acted: bool = False
    """The tool has side effects (``write`` and above): its call is progress, whatever
    it answers."""


@dataclass(frozen=True, slots=True)
class CloseRun:
    """Forget a finished run (tell); releases whatever it still had reserved."""

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
class GetTenantUsage:
    """Ask for this process's tally of a tenant's usage today (ask); answers a `TenantUsage`."""

    tenant: str


@dataclass(frozen=True, slots=True)
class GetBreakers:
    """Ask for every breaker's state (ask); answers ``dict[str, BreakerState]``.

    The supervisor keeps a breaker only for a tool that failed since it last succeeded;
    the answer holds those, and each of `tools` it keeps none for, closed with no failures.
    """

    tools: tuple[str, ...] = ()
    """Tools to report even when closed (every tool the runtime knows). Default: none."""


@dataclass(frozen=True, slots=True)
class SeedBreakers:
    """Restore breaker states saved before a restart (ask)."""

    states: Mapping[str, BreakerState]


class Permit(NamedTuple):
    """The call may go ahead."""

    max_tokens: int = 0
    """For a model call: the output cap granted (may be lower than asked)."""
    reserved: int = 0
    """For a model call: tokens set aside, to settle later."""
    reserved_cost: float = 0.0
    """For a model call: USD set aside, to settle later."""
    notice: str | None = None
    """For a model call: a budget notice to give the model (once, past the warning level)."""
    unavailable: frozenset[str] = frozenset()
    """For a model call: tools whose breaker is open; do not offer them."""
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
    errors: int
    elapsed_s: float
    limits: Limits


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's consumption today (UTC) against its daily limits.

    For a tenant with a daily limit, the journal's figures: every process sharing it
    (`corral.store.TenantBudgets`). For one without, this process's tally since it started
    (`across_processes` is False then).
    """

    tenant: str
    day: str
    tokens: int
    reserved: int
    cost_usd: float
    limits: TenantLimits | None
    reserved_cost_usd: float = 0.0
    across_processes: bool = False
    """True: the figures are every process's (a budgeted tenant's, from the journal)."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One tool's circuit breaker."""

    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: float | None


_PERMIT = Permit()
"""The plain permit (for a tool call whose breaker is closed): one instance serves all."""

_CLOSED = BreakerState("closed", 0, None)
"""A breaker that has seen no failure since the tool last succeeded."""


# -- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Budget:
    key: str
    limits: Limits
    tokens: int = 0
    reserved: int = 0
    cost: float = 0.0
    reserved_cost: float = 0.0
    tool_calls: int = 0
    errors: int = 0
    runs: int = 0
    warned: bool = False


@dataclass(slots=True)
class _Tenant:
    name: str
    day: str = ""
    day_ends: float = float("-inf")
    """When `day` ends, Unix seconds (checked on every reservation; cheaper than a date)."""
    tokens: int = 0
    reserved: int = 0
    cost: float = 0.0
    reserved_cost: float = 0.0


@dataclass(slots=True)
class _Run:
    run_id: str
    budget: _Budget
    tenant: _Tenant
    started_at: float
    deadline: float
    """When the wall-clock limit falls: `started_at` plus the limit, Unix seconds."""
    stop: Callable[[Outcome, str], None] | None
    reserved: int = 0
    """Tokens this run has reserved and not settled (released if the run closes)."""
    reserved_cost: float = 0.0
    loops: LoopState = field(default_factory=LoopState)
    stopped: tuple[Outcome, str] | None = None


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    half_open: bool = False
    trial_at: float | None = None
    """When the half-open trial call was let through (another is allowed a cooldown later)."""


def _day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC).date().isoformat()


def _day_end(now: float) -> float:
    """The next UTC midnight after `now`."""
    return (now // 86_400 + 1) * 86_400


class Supervisor(Actor):
    """The actor every run consults before each model call and tool call.

    Args:
        clock: time source (inject a `MockClock` in tests).
        breakers: circuit-breaker policy shared by all runs.
    """

    mailbox_size = 4096

    def __init__(
        self,
        *,
        clock: Clock,
        breakers: BreakerPolicy | None = None,
    ) -> None:
        self._clock = clock
        self._policy = breakers or BreakerPolicy()
        self._runs: dict[str, _Run] = {}
        self._budgets: dict[str, _Budget] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._breakers: dict[str, _Breaker] = {}

    async def receive(self, message: Any) -> Any:
        """Dispatch one message to its handler."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return await super().receive(message)
        return handler(self, message)

    def receive_inline(self, message: Any) -> Any:
        """Every handler is plain bookkeeping that never waits: take it in the sender's task."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return NOT_INLINE
        return handler(self, message)

    # -- runs ---------------------------------------------------------------------------

    def _tenant(self, name: str, now: float) -> _Tenant:
        tenant = self._tenants.get(name)
        if tenant is None:
            tenant = self._tenants[name] = _Tenant(name)
        if now >= tenant.day_ends:  # a new day: yesterday's usage no longer counts
            today = _day(now)
            if tenant.day != today:
                tenant.day, tenant.tokens, tenant.cost = today, 0, 0.0
            tenant.day_ends = _day_end(now)
        return tenant

    def _open(self, m: OpenRun) -> Opened:
        if m.run_id in self._runs:  # re-opened by a restarted run actor: start clean
            self._close(CloseRun(m.run_id))
        key = m.budget_key or m.run_id
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget(
                key=key,
                limits=m.limits,
                tokens=m.used_tokens,
                cost=m.used_cost,
                tool_calls=m.tool_calls,
                errors=m.errors,
            )
        budget.runs += 1
        limit = m.limits.max_wall_clock_s
        deadline = m.started_at + limit
        tenant = self._tenant(m.tenant, self._clock.now())
        run = _Run(m.run_id, budget, tenant, m.started_at, deadline, m.stop)
        run.loops = LoopState.resume(m.calls, last_tools=m.last_tools, failed=m.failed_calls)
        self._runs[m.run_id] = run
        return Opened(deadline, Deny("stopped_budget", f"wall-clock limit of {limit:g} s reached"))

    def _close(self, m: CloseRun) -> None:
        run = self._runs.pop(m.run_id, None)
        if run is None:
            return
        run.budget.reserved -= run.reserved
        run.budget.reserved_cost -= run.reserved_cost
        run.tenant.reserved -= run.reserved
        run.tenant.reserved_cost -= run.reserved_cost
        run.budget.runs -= 1
        if run.budget.runs <= 0:
            self._budgets.pop(run.budget.key, None)

    def _run(self, run_id: str) -> _Run:
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

    def _common_checks(self, run: _Run, now: float) -> Deny | None:
        if run.stopped is not None:
            return Deny(*run.stopped)
        budget = run.budget
        limits = budget.limits
        if now >= run.deadline:
            return Deny(
                "stopped_budget",
                f"wall-clock limit reached: {now - run.started_at:.1f} s of "
                f"{limits.max_wall_clock_s:g} s",
            )
        if budget.errors > limits.max_errors:
            return Deny(
                "stopped_breaker",
                f"run breaker: {budget.errors} errors, rejections and fallbacks in this run "
                f"(limit {limits.max_errors}); the run is failing in cascade",
            )
        cascade = run.loops.cascade(limits)
        if cascade is not None:
            return Deny("stopped_breaker", f"run breaker: {cascade}")
        return None

    # -- model calls --------------------------------------------------------------------

    def _reserve_model(self, m: ReserveModel) -> Permit | Deny:
        run = self._run(m.run_id)
        now = self._clock.now()
        denied = self._common_checks(run, now)
        if denied is not None:
            return denied
        budget = run.budget
        limits = budget.limits
        # Decided on what is used and reserved before this call; the notice goes into the
        # request, so its own tokens are part of what this call reserves.
        notice = self._notice(run, now)
        estimated = m.estimated_input
        if notice is not None:
            estimated += token_bound(notice) + FRAMING_PER_MESSAGE
        input_tokens = math.ceil(estimated * limits.estimate_margin)
        input_cost = input_tokens * m.input_price
        # The output cap is what every token and cost budget leaves, after the input.
        room: list[tuple[float, str]] = [
            (limits.max_tokens - budget.tokens - budget.reserved - input_tokens, "run token budget")
        ]
        if limits.max_cost_usd is not None and m.output_price > 0:
            left = limits.max_cost_usd - budget.cost - budget.reserved_cost - input_cost
            room.append((left / m.output_price, "run cost budget"))
        elif limits.max_cost_usd is not None and budget.cost >= limits.max_cost_usd:
            room.append((0, "run cost budget"))
        tightest, which = min(room)
        granted = min(m.max_tokens, math.floor(tightest))
        if granted < limits.min_output_tokens:
            if notice is not None:
                budget.warned = False  # not delivered
            return Deny("stopped_budget", self._exhausted(which, run, input_tokens))
        reserved = input_tokens + granted
        reserved_cost = input_cost + granted * m.output_price
        budget.reserved += reserved
        budget.reserved_cost += reserved_cost
        tenant = self._tenant(run.tenant.name, now)
        tenant.reserved += reserved
        tenant.reserved_cost += reserved_cost
        run.reserved += reserved
        run.reserved_cost += reserved_cost
        return Permit(
            max_tokens=granted,
            reserved=reserved,
            reserved_cost=reserved_cost,
            notice=notice,
            unavailable=self._unavailable(now),
        )

    def _exhausted(self, which: str, run: _Run, input_tokens: int) -> str:
        budget = run.budget
        limits = budget.limits
        need = input_tokens + limits.min_output_tokens
        if which == "run token budget":
            return (
                f"token budget reached: {budget.tokens:,} used and {budget.reserved:,} reserved "
                f"of {limits.max_tokens:,}; the next call needs about {need:,}"
            )
        return (
            f"cost budget reached: ${budget.cost:.4f} used and ${budget.reserved_cost:.4f} "
            f"reserved of ${limits.max_cost_usd:.4f}"
        )

    def _notice(self, run: _Run, now: float) -> str | None:
        """Once a budget passes the warning level, tell the model what remains (once)."""
        budget = run.budget
        if budget.warned:
            return None
        limits = budget.limits
        elapsed = now - run.started_at
        used = max(
            (budget.tokens + budget.reserved) / limits.max_tokens,
            budget.tool_calls / limits.max_tool_calls,
            elapsed / limits.max_wall_clock_s,
        )
        if limits.max_cost_usd is not None:
            used = max(used, (budget.cost + budget.reserved_cost) / limits.max_cost_usd)
        if used < limits.warn_at:
            return None
        budget.warned = True
        left_tokens = max(limits.max_tokens - budget.tokens - budget.reserved, 0)
        left_calls = max(limits.max_tool_calls - budget.tool_calls, 0)
        left_s = max(limits.max_wall_clock_s - elapsed, 0.0)
        cost = ""
        if limits.max_cost_usd is not None:
            cost = f", ${max(limits.max_cost_usd - budget.cost - budget.reserved_cost, 0):.4f}"
        return (
            f"Budget notice: this run has used {used:.0%} of a limit. Remaining: "
            f"{left_tokens:,} tokens, {left_calls} tool calls, {left_s:.0f} s{cost}. "
            "Wrap up now: give the most useful answer you can with what you have."
        )

    def _unavailable(self, now: float) -> frozenset[str]:
        if not self._breakers:
            return frozenset()
        return frozenset(
            tool
            for tool, b in self._breakers.items()
            if b.opened_at is not None and now - b.opened_at < self._policy.cooldown_s
        )

    def _settle_model(self, m: SettleModel) -> None:
        run = self._runs.get(m.run_id)
        if run is None:
            return
        budget, tenant = run.budget, self._tenant(run.tenant.name, self._clock.now())
        budget.reserved -= m.reserved
        budget.reserved_cost -= m.reserved_cost
        run.reserved -= m.reserved
        run.reserved_cost -= m.reserved_cost
        tenant.reserved -= m.reserved
        tenant.reserved_cost -= m.reserved_cost
        budget.tokens += m.used
        budget.cost += m.cost_usd
        tenant.tokens += m.used
        tenant.cost += m.cost_usd

    # -- tool calls ---------------------------------------------------------------------

    def _reserve_tool(self, m: ReserveTool) -> Permit | Deny:
        run = self._run(m.run_id)
        denied = self._common_checks(run, self._clock.now())
        if denied is not None:
            run.budget.tool_calls += 1
            return denied
        budget = run.budget
        limits = budget.limits
        budget.tool_calls += 1
        if budget.tool_calls > limits.max_tool_calls:
            return Deny(
                "stopped_steps",
                f"tool-call limit reached: {budget.tool_calls - 1} of {limits.max_tool_calls}",
            )
        loop = run.loops.propose(m.tool, m.call_key, limits)
        if loop is not None:
            return Deny("stopped_loop", loop)
        if not m.registered:
            return _PERMIT
        return self._breaker_permit(m.tool, m.has_fallback)

    def _breaker_permit(self, tool: str, has_fallback: bool) -> Permit | Deny:
        breaker = self._breakers.get(tool)
        if breaker is None or breaker.opened_at is None:
            return _PERMIT
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

    def _call_failed(self, m: CallFailed) -> None:
        run = self._runs.get(m.run_id)
        if run is not None:
            run.loops.fail(m.call_key)

    def _call_finished(self, m: CallFinished) -> None:
        run = self._runs.get(m.run_id)
        if run is not None:
            run.loops.result(m.tool, m.call_key, m.digest, acted=m.acted)

    def _counted(self, m: Counted) -> None:
        run = self._runs.get(m.run_id)
        if run is not None:
            run.budget.errors += m.errors

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
            errors=b.errors,
            elapsed_s=self._clock.now() - run.started_at,
            limits=b.limits,
        )

    def _tenant_usage(self, m: GetTenantUsage) -> TenantUsage:
        t = self._tenant(m.tenant, self._clock.now())
        return TenantUsage(t.name, t.day, t.tokens, t.reserved, t.cost, None, t.reserved_cost)

    def _seed_breakers(self, m: SeedBreakers) -> None:
        for tool, state in m.states.items():
            if state.state == "closed" and state.consecutive_failures == 0:
                continue
            self._breakers[tool] = _Breaker(
                failures=state.consecutive_failures,
                opened_at=state.opened_at,
                half_open=False,  # a trial in flight before the restart did not finish
            )

    def _breaker_states(self, m: GetBreakers) -> dict[str, BreakerState]:
        out: dict[str, BreakerState] = {tool: _CLOSED for tool in m.tools}
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
        CallFailed: _call_failed,
        CallFinished: _call_finished,
        Counted: _counted,
        GetUsage: _usage,
        GetTenantUsage: _tenant_usage,
        GetBreakers: _breaker_states,
        SeedBreakers: _seed_breakers,
    }
