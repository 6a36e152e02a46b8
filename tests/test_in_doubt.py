"""Calls in doubt after a crash settle themselves: a status probe answers, a person only
when nobody can know (durability rule 3, issue 19).

Each test interrupts a real run on a SQLite file: its side-effecting call starts and
blocks, and the runtime is stopped mid-call (no outcome is journaled, as after a kill).
A second runtime on the same file, with the same agent but a tool that now answers and
may have a status probe, resumes it. ``ledger`` is the outside world's record of what
ran, by idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Guards, RetryPolicy, Runtime, SubAgent, ToolContext, tool
from corral.errors import UsageError
from corral.events import Event
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call
from corral.store import SqliteJournal
from corral.tools import Done, NotDone, Tool, Unknown

FAST = RetryPolicy(max_retries=1, initial_delay=0.01, jitter=0.0)


def model() -> FunctionModel:
    def decide(request: ModelRequest) -> Any:
        results = [m for m in request.messages if isinstance(m, ToolResultMessage)]
        if not results:
            return call("charge", amount=5.0)
        return f"Result: {results[-1].content}"

    return FunctionModel(decide, name="charger")


def agent(charge: Tool) -> SubAgent:
    return SubAgent("payments", instructions="You charge cards.", tools=[charge], model=model())


def charging(ledger: list[str], **options: Any) -> Tool:
    @tool(side_effect="external", timeout=5, **options)
    async def charge(amount: float, ctx: ToolContext) -> str:
        """Charge the card."""
        ledger.append(ctx.idempotency_key)
        return f"charged {amount:.2f}"

    return charge


async def interrupted(db: Path, ledger: list[str]) -> tuple[str, str]:
    """Start a run whose charge blocks after it reached the provider; stop mid-call.

    Returns the run id and the call's idempotency key.
    """

    @tool(side_effect="external", timeout=30)
    async def charge(amount: float, ctx: ToolContext) -> str:
        """Charge the card."""
        ledger.append(ctx.idempotency_key)
        await anyio.sleep_forever()  # the process dies here
        return "unreachable"

    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(charge)], journal=journal, guards=Guards(gated=())
        ) as runtime:
            handle = await runtime.submit("Charge 5 USD")
            with anyio.fail_after(5):
                while not ledger:
                    await anyio.sleep(0.01)
    return handle.run_id, ledger[0]


async def resumed(db: Path, charge: Tool, act: Callable[[Runtime, str], Any] | None = None):
    """Resume on a new runtime with `charge`; returns (result, events)."""
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(charge)],
            journal=journal,
            guards=Guards(gated=()),
            durability=Durability(poll_interval_s=None),
        ) as runtime:
            (run_id,) = [info.run_id for info in await journal.runs()]
            result = await runtime.wait(run_id, timeout=10)
            if act is not None:
                await act(runtime, result.gates[0].opened.gate_id)
                result = await runtime.wait(run_id, timeout=10)
            return result, list(result.events)


def kinds(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


async def test_a_probe_that_says_done_records_its_result_and_nothing_runs_again(tmp_path) -> None:
    ledger: list[str] = []
    run_id, key = await interrupted(tmp_path / "c.db", ledger)
    asked: list[tuple[str, dict[str, Any]]] = []

    def status(idempotency_key: str, arguments: dict[str, Any]) -> Done:
        asked.append((idempotency_key, arguments))
        return Done({"charge_id": "ch_1", "amount": arguments["amount"]})

    result, events = await resumed(tmp_path / "c.db", charging(ledger, reconcile=status))
    assert ledger == [key]  # the interrupted attempt only: not charged twice
    assert asked == [(key, {"amount": 5.0})]
    (settled,) = kinds(events, "call_reconciled")
    assert (settled.answer, settled.idempotency_key, settled.probe_attempts) == ("done", key, 1)
    finished = kinds(events, "tool_call_finished")
    assert len(finished) == 1 and '"charge_id":"ch_1"' in finished[0].content
    assert result.outcome == "completed" and "ch_1" in (result.output or "")
    assert kinds(events, "gate_opened") == []


async def test_a_probe_that_says_not_done_runs_the_call_again_with_its_key(tmp_path) -> None:
    ledger: list[str] = []
    _, key = await interrupted(tmp_path / "c.db", ledger)
    result, events = await resumed(
        tmp_path / "c.db", charging(ledger, reconcile=lambda k, a: NotDone())
    )
    assert ledger == [key, key]  # run again, with the same idempotency key
    assert [e.answer for e in kinds(events, "call_reconciled")] == ["not_done"]
    assert result.outcome == "completed" and result.output == "Result: charged 5.00"


async def test_unknown_opens_a_gate_that_says_so_and_a_person_says_it_happened(tmp_path) -> None:
    ledger: list[str] = []
    _, key = await interrupted(tmp_path / "c.db", ledger)

    async def status(idempotency_key: str, arguments: dict[str, Any]) -> Unknown:
        return Unknown("the provider has no record yet")

    async def happened(runtime: Runtime, gate_id: str) -> None:
        await runtime.approve(
            gate_id, by="ana@example.com", happened=True, result={"charge_id": "ch_9"}
        )

    result, events = await resumed(
        tmp_path / "c.db", charging(ledger, reconcile=status), act=happened
    )
    (gate,) = kinds(events, "gate_opened")
    assert gate.doubt == {
        "idempotency_key": key,
        "attempt": 1,
        "probe": "unknown",
        "detail": "the provider has no record yet",
    }
    assert "could not tell (the provider has no record yet)" in gate.reason
    (decided,) = kinds(events, "gate_decided")
    assert decided.happened and decided.result == {"charge_id": "ch_9"}
    assert ledger == [key]  # a person said it happened: not run again
    assert result.outcome == "completed" and "ch_9" in (result.output or "")


async def test_a_probe_that_raises_is_retried_then_a_person_decides(tmp_path) -> None:
    ledger: list[str] = []
    await interrupted(tmp_path / "c.db", ledger)
    calls = []

    def status(idempotency_key: str, arguments: dict[str, Any]) -> Done:
        calls.append(idempotency_key)
        raise ConnectionError("status API down, token sk-ant-api03-" + "x" * 40)

    async def run_it(runtime: Runtime, gate_id: str) -> None:
        await runtime.approve(gate_id, by="ana@example.com")  # it did not happen: run it

    result, events = await resumed(
        tmp_path / "c.db", charging(ledger, reconcile=status, reconcile_retry=FAST), act=run_it
    )
    (settled,) = kinds(events, "call_reconciled")
    assert (settled.answer, settled.probe_attempts) == ("failed", 2) and len(calls) == 2
    assert "ConnectionError: status API down" in settled.detail
    assert "sk-ant" not in settled.detail  # redacted
    (gate,) = kinds(events, "gate_opened")
    assert gate.doubt["probe"] == "failed" and "probe failed" in gate.reason
    assert len(ledger) == 2 and ledger[0] == ledger[1]  # approved: run again, same key
    assert result.outcome == "completed"


async def test_a_probe_that_hangs_is_bounded_by_its_timeout(tmp_path) -> None:
    ledger: list[str] = []
    await interrupted(tmp_path / "c.db", ledger)

    async def status(idempotency_key: str, arguments: dict[str, Any]) -> Done:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    charge = charging(
        ledger,
        reconcile=status,
        reconcile_timeout=0.1,
        reconcile_retry=RetryPolicy(max_retries=0),
    )
    with anyio.fail_after(10):
        result, events = await resumed(tmp_path / "c.db", charge)
    (settled,) = kinds(events, "call_reconciled")
    assert settled.answer == "failed" and "no answer within its 0.1 s timeout" in settled.detail
    assert result.status == "waiting" and result.gates[0].opened.doubt["probe"] == "failed"


async def test_a_probe_answering_nonsense_counts_as_failed(tmp_path) -> None:
    ledger: list[str] = []
    await interrupted(tmp_path / "c.db", ledger)
    charge = charging(
        ledger, reconcile=lambda k, a: "yes, probably", reconcile_retry=RetryPolicy(max_retries=0)
    )
    result, events = await resumed(tmp_path / "c.db", charge)
    (settled,) = kinds(events, "call_reconciled")
    assert settled.answer == "failed" and "not Done(result), NotDone() or Unknown" in settled.detail
    assert result.status == "waiting"


async def test_without_a_probe_a_person_is_asked_and_may_skip_it(tmp_path) -> None:
    ledger: list[str] = []
    await interrupted(tmp_path / "c.db", ledger)

    async def skip(runtime: Runtime, gate_id: str) -> None:
        with pytest.raises(UsageError, match="a result goes with happened"):
            await runtime.approve(gate_id, by="ana", result={"x": 1})
        with pytest.raises(UsageError, match="cannot be given edited arguments"):
            await runtime.approve(gate_id, by="ana", happened=True, args={"amount": 1.0})
        await runtime.reject(gate_id, by="ana", reason="the provider refunded it")

    result, events = await resumed(tmp_path / "c.db", charging(ledger), act=skip)
    assert kinds(events, "call_reconciled") == []
    (gate,) = kinds(events, "gate_opened")
    assert gate.doubt["probe"] == "none" and "has no status probe" in gate.reason
    assert len(ledger) == 1  # skipped: not run again
    assert result.outcome == "completed"


async def test_an_idempotent_tool_is_run_again_with_its_key_and_that_is_journaled(
    tmp_path,
) -> None:
    ledger: list[str] = []
    _, key = await interrupted(tmp_path / "c.db", ledger)
    result, events = await resumed(tmp_path / "c.db", charging(ledger, idempotent=True))
    (settled,) = kinds(events, "call_reconciled")
    assert (settled.answer, settled.idempotency_key) == ("retried", key)
    assert ledger == [key, key] and result.outcome == "completed"


async def test_happened_is_refused_at_a_gate_that_is_not_in_doubt(tmp_path) -> None:
    ledger: list[str] = []
    async with SqliteJournal(tmp_path / "c.db") as journal:
        async with Runtime(agents=[agent(charging(ledger))], journal=journal) as runtime:
            result = await runtime.run("Charge 5 USD")  # gated by default: not yet run
            gate_id = result.gates[0].opened.gate_id
            with pytest.raises(UsageError, match="not for a call in doubt"):
                await runtime.approve(gate_id, by="ana", happened=True)
            assert result.gates[0].opened.doubt == {}
    assert ledger == []


async def test_a_person_settles_a_call_in_doubt_through_the_api(tmp_path) -> None:
    from ._server import live_service

    ledger: list[str] = []
    run_id, key = await interrupted(tmp_path / "c.db", ledger)
    async with live_service(
        tmp_path, agents=[agent(charging(ledger))], db=tmp_path / "c.db"
    ) as live:
        with anyio.fail_after(10):
            while not (gates := (await live.as_("ana").get("/v1/approvals")).json()["approvals"]):
                await anyio.sleep(0.02)
        (gate,) = gates
        assert gate["doubt"] == {
            "idempotency_key": key,
            "attempt": 1,
            "probe": "none",
            "detail": "",
        }
        response = await live.as_("ana").post(
            f"/v1/approvals/{gate['gate_id']}/approve",
            json={
                "happened": True,
                "result": {"charge_id": "ch_7"},
                "note": "seen in the dashboard",
            },
        )
        assert response.status_code == 200 and response.json()["happened"] is True
        view = await live.runtime.wait(run_id, timeout=10)
        assert view.outcome == "completed" and "ch_7" in (view.output or "")
    assert ledger == [key]


async def test_a_fallback_in_doubt_is_settled_by_the_fallbacks_probe(tmp_path) -> None:
    from corral.errors import ToolError

    ledger: list[str] = []
    asked: list[str] = []

    def make(hang: bool) -> Tool:
        def queued(key: str, arguments: dict[str, Any]) -> Done:
            asked.append(key)
            return Done("queued for later")

        @tool(side_effect="write", timeout=30, reconcile=queued)
        async def queue_charge(amount: float, ctx: ToolContext) -> str:
            """Queue the charge for when the provider is back."""
            ledger.append("queue " + ctx.idempotency_key)
            if hang:
                await anyio.sleep_forever()
            return "queued"

        @tool(side_effect="external", timeout=5, fallback=queue_charge)
        async def charge(amount: float) -> str:
            """Charge the card (the provider is down)."""
            ledger.append("charge")
            raise ToolError("provider down", retryable=False)

        return charge

    db = tmp_path / "c.db"
    async with SqliteJournal(db) as journal:
        async with Runtime(
            agents=[agent(make(True))], journal=journal, guards=Guards(gated=())
        ) as rt:
            handle = await rt.submit("Charge 5 USD")
            with anyio.fail_after(5):
                while not any(entry.startswith("queue") for entry in ledger):
                    await anyio.sleep(0.01)
    result, events = await resumed(db, make(False))
    assert result.outcome == "completed" and "queued for later" in (result.output or "")
    (settled,) = kinds(events, "call_reconciled")
    assert (settled.tool, settled.answer) == ("queue_charge", "done")
    assert len(asked) == 1 and ledger.count("charge") == 1  # nothing ran again
    assert handle.run_id == result.run_id
