"""Group commit, shared by the SQLite and PostgreSQL stores: one engine, two back ends.

Events appended in the same event-loop tick go out together: the first appender that
must wait leads the batch, yields once so the others of the tick join it, commits it (the
back end's `GroupCommit._commit`), and wakes them. A run's events are numbered at once
from a counter kept in memory (read from the database the first time a run appends here);
a batch that fails fails only the runs it names (`GroupCommit._settle`), each run's later
queued events are dropped with it (writing them would leave a gap), and its counter is
read again at its next append. Conditional appends (gate decisions, wait resolutions,
deliveries, expiries) hold back the appends of their runs with a fence
(`GroupCommit._fenced_runs`) while their transaction runs, so nothing can be numbered in
between. One batch is in flight at a time; the next one gathers meanwhile.

Written here, not taken from a library: no database library does group commit of
numbered per-run events with fencing and per-run failure (aiosqlite and asyncpg give a
connection; the batching and numbering rules are Corral's journal contract). This module
is the hot path of every append: `GroupCommit.append` numbers, copies, encodes and queues,
and nothing more, on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Generic, TypeVar

import anyio
import anyio.lowlevel

from ..events import Event, RunStarted
from ._codec import LazyEvents, decode, encode, with_seq
from ._failure import Failure

__all__ = ["RELEASES", "GroupBatch", "GroupCommit", "Row"]

RELEASES = frozenset({"gate_opened", "wait_started", "run_finished"})
"""Kinds after which a run pauses or ends: its counter leaves memory once they commit."""

Row = tuple[str, int, str, float, str]
"""An ``events`` row: run_id, seq, kind, ts, payload (JSON)."""


class GroupBatch:
    """Events committed together, and the signal that they were.

    A back end's batch adds what its commit needs (index statements, claims) by
    overriding `marked` (called for the kinds in `MARKED`) and `dropped`.
    """

    __slots__ = (
        "done",
        "errors",
        "finished",
        "nbytes",
        "releases",
        "rows",
        "started",
        "touch",
        "waited",
        "waiters",
        "wake",
    )

    MARKED: ClassVar[frozenset[str]] = RELEASES | {"run_started"}
    """The kinds `add` hands to `marked`."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.touch: dict[str, tuple[int, float]] = {}
        """Per run: its last seq and ts in this batch."""
        self.releases: list[tuple[str, int]] = []
        self.started: set[str] = set()
        """Runs whose ``run_started`` is in this batch: new runs, not yet visible to others."""
        self.finished: set[str] = set()
        """Runs whose ``run_finished`` is in this batch."""
        self.waited: set[str] = set()
        """Runs with an appender waiting on this batch (they will be told of a failure)."""
        self.nbytes = 0
        self.waiters = 0
        self.wake = anyio.Event()
        """Set when the batch is committed, or when its waiters must elect a leader."""
        self.done = False
        self.errors: dict[str, Failure] = {}

    def add(self, event: Event, run_id: str, seq: int, payload: str, wait: bool) -> None:
        """Queue a stored event (of `run_id`, numbered `seq`) and its JSON text."""
        ts, kind = event.ts, event.kind
        self.rows.append((run_id, seq, kind, ts, payload))
        self.nbytes += len(payload)
        self.touch[run_id] = (seq, ts)
        if kind in self.MARKED:
            self.marked(event, run_id, seq, kind)
        if wait:
            self.waiters += 1
            self.waited.add(run_id)

    def marked(self, event: Event, run_id: str, seq: int, kind: str) -> None:
        """Note a run that pauses, ends or starts in this batch."""
        if kind in RELEASES:
            self.releases.append((run_id, seq))
            if kind == "run_finished":
                self.finished.add(run_id)
        elif kind == "run_started":
            self.started.add(run_id)

    def wait(self, run_id: str) -> None:
        """Count one more appender of `run_id` waiting for this batch."""
        self.waiters += 1
        self.waited.add(run_id)

    def remove_run(self, run_id: str) -> tuple[list[int], bool]:
        """Drop a run's events; return their seqs and whether one had a waiter."""
        if run_id not in self.touch:
            return [], False
        seqs = [row[1] for row in self.rows if row[0] == run_id]
        self.rows = [row for row in self.rows if row[0] != run_id]
        self.releases = [r for r in self.releases if r[0] != run_id]
        self.nbytes = sum(len(row[4]) for row in self.rows)
        del self.touch[run_id]
        self.started.discard(run_id)
        self.finished.discard(run_id)
        self.dropped(run_id)
        waited = run_id in self.waited
        self.waited.discard(run_id)
        return seqs, waited

    def dropped(self, run_id: str) -> None:
        """Drop what a back end queued for `run_id` beyond its events (nothing here)."""


_B = TypeVar("_B", bound=GroupBatch)


class GroupCommit(Generic[_B]):
    """The write path both stores share: numbering, batching, failures, fences.

    A back end provides `_check_open`, `_new_batch`, `_last_seq`, `_commit` (which ends
    with `_settle`), `_explain` and `_event_rows`; see `SqliteEngine` and
    `PostgresEngine`. You should never need to use this class directly.
    """

    where: str
    """The database as messages name it: a file, or a URL without its password."""
    _max_events: int
    _max_bytes: int

    def _reset_queue(self) -> None:
        """Forget every counter, lease, fence and queued batch (on open and close)."""
        self._seq: dict[str, int] = {}
        self._held: dict[str, tuple[str, int]] = {}
        """Leases this store claimed and still holds: run id -> (owner, epoch). Its appends
        to those runs are fenced: refused once another claim moved the lease on."""
        self._fences: dict[str, anyio.Event] = {}
        self._fenced = 0
        """Conditional appends finished so far (a counter read before is stale if it moved)."""
        self._poisoned: dict[str, Failure] = {}
        self._pending = self._new_batch()
        self._inflight: _B | None = None
        """The batch being committed."""
        self._leading = False
        self._transactions = 0
        self._events = 0
        self._largest = 0
        self._conditional_count = 0
        self._failed = 0

    # -- what a back end provides ---------------------------------------------------------------

    def _check_open(self) -> None:
        """Raise `UsageError` unless the store is open (and not closing)."""
        raise NotImplementedError

    def _new_batch(self) -> _B:
        """An empty batch of the back end's kind."""
        raise NotImplementedError

    async def _last_seq(self, run_id: str) -> int:
        """The run's last committed seq (0 for none), read from the database."""
        raise NotImplementedError

    async def _commit(self, batch: _B) -> None:
        """Write `batch` in one transaction (or run by run), then `_settle` it."""
        raise NotImplementedError

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        """What went wrong, in words (no secrets), and the database's error name, if any."""
        raise NotImplementedError

    async def _event_rows(self, run_id: str) -> list[tuple[int, str]]:
        """A run's (seq, payload) rows in order, read after its queued events commit."""
        raise NotImplementedError

    # -- the log --------------------------------------------------------------------------------

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        """Append one event; return the stored copy, numbered 1, 2, ... per run, no gaps.

        The copy is numbered and serialised at once; `event` itself is not changed. A
        cancelled waiting append may still be committed: once numbered, an event is never
        withdrawn (that would leave a gap).

        Args:
            event: the event; its ``seq`` is ignored.
            wait: True (default): return once the event is committed, together with every
                event appended in the same tick (group commit). False: return at once; the
                event goes with the next batch, in order. If that batch fails, the next
                append of the same run raises (or `close` does).

        Returns:
            The stored event: ``event.model_copy(update={"seq": n})``.

        Raises:
            JournalError: the event could not be written (the message names the database,
                the run, the seqs and the database's error: a full disk, an I/O error, a
                lost connection, a lock held too long), or an earlier ``wait=False`` event
                of this run could not be. Nothing of the run committed before is lost, and
                the next append of the run numbers after its last committed event.
            LeaseLostError: another process took the run over (its lease epoch moved on).
            UsageError: the store is not open.
        """
        run_id = event.run_id
        while True:
            self._check_open()
            if self._poisoned:
                failure = self._poisoned.pop(run_id, None)
                if failure is not None:
                    raise failure.error()
            pending = self._pending
            if len(pending.rows) >= self._max_events or pending.nbytes >= self._max_bytes:
                await self._flush()  # back-pressure: the queue is full
                continue
            if run_id in self._fences or run_id not in self._seq:
                await self._prepare(event)
                continue
            break
        seq = self._seq[run_id] + 1
        stored = with_seq(event, seq)
        payload = encode(stored)
        self._seq[run_id] = seq
        pending.add(stored, run_id, seq, payload, wait)
        if wait:
            await self._wait_for(pending, run_id)
        return stored

    async def _prepare(self, event: Event) -> None:
        """Wait out a conditional append on the run, or load the run's counter."""
        run_id = event.run_id
        fence = self._fences.get(run_id)
        if fence is not None:
            await fence.wait()
            return
        if isinstance(event, RunStarted):
            self._seq[run_id] = 0  # a new run; a reused id fails on the primary key
            return
        fenced = self._fenced
        last = await self._last_seq(run_id)
        # A conditional append that ran while we read may have written after `last`: then
        # the count is stale, and the next pass reads again.
        if fenced == self._fenced and run_id not in self._fences and run_id not in self._seq:
            self._seq[run_id] = last

    async def _wait_for(self, batch: _B, run_id: str) -> None:
        try:
            await self._until_done(batch)
        finally:
            batch.waiters -= 1
        failure = batch.errors.get(run_id)
        if failure is not None:
            raise failure.error()

    async def _until_done(self, batch: _B) -> None:
        """Wait until `batch` is committed, leading a batch whenever nobody leads."""
        while not batch.done:
            if self._leading:
                await batch.wake.wait()
            else:
                await self._lead()

    async def flush(self) -> None:
        """Commit every event appended so far (including ``wait=False`` ones).

        Raises:
            UsageError: the store is not open.
        """
        self._check_open()
        await self._flush()

    async def _flush(self) -> None:
        target = self._pending if self._pending.rows else self._inflight
        if target is None:
            return
        target.waiters += 1
        try:
            await self._until_done(target)
        finally:
            target.waiters -= 1

    async def _lead(self) -> None:
        """Commit the pending batch as its leader, then hand over to the next one's waiters.

        One batch is in flight at a time; the next one gathers meanwhile. (Two in flight
        could not hold events of the same run, or a failure of the first would leave a
        gap; in a runtime's steps nearly every run of the next batch is in the one in
        flight, so a second connection would not shorten anyone's wait.)
        """
        self._leading = True
        if self._pending.wake.is_set():
            self._pending.wake = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # the others of this tick join the batch
                batch, self._pending = self._pending, self._new_batch()
                try:
                    if batch.rows:  # (empty when a failure removed all its events)
                        self._inflight = batch
                        await self._commit(batch)
                finally:
                    self._inflight = None
                    batch.done = True
                    batch.wake.set()
        finally:
            self._leading = False
            if self._pending.waiters:
                self._pending.wake.set()  # one of them leads the next batch

    def _settle(self, batch: _B, failures: dict[str, Any]) -> None:
        """After a commit: fail the runs in `failures` (run id -> exception), count the rest.

        Counters of runs that paused or ended leave memory, and so do the leases of runs
        that finished.
        """
        if failures:
            self._failed += 1
            self._fail_runs(batch, failures)
        written = len(batch.rows) - sum(1 for row in batch.rows if row[0] in failures)
        if written:
            self._transactions += 1
        self._events += written
        self._largest = max(self._largest, written)
        for run_id, seq in batch.releases:
            if self._seq.get(run_id) == seq:  # nothing numbered after it: forget the run
                del self._seq[run_id]
        for run_id in batch.finished:  # its lease ended with it
            if run_id not in failures:
                self._held.pop(run_id, None)

    def _fail_runs(self, batch: _B, failures: dict[str, Any]) -> None:
        """Tell the appenders of runs whose events were lost, and keep the counters exact."""
        where = self.where
        for run_id, exc in failures.items():
            seqs = [row[1] for row in batch.rows if row[0] == run_id]
            lost = f"events {min(seqs)}..{max(seqs)} of run {run_id!r}"
            # (A run taken over keeps its stale claim: every later write is refused too,
            # until a new claim or `release` replaces it.)
            text, name = self._explain(exc)
            message = f"journal {where}: {lost} were not written: {text}"
            failure = Failure(message, exc, where, run_id, name)
            batch.errors[run_id] = failure
            told = run_id in batch.waited
            later, later_told = self._pending.remove_run(run_id)
            if later:  # numbered after the lost ones: writing them would leave a gap
                self._pending.errors[run_id] = Failure(
                    f"journal {where}: events {min(later)}..{max(later)} of run {run_id!r} "
                    f"were dropped, because {lost} were not written: {text}",
                    exc,
                    where,
                    run_id,
                    name,
                )
                told = told or later_told
            self._seq.pop(run_id, None)  # read from the database at the next append
            if not told:
                self._poisoned[run_id] = failure

    async def read(self, run_id: str) -> list[Event]:
        """Return a run's events in order; empty for an unknown run.

        Raises:
            CorralError: a stored event does not validate (the message names run and seq).
        """
        rows = await self._event_rows(run_id)
        return [decode(self.where, run_id, seq, payload) for seq, payload in rows]

    async def read_lazily(self, run_id: str) -> LazyEvents:
        """A run's events as `read` returns them, each decoded when first looked at.

        Raises:
            CorralError: on access, a stored event that does not validate.
        """
        return LazyEvents(self.where, run_id, await self._event_rows(run_id))

    # -- conditional appends --------------------------------------------------------------------

    @asynccontextmanager
    async def _fenced_runs(self, run_ids: Collection[str]) -> AsyncIterator[None]:
        """Hold back this process's appends to `run_ids` while a check-then-append runs.

        Their queued events are committed first, so the transaction numbers its events
        after them, and nothing can be numbered in between; their counters are read from
        the database afterwards.
        """
        runs = set(run_ids)
        while True:
            busy = next((self._fences[r] for r in runs if r in self._fences), None)
            if busy is None:
                break
            await busy.wait()
        fence = anyio.Event()
        for run_id in runs:
            self._fences[run_id] = fence
        try:
            await self._flush()
            yield
            self._conditional_count += 1
        finally:
            self._fenced += 1
            for run_id in runs:
                del self._fences[run_id]
                self._forget_counter(run_id)  # the transaction numbered from the database
            fence.set()

    def _forget_counter(self, run_id: str) -> None:
        """Drop a run's cached seq counter, unless events of it are still queued here.

        The next append reads it from the database (a fenced append waits, then reads it).
        """
        if not self._uncommitted(run_id):
            self._seq.pop(run_id, None)

    def _uncommitted(self, run_id: str) -> bool:
        inflight = self._inflight
        return run_id in self._pending.touch or (inflight is not None and run_id in inflight.touch)
