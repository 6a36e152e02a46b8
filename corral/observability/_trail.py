"""The reasoning trail: one readable row per decision of a run, for people to follow.

A call in doubt after a crash shows how it was settled: a ``reconcile`` row for what its
status probe answered (or for an idempotent call run again with its key), a gate that
says it is for a call in doubt and what the probe said, and a decision that says whether
the person found that it happened (with its result), had it run again, or skipped it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.markup import escape

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
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    WaitResolved,
    WaitStarted,
)

__all__ = ["TrailRow", "TrailWriter", "trail_row"]


@dataclass(frozen=True, slots=True)
class TrailRow:
    """One line of the trail."""

    step: int
    """Model step the row belongs to (0 before the first model call)."""
    elapsed_s: float
    """Seconds since the run started."""
    what: str
    """Short label: ``model``, ``call``, ``ok``, ``rejected``, ``error``, ``retry`` ..."""
    tool: str
    detail: str
    verdict: str
    """``ok``, ``blocked: <guardrail>``, ``retry``, ``failed``, ``needs approval``, a
    decision, how a call in doubt was settled, or empty."""
    tokens: int | None = None
    """Tokens used by the run so far, on model rows."""


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_MAX_DOUBT_GATES = 256
"""Gates for calls in doubt remembered per run (until decided)."""


class _RunTrail:
    """Per-run context needed to format rows (start time, tokens so far, doubt gates)."""

    def __init__(self, started: RunStarted) -> None:
        self.start = started.ts
        self.tokens = 0
        self.step = 0
        self.budget = int(started.limits.get("max_tokens", 0) or 0)
        self.doubt_gates: set[str] = set()
        """Open gates for calls in doubt, so their decisions say what they settle."""

    def see(self, event: Event) -> None:
        """Remember what later rows need from an event (the trail's state, not a row)."""
        if isinstance(event, ModelCalled):
            self.step = event.step
            self.tokens += event.response.usage.total_tokens
        elif isinstance(event, GateOpened):
            if event.doubt and len(self.doubt_gates) < _MAX_DOUBT_GATES:
                self.doubt_gates.add(event.gate_id)
        elif isinstance(event, GateDecided):
            self.doubt_gates.discard(event.gate_id)


def _attempts(n: int, duration_s: float) -> str:
    return f"{n} attempt{'' if n == 1 else 's'}, {duration_s:.2f} s"


def _reconciled(event: CallReconciled, t: float) -> TrailRow:
    """The row of a call in doubt settled (or left to a person) without one."""
    answer = event.answer
    took = _attempts(event.probe_attempts, event.duration_s)
    why = f": {_short(event.detail, 40)}" if event.detail else ""
    if answer == "retried":
        detail = f"retried: idempotent, same key (attempt {event.attempt} was in doubt)"
        verdict = "runs again"
    elif answer == "done":
        detail, verdict = f"probe: done ({took})", "happened"
    elif answer == "not_done":
        detail, verdict = f"probe: not done ({took})", "runs again"
    else:  # unknown, failed
        detail, verdict = f"probe: {answer}{why} ({took})", "a person decides"
    return TrailRow(event.step, t, "reconcile", event.tool, detail, verdict)


def _probe_said(doubt: dict[str, Any]) -> str:
    probe = str(doubt.get("probe", "none"))
    if probe == "none":
        return "no status probe"
    detail = doubt.get("detail")
    return f"probe: {probe}" + (f": {_short(detail, 30)}" if detail else "")


def _decision(event: GateDecided, step: int, t: float, doubt_gate: bool) -> TrailRow:
    """The row of a gate's decision; for a call in doubt, what it settles."""
    who = f" by {event.by}" if event.by else ""
    note = f": {event.note}" if event.note else ""
    verdict: str = event.decision
    if event.happened:
        verdict = "happened"
        result = f", result {_short(event.result, 30)}" if event.result is not None else ""
        note = f": it happened{result}{note}"
    elif doubt_gate:
        verdict = {"approved": "runs again", "rejected": "skipped"}.get(verdict, verdict)
    return TrailRow(
        step, t, "decision", "", f"{event.gate_id} {event.decision}{who}{note}", verdict
    )


def trail_row(event: Event, trail: _RunTrail) -> TrailRow | None:
    """Format one event as a trail row, or None for events the trail leaves out."""
    t = max(event.ts - trail.start, 0.0)
    doubt_gate = isinstance(event, GateDecided) and event.gate_id in trail.doubt_gates
    trail.see(event)
    if isinstance(event, ModelCalled):
        calls = ", ".join(c.name for c in event.response.tool_calls)
        detail = f"→ {calls}" if calls else f"final answer: {_short(event.response.text, 60)}"
        usage = event.response.usage
        return TrailRow(
            event.step,
            t,
            "model",
            event.model,
            f"{detail} ({usage.input_tokens}+{usage.output_tokens} tok)",
            "ok",
            trail.tokens,
        )
    if isinstance(event, ModelFailed):
        verdict = f"retry in {event.delay_s:.2f} s" if event.will_retry else "failed"
        return TrailRow(
            event.step,
            t,
            "model",
            event.model,
            f"{event.error_type}: {_short(event.error, 60)}",
            verdict,
        )
    if isinstance(event, ToolCallProposed):
        return TrailRow(event.step, t, "call", event.tool, _short(event.arguments), "")
    if isinstance(event, ToolCallRejected):
        return TrailRow(
            event.step,
            t,
            "rejected",
            event.tool,
            _short(event.reason, 80),
            f"blocked: {event.guardrail}",
        )
    if isinstance(event, ToolCallStarted):
        if event.fallback_for:
            return TrailRow(
                event.step, t, "fallback", event.tool, f"standing in for {event.fallback_for}", ""
            )
        if event.attempt > 1:
            return TrailRow(event.step, t, "retry", event.tool, f"attempt {event.attempt}", "")
        return None
    if isinstance(event, ToolCallFailed):
        if event.will_retry:
            verdict = f"retry in {event.delay_s:.2f} s"
        elif event.final:
            verdict = "failed"
        else:
            verdict = "fallback"
        return TrailRow(
            event.step,
            t,
            "error",
            event.tool,
            f"{event.error_type}: {_short(event.error, 60)}",
            verdict,
        )
    if isinstance(event, ToolCallFinished):
        cut = " (truncated)" if event.truncated else ""
        return TrailRow(event.step, t, "result", event.tool, _short(event.content, 70) + cut, "ok")
    if isinstance(event, CallReconciled):
        return _reconciled(event, t)
    if isinstance(event, GateOpened) and event.doubt:
        return TrailRow(
            event.step,
            t,
            "gate",
            event.tool,
            f"{event.gate_id}: in doubt, {_probe_said(event.doubt)}",
            "did it happen?",
        )
    if isinstance(event, GateOpened):
        return TrailRow(
            event.step,
            t,
            "gate",
            event.tool,
            f"{event.gate_id}: {_short(event.reason, 60)}",
            "needs approval",
        )
    if isinstance(event, GateDecided):
        return _decision(event, trail.step, t, doubt_gate)
    if isinstance(event, WaitStarted):
        return TrailRow(
            event.step, t, "wait", event.tool, f"waiting for event {event.key!r}", "paused"
        )
    if isinstance(event, WaitResolved):
        what = "timed out" if event.timed_out else f"arrived: {_short(event.payload, 50)}"
        return TrailRow(trail.step, t, "event", event.tool, f"{event.key!r} {what}", "resumed")
    if isinstance(event, GuardrailVerdict):
        return TrailRow(
            event.step,
            t,
            "notice",
            "",
            _short(event.reason, 80),
            f"{event.guardrail}: {event.decision}",
        )
    return None


class TrailWriter:
    """An event subscriber that prints each run's trail as it happens.

    Args:
        console: a `rich.console.Console` (imported lazily, so `import corral` stays light).
    """

    def __init__(self, console: Any) -> None:
        self.console = console
        self._runs: dict[str, _RunTrail] = {}

    def follow(self, events: list[Event]) -> None:
        """Continue the trail of a run that started elsewhere (before a pause or a restart)."""
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        if started is None or started.run_id in self._runs:
            return
        trail = _RunTrail(started)
        for event in events:
            trail.see(event)
        self._runs[started.run_id] = trail
        self.console.print(
            f"[bold]{started.run_id}[/] (agent [cyan]{started.agent}[/]) continues "
            f"after {len(events)} events",
            soft_wrap=True,
        )

    def __call__(self, event: Event) -> None:
        """Print the row(s) for one event."""
        if isinstance(event, RunStarted):
            self._runs[event.run_id] = _RunTrail(event)
            self.console.print(
                f"[bold]{event.run_id}[/] → agent [cyan]{event.agent}[/] "
                f"(rule [magenta]{escape(event.rule)}[/]: {escape(event.route_reason)})",
                soft_wrap=True,
            )
            self.console.print(
                f"[dim]{'step':>4}  {'time':>6}  {'event':<9} {'tool':<19} {'detail':<72} "
                f"{'verdict':<20} tokens[/]",
                soft_wrap=True,
            )
            return
        trail = self._runs.get(event.run_id)
        if trail is None:
            return
        if isinstance(event, RunFinished):
            style = "green" if event.outcome == "completed" else "red"
            budget = f"/{trail.budget:,}" if trail.budget else ""
            self.console.print(
                f"[bold {style}]{event.outcome}[/]  steps={event.steps}  "
                f"model_calls={event.model_calls}  tokens={event.tokens:,}{budget}  "
                f"cost=${event.cost_usd:.4f}  time={event.duration_s:.2f}s"
                + (f"  reason: {escape(event.reason)}" if event.reason else ""),
                soft_wrap=True,
            )
            if event.output:
                self.console.print(event.output, markup=False, highlight=False, soft_wrap=True)
            del self._runs[event.run_id]
            return
        row = trail_row(event, trail)
        if row is None:
            return
        colour = {
            "rejected": "yellow",
            "error": "red",
            "result": "green",
            "model": "blue",
            "fallback": "magenta",
            "retry": "magenta",
            "gate": "yellow",
            "decision": "cyan",
            "wait": "yellow",
            "event": "cyan",
            "notice": "yellow",
            "reconcile": "magenta",
        }.get(row.what, "white")
        tokens = f"{row.tokens:,}/{trail.budget:,}" if row.tokens is not None else ""
        self.console.print(
            f"{row.step:>4}  {row.elapsed_s:>5.2f}s  [{colour}]{row.what:<9}[/] "
            f"{escape(row.tool):<19} {escape(row.detail):<72} {escape(row.verdict):<20} {tokens}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
