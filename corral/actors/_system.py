"""A small actor runtime on anyio: bounded mailboxes, tell/ask, one-for-one restarts.

An actor handles one message at a time from its own bounded mailbox. Everything runs in
the task group owned by the `ActorSystem`, so no task outlives it. Which task runs a
handler, what is ordered, and what a full mailbox, a crash or a stop does are written
down once, in the docstring of `corral.actors`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._clock import Clock, SystemClock
from .._log import get_logger
from .._loop import require_asyncio
from ..errors import ActorDeadError, AskTimeoutError, ConfigError, MailboxFullError, UsageError

__all__ = [
    "Actor",
    "ActorRef",
    "ActorSystem",
    "NOT_INLINE",
    "MailboxStatistics",
    "RestartPolicy",
]

log = get_logger("corral.actors")

A = TypeVar("A", bound="Actor")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a parent restarts a crashed child (one-for-one).

    A child that crashes more than `max_restarts` times within `within` seconds is not
    restarted again: the failure escalates to its parent's `Actor.child_failed`. The window
    and the delays are measured on the `ActorSystem`'s clock.
    """

    max_restarts: int = 3
    """Restarts allowed inside the window. Default 3; 0 means never restart."""
    within: float = 60.0
    """Length of the window, in seconds. Default 60 s."""
    backoff: float = 0.1
    """Delay before the first restart, doubled for each restart in the window. Default 0.1 s."""
    max_backoff: float = 5.0
    """Cap on the restart delay, in seconds. Default 5 s."""

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.within <= 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError(f"invalid RestartPolicy: {self!r}")


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one actor's mailbox, for metrics."""

    actor: str
    queued: int
    """Messages waiting."""
    capacity: int | float
    """Mailbox size (``math.inf`` when unbounded)."""
    processed: int
    """Messages handled since the actor was spawned (across restarts)."""
    restarts: int
    """Times the actor was restarted."""
    waiting_senders: int
    """Tasks blocked on a full mailbox (back-pressure in action)."""


class _Reply:
    """The one-shot slot a queued `ask` waits on: a bare asyncio future.

    A queued ask round trip costs ~8-11 us this way against ~23-25 us with an
    `anyio.Event` under `fail_after`, measured when the future replaced it, and the system
    runs on asyncio only. The first outcome wins: an answer after the deadline is dropped.
    """

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def set(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    @property
    def done(self) -> bool:
        return self.future.done()


class _AskExpired(TimeoutError):
    """Set on an ask's future when its deadline passes (told apart from the actor's own errors)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_AskExpired())


@dataclass(slots=True)
class _Envelope:
    message: Any
    reply: _Reply | None


@dataclass(slots=True)
class _ChildFailed:
    child: ActorRef
    error: BaseException


@dataclass(slots=True)
class _Crash:
    """A `tell` handled inline raised: the actor crashes with it in its own task."""

    error: Exception


NOT_INLINE: Any = object()
"""Returned by `Actor.receive_inline` for a message it must receive in its own task."""


class _Inline:
    """Stands in `_Cell.current` while a message is handled inline (the actor is busy)."""


_INLINE = _Inline()


class Actor:
    """Base class for actors. Override `receive`; optionally `started`, `stopped`, `child_failed`.

    `receive` is called with one message at a time. Its return value answers an `ask`; an
    exception raised while answering an `ask` goes back to the caller and the actor keeps
    running, while an exception raised while handling a `tell` crashes the actor, and its
    parent restarts it (a fresh instance from the same factory, same mailbox).
    """

    mailbox_size: ClassVar[int] = 256
    """Capacity of the bounded mailbox. Override per class, or pass to `spawn`."""

    _cell: _Cell

    @property
    def ref(self) -> ActorRef:
        """This actor's own reference (to give to others or to tell itself)."""
        return self._cell.ref

    @property
    def system(self) -> ActorSystem:
        """The system this actor lives in."""
        return self._cell.system

    @property
    def parent(self) -> ActorRef | None:
        """The parent actor, or None for a top-level actor."""
        return self._cell.parent.ref if self._cell.parent is not None else None

    @property
    def children(self) -> list[ActorRef]:
        """Live children."""
        return [c.ref for c in self._cell.children.values()]

    async def spawn(
        self,
        factory: Callable[[], A],
        *,
        name: str,
        restart: RestartPolicy | None = None,
        mailbox_size: int | None = None,
        wait_started: bool = True,
    ) -> ActorRef:
        """Start a child actor supervised by this one.

        Args:
            factory: builds a fresh instance (called again at each restart).
            name: unique name among this actor's children.
            restart: restart policy. Default `RestartPolicy()`.
            mailbox_size: overrides the class's `mailbox_size`.
            wait_started: return once the child's task runs (True, the default), or at
                once (False: a scheduling round trip saved for short-lived children;
                messages sent meanwhile wait in its mailbox).

        Returns:
            The child's reference, once its mailbox is open.
        """
        return await self._cell.system._spawn(
            factory,
            name=name,
            parent=self._cell,
            restart=restart,
            mailbox_size=mailbox_size,
            wait_started=wait_started,
        )

    def stop_self(self) -> None:
        """Stop this actor once the current message is handled (callable from `receive`)."""
        scope = self._cell.scope
        if scope is not None:
            scope.cancel()

    async def started(self) -> None:
        """Called when the actor starts, and again after each restart."""

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an `ask`.

        Raises:
            UsageError: by default, for a message the actor does not handle.
        """
        raise UsageError(f"actor {self._cell.name!r} does not handle {type(message).__name__}")

    def receive_inline(self, message: Any) -> Any:
        """Handle a message at once, in the sender's task, or return `NOT_INLINE`.

        Override it for messages whose handling never waits (plain state updates, such as
        the supervisor's budget bookkeeping). It is called only while the actor is idle
        (its mailbox empty, no message in progress), so the actor still sees one message
        at a time, in the order sent; what is saved is the hand-off to its task and back,
        two scheduling rounds per `ask`. An exception answers the `ask` (as from
        `receive`); from a `tell` it crashes the actor, as from `receive`.
        """
        return NOT_INLINE

    async def stopped(self) -> None:
        """Called once when the actor stops for good (not between restarts)."""

    async def child_failed(self, child: ActorRef, error: BaseException) -> None:
        """Called when a child crashed more often than its restart policy allows.

        The default escalates: it re-raises the error, crashing this actor in turn.

        Args:
            child: the child that gave up (already stopped).
            error: its last exception.
        """
        raise error


class ActorRef:
    """A handle to send messages to an actor.

    You should never need to create ActorRef instances yourself: `ActorSystem.spawn` and
    `Actor.spawn` return them.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's path, such as ``supervisor`` or ``agent:billing/run_ab12``."""
        return self._cell.path

    @property
    def alive(self) -> bool:
        """False once the actor has stopped for good."""
        return not self._cell.dead

    async def tell(self, message: Any, *, wait: bool = True) -> None:
        """Send a message and do not wait for it to be handled.

        An idle actor may take it inline, before this returns (see `Actor.receive_inline`).

        Args:
            message: any object the actor's `receive` understands.
            wait: when the mailbox is full, wait for room (True, the default: back-pressure)
                or fail at once (False).

        Raises:
            ActorDeadError: the actor has stopped.
            MailboxFullError: `wait=False` and the mailbox is full.
        """
        if not self._cell.tell_inline(message):
            await self._cell.put(_Envelope(message, None), wait=wait)

    def tell_nowait(self, message: Any) -> None:
        """Send a message without waiting; fail at once if the mailbox is full.

        Raises:
            ActorDeadError: the actor has stopped.
            MailboxFullError: the mailbox is full.
        """
        if not self._cell.tell_inline(message):
            self._cell.put_nowait(_Envelope(message, None))

    async def ask(self, message: Any, *, timeout: float = 10.0) -> Any:
        """Send a message and wait for the actor's answer.

        Args:
            message: any object the actor's `receive` understands.
            timeout: seconds to wait for the answer (including time waiting for mailbox
                room), on the event loop's clock. On expiry the message may still be
                handled later, but its answer is dropped. Default 10 s.

        Returns:
            What the actor's `receive` (or `receive_inline`) returned.

        Raises:
            AskTimeoutError: no answer within `timeout`; names the actor and message type.
            ActorDeadError: the actor stopped before answering.
            Exception: whatever the actor raised while handling this message.
        """
        cell = self._cell
        if cell.idle_instance() is not None:
            answer = cell.receive_inline(message)  # an exception answers the ask
            if answer is not NOT_INLINE:
                return answer
        return await self._ask_queued(message, timeout)

    async def _ask_queued(self, message: Any, timeout: float) -> Any:
        """Queue the ask and wait on its future, under one deadline for room and answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        envelope = _Envelope(message, _Reply(future))
        deadline = loop.time() + timeout
        try:
            self._cell.put_nowait(envelope)
        except MailboxFullError:
            try:
                with anyio.fail_after(timeout):
                    await self._cell.put(envelope, wait=True)
            except TimeoutError as exc:
                raise self._timeout_error(message, timeout) from exc
        timer = loop.call_at(deadline, _expire, future)
        try:
            return await future
        except _AskExpired:
            raise self._timeout_error(message, timeout) from None
        finally:
            timer.cancel()

    def _timeout_error(self, message: Any, timeout: float) -> AskTimeoutError:
        return AskTimeoutError(
            actor=self.name, message_type=type(message).__name__, timeout=timeout
        )

    async def stop(self) -> None:
        """Stop the actor (and its children) and wait until it has stopped.

        Queued messages are not handled: each queued `ask` fails with `ActorDeadError`.
        """
        await self._cell.stop()

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox for metrics."""
        return self._cell.statistics()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}{'' if self.alive else ' (dead)'}>"


class _Cell:
    """The runtime side of one actor: mailbox, instance, restarts, children."""

    def __init__(
        self,
        system: ActorSystem,
        factory: Callable[[], Actor],
        *,
        name: str,
        parent: _Cell | None,
        restart: RestartPolicy,
        mailbox_size: int,
    ) -> None:
        self.system = system
        self.factory = factory
        self.name = name
        self.parent = parent
        self.path: str = f"{parent.path}/{name}" if parent is not None else name
        self.restart = restart
        self.capacity = mailbox_size
        self.send: MemoryObjectSendStream[_Envelope | _ChildFailed | _Crash]
        self.receive: MemoryObjectReceiveStream[_Envelope | _ChildFailed | _Crash]
        self.send, self.receive = anyio.create_memory_object_stream[
            _Envelope | _ChildFailed | _Crash
        ](mailbox_size)
        self.ref = ActorRef(self)
        self.children: dict[str, _Cell] = {}
        self.dead = False
        self.stopping = False
        self.scope: anyio.CancelScope | None = None
        self.finished = anyio.Event()
        self.processed = 0
        self.restarts = 0
        self._restart_times: deque[float] = deque()
        self.current: _Envelope | _ChildFailed | _Crash | _Inline | None = None
        self.queued = 0
        """Messages put in the mailbox and not yet taken by the actor's task."""
        self.instance: Actor | None = None
        """The actor, while its task is in its receive loop."""

    def idle_instance(self) -> Actor | None:
        """The actor if it can take a message inline now: in its loop, nothing pending."""
        if self.current is None and not self.queued and not self.dead:
            return self.instance
        return None

    def receive_inline(self, message: Any) -> Any:
        """Hand `message` to the idle actor's `receive_inline`, marked busy meanwhile.

        A message it sends itself meanwhile then queues, as it would from `receive`.
        """
        instance = self.instance
        assert instance is not None
        self.current = _INLINE
        try:
            answer = instance.receive_inline(message)
        finally:
            self.current = None
        if answer is not NOT_INLINE:
            self.processed += 1
        return answer

    def tell_inline(self, message: Any) -> bool:
        """Handle a `tell` in the sender's task if the actor is idle and allows it."""
        if self.idle_instance() is None:
            return False
        try:
            return self.receive_inline(message) is not NOT_INLINE
        except Exception as exc:
            self.put_nowait(_Crash(exc))  # as if raised by receive: the actor crashes
            return True

    # -- sending --------------------------------------------------------------------------

    def _dead(self) -> ActorDeadError:
        return ActorDeadError(f"actor {self.path!r} has stopped", actor=self.path)

    async def put(self, envelope: _Envelope | _ChildFailed, *, wait: bool) -> None:
        if self.dead:
            raise self._dead()
        try:
            # Room in the mailbox: enqueue without a scheduling round trip (hot path).
            self.send.send_nowait(envelope)
            self.queued += 1
            return
        except anyio.WouldBlock:
            if not wait:
                raise MailboxFullError(actor=self.path, capacity=self.capacity) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._dead() from None
        self.queued += 1  # counted while waiting for room: no inline overtaking meanwhile
        try:
            await self.send.send(envelope)  # full: wait for room (back-pressure)
        except BaseException as exc:
            self.queued -= 1
            if isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError)):
                raise self._dead() from None
            raise

    def put_nowait(self, envelope: _Envelope | _ChildFailed | _Crash) -> None:
        if self.dead:
            raise self._dead()
        try:
            self.send.send_nowait(envelope)
        except anyio.WouldBlock:
            raise MailboxFullError(actor=self.path, capacity=self.capacity) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._dead() from None
        self.queued += 1

    def statistics(self) -> MailboxStatistics:
        stats = self.send.statistics()
        return MailboxStatistics(
            actor=self.path,
            queued=stats.current_buffer_used,
            capacity=stats.max_buffer_size,
            processed=self.processed,
            restarts=self.restarts,
            waiting_senders=stats.tasks_waiting_send,
        )

    # -- running --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the actor until it stops, restarting it after crashes as the policy allows."""
        failure: BaseException | None = None
        instance: Actor | None = None
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.stopping:  # stopped before its task ran (spawned without waiting)
                    scope.cancel()
                task_status.started()
                while not scope.cancel_called:
                    instance = self.factory()
                    instance._cell = self
                    try:
                        await instance.started()
                        await self._loop(instance)
                        break  # mailbox closed: a clean stop
                    except Exception as exc:
                        if not self._may_restart():
                            failure = exc
                            break
                        delay = min(
                            self.restart.backoff * 2 ** (len(self._restart_times) - 1),
                            self.restart.max_backoff,
                        )
                        log.warning(
                            "actor.restarting", actor=self.path, error=repr(exc), delay_s=delay
                        )
                        self.restarts += 1
                        await self.system.clock.sleep(delay)
                    except BaseException as exc:
                        if isinstance(exc, anyio.get_cancelled_exc_class()):
                            raise
                        # KeyboardInterrupt, SystemExit and their kind are not crashes to
                        # restart from: the whole system stops and raises it, unwrapped.
                        self.system.abort(exc)
                        break
        finally:  # also when cancelled from outside (the system aborting)
            await self._teardown(instance, failure)

    def _may_restart(self) -> bool:
        """Count a crash in the restart window (read from the system's clock); False: give up."""
        now = self.system.clock.now()
        window = self._restart_times
        while window and now - window[0] > self.restart.within:
            window.popleft()
        if len(window) >= self.restart.max_restarts:
            return False
        window.append(now)
        return True

    async def _loop(self, instance: Actor) -> None:
        receive = self.receive
        self.instance = instance
        try:
            await self._receive_loop(instance, receive)
        finally:
            self.instance = None

    async def _receive_loop(
        self,
        instance: Actor,
        receive: MemoryObjectReceiveStream[_Envelope | _ChildFailed | _Crash],
    ) -> None:
        while True:
            try:
                envelope = receive.receive_nowait()
            except anyio.WouldBlock:
                try:
                    envelope = await receive.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return
            self.queued -= 1
            self.current = envelope
            if isinstance(envelope, _Crash):
                raise envelope.error
            if isinstance(envelope, _ChildFailed):
                await instance.child_failed(envelope.child, envelope.error)
            elif envelope.reply is None:
                await instance.receive(envelope.message)
            else:
                try:
                    result = await instance.receive(envelope.message)
                except Exception as exc:
                    envelope.reply.fail(exc)
                else:
                    envelope.reply.set(result)
            self.current = None
            self.processed += 1

    async def _teardown(self, instance: Actor | None, failure: BaseException | None) -> None:
        """Stop children, fail what will not be handled, tell the parent, run `stopped`."""
        self.dead = True
        with anyio.CancelScope(shield=True):
            for child in list(self.children.values()):
                await child.stop()
            dead = self._dead()
            pending = self.current
            self.current = None
            if (
                isinstance(pending, _Envelope)
                and pending.reply is not None
                and not pending.reply.done
            ):
                pending.reply.fail(dead)
            self.send.close()
            while True:
                try:
                    envelope = self.receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                if isinstance(envelope, _Envelope) and envelope.reply is not None:
                    envelope.reply.fail(dead)
            self.receive.close()
            # Leave the registries before `stopped` runs, so the hook may start a successor
            # under the same name.
            if self.parent is not None:
                self.parent.children.pop(self.name, None)
            self.system._cells.pop(self.path, None)
            if instance is not None:
                try:
                    with anyio.move_on_after(5):
                        await instance.stopped()
                except Exception as exc:
                    log.error("actor.stopped_hook_failed", actor=self.path, error=repr(exc))
            self.finished.set()
            if failure is not None:
                self.system._escalate(self, failure)

    async def stop(self) -> None:
        self.stopping = True
        if self.scope is not None and not self.finished.is_set():
            self.scope.cancel()
        await self.finished.wait()


class ActorSystem:
    """Owns the task group every actor runs in. Use as ``async with ActorSystem() as system``.

    Args:
        name: used in logs.
        on_escalation: called with (actor path, error) when a top-level actor gives up after
            its restarts. Default: re-raise inside the system, which stops every actor and
            raises out of ``async with`` (fail loudly).
        clock: where restart backoff sleeps and the restart window reads the time. Default
            `SystemClock()`; a `MockClock` lets tests drive restarts without waiting.
    """

    def __init__(
        self,
        *,
        name: str = "corral",
        on_escalation: Callable[[str, BaseException], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.clock: Clock = clock or SystemClock()
        """The clock restarts are timed with."""
        self._on_escalation = on_escalation
        self._tg: TaskGroup | None = None
        self._cells: dict[str, _Cell] = {}
        self._escalated: BaseException | None = None

    async def __aenter__(self) -> ActorSystem:
        """Open the task group.

        Returns:
            The running system.

        Raises:
            ConfigError: the event loop is not asyncio (a queued ask waits on an asyncio
                future); nothing is started.
        """
        require_asyncio("ActorSystem", because="a queued ask waits on an asyncio future")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        # An error from the body (`KeyboardInterrupt` and `SystemExit` included) is
        # re-raised as itself, not wrapped in an exception group: every actor is stopped
        # first, so no task can add to it. Cancellation is passed on, so the task group
        # can absorb its own.
        cancelled = isinstance(exc_info[1], anyio.get_cancelled_exc_class())
        passthrough = exc_info if cancelled else (None, None, None)
        try:
            with anyio.CancelScope(shield=True):  # stop every actor even when cancelled
                await self.shutdown()
        finally:
            tg, self._tg = self._tg, None
            assert tg is not None
            result = await tg.__aexit__(*passthrough)
        if self._escalated is not None:
            if cancelled:  # the body was only cancelled by the abort: not worth showing
                raise self._escalated from None
            raise self._escalated
        return result

    async def spawn(
        self,
        factory: Callable[[], A],
        *,
        name: str,
        restart: RestartPolicy | None = None,
        mailbox_size: int | None = None,
    ) -> ActorRef:
        """Start a top-level actor.

        Args:
            factory: builds a fresh instance (called again at each restart), for example the
                class itself or a ``lambda: Counter(start=5)``.
            name: unique name among top-level actors.
            restart: restart policy. Default `RestartPolicy()`.
            mailbox_size: overrides the class's `mailbox_size`.

        Returns:
            The actor's reference, once its mailbox is open.

        Raises:
            UsageError: the system is not running or the name is taken.
        """
        return await self._spawn(
            factory, name=name, parent=None, restart=restart, mailbox_size=mailbox_size
        )

    async def _spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str,
        parent: _Cell | None,
        restart: RestartPolicy | None,
        mailbox_size: int | None,
        wait_started: bool = True,
    ) -> ActorRef:
        if self._tg is None:
            raise UsageError("the ActorSystem is not running; use `async with ActorSystem()`")
        if not name or "/" in name:
            raise UsageError(f"invalid actor name {name!r}: non-empty, without '/'")
        path = f"{parent.path}/{name}" if parent is not None else name
        if path in self._cells:
            raise UsageError(f"an actor named {path!r} is already running")
        if parent is not None and parent.dead:
            raise ActorDeadError(f"actor {parent.path!r} has stopped", actor=parent.path)
        size = mailbox_size if mailbox_size is not None else getattr(factory, "mailbox_size", None)
        if size is None:
            size = Actor.mailbox_size
        if size <= 0 and size != math.inf:
            raise ConfigError(f"mailbox size must be > 0, got {size}")
        cell = _Cell(
            self,
            factory,
            name=name,
            parent=parent,
            restart=restart or RestartPolicy(),
            mailbox_size=size,
        )
        self._cells[path] = cell
        if parent is not None:
            parent.children[name] = cell
        if wait_started:
            await self._tg.start(cell.run)
        else:
            self._tg.start_soon(cell.run, name=path)
        return cell.ref

    def get(self, path: str) -> ActorRef | None:
        """Return the live actor at `path`, or None."""
        cell = self._cells.get(path)
        return cell.ref if cell is not None else None

    def actors(self) -> list[ActorRef]:
        """Every live actor, parents before children."""
        return [c.ref for c in self._cells.values()]

    def _escalate(self, cell: _Cell, error: BaseException) -> None:
        parent = cell.parent
        if parent is not None and not parent.dead and self._tg is not None:
            # Wait for room rather than drop the failure: the parent must hear of it.
            self._tg.start_soon(self._deliver_failure, parent, _ChildFailed(cell.ref, error))
            return
        self._give_up(cell.path, error)

    async def _deliver_failure(self, parent: _Cell, failure: _ChildFailed) -> None:
        try:
            await parent.put(failure, wait=True)
        except ActorDeadError:
            self._give_up(failure.child.name, failure.error)

    def _give_up(self, path: str, error: BaseException) -> None:
        log.error("actor.gave_up", actor=path, error=repr(error))
        if self._on_escalation is not None:
            self._on_escalation(path, error)
        else:
            self.abort(error)

    def abort(self, error: BaseException) -> None:
        """Stop every actor and raise `error` out of ``async with`` (the first one wins)."""
        if self._escalated is None:
            self._escalated = error
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    async def shutdown(self) -> None:
        """Stop every actor, children first; queued asks fail with `ActorDeadError`."""
        roots = [c for c in self._cells.values() if c.parent is None]
        for cell in reversed(roots):
            await cell.stop()
