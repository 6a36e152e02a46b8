from __future__ import annotations

import random
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

from corral import ToolContext, tool
from corral.errors import ConfigError, RateLimited, ToolError
from corral.tools import RetryPolicy, Tool, retry_after_from_response


def ctx() -> ToolContext:
    return ToolContext(run_id="r", call_id="c", agent="a", attempt=1, idempotency_key="r/1/0")


def test_schema_is_derived_from_type_hints_and_is_strict() -> None:
    @tool
    async def search(
        customer: str, status: Literal["paid", "unpaid"] = "unpaid", limit: int = 10
    ) -> list[str]:
        """Search invoices.

        More text that is not part of the description.
        """
        return []

    assert search.name == "search"
    assert search.description == "Search invoices."
    assert search.input_schema == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "customer": {"type": "string"},
            "status": {"enum": ["paid", "unpaid"], "type": "string", "default": "unpaid"},
            "limit": {"type": "integer", "default": 10},
        },
        "required": ["customer"],
    }
    assert search.validate({"customer": "Acme"}) == []
    assert [str(v) for v in search.validate({"customer": 1, "extra": True})] == [
        "$: Additional properties are not allowed ('extra' was unexpected)",
        "$.customer: 1 is not of type 'string'",
    ]


def test_hand_written_schema_gets_additional_properties_false_unless_it_says_otherwise() -> None:
    nested = {
        "type": "object",
        "properties": {"address": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }

    @tool(schema=nested)
    async def a(address: dict[str, Any]) -> None:
        """A."""

    assert a.input_schema["additionalProperties"] is False
    assert a.input_schema["properties"]["address"]["additionalProperties"] is False
    assert nested["properties"]["address"].get("additionalProperties") is None  # not mutated

    @tool(schema={"type": "object", "additionalProperties": True})
    async def b(**kwargs: Any) -> None:
        """B."""

    assert b.validate({"anything": 1}) == []


class Refund(BaseModel):
    order_id: str = Field(pattern=r"^ORD-\d+$")
    amount: float = Field(gt=0)


async def test_pydantic_model_parameter_defines_schema_and_is_passed_validated() -> None:
    seen: list[Refund] = []

    @tool(side_effect="write")
    async def refund(request: Refund, context: ToolContext) -> str:
        """Refund an order."""
        seen.append(request)
        return context.idempotency_key

    assert set(refund.input_schema["properties"]) == {"order_id", "amount"}
    assert refund.validate({"order_id": "X", "amount": 0})
    assert await refund.invoke({"order_id": "ORD-1", "amount": 5.0}, ctx()) == "r/1/0"
    assert seen == [Refund(order_id="ORD-1", amount=5.0)]
    assert refund.idempotent is False


async def test_sync_functions_run_in_a_worker_thread() -> None:
    import threading

    main = threading.get_ident()

    @tool
    def where() -> bool:
        """Which thread."""
        return threading.get_ident() != main

    assert await where.invoke({}, ctx()) is True


async def test_http_errors_are_translated_with_retry_data() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        status = int(request.url.path.strip("/"))
        return httpx.Response(status, headers={"Retry-After": "2"})

    @tool
    async def get(status: int) -> Any:
        """GET."""
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            (await client.get(f"https://api.example/{status}")).raise_for_status()

    with pytest.raises(RateLimited) as limited:
        await get.invoke({"status": 429}, ctx())
    assert limited.value.retry_after == 2.0
    with pytest.raises(ToolError) as server:
        await get.invoke({"status": 503}, ctx())
    assert server.value.retryable and "HTTP 503 from api.example" in str(server.value)
    with pytest.raises(ToolError) as client_error:
        await get.invoke({"status": 404}, ctx())
    assert not client_error.value.retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_from_response(httpx.Response(429, headers=headers)) == expected


def test_backoff_is_exponential_with_bounded_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    delays = [policy.delay(n, rng=rng) for n in (1, 2, 3)]
    for got, base in zip(delays, (1.0, 4.0, 16.0), strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert RetryPolicy(jitter=0).delay(1, retry_after=30) == 30
    assert RetryPolicy(jitter=0, max_delay=5).delay(5) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "must be 1-64 letters"),
        ({"side_effect": "dangerous"}, "side_effect must be one of"),
        ({"schema": {"type": "array"}}, "must describe an object"),
        (
            {"schema": {"type": "object", "properties": {"x": {"type": "nonsense"}}}},
            "invalid JSON Schema",
        ),
        ({"description": ""}, "needs a description"),
    ],
)
def test_invalid_tool_definitions_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    async def fn(x: int = 0) -> None:
        pass

    with pytest.raises(ConfigError, match=message):
        Tool(fn, **{"description": "d", **kwargs})


def test_unresolvable_type_hints_are_a_clear_config_error() -> None:
    class Local(BaseModel):
        x: int

    async def fn(arg: Local) -> None:
        """Doc."""

    fn.__annotations__["arg"] = "Local"  # as `from __future__ import annotations` leaves it
    with pytest.raises(ConfigError, match="cannot resolve the type hints"):
        Tool(fn)


def test_invalid_retry_policy_is_refused() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ConfigError):
        RetryPolicy(jitter=1.5)


# -- the compiled fast path agrees with the reference validator --------------------------------

AGREEMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^INV-[0-9]+$"},
        "count": {"type": "integer", "minimum": 1, "maximum": 100},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "mode": {"enum": ["fast", "safe"]},
        "nested": {
            "type": "object",
            "properties": {"flag": {"type": "boolean"}},
            "required": ["flag"],
        },
    },
    "required": ["id"],
}


@pytest.mark.parametrize(
    "arguments",
    [
        {"id": "INV-1"},
        {"id": "INV-1", "count": 5, "ratio": 0.5, "tags": ["a"], "mode": "safe"},
        {"id": "INV-1", "nested": {"flag": True}},
        {"id": "INV-1", "email": "a@example.com"},
        {"id": "INV-1", "count": 5.0},  # an integral float is an integer in 2020-12
        {"id": "INV-x"},
        {"id": "INV-1\n"},  # Python's $ would match before the newline; the schema's does not
        {"id": 7},
        {"count": 5},
        {"id": "INV-1", "count": 0},
        {"id": "INV-1", "count": True},  # a boolean is not an integer
        {"id": "INV-1", "count": 2**80},  # beyond 64 bits
        {"id": "INV-1", "ratio": 1},
        {"id": "INV-1", "email": "not an address"},
        {"id": "INV-1", "tags": ["a", "b", "c"]},
        {"id": "INV-1", "mode": "reckless"},
        {"id": "INV-1", "nested": {}},
        {"id": "INV-1", "surprise": 1},  # strict: additionalProperties is false
        {"id": None},
    ],
)
def test_the_fast_path_never_accepts_what_the_reference_refuses(arguments: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    checked = Tool(lambda **_: None, name="t", description="d", schema=AGREEMENT_SCHEMA, timeout=1)
    assert checked._fast_validator is not None  # the compiled path is the one under test
    reference = Draft202012Validator(
        checked.input_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    violations = checked.validate(arguments)
    assert (violations == []) == reference.is_valid(arguments)
    if violations:  # the errors are the reference's, with their paths
        assert {v.message for v in violations} == {
            e.message for e in reference.iter_errors(arguments)
        }
