"""The alert webhook is a real HTTP POST to a loopback server, and none is lost at shutdown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from corral import Alerts, SubAgent, tool
from corral.models import ScriptedModel, call

from ._support import runtime


class _Collector(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("content-length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture
def alert_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@tool(side_effect="destructive", scopes={"records:delete"})
async def delete_record(record_id: str) -> str:
    """Delete a record."""
    raise AssertionError("a refused call never runs")


async def test_alerts_raised_just_before_shutdown_are_still_posted(
    alert_url: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = alert_url
    agent = SubAgent(
        "ops",
        instructions="x",
        tools=[delete_record],
        model=ScriptedModel([call("delete_record", record_id="1"), "I may not delete it."]),
        scopes={"records:delete"},
        allowed_side_effects={"read"},
    )
    async with runtime(agent, alerts=Alerts(webhook=url)) as rt:
        result = await rt.run("clean up")
    # The runtime stopped right after the run: the POST was sent before it did.
    assert [(a["guardrail"], a["tool"], a["run_id"]) for a in received] == [
        ("permission", "delete_record", result.run_id)
    ]
