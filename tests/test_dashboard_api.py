"""The dashboard's page and the read-only API it needs, over a real uvicorn on a loopback port.

The page and its assets come from the package with a strict Content-Security-Policy and
nothing from another origin; ``/v1/run-table``, ``/v1/approval-queue`` and ``/v1/overview``
agree with the public API's views of the same runs and follow them as they change; the
event feed sends a notice per event to a token holder, and ends when the service drains.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from corral import Runtime, Tenants
from corral.demo import DEMO_TASK, app
from corral.server import ServerSettings, Service
from corral.server import _dashboard as dashboard
from corral.server._dashboard import CONTENT_SECURITY_POLICY, _RunCache, overview
from corral.supervisor import TenantLimits

from ._server import Live, live_service

SUPPORT_TASK = "I cannot log in to my account: how do I reset my password?"
PROBLEM = "application/problem+json"


async def submit(live: Live, task: str) -> str:
    response = await live.as_("sam").post("/v1/runs", json={"task": task})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    await live.runtime.wait(run_id)  # finished, or waiting at its gates
    return run_id


async def approve_all(live: Live, run_id: str) -> None:
    for gate in (await live.as_("ana").get("/v1/approvals")).json()["approvals"]:
        decided = await live.as_("ana").post(f"/v1/approvals/{gate['gate_id']}/approve")
        assert decided.status_code == 200, decided.text
    await live.runtime.wait(run_id)


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == "unauthenticated"


# -- the page ----------------------------------------------------------------------------------


async def test_the_page_and_its_assets_come_from_the_package_under_a_strict_policy(
    tmp_path: Path,
) -> None:
    async with live_service(tmp_path) as live:
        anon = live.as_("anon")
        page = await anon.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe" not in CONTENT_SECURITY_POLICY  # no inline script or style, no eval
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        html = page.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
        assert not re.search(r"\s(on[a-z]+|style)=", html)  # no inline handler or style

        packaged = resources.files("corral.server") / "dashboard"
        types = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}
        for name, media_type in types.items():
            asset = await anon.get(f"/dashboard/{name}")
            assert asset.status_code == 200
            assert asset.headers["content-type"].startswith(media_type)
            assert asset.content == (packaged / name).read_bytes()
            assert f"/dashboard/{name}" in html
            again = await anon.get(
                f"/dashboard/{name}", headers={"If-None-Match": asset.headers["etag"]}
            )
            assert again.status_code == 304 and again.content == b""
        for name in ("index.html", *types):
            text = (packaged / name).read_text()
            elsewhere = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text)
            assert set(elsewhere) <= {"http://www.w3.org/2000/svg"}, (name, elsewhere)  # a name


# -- the run table -------------------------------------------------------------------------------


async def test_the_run_table_adds_route_steps_tokens_and_cost_and_follows_changes(
    tmp_path: Path,
) -> None:
    async with live_service(tmp_path) as live:
        support = await submit(live, SUPPORT_TASK)
        billing = await submit(live, DEMO_TASK)
        rita = live.as_("rita")
        assert_401(await live.as_("anon").get("/v1/run-table"))

        table = (await rita.get("/v1/run-table")).json()
        assert [r["run_id"] for r in table["runs"]] == [billing, support]  # newest first
        for row in table["runs"]:
            view = (await rita.get(f"/v1/runs/{row['run_id']}")).json()
            assert row["route"] == view["route"]["rule"]
            for key in ("status", "outcome", "agent", "steps", "model_calls", "tokens", "cost_usd"):
                assert row[key] == view[key], key
        rows = {r["run_id"]: r for r in table["runs"]}
        assert rows[billing]["route"] == "billing-words" and rows[billing]["status"] == "waiting"
        assert rows[support]["route"] == "support-words" and rows[support]["outcome"] == "completed"
        assert rows[support]["duration_s"] > 0

        waiting = (await rita.get("/v1/run-table", params={"status": "waiting"})).json()
        assert [r["run_id"] for r in waiting["runs"]] == [billing]
        first = (await rita.get("/v1/run-table", params={"limit": 1})).json()
        assert [r["run_id"] for r in first["runs"]] == [billing]
        after = {"limit": 1, "cursor": first["next_cursor"]}
        second = (await rita.get("/v1/run-table", params=after)).json()
        assert [r["run_id"] for r in second["runs"]] == [support]
        assert second["next_cursor"] is None
        bad = await rita.get("/v1/run-table", params={"created_after": "yesterday"})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_time"

        await approve_all(live, billing)  # the cached row is refolded: its run changed
        done = (await rita.get("/v1/run-table", params={"status": "finished"})).json()
        row = {r["run_id"]: r for r in done["runs"]}[billing]
        view = (await rita.get(f"/v1/runs/{billing}")).json()
        assert (row["status"], row["outcome"]) == ("finished", "completed")
        assert row["tokens"] == view["tokens"] > rows[billing]["tokens"]
        assert row["steps"] == view["steps"] > rows[billing]["steps"]


# -- the approval queue --------------------------------------------------------------------------


async def test_the_queue_gives_each_gate_its_tools_schema_its_run_and_its_sources(
    tmp_path: Path,
) -> None:
    async with live_service(tmp_path) as live:
        billing = await submit(live, DEMO_TASK)
        assert_401(await live.as_("anon").get("/v1/approval-queue"))
        queue = (await live.as_("rita").get("/v1/approval-queue")).json()["approvals"]
        public = (await live.as_("rita").get("/v1/approvals")).json()["approvals"]
        assert [g["gate_id"] for g in queue] == [g["gate_id"] for g in public]
        assert len(queue) == 2

        schema = live.runtime.agents["billing"].tool_for("flag_discrepancy").input_schema  # type: ignore[union-attr]
        for gate in queue:
            assert gate["tool"] == "flag_discrepancy"
            assert gate["input_schema"] == schema
            assert set(gate["input_schema"]["required"]) == {"invoice_id", "difference", "reason"}
            assert gate["input_schema"]["additionalProperties"] is False
            assert gate["run"]["run_id"] == billing
            assert gate["run"]["task"] == DEMO_TASK
            assert gate["run"]["status"] == "waiting"
            invoice = gate["arguments"]["invoice_id"]
            cited = {
                s["call_id"] for p in gate["provenance"] for s in p["sources"] if "call_id" in s
            }
            sources = {s["call_id"]: s for s in gate["sources"]}
            assert set(sources) == cited and len(sources) == 3
            assert {s["tool"] for s in sources.values()} == {
                "search_invoices",
                "get_invoice",
                "calculate_invoice",
            }
            for source in sources.values():  # the results the value came from, as seen
                assert invoice in source["content"] and source["truncated"] is False
                assert json.loads(source["content"])  # whole: it is under SOURCE_CHARS

        await approve_all(live, billing)
        assert (await live.as_("rita").get("/v1/approval-queue")).json() == {"approvals": []}


# -- the overview --------------------------------------------------------------------------------


async def test_the_overview_counts_tool_outcomes_refusals_steps_breakers_and_tenants(
    tmp_path: Path,
) -> None:
    async with live_service(tmp_path) as live:
        support = await submit(live, SUPPORT_TASK)
        billing = await submit(live, DEMO_TASK)
        await approve_all(live, billing)
        rita = live.as_("rita")
        assert_401(await live.as_("anon").get("/v1/overview"))
        o = (await rita.get("/v1/overview")).json()

        assert [r["run_id"] for r in o["runs"]] == [billing, support]
        runs = {r["run_id"]: r for r in o["runs"]}
        demo = runs[billing]
        view = (await rita.get(f"/v1/runs/{billing}")).json()
        assert (demo["tokens"], demo["steps"], demo["cost_usd"]) == (
            view["tokens"],
            view["steps"],
            view["cost_usd"],
        )
        # The demo meets a 429 (retried), a malformed id (refused by the schema), a made-up
        # tool (refused: registered), then two approved flags.
        assert demo["tools"]["search_invoices"] == {"success": 1, "failed": 1, "rejected": 0}
        assert demo["tools"]["calculate_invoice"] == {"success": 3, "failed": 0, "rejected": 1}
        assert demo["tools"]["(unknown)"] == {"success": 0, "failed": 0, "rejected": 1}
        assert demo["tools"]["flag_discrepancy"] == {"success": 2, "failed": 0, "rejected": 0}
        assert "lookup_exchange_rate" not in demo["tools"]  # a model's name is no label
        assert demo["rejections"] == {"schema": 1, "registered": 1}
        assert runs[support]["tools"] == {"search_kb": {"success": 1, "failed": 0, "rejected": 0}}
        calls = demo["calls"] + runs[support]["calls"]
        assert demo["calls"] == 11

        tools = {t["tool"]: t for t in o["tools"]}
        assert tools["search_invoices"]["rate"] == 0.5
        assert tools["get_invoice"]["rate"] == 1.0
        assert tools["calculate_invoice"]["rate"] == 0.75
        assert tools["(unknown)"]["rate"] == 0.0
        guardrails = {g["guardrail"]: g for g in o["guardrails"]}
        assert guardrails["schema"] == {
            "guardrail": "schema",
            "rejections": 1,
            "calls": calls,
            "rate": 1 / calls,
        }
        steps = Counter(str(r["steps"]) for r in o["runs"])  # both finished
        assert o["step_counts"] == dict(steps)

        breakers = {b["tool"]: b for b in o["breakers"]}
        assert set(breakers) >= {"search_invoices", "flag_discrepancy", "search_kb"}
        assert breakers["search_invoices"]["state"] == "closed"  # it recovered on retry
        tenants = {t["tenant"]: t for t in o["tenants"]}
        assert tenants["default"]["tokens"] == demo["tokens"] + runs[support]["tokens"]
        assert tenants["default"]["used_ratio"] is None  # no daily budget


async def test_a_tenants_budget_use_is_its_share_of_the_daily_limit() -> None:
    tenants = Tenants(limits={"acme": TenantLimits(daily_tokens=10_000)})
    async with Runtime(**app().runtime_options(), tenants=tenants) as runtime:
        service = Service(runtime, ServerSettings())
        handle = await runtime.submit(SUPPORT_TASK, tenant="acme")
        await runtime.wait(handle.run_id)
        o = await overview(service, _RunCache(service))
    (acme,) = o.tenants
    assert (acme.tenant, acme.daily_tokens) == ("acme", 10_000)
    assert acme.tokens == o.runs[0].tokens > 0
    assert acme.used_ratio == acme.tokens / 10_000


# -- the event feed ------------------------------------------------------------------------------


async def notices(response: httpx.Response) -> Any:
    kind = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield kind, json.loads(line.split(":", 1)[1])


async def test_the_feed_sends_a_notice_per_event_to_a_token_and_ends_on_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "MAX_FEEDS", 1)
    async with live_service(tmp_path) as live:
        assert_401(await live.as_("anon").get("/v1/events/stream"))
        schema = (await live.as_("anon").get("/openapi.json")).json()["paths"]
        assert {"/v1/run-table", "/v1/approval-queue", "/v1/overview"} <= set(schema)
        assert "/v1/events/stream" not in schema  # it never ends: no generic client waits on it

        seen: list[tuple[str, dict[str, Any]]] = []
        async with live.as_("rita").stream("GET", "/v1/events/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            with anyio.fail_after(10):
                stream = notices(response)
                kind, data = await anext(stream)
                assert (kind, data) == ("hello", {"kind": "hello"})
                crowded = await live.as_("ana").get("/v1/events/stream")  # one feed is open
                assert crowded.status_code == 503 and crowded.json()["code"] == "too_many_feeds"
                assert crowded.headers["retry-after"] == "15"
                run = await live.as_("sam").post("/v1/runs", json={"task": SUPPORT_TASK})
                run_id = run.json()["run_id"]
                async for kind, data in stream:
                    seen.append((kind, data))
                    if kind == "run_finished":
                        break
                journal = await live.runtime.journal.read(run_id)
                live.server.service.draining = True  # as a shutdown does: the feed ends
                async for _ in stream:
                    pass
        assert [k for k, _ in seen] == [e.kind for e in journal]
        assert [d["seq"] for _, d in seen] == [e.seq for e in journal]
        assert {d["run_id"] for _, d in seen} == {run_id}
        assert all(set(d) == {"run_id", "seq", "kind", "ts"} for _, d in seen)  # no content
        assert SUPPORT_TASK not in json.dumps(seen)
        refused = await live.as_("rita").get("/v1/events/stream")  # the first one closed
        assert refused.status_code == 503 and refused.json()["code"] == "draining"
