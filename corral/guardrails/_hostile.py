"""Argument rules against hostile strings: path traversal and SQL injection.

`NoPathTraversal` looks through percent-encoding, Unicode look-alikes and backslashes
for ``..`` components, NUL bytes and absolute or system paths. `NoSQLFragments` looks for
tautologies, stacked queries, ``UNION SELECT``, time delays, system objects and comment
tricks, tuned to pass ordinary text such as ``O'Brien``. Both are `ArgumentRule`s: they
check one argument, or every string in the arguments.

Both are pure and synchronous; the SQL check exits early on text that has none of the
characters or words an injection needs.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from typing import Any

from ._arguments import ArgumentRule, Violation, preview

__all__ = ["NoPathTraversal", "NoSQLFragments"]

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
        return [Violation(where, problem, preview(value))] if problem else []

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
        return [Violation(where, problem, preview(value))]

    def describe(self) -> str:
        """Such as ``no SQL in any string``."""
        return f"no SQL in {self.where}"
