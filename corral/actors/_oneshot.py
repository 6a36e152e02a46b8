"""An actor that does one job when it starts, then stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._system import Actor

__all__ = ["OneShotActor"]


class _Go:
    """Message a one-shot actor sends itself to start its job."""


class OneShotActor(Actor):
    """Does `run_once` when it starts (and again after a restart), then stops itself.

    Set `after_stop` to a coroutine function to call once the actor has stopped and left
    the registry, so that it may start a successor under the same name.
    """

    after_stop: Callable[[], Awaitable[None]] | None = None

    async def run_once(self) -> None:
        """The job. A crash restarts the actor, which runs the job again."""
        raise NotImplementedError

    async def started(self) -> None:
        """Queue the job (after the mailbox is open, so a restart queues it again)."""
        await self.ref.tell(_Go())

    async def receive(self, message: Any) -> Any:
        """Run the job, then stop."""
        if isinstance(message, _Go):
            await self.run_once()
            self.stop_self()
            return None
        return await super().receive(message)

    async def stopped(self) -> None:
        """Call `after_stop`, once."""
        callback, self.after_stop = self.after_stop, None
        if callback is not None:
            await callback()
