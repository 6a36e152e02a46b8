"""Unicode heuristics: signs of injection in the characters themselves.

`unicode_findings` reports zero-width characters inside words or in runs
(``invisible``), Unicode tag characters that smuggle hidden ASCII (``invisible``),
variation-selector runs (``invisible``), bidi overrides and embeddings (``bidi``), and
words that mix look-alike letters from other scripts into Latin, or are written in
mathematical letters (``homoglyph``). Each finding says what ``strip`` does there: delete
the characters or fold the word to plain letters.

The detector runs these only on text that is not plain ASCII.
"""

from __future__ import annotations

import re
import unicodedata

from ._findings import InjectionFinding, make_excerpt
from ._normalize import (
    BIDI_EMBED,
    BIDI_OVERRIDE,
    CONFUSABLE_NON_LATIN,
    ZERO_WIDTH,
    normalize_text,
)

__all__ = ["unicode_findings"]

_UNICODE_RE = re.compile(
    f"(?P<z>[{ZERO_WIDTH}]+)"
    f"|(?P<o>[{BIDI_OVERRIDE}])"
    f"|(?P<e>[{BIDI_EMBED}])"
    "|(?P<t>[\U000e0000-\U000e007f]+)"
    "|(?P<v>[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,})"
)
_MIXED_RE = re.compile(f"[A-Za-z][{CONFUSABLE_NON_LATIN}]|[{CONFUSABLE_NON_LATIN}][A-Za-z]")
_INVISIBLE_SET = frozenset(
    ZERO_WIDTH
    + BIDI_OVERRIDE
    + BIDI_EMBED
    + "".join(chr(c) for c in range(0xE0000, 0xE0080))
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)
_CONFUSABLE_SET = frozenset(CONFUSABLE_NON_LATIN)
_STYLED_RE = re.compile("[\U0001d400-\U0001d7ff]{3,}")


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span to the word around it (at most 64 characters each way)."""
    low, high = max(0, start - 64), min(len(text), end + 64)
    while start > low and (text[start - 1].isalnum() or unicodedata.combining(text[start - 1])):
        start -= 1
    while end < high and (text[end].isalnum() or unicodedata.combining(text[end])):
        end += 1
    return start, end


def unicode_findings(text: str) -> list[InjectionFinding]:
    """Invisible characters, bidi controls, tag smuggling and mixed-script words.

    Args:
        text: the original text (not normalised: these are the characters the
            normalisation removes or folds).

    Returns:
        The findings, with spans in `text`, each heuristic's in text order.
    """
    out: list[InjectionFinding] = []
    chars = set(text)
    if not chars.isdisjoint(_INVISIBLE_SET):
        out.extend(_invisible_findings(text))
    if not chars.isdisjoint(_CONFUSABLE_SET):
        out.extend(_mixed_script_findings(text))
    if any("\U0001d400" <= c <= "\U0001d7ff" for c in chars):
        for m in _STYLED_RE.finditer(text):
            out.append(
                InjectionFinding(
                    "homoglyph",
                    "homoglyph.styled_letters",
                    0.2,
                    m.span(),
                    make_excerpt(m.group()),
                    "fold",
                    "match",
                    f"reads as {normalize_text(m.group())!r}",
                )
            )
    return out


def _invisible_findings(text: str) -> list[InjectionFinding]:
    out: list[InjectionFinding] = []
    for m in _UNICODE_RE.finditer(text):
        start, end = m.span()
        run = m.group()
        kind = m.lastgroup
        if kind == "z":
            if start == 0 and run == "\ufeff":
                continue  # a byte-order mark
            if len(run) >= 4:
                out.append(
                    InjectionFinding(
                        "invisible",
                        "invisible.run",
                        0.6,
                        (start, end),
                        make_excerpt(run),
                        "delete",
                        "match",
                        f"{len(run)} invisible characters in a row",
                    )
                )
                continue
            before = text[start - 1] if start else ""
            after = text[end] if end < len(text) else ""
            if _is_ascii_alnum(before) or _is_ascii_alnum(after):
                out.append(
                    InjectionFinding(
                        "invisible",
                        "invisible.in_word",
                        0.25,
                        (start, end),
                        make_excerpt(text[max(0, start - 8) : end + 8]),
                        "delete",
                    )
                )
        elif kind == "o":
            out.append(
                InjectionFinding(
                    "bidi",
                    "bidi.override",
                    0.5,
                    (start, end),
                    make_excerpt(text[max(0, start - 8) : end + 16]),
                    "delete",
                )
            )
        elif kind == "e":
            out.append(
                InjectionFinding(
                    "bidi",
                    "bidi.embedding",
                    0.2,
                    (start, end),
                    make_excerpt(text[max(0, start - 8) : end + 16]),
                    "delete",
                )
            )
        elif kind == "t":
            # An emoji flag such as England's is U+1F3F4, a few tags, and U+E007F.
            flag = start and text[start - 1] == "\U0001f3f4" and run[-1] == "\U000e007f"
            if flag and len(run) <= 7:
                continue
            hidden = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
            out.append(
                InjectionFinding(
                    "invisible",
                    "invisible.tag_characters",
                    0.8,
                    (start, end),
                    make_excerpt(hidden) or f"{len(run)} tag characters",
                    "delete",
                    "match",
                    f"hidden text: {make_excerpt(hidden)!r}",
                )
            )
        elif len(run) >= 4 or any(ord(c) >= 0xE0100 for c in run):
            out.append(
                InjectionFinding(
                    "invisible",
                    "invisible.variation_selectors",
                    0.5,
                    (start, end),
                    f"{len(run)} variation selectors",
                    "delete",
                )
            )
    return out


def _mixed_script_findings(text: str) -> list[InjectionFinding]:
    out: list[InjectionFinding] = []
    seen: set[tuple[int, int]] = set()
    m = _MIXED_RE.search(text)
    while m is not None:
        span = _word_bounds(text, *m.span())
        m = _MIXED_RE.search(text, span[1])
        seen.add(span)
        out.append(
            InjectionFinding(
                "homoglyph",
                "homoglyph.mixed_script",
                0.35,
                span,
                make_excerpt(text[span[0] : span[1]]),
                "fold",
                "match",
                f"reads as {normalize_text(text[span[0] : span[1]])!r}",
            )
        )
        if len(seen) >= 50:
            break
    return out
