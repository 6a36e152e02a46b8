"""Refused-call alerts, sent off the run's path by an actor of their own.

The run loop hands each alert over without waiting (a full mailbox drops it, logged);
the alerter calls the `Alerts.callback` and POSTs the `Alerts.webhook`, and stopping the
runtime waits up to `Alerts.drain_s` for the alerts already queued.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..actors import Actor, ActorRef
from ..errors import CorralError
from ..guardrails import ProposedCall, Verdict
from ._base import log
from ._options import Alerts

__all__ = ["Alerter", "Flush", "send_alert"]


class Flush:
    """Answered by the alerter once every alert queued before it is sent."""


class Alerter(Actor):
    """Sends refused-call alerts to the alert callback and webhook."""

    mailbox_size = 1024

    def __init__(self, alerts: Alerts) -> None:
        self._alerts = alerts

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Flush):
            return None  # every alert queued before it has been sent
        verdict, call = message
        if self._alerts.callback is not None:
            try:
                self._alerts.callback(verdict, call)
            except Exception as exc:
                log.error("runtime.alert_failed", error=repr(exc))
        if self._alerts.webhook is not None:
            payload = {
                "guardrail": verdict.guardrail,
                "decision": verdict.decision,
                "reason": verdict.reason,
                "run_id": call.run_id,
                "agent": call.agent,
                "tool": call.tool,
                "side_effect": call.side_effect,
                "tenant": call.tenant,
            }
            try:
                async with httpx.AsyncClient(timeout=self._alerts.webhook_timeout_s) as client:
                    response = await client.post(self._alerts.webhook, json=payload)
                    response.raise_for_status()
            except httpx.HTTPError as exc:
                log.error("runtime.alert_webhook_failed", error=repr(exc))
        return None


def send_alert(alerter: ActorRef, verdict: Verdict, call: ProposedCall) -> None:
    """Queue one alert; never blocks or fails the run (a full or stopped alerter drops it)."""
    try:
        alerter.tell_nowait((verdict, call))
    except CorralError as exc:
        log.error("runtime.alert_dropped", error=repr(exc), tool=call.tool)


async def drain(alerter: ActorRef, alerts: Alerts) -> None:
    """Wait (up to `Alerts.drain_s`) until every queued alert is sent."""
    try:
        await alerter.ask(Flush(), timeout=alerts.drain_s)
    except CorralError as exc:
        log.error("runtime.alerts_not_drained", error=repr(exc))
