"""Open a journal by URL: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigError
from ._journal import Journal, MemoryJournal
from ._sqlite import SqliteJournal

__all__ = ["DEFAULT_DB_URL", "journal_from_url"]

DEFAULT_DB_URL = "sqlite:///corral.db"
"""Where the journal lives unless ``CORRAL_DB`` or an argument says otherwise."""


def journal_from_url(url: str | None = None, *, env: Mapping[str, str] | None = None) -> Journal:
    """Build (not open) the journal a URL names; default ``CORRAL_DB``, else ``./corral.db``.

    SQLite journals must be opened before use (``async with journal:``).

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    environ = os.environ if env is None else env
    url = url or environ.get("CORRAL_DB") or DEFAULT_DB_URL
    if url == "memory://":
        return MemoryJournal()
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if rest == ":memory:" or rest == "/:memory:":
            return SqliteJournal(":memory:")
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"invalid SQLite URL {url!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        return SqliteJournal(rest[1:])
    if url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            "the PostgreSQL journal is not available in this version; use sqlite:///path.db"
        )
    raise ConfigError(f"unknown journal URL {url!r}: use sqlite:///path.db or memory://")
