"""Supervisor: the actor that enforces budgets, step caps, loop detection and breakers.

Public: `Supervisor` and its messages, `Limits`, `BreakerPolicy`.
"""

from ._limits import BreakerPolicy as BreakerPolicy
from ._limits import Limits as Limits
from ._limits import TenantLimits as TenantLimits
from ._supervisor import BreakerState as BreakerState
from ._supervisor import CallFailed as CallFailed
from ._supervisor import CloseRun as CloseRun
from ._supervisor import Deny as Deny
from ._supervisor import GetBreakers as GetBreakers
from ._supervisor import GetTenantUsage as GetTenantUsage
from ._supervisor import GetUsage as GetUsage
from ._supervisor import OpenRun as OpenRun
from ._supervisor import Permit as Permit
from ._supervisor import ReserveModel as ReserveModel
from ._supervisor import ReserveTool as ReserveTool
from ._supervisor import SeedBreakers as SeedBreakers
from ._supervisor import SeedTenant as SeedTenant
from ._supervisor import SettleModel as SettleModel
from ._supervisor import StopRun as StopRun
from ._supervisor import Supervisor as Supervisor
from ._supervisor import TenantUsage as TenantUsage
from ._supervisor import ToolOutcome as ToolOutcome
from ._supervisor import UsageSnapshot as UsageSnapshot

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "CallFailed",
    "CloseRun",
    "Deny",
    "GetBreakers",
    "GetTenantUsage",
    "GetUsage",
    "Limits",
    "OpenRun",
    "Permit",
    "ReserveModel",
    "ReserveTool",
    "SeedBreakers",
    "SeedTenant",
    "SettleModel",
    "StopRun",
    "Supervisor",
    "TenantLimits",
    "TenantUsage",
    "ToolOutcome",
    "UsageSnapshot",
]
