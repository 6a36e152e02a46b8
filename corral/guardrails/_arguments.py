"""Argument rules: checks on a call's argument values beyond the JSON Schema.

`AllowedValues`, `Allowlist`, `Range` and `Pattern` live here, each
``check(tool_name, arguments)`` returning a `Verdict`; the rules against hostile strings
(`NoPathTraversal`, `NoSQLFragments`) are in `_hostile`. A rule names a path into the
arguments (``amount``, ``$.customer.id``, ``lines[*].sku``; see `_argpath`) and optionally
the tools it applies to, and reports each offending value as a `Violation`.
`ArgumentPolicy` runs a list of rules as one `ScopePolicy`.

Everything here is pure and synchronous; no rule performs I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._verdict import Verdict
from ..errors import ConfigError
from ._argpath import format_path, iter_strings, parse_path, resolve_path
from ._scope import ProposedCall

__all__ = [
    "AllowedValues",
    "Allowlist",
    "ArgumentPolicy",
    "ArgumentRule",
    "Pattern",
    "Range",
    "Violation",
    "preview",
]

_MAX_SHOWN = 5
_PREVIEW = 60


def preview(value: Any) -> str:
    """A short ``repr`` of an argument value for a violation (at most 60 characters).

    Args:
        value: the offending value.

    Returns:
        Its ``repr``, cut with an ellipsis when longer than 60 characters.
    """
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


@dataclass(frozen=True, slots=True)
class Violation:
    """One argument value that breaks a rule."""

    path: str
    """Concrete JSON path of the value, such as ``$.lines[2].sku``."""
    problem: str
    """What is wrong, in words a model can act on."""
    value: str = ""
    """Short preview of the offending value (for people; may be omitted)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class ArgumentRule(ABC):
    """A check on argument values beyond the schema.

    Subclasses implement `_violations` for the values at the rule's path. A rule whose
    path reaches nothing allows the call unless ``required=True``.

    Args:
        path: where the values are, such as ``amount``, ``$.customer.id`` or
            ``lines[*].sku``; None (for the rules that allow it) means every string in
            the arguments.
        tools: tool names (``fnmatch`` globs) the rule applies to. Default: every tool.
        required: a missing value is itself a violation. Default False.
        name: guardrail name in verdicts. Default: the rule's kind, such as ``range``.

    Raises:
        ConfigError: an invalid path.
    """

    kind: ClassVar[str] = "argument_rule"

    def __init__(
        self,
        path: str | None,
        *,
        tools: Iterable[str] | None = None,
        required: bool = False,
        name: str | None = None,
    ) -> None:
        self.path = path
        self._parts = parse_path(path) if path is not None else None
        self.tools = tuple(tools) if tools is not None else None
        self.required = required
        self.name = name or self.kind

    @property
    def where(self) -> str:
        """The rule's path in ``$.a.b`` form, or ``any string``."""
        return format_path(self._parts) if self._parts is not None else "any string"

    def applies_to(self, tool_name: str) -> bool:
        """Whether the rule covers calls to this tool."""
        if self.tools is None:
            return True
        return any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.tools)

    def _targets(self, arguments: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if self._parts is None:
            return list(iter_strings(arguments))
        return resolve_path(arguments, self._parts)

    @abstractmethod
    def _violations(self, where: str, value: Any) -> list[Violation]:
        """The violations of one value at a concrete path."""

    def violations(self, arguments: Mapping[str, Any]) -> list[Violation]:
        """Every violation in the arguments (ignoring which tool is called).

        Args:
            arguments: the call's arguments.

        Returns:
            The violations, in path order; empty when the arguments pass.
        """
        targets = self._targets(arguments)
        if not targets:
            if self.required and self.path is not None:
                return [Violation(format_path(self._parts or ()), "is required")]
            return []
        out: list[Violation] = []
        for where, value in targets:
            out.extend(self._violations(where, value))
        return out

    def matches(self, arguments: Mapping[str, Any]) -> bool:
        """Whether the path reaches at least one value and every value passes.

        This is the strict reading used when the rule is a condition (see
        `ApprovalRule.when`): a refund without an amount is not "under 50".
        """
        if self._parts is not None and not resolve_path(arguments, self._parts):
            return False
        return not self.violations(arguments)

    def describe(self) -> str:
        """A short description for explanations, such as ``$.amount <= 50``."""
        return f"{self.kind}({self.where})"

    def check(self, tool_name: str, arguments: Mapping[str, Any]) -> Verdict:
        """Check a call's arguments.

        Args:
            tool_name: the tool called (rules limited to other tools allow).
            arguments: the arguments.

        Returns:
            ``allow``, or ``block`` with every violation in the reason, the message for
            the model and ``details["violations"]``.
        """
        if not self.applies_to(tool_name):
            return Verdict(self.name, "allow")
        found = self.violations(arguments)
        if not found:
            return Verdict(self.name, "allow")
        return _block(self.name, tool_name, found, {"rule": self.describe()})


def _block(
    name: str, tool_name: str, found: Sequence[Violation], details: dict[str, Any]
) -> Verdict:
    shown = found[:_MAX_SHOWN]
    more = len(found) - len(shown)
    lines = "\n".join(f"- {v}" for v in shown)
    if more:
        lines += f"\n- ... and {more} more"
    reason = "; ".join(
        f"{v.path}: {v.problem}" + (f" ({v.value})" if v.value else "") for v in shown
    )
    if more:
        reason += f"; and {more} more"
    details = dict(details)
    details["violations"] = [
        {"path": v.path, "problem": v.problem, **({"value": v.value} if v.value else {})}
        for v in found
    ]
    return Verdict(
        name,
        "block",
        reason=f"{tool_name}: {reason}",
        message=(
            f"The arguments for {tool_name!r} are not allowed:\n{lines}\n"
            "Fix the arguments and try again, or explain to the user why you cannot."
        ),
        details=details,
    )


class AllowedValues(ArgumentRule):
    """The value (or each element of a list value) must be one of a fixed set.

    The model is told the allowed values, so keep them few and not secret.

    Example::

        AllowedValues("currency", ["EUR", "USD"], tools=["refund"])

    Args:
        path: where the value is.
        values: the allowed values (compared with ``==``; ``True`` never equals ``1``).
        tools: tool names (globs) the rule applies to. Default: every tool.
        required: a missing value is a violation. Default False.
        name: guardrail name. Default ``allowed_values``.
    """

    kind = "allowed_values"

    def __init__(
        self,
        path: str,
        values: Iterable[Any],
        *,
        tools: Iterable[str] | None = None,
        required: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, required=required, name=name)
        self.values = tuple(values)
        if not self.values:
            raise ConfigError(f"AllowedValues({path!r}) needs at least one value")

    def _allowed(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values) or any(
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and value == v
            for v in self.values
        )

    def _violations(self, where: str, value: Any) -> list[Violation]:
        items = value if isinstance(value, list) else [value]
        allowed = ", ".join(repr(v) for v in self.values)
        return [
            Violation(
                where if len(items) == 1 and not isinstance(value, list) else f"{where}[{i}]",
                f"{preview(item)} is not allowed; allowed values: {allowed}",
            )
            for i, item in enumerate(items)
            if not self._allowed(item)
        ]

    def describe(self) -> str:
        """Such as ``$.currency in ('EUR', 'USD')``."""
        return f"{self.where} in {self.values!r}"


class Allowlist(ArgumentRule):
    """The string value (or each string of a list) must match an allowlist entry.

    Entries are ``fnmatch`` globs (``ACC-1*``, ``*.example.com``), matched case-sensitively
    unless ``ignore_case=True``. Unlike `AllowedValues`, the model is not told the list
    (it may be long or sensitive): it is told the value is not permitted.

    Example::

        Allowlist("account_id", ["ACC-1001", "ACC-1002"], tools=["transfer*"])

    Args:
        path: where the value is.
        items: allowed values or glob patterns.
        ignore_case: compare case-insensitively. Default False.
        tools: tool names (globs) the rule applies to. Default: every tool.
        required: a missing value is a violation. Default False.
        name: guardrail name. Default ``allowlist``.
    """

    kind = "allowlist"

    def __init__(
        self,
        path: str,
        items: Iterable[str],
        *,
        ignore_case: bool = False,
        tools: Iterable[str] | None = None,
        required: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, required=required, name=name)
        self.ignore_case = ignore_case
        entries = [i.lower() if ignore_case else i for i in items]
        self._exact = frozenset(e for e in entries if not any(c in e for c in "*?["))
        self._globs = tuple(e for e in entries if e not in self._exact)
        self._glob_re = (
            re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in self._globs))
            if self._globs
            else None
        )
        if not entries:
            raise ConfigError(f"Allowlist({path!r}) needs at least one item")

    def allows(self, value: str) -> bool:
        """Whether one string is on the allowlist."""
        key = value.lower() if self.ignore_case else value
        if key in self._exact:
            return True
        return self._glob_re is not None and self._glob_re.match(key) is not None

    def _violations(self, where: str, value: Any) -> list[Violation]:
        items = value if isinstance(value, list) else [value]
        out: list[Violation] = []
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if not isinstance(item, str):
                out.append(Violation(at, f"must be a string, got {type(item).__name__}"))
            elif not self.allows(item):
                out.append(
                    Violation(
                        at,
                        f"{preview(item)} is not permitted for this agent; use only values "
                        "the user or a tool gave you",
                    )
                )
        return out

    def describe(self) -> str:
        """Such as ``$.account_id on allowlist (2 entries)``."""
        return f"{self.where} on allowlist ({len(self._exact) + len(self._globs)} entries)"


class Range(ArgumentRule):
    """The value must be a number within bounds (inclusive unless ``exclusive=True``).

    Strings such as ``"100"`` and booleans are not numbers here: a type-confused
    argument is a violation, not a conversion. ``NaN`` and ``Infinity`` are refused
    whatever the bounds (every comparison with ``NaN`` is false, so a plain bounds check
    would let it through).

    Example::

        Range("amount", min=0.01, max=500, tools=["refund"])

    Args:
        path: where the value is.
        min: lowest allowed value, or None.
        max: highest allowed value, or None.
        exclusive: exclude the bounds themselves. Default False.
        tools: tool names (globs) the rule applies to. Default: every tool.
        required: a missing value is a violation. Default False.
        name: guardrail name. Default ``range``.
    """

    kind = "range"

    def __init__(
        self,
        path: str,
        min: float | None = None,  # noqa: A002 - the natural name
        max: float | None = None,  # noqa: A002
        *,
        exclusive: bool = False,
        tools: Iterable[str] | None = None,
        required: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, required=required, name=name)
        if min is None and max is None:
            raise ConfigError(f"Range({path!r}) needs min, max or both")
        if (min is not None and math.isnan(min)) or (max is not None and math.isnan(max)):
            # Every comparison with NaN is false: such a bound would refuse everything.
            raise ConfigError(f"Range({path!r}): min and max must be numbers, not NaN, or None")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"Range({path!r}): min {min} is above max {max}")
        self.min = min
        self.max = max
        self.exclusive = exclusive

    def _violations(self, where: str, value: Any) -> list[Violation]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            got = f"{type(value).__name__} {preview(value)}"
            return [Violation(where, f"must be a number, got {got}")]
        if isinstance(value, float) and not math.isfinite(value):
            return [Violation(where, f"must be a finite number, got {value}")]
        low_ok = self.min is None or (value > self.min if self.exclusive else value >= self.min)
        high_ok = self.max is None or (value < self.max if self.exclusive else value <= self.max)
        if low_ok and high_ok:
            return []
        return [Violation(where, f"{value:g} is outside the allowed range {self._bounds()}")]

    def _bounds(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"({lo}, {hi})" if self.exclusive else f"[{lo}, {hi}]"

    def describe(self) -> str:
        """Such as ``$.amount in [0, 50]``."""
        return f"{self.where} in {self._bounds()}"


class Pattern(ArgumentRule):
    r"""The string value must match a regular expression in full.

    Example::

        Pattern("invoice_id", r"INV-\d{6}", description="an invoice id such as INV-000102")

    Args:
        path: where the value is.
        regex: the pattern (``re.fullmatch`` semantics).
        description: what a valid value looks like, for the model. Default: the regex.
        tools: tool names (globs) the rule applies to. Default: every tool.
        required: a missing value is a violation. Default False.
        name: guardrail name. Default ``pattern``.

    Raises:
        ConfigError: the regex does not compile.
    """

    kind = "pattern"

    def __init__(
        self,
        path: str,
        regex: str,
        *,
        description: str | None = None,
        tools: Iterable[str] | None = None,
        required: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, required=required, name=name)
        try:
            self.regex = re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"Pattern({path!r}): invalid regex {regex!r}: {exc}") from exc
        self.description = description or f"a value matching {regex}"

    def _violations(self, where: str, value: Any) -> list[Violation]:
        if not isinstance(value, str):
            return [Violation(where, f"must be a string, got {type(value).__name__}")]
        if self.regex.fullmatch(value):
            return []
        return [Violation(where, f"{preview(value)} is not {self.description}")]

    def describe(self) -> str:
        r"""Such as ``$.invoice_id matches INV-\d{6}``."""
        return f"{self.where} matches {self.regex.pattern}"


class ArgumentPolicy:
    """Run several argument rules; usable as a `ScopePolicy`.

    Args:
        rules: the rules, checked in order.
        name: guardrail name of the combined verdict. Default ``argument_policy``.
    """

    def __init__(self, rules: Iterable[ArgumentRule], *, name: str = "argument_policy") -> None:
        self.rules = tuple(rules)
        self.name = name

    def check_arguments(self, tool_name: str, arguments: Mapping[str, Any]) -> Verdict:
        """Check a call's arguments against every rule that applies to the tool.

        Args:
            tool_name: the tool called.
            arguments: the arguments.

        Returns:
            ``allow``, or the first rule's ``block`` verdict (its guardrail name is the
            rule's, so rejections are counted per rule).
        """
        for rule in self.rules:
            verdict = rule.check(tool_name, arguments)
            if verdict.blocked:
                return verdict
        return Verdict(self.name, "allow")

    def check(self, call: ProposedCall) -> Verdict:
        """The `ScopePolicy` form of `check_arguments`."""
        return self.check_arguments(call.tool, call.arguments)
