"""The embedded runtime: `Runtime`, its option objects, and what a run returns.

Public: `Runtime`, `RunHandle`, `RunResult`, `App` (an application as ``--app`` loads
it, with `load_app`), and the option value objects `Guards`,
`Alerts`, `Durability`, `Tenants`. The modules hold one concept each (see
``corral/runtime/_runtime.py``).
"""

from ._app import App as App
from ._app import load_app as load_app
from ._options import Alerts as Alerts
from ._options import Durability as Durability
from ._options import Guards as Guards
from ._options import Tenants as Tenants
from ._results import RunHandle as RunHandle
from ._results import RunResult as RunResult
from ._runtime import Runtime as Runtime

__all__ = [
    "Alerts",
    "App",
    "Durability",
    "Guards",
    "RunHandle",
    "RunResult",
    "Runtime",
    "Tenants",
    "load_app",
]
