"""The SQLite journal: WAL, versioned migrations, group commit, indexes in the same transaction.

Several processes may share one file: runs are claimed with leases, and gate decisions
and webhook deliveries are atomic (``BEGIN IMMEDIATE``), so two processes cannot both
decide a gate. Events appended in the same event-loop tick are committed together in one
transaction, so throughput does not collapse to one fsync per event.

Durability: ``synchronous=NORMAL`` (the default) in WAL mode never corrupts the database
and keeps every committed transaction across a process crash; a power loss may lose the
last transactions. Pass ``synchronous="FULL"`` to survive power loss at the cost of an
fsync per commit.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import anyio
import anyio.lowlevel

from ..errors import ConfigError, CorralError
from ..events import (
    Event,
    EventAdapter,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    WaitResolved,
    WaitStarted,
)
from ._journal import GateRecord, RunInfo, RunStatus, WaitRecord

__all__ = ["SCHEMA_VERSION", "SqliteJournal"]

_MIGRATIONS: list[str] = [
    # 1: the journal and its indexes
    """
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ts REAL NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        tenant TEXT NOT NULL,
        task TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        owner TEXT,
        lease_until REAL
    );
    CREATE INDEX runs_status ON runs (status, created_at);
    CREATE TABLE gates (
        gate_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        opened TEXT NOT NULL,
        decided TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX gates_status ON gates (status, expires_at);
    CREATE INDEX gates_run ON gates (run_id);
    CREATE TABLE waits (
        key TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        started TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX waits_run ON waits (run_id);
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this code writes (``PRAGMA user_version``)."""

_STATUS_SQL = """
    UPDATE runs SET updated_at = ?, status = CASE
        WHEN EXISTS (SELECT 1 FROM gates WHERE gates.run_id = runs.run_id AND status = 'open')
          OR EXISTS (SELECT 1 FROM waits WHERE waits.run_id = runs.run_id)
        THEN 'waiting' ELSE 'running' END
    WHERE run_id = ? AND status != 'finished'
"""


class _Batch:
    """Events waiting to be committed together, and the signal that they were."""

    __slots__ = ("done", "error", "events")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = anyio.Event()
        self.error: BaseException | None = None


class SqliteJournal:
    """A durable journal in one SQLite file. Use ``async with SqliteJournal(path) as j``.

    Args:
        path: the database file (created with its directory if missing), or ``:memory:``.
        synchronous: ``NORMAL`` (default; see the module docstring) or ``FULL``.
        busy_timeout_s: how long to wait for another process's write lock. Default 10 s.
        max_batch: most events committed in one transaction. Default 5,000.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_s: float = 10.0,
        max_batch: int = 5_000,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = str(path)
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout_s * 1000)
        self._max_batch = max_batch
        self._db: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()
        self._pending = _Batch()
        self._flushing = False
        self._flush_done = anyio.Event()
        self._seq: dict[str, int] = {}
        self.transactions = 0
        """Transactions committed by appends (for checking that group commit batches)."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> SqliteJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file, set WAL mode and apply pending migrations.

        Raises:
            ConfigError: the file was written by a newer Corral, or is not a database.
        """
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open journal {self.path}: {exc}") from exc
        self._db = db
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={self._synchronous}")
            await db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            await self._migrate(db)
        except sqlite3.DatabaseError as exc:
            await db.close()
            self._db = None
            raise ConfigError(f"{self.path} is not a Corral journal: {exc}") from exc
        except BaseException:
            await db.close()
            self._db = None
            raise

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"journal {self.path} has schema version {version}, newer than this Corral "
                f"understands ({SCHEMA_VERSION}); upgrade Corral"
            )
        if version == SCHEMA_VERSION:
            return
        await db.execute("BEGIN IMMEDIATE")
        try:
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        await db.execute(statement)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        """Commit what is pending and close the file."""
        if self._db is None:
            return
        try:
            await self._flush_pending()
        finally:
            db, self._db = self._db, None
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise CorralError(f"journal {self.path} is not open")
        return self._db

    # -- appending --------------------------------------------------------------------------------

    async def _next_seq(self, run_id: str) -> int:
        seq = self._seq.get(run_id)
        if seq is None:
            async with self._conn().execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ) as cursor:
                row = await cursor.fetchone()
            # Another append of this run may have numbered itself while we were reading.
            seq = self._seq.get(run_id)
            if seq is None:
                seq = int(row[0]) if row else 0
        seq += 1
        self._seq[run_id] = seq
        return seq

    async def append(self, event: Event, *, wait: bool = True) -> None:
        """Append an event; with `wait`, return once it is committed (group commit)."""
        self._conn()
        event.seq = await self._next_seq(event.run_id)
        batch = self._pending
        batch.events.append(event)
        if len(batch.events) >= self._max_batch and not self._flushing:
            await self._flush_pending()
        if not wait:
            return
        while not batch.done.is_set():
            if self._flushing:
                await self._flush_done.wait()  # the leader will take our batch too
            else:
                await self._flush_pending()
        if batch.error is not None:
            raise batch.error

    async def _flush_pending(self) -> None:
        """Commit everything pending: become the leader, or wait for the current one."""
        while self._flushing:
            await self._flush_done.wait()
        if not self._pending.events:
            return
        self._flushing = True
        self._flush_done = anyio.Event()
        try:
            await anyio.lowlevel.checkpoint()  # others appending in this tick join the batch
            while self._pending.events:
                batch, self._pending = self._pending, _Batch()
                try:
                    async with self._lock:
                        await self._commit(batch.events)
                except BaseException as exc:
                    batch.error = (
                        exc if isinstance(exc, Exception) else CorralError("commit interrupted")
                    )
                    for event in batch.events:  # their numbers were not used: reload next time
                        self._seq.pop(event.run_id, None)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    batch.done.set()
        finally:
            self._flushing = False
            self._flush_done.set()

    async def _commit(self, events: list[Event]) -> None:
        rows = [
            (e.run_id, e.seq, e.kind, e.ts, EventAdapter.dump_json(e).decode()) for e in events
        ]
        indexed = [_index_statements(e) for e in events if e.kind in _INDEXED]
        await _in_thread(self._conn(), _commit_batch, rows, indexed)
        self.transactions += 1
        for event in events:  # a paused or finished run keeps nothing in memory
            if event.kind in _RELEASES and self._seq.get(event.run_id) == event.seq:
                del self._seq[event.run_id]

    async def _index(self, db: aiosqlite.Connection, event: Event) -> None:
        for sql, args in _index_statements(event):
            await db.execute(sql, args)

    async def _append_if(self, event: Event, check_sql: str, args: tuple[Any, ...]) -> bool:
        """Append one event in its own transaction only if `check_sql` finds a row."""
        await self._flush_pending()
        db = self._conn()
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                async with db.execute(check_sql, args) as cursor:
                    found = await cursor.fetchone()
                if found is None:
                    await db.execute("ROLLBACK")
                    return False
                async with db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (event.run_id,)
                ) as cursor:
                    row = await cursor.fetchone()
                event.seq = (int(row[0]) if row else 0) + 1
                await db.execute(
                    "INSERT INTO events (run_id, seq, kind, ts, payload) VALUES (?, ?, ?, ?, ?)",
                    (event.run_id, event.seq, event.kind, event.ts, EventAdapter.dump_json(event).decode()),
                )
                await self._index(db, event)
                await db.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await db.execute("ROLLBACK")
                raise
        self._seq[event.run_id] = event.seq
        return True

    # -- reading ----------------------------------------------------------------------------------

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order (committing pending ones first).

        Raises:
            CorralError: a stored event no longer validates (names run and seq).
        """
        await self._flush_pending()
        async with self._conn().execute(
            "SELECT seq, payload FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        events: list[Event] = []
        for seq, payload in rows:
            try:
                events.append(EventAdapter.validate_json(payload))
            except ValueError as exc:
                raise CorralError(f"journal {self.path}: event {run_id}#{seq} is invalid: {exc}") from exc
        return events

    async def unfinished_runs(self) -> list[str]:
        """Return runs not finished, oldest first."""
        await self._flush_pending()
        async with self._conn().execute(
            "SELECT run_id FROM runs WHERE status != 'finished' ORDER BY created_at"
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunInfo]:
        """Return runs, newest first."""
        await self._flush_pending()
        sql = "SELECT run_id, agent, tenant, status, outcome, created_at, updated_at, task FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        sql += " ORDER BY created_at DESC LIMIT ?"
        async with self._conn().execute(sql, (*args, limit)) as cursor:
            return [RunInfo(*row) for row in await cursor.fetchall()]

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates with `status` (None for all), of one run or all, oldest first."""
        await self._flush_pending()
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        sql = "SELECT run_id, opened, decided FROM gates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self._conn().execute(sql + " ORDER BY created_at", args) as cursor:
            return [_gate(*row) for row in await cursor.fetchall()]

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate."""
        await self._flush_pending()
        async with self._conn().execute(
            "SELECT run_id, opened, decided FROM gates WHERE gate_id = ?", (gate_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _gate(*row) if row else None

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append the decision only if the gate is still open (atomic across processes)."""
        return await self._append_if(
            decision,
            "SELECT 1 FROM gates WHERE gate_id = ? AND status = 'open'",
            (decision.gate_id,),
        )

    async def waits(self) -> list[WaitRecord]:
        """Return unresolved waits."""
        await self._flush_pending()
        async with self._conn().execute("SELECT run_id, started FROM waits") as cursor:
            return [
                WaitRecord(run_id, WaitStarted.model_validate_json(started))
                for run_id, started in await cursor.fetchall()
            ]

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append the resolution only if the wait is still open (atomic across processes)."""
        return await self._append_if(
            resolution,
            "SELECT 1 FROM waits WHERE key = ? AND run_id = ?",
            (resolution.key, resolution.run_id),
        )

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Resolve the run waiting on `key`, or keep the payload (the first one) for later."""
        await self._flush_pending()
        db = self._conn()
        for _ in range(3):  # a wait may start or end between the look-up and the write
            async with db.execute("SELECT run_id, started FROM waits WHERE key = ?", (key,)) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                started = WaitStarted.model_validate_json(row[1])
                resolved = WaitResolved(
                    run_id=row[0], ts=now, call_id=started.call_id, tool=started.tool, key=key, payload=payload
                )
                if await self.resolve_wait(resolved):
                    return str(row[0])
                continue
            async with self._lock:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    async with db.execute("SELECT 1 FROM waits WHERE key = ?", (key,)) as cursor:
                        waiting = await cursor.fetchone()
                    if waiting is None:
                        await db.execute(
                            "INSERT OR IGNORE INTO deliveries (key, payload, created_at) VALUES (?, ?, ?)",
                            (key, json.dumps(payload, default=str), now),
                        )
                    await db.execute("COMMIT")
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await db.execute("ROLLBACK")
                    raise
            if waiting is None:
                return None
        raise CorralError(f"could not deliver {key!r}: its wait kept changing")

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Pop a kept delivery."""
        await self._flush_pending()
        async with self._lock:
            async with self._conn().execute(
                "DELETE FROM deliveries WHERE key = ? RETURNING payload", (key,)
            ) as cursor:
                row = await cursor.fetchone()
        return (True, json.loads(row[0])) if row else (False, None)

    # -- leases -----------------------------------------------------------------------------------

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Claim a run unless another owner's lease is live; the claim refreshes caches."""
        await self._flush_pending()
        async with self._lock:
            cursor = await self._conn().execute(
                "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ? AND status != 'finished' "
                "AND (owner IS NULL OR owner = ? OR lease_until < ?)",
                (owner, now + lease_s, run_id, owner, now),
            )
            claimed = cursor.rowcount == 1
            await cursor.close()
        if claimed:
            self._seq.pop(run_id, None)  # another process may have appended (a decision)
        return claimed

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim every free run of `run_ids` in one transaction; return those claimed."""
        if not run_ids:
            return []
        await self._flush_pending()
        async with self._lock:
            claimed: list[str] = await _in_thread(
                self._conn(), _claim_batch, run_ids, owner, now + lease_s, now
            )
        for run_id in claimed:
            self._seq.pop(run_id, None)
        return claimed

    async def release(self, run_id: str, owner: str) -> None:
        """Release `owner`'s claim."""
        await self._flush_pending()
        async with self._lock:
            await self._conn().execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
                (run_id, owner),
            )

    # -- blobs and retention ----------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content; return the SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        async with self._lock:
            await self._conn().execute(
                "INSERT OR IGNORE INTO blobs (digest, size, data) VALUES (?, ?, ?)",
                (digest, len(data), data),
            )
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest."""
        async with self._conn().execute("SELECT data FROM blobs WHERE digest = ?", (digest,)) as cursor:
            row = await cursor.fetchone()
        return bytes(row[0]) if row else None

    async def prune(self, *, older_than_s: float, now: float) -> int:
        """Delete finished runs (events, gates, waits) last updated before ``now - older_than_s``.

        Returns:
            The number of runs deleted.
        """
        await self._flush_pending()
        cutoff = now - older_than_s
        db = self._conn()
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                async with db.execute(
                    "SELECT run_id FROM runs WHERE status = 'finished' AND updated_at < ?", (cutoff,)
                ) as cursor:
                    ids = [(row[0],) for row in await cursor.fetchall()]
                for table in ("events", "gates", "waits", "runs"):
                    await db.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
                await db.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await db.execute("ROLLBACK")
                raise
        for (run_id,) in ids:
            self._seq.pop(run_id, None)
        return len(ids)

    async def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        await self._flush_pending()
        async with self._lock:
            await self._conn().execute("VACUUM")

    async def size_bytes(self) -> int:
        """Bytes the database uses (pages in use times page size)."""
        await self._flush_pending()
        db = self._conn()
        async with db.execute("PRAGMA page_count") as c1:
            pages = (await c1.fetchone() or (0,))[0]
        async with db.execute("PRAGMA freelist_count") as c2:
            free = (await c2.fetchone() or (0,))[0]
        async with db.execute("PRAGMA page_size") as c3:
            size = (await c3.fetchone() or (4096,))[0]
        return int((pages - free) * size)


_INDEXED = frozenset(
    {"run_started", "gate_opened", "gate_decided", "wait_started", "wait_resolved", "run_finished"}
)


_RELEASES = frozenset({"gate_opened", "wait_started", "run_finished"})


def _index_statements(event: Event) -> list[tuple[str, tuple[Any, ...]]]:
    """The index updates an event implies, run in the same transaction as its insert."""
    if isinstance(event, RunStarted):
        return [
            (
                "INSERT INTO runs (run_id, agent, tenant, task, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (event.run_id, event.agent, event.tenant, event.task, event.ts, event.ts),
            )
        ]
    if isinstance(event, GateOpened):
        return [
            (
                "INSERT INTO gates (gate_id, run_id, status, opened, created_at, expires_at) "
                "VALUES (?, ?, 'open', ?, ?, ?)",
                (event.gate_id, event.run_id, event.model_dump_json(), event.ts, event.expires_at),
            ),
            (_STATUS_SQL, (event.ts, event.run_id)),
        ]
    if isinstance(event, GateDecided):
        return [
            (
                "UPDATE gates SET status = ?, decided = ? WHERE gate_id = ?",
                (event.decision, event.model_dump_json(), event.gate_id),
            ),
            (_STATUS_SQL, (event.ts, event.run_id)),
        ]
    if isinstance(event, WaitStarted):
        return [
            (
                "INSERT OR REPLACE INTO waits (key, run_id, started, expires_at) VALUES (?, ?, ?, ?)",
                (event.key, event.run_id, event.model_dump_json(), event.expires_at),
            ),
            (_STATUS_SQL, (event.ts, event.run_id)),
        ]
    if isinstance(event, WaitResolved):
        return [
            ("DELETE FROM waits WHERE key = ? AND run_id = ?", (event.key, event.run_id)),
            (_STATUS_SQL, (event.ts, event.run_id)),
        ]
    if isinstance(event, RunFinished):
        return [
            (
                "UPDATE runs SET status = 'finished', outcome = ?, updated_at = ?, owner = NULL, "
                "lease_until = NULL WHERE run_id = ?",
                (event.outcome, event.ts, event.run_id),
            )
        ]
    return []


def _commit_batch(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    indexed: list[list[tuple[str, tuple[Any, ...]]]],
) -> None:
    """One transaction for a whole batch, run in the connection's thread (one hop)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO events (run_id, seq, kind, ts, payload) VALUES (?, ?, ?, ?, ?)", rows
        )
        for statements in indexed:
            for sql, args in statements:
                conn.execute(sql, args)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _claim_batch(
    conn: sqlite3.Connection, run_ids: list[str], owner: str, until: float, now: float
) -> list[str]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        claimed = []
        for run_id in run_ids:
            cursor = conn.execute(
                "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ? AND status != 'finished' "
                "AND (owner IS NULL OR owner = ? OR lease_until < ?)",
                (owner, until, run_id, owner, now),
            )
            if cursor.rowcount == 1:
                claimed.append(run_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return claimed


async def _in_thread(db: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
    """Run `fn(sqlite3_connection, *args)` in the aiosqlite connection's own thread.

    aiosqlite spends a thread hop per statement; a batch commit is three or more
    statements, so doing it in one hop cuts its cost by about 60 %. This is the one place
    that relies on aiosqlite internals (``_execute`` and ``_conn``, stable through 0.22).
    """
    execute: Any = db._execute  # untyped in aiosqlite
    return await execute(fn, db._conn, *args)


def _gate(run_id: str, opened: str, decided: str | None) -> GateRecord:
    return GateRecord(
        run_id,
        GateOpened.model_validate_json(opened),
        GateDecided.model_validate_json(decided) if decided else None,
    )
