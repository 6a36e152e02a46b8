"""The SQLite store's write path: connections, group commit, and conditional appends.

`SqliteEngine` is the base of `corral.store.SqliteStore`. It owns the two connections
(one writer, one read-only reader), opens and closes them, numbers appended events, and
commits them in batches: events appended in the same event-loop tick go out in one
transaction (the first appender that must wait leads the batch; see the store's module
docstring). Conditional appends (gate decisions, wait resolutions, deliveries, expiries)
hold back the appends of their runs with a fence while their transaction runs, so nothing
can be numbered in between. `Batch` is the queue; `Failure` (in ``_failure``) its error report.

This is the hot path: `SqliteEngine.append` does as little as it can on the event loop
(number, copy, encode, queue); everything else is one job on the writer's thread, except
the commit of a small batch under ``synchronous=NORMAL``, done on the event loop itself.

Why the small commits run on the loop. With each step durable, one run alone waits for a
commit per step, and the hop to aiosqlite's thread and back (a queue, a thread wake-up,
``call_soon_threadsafe``) costs more than the commit: in WAL mode with ``NORMAL`` a commit
writes to the WAL without an fsync, a few tens of microseconds for a handful of events.
So a batch of at most `_INLINE_ROWS` events and `_INLINE_BYTES` bytes is written by the
event-loop thread on the writer's own sqlite3 connection, when no job of the writer's
thread is queued or running (one connection is never used by two threads at once). It
never blocks the loop on someone else's lock: the writer's busy timeout is 0 between
jobs, so when another connection or process holds the write lock, ``BEGIN IMMEDIATE``
fails at once and the batch goes to the thread, where jobs wait up to ``busy_timeout_s``
as before. Automatic WAL checkpoints (which fsync) are off on the writer; the leader runs
a ``PASSIVE`` checkpoint on the thread once about `_CHECKPOINT_BYTES` were written since
the last. ``FULL`` keeps every commit on the thread (its fsync must not block the loop).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import anyio
import anyio.lowlevel

from .._clock import Clock
from .._loop import require_asyncio
from ..errors import ConfigError, JournalError, UsageError
from ..events import Event, RunStarted
from . import _sqlite_sql as sql
from ._codec import LazyEvents, decode, encode, with_seq
from ._failure import Failure, LeaseTaken

__all__ = ["Batch", "SqliteEngine"]

_T = TypeVar("_T")

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
_INLINE_ROWS = 64
"""Largest batch (events) committed on the event loop; larger ones go to the thread."""
_INLINE_BYTES = 64 * 1024
"""Largest batch (payload bytes) committed on the event loop."""
_CHECKPOINT_BYTES = 2 * 1024 * 1024
"""Payload bytes committed on the loop after which the leader checkpoints the WAL (its
pages, with indexes, are about twice that: SQLite's own default is 1,000 pages, 4 MB)."""


class Batch:
    """Events committed together, and the signal that they were."""

    __slots__ = (
        "done",
        "errors",
        "finished",
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
        self.rows: list[sql.Row] = []
        self.ops: list[sql.Op] = []
        """Index statements, in event order."""
        self.touch: dict[str, tuple[int, float]] = {}
        """Per run: its last seq and ts in this batch."""
        self.releases: list[tuple[str, int]] = []
        self.started: set[str] = set()
        """Runs whose ``run_started`` is in this batch: new runs, not yet visible to others."""
        self.finished: set[str] = set()
        """Runs whose ``run_finished`` is in this batch."""
        self.waited: set[str] = set()
        """Runs with an appender waiting on this batch (they will be told of a failure)."""
        self.nbytes = 0
        self.waiters = 0
        self.wake = anyio.Event()
        """Set when the batch is committed, or when its waiters must elect a leader."""
        self.done = False
        self.errors: dict[str, Failure] = {}

    def add(self, event: Event, run_id: str, seq: int, payload: str, wait: bool) -> None:
        """Queue a stored event (of `run_id`, numbered `seq`) and its JSON text."""
        ts, kind = event.ts, event.kind
        self.rows.append((run_id, seq, kind, ts, payload))
        self.nbytes += len(payload)
        self.touch[run_id] = (seq, ts)
        if kind in _INDEXED:
            self.ops.extend((run_id, text, args) for text, args in sql.index_ops(event))
            if kind in _RELEASES:
                self.releases.append((run_id, seq))
                if kind == "run_finished":
                    self.finished.add(run_id)
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
        self.finished.discard(run_id)
        waited = run_id in self.waited
        self.waited.discard(run_id)
        return seqs, waited


class SqliteEngine:
    """The connections and the write path of `SqliteStore` (its base class; see there).

    You should never need to use this class directly.
    """

    path: str
    """The database file, or ``:memory:``."""
    synchronous: str
    """``NORMAL`` or ``FULL``."""
    busy_timeout_s: float
    """How long a write waits for another connection's write lock, seconds."""
    max_size_bytes: int | None
    """The most bytes the database file may grow to, or None."""
    _busy_ms: int
    _max_events: int
    _max_bytes: int
    _clock: Clock
    _writer: aiosqlite.Connection | None
    _reader: aiosqlite.Connection | None
    _closing: bool

    def _reset(self) -> None:
        self._seq: dict[str, int] = {}
        self._held: dict[str, tuple[str, int]] = {}
        """Leases this store claimed and still holds: run id -> (owner, epoch). Its writes
        to those runs are fenced: refused once another claim advanced the epoch."""
        self._fences: dict[str, anyio.Event] = {}
        self._fenced = 0
        """Conditional appends finished so far (a counter read before the file is stale if
        this moved while reading it)."""
        self._poisoned: dict[str, Failure] = {}
        self._pending = Batch()
        self._inflight: Batch | None = None
        self._leading = False
        self._transactions = 0
        self._events = 0
        self._largest = 0
        self._conditional_count = 0
        self._failed = 0
        self._jobs = 0
        """Jobs queued or running on the writer's thread (the loop may not use it then)."""
        self._inline = False
        """Small batches are committed on the event loop (``NORMAL``, a file)."""
        self._unchecked = 0
        """Payload bytes committed on the loop since the last WAL checkpoint."""

    # -- lifecycle ------------------------------------------------------------------------------

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
            # check_same_thread=False: small commits run on the loop's thread (see above),
            # never while a job runs on the connection's own.
            writer = await aiosqlite.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            opened.append(writer)
            sql.check_aiosqlite(writer)
            await sql.call(
                writer,
                sql.setup_writer,
                self.path,
                memory,
                self.synchronous,
                self._busy_ms,
                self.max_size_bytes,
            )
            inline = self.synchronous == "NORMAL"
            if inline:
                await sql.call(writer, sql.setup_inline)
            reader = writer
            if not memory:
                reader = await aiosqlite.connect(self.path, isolation_level=None)
                opened.append(reader)
                await sql.call(reader, sql.setup_reader, self._busy_ms)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for conn in reversed(opened):
                    await conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise ConfigError(f"cannot open the store {self.path}: {exc}") from exc
            raise
        self._reset()
        self._inline = inline
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
                    await sql.call(writer, sql.optimize)
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
            try:
                result = await self._writer_call(db, fn, *args)
            except sqlite3.Error as exc:
                raise self._journal_error(exc) from exc
        return result

    async def _writer_call(self, db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn` on the writer's thread: counted, waiting for the lock up to the timeout.

        While it is counted, the loop keeps off the connection.
        """
        self._jobs += 1
        try:
            if self._inline:
                return await sql.call(db, sql.waiting, self._busy_ms, fn, *args)
            return await sql.call(db, fn, *args)
        finally:
            self._jobs -= 1

    async def _job(self, db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(connection, *args)` on `db`'s thread; a SQLite failure is a `JournalError`."""
        try:
            return await sql.call(db, fn, *args)
        except sqlite3.Error as exc:
            raise self._journal_error(exc) from exc

    def _journal_error(self, exc: sqlite3.Error) -> JournalError:
        text, name = self._describe(exc)
        return JournalError(f"journal {self.path}: {text}", path=self.path, sqlite_error=name)

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

    # -- the log --------------------------------------------------------------------------------

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        """Append one event; return the stored copy, numbered 1, 2, ... per run, no gaps.

        The copy is numbered and serialised at once; `event` itself is not changed. A
        cancelled waiting append may still be committed: once numbered, an event is never
        withdrawn (that would leave a gap).

        Args:
            event: the event; its ``seq`` is ignored.
            wait: True (default): return once the event is committed, together with every
                event appended in the same tick (group commit). False: return at once; the
                event goes with the next batch, in order. If that batch fails, the next
                append of the same run raises (or `close` does).

        Returns:
            The stored event: ``event.model_copy(update={"seq": n})``.

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
        stored = with_seq(event, seq)
        payload = encode(stored)
        self._seq[run_id] = seq
        pending.add(stored, run_id, seq, payload, wait)
        if wait:
            await self._wait_for(pending, run_id)
        return stored

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
        last = await self._job(self._open_reader(), sql.max_seq, run_id)
        # A conditional append that ran while we read may have written after `last`: then
        # the count is stale, and the next pass reads again.
        if fenced == self._fenced and run_id not in self._fences and run_id not in self._seq:
            self._seq[run_id] = last

    async def _wait_for(self, batch: Batch, run_id: str) -> None:
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
                batch, self._pending = self._pending, Batch()
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

    async def _commit(self, batch: Batch) -> None:
        writer = self._writer
        touches = [(seq, ts, run_id) for run_id, (seq, ts) in batch.touch.items()]
        held = self._held
        fences = {
            run_id: held[run_id]
            for run_id in batch.touch
            if run_id in held and run_id not in batch.started
        }
        try:
            if writer is None:
                raise UsageError(f"the store {self.path} was closed")
            failures = self._commit_inline(writer, batch, touches, fences)
            if failures is None:
                failures = await self._writer_call(
                    writer, sql.commit_batch, batch.rows, batch.ops, touches, fences
                )
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
        for run_id in batch.finished:  # its lease ended with it
            if run_id not in failures:
                held.pop(run_id, None)
        if self._unchecked >= _CHECKPOINT_BYTES and writer is not None:
            self._unchecked = 0
            with suppress(sqlite3.Error):  # a checkpoint that cannot run now runs next time
                await self._writer_call(writer, sql.checkpoint)

    def _commit_inline(
        self,
        writer: aiosqlite.Connection,
        batch: Batch,
        touches: list[tuple[int, float, str]],
        fences: sql.Fences,
    ) -> dict[str, Exception] | None:
        """Commit a small batch on the event loop; None: it must go to the writer's thread.

        It goes there when the batch is large, a job holds the connection, or another
        connection holds the write lock (``BEGIN IMMEDIATE`` fails at once: busy timeout 0).
        """
        if (
            not self._inline
            or self._jobs
            or len(batch.rows) > _INLINE_ROWS
            or batch.nbytes > _INLINE_BYTES
        ):
            return None
        try:
            failures = sql.commit_batch(sql.raw(writer), batch.rows, batch.ops, touches, fences)
        except sqlite3.OperationalError as exc:
            if str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
                return None  # to the thread, which waits for the lock
            raise
        self._unchecked += batch.nbytes
        return failures

    def _fail_runs(self, batch: Batch, failures: dict[str, Exception]) -> None:
        """Tell the appenders of runs whose events were lost, and keep the counters exact."""
        for run_id, exc in failures.items():
            seqs = [row[1] for row in batch.rows if row[0] == run_id]
            lost = f"events {min(seqs)}..{max(seqs)} of run {run_id!r}"
            if isinstance(exc, LeaseTaken):
                # The stale claim stays held: every later write of the run is refused too,
                # until a new claim (or `release`) replaces it.
                text, name = str(exc), ""
            else:
                text, name = self._describe(exc)
            message = f"journal {self.path}: {lost} were not written: {text}"
            failure = Failure(message, exc, self.path, run_id, name)
            batch.errors[run_id] = failure
            told = run_id in batch.waited
            later, later_told = self._pending.remove_run(run_id)
            if later:  # numbered after the lost ones: writing them would leave a gap
                self._pending.errors[run_id] = Failure(
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

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run.

        Raises:
            CorralError: a stored event does not validate (the message names run and seq).
        """
        rows = await self._read(sql.select_events, run_id, run=run_id)
        return [decode(self.path, run_id, seq, payload) for seq, payload in rows]

    async def read_lazily(self, run_id: str) -> LazyEvents:
        """A run's events as `read` returns them, each decoded when first looked at.

        Raises:
            CorralError: on access, a stored event that does not validate.
        """
        rows = await self._read(sql.select_events, run_id, run=run_id)
        return LazyEvents(self.path, run_id, rows)

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
