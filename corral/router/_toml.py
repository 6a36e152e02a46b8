"""Routing rules from TOML: read once, validated strictly, errors naming file and rule."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError
from ._rules import NamedPredicate, Predicate, Rule

__all__ = ["read_rules"]

TEXT_LABEL = "<TOML text>"


class _RuleData(BaseModel):
    """One ``[[rule]]`` table. Strict: TOML has real types, so no coercion is wanted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    agent: str
    kind: str | list[str] | None = None
    tags: list[str] = []
    keywords: list[str] = []
    regex: str | None = None
    predicate: str | None = None
    always: bool = False


class _RouterData(BaseModel):
    """The ``[router]`` table."""

    model_config = ConfigDict(extra="forbid", strict=True)

    default: str | None = None


_EXPECTED = {
    "name": "a string",
    "agent": "a string (an agent name)",
    "kind": "a string or an array of strings",
    "tags": "an array of strings",
    "keywords": "an array of strings",
    "regex": "a string",
    "predicate": "a string (the name of a predicate)",
    "always": "true or false",
    "default": "a string (an agent name)",
}
_TOP_KEYS = ("router", "rule")


def read_rules(
    source: str | Path, predicates: Mapping[str, Predicate]
) -> tuple[list[Rule], str | None, str]:
    """Read and check routing rules from a TOML file or text.

    Args:
        source: a path, or TOML text (see `Router.from_toml` for how they are told apart).
        predicates: the functions ``predicate = "..."`` may name.

    Returns:
        The rules in file order, the default agent, and the label naming the source.

    Raises:
        ConfigError: anything wrong, with the file and the rule named.
    """
    text, label = _read(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if label == TEXT_LABEL and isinstance(source, str) and "\n" not in source.strip():
            hint = f" (if {source!r} is meant as a file name: no such file)"
        raise ConfigError(f"{label} is not valid TOML: {exc}{hint}") from exc

    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{label}: unknown top-level key {key!r}{_suggest(key, _TOP_KEYS)}")

    default: str | None = None
    if "router" in data:
        table = data["router"]
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: [router] must be a table, got {_toml_type(table)}")
        try:
            default = _RouterData.model_validate(table).default
        except ValidationError as exc:
            raise ConfigError(f"{label}, [router]: {_describe(exc, table, _RouterData)}") from exc

    items = data.get("rule", [])
    if not isinstance(items, list):
        raise ConfigError(f"{label}: write each rule as [[rule]] (an array of tables), not [rule]")
    if not items and default is None:
        raise ConfigError(f"{label}: no [[rule]] and no [router] default, so it routes nothing")

    rules: list[Rule] = []
    first_use: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ConfigError(f"{label}, rule #{number}: must be a table, got {_toml_type(item)}")
        name = item.get("name")
        where = f"{label}, rule #{number}" + (f" ({name!r})" if isinstance(name, str) else "")
        try:
            spec = _RuleData.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc, item, _RuleData)}") from exc
        if spec.name in first_use:
            raise ConfigError(
                f"{where}: the name is already used by rule #{first_use[spec.name]}; "
                "rule names must be unique"
            )
        first_use[spec.name] = number
        rules.append(_build(spec, where, predicates))
    return rules, default, label


def _read(source: str | Path) -> tuple[str, str]:
    """Return (TOML text, label): a Path, or a one-line string naming a file, is read."""
    if isinstance(source, str):
        one_line = "\n" not in source
        if not (one_line and (source.strip().endswith(".toml") or Path(source).is_file())):
            return source, TEXT_LABEL
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise ConfigError(f"cannot read routing rules from {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read routing rules from {path}: not UTF-8 ({exc})") from exc


def _build(spec: _RuleData, where: str, predicates: Mapping[str, Predicate]) -> Rule:
    conditions = [
        key
        for key, given in [
            ("kind", spec.kind is not None),
            ("tags", bool(spec.tags)),
            ("keywords", bool(spec.keywords)),
            ("regex", spec.regex is not None),
            ("predicate", spec.predicate is not None),
        ]
        if given
    ]
    try:
        if spec.always:
            if conditions:
                raise ConfigError(
                    f"always = true matches every task, so it cannot be combined with "
                    f"{', '.join(conditions)}"
                )
            return Rule.always(spec.name, agent=spec.agent)
        predicate: Predicate | None = None
        if spec.predicate is not None:
            function = predicates.get(spec.predicate)
            if function is None:
                known = ", ".join(repr(n) for n in sorted(predicates)) or "none were given"
                raise ConfigError(
                    f"unknown predicate {spec.predicate!r}"
                    f"{_suggest(spec.predicate, list(predicates))}; known predicates: {known}"
                )
            if not callable(function):
                raise ConfigError(f"predicate {spec.predicate!r} is not callable")
            predicate = NamedPredicate(spec.predicate, function)
        return Rule(
            spec.name,
            agent=spec.agent,
            kind=spec.kind,
            tags=spec.tags,
            keywords=spec.keywords,
            regex=spec.regex,
            predicate=predicate,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _describe(exc: ValidationError, raw: Mapping[str, Any], model: type[BaseModel]) -> str:
    """Say what is wrong in words a TOML author knows: keys, tables, arrays, strings."""
    allowed = list(model.model_fields)
    problems: list[str] = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            problem = (
                f"unknown key {key!r}{_suggest(key, allowed)}; allowed keys: {', '.join(allowed)}"
            )
        elif error["type"] == "missing":
            problem = f"missing required key {key!r}"
        else:
            value = raw.get(key)
            problem = (
                f"{key} must be {_EXPECTED.get(key, 'valid')}, got {_toml_type(value)} {value!r}"
            )
        if problem not in problems:  # a union type reports one error per member
            problems.append(problem)
    return "; ".join(problems)


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        if value and not all(isinstance(v, str) for v in value):
            return "an array holding " + _toml_type(
                next(v for v in value if not isinstance(v, str))
            )
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__
