"""Text normalisation for injection matching: one ASCII reading of any text.

Before the patterns run, a text is normalised: NFKC compatibility forms (fullwidth and
mathematical letters), diacritics dropped, a confusables fold (Cyrillic ``і`` → ``i``,
Greek ``ο`` → ``o``, small capitals ...), invisible characters removed and tag characters
decoded, then lower-cased. So ``"іgnore"`` with a Cyrillic ``і`` matches like
``"ignore"``. `Normalized` keeps a lazy map back to the original offsets (an `OffsetMap`:
one breakpoint per non-ASCII character, so a 10 MB ASCII text costs nothing to map), so
findings point at the text that was scanned; `fold_for_display` folds look-alikes for
``strip``. `rewrite` makes the detector's other readings (misspellings corrected,
spaced letters joined) with their own maps back, and `native_reading` is the reading
for scripts with no ASCII letters (Cyrillic, Chinese, Japanese).

The character classes the Unicode heuristics look for (`ZERO_WIDTH`, the bidi controls,
`CONFUSABLE_NON_LATIN`) are defined here, beside the fold that removes or folds them.

Importing this module registers the ``corral.fold`` codec error handler, which folds
non-ASCII runs at C speed; each code point's reading is computed once and remembered.
"""

from __future__ import annotations

import bisect
import codecs
import re
import unicodedata

__all__ = [
    "BIDI_EMBED",
    "BIDI_OTHER",
    "BIDI_OVERRIDE",
    "CONFUSABLE_NON_LATIN",
    "ZERO_WIDTH",
    "Normalized",
    "OffsetMap",
    "fold_for_display",
    "native_reading",
    "normalize_text",
    "rewrite",
]

# Look-alike letters folded to Latin before matching (a practical subset of Unicode's
# confusables.txt covering the scripts used in homoglyph attacks on English text).
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "є": "e", "г": "r", "һ": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ѵ": "v",
    "ү": "y", "ҽ": "e", "ԍ": "g", "ԧ": "h", "ь": "b",
    "А": "a", "В": "b", "Е": "e", "Ё": "e", "І": "i", "Ї": "i", "Ј": "j", "К": "k", "М": "m",
    "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "Ԁ": "d",
    "Ԛ": "q", "Ԝ": "w", "Ӏ": "l", "Ү": "y", "Ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j", "ω": "w", "μ": "u",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "Ϳ": "j",
    # Armenian
    "օ": "o", "ո": "n", "ս": "u", "հ": "h", "ց": "g", "զ": "q", "ա": "w",
    # Latin variants and small capitals
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ʟ": "l", "ɪ": "i", "ɴ": "n", "ʀ": "r", "ʏ": "y",
    "ʜ": "h", "ɢ": "g", "ʙ": "b", "ᴀ": "a", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴊ": "j", "ᴋ": "k",
    "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ꜱ": "s",
    # punctuation that changes how phrases read
    "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'",
    "\u201c": '"', "\u201d": '"', "\u201f": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2028": "\n", "\u2029": "\n",
}  # fmt: skip

CONFUSABLE_NON_LATIN = "".join(sorted(c for c in _CONFUSABLES if "\u0370" <= c <= "\u058f"))
"""The Greek, Cyrillic and Armenian look-alikes of Latin letters."""

ZERO_WIDTH = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d"
    "\u2060\u2061\u2062\u2063\u2064\u206a\u206b\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0"
)
"""Zero-width and filler characters: invisible when rendered, removed by the fold."""
BIDI_OVERRIDE = "\u202d\u202e"
"""Bidi overrides (LRO, RLO): they reorder what follows them."""
BIDI_EMBED = "\u202a\u202b\u2066\u2067\u2068"
"""Bidi embeddings and isolates (LRE, RLE, LRI, RLI, FSI)."""
BIDI_OTHER = "\u200e\u200f\u061c\u202c\u2069"
"""Bidi marks and terminators (LRM, RLM, ALM, PDF, PDI)."""

_INVISIBLE_SET = frozenset(ZERO_WIDTH + BIDI_OVERRIDE + BIDI_EMBED + BIDI_OTHER)
_INVISIBLE_CHARS = frozenset(
    ZERO_WIDTH
    + BIDI_OVERRIDE
    + BIDI_EMBED
    + BIDI_OTHER
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_NO_ASCII = "\x1a"
"""Stands in for a character with no ASCII reading, so normalised offsets stay countable."""
_FOLD_CACHE_LIMIT = 50_000


def _fold_char(cp: int) -> str:
    """The ASCII reading of one code point ('' for invisible ones)."""
    ch = chr(cp)
    if cp < 128:
        return ch
    if ch in _INVISIBLE_CHARS:
        return ""
    if 0xE0000 <= cp <= 0xE007F:  # tag characters: decode the hidden ASCII
        return chr(cp - 0xE0000) if 0xE0020 <= cp <= 0xE007E else ""
    if ch in _CONFUSABLES:
        return _CONFUSABLES[ch]
    out = []
    for c in unicodedata.normalize("NFKD", ch):
        if unicodedata.combining(c):
            continue
        c = _CONFUSABLES.get(c, c)
        out.append(c if c.isascii() else _NO_ASCII)
    return "".join(out)


class _FoldTable(dict[int, str]):
    """`str.translate` table that computes and remembers each code point's ASCII reading."""

    def __missing__(self, cp: int) -> str:
        if len(self) > _FOLD_CACHE_LIMIT:
            self.clear()
        value = self[cp] = _fold_char(cp)
        return value


_FOLD = _FoldTable()


def _fold_errors(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: replace each run of non-ASCII characters by its ASCII reading."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    run = exc.object[exc.start : exc.end]
    return run.translate(_FOLD), exc.end


codecs.register_error("corral.fold", _fold_errors)


def _fold_ascii(text: str) -> str:
    """The ASCII reading of a text, one fold per character (see `_fold_char`)."""
    if text.isascii():
        return text
    # With few non-ASCII characters, the ASCII encoder (C speed) finds them and calls the
    # handler once per run; with many, one translate is cheaper than many calls.
    if len(text.encode("utf-8", "surrogatepass")) - len(text) <= 64:
        return text.encode("ascii", "corral.fold").decode("ascii")
    return text.translate(_FOLD)


class OffsetMap:
    """Maps offsets of a rewritten text back to the text it was rewritten from.

    A rewrite replaces a few spans and copies the rest, so the map stores one breakpoint
    per replaced span (its start in both texts and both lengths) and answers with a
    binary search: building it costs time in proportion to the replacements, not to the
    text (a per-character table for a 10 MB result would be 10 million list entries).
    Inside a replacement every offset maps to the start of the replaced span.

    Args:
        points: ``(new_start, old_start, new_length, old_length)`` per replaced span, in
            text order and not overlapping.
        old_length: length of the text that was rewritten.
    """

    __slots__ = ("_new", "_points", "old_length")

    def __init__(self, points: list[tuple[int, int, int, int]], old_length: int) -> None:
        self._points = points
        self._new = [p[0] for p in points]
        self.old_length = old_length

    def to_old(self, offset: int) -> int:
        """The offset in the old text that `offset` in the new text was read from."""
        i = bisect.bisect_right(self._new, offset) - 1
        if i < 0:
            return min(offset, self.old_length)
        new_start, old_start, new_len, old_len = self._points[i]
        if offset < new_start + new_len:
            return old_start
        return min(old_start + old_len + offset - new_start - new_len, self.old_length)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The old span a new span ``[start, end)`` was read from (never empty if it was not).

        Args:
            start: start offset in the new text.
            end: end offset in the new text (exclusive).

        Returns:
            The start and end (exclusive) in the old text.
        """
        old_start = self.to_old(start)
        if end <= start:
            return old_start, old_start
        i = bisect.bisect_right(self._new, end - 1) - 1
        if i >= 0:
            new_start, old_begin, new_len, old_len = self._points[i]
            if end - 1 < new_start + new_len:  # the span ends inside a replacement
                return old_start, max(old_start, old_begin + old_len)
        return old_start, max(old_start, self.to_old(end - 1) + 1)


def rewrite(text: str, edits: list[tuple[int, int, str]]) -> tuple[str, OffsetMap]:
    """Apply non-overlapping replacements and keep the way back to the old offsets.

    Args:
        text: the text to rewrite.
        edits: ``(start, end, replacement)`` spans of `text`, sorted and not overlapping.

    Returns:
        The rewritten text and the map from its offsets to those of `text`.
    """
    parts: list[str] = []
    points: list[tuple[int, int, int, int]] = []
    pos = 0
    size = 0
    for start, end, replacement in edits:
        parts.append(text[pos:start])
        size += start - pos
        points.append((size, start, len(replacement), end - start))
        parts.append(replacement)
        size += len(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts), OffsetMap(points, len(text))


_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")


class Normalized:
    """The normalised, lower-cased text, with a lazy map back to original offsets.

    Args:
        original: the text as it was scanned.
    """

    __slots__ = ("_map", "identity", "original", "text")

    def __init__(self, original: str) -> None:
        self.original = original
        self.identity = original.isascii()
        self.text = original.lower() if self.identity else _fold_ascii(original).lower()
        self._map: OffsetMap | None = None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of the normalised text to the span of the original it came from.

        Args:
            start: where the span starts in `text`.
            end: where it ends in `text` (exclusive).

        Returns:
            The span of `original` that the normalised span was read from.
        """
        if self.identity:
            return start, end
        if self._map is None:
            # Only non-ASCII characters change length when folded: one breakpoint per
            # character of each non-ASCII run (a run is rare and short in most text).
            points: list[tuple[int, int, int, int]] = []
            shift = 0
            for m in _NON_ASCII_RE.finditer(self.original):
                for i in range(m.start(), m.end()):
                    folded = len(_FOLD[ord(self.original[i])])
                    points.append((i + shift, i, folded, 1))
                    shift += folded - 1
            self._map = OffsetMap(points, len(self.original))
        return self._map.span(start, end)


def normalize_text(text: str) -> str:
    """The form patterns are matched against: ASCII, folded, invisible-free, lower-case.

    Args:
        text: any text.

    Returns:
        NFKC compatibility forms, diacritics dropped, look-alikes folded to Latin,
        zero-width and bidi characters removed, tag characters decoded, lower-cased;
        a character with no ASCII reading (such as ``日``) becomes U+001A.
    """
    return Normalized(text).text


_INVISIBLE_TABLE = dict.fromkeys(map(ord, ZERO_WIDTH + BIDI_OVERRIDE + BIDI_EMBED + BIDI_OTHER))


def native_reading(text: str) -> tuple[str, OffsetMap | None]:
    """The text lower-cased in its own script, for patterns written in Cyrillic or CJK.

    The folded reading cannot serve those scripts: Cyrillic letters with a Latin
    look-alike fold to it (so that ``"іgnore"`` reads as ``"ignore"``) and CJK characters
    have no ASCII reading at all. This reading keeps every letter, lower-cased, drops
    zero-width and bidi characters (they hide inside words of any script) and applies
    the compatibility forms (fullwidth Latin, halfwidth katakana).

    Args:
        text: any text.

    Returns:
        The reading, and the map from its offsets to `text` (None when they are equal).
    """
    if text.isascii():
        return text.lower(), None
    invisible = not _INVISIBLE_SET.isdisjoint(text)
    cleaned = text.translate(_INVISIBLE_TABLE) if invisible else text
    reading = unicodedata.normalize("NFKC", cleaned).lower()
    if not invisible and len(reading) == len(text):
        return reading, None
    # Rare (invisible characters, or a form that changes length, such as "㈱"): rewrite
    # each non-ASCII run in pieces of at most 64 characters, so a span found in the
    # reading maps back to within 64 characters of where it was read.
    edits: list[tuple[int, int, str]] = []
    for m in _NON_ASCII_RE.finditer(text):
        for start in range(m.start(), m.end(), 64):
            piece = text[start : min(start + 64, m.end())]
            form = unicodedata.normalize("NFKC", piece.translate(_INVISIBLE_TABLE)).lower()
            if form != piece:
                edits.append((start, start + len(piece), form))
    reading, offsets = rewrite(text, edits)
    return reading.lower(), offsets


def fold_for_display(text: str) -> str:
    """Fold look-alikes to ASCII for display, keeping characters that have no ASCII reading.

    Args:
        text: a mixed-script passage, such as a word with a Cyrillic letter in it.

    Returns:
        The passage with each look-alike replaced by its Latin letter and invisible
        characters removed; a character with no ASCII reading (such as ``日``) is kept.
    """
    return "".join(ch if ch.isascii() or _NO_ASCII in (f := _FOLD[ord(ch)]) else f for ch in text)
