"""Text normalisation for injection matching: one ASCII reading of any text.

Before the patterns run, a text is normalised: NFKC compatibility forms (fullwidth and
mathematical letters), diacritics dropped, a confusables fold (Cyrillic ``і`` → ``i``,
Greek ``ο`` → ``o``, small capitals ...), invisible characters removed and tag characters
decoded, then lower-cased. So ``"іgnore"`` with a Cyrillic ``і`` matches like
``"ignore"``. `Normalized` keeps a lazy map back to the original offsets, so findings
point at the text that was scanned; `fold_for_display` folds look-alikes for ``strip``.

The character classes the Unicode heuristics look for (`ZERO_WIDTH`, the bidi controls,
`CONFUSABLE_NON_LATIN`) are defined here, beside the fold that removes or folds them.

Importing this module registers the ``corral.fold`` codec error handler, which folds
non-ASCII runs at C speed; each code point's reading is computed once and remembered.
"""

from __future__ import annotations

import codecs
import unicodedata

__all__ = [
    "BIDI_EMBED",
    "BIDI_OTHER",
    "BIDI_OVERRIDE",
    "CONFUSABLE_NON_LATIN",
    "ZERO_WIDTH",
    "Normalized",
    "fold_for_display",
    "normalize_text",
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


class Normalized:
    """The normalised, lower-cased text, with a lazy map back to original offsets.

    Args:
        original: the text as it was scanned.
    """

    __slots__ = ("_offsets", "identity", "original", "text")

    def __init__(self, original: str) -> None:
        self.original = original
        self.identity = original.isascii()
        self.text = original.lower() if self.identity else _fold_ascii(original).lower()
        self._offsets: list[int] | None = None

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
        if self._offsets is None:
            offsets: list[int] = []
            for i, ch in enumerate(self.original):
                if ch.isascii():
                    offsets.append(i)
                else:
                    offsets.extend([i] * len(_FOLD[ord(ch)]))
            offsets.append(len(self.original))
            self._offsets = offsets
        offsets = self._offsets
        if end <= start:
            return offsets[start], offsets[start]
        return offsets[start], offsets[end - 1] + 1


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


def fold_for_display(text: str) -> str:
    """Fold look-alikes to ASCII for display, keeping characters that have no ASCII reading.

    Args:
        text: a mixed-script passage, such as a word with a Cyrillic letter in it.

    Returns:
        The passage with each look-alike replaced by its Latin letter and invisible
        characters removed; a character with no ASCII reading (such as ``日``) is kept.
    """
    return "".join(ch if ch.isascii() or _NO_ASCII in (f := _FOLD[ord(ch)]) else f for ch in text)
