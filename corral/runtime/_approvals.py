"""People deciding gates: the pending queue, approve, reject, and deadlines.

Every decision is one conditional journal write (`Journal.decide_gate`), checked against
the gate's deadline in the same transaction; the run is then woken wherever this process
can drive it (another process's poller picks it up otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..errors import GateExpired, UsageError
from ..events import GateDecided
from ..store import GateRecord, gate_expired
from ._base import log
from ._driving import RunDriving

__all__ = ["Approvals"]


class Approvals(RunDriving):
    """Decisions on gates, by people (approve, reject) and by the clock (expiry)."""

    async def pending_approvals(self) -> list[GateRecord]:
        """Return every open gate that can still be decided, oldest first.

        A gate past its deadline is left out even before the poller records its expiry:
        deciding it would be refused (`GateExpired`). So is a gate of a run that ended
        without it (cancelled while it waited): there is nothing left to decide.
        """
        now = self.clock.now()
        gates = [g for g in await self.journal.gates(status="open") if g.opened.expires_at > now]
        ended: dict[str, bool] = {}
        for gate in gates:  # a run cancelled at its gates leaves them open, and moot
            if gate.run_id not in ended:
                info = await self.journal.run(gate.run_id)
                ended[gate.run_id] = info is None or info.status == "finished"
        return [g for g in gates if not ended[g.run_id]]

    async def approve(
        self,
        gate_id: str,
        *,
        by: str,
        note: str = "",
        args: Mapping[str, Any] | None = None,
        happened: bool = False,
        result: Any = None,
    ) -> GateRecord:
        """Approve a gate; the run resumes and the call runs (with `args` if given).

        At the gate of a call in doubt (``gate.opened.doubt``: the process stopped while
        it ran, and nobody could tell whether it took effect), approving means "it did
        not happen: run it again with the same idempotency key"; ``happened=True`` means
        "it did: do not run it", with `result` as what it returned (the model sees it);
        rejecting means "skip it".

        Args:
            gate_id: the gate.
            by: who approves (required; recorded in the journal).
            note: why, for the audit trail.
            args: edited arguments, validated against the tool's schema again.
            happened: only at a gate of a call in doubt: it did take effect.
            result: with `happened`: what the call returned, as JSON data, if known.

        Returns:
            The decided gate.

        Raises:
            GateExpired: the gate's deadline has passed (whether or not anyone recorded
                the expiry yet; this call records it). An expired gate is a rejection.
            UsageError: unknown gate, already decided, its run has ended, no approver
                named, or edited arguments that break the tool's schema (each violation
                listed).
        """
        return await self._decide(
            gate_id, "approved", by=by, note=note, args=args, happened=happened, result=result
        )

    async def reject(self, gate_id: str, *, by: str, reason: str) -> GateRecord:
        """Reject a gate; the model is told, with the reason, and can adapt or give up.

        Raises:
            GateExpired: the gate's deadline has passed (this call records the expiry).
            UsageError: unknown gate, already decided, or no approver or reason given.
        """
        if not reason.strip():
            raise UsageError("a rejection needs a reason: the model is told it")
        return await self._decide(gate_id, "rejected", by=by, note=reason, args=None)

    async def _decide(
        self,
        gate_id: str,
        decision: Literal["approved", "rejected"],
        *,
        by: str,
        note: str,
        args: Mapping[str, Any] | None,
        happened: bool = False,
        result: Any = None,
    ) -> GateRecord:
        if not by.strip():
            raise UsageError("say who decides: by= is recorded in the audit trail")
        record = await self.journal.gate(gate_id)
        if record is None:
            raise UsageError(f"no gate {gate_id!r}")
        if record.decided is not None:
            raise _already_decided(record)
        if record.opened.expires_at <= self.clock.now():
            raise await self._refuse_expired(record)
        info = await self.journal.run(record.run_id)
        if info is not None and info.status == "finished":
            raise UsageError(
                f"gate {gate_id} belongs to run {record.run_id}, which ended "
                f"({info.outcome}) without it: there is nothing left to decide"
            )
        if happened and not record.opened.doubt:
            raise UsageError(
                f"gate {gate_id} is not for a call in doubt: 'happened' says a call that was "
                "interrupted did take effect, and this one has not run yet"
            )
        if happened and args is not None:
            raise UsageError("a call that happened cannot be given edited arguments")
        if result is not None and not happened:
            raise UsageError("a result goes with happened=True (the call took effect)")
        if args is not None:
            agent = self.agents.get(info.agent) if info is not None else None
            tool = agent.tool_for(record.opened.tool) if agent is not None else None
            violations = tool.validate(args) if tool is not None else []
            if violations:
                lines = "; ".join(str(v) for v in violations)
                raise UsageError(
                    f"edited arguments for {record.opened.tool!r} are invalid: {lines}"
                )
        event = GateDecided(
            run_id=record.run_id,
            ts=self.clock.now(),
            gate_id=gate_id,
            call_id=record.opened.call_id,
            decision=decision,
            by=by,
            note=note,
            arguments=dict(args) if args is not None else None,
            happened=happened,
            result=result,
        )
        try:
            decided = await self.journal.decide_gate(event)  # checks the deadline atomically
        except GateExpired:
            raise await self._refuse_expired(record) from None
        if not decided:
            current = await self.journal.gate(gate_id)
            raise _already_decided(current) if current else UsageError(f"no gate {gate_id!r}")
        self._publish(event)
        if self._system is not None:
            await self._wake(record.run_id)
        return GateRecord(record.run_id, record.opened, event)

    def _expiry_note(self) -> str:
        return f"no decision within {self.durability.gate_ttl_s / 3600:g} h"

    async def _refuse_expired(self, record: GateRecord) -> GateExpired:
        """A decision came too late: record the expiry (if nobody has), and say so."""
        expired = GateDecided(
            run_id=record.run_id,
            ts=max(self.clock.now(), record.opened.expires_at),
            gate_id=record.opened.gate_id,
            call_id=record.opened.call_id,
            decision="expired",
            note=self._expiry_note(),
        )
        try:
            if await self.journal.decide_gate(expired):
                self._publish(expired)
        except Exception as exc:  # the refusal stands; the poller expires it next time
            log.error("runtime.expire_failed", gate_id=record.opened.gate_id, error=repr(exc))
        return gate_expired(record.opened.gate_id, record.run_id, record.opened.expires_at)


def _already_decided(record: GateRecord) -> UsageError:
    decided = record.decided
    if decided is None:
        return UsageError(f"gate {record.opened.gate_id} was already decided")
    if decided.decision == "expired":
        return gate_expired(record.opened.gate_id, record.run_id, record.opened.expires_at)
    who = f" by {decided.by}" if decided.by else ""
    return UsageError(f"gate {record.opened.gate_id} was already {decided.decision}{who}")
