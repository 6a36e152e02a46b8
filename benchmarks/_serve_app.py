"""The application `bench_server.py` serves: one agent on the instant model, 5 steps a run."""

from __future__ import annotations

from _instant import LIMITS, InstantModel, lookup

from corral import App, SubAgent


def app() -> App:
    """One agent whose runs take 5 durable steps (an instant model and tool)."""
    agent = SubAgent(
        "instant", instructions="x", tools=[lookup], model=InstantModel(5), limits=LIMITS
    )
    return App(agents=[agent])
