"""Versioned schema of the SQLite store: an ordered list of migrations, applied at open.

The version lives in ``PRAGMA user_version``. Opening a file runs, in one ``BEGIN
IMMEDIATE`` transaction, every migration above the file's version (so two processes
opening the same new file cannot both migrate it, and a failed migration changes
nothing). A file written by a newer Corral is refused with a `ConfigError`, as is a
SQLite file that belongs to another application.

Never edit a released migration: append a new one. Version 1 is the schema the first
journal shipped with; version 2 stores events in insertion order, turns the JSON copies
of gates into columns, merges early webhook deliveries into ``waits``, and adds timers,
``last_seq``, blob references, saved breaker states and the append-only triggers;
version 3 adds lease epochs (fencing: see `corral.errors.LeaseLostError`) and the
registry of worker processes (``corral workers``); version 4 keeps a cancellation asked
of the process driving a run (`Leases.request_cancel`); version 5 adds tenants' budget
days and the holds of calls in flight (`corral.store.TenantBudgets`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate"]

APPLICATION_ID = 0x436F7272
"""``PRAGMA application_id`` of a Corral store ("Corr")."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema."""

    version: int
    """The schema version after this step."""
    summary: str
    statements: tuple[str, ...]
    """SQL statements, run in order inside the migration transaction."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the journal and its indexes",
        (
            """CREATE TABLE events (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                ts REAL NOT NULL,
                payload TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            ) WITHOUT ROWID""",
            """CREATE TABLE runs (
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
            )""",
            "CREATE INDEX runs_status ON runs (status, created_at)",
            """CREATE TABLE gates (
                gate_id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                status TEXT NOT NULL,
                opened TEXT NOT NULL,
                decided TEXT,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL
            )""",
            "CREATE INDEX gates_status ON gates (status, expires_at)",
            "CREATE INDEX gates_run ON gates (run_id)",
            """CREATE TABLE waits (
                key TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                started TEXT NOT NULL,
                expires_at REAL NOT NULL
            )""",
            "CREATE INDEX waits_run ON waits (run_id)",
            """CREATE TABLE deliveries (
                key TEXT PRIMARY KEY,
                payload TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            """CREATE TABLE blobs (
                digest TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                data BLOB NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "events in insertion order; columns instead of JSON copies; waits hold early "
        "deliveries; timers; blob refs; append-only events",
        (
            # events: stored in insertion order (a rowid table; the key is a unique index).
            # Clustered by (run_id, seq), a commit of 100 concurrent runs dirtied 100 pages
            # of the WAL; in insertion order it fills a few pages, three times as fast.
            """CREATE TABLE events_v2 (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                ts REAL NOT NULL,
                payload TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            """INSERT INTO events_v2 (run_id, seq, kind, ts, payload)
                SELECT run_id, seq, kind, ts, payload FROM events ORDER BY ts, run_id, seq""",
            "DROP TABLE events",
            "ALTER TABLE events_v2 RENAME TO events",
            # runs: durable timers and the latest sequence number
            "ALTER TABLE runs ADD COLUMN wake_at REAL",
            "ALTER TABLE runs ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
            """UPDATE runs SET last_seq = COALESCE(
                (SELECT MAX(seq) FROM events WHERE events.run_id = runs.run_id), 0)""",
            "CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL",
            "CREATE INDEX runs_owner ON runs (owner) WHERE owner IS NOT NULL",
            "CREATE INDEX runs_finished ON runs (updated_at) WHERE status = 'finished'",
            # gates: the decision in columns; the events themselves stay in `events`
            """CREATE TABLE gates_v2 (
                gate_id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (run_id),
                call_id TEXT NOT NULL,
                tool TEXT NOT NULL,
                arguments TEXT NOT NULL,
                reason TEXT NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('open', 'approved', 'rejected', 'expired')),
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                decided_by TEXT,
                note TEXT,
                decided_arguments TEXT,
                decided_at REAL,
                opened_seq INTEGER NOT NULL,
                decided_seq INTEGER
            )""",
            """INSERT INTO gates_v2 SELECT
                gate_id, run_id,
                json_extract(opened, '$.call_id'), json_extract(opened, '$.tool'),
                COALESCE(json_extract(opened, '$.arguments'), '{}'),
                COALESCE(json_extract(opened, '$.reason'), ''),
                status, created_at, expires_at,
                json_extract(decided, '$.by'), json_extract(decided, '$.note'),
                json_extract(decided, '$.arguments'), json_extract(decided, '$.ts'),
                json_extract(opened, '$.seq'), json_extract(decided, '$.seq')
            FROM gates""",
            "DROP TABLE gates",
            "ALTER TABLE gates_v2 RENAME TO gates",
            "CREATE INDEX gates_open_created ON gates (created_at) WHERE status = 'open'",
            "CREATE INDEX gates_open_expiry ON gates (expires_at) WHERE status = 'open'",
            "CREATE INDEX gates_run ON gates (run_id, status)",
            # waits: one row per key, whether the wait or the delivery came first
            """CREATE TABLE waits_v2 (
                key TEXT PRIMARY KEY,
                run_id TEXT REFERENCES runs (run_id),
                created_at REAL NOT NULL,
                expires_at REAL,
                started_seq INTEGER,
                payload TEXT,
                delivered_at REAL,
                resolved_seq INTEGER,
                resolved_at REAL
            )""",
            """INSERT INTO waits_v2 (key, run_id, created_at, expires_at, started_seq)
                SELECT key, run_id, json_extract(started, '$.ts'), expires_at,
                       json_extract(started, '$.seq')
                FROM waits""",
            """INSERT INTO waits_v2 (key, run_id, created_at, payload, delivered_at)
                SELECT key, NULL, created_at, payload, created_at FROM deliveries
                WHERE key NOT IN (SELECT key FROM waits)""",
            "DROP TABLE waits",
            "DROP TABLE deliveries",
            "ALTER TABLE waits_v2 RENAME TO waits",
            """CREATE INDEX waits_open ON waits (run_id)
                WHERE run_id IS NOT NULL AND resolved_seq IS NULL""",
            """CREATE INDEX waits_open_expiry ON waits (expires_at)
                WHERE run_id IS NOT NULL AND resolved_seq IS NULL""",
            "CREATE INDEX waits_run ON waits (run_id)",
            # one waiter per key: a second run waiting on a key still awaited is an error,
            # not a silent replacement that would leave the first run waiting forever
            """CREATE TRIGGER waits_one_waiter BEFORE UPDATE OF run_id ON waits
            WHEN OLD.run_id IS NOT NULL AND OLD.resolved_seq IS NULL
                 AND NEW.run_id IS NOT OLD.run_id
            BEGIN
                SELECT RAISE(ABORT, 'another run already waits on this key');
            END""",
            # blobs: age, and which runs use them (so pruning a run can drop its blobs)
            "ALTER TABLE blobs ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
            """CREATE TABLE blob_refs (
                digest TEXT NOT NULL,
                run_id TEXT NOT NULL,
                PRIMARY KEY (digest, run_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX blob_refs_run ON blob_refs (run_id)",
            """INSERT OR IGNORE INTO blob_refs (digest, run_id)
                SELECT json_extract(payload, '$.result_blob'), run_id FROM events
                WHERE kind = 'tool_call_finished'
                  AND json_extract(payload, '$.result_blob') IS NOT NULL""",
            # the log is append-only: only retention may delete, and only finished runs
            """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN
                SELECT RAISE(ABORT, 'events are append-only');
            END""",
            """CREATE TRIGGER events_delete_finished_only BEFORE DELETE ON events
            WHEN NOT EXISTS (
                SELECT 1 FROM runs WHERE runs.run_id = OLD.run_id AND runs.status = 'finished'
            )
            BEGIN
                SELECT RAISE(ABORT, 'events of a run that has not finished cannot be deleted');
            END""",
            # circuit-breaker states kept across restarts (tool -> JSON)
            """CREATE TABLE breakers (
                tool TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
            f"PRAGMA application_id = {APPLICATION_ID}",
        ),
    ),
    Migration(
        3,
        "lease epochs: each claim that takes a run over advances it, and writes of an older "
        "epoch are refused (fencing); the registry of worker processes",
        (
            "ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0",
            """CREATE TABLE workers (
                owner TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at REAL NOT NULL,
                seen_at REAL NOT NULL,
                max_active_runs INTEGER,
                version TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "cancellations asked of the process driving a run",
        ("ALTER TABLE runs ADD COLUMN cancel_request TEXT",),
    ),
    Migration(
        5,
        "tenants' daily budgets, reserved across processes",
        (
            """CREATE TABLE tenant_days (
                tenant TEXT NOT NULL,
                day TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                PRIMARY KEY (tenant, day)
            ) WITHOUT ROWID""",
            """CREATE TABLE tenant_holds (
                hold_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                day TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                owner TEXT NOT NULL,
                run_id TEXT NOT NULL,
                until REAL NOT NULL
            )""",
            "CREATE INDEX tenant_holds_day ON tenant_holds (tenant, day)",
            "CREATE INDEX tenant_holds_owner ON tenant_holds (owner, run_id)",
        ),
    ),
)
"""Every schema step, oldest first; step ``i`` takes the file from version ``i`` to ``i + 1``."""

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema version this code writes and reads (``PRAGMA user_version``)."""

if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise AssertionError("migrations must be numbered 1, 2, ... without gaps")


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, *, path: str) -> tuple[int, int]:
    """Bring the file up to `SCHEMA_VERSION` in one transaction (runs in the DB thread).

    Args:
        conn: an autocommit connection (``isolation_level=None``), outside any transaction.
        path: the file, for messages.

    Returns:
        The versions before and after.

    Raises:
        ConfigError: the file has a newer schema, or belongs to another application.
    """
    app = _pragma_int(conn, "application_id")
    if app not in (0, APPLICATION_ID):
        raise ConfigError(
            f"{path} is a SQLite database of another application "
            f"(application_id {app:#x}), not a Corral store"
        )
    version = _pragma_int(conn, "user_version")
    _check_not_newer(version, path)
    if version == SCHEMA_VERSION:
        return version, version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _pragma_int(conn, "user_version")  # another process may have migrated it
        _check_not_newer(version, path)
        for migration in MIGRATIONS[version:]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version, SCHEMA_VERSION


def _check_not_newer(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has schema version {version}, newer than this Corral understands "
            f"({SCHEMA_VERSION}); upgrade Corral to open it"
        )
