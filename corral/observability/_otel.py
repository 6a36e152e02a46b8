"""OpenTelemetry spans: an event subscriber that turns each run into a trace.

`OtelSpans` opens a span per run (``invoke_agent {agent}``), and under it one per model
call (``chat {model}``) and one per tool call attempt (``execute_tool {tool}``), with the
attributes of the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.tool.name`` ...). The
conventions are written here as plain strings rather than imported from
opentelemetry-semantic-conventions: its GenAI names are still "incubating" and moving,
and the package would be one more dependency for a dozen constants.

Spans are built from the journal's facts after they happen, so their times are the
events' own: a model call ends at its `ModelCalled` and began ``duration_s`` earlier; a
tool attempt runs from its `ToolCallStarted` to its `ToolCallFinished` or
`ToolCallFailed`. Guardrail verdicts, refusals and gates are events on the run's span.

What a span never holds: the task, tool arguments and results, model text, reasons and
who decided a gate, since any of them may carry personal data; only names, ids, counts,
times and outcomes. A trace can be shipped to a third party without them.

opentelemetry-api (the ``otel`` extra) is imported when an `OtelSpans` is built. The API
alone records and exports nothing: spans go somewhere only once the program installs an
SDK tracer provider with an exporter (or passes one here).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._log import get_logger
from ..errors import ConfigError
from ..events import (
    CallReconciled,
    Event,
    GateDecided,
    GateOpened,
    GuardrailVerdict,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallRejected,
    ToolCallStarted,
    WaitStarted,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["OtelSpans", "provider_of"]

log = get_logger("corral.observability")

_NS = 1_000_000_000

_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("gpt-", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("gemini", "gcp.gemini"),
    ("mistral", "mistral_ai"),
)
"""Model name prefixes -> ``gen_ai.provider.name`` (the events name the model, not the
provider; a model no prefix matches gets no provider attribute)."""

_MAX_NAME = 128
"""Longest tool name put in an attribute (a refused call's name is the model's text)."""


def provider_of(model: str) -> str | None:
    """The GenAI provider name of a model, guessed from its name; None when unknown.

    Args:
        model: the model name as the events record it (``claude-sonnet-4-5``, ``gpt-4o``).

    Returns:
        ``anthropic``, ``openai`` ... or None.
    """
    name = model.lower().rpartition("/")[2]
    for prefix, provider in _PROVIDERS:
        if name.startswith(prefix):
            return provider
    return None


def _ns(ts: float) -> int:
    return int(ts * _NS)


@dataclass(slots=True)
class _RunSpan:
    span: Span
    agent: str
    last_ts: float
    """Time of the run's latest event (the start of a model attempt that then failed)."""
    input_tokens: int = 0
    output_tokens: int = 0
    tools: dict[str, Span] = field(default_factory=dict)
    """Open tool attempt spans by call id."""


class OtelSpans:
    """OpenTelemetry spans for every run: subscribe it to a runtime.

    ::

        spans = OtelSpans()  # the global tracer provider, as the program set it up
        runtime.subscribe(spans)

    Args:
        tracer_provider: where spans go. Default: OpenTelemetry's global provider (which
            records nothing until the program installs an SDK one).
        max_runs: run spans kept open at once (a run paused at a gate keeps its span
            open until it ends); beyond it the oldest is ended as it stands, marked
            ``corral.incomplete``. Default 10,000.

    Raises:
        ConfigError: opentelemetry-api is not installed (``pip install 'corral[otel]'``).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, max_runs: int = 10_000
    ) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise ConfigError(
                "OpenTelemetry spans need opentelemetry-api: pip install 'corral[otel]'"
            ) from exc
        if max_runs < 1:
            raise ConfigError("max_runs must be at least 1")
        self._trace = trace
        self.tracer: Tracer = trace.get_tracer(
            "corral", _version(), tracer_provider=tracer_provider
        )
        """The tracer spans are made with."""
        self._max_runs = max_runs
        self._runs: OrderedDict[str, _RunSpan] = OrderedDict()
        self._failed = False

    def __call__(self, event: Event) -> None:
        """Turn one event into spans. Never raises: a failure is logged once and ignored."""
        try:
            self._observe(event)
        except Exception as exc:  # tracing must never break a run
            if not self._failed:
                self._failed = True
                log.error("otel.event_failed", kind=event.kind, error=repr(exc))

    def open_spans(self) -> int:
        """Run spans open now (runs started and not finished, at most `max_runs`)."""
        return len(self._runs)

    # -- events -----------------------------------------------------------------------------

    def _observe(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start_run(event)
            return
        if isinstance(event, RunFinished):
            self._finish_run(event)
            return
        run = self._run(event)
        if isinstance(event, ModelCalled):
            self._model_called(run, event)
        elif isinstance(event, ModelFailed):
            self._model_failed(run, event)
        elif isinstance(event, ToolCallStarted):
            self._tool_started(run, event)
        elif isinstance(event, ToolCallFinished):
            self._tool_ended(run, event.call_id, event.ts, event.tool, event.duration_s)
        elif isinstance(event, ToolCallFailed):
            self._tool_ended(run, event.call_id, event.ts, event.tool, 0.0, error=event.error_type)
        elif isinstance(event, WaitStarted):
            self._tool_ended(run, event.call_id, event.ts, event.tool, 0.0, waiting=True)
        elif isinstance(event, GuardrailVerdict):
            attributes: dict[str, Any] = {
                "corral.guardrail": event.guardrail,
                "corral.decision": event.decision,
                "corral.step": event.step,
            }
            if event.call_id:
                attributes["gen_ai.tool.call.id"] = event.call_id
            run.span.add_event("corral.guardrail_verdict", attributes, timestamp=_ns(event.ts))
        elif isinstance(event, ToolCallRejected):
            run.span.add_event(
                "corral.tool_call_rejected",
                {
                    "gen_ai.tool.name": event.tool[:_MAX_NAME],
                    "gen_ai.tool.call.id": event.call_id,
                    "corral.guardrail": event.guardrail,
                    "corral.step": event.step,
                },
                timestamp=_ns(event.ts),
            )
        elif isinstance(event, GateOpened):
            run.span.add_event(
                "corral.gate_opened",
                {
                    "corral.gate_id": event.gate_id,
                    "gen_ai.tool.name": event.tool,
                    "gen_ai.tool.call.id": event.call_id,
                },
                timestamp=_ns(event.ts),
            )
        elif isinstance(event, GateDecided):
            decided: dict[str, Any] = {
                "corral.gate_id": event.gate_id,
                "corral.decision": event.decision,
            }
            if event.happened:
                decided["corral.happened"] = True
            run.span.add_event("corral.gate_decided", decided, timestamp=_ns(event.ts))
        elif isinstance(event, CallReconciled):
            run.span.add_event(
                "corral.call_reconciled",
                {
                    "gen_ai.tool.name": event.tool,
                    "gen_ai.tool.call.id": event.call_id,
                    "corral.reconcile.answer": event.answer,
                    "corral.reconcile.attempts": event.probe_attempts,
                },
                timestamp=_ns(event.ts),
            )
        run.last_ts = max(run.last_ts, event.ts)

    def _start_run(self, event: RunStarted) -> None:
        parent = self._runs.get(event.parent_run_id) if event.parent_run_id else None
        context = self._trace.set_span_in_context(parent.span) if parent is not None else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": event.agent,
            "gen_ai.conversation.id": event.run_id,
            "corral.run_id": event.run_id,
            "corral.tenant": event.tenant,
            "corral.route.rule": event.rule,
        }
        if event.task_kind:
            attributes["corral.task.kind"] = event.task_kind
        if event.parent_run_id:
            attributes["corral.parent_run_id"] = event.parent_run_id
        span = self.tracer.start_span(
            f"invoke_agent {event.agent}",
            context=context,
            kind=self._trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.ts),
        )
        self._remember(event.run_id, _RunSpan(span, event.agent, event.ts))

    def _run(self, event: Event) -> _RunSpan:
        """The run's span; a run first seen now (resumed here) gets one from this event."""
        run = self._runs.get(event.run_id)
        if run is None:
            span = self.tracer.start_span(
                "invoke_agent",
                kind=self._trace.SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.conversation.id": event.run_id,
                    "corral.run_id": event.run_id,
                    "corral.resumed": True,
                },
                start_time=_ns(event.ts),
            )
            run = self._remember(event.run_id, _RunSpan(span, "", event.ts))
        return run

    def _remember(self, run_id: str, run: _RunSpan) -> _RunSpan:
        runs = self._runs
        runs[run_id] = run
        if len(runs) > self._max_runs:
            _, oldest = runs.popitem(last=False)
            for span in oldest.tools.values():
                span.end(end_time=_ns(oldest.last_ts))
            oldest.span.set_attribute("corral.incomplete", True)
            oldest.span.end(end_time=_ns(oldest.last_ts))
        return run

    def _finish_run(self, event: RunFinished) -> None:
        run = self._runs.pop(event.run_id, None) or self._orphan(event)
        end = _ns(event.ts)
        for span in run.tools.values():  # attempts cut short by the run's end
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.outcome))
            span.end(end_time=end)
        span = run.span
        span.set_attributes(
            {
                "corral.outcome": event.outcome,
                "corral.steps": event.steps,
                "corral.model_calls": event.model_calls,
                "corral.tokens": event.tokens,
                "corral.cost_usd": event.cost_usd,
                "gen_ai.usage.input_tokens": run.input_tokens,
                "gen_ai.usage.output_tokens": run.output_tokens,
            }
        )
        if event.outcome != "completed":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.outcome))
        span.end(end_time=end)

    def _orphan(self, event: RunFinished) -> _RunSpan:
        """The span of a run that ends before any other event of it was seen here."""
        run = self._run(event)
        del self._runs[event.run_id]
        return run

    def _model_called(self, run: _RunSpan, event: ModelCalled) -> None:
        usage = event.response.usage
        input_tokens = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        run.input_tokens += input_tokens
        run.output_tokens += usage.output_tokens
        attributes = self._model_attributes(run, event.model, event.step, event.attempt)
        attributes.update(
            {
                "gen_ai.response.finish_reasons": [event.response.stop_reason],
                # The conventions count cached prompt tokens as input tokens too.
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "corral.cost_usd": event.cost_usd,
            }
        )
        if event.response.model:
            attributes["gen_ai.response.model"] = event.response.model
        if event.max_tokens:
            attributes["gen_ai.request.max_tokens"] = event.max_tokens
        if usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        span = self.tracer.start_span(
            f"chat {event.model}",
            context=self._trace.set_span_in_context(run.span),
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(event.ts - max(event.duration_s, 0.0)),
        )
        span.end(end_time=_ns(event.ts))

    def _model_failed(self, run: _RunSpan, event: ModelFailed) -> None:
        attributes = self._model_attributes(run, event.model, event.step, event.attempt)
        attributes["error.type"] = event.error_type
        span = self.tracer.start_span(
            f"chat {event.model}",
            context=self._trace.set_span_in_context(run.span),
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(min(run.last_ts, event.ts)),
        )
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.error_type))
        span.end(end_time=_ns(event.ts))
        if event.will_retry:  # the next attempt starts after the delay
            run.last_ts = event.ts + event.delay_s

    def _model_attributes(
        self, run: _RunSpan, model: str, step: int, attempt: int
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "corral.step": step,
            "corral.attempt": attempt,
        }
        if run.agent:
            attributes["gen_ai.agent.name"] = run.agent
        provider = provider_of(model)
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider
            attributes["gen_ai.system"] = provider  # the older name, still widely read
        return attributes

    def _tool_started(self, run: _RunSpan, event: ToolCallStarted) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "gen_ai.tool.call.id": event.call_id,
            "gen_ai.tool.type": "function",
            "corral.step": event.step,
            "corral.attempt": event.attempt,
            "corral.side_effect": event.side_effect,
        }
        if event.fallback_for:
            attributes["corral.fallback_for"] = event.fallback_for
        previous = run.tools.pop(event.call_id, None)
        if previous is not None:  # an attempt whose end was never journaled
            previous.end(end_time=_ns(event.ts))
        run.tools[event.call_id] = self.tracer.start_span(
            f"execute_tool {event.tool}",
            context=self._trace.set_span_in_context(run.span),
            kind=self._trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.ts),
        )

    def _tool_ended(
        self,
        run: _RunSpan,
        call_id: str,
        ts: float,
        tool: str,
        duration_s: float,
        *,
        error: str | None = None,
        waiting: bool = False,
    ) -> None:
        span = run.tools.pop(call_id, None)
        if span is None:  # started before a restart: rebuild it from the end
            span = self.tracer.start_span(
                f"execute_tool {tool}",
                context=self._trace.set_span_in_context(run.span),
                kind=self._trace.SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": call_id,
                    "gen_ai.tool.type": "function",
                },
                start_time=_ns(ts - duration_s),
            )
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        if waiting:
            span.set_attribute("corral.waiting", True)
        span.end(end_time=_ns(ts))


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corral")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None
