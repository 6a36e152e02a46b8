"""`within` and `within_isolated`: the hard timeout around model and tool calls.

Every contract test runs against both: models run under `within` in the run's own task,
tools under `within_isolated` in a task of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from corral._timeout import CallAbandoned, within, within_isolated

Run = Callable[[Callable[[], Awaitable[Any]], float], Awaitable[Any]]


async def isolated(call: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    return await within_isolated(call, seconds, grace=0.2, name="test call")


@pytest.fixture(params=["within", "within_isolated"])
def run(request: pytest.FixtureRequest) -> Run:
    return within if request.param == "within" else isolated


async def test_a_call_that_never_waits_returns_its_value(run: Run) -> None:
    async def instant() -> int:
        return 7

    assert await run(instant, 0.01) == 7


async def test_a_call_that_waits_returns_its_value(run: Run) -> None:
    async def slow() -> str:
        await anyio.sleep(0)
        await anyio.sleep(0.001)
        return "ok"

    assert await run(slow, 5) == "ok"


async def test_a_call_past_its_deadline_is_cancelled_and_raises_timeout(run: Run) -> None:
    cleaned = []

    async def hangs() -> None:
        try:
            await anyio.sleep(3600)
        finally:
            cleaned.append("finally ran")

    with pytest.raises(TimeoutError):
        await run(hangs, 0.02)
    assert cleaned == ["finally ran"]


async def test_time_spent_before_the_first_wait_counts_against_the_deadline(run: Run) -> None:
    async def blocks_then_waits() -> str:
        time.sleep(0.05)  # synchronous work cannot be interrupted ...
        await anyio.sleep(1)  # ... but the deadline has passed by the first wait
        return "too late"

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await run(blocks_then_waits, 0.03)
    assert time.perf_counter() - started < 0.5


async def test_errors_raised_before_and_after_the_first_wait_propagate(run: Run) -> None:
    async def fails_at_once() -> None:
        raise ValueError("bad input")

    async def fails_later() -> None:
        await anyio.sleep(0)
        raise KeyError("missing")

    with pytest.raises(ValueError, match="bad input"):
        await run(fails_at_once, 1)
    with pytest.raises(KeyError, match="missing"):
        await run(fails_later, 1)


async def test_an_outer_cancellation_reaches_the_call(run: Run) -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            raise

    with anyio.move_on_after(0.02) as scope:
        await run(waits, 3600)
    assert scope.cancelled_caught
    assert seen == ["cancelled"]


async def test_a_call_that_shields_its_clean_up_still_times_out(run: Run) -> None:
    async def recovers() -> str:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)
            raise
        return "unreachable"

    with pytest.raises(TimeoutError):
        await run(recovers, 0.01)


async def test_a_call_may_open_its_own_scopes_and_task_groups_inside(run: Run) -> None:
    """What httpx, httpcore and anyio users do before their first await: nest in order."""

    async def nests() -> list[str]:
        seen: list[str] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 0)
                with anyio.move_on_after(0.01) as inner:
                    await anyio.sleep(1)
                seen.append(f"inner cancelled: {inner.cancelled_caught}")
        async with asyncio.timeout(5):
            seen.append(await asyncio.wait_for(asyncio.sleep(0, "waited"), 1))
        seen.extend(await asyncio.gather(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")))
        return seen

    assert await run(nests, 5) == ["inner cancelled: True", "waited", "a", "b"]


async def test_an_isolated_call_that_ignores_cancellation_is_abandoned_after_the_grace() -> None:
    release = anyio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await anyio.sleep(1)
            except anyio.get_cancelled_exc_class():
                await anyio.lowlevel.cancel_shielded_checkpoint()

    started = time.perf_counter()
    with pytest.raises(CallAbandoned, match="ignored cancellation for 0.05 s more") as caught:
        await within_isolated(deaf, 0.05, grace=0.05, name="deaf")
    assert caught.value.what == "task"
    assert time.perf_counter() - started < 1
    release.set()


async def test_an_isolated_call_reports_base_exceptions_in_the_caller() -> None:
    async def interrupts() -> None:
        await anyio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await within_isolated(interrupts, 1, grace=0.1, name="interrupts")


async def test_an_isolated_call_sees_the_callers_context_variables() -> None:
    import contextvars

    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    tenant.set("acme")

    async def reads() -> str:
        return tenant.get()

    assert await within_isolated(reads, 1, grace=0.1, name="reads") == "acme"
