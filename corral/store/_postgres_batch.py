"""The PostgreSQL store's write path: the pool, group commit, and conditional appends.

`PostgresEngine` is the base of `corral.store.PostgresStore`, as `SqliteEngine` is of the
SQLite store, with the same rules: events appended in the same event-loop tick go out
together (the first appender that must wait leads the batch, yields once so the others of
the tick join it, commits it and wakes them); a run's events are numbered at once from a
counter kept in memory; a batch that fails fails every appender in it, except that a
constraint broken by one run's events (or data the server refuses: text holding a NUL)
fails only that run (the others are written run by run); a run whose events were lost
forgets its counter and fails its later queued events. Conditional appends (gate
decisions, wait resolutions, deliveries, expiries) hold back the appends of their runs
with a fence while their transaction runs.

A batch is one statement, ``SELECT * FROM corral.append_events(...)`` with the batch's
columns as arrays (see ``_postgres_sql.py``): one round trip and one commit for every
event of the tick, however many runs appended. The leases this store holds fence it: the
statement writes nothing of a run whose lease another claim took over, and returns it;
its appenders get a `LeaseLostError`, and so does every later append of the run here,
until this store claims it again. Connections come from an asyncpg pool; a connection
lost (the server stopped, restarted, or failed over) fails what used it with a
`JournalError`, marks every pooled connection for replacement, and the next call
connects afresh. A read that fails so is retried once on a new connection; a write is
not (its outcome is unknown), its runs forget their counters and number again from what
the database holds.

asyncpg is imported when the store opens (`load_asyncpg`), so ``import corral`` never
needs it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from .._clock import Clock
from .._log import get_logger
from .._loop import require_asyncio
from ..errors import ConfigError, CorralError, JournalError, UsageError
from ..events import Event, RunStarted
from . import _postgres_sql as sql
from ._codec import LazyEvents, decode, encode, with_seq
from ._failure import Failure, LeaseTaken

__all__ = [
    "PgBatch",
    "PostgresEngine",
    "is_connection_error",
    "load_asyncpg",
]

_T = TypeVar("_T")

log = get_logger("corral.store")

_WAKE_BUFFER = 10_000
"""Notifications held for `watch_wakeups`' callback; beyond it they are dropped, and the
callback is told ``resync`` instead."""

_RELEASES = frozenset({"gate_opened", "wait_started", "run_finished"})
"""Kinds after which a run pauses or ends: its counter leaves memory once they commit."""
_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM corral.events WHERE run_id = $1"

Row = tuple[str, int, str, float, str]
"""An ``events`` row: run_id, seq, kind, ts, payload (JSON)."""
Claim = tuple[str, str, float]
"""A claim of a new run committed with its first events: run_id, owner, lease end."""
Fence = tuple[str, str, int]
"""A run this store holds a lease on, with the owner and the lease epoch it claimed."""


def load_asyncpg() -> Any:
    """Import asyncpg, or say how to install it.

    Raises:
        ConfigError: asyncpg is not installed.
    """
    try:
        return importlib.import_module("asyncpg")
    except ImportError as exc:
        raise ConfigError(
            "the PostgreSQL store needs asyncpg: pip install 'corral[postgres]'"
        ) from exc


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the connection or the server went away (not a bad statement)."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    try:
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:  # pragma: no cover - the store never opens without it
        return False
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.InterfaceError,
    )


_DEADLOCK_TRIES = 3
"""Tries of a batch PostgreSQL aborts as a deadlock (or serialization) victim."""


def _is_deadlock(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the statement to break a deadlock (40P01, 40001)."""
    return getattr(exc, "sqlstate", None) in ("40P01", "40001")


def _is_run_error(exc: BaseException) -> bool:
    """Whether `exc` may come from one run's events alone (a broken constraint, bad data)."""
    asyncpg = importlib.import_module("asyncpg")
    return isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError)


class PgBatch:
    """Events committed together, and the signal that they were."""

    __slots__ = (
        "claims",
        "done",
        "ended",
        "errors",
        "nbytes",
        "releases",
        "rows",
        "started",
        "touch",
        "waited",
        "waiters",
        "wake",
    )

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.claims: list[Claim] = []
        """Claims of runs started in this batch, committed with it."""
        self.touch: dict[str, int] = {}
        """Per run: its last seq in this batch."""
        self.releases: list[tuple[str, int]] = []
        self.started: set[str] = set()
        """Runs whose ``run_started`` is in this batch: new runs, not yet visible to others."""
        self.ended: set[str] = set()
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
        kind = event.kind
        self.rows.append((run_id, seq, kind, event.ts, payload))
        self.nbytes += len(payload)
        self.touch[run_id] = seq
        if kind in _RELEASES:
            self.releases.append((run_id, seq))
            if kind == "run_finished":
                self.ended.add(run_id)
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
        self.claims = [c for c in self.claims if c[0] != run_id]
        self.releases = [r for r in self.releases if r[0] != run_id]
        self.nbytes = sum(len(row[4]) for row in self.rows)
        del self.touch[run_id]
        self.started.discard(run_id)
        self.ended.discard(run_id)
        waited = run_id in self.waited
        self.waited.discard(run_id)
        return seqs, waited


def _arrays(rows: list[Row], claims: list[Claim], fences: list[Fence]) -> list[Any]:
    """The arguments of `sql.APPEND`: the columns of the rows, the claims, the fences."""
    columns: list[Any] = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 5
    columns += [list(c) for c in zip(*claims, strict=True)] if claims else [[], [], []]
    columns += [list(c) for c in zip(*fences, strict=True)] if fences else [[], [], []]
    return columns


async def append_in_transaction(conn: Any, event: Event) -> Event:
    """Store `event` after the run's last committed event, with its indexes; return the copy.

    Call inside a transaction: the run's row is locked first, so two conditional appends
    to one run (in any process) number one after the other.
    """
    await conn.execute("SELECT 1 FROM corral.runs WHERE run_id = $1 FOR UPDATE", event.run_id)
    last = int(await conn.fetchval(_MAX_SEQ, event.run_id))
    stored = with_seq(event, last + 1)
    row: Row = (stored.run_id, stored.seq, stored.kind, stored.ts, encode(stored))
    await conn.execute(sql.APPEND, *_arrays([row], [], []))
    return stored


class PostgresEngine:
    """The pool and the write path of `PostgresStore` (its base class; see there).

    You should never need to use this class directly.
    """

    where: str
    """The database's URL without its password, as messages name it."""
    _dsn: str
    _secret: str
    """The URL's password (taken out of every message), or empty."""
    _pool_size: int
    _connect_timeout_s: float
    _command_timeout_s: float | None
    _max_events: int
    _max_bytes: int
    _listen_retry_s: float
    _listen_check_s: float
    _listeners: set[Any]
    """The listening connections of `watch_wakeups` (closing the store ends them)."""
    _clock: Clock
    _pool: Any
    _closing: bool

    def _reset(self) -> None:
        self._seq: dict[str, int] = {}
        self._held: dict[str, tuple[str, int]] = {}
        """Leases this store claimed and still holds: run id -> (owner, epoch). Its appends
        to those runs are fenced: refused once another claim moved the lease on."""
        self._fences: dict[str, anyio.Event] = {}
        self._fenced = 0
        """Conditional appends finished so far (a counter read before is stale if it moved)."""
        self._poisoned: dict[str, Failure] = {}
        self._pending = PgBatch()
        self._inflight: PgBatch | None = None
        """The batch being committed."""
        self._leading = False
        self._transactions = 0
        self._events = 0
        self._largest = 0
        self._conditional_count = 0
        self._failed = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (a pool of connections) and apply pending schema migrations.

        Raises:
            ConfigError: asyncpg is missing, the server refuses the connection (a wrong
                password, an unknown database or user) or cannot be reached within the
                connect timeout, the database was migrated by a newer Corral, or the
                program does not run on asyncio.
            UsageError: the store is already open.
        """
        require_asyncio("PostgresStore")
        if self._pool is not None:
            raise UsageError(f"the store {self.where} is already open")
        asyncpg = load_asyncpg()
        failures = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,  # connect on demand: nothing reconnects behind our back
                max_size=self._pool_size,
                timeout=self._connect_timeout_s,
                command_timeout=self._command_timeout_s,
            )
        except failures as exc:
            raise ConfigError(f"cannot open the store {self.where}: {self._text(exc)}") from None
        try:
            async with pool.acquire(timeout=self._connect_timeout_s) as conn:
                await sql.migrate(conn, where=self.where)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                pool.terminate()
            if isinstance(exc, failures):
                raise ConfigError(
                    f"cannot open the store {self.where}: {self._text(exc)}"
                ) from None
            raise
        self._reset()
        self._pool = pool

    async def close(self) -> None:
        """Commit what is pending, then close the pool. Closing twice is a no-op.

        Raises:
            JournalError: events appended with ``wait=False`` could not be written and no
                later append of their run was told (so they are reported here).
        """
        pool = self._pool
        if pool is None:
            return
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                await self._flush()
        finally:
            self._pool = None
            for listening in list(self._listeners):
                listening.terminate()  # its `watch_wakeups` returns
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.fail_after(max(self._connect_timeout_s, 1.0)):
                        await pool.close()
                except Exception:  # a connection that cannot close cleanly is dropped
                    pool.terminate()
            self._closing = False
            unreported = list(self._poisoned.values())
            self._reset()
        if unreported:
            raise unreported[0].error(
                f" ({len(unreported)} run(s) had events appended with wait=False lost)"
            )

    def _open_pool(self) -> Any:
        if self._pool is None or self._closing:
            raise UsageError(f"the store {self.where} is not open")
        return self._pool

    # -- errors ---------------------------------------------------------------------------------

    def _text(self, exc: BaseException) -> str:
        """What went wrong, in words, with any password taken out."""
        if isinstance(exc, LeaseTaken):
            return str(exc)
        state = getattr(exc, "sqlstate", None)
        text = f"{type(exc).__name__}: {exc}"
        if state:
            text += f" (SQLSTATE {state})"
        if is_connection_error(exc):
            text += ": the database connection was lost or could not be made"
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """`text` with the URL's password replaced by ``***``.

        Only a password of 4 characters or more: a shorter one would garble the message
        (and the server never repeats a password).
        """
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text

    def _journal_error(self, exc: BaseException, run_id: str = "") -> JournalError:
        return JournalError(
            f"journal {self.where}: {self._text(exc)}", path=self.where, run_id=run_id
        )

    async def _lost(self, exc: BaseException) -> None:
        """After a lost connection, replace every pooled one at its next use."""
        pool = self._pool
        if pool is not None and is_connection_error(exc):
            await pool.expire_connections()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = self._pool  # (while closing too: `close` commits what is pending through it)
        if pool is None:
            raise UsageError(f"the store {self.where} is not open")
        async with pool.acquire(timeout=self._connect_timeout_s) as conn:
            yield conn

    async def _write(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        """Run `fn(connection, *args)` in a transaction; the caller waits for the outcome."""
        self._open_pool()
        with anyio.CancelScope(shield=True):
            try:
                async with self._connection() as conn:
                    async with conn.transaction():
                        result = await fn(conn, *args)
            except CorralError:
                raise
            except Exception as exc:
                await self._lost(exc)
                raise self._journal_error(exc) from exc
        return result

    async def _read(
        self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any, run: str | None = None
    ) -> _T:
        """Run `fn(connection, *args)`, after committing what is pending.

        With `run`, only that run's pending events need committing first (read your own
        writes, without forcing out other runs' queued events). A lost connection is
        retried once on a new one.
        """
        self._open_pool()
        behind = (
            self._uncommitted(run)
            if run is not None
            else bool(self._pending.rows) or self._inflight is not None
        )
        if behind:
            await self._flush()
        return await self._query(fn, *args)

    async def _query(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        for attempt in (1, 2):
            try:
                async with self._connection() as conn:
                    return await fn(conn, *args)
            except CorralError:
                raise
            except Exception as exc:
                await self._lost(exc)
                if attempt == 1 and is_connection_error(exc) and self._pool is not None:
                    continue
                raise self._journal_error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- wake-ups across processes (LISTEN/NOTIFY) ----------------------------------------------

    async def watch_wakeups(self, wake: Callable[[str, str], Awaitable[None]]) -> None:
        """Call ``await wake(kind, run_id)`` for each wake-up any process commits, until cancelled.

        One connection of its own (not from the pool) LISTENs on ``corral_wake``; see
        `corral.store.WakeupSource` for the kinds. Every `listen_check_s` seconds it is
        checked with a query, so a connection that died silently is noticed. A connection
        lost or refused is logged (``store.listen_lost``) and made again every
        `listen_retry_s` seconds; once it is back (``store.listen_restored``), `wake` is
        called with ``("resync", "")``: what was notified meanwhile is lost. So it is when
        more than 10,000 notifications wait for `wake`. An exception from `wake` is
        logged and the next notification delivered. Closing the store ends it (it
        returns); cancel it to stop listening before.

        Raises:
            UsageError: the store is not open.
            ConfigError: asyncpg is not installed.
        """
        self._open_pool()
        asyncpg = load_asyncpg()
        lost_before = False
        while self._pool is not None and not self._closing:
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout_s,
                    command_timeout=self._command_timeout_s,
                    server_settings={"application_name": f"corral listen {os.getpid()}"},
                )
            except Exception as exc:
                log.warning(
                    "store.listen_lost",
                    where=self.where,
                    error=self._text(exc),
                    retry_s=self._listen_retry_s,
                )
                lost_before = True
                await anyio.sleep(self._listen_retry_s)
                continue
            self._listeners.add(conn)
            try:
                if lost_before:
                    log.info("store.listen_restored", where=self.where)
                why = await self._listen_on(conn, wake, resync=lost_before)
            finally:
                self._listeners.discard(conn)
                with anyio.CancelScope(shield=True):
                    conn.terminate()
            if self._pool is None or self._closing:
                return  # the store was closed
            log.warning(
                "store.listen_lost", where=self.where, error=why, retry_s=self._listen_retry_s
            )
            lost_before = True
            await anyio.sleep(self._listen_retry_s)

    async def _listen_on(
        self, conn: Any, wake: Callable[[str, str], Awaitable[None]], *, resync: bool
    ) -> str:
        """Deliver the notifications of `conn` until it is lost; return why it was."""
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=_WAKE_BUFFER)
        why = ["the connection closed"]
        dropped = False

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            nonlocal dropped
            try:
                send.send_nowait(payload)
            except anyio.WouldBlock:
                dropped = True
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

        def on_lost(_conn: Any) -> None:
            send.close()

        async def check() -> None:
            while True:
                await anyio.sleep(self._listen_check_s)
                try:
                    with anyio.fail_after(self._connect_timeout_s):
                        await conn.fetchval("SELECT 1")
                except Exception as exc:
                    why[0] = self._text(exc)
                    send.close()
                    return

        conn.add_termination_listener(on_lost)
        try:
            await conn.add_listener(sql.WAKE_CHANNEL, on_notify)
        except Exception as exc:
            return self._text(exc)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(check)
            if resync:
                await self._wake_safely(wake, "resync", "")
            async with receive:
                async for payload in receive:
                    if dropped:
                        dropped = False
                        await self._wake_safely(wake, "resync", "")
                    kind, _, run_id = payload.partition(" ")
                    await self._wake_safely(wake, kind, run_id)
            tasks.cancel_scope.cancel()
        return why[0]

    async def _wake_safely(
        self, wake: Callable[[str, str], Awaitable[None]], kind: str, run_id: str
    ) -> None:
        try:
            await wake(kind, run_id)
        except Exception as exc:
            log.error("store.wake_failed", kind=kind, run_id=run_id, error=repr(exc))

    # -- the log --------------------------------------------------------------------------------

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        """Append one event; return the stored copy, numbered 1, 2, ... per run, no gaps.

        The copy is numbered and serialised at once; `event` itself is not changed. A
        cancelled waiting append may still be committed: once numbered, an event is never
        withdrawn (that would leave a gap).

        Args:
            event: the event; its ``seq`` is ignored.
            wait: True (default): return once the event is committed, together with every
                event appended in the same tick (group commit: one statement). False:
                return at once; the event goes with the next batch, in order. If that
                batch fails, the next append of the same run raises (or `close` does).

        Returns:
            The stored event: ``event.model_copy(update={"seq": n})``.

        Raises:
            JournalError: the event could not be written (the message names the database
                without its password, the run, the seqs and the server's error: a lost
                connection, a server shut down, a full disk), or an earlier
                ``wait=False`` event of this run could not be. Nothing committed before is
                lost, and the next append of the run numbers after its last committed
                event.
            UsageError: the store is not open.
        """
        run_id = event.run_id
        while True:
            self._open_pool()
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
        try:
            last = await self._query(_max_seq, run_id)
        except JournalError as exc:
            raise JournalError(
                f"{exc} (reading the last seq of run {run_id!r}: nothing was appended)",
                path=self.where,
                run_id=run_id,
            ) from exc
        # A conditional append that ran while we read may have written after `last`.
        if fenced == self._fenced and run_id not in self._fences and run_id not in self._seq:
            self._seq[run_id] = last

    async def _wait_for(self, batch: PgBatch, run_id: str) -> None:
        try:
            await self._until_done(batch)
        finally:
            batch.waiters -= 1
        failure = batch.errors.get(run_id)
        if failure is not None:
            raise failure.error()

    async def _until_done(self, batch: PgBatch) -> None:
        """Wait until `batch` is committed, leading a batch whenever nobody leads."""
        while not batch.done:
            if self._leading:
                await batch.wake.wait()
            else:
                await self._lead()

    async def flush(self) -> None:
        """Commit every event appended so far (including ``wait=False`` ones).

        Raises:
            UsageError: the store is not open.
        """
        self._open_pool()
        await self._flush()

    async def _flush(self) -> None:
        target = self._pending if self._pending.rows else self._inflight
        if target is None:
            return
        target.waiters += 1
        try:
            await self._until_done(target)
        finally:
            target.waiters -= 1

    async def _lead(self) -> None:
        """Commit the pending batch as its leader, then hand over to the next one's waiters.

        One batch is in flight at a time; the next one gathers meanwhile. (Two in flight
        could not hold events of the same run, or a failure of the first would leave a
        gap; in a runtime's steps nearly every run of the next batch is in the one in
        flight, so a second connection would not shorten anyone's wait.)
        """
        self._leading = True
        if self._pending.wake.is_set():
            self._pending.wake = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # the others of this tick join the batch
                batch, self._pending = self._pending, PgBatch()
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

    async def _commit(self, batch: PgBatch) -> None:
        failures: dict[str, BaseException]
        try:
            async with self._connection() as conn:
                try:
                    failures = await self._append_retrying(conn, batch)
                except Exception as exc:
                    if not _is_run_error(exc):
                        raise
                    failures = await self._commit_run_by_run(conn, batch)
        except Exception as exc:
            await self._lost(exc)
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
        for run_id, owner, _ in batch.claims:
            if run_id not in failures:
                self._held[run_id] = (owner, 1)  # a new run's first lease
        for run_id in batch.ended:
            if run_id not in failures:
                self._held.pop(run_id, None)  # its lease ended with it

    async def _append_retrying(self, conn: Any, batch: PgBatch) -> dict[str, BaseException]:
        """`_append` the whole batch, again if PostgreSQL aborted it as a deadlock victim.

        The statement is one transaction: aborted, it wrote nothing, so running it again is
        safe. Rows are locked in run_id order everywhere, so this is a safety net.
        """
        for attempt in range(1, _DEADLOCK_TRIES + 1):
            try:
                return await self._append(conn, batch.rows, batch.claims, batch)
            except Exception as exc:
                if attempt == _DEADLOCK_TRIES or not _is_deadlock(exc):
                    raise
                log.warning("store.commit_retried", where=self.where, attempt=attempt)
                await anyio.sleep(0.005 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append(
        self, conn: Any, rows: list[Row], claims: list[Claim], batch: PgBatch
    ) -> dict[str, BaseException]:
        """Write `rows` (and `claims`) in one statement; return the runs taken over.

        The runs this store holds a lease on are fenced (those started in `batch` are new:
        nobody else can hold them).
        """
        held = self._held
        runs = {row[0] for row in rows}
        fences = [
            (run_id, *held[run_id])
            for run_id in runs
            if run_id in held and run_id not in batch.started
        ]
        taken = await conn.fetch(sql.APPEND, *_arrays(rows, claims, fences))
        return {row[0]: LeaseTaken(row[1], int(row[2])) for row in taken}

    async def _commit_run_by_run(self, conn: Any, batch: PgBatch) -> dict[str, BaseException]:
        """After a broken constraint or bad data, write each run's events alone.

        Returns:
            The runs whose events were refused, with the error.
        """
        by_run: dict[str, tuple[list[Row], list[Claim]]] = {}
        for row in batch.rows:
            by_run.setdefault(row[0], ([], []))[0].append(row)
        for claim in batch.claims:
            by_run.setdefault(claim[0], ([], []))[1].append(claim)
        failures: dict[str, BaseException] = {}
        for run_id, (rows, claims) in by_run.items():
            if not rows:
                continue
            try:
                failures.update(await self._append(conn, rows, claims, batch))
            except Exception as exc:
                if not _is_run_error(exc):
                    raise
                failures[run_id] = exc
        return failures

    def _fail_runs(self, batch: PgBatch, failures: dict[str, BaseException]) -> None:
        """Tell the appenders of runs whose events were lost, and keep the counters exact."""
        for run_id, exc in failures.items():
            seqs = [row[1] for row in batch.rows if row[0] == run_id]
            lost = f"events {min(seqs)}..{max(seqs)} of run {run_id!r}"
            text = self._text(exc)
            message = f"journal {self.where}: {lost} were not written: {text}"
            failure = Failure(message, exc, self.where, run_id, "")
            batch.errors[run_id] = failure
            told = run_id in batch.waited
            later, later_told = self._pending.remove_run(run_id)
            if later:  # numbered after the lost ones: writing them would leave a gap
                self._pending.errors[run_id] = Failure(
                    f"journal {self.where}: events {min(later)}..{max(later)} of run "
                    f"{run_id!r} were dropped, because {lost} were not written: {text}",
                    exc,
                    self.where,
                    run_id,
                    "",
                )
                told = told or later_told
            # Reload from the database at the next append. (A run taken over keeps its stale
            # claim: every later write is refused too, until a new claim or `release`.)
            self._seq.pop(run_id, None)
            if not told:
                self._poisoned[run_id] = failure

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run.

        Raises:
            CorralError: a stored event does not validate (the message names run and seq).
        """
        rows = await self._read(_select_events, run_id, run=run_id)
        return [decode(self.where, run_id, seq, payload) for seq, payload in rows]

    async def read_lazily(self, run_id: str) -> LazyEvents:
        """A run's events as `read` returns them, each decoded when first looked at.

        Raises:
            CorralError: on access, a stored event that does not validate.
        """
        rows = await self._read(_select_events, run_id, run=run_id)
        return LazyEvents(self.where, run_id, rows)

    # -- conditional appends --------------------------------------------------------------------

    async def _conditional(
        self, run_ids: Collection[str], fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any
    ) -> _T:
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
            result = await self._write(fn, self.where, *args)
            self._conditional_count += 1
            return result
        finally:
            self._fenced += 1
            for run_id in runs:
                del self._fences[run_id]
                self._forget_counter(run_id)  # the transaction numbered from the database
            fence.set()

    def _forget_counter(self, run_id: str) -> None:
        """Drop a run's cached seq counter, unless events of it are still queued here."""
        if not self._uncommitted(run_id):
            self._seq.pop(run_id, None)

    def _uncommitted(self, run_id: str) -> bool:
        inflight = self._inflight
        return run_id in self._pending.touch or (inflight is not None and run_id in inflight.touch)


async def _max_seq(conn: Any, run_id: str) -> int:
    return int(await conn.fetchval(_MAX_SEQ, run_id))


async def _select_events(conn: Any, run_id: str) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT seq, payload FROM corral.events WHERE run_id = $1 ORDER BY seq", run_id
    )
    return [(row[0], row[1]) for row in rows]
