"""Rows of the SQLite store's index tables, validated when read (they cross an I/O boundary).

Events themselves are validated with `corral.events.EventAdapter`; these models cover the
tables the store keeps beside the event log (``runs``, ``waits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._contract import RunStatus

__all__ = ["RunRow", "StoreStatistics", "WaitRow"]


class RunRow(BaseModel):
    """One row of the ``runs`` table: a run as the store's index knows it, with its lease."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    agent: str
    tenant: str
    task: str
    status: RunStatus
    """``running``, ``waiting`` (at a gate or a wait) or ``finished``."""
    outcome: str | None
    """How the run ended; None until it has."""
    owner: str | None
    """The process that holds the run's lease, if any."""
    lease_until: float | None
    """When the owner's lease ends, Unix seconds; after that any process may claim the run."""
    wake_at: float | None
    """A durable timer: when the run should be driven again, Unix seconds (None: no timer)."""
    created_at: float
    """Time of the ``run_started`` event, Unix seconds."""
    updated_at: float
    """Time of the run's latest event, Unix seconds."""
    last_seq: int
    """Sequence number of the run's latest event (its number of events)."""


class WaitRow(BaseModel):
    """One row of the ``waits`` table: a wait on a correlation key, a delivery, or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    run_id: str | None
    """The run waiting on the key; None while only a delivery (which came first) is kept."""
    created_at: float
    """When the wait started or the early delivery arrived, Unix seconds."""
    expires_at: float | None
    """When the wait times out, Unix seconds; None for a delivery nobody waits on yet."""
    delivered: bool
    """Whether a payload was delivered for the key (before or after the wait started)."""
    payload: Any = None
    """The first payload delivered (later deliveries of the key are ignored)."""
    delivered_at: float | None = None
    resolved_at: float | None = None
    """When the run's ``wait_resolved`` event was written; None while the wait is open."""

    @property
    def open(self) -> bool:
        """Whether a run waits on the key and its wait is not yet resolved."""
        return self.run_id is not None and self.resolved_at is None


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counters of a `SqliteStore`, for metrics and for checking that group commit batches."""

    transactions: int
    """Group-commit transactions that wrote appended events."""
    events: int
    """Events written by those transactions."""
    largest_batch: int
    """Most events written by one transaction."""
    conditional_writes: int
    """Transactions of gate decisions, wait resolutions, deliveries and expiries."""
    failed_batches: int
    """Group-commit transactions that failed (their appenders were told)."""
    pending_events: int
    """Events appended and not yet committed."""
    pending_bytes: int
    """Bytes of JSON of those events."""
    cached_runs: int
    """Runs whose next sequence number is held in memory (runs being driven here)."""
