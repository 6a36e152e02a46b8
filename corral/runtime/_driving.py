"""Which runs this process drives, and what happens when one pauses, ends or crashes.

Claiming, starting, waking and cancelling runs; and the callbacks of a run that pauses,
finishes, crashes repeatedly or cannot be journaled.

A run is driven by one actor under the parent actor of its agent (`RunParent`), and only
while this process holds its lease in the journal. Every path that starts an actor goes
through `RunDriving._start`; every path that ends one comes back through ``_on_finished``,
``_on_paused`` or ``_on_journal_failed``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..actors import Actor, ActorRef, RestartPolicy
from ..errors import JournalError, LeaseLostError
from ..events import Event
from ..subagents import RunState
from ..supervisor._supervisor import StopRun
from ._base import RuntimeBase, log
from ._children import child_done_key

__all__ = ["RunDriving", "RunParent", "StartRun"]


@dataclass(frozen=True, slots=True)
class StartRun:
    """Told to a `RunParent`: drive this run (its lease is already held)."""

    run_id: str
    events: Sequence[Event] | None = None
    """The run's whole journal when the caller just wrote it (a new run): saves reading it."""


class RunParent(Actor):
    """Parent of the run actors of one sub-agent or workflow.

    It starts them by run id, and ends, as failed, a run whose actor crashed more often than
    its restart policy allows.
    """

    def __init__(
        self,
        runtime: RunDriving,
        child: Callable[[str, Sequence[Event] | None], Actor],
        restart: RestartPolicy,
    ) -> None:
        self._runtime = runtime
        self._child = child
        self._restart = restart

    async def receive(self, message: Any) -> Any:
        if isinstance(message, StartRun):
            if self.system.get(f"{self.ref.name}/{message.run_id}") is not None:
                return None  # already being driven here
            run_id, seed = message.run_id, message.events

            def make() -> Actor:
                # The first actor starts from the events given; a restarted one re-reads
                # the journal, which has moved on since.
                nonlocal seed
                events, seed = seed, None
                return self._child(run_id, events)

            # A run's actor lives for one run: no need to wait for its task to start.
            await self.spawn(make, name=run_id, restart=self._restart, wait_started=False)
            return None
        return await super().receive(message)

    async def child_failed(self, child: ActorRef, error: BaseException) -> None:
        await self._runtime._fail_crashed(child.name.rsplit("/", 1)[-1], error)


class RunDriving(RuntimeBase):
    """Claims runs and drives them here; hears back when each pauses or ends."""

    def drives(self, run_id: str) -> bool:
        """True while this process drives the run (it holds the run's lease)."""
        return run_id in self._active

    def can_drive(self, agent: str) -> bool:
        """True when this runtime has the sub-agent or workflow named `agent`."""
        return agent in self._agent_refs

    async def resume(self) -> list[str]:
        """Claim and continue every run ready to go on (not waiting); returns their ids.

        Runs waiting at a gate or for an event stay as rows in the journal until the
        decision or the event arrives. Only runs of this runtime's agents and workflows
        are claimed, in batches, oldest first (round-robin by tenant with
        `Durability.fair_tenants`).
        """
        self._require_running()
        resumed: list[str] = []
        while True:
            room = self._room()
            if room <= 0:
                return resumed
            claimed = await self.journal.claim_runs(
                self.owner,
                lease_s=self.durability.lease_s,
                now=self.clock.now(),
                limit=min(room, 100),
                agents=self._agent_refs.keys(),
                exclude={*self._active, *self._stalled},
                fair=self.durability.fair_tenants,
            )
            fresh = [run_id for run_id in claimed if run_id not in self._active]
            for run_id in fresh:
                info = await self.journal.run(run_id)
                if info is None:  # pruned between the claim and now
                    continue
                self._active.add(run_id)
                await self._agent_refs[info.agent].ask(StartRun(run_id))
                resumed.append(run_id)
            if len(claimed) < min(room, 100) or not fresh:
                return resumed

    async def _start(self, run_id: str, agent: str, events: Sequence[Event] | None = None) -> bool:
        """Drive a run here if this process can claim it.

        `events`: the run's whole journal, when the caller has just written all of it.
        """
        if run_id in self._active:
            return False
        if agent not in self._agent_refs:
            log.warning("runtime.cannot_resume", run_id=run_id, reason=f"unknown agent {agent!r}")
            return False
        if run_id in self._stalled:  # a journal failure stopped it here: see `wait`
            return False
        if self._room() <= 0:
            log.info("runtime.queued", run_id=run_id, active=len(self._active))
            return False  # it waits in the journal for a worker with room
        if not await self.journal.claim(
            run_id, self.owner, lease_s=self.durability.lease_s, now=self.clock.now()
        ):
            return False
        self._active.add(run_id)
        await self._agent_refs[agent].ask(StartRun(run_id, events))
        return True

    async def _wake(self, run_id: str) -> None:
        """A gate was decided or an event delivered: drive the run if it is ready.

        A run whose agent this runtime does not have is left to a process that has it
        (its poller, or its `resume`, finds the run ready).
        """
        state = RunState.fold(run_id, await self.journal.read(run_id))
        if state.done or state.paused:
            return
        if state.agent not in self._agent_refs:
            log.info("runtime.left_to_others", run_id=run_id, agent=state.agent)
            return
        await self._start(run_id, state.agent)

    async def _release(self, run_id: str) -> None:
        """Stop driving a paused run here: its lease back, its waiters woken.

        It is picked straight back up if it was decided or delivered while pausing.
        """
        self._active.discard(run_id)
        with anyio.CancelScope(shield=True):
            await self.journal.release(run_id, self.owner)
        self._wake_waiter(run_id)
        await self._wake(run_id)

    async def _on_finished(self, state: RunState) -> None:
        # No release: recording the end of the run already cleared its lease.
        self._active.discard(state.run_id)
        self._wake_waiter(state.run_id, state)
        if state.parent_run_id is not None:  # a workflow step: its workflow may be waiting
            await self.deliver(child_done_key(state.run_id))
        if self.durability.max_active_runs is not None and self._system is not None:
            try:  # room for a queued run: pull it now, not at the next tick
                await self.resume()
            except JournalError as exc:  # the next tick tries again
                log.error("runtime.pull_failed", error=str(exc))

    def _room(self) -> int:
        """How many more runs this process may drive now (`Durability.max_active_runs`)."""
        cap = self.durability.max_active_runs
        return 1 << 30 if cap is None else cap - len(self._active)

    async def _on_paused(self, state: RunState) -> None:
        await self._release(state.run_id)

    async def deliver(self, key: str, payload: Any = None) -> str | None:
        """Deliver an external event (a webhook) to the run waiting on `key`.

        A delivery that arrives before the wait starts is kept for it.

        Returns:
            The id of the run woken, or None when none waits yet.
        """
        run_id = await self.journal.deliver(key, payload, now=self.clock.now())
        if run_id is not None and self._system is not None:
            await self._wake(run_id)
        return run_id

    async def _on_journal_failed(self, run_id: str, error: JournalError) -> None:
        """A run's events could not be journaled: stop driving it here, tell its waiters.

        A `LeaseLostError` means another worker holds the run now: it is not an error of
        the run, which goes on there, and this runtime's waiters keep following it.

        The run stays unfinished in the journal (even its end could not be written). This
        runtime does not drive it again: each attempt would ask the model again while the
        disk stays full. A Runtime started on the journal later resumes it.
        """
        self._active.discard(run_id)
        if isinstance(error, LeaseLostError):
            # Another worker took the run over after this one stalled past its lease: it
            # goes on there. A waiter here follows it through the journal; this store's
            # stale claim is dropped (a release never frees the new holder's lease).
            log.warning("runtime.lease_lost", run_id=run_id, holder=error.holder, epoch=error.epoch)
            self._wake_waiter(run_id)
            with anyio.CancelScope(shield=True), contextlib.suppress(JournalError):
                await self.journal.release(run_id, self.owner)
            return
        self._stalled[run_id] = error
        log.error("runtime.journal_failed", run_id=run_id, error=str(error))
        self._wake_waiter(run_id)
        if error.sqlite_error.startswith("SQLITE_BUSY"):
            return  # releasing would wait for the lock again: the lease runs out instead
        with anyio.CancelScope(shield=True), contextlib.suppress(JournalError):
            await self.journal.release(run_id, self.owner)  # let another process take it

    async def _fail_crashed(self, run_id: str, error: BaseException) -> None:
        """End a run whose actor crashed more often than its restart policy allows."""
        with anyio.CancelScope(shield=True):
            try:
                state = RunState.fold(run_id, await self.journal.read(run_id))
                if not state.done:
                    finished = state.finished_event(
                        "failed",
                        reason=f"the run crashed repeatedly and was given up: {error!r}",
                        ts=self.clock.now(),
                    )
                    state.apply(await self._record(finished))
            except JournalError as failed:
                told = JournalError(
                    f"{failed}; it was recording that the run crashed repeatedly: {error!r}",
                    path=failed.path,
                    sqlite_error=failed.sqlite_error,
                    run_id=run_id,
                )
                told.__cause__ = failed
                await self._on_journal_failed(run_id, told)
                return
            await self._on_finished(state)

    async def cancel(self, run_id: str, *, reason: str = "cancelled by request") -> bool:
        """Stop a run now: driven here, waiting, or ready with nobody driving it.

        A run driven here stops its in-flight call at once. A paused run, or one that no
        live process holds (ready after a decision, or left by a crashed worker), is
        claimed and ended here. A run another live process drives is asked to stop
        (`Leases.request_cancel`): that process ends it, ``cancelled``, as soon as it hears
        (at once on PostgreSQL, at its next tick otherwise).

        Returns:
            True if this call ended the run; False when it had already ended, or another
            process drives it and was asked to end it (`journal.run(run_id)` tells which).
        """
        if await self._require_supervisor().ask(StopRun(run_id, reason=reason)):
            return True  # driven here: it ends itself, journaling why
        state = RunState.fold(run_id, await self.journal.read(run_id))
        if state.done or run_id in self._active:
            return False
        claimed = False
        if not state.paused:  # ready to go on: only if no live process holds it
            now = self.clock.now()
            claimed = await self.journal.claim(
                run_id, self.owner, lease_s=self.durability.lease_s, now=now
            )
            if not claimed:  # another live process drives it: ask it to stop the run
                await self.journal.request_cancel(run_id, reason, now=now)
                return False
            state = RunState.fold(run_id, await self.journal.read(run_id))  # as claimed
        try:
            if state.done:
                return False
            finished = state.finished_event("cancelled", reason=reason, ts=self.clock.now())
            await self._record(finished)
        finally:
            if claimed:
                with anyio.CancelScope(shield=True), contextlib.suppress(JournalError):
                    await self.journal.release(run_id, self.owner)
        self._wake_waiter(run_id)
        return True

    def _on_fatal(self, error: BaseException) -> None:
        """A tool or model raised `KeyboardInterrupt`, `SystemExit` or another `BaseException`.

        Its run is already journaled as failed. The runtime stops (every other run stays
        resumable) and raises `error` from ``async with`` and from any `wait`.
        """
        if self._fatal is None:
            self._fatal = error
        if self._system is not None:
            self._system.abort(error)
        self._wake_all_waiters()
