"""Human gates and durable waits: a paused run is only rows in the journal until woken."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral import Durability, Limits, MockClock, Runtime, SubAgent, ToolContext, tool
from corral.errors import UsageError
from corral.events import Event
from corral.models import FunctionModel, ModelRequest, ScriptedModel, ToolResultMessage, call
from corral.store import MemoryJournal
from corral.tools import WaitFor

from ._support import of_kind


def refund_tools(done: list[dict[str, Any]]) -> list[Any]:
    @tool(side_effect="external", timeout=5)
    async def refund(order_id: str, amount: float, ctx: ToolContext) -> str:
        """Refund an order through the payment provider."""
        done.append({"order_id": order_id, "amount": amount, "key": ctx.idempotency_key})
        return f"refunded {amount:.2f} on {order_id}"

    @tool(timeout=5)
    async def lookup(order_id: str) -> str:
        """Look up an order."""
        return f"{order_id}: paid 120.00"

    return [refund, lookup]


def answer_after_tool(request: ModelRequest) -> Any:
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return f"result: {last.content}"
    return call("refund", order_id="ORD-7", amount=120.0)


def refund_agent(done: list[dict[str, Any]], model: Any = None) -> SubAgent:
    return SubAgent(
        "payments",
        instructions="Refund orders.",
        tools=refund_tools(done),
        model=model or FunctionModel(answer_after_tool),
    )


async def test_external_call_waits_for_approval_and_the_paused_run_holds_no_actor() -> None:
    done: list[dict[str, Any]] = []
    async with Runtime(
        agents=[refund_agent(done)], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("refund ORD-7")
        assert paused.status == "waiting" and paused.outcome is None
        (gate,) = paused.gates
        assert gate.opened.tool == "refund" and gate.opened.arguments == {
            "order_id": "ORD-7",
            "amount": 120.0,
        }
        assert gate.opened.reason == "refund (external): gate by default for external tools"
        assert done == []
        assert [a.name for a in rt._require_running().actors()] == ["supervisor", "agent:payments"]
        assert [g.opened.gate_id for g in await rt.pending_approvals()] == [gate.opened.gate_id]
        decided = await rt.approve(gate.opened.gate_id, by="ana", note="customer called")
        assert decided.status == "approved"
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert result.output == "result: refunded 120.00 on ORD-7"
    assert len(done) == 1
    kinds = [e.kind for e in result.events]
    assert (
        kinds.index("gate_opened") < kinds.index("gate_decided") < kinds.index("tool_call_started")
    )


async def test_approver_can_edit_arguments_which_are_validated_again() -> None:
    done: list[dict[str, Any]] = []
    async with Runtime(
        agents=[refund_agent(done)], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("refund ORD-7")
        gate_id = paused.gates[0].opened.gate_id
        with pytest.raises(UsageError, match=r"\$.amount: 'lots' is not of type 'number'"):
            await rt.approve(gate_id, by="ana", args={"order_id": "ORD-7", "amount": "lots"})
        assert (await rt.pending_approvals())[0].opened.gate_id == gate_id  # still open
        await rt.approve(gate_id, by="ana", args={"order_id": "ORD-7", "amount": 100.0})
        result = await rt.wait(paused.run_id, timeout=5)
    assert done[0]["amount"] == 100.0
    assert result.output == "result: refunded 100.00 on ORD-7"


async def test_rejection_is_fed_back_with_its_reason_and_nothing_runs() -> None:
    done: list[dict[str, Any]] = []
    model = FunctionModel(answer_after_tool)
    async with Runtime(
        agents=[refund_agent(done, model)],
        clock=MockClock(),
        durability=Durability(poll_interval_s=None),
    ) as rt:
        paused = await rt.run("refund ORD-7")
        gate_id = paused.gates[0].opened.gate_id
        with pytest.raises(UsageError, match="needs a reason"):
            await rt.reject(gate_id, by="ana", reason=" ")
        await rt.reject(gate_id, by="ana", reason="refunds over 100 need a manager")
        with pytest.raises(UsageError, match=f"gate {gate_id} was already rejected by ana"):
            await rt.approve(gate_id, by="bob")
        result = await rt.wait(paused.run_id, timeout=5)
    assert done == []
    told = model.requests[-1].messages[-1]
    assert isinstance(told, ToolResultMessage) and told.is_error
    assert told.content == (
        "A person did not approve calling 'refund' (rejected by ana): refunds over 100 need a "
        "manager. Do not retry it; continue without it or explain what is needed."
    )
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == "person"


async def test_gate_expires_into_a_rejection() -> None:
    done: list[dict[str, Any]] = []
    clock = MockClock()
    async with Runtime(
        agents=[refund_agent(done)],
        clock=clock,
        durability=Durability(poll_interval_s=None, gate_ttl_s=3600),
    ) as rt:
        paused = await rt.run("refund ORD-7")
        await rt.tick()
        assert (await rt.wait(paused.run_id)).status == "waiting"
        clock.advance(3601)
        await rt.tick()
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert "(expired)" in result.output and "no decision within 1 h" in result.output
    assert done == []


async def test_a_decision_made_elsewhere_wakes_the_run_here() -> None:
    done: list[dict[str, Any]] = []
    journal = MemoryJournal()
    async with Runtime(
        agents=[refund_agent(done)], journal=journal, durability=Durability(poll_interval_s=0.01)
    ) as here:
        paused = await here.run("refund ORD-7")
        # Another process on the same journal (an approvals service without this agent):
        # it records the decision; this process's poller picks the run up.
        other = SubAgent("other", instructions="x", tools=[], model=ScriptedModel([]))
        async with Runtime(
            agents=[other],
            journal=journal,
            durability=Durability(poll_interval_s=None, resume=False),
        ) as there:
            await there.approve(paused.gates[0].opened.gate_id, by="ana")
        result = await here.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert len(done) == 1


async def test_paused_time_does_not_count_against_the_wall_clock() -> None:
    done: list[dict[str, Any]] = []
    clock = MockClock()
    limits = Limits(max_wall_clock_s=60)
    agent = SubAgent(
        "payments",
        instructions="x",
        tools=refund_tools(done),
        model=FunctionModel(answer_after_tool),
        limits=limits,
    )
    async with Runtime(
        agents=[agent], clock=clock, durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("refund ORD-7")
        clock.advance(2 * 3600)  # the approver took two hours
        await rt.approve(paused.gates[0].opened.gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"


async def test_cancel_a_waiting_run() -> None:
    async with Runtime(
        agents=[refund_agent([])], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("refund ORD-7")
        assert await rt.cancel(paused.run_id, reason="customer withdrew")
        result = await rt.wait(paused.run_id)
        assert not await rt.cancel(paused.run_id)
    assert result.outcome == "cancelled" and result.reason == "customer withdrew"


def payment_agent() -> SubAgent:
    @tool(timeout=5)
    async def await_payment(invoice_id: str) -> WaitFor:
        """Wait until the payment provider confirms the payment."""
        return WaitFor(key=f"payment:{invoice_id}", timeout_s=600)

    def respond(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if isinstance(last, ToolResultMessage):
            return f"{'error' if last.is_error else 'ok'}: {last.content}"
        return call("await_payment", invoice_id="INV-000102")

    return SubAgent(
        "collector",
        instructions="Collect payments.",
        tools=[await_payment],
        model=FunctionModel(respond),
    )


async def test_webhook_delivered_after_the_wait_starts_wakes_the_run() -> None:
    async with Runtime(
        agents=[payment_agent()], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("collect INV-000102")
        assert paused.status == "waiting" and paused.gates == ()
        assert [a.name for a in rt._require_running().actors()] == ["supervisor", "agent:collector"]
        assert (
            await rt.deliver("payment:INV-000102", {"status": "paid", "amount": 1235.0})
            == paused.run_id
        )
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.output == 'ok: {"status": "paid", "amount": 1235.0}'
    kinds = [e.kind for e in result.events]
    assert "wait_started" in kinds and "wait_resolved" in kinds


async def test_webhook_delivered_before_the_wait_starts_is_kept_for_it() -> None:
    async with Runtime(
        agents=[payment_agent()], clock=MockClock(), durability=Durability(poll_interval_s=None)
    ) as rt:
        assert await rt.deliver("payment:INV-000102", {"status": "paid"}) is None
        assert await rt.deliver("payment:INV-000102", {"status": "second copy"}) is None
        result = await rt.run("collect INV-000102")
    assert result.outcome == "completed"
    assert result.output == 'ok: {"status": "paid"}'


async def test_wait_times_out_and_the_model_is_told() -> None:
    clock = MockClock()
    async with Runtime(
        agents=[payment_agent()], clock=clock, durability=Durability(poll_interval_s=None)
    ) as rt:
        paused = await rt.run("collect INV-000102")
        clock.advance(601)
        await rt.tick()
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert result.output.startswith("error: Waiting for 'payment:INV-000102' timed out")


class FailFinishOnce(MemoryJournal):
    """Loses the first ``tool_call_finished`` of a side-effecting call, as a crash would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        if not self.failed and event.kind == "tool_call_finished" and event.tool == "refund":
            self.failed = True
            raise OSError("power cut")
        return await super().append(event, wait=wait)


async def test_uncertain_side_effect_after_a_crash_goes_to_a_person_not_a_silent_retry() -> None:
    done: list[dict[str, Any]] = []
    journal = FailFinishOnce()
    from corral.actors import RestartPolicy

    agent = SubAgent(
        "payments",
        instructions="Refund orders.",
        tools=refund_tools(done),
        model=FunctionModel(answer_after_tool),
        restart=RestartPolicy(backoff=0.0),
    )
    async with Runtime(
        agents=[agent],
        journal=journal,
        clock=MockClock(),
        durability=Durability(poll_interval_s=None),
    ) as rt:
        first = await rt.run("refund ORD-7")
        await rt.approve(first.gates[0].opened.gate_id, by="ana")
        uncertain = await rt.wait(first.run_id, timeout=5)
        assert uncertain.status == "waiting"
        (gate,) = uncertain.gates
        assert "may or may not have taken effect" in gate.opened.reason
        assert len(done) == 1  # it ran once; nothing was done twice silently
        await rt.approve(gate.opened.gate_id, by="ana", note="provider shows no refund")
        result = await rt.wait(first.run_id, timeout=5)
    assert result.outcome == "completed"
    assert len(done) == 2 and done[0]["key"] == done[1]["key"]  # same idempotency key


async def test_runtime_shutdown_leaves_the_run_resumable() -> None:
    journal = MemoryJournal()
    entered = anyio.Event()

    @tool(timeout=30)
    async def slow() -> str:
        """Slow."""
        entered.set()
        await anyio.sleep_forever()
        return ""

    agent = SubAgent("w", instructions="x", tools=[slow], model=ScriptedModel([call("slow")]))
    async with Runtime(
        agents=[agent], journal=journal, durability=Durability(poll_interval_s=None)
    ) as rt:
        handle = await rt.submit("go")
        await entered.wait()
    assert await journal.unfinished_runs() == [handle.run_id]
    assert (await journal.runs())[0].status == "running"


class StopsTheWorldClock(MockClock):
    """A clock whose sleeps never end: the process "dies" while a retry is scheduled."""

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await anyio.sleep_forever()


async def test_a_scheduled_retry_keeps_its_time_across_a_restart() -> None:
    from corral.errors import ToolError
    from corral.tools import RetryPolicy

    attempts: list[float] = []
    journal = MemoryJournal()

    def make_agent(clock: MockClock) -> SubAgent:
        @tool(timeout=5, retry=RetryPolicy(initial_delay=16, jitter=0, max_retries=2))
        async def sync_ledger() -> str:
            """Push the ledger."""
            attempts.append(clock.now())
            if len(attempts) == 1:
                raise ToolError("ledger API 503")
            return "synced"

        def respond(request: ModelRequest) -> Any:
            last = request.messages[-1]
            return (
                f"done: {last.content}"
                if isinstance(last, ToolResultMessage)
                else call("sync_ledger")
            )

        return SubAgent("ops", instructions="x", tools=[sync_ledger], model=FunctionModel(respond))

    first_clock = StopsTheWorldClock()
    async with Runtime(
        agents=[make_agent(first_clock)],
        journal=journal,
        clock=first_clock,
        durability=Durability(poll_interval_s=None),
    ) as rt:
        handle = await rt.submit("sync")
        with anyio.fail_after(5):
            while not first_clock.slept:
                await anyio.sleep(0.001)
    assert first_clock.slept == [16.0]
    second_clock = MockClock(start=first_clock.now() + 5)  # restarted 5 s later
    async with Runtime(
        agents=[make_agent(second_clock)],
        journal=journal,
        clock=second_clock,
        durability=Durability(poll_interval_s=None),
    ) as rt:
        result = await rt.wait(handle.run_id, timeout=5)
    assert result.output == "done: synced"
    assert second_clock.slept == [11.0]  # only what was left of the 16 s
    assert attempts[1] - attempts[0] == 16.0


async def test_large_results_are_stored_once_as_blobs_and_the_model_gets_a_preview() -> None:
    big = "line of data\n" * 2000

    @tool(timeout=5)
    async def export() -> str:
        """Export everything."""
        return big

    def respond(request: ModelRequest) -> Any:
        last = request.messages[-1]
        return "ok" if isinstance(last, ToolResultMessage) else call("export")

    journal = MemoryJournal()
    agent = SubAgent("x", instructions="x", tools=[export], model=FunctionModel(respond))
    async with Runtime(
        agents=[agent], journal=journal, durability=Durability(poll_interval_s=None)
    ) as rt:
        result = await rt.run("export")
    (finished,) = [e for e in result.events if e.kind == "tool_call_finished"]
    assert finished.truncated and finished.result_blob is not None
    assert await journal.get_blob(finished.result_blob) == big.encode()
    assert len(finished.content) < 4000
    assert f"blob sha256:{finished.result_blob[:16]}" in finished.content
