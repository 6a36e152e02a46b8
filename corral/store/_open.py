"""Choose a store by URL.

============================================  ==========================================
``sqlite:///relative/path.db``                a file relative to the working directory
``sqlite:////absolute/path.db``               an absolute path (four slashes)
``sqlite://:memory:``                         a private in-memory database (tests)
``...?synchronous=FULL&busy_timeout=30``      options: ``synchronous`` (NORMAL or FULL),
                                              ``busy_timeout`` (seconds a write waits for
                                              another connection's write lock before it
                                              fails; default 10), ``max_size_mb`` (the
                                              most the file may grow to, in MiB)
``memory://``                                 a `MemoryJournal` (`journal_from_url` only)
``postgresql://user:pw@host:5432/db``         a `PostgresStore` (`journal_from_url` only;
                                              ``postgres://`` too; needs
                                              ``pip install 'corral[postgres]'``)
============================================  ==========================================

Without a URL, ``CORRAL_DB`` is used, else `DEFAULT_DB_URL` (``./corral.db``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qsl, unquote

from ..errors import ConfigError, UsageError
from ._contract import Journal
from ._journal import MemoryJournal
from ._postgres import PostgresStore, redact_postgres_url
from ._sqlite import SqliteStore

__all__ = ["DEFAULT_DB_URL", "journal_from_url", "open_store", "redact_url", "store_url"]

DEFAULT_DB_URL = "sqlite:///corral.db"
"""Where the store lives unless an argument or ``CORRAL_DB`` says otherwise."""

_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:"


def store_url(url: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """Return the URL to use: `url`, else ``CORRAL_DB`` from `env`, else `DEFAULT_DB_URL`.

    Args:
        url: an explicit URL; empty or None means "not given".
        env: the environment to read ``CORRAL_DB`` from. Default: ``os.environ``.
    """
    environ = os.environ if env is None else env
    return (url or "").strip() or environ.get("CORRAL_DB", "").strip() or DEFAULT_DB_URL


def open_store(url: str | None = None, *, env: Mapping[str, str] | None = None) -> SqliteStore:
    """Build the store a URL names, not yet open: enter it with ``async with``.

    Args:
        url: a ``sqlite://`` URL (see the module docstring); default ``CORRAL_DB`` from
            `env`, else ``sqlite:///corral.db``.
        env: the environment to read ``CORRAL_DB`` from. Default: ``os.environ``.

    Returns:
        An unopened `SqliteStore`.

    Raises:
        ConfigError: a PostgreSQL URL (`journal_from_url` builds those stores), an
            unknown scheme, a malformed URL, or an unknown or invalid option.
    """
    url = store_url(url, env=env)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"unknown journal URL {url!r}: use {_FORMS}")
    if _is_postgres(scheme):
        raise ConfigError(
            f"open_store builds SQLite stores; for {redact_url(url)} use journal_from_url "
            "(or PostgresStore)"
        )
    if scheme != "sqlite":
        raise ConfigError(f"unknown journal URL {redact_url(url)!r}: use {_FORMS}")
    location, _, query = rest.partition("?")
    if "#" in location:
        raise ConfigError(f"invalid SQLite URL {url!r}: a fragment (#) is not allowed")
    if location in (":memory:", "/:memory:"):
        path = ":memory:"
    elif location.startswith("/") and len(location) > 1:
        path = unquote(location[1:])
    elif location in ("", "/"):
        raise ConfigError(f"invalid SQLite URL {url!r}: no file named; use {_FORMS}")
    else:
        raise ConfigError(
            f"invalid SQLite URL {url!r}: a SQLite URL names a file, not a host; use {_FORMS}"
        )
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout_s = 10.0
    max_size_bytes: int | None = None
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name == "synchronous":
            upper = value.upper()
            if upper == "NORMAL":
                synchronous = "NORMAL"
            elif upper == "FULL":
                synchronous = "FULL"
            else:
                raise ConfigError(f"invalid SQLite URL {url!r}: synchronous must be NORMAL or FULL")
        elif name == "busy_timeout":
            try:
                busy_timeout_s = float(value)
            except ValueError:
                busy_timeout_s = -1.0
            if not (math.isfinite(busy_timeout_s) and busy_timeout_s >= 0):
                raise ConfigError(f"invalid SQLite URL {url!r}: busy_timeout must be seconds >= 0")
        elif name == "max_size_mb":
            try:
                size_mb = float(value)
            except ValueError:
                size_mb = -1.0
            if not (math.isfinite(size_mb) and size_mb > 0):
                raise ConfigError(f"invalid SQLite URL {url!r}: max_size_mb must be MiB > 0")
            max_size_bytes = max(int(size_mb * 2**20), 1)
        else:
            raise ConfigError(
                f"invalid SQLite URL {url!r}: unknown option {name!r} "
                "(known: synchronous, busy_timeout, max_size_mb)"
            )
    return SqliteStore(
        path,
        synchronous=synchronous,
        busy_timeout_s=busy_timeout_s,
        max_size_bytes=max_size_bytes,
    )


def journal_from_url(
    url: str | None = None, *, env: Mapping[str, str] | None = None, must_exist: bool = False
) -> Journal:
    """Build the journal a URL names: `open_store`'s URLs, ``memory://``, ``postgresql://``.

    SQLite and PostgreSQL journals must be opened before use (``async with journal:``).

    Args:
        url: the journal's URL (see `open_store`).
        env: the environment to read ``CORRAL_DB`` from. Default: ``os.environ``.
        must_exist: refuse a SQLite file that does not exist yet, instead of creating
            it: what a command that only reads wants (``corral runs list`` with a
            mistyped ``--db`` must not leave an empty database behind). SQLite only: a
            PostgreSQL database must exist on its server already.

    Raises:
        ConfigError: as `open_store`, or an invalid PostgreSQL URL (`PostgresStore`).
        UsageError: `must_exist` and the SQLite file does not exist.
    """
    chosen = store_url(url, env=env)
    if chosen == "memory://":
        return MemoryJournal()
    scheme, sep, _ = chosen.partition("://")
    if sep and _is_postgres(scheme.lower()):
        if scheme.lower() not in ("postgres", "postgresql", "postgresql+asyncpg"):
            raise ConfigError(
                f"unknown journal URL {redact_url(chosen)!r}: PostgreSQL URLs are "
                "postgresql://user:password@host:port/database (asyncpg is the driver)"
            )
        return PostgresStore(chosen)
    store = open_store(url, env=env)
    if must_exist and store.path != ":memory:" and not os.path.exists(store.path):
        raise UsageError(
            f"no journal at {store.path}: nothing has been recorded there yet "
            "(check --db, CORRAL_DB or the settings' db)"
        )
    return store


def _is_postgres(scheme: str) -> bool:
    return scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+")


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    if _is_postgres(url.partition("://")[0].lower()):
        return redact_postgres_url(url)
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
