"""Store: the append-only journal of run events and its indexes (gates, waits, leases).

Public: the `Journal` protocol, `MemoryJournal`, `SqliteJournal`, `journal_from_url`, and
the index records `RunInfo`, `GateRecord`, `WaitRecord`, `RunStatus`.
"""

from ._journal import GateRecord as GateRecord
from ._journal import Journal as Journal
from ._journal import MemoryJournal as MemoryJournal
from ._journal import RunInfo as RunInfo
from ._journal import RunStatus as RunStatus
from ._journal import WaitRecord as WaitRecord
from ._open import DEFAULT_DB_URL as DEFAULT_DB_URL
from ._open import journal_from_url as journal_from_url
from ._sqlite import SqliteJournal as SqliteJournal

__all__ = [
    "DEFAULT_DB_URL",
    "GateRecord",
    "Journal",
    "MemoryJournal",
    "RunInfo",
    "RunStatus",
    "SqliteJournal",
    "WaitRecord",
    "journal_from_url",
]
