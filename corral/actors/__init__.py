"""Actors: a small actor runtime on anyio.

Public: `ActorSystem`, `Actor`, `OneShotActor`, `ActorRef`, `RestartPolicy`,
`MailboxStatistics`, and `NOT_INLINE` (see `Actor.receive_inline`).
This subpackage imports nothing from Corral but `corral.errors`.
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
