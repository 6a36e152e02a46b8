"""Supervisor: the actor that enforces budgets, step caps, loop detection and breakers.

Public: `Supervisor`, the policies it enforces (`Limits`, `BreakerPolicy`, `TenantLimits`,
`DEFAULT_GATE_TTL_S`) and what it reports (`BreakerState`, `TenantUsage`, `UsageSnapshot`).
The messages the agent loop and the runtime send it are internal
(``corral.supervisor._supervisor``): only those two talk to it.
"""

from ._limits import DEFAULT_GATE_TTL_S as DEFAULT_GATE_TTL_S
from ._limits import BreakerPolicy as BreakerPolicy
from ._limits import Limits as Limits
from ._limits import TenantLimits as TenantLimits
from ._supervisor import BreakerState as BreakerState
from ._supervisor import Supervisor as Supervisor
from ._supervisor import TenantUsage as TenantUsage
from ._supervisor import UsageSnapshot as UsageSnapshot

__all__ = [
    "DEFAULT_GATE_TTL_S",
    "BreakerPolicy",
    "BreakerState",
    "Limits",
    "Supervisor",
    "TenantLimits",
    "TenantUsage",
    "UsageSnapshot",
]
