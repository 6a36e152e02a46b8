"""The dashboard, served by ``corral serve`` at ``/``, and the read-only API it needs.

The page is three files in the package (``dashboard/index.html``, ``app.js``, ``app.css``,
plus an icon): plain JavaScript with no framework and nothing fetched from anywhere else,
so there is no build step and nothing to install. Every response carries a strict
``Content-Security-Policy`` (``default-src 'self'``, no inline script or style), so even a
tool result that smuggles markup into a run can only ever be shown as text. What a
library would usually do is written there by hand, each in a few dozen lines: the charts
are SVG rectangles and polylines (nothing to vendor), server-sent events are read with
``fetch`` and a stream reader (``EventSource`` cannot send an ``Authorization`` header),
and edited arguments get a structural check against the tool's JSON Schema (types,
required, extra properties, enums, bounds, patterns) before the server's full one.

The token a person logs in with stays in the tab's ``sessionStorage`` and travels as
``Authorization: Bearer`` on every request, never in a URL; the page reads the token's
roles from ``/v1/whoami`` and hides what it cannot do (the API refuses it anyway).

What the page needs beyond the public API is added here, under ``/v1``, read-only and
authenticated like the rest (the ``read`` role):

- ``GET /v1/run-table``: `/v1/runs`'s filters and cursor, each row with its route, steps,
  tokens, cost and duration (folded from its events).
- ``GET /v1/approval-queue``: the open gates, each with its tool's input schema (the page
  checks edited arguments against it before sending), its run, and the results that the
  provenance record says its arguments came from.
- ``GET /v1/overview``: figures of the latest runs (tokens, cost, steps, tool outcomes,
  refusals by guardrail) and their totals, breaker states, and each tenant's budget use.
- ``GET /v1/events/stream``: one server-sent event per run event this process publishes
  (run, seq, kind: a notice, not the event), so lists refresh when something happens. It
  never ends on its own, so it is left out of the OpenAPI document (a generic client or
  fuzzer would wait on it forever).

A run's figures are folded from its events once per change: they are cached by run id,
keyed by the run's ``updated_at`` (every new event moves it), for at most
`_MAX_CACHED_RUNS` runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from .._log import get_logger
from .._views import GateView, RunSummary, RunView, iso
from ..events import (
    Event,
    GateDecided,
    GateOpened,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRejected,
)
from ..observability._metrics import budget_ratio
from ..store import RunInfo
from . import _api
from ._service import ApiError, Service

__all__ = [
    "ApprovalQueue",
    "BreakerView",
    "GateDetail",
    "GuardrailRate",
    "Overview",
    "RunFigures",
    "RunRow",
    "RunTable",
    "SourceResult",
    "TenantBudget",
    "ToolRate",
    "ToolTally",
    "approval_queue",
    "install_dashboard",
    "overview",
]

log = get_logger("corral.server")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Everything from this origin, nothing inline, never framed."""

_ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""The files served under ``/dashboard/`` (a fixed list: no path comes from the request)."""

OVERVIEW_RUNS = 200
"""Latest runs the overview's figures cover."""

_MAX_CACHED_RUNS = 2_000
"""Runs whose folded figures are kept between requests (least recently used dropped)."""

_MAX_NAMES = 64
"""Distinct tools (or guardrails) counted per run and in the overview's totals."""

_MAX_TENANTS = 50
"""Tenants whose budget use the overview reads."""

_MAX_SOURCES = 20
"""Source results attached to one gate."""

SOURCE_CHARS = 2_000
"""Characters of a source result shown with a gate before it is cut."""

UNKNOWN_TOOL = "(unknown)"
"""Where a call to a tool that does not exist is counted (the name is the model's)."""

_FEED_POLL_S = 1.0
"""How often the event feed checks whether the service is draining."""

_FEED_BUFFER = 1_000
"""Notices the event feed holds for a slow reader before it says ``resync``."""

MAX_FEEDS = 200
"""Event feeds open at once (one per dashboard tab); more are refused with 503."""


# -- bodies ----------------------------------------------------------------------------------


class RunRow(RunSummary):
    """A run as the dashboard's table shows it."""

    route: str = Field(description="The routing rule that chose the agent.")
    steps: int
    model_calls: int
    tokens: int
    cost_usd: float
    duration_s: float = Field(description="Start to finish (0 until the run has finished).")


class RunTable(BaseModel):
    """A page of runs, newest first; pass `next_cursor` as ``cursor`` for the next."""

    runs: list[RunRow]
    next_cursor: str | None


class ToolTally(BaseModel):
    """One tool's calls: executed attempts by outcome, and calls refused before running."""

    success: int = 0
    failed: int = 0
    rejected: int = 0


class RunFigures(BaseModel):
    """What one run cost and did, for the overview's charts."""

    run_id: str
    agent: str
    tenant: str
    status: Literal["running", "waiting", "finished"]
    outcome: str | None
    created_at: str
    steps: int
    tokens: int
    cost_usd: float
    calls: int = Field(description="Tool calls the model proposed.")
    tools: dict[str, ToolTally] = Field(description="By tool name.")
    rejections: dict[str, int] = Field(description="Calls refused, by guardrail.")


class ToolRate(BaseModel):
    """A tool's success rate over the overview's runs (``success`` over all attempts)."""

    tool: str
    success: int
    failed: int
    rejected: int
    rate: float | None = Field(description="0 to 1; None when it was never called.")


class GuardrailRate(BaseModel):
    """How often a guardrail refused a call, over the calls the model proposed."""

    guardrail: str
    rejections: int
    calls: int
    rate: float | None = Field(description="0 to 1; None when no call was proposed.")


class BreakerView(BaseModel):
    """A tool's circuit breaker."""

    tool: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: str | None


class TenantBudget(BaseModel):
    """A tenant's use today (UTC) against its daily budget."""

    tenant: str
    day: str
    tokens: int
    reserved: int
    cost_usd: float
    daily_tokens: int | None
    daily_cost_usd: float | None
    used_ratio: float | None = Field(
        description="The larger of tokens and USD used over their daily limits; None: no limit."
    )


class Overview(BaseModel):
    """The dashboard's "at a glance": the latest runs' figures, breakers, tenant budgets."""

    generated_at: str
    window: int = Field(description="The most runs covered (the latest).")
    runs: list[RunFigures] = Field(description="Newest first.")
    tools: list[ToolRate]
    guardrails: list[GuardrailRate]
    step_counts: dict[int, int] = Field(description="Finished runs by their step count.")
    breakers: list[BreakerView]
    tenants: list[TenantBudget]


class SourceResult(BaseModel):
    """A tool result an argument may have come from, as the model saw it."""

    call_id: str
    tool: str
    step: int
    content: str
    truncated: bool = Field(description="Cut to SOURCE_CHARS characters here.")


class GateDetail(GateView):
    """An open gate with what a person needs to decide it."""

    input_schema: dict[str, Any] | None = Field(
        description="The tool's JSON Schema for its arguments (None: the tool is not loaded "
        "in this process)."
    )
    run: RunRow | None
    sources: list[SourceResult] = Field(
        description="The results named by the provenance record, by call."
    )


class ApprovalQueue(BaseModel):
    """Gates waiting for a person, oldest first, each with its context."""

    approvals: list[GateDetail]


# -- folding runs ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Folded:
    updated_at: float
    row: RunRow
    figures: RunFigures


@dataclass(slots=True)
class _Tallies:
    calls: int = 0
    tools: dict[str, ToolTally] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)

    def tool(self, name: str) -> ToolTally | None:
        tally = self.tools.get(name)
        if tally is None and len(self.tools) < _MAX_NAMES:
            tally = self.tools[name] = ToolTally()
        return tally


def _tally(events: Sequence[Event]) -> _Tallies:
    """Tool outcomes and refusals, counted as ``corral_tool_calls_total`` counts them."""
    tallies = _Tallies()
    for event in events:
        if isinstance(event, ToolCallProposed):
            tallies.calls += 1
        elif isinstance(event, ToolCallFinished):
            if (tally := tallies.tool(event.tool)) is not None:
                tally.success += 1
        elif isinstance(event, ToolCallFailed):
            if (tally := tallies.tool(event.tool)) is not None:
                tally.failed += 1
        elif isinstance(event, ToolCallRejected):
            # The "registered" check refuses exactly the names no agent has: made-up ones.
            name = UNKNOWN_TOOL if event.guardrail == "registered" else event.tool
            if (tally := tallies.tool(name)) is not None:
                tally.rejected += 1
            if event.guardrail in tallies.rejections or len(tallies.rejections) < _MAX_NAMES:
                tallies.rejections[event.guardrail] = tallies.rejections.get(event.guardrail, 0) + 1
    return tallies


def _fold(info: RunInfo, events: Sequence[Event]) -> _Folded:
    view = RunView.of_events(info, events, ())
    row = RunRow(
        **RunSummary.of(info).model_dump(),
        route=view.route.rule,
        steps=view.steps,
        model_calls=view.model_calls,
        tokens=view.tokens,
        cost_usd=view.cost_usd,
        duration_s=view.duration_s,
    )
    tallies = _tally(events)
    figures = RunFigures(
        run_id=info.run_id,
        agent=info.agent,
        tenant=info.tenant,
        status=info.status,
        outcome=info.outcome,
        created_at=row.created_at,
        steps=row.steps,
        tokens=row.tokens,
        cost_usd=row.cost_usd,
        calls=tallies.calls,
        tools=tallies.tools,
        rejections=tallies.rejections,
    )
    return _Folded(info.updated_at, row, figures)


class _RunCache:
    """Folded runs by id, valid while the run's ``updated_at`` is unchanged (bounded LRU)."""

    def __init__(self, service: Service, size: int = _MAX_CACHED_RUNS) -> None:
        self.service = service
        self.size = size
        self._runs: OrderedDict[str, _Folded] = OrderedDict()

    async def get(self, info: RunInfo) -> _Folded | None:
        """The run's figures (None: it has no events, e.g. it was just deleted)."""
        found = self._runs.get(info.run_id)
        if found is not None and found.updated_at == info.updated_at:
            self._runs.move_to_end(info.run_id)
            return found
        events = await self.service.runtime.journal.read_lazily(info.run_id)
        if not events:
            return None
        folded = _fold(info, events)
        self._runs[info.run_id] = folded
        self._runs.move_to_end(info.run_id)
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)
        return folded


# -- the overview ----------------------------------------------------------------------------


def _rates(figures: Sequence[RunFigures]) -> tuple[list[ToolRate], list[GuardrailRate]]:
    tools: dict[str, ToolTally] = {}
    rejections: dict[str, int] = {}
    calls = 0
    for run in figures:
        calls += run.calls
        for name, tally in run.tools.items():
            total = tools.get(name)
            if total is None:
                if len(tools) >= _MAX_NAMES:
                    continue
                total = tools[name] = ToolTally()
            total.success += tally.success
            total.failed += tally.failed
            total.rejected += tally.rejected
        for name, count in run.rejections.items():
            if name in rejections or len(rejections) < _MAX_NAMES:
                rejections[name] = rejections.get(name, 0) + count
    tool_rates = []
    for name, t in sorted(tools.items()):
        attempts = t.success + t.failed + t.rejected
        tool_rates.append(
            ToolRate(
                tool=name,
                success=t.success,
                failed=t.failed,
                rejected=t.rejected,
                rate=t.success / attempts if attempts else None,
            )
        )
    guardrail_rates = [
        GuardrailRate(
            guardrail=name, rejections=count, calls=calls, rate=count / calls if calls else None
        )
        for name, count in sorted(rejections.items())
    ]
    return tool_rates, guardrail_rates


async def _tenants(service: Service, seen: Sequence[str]) -> list[TenantBudget]:
    runtime = service.runtime
    names = list(dict.fromkeys([*runtime.tenants.limits, *seen]))[:_MAX_TENANTS]
    budgets = []
    try:
        for name in names:
            usage = await runtime.tenant_usage(name)
            limits = usage.limits
            budgets.append(
                TenantBudget(
                    tenant=usage.tenant,
                    day=usage.day,
                    tokens=usage.tokens,
                    reserved=usage.reserved,
                    cost_usd=usage.cost_usd,
                    daily_tokens=limits.daily_tokens if limits is not None else None,
                    daily_cost_usd=limits.daily_cost_usd if limits is not None else None,
                    used_ratio=budget_ratio(usage),  # as corral_tenant_budget_used_ratio
                )
            )
    except Exception as exc:  # the supervisor is stopping: show the rest of the overview
        log.warning("dashboard.tenants_unavailable", error=repr(exc))
    return budgets


async def _breakers(service: Service) -> list[BreakerView]:
    try:
        states = await service.runtime.breaker_states()
    except Exception as exc:  # the supervisor is stopping: show the rest of the overview
        log.warning("dashboard.breakers_unavailable", error=repr(exc))
        return []
    return [
        BreakerView(
            tool=tool,
            state=state.state,
            consecutive_failures=state.consecutive_failures,
            opened_at=iso(state.opened_at),
        )
        for tool, state in sorted(states.items())
    ]


async def overview(service: Service, cache: _RunCache, *, window: int = OVERVIEW_RUNS) -> Overview:
    """The latest `window` runs' figures and totals, breaker states and tenant budgets."""
    infos = await service.runtime.journal.runs(limit=window)
    figures = [f.figures for i in infos if (f := await cache.get(i)) is not None]
    tools, guardrails = _rates(figures)
    steps: dict[int, int] = {}
    for run in figures:
        if run.status == "finished":
            steps[run.steps] = steps.get(run.steps, 0) + 1
    return Overview(
        generated_at=iso(service.runtime.clock.now()) or "",
        window=window,
        runs=figures,
        tools=tools,
        guardrails=guardrails,
        step_counts=dict(sorted(steps.items())),
        breakers=await _breakers(service),
        tenants=await _tenants(service, [run.tenant for run in figures]),
    )


# -- the approval queue ----------------------------------------------------------------------


def _sources(gate: GateView, events: Sequence[Event]) -> list[SourceResult]:
    wanted: list[str] = []
    for entry in gate.provenance:
        for source in entry.get("sources", ()) if isinstance(entry, dict) else ():
            call_id = source.get("call_id") if isinstance(source, dict) else None
            if isinstance(call_id, str) and call_id not in wanted and len(wanted) < _MAX_SOURCES:
                wanted.append(call_id)
    results: dict[str, ToolCallFinished] = {}
    for event in events:
        if isinstance(event, ToolCallFinished) and event.call_id in wanted:
            results[event.call_id] = event  # the last attempt is what the model saw
    return [
        SourceResult(
            call_id=call_id,
            tool=found.tool,
            step=found.step,
            content=found.content[:SOURCE_CHARS],
            truncated=len(found.content) > SOURCE_CHARS,
        )
        for call_id in wanted
        if (found := results.get(call_id)) is not None
    ]


async def approval_queue(service: Service, cache: _RunCache) -> ApprovalQueue:
    """The open gates with their tools' schemas, their runs and their source results."""
    runtime = service.runtime
    details = []
    for gate in await service.approvals():
        agent = runtime.agents.get(gate.agent)
        tool = agent.tool_for(gate.tool) if agent is not None else None
        info = await runtime.journal.run(gate.run_id)
        folded = await cache.get(info) if info is not None else None
        events = await runtime.journal.read_lazily(gate.run_id) if folded is not None else ()
        details.append(
            GateDetail(
                **gate.model_dump(),
                input_schema=tool.input_schema if tool is not None else None,
                run=folded.row if folded is not None else None,
                sources=_sources(gate, events),
            )
        )
    return ApprovalQueue(approvals=details)


# -- the event feed --------------------------------------------------------------------------


def _notice(event: Event) -> ServerSentEvent:
    data: dict[str, Any] = {
        "run_id": event.run_id,
        "seq": event.seq,
        "kind": event.kind,
        "ts": event.ts,
    }
    if isinstance(event, GateOpened | GateDecided):
        data["gate_id"] = event.gate_id
    return ServerSentEvent(data=json.dumps(data), event=event.kind)


@dataclass(slots=True)
class _Feeds:
    open: int = 0


async def _feed(service: Service, feeds: _Feeds) -> AsyncIterator[ServerSentEvent]:
    """A notice per run event published here, until the service drains.

    A reader too slow for `_FEED_BUFFER` notices gets one ``resync`` instead of the ones
    it missed (it reloads what it shows); nothing blocks the runtime's publishing.
    """
    send, receive = anyio.create_memory_object_stream[Event | None](_FEED_BUFFER)
    overflowed = False

    def published(event: Event) -> None:
        nonlocal overflowed
        try:
            send.send_nowait(event)
        except anyio.WouldBlock:
            overflowed = True

    unsubscribe = service.runtime.subscribe(published)
    feeds.open += 1
    try:
        yield ServerSentEvent(data='{"kind": "hello"}', event="hello")
        while not service.draining:
            received: Event | None = None
            with anyio.move_on_after(_FEED_POLL_S):  # never yield inside a cancel scope
                received = await receive.receive()
            if overflowed:
                while True:  # drop what is queued: the reader reloads instead
                    try:
                        receive.receive_nowait()
                    except anyio.WouldBlock:
                        break
                overflowed = False
                yield ServerSentEvent(data='{"kind": "resync"}', event="resync")
            elif received is not None:
                yield _notice(received)
    finally:
        feeds.open -= 1
        unsubscribe()
        send.close()
        receive.close()


# -- assets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> _Asset:
    body = (resources.files("corral.server") / "dashboard" / name).read_bytes()
    return _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""On every page and asset: the policy, no sniffing or framing, revalidate each load."""


def _serve(asset: _Asset, request: Request) -> Response:
    headers = {**_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _asset_route(asset: _Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve_asset(request: Request) -> Response:
        return _serve(asset, request)

    return serve_asset


# -- routes ----------------------------------------------------------------------------------


def install_dashboard(api: FastAPI, service: Service) -> None:
    """Add the dashboard (``/`` and ``/dashboard/...``) and the API it reads to `api`.

    Args:
        api: the application `create_app` builds.
        service: the operations the routes read from.
    """
    cache = _RunCache(service)
    feeds = _Feeds()
    page = _load("index.html", "text/html; charset=utf-8")
    assets = {name: _load(name, media_type) for name, media_type in _ASSETS.items()}
    authed = _api._problem_responses(*_api._AUTHED)

    @api.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        """The dashboard's page."""
        return _serve(page, request)

    for name, asset in assets.items():
        api.add_api_route(f"/dashboard/{name}", _asset_route(asset), include_in_schema=False)

    @api.get(
        "/v1/run-table",
        response_model=RunTable,
        tags=["dashboard"],
        responses=_api._problem_responses(400, 422, *_api._AUTHED),
    )
    async def run_table(principal: _api.Reader, query: _api.RunFilters) -> RunTable:
        """Runs as ``GET /v1/runs`` lists them, each with its route, steps, tokens and cost."""
        page = await service.list_runs(**query.filters())
        rows = []
        for summary in page.runs:
            info = await service.runtime.journal.run(summary.run_id)
            folded = await cache.get(info) if info is not None else None
            if folded is not None:
                rows.append(folded.row)
        return RunTable(runs=rows, next_cursor=page.next_cursor)

    @api.get(
        "/v1/approval-queue",
        response_model=ApprovalQueue,
        tags=["dashboard"],
        responses=authed,
    )
    async def approvals(principal: _api.Reader) -> ApprovalQueue:
        """Open gates, oldest first, with their tools' schemas, runs and source results."""
        return await approval_queue(service, cache)

    @api.get("/v1/overview", response_model=Overview, tags=["dashboard"], responses=authed)
    async def glance(principal: _api.Reader) -> Overview:
        """The latest runs' figures and totals, breaker states and tenant budgets."""
        started = time.perf_counter()
        result = await overview(service, cache)
        log.debug("dashboard.overview", runs=len(result.runs), s=time.perf_counter() - started)
        return result

    @api.get("/v1/events/stream", include_in_schema=False, response_class=Response)
    async def feed(principal: _api.Reader) -> Response:
        """A notice per run event published here, as server-sent events (never ends)."""
        if service.draining:
            raise ApiError(503, "draining", "the service is shutting down")
        if feeds.open >= MAX_FEEDS:
            raise ApiError(
                503,
                "too_many_feeds",
                f"{feeds.open} event feeds are open (at most {MAX_FEEDS}); try again shortly",
                headers={"Retry-After": "15"},
            )
        return EventSourceResponse(_feed(service, feeds), ping=15)
