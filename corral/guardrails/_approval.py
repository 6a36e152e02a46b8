"""Approval: per call, run it (``auto``), ask a person first (``gate``), or ``block``.

`ApprovalPolicy` tries its `ApprovalRule`s in order (by tool name, side-effect level and
argument conditions; the first match wins), falls back to a default per side-effect
level (`DEFAULT_APPROVAL`: reads run, everything else waits for a person), and can
`~ApprovalPolicy.explain` every decision as an `ApprovalExplanation`. The `CheckChain`
runs it last, as its `ApprovalCheck`.

Pure and synchronous; verdicts are built once per rule, decision, tool and level, and
shared.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from .._verdict import Verdict
from ..errors import ConfigError
from ..tools import SIDE_EFFECTS, SideEffect
from ._arguments import ArgumentRule
from ._scope import ProposedCall

__all__ = [
    "DEFAULT_APPROVAL",
    "ApprovalDecision",
    "ApprovalExplanation",
    "ApprovalPolicy",
    "ApprovalRule",
    "Condition",
]

ApprovalDecision = Literal["auto", "gate", "block"]
"""``auto``: run it; ``gate``: a person approves first; ``block``: never."""

_DECISION_VERDICT: dict[str, Literal["allow", "approve", "block"]] = {
    "auto": "allow",
    "gate": "approve",
    "block": "block",
}
DEFAULT_APPROVAL: Mapping[SideEffect, ApprovalDecision] = MappingProxyType(
    {"read": "auto", "write": "gate", "external": "gate", "destructive": "gate"}
)
"""Without a matching rule: reads run, everything else waits for a person."""

_MAX_DECIDED = 4096
"""Approval verdicts an `ApprovalPolicy` keeps for reuse (rule x decision x tool x level)."""

Condition = ArgumentRule | Callable[[Mapping[str, Any]], bool]
"""An argument condition: a rule (strict `ArgumentRule.matches`) or a predicate."""


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """One approval rule: if the call matches, this is the decision.

    A rule matches when every given criterion does. The first matching rule wins.

    Example::

        ApprovalRule("auto", tool="refund", when=Range("amount", max=50),
                     reason="small refunds are routine")

    Args:
        decision: ``auto``, ``gate`` or ``block``.
        tool: tool name or ``fnmatch`` glob; None for any tool.
        side_effect: a level or a collection of levels; None for any.
        when: an argument condition: an `ArgumentRule` (the path must exist and pass)
            or a predicate on the arguments (an exception means no match).
        reason: why, in words for the person reading the journal.
        name: a short name for explanations. Default: built from the criteria.
    """

    decision: ApprovalDecision
    tool: str | None = None
    side_effect: SideEffect | Collection[SideEffect] | None = None
    when: Condition | None = None
    reason: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if self.decision not in _DECISION_VERDICT:
            raise ConfigError(
                f"ApprovalRule decision must be auto, gate or block, got {self.decision!r}"
            )
        unknown = [s for s in self.levels() if s not in SIDE_EFFECTS]
        if unknown:
            raise ConfigError(f"ApprovalRule: unknown side-effect level(s) {unknown}")

    def levels(self) -> tuple[str, ...]:
        """The side-effect levels the rule is limited to (empty: any)."""
        if self.side_effect is None:
            return ()
        if isinstance(self.side_effect, str):
            return (self.side_effect,)
        return tuple(self.side_effect)

    def label(self) -> str:
        """The rule's name, or a description of its criteria."""
        if self.name:
            return self.name
        parts: list[str] = [self.decision]
        if self.tool is not None:
            parts.append(f"tool={self.tool}")
        if self.side_effect is not None:
            parts.append(f"side_effect={'/'.join(self.levels())}")
        if self.when is not None:
            parts.append(
                f"when {self.when.describe()}"
                if isinstance(self.when, ArgumentRule)
                else f"when {getattr(self.when, '__name__', 'condition')}"
            )
        return " ".join(parts)

    def test(self, call: ProposedCall) -> tuple[bool, str]:
        """Whether the rule matches the call, and why (or why not)."""
        if self.tool is not None and not fnmatch.fnmatchcase(call.tool, self.tool):
            return False, f"tool {call.tool!r} is not {self.tool!r}"
        if self.side_effect is not None:
            levels = self.levels()
            if call.side_effect not in levels:
                return False, f"side effect {call.side_effect} is not {'/'.join(levels)}"
        if self.when is not None:
            if isinstance(self.when, ArgumentRule):
                if not self.when.matches(call.arguments):
                    return False, f"arguments do not satisfy {self.when.describe()}"
            else:
                try:
                    ok = bool(self.when(call.arguments))
                except Exception as exc:  # a condition that cannot be evaluated is not met
                    return False, f"condition raised {type(exc).__name__}: {exc}"
                if not ok:
                    return False, "condition is false"
        return True, "matches"


@dataclass(frozen=True, slots=True)
class ApprovalExplanation:
    """How `ApprovalPolicy` reached its decision for one call."""

    verdict: Verdict
    """The decision."""
    steps: tuple[str, ...]
    """One line per rule tried, then the outcome."""

    def __str__(self) -> str:
        return "\n".join(self.steps)


class ApprovalPolicy:
    """Decide per call: run it (``auto``), ask a person first (``gate``), or ``block``.

    Rules are tried in order and the first match wins; without a match, the default for
    the tool's side-effect level applies (read → auto; write, external, destructive →
    gate, as `DEFAULT_APPROVAL`).

    Example: refunds under 50 run, larger ones wait, deletions never run::

        policy = ApprovalPolicy([
            ApprovalRule("auto", tool="refund", when=Range("amount", max=49.99)),
            ApprovalRule("block", side_effect="destructive", reason="no deletions"),
        ])
        verdict = policy.decide(call)      # allow / approve / block
        print(policy.explain(call))        # which rules matched and why

    Args:
        rules: approval rules, first match wins.
        defaults: decision per side-effect level when no rule matches; missing levels
            fall back to `DEFAULT_APPROVAL`.
        name: guardrail name in verdicts. Default ``approval``.
    """

    def __init__(
        self,
        rules: Iterable[ApprovalRule] = (),
        *,
        defaults: Mapping[SideEffect, ApprovalDecision] | None = None,
        name: str = "approval",
    ) -> None:
        self.rules = tuple(rules)
        merged = dict(DEFAULT_APPROVAL)
        for level, decision in (defaults or {}).items():
            if level not in SIDE_EFFECTS or decision not in _DECISION_VERDICT:
                raise ConfigError(f"ApprovalPolicy default {level!r}: {decision!r} is invalid")
            merged[level] = decision
        self.defaults: Mapping[SideEffect, ApprovalDecision] = MappingProxyType(merged)
        self.name = name
        self._decided: dict[tuple[int, str, str, str], Verdict] = {}
        self._decided_for: tuple[ApprovalRule, ...] = self.rules

    def decide(self, call: ProposedCall) -> Verdict:
        """The decision for one call.

        Args:
            call: the proposed call.

        Returns:
            ``allow`` (auto), ``approve`` (gate) or ``block``; ``details`` holds the
            decision, the rule that made it (or ``default``) and the side-effect level.
            The verdict depends only on the rule, the decision, the tool and its level,
            so it is built once for each and shared: treat it as read-only.
        """
        matched: ApprovalRule | None = None
        matched_index = -1
        for index, rule in enumerate(self.rules):
            if rule.test(call)[0]:
                matched, matched_index = rule, index
                break
        decision = matched.decision if matched is not None else self.defaults[call.side_effect]
        if self._decided_for is not self.rules:  # the rules were replaced: start over
            self._decided, self._decided_for = {}, self.rules
        key = (matched_index, decision, call.tool, call.side_effect)
        verdict = self._decided.get(key)
        if verdict is None:
            if matched is not None:
                verdict = self._verdict(
                    call, decision, matched.label(), matched_index, matched.reason
                )
            else:
                verdict = self._verdict(
                    call, decision, f"default for {call.side_effect} tools", None, ""
                )
            if len(self._decided) < _MAX_DECIDED:
                self._decided[key] = verdict
        return verdict

    def explain(self, call: ProposedCall) -> ApprovalExplanation:
        """Every rule tried for a call and why it did or did not match, then the outcome."""
        steps: list[str] = []
        for index, rule in enumerate(self.rules):
            matched, why = rule.test(call)
            steps.append(f"rule {index + 1} ({rule.label()}): {why}")
            if matched:
                verdict = self._verdict(call, rule.decision, rule.label(), index, rule.reason)
                steps.append(f"-> {rule.decision}: {verdict.reason}")
                return ApprovalExplanation(verdict, tuple(steps))
        decision = self.defaults[call.side_effect]
        verdict = self._verdict(call, decision, f"default for {call.side_effect} tools", None, "")
        steps.append(f"no rule matched -> {decision}: {verdict.reason}")
        return ApprovalExplanation(verdict, tuple(steps))

    def _verdict(
        self,
        call: ProposedCall,
        decision: ApprovalDecision,
        label: str,
        index: int | None,
        why: str,
    ) -> Verdict:
        reason = f"{call.tool} ({call.side_effect}): {decision} by {label}"
        if why:
            reason += f" ({why})"
        details: dict[str, Any] = {
            "decision": decision,
            "rule": "default" if index is None else index,
            "side_effect": call.side_effect,
        }
        message = ""
        if decision == "block":
            message = (
                f"Calling {call.tool!r} with these arguments is not allowed"
                f"{': ' + why if why else ''}. Do not retry it; explain to the user what "
                "you would need."
            )
        elif decision == "gate":
            message = f"The call to {call.tool!r} needs a person's approval before it runs."
        return Verdict(self.name, _DECISION_VERDICT[decision], reason, message, details)
