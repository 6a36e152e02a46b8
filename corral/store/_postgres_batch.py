"""The PostgreSQL store's write path: the pool, group commit, and conditional appends.

`PostgresEngine` is the base of `corral.store.PostgresStore`, as `SqliteEngine` is of the
SQLite store. Group commit itself (numbering, batches, per-run failures, fences) is the
engine both share, `corral.store._group.GroupCommit`; this module adds the pool, the
statement a batch is, and how PostgreSQL's errors read. A constraint broken by one run's
events (or data the server refuses: text holding a NUL) fails only that run: the others
are written run by run.

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
from ..events import Event
from . import _postgres_sql as sql
from ._codec import encode, with_seq
from ._failure import LeaseTaken
from ._group import GroupBatch, GroupCommit, Row

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

_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM corral.events WHERE run_id = $1"

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


class PgBatch(GroupBatch):
    """A PostgreSQL batch: its events, and the claims of new runs committed with them."""

    __slots__ = ("claims",)

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[Claim] = []
        """Claims of runs started in this batch, committed with it."""

    def dropped(self, run_id: str) -> None:
        """Drop the run's claim."""
        self.claims = [c for c in self.claims if c[0] != run_id]


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


class PostgresEngine(GroupCommit[PgBatch]):
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
        self._reset_queue()

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

    def _check_open(self) -> None:
        self._open_pool()

    def _new_batch(self) -> PgBatch:
        return PgBatch()

    async def _last_seq(self, run_id: str) -> int:
        try:
            return await self._query(_max_seq, run_id)
        except JournalError as exc:
            raise JournalError(
                f"{exc} (reading the last seq of run {run_id!r}: nothing was appended)",
                path=self.where,
                run_id=run_id,
            ) from exc

    async def _event_rows(self, run_id: str) -> list[tuple[int, str]]:
        return await self._read(_select_events, run_id, run=run_id)

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        return self._text(exc), ""

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
        for run_id, owner, _ in batch.claims:
            if run_id not in failures:
                self._held[run_id] = (owner, 1)  # a new run's first lease
        self._settle(batch, failures)  # after the claims: it forgets the runs that finished

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

    # -- conditional appends --------------------------------------------------------------------

    async def _conditional(
        self, run_ids: Collection[str], fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any
    ) -> _T:
        """Run a check-then-append transaction for `run_ids`, with their appends held back.

        Appends to those runs in this process wait (the fence) until it is done, and their
        queued events are committed first, so the transaction numbers its events after
        them, and nothing can be numbered in between.
        """
        async with self._fenced_runs(run_ids):
            return await self._write(fn, self.where, *args)


async def _max_seq(conn: Any, run_id: str) -> int:
    return int(await conn.fetchval(_MAX_SEQ, run_id))


async def _select_events(conn: Any, run_id: str) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT seq, payload FROM corral.events WHERE run_id = $1 ORDER BY seq", run_id
    )
    return [(row[0], row[1]) for row in rows]
