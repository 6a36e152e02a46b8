"""Time, behind a two-method protocol so tests can skip it (backoff, breakers, leases)."""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "MockClock", "SystemClock"]


class Clock(Protocol):
    """Where Corral reads the time and waits."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for `seconds` (0 or less returns at once after a checkpoint)."""
        ...


class SystemClock:
    """The real clock: `time.time()` and `anyio.sleep`."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait for real."""
        await anyio.sleep(max(seconds, 0.0))


class MockClock:
    """A clock that only moves when told to; `sleep` advances it instead of waiting.

    Args:
        start: the initial time, Unix seconds.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self.slept: list[float] = []
        """Every duration passed to `sleep`, in order."""

    def now(self) -> float:
        """The current mock time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, advance the clock, and yield to other tasks once."""
        self.slept.append(seconds)
        self._now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()
