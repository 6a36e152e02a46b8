"""The SQLite store: the journal in one file, with group commit and indexes kept in step.

Layout. ``events`` is the append-only log, stored in insertion order with
``PRIMARY KEY (run_id, seq)`` as its index (a commit of many concurrent runs then writes a
few pages, not one per run); triggers refuse any UPDATE, and any DELETE except of
finished runs by retention. ``runs``, ``gates``, ``waits``, ``blobs`` and ``blob_refs``
are indexes, updated by the same transaction that writes the events they derive from, so
they never disagree with the log. ``breakers`` keeps circuit-breaker states.

Group commit. Events appended in the same event-loop tick go out in one transaction: the
first appender that must wait becomes the leader, yields once so that the others of the
tick join its batch, writes the whole batch with ``executemany`` in one ``BEGIN
IMMEDIATE ... COMMIT`` on the connection's thread, and wakes everyone in it; events
appended meanwhile form the next batch, whose first waiter leads next. A batch that fails
fails every appender in it (a constraint broken by one run's events fails only that run:
the other runs are written run by run). Per-run sequence numbers stay gap-free: a run
whose events were lost forgets its counter, fails its later queued events too, and starts
again after the last committed event.

Durability. ``synchronous=NORMAL`` (the default) in WAL mode never corrupts the file and
keeps every committed transaction across a crash of the process; a power loss or an
operating-system crash may lose the last transactions before the next WAL checkpoint.
This is what makes group commit cheap: no fsync per commit. Pass ``synchronous="FULL"``
to survive power loss too, at the cost of an fsync per transaction (still one per batch,
not per event).

Several processes. Each process may open the same file. Writes take SQLite's write lock
with ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout_s`` for it. Gate decisions, wait
resolutions, deliveries and expiries are conditional appends that check and write in one
such transaction, so two processes cannot both decide a gate. Runs are driven by one
process at a time through leases (`claim`, `claim_runs`, `renew_leases`, `release`); a
process keeps the sequence counters of the runs it drives in memory, so two processes
appending to one run at once is an error that the primary key catches.

Failures. A full disk (or `max_size_bytes` reached), an I/O error, or the write lock held
by another connection for longer than ``busy_timeout_s`` fails the batch's appenders with a
`JournalError` naming the database, the runs and seqs lost, and SQLite's error
(``SQLITE_FULL``, ``SQLITE_IOERR_*``, ``SQLITE_BUSY``); other writes and reads raise it
too. SQLite rolls the transaction back, so what was committed before stays intact, and
the store keeps working: the next append that finds room succeeds.

Threads. Every database call is one job on an aiosqlite connection's own thread: a whole
batch, or a whole conditional append, is one hop, not one per statement; except that a
small batch under ``synchronous=NORMAL`` is committed on the event loop itself, when the
writer's thread is idle and no other connection holds the write lock (its commit costs
less than the hop; see ``_sqlite_batch.py``). Writes go to one writer connection and are
shielded from cancellation (the caller learns the outcome); reads go to a second,
read-only connection, so they do not queue behind commits.

Files. This module holds `SqliteStore`: the contract's methods over the index tables.
``_sqlite_batch.py`` holds its base class (the connections, group commit, conditional
appends), ``_sqlite_sql.py`` the connection set-up and the SQL of appending,
``_sqlite_queries.py`` the queries and conditional writes behind each method,
``_migrations.py`` the schema, and ``_codec.py`` (shared by every backend) the event codec.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from typing import Any, Literal

from .._clock import Clock, SystemClock
from ..errors import ConfigError, CorralError
from ..events import GateDecided, WaitResolved, WaitStarted
from . import _sqlite_queries as queries
from ._coalesce import Coalescer, Job
from ._codec import decode_as, from_json, to_json
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
    tenant_day,
)
from ._migrations import SCHEMA_VERSION
from ._rows import RunRow, StoreStatistics, WaitRow
from ._sqlite_batch import SqliteEngine

__all__ = ["SCHEMA_VERSION", "SqliteJournal", "SqliteStore"]

_RUN_COLUMNS = (
    "run_id, agent, tenant, task, status, outcome, owner, lease_until, wake_at, "
    "created_at, updated_at, last_seq"
)
_UNFINISHED = (
    "SELECT run_id FROM runs WHERE status IN ('running', 'waiting') ORDER BY created_at, rowid"
)


class SqliteStore(SqliteEngine):
    """A durable journal in one SQLite file: implements `Journal`, every part of it.

    Use it as ``async with SqliteStore(path) as store: ...``, or call `open` and `close`.
    `open_store` builds one from a URL. Beyond the `Journal` contract it offers
    `get_run`, `get_wait` (the raw index rows), `size_bytes` and `statistics`. One object
    serves one event loop.

    Args:
        path: the database file (created, with its directory, if missing), or
            ``:memory:`` for a private in-memory database (one connection; for tests).
        synchronous: ``NORMAL`` (default: no fsync per commit; a power loss may lose the
            last commits, a process crash loses nothing committed) or ``FULL`` (an fsync
            per transaction: survives power loss).
        busy_timeout_s: how long a write waits for SQLite's write lock, held by another
            connection or process, before failing with a `JournalError` that says so
            (never a silent hang). Default 10 s; the URL option ``busy_timeout``.
        max_size_bytes: refuse to grow the database file beyond this size (SQLite's
            ``max_page_count``; never below the file's current size): a write that needs
            more fails with a `JournalError` (``SQLITE_FULL``), as on a full disk, and
            nothing committed is lost. The write-ahead log comes on top of it. Default: no
            limit but the disk's; the URL option ``max_size_mb``.
        max_pending_events: most events appended and not yet committed; an append beyond
            it waits until a batch commits (back-pressure). Default 10,000.
        max_pending_bytes: the same bound on their JSON size. Default 16 MiB.
        clock: where `put_blob` and `save_breakers` read the time. Default: the system
            clock.

    Raises:
        ConfigError: an invalid option.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_s: float = 10.0,
        max_size_bytes: int | None = None,
        max_pending_events: int = 10_000,
        max_pending_bytes: int = 16 * 2**20,
        clock: Clock | None = None,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if busy_timeout_s < 0:
            raise ConfigError(f"busy_timeout_s must be >= 0, got {busy_timeout_s}")
        if max_size_bytes is not None and max_size_bytes < 1:
            raise ConfigError(f"max_size_bytes must be positive, got {max_size_bytes}")
        if max_pending_events < 1 or max_pending_bytes < 1:
            raise ConfigError("max_pending_events and max_pending_bytes must be positive")
        self.path = os.fspath(path)
        self.where = self.path
        self._tenant_jobs = Coalescer(self._run_tenant_jobs)
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self.max_size_bytes = max_size_bytes
        self._busy_ms = int(busy_timeout_s * 1000)
        self._max_events = max_pending_events
        self._max_bytes = max_pending_bytes
        self._clock = clock or SystemClock()
        self._writer = None
        self._reader = None
        self._closing = False
        self._reset()

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"<SqliteStore {self.path!r} {state}>"

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
        return await self._read(
            queries.select_runs,
            queries.RunFilter(
                status=status,
                agents=None if agents is None else list(agents),
                updated_since=updated_since,
                tenant=tenant,
                outcome=outcome,
                created_after=created_after,
                created_before=created_before,
                after=after,
            ),
            limit,
        )

    async def run(self, run_id: str) -> RunInfo | None:
        """Return one run as the index knows it (status, lease, timer), or None."""
        return await self._read(queries.select_run, run_id, run=run_id)

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs started and not finished, oldest first."""
        return await self._read(queries.fetch_column, _UNFINISHED, ())

    async def get_run(self, run_id: str) -> RunRow | None:
        """Return a run's row in the ``runs`` index (status, lease, timer, last seq), or None."""
        rows = await self._read(
            queries.fetch_all,
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?",
            (run_id,),
            run=run_id,
        )
        if not rows:
            return None
        return RunRow.model_validate(dict(zip(_RUN_COLUMNS.split(", "), rows[0], strict=True)))

    # -- gates ----------------------------------------------------------------------------------

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates with `status` (None for all), of one run or of all, oldest first."""
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("g.status = ?")
            args.append(status)
        if run_id is not None:
            where.append("g.run_id = ?")
            args.append(run_id)
        text = queries.GATE_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        text += " ORDER BY g.created_at, g.rowid"
        rows = await self._read(queries.fetch_all, text, tuple(args), run=run_id)
        return [queries.gate_record(self.path, *row) for row in rows]

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate with its decision, if any, or None."""
        rows = await self._read(
            queries.fetch_all, queries.GATE_SELECT + " WHERE g.gate_id = ?", (gate_id,)
        )
        return queries.gate_record(self.path, *rows[0]) if rows else None

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append `decision` only if its gate is still open, atomically across processes.

        An approval or rejection is refused when ``decision.ts`` is at or after the gate's
        ``expires_at``, in the same transaction: a decision racing the deadline cannot win
        after it, whether or not anyone has expired the gate yet.

        Returns:
            True if this call decided the gate; False if it was already decided (by this
            or another process) or does not exist.

        Raises:
            UsageError: the gate belongs to another run than ``decision.run_id``.
            GateExpired: the decision is not an expiry and came at or after the deadline.
        """
        return await self._conditional([decision.run_id], queries.decide_gate, decision)

    async def expire_gates(self, now: float, *, note: str = "") -> list[GateRecord]:
        """Decide every open gate whose ``expires_at`` is at or before `now` as ``expired``.

        Each gets a ``gate_decided`` event (``decision="expired"``, ``ts=now``) in one
        transaction; a gate decided meanwhile by someone else is left alone.

        Args:
            now: the current time, Unix seconds.
            note: the decision's note, for example ``"no decision within 48 h"``.

        Returns:
            The gates this call expired, with their decisions.
        """
        due = await self._read(
            queries.fetch_all,
            "SELECT gate_id, run_id FROM gates WHERE status = 'open' AND expires_at <= ? "
            "ORDER BY created_at, rowid",
            (now,),
        )
        if not due:
            return []
        return await self._conditional(
            {run_id for _, run_id in due}, queries.expire_gates, [g for g, _ in due], now, note
        )

    # -- waits ----------------------------------------------------------------------------------

    async def waits(self) -> list[WaitRecord]:
        """Return the waits not yet resolved, oldest first."""
        rows = await self._read(
            queries.fetch_all,
            "SELECT w.run_id, w.started_seq, e.payload FROM waits w "
            "JOIN events e ON e.run_id = w.run_id AND e.seq = w.started_seq "
            "WHERE w.run_id IS NOT NULL AND w.resolved_seq IS NULL "
            "ORDER BY w.created_at, w.rowid",
            (),
        )
        return [
            WaitRecord(run_id, decode_as(self.path, run_id, seq, payload, WaitStarted))
            for run_id, seq, payload in rows
        ]

    async def get_wait(self, key: str) -> WaitRow | None:
        """Return the ``waits`` row of a correlation key (wait, delivery, or both), or None."""
        rows = await self._read(
            queries.fetch_all,
            "SELECT key, run_id, created_at, expires_at, payload, delivered_at, resolved_at "
            "FROM waits WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        key, run_id, created, expires, payload, delivered_at, resolved_at = rows[0]
        return WaitRow(
            key=key,
            run_id=run_id,
            created_at=created,
            expires_at=expires,
            delivered=delivered_at is not None,
            payload=from_json(payload) if payload is not None else None,
            delivered_at=delivered_at,
            resolved_at=resolved_at,
        )

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Deliver an external event (a webhook) by correlation key, exactly once.

        If a run waits on `key`, its ``wait_resolved`` event (with the payload) is appended
        in the same transaction and its id returned. Otherwise the payload is kept until a
        run starts waiting on `key` (`take_delivery` finds it). Delivering a key again
        keeps the first payload and returns None; so does delivering to a wait already
        resolved. A wait that started with a delivery already kept, and was not resolved
        (its process stopped in between), is resolved by the next delivery with the
        first payload.

        Args:
            key: the correlation key.
            payload: JSON-serialisable data.
            now: the current time, Unix seconds.

        Returns:
            The id of the run woken, or None.

        Raises:
            UsageError: the payload cannot be serialised to JSON.
        """
        data = to_json(payload, what=f"the payload delivered to {key!r}")
        for _ in range(5):  # a wait may start or end between the look-up and the write
            expected = await self._read(queries.open_wait_run, key)
            outcome, run_id = await self._conditional(
                [expected] if expected else [], queries.deliver, key, data, now, expected
            )
            if outcome != "retry":
                return run_id
        raise CorralError(f"could not deliver {key!r}: its wait kept changing")

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, payload)`` if a payload was delivered for `key` and not yet used.

        The delivery is used up when the wait on `key` is resolved (by `resolve_wait` or
        an appended ``wait_resolved``), not by this call, so a crash between taking it and
        resolving the wait does not lose it.
        """
        rows = await self._read(
            queries.fetch_all,
            "SELECT payload FROM waits WHERE key = ? AND delivered_at IS NOT NULL "
            "AND resolved_seq IS NULL",
            (key,),
        )
        return (True, from_json(rows[0][0])) if rows else (False, None)

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append `resolution` only if its run's wait on the key is still open (atomically).

        Returns:
            False when the wait was already resolved, or another run waits on the key.
        """
        return await self._conditional([resolution.run_id], queries.resolve_wait, resolution)

    async def expire_waits(self, now: float) -> list[WaitResolved]:
        """Resolve every open wait whose ``expires_at`` is at or before `now`, timed out.

        Returns:
            The ``wait_resolved`` events appended (one transaction).
        """
        due = await self._read(
            queries.fetch_all,
            "SELECT key, run_id FROM waits WHERE run_id IS NOT NULL AND resolved_seq IS NULL "
            "AND expires_at <= ? ORDER BY created_at, rowid",
            (now,),
        )
        if not due:
            return []
        return await self._conditional(
            {run_id for _, run_id in due}, queries.expire_waits, [k for k, _ in due], now
        )

    # -- leases and timers ----------------------------------------------------------------------

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Take (or renew) the right to drive an unfinished run until ``now + lease_s``.

        A fresh claim (the run was not `owner`'s) forgets the run's cached counter, so the
        next append numbers after events another process wrote meanwhile.

        Args:
            run_id: the run.
            owner: this process's name in leases.
            lease_s: how long the lease lasts without renewal, seconds.
            now: the current time, Unix seconds.

        Returns:
            False when another owner's lease is still live (``lease_until > now``) or the
            run is finished or unknown.
        """
        pending = self._pending
        if run_id in pending.started and run_id not in self._fences:
            # A new run whose first events are still queued: no other process can see it,
            # so the claim goes into the same transaction as its insert (one commit).
            pending.ops.append((run_id, queries.SET_OWNER, (owner, now + lease_s, run_id)))
            pending.wait(run_id)
            await self._wait_for(pending, run_id)
            self._held[run_id] = (owner, 1)  # a new run's first lease
            return True
        if self._uncommitted(run_id):
            await self._flush()
        claimed, fresh, epoch = await self._write(
            queries.claim, run_id, owner, now + lease_s, now, self._held
        )
        self._claimed([(run_id, fresh, epoch)] if claimed else [], owner)
        return claimed

    def _claimed(self, claims: list[tuple[str, bool, int]], owner: str) -> None:
        """Hold the leases just claimed; forget the counters of runs taken over."""
        held = self._held
        for run_id, fresh, epoch in claims:
            held[run_id] = (owner, epoch)
            if fresh:
                self._forget_counter(run_id)  # another process may have appended meanwhile

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
        """Claim up to `limit` runs that are ready to drive, oldest first, in one transaction.

        Ready: status ``running`` (not waiting at a gate or for an event), no timer or a
        timer due (``wake_at <= now``), and a lease that is free, expired, or `owner`'s
        own (so a restarted process with the same owner name gets its runs back; pass
        those you are already driving in `exclude`).

        Args:
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.
            limit: most runs to claim. Default 100.
            agents: only runs of these agents. Default: any.
            exclude: runs never to claim.
            fair: take them round-robin by tenant (each tenant's oldest ready run, then
                each one's second-oldest, ...). Default False.

        Returns:
            The ids claimed, in the order taken (oldest first, or round by round).
        """
        if self._pending.rows or self._inflight is not None:
            await self._flush()
        claimed: list[tuple[str, bool, int]] = await self._write(
            queries.claim_runs,
            owner,
            now + lease_s,
            now,
            limit,
            None if agents is None else list(agents),
            list(exclude),
            self._held,
            fair,
        )
        self._claimed(claimed, owner)
        return [run_id for run_id, _, _ in claimed]

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim each of `run_ids` that is free (as `claim` does), in one transaction.

        Args:
            run_ids: the runs to claim.
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.

        Returns:
            The ids claimed, in the order given.
        """
        if not run_ids:
            return []
        if self._pending.rows or self._inflight is not None:
            await self._flush()
        claimed: list[tuple[str, bool, int]] = await self._write(
            queries.claim_many, list(run_ids), owner, now + lease_s, now, self._held
        )
        self._claimed(claimed, owner)
        return [run_id for run_id, _, _ in claimed]

    async def renew_leases(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        run_ids: Collection[str] | None = None,
    ) -> int:
        """Extend every lease `owner` still holds on unfinished runs to ``now + lease_s``.

        One transaction for all of them: call it from a periodic tick instead of claiming
        each run again. It only extends a lease `owner` holds: a run released meanwhile
        (paused at a gate) or taken over by another process is left alone, never claimed.

        Args:
            owner: this process's name in leases.
            lease_s: the new lease length, seconds.
            now: the current time, Unix seconds.
            run_ids: only these runs (the ones this process is driving). Default: all.

        Returns:
            How many leases were renewed.
        """
        if run_ids is not None and not run_ids:
            return 0
        return await self._write(
            queries.renew_leases, owner, now + lease_s, None if run_ids is None else list(run_ids)
        )

    async def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on a run (nothing happens if it holds none).

        A ``run_finished`` event already clears the lease in its own transaction; there is
        no need to release a finished run. A lease this store claimed is released only if
        it is still that claim (same epoch): a stale process never frees the lease of the
        one that took its run over, even under the same owner name. The run's counter is
        forgotten too (another process may append next; the next append here reads it
        from the file), so a run waiting at a gate holds no memory in this process.
        """
        if self._uncommitted(run_id):
            await self._flush()  # its queued events first, still under (and fenced by) the lease
        held = self._held.get(run_id)
        if held is not None and held[0] == owner:  # only the lease this store claimed
            await self._write(
                queries.execute_count,
                "UPDATE runs SET owner = NULL, lease_until = NULL "
                "WHERE run_id = ? AND owner = ? AND lease_epoch = ?",
                (run_id, owner, held[1]),
            )
        else:
            await self._write(
                queries.execute_count,
                "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
                (run_id, owner),
            )
        self._held.pop(run_id, None)
        self._forget_counter(run_id)

    async def request_cancel(self, run_id: str, reason: str, *, now: float) -> bool:
        """Ask the process driving an unfinished run to cancel it; False if finished/unknown."""
        changed = await self._write(
            queries.execute_count,
            "UPDATE runs SET cancel_request = ? WHERE run_id = ? AND status != 'finished'",
            (reason, run_id),
        )
        return changed > 0

    async def cancel_requests(self, run_ids: Collection[str]) -> dict[str, str]:
        """The cancellations requested of the unfinished runs among `run_ids`."""
        if not run_ids:
            return {}
        rows = await self._job(
            self._open_reader(),
            queries.fetch_all,
            "SELECT run_id, cancel_request FROM runs WHERE cancel_request IS NOT NULL "
            "AND status != 'finished' AND run_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(run_ids)),),
        )
        return {run_id: reason for run_id, reason in rows}

    async def set_wake(self, run_id: str, wake_at: float | None) -> bool:
        """Set (or clear, with None) a run's durable timer, read back by `due_runs`.

        Args:
            run_id: the run.
            wake_at: when to drive the run again, Unix seconds; None clears the timer.
                ``run_finished`` clears it too.

        Returns:
            False when the run is unknown or finished.
        """
        if self._uncommitted(run_id):
            await self._flush()
        changed = await self._write(
            queries.execute_count,
            "UPDATE runs SET wake_at = ? WHERE run_id = ? AND status != 'finished'",
            (wake_at, run_id),
        )
        return changed == 1

    async def due_runs(self, now: float, *, limit: int = 1000) -> list[str]:
        """Return unfinished runs whose timer is due (``wake_at <= now``), earliest first.

        Args:
            now: the current time, Unix seconds.
            limit: most ids to return. Default 1,000.
        """
        return await self._read(
            queries.fetch_column,
            "SELECT run_id FROM runs WHERE wake_at IS NOT NULL AND wake_at <= ? "
            "AND status != 'finished' ORDER BY wake_at, rowid LIMIT ?",
            (now, limit),
        )

    # -- blobs ----------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content (storing the same bytes again is a no-op).

        Returns:
            Their SHA-256 digest, lowercase hex.
        """
        return await self._write(queries.put_blob, bytes(data), self._clock.now())

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest, or None.

        Raises:
            CorralError: the stored bytes no longer match their digest.
        """
        found: bytes | None = await self._job(self._open_reader(), queries.get_blob, digest)
        if found is not None and hashlib.sha256(found).hexdigest() != digest:
            raise CorralError(f"journal {self.path}: blob {digest} is corrupt")
        return found

    # -- workers --------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Record `worker` as alive at ``worker.seen_at``; forget workers unseen for a week."""
        row = (
            worker.owner,
            worker.host,
            worker.pid,
            worker.started_at,
            worker.seen_at,
            worker.max_active_runs,
            worker.version,
        )
        await self._write(queries.heartbeat, row, worker.seen_at - WORKER_FORGET_S)

    async def workers(self, *, now: float, within_s: float) -> list[WorkerInfo]:
        """Return the workers seen within `within_s` of `now`, oldest first, with leases."""
        rows = await self._read(queries.fetch_all, queries.WORKERS, (now, now - within_s))
        return [WorkerInfo(*row) for row in rows]

    async def retire(self, owner: str) -> None:
        """Remove a worker from the registry."""
        await self._write(queries.execute_count, "DELETE FROM workers WHERE owner = ?", (owner,))

    # -- tenant budgets -------------------------------------------------------------------------

    async def reserve_tenant(
        self, ask: TenantAsk, *, now: float, until: float
    ) -> TenantHold | TenantDenied:
        """Hold what `ask` needs of the tenant's day, in one write transaction.

        The file's write lock keeps every other process off the day meanwhile (see
        `TenantBudgets.reserve_tenant`). The holds and settlements asked in the same tick
        share that transaction (one commit for all the runs stepping together).
        """
        key = (ask.tenant, tenant_day(now), 1)
        hold: TenantHold | TenantDenied = await self._tenant_jobs.call(
            key, queries.reserve_tenant, ask, now, until
        )
        return hold

    async def settle_tenant(self, hold: TenantHold, *, tokens: int, cost_usd: float) -> bool:
        """Give `hold` back and count what the call used (False: it had expired)."""
        key = (hold.tenant, hold.day, 0)  # before the reservations of the same day
        settled: bool = await self._tenant_jobs.call(
            key, queries.settle_tenant, hold, tokens, cost_usd
        )
        return settled

    async def _run_tenant_jobs(self, jobs: list[Job]) -> list[Any]:
        return await self._write(queries.tenant_jobs, jobs)

    async def tenant_spend(self, tenant: str, *, now: float) -> TenantSpend:
        """Return the tenant's day (the UTC day of `now`), across every process."""
        return await self._job(self._open_reader(), queries.tenant_spend, tenant, now)

    # -- breakers, retention, maintenance -------------------------------------------------------

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the saved circuit-breaker states (tool -> JSON-serialisable data).

        Raises:
            UsageError: a state cannot be serialised to JSON.
        """
        now = self._clock.now()
        rows = [
            (tool, to_json(dict(state), what=f"the state of breaker {tool!r}"), now)
            for tool, state in states.items()
        ]
        await self._write(queries.replace_breakers, rows)

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the saved circuit-breaker states (empty if none were saved)."""
        rows = await self._job(
            self._open_reader(),
            queries.fetch_all,
            "SELECT tool, state FROM breakers ORDER BY tool",
            (),
        )
        return {tool: from_json(state) for tool, state in rows}

    async def prune(self, *, older_than_s: float, now: float) -> int:
        """Delete finished runs last updated before ``now - older_than_s``.

        Their events, gates, waits and blob references go with them, as do blobs no run
        uses any more and early deliveries nobody waited for, when older than the cutoff.
        Runs are deleted 500 per transaction, so other writers are not held up long.
        Unfinished runs are never pruned. Call `vacuum` to give the space back to the
        file system.

        Args:
            older_than_s: the age, in seconds since the run's last event, beyond which a
                finished run is deleted.
            now: the current time, Unix seconds.

        Returns:
            The number of runs deleted.
        """
        self._open_writer()
        await self._flush()
        cutoff = now - older_than_s
        total = 0
        while True:
            deleted = await self._write(queries.prune_some, cutoff, 500)
            total += deleted
            if deleted < 500:
                return total

    async def vacuum(self) -> None:
        """Rebuild the file without free pages and truncate the write-ahead log."""
        self._open_writer()
        await self._flush()
        await self._write(queries.vacuum)

    async def size_bytes(self) -> int:
        """Return the bytes the database uses (pages in use times the page size)."""
        return await self._read(queries.size_bytes)

    def statistics(self) -> StoreStatistics:
        """Return counters: transactions, events written, batch sizes, queue, memory."""
        return StoreStatistics(
            transactions=self._transactions,
            events=self._events,
            largest_batch=self._largest,
            conditional_writes=self._conditional_count,
            failed_batches=self._failed,
            pending_events=len(self._pending.rows),
            pending_bytes=self._pending.nbytes,
            cached_runs=len(self._seq),
        )


SqliteJournal = SqliteStore
"""The SQLite store under its first name."""
