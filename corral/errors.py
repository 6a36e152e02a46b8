"""Every exception Corral raises, split by who has to act on it.

The tree::

    CorralError                       root: `except CorralError` catches everything of ours
    ├── ConfigError                   the developer: invalid settings, limits, TOML, rules
    ├── UsageError                    the developer: an API used the wrong way
    │   ├── RoutingError              no rule routes this task (carries the explanation)
    │   └── GateExpired               a gate decided after its deadline (carries gate and time)
    ├── ActorError                    the actor runtime
    │   ├── ActorDeadError            the actor has stopped; the message was not handled
    │   ├── AskTimeoutError           `ask` got no reply before its timeout
    │   └── MailboxFullError          `tell(..., wait=False)` on a full mailbox
    ├── CallError                     a call to the outside world failed (retryable, retry_after)
    │   ├── ToolError                 a tool failed; raise it from a tool to control retries
    │   │   └── ToolTimeout           the tool exceeded its hard timeout
    │   ├── ModelError                a model provider failed (status_code when HTTP)
    │   │   └── ModelTimeout          the model call exceeded its timeout
    │   └── RateLimited               429 / 529 / overloaded: retry after `retry_after` seconds
    ├── JournalError                  the journal could not be written: disk full, I/O error, lock
    └── RunError                      a run did not complete (`RunResult.raise_for_outcome`)
        ├── BudgetExceeded            token, cost or wall-clock budget reached
        ├── StepLimitExceeded         tool-call cap reached
        ├── LoopDetected              the run repeated itself: a call, or results it had seen
        ├── CircuitOpen               a breaker is open and no fallback exists
        └── RunCancelled              somebody stopped the run

A stopped run is a `RunResult` with an outcome, not an exception; `raise_for_outcome()`
turns anything but ``completed`` into the matching `RunError`, which carries the result.

`CallError` subclasses carry retry behaviour as data: a tool that knows its failure is
permanent raises `ToolError("...", retryable=False)` and Corral will not retry it.

This module imports nothing from the rest of Corral, so every layer can use it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorDeadError",
    "ActorError",
    "AskTimeoutError",
    "BudgetExceeded",
    "CallError",
    "CircuitOpen",
    "ConfigError",
    "CorralError",
    "GateExpired",
    "JournalError",
    "LeaseLostError",
    "LoopDetected",
    "MailboxFullError",
    "ModelContractError",
    "ModelError",
    "ModelTimeout",
    "RateLimited",
    "RoutingError",
    "RunCancelled",
    "RunError",
    "StepLimitExceeded",
    "ToolError",
    "ToolTimeout",
    "UsageError",
]


class CorralError(Exception):
    """Root of every exception Corral raises."""


class ConfigError(CorralError, ValueError):
    """Invalid configuration: settings, limits, rules, a TOML file, or an agent definition.

    It is also a `ValueError`, so code validating values can catch either.
    """


class UsageError(CorralError):
    """A Corral API was used the wrong way; the message says how to fix it."""


class RoutingError(UsageError):
    """No routing rule matched a task.

    Attributes:
        explanation: every rule that was tried and why it did not match.
    """

    def __init__(self, message: str, *, explanation: Any = None) -> None:
        super().__init__(message)
        self.explanation = explanation


class GateExpired(UsageError):
    """A gate was approved, rejected or edited after its deadline: the decision is refused.

    An expired gate counts as a rejection (the model is told no one decided in time).

    Attributes:
        gate_id: the gate.
        run_id: its run.
        expires_at: when it expired, Unix seconds.
    """

    def __init__(self, message: str, *, gate_id: str, run_id: str, expires_at: float) -> None:
        super().__init__(message)
        self.gate_id = gate_id
        self.run_id = run_id
        self.expires_at = expires_at


class ActorError(CorralError):
    """Base class for errors of the actor runtime."""


class ActorDeadError(ActorError):
    """The actor has stopped, so the message will never be handled."""

    def __init__(self, message: str, *, actor: str = "") -> None:
        super().__init__(message)
        self.actor = actor


class AskTimeoutError(ActorError, TimeoutError):
    """An `ask` got no reply within its timeout.

    Attributes:
        actor: name of the actor that was asked.
        message_type: class name of the message that went unanswered.
        timeout: the timeout in seconds.
    """

    def __init__(self, *, actor: str, message_type: str, timeout: float) -> None:
        super().__init__(f"actor {actor!r} did not answer {message_type} within {timeout:g} s")
        self.actor = actor
        self.message_type = message_type
        self.timeout = timeout


class MailboxFullError(ActorError):
    """A non-waiting `tell` found the actor's bounded mailbox full."""

    def __init__(self, *, actor: str, capacity: int) -> None:
        super().__init__(f"mailbox of actor {actor!r} is full ({capacity} messages)")
        self.actor = actor
        self.capacity = capacity


class CallError(CorralError):
    """A call to a tool or a model failed.

    Attributes:
        retryable: whether trying again may succeed. Default True.
        retry_after: seconds to wait before the next attempt, when the other side said so.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class ToolError(CallError):
    """A tool failed. Raise it from a tool to say whether a retry can help."""


class ToolTimeout(ToolError):
    """A tool call exceeded the tool's hard timeout."""


class ModelError(CallError):
    """A model provider returned an error or could not be reached.

    Attributes:
        status_code: the HTTP status, when the provider answered.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status_code = status_code


class ModelTimeout(ModelError):
    """A model call exceeded its timeout."""


class ModelContractError(ModelError):
    """A model adapter broke the model protocol (for example, returned no `ModelResponse`).

    Not retryable: asking the same adapter again would break it the same way.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class RateLimited(CallError):
    """The other side asked us to slow down (HTTP 429, or 529 overloaded).

    Raise it from a tool, with `retry_after` when known; an `httpx.HTTPStatusError` for a
    429 response raised by a tool is translated to it automatically.
    """

    def __init__(
        self,
        message: str = "rate limited",
        *,
        retry_after: float | None = None,
        status_code: int | None = 429,
    ) -> None:
        super().__init__(message, retryable=True, retry_after=retry_after)
        self.status_code = status_code


class JournalError(CorralError):
    """The journal could not be written: a full disk, an I/O error, a lock held too long.

    The lock is SQLite's write lock, held by another connection or process for longer than
    the store's busy timeout. Nothing the message names was written; what was committed
    before is intact. A run whose events were lost stays unfinished in the journal and can
    be resumed once the journal can be written again.

    Attributes:
        path: the database (a file name, or ``:memory:``).
        sqlite_error: SQLite's name for the error (``SQLITE_FULL``, ``SQLITE_BUSY``,
            ``SQLITE_IOERR_WRITE``...); empty when SQLite did not report one.
        run_id: the run whose events were lost, when the error concerns one run.
    """

    def __init__(
        self, message: str, *, path: str = "", sqlite_error: str = "", run_id: str = ""
    ) -> None:
        super().__init__(message)
        self.path = path
        self.sqlite_error = sqlite_error
        self.run_id = run_id


class LeaseLostError(JournalError):
    """Another process took over a run this process was driving: its writes are refused.

    A process that stalls longer than its lease (a long pause, a partitioned network)
    may find, when it resumes, that another worker claimed the run after the lease ran
    out. Each claim that takes a run over advances its lease epoch, and the journal
    refuses, in the transaction that would write them, the events of a process holding
    an older epoch: nothing the message names was written, so two processes never both
    record (or, since a side effect runs only after its ``tool_call_started`` commits,
    both execute) a step. The process stops driving the run; the new holder goes on.

    Attributes:
        holder: the lease's holder now (None when it was released meanwhile).
        epoch: the run's lease epoch now.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        run_id: str = "",
        holder: str | None = None,
        epoch: int = 0,
    ) -> None:
        super().__init__(message, path=path, run_id=run_id)
        self.holder = holder
        self.epoch = epoch


class RunError(CorralError):
    """A run did not complete: raised by `RunResult.raise_for_outcome`.

    Attributes:
        run_id: the run.
        outcome: the run's outcome (``failed`` here; each subclass names its own), or None
            for a run that has not finished.
        result: the `corral.RunResult` it was raised for, trail included.
    """

    outcome: str | None = "failed"

    def __init__(self, message: str, *, result: Any) -> None:
        super().__init__(message)
        self.result = result
        self.run_id: str = result.run_id
        self.outcome = result.outcome


class BudgetExceeded(RunError):
    """A token, cost or wall-clock budget was reached."""

    outcome = "stopped_budget"


class StepLimitExceeded(RunError):
    """The run reached its cap on tool calls."""

    outcome = "stopped_steps"


class LoopDetected(RunError):
    """The run repeated itself.

    A failed call again, the same call with the same answer, or a tool's results it had
    already seen (see `corral.Limits`).
    """

    outcome = "stopped_loop"


class CircuitOpen(RunError):
    """A tool's circuit breaker is open and the tool has no fallback."""

    outcome = "stopped_breaker"


class RunCancelled(RunError):
    """The run was cancelled by a person or by the runtime shutting down."""

    outcome = "cancelled"
