"""Terms of a text, as both indexes of semantic memory see them.

Lower-cased runs of letters and digits; identifiers are kept whole and also split at
underscores and dots (``sort_keys`` gives ``sort_keys``, ``sort``, ``keys``); English
stop words are dropped; a light suffix stripper folds plurals and common endings
(``files``, ``filing`` → ``file``) so the lexical index and the query agree without a
stemmer dependency. The same function builds the FTS5 column and the query, so the
lexical match quality of a chunk (the share of the query's terms it holds, weighted by
IDF) can be computed exactly.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["STOP_WORDS", "stem", "terms", "words"]

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*[A-Za-z0-9]|[A-Za-z0-9]")

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves use using used get want way need make one also may like""".split()
)
"""Words that carry no topic: dropped from both indexes and from queries."""

_SUFFIXES = (
    ("ational", "ate"),
    ("ization", "ize"),
    ("fulness", "ful"),
    ("iveness", "ive"),
    ("ations", "ate"),
    ("ation", "ate"),
    ("ments", "ment"),
    ("ingly", ""),
    ("edly", ""),
    ("ings", ""),
    ("ing", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ed", ""),
    ("es", ""),
    ("ly", ""),
    ("s", ""),
)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Fold a lower-case word's common English endings (``sorting`` → ``sort``).

    Args:
        word: one lower-case word.

    Returns:
        The word without the first matching suffix, if at least three letters remain.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and not (suffix == "s" and word.endswith(("ss", "us", "is"))):
            base = word[: -len(suffix)] + replacement
            if suffix == "es" and not base.endswith(("s", "x", "z", "ch", "sh")):
                continue  # "files": only the "s" goes
            if len(base) < 3:
                return word
            if suffix in ("ed", "ing") and len(base) > 3 and base[-1] == base[-2] != "s":
                base = base[:-1]  # "stopped" -> "stop", not "stopp"
            return _final_e(base)
    return _final_e(word)


def _final_e(word: str) -> str:
    """Drop a final ``e`` so "parse", "parses", "parsed" and "parsing" agree."""
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def words(text: str) -> list[str]:
    """The lower-case words of `text`, in order (identifiers whole, no stop-word removal)."""
    return _WORD.findall(text.lower())


def terms(text: str) -> list[str]:
    """The index terms of `text`, in order, repeated as often as they occur.

    Args:
        text: any text.

    Returns:
        Stemmed words without stop words; an identifier with ``_`` or ``.`` is followed by
        its parts.
    """
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if "_" in word or "." in word:
            out.append(word)
            out.extend(stem(p) for p in re.split(r"[_.]+", word) if p and p not in STOP_WORDS)
        elif word not in STOP_WORDS:
            out.append(stem(word))
    return out
