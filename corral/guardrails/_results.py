"""Result filtering: what a tool returned, cut to a token cap and redacted, for the model.

`filter_result` is JSON-aware. A dict, a list, a pydantic model, a dataclass, or a string
holding a JSON object or array keeps its structure: long arrays keep their first items
and end with a marker such as ``"… 412 more items"``, objects with too many keys end with
a ``"…": "12 more keys"`` entry, long strings end with ``"… 3,120 more characters"``, and
nesting deeper than the level allows collapses to ``"[… 40 items]"``. The limits tighten
step by step (a binary search over a fixed ladder, so the result is deterministic) until
the compact JSON fits the cap, measured with `corral.models._tokens.estimate_tokens`.
Plain text is cut at the cap, preferably at a line break, with a note of how much was cut.

Personal data and secrets are redacted first (`PIIDetector`), in string values, in keys,
and wherever a key such as ``password`` or ``api_key`` names its value a secret, so a cut
never leaves half a secret behind. The full result stays in the journal; only the model's
copy is filtered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._pii import (
    PIIDetector,
    PIIFinding,
    PIIKind,
    _plausible_secret,
    is_secret_name,
    redaction_marker,
)
from .._verdict import Verdict
from ..errors import ConfigError
from ..models._plain import plain_json as _plain
from ..models._tokens import estimate_tokens

__all__ = ["FilteredResult", "filter_result"]

_DEFAULT_DETECTOR = PIIDetector()
_NOT_JSON = object()
# Up to twice the cap a JSON result is redacted whole before it is measured (markers can
# shrink it under the cap); above that, only what the trimming keeps is redacted, so a huge
# result costs time in proportion to what the model will see.
_TEXT_MARGIN = 4_096
"""Plain text is redacted this far past the cut, so a secret straddling the cut is caught."""

# (max items per array, max characters per string, max depth); keys per object are
# 2 * items + 4. Binary search finds the first (least aggressive) level that fits.
_LADDER: tuple[tuple[int, int, int], ...] = (
    (1000, 4000, 64),
    (500, 2000, 48),
    (200, 1200, 32),
    (100, 800, 24),
    (60, 500, 16),
    (40, 400, 12),
    (25, 300, 10),
    (16, 240, 8),
    (12, 200, 8),
    (8, 160, 6),
    (6, 120, 6),
    (5, 100, 5),
    (4, 80, 5),
    (3, 64, 4),
    (2, 48, 4),
    (1, 32, 3),
    (1, 20, 2),
    (0, 12, 1),
    (0, 8, 0),
)


@dataclass(frozen=True, slots=True)
class FilteredResult:
    """A tool result as the model will see it, and what was done to it."""

    content: str
    """The text for the model: compact JSON when the result was JSON, else plain text."""
    truncated: bool
    """Whether anything was cut."""
    original_chars: int
    """Length of the unfiltered result (its compact JSON, or the text)."""
    redactions: int
    """How many values were replaced by a ``[REDACTED:...]`` marker."""
    notes: tuple[str, ...] = ()
    """What was done, for people: ``"trimmed 1 array: 412 items cut"``..."""
    json: bool = False
    """Whether `content` is JSON (always valid JSON when this is True)."""
    redacted: Mapping[str, int] = field(default_factory=dict)
    """Redactions per kind, such as ``{"email": 2, "secret": 1}``."""

    def verdicts(self) -> list[Verdict]:
        """The verdicts to journal: one per action taken (none when the result was untouched).

        Returns:
            A ``redact`` verdict from ``result_redaction`` and/or a ``truncate`` verdict
            from ``result_truncation``.
        """
        out: list[Verdict] = []
        if self.redactions:
            kinds = ", ".join(f"{n} {k}" for k, n in self.redacted.items())
            out.append(
                Verdict(
                    "result_redaction",
                    "redact",
                    f"redacted {kinds}",
                    details={"counts": dict(self.redacted)},
                )
            )
        if self.truncated:
            out.append(
                Verdict(
                    "result_truncation",
                    "truncate",
                    "; ".join(n for n in self.notes if not n.startswith("redacted")),
                    details={"original_chars": self.original_chars, "chars": len(self.content)},
                )
            )
        return out


def filter_result(
    value: Any,
    *,
    max_tokens: int = 800,
    redact: bool = True,
    detector: PIIDetector | None = None,
) -> FilteredResult:
    """Prepare a tool result for the model: redact, then cut to the token cap.

    Args:
        value: what the tool returned: a str (JSON or plain text), bytes, a dict or list,
            a pydantic model, a dataclass, a number, or anything else (rendered with
            ``str``).
        max_tokens: the cap, in estimated tokens (`estimate_tokens`: 4 characters each).
            Default 800.
        redact: replace personal data and secrets with ``[REDACTED:KIND]``. Default True.
        detector: what to redact. Default: every kind (`PIIDetector()`).

    Returns:
        The filtered content: never above `max_tokens`, and valid JSON whenever the input
        was JSON (a str holding a JSON object or array counts as JSON).

    Raises:
        ConfigError: `max_tokens` is below 1.
    """
    if max_tokens < 1:
        raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
    det = (detector or _DEFAULT_DETECTOR) if redact else None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        parsed = _parse_json(value)
        if parsed is _NOT_JSON:
            return _filter_text(value, max_tokens, det)
        return _filter_json(parsed, max_tokens, det, original_chars=len(value))
    return _filter_json(value, max_tokens, det, original_chars=None)


def _fits(text: str, max_tokens: int) -> bool:
    return estimate_tokens(text) <= max_tokens


# -------------------------------------------------------------------------- JSON


def _parse_json(text: str) -> Any:
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return _NOT_JSON
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _filter_json(
    value: Any, max_tokens: int, det: PIIDetector | None, *, original_chars: int | None
) -> FilteredResult:
    try:
        full = _dumps(value)
    except (TypeError, ValueError):
        value = _plain(value)
        full = _dumps(value)
    original = len(full) if original_chars is None else original_chars
    redactor = None
    # One pass over the compact JSON says whether anything needs redacting at all; the
    # same detector, run on the JSON text, also sees '"password":"..."' pairs.
    if det is not None and det.find(full):
        redactor = _Redactor(det)
    if redactor is not None and len(full) <= 2 * max_tokens * 4:
        # Redaction can shrink a result (a PEM block becomes one marker), so try it whole.
        whole = _Trimmer(None, redactor=redactor)
        value = whole.node(value, 0)
        full = _dumps(value)
        redactor = None  # done: the trimming below need not redact again
        done_counts = whole.counts
    else:
        done_counts = {}
    if _fits(full, max_tokens):
        done = sum(done_counts.values())
        first = (_redaction_note(done_counts),) if done_counts else ()
        return FilteredResult(full, False, original, done, first, True, done_counts)
    cap = max_tokens * 4
    best: tuple[str, _Trimmer] | None = None
    lo, hi = 0, len(_LADDER) - 1
    while lo <= hi:  # the least aggressive level that fits
        mid = (lo + hi) // 2
        trimmer = _Trimmer(_LADDER[mid], budget=cap, redactor=redactor)
        try:
            text: str | None = _dumps(trimmer.node(value, 0))
        except _TooBig:
            text = None
        if text is not None and _fits(text, max_tokens):
            best = (text, trimmer)
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None:
        counts = done_counts
        text = _json_string_fallback(full, cap)
        notes = [_redaction_note(counts)] if counts else []
        notes.append(f"kept the first characters of the JSON, as a string ({len(full):,} chars)")
        total = sum(counts.values())
        return FilteredResult(text, True, original, total, tuple(notes), True, counts)
    text, trimmer = best
    counts = dict(done_counts)
    for kind, n in trimmer.counts.items():
        counts[kind] = counts.get(kind, 0) + n
    notes = [_redaction_note(counts)] if counts else []
    notes.extend(trimmer.notes())
    total = sum(counts.values())
    return FilteredResult(text, trimmer.cut, original, total, tuple(notes), True, counts)


def _json_string_fallback(full: str, cap: int) -> str:
    """The JSON text itself, cut, as one JSON string (for structures no level can fit)."""
    keep = min(len(full), cap)
    while keep > 0:
        cut = len(full) - keep
        note = f"… {_plural(cut, 'more character', 'more characters')}" if cut else ""
        text = json.dumps(full[:keep] + note, ensure_ascii=False)
        if len(text) <= cap:
            return text
        keep -= max(1, len(text) - cap)
    return '""'


class _TooBig(Exception):
    """Internal: a trimming level is certain to exceed the cap."""


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


class _Redactor:
    """Redacts strings through a detector, remembering each string's result across levels."""

    def __init__(self, det: PIIDetector) -> None:
        self.det = det
        self.secrets = "secret" in det.kinds
        self._cache: dict[int, tuple[str, str, tuple[str, ...]]] = {}

    def text(self, s: str) -> tuple[str, tuple[str, ...]]:
        if len(s) < 6:
            return s, ()
        hit = self._cache.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1], hit[2]
        out, findings = self.det.redact(s)
        kinds = tuple(f.kind for f in findings)
        self._cache[id(s)] = (s, out, kinds)
        return out, kinds

    def secret_value(self, key: str, value: Any) -> bool:
        return (
            self.secrets
            and isinstance(value, str)
            and is_secret_name(key)
            and _plausible_secret(key, value)
        )

    def number(self, value: int) -> PIIKind | None:
        if 9 <= len(str(abs(value))) <= 19:
            found = self.det.find(str(value), kinds=("card", "ssn"))
            if found:
                return found[0].kind
        return None


class _Trimmer:
    """Walk a value at one trimming level (or none), redacting what it keeps.

    It counts what it cut and keeps a lower bound of the compact JSON size, so a level
    that cannot fit stops early (`_TooBig`) instead of rendering a huge result.
    """

    def __init__(
        self,
        level: tuple[int, int, int] | None,
        *,
        budget: int | None = None,
        redactor: _Redactor | None = None,
    ) -> None:
        items, chars, depth = level if level is not None else (-1, -1, -1)
        self.items = items
        self.keys = 2 * items + 4 if items >= 0 else -1
        self.chars = chars
        self.depth = depth
        self.budget = budget
        self.redactor = redactor
        self.counts: dict[str, int] = {}
        self.size = 0
        self.arrays = self.items_cut = 0
        self.objects = self.keys_cut = 0
        self.strings = self.chars_cut = 0
        self.collapsed = 0
        self.key_names = 0

    def _grow(self, n: int) -> None:
        self.size += n
        if self.budget is not None and self.size > self.budget:
            raise _TooBig

    def _count(self, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def string(self, s: str, *, redact: bool = True) -> str:
        if redact and self.redactor is not None:
            s, kinds = self.redactor.text(s)
            self._count(kinds)
        if 0 <= self.chars < len(s):
            cut = len(s) - self.chars
            self.strings += 1
            self.chars_cut += cut
            s = f"{s[: self.chars]}… {_plural(cut, 'more character', 'more characters')}"
        self._grow(len(s) + 2)
        return s

    def node(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, dict):
            return self._object(value, depth)
        if isinstance(value, list):
            return self._array(value, depth)
        if (
            self.redactor is not None
            and isinstance(value, int)
            and not isinstance(value, bool)
            and (kind := self.redactor.number(value)) is not None
        ):
            self._count((kind,))
            return self.string(redaction_marker(kind), redact=False)
        self._grow(1)
        return value

    def _object(self, value: dict[str, Any], depth: int) -> Any:
        if 0 <= self.depth <= depth and value:
            self.collapsed += 1
            return self.string(f"{{… {_plural(len(value), 'key', 'keys')}}}", redact=False)
        out: dict[str, Any] = {}
        self._grow(2)
        for i, (k, v) in enumerate(value.items()):
            if 0 <= self.keys <= i:
                rest = len(value) - i
                self.objects += 1
                self.keys_cut += rest
                out["…"] = self.string(_plural(rest, "more key", "more keys"), redact=False)
                break
            key = k
            if self.redactor is not None:
                key, kinds = self.redactor.text(k)
                self._count(kinds)
            if 0 <= self.chars < len(key):
                self.key_names += 1
                self.chars_cut += len(key) - self.chars
                key = f"{key[: self.chars]}…"
            while key in out:
                key += "'"
            self._grow(len(key) + 4)
            if self.redactor is not None and self.redactor.secret_value(k, v):
                self._count(("secret",))
                out[key] = self.string(redaction_marker("secret"), redact=False)
            else:
                out[key] = self.node(v, depth + 1)
        return out

    def _array(self, value: list[Any], depth: int) -> Any:
        if 0 <= self.depth <= depth and value:
            self.collapsed += 1
            return self.string(f"[… {_plural(len(value), 'item', 'items')}]", redact=False)
        self._grow(2)
        kept_items = value if self.items < 0 else value[: self.items]
        kept = [self.node(v, depth + 1) for v in kept_items]
        self._grow(len(kept))
        rest = len(value) - len(kept)
        if rest > 0:
            self.arrays += 1
            self.items_cut += rest
            kept.append(self.string(f"… {_plural(rest, 'more item', 'more items')}", redact=False))
        return kept

    @property
    def cut(self) -> bool:
        """Whether this level cut anything."""
        return bool(self.arrays or self.objects or self.strings or self.key_names or self.collapsed)

    def notes(self) -> list[str]:
        out: list[str] = []
        if self.arrays:
            out.append(
                f"trimmed {_plural(self.arrays, 'array', 'arrays')}: "
                f"{_plural(self.items_cut, 'item', 'items')} cut"
            )
        if self.objects:
            out.append(
                f"trimmed {_plural(self.objects, 'object', 'objects')}: "
                f"{_plural(self.keys_cut, 'key', 'keys')} cut"
            )
        if self.strings or self.key_names:
            what = []
            if self.strings:
                what.append(_plural(self.strings, "string", "strings"))
            if self.key_names:
                what.append(_plural(self.key_names, "key name", "key names"))
            out.append(
                f"shortened {' and '.join(what)}: "
                f"{_plural(self.chars_cut, 'character', 'characters')} cut"
            )
        if self.collapsed:
            out.append(
                f"collapsed {_plural(self.collapsed, 'value', 'values')} nested deeper than "
                f"{self.depth}"
            )
        return out


def _redaction_note(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    kinds = ", ".join(f"{n} {k}" for k, n in counts.items())
    return f"redacted {_plural(total, 'value', 'values')} ({kinds})"


# -------------------------------------------------------------------------- text


def _filter_text(text: str, max_tokens: int, det: PIIDetector | None) -> FilteredResult:
    cap = max_tokens * 4
    original = len(text)
    whole = original <= cap + _TEXT_MARGIN
    window = text if whole else text[: cap + _TEXT_MARGIN]
    findings: list[PIIFinding] = []
    counts: dict[str, int] = {}
    if det is not None:
        window, findings = det.redact(window)
        for f in findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
    notes: list[str] = [_redaction_note(counts)] if counts else []
    if whole and _fits(window, max_tokens):
        return FilteredResult(window, False, original, len(findings), tuple(notes), False, counts)
    # The note's length depends on the number it states: settle it in a few passes.
    note = ""
    keep = cut = 0
    for _ in range(3):
        keep = _cut_point(window, cap - len(note))
        cut = original - _original_offset(keep, findings)
        note = f"\n… [{_plural(cut, 'more character', 'more characters')} truncated]"
        if keep + len(note) <= cap:
            break
    if keep + len(note) > cap:  # a cap too small for any note
        note = ""
        keep = _cut_point(window, cap)
        cut = original - _original_offset(keep, findings)
    notes.append(f"cut {_plural(cut, 'character', 'characters')} of {original:,}")
    return FilteredResult(
        window[:keep] + note, True, original, len(findings), tuple(notes), False, counts
    )


def _cut_point(window: str, budget: int) -> int:
    """Where to cut the (redacted) text to keep at most `budget` characters.

    Prefers a line break, then a space, in the last tenth of the budget, and never cuts
    a ``[REDACTED:...]`` marker in half.
    """
    if budget <= 0:
        return 0
    if len(window) <= budget:
        return len(window)
    keep = budget
    floor = budget - max(1, budget // 10)
    newline = window.rfind("\n", floor, keep)
    if newline > 0:
        keep = newline
    else:
        space = window.rfind(" ", floor, keep)
        if space > 0:
            keep = space
    marker = window.rfind("[REDACTED:", max(0, keep - 24), keep)
    if marker >= 0 and window.find("]", marker) >= keep:
        keep = marker
    return keep


def _original_offset(pos: int, findings: list[PIIFinding]) -> int:
    """Map a position in the redacted text back to the original text."""
    shift = 0  # redacted position - original position, after the findings passed so far
    for f in findings:
        marker_start = f.span[0] + shift
        if marker_start >= pos:
            break
        if marker_start + len(f.marker) > pos:
            return f.span[0]
        shift += len(f.marker) - (f.span[1] - f.span[0])
    return pos - shift
