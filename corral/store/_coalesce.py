"""Small transactions asked in the same event-loop tick, run together in one.

The tenant-budget holds (`corral.store.TenantBudgets`) are a transaction each, two per
model call of a budgeted tenant; 100 runs stepping together would pay for 200 commits
(each an fsync on PostgreSQL) where the events of that step cost one group commit. A
`Coalescer` gathers the jobs asked while one batch is in flight, as the journal's group
commit does with events, and runs them in one transaction, ordered by their key, so two
processes' batches lock rows in the same order and never deadlock. Written here: it is
the group-commit pattern of `corral.store._group` for jobs that return a value, which no
database library offers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["Coalescer", "Job"]


class Job:
    """One job of a batch: a function of the connection, its arguments, and its outcome."""

    __slots__ = ("args", "done", "error", "fn", "key", "result")

    def __init__(self, key: tuple[Any, ...], fn: Callable[..., Any], args: tuple[Any, ...]):
        self.key = key
        self.fn = fn
        self.args = args
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Coalescer:
    """Run the jobs asked together in one transaction, in the order of their keys.

    Args:
        run: runs a batch of jobs in one transaction and returns their results in order
            (the back end's: a transaction on the writer, or on a pooled connection). If
            it raises, every job of the batch fails with that error.
    """

    def __init__(self, run: Callable[[list[Job]], Awaitable[list[Any]]]) -> None:
        self._run = run
        self._queue: list[Job] = []
        self._leading = False
        self._batch_done = anyio.Event()

    async def call(self, key: tuple[Any, ...], fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(connection, *args)`` with the other jobs of this tick; return its result.

        Shielded from cancellation, as a single transaction is: once asked, a job runs and
        its caller learns the outcome (a hold taken must never be lost on the way).
        """
        job = Job(key, fn, args)
        self._queue.append(job)
        with anyio.CancelScope(shield=True):
            while not job.done:
                if self._leading:
                    await self._batch_done.wait()
                else:
                    await self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    async def _lead(self) -> None:
        self._leading = True
        try:
            await anyio.lowlevel.checkpoint()  # the others of this tick join the batch
            jobs, self._queue = self._queue, []
            jobs.sort(key=lambda job: job.key)
            try:
                results = await self._run(jobs)
            except BaseException as exc:
                for job in jobs:
                    job.error = exc
                if not isinstance(exc, Exception):
                    raise  # (a KeyboardInterrupt, a cancellation: its callers see it too)
            else:
                for job, result in zip(jobs, results, strict=True):
                    job.result = result
            finally:
                for job in jobs:
                    job.done = True
        finally:
            self._leading = False
            done, self._batch_done = self._batch_done, anyio.Event()
            done.set()  # the waiters of this batch return; one of the next batch's leads
