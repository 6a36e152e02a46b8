"""Workflows: chains with declared inputs, fan-out under a limit, gates, waits, resume."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral import Durability, Limits, MockClock, Runtime, SubAgent, tool
from corral.errors import ConfigError, UsageError
from corral.events import Event
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, UserMessage, call
from corral.store import MemoryJournal
from corral.workflows import Step, Workflow


def echo_agent(name: str = "writer", limits: Limits | None = None) -> SubAgent:
    """An agent that answers with its task text, uppercased (no tools)."""

    def respond(request: ModelRequest) -> Any:
        task = next(m.content for m in request.messages if isinstance(m, UserMessage))
        return task.upper()

    return SubAgent(
        name, instructions="Echo.", tools=[], model=FunctionModel(respond), limits=limits
    )


def test_a_branch_that_reads_a_sibling_is_refused_at_definition() -> None:
    with pytest.raises(ConfigError) as info:
        Workflow(
            "month_end",
            [
                Step.call("load", lambda i: 1, needs=["input"]),
                Step.fan_out(
                    "checks",
                    [
                        Step.call("fx", lambda i: 2, needs=["load"]),
                        Step.call("ledger", lambda i: 3, needs=["fx"]),
                    ],
                ),
            ],
        )
    message = str(info.value)
    assert "branch 'ledger' needs 'fx', a sibling in the same fan-out" in message
    assert "hidden dependency" in message


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [Step.call("a", lambda i: 1, needs=["b"]), Step.call("b", lambda i: 1)],
            "needs 'b', which is not an earlier step (it comes later)",
        ),
        ([Step.call("a", lambda i: 1), Step.call("a", lambda i: 1)], "two steps are named 'a'"),
        (
            [Step.call("a", lambda i: 1, needs=["nope"])],
            "needs 'nope', which is not an earlier step; known so far: input",
        ),
        ([Step.fan_out("f", [], limit=2)], "has no branches"),
        ([], "has no steps"),
    ],
)
def test_invalid_workflows_are_refused(steps: list[Step], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Workflow("w", steps)


async def test_chain_passes_only_declared_outputs_and_the_final_answer() -> None:
    seen: dict[str, Any] = {}

    def load(inputs: Any) -> dict[str, Any]:
        seen["load"] = dict(inputs)
        return {"customer": inputs["input"], "invoices": 3}

    def report(inputs: Any) -> str:
        seen["report"] = dict(inputs)
        return f"report: {inputs['draft']}"

    wf = Workflow(
        "chain",
        [
            Step.call("load", load, needs=["input"]),
            Step.agent(
                "draft",
                agent="writer",
                task="summarise {load[customer]} with {load[invoices]} invoices",
                needs=["load"],
            ),
            Step.call("report", report, needs=["draft"]),
        ],
    )
    async with Runtime(
        agents=[echo_agent()], workflows=[wf], durability=Durability(poll_interval_s=None)
    ) as rt:
        result = await rt.run_workflow(wf, "Acme")
    assert result.outcome == "completed"
    assert result.output == "report: SUMMARISE ACME WITH 3 INVOICES"
    assert seen["load"] == {"input": "Acme"}
    assert seen["report"] == {"draft": "SUMMARISE ACME WITH 3 INVOICES"}  # not the transcript
    finished = [e.step for e in result.events if e.kind == "step_finished"]
    assert finished == ["load", "draft", "report"]


async def test_fan_out_runs_branches_concurrently_under_its_limit() -> None:
    running = {"now": 0, "max": 0}

    async def work(inputs: Any) -> int:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await anyio.sleep(0.02)
        running["now"] -= 1
        return inputs["input"] * 2

    branches = [Step.call(f"b{i}", work, needs=["input"]) for i in range(6)]
    wf = Workflow(
        "fan",
        [
            Step.fan_out("all", branches, limit=2),
            Step.call("merge", lambda i: sum(i["all"].values()), needs=["all"]),
        ],
    )
    async with Runtime(
        agents=[echo_agent()], workflows=[wf], durability=Durability(poll_interval_s=None)
    ) as rt:
        result = await rt.run_workflow(wf, 5)
    assert result.output == "60"
    assert running["max"] == 2


async def test_gate_step_pauses_the_workflow_until_a_person_decides() -> None:
    published: list[str] = []
    wf = Workflow(
        "signoff",
        [
            Step.call("total", lambda i: 1195.0, needs=["input"]),
            Step.gate("approve", prompt="Sign off the month-end total", needs=["total"]),
            Step.call(
                "publish",
                lambda i: published.append(i["approve"]["approved_by"]) or "published",
                needs=["approve"],
            ),
        ],
    )
    async with Runtime(
        agents=[echo_agent()],
        workflows=[wf],
        clock=MockClock(),
        durability=Durability(poll_interval_s=None),
    ) as rt:
        paused = await rt.run_workflow(wf, "Acme")
        assert paused.status == "waiting"
        (gate,) = paused.gates
        assert gate.opened.reason == "Sign off the month-end total"
        assert gate.opened.arguments == {"total": 1195.0}
        await rt.approve(gate.opened.gate_id, by="cfo")
        done = await rt.wait(paused.run_id, timeout=5)
        rejected = await rt.run_workflow(wf, "Globex")
        await rt.reject(rejected.gates[0].opened.gate_id, by="cfo", reason="numbers look off")
        failed = await rt.wait(rejected.run_id, timeout=5)
    assert done.outcome == "completed" and done.output == "published"
    assert published == ["cfo"]
    assert failed.outcome == "failed"
    assert failed.reason == "step 'approve' failed: rejected by cfo: numbers look off"


async def test_wait_step_takes_the_webhook_payload() -> None:
    wf = Workflow(
        "collect",
        [
            Step.wait("paid", key=lambda i: f"payment:{i['input']}", needs=["input"], timeout_s=60),
            Step.call("receipt", lambda i: f"receipt for {i['paid']['amount']}", needs=["paid"]),
        ],
    )
    async with Runtime(
        agents=[echo_agent()],
        workflows=[wf],
        clock=MockClock(),
        durability=Durability(poll_interval_s=None),
    ) as rt:
        paused = await rt.run_workflow(wf, "INV-000102")
        assert paused.status == "waiting"
        assert await rt.deliver("payment:INV-000102", {"amount": 1235.0}) == paused.run_id
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.output == "receipt for 1235.0"


async def test_agent_step_waiting_at_its_own_gate_pauses_and_resumes_the_workflow() -> None:
    flagged: list[str] = []

    @tool(side_effect="write", timeout=5)
    async def flag(invoice_id: str) -> str:
        """Flag an invoice."""
        flagged.append(invoice_id)
        return "flagged"

    def respond(request: ModelRequest) -> Any:
        if isinstance(request.messages[-1], ToolResultMessage):
            return "flagged INV-000102"
        return call("flag", invoice_id="INV-000102")

    flagger = SubAgent("flagger", instructions="Flag.", tools=[flag], model=FunctionModel(respond))
    wf = Workflow(
        "review",
        [
            Step.agent("flag", agent="flagger", task="flag {input}", needs=["input"]),
            Step.call("done", lambda i: f"done: {i['flag']}", needs=["flag"]),
        ],
    )
    async with Runtime(
        agents=[flagger],
        workflows=[wf],
        clock=MockClock(),
        durability=Durability(poll_interval_s=None),
    ) as rt:
        paused = await rt.run_workflow(wf, "INV-000102")
        assert paused.status == "waiting"
        (gate,) = await rt.pending_approvals()
        assert gate.opened.tool == "flag" and gate.run_id != paused.run_id
        assert flagged == []
        await rt.approve(gate.opened.gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert result.output == "done: flagged INV-000102"
    assert flagged == ["INV-000102"]


class CrashAtStep(MemoryJournal):
    """Fails once when the workflow journals the given step's result, as a crash would."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step
        self.crashed = False

    async def append(self, event: Event, *, wait: bool = True) -> Event:
        if not self.crashed and event.kind == "step_finished" and event.step == self.step:
            self.crashed = True
            raise OSError("killed")
        return await super().append(event, wait=wait)


async def test_a_crashed_workflow_resumes_at_its_first_unfinished_step() -> None:
    calls: dict[str, int] = {"a": 0, "b": 0, "c": 0}

    def make(name: str) -> Any:
        def fn(inputs: Any) -> str:
            calls[name] += 1
            return name

        return fn

    wf = Workflow(
        "resume",
        [
            Step.call("a", make("a")),
            Step.call("b", make("b"), needs=["a"]),
            Step.call("c", make("c"), needs=["b"]),
        ],
    )
    journal = CrashAtStep("b")
    async with Runtime(
        agents=[echo_agent()],
        workflows=[wf],
        journal=journal,
        durability=Durability(poll_interval_s=None),
    ) as rt:
        result = await rt.run_workflow(wf)
    assert result.outcome == "completed"
    assert calls == {"a": 1, "b": 2, "c": 1}  # b's result was lost in the crash: only b re-ran


async def test_workflow_in_progress_is_resumed_by_a_new_runtime() -> None:
    calls = {"before": 0, "after": 0}
    journal = MemoryJournal()

    def before(inputs: Any) -> str:
        calls["before"] += 1
        return "x"

    def after(inputs: Any) -> str:
        calls["after"] += 1
        return "y"

    wf = Workflow(
        "two_phase",
        [
            Step.call("before", before),
            Step.gate("ok", prompt="go on?", needs=["before"]),
            Step.call("after", after),
        ],
    )
    async with Runtime(
        agents=[echo_agent()],
        workflows=[wf],
        journal=journal,
        durability=Durability(poll_interval_s=None),
    ) as first:
        paused = await first.run_workflow(wf)
    async with Runtime(
        agents=[echo_agent()],
        workflows=[wf],
        journal=journal,
        durability=Durability(poll_interval_s=None),
    ) as second:
        await second.approve(paused.gates[0].opened.gate_id, by="ops")
        result = await second.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert calls == {"before": 1, "after": 1}


async def test_sub_agent_steps_share_the_workflow_budget() -> None:
    # One step's reservation (the UTF-8 bound of its 600-character task) fits, not two.
    limits = Limits(max_tokens=800, output_tokens=100, min_output_tokens=20)
    wf = Workflow(
        "budget",
        [
            Step.agent("one", agent="writer", task="x" * 600, needs=[]),
            Step.agent("two", agent="writer", task="y" * 600, needs=[]),
        ],
    )
    async with Runtime(
        agents=[echo_agent(limits=limits)],
        workflows=[wf],
        durability=Durability(poll_interval_s=None),
    ) as rt:
        result = await rt.run_workflow(wf)
    assert result.outcome == "failed"
    assert "step 'two' failed" in result.reason and "stopped_budget" in result.reason


async def test_unregistered_workflows_and_unknown_agents_are_refused() -> None:
    wf = Workflow("w", [Step.call("a", lambda i: 1)])
    with pytest.raises(ConfigError, match="uses agent 'ghost'"):
        Runtime(
            agents=[echo_agent()],
            workflows=[Workflow("g", [Step.agent("s", agent="ghost", task="t")])],
        )
    async with Runtime(agents=[echo_agent()], durability=Durability(poll_interval_s=None)) as rt:
        with pytest.raises(UsageError, match="is not registered"):
            await rt.run_workflow(wf)


async def test_crashing_step_function_fails_the_workflow_with_its_error() -> None:
    def boom(inputs: Any) -> None:
        raise ValueError("ledger locked")

    wf = Workflow("w", [Step.call("a", boom)])
    async with Runtime(
        agents=[echo_agent()], workflows=[wf], durability=Durability(poll_interval_s=None)
    ) as rt:
        result = await rt.run_workflow(wf)
    assert result.outcome == "failed"
    assert result.reason == "step 'a' failed: ValueError: ledger locked"
