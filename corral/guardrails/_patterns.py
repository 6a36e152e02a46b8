"""Prompt-injection patterns: the pattern type, the TOML loader, the packaged set.

An `InjectionPattern` is one compiled regex with its category, weight, keyword
pre-filter, anchor, strip extent and the reading of the text it runs on (`Form`).
`load_patterns` reads a set written in the format of ``patterns/injection.toml``;
`default_patterns` is Corral's maintained set, read from the package once, on first use
(call it at start-up to pay that early), `default_patterns_version` its version, recorded
in verdict details, and `default_typo_words` the words whose misspellings the detector
reads as the word. Each packaged pattern carries examples and counter-examples that the
test-suite checks.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, cast

from ..errors import ConfigError

__all__ = [
    "Anchor",
    "Extent",
    "Form",
    "InjectionCategory",
    "InjectionPattern",
    "default_patterns",
    "default_patterns_version",
    "default_typo_words",
    "load_patterns",
    "load_typo_words",
]

InjectionCategory = Literal[
    "override",
    "role",
    "role_marker",
    "exfiltration",
    "tool_hijack",
    "encoded",
    "invisible",
    "bidi",
    "homoglyph",
]
"""What kind of manipulation a finding points at."""

Extent = Literal["match", "sentence", "paragraph"]
"""What ``strip`` removes around a match: the match, its sentence or its paragraph."""
Anchor = Literal["start", "line", "search"]
"""Where a pattern's matches begin (see `InjectionPattern.anchor`)."""
Form = Literal["folded", "native"]
"""Which reading of the text a pattern runs on (see `InjectionPattern.form`)."""

_PATTERN_CATEGORIES = frozenset({"override", "role", "role_marker", "exfiltration", "tool_hijack"})


@dataclass(frozen=True, slots=True)
class InjectionPattern:
    """One entry of the pattern set: a compiled regex with its category and weight.

    Build it with `InjectionPattern.compile`, or load a set with `load_patterns`.
    """

    id: str
    """Unique name, ``<category>.<name>``; appears in findings and verdicts."""
    category: InjectionCategory
    """What the pattern detects."""
    weight: float
    """How sure one match makes us, in [0, 1]; weights combine as a noisy OR."""
    regex: re.Pattern[str]
    """Compiled with ``re.VERBOSE | re.MULTILINE``; runs on the normalised, lower-cased text.

    ``\\b`` is a boundary between a letter or digit and anything else: an underscore
    separates words here (AgentDojo's Slack suite names a channel ``External_`` followed
    by the injection, so ``"External_Ignore"`` holds the word ``ignore``)."""
    keywords: tuple[tuple[str, ...], ...] = ()
    """Pre-filter groups: the regex runs only when every group has a hit in the text.

    A keyword made of letters, digits, spaces and apostrophes is a sequence of whole
    words (a plural ``s`` also counts); anything else is a literal substring."""
    anchor: Anchor = "search"
    """Where matches begin: at a first-group keyword (``start``), at the start of a line
    holding one (``line``), or anywhere (``search``, the slowest)."""
    extent: Extent = "sentence"
    """What ``strip`` removes: to the end of the sentence or of the paragraph."""
    description: str = ""
    """Free text for people."""
    form: Form = "folded"
    """The reading the regex runs on: ``folded`` (ASCII, look-alikes folded, diacritics
    dropped: for Latin-script languages; the default) or ``native`` (lower-cased in its
    own script: for Cyrillic, Chinese, Japanese and other scripts with no ASCII reading).
    A native pattern's keywords are substrings in that script."""
    examples: tuple[str, ...] = ()
    """Texts the pattern must match (checked by the tests)."""
    counter_examples: tuple[str, ...] = ()
    """Ordinary texts the pattern must not match (checked by the tests)."""

    @classmethod
    def compile(
        cls,
        id: str,
        category: InjectionCategory,
        weight: float,
        regex: str,
        *,
        keywords: Iterable[Iterable[str]] | Iterable[str] = (),
        anchor: Anchor = "search",
        extent: Extent = "sentence",
        description: str = "",
        form: Form = "folded",
        examples: Iterable[str] = (),
        counter_examples: Iterable[str] = (),
    ) -> InjectionPattern:
        """Validate and compile a pattern.

        Args:
            id: unique name, such as ``override.my_rule``.
            category: one of the pattern categories (override, role, role_marker,
                exfiltration, tool_hijack).
            weight: confidence of one match, in [0, 1].
            regex: a verbose-mode regex over lower-case normalised text.
            keywords: pre-filter groups (a list of lists); a flat list is one group.
                Every match must contain a keyword of each group.
            anchor: ``start`` (matches begin at a first-group keyword), ``line``
                (at the start of a line holding one) or ``search``.
            extent: what ``strip`` removes around a match.
            description: free text.
            form: the reading it runs on: ``folded`` (default) or ``native``.
            examples: texts the pattern must match.
            counter_examples: texts it must not match.

        Returns:
            The compiled pattern.

        Raises:
            ConfigError: a field is invalid or the regex does not compile.
        """
        if category not in _PATTERN_CATEGORIES:
            raise ConfigError(
                f"injection pattern {id!r}: category must be one of "
                f"{', '.join(sorted(_PATTERN_CATEGORIES))}, got {category!r}"
            )
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"injection pattern {id!r}: weight must be in [0, 1], got {weight}")
        if extent not in ("match", "sentence", "paragraph"):
            raise ConfigError(
                f"injection pattern {id!r}: extent must be match, sentence or paragraph"
            )
        try:
            compiled = re.compile(_alnum_boundaries(regex), re.VERBOSE | re.MULTILINE)
        except re.error as exc:
            raise ConfigError(f"injection pattern {id!r}: invalid regex: {exc}") from exc
        groups: list[tuple[str, ...]] = []
        flat: list[str] = []
        for group in keywords:
            if isinstance(group, str):
                flat.append(group.lower())
            else:
                groups.append(tuple(k.lower() for k in group))
        if flat:
            groups.insert(0, tuple(flat))
        if any(not g for g in groups):
            raise ConfigError(f"injection pattern {id!r}: empty keyword group")
        if anchor not in ("start", "line", "search"):
            raise ConfigError(f"injection pattern {id!r}: anchor must be start, line or search")
        if anchor != "search" and not groups:
            raise ConfigError(f"injection pattern {id!r}: anchor {anchor!r} needs keywords")
        if form not in ("folded", "native"):
            raise ConfigError(f"injection pattern {id!r}: form must be folded or native")
        return cls(
            id=id,
            category=category,
            weight=float(weight),
            regex=compiled,
            keywords=tuple(groups),
            anchor=anchor,
            extent=extent,
            description=description,
            form=form,
            examples=tuple(examples),
            counter_examples=tuple(counter_examples),
        )


_BOUNDARY = r"(?:(?<![^\W_])(?=[^\W_])|(?<=[^\W_])(?![^\W_]))"
"""A word boundary where words are letters and digits (``\\b`` counts ``_`` as a letter)."""


def _alnum_boundaries(regex: str) -> str:
    r"""Rewrite each ``\b`` of a regex (outside character classes) as `_BOUNDARY`."""
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\" and i + 1 < len(regex):
            pair = regex[i : i + 2]
            out.append(_BOUNDARY if pair == "\\b" and not in_class else pair)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def load_patterns(toml_text: str) -> tuple[InjectionPattern, ...]:
    """Parse a pattern set written in the format of ``patterns/injection.toml``.

    Args:
        toml_text: the TOML document (read the file yourself; this function does no I/O).

    Returns:
        The compiled patterns, in file order.

    Raises:
        ConfigError: the TOML is invalid, or an entry is incomplete, duplicated or wrong.
    """
    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"injection patterns: invalid TOML: {exc}") from exc
    entries = data.get("pattern", [])
    if not isinstance(entries, list):
        raise ConfigError("injection patterns: [[pattern]] must be an array of tables")
    out: list[InjectionPattern] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"injection patterns: entry {index} is not a table")
        missing = [k for k in ("id", "category", "weight", "regex") if k not in entry]
        if missing:
            raise ConfigError(f"injection patterns: entry {index} lacks {', '.join(missing)}")
        pid = str(entry["id"])
        if pid in seen:
            raise ConfigError(f"injection patterns: duplicate id {pid!r}")
        seen.add(pid)
        out.append(
            InjectionPattern.compile(
                pid,
                cast(InjectionCategory, entry["category"]),
                float(entry["weight"]),
                str(entry["regex"]),
                keywords=[
                    [str(k) for k in g] if isinstance(g, list) else str(g)
                    for g in entry.get("keywords", [])
                ],
                anchor=cast(Anchor, entry.get("anchor", "search")),
                extent=cast(Extent, entry.get("span", "sentence")),
                description=str(entry.get("description", "")),
                form=cast(Form, entry.get("form", "folded")),
                examples=[str(e) for e in entry.get("examples", [])],
                counter_examples=[str(e) for e in entry.get("counter_examples", [])],
            )
        )
    return tuple(out)


def load_typo_words(toml_text: str) -> tuple[str, ...]:
    """The ``[typos] words`` list of a pattern set (empty when it has none).

    Args:
        toml_text: the TOML document.

    Returns:
        The words, lower-cased, in file order.

    Raises:
        ConfigError: the TOML is invalid, or the list holds something other than words.
    """
    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"injection patterns: invalid TOML: {exc}") from exc
    words = data.get("typos", {}).get("words", [])
    if not isinstance(words, list) or not all(
        isinstance(w, str) and w.isascii() and w.isalpha() for w in words
    ):
        raise ConfigError("injection patterns: [typos] words must be a list of ASCII words")
    return tuple(w.lower() for w in words)


@cache
def _default_pattern_file() -> tuple[str, tuple[InjectionPattern, ...], tuple[str, ...]]:
    path = resources.files("corral.guardrails").joinpath("patterns/injection.toml")
    text = path.read_text("utf-8")
    version = str(tomllib.loads(text).get("version", ""))
    return version, load_patterns(text), load_typo_words(text)


def default_patterns() -> tuple[InjectionPattern, ...]:
    """Corral's maintained pattern set (loaded once, on first use, from the package)."""
    return _default_pattern_file()[1]


def default_patterns_version() -> str:
    """Version string of the packaged pattern set, recorded in verdict details."""
    return _default_pattern_file()[0]


def default_typo_words() -> tuple[str, ...]:
    """The words of the packaged set whose misspellings the detector reads as the word."""
    return _default_pattern_file()[2]
