"""A run's state as a fold over its events.

The live loop and a replay after a crash use the same `RunState.apply`, so a resumed run
continues exactly where the journal says it was: completed model and tool calls are
never repeated, their recorded results are used.

`RunState.apply` is the one owner of a run's figures (tool calls, model calls, tokens,
cost, errors): the supervisor is told what it counted, and `RunState.finished_event`
builds every ``run_finished`` from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..events import (
    CallReconciled,
    ContextSummarised,
    EpisodesRecalled,
    Event,
    GateDecided,
    GateOpened,
    GuardrailVerdict,
    ModelCalled,
    Outcome,
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
from ..guardrails import Origin, Sources
from ..models import (
    Message,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from ..models._tokens import message_token_bound
from ..supervisor._loops import result_digest

__all__ = ["BUDGET_NOTICE", "EPISODES_SOURCE", "RunState", "call_key", "render_payload"]

BUDGET_NOTICE = "budget"
"""Guardrail name of the budget notice; its verdict's reason is given to the model."""

EPISODES_SOURCE = "memory.episodes"
"""The untrusted source past examples are traced to by provenance (like a tool's result)."""


def render_payload(value: Any) -> str:
    """Turn a tool's return value (or a delivered payload) into text for the model."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def call_key(
    tool: str, arguments: Mapping[str, Any], *, parse_error: str | None = None, call_id: str = ""
) -> str:
    """Identify a call by tool and canonical arguments: ``get_invoice({"invoice_id":"INV-1"})``.

    Arguments that could not be decoded cannot be compared, so such a call is keyed by its
    id and never counts as a repeat of another.
    """
    if parse_error is not None:
        return f"{tool}(<undecodable arguments, call {call_id}>)"
    args = json.dumps(dict(arguments), sort_keys=True, separators=(",", ":"), default=str)
    return f"{tool}({args})"


@dataclass(slots=True)
class RunState:
    """Everything the loop needs to take the next step, rebuilt from events alone."""

    run_id: str
    agent: str = ""
    task: str = ""
    tenant: str = "default"
    parent_run_id: str | None = None
    budget_key: str | None = None
    budget_used_tokens: int = 0
    budget_used_cost: float = 0.0
    started_at: float = 0.0
    messages: list[Message] = field(default_factory=list)
    """The conversation as the model sees it."""
    message_tokens: int = 0
    """Upper bound on the messages' tokens (`message_token_bound`, kept incrementally)."""
    reported_input: int = 0
    """Input tokens the provider reported for the last model call (cache reads and writes
    included); 0 before the first call or when the provider reported none."""
    added_tokens: int = 0
    """Upper bound on the tokens of the messages added since the last model call's request:
    its answer and everything after (the next reservation is `reported_input` plus this)."""
    pending: list[ToolCall] = field(default_factory=list)
    """Tool calls of the last model response that have no outcome yet, in order."""
    pending_step: int = 0
    """The model step the pending calls came from."""
    call_index: dict[str, int] = field(default_factory=dict)
    """Position of each of the last response's calls in that response, by call id."""
    proposed: dict[str, str] = field(default_factory=dict)
    """Call key by call id, for calls already proposed (counted by the supervisor)."""
    offered: dict[str, list[str]] = field(default_factory=dict)
    """The tools offered when each call was proposed, by call id (a resumed call is checked
    against them)."""
    errors: int = 0
    """Failed attempts, rejected calls and fallbacks so far (the run breaker's count)."""
    failed_calls: set[str] = field(default_factory=set)
    """Keys of calls that were rejected or failed for good."""
    results: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Each finished call's result, by call id: the digest of the content the model was
    shown (`corral.supervisor._loops.result_digest`) and whether its tool has side
    effects. Loop detection compares results by digest (told live, seeded on resume)."""
    fallbacks: set[str] = field(default_factory=set)
    """Call ids that fell back to their tool's fallback."""
    in_flight: dict[str, ToolCallStarted] = field(default_factory=dict)
    """Attempts started and not yet finished or failed, by call id."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Attempts made so far, by call id (numbering continues after a restart)."""
    retry_due: dict[str, float] = field(default_factory=dict)
    """When a scheduled retry is due, by call id (a durable timer: it survives restarts)."""
    model_calls: int = 0
    tool_calls: int = 0
    """Tool calls proposed, rejected ones included."""
    input_tokens: int = 0
    """Prompt tokens of the run's model calls billed at the normal rate."""
    output_tokens: int = 0
    """Tokens the run's model calls generated."""
    cache_read_tokens: int = 0
    """Prompt tokens of the run's model calls served from the provider's cache."""
    cache_write_tokens: int = 0
    """Prompt tokens of the run's model calls written to the provider's cache."""
    cost_usd: float = 0.0
    last_text: str = ""
    """The model's latest text (the partial answer if the run is stopped)."""
    answer: str | None = None
    """The final answer, once the model gave one (a response without tool calls)."""
    recent_tools: list[str] = field(default_factory=list)
    """The current streak of consecutive calls to one tool."""
    open_gates: dict[str, GateOpened] = field(default_factory=dict)
    """Gates waiting for a person, by call id."""
    decisions: dict[str, GateDecided] = field(default_factory=dict)
    reconciled: dict[str, CallReconciled] = field(default_factory=dict)
    """The latest settlement of each call that was in doubt after a restart."""
    """The latest decision of each call's gate, by call id."""
    waiting: dict[str, WaitStarted] = field(default_factory=dict)
    """Calls waiting for an external event, by call id."""
    paused_total: float = 0.0
    """Seconds spent paused at gates and waits (not counted against the wall clock)."""
    paused_since: float | None = None
    finished: RunFinished | None = None
    last_seq: int = 0
    sources: Sources = field(default_factory=Sources)
    """Every text of the run's context with where it came from (the task, each result as
    the model saw it, a person's decisions), for tracing argument values."""
    summary: str = ""
    """The rolling summary of the turns that left the context window (read back from the
    latest ``context_summarised``, never recomputed)."""
    summarised_through: int = 0
    """The turns the summary covers (``0 .. summarised_through - 1``)."""
    summaries: int = 0
    """How many times older turns were summarised."""
    recalled: EpisodesRecalled | None = None
    """The past examples episodic memory offered the run, if any."""

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Event]) -> RunState:
        """Build the state of a run from its events, oldest first."""
        state = cls(run_id)
        for event in events:
            state.apply(event)
        return state

    def _add_message(self, message: Message) -> None:
        self.messages.append(message)
        bound = message_token_bound(message)
        self.message_tokens += bound
        self.added_tokens += bound

    def _resolve(self, call_id: str, content: str, *, is_error: bool, tool: str) -> None:
        self.in_flight.pop(call_id, None)
        for i, call in enumerate(self.pending):
            if call.id == call_id:
                del self.pending[i]
                break
        else:
            return  # not pending (a duplicate outcome): the conversation already has it
        self._add_message(
            ToolResultMessage(call_id=call_id, tool=tool, content=content, is_error=is_error)
        )

    def apply(self, event: Event) -> None:
        """Apply one event to the state."""
        self.last_seq = event.seq or self.last_seq + 1
        if isinstance(event, ModelCalled):
            response = event.response
            usage = response.usage
            self.model_calls = max(self.model_calls, event.step)
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            self.cache_read_tokens += usage.cache_read_tokens
            self.cache_write_tokens += usage.cache_write_tokens
            self.cost_usd += event.cost_usd
            if response.text:
                self.last_text = response.text
            reported = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
            self.reported_input = max(reported, 0)
            self.added_tokens = 0  # the request was everything so far; its answer follows
            turn = response.to_message()
            self._add_message(turn)
            self.pending = list(turn.tool_calls)
            self.pending_step = event.step
            if not turn.tool_calls:
                self.answer = response.text
            self.call_index = {c.id: i for i, c in enumerate(turn.tool_calls)}
        elif isinstance(event, ToolCallProposed):
            self.tool_calls += 1
            self.proposed[event.call_id] = call_key(
                event.tool, event.arguments, parse_error=event.parse_error, call_id=event.call_id
            )
            self.offered[event.call_id] = event.offered
            if self.recent_tools and self.recent_tools[-1] == event.tool:
                self.recent_tools.append(event.tool)
            else:
                self.recent_tools = [event.tool]
        elif isinstance(event, ToolCallStarted):
            self.in_flight[event.call_id] = event
            self.attempts[event.call_id] = event.attempt
            if event.fallback_for is not None and event.call_id not in self.fallbacks:
                self.fallbacks.add(event.call_id)
                self.errors += 1
        elif isinstance(event, ToolCallFinished):
            started = self.in_flight.get(event.call_id)
            acted = started is not None and started.side_effect != "read"
            self.results[event.call_id] = (result_digest(event.content), acted)
            self._resolve(event.call_id, event.content, is_error=False, tool=event.tool)
            self.sources.add(event.content, Origin("tool", event.tool, event.call_id, event.step))
        elif isinstance(event, ToolCallFailed):
            self.in_flight.pop(event.call_id, None)
            self.errors += 1
            if event.will_retry:
                self.retry_due[event.call_id] = event.ts + event.delay_s
            else:
                self.retry_due.pop(event.call_id, None)
            if event.final:
                self.failed_calls.add(self.proposed.get(event.call_id, event.call_id))
                self._resolve(event.call_id, event.message, is_error=True, tool=event.tool)
                origin = Origin("tool", event.tool, event.call_id, event.step)
                self.sources.add(event.message, origin)  # the error text came from the tool
        elif isinstance(event, ToolCallRejected):
            self.errors += 1
            self.failed_calls.add(self.proposed.get(event.call_id, event.call_id))
            self._resolve(event.call_id, event.message, is_error=True, tool=event.tool)
        elif isinstance(event, GuardrailVerdict):
            if event.guardrail == BUDGET_NOTICE:
                self._add_message(UserMessage(content=event.reason))
        elif isinstance(event, GateOpened):
            self.open_gates[event.call_id] = event
            self._pause(event.ts)
        elif isinstance(event, GateDecided):
            gate = self.open_gates.pop(event.call_id, None)
            if event.decision == "approved":  # a person vouched for these values
                arguments = event.arguments
                if arguments is None and gate is not None:
                    arguments = gate.arguments
                person = Origin("person", call_id=event.call_id)
                if arguments:
                    self.sources.add(json.dumps(arguments, ensure_ascii=False), person)
                self.sources.add(event.note, person)  # not a rejection's: it may quote a value
            self.decisions[event.call_id] = event
            self._unpause(event.ts)
        elif isinstance(event, CallReconciled):
            self.reconciled[event.call_id] = event
        elif isinstance(event, WaitStarted):
            self.in_flight.pop(event.call_id, None)  # the tool returned; now the event is awaited
            self.waiting[event.call_id] = event
            self._pause(event.ts)
        elif isinstance(event, WaitResolved):
            self.waiting.pop(event.call_id, None)
            self._unpause(event.ts)
            if event.timed_out:
                content = (
                    f"Waiting for {event.key!r} timed out: the event never arrived. Continue "
                    "without it or report that it is missing."
                )
            else:
                content = render_payload(event.payload)
                self.sources.add(content, Origin("tool", event.tool, event.call_id))
            self._resolve(event.call_id, content, is_error=event.timed_out, tool=event.tool)
        elif isinstance(event, RunStarted):
            self.agent = event.agent
            self.task = event.task
            self.tenant = event.tenant
            self.parent_run_id = event.parent_run_id
            self.budget_key = event.budget_key
            self.budget_used_tokens = event.budget_used_tokens
            self.budget_used_cost = event.budget_used_cost
            self.started_at = event.ts
            self._add_message(UserMessage(content=event.task))
            self.sources.add(event.task, Origin("task"))
        elif isinstance(event, ContextSummarised):
            self.summary = event.summary
            self.summarised_through = event.through_turn
            self.summaries += 1
            usage = event.usage  # a model-backed summariser's tokens are the run's too
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            self.cache_read_tokens += usage.cache_read_tokens
            self.cache_write_tokens += usage.cache_write_tokens
            self.cost_usd += event.cost_usd
        elif isinstance(event, EpisodesRecalled):
            self.recalled = event
            # Past runs' texts are no source a side-effecting call may trust.
            self.sources.add(event.text, Origin("tool", EPISODES_SOURCE))
        elif isinstance(event, RunFinished):
            self.finished = event

    def _pause(self, ts: float) -> None:
        if self.paused_since is None:
            self.paused_since = ts

    def _unpause(self, ts: float) -> None:
        if self.paused_since is not None and not self.open_gates and not self.waiting:
            self.paused_total += max(ts - self.paused_since, 0.0)
            self.paused_since = None

    def finished_event(
        self, outcome: Outcome, *, reason: str, ts: float, output: str | None = None
    ) -> RunFinished:
        """The ``run_finished`` event that ends this run, its figures taken from this state.

        Args:
            outcome: how the run ended.
            reason: why, in words (empty for a plain completion).
            ts: when it ends, Unix seconds; the duration runs to it, pauses left out.
            output: the final answer. Default: the model's latest text, if any (the
                partial answer of a stopped run).

        Returns:
            The event, to journal and then `apply`.
        """
        paused = self.paused_total
        if self.paused_since is not None:  # ended while paused: that pause is not run time
            paused += max(ts - self.paused_since, 0.0)
        return RunFinished(
            run_id=self.run_id,
            ts=ts,
            outcome=outcome,
            output=output if output is not None else (self.last_text or None),
            reason=reason,
            steps=self.executed_calls,
            model_calls=self.model_calls,
            tokens=self.tokens,
            cost_usd=self.cost_usd,
            duration_s=max(ts - self.started_at - paused, 0.0),
        )

    @property
    def executed_calls(self) -> int:
        """Tool calls that ran (at least one attempt started), not refused proposals."""
        return len(self.attempts)

    @property
    def tokens(self) -> int:
        """All tokens of the run's model calls, the figure budgets are counted in."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    @property
    def usage(self) -> Usage:
        """The tokens of the run's model calls, as one `Usage`."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )

    @property
    def active_since(self) -> float:
        """The run's start, moved later by the time it spent paused (for the wall clock)."""
        return self.started_at + self.paused_total

    @property
    def paused(self) -> bool:
        """True while a gate or a wait is open."""
        return bool(self.open_gates or self.waiting)

    @property
    def done(self) -> bool:
        """True once the run has finished."""
        return self.finished is not None
