"""The hard timeout around model and tool calls, and what happens to a call that ignores it.

A model call runs inside one ordinary anyio cancel scope with a deadline (`within`),
entered before its first instruction, so whatever the adapter opens itself (an httpx
client, an anyio task group, its own `fail_after`, `asyncio.timeout`) nests inside
Corral's scope and unwinds in order.

Tools are untrusted neighbours, so `within_isolated` runs each async tool call in a task
of its own, inside one anyio cancel scope from its first instruction, cancelled at the
deadline. A call that swallows the cancellation is given up after a grace period and left
to finish on its own ("abandoned"): the run goes on, and shutting the runtime down does
not wait for it. A structured task group cannot do this (leaving it waits for every
child), which is why these tasks are plain asyncio tasks (Corral runs on asyncio only),
kept in a registry so they are neither garbage-collected nor forgotten.

`run_sync_in_thread` runs a synchronous tool on a daemon thread of its own. anyio's
worker threads are not daemon threads, so a sync tool that blocks forever there would
keep the process from exiting; a daemon thread is given up on at its timeout and does
not. A thread cannot be stopped from outside, so an abandoned one keeps its resources
until its function returns; their number is bounded, past which new sync calls are
refused with a clear error instead of piling up.

Written by hand because no library offers a cancellable call with a give-up deadline that
composes with anyio's scopes.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .errors import ToolError

__all__ = [
    "MAX_ABANDONED_THREADS",
    "CallAbandoned",
    "abandoned_calls",
    "run_sync_in_thread",
    "within",
    "within_isolated",
]

_T = TypeVar("_T")

MAX_ABANDONED_THREADS = 32
"""Threads of timed-out sync calls that may still be running before new ones are refused."""


async def within(call: Callable[[], Awaitable[_T]], seconds: float) -> _T:
    """Start `call()` and await it, cancelling it once `seconds` have passed.

    `call` is a function, not an awaitable, so that not one instruction of it runs before
    the scope is entered. (This is `anyio.fail_after` without its generator-based context
    manager, which costs more than the scope itself on a hot path.)

    Raises:
        TimeoutError: the call did not finish in time (it was cancelled).
    """
    scope = anyio.CancelScope(deadline=asyncio.get_running_loop().time() + seconds)
    with scope:
        return await call()
    raise TimeoutError  # reached only when the scope's deadline cancelled the call


class CallAbandoned(TimeoutError):
    """A call outlived its timeout and was given up while still running.

    `what` says what was left running: ``"task"`` (an async call that ignored cancellation
    for the whole grace period) or ``"thread"`` (a sync call, which cannot be interrupted).
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class _Call:
    """One isolated call: its outcome, its scope, and the threads it started."""

    __slots__ = ("done", "error", "expired", "finished", "name", "scope", "threads", "value")

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.done: asyncio.Future[None] = loop.create_future()
        """Set when the caller may look: the call ended, or its deadline passed."""
        self.finished: asyncio.Future[None] = loop.create_future()
        """Set when the call's task has really ended."""
        self.value: Any = None
        self.error: BaseException | None = None
        self.expired = False
        self.scope: anyio.CancelScope | None = None
        self.threads: list[threading.Thread] = []


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "corral_current_call", default=None
)
_abandoned_tasks: dict[asyncio.Task[None], str] = {}
_abandoned_threads: dict[threading.Thread, str] = {}


def abandoned_calls() -> list[str]:
    """Names of calls given up after their timeout that are still running, tasks and threads."""
    _forget_ended_threads()
    return [*_abandoned_tasks.values(), *_abandoned_threads.values()]


def _forget_ended_threads() -> None:
    for thread in [t for t in _abandoned_threads if not t.is_alive()]:
        del _abandoned_threads[thread]


async def within_isolated(
    call: Callable[[], Awaitable[_T]], seconds: float, *, grace: float, name: str
) -> _T:
    """Run `call()` in a task of its own under a `seconds` timeout; give it up after `grace`.

    The call runs inside one anyio cancel scope from its first instruction, cancelled at
    the deadline. Its exceptions, `BaseException` included, are raised here, in the
    caller's task, never in the event loop. If the caller itself is cancelled, the call is
    cancelled too and given the same grace period.

    Raises:
        TimeoutError: the call timed out and stopped when cancelled.
        CallAbandoned: the call timed out and was still running `grace` seconds later
            (it ignored cancellation, or a sync function's thread is still blocked).
        ToolError: the call raised `CancelledError` although nobody cancelled it.
    """
    loop = asyncio.get_running_loop()
    record = _Call(name, loop)
    task = loop.create_task(_body(record, call), name=f"corral call {name}")
    timer = loop.call_later(max(seconds, 0.0), _expire, record)
    try:
        await record.done
    except BaseException:
        timer.cancel()
        _cancel(record)
        with anyio.move_on_after(grace, shield=True):
            await asyncio.shield(record.finished)
        if not record.finished.done():
            _abandon(task, record)
        raise
    timer.cancel()
    error = record.error
    if error is None:
        return record.value  # type: ignore[no-any-return]
    record.error = None
    if record.expired:
        alive = [t for t in record.threads if t.is_alive()]
        if alive:
            for thread in alive:
                _abandoned_threads[thread] = name
            raise CallAbandoned(
                f"{name} did not finish within its {seconds:g} s timeout; it is a blocking "
                "function whose thread cannot be interrupted, so the thread was abandoned "
                "and still runs",
                what="thread",
            ) from None
        try:
            with anyio.move_on_after(grace):
                await asyncio.shield(record.finished)
        finally:  # also when the caller is cancelled meanwhile: never lose track of it
            if not record.finished.done():
                _abandon(task, record)
        if not record.finished.done():
            raise CallAbandoned(
                f"{name} did not finish within its {seconds:g} s timeout and ignored "
                f"cancellation for {grace:g} s more; it was abandoned and still runs",
                what="task",
            ) from None
        raise TimeoutError(f"{name} did not finish within {seconds:g} s") from None
    if isinstance(error, asyncio.CancelledError):
        raise ToolError(
            f"{name} raised CancelledError although it was not cancelled", retryable=True
        ) from error
    raise error


async def _body(record: _Call, call: Callable[[], Awaitable[Any]]) -> None:
    """The call's own task: report its outcome to `record`, whatever it raises."""
    _current.set(record)
    try:
        # An anyio scope, not a bare task.cancel(): its cancellation is level-triggered,
        # so clean-up code that awaits (anyio's Process.aclose waiting for its child, say)
        # is cancelled again and takes its forceful path, as anyio code expects.
        with anyio.CancelScope() as scope:
            record.scope = scope
            if record.expired:  # the deadline passed before this task first ran
                scope.cancel()
            record.value = await call()
    except BaseException as exc:  # reported to the caller, never raised in the loop
        if not record.expired:
            record.error = exc
        del exc
    finally:
        record.finished.set_result(None)
        if not record.done.done():
            record.done.set_result(None)


def _expire(record: _Call) -> None:
    """At the deadline: cancel the call and wake the caller, who waits `grace` at most."""
    _cancel(record)
    if not record.done.done():
        record.error = TimeoutError()
        record.done.set_result(None)


def _cancel(record: _Call) -> None:
    """Mark the call as past its time (its outcome no longer counts) and cancel it."""
    record.expired = True
    if record.scope is not None:
        record.scope.cancel()


def _abandon(task: asyncio.Task[None], record: _Call) -> None:
    _abandoned_tasks[task] = record.name
    task.add_done_callback(lambda t: _abandoned_tasks.pop(t, None))


async def run_sync_in_thread(fn: Callable[[], _T], *, name: str) -> _T:
    """Run a blocking function on a daemon thread and await its result.

    Cancelling the await abandons the thread (it cannot be interrupted) rather than
    waiting for it.

    Raises:
        ToolError: too many threads of earlier calls are still blocked
            (`MAX_ABANDONED_THREADS`); not retryable right away.
    """
    _forget_ended_threads()
    if len(_abandoned_threads) >= MAX_ABANDONED_THREADS:
        stuck = sorted(set(_abandoned_threads.values()))[:5]
        raise ToolError(
            f"{name} was not started: {len(_abandoned_threads)} threads of earlier calls "
            f"that timed out are still blocked ({', '.join(stuck)}); "
            "a blocking function cannot be interrupted, so Corral refuses to start more",
            retryable=False,
        )
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def report(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(fn)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        try:
            loop.call_soon_threadsafe(report, value, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    thread = threading.Thread(target=target, name=f"corral {name}", daemon=True)
    record = _current.get()
    if record is not None:
        record.threads.append(thread)
    thread.start()
    return await future
