"""What the API does, apart from HTTP: submit, read, decide, deliver, on one `Runtime`.

Workers execute; everything else records. This process drives the runs its runtime
claims; a decision made here (approve, reject, cancel, deliver, a webhook) is a journal
write that wakes the run wherever a worker holds it (here, at once; in another process on
the same journal, at its next poll).

Every method raises `ApiError` (a status, a stable ``code`` and a message safe to show)
for what the caller got wrong; the routes in ``_api.py`` turn it into problem+json.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .._log import get_logger
from .._settings import ServerSettings
from .._views import (
    GateView,
    RunList,
    RunSubmission,
    RunSummary,
    RunView,
)
from ..errors import GateExpired, RoutingError, UsageError
from ..events import EventAdapter, RunStarted
from ..runtime import Runtime
from ..store import GateRecord
from ._auth import Principal, TokenStore
from ._ratelimit import RateLimiter
from ._webhooks import WebhookRejected, WebhookVerifier

__all__ = ["ApiError", "Service"]

log = get_logger("corral.server")

_MAX_LOCKS = 10_000
"""Idempotency locks kept (least recently used dropped): one per key in flight."""


class ApiError(Exception):
    """A request the service refuses, with what to show the caller.

    Args:
        status: the HTTP status.
        code: a stable name (``run_not_found``, ``gate_expired``...).
        detail: what went wrong, in words safe to show (never a secret).
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self, status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


_CURSOR = re.compile(r"[A-Za-z0-9_-]{2,}")


def encode_cursor(run_id: str) -> str:
    """The opaque cursor for the page after `run_id`."""
    return base64.urlsafe_b64encode(run_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The run id inside a cursor.

    Raises:
        ApiError: 400, not a cursor this service made.
    """
    if not _CURSOR.fullmatch(cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


class Service:
    """The supervisor process's operations, on a running `Runtime`.

    Args:
        runtime: the running runtime (entered), with its journal.
        settings: the server's settings (tokens, limits, webhooks).
        clock: time for rate limits and webhook tolerance. Default: the runtime's clock.
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: ServerSettings,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        now = clock or runtime.clock.now
        self.tokens = TokenStore(settings.tokens)
        self.limiter = RateLimiter(
            settings.rate_limit_per_minute, settings.rate_limit_burst, clock=now
        )
        self.webhooks = WebhookVerifier(settings.webhooks, clock=now)
        self.draining = False
        self.ready = False
        self._idempotency: OrderedDict[str, anyio.Lock] = OrderedDict()

    # -- who asks -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, role: str) -> Principal:
        """The caller behind an ``Authorization`` header, if it holds `role`.

        Raises:
            ApiError: 401 (no or unknown token), 403 (missing role), 429 (rate limit).
        """
        principal = self.tokens.authenticate(authorization)
        if principal is None:
            raise ApiError(
                401,
                "unauthenticated",
                "a valid API token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="corral"'},
            )
        wait = self.limiter.take(principal.name)
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"token {principal.name!r} is over its rate limit "
                f"({self.settings.rate_limit_per_minute} requests per minute)",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        if not principal.has(role):
            raise ApiError(
                403,
                "forbidden",
                f"token {principal.name!r} lacks the {role!r} role "
                f"(it has: {', '.join(sorted(principal.roles))})",
            )
        return principal

    # -- runs ---------------------------------------------------------------------------------

    async def submit(
        self, body: RunSubmission, principal: Principal, idempotency_key: str | None
    ) -> tuple[RunView, bool]:
        """Start a run; returns its view and whether it is new.

        With an idempotency key, the run id is derived from the caller and the key, so
        a retried submission finds the run the first one started, even after a restart.

        Raises:
            ApiError: 503 draining, 429 queue full, 409 key reused with another body,
                422 unroutable task or unknown agent.
        """
        if self.draining:
            raise ApiError(
                503,
                "draining",
                "the service is shutting down and takes no new runs",
                headers={"Retry-After": "5"},
            )
        digest = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        submission = {"by": principal.name}
        run_id: str | None = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 chars")
            scoped = f"{principal.name}\x00{idempotency_key}".encode()
            run_id = "run_" + hashlib.sha256(scoped).hexdigest()[:32]
            submission.update(idempotency_key=idempotency_key, digest=digest)
            async with self._lock(run_id):
                events = await self.runtime.journal.read_lazily(run_id)
                if events:
                    started = events[0]
                    if isinstance(started, RunStarted) and started.submission.get("digest") != (
                        digest
                    ):
                        raise ApiError(
                            409,
                            "idempotency_key_reused",
                            "this Idempotency-Key was used for a different request",
                        )
                    return await self.run_view(run_id), False
                await self._start(body, run_id, submission)
            return await self.run_view(run_id), True
        run_id = await self._start(body, None, submission)
        return await self.run_view(run_id), True

    async def _start(
        self, body: RunSubmission, run_id: str | None, submission: dict[str, str]
    ) -> str:
        queued = self.runtime.active_runs()
        if queued >= self.settings.max_queued_runs:
            raise ApiError(
                429,
                "queue_full",
                f"{queued} runs are in flight (max_queued_runs is "
                f"{self.settings.max_queued_runs}); try again shortly",
                headers={"Retry-After": "5"},
            )
        try:
            handle = await self.runtime.submit(
                body.task,
                kind=body.kind,
                tags=body.tags,
                tenant=body.tenant,
                agent=body.agent,
                run_id=run_id,
                submission=submission,
            )
        except RoutingError as exc:
            raise ApiError(422, "unroutable", str(exc)) from None
        except UsageError as exc:
            raise ApiError(422, "invalid_run", str(exc)) from None
        log.info("server.run_submitted", run_id=handle.run_id, agent=handle.agent)
        return handle.run_id

    def _lock(self, key: str) -> anyio.Lock:
        lock = self._idempotency.get(key)
        if lock is None:
            lock = self._idempotency[key] = anyio.Lock()
            while len(self._idempotency) > _MAX_LOCKS:
                oldest, held = next(iter(self._idempotency.items()))
                if held.locked():
                    break
                del self._idempotency[oldest]
        else:
            self._idempotency.move_to_end(key)
        return lock

    async def list_runs(
        self,
        *,
        status: str | None,
        outcome: str | None,
        agent: str | None,
        tenant: str | None,
        created_after: float | None,
        created_before: float | None,
        limit: int,
        cursor: str | None,
    ) -> RunList:
        """A page of runs, newest first."""
        infos = await self.runtime.journal.runs(
            status=status,  # type: ignore[arg-type]  # validated by the route
            outcome=outcome,
            agents=None if agent is None else [agent],
            tenant=tenant,
            created_after=created_after,
            created_before=created_before,
            after=None if cursor is None else decode_cursor(cursor),
            limit=limit + 1,
        )
        more = len(infos) > limit
        infos = infos[:limit]
        return RunList(
            runs=[RunSummary.of(i) for i in infos],
            next_cursor=encode_cursor(infos[-1].run_id) if more and infos else None,
        )

    async def run_view(self, run_id: str) -> RunView:
        """One run.

        Raises:
            ApiError: 404, no such run.
        """
        journal = self.runtime.journal
        info = await journal.run(run_id)
        events = await journal.read_lazily(run_id) if info is not None else ()
        if info is None or not events:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return RunView.of_events(info, events, await journal.gates(status=None, run_id=run_id))

    async def events(self, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """A run's events after sequence number `after`, as JSON.

        Raises:
            ApiError: 404, no such run.
        """
        events = await self.runtime.journal.read_lazily(run_id)
        if not events:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return [EventAdapter.dump_python(e, mode="json") for e in events if e.seq > after]

    async def cancel(self, run_id: str, reason: str | None) -> tuple[bool, bool, RunView]:
        """Cancel a run: ``(cancelled, requested, view)``.

        Cancelled: this call ended it (driven here, paused, or left by a crashed worker).
        Requested: another live worker drives it and was asked to end it. Neither: it had
        already ended.

        Raises:
            ApiError: 404 no such run.
        """
        info = await self.runtime.journal.run(run_id)
        if info is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        cancelled = await self.runtime.cancel(run_id, reason=reason or "cancelled through the API")
        requested = False
        if not cancelled:
            current = await self.runtime.journal.run(run_id)
            requested = current is not None and current.status != "finished"
        return cancelled, requested, await self.run_view(run_id)

    # -- gates --------------------------------------------------------------------------------

    async def approvals(self) -> list[GateView]:
        """Open gates that can still be decided, oldest first."""
        gates = await self.runtime.pending_approvals()
        return [await self._gate_view(g) for g in gates]

    async def _gate_view(self, record: GateRecord) -> GateView:
        info = await self.runtime.journal.run(record.run_id)
        return GateView.of(record, info.agent if info is not None else "")

    async def decide(
        self,
        gate_id: str,
        principal: Principal,
        *,
        approve: bool,
        note: str,
        arguments: dict[str, Any] | None = None,
        happened: bool = False,
        result: Any = None,
    ) -> GateView:
        """Approve or reject a gate as `principal` (the token decides who, not the body).

        Raises:
            ApiError: 404 unknown gate, 403 the submitter's own run, 409 already decided,
                410 expired, 422 edited arguments that break the tool's schema.
        """
        record = await self.runtime.journal.gate(gate_id)
        if record is None:
            raise ApiError(404, "gate_not_found", f"no gate {gate_id!r}")
        if not self.settings.allow_self_approval:
            first = (await self.runtime.journal.read_lazily(record.run_id))[0]
            if isinstance(first, RunStarted) and first.submission.get("by") == principal.name:
                raise ApiError(
                    403,
                    "own_run",
                    f"{principal.name!r} submitted run {record.run_id} and cannot decide "
                    "its gates (server.allow_self_approval is off)",
                )
        if record.decided is not None:
            raise _decided(record)
        info = await self.runtime.journal.run(record.run_id)
        if info is not None and info.status == "finished":
            raise ApiError(
                409,
                "run_ended",
                f"gate {gate_id} belongs to run {record.run_id}, which ended ({info.outcome}) "
                "without it: there is nothing left to decide",
            )
        try:
            if approve:
                decided = await self.runtime.approve(
                    gate_id,
                    by=principal.name,
                    note=note,
                    args=arguments,
                    happened=happened,
                    result=result,
                )
            else:
                decided = await self.runtime.reject(gate_id, by=principal.name, reason=note)
        except GateExpired as exc:
            raise ApiError(410, "gate_expired", str(exc)) from None
        except UsageError as exc:
            current = await self.runtime.journal.gate(gate_id)
            if current is not None and current.decided is not None:
                raise _decided(current) from None
            raise ApiError(422, "invalid_decision", str(exc)) from None
        log.info(
            "server.gate_decided",
            gate_id=gate_id,
            run_id=record.run_id,
            decision="approved" if approve else "rejected",
            by=principal.name,
        )
        return await self._gate_view(decided)

    # -- outside events -----------------------------------------------------------------------

    async def deliver(self, key: str, payload: Any) -> str | None:
        """Deliver an event to the run waiting on `key` (kept for it if none waits yet)."""
        return await self.runtime.deliver(key, payload)

    async def webhook(
        self, key: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str | None, str | None, bool]:
        """Verify a signed webhook and deliver its body; returns (run id, webhook id, duplicate).

        A delivery whose id was accepted before (a sender's retry, or a replay) is
        acknowledged as a duplicate and not delivered again: senders retry anything but a
        2xx, so refusing it would have them retry for days.

        Raises:
            ApiError: the verifier's refusal (400, 401, 404), or 400 for a body that
                is neither JSON nor UTF-8 text (text that is not JSON is delivered as a
                string).
        """
        try:
            webhook_id = self.webhooks.verify(key, headers, body)
        except WebhookRejected as exc:
            if exc.status == 409:  # delivered before: acknowledge, deliver nothing again
                log.info("server.webhook_duplicate", key=key)
                return None, _header(headers, "webhook-id", "x-github-delivery"), True
            raise ApiError(exc.status, "webhook_rejected", exc.reason) from None
        try:
            payload = _payload(body)
            run_id = await self.deliver(key, payload)
        except BaseException:
            if webhook_id is not None:  # not delivered: the sender's retry must get through
                self.webhooks.forget(key, webhook_id)
            raise
        log.info("server.webhook_delivered", key=key, webhook_id=webhook_id, run_id=run_id)
        return run_id, webhook_id, False


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def _payload(body: bytes) -> Any:
    """A webhook body as the waiting tool's result: JSON parsed, other text as a string.

    Raises:
        ApiError: 400, a body that is neither JSON nor UTF-8 text.
    """
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the webhook body is neither JSON nor UTF-8") from None


def _decided(record: GateRecord) -> ApiError:
    decided = record.decided
    if decided is not None and decided.decision == "expired":
        return ApiError(410, "gate_expired", f"gate {record.opened.gate_id} expired")
    who = f" by {decided.by}" if decided is not None and decided.by else ""
    what = decided.decision if decided is not None else "decided"
    return ApiError(409, "gate_decided", f"gate {record.opened.gate_id} was already {what}{who}")


def parse_time(value: str | None, name: str) -> float | None:
    """A query's time: ISO 8601 (``Z`` or an offset; naive means UTC) or Unix seconds.

    Raises:
        ApiError: 422 naming the parameter.
    """
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(
                422, "invalid_time", f"{name}: not an ISO 8601 time or Unix seconds: {value!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    if not math.isfinite(seconds):
        raise ApiError(422, "invalid_time", f"{name}: not a finite number of seconds")
    return seconds
