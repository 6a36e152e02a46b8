"""The journal protocol: an append-only event log per run, and its in-memory implementation."""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol, runtime_checkable

from ..events import Event, RunFinished

__all__ = ["Journal", "MemoryJournal"]


@runtime_checkable
class Journal(Protocol):
    """Where run events go. Every implementation is append-only and ordered per run."""

    async def append(self, event: Event, *, wait: bool = True) -> None:
        """Append one event, assigning ``event.seq`` (1, 2, ... per run) before returning.

        Args:
            event: the event; its ``seq`` is overwritten.
            wait: when True (the default) return only once the event is durable, so a
                caller can write the intent (``tool_call_started``) before the act. When
                False the event is queued and committed with the next batch, in order;
                use it where losing the event in a crash only means redoing safe work.
        """
        ...

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run."""
        ...

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs that started and have no ``run_finished`` event."""
        ...

    async def close(self) -> None:
        """Flush and release resources. Appending after close is an error."""
        ...


class MemoryJournal:
    """A journal held in memory: fast, for tests, benchmarks and one-shot embedding.

    Nothing survives the process; use the SQLite store for durability.
    """

    def __init__(self) -> None:
        self._events: defaultdict[str, list[Event]] = defaultdict(list)
        self._open: dict[str, None] = {}

    async def append(self, event: Event, *, wait: bool = True) -> None:
        """Append an event and assign its sequence number (`wait` changes nothing here)."""
        events = self._events[event.run_id]
        event.seq = len(events) + 1
        events.append(event)
        if isinstance(event, RunFinished):
            self._open.pop(event.run_id, None)
        elif event.kind == "run_started":
            self._open[event.run_id] = None

    async def read(self, run_id: str) -> list[Event]:
        """Return a copy of the run's events in order."""
        return list(self._events.get(run_id, ()))

    async def unfinished_runs(self) -> list[str]:
        """Return runs started and not finished, oldest first."""
        return list(self._open)

    def run_ids(self) -> list[str]:
        """Return every run id seen, oldest first."""
        return list(self._events)

    async def close(self) -> None:
        """Nothing to release."""
