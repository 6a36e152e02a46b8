"""Fencing by lease epoch (`corral.store.testing.FencingContract`) on a shared SQLite file.

Two `SqliteStore` objects on one file are two processes' connections; the runtime side
(a stalled worker stops driving a run another worker took over) is in
tests/test_takeover.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral._clock import MockClock
from corral.store import Journal, SqliteStore
from corral.store.testing import FencingContract, SharedTenantBudgetsContract


class TestSqliteFencing(FencingContract, SharedTenantBudgetsContract):
    @pytest.fixture
    async def journal(self, tmp_path: Path) -> AsyncIterator[Journal]:
        async with SqliteStore(tmp_path / "shared.db", clock=MockClock(1_000.0)) as store:
            yield store

    @pytest.fixture
    async def second_journal(self, journal: Journal, tmp_path: Path) -> AsyncIterator[Journal]:
        async with SqliteStore(tmp_path / "shared.db", clock=MockClock(1_000.0)) as store:
            yield store
