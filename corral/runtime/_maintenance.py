"""Keeping durable runs moving: the poller's tick, expiries, leases, retention, breakers.

Each part of a tick is one batched journal call (`expire_gates`, `expire_waits`,
`renew_leases`, `prune`, `claim_runs`), so a tick costs the same with ten runs in the
journal as with a million. A failing part is logged and the others still run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..actors import Actor
from ..store import WakeupSource, WorkerInfo
from ..supervisor import BreakerState
from ..supervisor._supervisor import GetBreakers, SeedBreakers, StopRun
from ._approvals import Approvals
from ._base import log

__all__ = ["Listener", "Maintenance", "Poller"]

_HOST = socket.gethostname()


@functools.cache
def _version() -> str:
    """The installed Corral's version, as the registry shows it (empty if not installed)."""
    import importlib.metadata  # on the first heartbeat, not at import

    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return ""


_PRUNE_EVERY_S = 3600.0
"""How often the poller prunes finished runs past their retention."""


class _Tick:
    """Message the poller sends itself."""


class Poller(Actor):
    """Wakes the runtime every `interval` seconds: expiries, approvals from elsewhere, leases."""

    def __init__(self, runtime: Maintenance, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval

    async def started(self) -> None:
        if isinstance(self._runtime.journal, WakeupSource):
            if self.system.get(f"{self.ref.name}/listen") is None:
                source = self._runtime.journal
                await self.spawn(lambda: Listener(self._runtime, source), name="listen")
        await self.ref.tell(_Tick())

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            await anyio.sleep(self._interval)
            if self._runtime._system is None:
                return None  # the runtime is stopping: no more ticks
            try:
                await self._runtime._tick()  # each failing part is logged there
            except Exception as exc:  # a bad tick must not stop the polling
                log.error("runtime.tick_failed", part="tick", error=repr(exc))
            await self.ref.tell(_Tick())
            return None
        return await super().receive(message)


class _Listen:
    """Message the listener sends itself."""


class Listener(Actor):
    """Wakes runs the moment any process changes them, when the journal can tell (NOTIFY).

    A child of the `Poller`, started when the journal is a `WakeupSource`: the poller
    stays the fallback for a notification lost.
    """

    def __init__(self, runtime: Maintenance, source: WakeupSource) -> None:
        self._runtime = runtime
        self._source = source

    async def started(self) -> None:
        await self.ref.tell(_Listen())

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Listen):
            await self._source.watch_wakeups(self._runtime._on_wakeup)  # until cancelled
            return None
        return await super().receive(message)


class Maintenance(Approvals):
    """The periodic duties of a runtime, and breaker and budget state across restarts."""

    async def tick(self) -> None:
        """Expire overdue gates and waits, renew leases, and drive runs ready but idle here.

        Called every `Durability.poll_interval_s` seconds; tests call it after moving a
        `MockClock`. Every part runs even when an earlier one fails (each failure is
        logged as ``runtime.tick_failed``).

        Raises:
            Exception: the first part's failure, once every part has run.
        """
        failures = await self._tick()
        if failures:
            raise failures[0]

    async def _tick(self) -> list[Exception]:
        """One tick; returns the failures (logged), so the poller never stops on one."""
        self._require_running()
        now = self.clock.now()
        failures: list[Exception] = []
        parts: list[tuple[str, Callable[[float], Awaitable[None]]]] = [
            ("expire_gates", self._expire_gates),
            ("expire_waits", self._expire_waits),
            ("renew_leases", self._renew_leases),
            ("heartbeat", self._heartbeat),
            ("cancel_requests", self._tick_cancel_requests),
            ("save_breakers", self._tick_save_breakers),
            ("prune", self._prune),
            ("resume", self._tick_resume),
        ]
        for name, part in parts:
            try:
                await part(now)
            except Exception as exc:
                log.error("runtime.tick_failed", part=name, error=repr(exc))
                failures.append(exc)
        self._wake_all_waiters()  # runs driven elsewhere may have moved on: look again
        return failures

    async def _on_wakeup(self, kind: str, run_id: str) -> None:
        """A change committed by some process (`WakeupSource`): act on it now, not at a tick.

        Waiters of the run are woken; a run left ready (decided, delivered, queued,
        released) is claimed and driven here if nobody holds it and this process has
        room. ``resync`` (the journal's connection was lost and is back: notifications
        may have been lost) looks at every ready run, and drives again the runs stopped
        here because their events could not be written meanwhile (their leases are still
        this process's, unless they ran out and another worker took them).
        """
        if self._system is None:
            return
        if kind == "resync":
            if self._stalled:  # the database is back: drive again the runs it stopped
                log.info("runtime.journal_back", runs=len(self._stalled))
                self._stalled.clear()
            await self.resume()
            self._wake_all_waiters()
            return
        if kind == "cancel_requested":
            requested = await self.journal.cancel_requests([run_id])
            if run_id in requested:
                await self._stop_requested(run_id, requested[run_id])
            return
        self._wake_waiter(run_id)
        if kind == "run_finished" or run_id in self._active or self._room() <= 0:
            return
        info = await self.journal.run(run_id)
        now = self.clock.now()
        if info is None or info.status != "running" or info.agent not in self._agent_refs:
            return
        held = info.owner not in (None, self.owner) and (info.lease_until or 0.0) > now
        if held or (info.wake_at is not None and info.wake_at > now):
            return  # another live worker drives it, or its timer is not due
        await self._wake(run_id)

    async def _expire_gates(self, now: float) -> None:
        for gate in await self.journal.expire_gates(now, note=self._expiry_note()):
            if gate.decided is not None:
                self._publish(gate.decided)

    async def _expire_waits(self, now: float) -> None:
        for resolved in await self.journal.expire_waits(now):
            self._publish(resolved)

    async def _renew_leases(self, now: float) -> None:
        """Extend the leases of the runs driven here, and only while this process holds them.

        A snapshot: runs start and pause while this awaits. A run that paused meanwhile
        left `_active` before releasing its lease, and the renewal only extends a lease
        still held, so a paused run is never claimed again here (after a crash, another
        process would otherwise wait for that lease to run out).
        """
        active = list(self._active)
        if active:
            await self.journal.renew_leases(
                self.owner, lease_s=self.durability.lease_s, now=now, run_ids=active
            )

    async def _tick_cancel_requests(self, now: float) -> None:
        """End the runs driven here that another process asked to cancel."""
        active = list(self._active)
        if active:
            for run_id, reason in (await self.journal.cancel_requests(active)).items():
                await self._stop_requested(run_id, reason)

    async def _stop_requested(self, run_id: str, reason: str) -> None:
        if run_id in self._active:
            log.info("runtime.cancel_requested", run_id=run_id, reason=reason)
            await self._require_supervisor().ask(StopRun(run_id, reason=reason))

    async def _heartbeat(self, now: float) -> None:
        """Tell the journal's registry this worker is alive (``corral workers``)."""
        started = self._started_at if self._started_at is not None else now
        await self.journal.heartbeat(
            WorkerInfo(
                owner=self.owner,
                host=_HOST,
                pid=os.getpid(),
                started_at=started,
                seen_at=now,
                max_active_runs=self.durability.max_active_runs,
                version=_version(),
            )
        )

    async def renew_leases(self) -> None:
        """Extend the leases of the runs driven here now, as every tick does.

        For a process that drives runs without a poller (``poll_interval_s=None``), such
        as the ``corral`` command while it follows a decided run.

        Raises:
            JournalError: the journal could not be written (the leases then run out).
        """
        self._require_running()
        await self._renew_leases(self.clock.now())

    async def _tick_save_breakers(self, now: float) -> None:
        await self._save_breakers()

    async def _prune(self, now: float) -> None:
        days = self.durability.retention_days
        if days is None or now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        pruned = await self.journal.prune(older_than_s=days * 86_400, now=now)
        if pruned:
            log.info("runtime.pruned", runs=pruned)

    async def _tick_resume(self, now: float) -> None:
        await self.resume()

    async def _restore_supervisor(self) -> None:
        """After a restart: the breaker states saved (tenants' spending is in the journal)."""
        supervisor = self._require_supervisor()
        saved = await self.journal.load_breakers()
        if saved:
            states = {tool: BreakerState(**state) for tool, state in saved.items()}
            await supervisor.ask(SeedBreakers(states))
            self._saved_breakers = states

    async def _save_breakers(self) -> None:
        """Keep breaker states in the journal, so they survive a restart."""
        if self._supervisor is None:
            return
        states: dict[str, BreakerState] = await self._supervisor.ask(GetBreakers())
        if states != self._saved_breakers:
            await self.journal.save_breakers(
                {tool: dataclasses.asdict(state) for tool, state in states.items()}
            )
            self._saved_breakers = states
