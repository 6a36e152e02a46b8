"""Corral's own logs: the standard `logging` machinery, under the ``corral`` logger.

Modules log with structlog's call style (``log.warning("actor.restarting", actor=path)``)
through a structlog logger that wraps a stdlib `logging.Logger` named ``corral.<part>``.
Nothing here touches structlog's global configuration, so a program that embeds Corral
keeps its own; and nothing is ever written to stdout. Where the records go is the
embedding program's choice, with ordinary `logging` configuration: without any, Python
prints warnings and errors to stderr (`logging.lastResort`). The ``corral`` command sends
them to stderr at ``CORRAL_LOG_LEVEL``.

Each record's message is the event name followed by its fields as ``key=value``
(``runtime.tick_failed error="RuntimeError('boom')"``); the event and its fields are also
on the record as ``record.corral`` (a dict), for structured handlers.

This module imports nothing from the rest of Corral, so every layer can use it.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["ROOT_LOGGER", "get_logger"]

ROOT_LOGGER = "corral"
"""The logger every Corral logger sits under."""

_PASSED_THROUGH = ("exc_info", "stack_info")


def _to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn structlog's event dict into a stdlib call: a rendered message and ``extra``."""
    kwargs: dict[str, Any] = {}
    for key in _PASSED_THROUGH:
        if key in event_dict:
            kwargs[key] = event_dict.pop(key)
    event = str(event_dict.pop("event", ""))
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {fields}" if fields else event
    # "%" in a message is literal: the message is passed as an argument, never a format.
    kwargs["extra"] = {"corral": {"event": event, **event_dict}}
    return ("%s", message), kwargs


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to the stdlib logger `name` (``corral.<part>``).

    Args:
        name: the stdlib logger's name; it must be ``corral`` or start with ``corral.``.

    Returns:
        A bound logger: ``log.warning("event.name", key=value)``.
    """
    if name != ROOT_LOGGER and not name.startswith(ROOT_LOGGER + "."):
        raise ValueError(f"Corral's loggers live under {ROOT_LOGGER!r}, not {name!r}")
    return structlog.stdlib.BoundLogger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, _to_stdlib],
        context={},
    )
