"""OpenTelemetry spans of real runs, collected with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from corral import Durability, MockClock, Runtime, SubAgent
from corral.errors import ConfigError
from corral.events import Event
from corral.models import ScriptedModel, call, reply
from corral.observability import OtelSpans
from corral.observability._otel import provider_of

from ._support import lookup_and_refund, of_kind

TASK = "Refund Jane Doe (jane@example.com) for INV-4417"


def tools() -> list[Any]:
    return lookup_and_refund("paid 120.00 by jane@example.com")


def spans_by_name(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_a_run_is_a_trace_of_model_and_tool_spans(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    clock = MockClock()
    model = ScriptedModel(
        [
            call("lookup", invoice_id="INV-4417"),
            [call("made_up", x=1), call("refund", invoice_id="INV-4417", amount=120.0)],
            reply("Refunded 120.00 to Jane Doe."),
        ],
        name="claude-sonnet-4-5",
    )
    agent = SubAgent("billing", instructions="Refund invoices.", tools=tools(), model=model)
    spans_subscriber = OtelSpans(provider)
    async with Runtime(
        agents=[agent], clock=clock, durability=Durability(poll_interval_s=None)
    ) as rt:
        rt.subscribe(spans_subscriber)
        paused = await rt.run(TASK, tenant="acme")
        (gate,) = paused.gates
        clock.advance(30)
        await rt.approve(gate.opened.gate_id, by="ana", note="ok for Jane")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert spans_subscriber.open_spans() == 0
    spans = exporter.get_finished_spans()
    events: Sequence[Event] = result.events

    (run_span,) = spans_by_name(spans, "invoke_agent billing")
    assert run_span.attributes is not None
    assert dict(run_span.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "billing",
        "gen_ai.conversation.id": result.run_id,
        "corral.run_id": result.run_id,
        "corral.tenant": "acme",
        "corral.route.rule": "(single agent)",
        "corral.outcome": "completed",
        "corral.steps": result.steps,
        "corral.model_calls": 3,
        "corral.tokens": result.tokens,
        "corral.cost_usd": 0.0,
        "gen_ai.usage.input_tokens": sum(
            e.response.usage.input_tokens for e in of_kind(events, "model_called")
        ),
        "gen_ai.usage.output_tokens": sum(
            e.response.usage.output_tokens for e in of_kind(events, "model_called")
        ),
    }
    assert run_span.status.status_code is StatusCode.UNSET
    (started,) = of_kind(events, "run_started")
    (finished,) = of_kind(events, "run_finished")
    assert (run_span.start_time, run_span.end_time) == (ns(started.ts), ns(finished.ts))
    # Verdicts, refusals and gates are events on the run's span, in journal order.
    marked = ("guardrail_verdict", "tool_call_rejected", "gate_opened", "gate_decided")
    assert [e.name for e in run_span.events] == [
        f"corral.{e.kind}" for e in events if e.kind in marked
    ]
    assert [e.attributes["corral.guardrail"] for e in run_span.events[:3]] == [
        "pii",  # the task names a person: flagged, kept
        "result_pii",
        "registered",
    ]
    assert run_span.events[2].attributes == {
        "gen_ai.tool.name": "made_up",
        "gen_ai.tool.call.id": of_kind(events, "tool_call_rejected")[0].call_id,
        "corral.guardrail": "registered",
        "corral.step": 2,
    }

    chats = spans_by_name(spans, "chat claude-sonnet-4-5")
    assert len(chats) == 3
    for span, called in zip(chats, of_kind(events, "model_called"), strict=True):
        assert span.parent is not None and span.parent.span_id == run_span.context.span_id
        assert span.context.trace_id == run_span.context.trace_id
        assert span.attributes is not None
        attributes = dict(span.attributes)
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.system"] == "anthropic"
        assert attributes["gen_ai.usage.input_tokens"] == called.response.usage.input_tokens
        assert attributes["gen_ai.usage.output_tokens"] == called.response.usage.output_tokens
        assert attributes["gen_ai.response.finish_reasons"] == (called.response.stop_reason,)
        assert attributes["corral.step"] == called.step
        assert span.end_time == ns(called.ts)
        assert span.start_time == ns(called.ts - called.duration_s)

    lookups = spans_by_name(spans, "execute_tool lookup")
    assert [s.status.status_code for s in lookups] == [StatusCode.ERROR, StatusCode.UNSET]
    assert lookups[0].attributes is not None and lookups[1].attributes is not None
    assert lookups[0].attributes["error.type"] == "ConnectionError"
    attempts = of_kind(events, "tool_call_started")
    lookup_call = attempts[0].call_id
    for span, attempt in zip(lookups, [1, 2], strict=True):
        assert span.attributes is not None
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.name"] == "lookup"
        assert span.attributes["gen_ai.tool.call.id"] == lookup_call
        assert span.attributes["corral.attempt"] == attempt
        assert span.parent is not None and span.parent.span_id == run_span.context.span_id
    assert lookups[0].start_time == ns(attempts[0].ts)
    (refund_span,) = spans_by_name(spans, "execute_tool refund")
    assert refund_span.status.status_code is StatusCode.UNSET
    assert len(spans) == 1 + 3 + 3

    # Nothing a person wrote or a tool returned is in any span: only names, ids, counts.
    exported = json.dumps(
        [dict(s.attributes or {}) for s in spans]
        + [dict(e.attributes or {}) for s in spans for e in s.events]
        + [s.status.description for s in spans],
        default=str,
    )
    for private in ("Jane", "jane@example.com", "INV-4417", "120.00", "ana", "ok for Jane"):
        assert private not in exported


async def test_a_run_that_does_not_complete_has_an_error_status(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    model = ScriptedModel([call("lookup", invoice_id="INV-1")])  # then runs out of answers
    agent = SubAgent("billing", instructions="x", tools=tools(), model=model)
    async with Runtime(agents=[agent], clock=MockClock()) as rt:
        rt.subscribe(OtelSpans(provider))
        result = await rt.run("total?")
    assert result.outcome == "failed"
    (run_span,) = spans_by_name(exporter.get_finished_spans(), "invoke_agent billing")
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.status.description == "failed"
    chat = spans_by_name(exporter.get_finished_spans(), "chat scripted")
    assert len(chat) == 2  # one answered, one failed
    assert chat[1].status.status_code is StatusCode.ERROR
    assert chat[1].attributes is not None and chat[1].attributes["error.type"] == "UsageError"
    assert "gen_ai.provider.name" not in (chat[0].attributes or {})  # unknown provider


async def test_without_an_sdk_nothing_is_recorded_and_nothing_breaks() -> None:
    model = ScriptedModel([call("lookup", invoice_id="INV-1"), reply("ok")])
    agent = SubAgent("billing", instructions="x", tools=tools(), model=model)
    spans = OtelSpans()  # the global provider: the API's no-op one in tests
    async with Runtime(agents=[agent], clock=MockClock()) as rt:
        rt.subscribe(spans)
        result = await rt.run("total?")
    assert result.outcome == "completed"
    assert spans.open_spans() == 0


def test_open_run_spans_are_bounded(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    from corral.events import RunStarted

    spans = OtelSpans(provider, max_runs=2)
    for n in range(3):
        spans(RunStarted(run_id=f"r{n}", ts=10.0 + n, agent="billing", task="t"))
    assert spans.open_spans() == 2
    (ended,) = exporter.get_finished_spans()
    assert ended.attributes is not None
    assert ended.attributes["corral.run_id"] == "r0"
    assert ended.attributes["corral.incomplete"] is True


def test_provider_is_guessed_from_the_model_name() -> None:
    assert provider_of("claude-sonnet-4-5") == "anthropic"
    assert provider_of("gpt-4o-mini") == "openai"
    assert provider_of("o3-mini") == "openai"
    assert provider_of("scripted") is None


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"pip install 'corral\[otel\]'"):
        OtelSpans()
