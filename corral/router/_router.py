"""The router: rules tried in order, first match wins, with an explanation on demand."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .._task import Task
from ..errors import ConfigError, RoutingError
from ._rules import Predicate, Rule, RuleCheck

__all__ = ["DEFAULT_REASON", "DEFAULT_RULE", "Explanation", "Route", "Router"]

DEFAULT_RULE = "(default)"
"""The `Route.rule` of a task sent to the router's default agent."""
DEFAULT_REASON = "no rule matched; default agent"
"""The `Route.reason` of a task sent to the router's default agent."""

_SHOWN_TEXT = 80  # characters of the task text quoted in an explanation


@dataclass(frozen=True, slots=True)
class Route:
    """Where a task goes, and why."""

    agent: str
    """The sub-agent chosen."""
    rule: str
    """The name of the rule that matched, or ``(default)`` for the default agent."""
    reason: str
    """Why, in words, such as ``kind == 'billing' and keyword 'invoice'``."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule tried for a task, in order, and the route chosen (if any).

    ``str(explanation)`` is a multi-line text a person can follow.
    """

    task: Task
    """The task routed."""
    checks: tuple[RuleCheck, ...]
    """The rules tried, in order, up to and including the one that matched."""
    route: Route | None
    """The route chosen: by a rule, by the default agent, or None (unroutable)."""

    @property
    def rule(self) -> str | None:
        """The name of the rule that matched, or None when no rule did."""
        if self.checks and self.checks[-1].matched:
            return self.checks[-1].rule
        return None

    def __str__(self) -> str:
        text = self.task.text
        if len(text) > _SHOWN_TEXT:
            text = text[: _SHOWN_TEXT - 3] + "..."
        tags = ", ".join(repr(t) for t in sorted(self.task.tags)) or "none"
        lines = [f"Routing task {text!r} (kind: {self.task.kind!r}; tags: {tags})"]
        if not self.checks:
            lines.append("  (the router has no rules)")
        for number, check in enumerate(self.checks, start=1):
            verdict = "MATCHED" if check.matched else "no match"
            lines.append(f"  rule {number} {check.rule!r} -> {check.agent}: {verdict}")
            lines.extend(
                f"      [{'pass' if ok else 'fail'}] {reason}" for ok, reason in check.conditions
            )
        if self.route is None:
            lines.append("Result: no rule matched and the router has no default agent")
        elif self.rule is None:
            lines.append(f"Result: no rule matched; default agent {self.route.agent!r}")
        else:
            lines.append(f"Result: agent {self.route.agent!r} by rule {self.route.rule!r}")
        return "\n".join(lines)


class Router:
    """Sends each task to a sub-agent: the first rule that matches wins; never a model.

    Example::

        router = Router(
            [
                Rule("billing", agent="billing", kind="billing"),
                Rule("support", agent="support", keywords=["password", "login"]),
            ],
            default="triage",
        )
        router.route(task).agent

    Args:
        rules: the rules, in the order they are tried.
        default: the agent for tasks no rule matches. Default None: such a task raises
            `RoutingError`.

    Raises:
        ConfigError: two rules with the same name, a rule placed after a catch-all (it
            could never match), a default next to a catch-all, or an empty default name.
    """

    __slots__ = ("_default", "_fold", "_rules")

    def __init__(self, rules: Iterable[Rule], *, default: str | None = None) -> None:
        if default is not None and (not isinstance(default, str) or not default.strip()):
            raise ConfigError(f"the default agent must be a non-empty name (got {default!r})")
        self._default = default
        self._rules: tuple[Rule, ...] = ()
        self._fold = False  # whether any rule has keywords, so route() must case-fold the text
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        """Append a rule; it is tried after the existing ones.

        Args:
            rule: the rule to add.

        Raises:
            ConfigError: a rule of that name exists, the last rule is a catch-all, or the
                rule is a catch-all and the router has a default agent.
        """
        if not isinstance(rule, Rule):
            raise ConfigError(f"a router takes Rule objects, not {type(rule).__name__}")
        if any(r.name == rule.name for r in self._rules):
            raise ConfigError(f"two routing rules are named {rule.name!r}")
        if self._rules and self._rules[-1].catch_all:
            raise ConfigError(
                f"rule {rule.name!r} comes after the catch-all rule {self._rules[-1].name!r}, "
                "so it could never match; put catch-alls last"
            )
        if rule.catch_all and self._default is not None:
            raise ConfigError(
                f"catch-all rule {rule.name!r} matches every task, so the default agent "
                f"{self._default!r} would never be used; drop one of them"
            )
        # A new tuple rather than an append: a route() running meanwhile keeps its snapshot.
        self._rules = (*self._rules, rule)
        self._fold = self._fold or bool(rule.keywords)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, in the order they are tried."""
        return self._rules

    @property
    def default(self) -> str | None:
        """The agent for tasks no rule matches, or None."""
        return self._default

    @property
    def agents(self) -> frozenset[str]:
        """Every agent name the rules and the default route to."""
        names = {r.agent for r in self._rules}
        if self._default is not None:
            names.add(self._default)
        return frozenset(names)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        names = ", ".join(repr(r.name) for r in self._rules)
        return f"Router([{names}], default={self._default!r})"

    def validate(self, agent_names: Iterable[str]) -> None:
        """Check that every rule, and the default, routes to an agent that exists.

        Args:
            agent_names: the names of the available agents (a mapping's keys work).

        Raises:
            ConfigError: listing each rule (and the default) that names an unknown agent,
                with close matches when there are some.
        """
        known = frozenset(agent_names)

        def unknown(target: str) -> str:
            close = difflib.get_close_matches(target, sorted(known), n=1)
            return f"{target!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

        bad = [
            f"rule {r.name!r} -> {unknown(r.agent)}" for r in self._rules if r.agent not in known
        ]
        if self._default is not None and self._default not in known:
            bad.append(f"default -> {unknown(self._default)}")
        if bad:
            available = ", ".join(repr(n) for n in sorted(known)) or "none"
            raise ConfigError(
                f"routing rules name unknown agents: {'; '.join(bad)}. Known agents: {available}"
            )

    def route(self, task: Task) -> Route:
        """Choose the agent for a task: the first rule that matches, else the default.

        Builds no explanation on the way (that is `explain`), so it costs microseconds.

        Args:
            task: the task to route.

        Returns:
            The agent, the rule and the reason.

        Raises:
            RoutingError: no rule matched and there is no default agent. Its message holds
                the explanation text, and its ``explanation`` attribute the `Explanation`.
        """
        folded = task.text.casefold() if self._fold else ""
        for rule in self._rules:
            if rule._matches(task, folded):
                return Route(rule.agent, rule.name, rule._reason(task, folded))
        if self._default is not None:
            return Route(self._default, DEFAULT_RULE, DEFAULT_REASON)
        explanation = self.explain(task)
        raise RoutingError(
            f"no routing rule matched this task and there is no default agent\n{explanation}",
            explanation=explanation,
        )

    def explain(self, task: Task) -> Explanation:
        """Say which rule matches a task and why, or why each rule does not.

        Rules are tried in order until one matches; each tried rule has every condition
        checked, so the explanation gives all the reasons, not only the first failure.

        Args:
            task: the task to explain.

        Returns:
            The rules tried with their reasons, and the route chosen (None if unroutable).
        """
        checks: list[RuleCheck] = []
        route: Route | None = None
        for rule in self._rules:
            check = rule.check(task)
            checks.append(check)
            if check.matched:
                route = Route(rule.agent, rule.name, check.reason)
                break
        if route is None and self._default is not None:
            route = Route(self._default, DEFAULT_RULE, DEFAULT_REASON)
        return Explanation(task, tuple(checks), route)

    @classmethod
    def from_toml(
        cls, source: str | Path, *, predicates: Mapping[str, Predicate] | None = None
    ) -> Self:
        r"""Load a router from a TOML file or from TOML text.

        The format::

            [router]
            default = "triage"          # optional

            [[rule]]                     # tried in file order
            name = "billing"             # required, unique
            agent = "billing"            # required
            kind = "billing"             # or ["billing", "finance"]
            tags = ["vip"]
            keywords = ["invoice", "credit note"]
            regex = 'INV-\d{6}'
            predicate = "is_gold"        # a name looked up in `predicates`
            # always = true              # a catch-all, with no other condition

        Args:
            source: a path (a `Path`, or a string naming an existing file or ending in
                ``.toml``), or the TOML text itself.
            predicates: the functions ``predicate = "..."`` may name.

        Returns:
            The router.

        Raises:
            ConfigError: an unreadable file, invalid TOML, an unknown key, a wrong type, a
                missing name or agent, an unknown predicate name, a duplicate name, or any
                rule error. The message names the file (or ``<TOML text>``) and the rule
                by number (from 1) and name.
        """
        from ._toml import read_rules

        rules, default, label = read_rules(source, predicates or {})
        try:
            return cls(rules, default=default)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from exc
