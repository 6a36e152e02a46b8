"""What both stores' group commit raise when a run's events could not be written.

`LeaseTaken` is why a fenced run's events were refused (another claim advanced the run's
lease epoch); `Failure` is the report a batch keeps for each run it could not write, turned
into a fresh `JournalError` (a `LeaseLostError` for a lease taken over) for each appender.
"""

from __future__ import annotations

from ..errors import JournalError, LeaseLostError

__all__ = ["Failure", "LeaseTaken"]


class LeaseTaken(Exception):
    """A run's lease moved on: another claim took it over (see `LeaseLostError`)."""

    def __init__(self, holder: str | None, epoch: int) -> None:
        super().__init__(holder, epoch)
        self.holder = holder
        self.epoch = epoch

    def __str__(self) -> str:
        who = f"by {self.holder}" if self.holder else "and released"
        return (
            f"this process no longer holds the run's lease: it was taken over {who} "
            f"(lease epoch {self.epoch}), so this process stops driving it"
        )


class Failure:
    """Why events of a run were not written; raised afresh to each appender concerned."""

    __slots__ = ("cause", "message", "path", "run_id", "sqlite_error")

    def __init__(
        self, message: str, cause: BaseException, path: str, run_id: str, sqlite_error: str
    ) -> None:
        self.message = message
        self.cause = cause
        self.path = path
        self.run_id = run_id
        self.sqlite_error = sqlite_error

    def error(self, suffix: str = "") -> JournalError:
        """A new `JournalError` saying so (with `suffix` appended), caused by the original.

        A `LeaseLostError` when the run's lease was taken over by another process.
        """
        cause = self.cause
        error: JournalError
        if isinstance(cause, LeaseTaken):
            error = LeaseLostError(
                self.message + suffix,
                path=self.path,
                run_id=self.run_id,
                holder=cause.holder,
                epoch=cause.epoch,
            )
        else:
            error = JournalError(
                self.message + suffix,
                path=self.path,
                sqlite_error=self.sqlite_error,
                run_id=self.run_id,
            )
        error.__cause__ = cause
        return error
