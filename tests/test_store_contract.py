"""The journal conformance suite (`corral.store.testing`) against both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral._clock import MockClock
from corral.store import Journal, MemoryJournal, SqliteStore
from corral.store.testing import JournalContract


class TestMemoryJournal(JournalContract):
    @pytest.fixture
    async def journal(self) -> AsyncIterator[Journal]:
        async with MemoryJournal(clock=MockClock(1_000.0)) as journal:
            yield journal


class TestSqliteStore(JournalContract):
    @pytest.fixture
    async def journal(self, tmp_path: Path) -> AsyncIterator[Journal]:
        async with SqliteStore(tmp_path / "journal.db", clock=MockClock(1_000.0)) as store:
            yield store


class TestSqliteStoreInMemory(JournalContract):
    """The private in-memory database: one connection for reads and writes."""

    @pytest.fixture
    async def journal(self) -> AsyncIterator[Journal]:
        async with SqliteStore(":memory:", clock=MockClock(1_000.0)) as store:
            yield store
