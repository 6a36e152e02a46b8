"""Actors: a small actor runtime on anyio, and the one concurrency model it follows.

Public: `ActorSystem`, `Actor`, `OneShotActor`, `ActorRef`, `RestartPolicy`,
`MailboxStatistics`, and `NOT_INLINE` (see `Actor.receive_inline`). This subpackage imports
nothing from Corral but `corral.errors`, `corral._log` and `corral._clock`, none of which
imports anything else from Corral. The code is in `_system.py` (the system, cells and
references) and `_oneshot.py` (an actor that does one job and stops).

Event loop
    asyncio only. ``async with ActorSystem()`` raises `ConfigError` under any other loop
    (trio), before anything starts: a queued `ask` waits on an asyncio future, and Corral
    runs on asyncio alone (`corral._loop`).

Tasks
    The `ActorSystem` owns one task group and every actor runs in a task of its own inside
    it, so no task outlives the system. `spawn` returns once the actor's mailbox is open
    (``tg.start``); `Actor.spawn(..., wait_started=False)` returns at once and messages sent
    meanwhile wait in the mailbox. The only other task the system starts carries a child's
    failure to its parent (see Restarts).

Which task runs a handler
    `Actor.receive`, `started`, `child_failed` and `stopped` run in the actor's own task,
    one at a time. `Actor.receive_inline` runs in the *sender's* task, synchronously inside
    `tell`, `tell_nowait` or `ask`, and only while the actor is idle: its task waits in its
    receive loop, nothing is queued, no sender waits for room, no message is in progress.
    It cannot await, and it sees the sender's context variables. Returning `NOT_INLINE`
    sends the message through the mailbox instead. The supervisor takes all of its
    bookkeeping this way; measured on one agent step (``benchmarks/bench_core.py``, one
    run) that is ~260-280 us against ~335-345 us with every message queued, because a
    queued ask costs two scheduling rounds (~8-11 us) and an inline one ~0.3 us.

Ordering
    One actor handles one message at a time, in the order messages reached its mailbox, so
    the messages of one sender are handled in the order sent. An inline message never
    overtakes a queued one (the actor is not idle while anything is queued), and a message
    an actor sends itself while handling one inline is queued, not handled re-entrantly.

`tell` and `ask`
    `tell` returns once the message is in the mailbox, or handled, when taken inline. `ask`
    is answered inline when the actor is idle and `receive_inline` takes the message;
    otherwise the message is queued with a future that the actor's task resolves. One
    deadline, `timeout` seconds on the event loop's clock, covers waiting for room and for
    the answer; on expiry the caller gets `AskTimeoutError` (naming the actor and message
    type) and a later answer is dropped. An exception raised while answering an ask,
    inline or queued, goes back to the caller and the actor keeps running. An ask or tell
    to a stopped actor raises `ActorDeadError`.

A full mailbox
    Mailboxes are bounded (`Actor.mailbox_size`, default 256). On a full mailbox ``tell()``
    waits for room (back-pressure), ``tell(wait=False)`` and `tell_nowait` raise
    `MailboxFullError`, and `ask` waits for room within its timeout. A child's failure
    notice waits for room in its parent's mailbox: it is never dropped.
    `ActorRef.statistics` shows the queue and the senders waiting.

Restarts
    An exception raised while handling a `tell` crashes the actor, in its own task: from
    `receive`, or from `receive_inline`, whose error is queued as a crash the actor's task
    raises in turn. Its parent restarts it one-for-one: a fresh instance from the same
    factory, on the same mailbox (queued messages are kept), after ``backoff * 2**(n-1)``
    seconds (capped at ``max_backoff``) for the n-th restart inside the window. A crash
    beyond ``max_restarts`` within ``within`` seconds stops the actor for good; its parent's
    `Actor.child_failed` runs in the parent's task (by default it re-raises, so the parent
    crashes in turn), and a top-level actor goes to the system's ``on_escalation`` hook,
    or, without one, aborts the system. Backoff sleeps and the restart window read the
    system's `Clock` (``ActorSystem(clock=...)``), so a `MockClock` drives restarts without
    waiting. Ask timeouts and the 5 s bound on `stopped` stay deadlines on the event loop's
    clock: they bound real waits, and a mock clock moves only when a task sleeps on it.
    A `BaseException` that is not cancellation (`KeyboardInterrupt`, `SystemExit`) is not
    restarted from: it aborts the system.

Stopping and shutdown
    An actor stops through `Actor.stop_self` (after the current message), `ActorRef.stop`,
    a restart limit, or the system stopping. A stopping actor refuses new messages
    (`ActorDeadError`), stops its children first, one after the other, fails the ask in
    progress and every queued ask with `ActorDeadError` (queued tells are dropped), leaves
    the registry, then runs `stopped` (bounded to 5 s) and reports its failure, if any, to
    its parent. Leaving ``async with`` stops the top-level actors latest-spawned first, so
    every `stopped` hook runs after those of its children. `ActorSystem.abort` cancels the
    whole task group: every actor tears down the same way, and the error is raised out of
    ``async with`` as itself (the first one wins).
"""

from ._oneshot import OneShotActor as OneShotActor
from ._system import NOT_INLINE as NOT_INLINE
from ._system import Actor as Actor
from ._system import ActorRef as ActorRef
from ._system import ActorSystem as ActorSystem
from ._system import MailboxStatistics as MailboxStatistics
from ._system import RestartPolicy as RestartPolicy

__all__ = [
    "Actor",
    "ActorRef",
    "ActorSystem",
    "MailboxStatistics",
    "NOT_INLINE",
    "OneShotActor",
    "RestartPolicy",
]
