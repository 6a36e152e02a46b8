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

The agent loop marks the task driving a run with `bind_run_context` and `bind_step`, so a
record written while a run is driven (by Corral or by a tool) can say which run, agent,
step and tenant it is about: `corral.observability.configure_json_logs` adds them to each
line, and `corral.observability.add_log_context` to a program's own structlog chain. The
context is a private `ContextVar`, not ``structlog.contextvars``, so Corral's keys never
appear in the embedding program's own logs.

This module imports nothing from the rest of Corral, so every layer can use it.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any

import structlog

__all__ = [
    "ROOT_LOGGER",
    "LogContext",
    "bind_run_context",
    "bind_step",
    "current_log_context",
    "get_logger",
    "reset_log_context",
]

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


# -- the run a record is about ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogContext:
    """The run a log record was written in, as the agent loop bound it."""

    run_id: str
    agent: str
    tenant: str
    step: int | None = None
    """The model step (from 1) being worked on; None before the first."""


_CONTEXT: ContextVar[LogContext | None] = ContextVar("corral_log_context", default=None)


def bind_run_context(*, run_id: str, agent: str, tenant: str) -> Token[LogContext | None]:
    """Mark the current task (and the tasks it starts) as working on a run.

    Args:
        run_id: the run.
        agent: its sub-agent.
        tenant: who pays for it.

    Returns:
        A token for `reset_log_context`, which restores what was bound before.
    """
    return _CONTEXT.set(LogContext(run_id, agent, tenant))


def bind_step(step: int) -> Token[LogContext | None] | None:
    """Record the model step the current run is at (no-op outside a bound run).

    Args:
        step: the step, from 1.

    Returns:
        A token for `reset_log_context`, or None when no run is bound.
    """
    context = _CONTEXT.get()
    if context is None:
        return None
    return _CONTEXT.set(replace(context, step=step))


def reset_log_context(token: Token[LogContext | None] | None) -> None:
    """Restore the context bound before `token` was made (None does nothing)."""
    if token is not None:
        _CONTEXT.reset(token)


def current_log_context() -> LogContext | None:
    """The run context bound in the current task, if any."""
    return _CONTEXT.get()
