"""Tool-call policy: argument rules, user scope policies, approval and permission.

Four layers, each returning a `Verdict`:

* **Argument rules** go beyond the JSON Schema: `AllowedValues`, `Allowlist`, `Range`,
  `Pattern`, `NoPathTraversal` and `NoSQLFragments`, each ``check(tool_name, arguments)``.
  A rule names a path into the arguments (``amount``, ``$.customer.id``,
  ``lines[*].sku``) and optionally the tools it applies to. `ArgumentPolicy` runs a list
  of them.
* **Scope policies** are yours: anything with ``check(call: ProposedCall) -> Verdict``
  (`ScopePolicy`), or a plain function wrapped by `policy_from_callable`. See
  `ScopePolicy` for the contract and a worked example.
* **Approval**: `ApprovalPolicy` decides per call ``auto``, ``gate`` (a person approves
  first) or ``block``, by tool name, side-effect level and argument conditions, and can
  `~ApprovalPolicy.explain` every decision.
* **Permission**: `check_permission` blocks a call whose tool needs a scope the agent
  lacks, or whose side-effect level the agent may not use, and says which.

Everything here is pure and synchronous; no rule performs I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
import unicodedata
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from ..errors import ConfigError
from ..tools import SIDE_EFFECTS, SideEffect, Tool
from ._pii import redact_secrets
from ._verdict import Verdict

__all__ = [
    "DEFAULT_APPROVAL",
    "AllowedValues",
    "Allowlist",
    "ApprovalDecision",
    "ApprovalExplanation",
    "ApprovalPolicy",
    "ApprovalRule",
    "ArgumentPolicy",
    "ArgumentRule",
    "NoPathTraversal",
    "NoSQLFragments",
    "Pattern",
    "PermissionPolicy",
    "PolicyResult",
    "ProposedCall",
    "Range",
    "ScopePolicy",
    "Violation",
    "check_permission",
    "check_policies",
    "policy_from_callable",
    "scope_covers",
]

_MAX_SHOWN = 5
_PREVIEW = 60


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


# ------------------------------------------------------------------ proposed call


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


# ------------------------------------------------------------------------ paths

_PATH_TOKEN_RE = re.compile(r"\.?([^.\[\]]+)|\[(\d+|\*)\]")


def _parse_path(path: str) -> tuple[str | int, ...]:
    """``"$.lines[*].sku"`` → ``("lines", "*", "sku")``; ``"$"`` → ``()``."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"invalid argument path {path!r} (near {text[pos:]!r})")
        if m.group(1) is not None:
            parts.append(m.group(1))
        else:
            index = m.group(2)
            parts.append("*" if index == "*" else int(index))
        pos = m.end()
    return tuple(parts)


def _format_path(parts: Iterable[str | int]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _resolve(arguments: Any, parts: tuple[str | int, ...]) -> list[tuple[str, Any]]:
    """Every (concrete path, value) the path reaches; empty when it reaches nothing."""
    current: list[tuple[tuple[str | int, ...], Any]] = [((), arguments)]
    for part in parts:
        nxt: list[tuple[tuple[str | int, ...], Any]] = []
        for where, value in current:
            if part == "*":
                if isinstance(value, Mapping):
                    nxt.extend(((*where, k), v) for k, v in value.items())
                elif isinstance(value, (list, tuple)):
                    nxt.extend(((*where, i), v) for i, v in enumerate(value))
            elif isinstance(part, int):
                if isinstance(value, (list, tuple)) and -len(value) <= part < len(value):
                    nxt.append(((*where, part), value[part]))
            elif isinstance(value, Mapping) and part in value:
                nxt.append(((*where, part), value[part]))
        current = nxt
    return [(_format_path(where), value) for where, value in current]


def _strings(value: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every string inside a value, with its path."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, (dict, MappingProxyType)) or (
        not isinstance(value, (list, tuple, int, float)) and isinstance(value, Mapping)
    ):
        for k, v in value.items():
            if isinstance(v, str):
                yield f"{where}.{k}", v
            elif isinstance(v, (dict, list, tuple)) or isinstance(v, Mapping):
                yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


# ----------------------------------------------------------------- argument rules


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
        self._parts = _parse_path(path) if path is not None else None
        self.tools = tuple(tools) if tools is not None else None
        self.required = required
        self.name = name or self.kind

    @property
    def where(self) -> str:
        """The rule's path in ``$.a.b`` form, or ``any string``."""
        return _format_path(self._parts) if self._parts is not None else "any string"

    def applies_to(self, tool_name: str) -> bool:
        """Whether the rule covers calls to this tool."""
        if self.tools is None:
            return True
        return any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.tools)

    def _targets(self, arguments: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if self._parts is None:
            return list(_strings(arguments))
        return _resolve(arguments, self._parts)

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
                return [Violation(_format_path(self._parts or ()), "is required")]
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
        if self._parts is not None and not _resolve(arguments, self._parts):
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
                f"{_preview(item)} is not allowed; allowed values: {allowed}",
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
                        f"{_preview(item)} is not permitted for this agent; use only values "
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
    argument is a violation, not a conversion.

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
        if min is not None and max is not None and min > max:
            raise ConfigError(f"Range({path!r}): min {min} is above max {max}")
        self.min = min
        self.max = max
        self.exclusive = exclusive

    def _violations(self, where: str, value: Any) -> list[Violation]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            got = f"{type(value).__name__} {_preview(value)}"
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
        return [Violation(where, f"{_preview(value)} is not {self.description}")]

    def describe(self) -> str:
        r"""Such as ``$.invoice_id matches INV-\d{6}``."""
        return f"{self.where} matches {self.regex.pattern}"


_SENSITIVE_ROOTS = re.compile(
    r"^(?:/(?:etc|proc|sys|root|home|var|usr|boot|dev|bin|sbin|lib|opt|srv|tmp|private|Users)"
    r"(?:/|$)|~[\w.-]*/|[A-Za-z]:/)"
)
_DOTDOT_RE = re.compile(r"\s*\.\.[\s\ufffd]*")


class NoPathTraversal(ArgumentRule):
    r"""No string may climb out of its directory or name a system location.

    Looks through percent-encoding (also double), Unicode look-alikes (NFKC: ``．．／``)
    and backslashes. Blocks ``..`` path components, NUL bytes, and, for a path
    argument, absolute paths (``/etc/passwd``, ``C:\``, ``\\server``, ``~/.ssh``) unless
    ``allow_absolute=True``. With ``path=None`` every string argument is checked, and
    only absolute paths under system locations are blocked, so free text such as
    ``"see /help"`` passes.

    Args:
        path: the path argument, or None for every string in the arguments.
        allow_absolute: accept absolute paths. Default False.
        tools: tool names (globs) the rule applies to. Default: every tool.
        name: guardrail name. Default ``path_traversal``.
    """

    kind = "path_traversal"

    def __init__(
        self,
        path: str | None = None,
        *,
        allow_absolute: bool = False,
        tools: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, name=name)
        self.allow_absolute = allow_absolute

    @staticmethod
    def _decoded(value: str) -> str:
        text = value
        for _ in range(3):  # %252e%252e -> %2e%2e -> ..
            if "%" not in text:
                break
            decoded = urllib.parse.unquote(text)
            if decoded == text:
                break
            text = decoded
        if not text.isascii():
            # U+FFFD stands for undecodable bytes such as the overlong "/" in "..%c0%af".
            text = unicodedata.normalize("NFKC", text).replace("\ufffd", "/")
        return text.replace("\\", "/") if "\\" in text else text

    def problem(self, value: str) -> str | None:
        """What is wrong with one string as a path, or None."""
        text = self._decoded(value)
        if "\x00" in text:
            return "contains a NUL byte"
        if ".." in text and any(_DOTDOT_RE.fullmatch(part) for part in text.split("/")):
            return "climbs out of its directory with '..'"
        if self.allow_absolute:
            return None
        if self._parts is not None:
            if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:/", text):
                return "is an absolute path; use a path relative to the working directory"
            return None
        if _SENSITIVE_ROOTS.match(text.lstrip()) or value.lstrip().startswith("\\\\"):
            return "points into a system location"
        return None

    def _violations(self, where: str, value: Any) -> list[Violation]:
        if not isinstance(value, str):
            if self._parts is not None:
                return [Violation(where, f"must be a string path, got {type(value).__name__}")]
            return []
        problem = self.problem(value)
        return [Violation(where, problem, _preview(value))] if problem else []

    def describe(self) -> str:
        """Such as ``no path traversal in $.path``."""
        return f"no path traversal in {self.where}"


_Q = ("'", '"', "`")
_SQL_FRAGMENTS: tuple[tuple[str, tuple[tuple[str, ...], ...], re.Pattern[str]], ...] = tuple(
    # (label, hint groups: the regex runs only if every group has a substring in the
    # lower-cased text, regex)
    (label, hints, re.compile(regex, re.IGNORECASE | re.DOTALL))
    for label, hints, regex in (
        ("tautology", ((*_Q, ")"), ("or", "and", "||", "&&"), ("=", "<>", "like")),
         r"['\"`)]\s*(?:or|and|\|\||&&)\s*\(?\s*['\"`]?\s*(\w+)\s*['\"`]?\s*"
         r"(?:=|<>|!=|like)\s*\(?\s*['\"`]?\s*\w+"),
        ("tautology", (("=",), ("or", "and")), r"\b(?:or|and)\s+(\d+)\s*=\s*\1\b"),
        ("tautology", (("or",), ("true", "1")), r"\bor\s+(?:true|1)\s*(?:--|#|;|$)"),
        ("comment after quote", (_Q, ("--", "#", "/*")), r"['\"`]\s*\)*\s*(?:--|#|/\*|;\s*--)"),
        ("stacked query", ((";",),),
         r";\s*(?:drop\s+(?:table|database|schema|user|index|view)\b"
         r"|delete\s+from\s+[\w.\"`\[\]]+\s*(?:where\b|;|--|#|$)"
         r"|insert\s+into\s+[\w.\"`\[\]]+\s*(?:\(|values\b|select\b)"
         r"|update\s+[\w.\"`\[\]]+\s+set\s+[\w.\"`\[\]]+\s*="
         r"|alter\s+(?:table|user|database)\b"
         r"|create\s+(?:table|user|database|function|procedure|trigger)\b"
         r"|truncate\s+(?:table\s+)?[\w.\"`\[\]]+\s*(?:;|--|$)"
         r"|exec(?:ute)?\s+(?:master\.|xp_|sp_)"
         r"|shutdown\b|select\s+.{1,200}?\s+from\s+[\w.\"`\[\]]+)"),
        ("union select", (("union",),), r"\bunion(?:\s+all|\s+distinct)?\s+select\b"),
        ("time delay", (("sleep", "benchmark", "waitfor"),),
         r"\b(?:sleep|pg_sleep|benchmark)\s*\(\s*\d|\bwaitfor\s+delay\s+'"),
        ("system object", (("xp_cmdshell", "information_schema", "sqlite_master", "pg_catalog",
                            "load_file", "outfile", "dumpfile", "@@version"),),
         r"\bxp_cmdshell\b|\binformation_schema\b|\bsqlite_master\b|"
         r"\bpg_catalog\b|\bload_file\s*\(|\binto\s+(?:out|dump)file\b|@@version\b"),
        ("char obfuscation", (("char", "chr"), ("(",)),
         r"\b(?:char|chr)\s*\(\s*\d+\s*(?:,\s*\d+\s*){2,}\)|"
         r"(?:\b(?:char|chr)\s*\(\s*\d+\s*\)\s*(?:\+|\|\||&)\s*){2,}"),
        ("inline comment", (("/*",),), r"\w/\*.*?\*/\w"),
    )
)  # fmt: skip
_INLINE_COMMENT_RE = re.compile(r"/\*.*?\*/", re.DOTALL)


_SQL_HINTS = tuple(sorted({h for _, groups, _ in _SQL_FRAGMENTS for g in groups for h in g}))
_SQL_GROUPS = tuple(
    (label, tuple(frozenset(g) for g in groups), regex) for label, groups, regex in _SQL_FRAGMENTS
)


_SQL_SPECIALS = str.maketrans("", "", "'\"`;=#()/@")
_SQL_WORDS = ("--", "union", "xp_", "information_schema", "sqlite_master", "pg_catalog")


def _sql_fragment(text: str) -> str | None:
    low = text.lower()
    # Fast exit: every fragment needs one of these characters or words.
    if len(low.translate(_SQL_SPECIALS)) == len(low) and not any(w in low for w in _SQL_WORDS):
        return None
    present = {h for h in _SQL_HINTS if h in low}
    if not present:
        return None
    for label, groups, regex in _SQL_GROUPS:
        if all(not present.isdisjoint(g) for g in groups) and regex.search(text):
            return label
    return None


class NoSQLFragments(ArgumentRule):
    """No string may carry SQL injection: tautologies, stacked queries, UNION SELECT...

    Tuned to pass ordinary text (``O'Brien``, ``Rock 'n' roll``, ``select a plan``,
    ``drop off at 5; update me``) and to catch ``' OR '1'='1``, ``admin'--``,
    ``1; DROP TABLE users``, ``UNION/**/SELECT``, ``SLEEP(5)``, ``xp_cmdshell`` and the like.

    Args:
        path: the argument to check, or None for every string. Default None.
        tools: tool names (globs) the rule applies to. Default: every tool.
        name: guardrail name. Default ``sql_injection``.
    """

    kind = "sql_injection"

    def __init__(
        self,
        path: str | None = None,
        *,
        tools: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, tools=tools, name=name)

    @staticmethod
    def fragment(value: str) -> str | None:
        """The kind of SQL fragment in a string, or None."""
        text = value if value.isascii() else unicodedata.normalize("NFKC", value)
        label = _sql_fragment(text)
        if label is None and "/*" in text:  # UN/**/ION SEL/**/ECT
            label = _sql_fragment(_INLINE_COMMENT_RE.sub("", text)) or _sql_fragment(
                _INLINE_COMMENT_RE.sub(" ", text)
            )
        return label

    def _violations(self, where: str, value: Any) -> list[Violation]:
        if not isinstance(value, str) or len(value) < 3:
            return []
        label = self.fragment(value)
        if label is None:
            return []
        problem = f"contains SQL ({label}); send plain values only"
        return [Violation(where, problem, _preview(value))]

    def describe(self) -> str:
        """Such as ``no SQL in any string``."""
        return f"no SQL in {self.where}"


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


# ---------------------------------------------------------------- scope policies


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
    """The ``block`` of a policy that raised (fail closed), secrets cut from the error."""
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


# -------------------------------------------------------------------- permission


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


# ----------------------------------------------------------------------- approval

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
