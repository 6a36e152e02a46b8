"""``GET /metrics`` over HTTP after a scripted set of runs: each metric the issue names,
with the values the runs imply (read from the API's own run views and events)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from corral import MockClock

from ._server import live_service
from .test_server_api import DEMO_TASK, TOTAL, settled, submit


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_metrics_after_a_scripted_set_of_runs(tmp_path) -> None:
    clock = MockClock(start=1_800_000_000.0)

    def cost(model: str, usage: Any) -> float:  # a price per million tokens
        return (usage.input_tokens * 3 + usage.output_tokens * 15) / 1e6

    async with live_service(tmp_path, clock=clock, cost=cost) as live:
        quick = (await submit(live, TOTAL, tenant="globex"))["run_id"]
        gated = (await submit(live, DEMO_TASK, tenant="acme"))["run_id"]
        await settled(live, quick)
        view = await settled(live, gated)
        clock.advance(90)  # the gates wait 90 s for a person
        first, second = view["gates"]
        ana = live.as_("ana")
        await ana.post(f"/v1/approvals/{first['gate_id']}/approve", json={})
        await ana.post(f"/v1/approvals/{second['gate_id']}/reject", json={"reason": "no"})
        runs = [await settled(live, run_id) for run_id in (quick, gated)]
        assert [r["outcome"] for r in runs] == ["completed", "completed"]
        events = {
            r["run_id"]: (await live.as_("rita").get(f"/v1/runs/{r['run_id']}/events")).json()[
                "events"
            ]
            for r in runs
        }

        response = await live.as_("rita").get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)

    # runs by outcome, and the step-count distribution by agent and route
    assert value(found, "corral_runs_total", agent="billing", outcome="completed") == 2
    assert value(found, "corral_run_steps_count", agent="billing", route="billing-words") == 2
    assert value(found, "corral_run_steps_sum", agent="billing", route="billing-words") == sum(
        r["steps"] for r in runs
    )
    # token cost per run
    assert value(found, "corral_run_tokens_count", agent="billing") == 2
    assert value(found, "corral_run_tokens_sum", agent="billing") == sum(r["tokens"] for r in runs)
    # tool call success rate: every executed attempt, by tool and outcome
    finished: dict[str, int] = {}
    for trail in events.values():
        for event in trail:
            if event["kind"] == "tool_call_finished":
                finished[event["tool"]] = finished.get(event["tool"], 0) + 1
    assert finished["flag_discrepancy"] == 1  # approved once, rejected once
    for tool, count in finished.items():
        assert (
            value(found, "corral_tool_calls_total", agent="billing", tool=tool, outcome="success")
            == count
        )
    # guardrail rejection rate, by guardrail and decision: the person's rejection, and the
    # checks that sent both calls to a gate
    assert (
        value(found, "corral_guardrail_verdicts_total", guardrail="person", decision="block") == 1
    )
    # (the flagged invoice ids came from a tool's result, so provenance asked too)
    for guardrail in ("approval", "provenance"):
        assert (
            value(found, "corral_guardrail_verdicts_total", guardrail=guardrail, decision="approve")
            == 2
        )
    # gate wait time
    assert (
        value(found, "corral_gate_wait_seconds_count", tool="flag_discrepancy", decision="approved")
        == 1
    )
    assert (
        value(found, "corral_gate_wait_seconds_sum", tool="flag_discrepancy", decision="rejected")
        == 90
    )
    # breakers per tool, budget use per tenant, cost, mailbox depth
    assert value(found, "corral_breaker_state", tool="flag_discrepancy") == 0
    assert value(found, "corral_tenant_tokens_used", tenant="acme") == runs[1]["tokens"]
    assert value(found, "corral_tenant_tokens_used", tenant="globex") == runs[0]["tokens"]
    spent = sum(r["cost_usd"] for r in runs)
    assert spent > 0
    assert abs(value(found, "corral_cost_usd_total", agent="billing") - spent) < 1e-9
    assert value(found, "corral_run_cost_usd_count", agent="billing") == 2
    assert any(name == "corral_mailbox_depth" for name, _ in found)


async def test_public_metrics_need_no_token(tmp_path) -> None:
    async with live_service(tmp_path, public_metrics=True) as live:
        response = await live.as_("anon").get("/metrics")
        assert response.status_code == 200 and "corral_runs_total" in response.text
