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
batch, or a whole conditional append, is one hop, not one per statement. Writes go to one
writer connection and are shielded from cancellation (the caller learns the outcome);
reads go to a second, read-only connection, so they do not queue behind commits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

import aiosqlite
import anyio
import anyio.lowlevel
import pydantic_core
from pydantic import BaseModel, ValidationError

from .._clock import Clock, SystemClock
from .._loop import require_asyncio
from ..errors import ConfigError, CorralError, JournalError, UsageError
from ..events import (
    Event,
    EventAdapter,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    WaitResolved,
    WaitStarted,
)
from ._journal import GateRecord, RunInfo, RunStatus, WaitRecord, check_not_expired
from ._migrations import SCHEMA_VERSION, migrate
from ._rows import RunRow, StoreStatistics, WaitRow

__all__ = ["SCHEMA_VERSION", "SqliteJournal", "SqliteStore"]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)

_Row = tuple[str, int, str, float, str]
"""An ``events`` row: run_id, seq, kind, ts, payload (JSON)."""
_Op = tuple[str, tuple[Any, ...]]
"""An index statement and its arguments."""

_INSERT_EVENT = "INSERT INTO events (run_id, seq, kind, ts, payload) VALUES (?, ?, ?, ?, ?)"
_TOUCH_RUN = "UPDATE runs SET last_seq = ?, updated_at = MAX(updated_at, ?) WHERE run_id = ?"
_SET_OWNER = "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ?"
_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?"
_STATUS = """
    UPDATE runs SET updated_at = MAX(updated_at, ?), status = CASE
        WHEN EXISTS (SELECT 1 FROM gates WHERE gates.run_id = runs.run_id AND gates.status = 'open')
          OR EXISTS (SELECT 1 FROM waits WHERE waits.run_id = runs.run_id
                                           AND waits.resolved_seq IS NULL)
        THEN 'waiting' ELSE 'running' END
    WHERE run_id = ? AND status != 'finished'
"""
_RUN_COLUMNS = (
    "run_id, agent, tenant, task, status, outcome, owner, lease_until, wake_at, "
    "created_at, updated_at, last_seq"
)
_GATE_SELECT = """
    SELECT g.run_id, g.opened_seq, o.payload, g.decided_seq, d.payload FROM gates g
    JOIN events o ON o.run_id = g.run_id AND o.seq = g.opened_seq
    LEFT JOIN events d ON d.run_id = g.run_id AND d.seq = g.decided_seq
"""

_INDEXED = frozenset(
    {
        "run_started",
        "gate_opened",
        "gate_decided",
        "wait_started",
        "wait_resolved",
        "run_finished",
        "tool_call_finished",
    }
)
"""Kinds whose append also updates an index table beyond ``runs.last_seq``."""
_RELEASES = frozenset({"gate_opened", "wait_started", "run_finished"})
"""Kinds after which a run pauses or ends: its counter leaves memory once they commit."""


class SqliteStore:
    """A durable journal in one SQLite file; implements `Journal`, plus leases and timers.

    Use it as ``async with SqliteStore(path) as store: ...``, or call `open` and `close`.
    `open_store` builds one from a URL. Beyond the `Journal` protocol it offers
    `get_run`, `expire_gates`, `expire_waits`, `get_wait`, `claim_runs`,
    `renew_leases`, `set_wake`, `due_runs`, `prune`, `vacuum`, `size_bytes`, `flush`
    and `statistics`. One object serves one event loop.

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
        clock: where `put_blob` reads the time. Default: the system clock.

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
        """The database file, or ``:memory:``."""
        self.synchronous = synchronous
        """``NORMAL`` or ``FULL``."""
        self.busy_timeout_s = busy_timeout_s
        """How long a write waits for another connection's write lock, seconds."""
        self.max_size_bytes = max_size_bytes
        """The most bytes the database file may grow to, or None."""
        self._busy_ms = int(busy_timeout_s * 1000)
        self._max_events = max_pending_events
        self._max_bytes = max_pending_bytes
        self._clock: Clock = clock or SystemClock()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._closing = False
        self._reset()

    def _reset(self) -> None:
        self._seq: dict[str, int] = {}
        self._fences: dict[str, anyio.Event] = {}
        self._fenced = 0
        """Conditional appends finished so far (a counter read before the file is stale if
        this moved while reading it)."""
        self._poisoned: dict[str, _Failure] = {}
        self._pending = _Batch()
        self._inflight: _Batch | None = None
        self._leading = False
        self._transactions = 0
        self._events = 0
        self._largest = 0
        self._conditional_count = 0
        self._failed = 0

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"<SqliteStore {self.path!r} {state}>"

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file: WAL mode, pragmas, and pending schema migrations (one transaction).

        Raises:
            ConfigError: the file cannot be opened, is not a SQLite database, belongs to
                another application, or was written by a newer Corral; or the program
                does not run on asyncio (aiosqlite is asyncio-only).
            UsageError: the store is already open.
        """
        require_asyncio("SqliteJournal")
        if self._writer is not None:
            raise UsageError(f"the store {self.path} is already open")
        memory = self.path == ":memory:"
        opened: list[aiosqlite.Connection] = []
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            writer = await aiosqlite.connect(self.path, isolation_level=None)
            opened.append(writer)
            _check_aiosqlite(writer)
            await _call(
                writer,
                _setup_writer,
                self.path,
                memory,
                self.synchronous,
                self._busy_ms,
                self.max_size_bytes,
            )
            reader = writer
            if not memory:
                reader = await aiosqlite.connect(self.path, isolation_level=None)
                opened.append(reader)
                await _call(reader, _setup_reader, self._busy_ms)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for conn in reversed(opened):
                    await conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise ConfigError(f"cannot open the store {self.path}: {exc}") from exc
            raise
        self._reset()
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Commit what is pending, then close both connections. Closing twice is a no-op.

        Raises:
            JournalError: events appended with ``wait=False`` could not be written and no
                later append of their run was told (so they are reported here).
        """
        writer, reader = self._writer, self._reader
        if writer is None or reader is None:
            return
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                await self._flush()
        finally:
            self._writer = self._reader = None
            with anyio.CancelScope(shield=True):
                with suppress(sqlite3.Error):
                    await _call(writer, _optimize)
                if reader is not writer:
                    await reader.close()
                await writer.close()
            self._closing = False
            unreported = list(self._poisoned.values())
            self._reset()
        if unreported:
            raise unreported[0].error(
                f" ({len(unreported)} run(s) had events appended with wait=False lost)"
            )

    def _open_writer(self) -> aiosqlite.Connection:
        if self._writer is None or self._closing:
            raise UsageError(f"the store {self.path} is not open")
        return self._writer

    def _open_reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise UsageError(f"the store {self.path} is not open")
        return self._reader

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(connection, *args)` on the writer's thread; the caller waits for the outcome."""
        db = self._open_writer()
        with anyio.CancelScope(shield=True):
            result = await self._job(db, fn, *args)
        return result

    async def _job(self, db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(connection, *args)` on `db`'s thread; a SQLite failure is a `JournalError`."""
        try:
            return await _call(db, fn, *args)
        except sqlite3.Error as exc:
            text, name = self._describe(exc)
            message = f"journal {self.path}: {text}"
            raise JournalError(message, path=self.path, sqlite_error=name) from exc

    def _describe(self, exc: BaseException) -> tuple[str, str]:
        """What went wrong, in words, and SQLite's name for it (empty if not SQLite's)."""
        if not isinstance(exc, sqlite3.Error):
            return f"{type(exc).__name__}: {exc}", ""
        name = str(getattr(exc, "sqlite_errorname", "") or "")
        text = f"{exc} ({name})" if name else f"{type(exc).__name__}: {exc}"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            text += (
                ": another connection or process held the database's write lock for longer "
                f"than the busy timeout ({self.busy_timeout_s:g} s)"
            )
        elif name.startswith("SQLITE_FULL") and self.max_size_bytes is not None:
            text += f": the disk is full or the file reached max_size_bytes={self.max_size_bytes}"
        return text, name

    async def _read(self, fn: Callable[..., _T], *args: Any, run: str | None = None) -> _T:
        """Run `fn(connection, *args)` on the reader's thread, after committing what is pending.

        With `run`, only that run's pending events need committing first (read your own
        writes, without forcing out other runs' queued events).
        """
        db = self._open_reader()
        if run is not None:
            behind = self._uncommitted(run)
        else:
            behind = bool(self._pending.rows) or self._inflight is not None
        if behind:
            await self._flush()
        return await self._job(db, fn, *args)

    # -- appending ------------------------------------------------------------------------------

    async def append(self, event: Event, *, wait: bool = True) -> None:
        """Append one event, assigning ``event.seq`` (1, 2, ... per run, no gaps).

        The event is numbered and serialised at once, so later changes to the object do
        not reach the journal. A cancelled waiting append may still be committed: once
        numbered, an event is never withdrawn (that would leave a gap).

        Args:
            event: the event; its ``seq`` is overwritten.
            wait: True (default): return once the event is committed, together with every
                event appended in the same tick (group commit). False: return at once; the
                event goes with the next batch, in order. If that batch fails, the next
                append of the same run raises (or `close` does).

        Raises:
            JournalError: the event could not be written (the message names the database,
                the run, the seqs and SQLite's error: a full disk, an I/O error, the write
                lock held past `busy_timeout_s`), or an earlier ``wait=False`` event of
                this run could not be. Nothing of the run committed before is lost, and
                the next append of the run numbers after its last committed event.
            UsageError: the store is not open.
        """
        run_id = event.run_id
        while True:
            self._open_writer()
            if self._poisoned:
                failure = self._poisoned.pop(run_id, None)
                if failure is not None:
                    raise failure.error()
            pending = self._pending
            if len(pending.rows) >= self._max_events or pending.nbytes >= self._max_bytes:
                await self._flush()  # back-pressure: the queue is full
                continue
            if run_id in self._fences or run_id not in self._seq:
                await self._prepare(event)
                continue
            break
        seq = self._seq[run_id] + 1
        event.seq = seq
        payload = event.model_dump_json()  # as EventAdapter.dump_json, twice as fast
        self._seq[run_id] = seq
        pending.add(event, payload, wait)
        if wait:
            await self._wait_for(pending, run_id)

    async def _prepare(self, event: Event) -> None:
        """Wait out a conditional append on the run, or load the run's counter."""
        run_id = event.run_id
        fence = self._fences.get(run_id)
        if fence is not None:
            await fence.wait()
            return
        if isinstance(event, RunStarted):
            self._seq[run_id] = 0  # a new run; a reused id fails on the primary key
            return
        fenced = self._fenced
        last = await self._job(self._open_reader(), _max_seq, run_id)
        # A conditional append that ran while we read may have written after `last`: then
        # the count is stale, and the next pass reads again.
        if fenced == self._fenced and run_id not in self._fences and run_id not in self._seq:
            self._seq[run_id] = last

    async def _wait_for(self, batch: _Batch, run_id: str) -> None:
        try:
            while not batch.done:
                if self._leading:
                    await batch.wake.wait()
                else:
                    await self._lead()
        finally:
            batch.waiters -= 1
        failure = batch.errors.get(run_id)
        if failure is not None:
            raise failure.error()

    async def flush(self) -> None:
        """Commit every event appended so far (including ``wait=False`` ones).

        Raises:
            UsageError: the store is not open.
        """
        self._open_writer()
        await self._flush()

    async def _flush(self) -> None:
        target = self._pending if self._pending.rows else self._inflight
        if target is None:
            return
        target.waiters += 1
        try:
            while not target.done:
                if self._leading:
                    await target.wake.wait()
                else:
                    await self._lead()
        finally:
            target.waiters -= 1

    async def _lead(self) -> None:
        """Commit the pending batch as its leader, then hand over to the next one's waiters."""
        self._leading = True
        if self._pending.wake.is_set():
            self._pending.wake = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # the others of this tick join the batch
                batch, self._pending = self._pending, _Batch()
                try:
                    if batch.rows:  # (empty when a failure removed all its events)
                        self._inflight = batch
                        await self._commit(batch)
                finally:
                    self._inflight = None
                    batch.done = True
                    batch.wake.set()
        finally:
            self._leading = False
            if self._pending.waiters:
                self._pending.wake.set()  # one of them leads the next batch

    async def _commit(self, batch: _Batch) -> None:
        writer = self._writer
        touches = [(seq, ts, run_id) for run_id, (seq, ts) in batch.touch.items()]
        try:
            if writer is None:
                raise UsageError(f"the store {self.path} was closed")
            failures = await _call(writer, _commit_batch, batch.rows, batch.ops, touches)
        except Exception as exc:
            failures = dict.fromkeys(batch.touch, exc)
        if failures:
            self._failed += 1
            self._fail_runs(batch, failures)
        written = len(batch.rows) - sum(1 for row in batch.rows if row[0] in failures)
        if written:
            self._transactions += 1
        self._events += written
        self._largest = max(self._largest, written)
        for run_id, seq in batch.releases:
            if self._seq.get(run_id) == seq:  # nothing numbered after it: forget the run
                del self._seq[run_id]

    def _fail_runs(self, batch: _Batch, failures: dict[str, Exception]) -> None:
        """Tell the appenders of runs whose events were lost, and keep the counters exact."""
        for run_id, exc in failures.items():
            seqs = [row[1] for row in batch.rows if row[0] == run_id]
            lost = f"events {min(seqs)}..{max(seqs)} of run {run_id!r}"
            text, name = self._describe(exc)
            message = f"journal {self.path}: {lost} were not written: {text}"
            failure = _Failure(message, exc, self.path, run_id, name)
            batch.errors[run_id] = failure
            told = run_id in batch.waited
            later, later_told = self._pending.remove_run(run_id)
            if later:  # numbered after the lost ones: writing them would leave a gap
                self._pending.errors[run_id] = _Failure(
                    f"journal {self.path}: events {min(later)}..{max(later)} of run {run_id!r} "
                    f"were dropped, because {lost} were not written: {text}",
                    exc,
                    self.path,
                    run_id,
                    name,
                )
                told = told or later_told
            self._seq.pop(run_id, None)  # reload from the file at the next append
            if not told:
                self._poisoned[run_id] = failure

    # -- conditional appends --------------------------------------------------------------------

    async def _conditional(self, run_ids: Collection[str], fn: Callable[..., _T], *args: Any) -> _T:
        """Run a check-then-append transaction for `run_ids`, with their appends held back.

        Appends to those runs in this process wait (the fence) until it is done, and their
        queued events are committed first, so the transaction numbers its events after
        them, and nothing can be numbered in between.
        """
        runs = set(run_ids)
        while True:
            busy = next((self._fences[r] for r in runs if r in self._fences), None)
            if busy is None:
                break
            await busy.wait()
        fence = anyio.Event()
        for run_id in runs:
            self._fences[run_id] = fence
        try:
            await self._flush()
            result = await self._write(fn, self.path, *args)
            self._conditional_count += 1
            return result
        finally:
            self._fenced += 1
            for run_id in runs:
                del self._fences[run_id]
                self._forget_counter(run_id)  # the transaction numbered from the file
            fence.set()

    def _forget_counter(self, run_id: str) -> None:
        """Drop a run's cached seq counter, unless events of it are still queued here.

        The next append reads it from the file (a fenced append waits, then reads it).
        """
        if not self._uncommitted(run_id):
            self._seq.pop(run_id, None)

    def _uncommitted(self, run_id: str) -> bool:
        inflight = self._inflight
        return run_id in self._pending.touch or (inflight is not None and run_id in inflight.touch)

    # -- reading --------------------------------------------------------------------------------

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run.

        Raises:
            CorralError: a stored event does not validate (the message names run and seq).
        """
        rows = await self._read(_select_events, run_id, run=run_id)
        return [_decode(self.path, run_id, seq, payload) for seq, payload in rows]

    async def read_lazily(self, run_id: str) -> Sequence[Event]:
        """A run's events as `read` returns them, each decoded when first looked at.

        Raises:
            CorralError: on access, a stored event that does not validate.
        """
        rows = await self._read(_select_events, run_id, run=run_id)
        return _LazyEvents(self.path, run_id, rows)

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs started and not finished, oldest first."""
        return await self._read(_fetch_column, _UNFINISHED, ())

    async def runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunInfo]:
        """Return runs, newest first, optionally only those with `status`."""
        sql = (
            "SELECT run_id, agent, tenant, status, outcome, created_at, updated_at, task FROM runs"
        )
        args: tuple[Any, ...] = (limit,)
        if status is not None:
            sql += " WHERE status = ?"
            args = (status, limit)
        rows = await self._read(
            _fetch_all, sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", args
        )
        return [RunInfo(*row) for row in rows]

    async def get_run(self, run_id: str) -> RunRow | None:
        """Return a run's row in the ``runs`` index (status, lease, timer), or None."""
        rows = await self._read(
            _fetch_all, f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,), run=run_id
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
        sql = _GATE_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY g.created_at, g.rowid"
        rows = await self._read(_fetch_all, sql, tuple(args), run=run_id)
        return [_gate(self.path, *row) for row in rows]

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate with its decision, if any, or None."""
        rows = await self._read(_fetch_all, _GATE_SELECT + " WHERE g.gate_id = ?", (gate_id,))
        return _gate(self.path, *rows[0]) if rows else None

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
        return await self._conditional([decision.run_id], _decide_gate, decision)

    async def expire_gates(self, now: float, *, note: str = "") -> list[GateRecord]:
        """Decide every open gate whose ``expires_at`` has passed as ``expired``.

        Each gets a ``gate_decided`` event (``decision="expired"``, ``ts=now``) in one
        transaction; a gate decided meanwhile by someone else is left alone.

        Args:
            now: the current time, Unix seconds.
            note: the decision's note, for example ``"no decision within 48 h"``.

        Returns:
            The gates this call expired, with their decisions.
        """
        due = await self._read(
            _fetch_all,
            "SELECT gate_id, run_id FROM gates WHERE status = 'open' AND expires_at <= ?",
            (now,),
        )
        if not due:
            return []
        return await self._conditional(
            {run_id for _, run_id in due}, _expire_gates, [g for g, _ in due], now, note
        )

    # -- waits ----------------------------------------------------------------------------------

    async def waits(self) -> list[WaitRecord]:
        """Return the waits not yet resolved, oldest first."""
        rows = await self._read(
            _fetch_all,
            "SELECT w.run_id, w.started_seq, e.payload FROM waits w "
            "JOIN events e ON e.run_id = w.run_id AND e.seq = w.started_seq "
            "WHERE w.run_id IS NOT NULL AND w.resolved_seq IS NULL "
            "ORDER BY w.created_at, w.rowid",
            (),
        )
        return [
            WaitRecord(run_id, _decode_as(self.path, run_id, seq, payload, WaitStarted))
            for run_id, seq, payload in rows
        ]

    async def get_wait(self, key: str) -> WaitRow | None:
        """Return the ``waits`` row of a correlation key (wait, delivery, or both), or None."""
        rows = await self._read(
            _fetch_all,
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
            payload=json.loads(payload) if payload is not None else None,
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
        try:
            data = pydantic_core.to_json(payload).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise UsageError(f"the payload delivered to {key!r} is not JSON: {exc}") from exc
        for _ in range(5):  # a wait may start or end between the look-up and the write
            expected = await self._read(_open_wait_run, key)
            outcome, run_id = await self._conditional(
                [expected] if expected else [], _deliver, key, data, now, expected
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
            _fetch_all,
            "SELECT payload FROM waits WHERE key = ? AND delivered_at IS NOT NULL "
            "AND resolved_seq IS NULL",
            (key,),
        )
        return (True, json.loads(rows[0][0])) if rows else (False, None)

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append `resolution` only if its run's wait on the key is still open (atomically).

        Returns:
            False when the wait was already resolved, or another run waits on the key.
        """
        return await self._conditional([resolution.run_id], _resolve_wait, resolution)

    async def expire_waits(self, now: float) -> list[WaitResolved]:
        """Resolve every open wait whose ``expires_at`` has passed with ``timed_out=True``.

        Returns:
            The ``wait_resolved`` events appended (one transaction).
        """
        due = await self._read(
            _fetch_all,
            "SELECT key, run_id FROM waits WHERE run_id IS NOT NULL AND resolved_seq IS NULL "
            "AND expires_at <= ?",
            (now,),
        )
        if not due:
            return []
        return await self._conditional(
            {run_id for _, run_id in due}, _expire_waits, [k for k, _ in due], now
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
            pending.ops.append((run_id, _SET_OWNER, (owner, now + lease_s, run_id)))
            pending.wait(run_id)
            await self._wait_for(pending, run_id)
            return True
        if self._uncommitted(run_id):
            await self._flush()
        claimed, fresh = await self._write(_claim, run_id, owner, now + lease_s, now)
        if fresh:
            self._forget_counter(run_id)  # another process may have appended meanwhile
        return claimed

    async def claim_runs(
        self, owner: str, *, lease_s: float, now: float, limit: int = 100
    ) -> list[str]:
        """Claim up to `limit` runs that are ready to drive, oldest first.

        Ready: status ``running`` (not waiting at a gate or for an event), no timer or a
        timer due (``wake_at <= now``), and a lease that is free, expired, or `owner`'s
        own (so a restarted process with the same owner name gets its runs back; skip
        those you are already driving).

        Args:
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.
            limit: most runs to claim. Default 100.

        Returns:
            The ids claimed, oldest first.
        """
        if self._pending.rows or self._inflight is not None:
            await self._flush()
        claimed: list[tuple[str, bool]] = await self._write(
            _claim_runs, owner, now + lease_s, now, limit
        )
        for run_id, fresh in claimed:
            if fresh:
                self._forget_counter(run_id)
        return [run_id for run_id, _ in claimed]

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
        claimed: list[tuple[str, bool]] = await self._write(
            _claim_many, list(run_ids), owner, now + lease_s, now
        )
        for run_id, fresh in claimed:
            if fresh:
                self._forget_counter(run_id)
        return [run_id for run_id, _ in claimed]

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
        if run_ids is None:
            return await self._write(_execute_count, _RENEW, (now + lease_s, owner))
        rows = [(now + lease_s, run_id, owner) for run_id in run_ids]
        if not rows:
            return 0
        return await self._write(_execute_many_count, _RENEW_ONE, rows)

    async def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on a run (nothing happens if it holds none).

        A ``run_finished`` event already clears the lease in its own transaction; there is
        no need to release a finished run. The run's counter is forgotten too (another
        process may append next; the next append here reads it from the file), so a run
        waiting at a gate holds no memory in this process.
        """
        await self._write(
            _execute_count,
            "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
            (run_id, owner),
        )
        self._forget_counter(run_id)

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
            _execute_count,
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
            _fetch_column,
            "SELECT run_id FROM runs WHERE wake_at IS NOT NULL AND wake_at <= ? "
            "AND status != 'finished' ORDER BY wake_at LIMIT ?",
            (now, limit),
        )

    # -- breakers -------------------------------------------------------------------------------

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the saved circuit-breaker states (tool -> JSON-serialisable data).

        Raises:
            UsageError: a state cannot be serialised to JSON.
        """
        now = self._clock.now()
        try:
            rows = [(tool, _json(dict(state)), now) for tool, state in states.items()]
        except pydantic_core.PydanticSerializationError as exc:
            raise UsageError(f"breaker states must be JSON data: {exc}") from exc
        await self._write(_replace_breakers, rows)

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the saved circuit-breaker states (empty if none were saved)."""
        rows = await self._job(
            self._open_reader(), _fetch_all, "SELECT tool, state FROM breakers ORDER BY tool", ()
        )
        return {tool: json.loads(state) for tool, state in rows}

    # -- blobs ----------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content (storing the same bytes again is a no-op).

        Returns:
            Their SHA-256 digest, lowercase hex.
        """
        return await self._write(_put_blob, bytes(data), self._clock.now())

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest, or None.

        Raises:
            CorralError: the stored bytes no longer match their digest.
        """
        found: bytes | None = await self._job(self._open_reader(), _get_blob, digest)
        if found is not None and hashlib.sha256(found).hexdigest() != digest:
            raise CorralError(f"journal {self.path}: blob {digest} is corrupt")
        return found

    # -- retention and maintenance --------------------------------------------------------------

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
            deleted = await self._write(_prune_some, cutoff, 500)
            total += deleted
            if deleted < 500:
                return total

    async def vacuum(self) -> None:
        """Rebuild the file without free pages and truncate the write-ahead log."""
        self._open_writer()
        await self._flush()
        await self._write(_vacuum)

    async def size_bytes(self) -> int:
        """Return the bytes the database uses (pages in use times the page size)."""
        return await self._read(_size_bytes)

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


# -- batches -------------------------------------------------------------------------------------


class _Failure:
    """Why events of a run were not written; raised afresh to each appender concerned."""

    __slots__ = ("cause", "message", "path", "run_id", "sqlite_error")

    def __init__(
        self, message: str, cause: BaseException, path: str, run_id: str, sqlite_error: str
    ) -> None:
        self.message = message
        self.cause = cause
        self.path = path
        self.run_id = run_id
        self.sqlite_error = sqlite_error

    def error(self, suffix: str = "") -> JournalError:
        error = JournalError(
            self.message + suffix,
            path=self.path,
            sqlite_error=self.sqlite_error,
            run_id=self.run_id,
        )
        error.__cause__ = self.cause
        return error


class _Batch:
    """Events committed together, and the signal that they were."""

    __slots__ = (
        "done",
        "errors",
        "nbytes",
        "ops",
        "releases",
        "rows",
        "started",
        "touch",
        "waited",
        "waiters",
        "wake",
    )

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.ops: list[tuple[str, str, tuple[Any, ...]]] = []
        """Index statements, in event order: (run_id, sql, args)."""
        self.touch: dict[str, tuple[int, float]] = {}
        """Per run: its last seq and ts in this batch."""
        self.releases: list[tuple[str, int]] = []
        self.started: set[str] = set()
        """Runs whose ``run_started`` is in this batch: new runs, not yet visible to others."""
        self.waited: set[str] = set()
        """Runs with an appender waiting on this batch (they will be told of a failure)."""
        self.nbytes = 0
        self.waiters = 0
        self.wake = anyio.Event()
        """Set when the batch is committed, or when its waiters must elect a leader."""
        self.done = False
        self.errors: dict[str, _Failure] = {}

    def add(self, event: Event, payload: str, wait: bool) -> None:
        run_id, seq, ts, kind = event.run_id, event.seq, event.ts, event.kind
        self.rows.append((run_id, seq, kind, ts, payload))
        self.nbytes += len(payload)
        self.touch[run_id] = (seq, ts)
        if kind in _INDEXED:
            self.ops.extend((run_id, sql, args) for sql, args in _index_ops(event))
            if kind in _RELEASES:
                self.releases.append((run_id, seq))
            elif kind == "run_started":
                self.started.add(run_id)
        if wait:
            self.wait(run_id)

    def wait(self, run_id: str) -> None:
        """Count one more appender of `run_id` waiting for this batch."""
        self.waiters += 1
        self.waited.add(run_id)

    def remove_run(self, run_id: str) -> tuple[list[int], bool]:
        """Drop a run's events; return their seqs and whether one had a waiter."""
        if run_id not in self.touch:
            return [], False
        seqs = [row[1] for row in self.rows if row[0] == run_id]
        self.rows = [row for row in self.rows if row[0] != run_id]
        self.ops = [op for op in self.ops if op[0] != run_id]
        self.releases = [r for r in self.releases if r[0] != run_id]
        self.nbytes = sum(len(row[4]) for row in self.rows)
        del self.touch[run_id]
        self.started.discard(run_id)
        waited = run_id in self.waited
        self.waited.discard(run_id)
        return seqs, waited


def _index_ops(event: Event) -> list[_Op]:
    """The index updates an event implies, run in the same transaction as its insert."""
    if isinstance(event, RunStarted):
        return [
            (
                "INSERT INTO runs (run_id, agent, tenant, task, status, created_at, updated_at,"
                " last_seq) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    event.run_id,
                    event.agent,
                    event.tenant,
                    event.task,
                    event.ts,
                    event.ts,
                    event.seq,
                ),
            )
        ]
    if isinstance(event, GateOpened):
        return [
            (
                "INSERT INTO gates (gate_id, run_id, call_id, tool, arguments, reason, status,"
                " created_at, expires_at, opened_seq) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (
                    event.gate_id,
                    event.run_id,
                    event.call_id,
                    event.tool,
                    _json(event.arguments),
                    event.reason,
                    event.ts,
                    event.expires_at,
                    event.seq,
                ),
            ),
            (_STATUS, (event.ts, event.run_id)),
        ]
    if isinstance(event, GateDecided):
        return [
            (
                "UPDATE gates SET status = ?, decided_by = ?, note = ?, decided_arguments = ?,"
                " decided_at = ?, decided_seq = ? WHERE gate_id = ? AND status = 'open'",
                (
                    event.decision,
                    event.by,
                    event.note,
                    None if event.arguments is None else _json(event.arguments),
                    event.ts,
                    event.seq,
                    event.gate_id,
                ),
            ),
            (_STATUS, (event.ts, event.run_id)),
        ]
    if isinstance(event, WaitStarted):
        # A delivery that came first (run_id NULL) is kept for this wait; a resolved wait
        # on the key is replaced; another run's open wait makes a trigger refuse this one.
        return [
            (
                "INSERT INTO waits (key, run_id, created_at, expires_at, started_seq)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " payload = CASE WHEN waits.run_id IS NULL THEN waits.payload END,"
                " delivered_at = CASE WHEN waits.run_id IS NULL THEN waits.delivered_at END,"
                " run_id = excluded.run_id, created_at = excluded.created_at,"
                " expires_at = excluded.expires_at, started_seq = excluded.started_seq,"
                " resolved_seq = NULL, resolved_at = NULL",
                (event.key, event.run_id, event.ts, event.expires_at, event.seq),
            ),
            (_STATUS, (event.ts, event.run_id)),
        ]
    if isinstance(event, WaitResolved):
        return [
            (
                "UPDATE waits SET resolved_seq = ?, resolved_at = ?"
                " WHERE key = ? AND run_id = ? AND resolved_seq IS NULL",
                (event.seq, event.ts, event.key, event.run_id),
            ),
            (_STATUS, (event.ts, event.run_id)),
        ]
    if isinstance(event, RunFinished):
        return [
            (
                "UPDATE runs SET status = 'finished', outcome = ?, updated_at = MAX(updated_at, ?),"
                " owner = NULL, lease_until = NULL, wake_at = NULL WHERE run_id = ?",
                (event.outcome, event.ts, event.run_id),
            )
        ]
    if isinstance(event, ToolCallFinished) and event.result_blob is not None:
        return [
            (
                "INSERT OR IGNORE INTO blob_refs (digest, run_id) VALUES (?, ?)",
                (event.result_blob, event.run_id),
            )
        ]
    return []


def _json(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


# -- jobs run on a connection's thread -----------------------------------------------------------


async def _call(db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(sqlite3_connection, *args)` as one job on the aiosqlite connection's thread.

    aiosqlite spends a thread hop per call; a batch commit is several statements, so doing
    it in one hop is what makes small batches cheap. This relies on aiosqlite's
    ``Connection._execute`` and ``_conn`` (checked at open; present through 0.22).
    """
    execute = cast(Callable[..., Awaitable[_T]], db._execute)
    return await execute(fn, db._conn, *args)


def _check_aiosqlite(db: aiosqlite.Connection) -> None:
    if not callable(getattr(db, "_execute", None)) or not hasattr(db, "_conn"):
        raise ConfigError(
            f"aiosqlite {getattr(aiosqlite, '__version__', '?')} lacks Connection._execute; "
            "the SQLite store supports aiosqlite 0.20 to 0.22"
        )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (take the write lock now, waiting up to the busy timeout) ... COMMIT."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed statement or COMMIT (a full disk, an I/O error) may leave the transaction
        # open: roll it back, so the connection can take the next one, and keep the error.
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _setup_writer(
    conn: sqlite3.Connection,
    path: str,
    memory: bool,
    synchronous: str,
    busy_ms: int,
    max_size_bytes: int | None,
) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if not memory and mode.lower() != "wal":
        raise ConfigError(f"cannot use WAL mode for {path} (the file system gave {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    migrate(conn, path=path)
    conn.execute("PRAGMA foreign_keys = ON")
    if max_size_bytes is not None:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = max(max_size_bytes // page_size, 1)
        conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()


def _setup_reader(conn: sqlite3.Connection, busy_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    conn.execute("PRAGMA query_only = ON")


def _optimize(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA optimize")


_CHUNK = 256
"""Most rows one multi-row statement writes (5 columns: 1,280 parameters, far below
SQLite's limit of 32,766)."""


def _chunks(rows: Sequence[tuple[Any, ...]]) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Cut `rows` into runs of `_CHUNK` rows, then powers of two: few distinct statements."""
    i, n = 0, len(rows)
    while i < n:
        size = _CHUNK if n - i >= _CHUNK else 1 << ((n - i).bit_length() - 1)
        yield rows[i : i + size]
        i += size


@functools.cache
def _insert_events_sql(n: int) -> str:
    return "INSERT INTO events (run_id, seq, kind, ts, payload) VALUES " + ",".join(
        ["(?, ?, ?, ?, ?)"] * n
    )


_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
"""``UPDATE ... FROM`` (one statement for every run a batch touches) needs SQLite 3.33."""


@functools.cache
def _touch_runs_sql(n: int) -> str:
    return (
        "UPDATE runs SET last_seq = v.column1, updated_at = MAX(runs.updated_at, v.column2) "
        "FROM (VALUES " + ",".join(["(?, ?, ?)"] * n) + ") AS v WHERE runs.run_id = v.column3"
    )


def _write_many(
    conn: sqlite3.Connection, sql: Callable[[int], str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Write `rows` with multi-row statements.

    ``executemany`` steps once per row, and every step releases and retakes the GIL; while
    the event loop is busy each retake waits for it, so a commit's wall time grows with
    its rows. A few statements stepping once each cut it by about a third (100 concurrent
    runs, `benchmarks/bench_durable.py`).
    """
    for chunk in _chunks(rows):
        conn.execute(sql(len(chunk)), [value for row in chunk for value in row])


def _write_events(
    conn: sqlite3.Connection,
    rows: list[_Row],
    ops: list[tuple[str, str, tuple[Any, ...]]],
    touches: list[tuple[int, float, str]],
) -> None:
    with _transaction(conn):
        _write_many(conn, _insert_events_sql, rows)
        for _, sql, args in ops:
            conn.execute(sql, args)
        if _UPDATE_FROM:
            _write_many(conn, _touch_runs_sql, touches)
        else:
            conn.executemany(_TOUCH_RUN, touches)


def _commit_batch(
    conn: sqlite3.Connection,
    rows: list[_Row],
    ops: list[tuple[str, str, tuple[Any, ...]]],
    touches: list[tuple[int, float, str]],
) -> dict[str, Exception]:
    """Write a batch in one transaction; return the runs whose events could not be written.

    A constraint broken by one run's events (a reused run id, a duplicate gate id, a
    second writer on the run) must not fail the other runs, so after such a failure the
    batch is written again run by run. Any other error fails the whole batch.
    """
    try:
        _write_events(conn, rows, ops, touches)
        return {}
    except sqlite3.IntegrityError:
        pass
    by_run: dict[str, tuple[list[_Row], list[tuple[str, str, tuple[Any, ...]]]]] = {}
    for row in rows:
        by_run.setdefault(row[0], ([], []))[0].append(row)
    for op in ops:
        by_run[op[0]][1].append(op)
    failures: dict[str, Exception] = {}
    for run_id, (run_rows, run_ops) in by_run.items():
        try:
            _write_events(conn, run_rows, run_ops, [t for t in touches if t[2] == run_id])
        except sqlite3.IntegrityError as exc:
            failures[run_id] = exc
    return failures


def _max_seq(conn: sqlite3.Connection, run_id: str) -> int:
    return int(conn.execute(_MAX_SEQ, (run_id,)).fetchone()[0])


def _append_in_transaction(conn: sqlite3.Connection, event: Event) -> None:
    """Number `event` after the run's last committed event and write it with its indexes."""
    event.seq = _max_seq(conn, event.run_id) + 1
    conn.execute(
        _INSERT_EVENT,
        (event.run_id, event.seq, event.kind, event.ts, event.model_dump_json()),
    )
    for sql, args in _index_ops(event):
        conn.execute(sql, args)
    conn.execute(_TOUCH_RUN, (event.seq, event.ts, event.run_id))


def _load(conn: sqlite3.Connection, path: str, run_id: str, seq: int, cls: type[_M]) -> _M:
    row = conn.execute(
        "SELECT payload FROM events WHERE run_id = ? AND seq = ?", (run_id, seq)
    ).fetchone()
    if row is None:
        raise CorralError(f"journal {path}: event {seq} of run {run_id!r} is missing")
    return _decode_as(path, run_id, seq, row[0], cls)


def _decide_gate(conn: sqlite3.Connection, path: str, decision: GateDecided) -> bool:
    with _transaction(conn):
        row = conn.execute(
            "SELECT run_id, status, expires_at FROM gates WHERE gate_id = ?",
            (decision.gate_id,),
        ).fetchone()
        if row is None or row[1] != "open":
            return False
        if row[0] != decision.run_id:
            raise UsageError(
                f"gate {decision.gate_id!r} belongs to run {row[0]!r}, not {decision.run_id!r}"
            )
        check_not_expired(decision, float(row[2]))
        _append_in_transaction(conn, decision)
        return True


def _expire_gates(
    conn: sqlite3.Connection, path: str, gate_ids: list[str], now: float, note: str
) -> list[GateRecord]:
    expired: list[GateRecord] = []
    with _transaction(conn):
        for gate_id in gate_ids:
            row = conn.execute(
                "SELECT run_id, call_id, opened_seq FROM gates "
                "WHERE gate_id = ? AND status = 'open' AND expires_at <= ?",
                (gate_id, now),
            ).fetchone()
            if row is None:
                continue
            run_id, call_id, opened_seq = row
            decided = GateDecided(
                run_id=run_id,
                ts=now,
                gate_id=gate_id,
                call_id=call_id,
                decision="expired",
                note=note,
            )
            _append_in_transaction(conn, decided)
            opened = _load(conn, path, run_id, opened_seq, GateOpened)
            expired.append(GateRecord(run_id, opened, decided))
    return expired


def _open_wait_run(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute(
        "SELECT run_id FROM waits WHERE key = ? AND run_id IS NOT NULL AND resolved_seq IS NULL",
        (key,),
    ).fetchone()
    return None if row is None else str(row[0])


def _deliver(
    conn: sqlite3.Connection, path: str, key: str, data: str, now: float, expected: str | None
) -> tuple[str, str | None]:
    with _transaction(conn):
        row = conn.execute(
            "SELECT run_id, started_seq, payload, delivered_at, resolved_seq FROM waits "
            "WHERE key = ?",
            (key,),
        ).fetchone()
        open_run = row[0] if row is not None and row[0] is not None and row[4] is None else None
        if open_run != expected:
            return "retry", None  # not the run whose appends we held back
        if row is None:
            conn.execute(
                "INSERT INTO waits (key, run_id, created_at, payload, delivered_at) "
                "VALUES (?, NULL, ?, ?, ?)",
                (key, now, data, now),
            )
            return "kept", None
        if open_run is None:
            return "ignored", None  # a delivery is already kept, or the wait is resolved
        if row[3] is None:
            conn.execute(
                "UPDATE waits SET payload = ?, delivered_at = ? WHERE key = ?", (data, now, key)
            )
        else:
            data = row[2]  # delivered before the wait started: the first payload wins
        started = _load(conn, path, open_run, row[1], WaitStarted)
        resolved = WaitResolved(
            run_id=open_run,
            ts=now,
            call_id=started.call_id,
            tool=started.tool,
            key=key,
            payload=json.loads(data),
        )
        _append_in_transaction(conn, resolved)
        return "resolved", open_run


def _resolve_wait(conn: sqlite3.Connection, path: str, resolution: WaitResolved) -> bool:
    with _transaction(conn):
        if _open_wait_run(conn, resolution.key) != resolution.run_id:
            return False
        _append_in_transaction(conn, resolution)
        return True


def _expire_waits(
    conn: sqlite3.Connection, path: str, keys: list[str], now: float
) -> list[WaitResolved]:
    resolved: list[WaitResolved] = []
    with _transaction(conn):
        for key in keys:
            row = conn.execute(
                "SELECT run_id, started_seq FROM waits WHERE key = ? AND run_id IS NOT NULL "
                "AND resolved_seq IS NULL AND expires_at <= ?",
                (key, now),
            ).fetchone()
            if row is None:
                continue
            started = _load(conn, path, row[0], row[1], WaitStarted)
            event = WaitResolved(
                run_id=row[0],
                ts=now,
                call_id=started.call_id,
                tool=started.tool,
                key=key,
                timed_out=True,
            )
            _append_in_transaction(conn, event)
            resolved.append(event)
    return resolved


_LEASE_FREE = "(owner IS NULL OR owner = ? OR lease_until IS NULL OR lease_until <= ?)"


def _claim(
    conn: sqlite3.Connection, run_id: str, owner: str, until: float, now: float
) -> tuple[bool, bool]:
    """Return (claimed, fresh): fresh when the run was not already `owner`'s."""
    with _transaction(conn):
        row = conn.execute(
            f"SELECT owner FROM runs WHERE run_id = ? AND status != 'finished' AND {_LEASE_FREE}",
            (run_id, owner, now),
        ).fetchone()
        if row is None:
            return False, False
        conn.execute(_SET_OWNER, (owner, until, run_id))
        return True, row[0] != owner


def _claim_many(
    conn: sqlite3.Connection, run_ids: list[str], owner: str, until: float, now: float
) -> list[tuple[str, bool]]:
    claimed: list[tuple[str, bool]] = []
    with _transaction(conn):
        for run_id in run_ids:
            row = conn.execute(
                f"SELECT owner FROM runs WHERE run_id = ? AND status != 'finished' "
                f"AND {_LEASE_FREE}",
                (run_id, owner, now),
            ).fetchone()
            if row is not None:
                conn.execute(_SET_OWNER, (owner, until, run_id))
                claimed.append((run_id, row[0] != owner))
    return claimed


def _claim_runs(
    conn: sqlite3.Connection, owner: str, until: float, now: float, limit: int
) -> list[tuple[str, bool]]:
    with _transaction(conn):
        rows = conn.execute(
            f"SELECT run_id, owner FROM runs WHERE status = 'running' AND {_LEASE_FREE} "
            "AND (wake_at IS NULL OR wake_at <= ?) ORDER BY created_at, rowid LIMIT ?",
            (owner, now, now, limit),
        ).fetchall()
        conn.executemany(_SET_OWNER, [(owner, until, run_id) for run_id, _ in rows])
    return [(run_id, previous != owner) for run_id, previous in rows]


_RENEW = "UPDATE runs SET lease_until = ? WHERE owner = ? AND status != 'finished'"
_RENEW_ONE = (
    "UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ? AND status != 'finished'"
)
_UNFINISHED = (
    "SELECT run_id FROM runs WHERE status IN ('running', 'waiting') ORDER BY created_at, rowid"
)


def _execute_count(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    with _transaction(conn):
        return int(conn.execute(sql, args).rowcount)


def _execute_many_count(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    with _transaction(conn):
        return int(conn.executemany(sql, rows).rowcount)


def _fetch_all(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def _fetch_column(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return [row[0] for row in conn.execute(sql, args)]


def _select_events(conn: sqlite3.Connection, run_id: str) -> list[tuple[int, str]]:
    return conn.execute(
        "SELECT seq, payload FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()


def _put_blob(conn: sqlite3.Connection, data: bytes, now: float) -> str:
    digest = hashlib.sha256(data).hexdigest()  # here: hashing releases the GIL off the loop
    with _transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, data, created_at) VALUES (?, ?, ?, ?)",
            (digest, len(data), data, now),
        )
    return digest


def _replace_breakers(conn: sqlite3.Connection, rows: list[tuple[str, str, float]]) -> None:
    with _transaction(conn):
        conn.execute("DELETE FROM breakers")
        conn.executemany("INSERT INTO breakers (tool, state, updated_at) VALUES (?, ?, ?)", rows)


def _get_blob(conn: sqlite3.Connection, digest: str) -> bytes | None:
    row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else bytes(row[0])


def _prune_some(conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
    with _transaction(conn):
        ids = [
            (row[0],)
            for row in conn.execute(
                "SELECT run_id FROM runs WHERE status = 'finished' AND updated_at < ? LIMIT ?",
                (cutoff, limit),
            )
        ]
        for table in ("events", "gates", "waits", "blob_refs", "runs"):
            conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
        if len(ids) < limit:  # the last round: what no run uses any more
            conn.execute(
                "DELETE FROM blobs WHERE created_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM blob_refs WHERE blob_refs.digest = blobs.digest)",
                (cutoff,),
            )
            conn.execute("DELETE FROM waits WHERE run_id IS NULL AND delivered_at < ?", (cutoff,))
    return len(ids)


def _vacuum(conn: sqlite3.Connection) -> None:
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _size_bytes(conn: sqlite3.Connection) -> int:
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return (pages - free) * size


# -- decoding ------------------------------------------------------------------------------------


class _LazyEvents(Sequence[Event]):
    """A run's stored events, decoded one by one on first access, then kept."""

    __slots__ = ("_decoded", "_path", "_rows", "_run_id")

    def __init__(self, path: str, run_id: str, rows: list[tuple[int, str]]) -> None:
        self._path = path
        self._run_id = run_id
        self._rows = rows
        self._decoded: list[Event | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self._rows)))]
        if index < 0:
            index += len(self._rows)
        if not 0 <= index < len(self._rows):
            raise IndexError("event index out of range")
        return self._at(index)

    def _at(self, i: int) -> Event:
        event = self._decoded[i]
        if event is None:
            seq, payload = self._rows[i]
            event = self._decoded[i] = _decode(self._path, self._run_id, seq, payload)
        return event

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} events of run {self._run_id!r}>"


def _decode(path: str, run_id: str, seq: int, payload: str) -> Event:
    """Validate one stored event; a bad row is an error naming the run and the seq."""
    try:
        event: Event = EventAdapter.validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else None
        where = ".".join(str(part) for part in first["loc"]) if first else ""
        reason = first["msg"] if first else str(exc)
        raise CorralError(
            f"journal {path}: event {seq} of run {run_id!r} is not a valid event "
            f"({where or 'payload'}: {reason})"
        ) from exc
    if event.run_id != run_id or event.seq != seq:
        raise CorralError(
            f"journal {path}: event {seq} of run {run_id!r} is stored as "
            f"event {event.seq} of run {event.run_id!r}"
        )
    return event


def _decode_as(path: str, run_id: str, seq: int, payload: str, cls: type[_M]) -> _M:
    event = _decode(path, run_id, seq, payload)
    if not isinstance(event, cls):
        raise CorralError(
            f"journal {path}: event {seq} of run {run_id!r} is a {event.kind}, not a {cls.__name__}"
        )
    return event


def _gate(
    path: str,
    run_id: str,
    opened_seq: int,
    opened: str,
    decided_seq: int | None,
    decided: str | None,
) -> GateRecord:
    return GateRecord(
        run_id,
        _decode_as(path, run_id, opened_seq, opened, GateOpened),
        None
        if decided_seq is None or decided is None
        else _decode_as(path, run_id, decided_seq, decided, GateDecided),
    )
