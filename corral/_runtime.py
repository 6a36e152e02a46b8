"""The embedded runtime: routes tasks to sub-agents and supervises their runs."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from ._clock import Clock, SystemClock
from ._task import Task, new_id
from .actors import Actor, ActorRef, ActorSystem, RestartPolicy
from .errors import RoutingError, UsageError
from .events import Event, Outcome, RunFinished, RunStarted
from .models import Usage
from .router import Route, Router
from .store import Journal, MemoryJournal
from .subagents import RunActor, RunServices, RunState, SubAgent
from .supervisor import (
    BreakerPolicy,
    BreakerState,
    GetBreakers,
    GetTenantUsage,
    GetUsage,
    Limits,
    StopRun,
    Supervisor,
    TenantLimits,
    TenantUsage,
    UsageSnapshot,
)

__all__ = ["RunHandle", "RunResult", "Runtime"]

log = structlog.get_logger("corral.runtime")


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended, with its full event trail."""

    run_id: str
    agent: str
    outcome: Outcome
    """``completed``, ``failed``, ``stopped_budget``, ``stopped_steps``, ``stopped_loop``,
    ``stopped_breaker`` or ``cancelled``."""
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
    events: tuple[Event, ...]
    """Every event of the run, in order."""

    @property
    def ok(self) -> bool:
        """True when the run completed with a final answer."""
        return self.outcome == "completed"


@dataclass(frozen=True, slots=True)
class _StartRun:
    run_id: str


class _Waiter:
    __slots__ = ("event", "finished")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.finished: RunFinished | None = None


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


class _AgentActor(Actor):
    """Parent of one sub-agent's run actors: starts them and handles those that give up."""

    def __init__(self, runtime: Runtime, agent: SubAgent) -> None:
        self._runtime = runtime
        self._agent = agent

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _StartRun):
            runtime, agent = self._runtime, self._agent
            await self.spawn(
                lambda: RunActor(agent, message.run_id, runtime._services),
                name=message.run_id,
                restart=agent.restart,
            )
            return None
        return await super().receive(message)

    async def child_failed(self, child: ActorRef, error: BaseException) -> None:
        run_id = child.name.rsplit("/", 1)[-1]
        await self._runtime._fail_crashed(run_id, error)


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
        seed: seed for retry jitter, for repeatable runs.
        resume: on start, continue every unfinished run found in the journal. Default True.
        tenants: daily budgets by tenant, shared by all of a tenant's runs.
        default_tenant_limits: daily budget of any tenant not in `tenants`. Default: none.

    Raises:
        ConfigError: duplicate agent names, or routes to agents that do not exist.
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
    ) -> None:
        names = [a.name for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"duplicate sub-agent names: {', '.join(duplicates)}")
        if not agents:
            raise UsageError("a Runtime needs at least one sub-agent")
        self.agents: Mapping[str, SubAgent] = {a.name: a for a in agents}
        if router is not None:
            router.validate(self.agents)
        self.router = router
        self.limits = limits or Limits()
        self.breakers = breakers or BreakerPolicy()
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.clock: Clock = clock or SystemClock()
        self._cost = cost or (lambda model, usage: 0.0)
        self._rng = random.Random(seed)
        self._resume = resume
        self._tenants = dict(tenants or {})
        self._default_tenant_limits = default_tenant_limits
        self._subscribers: list[Callable[[Event], None]] = []
        self._waiters: dict[str, _Waiter] = {}
        self._system: ActorSystem | None = None
        self._agent_refs: dict[str, ActorRef] = {}
        self._supervisor: ActorRef | None = None
        self._services: RunServices

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        system = ActorSystem(name="corral")
        await system.__aenter__()
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
                rng=self._rng,
            )
            for name, agent in self.agents.items():
                self._agent_refs[name] = await system.spawn(
                    lambda agent=agent: _AgentActor(self, agent),  # type: ignore[misc]
                    name=f"agent:{name}",
                )
            if self._resume:
                await self.resume()
        except BaseException:
            await system.__aexit__(None, None, None)
            self._system = None
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        system, self._system = self._system, None
        if system is not None:
            await system.__aexit__(*exc_info)
        for waiter in self._waiters.values():
            waiter.event.set()

    def _require_running(self) -> ActorSystem:
        if self._system is None:
            raise UsageError("the Runtime is not running; use `async with Runtime(...)`")
        return self._system

    async def resume(self) -> list[str]:
        """Continue every unfinished run in the journal; returns their ids."""
        self._require_running()
        resumed: list[str] = []
        for run_id in await self.journal.unfinished_runs():
            if run_id in self._waiters:
                continue
            events = await self.journal.read(run_id)
            started = next((e for e in events if isinstance(e, RunStarted)), None)
            if started is None or started.agent not in self._agent_refs:
                log.warning("runtime.cannot_resume", run_id=run_id, reason="unknown agent")
                continue
            self._waiters[run_id] = _Waiter()
            await self._agent_refs[started.agent].ask(_StartRun(run_id))
            resumed.append(run_id)
        return resumed

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
        run_id = run_id or new_id("run")
        if run_id in self._waiters or await self.journal.read(run_id):
            raise UsageError(f"run id {run_id!r} is already in use")
        limits = self.agents[agent].limits or self.limits
        started = RunStarted(
            run_id=run_id,
            ts=self.clock.now(),
            agent=agent,
            task=task.text,
            task_kind=task.kind,
            tags=sorted(task.tags),
            tenant=task.tenant,
            rule=route.rule if route else "(named agent)",
            route_reason=route.reason if route else f"agent {agent!r} named by the caller",
            limits=limits.model_dump(mode="json"),
        )
        await self.journal.append(started)
        self._publish(started)
        self._waiters[run_id] = _Waiter()
        await self._agent_refs[agent].ask(_StartRun(run_id))
        return RunHandle(self, run_id, agent, route)

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
        """Run a task to its end and return the result (see `submit` for the arguments).

        A run stopped by a limit is not an exception: look at `RunResult.outcome`.
        """
        handle = await self.submit(task, kind=kind, tags=tags, tenant=tenant, agent=agent)
        return await handle.result(timeout=timeout)

    async def wait(self, run_id: str, *, timeout: float | None = None) -> RunResult:
        """Wait for a run of this runtime to end and return its result.

        Raises:
            UsageError: the run is unknown to this runtime.
            TimeoutError: it did not end within `timeout`.
        """
        waiter = self._waiters.get(run_id)
        if waiter is None:
            events = await self.journal.read(run_id)
            if events and isinstance(events[-1], RunFinished):
                return self._result(run_id, events)
            raise UsageError(f"run {run_id!r} is not running in this runtime")
        with anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
            await waiter.event.wait()
        events = await self.journal.read(run_id)
        if waiter.finished is None and not (events and isinstance(events[-1], RunFinished)):
            raise UsageError(f"run {run_id!r} did not finish: the runtime stopped first")
        self._waiters.pop(run_id, None)
        return self._result(run_id, events)

    @staticmethod
    def _result(run_id: str, events: list[Event]) -> RunResult:
        started = next(e for e in events if isinstance(e, RunStarted))
        finished = events[-1]
        assert isinstance(finished, RunFinished)
        return RunResult(
            run_id=run_id,
            agent=started.agent,
            outcome=finished.outcome,
            output=finished.output,
            reason=finished.reason,
            steps=finished.steps,
            model_calls=finished.model_calls,
            tokens=finished.tokens,
            cost_usd=finished.cost_usd,
            duration_s=finished.duration_s,
            events=tuple(events),
        )

    async def cancel(self, run_id: str, *, reason: str = "cancelled by request") -> bool:
        """Stop a run now. Returns False when it was not running."""
        self._require_running()
        assert self._supervisor is not None
        stopped: bool = await self._supervisor.ask(StopRun(run_id, reason=reason))
        return stopped

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

    def _on_finished(self, state: RunState) -> None:
        waiter = self._waiters.get(state.run_id)
        if waiter is not None:
            waiter.finished = state.finished
            waiter.event.set()

    async def _fail_crashed(self, run_id: str, error: BaseException) -> None:
        """End a run whose actor crashed more often than its restart policy allows."""
        with anyio.CancelScope(shield=True):
            state = RunState.fold(run_id, await self.journal.read(run_id))
            if state.done:
                self._on_finished(state)
                return
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
                duration_s=max(self.clock.now() - state.started_at, 0.0),
            )
            await self.journal.append(finished)
            state.apply(finished)
            self._publish(finished)
            self._on_finished(state)

