"""A token-bucket rate limit per key (a token's name), in bounded memory.

Each key has a bucket holding up to ``burst`` tokens, refilled at ``per_minute / 60`` tokens
a second; a request takes one token or is refused with the seconds until one is back (the
server's ``Retry-After``). At most ``max_keys`` buckets are kept: the least recently used
one is dropped first, and a dropped key starts again with a full bucket, so the bound can
only make the limit more lenient, never refuse anybody wrongly.

Hand-written rather than a library's: the rule is a dozen lines, it must take an injected
clock so tests skip time, and the libraries around (slowapi, limits) bring storage backends
and framework middleware the server does not need.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..errors import ConfigError

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket per key.

    Args:
        per_minute: tokens added to each bucket per minute; 0 turns the limit off.
        burst: the bucket's size: requests a key may make at once. At least 1.
        clock: seconds, monotonic (default `time.monotonic`); tests pass a fake.
        max_keys: buckets kept; the least recently used beyond it are dropped.

    Raises:
        ConfigError: a negative rate, or a burst or `max_keys` below 1.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if per_minute < 0:
            raise ConfigError(f"rate limit per minute must be 0 (off) or more, not {per_minute}")
        if burst < 1:
            raise ConfigError(f"rate limit burst must be at least 1, not {burst}")
        if max_keys < 1:
            raise ConfigError(f"max_keys must be at least 1, not {max_keys}")
        self.per_minute = per_minute
        self.burst = burst
        self.max_keys = max_keys
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, at
        self._lock = threading.Lock()  # the server may call from worker threads

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float | None:
        """Take one token from `key`'s bucket.

        Args:
            key: whose bucket (the token's name).

        Returns:
            None when the request may go ahead; else the seconds (> 0) until the bucket
            holds a token again. Round it up for ``Retry-After``.
        """
        if self._rate == 0:
            return None
        with self._lock:
            now = self._clock()
            held = self._buckets.pop(key, None)
            if held is None:
                tokens = float(self.burst)
            else:
                tokens, at = held
                tokens = min(float(self.burst), tokens + max(now - at, 0.0) * self._rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = None
            else:
                wait = (1.0 - tokens) / self._rate
            self._buckets[key] = (tokens, now)  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait
