"""Corral: a supervised runtime for LLM agents in production.

Layering (each layer imports only from the ones above it in this list):

* `corral.errors`, `corral.models` (protocol and fakes), `corral.tools`, `corral.events`:
  data and contracts.
* `corral.actors`: a self-contained actor runtime; it imports nothing from Corral but
  `corral.errors` and `corral._log` (which imports nothing from Corral).
* `corral.router`, `corral.guardrails`, `corral.store`, `corral.supervisor`: pure rules,
  pure checks, the journal, and the supervisor actor.
* `corral.subagents`: the agent loop, one actor per run.
* `corral.Runtime`: wires them together for embedding.
* `corral.server` and `corral.cli` sit on top; `import corral` never imports them.
"""

from ._clock import Clock as Clock
from ._clock import MockClock as MockClock
from ._clock import SystemClock as SystemClock
from ._runtime import RunHandle as RunHandle
from ._runtime import RunResult as RunResult
from ._runtime import Runtime as Runtime
from ._settings import Settings as Settings
from ._settings import load_settings as load_settings
from ._task import Task as Task
from .router import Route as Route
from .router import Router as Router
from .router import Rule as Rule
from .subagents import SubAgent as SubAgent
from .supervisor import BreakerPolicy as BreakerPolicy
from .supervisor import Limits as Limits
from .tools import RetryPolicy as RetryPolicy
from .tools import Tool as Tool
from .tools import ToolContext as ToolContext
from .tools import tool as tool

__version__ = "0.1.0"

__all__ = [
    "BreakerPolicy",
    "Clock",
    "Limits",
    "MockClock",
    "RetryPolicy",
    "Route",
    "Router",
    "Rule",
    "RunHandle",
    "RunResult",
    "Runtime",
    "Settings",
    "SubAgent",
    "SystemClock",
    "Task",
    "Tool",
    "ToolContext",
    "load_settings",
    "tool",
]
