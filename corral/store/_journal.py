"""The in-memory journal: every part of the contract, over dictionaries.

`MemoryJournal` keeps the same indexes as the SQLite store (runs, gates, one slot per
correlation key for waits and early deliveries, leases, timers, blob references) and
applies the same rules: the status of `run_status`, the deadline of
`check_not_expired`, first delivery wins, ``run_finished`` releases the lease and clears
the timer. Payloads and breaker states go through the shared JSON codec, so both
backends return the same data. The conformance suite (`corral.store.testing`) runs
against both.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self, cast

from .._clock import Clock, SystemClock
from ..errors import JournalError, UsageError
from ..events import (
    Event,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    WaitResolved,
    WaitStarted,
)
from ._codec import from_json, to_json, with_seq
from ._contract import (
    WORKER_FORGET_S,
    GateRecord,
    RunInfo,
    RunStatus,
    TenantAsk,
    TenantDenied,
    TenantHold,
    TenantSpend,
    WaitRecord,
    WorkerInfo,
    check_not_expired,
    run_status,
    tenant_day,
    tenant_grant,
)

__all__ = ["MemoryJournal"]


@dataclass(slots=True)
class _Run:
    """A run's row of the index."""

    run_id: str
    agent: str
    tenant: str
    task: str
    created_at: float
    updated_at: float
    outcome: str | None = None
    finished: bool = False
    open_gates: int = 0
    open_waits: int = 0
    owner: str | None = None
    lease_until: float | None = None
    wake_at: float | None = None
    cancel_request: str | None = None

    @property
    def status(self) -> RunStatus:
        return run_status(
            finished=self.finished, open_gates=self.open_gates > 0, open_waits=self.open_waits > 0
        )

    def info(self) -> RunInfo:
        return RunInfo(
            self.run_id,
            self.agent,
            self.tenant,
            self.status,
            self.outcome,
            self.created_at,
            self.updated_at,
            self.task,
            self.owner,
            self.lease_until,
            self.wake_at,
        )

    def leased(self, now: float) -> bool:
        """Unfinished, with an owner whose lease is still live at `now`."""
        return (
            not self.finished
            and self.owner is not None
            and self.lease_until is not None
            and self.lease_until > now
        )

    def free_for(self, owner: str, now: float) -> bool:
        """Unfinished, and its lease free, expired (``lease_until <= now``) or `owner`'s."""
        return not self.finished and (
            self.owner is None
            or self.owner == owner
            or self.lease_until is None
            or self.lease_until <= now
        )


@dataclass(slots=True)
class _Key:
    """A correlation key: a run's wait on it, a payload delivered for it, or both."""

    created_at: float
    run_id: str | None = None
    started: WaitStarted | None = None
    payload: str | None = None
    """The first payload delivered, as JSON text."""
    delivered_at: float | None = None
    resolved: bool = False

    @property
    def open(self) -> bool:
        return self.started is not None and not self.resolved


@dataclass(slots=True)
class _Hold:
    """A tenant hold, with whose lease it lives by (see `TenantBudgets`)."""

    hold: TenantHold
    owner: str
    run_id: str
    until: float


class MemoryJournal:
    """A journal held in memory: fast, for tests, benchmarks and one-shot embedding.

    Nothing survives the process; use the SQLite store for durability. `vacuum` has
    nothing to give back and does nothing. Closing refuses later appends until the journal
    is entered again (``async with``), with its contents kept.

    Args:
        clock: where `put_blob` reads the time (a blob's age, for `prune`). Default: the
            system clock.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._events: dict[str, list[Event]] = {}
        self._runs: dict[str, _Run] = {}
        self._gates: dict[str, GateRecord] = {}
        self._keys: dict[str, _Key] = {}
        self._blobs: dict[str, tuple[bytes, float]] = {}
        self._blob_refs: dict[str, set[str]] = {}
        self._breakers: dict[str, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._tenant_days: dict[tuple[str, str], tuple[int, float]] = {}
        self._holds: dict[str, _Hold] = {}
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._closed = False
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Refuse further appends (the contents stay). Closing twice is a no-op."""
        self._closed = True

    # -- the log --------------------------------------------------------------------------------

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        """Append an event and update the indexes; return the stored copy with its seq.

        Args:
            event: the event; its ``seq`` is ignored, and it is not changed.
            wait: ignored: every append is complete when it returns.

        Raises:
            JournalError: a ``wait_started`` on a key another run still waits on.
            UsageError: the journal is closed.
        """
        return self._store(event)

    async def flush(self) -> None:
        """Nothing to do: every append is complete when it returns."""

    def _store(self, event: Event) -> Event:
        """Number, keep and index an event (every write comes through here)."""
        if self._closed:
            raise UsageError("the memory journal is closed")
        if isinstance(event, WaitStarted):
            slot = self._keys.get(event.key)
            if slot is not None and slot.open and slot.run_id != event.run_id:
                raise JournalError(
                    f"run {event.run_id!r} cannot wait on {event.key!r}: run "
                    f"{slot.run_id!r} already waits on it",
                    run_id=event.run_id,
                )
        events = self._events.setdefault(event.run_id, [])
        stored = with_seq(event, len(events) + 1)
        events.append(stored)
        self._index(stored)
        return stored

    def _index(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._runs[event.run_id] = _Run(
                event.run_id, event.agent, event.tenant, event.task, event.ts, event.ts
            )
            return
        run = self._runs.get(event.run_id)
        if run is None:
            return
        run.updated_at = max(run.updated_at, event.ts)
        if isinstance(event, GateOpened):
            prior = self._gates.get(event.gate_id)
            if prior is None or prior.decided is not None:
                run.open_gates += 1
            self._gates[event.gate_id] = GateRecord(event.run_id, event)
        elif isinstance(event, GateDecided):
            record = self._gates.get(event.gate_id)
            if record is not None and record.decided is None:
                self._gates[event.gate_id] = GateRecord(record.run_id, record.opened, event)
                self._runs[record.run_id].open_gates -= 1
        elif isinstance(event, WaitStarted):
            slot = self._keys.get(event.key)
            if slot is None or not slot.open:
                run.open_waits += 1  # (an open one is this run's: `_store` refuses others)
            if slot is None or slot.run_id is not None:  # a payload kept for no run stays
                slot = self._keys[event.key] = _Key(event.ts)
            slot.created_at, slot.run_id, slot.started = event.ts, event.run_id, event
            slot.resolved = False
        elif isinstance(event, WaitResolved):
            slot = self._keys.get(event.key)
            if slot is not None and slot.open and slot.run_id == event.run_id:
                slot.resolved = True  # its delivery, if any, is used up
                run.open_waits -= 1
        elif isinstance(event, RunFinished):
            run.finished, run.outcome = True, event.outcome
            run.owner = run.lease_until = run.wake_at = None
        elif isinstance(event, ToolCallFinished) and event.result_blob is not None:
            self._blob_refs.setdefault(event.result_blob, set()).add(event.run_id)

    async def read(self, run_id: str) -> list[Event]:
        """Return the run's stored events in order (a new list)."""
        return list(self._events.get(run_id, ()))

    async def read_lazily(self, run_id: str) -> Sequence[Event]:
        """The run's events, as `read` (kept as objects here: nothing to decode)."""
        return list(self._events.get(run_id, ()))

    # -- the run index --------------------------------------------------------------------------

    async def runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int | None = 100,
        agents: Collection[str] | None = None,
        updated_since: float | None = None,
        tenant: str | None = None,
        outcome: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after: str | None = None,
    ) -> list[RunInfo]:
        """Return runs, newest first, with the filters given (see `RunIndex.runs`)."""
        wanted = None if agents is None else set(agents)
        ordered = [run.info() for run in reversed(self._runs.values())]
        ordered.sort(key=lambda info: info.created_at, reverse=True)  # stable: newest created
        if after is not None:
            position = next((i for i, info in enumerate(ordered) if info.run_id == after), None)
            ordered = [] if position is None else ordered[position + 1 :]
        found = [
            info
            for info in ordered
            if (status is None or info.status == status)
            and (wanted is None or info.agent in wanted)
            and (updated_since is None or info.updated_at >= updated_since)
            and (tenant is None or info.tenant == tenant)
            and (outcome is None or info.outcome == outcome)
            and (created_after is None or info.created_at >= created_after)
            and (created_before is None or info.created_at < created_before)
        ]
        return found if limit is None else found[:limit]

    async def run(self, run_id: str) -> RunInfo | None:
        """Return one run as the index knows it, or None."""
        run = self._runs.get(run_id)
        return None if run is None else run.info()

    async def unfinished_runs(self) -> list[str]:
        """Return runs started and not finished, oldest first."""
        return [run.run_id for run in self._oldest_first() if not run.finished]

    def _oldest_first(self) -> list[_Run]:
        return sorted(self._runs.values(), key=lambda run: run.created_at)

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates with `status` (None for all), of one run or all, oldest first."""
        found = [
            g
            for g in self._gates.values()
            if (status is None or g.status == status) and (run_id is None or g.run_id == run_id)
        ]
        return sorted(found, key=lambda g: g.opened.ts)

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate, or None."""
        return self._gates.get(gate_id)

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append the decision if the gate is still open and, unless it is an expiry, in time.

        Raises:
            GateExpired: an approval or rejection at or after the gate's ``expires_at``
                (``decision.ts`` is the time of the decision).
            UsageError: the gate belongs to another run than ``decision.run_id``.
        """
        record = self._gates.get(decision.gate_id)
        if record is None or record.decided is not None:
            return False
        if record.run_id != decision.run_id:
            raise UsageError(
                f"gate {decision.gate_id!r} belongs to run {record.run_id!r}, "
                f"not {decision.run_id!r}"
            )
        check_not_expired(decision, record.opened.expires_at)
        self._store(decision)
        return True

    async def waits(self) -> list[WaitRecord]:
        """Return unresolved waits, oldest first."""
        return [
            WaitRecord(slot.run_id, slot.started)
            for slot in sorted(self._keys.values(), key=lambda s: s.created_at)
            if slot.started is not None and slot.run_id is not None and not slot.resolved
        ]

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Resolve the run waiting on `key`, or keep the payload for later (first one wins).

        Raises:
            UsageError: the payload cannot be serialised to JSON.
        """
        data = to_json(payload, what=f"the payload delivered to {key!r}")
        slot = self._keys.get(key)
        if slot is None:
            self._keys[key] = _Key(now, payload=data, delivered_at=now)
            return None
        if not slot.open or slot.started is None or slot.run_id is None:
            return None  # a delivery is already kept, or the wait is resolved
        if slot.delivered_at is None:
            slot.payload, slot.delivered_at = data, now
        self._store(
            WaitResolved(
                run_id=slot.run_id,
                ts=now,
                call_id=slot.started.call_id,
                tool=slot.started.tool,
                key=key,
                payload=from_json(slot.payload or data),
            )
        )
        return slot.run_id

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Return a kept delivery not yet used up (resolving the wait uses it up)."""
        slot = self._keys.get(key)
        if slot is None or slot.delivered_at is None or slot.resolved or slot.payload is None:
            return False, None
        return True, from_json(slot.payload)

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append the resolution if its run's wait on the key is still open."""
        slot = self._keys.get(resolution.key)
        if slot is None or not slot.open or slot.run_id != resolution.run_id:
            return False
        self._store(resolution)
        return True

    # -- leases and timers ----------------------------------------------------------------------

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Claim an unfinished run for `owner` unless another owner's lease is still live."""
        return self._claim(run_id, owner, now + lease_s, now)

    def _claim(self, run_id: str, owner: str, until: float, now: float) -> bool:
        run = self._runs.get(run_id)
        if run is None or not run.free_for(owner, now):
            return False
        run.owner, run.lease_until = owner, until
        return True

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim each run that `claim` would take; return them in the order given."""
        return [r for r in run_ids if self._claim(r, owner, now + lease_s, now)]

    async def claim_runs(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        limit: int = 100,
        agents: Collection[str] | None = None,
        exclude: Collection[str] = (),
        fair: bool = False,
    ) -> list[str]:
        """Claim up to `limit` ready runs, oldest first (see `Leases.claim_runs`).

        With `fair`, round-robin by tenant, counting the runs each tenant already has
        in flight (see `Leases.claim_runs`).
        """
        wanted = None if agents is None else set(agents)
        skipped = set(exclude)
        ready = (
            run
            for run in self._oldest_first()
            if run.status == "running"
            and run.free_for(owner, now)
            and (run.wake_at is None or run.wake_at <= now)
            and (wanted is None or run.agent in wanted)
            and run.run_id not in skipped
        )
        if fair:
            ranks: dict[str, int] = {}  # a tenant's runs in flight, then its ready ones
            for run in self._runs.values():
                if run.leased(now) and (run.owner != owner or run.run_id in skipped):
                    ranks[run.tenant] = ranks.get(run.tenant, 0) + 1
            rounds: list[tuple[int, int, _Run]] = []
            for age, run in enumerate(ready):  # `age`: the place in oldest-first order
                rank = ranks[run.tenant] = ranks.get(run.tenant, 0) + 1
                rounds.append((rank, age, run))
            ready = (run for _, _, run in sorted(rounds, key=lambda r: (r[0], r[1])))
        claimed: list[str] = []
        for run in ready:
            if len(claimed) >= limit:
                break
            run.owner, run.lease_until = owner, now + lease_s
            claimed.append(run.run_id)
        return claimed

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
        only = None if run_ids is None else set(run_ids)
        renewed: set[str] = set()
        for run in self._runs.values():
            if run.owner == owner and not run.finished and (only is None or run.run_id in only):
                run.lease_until = now + lease_s
                renewed.add(run.run_id)
        for held in self._holds.values():
            if held.owner == owner and held.run_id in renewed:
                held.until = now + lease_s
        return len(renewed)

    async def release(self, run_id: str, owner: str) -> None:
        """Release `owner`'s lease (nothing happens if it holds none)."""
        run = self._runs.get(run_id)
        if run is not None and run.owner == owner:
            run.owner = run.lease_until = None

    async def set_wake(self, run_id: str, wake_at: float | None) -> bool:
        """Set (or clear, with None) the run's timer; False for an unknown or finished run."""
        run = self._runs.get(run_id)
        if run is None or run.finished:
            return False
        run.wake_at = wake_at
        return True

    async def due_runs(self, now: float, *, limit: int = 1000) -> list[str]:
        """Return unfinished runs whose timer is due, earliest first."""
        due = [
            run
            for run in self._runs.values()
            if not run.finished and run.wake_at is not None and run.wake_at <= now
        ]
        due.sort(key=lambda run: run.wake_at or 0.0)
        return [run.run_id for run in due[:limit]]

    async def expire_gates(self, now: float, *, note: str = "") -> list[GateRecord]:
        """Decide every open gate due at or before `now` as ``expired``; return them."""
        expired: list[GateRecord] = []
        for record in await self.gates(status="open"):
            if record.opened.expires_at <= now:
                gate_id = record.opened.gate_id
                self._store(
                    GateDecided(
                        run_id=record.run_id,
                        ts=now,
                        gate_id=gate_id,
                        call_id=record.opened.call_id,
                        decision="expired",
                        note=note,
                    )
                )
                expired.append(self._gates[gate_id])  # now with its stored decision
        return expired

    async def expire_waits(self, now: float) -> list[WaitResolved]:
        """Resolve every open wait due at or before `now` as timed out; return the events."""
        resolved: list[WaitResolved] = []
        for wait in await self.waits():
            if wait.started.expires_at <= now:
                stored = self._store(
                    WaitResolved(
                        run_id=wait.run_id,
                        ts=now,
                        call_id=wait.started.call_id,
                        tool=wait.started.tool,
                        key=wait.started.key,
                        timed_out=True,
                    )
                )
                resolved.append(cast(WaitResolved, stored))  # a copy: of the same class
        return resolved

    # -- blobs ----------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Keep bytes by content; return their SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, (bytes(data), self._clock.now()))
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        """Return bytes by digest, or None."""
        found = self._blobs.get(digest)
        return None if found is None else found[0]

    # -- breakers and retention -----------------------------------------------------------------

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the kept breaker states.

        Raises:
            UsageError: a state cannot be serialised to JSON.
        """
        self._breakers = {
            tool: to_json(dict(state), what=f"the state of breaker {tool!r}")
            for tool, state in states.items()
        }

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the kept breaker states (new copies)."""
        return {tool: from_json(state) for tool, state in sorted(self._breakers.items())}

    async def request_cancel(self, run_id: str, reason: str, *, now: float) -> bool:
        """Ask the process driving an unfinished run to cancel it; False if finished/unknown."""
        run = self._runs.get(run_id)
        if run is None or run.finished:
            return False
        run.cancel_request = reason
        return True

    async def cancel_requests(self, run_ids: Collection[str]) -> dict[str, str]:
        """The cancellations requested of the unfinished runs among `run_ids`."""
        out: dict[str, str] = {}
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and not run.finished and run.cancel_request is not None:
                out[run_id] = run.cancel_request
        return out

    # -- workers ----------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Record `worker` as alive at ``worker.seen_at``; forget workers unseen for a week."""
        self._workers[worker.owner] = replace(worker, leases=0)
        cutoff = worker.seen_at - WORKER_FORGET_S
        for owner in [o for o, w in self._workers.items() if w.seen_at < cutoff]:
            del self._workers[owner]

    async def workers(self, *, now: float, within_s: float) -> list[WorkerInfo]:
        """Return the workers seen within `within_s` of `now`, oldest first, with leases."""
        live: dict[str, int] = {}
        for run in self._runs.values():
            owner = run.owner
            if owner is not None and run.leased(now):
                live[owner] = live.get(owner, 0) + 1
        seen = [w for w in self._workers.values() if w.seen_at >= now - within_s]
        seen.sort(key=lambda w: (w.started_at, w.owner))
        return [replace(w, leases=live.get(w.owner, 0)) for w in seen]

    async def retire(self, owner: str) -> None:
        """Remove a worker from the registry."""
        self._workers.pop(owner, None)

    # -- tenant budgets ----------------------------------------------------------------------

    def _spend(self, tenant: str, day: str, now: float) -> TenantSpend:
        tokens, cost = self._tenant_days.get((tenant, day), (0, 0.0))
        reserved, reserved_cost = 0, 0.0
        for held in self._holds.values():
            hold = held.hold
            if hold.tenant != tenant or hold.day != day:
                continue
            if held.until <= now:  # expired unsettled: counted whole
                tokens, cost = tokens + hold.tokens, cost + hold.cost_usd
            else:
                reserved, reserved_cost = reserved + hold.tokens, reserved_cost + hold.cost_usd
        return TenantSpend(tenant, day, tokens, cost, reserved, reserved_cost)

    async def reserve_tenant(
        self, ask: TenantAsk, *, now: float, until: float
    ) -> TenantHold | TenantDenied:
        """Hold what `ask` needs of the tenant's day (see `TenantBudgets.reserve_tenant`)."""
        day = tenant_day(now)
        spend = self._spend(ask.tenant, day, now)
        for hold_id in [
            h
            for h, held in self._holds.items()
            if held.hold.tenant == ask.tenant and held.hold.day == day and held.until <= now
        ]:
            del self._holds[hold_id]  # counted as spent, in `spend`
        self._tenant_days[ask.tenant, day] = (spend.tokens, spend.cost_usd)
        granted = tenant_grant(ask, spend)
        if isinstance(granted, TenantDenied):
            return granted
        output, tokens, cost = granted
        hold = TenantHold(uuid.uuid4().hex, ask.tenant, day, tokens, cost, output)
        self._holds[hold.hold_id] = _Hold(hold, ask.owner, ask.run_id, until)
        return hold

    async def settle_tenant(self, hold: TenantHold, *, tokens: int, cost_usd: float) -> bool:
        """Give `hold` back and count what the call used (False: it had expired)."""
        if self._holds.pop(hold.hold_id, None) is None:
            return False
        spent, spent_cost = self._tenant_days.get((hold.tenant, hold.day), (0, 0.0))
        self._tenant_days[hold.tenant, hold.day] = (spent + tokens, spent_cost + cost_usd)
        return True

    async def tenant_spend(self, tenant: str, *, now: float) -> TenantSpend:
        """Return the tenant's day (the UTC day of `now`)."""
        return self._spend(tenant, tenant_day(now), now)

    async def prune(self, *, older_than_s: float, now: float) -> int:
        """Delete finished runs last updated before ``now - older_than_s``.

        Their events, gates, waits and blob references go with them, as do blobs no run
        uses any more and early deliveries nobody waited for, when older than the cutoff.
        Unfinished runs are never pruned.

        Returns:
            The number of runs deleted.
        """
        cutoff = now - older_than_s
        gone = {r.run_id for r in self._runs.values() if r.finished and r.updated_at < cutoff}
        for run_id in gone:
            del self._runs[run_id]
            self._events.pop(run_id, None)
        self._gates = {g: r for g, r in self._gates.items() if r.run_id not in gone}
        self._keys = {
            key: slot
            for key, slot in self._keys.items()
            if slot.run_id not in gone
            and not (slot.run_id is None and (slot.delivered_at or 0.0) < cutoff)
        }
        for runs in self._blob_refs.values():
            runs -= gone
        self._blob_refs = {digest: runs for digest, runs in self._blob_refs.items() if runs}
        self._blobs = {
            digest: (data, created)
            for digest, (data, created) in self._blobs.items()
            if created >= cutoff or digest in self._blob_refs
        }
        first_day = tenant_day(cutoff)
        self._tenant_days = {k: v for k, v in self._tenant_days.items() if k[1] >= first_day}
        self._holds = {h: held for h, held in self._holds.items() if held.hold.day >= first_day}
        return len(gone)

    async def vacuum(self) -> None:
        """Nothing to do: memory freed by `prune` is the interpreter's again at once."""
