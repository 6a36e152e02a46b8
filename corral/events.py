"""Run events: every decision Corral makes, as one discriminated union on ``kind``.

A run's events are at once its durable state (the journal persists exactly these), its
audit trail and its observability trace. Events are deltas, never snapshots of the whole
conversation: a run's state is a fold over its events (see `corral.subagents.RunState`).

Use `EventAdapter` to validate or dump events (``EventAdapter.validate_json(row)``).

The durable schema embeds no API type: what a model returned is kept as a
`ResponseRecord` (with `ToolCallRecord` and `UsageRecord`), the journal's own copy of
`corral.models.ModelResponse`, converted explicitly both ways (`ResponseRecord.from_response`,
`ResponseRecord.to_response`, and `ResponseRecord.to_message` for the turn a run's
state folds in). A change to a model type therefore cannot silently change
what is on disk; the records have the JSON shape the model types had when they were
embedded, so older journals still decode.

An event is a fact: build it with its final values, `ts` included (it has no default);
its `seq` is given by the journal, on the copy it stores and returns.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from .models import AssistantMessage, ModelResponse, StopReason

__all__ = [
    "OUTCOMES",
    "TERMINAL_OUTCOMES",
    "BudgetReserved",
    "BudgetSettled",
    "CallReconciled",
    "ContextSummarised",
    "EpisodesRecalled",
    "Event",
    "EventAdapter",
    "GateDecided",
    "GateOpened",
    "GuardrailVerdict",
    "ModelCalled",
    "ModelFailed",
    "Outcome",
    "ReconcileAnswer",
    "ResponseRecord",
    "RunFinished",
    "RunStarted",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "ToolCallFailed",
    "ToolCallFinished",
    "ToolCallProposed",
    "ToolCallRecord",
    "ToolCallRejected",
    "ToolCallStarted",
    "UsageRecord",
    "WaitResolved",
    "WaitStarted",
]

Outcome = Literal[
    "completed",
    "failed",
    "stopped_budget",
    "stopped_steps",
    "stopped_loop",
    "stopped_breaker",
    "cancelled",
]
"""How a run ended."""

OUTCOMES: tuple[Outcome, ...] = (
    "completed",
    "failed",
    "stopped_budget",
    "stopped_steps",
    "stopped_loop",
    "stopped_breaker",
    "cancelled",
)
TERMINAL_OUTCOMES = frozenset(OUTCOMES)


class _EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    """The run this event belongs to."""
    seq: int = 0
    """Position in the run's journal, from 1; assigned when the event is appended."""
    ts: float
    """Wall-clock time of the event, Unix seconds (from the runtime's clock), given when
    the event is made."""


# -- the journal's own records of model types ------------------------------------------------

_STOP_REASONS: frozenset[str] = frozenset(get_args(StopReason))
"""The stop reasons the model types know."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UsageRecord(_Record):
    """The journal's record of a `corral.models.Usage`: tokens one model call consumed.

    Built and read back as part of its `ResponseRecord`.
    """

    input_tokens: int = 0
    """Prompt tokens billed at the normal rate."""
    output_tokens: int = 0
    """Generated tokens."""
    cache_read_tokens: int = 0
    """Prompt tokens served from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the provider's prompt cache."""

    @property
    def total_tokens(self) -> int:
        """All tokens of the call, the figure budgets are counted in."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class ToolCallRecord(_Record):
    """The journal's record of a `corral.models.ToolCall` the model proposed.

    Built and read back as part of its `ResponseRecord`.
    """

    id: str
    """Provider-assigned call id."""
    name: str
    """Tool name as the model wrote it (it may not exist)."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments as decoded JSON; empty when `parse_error` is set."""
    parse_error: str | None = None
    """Set when the provider sent arguments that are not a JSON object."""


class ResponseRecord(_Record):
    """The journal's record of a `corral.models.ModelResponse`, everything a replay needs."""

    text: str = ""
    """Assistant text; the final answer when there are no tool calls."""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    """Tool calls to run, in order."""
    usage: UsageRecord = Field(default_factory=UsageRecord)
    """Tokens consumed by the call."""
    stop_reason: str = "end_turn"
    """Why the model stopped. Kept as recorded; `to_response` reads a reason the model
    types no longer know as ``other``."""
    model: str = ""
    """The model that answered, as the provider named it."""
    provider_data: dict[str, Any] | None = None
    """Opaque data the provider needs back with this turn (Claude's thinking blocks)."""

    @classmethod
    def from_response(cls, response: ModelResponse) -> ResponseRecord:
        """Record what a model returned.

        Args:
            response: a validated `ModelResponse`.

        Returns:
            Its record, for `ModelCalled.response`.
        """
        # Field by field, by name (nested records included), validated as it goes:
        # several times faster than building each record by hand.
        return cls.model_validate(response, from_attributes=True)

    def to_response(self) -> ModelResponse:
        """The `ModelResponse` this records, as the model returned it."""
        if self.stop_reason in _STOP_REASONS:
            return ModelResponse.model_validate(self, from_attributes=True)
        known = self.model_copy(update={"stop_reason": "other"})
        return ModelResponse.model_validate(known, from_attributes=True)

    def to_message(self) -> AssistantMessage:
        """The turn this response adds to the conversation (what a run's state folds in)."""
        # One validation: the recorded calls become `ToolCall`s field by field.
        turn = {
            "text": self.text,
            "tool_calls": self.tool_calls,
            "provider_data": self.provider_data,
        }
        return AssistantMessage.model_validate(turn, from_attributes=True)


class _OmitsEmpty(_EventBase):
    """An event whose fields named in `_omit_when_empty` are left out of its JSON when empty.

    Fields added after events of the kind were first journaled: leaving them out while
    unused keeps the stored JSON of old and new events the same.
    """

    _omit_when_empty: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._omit_when_empty:
                value = data.get(name)
                if value in (None, False, "", [], {}) and not _zero(value):
                    data.pop(name, None)
        return data


def _zero(value: Any) -> bool:
    """A number 0, which is a value, unlike None, False and empty containers."""
    return type(value) in (int, float) and value == 0


# -- events ------------------------------------------------------------------------------------


class RunStarted(_OmitsEmpty):
    """A task was routed to an agent and its run began."""

    kind: Literal["run_started"] = "run_started"
    agent: str
    task: str
    task_kind: str | None = None
    tags: list[str] = Field(default_factory=list)
    tenant: str = "default"
    rule: str = ""
    """Routing rule that matched."""
    route_reason: str = ""
    """Why the rule matched, in words."""
    limits: dict[str, Any] = Field(default_factory=dict)
    """The run's limits, as plain data."""
    parent_run_id: str | None = None
    """The workflow run this run is a step of, if any."""
    budget_key: str | None = None
    """Runs with the same key share one budget (a workflow's sub-agent runs)."""
    budget_used_tokens: int = 0
    """Tokens already spent under `budget_key` by finished runs when this one started."""
    budget_used_cost: float = 0.0
    """USD already spent under `budget_key` by finished runs when this one started."""
    _omit_when_empty: ClassVar[tuple[str, ...]] = ("submission",)
    submission: dict[str, str] = Field(default_factory=dict)
    """Who submitted the run through the service, and how: ``by`` (the API token's
    name), ``idempotency_key`` and ``digest`` (of the request, to tell a retried
    submission from a different one). Left out of the stored JSON when empty."""


class ModelCalled(_EventBase):
    """A model call completed; its full response is kept so a replay never repeats it.

    It also records the budget side of the call: the supervisor reserved
    `reserved_tokens` before the call and replaced them with the real usage after it.
    """

    kind: Literal["model_called"] = "model_called"
    step: int
    model: str
    response: ResponseRecord
    """What the model returned (`ResponseRecord.from_response`)."""
    duration_s: float
    attempt: int = 1
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    """Tokens set aside before the call: estimated input (with margin) plus the output cap."""
    max_tokens: int = 0
    """Output cap granted for the call (may be lower than asked, to fit the budget)."""


class ModelFailed(_EventBase):
    """A model call failed (it may be retried)."""

    kind: Literal["model_failed"] = "model_failed"
    step: int
    model: str
    error: str
    error_type: str
    attempt: int
    will_retry: bool
    delay_s: float = 0.0


class ToolCallProposed(_EventBase):
    """The model asked for a tool call."""

    kind: Literal["tool_call_proposed"] = "tool_call_proposed"
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    parse_error: str | None = None
    """Set when the provider sent arguments that are not a JSON object."""
    offered: list[str] = Field(default_factory=list)
    """The tools the model was offered at this step."""


class ToolCallRejected(_EventBase):
    """A proposed call was refused before it ran; `message` is what the model was told."""

    kind: Literal["tool_call_rejected"] = "tool_call_rejected"
    step: int
    call_id: str
    tool: str
    guardrail: str
    """Which check refused it: ``registered``, ``arguments``, ``schema``, ``permission``, ..."""
    reason: str
    """Short reason for people and metrics."""
    message: str = ""
    """The text fed back to the model."""


class ToolCallStarted(_EventBase):
    """An attempt of a tool call is about to run (written before the act)."""

    kind: Literal["tool_call_started"] = "tool_call_started"
    step: int
    call_id: str
    tool: str
    attempt: int
    idempotency_key: str
    side_effect: str = "read"
    fallback_for: str | None = None
    """Set when this is a fallback tool standing in for the named tool."""


class ToolCallFinished(_EventBase):
    """A tool call succeeded; `content` is what the model was given."""

    kind: Literal["tool_call_finished"] = "tool_call_finished"
    step: int
    call_id: str
    tool: str
    attempt: int
    content: str
    duration_s: float
    truncated: bool = False
    result_chars: int = 0
    """Size of the full result before truncation."""
    result_blob: str | None = None
    """When truncated and a store keeps blobs: the digest of the full result."""


class ToolCallFailed(_EventBase):
    """An attempt of a tool call failed; `final` is set when nothing more will be tried."""

    kind: Literal["tool_call_failed"] = "tool_call_failed"
    step: int
    call_id: str
    tool: str
    attempt: int
    error: str
    error_type: str
    retryable: bool
    will_retry: bool
    delay_s: float = 0.0
    final: bool = False
    message: str = ""
    """When final: the text fed back to the model."""


class GuardrailVerdict(_EventBase):
    """A guardrail decided something that did not block a tool call (flag, redact, truncate...)."""

    kind: Literal["guardrail_verdict"] = "guardrail_verdict"
    guardrail: str
    decision: str
    reason: str
    step: int = 0
    call_id: str | None = None


class GateOpened(_OmitsEmpty):
    """A tool call waits for a person's approval; the run pauses (it holds no task)."""

    kind: Literal["gate_opened"] = "gate_opened"
    step: int
    call_id: str
    gate_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    side_effect: str = "write"
    reason: str = ""
    """Why a person must decide, in words."""
    expires_at: float = 0.0
    """When an undecided gate turns into a rejection, Unix seconds."""
    _omit_when_empty: ClassVar[tuple[str, ...]] = ("provenance", "doubt")
    provenance: list[dict[str, Any]] = Field(default_factory=list)
    """Where the call's argument values were found, when a check traced them: one entry
    per value (``argument``, ``value``, ``trusted``, ``sources``: each ``source``,
    ``tool``, ``call_id``, ``step``), from `corral.guardrails.ProvenanceCheck`. Left out
    of the stored JSON when empty, so gates journaled before it existed read back as
    they were written."""
    doubt: dict[str, Any] = Field(default_factory=dict)
    """For a call that may or may not have taken effect (the process stopped during it):
    ``idempotency_key``, ``attempt``, and ``probe``, what its status probe answered
    (``unknown``, ``failed``, or ``none`` when the tool has none), with ``detail``. Such a
    gate is decided three ways: approve (it did not happen: run it again with the same
    key), approve with ``happened`` (it did: do not run it; optionally with its result),
    or reject (skip it). Left out of the stored JSON when empty."""


class GateDecided(_OmitsEmpty):
    """A person approved or rejected a gate, or it expired."""

    kind: Literal["gate_decided"] = "gate_decided"
    gate_id: str
    call_id: str
    decision: Literal["approved", "rejected", "expired"]
    by: str = ""
    note: str = ""
    arguments: dict[str, Any] | None = None
    """Arguments edited by the approver (validated against the tool's schema), if any."""
    _omit_when_empty: ClassVar[tuple[str, ...]] = ("happened", "result")
    happened: bool = False
    """For a call in doubt (see `GateOpened.doubt`): the person says it did take effect,
    so it is not run again; `result` (or a note that it happened) is what the model sees.
    Left out of the stored JSON when False."""
    result: Any = None
    """What the call returned, as the person found it (with `happened`), if known."""


ReconcileAnswer = Literal["done", "not_done", "unknown", "failed", "retried"]
"""How a call in doubt was settled (see `CallReconciled`)."""


class CallReconciled(_EventBase):
    """A side-effecting call in doubt after a restart was settled without a person.

    The process stopped after the call's attempt was journaled as started and before its
    outcome was. Its tool's status probe (``Tool.reconcile``) then answered:

    * ``done``: it took effect; a ``tool_call_finished`` with the probe's result follows,
      and the call is not run again;
    * ``not_done``: it did not; the call runs again with the same idempotency key;
    * ``unknown``, or the probe ``failed`` (raised, timed out, answered nonsense): a
      person decides, at a gate that says so.

    ``retried`` records an idempotent tool's in-doubt call run again with its key (no
    probe needed: running it twice is safe).
    """

    kind: Literal["call_reconciled"] = "call_reconciled"
    step: int
    call_id: str
    tool: str
    attempt: int
    """The attempt that was in doubt."""
    idempotency_key: str
    answer: ReconcileAnswer
    detail: str = ""
    """The probe's reason (for ``unknown``) or its error (for ``failed``), redacted."""
    probe_attempts: int = 0
    duration_s: float = 0.0


class ContextSummarised(_EventBase):
    """Older turns of the conversation were replaced by a summary to fit the context window.

    The summary is rolling: it covers every turn before `through_turn` (turns are the
    model's answers, counted from 0, each with the results of its calls) and replaces any
    earlier summary. A resumed run reads it back and never recomputes it, so it sends the
    model exactly the context the run would have sent (see `corral.memory.ContextWindow`).
    A model-backed summariser's tokens and cost count against the run's budget like any
    model call's.
    """

    kind: Literal["context_summarised"] = "context_summarised"
    step: int
    """The model step whose context needed the summary."""
    first_turn: int
    """The first turn this summary takes in (the previous summary covered those before)."""
    through_turn: int
    """The summary covers turns ``0 .. through_turn - 1``."""
    summary: str
    """The summary's text, as the model is shown it."""
    summariser: str
    """Which summariser wrote it (``extractive``, ``model:<name>``...)."""
    tokens_before: int
    """Estimated tokens of the context before summarising."""
    tokens_after: int
    """Estimated tokens of the context with the summary."""
    model: str = ""
    """The model a model-backed summariser called, if any."""
    usage: UsageRecord = Field(default_factory=UsageRecord)
    """Tokens the summariser's model calls consumed (none for an extractive one)."""
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    """Tokens the supervisor set aside for the summariser's model calls."""
    duration_s: float = 0.0


class EpisodesRecalled(_EventBase):
    """Past runs of the same agent were offered to the model as examples (episodic memory).

    `text` is the block the model is shown before the task, labelled as past examples
    and untrusted; a resumed run reads it back, never searches again.
    """

    kind: Literal["episodes_recalled"] = "episodes_recalled"
    episodes: list[dict[str, Any]] = Field(default_factory=list)
    """Each episode offered: ``run_id`` and ``score`` (lexical relevance, 0 to 1)."""
    text: str
    """The block given to the model."""
    tokens: int = 0
    """Its estimated tokens."""


class WaitStarted(_EventBase):
    """A tool call waits for an external event (a webhook) by correlation key."""

    kind: Literal["wait_started"] = "wait_started"
    step: int
    call_id: str
    tool: str
    key: str
    expires_at: float


class WaitResolved(_EventBase):
    """The awaited event arrived (its payload is the call's result), or the wait timed out."""

    kind: Literal["wait_resolved"] = "wait_resolved"
    call_id: str
    tool: str
    key: str
    payload: Any = None
    timed_out: bool = False


class StepStarted(_EventBase):
    """A workflow step began (for a sub-agent step, with the id of its run)."""

    kind: Literal["step_started"] = "step_started"
    step: str
    child_run_id: str | None = None


class StepFinished(_EventBase):
    """A workflow step produced its output (what later steps that need it receive)."""

    kind: Literal["step_finished"] = "step_finished"
    step: str
    output: Any = None


class StepFailed(_EventBase):
    """A workflow step failed; the workflow ends ``failed`` with this reason."""

    kind: Literal["step_failed"] = "step_failed"
    step: str
    error: str


class RunFinished(_EventBase):
    """The run ended; nothing follows this event."""

    kind: Literal["run_finished"] = "run_finished"
    outcome: Outcome
    output: str | None = None
    """The final answer (or the partial answer when stopped)."""
    reason: str = ""
    steps: int = 0
    """Tool calls executed (at least one attempt started), as `RunResult.steps`."""
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0


class BudgetReserved(_EventBase):
    """Legacy: a model call's reservation, an event of its own in older journals.

    Still read, never written: `ModelCalled.reserved_tokens` carries it now.
    """

    kind: Literal["budget_reserved"] = "budget_reserved"
    step: int
    tokens: int
    max_tokens: int


class BudgetSettled(_EventBase):
    """Legacy: the settlement that followed `BudgetReserved`. Still read, never written."""

    kind: Literal["budget_settled"] = "budget_settled"
    step: int
    reserved: int
    used: int
    cost_usd: float = 0.0
    tokens_total: int = 0


Event = Annotated[
    RunStarted
    | BudgetReserved
    | BudgetSettled
    | ModelCalled
    | ModelFailed
    | ToolCallProposed
    | ToolCallRejected
    | ToolCallStarted
    | ToolCallFinished
    | ToolCallFailed
    | GuardrailVerdict
    | GateOpened
    | GateDecided
    | CallReconciled
    | ContextSummarised
    | EpisodesRecalled
    | WaitStarted
    | WaitResolved
    | StepStarted
    | StepFinished
    | StepFailed
    | RunFinished,
    Field(discriminator="kind"),
]
"""Any run event."""

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
"""Validates and dumps any `Event` (``EventAdapter.validate_json(text)``)."""
