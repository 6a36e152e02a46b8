"""The runtime's options, grouped by concern into value objects with documented defaults.

`Runtime` takes a handful of these instead of two dozen keyword arguments, as httpx takes
`Timeout` and `Limits`: each group is built, validated and passed around on its own, and
`Runtime.from_settings` fills the plain-data ones (`Durability`) from the settings file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ConfigError
from ..guardrails import (
    ApprovalPolicy,
    CallCheck,
    InputScreen,
    ProposedCall,
    ProvenancePolicy,
    ScopePolicy,
    Verdict,
)
from ..supervisor import DEFAULT_GATE_TTL_S, TenantLimits
from ..tools import SIDE_EFFECTS, SideEffect

__all__ = ["Alerts", "Durability", "Guards", "Tenants"]


class Durability(BaseModel):
    """How the runtime keeps durable runs moving: leases, polling, gate deadlines, retention.

    Plain data: ``[durability]`` in ``corral.toml`` (or ``CORRAL_DURABILITY__LEASE_S``...)
    sets it for `Runtime.from_settings`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    resume: bool = True
    """On start, continue every unfinished run found in the journal. Default True."""
    poll_interval_s: float | None = Field(1.0, gt=0)
    """Seconds between checks for expired gates and waits, decisions made by other
    processes, and runs to take over. Default 1 s; None disables polling (call
    `Runtime.tick` yourself)."""
    lease_s: float = Field(30.0, gt=0)
    """How long this process's claim on a run lasts without renewal. Default 30 s."""
    gate_ttl_s: float = Field(DEFAULT_GATE_TTL_S, gt=0)
    """Seconds before an undecided gate expires into a rejection. Default 48 h."""
    retention_days: float | None = Field(None, gt=0)
    """Prune finished runs older than this many days (checked hourly by the poller).
    Default: keep everything."""
    owner: str | None = None
    """This process's name in run leases. Default: a fresh id each start-up."""
    max_active_runs: int | None = Field(None, gt=0)
    """The most runs this process drives at once (back-pressure). A run submitted beyond
    it is journaled and waits, unleased, for this process (as its runs finish, and at each
    tick) or another worker on the same journal to pull it. Default: no cap."""
    fair_tenants: bool = False
    """Pull queued runs round-robin by tenant rather than oldest first: each tenant's
    oldest waiting run, then each one's second-oldest, and so on, so one tenant's backlog
    cannot hold back every other tenant's runs (matters with `max_active_runs`, or when
    several workers share a journal). Default False (oldest first)."""
    mode: Literal["step", "batched"] = "step"
    """When a read-only step's events are committed. ``"step"`` (default): each model
    call's result is committed before the next step starts (concurrent runs share one
    group commit), so a crash never asks the model again for an answer it already gave.
    ``"batched"``: they go out with the next group commit, at the latest before the next
    side effect, gate or end of run (whose own appends always wait): faster for one run
    alone, and a crash may repeat the last model calls (never a side effect)."""


@dataclass(frozen=True, slots=True)
class Guards:
    """What checks every task before its first step and every tool call before it runs."""

    gated: Collection[SideEffect] = ("write", "external", "destructive")
    """Side-effect levels whose calls wait for a person's approval. Default ``write``,
    ``external`` and ``destructive``; ``()`` lets every call run. Ignored when `approval`
    is given."""
    approval: ApprovalPolicy | None = None
    """Decides per call (by tool, side-effect level and argument rules) to run it, gate it
    or block it; replaces `gated`."""
    policies: Sequence[ScopePolicy] = ()
    """Scope and argument policies every call must pass (each agent may add its own)."""
    checks: Sequence[CallCheck] = ()
    """Your own `corral.guardrails.CallCheck`s, after each agent's own checks and before
    the approval policy; each may block the call, send it to a person or flag it."""
    screen: InputScreen | None = field(default_factory=InputScreen)
    """Screens each task before its first step (size, injection, PII and secrets).
    Default `InputScreen()`; None turns it off."""
    provenance: ProvenancePolicy = field(default_factory=ProvenancePolicy)
    """Where side-effecting calls may take argument values from: by default a value found
    only in untrusted tool output sends the call to a person, whatever `approval` says
    (`corral.guardrails.ProvenanceCheck`). ``ProvenancePolicy.off()`` turns it off. Each
    agent may have its own (``SubAgent(provenance=...)``)."""
    result_screen: InputScreen | None = field(default_factory=lambda: InputScreen(pii="off"))
    """Screens each tool result before the model sees it: the whole raw result, the text the
    model is shown and the seam with the run's previous result (personal data is the
    agent's `pii` setting, applied by the result filter). Default ``InputScreen(pii="off")``;
    None turns it off."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.gated) - set(SIDE_EFFECTS))
        if unknown:
            raise ConfigError(f"gated: unknown side-effect levels {unknown}; use {SIDE_EFFECTS}")

    def approval_policy(self) -> ApprovalPolicy:
        """The approval policy in force: `approval`, else one gating the `gated` levels."""
        if self.approval is not None:
            return self.approval
        return ApprovalPolicy(
            defaults={level: "gate" if level in self.gated else "auto" for level in SIDE_EFFECTS}
        )


@dataclass(frozen=True, slots=True)
class Alerts:
    """Where refused calls are reported (a call refused for permission or policy)."""

    callback: Callable[[Verdict, ProposedCall], None] | None = None
    """Called with the verdict and the call; keep it fast (it runs on the alert actor)."""
    webhook: str | None = None
    """Also POST each alert as JSON to this URL (a failure is logged, never raised)."""
    webhook_timeout_s: float = 5.0
    """Timeout of one webhook POST. Default 5 s."""
    drain_s: float = 10.0
    """How long stopping the runtime waits for queued alerts to be sent. Default 10 s."""

    @property
    def enabled(self) -> bool:
        """True when alerts go anywhere."""
        return self.callback is not None or self.webhook is not None


class Tenants(BaseModel):
    """Daily budgets by tenant, shared by all of a tenant's runs (days are UTC).

    Reserved in the journal by each model call (`corral.store.TenantBudgets`), so a
    budget holds across every worker sharing the journal, and across restarts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    limits: Mapping[str, TenantLimits] = Field(default_factory=dict)
    """The budget of each named tenant."""
    default: TenantLimits | None = None
    """The budget of any tenant not in `limits`. Default: none."""

    @field_validator("limits", mode="after")
    @classmethod
    def _plain(cls, value: Mapping[str, TenantLimits]) -> dict[str, TenantLimits]:
        return dict(value)

    @property
    def budgeted(self) -> bool:
        """True when any tenant has a budget."""
        return bool(self.limits) or self.default is not None

    def limits_for(self, tenant: str) -> TenantLimits | None:
        """The daily budget of `tenant` (`default` when it is not named); None: none.

        A budget with neither limit set counts as none.
        """
        found = self.limits.get(tenant, self.default)
        if found is None or (found.daily_tokens is None and found.daily_cost_usd is None):
            return None
        return found

    def usd_budgets(self) -> list[str]:
        """Each USD budget, described, for the unpriced-model refusal."""
        found = [
            f"tenant {name!r} daily_cost_usd=${t.daily_cost_usd:g}"
            for name, t in sorted(self.limits.items())
            if t.daily_cost_usd is not None
        ]
        if self.default is not None and self.default.daily_cost_usd is not None:
            found.append(f"default daily_cost_usd=${self.default.daily_cost_usd:g}")
        return found
