"""The event loops Corral supports: asyncio only, checked where a Runtime or a store starts.

Corral is written against anyio, but what it stands on is not: the SQLite journal's
driver, aiosqlite, resolves asyncio futures, and Corral's own suite runs on asyncio alone.
Under trio the first journal query used to fail deep inside aiosqlite with trio's
"unrecognized yield message"; `require_asyncio` says what is wrong before anything opens.
"""

from __future__ import annotations

import sniffio

from .errors import ConfigError

__all__ = ["SUPPORTED_LOOPS", "require_asyncio"]

SUPPORTED_LOOPS = ("asyncio",)
"""The async libraries Corral runs on (what `sniffio.current_async_library` names)."""


_BECAUSE = (
    "the SQLite journal's driver (aiosqlite) is asyncio-only and Corral is tested on asyncio alone"
)


def require_asyncio(what: str, *, because: str = _BECAUSE) -> None:
    """Refuse to go on unless the running event loop is asyncio.

    Args:
        what: what is starting, for the message (``"Runtime"``, ``"SqliteJournal"``).
        because: why it needs asyncio, for the message.

    Raises:
        ConfigError: the caller runs under another async library (trio), or under none
            that `sniffio` recognises; the message names the supported loop and how to
            start it.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "an unknown async library"
    if library in SUPPORTED_LOOPS:
        return
    raise ConfigError(
        f"{what} runs on asyncio only, but this program runs on {library}: {because}. "
        "Start your program with anyio.run(main) (asyncio is its default backend) or "
        "asyncio.run(main())."
    )
