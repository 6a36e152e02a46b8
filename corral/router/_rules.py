"""Deterministic routing: rules in code or TOML, first match wins, never a model."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .._task import Task
from ..errors import ConfigError, RoutingError

__all__ = ["Explanation", "Route", "Router", "Rule", "RuleCheck"]

Predicate = Callable[[Task], bool]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a task goes, and why."""

    agent: str
    """The sub-agent chosen."""
    rule: str
    """The rule that matched."""
    reason: str
    """Why it matched, in words."""


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One rule tried against one task."""

    rule: str
    agent: str
    matched: bool
    reasons: tuple[str, ...]
    """For each condition: what it required and whether the task met it."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule tried for a task, in order, and the route chosen (if any)."""

    task: str
    checks: tuple[RuleCheck, ...]
    route: Route | None

    def __str__(self) -> str:
        lines = [f"routing {self.task!r}:"]
        for check in self.checks:
            mark = "✓" if check.matched else "✗"
            lines.append(f"  {mark} rule {check.rule!r} -> {check.agent}: {'; '.join(check.reasons)}")
        if self.route is None:
            lines.append("  no rule matched")
        else:
            lines.append(f"  => agent {self.route.agent!r} (rule {self.route.rule!r})")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Rule:
    """A routing rule: every condition given must hold (they are ANDed).

    Args:
        name: unique name, shown in explanations and events.
        agent: the sub-agent a matching task goes to.
        kind: the task kind, or a collection of accepted kinds.
        tags: tags the task must all carry.
        keywords: at least one must appear in the text (case-insensitive, whole words).
        regex: a pattern `re.search` must find in the text.
        predicate: a function of the task; an exception in it counts as no match.

    Raises:
        ConfigError: no condition at all (use `Rule.always`), or an invalid regex.
    """

    name: str
    agent: str
    kind: str | Collection[str] | None = None
    tags: Collection[str] = ()
    keywords: Collection[str] = ()
    regex: str | None = None
    predicate: Predicate | None = None
    catch_all: bool = False
    _kinds: frozenset[str] = field(init=False, repr=False, compare=False)
    _keyword_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _regex_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        name: str,
        *,
        agent: str,
        kind: str | Collection[str] | None = None,
        tags: Iterable[str] = (),
        keywords: Iterable[str] = (),
        regex: str | None = None,
        predicate: Predicate | None = None,
        catch_all: bool = False,
    ) -> None:
        set_ = object.__setattr__
        if not name:
            raise ConfigError("a routing rule needs a name")
        if not agent:
            raise ConfigError(f"rule {name!r} needs an agent")
        kinds = frozenset([kind] if isinstance(kind, str) else (kind or ()))
        words = tuple(w.strip() for w in keywords if w.strip())
        set_(self, "name", name)
        set_(self, "agent", agent)
        set_(self, "kind", kind)
        set_(self, "tags", frozenset(tags))
        set_(self, "keywords", words)
        set_(self, "regex", regex)
        set_(self, "predicate", predicate)
        set_(self, "catch_all", catch_all)
        set_(self, "_kinds", kinds)
        keyword_re = None
        if words:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            keyword_re = re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)
        set_(self, "_keyword_re", keyword_re)
        regex_re = None
        if regex is not None:
            try:
                regex_re = re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"rule {name!r}: invalid regex {regex!r}: {exc}") from exc
        set_(self, "_regex_re", regex_re)
        if not catch_all and not (kinds or self.tags or words or regex or predicate):
            raise ConfigError(
                f"rule {name!r} has no condition, so it would match every task; "
                "use Rule.always(name, agent=...) if that is what you mean"
            )

    @classmethod
    def always(cls, name: str, *, agent: str) -> Rule:
        """A rule that matches every task (put it last)."""
        return cls(name, agent=agent, catch_all=True)

    def check(self, task: Task) -> RuleCheck:
        """Test the rule against a task, with the reason for each condition."""
        reasons: list[str] = []
        ok = True
        if self.catch_all:
            reasons.append("matches every task")
        if self._kinds:
            wanted = " or ".join(repr(k) for k in sorted(self._kinds))
            hit = task.kind in self._kinds
            ok &= hit
            reasons.append(f"kind == {wanted}" if hit else f"kind {task.kind!r} is not {wanted}")
        if self.tags:
            missing = sorted(set(self.tags) - task.tags)
            ok &= not missing
            reasons.append(
                f"has tags {sorted(self.tags)}" if not missing else f"missing tags {missing}"
            )
        if self._keyword_re is not None:
            found = self._keyword_re.search(task.text)
            ok &= found is not None
            reasons.append(
                f"keyword {found.group(1).lower()!r}"
                if found
                else f"none of the keywords {list(self.keywords)}"
            )
        if self._regex_re is not None:
            found = self._regex_re.search(task.text)
            ok &= found is not None
            reasons.append(
                f"regex {self.regex!r} found {found.group(0)!r}"
                if found
                else f"regex {self.regex!r} not found"
            )
        if self.predicate is not None:
            label = getattr(self.predicate, "__name__", "predicate")
            try:
                hit = bool(self.predicate(task))
            except Exception as exc:
                hit = False
                reasons.append(f"predicate {label} raised {type(exc).__name__}: {exc}")
            else:
                reasons.append(f"predicate {label} is {hit}")
            ok &= hit
        return RuleCheck(self.name, self.agent, ok, tuple(reasons))


class _RuleData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    agent: str
    kind: str | list[str] | None = None
    tags: list[str] = []
    keywords: list[str] = []
    regex: str | None = None
    predicate: str | None = None
    always: bool = False

    @field_validator("name", "agent")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class _RouterData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None


class _FileData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router: _RouterData = _RouterData()
    rule: list[dict[str, Any]] = []


class Router:
    """Sends each task to a sub-agent by the first rule that matches.

    Args:
        rules: the rules, in order.
        default: the agent for tasks no rule matches; without it they raise `RoutingError`.

    Raises:
        ConfigError: two rules with the same name.
    """

    def __init__(self, rules: Iterable[Rule], *, default: str | None = None) -> None:
        self._rules: list[Rule] = []
        self.default = default
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        """Append a rule (it is tried after the existing ones).

        Raises:
            ConfigError: a rule with that name exists.
        """
        if any(r.name == rule.name for r in self._rules):
            raise ConfigError(f"two routing rules are named {rule.name!r}")
        self._rules.append(rule)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def agents(self) -> set[str]:
        """Every agent the rules (and the default) route to."""
        agents = {r.agent for r in self._rules}
        if self.default is not None:
            agents.add(self.default)
        return agents

    def validate(self, agent_names: Iterable[str]) -> None:
        """Check every rule routes to a known agent.

        Raises:
            ConfigError: listing the rules (and default) that name unknown agents.
        """
        known = set(agent_names)
        bad = [f"rule {r.name!r} -> {r.agent!r}" for r in self._rules if r.agent not in known]
        if self.default is not None and self.default not in known:
            bad.append(f"default -> {self.default!r}")
        if bad:
            raise ConfigError(
                f"routing rules name unknown agents: {', '.join(bad)}; known agents: "
                f"{', '.join(sorted(known)) or '(none)'}"
            )

    def explain(self, task: Task) -> Explanation:
        """Say which rule matches a task and why, or why each rule does not."""
        checks: list[RuleCheck] = []
        route: Route | None = None
        for rule in self._rules:
            check = rule.check(task)
            checks.append(check)
            if check.matched:
                route = Route(rule.agent, rule.name, " and ".join(check.reasons))
                break
        if route is None and self.default is not None:
            route = Route(self.default, "(default)", "no rule matched; default agent")
        return Explanation(task.text, tuple(checks), route)

    def route(self, task: Task) -> Route:
        """Choose the agent for a task.

        Raises:
            RoutingError: no rule matched and there is no default; carries the explanation.
        """
        for rule in self._rules:
            check = rule.check(task)
            if check.matched:
                return Route(rule.agent, rule.name, " and ".join(check.reasons))
        if self.default is not None:
            return Route(self.default, "(default)", "no rule matched; default agent")
        explanation = self.explain(task)
        raise RoutingError(f"no routing rule matches this task\n{explanation}", explanation=explanation)

    @classmethod
    def from_toml(
        cls, source: str | Path, *, predicates: Mapping[str, Predicate] | None = None
    ) -> Router:
        """Load rules from a TOML file (a path) or TOML text.

        The format is ``[router] default = "agent"`` (optional) and ``[[rule]]`` tables with
        ``name``, ``agent``, ``kind`` (string or list), ``tags``, ``keywords``, ``regex``,
        ``predicate`` (a name looked up in `predicates`) and ``always``.

        Raises:
            ConfigError: unreadable or invalid TOML, unknown keys, wrong types, or unknown
                predicate names; the message names the file and the rule.
        """
        label = "TOML text"
        text = str(source)
        path = Path(source) if isinstance(source, Path) or "\n" not in str(source) else None
        if path is not None and (isinstance(source, Path) or path.suffix == ".toml" or path.exists()):
            label = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read routing rules from {label}: {exc.strerror}") from exc
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"routing rules in {label} are not valid TOML: {exc}") from exc
        try:
            data = _FileData.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"routing rules in {label}: {_describe(exc)}") from exc
        predicates = dict(predicates or {})
        rules: list[Rule] = []
        for index, item in enumerate(data.rule):
            where = f"{label}, rule #{index + 1}" + (f" ({item['name']!r})" if "name" in item else "")
            try:
                spec = _RuleData.model_validate(item)
            except ValidationError as exc:
                raise ConfigError(f"{where}: {_describe(exc)}") from exc
            predicate = None
            if spec.predicate is not None:
                if spec.predicate not in predicates:
                    known = ", ".join(sorted(predicates)) or "none were given"
                    raise ConfigError(f"{where}: unknown predicate {spec.predicate!r} ({known})")
                predicate = predicates[spec.predicate]
            try:
                rules.append(
                    Rule(
                        spec.name,
                        agent=spec.agent,
                        kind=spec.kind,
                        tags=spec.tags,
                        keywords=spec.keywords,
                        regex=spec.regex,
                        predicate=predicate,
                        catch_all=spec.always,
                    )
                )
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        try:
            return cls(rules, default=data.router.default)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )
