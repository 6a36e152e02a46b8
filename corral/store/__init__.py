"""Store: the append-only journal of run events and its indexes (gates, waits, leases).

Public: the `Journal` protocol, `MemoryJournal`, and the index records `RunInfo`,
`GateRecord`, `WaitRecord`, `RunStatus`.
"""

from ._journal import GateRecord as GateRecord
from ._journal import Journal as Journal
from ._journal import MemoryJournal as MemoryJournal
from ._journal import RunInfo as RunInfo
from ._journal import RunStatus as RunStatus
from ._journal import WaitRecord as WaitRecord

__all__ = ["GateRecord", "Journal", "MemoryJournal", "RunInfo", "RunStatus", "WaitRecord"]
