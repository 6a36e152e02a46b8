"""Permission: least privilege by scopes and side-effect levels.

`check_permission` blocks a call whose tool needs a scope the agent lacks (`scope_covers`
reads the ``*`` and ``ns:*`` wildcards), or whose side-effect level the agent may not use,
and says which. `PermissionPolicy` is the same check as a `ScopePolicy`; the `CheckChain`
runs it as its `PermissionCheck`.

Pure and synchronous; a call that needs no scope at an allowed level costs one comparison.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .._verdict import Verdict
from ..tools import SIDE_EFFECTS, SideEffect
from ._scope import ProposedCall

__all__ = ["PermissionPolicy", "check_permission", "scope_covers"]


def scope_covers(held: str, needed: str) -> bool:
    """Whether a held scope grants a needed one.

    ``*`` grants everything; ``invoices:*`` grants ``invoices:read`` and
    ``invoices:write``; otherwise scopes must be equal.

    Args:
        held: a scope the agent holds.
        needed: a scope the tool requires.

    Returns:
        True when granted.
    """
    if held == needed or held == "*":
        return True
    return held.endswith(":*") and needed.startswith(held[:-1])


def check_permission(
    agent_scopes: Iterable[str],
    tool_scopes: Iterable[str],
    side_effect: SideEffect,
    allowed_side_effects: Collection[SideEffect] | None = None,
    *,
    tool: str = "",
    agent: str = "",
) -> Verdict:
    """Block a call the agent is not permitted to make (least privilege).

    Args:
        agent_scopes: scopes the agent holds (``*`` and ``ns:*`` wildcards allowed).
        tool_scopes: scopes the tool requires; all must be held.
        side_effect: the tool's side-effect level.
        allowed_side_effects: levels the agent may use, such as ``{"read"}`` for a
            read-only agent. None (default) allows every level.
        tool: the tool's name, for the reason.
        agent: the agent's name, for the reason.

    Returns:
        ``allow``, or ``block`` from ``permission`` naming the missing scopes or the
        forbidden side-effect level.
    """
    if not tool_scopes and (allowed_side_effects is None or side_effect in allowed_side_effects):
        return _PERMITTED  # nothing required, level allowed: the common case, at no cost
    held = tuple(agent_scopes)
    missing = sorted(s for s in set(tool_scopes) if not any(scope_covers(h, s) for h in held))
    who = f"agent {agent!r}" if agent else "the agent"
    what = f"{side_effect} tool {tool!r}" if tool else f"a {side_effect} tool"
    if missing:
        return Verdict(
            "permission",
            "block",
            reason=f"{who} lacks scope {', '.join(missing)} required by {what}",
            message=(
                f"You are not permitted to call {tool or 'this tool'!r}: it needs the "
                f"permission {', '.join(missing)}, which you do not have. Do not retry it; "
                "continue with the tools you may use, or explain what is needed."
            ),
            details={"missing": missing, "side_effect": side_effect, "held": sorted(held)},
        )
    if allowed_side_effects is not None and side_effect not in allowed_side_effects:
        allowed = "/".join(s for s in SIDE_EFFECTS if s in allowed_side_effects) or "no"
        return Verdict(
            "permission",
            "block",
            reason=f"{who} may only call {allowed} tools; {tool or 'the tool'!r} is {side_effect}",
            message=(
                f"You are not permitted to call {tool or 'this tool'!r}: it is a "
                f"{side_effect} tool and you may only use {allowed} tools. Do not retry it."
            ),
            details={"side_effect": side_effect, "allowed": sorted(allowed_side_effects)},
        )
    return _PERMITTED


_PERMITTED = Verdict("permission", "allow")


class PermissionPolicy:
    """`check_permission` as a `ScopePolicy`.

    Args:
        allowed_side_effects: levels the agent may use. None (default): all.
    """

    name = "permission"

    def __init__(self, allowed_side_effects: Collection[SideEffect] | None = None) -> None:
        self.allowed_side_effects = (
            frozenset(allowed_side_effects) if allowed_side_effects is not None else None
        )

    def check(self, call: ProposedCall) -> Verdict:
        """Check the call's scopes and side-effect level."""
        return check_permission(
            call.agent_scopes,
            call.tool_scopes,
            call.side_effect,
            self.allowed_side_effects,
            tool=call.tool,
            agent=call.agent,
        )
