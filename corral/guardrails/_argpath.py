"""Argument paths: where an argument rule looks inside a call's arguments.

A path names values in the decoded JSON arguments: ``amount``, ``$.customer.id``,
``lines[*].sku``, ``lines[0]``, ``meta.*``. `parse_path` turns one into parts once, when
a rule is built (an invalid path is a `ConfigError` then, not at call time);
`resolve_path` lists every concrete path and value it reaches; `iter_strings` lists every
string in the arguments, for the rules that check them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

__all__ = ["format_path", "iter_strings", "parse_path", "resolve_path"]

_PATH_TOKEN_RE = re.compile(r"\.?([^.\[\]]+)|\[(\d+|\*)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split a path into its parts: ``"$.lines[*].sku"`` → ``("lines", "*", "sku")``.

    Args:
        path: a path such as ``amount``, ``$.customer.id`` or ``lines[*].sku``; ``$``
            alone is the arguments themselves (no parts).

    Returns:
        The parts: a key (str), an index (int) or ``"*"`` (every element or value).

    Raises:
        ConfigError: the path does not parse.
    """
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


def format_path(parts: Iterable[str | int]) -> str:
    """Write parts back as a path in ``$.a[0].b`` form.

    Args:
        parts: keys and indexes, as `parse_path` returns them.

    Returns:
        The path, ``$`` for no parts.
    """
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def resolve_path(arguments: Any, parts: tuple[str | int, ...]) -> list[tuple[str, Any]]:
    """Every value a path reaches, with its concrete path.

    Args:
        arguments: the decoded arguments.
        parts: the path, as `parse_path` returns it.

    Returns:
        ``(concrete path, value)`` pairs, such as ``("$.lines[1].sku", "B")``, in
        document order; empty when the path reaches nothing.
    """
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
    return [(format_path(where), value) for where, value in current]


def iter_strings(value: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every string inside a value, with its concrete path.

    Args:
        value: the arguments, or a value inside them.
        where: the path of `value`. Default ``$``.

    Yields:
        ``(concrete path, string)`` pairs, in document order.
    """
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, (dict, MappingProxyType)) or (
        not isinstance(value, (list, tuple, int, float)) and isinstance(value, Mapping)
    ):
        for k, v in value.items():
            if isinstance(v, str):
                yield f"{where}.{k}", v
            elif isinstance(v, (dict, list, tuple)) or isinstance(v, Mapping):
                yield from iter_strings(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from iter_strings(v, f"{where}[{i}]")
