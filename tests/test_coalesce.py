"""The coalescer behind tenant holds: one transaction for the jobs of a tick, in key order."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral.store._coalesce import Coalescer, Job


class Recorder:
    """A back end that records each batch (the keys, in the order run) and can fail."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []
        self.fail: Exception | None = None
        self.gate: anyio.Event | None = None
        """While set and not yet set off, a batch stays in flight (a slow round trip)."""

    async def run(self, jobs: list[Job]) -> list[Any]:
        self.batches.append([job.key for job in jobs])
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [job.fn("conn", *job.args) for job in jobs]


async def test_jobs_asked_together_run_in_one_batch_in_key_order() -> None:
    backend = Recorder()
    coalescer = Coalescer(backend.run)
    results: dict[str, Any] = {}

    async def ask(tenant: str, kind: int) -> None:
        results[f"{tenant}{kind}"] = await coalescer.call(
            (tenant, "day", kind), lambda conn, t: (conn, t), tenant
        )

    async with anyio.create_task_group() as tg:
        for tenant, kind in (("b", 1), ("a", 1), ("b", 0), ("a", 0)):
            tg.start_soon(ask, tenant, kind)
    assert backend.batches == [[("a", "day", 0), ("a", "day", 1), ("b", "day", 0), ("b", "day", 1)]]
    assert results == {
        "a0": ("conn", "a"),
        "a1": ("conn", "a"),
        "b0": ("conn", "b"),
        "b1": ("conn", "b"),
    }
    # Asked while a batch is in flight: they wait, and go together in the next batch.
    backend.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, "c", 1)
        while len(backend.batches) < 2:
            await anyio.sleep(0)
        tg.start_soon(ask, "e", 1)
        tg.start_soon(ask, "d", 1)
        for _ in range(5):
            await anyio.sleep(0)
        assert len(backend.batches) == 2  # nobody else ran a batch meanwhile
        backend.gate.set()
    assert backend.batches[1:] == [[("c", "day", 1)], [("d", "day", 1), ("e", "day", 1)]]
    assert results["d1"] == ("conn", "d") and results["e1"] == ("conn", "e")


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    backend = Recorder()
    backend.fail = RuntimeError("the database went away")
    coalescer = Coalescer(backend.run)
    errors: list[str] = []

    async def ask(n: int) -> None:
        try:
            await coalescer.call((n,), lambda conn: n)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(ask, n)
    assert errors == ["the database went away"] * 3
    backend.fail = None
    assert await coalescer.call((9,), lambda conn: "back") == "back"


async def test_a_caller_cancelled_while_its_job_is_queued_still_has_it_run() -> None:
    """A hold once asked is taken and known: it is never lost by cancelling its caller."""
    backend = Recorder()
    coalescer = Coalescer(backend.run)
    ran: list[int] = []

    def job(conn: str, n: int) -> int:
        ran.append(n)
        return n

    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await coalescer.call((1,), job, 1) == 1  # shielded: runs, returns
        await anyio.sleep(0)
    assert ran == [1]
    with pytest.raises(ZeroDivisionError):
        await coalescer.call((2,), lambda conn: 1 / 0)
