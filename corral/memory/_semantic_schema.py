"""The tables of semantic memory, and their versioned migrations.

They live in the store's SQLite file next to the journal's tables (their names start with
``semantic_``), on a connection of their own. The journal's schema version is SQLite's
``user_version``; the memory's is a row of ``memory_schema`` (one row per component, so
other parts of `corral.memory` can version their tables the same way). Opening applies,
in one ``BEGIN IMMEDIATE`` transaction, the journal's migrations (so the file is a Corral
store whichever opens it first) and then every memory migration above the file's
version. A file written by a newer Corral is refused with a `ConfigError`.

Never edit a released migration: append one.
"""

from __future__ import annotations

import sqlite3

from ..errors import ConfigError
from ..store._migrations import migrate as migrate_store

__all__ = ["COMPONENT", "MIGRATIONS", "SCHEMA_VERSION", "component_version", "migrate"]

COMPONENT = "semantic"
"""This component's row in ``memory_schema``."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE semantic_sources (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            source TEXT NOT NULL,
            digest TEXT NOT NULL,
            tags TEXT NOT NULL,
            chunks INTEGER NOT NULL,
            added_at REAL NOT NULL,
            UNIQUE (tenant, source)
        )""",
        """CREATE TABLE semantic_chunks (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES semantic_sources (id),
            tenant TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            headings TEXT NOT NULL,
            text TEXT NOT NULL
        )""",
        "CREATE INDEX semantic_chunks_tenant ON semantic_chunks (tenant, id)",
        "CREATE INDEX semantic_chunks_source ON semantic_chunks (source_id)",
        """CREATE TABLE semantic_vectors (
            embedder TEXT NOT NULL,
            chunk_id INTEGER NOT NULL REFERENCES semantic_chunks (id),
            vector BLOB NOT NULL,
            PRIMARY KEY (embedder, chunk_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX semantic_vectors_chunk ON semantic_vectors (chunk_id)",
        # the lexical index: one row per chunk (rowid = chunk id), its terms as
        # `corral.memory._semantic_text.terms` gives them (identifiers stay whole), and
        # its tenant as one opaque token, so a search narrows by posting lists rather
        # than by reading every matching row
        """CREATE VIRTUAL TABLE semantic_fts USING fts5(
            terms, tenant, tokenize = "unicode61 tokenchars '._'"
        )""",
        "CREATE VIRTUAL TABLE semantic_fts_vocab USING fts5vocab(semantic_fts, 'row')",
    ),
)
"""Every schema step, oldest first; step ``i`` takes the component from ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version of the memory tables this code writes and reads."""

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


def migrate(conn: sqlite3.Connection, *, path: str) -> tuple[int, int]:
    """Bring the file's journal and memory tables up to date.

    Args:
        conn: an autocommit connection (``isolation_level=None``), outside a transaction.
        path: the file, for messages.

    Returns:
        The memory tables' versions before and after.

    Raises:
        ConfigError: the file is not a Corral store, or was written by a newer Corral.
    """
    migrate_store(conn, path=path)
    version = component_version(conn, COMPONENT)
    _check(version, path)
    if version == SCHEMA_VERSION:
        return version, version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = component_version(conn, COMPONENT)  # another process may have done it
        _check(version, path)
        conn.execute(_CREATE)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO memory_schema (component, version) VALUES (?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (COMPONENT, SCHEMA_VERSION),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version, SCHEMA_VERSION


def _check(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has semantic-memory tables of version {version}, newer than this "
            f"Corral understands ({SCHEMA_VERSION}); upgrade Corral to open it"
        )
