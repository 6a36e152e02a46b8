"""The journal contract: what every backend implements, split by concern.

================  ======================================================================
`EventLog`        the append-only events of each run: `append`, `flush`, `read`,
                  `read_lazily`
`RunIndex`        what the log implies, kept in step with it: runs and their status, gates
                  and their decisions, waits and early deliveries
`Leases`          who drives which run, and when: claims, renewals, durable timers, and the
                  batched expiry of overdue gates and waits
`Blobs`           bytes stored once by content (full tool results)
`Upkeep`          circuit-breaker states kept across restarts, and retention
`Workers`         the registry of worker processes (``corral workers``)
`TenantBudgets`   tenants' daily budgets, reserved across processes
`Journal`         all of the above, plus ``close`` and ``async with``
================  ======================================================================

Every method the runtime calls is here: nothing is looked up with ``getattr``.
`corral.store.testing.JournalContract` checks a backend against this contract; a new
backend (PostgreSQL) only has to pass it.

The records (`RunInfo`, `GateRecord`, `WaitRecord`) and the rules every backend applies
the same way (`run_status`, `check_not_expired`) live here too.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, runtime_checkable

from ..errors import GateExpired
from ..events import Event, GateDecided, GateOpened, WaitResolved, WaitStarted

__all__ = [
    "WAKEUP_KINDS",
    "WORKER_FORGET_S",
    "Blobs",
    "EventLog",
    "GateRecord",
    "Journal",
    "Leases",
    "RunIndex",
    "RunInfo",
    "RunStatus",
    "TenantAsk",
    "TenantBudgets",
    "TenantDenied",
    "TenantHold",
    "TenantSpend",
    "Upkeep",
    "WaitRecord",
    "WakeupSource",
    "WorkerInfo",
    "Workers",
    "check_not_expired",
    "gate_expired",
    "run_status",
    "tenant_day",
    "tenant_grant",
]

RunStatus = Literal["running", "waiting", "finished"]
"""``running`` (being driven, or ready to be), ``waiting`` (at a gate or a wait), ``finished``."""


def run_status(*, finished: bool, open_gates: bool, open_waits: bool) -> RunStatus:
    """The status of a run, as every journal index derives it from the run's events.

    The rule: ``finished`` once its ``run_finished`` event is appended (whatever follows);
    else ``waiting`` while any of its gates is undecided or any of its waits unresolved;
    else ``running``. The SQLite store writes the same rule in SQL (``_STATUS`` in
    ``_sqlite_sql.py``); another backend must apply it too (the conformance suite checks).

    Args:
        finished: the run has a ``run_finished`` event.
        open_gates: a ``gate_opened`` of the run has no ``gate_decided`` yet.
        open_waits: a ``wait_started`` of the run has no ``wait_resolved`` yet.
    """
    if finished:
        return "finished"
    return "waiting" if open_gates or open_waits else "running"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as the journal's index knows it."""

    run_id: str
    agent: str
    tenant: str
    status: RunStatus
    """See `run_status`."""
    outcome: str | None
    """How the run ended; None until it has."""
    created_at: float
    """Time of its ``run_started`` event, Unix seconds."""
    updated_at: float
    """The latest time among its events, Unix seconds."""
    task: str
    owner: str | None = None
    """The process holding the run's lease (it may have expired: see `lease_until`)."""
    lease_until: float | None = None
    """When the owner's lease ends, Unix seconds; after that any process may claim it."""
    wake_at: float | None = None
    """The run's durable timer (`Leases.set_wake`), Unix seconds; None: no timer."""


WORKER_FORGET_S = 7 * 86_400.0
"""Workers not seen for this long are deleted from the registry (a week)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as the journal's registry knows it (see `Workers`)."""

    owner: str
    """Its name in run leases (`Durability.owner`, by default a fresh id per start-up)."""
    host: str
    pid: int
    started_at: float
    """When its runtime started, Unix seconds."""
    seen_at: float
    """Its latest heartbeat, Unix seconds."""
    max_active_runs: int | None = None
    """The most runs it drives at once (`Durability.max_active_runs`); None: no cap."""
    version: str = ""
    """The Corral version it runs."""
    leases: int = 0
    """Unfinished runs on which it holds a live lease (filled in by `Workers.workers`)."""


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

    Args:
        decision: the decision about to be appended.
        expires_at: its gate's deadline, Unix seconds.

    Raises:
        GateExpired: ``decision.ts >= expires_at`` and the decision is not an expiry.
    """
    if decision.decision != "expired" and decision.ts >= expires_at:
        raise gate_expired(decision.gate_id, decision.run_id, expires_at)


def gate_expired(gate_id: str, run_id: str, expires_at: float) -> GateExpired:
    """The error for a decision on gate `gate_id` after it expired at `expires_at`.

    Args:
        gate_id: the gate.
        run_id: its run.
        expires_at: when it expired, Unix seconds.
    """
    when = dt.datetime.fromtimestamp(expires_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return GateExpired(
        f"gate {gate_id} (run {run_id}) expired at {when}: an expired gate counts as a "
        "rejection, and can no longer be approved, rejected or edited",
        gate_id=gate_id,
        run_id=run_id,
        expires_at=expires_at,
    )


@runtime_checkable
class EventLog(Protocol):
    """The append-only log: each run's events, numbered 1, 2, ... without gaps."""

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        """Append one event to its run; return it as stored, with its ``seq`` assigned.

        The stored event is ``event.model_copy(update={"seq": n})``, where ``n`` follows
        the run's last event (1 for the first); `event` itself is never changed. Appending
        the run's ``run_finished`` releases its lease and clears its timer.

        Args:
            event: the event; its ``seq`` is ignored.
            wait: when True (the default) return only once the event is durable, so a
                caller can write the intent (``tool_call_started``) before the act. When
                False the event is queued and committed with the next batch, in order
                (its ``seq`` is assigned at once); use it where losing the event in a
                crash only means redoing safe work.

        Returns:
            The stored event.

        Raises:
            JournalError: the event (or an earlier ``wait=False`` one of its run) could
                not be stored: a full disk, an I/O error, a lock held too long. The
                runtime then stops driving the run and tells whoever waits for it; the
                run stays unfinished, to be resumed once the journal can be written.
            UsageError: the journal is closed.
        """
        ...

    async def flush(self) -> None:
        """Return once every event appended so far is durable (``wait=False`` ones too)."""
        ...

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's stored events in order; empty for an unknown run."""
        ...

    async def read_lazily(self, run_id: str) -> Sequence[Event]:
        """A run's events as `read` returns them (equal to them), each decoded when first used.

        A result's trail then costs nothing until someone reads it.
        """
        ...


@runtime_checkable
class RunIndex(Protocol):
    """Runs, gates and waits as the log implies them, updated with each append."""

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
        """Return runs, newest first (by ``created_at``, then by order of creation).

        Args:
            status: only runs with this status. Default: any.
            limit: most runs to return; None for all. Default 100.
            agents: only runs of these agents. Default: any.
            updated_since: only runs whose ``updated_at`` is at or after this, Unix seconds.
            tenant: only this tenant's runs.
            outcome: only runs that ended this way (``completed``, ``stopped_budget``...).
            created_after: only runs created at or after this, Unix seconds.
            created_before: only runs created before this, Unix seconds.
            after: a cursor: only runs listed after this run id in this order (the last
                id of the previous page). An unknown id gives no runs.
        """
        ...

    async def run(self, run_id: str) -> RunInfo | None:
        """Return one run as the index knows it, or None for an unknown run."""
        ...

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs started and not finished, oldest first."""
        ...

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates, oldest first.

        Args:
            status: ``open`` (the default), ``approved``, ``rejected``, ``expired``, or
                None for every gate.
            run_id: only this run's gates. Default: every run's.
        """
        ...

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate with its decision, if any, or None."""
        ...

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append `decision` to the gate's run only if the gate is still open (atomically).

        An approval or rejection whose ``ts`` is at or after the gate's ``expires_at`` is
        refused in the same check, so a decision racing the deadline cannot win after it.
        `decision` itself is not changed (the stored copy gets the seq).

        Returns:
            True if this call decided the gate; False when the gate was already decided
            (by this or another process) or does not exist.

        Raises:
            GateExpired: the decision is not an expiry and came at or after the deadline.
            UsageError: the gate belongs to another run than ``decision.run_id``.
        """
        ...

    async def waits(self) -> list[WaitRecord]:
        """Return the waits not yet resolved, oldest first."""
        ...

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Deliver an external event (a webhook) by correlation key, exactly once.

        If a run waits on `key`, its ``wait_resolved`` event (with the payload) is appended
        and its id returned. Otherwise the payload is kept until a run starts waiting on
        `key` (`take_delivery` finds it). Delivering a key again keeps the first payload
        and returns None; so does delivering to a wait already resolved. A wait that
        started with a delivery already kept, and was not resolved (its process stopped
        in between), is resolved by the next delivery, with the first payload.

        Args:
            key: the correlation key.
            payload: JSON data (it is stored, and read back, as JSON).
            now: the current time, Unix seconds.

        Returns:
            The id of the run woken, or None.

        Raises:
            UsageError: the payload cannot be serialised to JSON.
        """
        ...

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, payload)`` if a payload was delivered for `key` and not yet used.

        The delivery is used up when the wait on `key` is resolved, not by this call, so a
        crash between taking it and resolving the wait does not lose it.

        Returns:
            ``(True, payload)``, or ``(False, None)`` when nothing is kept for `key`.
        """
        ...

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append `resolution` only if its run's wait on the key is still open (atomically).

        Returns:
            False when the wait was already resolved, or another run (or none) waits on
            the key.
        """
        ...


@runtime_checkable
class Leases(Protocol):
    """Which process drives which run, durable timers, and batched expiry.

    A lease is held by an owner (a process's name) until ``lease_until``; at or after
    that instant (``lease_until <= now``) any owner may claim the run.
    """

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Take (or renew) the right to drive an unfinished run until ``now + lease_s``.

        Claiming a new run whose first events were appended with ``wait=False`` may make
        them durable with the claim (so starting a run costs one commit).

        Returns:
            False when another owner's lease is still live, or the run is finished or
            unknown.
        """
        ...

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim each of `run_ids` that `claim` would take, at once; return them in order."""
        ...

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
        """Claim up to `limit` runs that are ready to drive, oldest first.

        Ready: status ``running`` (not waiting at a gate or for an event, not finished),
        no timer or a timer due (``wake_at <= now``), and a lease that is free, expired,
        or `owner`'s own (so a restarted process with the same owner name gets its runs
        back: pass those already driven here in `exclude`).

        With `fair`, the ready runs (of `agents`, less `exclude`) are taken round-robin
        by tenant, so one tenant's backlog cannot starve the others: first the oldest
        ready run of each tenant, then the second-oldest of each, and so on; within a
        round, older runs first (ties in the order the runs were started). The runs a
        tenant already has in flight (a live lease held by another owner, or by `owner`
        on a run in `exclude`) count as its first turns: a tenant with two runs being
        driven waits for every tenant with fewer, so a worker pulling one run at a time
        still shares its room.

        Args:
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.
            limit: most runs to claim. Default 100.
            agents: only runs of these agents (those this process can drive). Default: any.
            exclude: runs never to claim.
            fair: take the runs round-robin by tenant. Default False (oldest first).

        Returns:
            The ids claimed, in the order they were taken: oldest first, or round by
            round with `fair`.
        """
        ...

    async def renew_leases(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        run_ids: Collection[str] | None = None,
    ) -> int:
        """Extend the leases `owner` still holds on unfinished runs to ``now + lease_s``.

        It never claims: a run released meanwhile (paused at a gate) or taken over by
        another owner is left alone. The tenant holds `owner` made for the runs renewed
        (`TenantBudgets.reserve_tenant`) are extended with them.

        Args:
            owner: this process's name in leases.
            lease_s: the new lease length, seconds.
            now: the current time, Unix seconds.
            run_ids: only these runs. Default: every run `owner` holds.

        Returns:
            How many leases were renewed.
        """
        ...

    async def request_cancel(self, run_id: str, reason: str, *, now: float) -> bool:
        """Ask the process driving an unfinished run to cancel it (any process may ask).

        Kept on the run's index row, not in its log (only the lease holder appends to a
        running run): the holder reads it (`cancel_requests`, each tick; at once where the
        journal is a `WakeupSource`, which announces ``cancel_requested``) and ends the
        run ``cancelled``, journaling why. A later request replaces an earlier one.

        Returns:
            False when the run is finished or unknown.
        """
        ...

    async def cancel_requests(self, run_ids: Collection[str]) -> dict[str, str]:
        """The cancellations requested of the unfinished runs among `run_ids`: id -> reason."""
        ...

    async def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on a run (nothing happens if it holds none)."""
        ...

    async def set_wake(self, run_id: str, wake_at: float | None) -> bool:
        """Set (or clear, with None) a run's durable timer, read back by `due_runs`.

        A run with a timer not yet due is not ready (`claim_runs` leaves it);
        ``run_finished`` clears the timer.

        Returns:
            False when the run is unknown or finished.
        """
        ...

    async def due_runs(self, now: float, *, limit: int = 1000) -> list[str]:
        """Return unfinished runs whose timer is due (``wake_at <= now``), earliest first.

        Args:
            now: the current time, Unix seconds.
            limit: most ids to return. Default 1,000.
        """
        ...

    async def expire_gates(self, now: float, *, note: str = "") -> list[GateRecord]:
        """Decide every open gate whose ``expires_at`` is at or before `now` as ``expired``.

        Each gets a ``gate_decided`` event (``decision="expired"``, ``ts=now``, ``note``);
        a gate decided meanwhile by someone else is left alone.

        Args:
            now: the current time, Unix seconds.
            note: the decision's note, for example ``"no decision within 48 h"``.

        Returns:
            The gates this call expired, with their stored decisions.
        """
        ...

    async def expire_waits(self, now: float) -> list[WaitResolved]:
        """Resolve every open wait whose ``expires_at`` is at or before `now`, timed out.

        Returns:
            The stored ``wait_resolved`` events (``timed_out=True``, ``ts=now``).
        """
        ...


@runtime_checkable
class Blobs(Protocol):
    """Bytes stored once by content: full tool results, referenced from events by digest."""

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content (storing the same bytes again is a no-op).

        Returns:
            Their SHA-256 digest, lowercase hex.
        """
        ...

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest, or None."""
        ...


@runtime_checkable
class Upkeep(Protocol):
    """What outlives runs: saved circuit-breaker states, and retention."""

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the saved circuit-breaker states (tool -> JSON data).

        Raises:
            UsageError: a state cannot be serialised to JSON.
        """
        ...

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the saved circuit-breaker states (empty if none were saved)."""
        ...

    async def prune(self, *, older_than_s: float, now: float) -> int:
        """Delete finished runs last updated before ``now - older_than_s``.

        Their events, gates and waits go with them; so may what only they used (blobs,
        early deliveries nobody waited for), when older than the cutoff, and tenants'
        budget days (`TenantBudgets`) before the cutoff's day. Unfinished runs are never
        pruned.

        Returns:
            The number of runs deleted.
        """
        ...

    async def vacuum(self) -> None:
        """Give the space freed by `prune` back (a no-op where there is nothing to give)."""
        ...


@runtime_checkable
class Workers(Protocol):
    """The registry of the worker processes sharing the journal (``corral workers``).

    Each runtime that polls (`Durability.poll_interval_s`) records a heartbeat on every
    tick and retires itself when it stops cleanly; a worker that died stops being seen.
    """

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Record `worker` as alive at ``worker.seen_at`` (one row per owner, replaced).

        Workers not seen for a week are deleted on the way.
        """
        ...

    async def workers(self, *, now: float, within_s: float) -> list[WorkerInfo]:
        """Return the workers seen within `within_s` seconds of `now`, oldest first.

        Each with `WorkerInfo.leases`: the unfinished runs it holds a live lease on.
        """
        ...

    async def retire(self, owner: str) -> None:
        """Remove a worker from the registry (it stopped cleanly)."""
        ...


def tenant_day(now: float) -> str:
    """The UTC day of `now`, as tenant budgets count days (``2026-12-02``)."""
    return dt.datetime.fromtimestamp(now, tz=dt.UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class TenantAsk:
    """What one model call asks of its tenant's daily budget (see `TenantBudgets`).

    The input is reserved whole; the output may be granted fewer tokens than asked, down
    to `min_output`, as the budget leaves room.
    """

    tenant: str
    run_id: str
    """The run the call is for: its hold lives as long as `owner`'s lease on it."""
    owner: str
    """The process asking (its name in leases)."""
    input_tokens: int
    """The call's estimated input tokens, margin included."""
    input_cost_usd: float
    max_output: int
    """The most output tokens wanted (what the run's own budget allows)."""
    min_output: int
    """Fewer output tokens than this left: refused."""
    output_price: float
    """USD per output token (0 when unpriced)."""
    daily_tokens: int | None
    """The tenant's limit of tokens per UTC day; None: none."""
    daily_cost_usd: float | None
    """The tenant's limit of USD per UTC day; None: none."""


@dataclass(frozen=True, slots=True)
class TenantHold:
    """A reservation against a tenant's day, held until settled or expired."""

    hold_id: str
    tenant: str
    day: str
    """The UTC day it counts against (`tenant_day` of when it was made)."""
    tokens: int
    """Tokens reserved: the input and the output granted."""
    cost_usd: float
    max_output: int
    """Output tokens granted (at most `TenantAsk.max_output`)."""


@dataclass(frozen=True, slots=True)
class TenantSpend:
    """A tenant's day: what it spent and what is reserved, across every process."""

    tenant: str
    day: str
    tokens: int
    """Tokens spent: settled calls, plus holds that expired unsettled (counted whole)."""
    cost_usd: float
    reserved: int
    """Tokens held by calls in flight."""
    reserved_cost_usd: float

    @classmethod
    def from_rows(
        cls,
        tenant: str,
        day: str,
        settled: Sequence[Any] | None,
        expired: Sequence[Any],
        live: Sequence[Any],
    ) -> TenantSpend:
        """The day from a backend's rows, each (tokens, USD).

        Args:
            tenant: the tenant.
            day: its UTC day.
            settled: what settled calls spent (None: no row for the day yet).
            expired: the sum of the holds that expired unsettled (counted as spent).
            live: the sum of the holds still live.
        """
        tokens, cost = (int(settled[0]), float(settled[1])) if settled else (0, 0.0)
        return cls(
            tenant,
            day,
            tokens + int(expired[0]),
            cost + float(expired[1]),
            int(live[0]),
            float(live[1]),
        )


@dataclass(frozen=True, slots=True)
class TenantDenied:
    """A reservation refused: the day's budget has no room for the call."""

    reason: str
    spend: TenantSpend
    """The day as the refusal saw it."""


def tenant_grant(ask: TenantAsk, spend: TenantSpend) -> tuple[int, int, float] | TenantDenied:
    """The rule every backend applies, inside the transaction that holds the tenant's day.

    The output granted is what every one of the tenant's limits leaves after what is
    spent, what is reserved and the call's own input, capped by ``ask.max_output``.

    Returns:
        ``(output granted, tokens held, USD held)``, or a `TenantDenied` when fewer than
        ``ask.min_output`` output tokens are left.
    """
    room: list[tuple[float, str]] = [(float(ask.max_output), "")]
    if ask.daily_tokens is not None:
        room.append(
            (
                ask.daily_tokens - spend.tokens - spend.reserved - ask.input_tokens,
                "tokens",
            )
        )
    if ask.daily_cost_usd is not None:
        left = ask.daily_cost_usd - spend.cost_usd - spend.reserved_cost_usd - ask.input_cost_usd
        if ask.output_price > 0:
            room.append((left / ask.output_price, "cost"))
        elif left < 0:
            room.append((0.0, "cost"))
    tightest, which = min(room)
    granted = min(ask.max_output, math.floor(tightest))
    if granted >= ask.min_output:
        return granted, ask.input_tokens + granted, ask.input_cost_usd + granted * ask.output_price
    if which == "tokens":
        reason = (
            f"tenant {ask.tenant!r} daily token budget reached: {spend.tokens:,} used and "
            f"{spend.reserved:,} reserved of {ask.daily_tokens:,} today"
        )
    else:
        reason = (
            f"tenant {ask.tenant!r} daily cost budget reached: ${spend.cost_usd:.4f} used and "
            f"${spend.reserved_cost_usd:.4f} reserved of ${ask.daily_cost_usd:.4f} today"
        )
    return TenantDenied(reason, spend)


@runtime_checkable
class TenantBudgets(Protocol):
    """Tenants' daily budgets, reserved in the journal so they hold across processes.

    Each model call of a tenant with a daily limit reserves its tokens and cost with
    `reserve_tenant` (in one transaction that holds the tenant's day, so two processes
    never both take the last of it) and gives the hold back with `settle_tenant` once
    the call's usage is known. A hold lives as long as the asking owner's lease on its
    run (`Leases.renew_leases` extends both): when that process dies, its holds expire
    with its leases and count as spent in full (what the calls in flight used is
    unknown, and counting less could let the tenant overspend).
    """

    async def reserve_tenant(
        self, ask: TenantAsk, *, now: float, until: float
    ) -> TenantHold | TenantDenied:
        """Hold what `ask` needs of today's budget (`tenant_grant`), until `until`.

        Holds of the tenant's day that expired unsettled are first counted as spent.
        """
        ...

    async def settle_tenant(self, hold: TenantHold, *, tokens: int, cost_usd: float) -> bool:
        """Give `hold` back and count what the call used on its day.

        Returns:
            False when the hold had expired and was already counted whole (nothing
            changes then).
        """
        ...

    async def tenant_spend(self, tenant: str, *, now: float) -> TenantSpend:
        """Return the tenant's day (the UTC day of `now`), across every process."""
        ...


class Journal(EventLog, RunIndex, Leases, Blobs, Upkeep, Workers, TenantBudgets, Protocol):
    """Where run events go: the whole contract, and the journal's lifecycle.

    Use it as ``async with journal: ...`` (entering opens what needs opening, leaving
    closes), or call ``close`` when done.
    """

    async def close(self) -> None:
        """Flush and release resources; appending after close is a `UsageError`.

        Closing twice is a no-op.
        """
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


WAKEUP_KINDS = (
    "gate_decided",
    "wait_resolved",
    "run_finished",
    "run_queued",
    "cancel_requested",
    "resync",
)
"""What a `WakeupSource` reports: a gate decided (or expired), a wait resolved (a delivery,
a timeout), a run finished (a cancellation too), a run queued with no worker holding it
(a submission beyond the submitter's `Durability.max_active_runs`, a lease released while
the run was ready), a cancellation asked of the run's holder (`Leases.request_cancel`), or
``resync``: notifications may have been lost (the listening connection was down), so look
at everything."""


@runtime_checkable
class WakeupSource(Protocol):
    """Optional: a journal that tells every process at once when a run may go on.

    Not part of `Journal`: a runtime checks for it (``isinstance``) and, when its journal
    has it, wakes runs as soon as any process decides, delivers, cancels or queues them,
    instead of at its next poll. Polling stays the fallback for a notification lost.
    The PostgreSQL store has it (LISTEN/NOTIFY); SQLite and memory journals do not.
    """

    async def watch_wakeups(self, wake: Callable[[str, str], Awaitable[None]]) -> None:
        """Call ``await wake(kind, run_id)`` for each change any process commits.

        `kind` is one of `WAKEUP_KINDS` (``run_id`` is empty for ``resync``). Changes this
        process made are reported too. A lost connection is retried (and followed by a
        ``resync``); it runs until cancelled, or until the journal is closed. Each call
        is awaited before the next, so keep `wake` short.
        """
        ...
