"""A hard timeout that costs nothing when the awaited call finishes without waiting.

Every model call and tool call runs under a timeout. Entering and leaving an anyio cancel
scope costs about 7 us (more with many timers pending), a large share of a step when the
model is a cache, a local function or a fake and the tool answers from memory. `within`
first runs the call up to its first suspension; only a call that does suspend is resumed
under a cancel scope, with the time it already took deducted from its allowance. Code that runs
before the first suspension could not be interrupted by any timeout, so nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar, cast

import anyio

__all__ = ["within"]

_T = TypeVar("_T")


async def within(call: Awaitable[_T], seconds: float) -> _T:
    """Await `call`, cancelling it once `seconds` have passed since this was called.

    Raises:
        TimeoutError: the call did not finish in time (it was cancelled).
    """
    started = time.perf_counter()
    steps = call.__await__()
    try:
        first = steps.send(None)
    except StopIteration as done:
        return cast(_T, done.value)
    with anyio.fail_after(max(seconds - (time.perf_counter() - started), 0.0)):
        return await _Resumed(steps, first)


class _Resumed(Awaitable[_T]):
    """The rest of a call that already ran to its first suspension (`first`)."""

    __slots__ = ("_first", "_steps")

    def __init__(self, steps: Generator[Any, Any, _T], first: Any) -> None:
        self._steps = steps
        self._first = first

    def __await__(self) -> Generator[Any, Any, _T]:
        steps, pending = self._steps, self._first
        self._first = None
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # cancellation included: the call sees it
                try:
                    pending = steps.throw(exc)
                except StopIteration as done:
                    return cast(_T, done.value)
            else:
                try:
                    pending = steps.send(sent)
                except StopIteration as done:
                    return cast(_T, done.value)
