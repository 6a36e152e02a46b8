"""The SQLite store's write path: connections, group commit, and conditional appends.

`SqliteEngine` is the base of `corral.store.SqliteStore`. It owns the two connections
(one writer, one read-only reader), opens and closes them, and commits batches; the group
commit itself (numbering, batches, per-run failures, the fences of conditional appends)
is the engine both stores share, `corral.store._group.GroupCommit`. `Batch` adds the
index statements a batch's events imply; `Failure` (in ``_failure``) is the error report.

This is the hot path: `append` (`GroupCommit.append`) does as little as it can on the loop
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
from ..events import Event
from . import _sqlite_sql as sql
from ._failure import LeaseTaken
from ._group import GroupBatch, GroupCommit

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


class Batch(GroupBatch):
    """A SQLite batch: its events, and the index statements they imply, in event order."""

    __slots__ = ("ops",)

    MARKED = _INDEXED

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[sql.Op] = []
        """Index statements, in event order."""

    def marked(self, event: Event, run_id: str, seq: int, kind: str) -> None:
        """Queue the index statements of an indexed event (and note pauses, ends, starts)."""
        self.ops.extend((run_id, text, args) for text, args in sql.index_ops(event))
        super().marked(event, run_id, seq, kind)

    def dropped(self, run_id: str) -> None:
        """Drop the run's index statements."""
        self.ops = [op for op in self.ops if op[0] != run_id]


class SqliteEngine(GroupCommit[Batch]):
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
        self._reset_queue()
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
        text, name = self._explain(exc)
        return JournalError(f"journal {self.path}: {text}", path=self.path, sqlite_error=name)

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        """What went wrong, in words, and SQLite's name for it (empty if not SQLite's)."""
        if isinstance(exc, LeaseTaken):
            return str(exc), ""
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

    def _check_open(self) -> None:
        self._open_writer()

    def _new_batch(self) -> Batch:
        return Batch()

    async def _last_seq(self, run_id: str) -> int:
        return await self._job(self._open_reader(), sql.max_seq, run_id)

    async def _event_rows(self, run_id: str) -> list[tuple[int, str]]:
        return await self._read(sql.select_events, run_id, run=run_id)

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
        self._settle(batch, failures)
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

    # -- conditional appends --------------------------------------------------------------------

    async def _conditional(self, run_ids: Collection[str], fn: Callable[..., _T], *args: Any) -> _T:
        """Run a check-then-append transaction for `run_ids`, with their appends held back.

        Appends to those runs in this process wait (the fence) until it is done, and their
        queued events are committed first, so the transaction numbers its events after
        them, and nothing can be numbered in between.
        """
        async with self._fenced_runs(run_ids):
            return await self._write(fn, self.path, *args)
