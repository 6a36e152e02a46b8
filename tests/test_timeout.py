"""`within`: the hard timeout around model and tool calls."""

from __future__ import annotations

import time

import anyio
import pytest

from corral._timeout import within


async def test_a_call_that_never_waits_returns_its_value() -> None:
    async def instant() -> int:
        return 7

    assert await within(instant(), 0.01) == 7


async def test_a_call_that_waits_returns_its_value() -> None:
    async def slow() -> str:
        await anyio.sleep(0)
        await anyio.sleep(0.001)
        return "ok"

    assert await within(slow(), 5) == "ok"


async def test_a_call_past_its_deadline_is_cancelled_and_raises_timeout() -> None:
    cleaned = []

    async def hangs() -> None:
        try:
            await anyio.sleep(3600)
        finally:
            cleaned.append("finally ran")

    with pytest.raises(TimeoutError):
        await within(hangs(), 0.02)
    assert cleaned == ["finally ran"]


async def test_time_spent_before_the_first_wait_counts_against_the_deadline() -> None:
    async def blocks_then_waits() -> str:
        time.sleep(0.05)  # synchronous work cannot be interrupted ...
        await anyio.sleep(1)  # ... but the deadline has passed by the first wait
        return "too late"

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await within(blocks_then_waits(), 0.03)
    assert time.perf_counter() - started < 0.5


async def test_errors_raised_before_and_after_the_first_wait_propagate() -> None:
    async def fails_at_once() -> None:
        raise ValueError("bad input")

    async def fails_later() -> None:
        await anyio.sleep(0)
        raise KeyError("missing")

    with pytest.raises(ValueError, match="bad input"):
        await within(fails_at_once(), 1)
    with pytest.raises(KeyError, match="missing"):
        await within(fails_later(), 1)


async def test_an_outer_cancellation_reaches_the_call() -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            raise

    with anyio.move_on_after(0.02) as scope:
        await within(waits(), 3600)
    assert scope.cancelled_caught
    assert seen == ["cancelled"]


async def test_a_call_that_shields_its_clean_up_still_times_out() -> None:
    async def recovers() -> str:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)
            raise
        return "unreachable"

    with pytest.raises(TimeoutError):
        await within(recovers(), 0.01)
