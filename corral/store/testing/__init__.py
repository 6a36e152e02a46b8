"""The journal conformance suite: what every backend must do, as tests any backend runs.

`JournalContract` is a class of pytest tests over one fixture, ``journal``, that the
backend's test module supplies: a fresh, open, empty journal per test (closed afterwards).
Subclass it in a module whose name pytest collects, and override the fixture::

    import pytest
    from corral.store import SqliteStore
    from corral.store.testing import JournalContract

    class TestSqliteJournal(JournalContract):
        @pytest.fixture
        async def journal(self, tmp_path):
            async with SqliteStore(tmp_path / "journal.db") as store:
                yield store

The tests are coroutines for pytest-asyncio (``pip install pytest pytest-asyncio``). Corral
runs them with ``asyncio_mode = "auto"``; in ``strict`` mode, declare the fixture with
``@pytest_asyncio.fixture`` instead (the tests carry the ``asyncio`` mark themselves). Every
test uses explicit timestamps and a fixed ``now``: no clock, no sleeping. A new backend (a
PostgreSQL one, say) is done when the whole class passes against it; Corral runs it
against `MemoryJournal` and `SqliteStore` in ``tests/test_store_contract.py``.

What it checks, by part of the contract (`corral.store.Journal`): the event log numbers
each run 1, 2, ... without gaps, returns stored copies and never changes its argument,
queues ``wait=False`` appends until `flush`, and reads the same eagerly and lazily; the run
index derives each run's status by `run_status`, filters and orders `runs`, keeps gates
and waits (a decision once only, never at or after the deadline; a delivery once, the
first payload winning, before or after its wait starts); leases refuse another owner's
live lease and take an expired one, batched claims take only ready runs, renewals never
claim, timers and expiries fire once; blobs are stored once by content; breaker states
are replaced, not merged; retention deletes only finished runs older than the cutoff.
Each of these parts is a class of its own (`EventLogContract`, `RunIndexContract`,
`LeasesContract`, `UpkeepContract`, `WorkersContract`: heartbeats and the live workers
with their leases, `TenantBudgetsContract`: tenants' daily holds and what they spent),
one module each; `JournalContract` is all six.

A backend that several processes share also runs `FencingContract`, which needs a second
fixture, ``second_journal`` (another store object on the same database): a claim that
takes a run over advances its lease epoch, and the writes of the previous holder are
refused with `corral.errors.LeaseLostError`. Such a backend runs
`SharedTenantBudgetsContract` too (same fixtures): two processes reserving of one tenant's
day at once never grant more than the day holds.
"""

from ._fencing import FencingContract as FencingContract
from ._index import RunIndexContract as RunIndexContract
from ._leases import LeasesContract as LeasesContract
from ._log import EventLogContract as EventLogContract
from ._tenants import SharedTenantBudgetsContract as SharedTenantBudgetsContract
from ._tenants import TenantBudgetsContract as TenantBudgetsContract
from ._upkeep import UpkeepContract as UpkeepContract
from ._workers import WorkersContract as WorkersContract

__all__ = [
    "EventLogContract",
    "FencingContract",
    "JournalContract",
    "LeasesContract",
    "RunIndexContract",
    "SharedTenantBudgetsContract",
    "TenantBudgetsContract",
    "UpkeepContract",
    "WorkersContract",
]


class JournalContract(
    EventLogContract,
    RunIndexContract,
    LeasesContract,
    UpkeepContract,
    WorkersContract,
    TenantBudgetsContract,
):
    """Every test of the contract; subclass it and provide an async ``journal`` fixture.

    Each part can also be run alone (`EventLogContract`, `RunIndexContract`,
    `LeasesContract`, `UpkeepContract`), for a backend under construction.
    """
