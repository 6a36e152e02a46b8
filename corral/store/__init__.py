"""Store: the append-only journal of run events and its indexes (gates, waits, leases).

Public: the contract, split by concern (`EventLog`, `RunIndex`, `Leases`, `Blobs`,
`Upkeep`, and `Journal`, all of them), its backends `MemoryJournal`, `SqliteStore`
(alias `SqliteJournal`) and `PostgresStore` (``corral[postgres]``), `journal_from_url` /
`open_store`, the index records `RunInfo`, `GateRecord`, `WaitRecord`, `RunStatus`, the
rules every backend applies (`run_status`, `check_not_expired`, `gate_expired`), and the
SQLite extras `RunRow`, `WaitRow`, `StoreStatistics`, the worker registry's `WorkerInfo`
(`Workers`), tenants' daily budgets reserved across processes (`TenantBudgets`,
`TenantAsk`, `TenantHold`, `TenantSpend`, `TenantDenied`, `tenant_grant`, `tenant_day`),
and `WakeupSource` (a journal that tells every process of a change at once:
PostgreSQL's LISTEN/NOTIFY). `corral.store.testing` holds the conformance suite for
backends.
"""

from ._contract import WAKEUP_KINDS as WAKEUP_KINDS
from ._contract import Blobs as Blobs
from ._contract import EventLog as EventLog
from ._contract import GateRecord as GateRecord
from ._contract import Journal as Journal
from ._contract import Leases as Leases
from ._contract import RunIndex as RunIndex
from ._contract import RunInfo as RunInfo
from ._contract import RunStatus as RunStatus
from ._contract import TenantAsk as TenantAsk
from ._contract import TenantBudgets as TenantBudgets
from ._contract import TenantDenied as TenantDenied
from ._contract import TenantHold as TenantHold
from ._contract import TenantSpend as TenantSpend
from ._contract import Upkeep as Upkeep
from ._contract import WaitRecord as WaitRecord
from ._contract import WakeupSource as WakeupSource
from ._contract import WorkerInfo as WorkerInfo
from ._contract import Workers as Workers
from ._contract import check_not_expired as check_not_expired
from ._contract import gate_expired as gate_expired
from ._contract import run_status as run_status
from ._contract import tenant_day as tenant_day
from ._contract import tenant_grant as tenant_grant
from ._journal import MemoryJournal as MemoryJournal
from ._migrations import SCHEMA_VERSION as SCHEMA_VERSION
from ._open import DEFAULT_DB_URL as DEFAULT_DB_URL
from ._open import journal_from_url as journal_from_url
from ._open import open_store as open_store
from ._open import store_url as store_url
from ._postgres import PostgresStore as PostgresStore
from ._rows import RunRow as RunRow
from ._rows import StoreStatistics as StoreStatistics
from ._rows import WaitRow as WaitRow
from ._sqlite import SqliteJournal as SqliteJournal
from ._sqlite import SqliteStore as SqliteStore

__all__ = [
    "DEFAULT_DB_URL",
    "SCHEMA_VERSION",
    "WAKEUP_KINDS",
    "Blobs",
    "EventLog",
    "GateRecord",
    "Journal",
    "Leases",
    "MemoryJournal",
    "PostgresStore",
    "RunIndex",
    "RunInfo",
    "RunRow",
    "RunStatus",
    "SqliteJournal",
    "SqliteStore",
    "StoreStatistics",
    "TenantAsk",
    "TenantBudgets",
    "TenantDenied",
    "TenantHold",
    "TenantSpend",
    "Upkeep",
    "WaitRecord",
    "WaitRow",
    "WakeupSource",
    "WorkerInfo",
    "Workers",
    "check_not_expired",
    "gate_expired",
    "journal_from_url",
    "open_store",
    "run_status",
    "store_url",
    "tenant_day",
    "tenant_grant",
]
