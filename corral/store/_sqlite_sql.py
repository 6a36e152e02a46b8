"""The SQLite store's connection and write path: jobs on a connection's thread.

Each function takes a plain `sqlite3.Connection` and runs as one job on an aiosqlite
connection's thread (`call`): a whole batch, or a whole conditional append, is one thread
hop, not one per statement. Writes run inside `transaction` (``BEGIN IMMEDIATE``).

`index_ops` says which index rows an event implies; `commit_batch` runs them in the
transaction that inserts a group commit's events, and `append_in_transaction` does the
same for a conditional append (``_sqlite_queries.py`` holds those, and the reads). The run
status these statements keep is the rule of `corral.store._contract.run_status`, written
in SQL as ``_STATUS``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar, cast

import aiosqlite
import pydantic_core

from ..errors import ConfigError
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
from ._codec import encode, with_seq
from ._failure import LeaseTaken
from ._migrations import migrate

__all__ = [
    "UPDATE_FROM",
    "Op",
    "Row",
    "append_in_transaction",
    "call",
    "check_aiosqlite",
    "commit_batch",
    "index_ops",
    "max_seq",
    "optimize",
    "select_events",
    "setup_reader",
    "setup_writer",
    "transaction",
]

_T = TypeVar("_T")

Row = tuple[str, int, str, float, str]
"""An ``events`` row: run_id, seq, kind, ts, payload (JSON)."""
Op = tuple[str, str, tuple[Any, ...]]
"""An index statement of a run: (run_id, sql, arguments)."""

_INSERT_EVENT = "INSERT INTO events (run_id, seq, kind, ts, payload) VALUES (?, ?, ?, ?, ?)"
_TOUCH_RUN = "UPDATE runs SET last_seq = ?, updated_at = MAX(updated_at, ?) WHERE run_id = ?"
_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?"
_STATUS = """
    UPDATE runs SET updated_at = MAX(updated_at, ?), status = CASE
        WHEN EXISTS (SELECT 1 FROM gates WHERE gates.run_id = runs.run_id AND gates.status = 'open')
          OR EXISTS (SELECT 1 FROM waits WHERE waits.run_id = runs.run_id
                                           AND waits.resolved_seq IS NULL)
        THEN 'waiting' ELSE 'running' END
    WHERE run_id = ? AND status != 'finished'
"""
"""The status rule of `corral.store._contract.run_status`, for one run (after a gate or
wait event; ``run_finished`` sets ``finished`` itself)."""


# -- the connection ------------------------------------------------------------------------------


async def call(db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(sqlite3_connection, *args)` as one job on the aiosqlite connection's thread.

    aiosqlite spends a thread hop per call; a batch commit is several statements, so doing
    it in one hop is what makes small batches cheap. This relies on aiosqlite's
    ``Connection._execute`` and ``_conn`` (checked at open; present through 0.22).
    """
    execute = cast(Callable[..., Awaitable[_T]], db._execute)
    return await execute(fn, db._conn, *args)


def check_aiosqlite(db: aiosqlite.Connection) -> None:
    """Refuse an aiosqlite without the internals `call` uses.

    Raises:
        ConfigError: ``Connection._execute`` or ``_conn`` is missing.
    """
    if not callable(getattr(db, "_execute", None)) or not hasattr(db, "_conn"):
        raise ConfigError(
            f"aiosqlite {getattr(aiosqlite, '__version__', '?')} lacks Connection._execute; "
            "the SQLite store supports aiosqlite 0.20 to 0.22"
        )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


def setup_writer(
    conn: sqlite3.Connection,
    path: str,
    memory: bool,
    synchronous: str,
    busy_ms: int,
    max_size_bytes: int | None,
) -> None:
    """Pragmas of the writing connection (WAL, durability, size cap) and the migrations.

    Raises:
        ConfigError: the file system refuses WAL mode, or the migrations refuse the file.
    """
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


def setup_inline(conn: sqlite3.Connection) -> None:
    """Let the event loop commit small batches on the writer (see ``_sqlite_batch.py``).

    Busy timeout 0 between jobs (a locked file sends the batch to the thread, never blocks
    the loop); no automatic checkpoints (their fsync would run on the loop).
    """
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA wal_autocheckpoint = 0")


def waiting(conn: sqlite3.Connection, busy_ms: int, fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(conn, *args)` with the busy timeout `busy_ms`, then set it back to 0."""
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database as far as readers allow (``PASSIVE``: waits for none)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def raw(db: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection under `db` (the internal `call` relies on too)."""
    return db._conn


def setup_reader(conn: sqlite3.Connection, busy_ms: int) -> None:
    """Pragmas of the reading connection: it waits for locks as the writer does, and only reads."""
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    conn.execute("PRAGMA query_only = ON")


def optimize(conn: sqlite3.Connection) -> None:
    """Let SQLite refresh its query-planner statistics (on close)."""
    conn.execute("PRAGMA optimize")


# -- appending -----------------------------------------------------------------------------------


def index_ops(event: Event) -> list[tuple[str, tuple[Any, ...]]]:
    """The index updates a stored event implies, run in the same transaction as its insert."""
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


UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
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


Fences = Mapping[str, tuple[str, int]]
"""Runs of a batch that the store holds a lease on: run id -> (owner, epoch) it claimed."""


def _taken(conn: sqlite3.Connection, fences: Fences) -> dict[str, Exception]:
    """The runs of `fences` whose lease is no longer the one claimed, read in the transaction."""
    taken: dict[str, Exception] = {}
    for run_id, (owner, epoch) in fences.items():
        row = conn.execute(_LEASE_OF, (run_id,)).fetchone()
        if row is not None and (row[0] != owner or row[1] != epoch):
            taken[run_id] = LeaseTaken(row[0], row[1])
    return taken


_LEASE_OF = "SELECT owner, lease_epoch FROM runs WHERE run_id = ?"


def _write_events(
    conn: sqlite3.Connection,
    rows: list[Row],
    ops: list[Op],
    touches: list[tuple[int, float, str]],
    fences: Fences,
) -> dict[str, Exception]:
    """Write the batch in one transaction, less the runs whose lease was taken over."""
    with transaction(conn):
        taken = _taken(conn, fences) if fences else {}
        if taken:
            rows = [row for row in rows if row[0] not in taken]
            ops = [op for op in ops if op[0] not in taken]
            touches = [t for t in touches if t[2] not in taken]
        _write_many(conn, _insert_events_sql, rows)
        for _, sql, args in ops:
            conn.execute(sql, args)
        if UPDATE_FROM:
            _write_many(conn, _touch_runs_sql, touches)
        else:
            conn.executemany(_TOUCH_RUN, touches)
    return taken


def commit_batch(
    conn: sqlite3.Connection,
    rows: list[Row],
    ops: list[Op],
    touches: list[tuple[int, float, str]],
    fences: Fences,
) -> dict[str, Exception]:
    """Write a batch in one transaction; return the runs whose events could not be written.

    Fencing: the events of a run in `fences` are written only if its lease is still the
    one this store claimed (same owner, same epoch), checked inside the transaction that
    writes them; otherwise the run fails with `LeaseTaken`. A constraint broken by one
    run's events (a reused run id, a duplicate gate id, a second writer on the run) must
    not fail the other runs, so after such a failure the batch is written again run by
    run. Any other error fails the whole batch.
    """
    try:
        return _write_events(conn, rows, ops, touches, fences)
    except sqlite3.IntegrityError:
        pass
    by_run: dict[str, tuple[list[Row], list[Op]]] = {}
    for row in rows:
        by_run.setdefault(row[0], ([], []))[0].append(row)
    for op in ops:
        by_run[op[0]][1].append(op)
    failures: dict[str, Exception] = {}
    for run_id, (run_rows, run_ops) in by_run.items():
        fence = {run_id: fences[run_id]} if run_id in fences else {}
        try:
            failures.update(
                _write_events(
                    conn, run_rows, run_ops, [t for t in touches if t[2] == run_id], fence
                )
            )
        except sqlite3.IntegrityError as exc:
            failures[run_id] = exc
    return failures


def max_seq(conn: sqlite3.Connection, run_id: str) -> int:
    """The seq of the run's last committed event (0 for none)."""
    return int(conn.execute(_MAX_SEQ, (run_id,)).fetchone()[0])


def append_in_transaction(conn: sqlite3.Connection, event: Event) -> Event:
    """Store `event` after the run's last committed event, with its indexes; return the copy.

    Call inside `transaction`: the number read and the row written cannot be separated.
    """
    stored = with_seq(event, max_seq(conn, event.run_id) + 1)
    conn.execute(_INSERT_EVENT, (stored.run_id, stored.seq, stored.kind, stored.ts, encode(stored)))
    for sql, args in index_ops(stored):
        conn.execute(sql, args)
    conn.execute(_TOUCH_RUN, (stored.seq, stored.ts, stored.run_id))
    return stored


def select_events(conn: sqlite3.Connection, run_id: str) -> list[tuple[int, str]]:
    """A run's ``(seq, payload)`` rows, in order."""
    return conn.execute(
        "SELECT seq, payload FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()
