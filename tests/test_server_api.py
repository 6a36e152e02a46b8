"""The HTTP API of `corral serve`, over a real uvicorn on a loopback port.

Every endpoint, every way a request is refused (401, 403, 404, 409, 410, 413, 422, 429),
idempotent submission, the event stream received and resumed, and decisions that wake a
run. The demo application drives the runs (its models are scripted; everything else is
the real runtime on a SQLite file).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from corral import MockClock, SubAgent, tool
from corral._settings import WebhookSpec
from corral.demo import DEMO_TASK
from corral.models import ScriptedModel, call
from corral.server import sign_standard
from corral.tools import WaitFor

from ._server import Live, live_service

RECONCILE = "Reconcile the unpaid invoices of customer Acme Corp"
TOTAL = "Reconcile the unpaid invoices of customer Globex"
PROBLEM = "application/problem+json"


async def until(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.02)


async def settled(live: Live, run_id: str) -> dict[str, Any]:
    """The run's view once it is waiting or finished."""

    async def look() -> dict[str, Any] | None:
        view = (await live.as_("rita").get(f"/v1/runs/{run_id}")).json()
        return view if view["status"] in ("waiting", "finished") else None

    result: dict[str, Any] = await until(look)
    return result


async def submit(live: Live, task: str, who: str = "sam", **extra: Any) -> dict[str, Any]:
    response = await live.as_(who).post("/v1/runs", json={"task": task, **extra})
    assert response.status_code == 201, response.text
    view: dict[str, Any] = response.json()
    return view


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["title"] and body["detail"]
    return body


# -- health, identity, authentication ----------------------------------------------------------


async def test_health_ready_and_whoami(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        anon = live.as_("anon")
        assert (await anon.get("/healthz")).json() == {"status": "ok"}
        assert (await anon.get("/readyz")).json() == {"status": "ready"}
        assert (await live.as_("ana").get("/v1/whoami")).json() == {
            "name": "ana",
            "roles": ["approve"],
        }
        schema = (await anon.get("/openapi.json")).json()
        assert {"/v1/runs", "/v1/approvals/{gate_id}/approve", "/v1/webhooks/{key}"} <= set(
            schema["paths"]
        )


async def test_requests_without_a_valid_token_are_401_and_never_echo_it(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        anon = live.as_("anon")
        for headers in (
            {},
            {"Authorization": "Bearer tok-nobody-has-this"},
            {"Authorization": "Basic dG9rLWFkbWluOg=="},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer " + "x" * 5000},
        ):
            response = await anon.get("/v1/runs", headers=headers)
            body = assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "tok-nobody" not in response.text and "xxxx" not in response.text
            assert "Bearer <token>" in body["detail"]
        assert_problem(await anon.get("/metrics"), 401, "unauthenticated")


async def test_each_role_reaches_only_its_endpoints(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        body = assert_problem(
            await live.as_("rita").post("/v1/runs", json={"task": TOTAL}), 403, "forbidden"
        )
        assert "'submit'" in body["detail"] and "rita" in body["detail"]
        assert_problem(
            await live.as_("ana").post("/v1/runs", json={"task": TOTAL}), 403, "forbidden"
        )
        assert_problem(
            await live.as_("sam").post("/v1/approvals/g1/approve", json={}), 403, "forbidden"
        )
        assert_problem(
            await live.as_("rita").post("/v1/deliveries", json={"key": "k"}), 403, "forbidden"
        )
        # read is implied by submit and approve; admin does everything
        assert (await live.as_("sam").get("/v1/runs")).status_code == 200
        assert (await live.as_("ana").get("/v1/approvals")).status_code == 200
        assert (await live.as_("admin").post("/v1/runs", json={"task": TOTAL})).status_code == 201


async def test_a_token_over_its_rate_limit_gets_429_with_retry_after(tmp_path) -> None:
    clock = MockClock(start=1_800_000_000.0)
    async with live_service(
        tmp_path, clock=clock, rate_limit_per_minute=60, rate_limit_burst=3
    ) as live:
        statuses = [(await live.as_("rita").get("/v1/runs")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await live.as_("rita").get("/v1/runs")
        assert_problem(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == "1"  # one request a second refills
        assert (await live.as_("ana").get("/v1/runs")).status_code == 200  # per token
        clock.advance(1.0)
        assert (await live.as_("rita").get("/v1/runs")).status_code == 200


# -- submitting --------------------------------------------------------------------------------


async def test_submit_returns_at_once_and_the_run_completes(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        view = await submit(live, TOTAL, tenant="acme")
        assert view["run_id"].startswith("run_") and view["agent"] == "billing"
        assert view["status"] in ("running", "finished")
        assert view["submitted_by"] == "sam" and view["tenant"] == "acme"
        assert view["route"]["rule"] == "billing-words" and view["route"]["reason"]
        done = await settled(live, view["run_id"])
        assert done["outcome"] == "completed" and done["steps"] >= 1
        assert done["model_calls"] >= 2 and done["tokens"] > 0
        usage = done["usage"]
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert sum(usage.values()) == done["tokens"]
        assert done["created_at"].endswith("Z") and done["output"]


async def test_an_idempotency_key_makes_a_retry_return_the_same_run(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        sam = live.as_("sam")
        key = {"Idempotency-Key": "order-7781"}
        first = await sam.post("/v1/runs", json={"task": TOTAL}, headers=key)
        again = await sam.post("/v1/runs", json={"task": TOTAL}, headers=key)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["run_id"] == again.json()["run_id"]
        other = await sam.post("/v1/runs", json={"task": RECONCILE}, headers=key)
        assert_problem(other, 409, "idempotency_key_reused")
        # the key is the caller's: another token's same key is another run
        admins = await live.as_("admin").post("/v1/runs", json={"task": TOTAL}, headers=key)
        assert admins.status_code == 201 and admins.json()["run_id"] != first.json()["run_id"]
        runs = (await sam.get("/v1/runs")).json()["runs"]
        assert len(runs) == 2


async def test_concurrent_retries_with_one_key_start_one_run(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        statuses: list[int] = []
        ids: set[str] = set()

        async def post() -> None:
            response = await live.as_("sam").post(
                "/v1/runs", json={"task": TOTAL}, headers={"Idempotency-Key": "k-1"}
            )
            statuses.append(response.status_code)
            ids.add(response.json()["run_id"])

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(post)
        assert sorted(statuses) == [200, 200, 200, 200, 201] and len(ids) == 1


async def test_invalid_submissions_are_422_naming_the_field(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        sam = live.as_("sam")
        body = assert_problem(await sam.post("/v1/runs", json={}), 422, "invalid_request")
        assert body["errors"] == [{"loc": "body.task", "msg": "Field required"}]
        body = assert_problem(
            await sam.post("/v1/runs", json={"task": TOTAL, "priority": 1}),
            422,
            "invalid_request",
        )
        assert body["errors"][0]["loc"] == "body.priority"
        body = assert_problem(await sam.post("/v1/runs", json={"task": 5}), 422, "invalid_request")
        assert "body.task" in body["detail"]
        response = await sam.post(
            "/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 422, "invalid_request")
        body = assert_problem(
            await sam.post("/v1/runs", json={"task": "Write me a poem about spring"}),
            422,
            "unroutable",
        )
        assert "no rule" in body["detail"].lower() or "route" in body["detail"].lower()
        body = assert_problem(
            await sam.post("/v1/runs", json={"task": TOTAL, "agent": "nobody"}),
            422,
            "invalid_run",
        )
        assert "nobody" in body["detail"]
        assert (await sam.get("/v1/runs")).json()["runs"] == []  # nothing was started


async def test_bodies_over_the_limit_are_413_declared_or_streamed(tmp_path) -> None:
    async with live_service(tmp_path, max_body_bytes=2_048) as live:
        sam = live.as_("sam")
        big = {"task": "invoice " + "x" * 4_000}
        assert_problem(await sam.post("/v1/runs", json=big), 413, "body_too_large")

        async def chunks():  # no Content-Length: the body is counted as it arrives
            yield b'{"task": "invoice '
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        response = await sam.post(
            "/v1/runs", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "body_too_large")
        assert (await sam.get("/v1/runs")).json()["runs"] == []
        assert (await sam.post("/v1/runs", json={"task": TOTAL})).status_code == 201


async def test_a_full_queue_refuses_submissions_with_429(tmp_path) -> None:
    async with live_service(tmp_path, max_queued_runs=1) as live:
        live.runtime._active.add("run_pretend_busy")  # one run in flight
        try:
            response = await live.as_("sam").post("/v1/runs", json={"task": TOTAL})
            body = assert_problem(response, 429, "queue_full")
            assert response.headers["retry-after"] == "5" and "max_queued_runs" in body["detail"]
        finally:
            live.runtime._active.discard("run_pretend_busy")
        assert (await live.as_("sam").post("/v1/runs", json={"task": TOTAL})).status_code == 201


async def test_a_secret_in_a_task_never_comes_back(tmp_path) -> None:
    secret = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8" * 4
    async with live_service(tmp_path) as live:
        view = await submit(live, f"Reconcile the unpaid invoices of customer Globex, key {secret}")
        await settled(live, view["run_id"])
        for path in ("", "/events", "/export"):
            response = await live.as_("rita").get(f"/v1/runs/{view['run_id']}{path}")
            assert response.status_code == 200 and secret not in response.text
        assert "[REDACTED:" in (await live.as_("rita").get(f"/v1/runs/{view['run_id']}")).text


# -- reading -----------------------------------------------------------------------------------


async def test_runs_are_listed_filtered_and_paged_with_a_cursor(tmp_path) -> None:
    clock = MockClock(start=1_800_000_000.0)
    async with live_service(tmp_path, clock=clock) as live:
        ids = []
        for i in range(5):
            view = await submit(live, TOTAL if i % 2 else RECONCILE, tenant=f"t{i % 2}")
            await settled(live, view["run_id"])
            ids.append(view["run_id"])
            clock.advance(10)
        rita = live.as_("rita")
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await rita.get("/v1/runs", params=params)).json()
            seen += [r["run_id"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        waiting = (await rita.get("/v1/runs", params={"status": "waiting"})).json()["runs"]
        assert [r["run_id"] for r in waiting] == [ids[4], ids[2], ids[0]]
        done = (await rita.get("/v1/runs", params={"outcome": "completed"})).json()["runs"]
        assert [r["run_id"] for r in done] == [ids[3], ids[1]]
        t1 = (await rita.get("/v1/runs", params={"tenant": "t1", "agent": "billing"})).json()
        assert [r["run_id"] for r in t1["runs"]] == [ids[3], ids[1]]
        window = {"created_after": "2027-01-15T08:00:10Z", "created_before": 1_800_000_030}
        assert [
            r["run_id"] for r in (await rita.get("/v1/runs", params=window)).json()["runs"]
        ] == [
            ids[2],
            ids[1],
        ]
        assert_problem(await rita.get("/v1/runs", params={"cursor": "%%%"}), 422, "invalid_request")
        assert_problem(await rita.get("/v1/runs", params={"cursor": "____"}), 400, "invalid_cursor")
        unknown = await rita.get("/v1/runs", params={"cursor": "bm9wZQ"})  # "nope": no such run
        assert unknown.json() == {"runs": [], "next_cursor": None}
        body = assert_problem(
            await rita.get("/v1/runs", params={"created_after": "yesterday"}), 422, "invalid_time"
        )
        assert "created_after" in body["detail"]
        body = assert_problem(
            await rita.get("/v1/runs", params={"status": "sleeping"}), 422, "invalid_request"
        )
        assert body["errors"][0]["loc"] == "query.status"
        assert_problem(await rita.get("/v1/runs", params={"limit": 0}), 422, "invalid_request")


async def test_one_run_its_events_and_its_export(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        view = await settled(live, (await submit(live, RECONCILE))["run_id"])
        run_id = view["run_id"]
        assert view["status"] == "waiting" and len(view["gates"]) == 2
        assert {g["tool"] for g in view["gates"]} == {"flag_discrepancy"}
        rita = live.as_("rita")
        events = (await rita.get(f"/v1/runs/{run_id}/events")).json()["events"]
        assert events[0]["kind"] == "run_started" and events[0]["seq"] == 1
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        later = (await rita.get(f"/v1/runs/{run_id}/events", params={"after": 3})).json()
        assert [e["seq"] for e in later["events"]] == [e["seq"] for e in events[3:]]
        export = await rita.get(f"/v1/runs/{run_id}/export")
        assert export.headers["content-disposition"] == f'attachment; filename="{run_id}.json"'
        document = export.json()
        assert document["run"]["run_id"] == run_id and document["events"] == events
        assert document["exported_at"].endswith("Z")
        for path in ("", "/events", "/export", "/events/stream"):
            assert_problem(await rita.get(f"/v1/runs/run_nope{path}"), 404, "run_not_found")


# -- gates ---------------------------------------------------------------------------------------


async def test_approve_with_edited_arguments_and_reject_with_a_reason(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        run_id = (await submit(live, DEMO_TASK))["run_id"]
        await settled(live, run_id)
        pending = (await live.as_("ana").get("/v1/approvals")).json()["approvals"]
        assert [g["run_id"] for g in pending] == [run_id, run_id]
        first, second = pending
        assert first["status"] == "open" and first["agent"] == "billing"
        ana = live.as_("ana")
        broken = await ana.post(
            f"/v1/approvals/{first['gate_id']}/approve",
            json={"arguments": {**first["arguments"], "difference": "forty"}},
        )
        body = assert_problem(broken, 422, "invalid_decision")
        assert "difference" in body["detail"]
        edited = {**first["arguments"], "reason": "checked by ana"}
        approved = await ana.post(
            f"/v1/approvals/{first['gate_id']}/approve",
            json={"note": "looks right", "arguments": edited, "by": "mallory"},
        )
        assert_problem(
            approved, 422, "invalid_request"
        )  # the approver is the token's, never the body's
        approved = await ana.post(
            f"/v1/approvals/{first['gate_id']}/approve",
            json={"note": "looks right", "arguments": edited},
        )
        assert approved.status_code == 200, approved.text
        gate = approved.json()
        assert (gate["status"], gate["decided_by"], gate["note"]) == (
            "approved",
            "ana",
            "looks right",
        )
        assert gate["edited_arguments"] == edited
        again = await live.as_("bob").post(f"/v1/approvals/{first['gate_id']}/approve", json={})
        assert "ana" in assert_problem(again, 409, "gate_decided")["detail"]
        assert_problem(
            await live.as_("bob").post(f"/v1/approvals/{second['gate_id']}/reject", json={}),
            422,
            "invalid_request",
        )
        rejected = await live.as_("bob").post(
            f"/v1/approvals/{second['gate_id']}/reject", json={"reason": "not this month"}
        )
        assert rejected.json()["status"] == "rejected" and rejected.json()["decided_by"] == "bob"
        done = await settled(live, run_id)
        assert done["status"] == "finished" and done["outcome"] == "completed"
        events = (await live.as_("rita").get(f"/v1/runs/{run_id}/events")).json()["events"]
        finished = [e for e in events if e["kind"] == "tool_call_finished"]
        assert any("checked by ana" in json.dumps(e) for e in events if e["kind"] == "gate_decided")
        assert finished  # the approved call ran, with the edited arguments
        assert_problem(
            await ana.post("/v1/approvals/gate_nope/approve", json={}), 404, "gate_not_found"
        )


async def test_a_submitter_cannot_approve_their_own_run_unless_allowed(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        run_id = (await submit(live, DEMO_TASK, who="admin"))["run_id"]
        view = await settled(live, run_id)
        gate_id = view["gates"][0]["gate_id"]
        body = assert_problem(
            await live.as_("admin").post(f"/v1/approvals/{gate_id}/approve", json={}),
            403,
            "own_run",
        )
        assert "allow_self_approval" in body["detail"]
        assert (
            await live.as_("ana").post(f"/v1/approvals/{gate_id}/approve", json={})
        ).status_code == 200
    async with live_service(tmp_path / "allowed", allow_self_approval=True) as live:
        run_id = (await submit(live, DEMO_TASK, who="admin"))["run_id"]
        gate_id = (await settled(live, run_id))["gates"][0]["gate_id"]
        assert (
            await live.as_("admin").post(f"/v1/approvals/{gate_id}/approve", json={})
        ).status_code == 200


async def test_an_expired_gate_is_410(tmp_path) -> None:
    clock = MockClock(start=1_800_000_000.0)
    async with live_service(tmp_path, clock=clock) as live:
        run_id = (await submit(live, DEMO_TASK))["run_id"]
        gate_id = (await settled(live, run_id))["gates"][0]["gate_id"]
        clock.advance(49 * 3600)
        assert (await live.as_("ana").get("/v1/approvals")).json()["approvals"] == []
        body = assert_problem(
            await live.as_("ana").post(f"/v1/approvals/{gate_id}/approve", json={}),
            410,
            "gate_expired",
        )
        assert "expired" in body["detail"]


async def test_cancel_a_waiting_run_then_again(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        run_id = (await submit(live, DEMO_TASK))["run_id"]
        gate_id = (await settled(live, run_id))["gates"][0]["gate_id"]
        sam = live.as_("sam")
        assert_problem(await live.as_("rita").post(f"/v1/runs/{run_id}/cancel"), 403, "forbidden")
        first = (
            await sam.post(f"/v1/runs/{run_id}/cancel", json={"reason": "wrong customer"})
        ).json()
        assert first["cancelled"] is True
        assert (first["run"]["outcome"], first["run"]["reason"]) == ("cancelled", "wrong customer")
        again = (await sam.post(f"/v1/runs/{run_id}/cancel")).json()
        assert again["cancelled"] is False and again["run"]["outcome"] == "cancelled"
        assert (await sam.get("/v1/approvals")).json()["approvals"] == []
        moot = await live.as_("ana").post(f"/v1/approvals/{gate_id}/approve", json={})
        assert "cancelled" in assert_problem(moot, 409, "run_ended")["detail"]
        assert_problem(await sam.post("/v1/runs/run_nope/cancel"), 404, "run_not_found")


async def test_cancel_a_run_another_worker_drives_asks_that_worker(tmp_path) -> None:
    import time

    from corral.events import RunStarted

    async with live_service(tmp_path) as live:
        journal = live.runtime.journal
        await journal.append(
            RunStarted(run_id="run_held", ts=time.time(), agent="billing", task="Reconcile")
        )
        assert await journal.claim("run_held", "worker-9", lease_s=3600, now=time.time())
        body = (
            await live.as_("sam").post("/v1/runs/run_held/cancel", json={"reason": "dup"})
        ).json()
        assert (body["cancelled"], body["requested"]) == (False, True)
        assert body["run"]["status"] == "running"  # worker-9 ends it, journaling why
        assert await journal.cancel_requests(["run_held"]) == {"run_held": "dup"}


# -- the event stream ----------------------------------------------------------------------------


async def _read_sse(
    response: httpx.Response, *, stop: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Parse server-sent events until `stop` says so; each as {id, event, data}."""
    received: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                current["data"] = json.loads(current["data"])
                received.append(current)
                if stop(current):
                    return received
                current = {}
            continue
        name, _, value = line.partition(":")
        current[name] = value.removeprefix(" ")
    return received


async def test_the_event_stream_follows_a_run_and_resumes_from_last_event_id(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        run_id = (await submit(live, DEMO_TASK))["run_id"]
        rita = live.as_("rita")
        url = f"/v1/runs/{run_id}/events/stream"
        async with rita.stream("GET", url) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = await _read_sse(response, stop=lambda e: e["event"] == "gate_opened")
        assert [int(e["id"]) for e in first] == list(range(1, len(first) + 1))
        assert all(
            e["data"]["seq"] == int(e["id"]) and e["data"]["kind"] == e["event"] for e in first
        )
        resume_from = int(first[-1]["id"])
        gates = (await settled(live, run_id))["gates"]  # both, not only the first opened
        assert len(gates) == 2
        for gate in gates:
            await live.as_("ana").post(f"/v1/approvals/{gate['gate_id']}/approve", json={})
        async with rita.stream("GET", url, headers={"Last-Event-ID": str(resume_from)}) as response:
            rest = await _read_sse(response, stop=lambda e: False)  # ends after run_finished
        assert int(rest[0]["id"]) == resume_from + 1
        assert rest[-1]["event"] == "run_finished"
        everything = (await rita.get(f"/v1/runs/{run_id}/events")).json()["events"]
        assert [e["data"] for e in first + rest] == everything  # nothing lost, nothing twice


# -- deliveries and webhooks ---------------------------------------------------------------------


def _waiting_agent() -> SubAgent:
    @tool
    async def await_payment(invoice_id: str) -> WaitFor:
        """Wait until the payment provider confirms the payment."""
        return WaitFor(f"payment:{invoice_id}", timeout_s=3600)

    return SubAgent(
        "payments",
        instructions="You confirm payments.",
        tools=[await_payment],
        model=ScriptedModel([call("await_payment", invoice_id="INV-1"), "Payment confirmed."]),
    )


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_TS = 1614265330


async def test_a_signed_webhook_wakes_the_waiting_run(tmp_path) -> None:
    clock = MockClock(start=float(VECTOR_TS))
    hooks = [WebhookSpec(keys="payment:*", secrets=[SECRET])]
    async with live_service(
        tmp_path, agents=[_waiting_agent()], clock=clock, webhooks=hooks
    ) as live:
        run_id = (await submit(live, "Confirm the payment of INV-1"))["run_id"]
        assert (await settled(live, run_id))["status"] == "waiting"
        body = b'{"status": "paid", "amount": 120.0}'
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(VECTOR_TS),
            "webhook-signature": sign_standard(body, SECRET, msg_id="msg_1", timestamp=VECTOR_TS),
            "content-type": "application/json",
        }
        anon = live.as_("anon")
        response = await anon.post("/v1/webhooks/payment:INV-1", content=body, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "key": "payment:INV-1",
            "run_id": run_id,
            "webhook_id": "msg_1",
            "duplicate": False,
        }
        done = await settled(live, run_id)
        assert (done["outcome"], done["output"]) == ("completed", "Payment confirmed.")
        events = (await live.as_("rita").get(f"/v1/runs/{run_id}/events")).json()["events"]
        resolved = [e for e in events if e["kind"] == "wait_resolved"]
        assert resolved and resolved[0]["payload"] == {"status": "paid", "amount": 120.0}
        replay = await anon.post("/v1/webhooks/payment:INV-1", content=body, headers=headers)
        assert replay.status_code == 202  # acknowledged, so the sender stops retrying...
        assert replay.json() == {
            "key": "payment:INV-1",
            "run_id": None,
            "webhook_id": "msg_1",
            "duplicate": True,
        }
        events = (await live.as_("rita").get(f"/v1/runs/{run_id}/events")).json()["events"]
        assert sum(e["kind"] == "wait_resolved" for e in events) == 1  # ...and not delivered twice


async def test_the_published_webhook_vectors_are_accepted_over_http(tmp_path) -> None:
    clock = MockClock(start=float(VECTOR_TS) + 60)  # within the 5-minute tolerance
    hooks = [
        WebhookSpec(keys="std:*", secrets=[SECRET]),
        WebhookSpec(keys="gh:*", scheme="github", secrets=["It's a Secret to Everybody"]),
    ]
    async with live_service(tmp_path, clock=clock, webhooks=hooks) as live:
        anon = live.as_("anon")
        standard = await anon.post(
            "/v1/webhooks/std:vector",
            content=b'{"test": 2432232314}',
            headers={
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
        )
        assert standard.status_code == 202, standard.text
        assert standard.json()["run_id"] is None  # no run waits yet: the delivery is kept
        github = await anon.post(
            "/v1/webhooks/gh:vector",
            content=b"Hello, World!",
            headers={
                "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
            },
        )
        assert github.status_code == 202, github.text


async def test_forged_stale_replayed_and_rewritten_webhooks_are_refused(tmp_path) -> None:
    clock = MockClock(start=float(VECTOR_TS))
    hooks = [WebhookSpec(keys="payment:*", secrets=[SECRET])]
    async with live_service(tmp_path, clock=clock, webhooks=hooks) as live:
        anon = live.as_("anon")
        body = b'{"status": "paid"}'

        def signed(msg_id: str, ts: int, payload: bytes = body) -> dict[str, str]:
            return {
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign_standard(payload, SECRET, msg_id=msg_id, timestamp=ts),
            }

        url = "/v1/webhooks/payment:INV-9"
        forged = {**signed("m1", VECTOR_TS), "webhook-signature": "v1," + "A" * 43 + "="}
        assert_problem(await anon.post(url, content=body, headers=forged), 401, "webhook_rejected")
        rewritten = await anon.post(
            url, content=b'{"status": "PAID"}', headers=signed("m2", VECTOR_TS)
        )
        assert_problem(rewritten, 401, "webhook_rejected")
        stale = await anon.post(url, content=body, headers=signed("m3", VECTOR_TS - 301))
        assert_problem(stale, 401, "webhook_rejected")
        future = await anon.post(url, content=body, headers=signed("m4", VECTOR_TS + 301))
        assert_problem(future, 401, "webhook_rejected")
        unsigned = await anon.post(url, content=body)
        assert_problem(unsigned, 400, "webhook_rejected")
        ok = await anon.post(url, content=body, headers=signed("m5", VECTOR_TS))
        assert ok.status_code == 202
        replayed = await anon.post(url, content=body, headers=signed("m5", VECTOR_TS))
        assert replayed.status_code == 202 and replayed.json()["duplicate"] is True
        nobody = await anon.post(
            "/v1/webhooks/other:1", content=body, headers=signed("m6", VECTOR_TS)
        )
        assert_problem(nobody, 404, "webhook_rejected")
        refused = await anon.post(url, content=body, headers=forged)
        assert SECRET not in refused.text and "MfKQ9r8G" not in refused.text


async def test_a_delivery_with_a_token_and_one_nobody_waits_for(tmp_path) -> None:
    async with live_service(tmp_path, agents=[_waiting_agent()]) as live:
        sam = live.as_("sam")
        early = (
            await sam.post("/v1/deliveries", json={"key": "payment:INV-1", "payload": {"ok": 1}})
        ).json()
        assert early == {"key": "payment:INV-1", "run_id": None, "delivered": False}
        run_id = (await submit(live, "Confirm the payment of INV-1"))["run_id"]
        done = await settled(live, run_id)  # the kept delivery answers the wait at once
        assert done["outcome"] == "completed"
        assert_problem(
            await sam.post("/v1/deliveries", json={"payload": 1}), 422, "invalid_request"
        )


async def test_unknown_paths_and_methods_are_problems_too(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        assert_problem(await live.as_("rita").get("/v1/nothing"), 404, "not_found")
        assert_problem(await live.as_("rita").delete("/v1/runs"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/approvals"])
async def test_while_draining_reads_work_and_submissions_are_503(tmp_path, path: str) -> None:
    async with live_service(tmp_path) as live:
        live.server.service.draining = True
        assert (await live.as_("anon").get("/readyz")).status_code == 503
        assert (await live.as_("sam").get(path)).status_code == 200
        response = await live.as_("sam").post("/v1/runs", json={"task": TOTAL})
        assert_problem(response, 503, "draining")
        live.server.service.draining = False


async def test_a_taken_port_is_a_clear_config_error(tmp_path) -> None:
    import socket

    from corral import Runtime
    from corral.demo import app
    from corral.errors import ConfigError
    from corral.server import Server, ServerSettings, Service

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with Runtime(**app().runtime_options()) as runtime:
            server = Server(Service(runtime, ServerSettings(port=port)))
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
                await server.run()


async def test_connections_are_served_without_nagle_delays(tmp_path) -> None:
    """TCP_NODELAY on the listener, so each keep-alive response goes out at once (without
    it, every reused connection waited ~40 ms per response for a delayed ACK)."""
    import socket

    async with live_service(tmp_path) as live:
        listener = live.server._listener
        assert listener is not None
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        for _ in range(3):  # the same connection, reused
            assert (await live.as_("rita").get("/v1/whoami")).status_code == 200


async def test_a_gate_not_in_doubt_refuses_happened_over_http(tmp_path) -> None:
    async with live_service(tmp_path) as live:
        run_id = (await submit(live, DEMO_TASK))["run_id"]
        gate = (await settled(live, run_id))["gates"][0]
        assert gate["doubt"] is None and gate["happened"] is False
        response = await live.as_("ana").post(
            f"/v1/approvals/{gate['gate_id']}/approve", json={"happened": True}
        )
        assert (
            "not for a call in doubt" in assert_problem(response, 422, "invalid_decision")["detail"]
        )
