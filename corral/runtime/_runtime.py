"""The embedded runtime: wiring, start and stop, routing and submitting tasks.

`Runtime` is assembled from one class per concept, each in its own module:

* `RunDriving` (``_driving``): which runs this process drives, and cancelling one;
* `RunResults` (``_results``): results, handles and waiting;
* `WorkflowRuns` (``_workflows``): submitting workflows, and the `WorkflowHost` they use;
* `Approvals` (``_approvals``): the pending queue, approve and reject;
* `Maintenance` (``_maintenance``): the poller's tick, expiries, leases, retention,
  breaker and tenant state across restarts;

and its options are value objects (``_options``): `Guards`, `Alerts`, `Durability`,
`Tenants`. Alerts are sent by an actor of their own (``_alerts``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .._clock import Clock, SystemClock
from .._loop import require_asyncio
from .._task import Task, new_id
from .._timeout import abandoned_calls
from ..actors import ActorSystem, RestartPolicy
from ..errors import ConfigError, JournalError, RoutingError, UsageError
from ..events import Event, GuardrailVerdict, RunFinished, RunStarted
from ..guardrails import CheckChain, ProposedCall, Verdict
from ..memory._episodes import EpisodeStore, episodes_for
from ..models import Usage
from ..models._pricing import require_price
from ..router import Route, Router
from ..store import Journal, MemoryJournal
from ..subagents import RunActor, RunServices, SubAgent
from ..supervisor import BreakerPolicy, Limits, Supervisor
from ..workflows import AgentStep, FanOut, Step, Workflow, WorkflowActor
from ._alerts import Alerter, drain, send_alert
from ._base import log
from ._driving import RunParent
from ._maintenance import Maintenance, Poller
from ._options import Alerts, Durability, Guards, Tenants
from ._results import RunHandle, RunResult
from ._workflows import RuntimeHost, WorkflowRuns

if TYPE_CHECKING:
    from .._settings import Settings

__all__ = ["Runtime"]

_PRUNE_EPISODES_EVERY_S = 3600.0
"""How often the maintenance tick deletes episodes past their agent's retention."""


class Runtime(Maintenance, WorkflowRuns):
    """Routes tasks to sub-agents and runs them under one supervisor.

    Use it as an async context manager::

        async with Runtime(agents=[billing], router=router) as runtime:
            result = await runtime.run("Reconcile Acme's unpaid invoices", kind="billing")

    Args:
        agents: the sub-agents (names must be unique).
        router: rules choosing an agent for each task. Optional with a single agent.
        workflows: workflows this runtime can run and resume.
        limits: default per-run limits (an agent's own `limits` wins).
        breakers: circuit-breaker policy for every tool.
        journal: where events go. Default: in memory (use the SQLite store for durability).
        clock: time source. Default: the system clock.
        guards: what checks every task and every tool call (approval gates, policies,
            your own checks, the task and result screens). Default `Guards()`.
        tenants: daily budgets by tenant, shared by all of a tenant's runs.
        alerts: where calls refused for permission or policy are reported.
        durability: leases, polling, gate deadlines, resume on start, retention.
        cost: cost in USD of a model call's usage, by model name. Default: no cost.
            Every model under a USD budget (``max_cost_usd``, a tenant's
            ``daily_cost_usd``) must have a known price, or the runtime refuses to start.
        seed: seed for retry jitter, for repeatable runs.

    Raises:
        UsageError: duplicate agent names or no agent.
        ConfigError: routes to agents that do not exist, a workflow step naming an agent
            the runtime lacks, or a USD budget over a model whose price is unknown.
    """

    def __init__(
        self,
        *,
        agents: Sequence[SubAgent],
        router: Router | None = None,
        workflows: Sequence[Workflow] = (),
        limits: Limits | None = None,
        breakers: BreakerPolicy | None = None,
        journal: Journal | None = None,
        clock: Clock | None = None,
        guards: Guards | None = None,
        tenants: Tenants | None = None,
        alerts: Alerts | None = None,
        durability: Durability | None = None,
        cost: Callable[[str, Usage], float] | None = None,
        seed: int | None = None,
    ) -> None:
        names = [a.name for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"duplicate sub-agent names: {', '.join(duplicates)}")
        if not agents:
            raise UsageError("a Runtime needs at least one sub-agent")
        self.agents = {a.name: a for a in agents}
        self.workflows = {w.name: w for w in workflows}
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
        self.journal = journal if journal is not None else MemoryJournal()
        self.clock = clock or SystemClock()
        self.guards = guards or Guards()
        self.tenants = tenants or Tenants()
        self.alerts = alerts or Alerts()
        self.durability = durability or Durability()
        self.owner = self.durability.owner or new_id("owner")
        self._started_at: float | None = None
        tenant_usd = self.tenants.usd_budgets()
        for agent in agents:  # a USD budget over an unpriced model would count $0: refuse it
            run_usd = (agent.limits or self.limits).max_cost_usd
            usd = [f"max_cost_usd=${run_usd:g}"] if run_usd is not None else []
            if usd or tenant_usd:
                require_price(cost, agent.model.name, agent=agent.name, budgets=usd + tenant_usd)
        self._cost = cost or (lambda model, usage: 0.0)
        self._rng = random.Random(seed)
        self._checks = CheckChain(self.guards.checks).checks  # refuses an object without check()
        self._system = None
        self._supervisor = None
        self._alerter = None
        self._agent_refs = {}
        self._active = set()
        self._stalled = {}
        self._waiters = {}
        self._subscribers = []
        self._fatal = None
        self._saved_breakers = {}
        self._pruned_at = float("-inf")
        self._owned_journal = None
        self._episodes: EpisodeStore | None = None
        """Episodic memory, for the agents that use it (opened on entry)."""
        self._owned_episodes = False
        self._episodes_pruned_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings | None = None, /, **options: Any) -> Runtime:
        """Build a runtime from `Settings`, read by the same loader as the ``corral`` command.

        The settings give the runtime's default `limits`, its `breakers`, its `durability`
        and its journal (``db``); every other option, and any of those given explicitly,
        comes from `options`, which win::

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
        # Imported here: the settings hold a `Durability`, so they import this package.
        from .._settings import load_settings
        from ..store import journal_from_url

        if settings is None:
            settings = load_settings()
        options.setdefault("limits", settings.limits)
        options.setdefault("breakers", settings.breakers)
        options.setdefault("durability", settings.durability)
        if "journal" in options:
            return cls(**options)
        runtime = cls(**options, journal=journal_from_url(settings.db))
        runtime._owned_journal = runtime.journal
        return runtime

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        require_asyncio("Runtime")
        if self._owned_journal is not None:
            await self._owned_journal.__aenter__()
        system = ActorSystem(name="corral", clock=self.clock)
        try:
            await system.__aenter__()
        except BaseException:
            await self._close_owned_journal()
            raise
        try:
            self._system = system
            await self._spawn_actors(system)
            await self._restore_supervisor()
            if self.durability.resume:
                await self.resume()
            interval = self.durability.poll_interval_s
            if interval is not None:
                self._started_at = self.clock.now()
                await self._heartbeat(self._started_at)  # listed by `corral workers` at once
                await system.spawn(lambda: Poller(self, interval), name="poller")
        except BaseException:
            try:
                await system.__aexit__(None, None, None)
            finally:
                self._system = None
                await self._close_owned_journal()
            raise
        return self

    async def _spawn_actors(self, system: ActorSystem) -> None:
        """The supervisor, the alerter, and one parent per sub-agent and workflow."""
        clock, breakers = self.clock, self.breakers
        self._supervisor = await system.spawn(
            lambda: Supervisor(clock=clock, breakers=breakers),
            name="supervisor",
            restart=RestartPolicy(max_restarts=10, within=60, backoff=0.0),
        )
        if self.alerts.enabled:
            alerts = self.alerts
            self._alerter = await system.spawn(lambda: Alerter(alerts), name="alerter")
        if self._episodes is None and any(a.episodes is not None for a in self.agents.values()):
            self._episodes, self._owned_episodes = episodes_for(self.journal)
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
            approval=self.guards.approval_policy(),
            provenance=self.guards.provenance,
            policies=tuple(self.guards.policies),
            checks=self._checks,
            result_screen=self.guards.result_screen,
            alert=self._send_alert if self._alerter is not None else None,
            gate_ttl_s=self.durability.gate_ttl_s,
            commit_each_step=self.durability.mode == "step",
            episodes=self._episodes,
            on_fatal=self._on_fatal,
            on_journal_failed=self._on_journal_failed,
            tenant_limits=self.tenants.limits_for,
            owner=self.owner,
            lease_s=self.durability.lease_s,
        )
        for name, agent in self.agents.items():
            run_actor = partial(_run_actor, agent, self._services)
            self._agent_refs[name] = await system.spawn(
                partial(RunParent, self, run_actor, agent.restart), name=f"agent:{name}"
            )
        host = RuntimeHost(self)
        for workflow in self.workflows.values():
            workflow_actor = partial(_workflow_actor, workflow, host)
            self._agent_refs[workflow.agent_name] = await system.spawn(
                partial(RunParent, self, workflow_actor, RestartPolicy(backoff=0.1)),
                name=workflow.agent_name,
            )

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
                with anyio.move_on_after(self.alerts.drain_s, shield=True):
                    await drain(self._alerter, self.alerts)
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
            self._wake_all_waiters()
            if self._started_at is not None:  # it sent heartbeats: leave the registry
                self._started_at = None
                with anyio.move_on_after(5, shield=True):
                    try:
                        await self.journal.retire(self.owner)
                    except JournalError as exc:  # it drops out of the list by itself
                        log.error("runtime.retire_failed", error=str(exc))
            episodes, self._episodes = self._episodes, None
            if episodes is not None and self._owned_episodes:
                await episodes.close()
            await self._close_owned_journal()
            stuck = abandoned_calls()
            if stuck:
                log.warning(
                    "runtime.abandoned_calls_still_running",
                    calls=sorted(set(stuck)),
                    hint="they timed out and ignored cancellation; nothing waits for them",
                )

    async def _prune(self, now: float) -> None:
        """Retention on the maintenance tick: the journal's, then each agent's episodes'."""
        try:
            await super()._prune(now)
        finally:
            await self._prune_episodes(now)

    async def _prune_episodes(self, now: float) -> None:
        store = self._episodes
        if store is None or now - self._episodes_pruned_at < _PRUNE_EPISODES_EVERY_S:
            return
        self._episodes_pruned_at = now
        for name, agent in self.agents.items():
            days = agent.episodes.retention_days if agent.episodes is not None else None
            if days is not None:
                pruned = await store.prune(before=now - days * 86_400, agent=name)
                if pruned:
                    log.info("memory.episodes_pruned", agent=name, episodes=pruned)

    def _send_alert(self, verdict: Verdict, call: ProposedCall) -> None:
        if self._alerter is not None:
            send_alert(self._alerter, verdict, call)

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
        submission: Mapping[str, str] | None = None,
    ) -> RunHandle:
        """Start a run and return at once.

        Args:
            task: a `Task`, or the task's text.
            kind: the task kind, when `task` is text.
            tags: the task tags, when `task` is text.
            tenant: who pays, when `task` is text. Default ``default``.
            agent: skip routing and use this sub-agent.
            run_id: use this id (must be new). Default: a fresh one.
            submission: who submitted it and how (``by``, ``idempotency_key``,
                ``digest``), journaled on its ``run_started`` (the service sets it).

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
            submission=dict(submission or {}),
        )
        return RunHandle(self, run_id, agent, route)

    async def _open_run(self, run_id: str, agent: str, text: str, **started: Any) -> None:
        """Screen the task, journal the run's start (with the screened text), and drive it.

        A task the screen blocks ends at once, ``failed``, with the verdicts journaled.
        """
        limits = self.agents[agent].limits or self.limits
        screen = self.guards.screen
        screened = screen.screen(text, source="task") if screen is not None else None
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
        events: list[Event] = [await self._record(first, wait=False)]
        for verdict in screened.actions if screened is not None else ():
            event = GuardrailVerdict(
                run_id=run_id,
                ts=self.clock.now(),
                guardrail=verdict.guardrail,
                decision=verdict.decision,
                reason=verdict.reason,
            )
            events.append(await self._record(event, wait=False))
        block = screened.block if screened is not None else None
        if block is not None:
            finished = RunFinished(
                run_id=run_id,
                ts=self.clock.now(),
                outcome="failed",
                reason=f"the task was blocked by the {block.guardrail} guardrail: {block.reason}",
            )
            await self._record(finished)
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

        A run stopped by a limit is not an exception: look at `RunResult.outcome`, or call
        `RunResult.raise_for_outcome`. A run waiting at a gate returns with
        ``status == "waiting"`` and its `gates`; after `approve` or `reject`, `wait` for it
        again.
        """
        handle = await self.submit(task, kind=kind, tags=tags, tenant=tenant, agent=agent)
        return await handle.result(timeout=timeout)


def _run_actor(
    agent: SubAgent, services: RunServices, run_id: str, events: Sequence[Event] | None
) -> RunActor:
    return RunActor(agent, run_id, services, events=events)


def _workflow_actor(
    workflow: Workflow, host: RuntimeHost, run_id: str, events: Sequence[Event] | None
) -> WorkflowActor:
    return WorkflowActor(workflow, run_id, host, events=events)


def _all_steps(workflow: Workflow) -> list[Step]:
    steps: list[Step] = []
    for step in workflow.steps:
        steps.append(step)
        if isinstance(step, FanOut):
            steps.extend(step.branches)
    return steps
