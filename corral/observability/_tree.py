"""The reasoning trail of a finished (or paused) run, as a tree: ``corral trace RUN_ID``.

`render_trace` reads a run's events once, in order, and draws them with rich: the run at
the root (id, agent, routing rule, tenant, outcome, tokens, cost, duration), then one node
per model step with the tools offered, each call the model picked (its arguments), and
under each call every verdict, gate, decision, attempt and the result as the model saw
it; a final answer closes its step. Events are grouped by the step they name, not by
their order, since a step's budget notice and failed attempts come before its
`ModelCalled`; a gate's decision and an awaited event name only their call, so they go
under it.

A call in doubt after a crash shows how it was settled, under the call: a ``reconcile``
row with what its status probe answered (or that an idempotent call ran again with its
key), a gate that says the call is in doubt and what the probe said, and the person's
decision: ``happened`` (with the result they gave), run again, or skipped.

Every line is a grid row of fixed-width columns (what, name, detail): a long name is cut
with an ellipsis and a long value is cut, then folded inside its column, so nothing ever
pushes the columns out of line or past the console's width. rich is imported when a
trail is drawn, not with ``corral.observability``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._pii import redact_secrets
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
    StepFailed,
    StepFinished,
    StepStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    WaitResolved,
    WaitStarted,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

__all__ = ["render_trace", "trace_tree"]

KIND_WIDTH = 9
"""Cells of the first column (``call``, ``result``, ``approved`` ...)."""
NAME_WIDTH = 22
"""Cells of the name column (tool, guardrail, model); longer names end in an ellipsis."""
ARGUMENTS_CHARS = 240
"""Characters of a call's arguments shown (as JSON) before the ellipsis."""
CONTENT_CHARS = 300
"""Characters of a result, answer or payload shown before the ellipsis."""
REASON_CHARS = 240
"""Characters of a reason or error shown before the ellipsis."""


def _cut(text: str, limit: int) -> str:
    """One line of at most `limit` characters, with an ellipsis when it was longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return redact_secrets(_cut(text, limit))


@dataclass(slots=True)
class _Row:
    kind: str
    name: str
    detail: str
    style: str = ""


@dataclass(slots=True)
class _Call:
    proposed: ToolCallProposed
    rows: list[_Row] = field(default_factory=list)


@dataclass(slots=True)
class _Step:
    number: int
    called: ModelCalled | None = None
    offered: list[str] | None = None
    rows: list[_Row] = field(default_factory=list)
    """Rows of the step itself: failed attempts, notices not about one call."""
    calls: dict[str, _Call] = field(default_factory=dict)
    orphans: dict[str, list[_Row]] = field(default_factory=dict)
    """Rows of calls whose proposal is not in the events (a journal cut short)."""


@dataclass(slots=True)
class _Trail:
    started: RunStarted | None = None
    finished: RunFinished | None = None
    steps: dict[int, _Step] = field(default_factory=dict)
    task_rows: list[_Row] = field(default_factory=list)
    """Verdicts on the task itself (step 0) and workflow steps."""
    call_step: dict[str, int] = field(default_factory=dict)
    gate_opened: dict[str, float] = field(default_factory=dict)
    doubt_gates: set[str] = field(default_factory=set)
    """Gates for calls in doubt (their `GateOpened.doubt` is set)."""
    tokens: int = 0
    cost_usd: float = 0.0
    first_ts: float | None = None
    last_ts: float = 0.0

    def step(self, number: int) -> _Step:
        found = self.steps.get(number)
        if found is None:
            found = self.steps[number] = _Step(number)
        return found

    def add(self, step: int, call_id: str | None, row: _Row) -> None:
        """Put a row under its call when the call is known, else under its step."""
        if step <= 0 and call_id is not None:
            step = self.call_step.get(call_id, 0)
        if step <= 0:
            self.task_rows.append(row)
            return
        target = self.step(step)
        if call_id is None:
            target.rows.append(row)
        elif call_id in target.calls:
            target.calls[call_id].rows.append(row)
        else:
            target.orphans.setdefault(call_id, []).append(row)


def _collect(events: Iterable[Event]) -> _Trail:
    trail = _Trail()
    for event in events:
        if trail.first_ts is None:
            trail.first_ts = event.ts
        trail.last_ts = max(trail.last_ts, event.ts)
        _fold(trail, event)
    return trail


def _fold(trail: _Trail, event: Event) -> None:
    if isinstance(event, RunStarted):
        trail.started = event
    elif isinstance(event, RunFinished):
        trail.finished = event
    elif isinstance(event, ModelCalled):
        trail.step(event.step).called = event
        trail.tokens += event.response.usage.total_tokens
        trail.cost_usd += event.cost_usd
    elif isinstance(event, ModelFailed):
        retry = f"; retry in {event.delay_s:.2f} s" if event.will_retry else ""
        detail = f"attempt {event.attempt}: {_cut(event.error, REASON_CHARS)}{retry}"
        trail.add(event.step, None, _Row("failed", event.error_type, detail, "red"))
    elif isinstance(event, ToolCallProposed):
        step = trail.step(event.step)
        if step.offered is None and event.offered:
            step.offered = list(event.offered)
        trail.call_step[event.call_id] = event.step
        call = step.calls[event.call_id] = _Call(event)
        call.rows.extend(step.orphans.pop(event.call_id, ()))
    elif isinstance(event, ToolCallRejected):
        row = _Row("blocked", event.guardrail, _cut(event.reason, REASON_CHARS), "yellow")
        trail.add(event.step, event.call_id, row)
    elif isinstance(event, GuardrailVerdict):
        row = _Row(event.decision, event.guardrail, _cut(event.reason, REASON_CHARS), "yellow")
        trail.add(event.step, event.call_id, row)
    elif isinstance(event, GateOpened):
        trail.gate_opened[event.gate_id] = event.ts
        reason = _cut(event.reason, REASON_CHARS)
        if event.doubt:
            trail.doubt_gates.add(event.gate_id)
            detail = f"{event.gate_id}: {_probe_said(event.doubt)}; {reason}"
            trail.add(event.step, event.call_id, _Row("gate", "in doubt", detail, "yellow"))
        else:
            detail = f"{event.gate_id}: {reason}"
            row = _Row("gate", "needs approval", detail, "yellow")
            trail.add(event.step, event.call_id, row)
    elif isinstance(event, GateDecided):
        trail.add(0, event.call_id, _decided(trail, event))
    elif isinstance(event, CallReconciled):
        trail.add(event.step, event.call_id, _reconciled(event))
    elif isinstance(event, ToolCallStarted):
        if event.fallback_for:
            detail = f"standing in for {event.fallback_for} (attempt {event.attempt})"
            trail.add(event.step, event.call_id, _Row("fallback", event.tool, detail, "magenta"))
        elif event.attempt > 1:
            row = _Row("retry", event.tool, f"attempt {event.attempt}", "magenta")
            trail.add(event.step, event.call_id, row)
    elif isinstance(event, ToolCallFailed):
        if event.will_retry:
            then = f"; retry in {event.delay_s:.2f} s"
        elif event.final:
            then = "; gave up"
        else:
            then = "; falling back"
        detail = f"attempt {event.attempt}: {_cut(event.error, REASON_CHARS)}{then}"
        trail.add(event.step, event.call_id, _Row("error", event.error_type, detail, "red"))
    elif isinstance(event, ToolCallFinished):
        cut = f" [truncated from {event.result_chars:,} chars]" if event.truncated else ""
        detail = _json(event.content, CONTENT_CHARS) + cut
        name = f"{event.tool} {event.duration_s:.2f} s"
        trail.add(event.step, event.call_id, _Row("result", name, detail, "green"))
    elif isinstance(event, WaitStarted):
        detail = f"waiting for event {event.key!r}"
        trail.add(event.step, event.call_id, _Row("wait", event.tool, detail, "yellow"))
    elif isinstance(event, WaitResolved):
        if event.timed_out:
            row = _Row("timed out", event.tool, f"no event {event.key!r}", "red")
        else:
            row = _Row("event", event.tool, _json(event.payload, CONTENT_CHARS), "cyan")
        trail.add(0, event.call_id, row)
    elif isinstance(event, StepStarted):
        child = f"run {event.child_run_id}" if event.child_run_id else ""
        trail.task_rows.append(_Row("started", event.step, child, "cyan"))
    elif isinstance(event, StepFinished):
        output = _json(event.output, CONTENT_CHARS)
        trail.task_rows.append(_Row("finished", event.step, output, "green"))
    elif isinstance(event, StepFailed):
        error = _cut(event.error, REASON_CHARS)
        trail.task_rows.append(_Row("failed", event.step, error, "red"))


_PROBE_NAMES: dict[str, tuple[str, str, str]] = {
    "done": ("probe: done", "it took effect: not run again", "green"),
    "not_done": ("probe: not done", "it did not take effect: runs again", "magenta"),
    "unknown": ("probe: unknown", "a person decides", "yellow"),
    "failed": ("probe failed", "a person decides", "yellow"),
    "retried": ("idempotent", "runs again (safe to run twice)", "magenta"),
}
"""Per `CallReconciled.answer`: the row's name, what follows, and its style."""


def _reconciled(event: CallReconciled) -> _Row:
    """The row of a call in doubt after a restart, settled (or left to a person)."""
    name, then, style = _PROBE_NAMES.get(event.answer, (event.answer, "", "yellow"))
    # An idempotent call's detail only restates the answer; a probe's says why.
    said = event.detail if event.answer != "retried" else ""
    why = f": {_cut(said, REASON_CHARS)}" if said else ""
    key = _cut(event.idempotency_key, REASON_CHARS)
    probed = ""
    if event.answer != "retried":
        probed = f"; {_count(event.probe_attempts, 'probe attempt')}, {event.duration_s:.2f} s"
    detail = f"attempt {event.attempt} in doubt{why}; {then}; key {key}{probed}"
    return _Row("reconcile", name, redact_secrets(detail), style)


def _probe_said(doubt: dict[str, Any]) -> str:
    """What a doubt gate's status probe answered, in words."""
    probe = str(doubt.get("probe", "none"))
    said = "no status probe" if probe == "none" else f"probe {_cut(probe, 20)}"
    detail = doubt.get("detail")
    return said + (f": {redact_secrets(_cut(str(detail), REASON_CHARS))}" if detail else "")


def _decided(trail: _Trail, event: GateDecided) -> _Row:
    """The row of a gate's decision; for a call in doubt, what it settles."""
    opened = trail.gate_opened.get(event.gate_id)
    waited = f" after {_duration(event.ts - opened)}" if opened is not None else ""
    edited = "; arguments edited" if event.arguments is not None else ""
    note = f": {_cut(event.note, REASON_CHARS)}" if event.note else ""
    kind: str = event.decision
    style = "green" if event.decision == "approved" else "red"
    settles = ""
    if event.happened:
        kind, style = "happened", "green"
        settles = "; it took effect, not run again"
        if event.result is not None:
            settles += f"; result {_json(event.result, CONTENT_CHARS)}"
    elif event.gate_id in trail.doubt_gates:
        settles = (
            "; it did not happen, runs again with the same key"
            if event.decision == "approved"
            else "; skipped"
        )
    who = f"by {event.by}" if event.by else "(no one)"
    return _Row(kind, who, f"{event.gate_id}{waited}{edited}{settles}{note}", style)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3_600:.1f} h"


def _grid(rows: Iterable[_Row]) -> Table:
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=KIND_WIDTH, no_wrap=True, overflow="ellipsis")
    grid.add_column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
    grid.add_column(overflow="fold")
    for row in rows:
        grid.add_row(
            Text(row.kind, style=f"bold {row.style}".strip()),
            Text(row.name, style="cyan"),
            Text(row.detail),
        )
    return grid


def _root(trail: _Trail) -> Table:
    from rich.table import Table
    from rich.text import Text

    started, finished = trail.started, trail.finished
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=KIND_WIDTH, no_wrap=True, overflow="ellipsis")
    grid.add_column(overflow="fold")
    run_id = started.run_id if started else finished.run_id if finished else "?"
    grid.add_row(Text("run", style="bold"), Text(run_id, style="bold"))
    if started is not None:
        grid.add_row(Text("agent"), Text(started.agent, style="cyan"))
        route = started.rule + (f" ({started.route_reason})" if started.route_reason else "")
        grid.add_row(Text("route"), Text(_cut(route, REASON_CHARS), style="magenta"))
        grid.add_row(Text("tenant"), Text(started.tenant))
        if started.parent_run_id:
            grid.add_row(Text("parent"), Text(started.parent_run_id))
    if finished is not None:
        style = "bold green" if finished.outcome == "completed" else "bold red"
        outcome = finished.outcome + (
            f": {_cut(finished.reason, REASON_CHARS)}" if finished.reason else ""
        )
        grid.add_row(Text("outcome"), Text(outcome, style=style))
        usage = (
            f"{_count(finished.tokens, 'token')} · ${finished.cost_usd:.4f} · "
            f"{_count(finished.model_calls, 'model call')} · {_count(finished.steps, 'step')}"
            f" · {_duration(finished.duration_s)}"
        )
    else:
        grid.add_row(Text("outcome"), Text("not finished (running or waiting)", style="yellow"))
        elapsed = trail.last_ts - trail.first_ts if trail.first_ts is not None else 0.0
        usage = (
            f"{_count(trail.tokens, 'token')} · ${trail.cost_usd:.4f} · "
            f"{_count(len(trail.steps), 'model step')} so far · {_duration(elapsed)}"
        )
    grid.add_row(Text("usage"), Text(usage))
    return grid


def _step_rows(step: _Step, start: float) -> tuple[_Row, list[_Row]]:
    """The step's own row and its leading rows (offered tools, failed attempts)."""
    called = step.called
    if called is not None:
        usage = called.response.usage
        cache = usage.cache_read_tokens + usage.cache_write_tokens
        tokens = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out"
        tokens += f" / {cache:,} cached" if cache else ""
        retry = f" · attempt {called.attempt}" if called.attempt > 1 else ""
        detail = (
            f"{tokens} tokens · {called.duration_s:.2f} s · at +{called.ts - start:.2f} s{retry}"
        )
        head = _Row(f"step {step.number}", called.model, detail, "blue")
    else:
        head = _Row(f"step {step.number}", "(no answer)", "the model call did not complete", "red")
    rows: list[_Row] = []
    if called is not None and called.response.tool_calls and called.response.text:
        rows.append(_Row("says", "", _json(called.response.text, CONTENT_CHARS)))
    if step.calls:
        offered = ", ".join(step.offered) if step.offered else "(not recorded)"
        rows.append(_Row("offered", _count(len(step.offered or ()), "tool"), offered))
    return head, rows


def trace_tree(events: Sequence[Event]) -> Tree:
    """Build the trail of a run as a rich `Tree` (see the module docstring).

    Args:
        events: the run's events in journal order (read once, front to back, so a lazily
            decoded sequence is fine).

    Returns:
        The tree, ready for ``console.print``.
    """
    from rich.text import Text
    from rich.tree import Tree

    trail = _collect(events)
    tree = Tree(_root(trail), guide_style="dim")
    if trail.task_rows:
        tree.add(_grid(trail.task_rows))
    start = trail.started.ts if trail.started else trail.first_ts or 0.0
    for number in sorted(trail.steps):
        step = trail.steps[number]
        head, rows = _step_rows(step, start)
        node = tree.add(_grid([head]))
        leading = rows + step.rows
        if leading:
            node.add(_grid(leading))
        for call in step.calls.values():
            proposed = call.proposed
            if proposed.parse_error:
                arguments = f"unreadable arguments: {_cut(proposed.parse_error, REASON_CHARS)}"
            else:
                arguments = _json(proposed.arguments, ARGUMENTS_CHARS)
            label = _Row("call", proposed.tool, f"{arguments}  ({proposed.call_id})", "bold")
            child = node.add(_grid([label]))
            if call.rows:
                child.add(_grid(call.rows))
        for call_id, orphan_rows in step.orphans.items():
            child = node.add(_grid([_Row("call", "?", f"({call_id})")]))
            child.add(_grid(orphan_rows))
        called = step.called
        if called is not None and not called.response.tool_calls:
            answer = called.response.text or "(empty answer)"
            node.add(_grid([_Row("answer", "", _json(answer, CONTENT_CHARS), "green")]))
    if not trail.steps and not trail.task_rows and trail.started is None:
        tree.add(Text("no events", style="dim"))
    return tree


def render_trace(events: Sequence[Event], console: Console) -> None:
    """Print a run's reasoning trail as a tree.

    Args:
        events: the run's events in journal order (`corral.RunResult.events`, or
            ``await runtime.events(run_id)``).
        console: a `rich.console.Console`; its width bounds every line.
    """
    console.print(trace_tree(events))
