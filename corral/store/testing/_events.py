"""Events and look-ups the conformance suite builds its cases from (explicit times)."""

from __future__ import annotations

from typing import Any, Literal

from ...events import (
    Event,
    GateDecided,
    GateOpened,
    RunFinished,
    RunStarted,
    ToolCallProposed,
    WaitResolved,
    WaitStarted,
)
from .._contract import Journal

__all__ = [
    "T0",
    "decision",
    "finished",
    "gate_opened",
    "proposed",
    "resolved",
    "seqs",
    "started",
    "status",
    "wait_started",
]

T0 = 1_000.0
"""The time every test starts at, Unix seconds."""


def started(
    run_id: str, *, ts: float = T0, agent: str = "billing", tenant: str = "acme"
) -> RunStarted:
    """A ``run_started`` of agent `agent` (default ``billing``), tenant `tenant` (``acme``)."""
    return RunStarted(run_id=run_id, ts=ts, agent=agent, task=f"task of {run_id}", tenant=tenant)


def proposed(run_id: str, call_id: str = "c1", *, ts: float = T0 + 1) -> ToolCallProposed:
    """A ``tool_call_proposed`` of ``lookup``."""
    return ToolCallProposed(
        run_id=run_id, ts=ts, step=1, call_id=call_id, tool="lookup", arguments={"id": call_id}
    )


def gate_opened(
    run_id: str, gate_id: str = "g1", *, ts: float = T0 + 2, expires_at: float = T0 + 100
) -> GateOpened:
    """A ``gate_opened`` for a ``refund``, due at `expires_at`."""
    return GateOpened(
        run_id=run_id,
        ts=ts,
        step=1,
        call_id=f"call-{gate_id}",
        gate_id=gate_id,
        tool="refund",
        arguments={"order": "ORD-7", "amount": 12.5},
        reason="refunds need a person",
        expires_at=expires_at,
    )


def decision(
    run_id: str,
    gate_id: str = "g1",
    decision: Literal["approved", "rejected", "expired"] = "approved",
    *,
    ts: float = T0 + 3,
    by: str = "ana",
) -> GateDecided:
    """A ``gate_decided`` of gate `gate_id`, made at `ts`."""
    return GateDecided(
        run_id=run_id,
        ts=ts,
        gate_id=gate_id,
        call_id=f"call-{gate_id}",
        decision=decision,
        by=by,
        note="checked",
    )


def wait_started(
    run_id: str, key: str, *, ts: float = T0 + 4, expires_at: float = T0 + 100
) -> WaitStarted:
    """A ``wait_started`` on correlation key `key`, due at `expires_at`."""
    return WaitStarted(
        run_id=run_id,
        ts=ts,
        step=2,
        call_id=f"call-{key}",
        tool="await_payment",
        key=key,
        expires_at=expires_at,
    )


def resolved(run_id: str, key: str, payload: Any = None, *, ts: float = T0 + 5) -> WaitResolved:
    """The ``wait_resolved`` of the wait on `key` (its call id is ``call-<key>``)."""
    return WaitResolved(
        run_id=run_id,
        ts=ts,
        call_id=f"call-{key}",
        tool="await_payment",
        key=key,
        payload=payload,
    )


def finished(run_id: str, *, ts: float = T0 + 9, outcome: str = "completed") -> RunFinished:
    """A ``run_finished``, completed unless `outcome` says otherwise."""
    return RunFinished(run_id=run_id, ts=ts, outcome=outcome, output="done")


def seqs(events: list[Event]) -> list[int]:
    """The seqs of `events`."""
    return [e.seq for e in events]


async def status(journal: Journal, run_id: str) -> str | None:
    """The status of a run in the index, or None for an unknown run."""
    info = await journal.run(run_id)
    return None if info is None else info.status
