"""Versioned tables of `corral.memory`'s components, in the store's SQLite file.

Each component (semantic memory, episodes) keeps its tables next to the journal's, on a
connection of its own, and its version as a row of ``memory_schema`` (the journal's is
SQLite's ``user_version``). `migrate_component` applies, in one ``BEGIN IMMEDIATE``
transaction, the journal's migrations (so the file is a Corral store whichever opens it
first) and then every migration of the component above the file's version. A file
written by a newer Corral is refused with a `ConfigError`.

Never edit a released migration: append one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..errors import ConfigError
from ..store._migrations import migrate as migrate_store

__all__ = ["component_version", "migrate_component"]

_CREATE = """CREATE TABLE IF NOT EXISTS memory_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)"""


def component_version(conn: sqlite3.Connection, component: str) -> int:
    """The version of a component's tables in this file (0: none yet)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memory_schema'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute(
        "SELECT version FROM memory_schema WHERE component = ?", (component,)
    ).fetchone()
    return int(row[0]) if row else 0


def migrate_component(
    conn: sqlite3.Connection,
    *,
    path: str,
    component: str,
    migrations: Sequence[Sequence[str]],
    what: str,
) -> tuple[int, int]:
    """Bring the file's journal tables and one memory component's tables up to date.

    Args:
        conn: an autocommit connection (``isolation_level=None``), outside a transaction.
        path: the file, for messages.
        component: the component's row in ``memory_schema``.
        migrations: its steps, oldest first; step ``i`` takes it from ``i`` to ``i + 1``.
        what: its tables, as messages name them ("semantic-memory tables").

    Returns:
        The component's versions before and after.

    Raises:
        ConfigError: the file is not a Corral store, or was written by a newer Corral.
    """
    latest = len(migrations)
    migrate_store(conn, path=path)
    version = component_version(conn, component)
    _check(version, latest, path, what)
    if version == latest:
        return version, version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = component_version(conn, component)  # another process may have done it
        _check(version, latest, path, what)
        conn.execute(_CREATE)
        for statements in migrations[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO memory_schema (component, version) VALUES (?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, latest),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version, latest


def _check(version: int, latest: int, path: str, what: str) -> None:
    if version > latest:
        raise ConfigError(
            f"{path} has {what} of version {version}, newer than this "
            f"Corral understands ({latest}); upgrade Corral to open it"
        )
