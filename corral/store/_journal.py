"""The journal protocol: an append-only event log per run, and its in-memory implementation.

Gates and waits are events too (``gate_opened``, ``gate_decided``, ``wait_started``,
``wait_resolved``); a journal keeps indexes of them, updated with each append, so open
gates, waiting runs and early webhook deliveries are found without reading every run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import GateExpired
from ..events import (
    Event,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    WaitResolved,
    WaitStarted,
)

__all__ = [
    "GateRecord",
    "Journal",
    "MemoryJournal",
    "RunInfo",
    "RunStatus",
    "WaitRecord",
]

RunStatus = Literal["running", "waiting", "finished"]
"""``running`` (being driven, or ready to be), ``waiting`` (at a gate or a wait), ``finished``."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as the journal's index knows it."""

    run_id: str
    agent: str
    tenant: str
    status: RunStatus
    outcome: str | None
    created_at: float
    updated_at: float
    task: str


@dataclass(frozen=True, slots=True)
class GateRecord:
    """A gate with its decision, if any."""

    run_id: str
    opened: GateOpened
    decided: GateDecided | None = None

    @property
    def status(self) -> Literal["open", "approved", "rejected", "expired"]:
        """``open`` until decided."""
        return "open" if self.decided is None else self.decided.decision


@dataclass(frozen=True, slots=True)
class WaitRecord:
    """A run waiting for an external event."""

    run_id: str
    started: WaitStarted


def check_not_expired(decision: GateDecided, expires_at: float) -> None:
    """Refuse an approval or rejection made at or after its gate's deadline.

    Raises:
        GateExpired: ``decision.ts >= expires_at`` and the decision is not an expiry.
    """
    if decision.decision != "expired" and decision.ts >= expires_at:
        raise gate_expired(decision.gate_id, decision.run_id, expires_at)


def gate_expired(gate_id: str, run_id: str, expires_at: float) -> GateExpired:
    """The error for a decision on gate `gate_id` after it expired at `expires_at`."""
    when = dt.datetime.fromtimestamp(expires_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return GateExpired(
        f"gate {gate_id} (run {run_id}) expired at {when}: an expired gate counts as a "
        "rejection, and can no longer be approved, rejected or edited",
        gate_id=gate_id,
        run_id=run_id,
        expires_at=expires_at,
    )


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

        Raises:
            JournalError: the event (or an earlier ``wait=False`` one of its run) could
                not be stored: a full disk, an I/O error, a lock held too long. The
                runtime then stops driving the run and tells whoever waits for it; the
                run stays unfinished, to be resumed once the journal can be written.
        """
        ...

    async def flush(self) -> None:
        """Return once every event appended so far is durable (``wait=False`` ones too)."""
        ...

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run."""
        ...

    async def read_lazily(self, run_id: str) -> Sequence[Event]:
        """A run's events as `read` returns them, each decoded when first looked at.

        A result's trail then costs nothing until someone reads it.
        """
        ...

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs that started and have no ``run_finished`` event."""
        ...

    async def runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunInfo]:
        """Return runs, newest first, optionally only those with `status`."""
        ...

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates (by default the open ones, of every run), oldest first."""
        ...

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate, or None."""
        ...

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append `decision` to the gate's run only if the gate is still open (atomically).

        An approval or rejection whose ``ts`` is at or after the gate's ``expires_at`` is
        refused in the same check, so a decision racing the deadline cannot win after it.

        Returns:
            False when the gate was already decided (by this or another process).

        Raises:
            GateExpired: the decision is not an expiry and came at or after the deadline.
        """
        ...

    async def waits(self) -> list[WaitRecord]:
        """Return the waits not yet resolved."""
        ...

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Deliver an external event by correlation key.

        If a run waits on `key`, its ``wait_resolved`` event is appended and its id
        returned. Otherwise the payload is kept until a run starts waiting on `key`;
        delivering a key twice keeps the first payload.
        """
        ...

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, payload)`` for a delivery kept for `key` (and forget it)."""
        ...

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append `resolution` only if its wait is still open (atomically); else False."""
        ...

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Take the right to drive a run, unless another live owner holds it.

        Appending the run's ``run_finished`` event releases the claim. Claiming a new run
        whose first events were appended with ``wait=False`` makes them durable with the
        claim (so starting a run costs one commit).
        """
        ...

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim several runs at once (one transaction); return those claimed."""
        ...

    async def release(self, run_id: str, owner: str) -> None:
        """Give up the right to drive a run."""
        ...

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content; return their SHA-256 hex digest."""
        ...

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the saved circuit-breaker states (tool -> plain data)."""
        ...

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the saved circuit-breaker states."""
        ...

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest, or None."""
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
        self._info: dict[str, RunInfo] = {}
        self._gates: dict[str, GateRecord] = {}
        self._waits: dict[str, WaitRecord] = {}
        self._deliveries: dict[str, Any] = {}
        self._owners: dict[str, tuple[str, float]] = {}
        self._blobs: dict[str, bytes] = {}
        self._breakers: dict[str, dict[str, Any]] = {}

    async def append(self, event: Event, *, wait: bool = True) -> None:
        """Append an event, assign its sequence number, and update the indexes."""
        self._append(event)

    async def flush(self) -> None:
        """Nothing to do: every append is complete when it returns."""

    def _append(self, event: Event) -> None:
        events = self._events[event.run_id]
        event.seq = len(events) + 1
        events.append(event)
        info = self._info.get(event.run_id)
        if isinstance(event, RunStarted):
            self._info[event.run_id] = RunInfo(
                event.run_id,
                event.agent,
                event.tenant,
                "running",
                None,
                event.ts,
                event.ts,
                event.task,
            )
            return
        if info is None:
            return
        status: RunStatus = info.status
        outcome = info.outcome
        if isinstance(event, GateOpened):
            self._gates[event.gate_id] = GateRecord(event.run_id, event)
            status = "waiting"
        elif isinstance(event, GateDecided):
            record = self._gates.get(event.gate_id)
            if record is not None:
                self._gates[event.gate_id] = GateRecord(record.run_id, record.opened, event)
            status = self._status_after_resolution(event.run_id)
        elif isinstance(event, WaitStarted):
            self._waits[event.key] = WaitRecord(event.run_id, event)
            status = "waiting"
        elif isinstance(event, WaitResolved):
            self._waits.pop(event.key, None)
            status = self._status_after_resolution(event.run_id)
        elif isinstance(event, RunFinished):
            status, outcome = "finished", event.outcome
            self._owners.pop(event.run_id, None)
        self._info[event.run_id] = RunInfo(
            info.run_id,
            info.agent,
            info.tenant,
            status,
            outcome,
            info.created_at,
            event.ts,
            info.task,
        )

    def _status_after_resolution(self, run_id: str) -> RunStatus:
        still = any(g.run_id == run_id and g.decided is None for g in self._gates.values()) or any(
            w.run_id == run_id for w in self._waits.values()
        )
        return "waiting" if still else "running"

    async def read(self, run_id: str) -> list[Event]:
        """Return a copy of the run's events in order."""
        return list(self._events.get(run_id, ()))

    async def read_lazily(self, run_id: str) -> Sequence[Event]:
        """The run's events (kept as objects here: nothing to decode)."""
        return tuple(self._events.get(run_id, ()))

    async def unfinished_runs(self) -> list[str]:
        """Return runs started and not finished, oldest first."""
        return [i.run_id for i in self._info.values() if i.status != "finished"]

    async def runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunInfo]:
        """Return runs, newest first."""
        found = [i for i in self._info.values() if status is None or i.status == status]
        return sorted(found, key=lambda i: i.created_at, reverse=True)[:limit]

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates with `status` (None for all), of one run or all, oldest first."""
        return [
            g
            for g in self._gates.values()
            if (status is None or g.status == status) and (run_id is None or g.run_id == run_id)
        ]

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate."""
        return self._gates.get(gate_id)

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append the decision if the gate is still open and, unless it is an expiry, due.

        Raises:
            GateExpired: an approval or rejection at or after the gate's ``expires_at``
                (``decision.ts`` is the time of the decision).
        """
        record = self._gates.get(decision.gate_id)
        if record is None or record.decided is not None:
            return False
        check_not_expired(decision, record.opened.expires_at)
        self._append(decision)
        return True

    async def waits(self) -> list[WaitRecord]:
        """Return unresolved waits."""
        return list(self._waits.values())

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Resolve the run waiting on `key`, or keep the payload for later."""
        record = self._waits.get(key)
        if record is None:
            self._deliveries.setdefault(key, payload)
            return None
        await self.resolve_wait(
            WaitResolved(
                run_id=record.run_id,
                ts=now,
                call_id=record.started.call_id,
                tool=record.started.tool,
                key=key,
                payload=payload,
            )
        )
        return record.run_id

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append the resolution if the wait is still open."""
        record = self._waits.get(resolution.key)
        if record is None or record.run_id != resolution.run_id:
            return False
        self._append(resolution)
        return True

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Pop a kept delivery."""
        if key in self._deliveries:
            return True, self._deliveries.pop(key)
        return False, None

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Claim a run for `owner` unless another owner's lease is still live."""
        holder = self._owners.get(run_id)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._owners[run_id] = (owner, now + lease_s)
        return True

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim each run that is free."""
        return [r for r in run_ids if await self.claim(r, owner, lease_s=lease_s, now=now)]

    async def renew_leases(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        run_ids: Collection[str] | None = None,
    ) -> int:
        """Extend the leases `owner` still holds (of `run_ids` only, if given); never claims.

        Returns:
            How many leases were renewed.
        """
        held = [
            run_id
            for run_id, (holder, _) in self._owners.items()
            if holder == owner and (run_ids is None or run_id in run_ids)
        ]
        for run_id in held:
            self._owners[run_id] = (owner, now + lease_s)
        return len(held)

    async def release(self, run_id: str, owner: str) -> None:
        """Release `owner`'s claim."""
        if self._owners.get(run_id, ("",))[0] == owner:
            del self._owners[run_id]

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep the breaker states."""
        self._breakers = {tool: dict(state) for tool, state in states.items()}

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the kept breaker states."""
        return {tool: dict(state) for tool, state in self._breakers.items()}

    async def put_blob(self, data: bytes) -> str:
        """Keep bytes by content."""
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, data)
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        """Return bytes by digest."""
        return self._blobs.get(digest)

    async def close(self) -> None:
        """Nothing to release."""
