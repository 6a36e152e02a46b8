"""A real `corral serve` API for tests: uvicorn on a loopback port, in the test's event loop.

`live_service` starts the demo application (or the agents given) on a SQLite file under
``tmp_path``, serves its API with `corral.server.Server` on 127.0.0.1 and a free port, and
yields a `Live` with an httpx client per token role. Requests travel over a real socket
to a real uvicorn; only the model's decisions are scripted (the demo's scripted models).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from corral import Clock, Runtime
from corral._settings import ServerSettings, TokenSpec
from corral.demo import app as demo_app
from corral.observability import Metrics
from corral.server import Server, Service, hash_token
from corral.store import SqliteJournal

TOKENS: dict[str, frozenset[str]] = {
    "tok-admin": frozenset({"admin"}),
    "tok-ana": frozenset({"approve"}),
    "tok-bob": frozenset({"approve"}),
    "tok-sam": frozenset({"submit"}),
    "tok-rita": frozenset({"read"}),
}
"""Test tokens and their roles; each token's name is what follows ``tok-``."""


def token_specs(tokens: Mapping[str, frozenset[str]] = TOKENS) -> list[TokenSpec]:
    """The settings' form of `tokens`: names and hashes, never the tokens."""
    return [
        TokenSpec(name=token.removeprefix("tok-"), sha256=hash_token(token), roles=roles)
        for token, roles in tokens.items()
    ]


@dataclass
class Live:
    """A served API and what a test needs to talk to it."""

    url: str
    runtime: Runtime
    server: Server
    metrics: Metrics
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def as_(self, name: str) -> httpx.AsyncClient:
        """The client sending ``tok-<name>`` (``anon`` sends no token)."""
        return self.clients[name]


@contextlib.asynccontextmanager
async def live_service(
    tmp_path: Path,
    *,
    agents: list[Any] | None = None,
    router: Any = None,
    clock: Clock | None = None,
    db: Path | None = None,
    cost: Any = None,
    **server: Any,
) -> AsyncIterator[Live]:
    """Serve the API over a real loopback socket; yields a `Live`.

    Args:
        tmp_path: where the SQLite journal goes.
        agents: the sub-agents (default: the demo application's, with its router).
        router: their router.
        clock: the runtime's clock (webhook tolerance and rate limits read it too).
        db: the journal file. Default: ``tmp_path / "corral.db"``.
        cost: the runtime's model prices (``cost=``).
        **server: `ServerSettings` fields (``max_body_bytes=``, ``webhooks=``...).
    """
    options = (
        demo_app().runtime_options() if agents is None else {"agents": agents, "router": router}
    )
    if cost is not None:
        options["cost"] = cost
    settings = ServerSettings(host="127.0.0.1", port=0, tokens=token_specs(), **server)
    async with SqliteJournal(db or tmp_path / "corral.db") as journal:
        async with Runtime(**options, journal=journal, clock=clock) as runtime:
            metrics = Metrics()
            runtime.subscribe(metrics)
            live_server = Server(Service(runtime, settings), metrics=metrics)
            async with anyio.create_task_group() as tg:
                url = await tg.start(live_server.run)
                live = Live(url, runtime, live_server, metrics)
                async with contextlib.AsyncExitStack() as stack:
                    for token in TOKENS:
                        client = httpx.AsyncClient(
                            base_url=url,
                            headers={"Authorization": f"Bearer {token}"},
                            timeout=10,
                        )
                        live.clients[token.removeprefix("tok-")] = await stack.enter_async_context(
                            client
                        )
                    live.clients["anon"] = await stack.enter_async_context(
                        httpx.AsyncClient(base_url=url, timeout=10)
                    )
                    yield live
                await live_server.shutdown(grace_s=0)
