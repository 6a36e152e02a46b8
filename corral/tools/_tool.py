"""Tools: a name, a description, a strict JSON Schema, a side-effect level and a call policy.

A tool's retry policy is a `corral.RetryPolicy`, the one retry engine's (`corral._retry`).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints, overload

import httpx
import jsonschema
import jsonschema_rs
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, create_model

from .._retry import RetryPolicy, parse_retry_after
from .._timeout import run_sync_in_thread
from ..errors import ConfigError, RateLimited, ToolError, UsageError
from ..models import ToolSpec

__all__ = [
    "SIDE_EFFECTS",
    "Done",
    "NotDone",
    "Probe",
    "ProbeAnswer",
    "SchemaViolation",
    "SideEffect",
    "Tool",
    "ToolContext",
    "Unknown",
    "WaitFor",
    "retry_after_from_response",
    "tool",
]

SideEffect = Literal["read", "write", "external", "destructive"]
"""What a tool does to the world: reads only, writes our state, calls out, or destroys."""

SIDE_EFFECTS: tuple[SideEffect, ...] = ("read", "write", "external", "destructive")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool may know about its call. Declare a parameter of this type to get it."""

    run_id: str
    """The run making the call."""
    call_id: str
    """The model's id for this call."""
    agent: str
    """The sub-agent making the call."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, and so on."""
    idempotency_key: str
    """Stable across retries and restarts of this call: pass it to the API you call."""


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Return this from a tool to pause the run until an external event arrives.

    The run holds no task while it waits. `Runtime.deliver(key, payload)` (or
    ``corral deliver KEY``, or the webhook endpoint) wakes it, and the payload becomes the
    tool's result; a delivery that arrives before the wait starts is kept for it. Past
    `timeout_s` the model is told the event never came.
    """

    key: str
    """Correlation key, such as ``payment:INV-000102``."""
    timeout_s: float = 86_400.0
    """How long to wait, in seconds. Default one day."""


@dataclass(frozen=True, slots=True)
class Done:
    """A status probe's answer: the call in doubt did take effect.

    `result` is what it returned: the model sees it, as if the call had just returned it.
    """

    result: Any = None


@dataclass(frozen=True, slots=True)
class NotDone:
    """A status probe's answer: the call in doubt did not take effect (run it again)."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A status probe's answer: nobody can tell (a person decides); `reason` says why."""

    reason: str = ""


ProbeAnswer = Done | NotDone | Unknown
"""What a tool's status probe (``reconcile``) returns."""

Probe = Callable[[str, Mapping[str, Any]], "ProbeAnswer | Awaitable[ProbeAnswer]"]
"""``reconcile(idempotency_key, arguments)``: did the call with this key take effect?"""


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """One way the arguments break the tool's schema."""

    path: str
    """JSON path of the offending value, such as ``$.invoice_id``."""
    message: str
    """The validator's message."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _strict(schema: Any) -> Any:
    """Return the schema with ``additionalProperties: false`` on every object that does not say."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object" or "properties" in out
        ) and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _fast_validator(schema: dict[str, Any]) -> jsonschema_rs.Validator | None:
    """A compiled validator (jsonschema-rs) for the valid case; None if the schema is beyond it.

    It only ever says "valid" quickly: any other answer goes to the reference validator
    (`jsonschema`), which writes the errors the model sees. It checks formats and uses
    ECMA-262 patterns, at least as strict as the reference's Python ones, so a call it
    accepts is one the reference accepts too.
    """
    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError):
        return None


def _json_path(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def retry_after_from_response(response: httpx.Response) -> float | None:
    """Read how long an HTTP response asked us to wait, in seconds (see `parse_retry_after`).

    Args:
        response: the response (a 429 or a 503, usually).

    Returns:
        The delay in seconds (0 or more), or None when there is none worth honouring.
    """
    return parse_retry_after(response.headers)


class Tool:
    """A function the model may call, with everything Corral needs to call it safely.

    Build one with the `tool` decorator, or directly. The JSON Schema is strict: objects
    get ``additionalProperties: false`` unless the schema says otherwise.

    Args:
        fn: the function (sync or async). Sync functions run in a worker thread.
        name: name the model calls it by. Default: the function's name.
        description: what it does, for the model. Default: the docstring's first paragraph.
        schema: JSON Schema of the arguments. Default: derived from a pydantic model
            parameter or from the type hints.
        side_effect: ``read``, ``write``, ``external`` or ``destructive``. Default ``read``.
        timeout: hard limit for one attempt, in seconds (finite, > 0). Default 30 s.
        retry: retry policy. Default 3 retries with backoff 1 s, 4 s, 16 s.
        fallback: a tool called with the same arguments when retries are exhausted or the
            breaker is open; it is never offered to the model.
        idempotent: safe to run twice with the same idempotency key. Default: True for
            ``read`` tools, else False.
        scopes: permissions the calling agent must hold, such as ``{"invoices:write"}``.
        trusted: its results are a trusted source of argument values (your own database,
            not text a third party wrote). Default False: a value the model copies from
            its results into a side-effecting call sends that call to a person (see
            `corral.guardrails.ProvenanceCheck`).
        reconcile: a status probe, ``reconcile(idempotency_key, arguments)`` (sync or
            async) answering `Done` (with the result), `NotDone` or `Unknown`: after a
            crash during a call of this tool, it settles whether the call took effect,
            so a person is asked only when nobody can know. Payment and ticketing APIs
            usually let a caller look an operation up by its idempotency key.
        reconcile_timeout: hard limit for one probe, in seconds. Default 10 s.
        reconcile_retry: retries of a probe that raises or times out. Default 2
            retries, 1 s then 4 s; after them, a person decides.

    Raises:
        ConfigError: invalid name, schema, timeout or side-effect level.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        side_effect: SideEffect = "read",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        fallback: Tool | None = None,
        idempotent: bool | None = None,
        scopes: Iterable[str] = (),
        trusted: bool = False,
        reconcile: Probe | None = None,
        reconcile_timeout: float = 10.0,
        reconcile_retry: RetryPolicy | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not self.name.replace("_", "").replace("-", "").isalnum() or len(self.name) > 64:
            raise ConfigError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        doc = inspect.getdoc(fn) or ""
        self.description = description if description is not None else doc.split("\n\n")[0]
        if not self.description:
            raise ConfigError(f"tool {self.name!r} needs a description (or a docstring)")
        if side_effect not in SIDE_EFFECTS:
            raise ConfigError(
                f"tool {self.name!r}: side_effect must be one of {', '.join(SIDE_EFFECTS)}, "
                f"got {side_effect!r}"
            )
        self.side_effect: SideEffect = side_effect
        if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(
                f"tool {self.name!r} needs a finite timeout > 0 seconds, got {timeout!r}"
            )
        self.timeout = float(timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        if fallback is not None and fallback is self:
            raise ConfigError(f"tool {self.name!r} cannot be its own fallback")
        self.fallback = fallback
        self.idempotent = idempotent if idempotent is not None else side_effect == "read"
        self.scopes = frozenset(scopes)
        self.trusted = bool(trusted)
        if reconcile is not None and not callable(reconcile):
            raise ConfigError(f"tool {self.name!r}: reconcile must be callable")
        self.reconcile = reconcile
        if not (
            isinstance(reconcile_timeout, int | float)
            and reconcile_timeout > 0
            and math.isfinite(reconcile_timeout)
        ):
            raise ConfigError(
                f"tool {self.name!r} needs a finite reconcile_timeout > 0 seconds, "
                f"got {reconcile_timeout!r}"
            )
        self.reconcile_timeout = float(reconcile_timeout)
        self.reconcile_retry = (
            reconcile_retry if reconcile_retry is not None else RetryPolicy(max_retries=2)
        )

        self._context_param: str | None = None
        self._model_param: tuple[str, type[BaseModel]] | None = None
        derived = self._inspect_signature(fn)
        raw_schema = dict(schema) if schema is not None else derived
        if raw_schema.get("type", "object") != "object":
            raise ConfigError(f"tool {self.name!r}: the schema must describe an object")
        self.input_schema: dict[str, Any] = _strict(copy.deepcopy(raw_schema))
        self.input_schema.setdefault("type", "object")
        try:
            Draft202012Validator.check_schema(self.input_schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(
                f"tool {self.name!r} has an invalid JSON Schema: {exc.message}"
            ) from exc
        self._validator = Draft202012Validator(
            self.input_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        self._fast_validator = _fast_validator(self.input_schema)
        self._is_async = inspect.iscoroutinefunction(fn)
        self._spec = ToolSpec(
            name=self.name, description=self.description, input_schema=self.input_schema
        )

    def _inspect_signature(self, fn: Callable[..., Any]) -> dict[str, Any]:
        """Find the context parameter and derive a schema from the other parameters."""
        try:
            hints = get_type_hints(fn)
        except NameError as exc:
            raise ConfigError(
                f"tool {self.name!r}: cannot resolve the type hints ({exc}); define the types "
                "at module level, or pass schema= explicitly"
            ) from exc
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            annotation = hints.get(pname, Any)
            if annotation is ToolContext:
                self._context_param = pname
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
                self._model_param = (pname, annotation)
                continue
            default = ... if param.default is param.empty else param.default
            fields[pname] = (annotation, default)
        if self._model_param is not None:
            if fields:
                raise ConfigError(
                    f"tool {self.name!r}: a pydantic-model parameter must be the only argument "
                    f"(besides a ToolContext); also found {', '.join(fields)}"
                )
            return self._model_param[1].model_json_schema()
        args_model = create_model(
            f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        derived: dict[str, Any] = args_model.model_json_schema()
        derived.pop("title", None)
        for prop in derived.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        return derived

    def spec(self) -> ToolSpec:
        """The tool as offered to the model."""
        return self._spec

    def validate(self, arguments: Mapping[str, Any]) -> list[SchemaViolation]:
        """Check arguments against the schema.

        Returns:
            Every violation, sorted by path; empty when the arguments are valid.
        """
        arguments = dict(arguments)
        fast = self._fast_validator
        if fast is not None:
            try:
                if fast.is_valid(arguments):  # the common case: valid, in well under 1 us
                    return []
            except (ValueError, TypeError, OverflowError):
                pass  # a value it cannot convert (a huge integer): the reference decides
        if self._validator.is_valid(arguments):
            return []
        errors = [
            SchemaViolation(_json_path(err.absolute_path), err.message)
            for err in self._validator.iter_errors(arguments)
        ]
        return sorted(errors, key=lambda v: v.path)

    async def probe(self, idempotency_key: str, arguments: Mapping[str, Any]) -> ProbeAnswer:
        """Ask the status probe whether the call with this key took effect (once, no timeout).

        Raises:
            UsageError: the tool has no probe.
            ToolError: the probe answered something that is not `Done`, `NotDone` or
                `Unknown`.
        """
        probe = self.reconcile
        if probe is None:
            raise UsageError(f"tool {self.name!r} has no status probe (reconcile=)")
        if inspect.iscoroutinefunction(probe):
            answer = await probe(idempotency_key, dict(arguments))
        else:
            answer = await run_sync_in_thread(
                lambda: probe(idempotency_key, dict(arguments)),
                name=f"status probe of {self.name!r}",
            )
            if inspect.isawaitable(answer):
                answer = await answer
        if not isinstance(answer, Done | NotDone | Unknown):
            raise ToolError(
                f"the status probe of {self.name!r} answered {type(answer).__name__}, not "
                "Done(result), NotDone() or Unknown(reason)",
                retryable=False,
            )
        return answer

    async def invoke(self, arguments: Mapping[str, Any], context: ToolContext) -> Any:
        """Run the function once with validated arguments (no timeout or retry here).

        Raises:
            RateLimited: the function raised an `httpx.HTTPStatusError` for a 429.
            ToolError: the function raised an `httpx.HTTPStatusError` for another status.
        """
        kwargs: dict[str, Any]
        if self._model_param is not None:
            pname, model = self._model_param
            kwargs = {pname: model.model_validate(dict(arguments))}
        else:
            kwargs = dict(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = context
        try:
            if self._is_async:
                return await self.fn(**kwargs)
            result = await run_sync_in_thread(lambda: self.fn(**kwargs), name=f"tool {self.name!r}")
            if inspect.isawaitable(result):
                return await result
            return result
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            retry_after = retry_after_from_response(exc.response)
            if status == 429:
                raise RateLimited(
                    f"{self.name}: HTTP 429 Too Many Requests", retry_after=retry_after
                ) from exc
            raise ToolError(
                f"{self.name}: HTTP {status} from {exc.request.url.host}",
                retryable=status >= 500 or status == 408,
                retry_after=retry_after,
            ) from exc

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, side_effect={self.side_effect!r}, timeout={self.timeout:g})"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    schema: Mapping[str, Any] | None = None,
    side_effect: SideEffect = "read",
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    fallback: Tool | None = None,
    idempotent: bool | None = None,
    scopes: Iterable[str] = (),
    trusted: bool = False,
    reconcile: Probe | None = None,
    reconcile_timeout: float = 10.0,
    reconcile_retry: RetryPolicy | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    **options: Any,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a `Tool`; use bare (``@tool``) or with options (``@tool(...)``).

    Args:
        fn: the function, when used bare.
        **options: any keyword argument of `Tool`.

    Returns:
        The tool, or a decorator that makes one.
    """
    if fn is not None:
        return Tool(fn, **options)

    def decorate(f: Callable[..., Any]) -> Tool:
        return Tool(f, **options)

    return decorate
