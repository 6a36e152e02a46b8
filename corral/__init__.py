"""Corral: a supervised runtime for LLM agents in production.

Layering (each layer imports only from itself and the ones above it in this list; the
test ``tests/test_layering.py`` holds every import to it):

* foundations: `corral.errors`, and private helpers that import nothing else of Corral's:
  `corral._log`, `corral._clock`, `corral._loop`, `corral._task`, `corral._timeout`,
  `corral._retry` (the one retry engine), `corral._verdict` and `corral._pii` (the
  verdict type, and the PII and secret detector that both the guardrails and the model
  adapters' error messages use);
* data and contracts: `corral.models` (protocol, adapters and fakes) and `corral.tools`;
  then `corral.events` (the journal's facts) and `corral.actors`, a self-contained actor
  runtime that imports nothing from Corral but `corral.errors`, `corral._log`,
  `corral._clock` and `corral._loop`;
* pure rules, pure checks, the journal, the supervisor actor and the trail:
  `corral.router`, `corral.guardrails`, `corral.store`, `corral.supervisor`,
  `corral.observability`, `corral.memory` (context window, episodes, semantic retrieval);
* `corral.subagents` (the agent loop, one actor per run) and `corral.workflows` (the
  workflow engine, which talks to its host through `corral.workflows.WorkflowHost`);
* `corral.runtime` (`corral.Runtime` wires them together for embedding), with
  `corral._settings` and the demo application `corral.demo`;
* this package; then `corral.server`, `corral.cli`, `corral._client` (the HTTP client
  of ``corral --server``), `corral._views` (the API's bodies, which both print),
  `corral.loadtest` (chaos profiles, the harness and its report) and `corral.replay`
  (recorded runs re-run against the current code) on top: `import corral` never imports
  them.
"""

from ._clock import Clock as Clock
from ._clock import MockClock as MockClock
from ._clock import SystemClock as SystemClock
from ._settings import Settings as Settings
from ._settings import load_settings as load_settings
from ._task import Task as Task
from .router import Route as Route
from .router import Router as Router
from .router import Rule as Rule
from .runtime import Alerts as Alerts
from .runtime import App as App
from .runtime import Durability as Durability
from .runtime import Guards as Guards
from .runtime import RunHandle as RunHandle
from .runtime import RunResult as RunResult
from .runtime import Runtime as Runtime
from .runtime import Tenants as Tenants
from .subagents import SubAgent as SubAgent
from .supervisor import BreakerPolicy as BreakerPolicy
from .supervisor import Limits as Limits
from .tools import RetryPolicy as RetryPolicy
from .tools import Tool as Tool
from .tools import ToolContext as ToolContext
from .tools import tool as tool

__version__ = "0.1.0"

__all__ = [
    "Alerts",
    "App",
    "BreakerPolicy",
    "Clock",
    "Durability",
    "Guards",
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
    "Tenants",
    "Tool",
    "ToolContext",
    "load_settings",
    "tool",
]
