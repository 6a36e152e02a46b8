"""Helpers shared by the runtime tests (fakes at the seams, never mocks of our own code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral import Limits, MockClock, Runtime, SubAgent
from corral.events import Event
from corral.models import Model
from corral.tools import RetryPolicy, Tool

TINY_RETRY = RetryPolicy(initial_delay=1.0, multiplier=4.0, max_retries=3, jitter=0.0)
"""The production backoff shape (1 s, 4 s, 16 s), without jitter; tests use a MockClock."""


def agent(
    tools: Sequence[Tool],
    model: Model,
    *,
    name: str = "worker",
    scopes: Sequence[str] = (),
    limits: Limits | None = None,
) -> SubAgent:
    return SubAgent(
        name,
        instructions="You are a test agent. Use the tools.",
        tools=tools,
        model=model,
        scopes=scopes,
        limits=limits,
    )


def runtime(*agents: SubAgent, clock: MockClock | None = None, **options: Any) -> Runtime:
    return Runtime(agents=list(agents), clock=clock or MockClock(), seed=7, **options)


def kinds(events: Sequence[Event]) -> list[str]:
    return [e.kind for e in events]


def of_kind(events: Sequence[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]
