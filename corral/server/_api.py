"""The HTTP API (``/v1``) on FastAPI: routes, authentication, limits, problem+json errors.

Every body is a pydantic model (``_views.py``), so ``/openapi.json`` describes the whole
API. Every error is ``application/problem+json`` (RFC 9457) with a stable ``code``; a 422
lists each invalid field by location. A request body over ``server.max_body_bytes`` is
refused with 413 before it is read whole, whether or not it declares its length. An
unexpected failure is a 500 whose body says only that (the details go to the log).

The body limit is a small ASGI middleware written here: Starlette has no request-size
limit of its own, and uvicorn's ``h11_max_incomplete_event_size`` caps headers, not bodies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .._log import get_logger
from .._views import (
    ApprovalList,
    ApproveBody,
    CancelBody,
    CancelResult,
    DeliveryBody,
    DeliveryResult,
    EventList,
    GateView,
    Health,
    Problem,
    RejectBody,
    RunExport,
    RunList,
    RunSubmission,
    RunView,
    WebhookResult,
    WhoAmI,
    iso,
)
from ..events import Event, EventAdapter
from ._auth import Principal
from ._service import ApiError, Service, parse_time

__all__ = ["create_app"]

log = get_logger("corral.server")

PROBLEM = "application/problem+json"

_STREAM_POLL_S = 1.0
"""How often an event stream looks at the journal when nothing is published here (a run
driven by another process, a missed notification)."""

_STREAM_BUFFER = 1_000
"""Events an event stream holds for a slow reader before it falls back to the journal."""

_bearer = HTTPBearer(auto_error=False, description="An API token from server.tokens.")


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for `statuses`, and 400 and 422: each a problem+json document.

    Any request can be malformed, so every operation documents 400 and 422.
    """
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM: {"schema": schema}},
            "description": _TITLES[status],
        }
        for status in sorted({400, 422, *statuses})
    }


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_AUTHED = (401, 403, 429)


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body = Problem(
        title=_TITLES.get(status, "Error"), status=status, detail=detail, code=code, errors=errors
    ).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 (declared or streamed).

    The body is read before the application sees it (it is at most `max_bytes`), so an
    oversized chunked body is refused with 413 rather than failing half-parsed.

    Args:
        app: the ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes or declared < 0:
                    await self._refuse(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:  # read the whole body first (at most max_bytes), then replay it
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # then the real stream: a disconnect, for streaming

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "body_too_large", f"the request body is over {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


def _allowed(request: Request) -> list[str]:
    """The methods the routes of this request's path accept."""
    scope = {**request.scope, "method": ""}
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _role(name: str) -> Callable[..., Awaitable[Principal]]:
    """The dependency that authenticates a request and requires role `name`."""

    async def authenticated(
        request: Request, _token: Annotated[Any, Depends(_bearer)] = None
    ) -> Principal:
        service: Service = request.app.state.service
        principal = service.authenticate(request.headers.get("authorization"), name)
        request.state.principal = principal.name
        return principal

    return authenticated


Reader = Annotated[Principal, Depends(_role("read"))]
Submitter = Annotated[Principal, Depends(_role("submit"))]
Approver = Annotated[Principal, Depends(_role("approve"))]


@dataclass(frozen=True, slots=True)
class RunQuery:
    """The filters and page of a run listing, from the query string."""

    status: Literal["running", "waiting", "finished"] | None
    outcome: str | None
    agent: str | None
    tenant: str | None
    created_after: str | None
    created_before: str | None
    limit: int
    cursor: str | None

    def filters(self) -> dict[str, Any]:
        """`Service.list_runs` arguments (times parsed: a 422 names a bad one)."""
        return {
            "status": self.status,
            "outcome": self.outcome,
            "agent": self.agent,
            "tenant": self.tenant,
            "created_after": parse_time(self.created_after, "created_after"),
            "created_before": parse_time(self.created_before, "created_before"),
            "limit": self.limit,
            "cursor": self.cursor,
        }


def _run_query(
    status: Literal["running", "waiting", "finished"] | None = None,
    outcome: Annotated[str | None, Query(max_length=50)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=200)] = None,
    created_after: Annotated[
        str | None, Query(max_length=64, description="ISO 8601 or Unix seconds")
    ] = None,
    created_before: Annotated[
        str | None, Query(max_length=64, description="ISO 8601 or Unix seconds")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1_000, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> RunQuery:
    return RunQuery(status, outcome, agent, tenant, created_after, created_before, limit, cursor)


RunFilters = Annotated[RunQuery, Depends(_run_query)]
"""The query parameters of a run listing (``/v1/runs`` and the dashboard's table)."""


def create_app(
    service: Service,
    *,
    metrics: Any | None = None,
) -> FastAPI:
    """Build the FastAPI application serving `service`.

    Args:
        service: the operations, on a running runtime.
        metrics: a `corral.observability.Metrics` to serve at ``/metrics`` (None: 404).

    Returns:
        The ASGI application (body limit included).
    """
    api = FastAPI(
        title="Corral",
        version=__version__,
        summary="The supervisor process: submit, inspect, approve and cancel agent runs.",
        docs_url="/docs",
        redoc_url=None,
    )
    settings = service.settings

    api.state.service = service

    # -- errors -------------------------------------------------------------------------------

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": ".".join(str(part) for part in error.get("loc", ())), "msg": error["msg"]}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors) or "invalid request"
        return problem(422, "invalid_request", detail, errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, detail = {
            400: ("invalid_body", "the request body is not valid JSON in UTF-8"),
            404: ("not_found", f"no such endpoint: {request.method} {request.url.path}"),
            405: ("method_not_allowed", f"{request.method} is not allowed here"),
        }.get(exc.status_code, ("http_error", str(exc.detail)))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(_allowed(request))
        return problem(exc.status_code, code, detail, headers=headers)

    @api.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "server.request_failed",
            method=request.method,
            path=request.url.path,
            error=type(exc).__name__,
        )
        return problem(500, "internal_error", "the server failed to handle this request")

    @api.middleware("http")
    async def _access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "server.request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            token=getattr(request.state, "principal", None),
        )
        return response

    # -- health -------------------------------------------------------------------------------

    @api.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is up and serving."""
        return Health(status="ok")

    @api.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "Draining or starting"}},
    )
    async def readyz() -> Response:
        """Ready for new runs (503 while starting or draining for shutdown)."""
        if service.draining or not service.ready:
            status = "draining" if service.draining else "starting"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse({"status": "ready"})

    if metrics is not None:
        metric_responses = {} if settings.public_metrics else _problem_responses(*_AUTHED)

        @api.get(
            "/metrics",
            tags=["health"],
            responses={200: {"content": {"text/plain": {}}}, **metric_responses},
            response_class=Response,
        )
        async def metrics_endpoint(request: Request) -> Response:
            """Prometheus metrics (text exposition format)."""
            if not settings.public_metrics:
                service.authenticate(request.headers.get("authorization"), "read")
            await metrics.refresh(service.runtime)
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

    @api.get("/v1/whoami", response_model=WhoAmI, responses=_problem_responses(*_AUTHED))
    async def whoami(principal: Reader) -> WhoAmI:
        """The token's name and roles."""
        return WhoAmI(name=principal.name, roles=sorted(principal.roles))

    # -- runs ---------------------------------------------------------------------------------

    @api.post(
        "/v1/runs",
        status_code=201,
        response_model=RunView,
        tags=["runs"],
        responses={
            200: {"model": RunView, "description": "The run an earlier submission started"},
            **_problem_responses(400, 409, 422, 503, *_AUTHED),
        },
    )
    async def submit_run(
        body: RunSubmission,
        principal: Submitter,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> Response:
        """Route a task and start its run; returns at once.

        With an ``Idempotency-Key``, a retried submission returns the run the first one
        started (200), and the same key with a different body is refused (409).
        """
        view, new = await service.submit(body, principal, idempotency_key)
        return JSONResponse(view.model_dump(mode="json"), status_code=201 if new else 200)

    @api.get(
        "/v1/runs",
        response_model=RunList,
        tags=["runs"],
        responses=_problem_responses(400, 422, *_AUTHED),
    )
    async def list_runs(principal: Reader, query: RunFilters) -> RunList:
        """Runs, newest first, filtered; follow ``next_cursor`` for the next page."""
        return await service.list_runs(**query.filters())

    @api.get(
        "/v1/runs/{run_id}",
        response_model=RunView,
        tags=["runs"],
        responses=_problem_responses(404, *_AUTHED),
    )
    async def show_run(run_id: str, principal: Reader) -> RunView:
        """One run: status, outcome, usage, cost, steps, route and gates."""
        return await service.run_view(run_id)

    @api.get(
        "/v1/runs/{run_id}/events",
        response_model=EventList,
        tags=["runs"],
        responses=_problem_responses(404, *_AUTHED),
    )
    async def run_events(
        run_id: str, principal: Reader, after: Annotated[int, Query(ge=0)] = 0
    ) -> EventList:
        """The run's events after sequence number ``after``, in order."""
        return EventList(events=await service.events(run_id, after=after))

    @api.get(
        "/v1/runs/{run_id}/events/stream",
        tags=["runs"],
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
            **_problem_responses(404, 422, *_AUTHED),
        },
        response_class=Response,
    )
    async def stream_events(
        run_id: str,
        principal: Reader,
        last_event_id: Annotated[
            str | None, Header(pattern=r"^[0-9]{1,15}$", description="The last seq received")
        ] = None,
        after: Annotated[int | None, Query(ge=0, description="As Last-Event-ID")] = None,
    ) -> Response:
        """The run's events as server-sent events (``id`` is the event's seq).

        Resumes after ``Last-Event-ID`` (or ``after``); ends after ``run_finished``.
        """
        start = int(last_event_id) if last_event_id is not None else after or 0
        if not await service.runtime.journal.read_lazily(run_id):
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return EventSourceResponse(_stream(service, run_id, start), ping=15)

    @api.post(
        "/v1/runs/{run_id}/cancel",
        response_model=CancelResult,
        tags=["runs"],
        responses=_problem_responses(404, 422, *_AUTHED),
    )
    async def cancel_run(
        run_id: str, principal: Submitter, body: CancelBody | None = None
    ) -> CancelResult:
        """Stop a run now, running or waiting, whichever worker drives it.

        ``cancelled``: this request ended it; ``requested``: the worker driving it was
        asked to, and ends it as soon as it hears; neither: it had already ended.
        """
        reason = body.reason if body else None
        cancelled, requested, view = await service.cancel(run_id, reason)
        log.info(
            "server.run_cancel",
            run_id=run_id,
            by=principal.name,
            cancelled=cancelled,
            requested=requested,
        )
        return CancelResult(cancelled=cancelled, requested=requested, run=view)

    @api.get(
        "/v1/runs/{run_id}/export",
        response_model=RunExport,
        tags=["runs"],
        responses=_problem_responses(404, *_AUTHED),
    )
    async def export_run(run_id: str, principal: Reader) -> Response:
        """The run and its whole trail as one JSON document (a download)."""
        view = await service.run_view(run_id)
        document = RunExport(
            run=view,
            events=await service.events(run_id),
            exported_at=iso(time.time()) or "",
        )
        return JSONResponse(
            document.model_dump(mode="json"),
            headers={"Content-Disposition": f'attachment; filename="{run_id}.json"'},
        )

    # -- approvals ----------------------------------------------------------------------------

    @api.get(
        "/v1/approvals",
        response_model=ApprovalList,
        tags=["approvals"],
        responses=_problem_responses(*_AUTHED),
    )
    async def approvals(principal: Reader) -> ApprovalList:
        """Gates waiting for a person, oldest first."""
        return ApprovalList(approvals=await service.approvals())

    @api.post(
        "/v1/approvals/{gate_id}/approve",
        response_model=GateView,
        tags=["approvals"],
        responses=_problem_responses(404, 409, 410, 422, *_AUTHED),
    )
    async def approve(
        gate_id: str, principal: Approver, body: ApproveBody | None = None
    ) -> GateView:
        """Approve a gate as the token's owner, optionally with edited arguments."""
        body = body or ApproveBody()
        return await service.decide(
            gate_id,
            principal,
            approve=True,
            note=body.note,
            arguments=body.arguments,
            happened=body.happened,
            result=body.result,
        )

    @api.post(
        "/v1/approvals/{gate_id}/reject",
        response_model=GateView,
        tags=["approvals"],
        responses=_problem_responses(404, 409, 410, 422, *_AUTHED),
    )
    async def reject(gate_id: str, body: RejectBody, principal: Approver) -> GateView:
        """Reject a gate as the token's owner; the model is told the reason."""
        return await service.decide(gate_id, principal, approve=False, note=body.reason)

    # -- outside events -----------------------------------------------------------------------

    @api.post(
        "/v1/deliveries",
        response_model=DeliveryResult,
        tags=["events"],
        responses=_problem_responses(422, *_AUTHED),
    )
    async def deliver(body: DeliveryBody, principal: Submitter) -> DeliveryResult:
        """Deliver an event to the run waiting on ``key`` (kept for it if none waits yet)."""
        run_id = await service.deliver(body.key, body.payload)
        return DeliveryResult(key=body.key, run_id=run_id, delivered=run_id is not None)

    @api.post(
        "/v1/webhooks/{key}",
        status_code=202,
        response_model=WebhookResult,
        tags=["events"],
        responses=_problem_responses(400, 401, 404, 413),
    )
    async def webhook(key: str, request: Request) -> WebhookResult:
        """A signed webhook (Standard Webhooks, or ``X-Hub-Signature-256`` where set).

        Its body (JSON, else text) is delivered to the run waiting on ``key``, or kept
        for it. A delivery id seen before is acknowledged (``duplicate``) and not
        delivered again.
        """
        body = await request.body()
        run_id, webhook_id, duplicate = await service.webhook(key, request.headers, body)
        return WebhookResult(key=key, run_id=run_id, webhook_id=webhook_id, duplicate=duplicate)

    from ._dashboard import install_dashboard  # it imports this module's route helpers

    install_dashboard(api, service)
    return BodyLimit(api, settings.max_body_bytes)  # type: ignore[return-value]


async def _stream(service: Service, run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """A run's events after seq `after`: from the journal, then as they are published.

    An event that does not follow the last one sent (a gap, an event published before it
    was given a seq, a full buffer) sends the stream back to the journal, so nothing is
    skipped and nothing is sent twice. Ends after ``run_finished`` or when the service
    drains.
    """
    runtime = service.runtime
    send, receive = anyio.create_memory_object_stream[Event](_STREAM_BUFFER)
    overflowed = False

    def published(event: Event) -> None:
        nonlocal overflowed
        if event.run_id == run_id:
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                overflowed = True

    unsubscribe = runtime.subscribe(published)
    last = after
    try:
        catch_up = True
        while True:
            if catch_up:
                catch_up = overflowed = False
                for event in await runtime.journal.read_lazily(run_id):
                    if event.seq > last:
                        last = event.seq
                        yield _sse(event)
                        if event.kind == "run_finished":
                            return
            if service.draining:
                return
            received: Event | None = None
            with anyio.move_on_after(_STREAM_POLL_S):  # never yield inside a cancel scope
                received = await receive.receive()
            if received is not None and 0 < received.seq <= last and not overflowed:
                continue  # sent already, from the journal
            if received is None or overflowed or received.seq != last + 1:
                catch_up = True  # a gap, a full buffer, or quiet here: read the journal
                continue
            last = received.seq
            yield _sse(received)
            if received.kind == "run_finished":
                return
    finally:
        unsubscribe()
        send.close()
        receive.close()


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(
        data=EventAdapter.dump_json(event).decode(), event=event.kind, id=str(event.seq)
    )
