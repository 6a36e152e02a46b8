"""The API's bodies: one pydantic model per request and response, as OpenAPI shows them.

``corral serve`` answers with them and ``corral -o json`` prints them, from the journal
or through the service alike, so a script sees one shape either way. This module needs
only pydantic (the command line imports it without the server extra).

Times are ISO 8601 strings in UTC with milliseconds (``2026-12-02T04:05:06.123Z``);
events keep their Unix-seconds ``ts`` as the journal stores them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .events import Event, GateOpened, RunStarted
from .runtime._results import result_of
from .store import GateRecord, RunInfo
from .subagents import RunState

__all__ = [
    "ApprovalList",
    "ApproveBody",
    "CancelBody",
    "CancelResult",
    "DeliveryBody",
    "DeliveryResult",
    "EventList",
    "GateView",
    "Health",
    "Problem",
    "RejectBody",
    "RunExport",
    "RunList",
    "RunSubmission",
    "RunSummary",
    "RunView",
    "WebhookResult",
    "WhoAmI",
    "iso",
]

_MAX_TEXT = 100_000
"""Longest task text accepted (characters); the body limit caps the request as a whole."""


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds; None stays None."""
    if ts is None:
        return None
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSubmission(_Body):
    """A task to route and run."""

    task: str = Field(min_length=1, max_length=_MAX_TEXT, description="The task, in words.")
    kind: str | None = Field(default=None, max_length=200, description="Task kind for routing.")
    tags: list[str] = Field(default_factory=list, max_length=50)
    tenant: str | None = Field(default=None, min_length=1, max_length=200)
    agent: str | None = Field(
        default=None, min_length=1, max_length=200, description="Skip routing: this agent."
    )


class CancelBody(_Body):
    """Why a run is cancelled."""

    reason: str | None = Field(default=None, max_length=2_000)


class ApproveBody(_Body):
    """An approval, optionally with edited arguments (validated by the tool's schema).

    At the gate of a call in doubt (its ``doubt`` is set), approving runs it again with
    the same idempotency key; ``happened`` says it did take effect instead (it is not run
    again; ``result`` is what it returned, if known); rejecting skips it.
    """

    note: str = Field(default="", max_length=2_000)
    arguments: dict[str, Any] | None = None
    happened: bool = False
    result: Any = None


class RejectBody(_Body):
    """A rejection; the model is told the reason."""

    reason: str = Field(min_length=1, max_length=2_000)


class DeliveryBody(_Body):
    """An external event for the run waiting on `key`."""

    key: str = Field(min_length=1, max_length=500)
    payload: Any = None


class RunSummary(BaseModel):
    """A run as lists show it."""

    run_id: str
    agent: str
    tenant: str
    status: Literal["running", "waiting", "finished"]
    outcome: str | None
    task: str
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: RunInfo) -> RunSummary:
        """From the journal's index."""
        return cls(
            run_id=info.run_id,
            agent=info.agent,
            tenant=info.tenant,
            status=info.status,
            outcome=info.outcome,
            task=info.task,
            created_at=iso(info.created_at) or "",
            updated_at=iso(info.updated_at) or "",
        )


class RunList(BaseModel):
    """A page of runs, newest first; pass `next_cursor` as ``cursor`` for the next."""

    runs: list[RunSummary]
    next_cursor: str | None


class GateView(BaseModel):
    """A gate: the call waiting for a person, and its decision once made."""

    gate_id: str
    run_id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    side_effect: str
    reason: str
    status: Literal["open", "approved", "rejected", "expired"]
    opened_at: str
    expires_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    edited_arguments: dict[str, Any] | None = None
    provenance: list[dict[str, Any]] = Field(default_factory=list)
    doubt: dict[str, Any] | None = Field(
        default=None,
        description="For a call that may have taken effect before a crash: its "
        "idempotency_key, attempt, and what its status probe answered (probe, detail).",
    )
    happened: bool = Field(default=False, description="Decided: the call in doubt took effect.")

    @classmethod
    def of(cls, record: GateRecord, agent: str) -> GateView:
        """From the journal's gate record."""
        opened: GateOpened = record.opened
        decided = record.decided
        return cls(
            gate_id=opened.gate_id,
            run_id=record.run_id,
            agent=agent,
            tool=opened.tool,
            arguments=opened.arguments,
            side_effect=opened.side_effect,
            reason=opened.reason,
            status=record.status,
            opened_at=iso(opened.ts) or "",
            expires_at=iso(opened.expires_at) or "",
            decided_by=(decided.by or None) if decided else None,
            decided_at=iso(decided.ts) if decided else None,
            note=decided.note if decided else None,
            edited_arguments=decided.arguments if decided else None,
            provenance=opened.provenance,
            doubt=opened.doubt or None,
            happened=decided.happened if decided else False,
        )


class Usage(BaseModel):
    """A run's model-call tokens by kind."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class Route(BaseModel):
    """Which routing rule chose the agent, and why."""

    rule: str
    reason: str


class RunView(RunSummary):
    """One run: where it stands, what it cost, how it was routed, its gates."""

    reason: str
    output: str | None
    route: Route
    steps: int
    model_calls: int
    tokens: int
    usage: Usage
    cost_usd: float
    duration_s: float
    submitted_by: str | None
    gates: list[GateView]

    @classmethod
    def of_events(
        cls, info: RunInfo, events: Sequence[Event], gates: Sequence[GateRecord]
    ) -> RunView:
        """From the index, the run's events (folded here, as `Runtime.wait` does) and gates."""
        result = result_of(RunState.fold(info.run_id, events), events)
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        usage = result.usage
        return cls(
            **RunSummary.of(info).model_dump(),
            reason=result.reason,
            output=result.output,
            route=Route(
                rule=started.rule if started else "",
                reason=started.route_reason if started else "",
            ),
            steps=result.steps,
            model_calls=result.model_calls,
            tokens=result.tokens,
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            cost_usd=result.cost_usd,
            duration_s=result.duration_s,
            submitted_by=started.submission.get("by") if started else None,
            gates=[GateView.of(g, info.agent) for g in gates],
        )


class EventList(BaseModel):
    """A run's events, in order (each with its ``seq``)."""

    events: list[dict[str, Any]]


class RunExport(BaseModel):
    """A run and its whole trail, as one document."""

    run: RunView
    events: list[dict[str, Any]]
    exported_at: str


class CancelResult(BaseModel):
    """Whether the request stopped the run, or asked the worker driving it to."""

    cancelled: bool
    """True: this request ended the run."""
    requested: bool = False
    """True: another worker drives the run; it was asked to end it, ``cancelled``, and does
    so as soon as it hears (at once on PostgreSQL, at its next tick otherwise)."""
    run: RunView


class ApprovalList(BaseModel):
    """Gates waiting for a person, oldest first."""

    approvals: list[GateView]


class DeliveryResult(BaseModel):
    """Where a delivery went: the run woken, or None when none waits yet (it is kept)."""

    key: str
    run_id: str | None
    delivered: bool


class WebhookResult(BaseModel):
    """A verified webhook, delivered to the run waiting on its key (or kept for it)."""

    key: str
    run_id: str | None
    webhook_id: str | None
    duplicate: bool = False
    """The delivery id was accepted before: acknowledged, not delivered again."""


class WhoAmI(BaseModel):
    """The token's name and roles."""

    name: str
    roles: list[str]


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready", "draining", "starting"]


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="A stable, machine-readable name for the problem.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For 422: each invalid field, by location."
    )
