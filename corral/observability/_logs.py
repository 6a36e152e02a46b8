"""JSON logs: Corral's ``corral`` logger as one JSON object per line, run context included.

`configure_json_logs` puts a handler on the ``corral`` stdlib logger (and only there)
whose formatter is structlog's `ProcessorFormatter` ending in `JSONRenderer`: each
record becomes ``{"ts", "level", "logger", "event", "run_id", "agent", "step",
"tenant", ...its fields}``, its fields being those Corral's loggers put on
``record.corral`` (see `corral._log`). structlog's global configuration is never touched
(a program embedding Corral keeps its own), and neither is the root logger.

The run context comes from a context variable (in `corral._log`) the agent loop sets
(`bind_run_context` when a run's drive starts, `bind_step` at each model call): every
record logged by that run's task, and by the tools it calls, carries it. A context
variable rather than structlog's own `structlog.contextvars`, so Corral's keys never
appear in the embedding program's logs unasked (`add_log_context` adds them to a
structlog chain that wants them).

Every string in a record (the event, each field, a traceback) goes through Corral's
secret redaction (`corral.guardrails.redact_secrets`) on its way out; a value that is not
plain JSON is logged as its ``repr``, redacted too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from .._log import ROOT_LOGGER, current_log_context
from .._pii import redact_secrets
from ..errors import ConfigError

__all__ = ["add_log_context", "configure_json_logs", "json_formatter"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_RESERVED = ("ts", "level", "logger", "event")
"""Keys every line starts with; a record field of the same name is renamed ``<name>_``."""
_MAX_DEPTH = 8
"""Nesting depth of field values redacted one by one; deeper values are logged as text."""


# -- run context ----------------------------------------------------------------------------


def _context_fields() -> dict[str, Any]:
    context = current_log_context()
    if context is None:
        return {}
    fields: dict[str, Any] = {
        "run_id": context.run_id,
        "agent": context.agent,
        "tenant": context.tenant,
    }
    if context.step is not None:
        fields["step"] = context.step
    return fields


def add_log_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding the bound run's ``run_id``, ``agent``, ``step``, ``tenant``.

    For a program's own structlog chain (its tools' logs then say which run they are
    in); keys the event already has are kept.
    """
    for key, value in _context_fields().items():
        event_dict.setdefault(key, value)
    return event_dict


# -- the JSON formatter ---------------------------------------------------------------------


def _shape(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The line's fields, in order: ts, level, logger, event, run context, record fields."""
    record: logging.LogRecord = event_dict["_record"]
    created = datetime.fromtimestamp(record.created, UTC)
    shaped: dict[str, Any] = {
        "ts": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    corral = getattr(record, "corral", None)
    fields: Mapping[str, Any] = corral if isinstance(corral, Mapping) else {}
    shaped["event"] = str(fields.get("event", event_dict.get("event", "")))
    shaped.update(_context_fields())
    for key, value in fields.items():
        if key == "event":
            continue
        shaped[f"{key}_" if key in _RESERVED else key] = value
    for key in ("exc_info", "stack_info", "_record", "_from_structlog"):
        if key in event_dict:
            shaped[key] = event_dict[key]
    return shaped


def _clean(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON with every string's secrets redacted."""
    if isinstance(value, str):
        return redact_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): _clean(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_clean(v, depth + 1) for v in value]
    return redact_secrets(value if isinstance(value, str) else repr(value))


def _redact(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if not key.startswith("_"):
            event_dict[key] = _clean(value)
    return event_dict


class _JSONHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to its stream, or to the current `sys.stderr` (tests and daemons replace it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def json_formatter() -> logging.Formatter:
    """The formatter `configure_json_logs` installs, for a handler of your own."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            _shape,
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            _redact,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )


def configure_json_logs(level: str = "info", stream: TextIO | None = None) -> Callable[[], None]:
    """Write Corral's logs (the ``corral`` logger) as JSON lines, from `level` up.

    One object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``event``, then
    ``run_id``, ``agent``, ``step`` and ``tenant`` when the record was written inside a
    run, then the record's own fields. Secrets are redacted from every string. While
    installed, the ``corral`` logger does not pass its records on to the root logger's
    handlers (so a line is not printed twice, once as text).

    Args:
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``. Default ``info``.
        stream: where lines go. Default: the current `sys.stderr` at each write.

    Returns:
        A function that removes the handler and restores the logger's level and
        propagation as they were.

    Raises:
        ConfigError: an unknown level.
    """
    number = _LEVELS.get(level.strip().lower())
    if number is None:
        raise ConfigError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    logger = logging.getLogger(ROOT_LOGGER)
    previous_level, previous_propagate = logger.level, logger.propagate
    handler = _JSONHandler(stream)
    handler.setFormatter(json_formatter())
    logger.addHandler(handler)
    logger.setLevel(number)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate

    return restore
