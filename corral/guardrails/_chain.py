"""The chain of checks every proposed tool call passes before it runs.

Every check shares one protocol, `CallCheck`: ``check(ctx: CallContext) -> Verdict``. The
runtime builds one chain per run, in this order:

1. `RegisteredCheck` (``registered``, or ``breaker`` for a tool whose breaker is open);
2. `ArgumentsParsedCheck` (``arguments``): the arguments decoded as a JSON object;
3. `SchemaCheck` (``schema``): they satisfy the tool's strict JSON Schema;
4. `PermissionCheck` (``permission``): the agent holds the tool's scopes and may use its
   side-effect level;
5. one `PolicyCheck` per scope or argument policy: the agent's, then the runtime's;
6. your own checks: ``SubAgent(checks=...)``, then ``Runtime(checks=...)``;
7. `ProvenanceCheck` (``provenance``): a side-effecting call whose argument values came
   only from untrusted tool output is sent to a person (`corral.guardrails.ProvenancePolicy`);
8. `ApprovalCheck` (``approval``): the `ApprovalPolicy` runs the call, gates it or blocks it.

`CheckChain.run` combines the verdicts: the first ``block`` ends the chain and wins;
otherwise any ``approve`` sends the call to a person (the reasons of every check that
asked are joined), so an auto-approve rule never overrides a check that asked; ``flag``
(or any other decision) is noted and the call goes on. The agent loop acts on the result
in one place and journals every verdict that is not a plain allow: a block as the call's
``tool_call_rejected``, the others as ``guardrail_verdict`` events (the approvals just
before the ``gate_opened`` they cause).

A check that raises, or returns something that is not a `Verdict`, blocks the call (fail
closed). Checks must be pure and fast, like scope policies: they run before every call,
and again when a run resumes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from .._pii import redact_secrets
from .._verdict import ALLOW, Verdict
from ..errors import ConfigError
from ..models import ToolCall
from ..tools import SideEffect, Tool
from ._approval import ApprovalPolicy
from ._permission import PermissionPolicy
from ._provenance import ProvenanceCheck, Sources
from ._scope import ProposedCall, ScopePolicy, policy_failed
from ._toolcall import check_arguments_parsed, check_registered, check_schema

__all__ = [
    "ApprovalCheck",
    "ArgumentsParsedCheck",
    "CallCheck",
    "CallContext",
    "ChainVerdict",
    "CheckChain",
    "PermissionCheck",
    "PolicyCheck",
    "RegisteredCheck",
    "SchemaCheck",
]


class CallContext(NamedTuple):
    """What a check sees of one proposed call. The runtime builds one per call.

    (A `NamedTuple` rather than a frozen dataclass: it is built before every tool call,
    and this is several times cheaper to build.)
    """

    call: ToolCall
    """The call as the model wrote it (its name may not exist; `parse_error` may be set)."""
    tool: Tool | None
    """The tool offered under that name at this step, or None."""
    proposed: ProposedCall | None
    """The call as policies see it (run, agent, scopes, side effect, arguments, tenant);
    None only when `tool` is. Checks you add run after the schema check: there both are
    set and the arguments satisfy the schema."""
    offered: Mapping[str, Tool]
    """Every tool offered at this step, by name."""
    unavailable: Collection[str] = frozenset()
    """The agent's tools left out of this step because their circuit breaker is open."""
    approval_settled: bool = False
    """True when a person already decided on this call, or it already started once (so it
    was let through before): the approval check stands aside, and an ``approve`` from any
    check opens no second gate."""
    sources: Sources | None = None
    """The texts of the run's context with where each came from (`ProvenanceCheck`
    traces argument values to them); None when the caller has none."""


@runtime_checkable
class CallCheck(Protocol):
    """One link of the chain before every tool call: judge the call, return a `Verdict`.

    Return ``allow``; ``block`` with a ``reason`` for people and a ``message`` telling the
    model what to do instead; ``approve`` when a person must approve first (the
    ``reason`` is shown at the gate); or ``flag`` to let the call run and journal why.
    Give the check a ``name`` (its guardrail name, for errors about the check itself), and
    set ``alert = False`` if its blocks are the model's mistakes rather than refusals worth
    an alert (the ``alert`` hook of `corral.Runtime`; default True).

    Example, gating refunds to accounts opened this week::

        class NewAccountRefunds:
            name = "new_account_refunds"

            def __init__(self, new_accounts: frozenset[str]) -> None:
                self.new_accounts = new_accounts

            def check(self, ctx: CallContext) -> Verdict:
                account = ctx.call.arguments.get("account_id")
                if ctx.call.name != "refund" or account not in self.new_accounts:
                    return ALLOW
                return Verdict(self.name, "approve", reason=f"{account} is a new account")

        Runtime(agents=[billing], checks=[NewAccountRefunds(frozenset({"ACC-9"}))])
    """

    def check(self, ctx: CallContext) -> Verdict:
        """Judge one proposed call."""
        ...


# ------------------------------------------------------------------- built-in checks


class RegisteredCheck:
    """Block a call to a tool that is not offered at this step (`check_registered`)."""

    name = "registered"
    alert = False

    def check(self, ctx: CallContext) -> Verdict:
        """Check the call's tool name against the tools offered."""
        return check_registered(ctx.call, ctx.offered, unavailable=ctx.unavailable)


class ArgumentsParsedCheck:
    """Block a call whose arguments did not decode as a JSON object."""

    name = "arguments"
    alert = False

    def check(self, ctx: CallContext) -> Verdict:
        """Check that the provider decoded the arguments."""
        return check_arguments_parsed(ctx.call)


class SchemaCheck:
    """Block arguments that break the tool's strict JSON Schema, naming each violation."""

    name = "schema"
    alert = False

    def check(self, ctx: CallContext) -> Verdict:
        """Validate the arguments."""
        if ctx.tool is None:
            return _unregistered(ctx)
        return check_schema(ctx.call, ctx.tool)


class PolicyCheck:
    """One `ScopePolicy` (or `ArgumentPolicy`) as a link of the chain.

    A policy that raises blocks the call, as in `check_policies`.

    Args:
        policy: the policy.
    """

    alert = True

    def __init__(self, policy: ScopePolicy) -> None:
        self.policy = policy
        self.name = str(getattr(policy, "name", type(policy).__name__))

    def check(self, ctx: CallContext) -> Verdict:
        """Run the policy on the call."""
        call = ctx.proposed
        if call is None:
            return _unregistered(ctx)
        try:
            return self.policy.check(call)
        except Exception as exc:  # a broken policy must not let the call through
            return policy_failed(self.name, call, exc)

    def __repr__(self) -> str:
        return f"PolicyCheck({self.policy!r})"


class PermissionCheck(PolicyCheck):
    """Block a call whose tool needs a scope the agent lacks, or a forbidden side effect.

    `PermissionPolicy` (`check_permission`) as a link of the chain.

    Args:
        allowed_side_effects: the levels the agent may use. None (default): any.
    """

    def __init__(self, allowed_side_effects: Collection[SideEffect] | None = None) -> None:
        permission = PermissionPolicy(allowed_side_effects)
        super().__init__(permission)
        self.allowed_side_effects = permission.allowed_side_effects

    def __repr__(self) -> str:
        return f"PermissionCheck({self.allowed_side_effects!r})"


class ApprovalCheck:
    """The `ApprovalPolicy`'s decision: run the call, send it to a person, or block it.

    It stands aside (allows) when `CallContext.approval_settled`: a person's decision, or
    a call that already started once, is not asked about again.

    Args:
        policy: the approval policy. Default `ApprovalPolicy()` (reads run, the rest waits).
    """

    alert = False

    def __init__(self, policy: ApprovalPolicy | None = None) -> None:
        self.policy = policy if policy is not None else ApprovalPolicy()
        self.name = self.policy.name

    def check(self, ctx: CallContext) -> Verdict:
        """The approval decision for the call."""
        if ctx.approval_settled:
            return ALLOW
        call = ctx.proposed
        if call is None:
            return _unregistered(ctx)
        return self.policy.decide(call)


def _unregistered(ctx: CallContext) -> Verdict:
    """A check that needs the tool met a call to a tool that is not offered: refuse it."""
    verdict = check_registered(ctx.call, ctx.offered, unavailable=ctx.unavailable)
    if verdict.blocked:
        return verdict
    return Verdict(
        "registered",
        "block",
        reason=f"tool {ctx.call.name!r} could not be resolved",
        message=f"Unknown tool name: {ctx.call.name!r}. Call one of the offered tools.",
    )


# ------------------------------------------------------------------------- the chain


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """What the chain decided for one call, and every verdict that was not a plain allow."""

    verdict: Verdict
    """The decision: the first ``block``; else an ``approve`` (one check's, or the
    approvals joined); else `ALLOW`. A ``flag`` is never the decision."""
    verdicts: tuple[Verdict, ...] = ()
    """Every verdict that was not a plain allow, in chain order (the decision included)."""
    alert: bool = False
    """True when the call was blocked by a check whose refusals are alerted
    (permission, policies, your checks)."""

    @property
    def notes(self) -> tuple[Verdict, ...]:
        """The verdicts that let the call go on but are journaled (``flag`` and the like)."""
        return tuple(v for v in self.verdicts if v.decision not in ("block", "approve"))

    @property
    def approvals(self) -> tuple[Verdict, ...]:
        """The ``approve`` verdicts, each check that asked for a person."""
        return tuple(v for v in self.verdicts if v.decision == "approve")


_ALLOWED = ChainVerdict(ALLOW)


class CheckChain:
    """An ordered chain of `CallCheck`s, run on each proposed call.

    The runtime builds the default chain with `CheckChain.default`; build one yourself to
    test a check in place.

    Args:
        checks: the checks, in order.

    Raises:
        ConfigError: an object without a callable ``check``.
    """

    def __init__(self, checks: Iterable[CallCheck]) -> None:
        self.checks: tuple[CallCheck, ...] = tuple(checks)
        for check in self.checks:
            if not callable(getattr(check, "check", None)):
                raise ConfigError(
                    f"{check!r} is not a call check: it needs a method check(ctx) -> Verdict"
                )

    @classmethod
    def default(
        cls,
        *,
        policies: Iterable[ScopePolicy] = (),
        checks: Iterable[CallCheck] = (),
        approval: ApprovalPolicy | None = None,
        allowed_side_effects: Collection[SideEffect] | None = None,
        provenance: ProvenanceCheck | None = None,
    ) -> CheckChain:
        """The runtime's chain, in the documented order.

        Registered name, arguments, schema, permission, each policy, your checks,
        provenance, approval.

        Args:
            policies: scope and argument policies, in order.
            checks: your own checks, run after the policies and before approval.
            approval: the approval policy. Default `ApprovalPolicy()`.
            allowed_side_effects: the levels the agent may use. None: any.
            provenance: the provenance check. Default: none (the runtime passes one).

        Returns:
            The chain.
        """
        return cls(
            (
                RegisteredCheck(),
                ArgumentsParsedCheck(),
                SchemaCheck(),
                PermissionCheck(allowed_side_effects),
                *(PolicyCheck(p) for p in policies),
                *checks,
                *((provenance,) if provenance is not None else ()),
                ApprovalCheck(approval),
            )
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Each check's name, in order."""
        return tuple(_name(check) for check in self.checks)

    def run(self, ctx: CallContext) -> ChainVerdict:
        """Run every check on one call, stopping at the first block.

        Args:
            ctx: the call.

        Returns:
            The decision and every verdict that was not a plain allow.
        """
        seen: list[Verdict] | None = None
        for check in self.checks:
            try:
                verdict = check.check(ctx)
            except Exception as exc:  # a broken check must not let the call through
                verdict = _failed(check, ctx, f"{type(exc).__name__}: {exc}", type(exc).__name__)
            if not isinstance(verdict, Verdict):
                verdict = _failed(check, ctx, f"returned {verdict!r}, not a Verdict", "contract")
            decision = verdict.decision
            if decision == "allow":
                continue
            if seen is None:
                seen = []
            seen.append(verdict)
            if decision == "block":
                return ChainVerdict(verdict, tuple(seen), bool(getattr(check, "alert", True)))
        if seen is None:
            return _ALLOWED
        approvals = [v for v in seen if v.decision == "approve"]
        if not approvals:
            return ChainVerdict(ALLOW, tuple(seen))
        if len(approvals) == 1:
            return ChainVerdict(approvals[0], tuple(seen))
        reasons = list(dict.fromkeys(v.reason or v.guardrail for v in approvals))
        joined = Verdict(
            approvals[0].guardrail,
            "approve",
            reason="; ".join(reasons),
            message=approvals[0].message,
            details={"guardrails": [v.guardrail for v in approvals]},
        )
        return ChainVerdict(joined, tuple(seen))

    def __repr__(self) -> str:
        return f"CheckChain({list(self.names)})"


def _name(check: object) -> str:
    return str(getattr(check, "name", type(check).__name__))


def _failed(check: object, ctx: CallContext, what: str, error: str) -> Verdict:
    name = _name(check)
    return Verdict(
        name,
        "block",
        reason=redact_secrets(f"check {name!r} failed: {what}"),
        message=(
            f"The call to {ctx.call.name!r} could not be checked and was not run. "
            "Do not retry it; tell the user it needs attention."
        ),
        details={"error": error},
    )
