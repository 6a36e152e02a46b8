"""A client of Corral's HTTP API (what ``corral serve`` runs), for ``corral --server URL``.

One `httpx.AsyncClient` per command: every request has a deadline (`DEFAULT_TIMEOUT`),
carries the token as ``Authorization: Bearer ...``, and follows no redirect (a redirect
would send the token to wherever it points). The service answers errors as
``application/problem+json`` (RFC 9457: ``title``, ``status``, ``detail``, and ``errors``
for a 422); `ServiceError` carries them, so the command line prints
``corral: <title>: <detail>``, exit code 2 for a refusal (4xx) and 1 when the service
failed or could not be reached.

The token goes only into that header: it is never part of an error message, of the
client's ``repr``, or of a log line (httpx logs the method and URL of each request at
INFO, never its headers). Path segments (run ids, gate ids, delivery keys) are
percent-encoded, so an id cannot reach another endpoint.

Hand-written rather than generated from the OpenAPI document: the command line needs a
dozen calls and one error type, and a generated client would add a build step and a
dependency to the package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

from .errors import CorralError, UsageError

__all__ = ["DEFAULT_TIMEOUT", "ServiceError", "Client"]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Deadlines of each request: 5 s to connect, 30 s for each read, write and pool wait."""

_DETAIL_CHARS = 300
"""The most characters of a non-JSON error body quoted in an `ServiceError`."""


class ServiceError(CorralError):
    """The service refused a request, failed, or could not be reached.

    Args:
        title: what went wrong, in a few words (the problem's ``title``).
        detail: the specifics (the problem's ``detail``, with any field errors).
        status: the HTTP status; None when no answer came (connection refused, timeout).
        retry_after: seconds the service asked to wait (``Retry-After`` on a 429).
    """

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.title = title
        self.detail = detail
        self.status = status
        self.retry_after = retry_after

    @property
    def exit_code(self) -> int:
        """2 when the request was refused (4xx: fix it and retry), else 1."""
        return 2 if self.status is not None and 400 <= self.status < 500 else 1


class Client:
    """Calls the ``/v1`` API of a running ``corral serve``; use it with ``async with``.

    Args:
        base_url: the service, e.g. ``http://127.0.0.1:8000`` (``http`` or ``https``).
        token: the API token, sent as a Bearer token. None: no ``Authorization`` header
            (only ``/healthz`` and ``/readyz`` answer without one).
        timeout: per-request deadlines. Default `DEFAULT_TIMEOUT`.
        transport: an httpx transport, for tests (`httpx.MockTransport`).

    Raises:
        UsageError: `base_url` is not an http(s) URL with a host.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"--server must be an http(s) URL such as http://127.0.0.1:8000, got {base_url!r}"
            )
        if parts.username or parts.password:
            raise UsageError("--server must not carry credentials: pass --token instead")
        self.base_url = base_url.strip().rstrip("/")
        headers = {"Accept": "application/json, application/problem+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._has_token = bool(token)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"  # never the token

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- runs ----------------------------------------------------------------------------------

    async def submit(
        self,
        task: str,
        *,
        kind: str | None = None,
        tags: list[str] | None = None,
        tenant: str | None = None,
        agent: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a task (``POST /v1/runs``); returns the run (a RunView) at once."""
        body = {"task": task, "kind": kind, "tags": tags or [], "tenant": tenant, "agent": agent}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        result: dict[str, Any] = await self._call("POST", "/v1/runs", json=body, headers=headers)
        return result

    async def runs(
        self,
        *,
        status: str | None = None,
        outcome: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """List runs, newest first (``GET /v1/runs``): ``{"runs": [...], "next_cursor"}``."""
        query = {
            "status": status,
            "outcome": outcome,
            "agent": agent,
            "tenant": tenant,
            "limit": limit,
            "cursor": cursor,
        }
        params = {k: v for k, v in query.items() if v is not None}
        result: dict[str, Any] = await self._call("GET", "/v1/runs", params=params)
        return result

    async def run(self, run_id: str) -> dict[str, Any]:
        """One run (``GET /v1/runs/{run_id}``), with its figures and gates."""
        result: dict[str, Any] = await self._call("GET", f"/v1/runs/{_segment(run_id)}")
        return result

    async def events(self, run_id: str, *, after: int | None = None) -> list[dict[str, Any]]:
        """A run's events as JSON, in order (``GET /v1/runs/{run_id}/events``)."""
        params = {"after": after} if after is not None else None
        path = f"/v1/runs/{_segment(run_id)}/events"
        result = await self._call("GET", path, params=params)
        events: list[dict[str, Any]] = result["events"]
        return events

    async def cancel(self, run_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run (``POST /v1/runs/{run_id}/cancel``): ``{"cancelled", "run"}``."""
        path = f"/v1/runs/{_segment(run_id)}/cancel"
        result: dict[str, Any] = await self._call("POST", path, json={"reason": reason})
        return result

    async def export(self, run_id: str) -> dict[str, Any]:
        """A run and all its events (``GET /v1/runs/{run_id}/export``)."""
        path = f"/v1/runs/{_segment(run_id)}/export"
        result: dict[str, Any] = await self._call("GET", path)
        return result

    # -- gates and deliveries ------------------------------------------------------------------

    async def approvals(self) -> list[dict[str, Any]]:
        """The open gates (``GET /v1/approvals``), oldest first."""
        result = await self._call("GET", "/v1/approvals")
        gates: list[dict[str, Any]] = result["approvals"]
        return gates

    async def approve(
        self,
        gate_id: str,
        *,
        note: str = "",
        arguments: Mapping[str, Any] | None = None,
        happened: bool = False,
        result: Any = None,
    ) -> dict[str, Any]:
        """Approve a gate as the token's owner; returns the decided gate.

        `happened` (with an optional `result`) says a call in doubt did take effect.
        """
        body: dict[str, Any] = {
            "note": note,
            "arguments": dict(arguments) if arguments is not None else None,
        }
        if happened:
            body.update(happened=True, result=result)
        path = f"/v1/approvals/{_segment(gate_id)}/approve"
        decided: dict[str, Any] = await self._call("POST", path, json=body)
        return decided

    async def reject(self, gate_id: str, *, reason: str) -> dict[str, Any]:
        """Reject a gate as the token's owner; returns the decided gate."""
        path = f"/v1/approvals/{_segment(gate_id)}/reject"
        result: dict[str, Any] = await self._call("POST", path, json={"reason": reason})
        return result

    async def deliver(self, key: str, payload: Any = None) -> dict[str, Any]:
        """Deliver an external event (``POST /v1/deliveries``): ``{"key", "run_id", ...}``."""
        body = {"key": key, "payload": payload}
        result: dict[str, Any] = await self._call("POST", "/v1/deliveries", json=body)
        return result

    async def whoami(self) -> dict[str, Any]:
        """The token's name and roles (``GET /v1/whoami``)."""
        result: dict[str, Any] = await self._call("GET", "/v1/whoami")
        return result

    # -- the one place requests are made -------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ServiceError(
                "the server did not answer in time",
                f"{method} {self.base_url}{path}: {type(exc).__name__}",
            ) from exc
        except httpx.TransportError as exc:
            raise ServiceError(
                "cannot reach the server", f"{self.base_url}: {exc or type(exc).__name__}"
            ) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ServiceError(
                    "the server answered something that is not JSON",
                    f"{method} {path}: {response.status_code}",
                    status=response.status_code,
                ) from exc
        raise self._problem(response)

    def _problem(self, response: httpx.Response) -> ServiceError:
        """Turn an error response (problem+json, or anything else) into an `ServiceError`."""
        status = response.status_code
        title = response.reason_phrase or f"HTTP {status}"
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            title = str(body.get("title") or title)
            detail = str(body.get("detail") or "")
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                fields = "; ".join(
                    f"{e.get('loc', '?')}: {e.get('msg', '')}" if isinstance(e, dict) else str(e)
                    for e in errors
                )
                detail = f"{detail}; {fields}" if detail else fields
        elif response.text.strip():
            detail = " ".join(response.text.split())[:_DETAIL_CHARS]
        if not detail:
            detail = f"{response.request.method} {response.request.url.path} answered {status}"
        if status == 401 and not self._has_token:
            detail += " (pass --token, or set CORRAL_TOKEN)"
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 429 and retry_after is not None:
            detail += f" (retry after {retry_after:g} s)"
        return ServiceError(title, detail, status=status, retry_after=retry_after)


def _segment(value: str) -> str:
    """One path segment, percent-encoded (``/`` included)."""
    return quote(value, safe="")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, when it is a number (the service sends integers)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
