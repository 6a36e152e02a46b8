"""Store: the append-only journal of run events and its indexes (gates, waits, leases).

Public: the `Journal` protocol, `MemoryJournal`, `SqliteStore` (alias `SqliteJournal`),
`journal_from_url` / `open_store`, and the index records `RunInfo`, `GateRecord`,
`WaitRecord`, `RunStatus`, `RunRow`, `WaitRow`, `StoreStatistics`.
"""

from ._journal import GateRecord as GateRecord
from ._journal import Journal as Journal
from ._journal import MemoryJournal as MemoryJournal
from ._journal import RunInfo as RunInfo
from ._journal import RunStatus as RunStatus
from ._journal import WaitRecord as WaitRecord
from ._migrations import SCHEMA_VERSION as SCHEMA_VERSION
from ._open import DEFAULT_DB_URL as DEFAULT_DB_URL
from ._open import journal_from_url as journal_from_url
from ._open import open_store as open_store
from ._open import store_url as store_url
from ._rows import RunRow as RunRow
from ._rows import StoreStatistics as StoreStatistics
from ._rows import WaitRow as WaitRow
from ._sqlite import SqliteJournal as SqliteJournal
from ._sqlite import SqliteStore as SqliteStore

__all__ = [
    "DEFAULT_DB_URL",
    "SCHEMA_VERSION",
    "GateRecord",
    "Journal",
    "MemoryJournal",
    "RunInfo",
    "RunRow",
    "RunStatus",
    "SqliteJournal",
    "SqliteStore",
    "StoreStatistics",
    "WaitRecord",
    "WaitRow",
    "journal_from_url",
    "open_store",
    "store_url",
]
