"""The application of the PostgreSQL fail-over tests, for ``corral serve --app tests.pg_app:app``.

Agent ``orders`` looks an order up (``lookup``, read), records it (``record``, a write the
approval policy lets run without a person, idempotent: the outside system ignores a key
it has seen), then answers. Agent ``refunds`` issues a refund (``refund``, a write that
waits at a gate). `frontdoor` is an application without either agent: a worker serving it
records decisions and drives nothing of these runs.

The ledger (a JSON-lines file named by ``CORRAL_TEST_LEDGER``) is the outside world's
record, written by every process under an exclusive lock:

* ``{"kind": "exec", "pid", "owner", "run", "call", "key", "tool"}`` for each execution;
* ``{"kind": "effect", ...}`` when the outside system applied a key for the first time;
* ``{"kind": "model", "pid", "owner", "run", "step"}`` for each model call;
* ``{"kind": "VIOLATION", "why", ...}`` when a step ran that must not have: a model step
  or a tool call already recorded as completed in the journal, or a step run by a worker
  that does not hold the run's lease. The journal is read (``CORRAL_TEST_JOURNAL``, a
  ``postgresql://`` URL) before each step to tell.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

import anyio

from corral import App, Guards, SubAgent, ToolContext, tool
from corral.guardrails import ApprovalPolicy, ApprovalRule
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call

_pool: Any = None
_pool_lock: anyio.Lock | None = None


def _owner() -> str:
    return os.environ.get("CORRAL_DURABILITY__OWNER", "")


def _log(entry: dict[str, Any], *, effect_key: str | None = None) -> bool:
    """Append `entry` to the ledger; with `effect_key`, also an ``effect`` if the key is new.

    Returns:
        True when the effect was applied now (always True without `effect_key`).
    """
    entry = {"pid": os.getpid(), "owner": _owner(), **entry}
    with open(os.environ["CORRAL_TEST_LEDGER"], "a+", encoding="utf-8") as ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        try:
            lines = [entry]
            applied = True
            if effect_key is not None:
                ledger.seek(0)
                seen = {
                    json.loads(line).get("key")
                    for line in ledger
                    if line.strip() and '"effect"' in line
                }
                applied = effect_key not in seen
                if applied:
                    lines.append({**entry, "kind": "effect"})
            ledger.seek(0, os.SEEK_END)
            ledger.write("".join(json.dumps(line) + "\n" for line in lines))
            ledger.flush()
        finally:
            fcntl.flock(ledger, fcntl.LOCK_UN)
    return applied


async def _journal(query: str, *args: Any) -> Any:
    """One value from the journal's database (its own small pool, per process)."""
    global _pool, _pool_lock
    import asyncpg

    if _pool_lock is None:
        _pool_lock = anyio.Lock()
    async with _pool_lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(
                os.environ["CORRAL_TEST_JOURNAL"], min_size=0, max_size=4
            )
    for attempt in range(1, 41):  # the database may be restarting under the test
        try:
            return await _pool.fetchval(query, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if attempt == 40:
                raise
            await anyio.sleep(0.25)
    return None


async def _check_lease(run_id: str, what: dict[str, Any]) -> None:
    holder = await _journal("SELECT owner FROM corral.runs WHERE run_id = $1", run_id)
    if holder != _owner():
        _log(
            {
                "kind": "VIOLATION",
                "why": f"run by a worker not holding the lease ({holder})",
                **what,
            }
        )


@tool(timeout=10)
async def lookup(order: str, ctx: ToolContext) -> dict[str, str]:
    """Look an order up in the order system."""
    await _tool_step(ctx, "lookup")
    await anyio.sleep(float(os.environ.get("CORRAL_TEST_TOOL_S", "0.05")))
    return {"order": order, "status": "paid"}


@tool(side_effect="write", idempotent=True, timeout=10)
async def record(order: str, ctx: ToolContext) -> str:
    """Record the order in the ledger system (it ignores a key it has already applied)."""
    await _tool_step(ctx, "record")
    await anyio.sleep(float(os.environ.get("CORRAL_TEST_TOOL_S", "0.05")))
    applied = _log(
        {"kind": "write", "run": ctx.run_id, "call": ctx.call_id, "key": ctx.idempotency_key},
        effect_key=ctx.idempotency_key,
    )
    return "recorded" if applied else "already recorded"


@tool(side_effect="write", timeout=10)
async def refund(order: str, amount: float, ctx: ToolContext) -> str:
    """Refund an order (a person approves each refund)."""
    await _tool_step(ctx, "refund")
    _log(
        {"kind": "write", "run": ctx.run_id, "call": ctx.call_id, "key": ctx.idempotency_key},
        effect_key=ctx.idempotency_key,
    )
    return f"refunded {amount:.2f} on {order}"


async def _tool_step(ctx: ToolContext, name: str) -> None:
    what = {"run": ctx.run_id, "call": ctx.call_id, "key": ctx.idempotency_key, "tool": name}
    _log({"kind": "exec", **what})
    # The call's attempts are known by its idempotency key (run, step, index): call ids
    # come from the model, and a fake's may repeat within a run across processes.
    finished = await _journal(
        "SELECT count(*) FROM corral.events f JOIN corral.events s ON s.run_id = f.run_id "
        "AND s.kind = 'tool_call_started' AND s.payload::json->>'idempotency_key' = $2 "
        "AND s.payload::json->>'call_id' = f.payload::json->>'call_id' "
        "AND s.payload::json->>'step' = f.payload::json->>'step' "
        "WHERE f.run_id = $1 AND f.kind = 'tool_call_finished'",
        ctx.run_id,
        ctx.idempotency_key,
    )
    if finished:
        _log({"kind": "VIOLATION", "why": "a tool call already finished ran again", **what})
    await _check_lease(ctx.run_id, what)


async def _model_step(request: ModelRequest) -> None:
    what = {"run": request.run_id, "step": request.step}
    _log({"kind": "model", **what})
    done = await _journal(
        "SELECT count(*) FROM corral.events WHERE run_id = $1 AND kind = 'model_called' "
        "AND (payload::json->>'step')::integer = $2",
        request.run_id,
        request.step,
    )
    if done:
        _log({"kind": "VIOLATION", "why": "a completed model step was asked again", **what})
    await _check_lease(request.run_id, what)


def _order(request: ModelRequest) -> str:
    task = str(request.messages[0].content)  # "order ORD-17"
    return task.split()[-1]


async def _orders(request: ModelRequest) -> object:
    await _model_step(request)
    await anyio.sleep(float(os.environ.get("CORRAL_TEST_MODEL_S", "0.02")))
    seen = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    order = _order(request)
    if seen == 0:
        return call("lookup", order=order)
    if seen == 1:
        return call("record", order=order)
    return f"{order} recorded"


async def _refunds(request: ModelRequest) -> object:
    await _model_step(request)
    if not any(isinstance(m, ToolResultMessage) for m in request.messages):
        return call("refund", order=_order(request), amount=12.5)
    return "refund issued"


def _guards() -> Guards:
    return Guards(approval=ApprovalPolicy([ApprovalRule("auto", tool="record")]))


def app() -> App:
    """Both agents; ``record`` runs without a person, ``refund`` waits at a gate."""
    orders = SubAgent(
        "orders",
        instructions="Record orders.",
        tools=[lookup, record],
        model=FunctionModel(_orders, name="orders-script"),
    )
    refunds = SubAgent(
        "refunds",
        instructions="Refund orders.",
        tools=[refund],
        model=FunctionModel(_refunds, name="refunds-script"),
    )
    return App(agents=[orders, refunds], guards=_guards())


def frontdoor() -> App:
    """An application with neither agent: its worker decides gates and drives none of them."""
    greeter = SubAgent(
        "greeter",
        instructions="Greet.",
        tools=[lookup],
        model=FunctionModel(lambda request: "hello", name="greeter-script"),
    )
    return App(agents=[greeter], guards=_guards())
