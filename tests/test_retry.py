"""The retry engine on its own: backoff, Retry-After, and the decision after each failure."""

from __future__ import annotations

import random

import httpx
import pytest

from corral._retry import Attempts, RetryPolicy, parse_retry_after
from corral.errors import ModelError, RateLimited, ToolError, UsageError

NOW = 1_795_586_400.0  # 2026-11-25 06:00:00 UTC
FLAT = RetryPolicy(max_retries=3, initial_delay=1.0, multiplier=4.0, jitter=0.0)


def test_delays_follow_the_backoff_with_jitter_from_the_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, rng=random.Random(42)) for n in (1, 2, 3)]
    again = [policy.delay(n, rng=random.Random(42)) for n in (1, 2, 3)]
    assert first == again  # the run's seeded rng makes the delays repeatable
    for got, base in zip(first, (1.0, 4.0, 16.0), strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert [FLAT.delay(n) for n in (1, 2, 3, 4)] == [1.0, 4.0, 16.0, 60.0]  # capped at 60 s


def test_attempts_retry_with_the_policy_delays_then_give_up() -> None:
    attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=True)
    decisions = []
    for _ in range(4):
        attempts.start()
        decisions.append(attempts.failed(ToolError("503")))
    assert [(d.action, d.attempt, d.delay) for d in decisions] == [
        ("retry", 1, 1.0),
        ("retry", 2, 4.0),
        ("retry", 3, 16.0),
        ("give_up", 4, 0.0),
    ]
    assert decisions[-1].retryable and decisions[-1].final and not decisions[-1].will_retry


def test_a_jittered_sequence_is_the_same_for_the_same_seed() -> None:
    def delays(seed: int) -> list[float]:
        attempts = Attempts(RetryPolicy(), rng=random.Random(seed), retry_unknown=True)
        out = []
        for _ in range(3):
            attempts.start()
            out.append(attempts.failed(ToolError("busy")).delay)
        return out

    assert delays(7) == delays(7) != delays(8)


def test_a_permanent_error_gives_up_at_once() -> None:
    attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=True)
    attempts.start()
    decided = attempts.failed(ToolError("bad request", retryable=False))
    assert (decided.action, decided.retryable, decided.attempt) == ("give_up", False, 1)


def test_an_error_that_says_nothing_is_retried_only_if_the_caller_says_so() -> None:
    for retry_unknown, action in ((True, "retry"), (False, "give_up")):
        attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=retry_unknown)
        attempts.start()
        assert attempts.failed(ValueError("bug")).action == action


def test_a_base_exception_is_fatal_and_never_falls_back() -> None:
    attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=True, fallback=FLAT)
    attempts.start()
    decided = attempts.failed(KeyboardInterrupt())
    assert decided.fatal and decided.final and not decided.retryable


def test_retry_after_beats_the_backoff_up_to_the_cap() -> None:
    attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=False)
    attempts.start()
    assert attempts.failed(RateLimited("429", retry_after=7.5)).delay == 7.5
    attempts.start()
    assert attempts.failed(RateLimited("429", retry_after=0.5)).delay == 4.0  # backoff longer
    attempts.start()
    assert attempts.failed(ModelError("busy", retry_after=3600)).delay == 60.0  # capped
    assert RetryPolicy(jitter=0, max_delay=5).delay(1, retry_after=30) == 5


def test_fall_back_after_giving_up_with_the_fallbacks_own_tries() -> None:
    one_retry = RetryPolicy(max_retries=1, initial_delay=2.0, jitter=0.0)
    attempts = Attempts(one_retry, rng=random.Random(1), retry_unknown=True, fallback=FLAT)
    actions = []
    for _ in range(2):
        attempts.start()
        actions.append(attempts.failed(ToolError("down")).action)
    assert actions == ["retry", "fall_back"]
    assert attempts.fall_back() is FLAT
    numbers = []
    for _ in range(4):
        numbers.append(attempts.start())
        decided = attempts.failed(ToolError("down too"))
    assert numbers == [3, 4, 5, 6]  # numbering continues across the fallback
    assert decided.action == "give_up"  # four tries of its own, and no second fallback
    with pytest.raises(UsageError):
        attempts.fall_back()


def test_a_resumed_call_keeps_its_numbering_and_always_gets_one_try() -> None:
    attempts = Attempts(FLAT, rng=random.Random(1), retry_unknown=True, attempt=6)
    assert attempts.start() == 7
    assert attempts.failed(ToolError("still down")).action == "give_up"
    halfway = Attempts(FLAT, rng=random.Random(1), retry_unknown=True, attempt=2)
    halfway.start()
    assert (halfway.failed(ToolError("x")).action, halfway.attempt) == ("retry", 3)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "Wed, 25 Nov 2026 06:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 25 Nov 2026 05:59:00 GMT"}, 0.0),  # in the past: now
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # milliseconds win
        ({"RETRY-AFTER-MS": "250"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),  # a bad ms is ignored
        ({"retry-after-ms": "-5", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-5"}, None),
        ({"retry-after": "-3"}, None),  # negative: ignored, not clamped
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected
    assert parse_retry_after(httpx.Headers(headers), now=NOW) == expected


def test_tools_and_model_adapters_read_retry_after_the_same_way() -> None:
    from corral.models._errors import error_for_status
    from corral.tools import retry_after_from_response

    for headers in ({"retry-after": "-3"}, {"retry-after-ms": "-1", "retry-after": "4"}):
        response = httpx.Response(429, headers=headers)
        error = error_for_status(429, provider="p", model="m", headers=response.headers)
        assert (
            retry_after_from_response(response) == error.retry_after == parse_retry_after(headers)
        )
