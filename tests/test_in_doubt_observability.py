"""Calls in doubt after a crash, as the metrics, the live trail and the trace tree show them.

Each settlement is counted once in ``corral_in_doubt_calls_total`` by how it was settled,
each status probe in ``corral_reconcile_probes_total`` by its answer, and the trail and
the tree say what the probe answered and what the person decided. Most tests build the
events by hand (every settlement and its edge cases, exactly); the last drives a real
runtime over SQLite through a crash and a resume.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.cells import cell_len
from rich.console import Console

from corral import Durability, MockClock, Runtime, SubAgent, ToolContext, tool
from corral.events import (
    CallReconciled,
    Event,
    GateDecided,
    GateOpened,
    ModelCalled,
    ResponseRecord,
    RunStarted,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRecord,
    ToolCallStarted,
)
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call
from corral.observability import Metrics, TrailWriter, render_trace
from corral.store import SqliteJournal
from corral.tools import Done, NotDone, Unknown

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def family(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one counter, by its label values in the order given."""
    found: dict[tuple[str, ...], float] = {}
    for (sample, pairs), value in samples.items():
        if sample == name:
            got = dict(pairs)
            found[tuple(got[label] for label in labels)] = value
    return found


def in_doubt(metrics: Metrics) -> dict[tuple[str, ...], float]:
    return family(scrape(metrics), "corral_in_doubt_calls_total", "tool", "settled")


def probes(metrics: Metrics) -> dict[tuple[str, ...], float]:
    return family(scrape(metrics), "corral_reconcile_probes_total", "tool", "answer")


# -- events as a resumed run journals them ------------------------------------------------


def reconciled(run: str, answer: Any, *, tool: str = "charge", **fields: Any) -> CallReconciled:
    values: dict[str, Any] = {
        "run_id": run,
        "ts": 2.0,
        "step": 1,
        "call_id": "c1",
        "tool": tool,
        "attempt": 1,
        "idempotency_key": f"{run}/1/0",
        "answer": answer,
        "probe_attempts": 0 if answer == "retried" else 1,
    }
    return CallReconciled(**(values | fields))


def opened(run: str, gate: str, probe: str | None, *, ts: float = 2.0) -> GateOpened:
    doubt = (
        {"idempotency_key": f"{run}/1/0", "attempt": 1, "probe": probe, "detail": ""}
        if probe is not None
        else {}
    )
    return GateOpened(
        run_id=run,
        ts=ts,
        step=1,
        call_id="c1",
        gate_id=gate,
        tool="charge",
        side_effect="external",
        reason="may or may not have taken effect",
        doubt=doubt,
    )


def decided(run: str, gate: str, decision: Any, *, ts: float = 32.0, **fields: Any) -> GateDecided:
    values: dict[str, Any] = {"by": "ana"} | fields
    return GateDecided(run_id=run, ts=ts, gate_id=gate, call_id="c1", decision=decision, **values)


def test_each_call_in_doubt_is_counted_once_by_how_it_was_settled() -> None:
    metrics = Metrics()
    for event in [
        reconciled("r1", "done"),
        reconciled("r2", "not_done"),
        reconciled("r3", "retried", tool="ship"),
        # unknown, then a person says it happened (with its result)
        reconciled("r4", "unknown", detail="no record yet", probe_attempts=2),
        opened("r4", "g4", "unknown"),
        decided("r4", "g4", "approved", happened=True, result={"charge_id": "ch_9"}),
        # the probe failed, then a person has it run again
        reconciled("r5", "failed", detail="ConnectionError: down", probe_attempts=3),
        opened("r5", "g5", "failed"),
        decided("r5", "g5", "approved"),
        # no probe: a person skips it; another gate of the kind expires
        opened("r6", "g6", "none"),
        decided("r6", "g6", "rejected", note="refunded by hand"),
        opened("r7", "g7", "none"),
        decided("r7", "g7", "expired", by=""),
        # an ordinary approval gate is no call in doubt
        opened("r8", "g8", None),
        decided("r8", "g8", "approved"),
    ]:
        metrics(event)
    assert in_doubt(metrics) == {
        ("charge", "probe_done"): 1,
        ("charge", "probe_not_done"): 1,
        ("ship", "retried_idempotent"): 1,
        ("charge", "person_happened"): 1,
        ("charge", "person_run"): 1,
        ("charge", "person_skip"): 1,
        ("charge", "expired"): 1,
    }
    # every probe's answer, so "unknown, then a person" shows in both counters
    assert probes(metrics) == {
        ("charge", "done"): 1,
        ("charge", "not_done"): 1,
        ("charge", "unknown"): 1,
        ("charge", "failed"): 1,
    }
    # doubt gates still count as gates: waited 30 s each, by decision
    wait = family(scrape(metrics), "corral_gate_wait_seconds_sum", "tool", "decision")
    assert wait == {
        ("charge", "approved"): 90.0,  # r4, r5 and the ordinary r8
        ("charge", "rejected"): 30.0,
        ("charge", "expired"): 30.0,
    }


def test_a_gate_opened_before_this_process_started_counts_only_when_it_happened() -> None:
    metrics = Metrics()
    # Opened before a restart of this process: only "happened" says it was in doubt.
    metrics(decided("r1", "g1", "approved", happened=True))
    metrics(decided("r2", "g2", "rejected", note="no"))
    metrics(decided("r3", "g3", "approved"))
    assert in_doubt(metrics) == {("(unknown)", "person_happened"): 1}
    assert family(scrape(metrics), "corral_gate_wait_seconds_count", "tool", "decision") == {}


def test_doubt_gates_are_remembered_within_the_bound_on_runs() -> None:
    metrics = Metrics(max_runs=1)
    metrics(opened("r1", "g1", "unknown"))
    metrics(RunStarted(run_id="r2", ts=3.0, agent="payments", task="t"))  # r1 forgotten
    metrics(decided("r1", "g1", "rejected", note="no"))
    metrics(opened("r2", "g2", "unknown"))
    metrics(decided("r2", "g2", "rejected", note="no"))
    assert in_doubt(metrics) == {("charge", "person_skip"): 1}
    assert metrics.runs_remembered() == 1


# -- the live trail ----------------------------------------------------------------------


def trail_lines(events: list[Event], *, follow: list[Event] | None = None) -> list[str]:
    """What `TrailWriter` prints, each line with its runs of spaces made one."""
    console = Console(width=220, record=True, file=io.StringIO(), color_system=None)
    writer = TrailWriter(console)
    if follow is not None:
        writer.follow(follow)
    for event in events:
        writer(event)
    return [" ".join(line.split()) for line in console.export_text().splitlines()]


START = RunStarted(run_id="r1", ts=0.0, agent="payments", task="Charge 5 USD")


def test_the_trail_says_what_the_probe_answered_and_what_the_person_decided() -> None:
    rows = trail_lines(
        [
            START,
            reconciled("r1", "done", probe_attempts=2, duration_s=0.01, ts=0.5),
            reconciled("r1", "not_done", ts=0.5),
            reconciled("r1", "retried", tool="ship", ts=0.5),
            reconciled("r1", "unknown", detail="no record yet", ts=0.5),
            reconciled("r1", "failed", detail="TimeoutError", probe_attempts=3, ts=0.5),
            opened("r1", "g1", "unknown"),
            decided("r1", "g1", "approved", happened=True, result={"charge_id": "ch_9"}),
            opened("r1", "g2", "none"),
            decided("r1", "g2", "approved"),
            opened("r1", "g3", "failed"),
            decided("r1", "g3", "rejected", note="refunded by hand"),
            opened("r1", "g4", None),
            decided("r1", "g4", "approved"),
        ]
    )
    assert rows[2:] == [
        "1 0.50s reconcile charge probe: done (2 attempts, 0.01 s) happened",
        "1 0.50s reconcile charge probe: not done (1 attempt, 0.00 s) runs again",
        "1 0.50s reconcile ship retried: idempotent, same key (attempt 1 was in doubt) runs again",
        "1 0.50s reconcile charge probe: unknown: no record yet (1 attempt, 0.00 s) "
        "a person decides",
        "1 0.50s reconcile charge probe: failed: TimeoutError (3 attempts, 0.00 s) "
        "a person decides",
        "1 2.00s gate charge g1: in doubt, probe: unknown did it happen?",
        '0 32.00s decision g1 approved by ana: it happened, result {"charge_id": "ch_9"} happened',
        "1 2.00s gate charge g2: in doubt, no status probe did it happen?",
        "0 32.00s decision g2 approved by ana runs again",
        "1 2.00s gate charge g3: in doubt, probe: failed did it happen?",
        "0 32.00s decision g3 rejected by ana: refunded by hand skipped",
        "1 2.00s gate charge g4: may or may not have taken effect needs approval",
        "0 32.00s decision g4 approved by ana approved",
    ]


def test_a_trail_followed_after_a_restart_knows_its_open_doubt_gates() -> None:
    before: list[Event] = [START, opened("r1", "g1", "none")]
    rows = trail_lines([decided("r1", "g1", "rejected", note="no")], follow=before)
    assert rows[-1] == "0 32.00s decision g1 rejected by ana: no skipped"


# -- the trace tree -----------------------------------------------------------------------


def draw(events: list[Event], width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    render_trace(events, console)
    return console.export_text().splitlines()


def line_with(lines: list[str], *parts: str) -> str:
    found = [line for line in lines if all(part in line for part in parts)]
    assert found, f"no line with {parts!r} in:\n" + "\n".join(lines)
    return found[0]


def step_one(run: str, *tools: str) -> list[Event]:
    """A first model step calling one tool per name (call ids c1, c2 ...)."""
    ids = [f"c{n}" for n in range(1, len(tools) + 1)]
    records = tuple(
        ToolCallRecord(id=i, name=name, arguments={"amount": 5})
        for i, name in zip(ids, tools, strict=True)
    )
    response = ResponseRecord(tool_calls=records, model="m")
    events: list[Event] = [
        RunStarted(run_id=run, ts=0.0, agent="payments", task="Charge 5 USD"),
        ModelCalled(run_id=run, ts=0.1, step=1, model="m", response=response, duration_s=0.1),
    ]
    for call_id, name in zip(ids, tools, strict=True):
        events.append(
            ToolCallProposed(
                run_id=run,
                ts=0.1,
                step=1,
                call_id=call_id,
                tool=name,
                arguments={"amount": 5},
                offered=list(tools),
            )
        )
        events.append(
            ToolCallStarted(
                run_id=run,
                ts=0.2,
                step=1,
                call_id=call_id,
                tool=name,
                attempt=1,
                idempotency_key=f"{run}/1/{call_id}",
                side_effect="external",
            )
        )
    return events


def test_the_tree_shows_each_settlement_under_its_call() -> None:
    events = step_one("r1", "charge", "ship")
    events += [
        reconciled("r1", "done", probe_attempts=2, duration_s=0.01, idempotency_key="r1/1/c1"),
        ToolCallFinished(
            run_id="r1",
            ts=2.0,
            step=1,
            call_id="c1",
            tool="charge",
            attempt=1,
            content='{"charge_id": "ch_1"}',
            duration_s=0.0,
        ),
        reconciled("r1", "retried", call_id="c2", tool="ship", idempotency_key="r1/1/c2"),
    ]
    lines = draw(events, 160)
    assert line_with(
        lines,
        "reconcile",
        "probe: done",
        "attempt 1 in doubt; it took effect: not run again; key r1/1/c1; 2 probe attempts, 0.01 s",
    )
    assert line_with(
        lines,
        "reconcile",
        "idempotent",
        "attempt 1 in doubt; runs again (safe to run twice); key r1/1/c2",
    )
    order = [
        line_with(lines, "call", "charge"),
        line_with(lines, "probe: done"),
        line_with(lines, "result", "ch_1"),
        line_with(lines, "call", "ship"),
        line_with(lines, "idempotent"),
    ]
    assert [lines.index(line) for line in order] == sorted(lines.index(line) for line in order)


@pytest.mark.parametrize(
    ("probe", "decision", "fields", "row"),
    [
        (
            "unknown",
            "approved",
            {"happened": True, "result": {"charge_id": "ch_9"}},
            (
                "happened",
                "by ana",
                'after 30.00 s; it took effect, not run again; result {"charge_id": "ch_9"}',
            ),
        ),
        (
            "failed",
            "approved",
            {},
            (
                "approved",
                "by ana",
                "after 30.00 s; it did not happen, runs again with the same key",
            ),
        ),
        ("none", "rejected", {"note": "refunded"}, ("rejected", "by ana", "skipped: refunded")),
        ("none", "expired", {"by": ""}, ("expired", "(no one)", "after 30.00 s; skipped")),
    ],
)
def test_the_tree_shows_a_doubt_gate_and_what_the_person_said(
    probe: str, decision: str, fields: dict[str, Any], row: tuple[str, str, str]
) -> None:
    events = step_one("r1", "charge")
    if probe != "none":
        events.append(reconciled("r1", probe, detail="ledger says pending"))
    events += [opened("r1", "g1", probe), decided("r1", "g1", decision, **fields)]
    lines = draw(events, 140)
    said = "no status probe" if probe == "none" else f"probe {probe}"
    assert line_with(lines, "gate", "in doubt", f"g1: {said}; may or may not have taken effect")
    assert line_with(lines, *row)
    assert lines.index(line_with(lines, "in doubt")) > lines.index(line_with(lines, "call"))


def test_long_values_of_a_call_in_doubt_never_break_the_columns() -> None:
    events = step_one("r1", "charge")
    events += [
        reconciled("r1", "unknown", detail="why " * 400, idempotency_key="k" * 500),
        opened("r1", "g1", "unknown"),
        decided("r1", "g1", "approved", happened=True, result={"receipt": "z" * 5_000}),
    ]
    lines = draw(events, 80)
    assert max(cell_len(line) for line in lines) <= 80
    assert line_with(lines, "reconcile", "probe: unknown")
    assert line_with(lines, "happened", "by ana")
    assert len(lines) < 80  # cut before folded
    assert sum("z" * 20 in line for line in lines) < 12


def test_a_secret_in_a_probe_error_is_not_drawn() -> None:
    secret = "sk-ant-api03-" + "x" * 40
    events = step_one("r1", "charge")
    events.append(reconciled("r1", "failed", detail=f"ConnectionError: token {secret}"))
    lines = draw(events, 200)
    assert line_with(lines, "reconcile", "probe failed", "ConnectionError: token")
    assert not any("sk-ant-api03" in line for line in lines)


# -- a real crash and resume over SQLite -------------------------------------------------


def decide(request: ModelRequest) -> Any:
    results = [m for m in request.messages if isinstance(m, ToolResultMessage)]
    if not results:
        return call("charge", amount=5.0)
    return f"Result: {results[-1].content}"


def payments(ledger: list[str], **options: Any) -> SubAgent:
    @tool(side_effect="external", timeout=5, **options)
    async def charge(amount: float, ctx: ToolContext) -> str:
        """Charge the card."""
        ledger.append(ctx.idempotency_key)
        return f"charged {amount:.2f}"

    model = FunctionModel(decide, name="charger")
    return SubAgent("payments", instructions="You charge cards.", tools=[charge], model=model)


async def crashed_mid_call(db: Path, clock: MockClock) -> tuple[str, str, list[Event]]:
    """A run left as a process killed during its charge leaves it.

    A real runtime runs until the charge waits at its approval gate; then, by hand, what
    a process that got the approval and started the charge journals before it dies:
    the decision and the attempt's ``tool_call_started``, with no outcome.

    Returns the run id, the attempt's idempotency key and the events journaled.
    """
    async with SqliteJournal(db) as journal:
        async with Runtime(agents=[payments([])], journal=journal, clock=clock) as runtime:
            paused = await runtime.run("Charge 5 USD")
        gate = paused.gates[0].opened
        run_id, key = paused.run_id, f"{paused.run_id}/{gate.step}/0"
        approval = GateDecided(
            run_id=run_id, ts=gate.ts + 1, gate_id=gate.gate_id, call_id=gate.call_id,
            decision="approved", by="ana",
        )  # fmt: skip
        assert await journal.decide_gate(approval)
        started = ToolCallStarted(
            run_id=run_id, ts=gate.ts + 2, step=gate.step, call_id=gate.call_id,
            tool="charge", attempt=1, idempotency_key=key, side_effect="external",
        )  # fmt: skip
        await journal.append(started)
        return run_id, key, await journal.read(run_id)


def status_done(key: str, arguments: Any) -> Done:
    return Done({"charge_id": "ch_1"})


def status_unknown(key: str, arguments: Any) -> Unknown:
    return Unknown("the provider has no record yet")


Case = tuple[dict[str, Any], str | None, str, set[str], list[str], list[tuple[str, ...]]]
"""Tool options, what the person does, ``settled``, the probe's answers, trail rows (each a
regular expression matching a whole row), tree rows (the parts of one line)."""

CASES: dict[str, Case] = {
    "probe done": (
        {"reconcile": status_done},
        None,
        "probe_done",
        {"done"},
        [r"^1 0\.00s reconcile charge probe: done \(1 attempt, \d+\.\d\d s\) happened$"],
        [("reconcile", "probe: done", "it took effect: not run again"), ("result", "ch_1")],
    ),
    "probe not done": (
        {"reconcile": lambda key, arguments: NotDone()},
        None,
        "probe_not_done",
        {"not_done"},
        [r"^1 0\.00s reconcile charge probe: not done \(1 attempt, \d+\.\d\d s\) runs again$"],
        [("reconcile", "probe: not done", "runs again"), ("result", "charged 5.00")],
    ),
    "unknown, a person says it happened": (
        {"reconcile": status_unknown},
        "happened",
        "person_happened",
        {"unknown"},
        [
            r"^1 0\.00s reconcile charge probe: unknown: the provider has no record yet "
            r"\(1 attempt, \d+\.\d\d s\) a person decides$",
            r"^1 0\.00s gate charge gate_\w+: in doubt, probe: unknown: the provider has no "
            r"record yet did it happen\?$",
            r"^1 0\.00s decision gate_\w+ approved by ana: it happened, result "
            r'\{"charge_id": "ch_9"\} happened$',
        ],
        [
            ("reconcile", "probe: unknown", "the provider has no record yet; a person decides"),
            ("gate", "in doubt", "probe unknown: the provider has no record yet"),
            ("happened", "by ana", 'it took effect, not run again; result {"charge_id": "ch_9"}'),
        ],
    ),
    "no probe, a person skips it": (
        {},
        "reject",
        "person_skip",
        set(),
        [
            r"^1 0\.00s gate charge gate_\w+: in doubt, no status probe did it happen\?$",
            r"^1 0\.00s decision gate_\w+ rejected by ana: refunded skipped$",
        ],
        [("gate", "in doubt", "no status probe"), ("rejected", "by ana", "skipped: refunded")],
    ),
    "idempotent": (
        {"idempotent": True},
        None,
        "retried_idempotent",
        set(),
        [
            r"^1 0\.00s reconcile charge retried: idempotent, same key \(attempt 1 was in "
            r"doubt\) runs again$"
        ],
        [("reconcile", "idempotent", "runs again"), ("result", "charged 5.00")],
    ),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_real_resume_counts_and_draws_how_the_call_in_doubt_was_settled(
    tmp_path: Path, case: str
) -> None:
    options, person, settled, answers, trail_rows, tree_rows = CASES[case]
    db = tmp_path / "c.db"
    clock = MockClock()
    run_id, key, before = await crashed_mid_call(db, clock)
    ledger: list[str] = []
    metrics = Metrics()
    console = Console(width=220, record=True, file=io.StringIO(), color_system=None)
    writer = TrailWriter(console)
    writer.follow(before)
    async with SqliteJournal(db) as journal:
        runtime = Runtime(
            agents=[payments(ledger, **options)],
            journal=journal,
            clock=clock,
            durability=Durability(poll_interval_s=None),
        )
        runtime.subscribe(metrics)
        runtime.subscribe(writer)
        async with runtime:
            result = await runtime.wait(run_id, timeout=10)
            if person is not None:
                (gate,) = result.gates
                if person == "happened":
                    await runtime.approve(
                        gate.opened.gate_id, by="ana", happened=True, result={"charge_id": "ch_9"}
                    )
                else:
                    await runtime.reject(gate.opened.gate_id, by="ana", reason="refunded")
                result = await runtime.wait(run_id, timeout=10)
            events = list(result.events)
    assert result.outcome == "completed"
    runs_again = settled in {"probe_not_done", "retried_idempotent"}
    assert ledger == ([key] if runs_again else [])  # run again only when that is safe

    assert in_doubt(metrics) == {("charge", settled): 1}
    assert probes(metrics) == {("charge", answer): 1 for answer in answers}

    # the run's clock is a MockClock; a probe's duration is measured (perf_counter)
    rows = [" ".join(line.split()) for line in console.export_text().splitlines()]
    for pattern in trail_rows:
        assert any(re.match(pattern, row) for row in rows), f"{pattern} in:\n" + "\n".join(rows)

    assert max(cell_len(line) for line in draw(events, 100)) <= 100
    lines = draw(events, 400)  # wide: each row on one line
    for parts in tree_rows:
        assert line_with(lines, *parts)
