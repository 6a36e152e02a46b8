"""Scope policies: the proposed call they judge, their protocol, and how they combine.

* `ProposedCall` is a tool call the model proposed, with everything a policy may need:
  run, agent and its scopes, tool and its scopes and side-effect level, arguments, tenant.
  Argument rules, permission and approval judge the same object.
* **Scope policies** are yours: anything with ``check(call: ProposedCall) -> Verdict``
  (`ScopePolicy`), or a plain function wrapped by `policy_from_callable`. See
  `ScopePolicy` for the contract and a worked example.
* `check_policies` runs several and keeps the most severe verdict; `policy_failed` is the
  ``block`` of a policy that raised (fail closed), shared with the `CheckChain`.

Everything here is pure and synchronous; no policy performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .._pii import redact_secrets
from .._verdict import Verdict
from ..tools import SideEffect, Tool

__all__ = [
    "PolicyResult",
    "ProposedCall",
    "ScopePolicy",
    "check_policies",
    "policy_failed",
    "policy_from_callable",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposedCall:
    """A tool call the model proposed, with everything a policy may need to judge it.

    Build one with `ProposedCall.of` from a `Tool`, or directly in tests.
    """

    run_id: str = ""
    """The run making the call."""
    agent: str = ""
    """The sub-agent making the call."""
    agent_scopes: frozenset[str] = frozenset()
    """Scopes the agent holds, such as ``{"invoices:read"}``."""
    tool: str
    """Name of the tool called."""
    side_effect: SideEffect = "read"
    """The tool's side-effect level."""
    tool_scopes: frozenset[str] = frozenset()
    """Scopes the tool requires."""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    """The arguments (read-only view)."""
    tenant: str = "default"
    """The tenant the run belongs to."""
    call_id: str = ""
    """The model's id for the call."""

    def __post_init__(self) -> None:
        if type(self.agent_scopes) is not frozenset:
            object.__setattr__(self, "agent_scopes", frozenset(self.agent_scopes))
        if type(self.tool_scopes) is not frozenset:
            object.__setattr__(self, "tool_scopes", frozenset(self.tool_scopes))
        if not isinstance(self.arguments, MappingProxyType):
            object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    @classmethod
    def of(
        cls,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        run_id: str = "",
        agent: str = "",
        agent_scopes: Iterable[str] = (),
        tenant: str = "default",
        call_id: str = "",
    ) -> ProposedCall:
        """Describe a call to `tool`, taking its name, side-effect level and scopes.

        Args:
            tool: the tool called.
            arguments: the arguments the model proposed.
            run_id: the run.
            agent: the sub-agent.
            agent_scopes: scopes the agent holds.
            tenant: the run's tenant.
            call_id: the model's id for the call.

        Returns:
            The proposed call.
        """
        return cls(
            run_id=run_id,
            agent=agent,
            agent_scopes=frozenset(agent_scopes),
            tool=tool.name,
            side_effect=tool.side_effect,
            tool_scopes=frozenset(tool.scopes),
            arguments=arguments,
            tenant=tenant,
            call_id=call_id,
        )


@runtime_checkable
class ScopePolicy(Protocol):
    """A policy you write: one method that judges a proposed tool call.

    The contract:

    * ``check`` gets a `ProposedCall` (run, agent and its scopes, tool and its scopes
      and side-effect level, arguments, tenant) and returns a `Verdict`: ``allow``,
      ``block`` (with a ``reason`` for people and a ``message`` telling the model what to
      do instead), ``approve`` (a person must approve first) or ``flag``.
    * It must be pure and fast: no I/O, no awaiting, no state that changes between
      calls (microseconds, as it runs before every tool call).
    * An exception fails closed: `check_policies` turns it into a ``block``.
    * In the runtime each policy is one link of the `CheckChain` before every call: a
      ``block`` rejects the call, ``approve`` opens a gate (the ``reason`` is shown to the
      person), ``flag`` is journaled and the call runs.
    * Give it a ``name`` attribute for journals and metrics (optional).

    A worked example, a financial agent that may touch only its own accounts::

        class AccountAllowlist:
            name = "account_allowlist"

            def __init__(self, accounts):
                self.accounts = frozenset(accounts)

            def check(self, call: ProposedCall) -> Verdict:
                account = call.arguments.get("account_id")
                if account is None or account in self.accounts:
                    return Verdict(self.name, "allow")
                return Verdict(
                    self.name,
                    "block",
                    reason=f"account {account!r} is outside the allowlist of {call.agent}",
                    message=(
                        f"You may not act on account {account!r}. Work only with the "
                        "accounts the user gave you, or ask the user."
                    ),
                    details={"account_id": account},
                )

        policies = [AccountAllowlist({"ACC-1001", "ACC-1002"})]
        verdict = check_policies(policies, call)

    The same as a function::

        def accounts_only(call: ProposedCall) -> bool | str:
            account = call.arguments.get("account_id")
            return account in (None, "ACC-1001", "ACC-1002") or (
                f"account {account!r} is outside the allowlist"
            )

        policies = [policy_from_callable(accounts_only)]
    """

    def check(self, call: ProposedCall) -> Verdict:
        """Judge one proposed call."""
        ...


PolicyResult = Verdict | bool | str | None
"""What a policy function may return: a Verdict; True or None (allow); False (block);
or a str (block, with the str as the reason)."""


class _CallablePolicy:
    def __init__(self, fn: Callable[[ProposedCall], PolicyResult], name: str) -> None:
        self.fn = fn
        self.name = name

    def check(self, call: ProposedCall) -> Verdict:
        result = self.fn(call)
        if isinstance(result, Verdict):
            return result
        if result is None or result is True:
            return Verdict(self.name, "allow")
        reason = result if isinstance(result, str) else f"rejected by policy {self.name!r}"
        return Verdict(
            self.name,
            "block",
            reason=reason,
            message=(
                f"The call to {call.tool!r} is not allowed: {reason}. Do not retry it; "
                "continue with what you may do, or explain to the user what is needed."
            ),
        )

    def __repr__(self) -> str:
        return f"policy_from_callable({self.fn!r}, name={self.name!r})"


def policy_from_callable(
    fn: Callable[[ProposedCall], PolicyResult], *, name: str | None = None
) -> ScopePolicy:
    """Wrap a function as a `ScopePolicy`.

    Args:
        fn: takes the `ProposedCall`; returns a `Verdict`, True/None to allow, False to
            block, or a str to block with that reason (see `ScopePolicy` for an example).
        name: guardrail name in verdicts. Default: the function's name.

    Returns:
        The policy.
    """
    return _CallablePolicy(fn, name or str(getattr(fn, "__name__", "policy")))


_SEVERITY = {"block": 3, "approve": 2, "flag": 1}


def policy_failed(name: str, call: ProposedCall, exc: Exception) -> Verdict:
    """The ``block`` of a policy that raised (fail closed), secrets cut from the error.

    Args:
        name: the policy's guardrail name.
        call: the call it was judging.
        exc: what it raised.

    Returns:
        A ``block`` naming the policy and the error, telling the model not to retry.
    """
    return Verdict(
        name,
        "block",
        reason=redact_secrets(f"policy {name!r} failed: {type(exc).__name__}: {exc}"),
        message=(
            f"The call to {call.tool!r} could not be checked and was not run. "
            "Do not retry it; tell the user it needs attention."
        ),
        details={"error": type(exc).__name__},
    )


def check_policies(policies: Iterable[ScopePolicy], call: ProposedCall) -> Verdict:
    """Run scope policies on a call; the most severe verdict wins.

    A policy that raises blocks the call (fail closed), with the exception in the reason.

    Args:
        policies: the policies, in order (ties go to the first).
        call: the proposed call.

    Returns:
        The first ``block``, else the first ``approve``, else the first ``flag``, else
        an ``allow`` from ``scope_policy``.
    """
    worst: Verdict | None = None
    for policy in policies:
        name = getattr(policy, "name", type(policy).__name__)
        try:
            verdict = policy.check(call)
        except Exception as exc:  # a broken policy must not let the call through
            verdict = policy_failed(str(name), call, exc)
        severity = _SEVERITY.get(verdict.decision, 0)
        if severity and (worst is None or severity > _SEVERITY[worst.decision]):
            worst = verdict
            if severity == 3:
                break
    return worst or Verdict("scope_policy", "allow")
