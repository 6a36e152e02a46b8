"""The per-token rate limit: a token bucket on an injected clock, in bounded memory."""

from __future__ import annotations

import math

import pytest

from corral.errors import ConfigError
from corral.server._ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_burst_goes_through_then_the_next_waits_for_a_token(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 3, clock=clock)  # one token a second, three at once
    assert [limiter.take("ci") for _ in range(3)] == [None, None, None]
    assert limiter.take("ci") == pytest.approx(1.0)
    clock.now += 0.25
    wait = limiter.take("ci")
    assert wait == pytest.approx(0.75)
    assert wait is not None and math.ceil(wait) == 1  # the Retry-After header
    clock.now += 0.75
    assert limiter.take("ci") is None
    assert limiter.take("ci") == pytest.approx(1.0)


def test_the_bucket_refills_at_the_rate_and_never_past_the_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(120, 2, clock=clock)  # two tokens a second
    assert limiter.take("a") is None and limiter.take("a") is None
    clock.now += 0.5  # one token back
    assert limiter.take("a") is None
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 3600  # an hour idle refills two, not 7200
    assert [limiter.take("a") is None for _ in range(3)] == [True, True, False]
    slow = RateLimiter(1, 1, clock=clock)  # one a minute
    assert slow.take("a") is None
    assert slow.take("a") == pytest.approx(60.0)


def test_each_key_has_its_own_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 1, clock=clock)
    assert limiter.take("alice") is None
    assert limiter.take("alice") is not None
    assert limiter.take("ci") is None  # alice's flood leaves ci alone


def test_zero_per_minute_turns_the_limit_off(clock: FakeClock) -> None:
    limiter = RateLimiter(0, 1, clock=clock)
    assert all(limiter.take("ci") is None for _ in range(10_000))
    assert len(limiter) == 0  # nothing kept


def test_memory_is_bounded_dropping_the_least_recently_used_key(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 1, clock=clock, max_keys=2)
    assert limiter.take("a") is None and limiter.take("b") is None
    assert limiter.take("a") is not None  # a is empty, and now the most recent
    assert limiter.take("c") is None  # drops b, the least recently used
    assert len(limiter) == 2
    assert limiter.take("a") is not None  # a was kept: still empty
    assert limiter.take("b") is None  # b was dropped: it starts full again
    many = RateLimiter(60, 1, clock=clock, max_keys=100)
    for i in range(10_000):
        many.take(f"key-{i}")
    assert len(many) == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 1, 10), "per minute must be 0"),
        ((60, 0, 10), "burst must be at least 1"),
        ((60, 1, 0), "max_keys must be at least 1"),
    ],
)
def test_nonsense_limits_are_refused(args: tuple[int, int, int], message: str) -> None:
    per_minute, burst, max_keys = args
    with pytest.raises(ConfigError, match=message):
        RateLimiter(per_minute, burst, max_keys=max_keys)
