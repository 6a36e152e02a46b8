"""Prometheus metrics of real runs, read back from the text exposition a scraper sees."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from corral import (
    BreakerPolicy,
    Durability,
    MockClock,
    Router,
    Rule,
    Runtime,
    SubAgent,
    Tenants,
    tool,
)
from corral.errors import ConfigError, ToolError
from corral.events import ModelCalled, ResponseRecord, RunFinished, RunStarted
from corral.models import ScriptedModel, Usage, call, reply
from corral.observability import Metrics
from corral.supervisor import BreakerState, TenantLimits, TenantUsage
from corral.tools import RetryPolicy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples, name: str) -> list[dict[str, str]]:
    return sorted((dict(key[1]) for key in samples if key[0] == name), key=str)


def billing_tools(done: list[str]) -> list[Any]:
    @tool(timeout=5)
    async def lookup(invoice_id: str) -> str:
        """Look up an invoice."""
        return f"{invoice_id}: 10.00"

    @tool(timeout=5, retry=RetryPolicy(max_retries=1, initial_delay=2.0, jitter=0.0))
    async def ledger(query: str) -> str:
        """Query the ledger (it always times out)."""
        raise TimeoutError

    @tool(timeout=5)
    async def archive(invoice_id: str) -> str:
        """Archive an invoice (the archive is down)."""
        raise ToolError("archive is down", retryable=False)

    @tool(side_effect="external", timeout=5)
    async def refund(order_id: str) -> str:
        """Refund an order."""
        done.append(order_id)
        return "refunded"

    return [lookup, ledger, archive, refund]


def price(model: str, usage: Usage) -> float:
    return usage.input_tokens * 1e-6 + usage.output_tokens * 4e-6


def billing_runtime(clock: MockClock, model: ScriptedModel, **options: Any) -> Runtime:
    billing = SubAgent(
        "billing", instructions="Handle invoices.", tools=billing_tools([]), model=model
    )
    return Runtime(
        agents=[billing],
        router=Router([Rule("invoices", agent="billing", kind="billing")]),
        clock=clock,
        durability=Durability(poll_interval_s=None),
        tenants=Tenants(limits={"acme": TenantLimits(daily_tokens=100_000)}),
        cost=price,
        seed=7,
        **options,
    )


async def test_two_runs_one_refused_call_and_a_gate_give_exact_counts() -> None:
    clock = MockClock()
    model = ScriptedModel(
        [
            # run 1: a made-up tool, a success, a timeout retried once, a hard error
            call("fetch_invoice", invoice_id="INV-1"),
            call("lookup", invoice_id="INV-1"),
            call("ledger", query="INV-1"),
            call("archive", invoice_id="INV-1"),
            reply("INV-1 totals 10.00."),
            # run 2: an external call that waits for a person
            call("refund", order_id="ORD-7"),
            reply("Refunded."),
        ]
    )
    metrics = Metrics()
    async with billing_runtime(clock, model) as rt:
        rt.subscribe(metrics)
        first = await rt.run("total of INV-1?", kind="billing", tenant="acme")
        paused = await rt.run("refund ORD-7", kind="billing")
        (gate,) = paused.gates
        clock.advance(90)
        await rt.approve(gate.opened.gate_id, by="ana", note="customer called")
        second = await rt.wait(paused.run_id, timeout=5)
        await metrics.refresh(rt)
    assert (first.outcome, second.outcome) == ("completed", "completed")
    got = scrape(metrics)

    assert value(got, "corral_runs_total", agent="billing", outcome="completed") == 2
    assert names(got, "corral_runs_total") == [{"agent": "billing", "outcome": "completed"}]
    tool_calls = {
        (labels["tool"], labels["outcome"]): value(got, "corral_tool_calls_total", **labels)
        for labels in names(got, "corral_tool_calls_total")
    }
    assert tool_calls == {
        ("(unknown)", "rejected"): 1,  # the made-up name never becomes a label
        ("lookup", "success"): 1,
        ("ledger", "timeout"): 2,  # one per attempt
        ("archive", "error"): 1,
        ("refund", "success"): 1,
    }
    assert {labels["agent"] for labels in names(got, "corral_tool_calls_total")} == {"billing"}
    assert (
        value(got, "corral_guardrail_verdicts_total", guardrail="registered", decision="block") == 1
    )
    assert (
        value(got, "corral_guardrail_verdicts_total", guardrail="approval", decision="approve") == 1
    )

    assert value(got, "corral_run_tokens_count", agent="billing") == 2
    assert value(got, "corral_run_tokens_sum", agent="billing") == first.tokens + second.tokens
    assert value(got, "corral_run_cost_usd_sum", agent="billing") == pytest.approx(
        first.cost_usd + second.cost_usd
    )
    assert value(got, "corral_cost_usd_total", agent="billing") == pytest.approx(
        first.cost_usd + second.cost_usd
    )
    assert first.cost_usd > 0
    assert value(got, "corral_model_calls_total", agent="billing", model="scripted") == 7

    steps = {"agent": "billing", "route": "invoices"}
    assert value(got, "corral_run_steps_count", **steps) == 2
    assert value(got, "corral_run_steps_sum", **steps) == first.steps + second.steps == 4
    assert value(got, "corral_run_steps_bucket", le="1.0", **steps) == 1  # the refund run
    assert value(got, "corral_run_steps_bucket", le="2.0", **steps) == 1
    assert value(got, "corral_run_steps_bucket", le="3.0", **steps) == 2

    wait = {"tool": "refund", "decision": "approved"}
    assert value(got, "corral_gate_wait_seconds_count", **wait) == 1
    assert value(got, "corral_gate_wait_seconds_sum", **wait) == 90
    assert value(got, "corral_gate_wait_seconds_bucket", le="60.0", **wait) == 0
    assert value(got, "corral_gate_wait_seconds_bucket", le="300.0", **wait) == 1

    # Gauges, read from the runtime at scrape time.
    assert {
        labels["tool"]: value(got, "corral_breaker_state", **labels)
        for labels in names(got, "corral_breaker_state")
    } == {"lookup": 0, "ledger": 0, "archive": 0, "refund": 0}
    assert value(got, "corral_tenant_tokens_used", tenant="acme") == first.tokens
    assert value(got, "corral_tenant_budget_used_ratio", tenant="acme") == pytest.approx(
        first.tokens / 100_000
    )
    assert value(got, "corral_tenant_tokens_used", tenant="default") == second.tokens
    assert value(got, "corral_tenant_budget_used_ratio", tenant="default") is None  # no limit
    assert metrics.runs_remembered() == 0  # each run's state went with its end


async def test_breaker_gauge_shows_an_open_breaker() -> None:
    model = ScriptedModel([call("ledger", query="x"), reply("gave up")])
    metrics = Metrics()
    policy = BreakerPolicy(failure_threshold=2, cooldown_s=60)
    async with billing_runtime(MockClock(), model, breakers=policy) as rt:
        rt.subscribe(metrics)
        await rt.run("ledger", kind="billing")
        await metrics.refresh(rt)
    got = scrape(metrics)
    assert value(got, "corral_breaker_state", tool="ledger") == 2
    assert value(got, "corral_breaker_state", tool="lookup") == 0


class FakeRuntime:
    """What `Metrics.refresh` reads, as data (the mailbox accessor the runtime adds)."""

    def __init__(self, depths: Mapping[str, int], *, breakers_fail: bool = False) -> None:
        self.depths = dict(depths)
        self.breakers_fail = breakers_fail

    async def breaker_states(self) -> dict[str, BreakerState]:
        if self.breakers_fail:
            raise RuntimeError("supervisor did not answer")
        return {"lookup": BreakerState("half_open", 2, 1.0)}

    async def tenant_usage(self, tenant: str) -> TenantUsage:
        return TenantUsage(tenant, "2026-01-01", 50, 0, 0.5, TenantLimits(daily_cost_usd=2.0))

    def mailbox_depths(self) -> dict[str, int]:
        return self.depths


async def test_refresh_replaces_each_gauge_family_whole() -> None:
    metrics = Metrics()
    metrics(RunStarted(run_id="r1", ts=1.0, agent="billing", task="t", tenant="acme"))
    runtime = FakeRuntime({"supervisor": 3, "agent:billing": 0})
    await metrics.refresh(runtime)
    got = scrape(metrics)
    assert value(got, "corral_breaker_state", tool="lookup") == 1
    assert value(got, "corral_mailbox_depth", actor="supervisor") == 3
    assert value(got, "corral_mailbox_depth", actor="agent:billing") == 0
    # the ratio is the USD share when only a USD budget is set
    assert value(got, "corral_tenant_budget_used_ratio", tenant="acme") == 0.25
    assert value(got, "corral_tenant_cost_usd", tenant="acme") == 0.5

    runtime.depths = {"supervisor": 1}
    runtime.breakers_fail = True
    await metrics.refresh(runtime)
    got = scrape(metrics)
    assert names(got, "corral_mailbox_depth") == [{"actor": "supervisor"}]
    assert names(got, "corral_breaker_state") == []  # unreadable: cleared, not stale


async def test_events_of_a_run_started_elsewhere_count_under_unknown() -> None:
    metrics = Metrics()
    response = ResponseRecord(text="ok", model="m")
    metrics(ModelCalled(run_id="r9", ts=5.0, step=3, model="m", response=response, duration_s=1))
    metrics(RunFinished(run_id="r9", ts=6.0, outcome="failed", tokens=1234, steps=2))
    got = scrape(metrics)
    assert value(got, "corral_model_calls_total", agent="unknown", model="m") == 1
    assert value(got, "corral_runs_total", agent="unknown", outcome="failed") == 1
    assert value(got, "corral_run_steps_sum", agent="unknown", route="unknown") == 2
    assert value(got, "corral_run_tokens_bucket", agent="unknown", le="2500.0") == 1
    assert value(got, "corral_run_tokens_bucket", agent="unknown", le="1000.0") == 0


async def test_runs_remembered_are_bounded() -> None:
    metrics = Metrics(max_runs=2)
    for n in range(3):
        metrics(RunStarted(run_id=f"r{n}", ts=1.0, agent="billing", task="t", rule="invoices"))
    assert metrics.runs_remembered() == 2
    metrics(RunFinished(run_id="r0", ts=2.0, outcome="completed"))  # forgotten: unknown
    metrics(RunFinished(run_id="r2", ts=2.0, outcome="completed"))
    got = scrape(metrics)
    assert value(got, "corral_runs_total", agent="unknown", outcome="completed") == 1
    assert value(got, "corral_runs_total", agent="billing", outcome="completed") == 1
    assert metrics.runs_remembered() == 1


def test_each_metrics_has_its_own_registry_or_the_one_given() -> None:
    one, two = Metrics(), Metrics()
    one(RunFinished(run_id="r", ts=1.0, outcome="completed"))
    assert value(scrape(two), "corral_runs_total", agent="unknown", outcome="completed") is None
    registry = CollectorRegistry()
    given = Metrics(registry)
    assert given.registry is registry
    assert registry.get_sample_value("corral_runs_total", {"agent": "x", "outcome": "y"}) is None


def test_a_failing_event_is_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    # An event built without validation, with a count that is not a number.
    bad = RunFinished.model_construct(
        run_id="r", ts=1.0, outcome="completed", tokens="many", cost_usd=0.0, steps=0
    )
    with caplog.at_level(logging.ERROR, logger="corral"):
        metrics(bad)
        metrics(bad)
    assert [r.getMessage().split()[0] for r in caplog.records] == ["metrics.event_failed"]
    metrics(RunFinished(run_id="r", ts=1.0, outcome="completed"))  # still counting
    assert value(scrape(metrics), "corral_runs_total", agent="unknown", outcome="completed") == 1


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigError, match=r"pip install 'corral\[server\]'"):
        Metrics()


def test_importing_observability_imports_neither_prometheus_nor_opentelemetry() -> None:
    code = (
        "import sys, corral, corral.observability; "
        "print(sorted({m.split('.')[0] for m in sys.modules "
        "if m.startswith(('prometheus_client', 'opentelemetry'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
