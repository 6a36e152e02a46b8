"""The state every part of the runtime shares, and the few helpers all of them use.

`Runtime` is assembled from one class per concept (driving runs, results, approvals,
maintenance, workflows), each in its own module and each a subclass of `RuntimeBase`, which
declares the shared state in one place: what the runtime was built with (agents, journal,
clock, options) and what it holds while running (the actor system, the runs driven here,
who waits for which run). Only `Runtime.__init__` and ``__aenter__`` assign it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import anyio

from .._clock import Clock
from .._log import get_logger
from ..actors import ActorRef, ActorSystem
from ..errors import JournalError, UsageError
from ..events import Event
from ..models import Usage
from ..router import Router
from ..store import Journal
from ..subagents import RunServices, RunState, SubAgent
from ..supervisor import BreakerPolicy, BreakerState, Limits
from ..workflows import Workflow
from ._options import Alerts, Durability, Guards, Tenants

__all__ = ["RuntimeBase", "Waiter"]

log = get_logger("corral.runtime")


class Waiter:
    """Wakes whoever awaits a run when it finishes or pauses."""

    __slots__ = ("event", "finished", "waiting")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.finished: RunState | None = None
        """The state of the run, once it finished here (its result needs no fold)."""
        self.waiting = 0

    def wake(self, finished: RunState | None = None) -> None:
        """Wake every current waiter (and remember the final state, if given)."""
        if finished is not None:
            self.finished = finished
        self.event.set()
        self.event = anyio.Event()


class RuntimeBase:
    """The shared state of a runtime (see the module docstring)."""

    # -- what it was built with ---------------------------------------------------------------
    agents: Mapping[str, SubAgent]
    workflows: Mapping[str, Workflow]
    router: Router | None
    limits: Limits
    breakers: BreakerPolicy
    journal: Journal
    clock: Clock
    owner: str
    guards: Guards
    alerts: Alerts
    durability: Durability
    tenants: Tenants
    _cost: Callable[[str, Usage], float]
    _rng: random.Random

    # -- what it holds while running ----------------------------------------------------------
    _system: ActorSystem | None
    _supervisor: ActorRef | None
    _alerter: ActorRef | None
    _agent_refs: dict[str, ActorRef]
    """The parent actor of each sub-agent's and workflow's runs, by agent name."""
    _services: RunServices
    _active: set[str]
    """Runs this process drives now (it holds their leases)."""
    _stalled: dict[str, JournalError]
    """Runs stopped here because their events could not be journaled (see `wait`)."""
    _started_at: float | None
    """When this runtime's poller started (it sends heartbeats); None: it does not poll."""
    _waiters: dict[str, Waiter]
    _subscribers: list[Callable[[Event], None]]
    _fatal: BaseException | None
    _saved_breakers: dict[str, BreakerState]
    _pruned_at: float
    _owned_journal: Journal | None
    """The journal `from_settings` built, which the runtime opens and closes."""

    def _require_running(self) -> ActorSystem:
        if self._system is None:
            raise UsageError("the Runtime is not running; use `async with Runtime(...)`")
        return self._system

    def _require_supervisor(self) -> ActorRef:
        self._require_running()
        assert self._supervisor is not None  # spawned with the system
        return self._supervisor

    def active_runs(self) -> int:
        """How many runs this process drives now (started or resumed, not paused or ended)."""
        return len(self._active)

    def mailbox_depths(self) -> dict[str, int]:
        """Messages queued in each long-lived actor's mailbox, for metrics.

        The supervisor, the alerter and each agent's parent actor: run actors are left
        out, since each lives for one run and its name holds the run id. Empty while the
        runtime is not running.
        """
        system = self._system
        if system is None:
            return {}
        return {ref.name: ref.statistics().queued for ref in system.actors() if "/" not in ref.name}

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` with every event as it happens; returns an unsubscribe function.

        The callback runs inline: keep it fast. An exception in it is logged and ignored.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as exc:
                log.error("runtime.subscriber_failed", error=repr(exc), kind=event.kind)

    async def _record(self, event: Event, *, wait: bool = True) -> Event:
        """Journal an event and tell subscribers; returns it as journaled (with its seq)."""
        stored = await self.journal.append(event, wait=wait)
        self._publish(stored)
        return stored

    def _wake_waiter(self, run_id: str, finished: RunState | None = None) -> None:
        waiter = self._waiters.get(run_id)
        if waiter is not None:
            waiter.wake(finished)

    def _wake_all_waiters(self) -> None:
        for waiter in list(self._waiters.values()):
            waiter.wake()
