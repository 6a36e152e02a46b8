"""The checks before a tool call are one ordered chain; the loop acts on its verdict.

A policy or a check of yours that answers ``approve`` opens a gate and the tool waits; a
``flag`` is journaled and the tool runs; a ``block`` is a rejection. Every verdict that is
not a plain allow is in the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from corral import Alerts, Durability, Guards, MockClock, Runtime, SubAgent, tool
from corral.errors import ConfigError
from corral.events import Event
from corral.guardrails import (
    ALLOW,
    ApprovalPolicy,
    CallCheck,
    CallContext,
    CheckChain,
    ProposedCall,
    ScopePolicy,
    Verdict,
    policy_from_callable,
)
from corral.models import FunctionModel, ModelRequest, ToolCall, ToolResultMessage, call
from corral.store import MemoryJournal

from ._support import of_kind


@dataclass
class World:
    ran: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def tools(self) -> list[Any]:
        world = self

        @tool(timeout=5)
        async def lookup(invoice_id: str) -> str:
            """Look up an invoice."""
            world.ran.append(("lookup", {"invoice_id": invoice_id}))
            return f"{invoice_id}: unpaid, 1200.00"

        @tool(timeout=5, side_effect="write")
        async def refund(invoice_id: str, amount: float) -> str:
            """Refund an invoice."""
            world.ran.append(("refund", {"invoice_id": invoice_id, "amount": amount}))
            return f"refunded {amount:.2f} on {invoice_id}"

        return [lookup, refund]


def scripted(first: ToolCall | list[ToolCall]) -> FunctionModel:
    """Propose `first`, then answer with what came back."""

    def respond(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if isinstance(last, ToolResultMessage):
            return f"answer after: {last.content}"
        return first

    return FunctionModel(respond)


def billing(world: World, model: FunctionModel, **options: Any) -> SubAgent:
    return SubAgent(
        "billing", instructions="Handle invoices.", tools=world.tools(), model=model, **options
    )


def runtime(
    agent: SubAgent,
    *,
    gated: tuple[str, ...] = (),  # the approval policy lets every call run
    policies: Sequence[ScopePolicy] = (),
    checks: Sequence[Any] = (),
    approval: ApprovalPolicy | None = None,
    **options: Any,
) -> Runtime:
    guards = Guards(gated=gated, policies=policies, checks=checks, approval=approval)  # type: ignore[arg-type]
    return Runtime(
        agents=[agent],
        clock=MockClock(),
        guards=guards,
        durability=Durability(poll_interval_s=None),
        **options,
    )


def big_refunds(limit: float = 1000) -> ScopePolicy:
    def judge(c: ProposedCall) -> Verdict | bool:
        if c.tool == "refund" and c.arguments["amount"] > limit:
            return Verdict("big_refunds", "approve", reason=f"refunds over {limit:g} need a person")
        return True

    return policy_from_callable(judge, name="big_refunds")


def kinds(events: tuple[Event, ...]) -> list[str]:
    return [e.kind for e in events]


class Fixed:
    """A check of yours that gives one verdict on calls to one tool."""

    def __init__(self, name: str, decision: Any, *, tool: str = "refund", **extra: Any) -> None:
        self.name = name
        self.verdict = Verdict(name, decision, **extra)
        self.tool = tool
        self.seen: list[str] = []

    def check(self, ctx: CallContext) -> Verdict:
        self.seen.append(ctx.call.id)
        return self.verdict if ctx.call.name == self.tool else ALLOW


# -- needs approval opens a gate --------------------------------------------------------------


@pytest.mark.parametrize("where", ["agent", "runtime"])
async def test_a_scope_policy_that_needs_approval_opens_a_gate_and_the_tool_waits(
    where: str,
) -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=1200.0))
    policy = big_refunds()
    agent = billing(world, model, policies=[policy] if where == "agent" else [])
    async with runtime(agent, policies=[policy] if where == "runtime" else []) as rt:
        paused = await rt.run("refund INV-1")
        assert paused.status == "waiting"
        assert world.ran == []  # the approval policy alone would have let it run
        (gate,) = paused.gates
        assert gate.opened.reason == "refunds over 1000 need a person"
        (asked,) = of_kind(paused.events, "guardrail_verdict")
        assert (asked.guardrail, asked.decision, asked.reason, asked.call_id) == (
            "big_refunds",
            "approve",
            "refunds over 1000 need a person",
            gate.opened.call_id,
        )
        order = kinds(paused.events)
        assert order.index("guardrail_verdict") == order.index("gate_opened") - 1

        await rt.approve(gate.opened.gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert result.outcome == "completed"
    assert world.ran == [("refund", {"invoice_id": "INV-1", "amount": 1200.0})]
    # The person's decision overrides the policy's "approve": no second gate, no second verdict.
    assert kinds(result.events).count("gate_opened") == 1
    assert len(of_kind(result.events, "guardrail_verdict")) == 1


async def test_a_call_the_policy_does_not_question_runs_without_a_gate() -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=40.0))
    async with runtime(billing(world, model), policies=[big_refunds()]) as rt:
        result = await rt.run("refund INV-1")
    assert result.outcome == "completed" and result.gates == ()
    assert world.ran == [("refund", {"invoice_id": "INV-1", "amount": 40.0})]
    assert of_kind(result.events, "guardrail_verdict") == []


async def test_approvals_from_several_checks_open_one_gate_with_every_reason() -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=1200.0))
    # the default approval policy gates write tools too
    async with runtime(billing(world, model), policies=[big_refunds()], gated=("write",)) as rt:
        paused = await rt.run("refund INV-1")
    (gate,) = paused.gates
    assert gate.opened.reason == (
        "refunds over 1000 need a person; refund (write): gate by default for write tools"
    )
    asked = of_kind(paused.events, "guardrail_verdict")
    assert [(v.guardrail, v.decision) for v in asked] == [
        ("big_refunds", "approve"),
        ("approval", "approve"),
    ]
    assert world.ran == []


# -- flag is journaled, the call runs ---------------------------------------------------------


async def test_a_flag_is_journaled_and_the_tool_runs() -> None:
    world = World()
    model = scripted(call("lookup", invoice_id="INV-9"))
    watch = policy_from_callable(
        lambda c: Verdict("watchlist", "flag", reason=f"{c.arguments['invoice_id']} is watched"),
        name="watchlist",
    )
    async with runtime(billing(world, model), policies=[watch]) as rt:
        result = await rt.run("look up INV-9")
    assert result.outcome == "completed"
    assert world.ran == [("lookup", {"invoice_id": "INV-9"})]
    (flag,) = of_kind(result.events, "guardrail_verdict")
    (proposed,) = of_kind(result.events, "tool_call_proposed")
    assert (flag.guardrail, flag.decision, flag.reason) == ("watchlist", "flag", "INV-9 is watched")
    assert (flag.call_id, flag.step) == (proposed.call_id, proposed.step)
    order = kinds(result.events)
    assert order.index("tool_call_proposed") < order.index("guardrail_verdict")
    assert order.index("guardrail_verdict") < order.index("tool_call_started")


# -- your own checks --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["agent", "runtime"])
async def test_your_check_can_block_a_call_and_it_is_alerted(where: str) -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=10.0))
    check = Fixed("frozen_accounts", "block", reason="INV-1 belongs to a frozen account")
    agent = billing(world, model, checks=[check] if where == "agent" else [])
    alerts: list[tuple[Verdict, ProposedCall]] = []
    async with runtime(
        agent,
        checks=[check] if where == "runtime" else [],
        alerts=Alerts(callback=lambda v, c: alerts.append((v, c))),
    ) as rt:
        result = await rt.run("refund INV-1")
    assert world.ran == []
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert (rejected.guardrail, rejected.reason) == (
        "frozen_accounts",
        "INV-1 belongs to a frozen account",
    )
    # The check gave no message for the model: it is told which check refused and why.
    assert rejected.message == (
        "The call to 'refund' was refused by the 'frozen_accounts' check: INV-1 belongs to a "
        "frozen account. Do not retry it; continue without it or explain what is needed."
    )
    assert model.requests[-1].messages[-1].content == rejected.message
    assert [(v.guardrail, c.tool, c.run_id) for v, c in alerts] == [
        ("frozen_accounts", "refund", result.run_id)
    ]


@pytest.mark.parametrize("where", ["agent", "runtime"])
async def test_your_check_can_flag_a_call(where: str) -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=10.0))
    check = Fixed("new_customer", "flag", reason="first refund for this customer")
    agent = billing(world, model, checks=[check] if where == "agent" else [])
    async with runtime(agent, checks=[check] if where == "runtime" else []) as rt:
        result = await rt.run("refund INV-1")
    assert world.ran == [("refund", {"invoice_id": "INV-1", "amount": 10.0})]
    (flag,) = of_kind(result.events, "guardrail_verdict")
    assert (flag.guardrail, flag.decision, flag.reason) == (
        "new_customer",
        "flag",
        "first refund for this customer",
    )


@pytest.mark.parametrize("where", ["agent", "runtime"])
async def test_your_check_can_send_a_call_to_a_person(where: str) -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=10.0))
    check = Fixed("weekend", "approve", reason="refunds on weekends need a person")
    agent = billing(world, model, checks=[check] if where == "agent" else [])
    async with runtime(agent, checks=[check] if where == "runtime" else []) as rt:
        paused = await rt.run("refund INV-1")
        assert world.ran == []
        (gate,) = paused.gates
        assert gate.opened.reason == "refunds on weekends need a person"
        await rt.reject(gate.opened.gate_id, by="ana", reason="not today")
        result = await rt.wait(paused.run_id, timeout=5)
    assert world.ran == []
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == "person" and rejected.reason == "rejected by ana: not today"
    assert check.seen == [gate.opened.call_id, gate.opened.call_id]  # re-run on resume


async def test_a_check_that_raises_or_breaks_its_contract_blocks_the_call() -> None:
    class Broken:
        name = "broken"

        def check(self, ctx: CallContext) -> Verdict:
            raise RuntimeError("lookup failed: password=hunter2-very-secret")

    class Sloppy:
        name = "sloppy"

        def check(self, ctx: CallContext) -> Any:
            return True

    for check, reason in [
        (
            Broken(),
            "check 'broken' failed: RuntimeError: lookup failed: password=[REDACTED:SECRET]",
        ),
        (Sloppy(), "check 'sloppy' failed: returned True, not a Verdict"),
    ]:
        world = World()
        model = scripted(call("lookup", invoice_id="INV-1"))
        async with runtime(billing(world, model), checks=[check]) as rt:
            result = await rt.run("look up INV-1")
        assert world.ran == []
        (rejected,) = of_kind(result.events, "tool_call_rejected")
        assert (rejected.guardrail, rejected.reason) == (check.name, reason)
        assert "could not be checked and was not run" in rejected.message
        assert "hunter2" not in repr(result.events)


def test_an_object_without_a_check_method_is_refused_when_configured() -> None:
    world = World()
    model = scripted(call("lookup", invoice_id="INV-1"))
    with pytest.raises(ConfigError, match="needs a method check"):
        billing(world, model, checks=[object()])
    with pytest.raises(ConfigError, match="needs a method check"):
        runtime(billing(world, model), checks=[42])


# -- the order ------------------------------------------------------------------------------


def test_the_default_chain_is_in_the_documented_order() -> None:
    mine = Fixed("mine", "flag")
    chain = CheckChain.default(
        policies=[big_refunds(), policy_from_callable(lambda c: True, name="tenant")],
        checks=[mine],
        approval=ApprovalPolicy(),
    )
    assert chain.names == (
        "registered",
        "arguments",
        "schema",
        "permission",
        "big_refunds",
        "tenant",
        "mine",
        "approval",
    )
    assert isinstance(mine, CallCheck)


async def test_verdicts_follow_the_chain_order_agent_before_runtime() -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=10.0))

    def flagging(name: str) -> ScopePolicy:
        return policy_from_callable(lambda c: Verdict(name, "flag", reason=name), name=name)

    agent = billing(
        world, model, policies=[flagging("agent_policy")], checks=[Fixed("agent_check", "flag")]
    )
    async with runtime(
        agent,
        policies=[flagging("runtime_policy")],
        checks=[Fixed("runtime_check", "flag")],
    ) as rt:
        result = await rt.run("refund INV-1")
    assert [v.guardrail for v in of_kind(result.events, "guardrail_verdict")] == [
        "agent_policy",
        "runtime_policy",
        "agent_check",
        "runtime_check",
    ]
    assert world.ran == [("refund", {"invoice_id": "INV-1", "amount": 10.0})]


@pytest.mark.parametrize(
    ("proposed", "guardrail"),
    [
        (call("refnud", invoice_id="INV-1", amount=10.0), "registered"),
        (ToolCall(id="c1", name="refund", parse_error="Expecting value"), "arguments"),
        (call("refund", invoice_id="INV-1", amount="ten"), "schema"),
        (call("refund", invoice_id="INV-1", amount=10.0), "permission"),
        (call("refund", invoice_id="INV-1", amount=10.0), "sql_policy"),
    ],
)
async def test_an_earlier_block_wins_and_later_checks_never_see_the_call(
    proposed: ToolCall, guardrail: str
) -> None:
    world = World()
    model = scripted(proposed)
    later = Fixed("later", "block", reason="later check")
    options: dict[str, Any] = {}
    if guardrail == "permission":
        options["allowed_side_effects"] = {"read"}
    policies = []
    if guardrail == "sql_policy":
        policies = [policy_from_callable(lambda c: "no refunds today", name="sql_policy")]
    agent = billing(world, model, checks=[later], policies=policies, **options)
    async with runtime(agent, approval=ApprovalPolicy(defaults={"write": "block"})) as rt:
        result = await rt.run("refund INV-1")
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == guardrail
    assert later.seen == [] and world.ran == []


async def test_your_block_comes_before_the_approval_gate() -> None:
    world = World()
    model = scripted(call("refund", invoice_id="INV-1", amount=10.0))
    agent = billing(world, model, checks=[Fixed("mine", "block", reason="no")])
    async with runtime(agent, gated=("write",)) as rt:
        result = await rt.run("refund INV-1")
    assert result.gates == () and result.outcome == "completed"
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert rejected.guardrail == "mine"


# -- everything that is not a plain allow is in the journal ------------------------------------


async def test_every_verdict_that_is_not_a_plain_allow_is_journaled() -> None:
    returned: list[tuple[str, Verdict]] = []

    class Recording:
        """Wraps a judgement and records each verdict it gives that is not an allow."""

        def __init__(self, name: str, judge: Callable[[ToolCall], Verdict]) -> None:
            self.name = name
            self.judge = judge

        def check(self, ctx: CallContext) -> Verdict:
            verdict = self.judge(ctx.call)
            if verdict.decision != "allow":
                returned.append((ctx.call.id, verdict))
            return verdict

    def amounts(c: ToolCall) -> Verdict:
        amount = c.arguments.get("amount", 0)
        if amount > 5000:
            return Verdict("amounts", "block", reason="over the refund limit", message="No.")
        if amount > 1000:
            return Verdict("amounts", "approve", reason="a large refund")
        return ALLOW

    def invoices(c: ToolCall) -> Verdict:
        if c.arguments.get("invoice_id") == "INV-9":
            return Verdict("invoices", "flag", reason="INV-9 is disputed")
        return ALLOW

    world = World()
    calls = [
        call("lookup", invoice_id="INV-9"),  # flagged, runs
        call("refund", invoice_id="INV-9", amount=2000.0),  # flagged, then gated
        call("refund", invoice_id="INV-2", amount=9000.0),  # blocked
        call("refund", invoice_id="INV-3", amount=20.0),  # runs, nothing to say
        call("void_invoice", invoice_id="INV-4"),  # blocked: not a tool
    ]
    checks = [Recording("invoices", invoices), Recording("amounts", amounts)]
    async with runtime(billing(world, scripted(calls)), checks=checks) as rt:
        paused = await rt.run("sort out the refunds")
    events = paused.events
    journaled = {
        (v.call_id, v.guardrail, v.decision, v.reason) for v in of_kind(events, "guardrail_verdict")
    }
    rejected = {
        (r.call_id, r.guardrail, "block", r.reason) for r in of_kind(events, "tool_call_rejected")
    }
    expected = {(cid, v.guardrail, v.decision, v.reason) for cid, v in returned}
    assert len(returned) == 4
    assert expected <= journaled | rejected
    # ...and the built-in checks' verdicts too: the unknown tool's rejection.
    assert (calls[4].id, "registered", "block", "unknown tool 'void_invoice'") in rejected
    # Nothing else was journaled as a verdict (the allows are not), but the provenance
    # check's: the gated refund's invoice id came from the lookup's result.
    provenance = {e for e in journaled if e[1] == "provenance"}
    assert [(e[0], e[2]) for e in provenance] == [(calls[1].id, "approve")]
    assert journaled - provenance == {e for e in expected if e[2] != "block"}
    assert [g.opened.call_id for g in paused.gates] == [calls[1].id]
    assert world.ran == [
        ("lookup", {"invoice_id": "INV-9"}),
        ("refund", {"invoice_id": "INV-3", "amount": 20.0}),
    ]


# -- resumed runs re-run the pure checks --------------------------------------------------------


async def test_a_resumed_run_rechecks_the_call_against_todays_policies() -> None:
    world = World()
    journal = MemoryJournal()
    model = scripted(call("refund", invoice_id="INV-1", amount=1200.0))
    async with runtime(billing(world, model), journal=journal, policies=[big_refunds()]) as rt:
        paused = await rt.run("refund INV-1")
    gate_id = paused.gates[0].opened.gate_id
    # Restarted with a policy that now forbids such refunds: approving cannot bypass it.
    stricter = policy_from_callable(lambda c: "refunds are suspended", name="suspended")
    async with runtime(billing(world, model), journal=journal, policies=[stricter]) as rt:
        await rt.approve(gate_id, by="ana")
        result = await rt.wait(paused.run_id, timeout=5)
    assert world.ran == []
    (rejected,) = of_kind(result.events, "tool_call_rejected")
    assert (rejected.guardrail, rejected.reason) == ("suspended", "refunds are suspended")


# -- the chain on its own -----------------------------------------------------------------------


def context(tool_call: ToolCall, *, settled: bool = False) -> CallContext:
    (refund,) = [t for t in World().tools() if t.name == "refund"]
    return CallContext(
        call=tool_call,
        tool=refund,
        proposed=ProposedCall.of(refund, tool_call.arguments, agent="billing"),
        offered={"refund": refund},
        approval_settled=settled,
    )


def test_the_chain_combines_block_approve_and_flag() -> None:
    ctx = context(call("refund", invoice_id="INV-1", amount=10.0))
    flag, gate, block = (
        Fixed("f", "flag", reason="noted"),
        Fixed("g", "approve", reason="ask"),
        Fixed("b", "block", reason="no"),
    )
    after = Fixed("after", "flag")

    flagged = CheckChain([flag]).run(ctx)
    assert flagged.verdict.decision == "allow" and [v.guardrail for v in flagged.notes] == ["f"]

    gated = CheckChain([flag, gate]).run(ctx)
    assert gated.verdict.guardrail == "g" and gated.verdict.decision == "approve"
    assert [v.guardrail for v in gated.verdicts] == ["f", "g"]

    blocked = CheckChain([gate, flag, block, after]).run(ctx)
    assert blocked.verdict.guardrail == "b" and blocked.alert
    assert [v.guardrail for v in blocked.verdicts] == ["g", "f", "b"]
    assert after.seen == []  # the chain stops at the first block

    assert CheckChain([CheckChain.default().checks[0]]).run(ctx).verdicts == ()


def test_a_settled_call_is_not_sent_to_approval_again() -> None:
    chain = CheckChain.default(approval=ApprovalPolicy())  # write tools wait for a person
    tool_call = call("refund", invoice_id="INV-1", amount=10.0)
    assert chain.run(context(tool_call)).verdict.decision == "approve"
    assert chain.run(context(tool_call, settled=True)).verdict.decision == "allow"
