"""Prometheus metrics: an event subscriber that counts what runs do, and gauges read at scrape.

`Metrics` turns the run events the runtime publishes into counters and histograms (tokens
and cost per run, runs by outcome, steps per run, tool calls by outcome, guardrail
verdicts, gate wait time, model calls, calls in doubt after a crash by how they were
settled, status probes by answer), and `Metrics.refresh` reads what only the runtime
knows at scrape time (breaker states, tenant budgets, mailbox depths) into gauges.

prometheus-client is imported when a `Metrics` is built, never by ``import corral``: it
is the optional ``server`` extra. Each `Metrics` has its own `CollectorRegistry` unless
given one, never the process-wide default, so two runtimes in one process (or tests) do
not share counters.

Label values are bounded, since every new value is a new time series kept forever:
agents, routing rules, guardrails and decisions come from configuration and code; tool
names from the registry, except a name the model made up, which is counted as
``(unknown)``; models from the provider's answer. Run ids and tenants never label an
event metric; tenants label the budget gauges only, for at most `max_tenants` of them.

A call in doubt (journaled as started, with no outcome, when the process stopped) is
settled once, and counted once in ``corral_in_doubt_calls_total`` when it is: by its
status probe (a `CallReconciled` answering ``done`` or ``not_done``), by running an
idempotent tool again (``retried``), or by a person at a gate for it. Such a gate is
known from its `GateOpened.doubt`, remembered with the run's other open gates; a gate
whose opening this process never saw (it opened before a restart of this process) is
recognised only when its decision says the call ``happened`` (only a doubt gate can say
so), and is then counted under the tool ``(unknown)``; its other decisions are counted
as ordinary gate decisions, not as calls in doubt. A call in doubt again after a second
crash (run again, or its probe asked again) is counted again: each time is a settlement.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .._log import get_logger
from ..errors import ConfigError
from ..events import (
    CallReconciled,
    Event,
    GateDecided,
    GateOpened,
    GuardrailVerdict,
    ModelCalled,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallRejected,
)
from ..supervisor import BreakerState, TenantUsage

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "COST_BUCKETS",
    "GATE_WAIT_BUCKETS",
    "IN_DOUBT_SETTLED",
    "STEP_BUCKETS",
    "TOKEN_BUCKETS",
    "UNKNOWN",
    "UNKNOWN_TOOL",
    "Metrics",
    "ObservedRuntime",
    "budget_ratio",
]

log = get_logger("corral.observability")

TOKEN_BUCKETS: tuple[float, ...] = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
)
"""Buckets of `corral_run_tokens`: tokens per run, 100 to a million."""
STEP_BUCKETS: tuple[float, ...] = (0, 1, 2, 3, 5, 8, 13, 20, 30, 50)
"""Buckets of `corral_run_steps`: tool calls per run (0 for a run that answered at once)."""
COST_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1,
    5,
    10,
)
"""Buckets of `corral_run_cost_usd`: USD per run, a hundredth of a cent to 10 dollars."""
GATE_WAIT_BUCKETS: tuple[float, ...] = (
    1,
    5,
    15,
    30,
    60,
    300,
    900,
    1_800,
    3_600,
    3 * 3_600,
    6 * 3_600,
    12 * 3_600,
    86_400,
    2 * 86_400,
)
"""Buckets of `corral_gate_wait_seconds`: a second to two days (the default gate lifetime
is a day)."""

UNKNOWN = "unknown"
"""The agent (and route) of a run whose `RunStarted` this process never saw: a run resumed
after a restart."""
UNKNOWN_TOOL = "(unknown)"
"""The tool label of a call refused by the ``registered`` check: a name not offered, which
the model may have made up; and of a call in doubt that a person said happened, at a gate
whose opening this process never saw."""

IN_DOUBT_SETTLED: tuple[str, ...] = (
    "probe_done",
    "probe_not_done",
    "retried_idempotent",
    "person_happened",
    "person_run",
    "person_skip",
    "expired",
)
"""The ``settled`` label of `corral_in_doubt_calls_total`: how a call in doubt was settled.
Its status probe said it took effect (``probe_done``) or did not and it ran again
(``probe_not_done``); its tool is idempotent, so it ran again with the same key
(``retried_idempotent``); at a gate, a person said it took effect (``person_happened``),
had it run again (``person_run``) or skipped it (``person_skip``); or the gate
``expired`` (which skips it, as a rejection does)."""

_SETTLED_BY_ANSWER: dict[str, str] = {
    "done": "probe_done",
    "not_done": "probe_not_done",
    "retried": "retried_idempotent",
}
"""The `CallReconciled` answers that settle a call; ``unknown`` and ``failed`` leave it to a
person (counted at the gate's decision)."""
_PROBE_ANSWERS = frozenset({"done", "not_done", "unknown", "failed"})
"""The `CallReconciled` answers that come from a status probe (``retried`` does not)."""

_BREAKER_VALUES: dict[str, float] = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

_MAX_ACTORS = 1_000
"""Mailboxes reported at most (the runtime reports its long-lived actors: a handful)."""
_MAX_GATES_PER_RUN = 256
"""Open gates remembered per run (a response with more calls than this is absurd)."""


class ObservedRuntime(Protocol):
    """What `Metrics.refresh` reads from a runtime (`corral.Runtime` has it all)."""

    async def breaker_states(self) -> Mapping[str, BreakerState]:
        """The circuit breaker of every tool."""
        ...

    async def tenant_usage(self, tenant: str) -> TenantUsage:
        """A tenant's usage today against its daily budget."""
        ...


class _Gate(NamedTuple):
    """An open gate, as the metrics remember it until its decision."""

    tool: str
    opened_at: float
    doubt: bool
    """The gate is for a call in doubt (its `GateOpened.doubt` is set)."""


@dataclass(slots=True)
class _Run:
    """What the metrics remember of a run between its events (dropped at its end)."""

    agent: str = UNKNOWN
    route: str = UNKNOWN
    gates: dict[str, _Gate] = field(default_factory=dict)
    """Open gates, by gate id."""


class Metrics:
    """Prometheus metrics of a runtime: subscribe it, refresh it at scrape, render it.

    ::

        metrics = Metrics()
        runtime.subscribe(metrics)
        ...
        await metrics.refresh(runtime)  # on each scrape
        body, content_type = metrics.render()

    Every metric is named ``corral_...``:

    * ``corral_run_tokens`` (histogram, ``agent``): tokens per finished run.
    * ``corral_run_cost_usd`` (histogram, ``agent``): USD per finished run.
    * ``corral_cost_usd_total`` (counter, ``agent``): USD spent on model calls.
    * ``corral_runs_total`` (counter, ``agent``, ``outcome``): finished runs.
    * ``corral_run_steps`` (histogram, ``agent``, ``route``): tool calls per finished run,
      by the routing rule that chose the agent.
    * ``corral_tool_calls_total`` (counter, ``agent``, ``tool``, ``outcome``): one per
      executed attempt (``success``, ``error``, ``timeout``) and one per refused call
      (``rejected``); the success rate is ``success`` over all.
    * ``corral_guardrail_verdicts_total`` (counter, ``guardrail``, ``decision``): every
      verdict journaled, a refusal counting as ``block`` (a person's rejection at a gate
      under the guardrail ``person``).
    * ``corral_gate_wait_seconds`` (histogram, ``tool``, ``decision``): from a gate's
      opening to its decision (``approved``, ``rejected`` or ``expired``).
    * ``corral_model_calls_total`` (counter, ``agent``, ``model``): model calls answered.
    * ``corral_in_doubt_calls_total`` (counter, ``tool``, ``settled``): calls in doubt after
      a crash, counted once each when settled, by how (see `IN_DOUBT_SETTLED`).
    * ``corral_reconcile_probes_total`` (counter, ``tool``, ``answer``): status probes of
      calls in doubt, by answer (``done``, ``not_done``, ``unknown``, ``failed``); an
      ``unknown`` or ``failed`` is settled later by a person, so both counters show it.
    * Gauges set by `refresh`: ``corral_breaker_state`` (``tool``; 0 closed, 1 half open,
      2 open), ``corral_tenant_tokens_used``, ``corral_tenant_cost_usd`` and
      ``corral_tenant_budget_used_ratio`` (``tenant``; the ratio is the larger of tokens
      and USD used today over the daily limit, for a tenant with one), and
      ``corral_mailbox_depth`` (``actor``; messages queued in each long-lived actor).

    Args:
        registry: where the metrics are registered. Default: a registry of their own
            (never prometheus-client's global one).
        max_runs: runs remembered between their events (their agent, route and open
            gates); the oldest is forgotten beyond it, and its later events count under
            agent ``unknown``. Default 100,000.
        max_tenants: tenants whose budget gauges are kept, the most recently seen.
            Default 1,000.

    Raises:
        ConfigError: prometheus-client is not installed (``pip install 'corral[server]'``).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_runs: int = 100_000,
        max_tenants: int = 1_000,
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ConfigError(
                "Prometheus metrics need prometheus-client: pip install 'corral[server]'"
            ) from exc
        if max_runs < 1 or max_tenants < 1:
            raise ConfigError("max_runs and max_tenants must be at least 1")
        self.registry: CollectorRegistry = (
            registry if registry is not None else prom.CollectorRegistry()
        )
        """The registry the metrics live in."""
        self._prom = prom
        self._max_runs = max_runs
        self._max_tenants = max_tenants
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._tenants: OrderedDict[str, None] = OrderedDict()
        self._failed = False
        r = self.registry
        self.run_tokens = prom.Histogram(
            "corral_run_tokens",
            "Tokens used by a run (all its model calls), observed when it finishes.",
            ["agent"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.run_cost_usd = prom.Histogram(
            "corral_run_cost_usd",
            "Cost of a run in USD, observed when it finishes.",
            ["agent"],
            buckets=COST_BUCKETS,
            registry=r,
        )
        self.cost_usd = prom.Counter(
            "corral_cost_usd", "USD spent on model calls.", ["agent"], registry=r
        )
        self.runs = prom.Counter(
            "corral_runs", "Runs finished, by outcome.", ["agent", "outcome"], registry=r
        )
        self.run_steps = prom.Histogram(
            "corral_run_steps",
            "Tool calls of a run, by agent and routing rule, observed when it finishes.",
            ["agent", "route"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.tool_calls = prom.Counter(
            "corral_tool_calls",
            "Tool call attempts by outcome (success, error, timeout), and refused calls "
            "(rejected).",
            ["agent", "tool", "outcome"],
            registry=r,
        )
        self.guardrail_verdicts = prom.Counter(
            "corral_guardrail_verdicts",
            "Guardrail verdicts journaled; a refused call counts as decision 'block'.",
            ["guardrail", "decision"],
            registry=r,
        )
        self.gate_wait = prom.Histogram(
            "corral_gate_wait_seconds",
            "Time from a gate's opening to its decision.",
            ["tool", "decision"],
            buckets=GATE_WAIT_BUCKETS,
            registry=r,
        )
        self.model_calls = prom.Counter(
            "corral_model_calls", "Model calls answered.", ["agent", "model"], registry=r
        )
        self.in_doubt_calls = prom.Counter(
            "corral_in_doubt_calls",
            "Calls in doubt after a crash (started, no outcome journaled), by how they were "
            "settled: probe_done, probe_not_done, retried_idempotent, person_happened, "
            "person_run, person_skip, expired.",
            ["tool", "settled"],
            registry=r,
        )
        self.reconcile_probes = prom.Counter(
            "corral_reconcile_probes",
            "Status probes of calls in doubt, by answer (done, not_done, unknown, failed).",
            ["tool", "answer"],
            registry=r,
        )
        self.breaker_state = prom.Gauge(
            "corral_breaker_state",
            "Circuit breaker of each tool: 0 closed, 1 half open, 2 open.",
            ["tool"],
            registry=r,
        )
        self.tenant_tokens = prom.Gauge(
            "corral_tenant_tokens_used",
            "Tokens a tenant used today (UTC).",
            ["tenant"],
            registry=r,
        )
        self.tenant_cost = prom.Gauge(
            "corral_tenant_cost_usd", "USD a tenant spent today (UTC).", ["tenant"], registry=r
        )
        self.tenant_ratio = prom.Gauge(
            "corral_tenant_budget_used_ratio",
            "Share of a tenant's daily budget used (the larger of tokens and USD), for "
            "tenants with one.",
            ["tenant"],
            registry=r,
        )
        self.mailbox_depth = prom.Gauge(
            "corral_mailbox_depth",
            "Messages queued in each long-lived actor's mailbox.",
            ["actor"],
            registry=r,
        )

    # -- the subscriber -------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Count one event. Never raises: a failure is logged once and ignored."""
        try:
            self._observe(event)
        except Exception as exc:  # metrics must never break a run
            if not self._failed:
                self._failed = True
                log.error("metrics.event_failed", kind=event.kind, error=repr(exc))

    def _observe(self, event: Event) -> None:
        if isinstance(event, ToolCallFinished):
            run = self._run(event.run_id)
            self.tool_calls.labels(run.agent, event.tool, "success").inc()
        elif isinstance(event, ModelCalled):
            agent = self._run(event.run_id).agent
            self.model_calls.labels(agent, event.model).inc()
            if event.cost_usd:
                self.cost_usd.labels(agent).inc(event.cost_usd)
        elif isinstance(event, ToolCallFailed):
            outcome = "timeout" if "timeout" in event.error_type.lower() else "error"
            self.tool_calls.labels(self._run(event.run_id).agent, event.tool, outcome).inc()
        elif isinstance(event, GuardrailVerdict):
            self.guardrail_verdicts.labels(event.guardrail, event.decision).inc()
        elif isinstance(event, ToolCallRejected):
            run = self._run(event.run_id)
            # The "registered" check refuses exactly the names not offered: made-up ones.
            tool = UNKNOWN_TOOL if event.guardrail == "registered" else event.tool
            self.tool_calls.labels(run.agent, tool, "rejected").inc()
            self.guardrail_verdicts.labels(event.guardrail, "block").inc()
        elif isinstance(event, GateOpened):
            gates = self._run(event.run_id).gates
            if len(gates) < _MAX_GATES_PER_RUN:
                gates[event.gate_id] = _Gate(event.tool, event.ts, bool(event.doubt))
        elif isinstance(event, GateDecided):
            self._decided(event)
        elif isinstance(event, CallReconciled):
            if event.answer in _PROBE_ANSWERS:
                self.reconcile_probes.labels(event.tool, event.answer).inc()
            settled = _SETTLED_BY_ANSWER.get(event.answer)
            if settled is not None:
                self.in_doubt_calls.labels(event.tool, settled).inc()
        elif isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, RunFinished):
            # Figures first, so a malformed event counts nowhere rather than halfway.
            tokens, cost, steps = float(event.tokens), float(event.cost_usd), float(event.steps)
            run = self._runs.pop(event.run_id) if event.run_id in self._runs else _Run()
            self.runs.labels(run.agent, event.outcome).inc()
            self.run_tokens.labels(run.agent).observe(tokens)
            self.run_cost_usd.labels(run.agent).observe(cost)
            self.run_steps.labels(run.agent, run.route).observe(steps)

    def _decided(self, event: GateDecided) -> None:
        opened = self._run(event.run_id).gates.pop(event.gate_id, None)
        if opened is not None:
            wait = max(event.ts - opened.opened_at, 0.0)
            self.gate_wait.labels(opened.tool, event.decision).observe(wait)
        if event.happened:  # only a gate for a call in doubt is decided so
            settled = "person_happened"
        elif opened is None or not opened.doubt:
            return
        elif event.decision == "approved":
            settled = "person_run"
        elif event.decision == "rejected":
            settled = "person_skip"
        else:
            settled = "expired"
        tool = opened.tool if opened is not None else UNKNOWN_TOOL
        self.in_doubt_calls.labels(tool, settled).inc()

    def _start(self, event: RunStarted) -> None:
        self._remember(event.run_id, _Run(agent=event.agent, route=event.rule or UNKNOWN))
        tenants = self._tenants
        tenants[event.tenant] = None
        tenants.move_to_end(event.tenant)
        if len(tenants) > self._max_tenants:
            tenants.popitem(last=False)

    def _run(self, run_id: str) -> _Run:
        """The run's remembered state; a run first seen now (resumed here) is ``unknown``."""
        run = self._runs.get(run_id)
        if run is None:
            run = self._remember(run_id, _Run())
        return run

    def _remember(self, run_id: str, run: _Run) -> _Run:
        runs = self._runs
        runs[run_id] = run
        if len(runs) > self._max_runs:
            runs.popitem(last=False)
        return run

    # -- gauges, at scrape time -----------------------------------------------------------

    async def refresh(self, runtime: ObservedRuntime) -> None:
        """Read the gauges from a running runtime: breakers, tenant budgets, mailboxes.

        Each family is replaced whole, once all its values are read, so a tool or tenant
        that is gone leaves no stale series. A family that cannot be read (the runtime is
        not running, the supervisor did not answer) is cleared, logged and skipped.

        Args:
            runtime: the runtime (``corral.Runtime``); the mailbox depths are read when it
                has ``mailbox_depths()``.
        """
        try:
            states = await runtime.breaker_states()
        except Exception as exc:
            self.breaker_state.clear()
            log.warning("metrics.refresh_failed", gauge="breaker_state", error=repr(exc))
        else:
            self.breaker_state.clear()
            for tool, state in states.items():
                self.breaker_state.labels(tool).set(_BREAKER_VALUES.get(state.state, 0.0))
        await self._refresh_tenants(runtime)
        depths_of = getattr(runtime, "mailbox_depths", None)
        if depths_of is not None:
            try:
                depths: Mapping[str, int] = depths_of()
            except Exception as exc:
                self.mailbox_depth.clear()
                log.warning("metrics.refresh_failed", gauge="mailbox_depth", error=repr(exc))
            else:
                self.mailbox_depth.clear()
                for actor, depth in list(depths.items())[:_MAX_ACTORS]:
                    self.mailbox_depth.labels(actor).set(depth)

    async def _refresh_tenants(self, runtime: ObservedRuntime) -> None:
        names = list(self._tenants)
        configured = getattr(getattr(runtime, "tenants", None), "limits", None)
        if isinstance(configured, Mapping):
            seen = set(names)
            names += [n for n in configured if isinstance(n, str) and n not in seen]
        names = names[-self._max_tenants :]
        try:
            usages = [await runtime.tenant_usage(name) for name in names]
        except Exception as exc:
            for gauge in (self.tenant_tokens, self.tenant_cost, self.tenant_ratio):
                gauge.clear()
            log.warning("metrics.refresh_failed", gauge="tenant", error=repr(exc))
            return
        for gauge in (self.tenant_tokens, self.tenant_cost, self.tenant_ratio):
            gauge.clear()
        for usage in usages:
            self.tenant_tokens.labels(usage.tenant).set(usage.tokens)
            self.tenant_cost.labels(usage.tenant).set(usage.cost_usd)
            ratio = budget_ratio(usage)
            if ratio is not None:
                self.tenant_ratio.labels(usage.tenant).set(ratio)

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format.

        Returns:
            The body and its content type (prometheus-client's ``CONTENT_TYPE_LATEST``).
        """
        body: bytes = self._prom.generate_latest(self.registry)
        content_type: str = self._prom.CONTENT_TYPE_LATEST
        return body, content_type

    def runs_remembered(self) -> int:
        """Runs whose agent and route are remembered now (at most `max_runs`)."""
        return len(self._runs)


def budget_ratio(usage: TenantUsage) -> float | None:
    """The share of a tenant's daily budget used, or None when it has no daily limit."""
    limits = usage.limits
    if limits is None:
        return None
    ratios: list[float] = []
    if limits.daily_tokens:
        ratios.append(usage.tokens / limits.daily_tokens)
    if limits.daily_cost_usd:
        ratios.append(usage.cost_usd / limits.daily_cost_usd)
    return max(ratios) if ratios else None
