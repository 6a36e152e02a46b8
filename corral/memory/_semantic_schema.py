"""The tables of semantic memory (``semantic_*``), and their versioned migrations.

Versioned as a component of `corral.memory` (see ``_schema.py``). Never edit a released
migration: append one.
"""

from __future__ import annotations

import sqlite3

from ._schema import migrate_component

__all__ = ["COMPONENT", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

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


def migrate(conn: sqlite3.Connection, *, path: str) -> tuple[int, int]:
    """Bring the file's journal and semantic-memory tables up to date.

    Returns:
        The semantic-memory tables' versions before and after.

    Raises:
        ConfigError: the file is not a Corral store, or was written by a newer Corral.
    """
    return migrate_component(
        conn,
        path=path,
        component=COMPONENT,
        migrations=MIGRATIONS,
        what="semantic-memory tables",
    )
