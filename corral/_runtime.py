"""The embedded runtime: routes tasks to sub-agents and supervises their runs."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import anyio
import httpx

from ._clock import Clock, SystemClock
from ._log import get_logger
from ._loop import require_asyncio
from ._settings import Settings, load_settings
from ._task import Task, new_id
from ._timeout import abandoned_calls
from .actors import Actor, ActorRef, ActorSystem, RestartPolicy
from .errors import (
    ConfigError,
    CorralError,
    GateExpired,
    JournalError,
    RoutingError,
    UsageError,
)
from .events import (
    Event,
    GateDecided,
    GuardrailVerdict,
    ModelCalled,
    Outcome,
    RunFinished,
    RunStarted,
    StepStarted,
    WaitResolved,
)
from .guardrails import (
    ApprovalPolicy,
    CallCheck,
    CheckChain,
    InputScreen,
    ProposedCall,
    ScopePolicy,
    Verdict,
)
from .models import Usage
from .models._pricing import require_price
from .router import Route, Router
from .store import GateRecord, Journal, MemoryJournal, RunStatus
from .store._journal import gate_expired
from .subagents import RunActor, RunServices, RunState, SubAgent
from .supervisor import (
    BreakerPolicy,
    BreakerState,
    GetBreakers,
    GetTenantUsage,
    GetUsage,
    Limits,
    SeedBreakers,
    SeedTenant,
    StopRun,
    Supervisor,
    TenantLimits,
    TenantUsage,
    UsageSnapshot,
)
from .tools import SIDE_EFFECTS, SideEffect, Tool
from .workflows import AgentStep, FanOut, Step, Workflow, WorkflowActor

__all__ = ["RunHandle", "RunResult", "Runtime"]

log = get_logger("corral.runtime")

_ALERT_DRAIN_S = 10.0
"""How long stopping the runtime waits for queued alerts (webhook POSTs) to be sent."""


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
    """Tool calls proposed."""
    model_calls: int
    tokens: int
    cost_usd: float
    duration_s: float
    events: Sequence[Event]
    """Every event of the run, in order (read from the journal, each decoded when first
    looked at)."""
    gates: tuple[GateRecord, ...] = ()
    """The run's open gates, while it waits for a person."""

    @property
    def ok(self) -> bool:
        """True when the run completed with a final answer."""
        return self.outcome == "completed"


@dataclass(frozen=True, slots=True)
class _StartRun:
    run_id: str
    events: Sequence[Event] | None = None
    """The run's whole journal when the caller just wrote it (a new run): saves reading it."""


class _Waiter:
    """Wakes whoever awaits a run when it finishes or pauses."""

    __slots__ = ("event", "finished", "waiting")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.finished: RunState | None = None
        """The state of the run, once it finished here (its result needs no fold)."""
        self.waiting = 0

    def wake(self, finished: RunState | None = None) -> None:
        if finished is not None:
            self.finished = finished
        self.event.set()
        self.event = anyio.Event()


class RunHandle:
    """A submitted run. Await `result()` for its outcome; `cancel()` stops it."""

    def __init__(self, runtime: Runtime, run_id: str, agent: str, route: Route | None) -> None:
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


class _Parent(Actor):
    """Parent of the run actors of one sub-agent or workflow.

    It starts them by run id, and ends, as failed, a run whose actor crashed more often than
    its restart policy allows.
    """

    def __init__(
        self,
        runtime: Runtime,
        child: Callable[[str, Sequence[Event] | None], Actor],
        restart: RestartPolicy,
    ) -> None:
        self._runtime = runtime
        self._child = child
        self._restart = restart

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _StartRun):
            if self.system.get(f"{self.ref.name}/{message.run_id}") is not None:
                return None  # already being driven here
            run_id, seed = message.run_id, message.events

            def make() -> Actor:
                # The first actor starts from the events given; a restarted one re-reads
                # the journal, which has moved on since.
                nonlocal seed
                events, seed = seed, None
                return self._child(run_id, events)

            # A run's actor lives for one run: no need to wait for its task to start.
            await self.spawn(make, name=run_id, restart=self._restart, wait_started=False)
            return None
        return await super().receive(message)

    async def child_failed(self, child: ActorRef, error: BaseException) -> None:
        await self._runtime._fail_crashed(child.name.rsplit("/", 1)[-1], error)


class _Flush:
    """Answered by the alerter once every alert queued before it is sent."""


class _Alerter(Actor):
    """Sends refused-call alerts to the alert callable and webhook, off the run's path."""

    def __init__(
        self, alert: Callable[[Verdict, ProposedCall], None] | None, webhook: str | None
    ) -> None:
        self._alert = alert
        self._webhook = webhook

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Flush):
            return None  # every alert queued before it has been sent
        verdict, call = message
        if self._alert is not None:
            try:
                self._alert(verdict, call)
            except Exception as exc:
                log.error("runtime.alert_failed", error=repr(exc))
        if self._webhook is not None:
            payload = {
                "guardrail": verdict.guardrail,
                "decision": verdict.decision,
                "reason": verdict.reason,
                "run_id": call.run_id,
                "agent": call.agent,
                "tool": call.tool,
                "side_effect": call.side_effect,
                "tenant": call.tenant,
            }
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.post(self._webhook, json=payload)
                    response.raise_for_status()
            except httpx.HTTPError as exc:
                log.error("runtime.alert_webhook_failed", error=repr(exc))
        return None


class _Tick:
    """Message the poller sends itself."""


class _Poller(Actor):
    """Wakes the runtime every `interval` seconds: expiries, approvals from elsewhere, leases."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval

    async def started(self) -> None:
        await self.ref.tell(_Tick())

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            await anyio.sleep(self._interval)
            if self._runtime._system is None:
                return None  # the runtime is stopping: no more ticks
            try:
                await self._runtime._tick()  # each failing part is logged there
            except Exception as exc:  # a bad tick must not stop the polling
                log.error("runtime.tick_failed", part="tick", error=repr(exc))
            await self.ref.tell(_Tick())
            return None
        return await super().receive(message)


class Runtime:
    """Routes tasks to sub-agents and runs them under one supervisor.

    Use it as an async context manager::

        async with Runtime(agents=[billing], router=router) as runtime:
            result = await runtime.run("Reconcile Acme's unpaid invoices", kind="billing")

    Args:
        agents: the sub-agents (names must be unique).
        router: rules choosing an agent for each task. Optional with a single agent.
        limits: default per-run limits (an agent's own `limits` wins).
        breakers: circuit-breaker policy for every tool.
        journal: where events go. Default: in memory (use the SQLite store for durability).
        clock: time source. Default: the system clock.
        cost: cost in USD of a model call's usage, by model name. Default: no cost.
            Every model under a USD budget (``max_cost_usd``, a tenant's
            ``daily_cost_usd``) must have a known price, or the runtime refuses to start.
        seed: seed for retry jitter, for repeatable runs.
        resume: on start, continue every unfinished run found in the journal. Default True.
        tenants: daily budgets by tenant, shared by all of a tenant's runs.
        default_tenant_limits: daily budget of any tenant not in `tenants`. Default: none.
        gated: side-effect levels whose calls wait for a person's approval. Default
            ``write``, ``external`` and ``destructive``; ``()`` lets every call run.
        approval: an `ApprovalPolicy` deciding per call (by tool, side-effect level and
            argument rules) to run it, gate it or block it; replaces `gated`.
        policies: scope and argument policies every call must pass (each agent may add
            its own).
        checks: your own `corral.guardrails.CallCheck`s before every call, after each
            agent's own checks and before the approval policy; each may block the call,
            send it to a person (``approve``) or ``flag`` it (journaled, the call runs).
        screen: screens each task before its first step (size, injection, PII and
            secrets). Default `InputScreen()`; None turns it off.
        result_screen: screens each tool result before the model sees it (injection
            arrives that way too; PII is redacted by the result filter). Default
            ``InputScreen(pii="off")``; None turns it off.
        alert: called with the verdict and the call whenever a call is refused for
            permission or policy; keep it fast (it runs on the alert actor).
        alert_webhook: also POST each such alert as JSON to this URL (5 s timeout; a
            failure is logged, never raised).
        gate_ttl_s: seconds before an undecided gate expires into a rejection. Default 48 h.
        poll_interval: seconds between checks for expired gates and waits, decisions made
            by other processes, and runs to take over. Default 1 s; None disables polling
            (call `tick` yourself).
        owner: this process's name in run leases. Default: a fresh id.
        lease_s: how long a claim on a run lasts without renewal. Default 30 s.
        workflows: workflows this runtime can run and resume.
        retention_days: prune finished runs older than this many days (checked hourly by the
            poller, for journals that support it). Default: keep everything.

    Raises:
        UsageError: duplicate agent names or no agent.
        ConfigError: routes to agents that do not exist, or a USD budget over a model
            whose price is unknown.
    """

    def __init__(
        self,
        *,
        agents: Sequence[SubAgent],
        router: Router | None = None,
        limits: Limits | None = None,
        breakers: BreakerPolicy | None = None,
        journal: Journal | None = None,
        clock: Clock | None = None,
        cost: Callable[[str, Usage], float] | None = None,
        seed: int | None = None,
        resume: bool = True,
        tenants: Mapping[str, TenantLimits] | None = None,
        default_tenant_limits: TenantLimits | None = None,
        gated: Collection[SideEffect] = ("write", "external", "destructive"),
        approval: ApprovalPolicy | None = None,
        policies: Sequence[ScopePolicy] = (),
        checks: Sequence[CallCheck] = (),
        screen: InputScreen | None | Literal["default"] = "default",
        result_screen: InputScreen | None | Literal["default"] = "default",
        alert: Callable[[Verdict, ProposedCall], None] | None = None,
        alert_webhook: str | None = None,
        gate_ttl_s: float = 48 * 3600.0,
        poll_interval: float | None = 1.0,
        owner: str | None = None,
        lease_s: float = 30.0,
        workflows: Sequence[Workflow] = (),
        retention_days: float | None = None,
    ) -> None:
        names = [a.name for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"duplicate sub-agent names: {', '.join(duplicates)}")
        if not agents:
            raise UsageError("a Runtime needs at least one sub-agent")
        unknown = sorted(set(gated) - set(SIDE_EFFECTS))
        if unknown:
            raise ConfigError(f"gated: unknown side-effect levels {unknown}; use {SIDE_EFFECTS}")
        self.agents: Mapping[str, SubAgent] = {a.name: a for a in agents}
        self.workflows: Mapping[str, Workflow] = {w.name: w for w in workflows}
        for workflow in workflows:
            for step in _all_steps(workflow):
                if isinstance(step, AgentStep) and step.agent_name not in self.agents:
                    raise ConfigError(
                        f"workflow {workflow.name!r}: step {step.name!r} uses agent "
                        f"{step.agent_name!r}, which this runtime does not have"
                    )
        if router is not None:
            router.validate(self.agents)
        self.router = router
        self.limits = limits or Limits()
        self.breakers = breakers or BreakerPolicy()
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or new_id("owner")
        self._cost = cost or (lambda model, usage: 0.0)
        usd_tenants = [
            f"tenant {name!r} daily_cost_usd=${t.daily_cost_usd:g}"
            for name, t in sorted((tenants or {}).items())
            if t.daily_cost_usd is not None
        ]
        if default_tenant_limits is not None and default_tenant_limits.daily_cost_usd is not None:
            usd_tenants.append(f"default daily_cost_usd=${default_tenant_limits.daily_cost_usd:g}")
        for agent in agents:  # a USD budget over an unpriced model would count $0: refuse it
            run_usd = (agent.limits or self.limits).max_cost_usd
            usd = [f"max_cost_usd=${run_usd:g}"] if run_usd is not None else []
            if usd or usd_tenants:
                require_price(cost, agent.model.name, agent=agent.name, budgets=usd + usd_tenants)
        self._rng = random.Random(seed)
        self._resume = resume
        self._tenants = dict(tenants or {})
        self._default_tenant_limits = default_tenant_limits
        self._approval = approval or ApprovalPolicy(
            defaults={level: "gate" if level in gated else "auto" for level in SIDE_EFFECTS}
        )
        self._policies = tuple(policies)
        self._checks = CheckChain(checks).checks  # refuses an object without check()
        self._screen = InputScreen() if screen == "default" else screen
        self._result_screen = (
            InputScreen(pii="off") if result_screen == "default" else result_screen
        )
        self._alert = alert
        self._alert_webhook = alert_webhook
        self._alerter: ActorRef | None = None
        self._saved_breakers: dict[str, BreakerState] = {}
        self._gate_ttl_s = gate_ttl_s
        self._retention_s = retention_days * 86_400 if retention_days is not None else None
        self._pruned_at = float("-inf")
        self._poll_interval = poll_interval
        self._lease_s = lease_s
        self._subscribers: list[Callable[[Event], None]] = []
        self._waiters: dict[str, _Waiter] = {}
        self._active: set[str] = set()
        self._system: ActorSystem | None = None
        self._agent_refs: dict[str, ActorRef] = {}
        self._supervisor: ActorRef | None = None
        self._services: RunServices
        self._fatal: BaseException | None = None
        self._owned_journal: contextlib.AbstractAsyncContextManager[Any] | None = None
        """The journal `from_settings` built, which the runtime opens and closes."""
        self._stalled: dict[str, JournalError] = {}
        """Runs stopped here because their events could not be journaled (see `wait`)."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None, /, **options: Any) -> Runtime:
        """Build a runtime from `Settings`, read by the same loader as the ``corral`` command.

        The settings give the runtime's default `limits`, its `breakers` and its journal
        (``db``); every other option, and any of those three given explicitly, comes from
        `options`, which win::

            async with Runtime.from_settings(agents=[billing]) as runtime:
                ...

        A journal built from ``db`` belongs to the runtime: it is opened on entry and
        closed on exit. One passed as ``journal=`` is yours to open and close.

        Args:
            settings: the settings. Default: `load_settings()` (``CORRAL_CONFIG`` or
                ``./corral.toml``, under ``CORRAL_*`` environment variables).
            **options: any `Runtime` argument (``agents=`` at least).

        Returns:
            The runtime, not yet started: enter it with ``async with``.

        Raises:
            ConfigError: an invalid settings file or value, or an invalid ``db`` URL (and
                whatever `Runtime` refuses).
        """
        from .store import journal_from_url

        if settings is None:
            settings = load_settings()
        options.setdefault("limits", settings.limits)
        options.setdefault("breakers", settings.breakers)
        if "journal" in options:
            return cls(**options)
        runtime = cls(**options, journal=journal_from_url(settings.db))
        if isinstance(runtime.journal, contextlib.AbstractAsyncContextManager):
            runtime._owned_journal = runtime.journal  # memory:// has nothing to open
        return runtime

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        require_asyncio("Runtime")
        if self._owned_journal is not None:
            await self._owned_journal.__aenter__()
        system = ActorSystem(name="corral")
        try:
            await system.__aenter__()
        except BaseException:
            await self._close_owned_journal()
            raise
        try:
            self._system = system
            clock, breakers = self.clock, self.breakers
            tenants, default_tenant = self._tenants, self._default_tenant_limits
            self._supervisor = await system.spawn(
                lambda: Supervisor(
                    clock=clock,
                    breakers=breakers,
                    tenants=tenants,
                    default_tenant_limits=default_tenant,
                ),
                name="supervisor",
                restart=RestartPolicy(max_restarts=10, within=60, backoff=0.0),
            )
            self._services = RunServices(
                supervisor=self._supervisor,
                journal=self.journal,
                clock=self.clock,
                limits=self.limits,
                publish=self._publish,
                cost=self._cost,
                on_finished=self._on_finished,
                on_paused=self._on_paused,
                rng=self._rng,
                approval=self._approval,
                policies=self._policies,
                checks=self._checks,
                result_screen=self._result_screen,
                alert=self._send_alert if (self._alert or self._alert_webhook) else None,
                gate_ttl_s=self._gate_ttl_s,
                on_fatal=self._on_fatal,
                on_journal_failed=self._on_journal_failed,
            )
            if self._alert or self._alert_webhook:
                alert, webhook = self._alert, self._alert_webhook
                self._alerter = await system.spawn(
                    lambda: _Alerter(alert, webhook), name="alerter", mailbox_size=1024
                )
            for name, agent in self.agents.items():
                run_actor = partial(_run_actor, agent, self._services)
                self._agent_refs[name] = await system.spawn(
                    partial(_Parent, self, run_actor, agent.restart), name=f"agent:{name}"
                )
            for workflow in self.workflows.values():
                workflow_actor = partial(_workflow_actor, workflow, self)
                self._agent_refs[workflow.agent_name] = await system.spawn(
                    partial(_Parent, self, workflow_actor, RestartPolicy(backoff=0.1)),
                    name=workflow.agent_name,
                )
            await self._restore_supervisor()
            if self._resume:
                await self.resume()
            if self._poll_interval is not None:
                interval = self._poll_interval
                await system.spawn(lambda: _Poller(self, interval), name="poller")
        except BaseException:
            try:
                await system.__aexit__(None, None, None)
            finally:
                self._system = None
                await self._close_owned_journal()
            raise
        return self

    async def _close_owned_journal(self) -> None:
        if self._owned_journal is not None:
            with anyio.CancelScope(shield=True):
                await self._owned_journal.__aexit__(None, None, None)

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._system is not None:
            with anyio.move_on_after(5, shield=True):
                try:
                    await self._save_breakers()
                except JournalError as exc:  # stopping anyway: say so, and stop
                    log.error("runtime.save_breakers_failed", error=str(exc))
            if self._alerter is not None:  # alerts already raised are sent, not dropped
                with anyio.move_on_after(_ALERT_DRAIN_S, shield=True):
                    try:
                        await self._alerter.ask(_Flush(), timeout=_ALERT_DRAIN_S)
                    except CorralError as exc:
                        log.error("runtime.alerts_not_drained", error=repr(exc))
        system, self._system = self._system, None
        try:
            if system is not None:
                await system.__aexit__(*exc_info)
        finally:
            with anyio.CancelScope(shield=True):
                for run_id in list(self._active):
                    try:
                        await self.journal.release(run_id, self.owner)
                    except JournalError as exc:  # the leases run out by themselves
                        log.error("runtime.release_failed", run_id=run_id, error=str(exc))
                        break  # the journal cannot be written: do not wait on it per run
            self._active.clear()
            for waiter in self._waiters.values():
                waiter.wake()
            await self._close_owned_journal()
            stuck = abandoned_calls()
            if stuck:
                log.warning(
                    "runtime.abandoned_calls_still_running",
                    calls=sorted(set(stuck)),
                    hint="they timed out and ignored cancellation; nothing waits for them",
                )

    def _on_fatal(self, error: BaseException) -> None:
        """A tool or model raised `KeyboardInterrupt`, `SystemExit` or another `BaseException`.

        Its run is already journaled as failed. The runtime stops (every other run stays
        resumable) and raises `error` from ``async with`` and from any `wait`.
        """
        if self._fatal is None:
            self._fatal = error
        if self._system is not None:
            self._system.abort(error)
        for waiter in self._waiters.values():
            waiter.wake()

    def _require_running(self) -> ActorSystem:
        if self._system is None:
            raise UsageError("the Runtime is not running; use `async with Runtime(...)`")
        return self._system

    async def resume(self) -> list[str]:
        """Continue every unfinished run in the journal that is not waiting; returns their ids.

        Runs waiting at a gate or for an event stay as rows in the journal until the
        decision or the event arrives.
        """
        self._require_running()
        candidates = [
            info
            for info in await self.journal.runs(status="running", limit=1_000_000)
            if info.run_id not in self._active
            and info.agent in self._agent_refs
            and info.run_id not in self._stalled  # a journal failure stopped it here
        ]
        claimed = set(
            await self.journal.claim_many(
                [i.run_id for i in candidates],
                self.owner,
                lease_s=self._lease_s,
                now=self.clock.now(),
            )
        )
        resumed: list[str] = []
        for info in candidates:
            if info.run_id in claimed and info.run_id not in self._active:
                self._active.add(info.run_id)
                await self._agent_refs[info.agent].ask(_StartRun(info.run_id))
                resumed.append(info.run_id)
        return resumed

    async def _restore_supervisor(self) -> None:
        """After a restart: breaker states, and what each budgeted tenant spent today."""
        assert self._supervisor is not None
        saved = await self.journal.load_breakers()
        if saved:
            states = {tool: BreakerState(**state) for tool, state in saved.items()}
            await self._supervisor.ask(SeedBreakers(states))
            self._saved_breakers = states
        if not self._tenants and self._default_tenant_limits is None:
            return
        now = self.clock.now()
        day = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        spent: dict[str, list[float]] = {}
        for info in await self.journal.runs(limit=1_000_000):
            if info.updated_at < midnight:
                continue
            for event in await self.journal.read(info.run_id):
                if isinstance(event, ModelCalled) and event.ts >= midnight:
                    total = spent.setdefault(info.tenant, [0, 0.0])
                    total[0] += event.response.usage.total_tokens
                    total[1] += event.cost_usd
        for tenant, (tokens, cost) in spent.items():
            await self._supervisor.ask(
                SeedTenant(tenant, day.date().isoformat(), int(tokens), float(cost))
            )

    async def _save_breakers(self) -> None:
        """Keep breaker states in the journal, so they survive a restart."""
        if self._supervisor is None:
            return
        states: dict[str, BreakerState] = await self._supervisor.ask(GetBreakers())
        if states != self._saved_breakers:
            await self.journal.save_breakers(
                {tool: dataclasses.asdict(state) for tool, state in states.items()}
            )
            self._saved_breakers = states

    async def _start(self, run_id: str, agent: str, events: Sequence[Event] | None = None) -> bool:
        """Drive a run here if this process can claim it.

        `events`: the run's whole journal, when the caller has just written all of it.
        """
        if run_id in self._active or agent not in self._agent_refs:
            if agent not in self._agent_refs:
                log.warning(
                    "runtime.cannot_resume", run_id=run_id, reason=f"unknown agent {agent!r}"
                )
            return False
        if run_id in self._stalled:  # a journal failure stopped it here: see `wait`
            return False
        if not await self.journal.claim(
            run_id, self.owner, lease_s=self._lease_s, now=self.clock.now()
        ):
            return False
        self._active.add(run_id)
        await self._agent_refs[agent].ask(_StartRun(run_id, events))
        return True

    async def tick(self) -> None:
        """Expire overdue gates and waits, renew leases, and drive runs ready but idle here.

        Called every `poll_interval` seconds; tests call it after moving a `MockClock`.
        Every part runs even when an earlier one fails (each failure is logged as
        ``runtime.tick_failed``).

        Raises:
            Exception: the first part's failure, once every part has run.
        """
        failures = await self._tick()
        if failures:
            raise failures[0]

    async def _tick(self) -> list[Exception]:
        """One tick; returns the failures (logged), so the poller never stops on one."""
        self._require_running()
        now = self.clock.now()
        failures: list[Exception] = []
        parts: list[tuple[str, Callable[[float], Awaitable[list[Exception]]]]] = [
            ("expire_gates", self._expire_gates),
            ("expire_waits", self._expire_waits),
            ("renew_leases", self._renew_leases),
            ("save_breakers", self._tick_save_breakers),
            ("prune", self._prune),
            ("resume", self._tick_resume),
        ]
        for name, part in parts:
            try:
                failed = await part(now)
            except Exception as exc:
                failed = [exc]
            for error in failed:
                log.error("runtime.tick_failed", part=name, error=repr(error))
            failures.extend(failed)
        for waiter in list(self._waiters.values()):
            waiter.wake()  # runs driven elsewhere may have moved on: waiters look again
        return failures

    async def _expire_gates(self, now: float) -> list[Exception]:
        failures: list[Exception] = []
        for gate in await self.journal.gates(status="open"):
            if gate.opened.expires_at <= now:
                try:
                    await self._expire_gate(gate, now)
                except Exception as exc:  # one bad gate must not keep the others open
                    failures.append(exc)
        return failures

    async def _expire_gate(self, gate: GateRecord, now: float) -> bool:
        """Record an overdue gate's expiry (a rejection); False if it was decided already."""
        expired = GateDecided(
            run_id=gate.run_id,
            ts=now,
            gate_id=gate.opened.gate_id,
            call_id=gate.opened.call_id,
            decision="expired",
            note=f"no decision within {self._gate_ttl_s / 3600:g} h",
        )
        if not await self.journal.decide_gate(expired):
            return False
        self._publish(expired)
        return True

    async def _expire_waits(self, now: float) -> list[Exception]:
        failures: list[Exception] = []
        for wait in await self.journal.waits():
            if wait.started.expires_at <= now:
                timed_out = WaitResolved(
                    run_id=wait.run_id,
                    ts=now,
                    call_id=wait.started.call_id,
                    tool=wait.started.tool,
                    key=wait.started.key,
                    timed_out=True,
                )
                try:
                    if await self.journal.resolve_wait(timed_out):
                        self._publish(timed_out)
                except Exception as exc:
                    failures.append(exc)
        return failures

    async def _renew_leases(self, now: float) -> list[Exception]:
        """Extend the leases of the runs driven here, and only while this process holds them.

        A snapshot: runs start and pause while this awaits. A run that paused meanwhile
        left `_active` before releasing its lease, and the renewal only extends a lease
        still held, so a paused run is never claimed again here (after a crash, another
        process would otherwise wait for that lease to run out).
        """
        active = list(self._active)
        if not active:
            return []
        renew = getattr(self.journal, "renew_leases", None)
        if renew is not None:
            await renew(self.owner, lease_s=self._lease_s, now=now, run_ids=active)
            return []
        failures: list[Exception] = []
        for run_id in active:  # a journal without conditional renewal: claim what is left
            if run_id in self._active:
                try:
                    await self.journal.claim(run_id, self.owner, lease_s=self._lease_s, now=now)
                except Exception as exc:
                    failures.append(exc)
        return failures

    async def _tick_save_breakers(self, now: float) -> list[Exception]:
        await self._save_breakers()
        return []

    async def _prune(self, now: float) -> list[Exception]:
        prune = getattr(self.journal, "prune", None)
        if self._retention_s is not None and prune is not None and now - self._pruned_at >= 3600:
            self._pruned_at = now
            pruned = await prune(older_than_s=self._retention_s, now=now)
            if pruned:
                log.info("runtime.pruned", runs=pruned)
        return []

    async def _tick_resume(self, now: float) -> list[Exception]:
        await self.resume()
        return []

    # -- submitting -----------------------------------------------------------------------------

    def route(self, task: Task) -> Route:
        """Choose the sub-agent for a task (rules only, never a model).

        Raises:
            RoutingError: no rule matched; the error carries the explanation.
        """
        if self.router is not None:
            return self.router.route(task)
        if len(self.agents) == 1:
            only = next(iter(self.agents))
            return Route(agent=only, rule="(single agent)", reason="the runtime has one agent")
        raise RoutingError(
            "the runtime has several agents and no router: pass router=Router([...]) or "
            f"name the agent (one of {', '.join(self.agents)})"
        )

    async def submit(
        self,
        task: Task | str,
        *,
        kind: str | None = None,
        tags: Iterable[str] = (),
        tenant: str | None = None,
        agent: str | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Start a run and return at once.

        Args:
            task: a `Task`, or the task's text.
            kind: the task kind, when `task` is text.
            tags: the task tags, when `task` is text.
            tenant: who pays, when `task` is text. Default ``default``.
            agent: skip routing and use this sub-agent.
            run_id: use this id (must be new). Default: a fresh one.

        Returns:
            A handle on the run.

        Raises:
            RoutingError: no rule matched the task.
            UsageError: unknown agent, reused run id, or the runtime is not running.
        """
        self._require_running()
        if isinstance(task, str):
            task = Task(text=task, kind=kind, tags=frozenset(tags), tenant=tenant or "default")
        route: Route | None = None
        if agent is None:
            route = self.route(task)
            agent = route.agent
        if agent not in self.agents:
            raise UsageError(f"no sub-agent named {agent!r}; known: {', '.join(self.agents)}")
        if run_id is None:
            run_id = new_id("run")  # random: no need to ask the journal whether it is used
        elif await self.journal.read(run_id):
            raise UsageError(f"run id {run_id!r} is already in use")
        await self._open_run(
            run_id,
            agent,
            task.text,
            tenant=task.tenant,
            task_kind=task.kind,
            tags=sorted(task.tags),
            rule=route.rule if route else "(named agent)",
            route_reason=route.reason if route else f"agent {agent!r} named by the caller",
        )
        return RunHandle(self, run_id, agent, route)

    async def _open_run(self, run_id: str, agent: str, text: str, **started: Any) -> None:
        """Screen the task, journal the run's start (with the screened text), and drive it.

        A task the screen blocks ends at once, ``failed``, with the verdicts journaled.
        """
        limits = self.agents[agent].limits or self.limits
        screened = self._screen.screen(text, source="task") if self._screen else None
        first = RunStarted(
            run_id=run_id,
            ts=self.clock.now(),
            agent=agent,
            task=screened.text if screened is not None else text,
            limits=limits.model_dump(mode="json"),
            **started,
        )
        # Queued, not awaited: claiming the run below commits it with the claim, in one
        # transaction (a blocked task's run_finished commits it instead).
        await self.journal.append(first, wait=False)
        self._publish(first)
        events: list[Event] = [first]
        for verdict in screened.actions if screened is not None else ():
            event = GuardrailVerdict(
                run_id=run_id,
                ts=self.clock.now(),
                guardrail=verdict.guardrail,
                decision=verdict.decision,
                reason=verdict.reason,
            )
            await self.journal.append(event, wait=False)
            self._publish(event)
            events.append(event)
        block = screened.block if screened is not None else None
        if block is not None:
            finished = RunFinished(
                run_id=run_id,
                ts=self.clock.now(),
                outcome="failed",
                reason=f"the task was blocked by the {block.guardrail} guardrail: {block.reason}",
            )
            await self.journal.append(finished)
            self._publish(finished)
            return
        if not await self._start(run_id, agent, events):
            await self.journal.flush()  # not driven here; the run must still be durable

    async def run(
        self,
        task: Task | str,
        *,
        kind: str | None = None,
        tags: Iterable[str] = (),
        tenant: str | None = None,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run a task until it finishes or waits for a person (see `submit` for arguments).

        A run stopped by a limit is not an exception: look at `RunResult.outcome`. A run
        waiting at a gate returns with ``status == "waiting"`` and its `gates`; after
        `approve` or `reject`, `wait` for it again.
        """
        handle = await self.submit(task, kind=kind, tags=tags, tenant=tenant, agent=agent)
        return await handle.result(timeout=timeout)

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
                waiter = self._waiters.setdefault(run_id, _Waiter())
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
            if not wait.key.startswith("child:") or depth > 8:
                continue
            child_id = wait.key.removeprefix("child:")
            if child_id in self._active:
                return False
            child = RunState.fold(child_id, await self.journal.read(child_id))
            if child.done or not await self._settled(child, depth + 1):
                return False
        return True

    async def _result(self, run_id: str, events: Sequence[Event], state: RunState) -> RunResult:
        finished = state.finished
        gates: tuple[GateRecord, ...] = ()
        if finished is None:
            gates = tuple(await self.journal.gates(status="open", run_id=run_id))
        return RunResult(
            run_id=run_id,
            agent=state.agent,
            status="finished" if finished is not None else "waiting" if state.paused else "running",
            outcome=finished.outcome if finished else None,
            output=finished.output if finished else state.last_text or None,
            reason=finished.reason if finished else "",
            steps=state.tool_calls,
            model_calls=state.model_calls,
            tokens=state.tokens,
            cost_usd=state.cost_usd,
            duration_s=finished.duration_s if finished else 0.0,
            events=events,
            gates=gates,
        )

    async def cancel(self, run_id: str, *, reason: str = "cancelled by request") -> bool:
        """Stop a run now, running or waiting. Returns False when it had already ended."""
        self._require_running()
        assert self._supervisor is not None
        if await self._supervisor.ask(StopRun(run_id, reason=reason)):
            return True
        state = RunState.fold(run_id, await self.journal.read(run_id))
        if state.done or not state.paused or run_id in self._active:
            return False
        finished = RunFinished(
            run_id=run_id,
            ts=self.clock.now(),
            outcome="cancelled",
            output=state.last_text or None,
            reason=reason,
            steps=state.tool_calls,
            model_calls=state.model_calls,
            tokens=state.tokens,
            cost_usd=state.cost_usd,
        )
        await self.journal.append(finished)
        self._publish(finished)
        self._wake_waiter(run_id)
        return True

    # -- workflows -------------------------------------------------------------------------------

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
        await self.journal.append(started)
        self._publish(started)
        await self._start(run_id, registered.agent_name, [started])
        return RunHandle(self, run_id, registered.agent_name, None)

    async def run_workflow(
        self, workflow: Workflow | str, input: Any = None, *, tenant: str = "default"
    ) -> RunResult:
        """Run a workflow until it finishes or pauses; its output is the last step's output."""
        handle = await self.submit_workflow(workflow, input, tenant=tenant)
        return await handle.result()

    async def _submit_child(
        self, *, run_id: str, agent: str, task: str, parent_run_id: str, tenant: str
    ) -> None:
        if await self.journal.read(run_id):
            return  # submitted before a crash: it resumes by itself
        # Sibling runs share the workflow's budget: carry what the finished ones spent.
        used_tokens, used_cost = 0, 0.0
        for event in await self.journal.read(parent_run_id):
            if isinstance(event, StepStarted) and event.child_run_id not in (None, run_id):
                sibling = await self.journal.read(event.child_run_id)
                if sibling and isinstance(sibling[-1], RunFinished):
                    used_tokens += sibling[-1].tokens
                    used_cost += sibling[-1].cost_usd
        await self._open_run(
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

    async def _wait_child(self, run_id: str) -> tuple[str, str | None, str | None, str]:
        result = await self.wait(run_id)
        return result.status, result.outcome, result.output, result.reason

    async def _on_workflow_done(self, run_id: str) -> None:
        self._active.discard(run_id)
        with anyio.CancelScope(shield=True):
            await self.journal.release(run_id, self.owner)
        self._wake_waiter(run_id)
        await self._wake(run_id)  # woken while pausing: pick it straight back up

    # -- people and webhooks -------------------------------------------------------------------

    async def pending_approvals(self) -> list[GateRecord]:
        """Return every open gate that can still be decided, oldest first.

        A gate past its deadline is left out even before the poller records its expiry:
        deciding it would be refused (`GateExpired`).
        """
        now = self.clock.now()
        return [g for g in await self.journal.gates(status="open") if g.opened.expires_at > now]

    async def approve(
        self,
        gate_id: str,
        *,
        by: str,
        note: str = "",
        args: Mapping[str, Any] | None = None,
    ) -> GateRecord:
        """Approve a gate; the run resumes and the call runs (with `args` if given).

        Args:
            gate_id: the gate.
            by: who approves (required; recorded in the journal).
            note: why, for the audit trail.
            args: edited arguments, validated against the tool's schema again.

        Returns:
            The decided gate.

        Raises:
            GateExpired: the gate's deadline has passed (whether or not anyone recorded
                the expiry yet; this call records it). An expired gate is a rejection.
            UsageError: unknown gate, already decided, no approver named, or edited
                arguments that break the tool's schema (each violation listed).
        """
        return await self._decide(gate_id, "approved", by=by, note=note, args=args)

    async def reject(self, gate_id: str, *, by: str, reason: str) -> GateRecord:
        """Reject a gate; the model is told, with the reason, and can adapt or give up.

        Raises:
            GateExpired: the gate's deadline has passed (this call records the expiry).
            UsageError: unknown gate, already decided, or no approver or reason given.
        """
        if not reason.strip():
            raise UsageError("a rejection needs a reason: the model is told it")
        return await self._decide(gate_id, "rejected", by=by, note=reason, args=None)

    async def _decide(
        self,
        gate_id: str,
        decision: Literal["approved", "rejected"],
        *,
        by: str,
        note: str,
        args: Mapping[str, Any] | None,
    ) -> GateRecord:
        if not by.strip():
            raise UsageError("say who decides: by= is recorded in the audit trail")
        record = await self.journal.gate(gate_id)
        if record is None:
            raise UsageError(f"no gate {gate_id!r}")
        if record.decided is not None:
            raise _already_decided(record)
        if record.opened.expires_at <= self.clock.now():
            raise await self._refuse_expired(record)
        if args is not None:
            agent_name = await self._agent_of(record.run_id)
            tool = self._tool_for(agent_name, record.opened.tool)
            violations = tool.validate(args) if tool is not None else []
            if violations:
                lines = "; ".join(str(v) for v in violations)
                raise UsageError(
                    f"edited arguments for {record.opened.tool!r} are invalid: {lines}"
                )
        event = GateDecided(
            run_id=record.run_id,
            ts=self.clock.now(),
            gate_id=gate_id,
            call_id=record.opened.call_id,
            decision=decision,
            by=by,
            note=note,
            arguments=dict(args) if args is not None else None,
        )
        try:
            decided = await self.journal.decide_gate(event)  # checks the deadline atomically
        except GateExpired:
            raise await self._refuse_expired(record) from None
        if not decided:
            current = await self.journal.gate(gate_id)
            raise _already_decided(current) if current else UsageError(f"no gate {gate_id!r}")
        self._publish(event)
        if self._system is not None:
            await self._wake(record.run_id)
        return GateRecord(record.run_id, record.opened, event)

    async def _refuse_expired(self, record: GateRecord) -> GateExpired:
        """A decision came too late: record the expiry (if nobody has), and say so."""
        try:
            await self._expire_gate(record, max(self.clock.now(), record.opened.expires_at))
        except Exception as exc:  # the refusal stands; the poller expires it next time
            log.error("runtime.expire_failed", gate_id=record.opened.gate_id, error=repr(exc))
        return gate_expired(record.opened.gate_id, record.run_id, record.opened.expires_at)

    async def deliver(self, key: str, payload: Any = None) -> str | None:
        """Deliver an external event (a webhook) to the run waiting on `key`.

        A delivery that arrives before the wait starts is kept for it.

        Returns:
            The id of the run woken, or None when none waits yet.
        """
        run_id = await self.journal.deliver(key, payload, now=self.clock.now())
        if run_id is not None and self._system is not None:
            await self._wake(run_id)
        return run_id

    async def _agent_of(self, run_id: str) -> str:
        events = await self.journal.read(run_id)
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        return started.agent if started else ""

    def _tool_for(self, agent_name: str, tool_name: str) -> Tool | None:
        agent = self.agents.get(agent_name)
        if agent is None:
            return None
        tool = agent.tools.get(tool_name)
        if tool is None:  # a fallback offered while its tool's breaker was open
            tool = next(
                (
                    t.fallback
                    for t in agent.tools.values()
                    if t.fallback and t.fallback.name == tool_name
                ),
                None,
            )
        return tool

    async def _wake(self, run_id: str) -> None:
        """A gate was decided or an event delivered: drive the run if it is ready.

        A run whose agent this runtime does not have is left to a process that has it
        (its poller, or its `resume`, finds the run ready).
        """
        state = RunState.fold(run_id, await self.journal.read(run_id))
        if state.done or state.paused:
            return
        if state.agent not in self._agent_refs:
            log.info("runtime.left_to_others", run_id=run_id, agent=state.agent)
            return
        await self._start(run_id, state.agent)

    # -- observing -----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` with every event as it happens; returns an unsubscribe function.

        The callback runs inline: keep it fast. An exception in it is logged and ignored.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as exc:
                log.error("runtime.subscriber_failed", error=repr(exc), kind=event.kind)

    async def events(self, run_id: str) -> list[Event]:
        """Return a run's events from the journal."""
        return await self.journal.read(run_id)

    async def usage(self, run_id: str) -> UsageSnapshot | None:
        """Return a running run's consumption against its limits (None when not running)."""
        self._require_running()
        assert self._supervisor is not None
        snapshot: UsageSnapshot | None = await self._supervisor.ask(GetUsage(run_id))
        return snapshot

    async def tenant_usage(self, tenant: str) -> TenantUsage:
        """Return a tenant's usage today against its daily budget."""
        self._require_running()
        assert self._supervisor is not None
        usage: TenantUsage = await self._supervisor.ask(GetTenantUsage(tenant))
        return usage

    async def breaker_states(self) -> dict[str, BreakerState]:
        """Return the state of every tool breaker that has seen a failure."""
        self._require_running()
        assert self._supervisor is not None
        states: dict[str, BreakerState] = await self._supervisor.ask(GetBreakers())
        return states

    # -- internals -------------------------------------------------------------------------------

    def _send_alert(self, verdict: Verdict, call: ProposedCall) -> None:
        if self._alerter is None:
            return
        try:
            self._alerter.tell_nowait((verdict, call))
        except CorralError as exc:  # full or stopped: never block or fail the run for it
            log.error("runtime.alert_dropped", error=repr(exc), tool=call.tool)

    def _wake_waiter(self, run_id: str, finished: RunState | None = None) -> None:
        waiter = self._waiters.get(run_id)
        if waiter is not None:
            waiter.wake(finished)

    async def _on_finished(self, state: RunState) -> None:
        # No release: recording the end of the run already cleared its lease.
        self._active.discard(state.run_id)
        self._wake_waiter(state.run_id, state)
        if state.parent_run_id is not None:  # a workflow step: its workflow may be waiting
            await self.deliver(f"child:{state.run_id}")

    async def _on_paused(self, state: RunState) -> None:
        self._active.discard(state.run_id)
        with anyio.CancelScope(shield=True):
            await self.journal.release(state.run_id, self.owner)
        self._wake_waiter(state.run_id)
        # Decided or delivered while we were pausing: pick it straight back up.
        await self._wake(state.run_id)

    async def _on_journal_failed(self, run_id: str, error: JournalError) -> None:
        """A run's events could not be journaled: stop driving it here, tell its waiters.

        The run stays unfinished in the journal (even its end could not be written). This
        runtime does not drive it again: each attempt would ask the model again while the
        disk stays full. A Runtime started on the journal later resumes it.
        """
        self._active.discard(run_id)
        self._stalled[run_id] = error
        log.error("runtime.journal_failed", run_id=run_id, error=str(error))
        self._wake_waiter(run_id)
        if error.sqlite_error.startswith("SQLITE_BUSY"):
            return  # releasing would wait for the lock again: the lease runs out instead
        with anyio.CancelScope(shield=True), contextlib.suppress(JournalError):
            await self.journal.release(run_id, self.owner)  # let another process take it

    async def _fail_crashed(self, run_id: str, error: BaseException) -> None:
        """End a run whose actor crashed more often than its restart policy allows."""
        with anyio.CancelScope(shield=True):
            try:
                state = RunState.fold(run_id, await self.journal.read(run_id))
                if not state.done:
                    finished = RunFinished(
                        run_id=run_id,
                        ts=self.clock.now(),
                        outcome="failed",
                        output=state.last_text or None,
                        reason=f"the run crashed repeatedly and was given up: {error!r}",
                        steps=state.tool_calls,
                        model_calls=state.model_calls,
                        tokens=state.tokens,
                        cost_usd=state.cost_usd,
                        duration_s=max(self.clock.now() - state.active_since, 0.0),
                    )
                    await self.journal.append(finished)
                    state.apply(finished)
                    self._publish(finished)
            except JournalError as failed:
                told = JournalError(
                    f"{failed}; it was recording that the run crashed repeatedly: {error!r}",
                    path=failed.path,
                    sqlite_error=failed.sqlite_error,
                    run_id=run_id,
                )
                told.__cause__ = failed
                await self._on_journal_failed(run_id, told)
                return
            await self._on_finished(state)


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


def _already_decided(record: GateRecord) -> UsageError:
    decided = record.decided
    if decided is None:
        return UsageError(f"gate {record.opened.gate_id} was already decided")
    if decided.decision == "expired":
        return gate_expired(record.opened.gate_id, record.run_id, record.opened.expires_at)
    who = f" by {decided.by}" if decided.by else ""
    return UsageError(f"gate {record.opened.gate_id} was already {decided.decision}{who}")


def _run_actor(
    agent: SubAgent, services: RunServices, run_id: str, events: Sequence[Event] | None
) -> RunActor:
    return RunActor(agent, run_id, services, events=events)


def _workflow_actor(
    workflow: Workflow, host: Runtime, run_id: str, events: Sequence[Event] | None
) -> WorkflowActor:
    return WorkflowActor(workflow, run_id, host, events=events)


def _all_steps(workflow: Workflow) -> list[Step]:
    steps: list[Step] = []
    for step in workflow.steps:
        steps.append(step)
        if isinstance(step, FanOut):
            steps.extend(step.branches)
    return steps
