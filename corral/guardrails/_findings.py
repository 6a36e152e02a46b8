"""Injection findings: what a scan found, its combined score, and how to strip it.

An `InjectionFinding` locates one sign of injection in the original text, with the edit
``strip`` makes there; an `InjectionReport` holds a scan's findings and their score, a
noisy OR over the strongest finding of each rule (`combined_score`). `strip_findings`
applies the edits: passages replaced by `STRIP_MARKER`, invisible characters deleted,
mixed-script words folded to plain letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._normalize import BIDI_EMBED, BIDI_OTHER, BIDI_OVERRIDE, ZERO_WIDTH, fold_for_display
from ._patterns import Extent, InjectionCategory

__all__ = [
    "STRIP_MARKER",
    "Edit",
    "InjectionFinding",
    "InjectionReport",
    "combined_score",
    "make_excerpt",
    "strip_findings",
]

Edit = Literal["remove", "delete", "fold"]
"""What ``strip`` does at a finding: remove the passage, delete the characters, or fold
them to ASCII."""

_MAX_EXCERPT = 80
STRIP_MARKER = "[removed: suspected prompt injection]"
"""What `strip` puts where an instruction-like passage was removed."""


@dataclass(frozen=True, slots=True)
class InjectionFinding:
    """One sign of injection, located in the scanned text."""

    category: InjectionCategory
    """What kind of manipulation."""
    rule: str
    """The pattern or heuristic that fired, such as ``override.ignore_instructions``."""
    weight: float
    """Confidence of this finding, in [0, 1]."""
    span: tuple[int, int]
    """Start and end offsets in the original text."""
    excerpt: str
    """The matched text (at most 80 characters, invisible characters shown as ``<U+XXXX>``)."""
    edit: Edit = "remove"
    """What ``strip`` does: remove the passage, delete the characters, or fold them to ASCII."""
    extent: Extent = "match"
    """How far ``remove`` reaches past the match: the match, the sentence or the paragraph."""
    detail: str = ""
    """Extra context, such as the decoded text of an encoded payload (shortened)."""

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain data for verdict details and the journal."""
        out: dict[str, Any] = {
            "category": self.category,
            "rule": self.rule,
            "weight": round(self.weight, 3),
            "span": list(self.span),
            "excerpt": self.excerpt,
        }
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class InjectionReport:
    """What `InjectionDetector.scan` found: a score and the findings behind it."""

    score: float
    """Combined confidence in [0, 1]: a noisy OR over the strongest finding of each rule,
    each raised by 0.05 per repeat."""
    findings: tuple[InjectionFinding, ...] = ()
    """Every finding, in text order."""

    @property
    def categories(self) -> list[str]:
        """The categories found, sorted."""
        return sorted({f.category for f in self.findings})

    @property
    def rules(self) -> list[str]:
        """The rules that fired, sorted."""
        return sorted({f.rule for f in self.findings})

    def summary(self, limit: int = 3) -> str:
        """One line for a verdict reason: the strongest findings with their excerpts."""
        best: dict[str, InjectionFinding] = {}
        for f in self.findings:
            if f.rule not in best or f.weight > best[f.rule].weight:
                best[f.rule] = f
        ranked = sorted(best.values(), key=lambda f: (-f.weight, f.span))
        parts = [f"{f.rule} {f.excerpt[:40]!r}" for f in ranked[:limit]]
        more = len(ranked) - limit
        if more > 0:
            parts.append(f"and {more} more")
        return "; ".join(parts)


def combined_score(findings: Sequence[InjectionFinding]) -> float:
    """Combine findings into one score, as `InjectionReport.score` describes.

    Args:
        findings: the findings of one scan.

    Returns:
        A noisy OR over the strongest finding of each rule (each raised by 0.05 per
        repeat, capped at 0.95), in [0, 1], rounded to six places.
    """
    by_rule: dict[str, list[float]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f.weight)
    keep = 1.0
    for weights in by_rule.values():
        w = min(0.95, max(weights) + 0.05 * (len(weights) - 1))
        keep *= 1.0 - w
    return round(1.0 - keep, 6)


_VISIBLE = {
    ord(c): f"<U+{ord(c):04X}>" for c in ZERO_WIDTH + BIDI_OVERRIDE + BIDI_EMBED + BIDI_OTHER
}


def make_excerpt(text: str) -> str:
    """A finding's excerpt: at most 80 characters, invisible characters made visible.

    Args:
        text: the matched passage.

    Returns:
        The passage, cut with an ellipsis, with zero-width, bidi, tag and
        variation-selector characters written as ``<U+XXXX>``.
    """
    if len(text) > _MAX_EXCERPT:
        text = text[: _MAX_EXCERPT - 1] + "…"
    if text.isascii():
        return text
    out = text.translate(_VISIBLE)
    return "".join(
        f"<U+{ord(c):X}>" if 0xE0000 <= ord(c) <= 0xE01EF or 0xFE00 <= ord(c) <= 0xFE0F else c
        for c in out
    )


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")


def strip_findings(
    text: str, findings: Iterable[InjectionFinding], *, marker: str = STRIP_MARKER
) -> str:
    """Remove what the findings point at: passages, invisible characters, look-alikes.

    Passages (``remove``) are replaced by `marker`, reaching to the end of their sentence
    or paragraph; invisible and bidi characters are deleted; mixed-script words are
    folded to plain letters. Overlapping edits merge, the strongest edit winning.

    Args:
        text: the text the findings came from.
        findings: findings with spans in `text`.
        marker: what replaces a removed passage.

    Returns:
        The text with the edits applied.
    """
    rank = {"delete": 0, "fold": 1, "remove": 2}
    edits: list[tuple[int, int, int]] = []
    for f in findings:
        start, end = f.span
        if f.edit == "remove" and f.extent != "match":
            finder = _SENTENCE_END if f.extent == "sentence" else _PARAGRAPH_END
            m = finder.search(text, max(end - 1, start))
            if f.extent == "sentence":
                end = m.end() if m else len(text)
            else:
                end = m.start() if m else len(text)
        edits.append((start, max(end, f.span[1]), rank[f.edit]))
    if not edits:
        return text
    edits.sort()
    merged: list[list[int]] = []
    for start, end, kind in edits:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], kind)
        else:
            merged.append([start, end, kind])
    parts: list[str] = []
    pos = 0
    for start, end, kind in merged:
        parts.append(text[pos:start])
        if kind == 2:
            parts.append(marker)
        elif kind == 1:
            parts.append(fold_for_display(text[start:end]))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
