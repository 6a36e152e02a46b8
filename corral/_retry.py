"""Retrying failed calls: the policy, the server's ``Retry-After``, the decision after a failure.

One engine serves every call Corral retries, the model call of each step and each tool
call:

* `RetryPolicy` is the data: how many retries, the backoff and its jitter.
* `parse_retry_after` is the one reader of what a server asked for (``Retry-After`` in
  seconds or as an HTTP date, ``retry-after-ms``), for the model adapters and for tools.
* `Attempts` numbers the attempts of one call and, after each failure, decides what
  comes next (`RetryDecision`): retry after a delay, fall back to the call's fallback
  tool, or give up.

Nothing here waits or writes: the agent loop journals each decision (``model_failed``,
``tool_call_failed``) and sleeps on the run's clock, so the rules run in a test with a
seeded `random.Random` and no clock at all.

How an error is classified:

* a `corral.errors.CallError` is taken at its word: its ``retryable`` and ``retry_after``;
* any other `Exception` is retried or not as the caller says (``retry_unknown``): a tool
  is arbitrary code that may fail for a passing reason, so it is retried; a model
  adapter translates every provider failure into a `CallError`, so anything else from
  it is a bug and is not;
* a `BaseException` that is not an `Exception` (``KeyboardInterrupt``, ``SystemExit``)
  is never retried and never falls back: it is `RetryDecision.fatal`, and the run stops.

The delay before retry ``n`` (from 1) is ``initial_delay * multiplier ** (n - 1)``, capped
at ``max_delay``, spread by up to ``±jitter`` from the run's random source. A
``Retry-After`` longer than that is honoured, up to ``max_delay`` too: a server asking
for an hour would otherwise hold the run far past its wall-clock limit.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import CallError, ConfigError, UsageError

__all__ = ["Attempts", "RetryAction", "RetryDecision", "RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed call is retried (a tool's, or a run's model calls).

    With the defaults the delays before retries 1, 2 and 3 are about 1 s, 4 s and 16 s.
    """

    max_retries: int = 3
    """Retries after the first attempt (so at most `max_retries + 1` attempts). Default 3."""
    initial_delay: float = 1.0
    """Delay before the first retry, in seconds. Default 1 s."""
    multiplier: float = 4.0
    """Each further delay is the previous one times this. Default 4."""
    max_delay: float = 60.0
    """Cap on one delay, in seconds, a server's `Retry-After` included. Default 60 s."""
    jitter: float = 0.1
    """Random spread of each delay, as a fraction (0.1 = ±10 %). Default 0.1."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ConfigError(
                "RetryPolicy delays must be >= 0 and multiplier >= 1, got "
                f"initial_delay={self.initial_delay}, max_delay={self.max_delay}, "
                f"multiplier={self.multiplier}"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"RetryPolicy.jitter must be in [0, 1), got {self.jitter}")

    def delay(
        self, retry: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number `retry` (1-based).

        Args:
            retry: which retry this is, starting at 1.
            retry_after: the server's `Retry-After`, in seconds: honoured when longer than
                the backoff, up to `max_delay`.
            rng: random source for jitter (seed it for repeatable tests). Default: the
                `random` module's.

        Returns:
            The delay in seconds.
        """
        base = min(self.initial_delay * self.multiplier ** (retry - 1), self.max_delay)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            return max(base, min(retry_after, self.max_delay))
        return base


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Read how long a server asked us to wait, in seconds.

    ``retry-after-ms`` (milliseconds, sent by Anthropic and OpenAI) wins over
    ``retry-after``, which is seconds or an HTTP date. A value that is negative, not a
    number, or not finite is ignored (a bad ``retry-after-ms`` leaves ``retry-after`` to
    decide). A date in the past means "now": 0 seconds.

    Args:
        headers: the response headers (any mapping; names are matched case-insensitively).
        now: the current Unix time, for HTTP dates. Default ``time.time()``.

    Returns:
        The delay in seconds (0 or more), or None when there is none worth honouring.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = _number(lowered.get("retry-after-ms"))
    if milliseconds is not None and _honoured(milliseconds):
        return milliseconds / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds if _honoured(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _number(raw: str | None) -> float | None:
    """`raw` as a float, or None when absent or not a number."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _honoured(value: float) -> bool:
    """A wait worth honouring: finite and not negative."""
    return math.isfinite(value) and value >= 0


RetryAction = Literal["retry", "fall_back", "give_up"]
"""What follows a failed attempt."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after one failed attempt, and why (the journal records each field)."""

    action: RetryAction
    """``retry`` the same call after `delay`; ``fall_back`` to the call's fallback tool;
    or ``give_up``."""
    attempt: int
    """The attempt that failed, from 1 (a fallback's attempts continue the numbering)."""
    retryable: bool
    """Whether the error allowed a retry (it may still give up: no tries left)."""
    delay: float = 0.0
    """Seconds to wait before the retry; 0 unless `action` is ``retry``."""
    fatal: bool = False
    """The error is a `BaseException` that is not an `Exception`: the run stops, and the
    error goes on to the program running Corral."""

    @property
    def will_retry(self) -> bool:
        """True when the same call is tried again."""
        return self.action == "retry"

    @property
    def final(self) -> bool:
        """True when nothing more will be tried for this call."""
        return self.action == "give_up"


class Attempts:
    """The attempts of one call: their numbering, the tries left, the decision after each.

    Call `start` before each attempt and `failed` after one fails. After a ``fall_back``
    decision, call `fall_back` and go on with the fallback tool.

    Args:
        policy: the retry policy of what is called.
        rng: the run's random source, for jitter.
        retry_unknown: whether an `Exception` that is not a `CallError` is retried.
        attempt: attempts already made for this call (a call resumed after a restart
            continues its numbering). Default 0.
        tried: how many of those count against `policy`. Default: all of them. At
            least one try is always left.
        fallback: the retry policy of the fallback tool to go on with once this call
            gives up, or None when there is none (or it is already the fallback).
    """

    __slots__ = ("_fallback", "_retry_unknown", "_rng", "_tries_left", "attempt", "policy")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        rng: random.Random,
        retry_unknown: bool,
        attempt: int = 0,
        tried: int | None = None,
        fallback: RetryPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.attempt = attempt
        """The number of the latest attempt started, from 1 (0 before the first)."""
        self._rng = rng
        self._retry_unknown = retry_unknown
        self._fallback = fallback
        spent = attempt if tried is None else tried
        self._tries_left = max(policy.max_retries + 1 - spent, 1)

    def start(self) -> int:
        """Count one more attempt.

        Returns:
            Its number, from 1.
        """
        self.attempt += 1
        self._tries_left -= 1
        return self.attempt

    def failed(self, error: BaseException) -> RetryDecision:
        """Decide what follows the failure of the attempt last started.

        Args:
            error: what the attempt raised.

        Returns:
            The decision: retry (with its delay), fall back, or give up.
        """
        if not isinstance(error, Exception):
            return RetryDecision("give_up", self.attempt, retryable=False, fatal=True)
        if isinstance(error, CallError):
            retryable, retry_after = error.retryable, error.retry_after
        else:
            retryable, retry_after = self._retry_unknown, None
        if retryable and self._tries_left > 0:
            policy = self.policy
            retry = policy.max_retries - self._tries_left + 1
            delay = policy.delay(retry, retry_after=retry_after, rng=self._rng)
            return RetryDecision("retry", self.attempt, retryable=True, delay=delay)
        if self._fallback is not None:
            return RetryDecision("fall_back", self.attempt, retryable=retryable)
        return RetryDecision("give_up", self.attempt, retryable=retryable)

    def fall_back(self) -> RetryPolicy:
        """Go on with the fallback: its own policy and tries; the numbering continues.

        Returns:
            The fallback's retry policy, now in force.

        Raises:
            UsageError: there is no fallback to go on with.
        """
        fallback = self._fallback
        if fallback is None:
            raise UsageError("this call has no fallback (or already fell back)")
        self.policy, self._fallback = fallback, None
        self._tries_left = fallback.max_retries + 1
        return fallback
