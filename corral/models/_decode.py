r"""Tool-call arguments at the edges of JSON: what a provider may send that no tool can use.

Python's ``json`` is lenient where a tool must not be: it reads ``NaN``, ``Infinity`` and
``-Infinity`` (not JSON; ``{"amount": NaN}`` passes every comparison-based check), turns
``1e400`` into ``inf``, keeps a lone UTF-16 surrogate (``"\ud800"``) as a string no
journal can write as UTF-8, nests as deep as the interpreter's recursion limit and then
raises `RecursionError`, and refuses an integer longer than 4,300 digits with a bare
`ValueError`. None of these is the run's fault, and none should fail it: a call whose
arguments hit one gets ``parse_error`` set and empty arguments, so the check chain tells
the model what to fix and the run goes on.

* `argument_problem` walks decoded arguments (iteratively: a deep value must not recurse)
  and says what is wrong, for the model. `corral.models.ToolCall` runs it when built, so
  every adapter, fake and custom model gets the same treatment.
* `loads_arguments` decodes an arguments string (the OpenAI wire format) strictly.
* `loads_body` decodes a whole response body that the plain decoder could not (nested
  past the recursion limit, an oversized integer), so the response survives and only the
  offending call is refused.
* `clean_text` replaces lone surrogates in text (answers, tool names, call ids) with
  U+FFFD, the replacement character, so the journal can store it.

This is hand-written because no JSON library refuses exactly these: the standard one
accepts them all, and a strict one would reject the whole response for one call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "argument_problem",
    "clean_text",
    "loads_arguments",
    "loads_body",
]

MAX_ARGUMENT_DEPTH = 32
"""Deepest nesting of objects and arrays a tool call's arguments may have (the arguments
object itself is level 1). Deeper arguments are refused with an error for the model."""

_MAX_DIGITS = 4300
"""Python's default limit on the digits of an integer read from text."""

_BODY_CUT = 64
"""`loads_body` replaces anything nested deeper than this in a body by ``null``: deeper
than any real response's structure, and past `MAX_ARGUMENT_DEPTH` for any argument."""

_SHOWN = 120
"""Characters of a path quoted in a problem."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
"""A JSON string (skipped whole) or a bracket, for `loads_body`'s depth scan."""


class _Oversized(float):
    """An integer with more digits than Python reads from text (a marker for the check)."""

    digits: int

    def __new__(cls, digits: int) -> _Oversized:
        marker = super().__new__(cls, math.inf)
        marker.digits = digits
        return marker


class _NotJSON(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a text that must be JSON."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


def _bounded_int(text: str) -> int | float:
    digits = len(text.lstrip("-"))
    if digits > _MAX_DIGITS:
        return _Oversized(digits)
    return int(text)


def clean_text(text: str) -> str:
    """Replace each lone UTF-16 surrogate in `text` by U+FFFD (quick for ASCII text).

    Args:
        text: text a provider sent.

    Returns:
        The text, valid Unicode (a pair of surrogates never reaches here: decoding JSON
        joins a pair into one character).
    """
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _path(parts: tuple[str | int, ...]) -> str:
    out = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return out if len(out) <= _SHOWN else out[: _SHOWN - 1] + "…"


def argument_problem(arguments: Mapping[str, Any]) -> str | None:
    """Say what makes decoded arguments unusable, in words a model can act on, or None.

    Refused: a float that is not finite (``NaN``, ``Infinity``, ``1e400``), an integer of
    more than 4,300 digits, nesting deeper than `MAX_ARGUMENT_DEPTH`, and a lone surrogate
    in a string or a key.

    Args:
        arguments: a call's arguments, as decoded.

    Returns:
        The first problem found, naming where it is (``$.lines[2].amount``), or None.
    """
    if _usable(arguments):
        return None
    return _describe(arguments)


def _usable(arguments: Mapping[str, Any]) -> bool:
    """The quick pass, run on every call: True when nothing is wrong (no paths kept)."""
    stack: list[tuple[Any, int]] = [(arguments, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_ARGUMENT_DEPTH:
            return False
        if type(container) is dict or isinstance(container, Mapping):
            for key in container:
                if type(key) is str and not key.isascii() and _SURROGATE.search(key):
                    return False
            items: Any = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind is str:
                if not item.isascii() and _SURROGATE.search(item):
                    return False
            elif kind is int or kind is bool or item is None:
                continue
            elif kind is dict or kind is list or kind is tuple or isinstance(item, Mapping):
                stack.append((item, depth + 1))
            elif isinstance(item, float) and _number_problem(item) is not None:
                return False
    return True


def _describe(arguments: Mapping[str, Any]) -> str | None:
    """The slow pass, run only when the quick one found something: where, and what."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(arguments, ())]
    while stack:
        value, where = stack.pop()
        kind = type(value)
        if kind is str:
            if not value.isascii() and _SURROGATE.search(value):
                return (
                    f"{_path(where)} holds an unpaired UTF-16 surrogate, which is not valid "
                    "Unicode: send the text without it"
                )
        elif kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
            if len(where) >= MAX_ARGUMENT_DEPTH:
                return (
                    f"the arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels (at "
                    f"{_path(where[:MAX_ARGUMENT_DEPTH])}): send flatter arguments"
                )
            if kind is list or kind is tuple:
                stack.extend((item, (*where, i)) for i, item in enumerate(value))
                continue
            for key, item in value.items():
                if type(key) is str and not key.isascii() and _SURROGATE.search(key):
                    return (
                        f"a key in {_path(where)} holds an unpaired UTF-16 surrogate, which "
                        "is not valid Unicode: send the key without it"
                    )
                stack.append((item, (*where, clean_text(str(key)))))
        elif isinstance(value, float) and not isinstance(value, bool):
            problem = _number_problem(value)
            if problem is not None:
                return f"{_path(where)} {problem}"
    return None


def _number_problem(value: float) -> str | None:
    if type(value) is float and value - value == 0:  # finite: the common case, quickly
        return None
    if isinstance(value, _Oversized):
        return f"is an integer of {value.digits:,} digits: send at most {_MAX_DIGITS:,} digits"
    if math.isfinite(value):
        return None
    shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return f"is {shown}, not a finite JSON number: send a finite number"


def loads_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """Decode a tool call's arguments from their JSON text, strictly.

    Args:
        raw: the arguments as the provider sent them (``'{"amount": 12.5}'``).

    Returns:
        (arguments, None), or ({}, what is wrong, for the model): not JSON, not an object,
        ``NaN`` or ``Infinity``, nested too deep, an oversized integer, a lone surrogate.
    """
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except _NotJSON as exc:
        return {}, f"arguments hold {exc}, which is not a JSON number: send finite numbers"
    except json.JSONDecodeError as exc:
        return {}, f"arguments are not valid JSON: {exc.msg}: line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return {}, (
            f"the arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels: send flatter arguments"
        )
    except ValueError as exc:  # anything else the decoder refuses
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        shown = clean_text(raw[:200])
        return {}, f"arguments must be a JSON object, got {type(value).__name__}: {shown}"
    problem = argument_problem(value)
    if problem is not None:
        return {}, problem
    return value, None


def loads_body(text: str) -> Any:
    """Decode a response body the plain decoder refused, keeping every call it can.

    Anything nested deeper than any response's own structure is replaced by ``null``
    (which leaves the call holding it nested past `MAX_ARGUMENT_DEPTH`, so it is
    refused), and an integer too long to read becomes a marker `argument_problem` names.

    Args:
        text: the body, as text.

    Returns:
        The decoded body.

    Raises:
        json.JSONDecodeError: the body is not JSON at all.
    """
    return json.loads(_flatten(text, _BODY_CUT), parse_int=_bounded_int)


def _flatten(text: str, cut: int) -> str:
    """`text` with every array or object that opens below depth `cut` replaced by ``null``."""
    out: list[str] = []
    last = depth = 0
    start: int | None = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == cut + 1 and start is None:
                start = match.start()
        else:
            if depth == cut + 1 and start is not None:
                out.append(text[last:start])
                out.append("null")
                last, start = match.end(), None
            depth -= 1
    out.append(text[last:])
    return "".join(out)
