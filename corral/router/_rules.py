"""Routing rules: conditions on a task, checked by plain code (never a model).

A `Rule` compiles everything it can when it is built (keyword alternation, regex, kind
set), so checking a task costs a few set lookups and at most two regex searches.
Conditions are checked cheapest first (kind, tags, keywords, regex, predicate), so a
predicate only runs for tasks the other conditions already accept.

Keywords are matched on the case-folded text (`str.casefold`, Unicode caseless matching)
with `str.find` and a word-boundary check on each side, not with one big regex: Python's
regex engine tries every alternative at every position, about 150 µs for six keywords on a
5 KB text, against a few µs for the substring searches. A phrase ("credit note") has its
own regex, so any run of whitespace matches its spaces, searched only when its longest
word occurs in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._task import Task
from ..errors import ConfigError

__all__ = ["NamedPredicate", "Predicate", "Rule", "RuleCheck"]

Predicate = Callable[[Task], bool]
"""A routing predicate: a pure function of the task that returns True or False."""


@dataclass(frozen=True, slots=True)
class NamedPredicate:
    """A predicate with the name it was registered under (used by the TOML loader).

    Explanations then say ``predicate 'is_gold'`` rather than ``predicate <lambda>``.
    """

    name: str
    function: Predicate

    def __call__(self, task: Task) -> bool:
        """Call the wrapped predicate.

        Args:
            task: the task being routed.

        Returns:
            What the wrapped predicate returns.
        """
        return self.function(task)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """The result of checking one rule against one task, condition by condition."""

    rule: str
    """Name of the rule checked."""
    agent: str
    """The agent the rule routes to."""
    matched: bool
    """Whether every condition held."""
    conditions: tuple[tuple[bool, str], ...]
    """Each condition in the order checked: (held, what it required and what was found)."""
    error: Exception | None = None
    """The exception the predicate raised, if it raised (the rule then did not match)."""

    @property
    def passed(self) -> tuple[str, ...]:
        """The reasons of the conditions that held."""
        return tuple(text for ok, text in self.conditions if ok)

    @property
    def failed(self) -> tuple[str, ...]:
        """The reasons of the conditions that did not hold."""
        return tuple(text for ok, text in self.conditions if not ok)

    @property
    def reason(self) -> str:
        """One line: why the rule matched (conditions joined by "and"), or why not."""
        if self.matched:
            return " and ".join(self.passed)
        return "; ".join(self.failed)


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """A routing rule: every condition given must hold (they are ANDed).

    Rules are immutable values: two rules built from the same arguments are equal.
    Everything is compiled once, here, so routing never compiles a pattern.

    Example::

        Rule("refunds", agent="billing", kind="billing", keywords=["refund", "credit note"])

    Args:
        name: unique name within a router, shown in routes, explanations and events.
        agent: the sub-agent a matching task goes to.
        kind: `Task.kind` must equal this string, or be one of these strings.
        tags: every one of these must be in `Task.tags` (a single string is one tag).
        keywords: at least one must occur in `Task.text`, case-insensitive (Unicode case
            folding: ``"straße"`` finds ``"STRASSE"``), as a whole word or phrase
            (``"invoice"`` does not match ``"reinvoiced"``; the spaces in ``"credit note"``
            match any run of whitespace). A single string is one keyword.
        regex: a pattern `re.search` must find in `Task.text` (a string or a compiled
            pattern; flags such as ``(?i)`` go inside the pattern).
        predicate: a pure function of the task returning True or False; routing calls it
            only when the rule's other conditions hold. If it raises, or
            returns something other than a bool, the rule does not match and the
            explanation says why; routing itself never fails because of it.

    Raises:
        ConfigError: a missing name or agent, an empty or mistyped condition, an invalid
            regex, or no condition at all (use `Rule.always` for a catch-all). The message
            names the rule.
    """

    name: str
    """Unique name within a router."""
    agent: str
    """The sub-agent a matching task goes to."""
    kind: str | tuple[str, ...] | None
    """The accepted kind (a string) or kinds (a tuple); None when kind is not checked."""
    tags: frozenset[str]
    """Tags the task must all carry; empty when tags are not checked."""
    keywords: tuple[str, ...]
    """Keywords of which at least one must occur; empty when keywords are not checked."""
    regex: str | re.Pattern[str] | None
    """The pattern searched for in the text, as given; None when not checked."""
    predicate: Predicate | None
    """The predicate, or None."""
    catch_all: bool
    """True for a rule built by `Rule.always`: it matches every task."""
    _kinds: frozenset[str] | None = field(repr=False, compare=False)
    _keyword_specs: tuple[_Keyword, ...] = field(repr=False, compare=False)
    _regex_re: re.Pattern[str] | None = field(repr=False, compare=False)
    _predicate_label: str = field(repr=False, compare=False)

    def __init__(
        self,
        name: str,
        *,
        agent: str,
        kind: str | Iterable[str] | None = None,
        tags: str | Iterable[str] = (),
        keywords: str | Iterable[str] = (),
        regex: str | re.Pattern[str] | None = None,
        predicate: Predicate | None = None,
    ) -> None:
        self._setup(name, agent, kind, tags, keywords, regex, predicate, catch_all=False)

    @classmethod
    def always(cls, name: str, *, agent: str) -> Rule:
        """Build a catch-all rule that matches every task.

        Put it last: a router refuses rules after it, since they could never match.

        Args:
            name: unique name within a router.
            agent: the sub-agent every task reaching this rule goes to.

        Returns:
            The catch-all rule.

        Raises:
            ConfigError: a missing name or agent.
        """
        rule = object.__new__(cls)
        rule._setup(name, agent, None, (), (), None, None, catch_all=True)
        return rule

    # -- construction ---------------------------------------------------------------------------

    def _setup(
        self,
        name: Any,
        agent: Any,
        kind: Any,
        tags: Any,
        keywords: Any,
        regex: Any,
        predicate: Any,
        *,
        catch_all: bool,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a routing rule needs a non-empty name (got {name!r})")
        where = f"rule {name!r}"
        if not isinstance(agent, str) or not agent.strip():
            raise ConfigError(f"{where}: agent must be a non-empty agent name (got {agent!r})")

        kinds: frozenset[str] | None = None
        stored_kind: str | tuple[str, ...] | None = None
        if kind is not None:
            if isinstance(kind, str):
                stored_kind = _strings(where, "kind", [kind])[0]
            else:
                stored_kind = _strings(where, "kind", kind)
                if not stored_kind:
                    raise ConfigError(
                        f"{where}: kind is an empty collection, so no task could match; "
                        "leave kind out to accept every kind"
                    )
            kinds = frozenset([stored_kind] if isinstance(stored_kind, str) else stored_kind)

        tag_set = frozenset(_strings(where, "tags", [tags] if isinstance(tags, str) else tags))
        words = _strings(
            where, "keywords", [keywords] if isinstance(keywords, str) else keywords, strip=True
        )

        specs = tuple(_Keyword.of(word) for word in words)

        regex_re: re.Pattern[str] | None = None
        if regex is not None:
            if isinstance(regex, re.Pattern):
                if not isinstance(regex.pattern, str):
                    raise ConfigError(f"{where}: regex must be a str pattern, not bytes")
                regex_re = regex
            elif isinstance(regex, str):
                if not regex:
                    raise ConfigError(f"{where}: regex is empty, so it would match every text")
                try:
                    regex_re = re.compile(regex)
                except re.error as exc:
                    raise ConfigError(f"{where}: invalid regex {regex!r}: {exc}") from exc
            else:
                raise ConfigError(f"{where}: regex must be a string (got {regex!r})")

        if predicate is not None and not callable(predicate):
            raise ConfigError(f"{where}: predicate must be callable (got {predicate!r})")

        if not catch_all and kinds is None and not (tag_set or words or regex_re or predicate):
            raise ConfigError(
                f"{where} has no condition, so it would match every task; give kind, tags, "
                f"keywords, regex or predicate, or use Rule.always({name!r}, agent=...) "
                "for a catch-all"
            )

        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "agent", agent)
        set_(self, "kind", stored_kind)
        set_(self, "tags", tag_set)
        set_(self, "keywords", words)
        set_(self, "regex", regex)
        set_(self, "predicate", predicate)
        set_(self, "catch_all", catch_all)
        set_(self, "_kinds", kinds)
        set_(self, "_keyword_specs", specs)
        set_(self, "_regex_re", regex_re)
        set_(self, "_predicate_label", _label(predicate) if predicate is not None else "")

    # -- checking -------------------------------------------------------------------------------

    def check(self, task: Task) -> RuleCheck:
        """Check every condition of the rule against a task and say why each held or not.

        Unlike routing, this evaluates all conditions (the predicate too), so a person sees
        everything that stands between the task and this rule.

        Args:
            task: the task to check.

        Returns:
            The outcome, with a reason for each condition.
        """
        conditions: list[tuple[bool, str]] = []
        error: Exception | None = None
        if self.catch_all:
            conditions.append((True, "catch-all: matches every task"))
        if self._kinds is not None:
            ok = task.kind in self._kinds
            conditions.append((ok, self._kind_text(task.kind, ok)))
        if self.tags:
            missing = self.tags - task.tags
            conditions.append((not missing, self._tags_text(missing)))
        if self._keyword_specs:
            keyword = self._find_keyword(task.text.casefold())
            conditions.append((keyword is not None, self._keyword_text(keyword)))
        if self._regex_re is not None:
            found = self._regex_re.search(task.text)
            conditions.append((found is not None, self._regex_text(found)))
        if self.predicate is not None:
            label = self._predicate_label
            try:
                result = self.predicate(task)
            except Exception as exc:  # a broken predicate is a non-match, never a crash
                error = exc
                conditions.append((False, f"predicate {label} raised {type(exc).__name__}: {exc}"))
            else:
                if result is True:
                    conditions.append((True, f"predicate {label}"))
                elif result is False:
                    conditions.append((False, f"predicate {label} is false"))
                else:
                    conditions.append(
                        (False, f"predicate {label} returned {result!r}, not True or False")
                    )
        matched = all(ok for ok, _ in conditions)
        return RuleCheck(self.name, self.agent, matched, tuple(conditions), error)

    def _matches(self, task: Task, folded: str) -> bool:
        """Say whether the task matches; stops at the first failed condition, builds no text.

        `folded` is ``task.text.casefold()``, computed once per routing by the caller.
        """
        if self._kinds is not None and task.kind not in self._kinds:
            return False
        if self.tags and not self.tags <= task.tags:
            return False
        if self._keyword_specs and self._find_keyword(folded) is None:
            return False
        if self._regex_re is not None and self._regex_re.search(task.text) is None:
            return False
        if self.predicate is not None:
            try:
                return self.predicate(task) is True
            except Exception:
                return False
        return True

    def _find_keyword(self, folded: str) -> str | None:
        """The first keyword (in the rule's order) occurring in the case-folded text."""
        for spec in self._keyword_specs:
            if spec.occurs_in(folded):
                return spec.keyword
        return None

    def _reason(self, task: Task, folded: str) -> str:
        """The route's reason for a task `_matches` accepted (the predicate is not re-run)."""
        parts: list[str] = []
        if self.catch_all:
            parts.append("catch-all: matches every task")
        if self._kinds is not None:
            parts.append(self._kind_text(task.kind, True))
        if self.tags:
            parts.append(self._tags_text(frozenset()))
        if self._keyword_specs:
            parts.append(self._keyword_text(self._find_keyword(folded)))
        if self._regex_re is not None:
            parts.append(self._regex_text(self._regex_re.search(task.text)))
        if self.predicate is not None:
            parts.append(f"predicate {self._predicate_label}")
        return " and ".join(parts)

    # -- reasons in words -----------------------------------------------------------------------

    def _kind_text(self, kind: str | None, ok: bool) -> str:
        if ok:
            return f"kind == {kind!r}"
        assert self._kinds is not None
        if len(self._kinds) == 1:
            return f"kind {kind!r} is not {next(iter(self._kinds))!r}"
        return f"kind {kind!r} is not one of {_listing(self._kinds)}"

    def _tags_text(self, missing: frozenset[str]) -> str:
        if missing:
            return f"missing tags {_listing(missing)}"
        return f"has tags {_listing(self.tags)}"

    def _keyword_text(self, found: str | None) -> str:
        if found is None:
            return f"none of the keywords {', '.join(repr(k) for k in self.keywords)}"
        return f"keyword {found!r}"

    def _regex_text(self, found: re.Match[str] | None) -> str:
        assert self._regex_re is not None
        pattern = self._regex_re.pattern
        if found is None:
            return f"regex /{pattern}/ not found"
        return f"regex /{pattern}/ found {found.group(0)!r}"


@dataclass(frozen=True, slots=True)
class _Keyword:
    """One keyword, prepared for searching case-folded text."""

    keyword: str
    """As the rule was given it (used in reasons)."""
    needle: str
    """Case-folded; for a phrase, its longest word (the phrase cannot occur without it)."""
    phrase: re.Pattern[str] | None
    """For a phrase: words joined by ``\\s+``, bounded by ``(?<!\\w)`` and ``(?!\\w)``."""

    @classmethod
    def of(cls, keyword: str) -> _Keyword:
        words = keyword.casefold().split()
        if len(words) == 1:
            return cls(keyword, words[0], None)
        pattern = r"\s+".join(re.escape(word) for word in words)
        return cls(keyword, max(words, key=len), re.compile(rf"(?<!\w){pattern}(?!\w)"))

    def occurs_in(self, folded: str) -> bool:
        needle = self.needle
        start = folded.find(needle)
        if start < 0:
            return False
        if self.phrase is not None:
            return self.phrase.search(folded) is not None
        size, end = len(needle), len(folded)
        while start >= 0:
            # The same boundaries as the regex (?<!\w)keyword(?!\w); sre's \w is isalnum or "_".
            stop = start + size
            if (start == 0 or not _is_word(folded[start - 1])) and (
                stop == end or not _is_word(folded[stop])
            ):
                return True
            start = folded.find(needle, start + 1)
        return False


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _strings(where: str, what: str, values: Any, *, strip: bool = False) -> tuple[str, ...]:
    """Check a collection of non-empty strings; keep order, drop exact duplicates."""
    try:
        items = list(values)
    except TypeError:
        raise ConfigError(f"{where}: {what} must be a string or strings (got {values!r})") from None
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: {what} must be strings (got {item!r})")
        text = item.strip() if strip else item
        if not text.strip():
            raise ConfigError(f"{where}: {what} contains an empty string")
        if text not in out:
            out.append(text)
    return tuple(out)


def _label(predicate: Predicate) -> str:
    if isinstance(predicate, NamedPredicate):
        return repr(predicate.name)
    name = getattr(predicate, "__name__", None)
    if isinstance(name, str) and name != "<lambda>":
        return name
    return "(lambda)" if name == "<lambda>" else repr(predicate)


def _listing(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in sorted(values))
