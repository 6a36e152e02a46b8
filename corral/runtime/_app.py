"""`App`: an application as the ``corral`` command and ``corral serve`` load it.

An application is what a process needs to drive runs: its sub-agents, its routing rules,
its workflows, and the runtime options that are code rather than settings (guards, tenant
budgets, alerts, prices). ``corral serve --app module:factory`` and the CLI's
``--app`` import ``module`` and call ``factory()`` (or take ``factory`` itself when it is
an `App`); everything else (limits, breakers, durability, the journal, the server's own
settings) comes from `corral.Settings`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._options import Alerts, Guards, Tenants

if TYPE_CHECKING:
    from ..models import Usage
    from ..router import Router
    from ..subagents import SubAgent
    from ..workflows import Workflow

__all__ = ["DEFAULT_APP", "App", "load_app"]

DEFAULT_APP = "corral.demo:app"
"""The application ``--app`` loads when none is named: the demo's agents and rules."""


@dataclass
class App:
    """What the CLI and ``corral serve`` run: agents, routing rules, workflows, options.

    Write a factory that returns one and point ``--app`` at it::

        # myteam/agents.py
        def app() -> App:
            return App(agents=[billing, support], router=Router([...]), guards=Guards(...))

        # corral serve --app myteam.agents:app

    Args:
        agents: the sub-agents (at least one).
        router: the routing rules. Optional with a single agent.
        workflows: the workflows runs may start or resume.
        guards: the runtime's guards. Default `Guards()`.
        tenants: daily budgets by tenant. Default: none.
        alerts: where refused calls are reported. Default: nowhere.
        cost: USD cost of a model call's usage, by model name (e.g.
            ``PriceTable.default().cost``). Default: no cost.
    """

    agents: list[SubAgent]
    router: Router | None = None
    workflows: list[Workflow] = field(default_factory=list)
    guards: Guards | None = None
    tenants: Tenants | None = None
    alerts: Alerts | None = None
    cost: Callable[[str, Usage], float] | None = None

    def runtime_options(self) -> dict[str, Any]:
        """The `Runtime` arguments this application sets (None-valued ones left out)."""
        options: dict[str, Any] = {
            "agents": list(self.agents),
            "router": self.router,
            "workflows": list(self.workflows),
        }
        for name in ("guards", "tenants", "alerts", "cost"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options


def load_app(spec: str, **kwargs: Any) -> App:
    """Import an application from ``module:attribute``.

    The attribute is an `App`, or a callable returning one (called with `kwargs`).

    Args:
        spec: ``package.module:factory``.
        **kwargs: passed to the factory.

    Raises:
        UsageError: a malformed spec, a module or attribute that cannot be imported, or
            a factory that does not return an `App` (each names what went wrong).
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--app must look like module:factory, got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load the application {spec!r}: {exc}") from exc
    application = target(**kwargs) if callable(target) and not isinstance(target, App) else target
    if not isinstance(application, App):
        if _looks_like_app(application):  # duck-typed (an older App, a dataclass of yours)
            return App(
                agents=list(application.agents),
                router=getattr(application, "router", None),
                workflows=list(getattr(application, "workflows", ()) or ()),
            )
        raise UsageError(
            f"the application {spec!r} gave {type(application).__name__}, not a corral.App"
        )
    if not application.agents:
        raise UsageError(f"the application {spec!r} has no agents")
    return application


def _looks_like_app(value: object) -> bool:
    agents = getattr(value, "agents", None)
    return isinstance(agents, Sequence) and not isinstance(agents, str | bytes | Mapping)
