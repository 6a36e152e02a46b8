"""`corral.replay` as a library: recorded runs replayed against changed code and settings.

The cassettes in ``tests/fixtures/cassettes/`` are real runs of the application in
``app.py`` there (recorded by ``record.py``); other recordings are made here, by a real
`Runtime` on a SQLite journal in ``tmp_path``. Each test replays one against the
application as recorded (no divergence) or after one change (a new argument policy, a
stricter approval policy, a new routing rule, lower limits), and checks what the report
says: which call, which check and why, which limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral import (
    App,
    Durability,
    Guards,
    Limits,
    MockClock,
    RetryPolicy,
    Runtime,
    SubAgent,
    load_settings,
    tool,
)
from corral.errors import ToolError, UsageError
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolResultMessage, call
from corral.replay import (
    Cassette,
    ReplayReport,
    assert_replays,
    assert_replays_async,
    replay,
    replay_window,
)
from corral.store import SqliteJournal
from corral.tools import WaitFor

from .fixtures.cassettes import app as recorded_app

CASSETTES = Path(__file__).parent / "fixtures" / "cassettes"
SMALL = CASSETTES / "refund_small.json"
"""Refund of 40 run without a person."""
APPROVED = CASSETTES / "refund_approved.json"
"""Refund of 500 approved at its gate by ana@example.com."""
SETTINGS = load_settings(env={})
SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCD"


def settings_with(**limits: Any) -> Any:
    """The default settings with these limits."""
    return load_settings(env={}, limits=Limits(**limits))


def only(report: ReplayReport, kind: str) -> Any:
    """The one divergence of `kind` in the report."""
    found = [d for d in report.divergences if d.kind == kind]
    assert len(found) == 1, report.explain()
    return found[0]


async def record(tmp_path: Path, application: App, *tasks: str, approve: bool = True) -> Path:
    """Run `tasks` through a real Runtime on a SQLite file (approving every gate)."""
    db = tmp_path / "prod.db"
    async with SqliteJournal(db) as journal:
        async with Runtime(**application.runtime_options(), journal=journal) as rt:
            for text in tasks:
                result = await rt.run(text)
                if approve and result.gates:
                    for gate in result.gates:
                        await rt.approve(gate.opened.gate_id, by="ana@example.com", note="ok")
                    await rt.wait(result.run_id)
    return db


async def cassette_of(db: Path, task: str) -> Cassette:
    async with SqliteJournal(db) as journal:
        info = next(i for i in await journal.runs(limit=None) if i.task == task)
        return await Cassette.from_journal(journal, info.run_id)


# -- unchanged code: no divergence -----------------------------------------------------------


def test_the_shipped_cassettes_replay_as_recorded_on_unchanged_code() -> None:
    # A plain (sync) test, as a user writes one: the recorded gate decision is replayed.
    for path in (SMALL, APPROVED):
        report = assert_replays(path, app="tests.fixtures.cassettes.app:app", settings=SETTINGS)
        assert report.replayed == report.recorded
        assert report.replayed["outcome"] == "completed"
    approved = assert_replays(APPROVED, app=recorded_app.app(), settings=SETTINGS)
    decided = [e for e in approved.events if e.kind == "gate_decided"]
    assert [(d.decision, d.by, d.note) for d in decided] == [
        ("approved", "ana@example.com", "checked the invoice")
    ]


async def test_a_run_recorded_on_sqlite_replays_without_divergence_and_touches_nothing(
    tmp_path: Path,
) -> None:
    db = await record(tmp_path, recorded_app.app(), "Refund invoice INV-1")
    before = db.read_bytes()
    tape = await cassette_of(db, "Refund invoice INV-1")
    report = await assert_replays_async(tape, app=recorded_app.app(), settings=SETTINGS)
    assert report.diverged is False and report.divergences == ()
    assert report.recorded["steps"] == report.replayed["steps"] == 2
    # The replay wrote nothing to the production journal.
    assert db.read_bytes() == before
    async with SqliteJournal(db) as journal:
        assert len(await journal.runs(limit=None)) == 1


async def test_a_replay_never_runs_a_tool_body_or_asks_the_real_model() -> None:
    called = len(recorded_app.CALLED)
    application = recorded_app.app()
    for path in (SMALL, APPROVED):  # APPROVED's refund runs after its gate, on resume
        for variant in (application, recorded_app.gated_app(), recorded_app.strict_app()):
            await replay(path, app=variant, settings=SETTINGS)
    assert recorded_app.CALLED[called:] == []


# -- stricter code: divergences ----------------------------------------------------------------


async def test_a_new_argument_policy_blocks_a_call_the_recording_ran() -> None:
    report = await replay(SMALL, app=recorded_app.strict_app(), settings=SETTINGS)
    assert report.kinds == ["blocked", "steps"]
    blocked = only(report, "blocked")
    assert (blocked.step, blocked.tool, blocked.recorded) == (2, "refund", "ran")
    assert blocked.replayed.startswith("refused by the range check")
    assert "is outside the allowed range" in blocked.reason
    assert 'refund({"account":"ACC-1","amount":40.0})' in blocked.reason
    steps = only(report, "steps")
    assert steps.recorded == {"steps": 2, "model_calls": 3}
    assert steps.replayed == {"steps": 1, "model_calls": 3}
    # Refused before anything ran: the replayed run has no started attempt of refund.
    started = [e.tool for e in report.events if e.kind == "tool_call_started"]
    assert started == ["get_invoice"]


async def test_a_read_only_agent_refuses_what_a_person_had_approved() -> None:
    report = await replay(APPROVED, app=recorded_app.read_only_app(), settings=SETTINGS)
    blocked = only(report, "blocked")
    assert blocked.recorded == "ran after a gate (approved)"
    assert "permission check" in blocked.reason and "may only call read tools" in blocked.reason
    # The refused call never reached its gate.
    assert not [e for e in report.events if e.kind == "gate_opened"]


async def test_a_stricter_approval_policy_opens_a_gate_that_stays_unanswered() -> None:
    report = await replay(SMALL, app=recorded_app.gated_app(), settings=SETTINGS)
    assert report.kinds == ["gate_opened"]
    gate = only(report, "gate_opened")
    assert (gate.step, gate.tool, gate.recorded) == (2, "refund", "ran")
    assert "unanswered" in gate.reason
    assert report.stopped.startswith("a gate opened for 'refund' at step 2")
    assert report.replayed["status"] == "waiting"
    # Where the recording had a gate, its decision is replayed: no divergence.
    assert (await replay(APPROVED, app=recorded_app.gated_app(), settings=SETTINGS)).kinds == []


async def test_a_gate_that_no_longer_opens_is_reported() -> None:
    lenient = App(
        agents=recorded_app.app().agents,
        router=recorded_app.app().router,
        guards=Guards(gated=()),
    )
    report = await replay(APPROVED, app=lenient, settings=SETTINGS)
    assert report.kinds == ["gate_not_opened"]
    assert only(report, "gate_not_opened").replayed == "ran"


async def test_a_new_routing_rule_is_a_changed_route() -> None:
    report = await replay(SMALL, app=recorded_app.rerouted_app(), settings=SETTINGS)
    assert report.kinds == ["route"]
    route = only(report, "route")
    assert route.recorded == {"agent": "billing", "rule": "billing-words"}
    assert route.replayed == {"agent": "support", "rule": "refunds-to-support"}
    assert "replayed with the recorded agent" in route.reason


async def test_a_lower_tool_call_cap_stops_the_run_where_the_recording_went_on() -> None:
    report = await replay(SMALL, app=recorded_app.app(), settings=settings_with(max_tool_calls=1))
    limit = only(report, "step_limit")
    assert (limit.recorded, limit.replayed) == ("completed", "stopped_steps")
    assert "stopped_steps" in limit.reason
    assert report.replayed["steps"] == 1


async def test_a_lower_token_budget_stops_the_run() -> None:
    report = await replay(SMALL, app=recorded_app.app(), settings=settings_with(max_tokens=250))
    budget = only(report, "budget")
    assert budget.replayed == "stopped_budget"
    assert report.replayed["tokens"] <= 250 < report.recorded["tokens"]


async def test_a_call_the_recording_refused_is_not_run_when_it_now_passes(tmp_path: Path) -> None:
    # Recorded under the strict policy: the refund was refused, the model said so.
    db = await record(tmp_path, recorded_app.strict_app(), "Refund invoice INV-1")
    tape = await cassette_of(db, "Refund invoice INV-1")
    report = await replay(tape, app=recorded_app.app(), settings=SETTINGS)
    assert report.kinds == ["unblocked", "unrecorded_call", "steps"]
    unrecorded = only(report, "unrecorded_call")
    assert unrecorded.reason == (
        'the replay called refund({"account":"ACC-1","amount":40.0}), never called in the '
        "recording (not executed)"
    )
    failed = [e for e in report.events if e.kind == "tool_call_failed"]
    assert [(e.tool, e.final) for e in failed] == [("refund", True)]  # told, not run


async def test_a_run_that_goes_past_the_recording_stops_at_the_step_it_has_no_answer_for(
    tmp_path: Path,
) -> None:
    # Recorded under a cap of one tool call: stopped before the refund ran.
    capped = App(
        agents=[recorded_app.billing(), recorded_app.support()],
        router=recorded_app.app().router,
        guards=Guards(approval=recorded_app.SMALL_REFUNDS),
    )
    db = tmp_path / "prod.db"
    async with SqliteJournal(db) as journal:
        options = capped.runtime_options()
        async with Runtime(**options, journal=journal, limits=Limits(max_tool_calls=1)) as rt:
            result = await rt.run("Refund invoice INV-1")
    assert result.outcome == "stopped_steps"
    tape = await cassette_of(db, "Refund invoice INV-1")
    report = await replay(tape, app=capped, settings=SETTINGS)  # the default cap: 20
    assert report.kinds == ["unrecorded_call", "unrecorded_step"]
    step = only(report, "unrecorded_step")
    assert step.step == 3
    assert step.reason.startswith("the recording has no answer for step 3")
    assert report.stopped == "the recording has no answer for step 3"


async def test_recorded_retries_and_failures_replay_the_same(tmp_path: Path) -> None:

    failures = {"left": 2}

    def make(*, flaky: bool, retries: int = 3) -> App:
        @tool(timeout=5, retry=RetryPolicy(max_retries=retries, initial_delay=0.0, jitter=0.0))
        def lookup(key: str) -> str:
            """Look a key up."""
            if flaky and failures["left"]:
                failures["left"] -= 1
                raise ToolError("upstream 503")
            return f"value of {key}"

        def model(request: ModelRequest) -> ModelResponse:
            done = [m for m in request.messages if isinstance(m, ToolResultMessage)]
            if done:
                return ModelResponse(text=f"found {done[-1].content}")
            return ModelResponse(tool_calls=(call("lookup", key="k1"),))

        agent = SubAgent(
            "lookup", instructions="Look keys up.", tools=[lookup], model=FunctionModel(model)
        )
        return App(agents=[agent])

    db = await record(tmp_path, make(flaky=True), "look k1 up")
    tape = await cassette_of(db, "look k1 up")
    # The replay's tool body is the recording: two failures, then the value.
    report = await assert_replays_async(tape, app=make(flaky=False), settings=SETTINGS)
    attempts = [
        (e.kind, e.attempt)
        for e in report.events
        if e.kind.startswith("tool_call_") and hasattr(e, "attempt")
    ]
    assert attempts == [
        ("tool_call_started", 1),
        ("tool_call_failed", 1),
        ("tool_call_started", 2),
        ("tool_call_failed", 2),
        ("tool_call_started", 3),
        ("tool_call_finished", 3),
    ]
    # Under a retry policy that gives up sooner, the call now fails where it returned.
    stingy = await replay(tape, app=make(flaky=False, retries=1), settings=SETTINGS)
    assert stingy.kinds == ["result"]
    changed = only(stingy, "result")
    assert changed.recorded == "value of k1"
    assert changed.replayed.startswith("Tool 'lookup' failed after 2 attempt(s): upstream 503")


# -- the regression-test helper ---------------------------------------------------------------


def test_assert_replays_fails_with_a_readable_diff_and_accepts_what_is_expected() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_replays(SMALL, app=recorded_app.strict_app(), settings=SETTINGS)
    message = str(caught.value)
    assert message.splitlines()[0] == (
        f"run run_refund_small (agent billing, {SMALL}) does not replay as expected:"
    )
    assert "step 2: blocked: refund(" in message
    assert "    - recorded: ran" in message
    assert "    + replayed: refused by the range check" in message
    # Pinning what a new guardrail must do to a recorded run is a test too.
    report = assert_replays(
        SMALL, app=recorded_app.strict_app(), settings=SETTINGS, expect={"blocked", "steps"}
    )
    assert report.diverged
    with pytest.raises(AssertionError, match=r"expected divergences \['blocked'\], found"):
        assert_replays(SMALL, app=recorded_app.strict_app(), settings=SETTINGS, expect={"blocked"})
    with pytest.raises(AssertionError, match="unknown divergence kinds"):
        assert_replays(SMALL, app=recorded_app.app(), settings=SETTINGS, expect={"nope"})  # type: ignore[arg-type]


# -- a window of production runs -----------------------------------------------------------------


async def test_a_window_of_runs_is_summarised_by_divergence_kind(tmp_path: Path) -> None:
    tasks = ["Refund invoice INV-1", "Refund invoice INV-3", "Refund invoice INV-2", "help me"]
    db = await record(tmp_path, recorded_app.app(), *tasks)
    async with SqliteJournal(db) as journal:
        ids = {i.task: i.run_id for i in await journal.runs(limit=None)}
        window = await replay_window(journal, app=recorded_app.strict_app(), settings=SETTINGS)
        assert len(window.reports) == 4 and window.skipped == ()
        by_kind = window.by_kind()
        # 40 and 500 are over the new cap of 10; 8 is not; support never refunds.
        assert sorted(by_kind["blocked"]) == sorted([ids[tasks[0]], ids[tasks[2]]])
        assert set(by_kind) == {"blocked", "steps"}
        assert {r.run_id for r in window.diverged} == {ids[tasks[0]], ids[tasks[2]]}
        document = window.to_json()
        assert (document["replayed"], document["diverged"]) == (4, 2)
        assert document["by_kind"]["blocked"]["runs"] == 2
        assert "replayed 4 run(s): 2 diverged, 2 did not" in window.explain()
        # Filters: one agent, a limit, a window that holds nothing.
        support = await replay_window(
            journal, app=recorded_app.strict_app(), settings=SETTINGS, agents=["support"]
        )
        assert [r.run_id for r in support.reports] == [ids["help me"]]
        assert not support.diverged
        newest = await replay_window(journal, app=recorded_app.app(), settings=SETTINGS, limit=2)
        assert len(newest.reports) == 2
        later = await replay_window(
            journal, app=recorded_app.app(), settings=SETTINGS, since=2_000_000_000.0
        )
        assert later.reports == ()


# -- secrets and bad input ----------------------------------------------------------------------


def with_secret(path: Path) -> dict[str, Any]:
    """An export whose account number is an API key (as if the model had copied one)."""
    return json.loads(path.read_text(encoding="utf-8").replace("ACC-1", SECRET))


async def test_a_replay_never_shows_a_secret_found_in_arguments() -> None:
    report = await replay(with_secret(SMALL), app=recorded_app.strict_app(), settings=SETTINGS)
    assert "blocked" in report.kinds
    shown = report.explain() + json.dumps(report.to_json())
    assert SECRET not in shown
    assert "[REDACTED:API_KEY]" in only(report, "blocked").reason


async def test_bad_input_is_a_usage_error_that_says_what_is_wrong(tmp_path: Path) -> None:
    not_export = tmp_path / "notes.json"
    not_export.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(UsageError, match="is not a Corral run export"):
        Cassette.from_file(not_export)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json at all", encoding="utf-8")
    with pytest.raises(UsageError, match="not JSON"):
        await replay(garbage, app=recorded_app.app(), settings=SETTINGS)
    broken = json.loads(SMALL.read_text(encoding="utf-8"))
    broken["events"][1]["step"] = "two"
    with pytest.raises(
        UsageError,
        match=r"event 1 \(model_called\) does not decode: model_called.step: Input should be a valid integer",
    ):
        Cassette.from_export(broken)
    headless = json.loads(SMALL.read_text(encoding="utf-8"))
    del headless["events"][0]
    with pytest.raises(UsageError, match="does not start with the run's run_started"):
        Cassette.from_export(headless)
    with pytest.raises(UsageError, match="cannot read"):
        Cassette.from_file(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="cannot load the application 'no_such_module:app'"):
        await replay(SMALL, app="no_such_module:app", settings=SETTINGS)
    db = await record(tmp_path, recorded_app.app(), "Refund invoice INV-3")
    async with SqliteJournal(db) as journal:
        with pytest.raises(UsageError, match="no run 'run_nope' in the journal"):
            await Cassette.from_journal(journal, "run_nope")


async def test_an_agent_the_application_no_longer_has_is_reported() -> None:
    only_support = App(agents=[recorded_app.support()])
    report = await replay(SMALL, app=only_support, settings=SETTINGS)
    assert report.kinds == ["agent_missing"]
    assert "has no agent 'billing'" in report.divergences[0].reason


def payments(*, pay_fails: bool, gated: bool) -> App:
    """An agent whose write tool fails over to a backup, or waits for a webhook."""

    @tool(timeout=5, retry=RetryPolicy(max_retries=0))
    def backup(amount: float) -> str:
        """Pay through the backup provider."""
        return f"backup paid {amount}"

    @tool(timeout=5, side_effect="write", fallback=backup, retry=RetryPolicy(max_retries=0))
    def pay(amount: float) -> WaitFor:
        """Pay; the provider confirms by webhook."""
        if pay_fails:
            raise ToolError("provider down", retryable=False)
        return WaitFor(f"pay:{amount}", 60)

    def model(request: ModelRequest) -> ModelResponse:
        done = [m for m in request.messages if isinstance(m, ToolResultMessage)]
        if done:
            return ModelResponse(text=f"got {done[-1].content}")
        return ModelResponse(tool_calls=(call("pay", amount=5.0),))

    agent = SubAgent("payments", instructions="You pay.", tools=[pay], model=FunctionModel(model))
    return App(agents=[agent], guards=Guards() if gated else Guards(gated=()))


@pytest.mark.parametrize("case", ["fallback", "webhook", "webhook_timed_out", "gate_expired"])
async def test_fallbacks_webhooks_and_expired_gates_replay_event_for_event(
    tmp_path: Path, case: str
) -> None:
    application = payments(pay_fails=case == "fallback", gated=case == "gate_expired")
    clock = MockClock(1_700_000_000.0)
    durability = Durability(poll_interval_s=None)
    async with SqliteJournal(tmp_path / "prod.db") as journal:
        options = application.runtime_options()
        async with Runtime(**options, journal=journal, clock=clock, durability=durability) as rt:
            result = await rt.run("pay 5")
            if case == "webhook":
                await rt.deliver("pay:5.0", {"ok": True})
            elif case == "webhook_timed_out":
                clock.advance(120)
                await rt.tick()
            elif case == "gate_expired":
                clock.advance(49 * 3600)
                await rt.tick()
            result = await rt.wait(result.run_id)
        assert result.outcome == "completed"
        tape = await Cassette.from_journal(journal, result.run_id)
    expected = {
        "fallback": "got backup paid 5.0",
        "webhook": 'got {"ok": true}',
        "webhook_timed_out": "got Waiting for 'pay:5.0' timed out",
        "gate_expired": "got A person did not approve calling 'pay' (expired)",
    }[case]
    assert (result.output or "").startswith(expected)
    report = await assert_replays_async(tape, app=application, settings=SETTINGS)
    assert [e.kind for e in report.events] == [e.kind for e in tape.events]
    assert report.replayed["output"] == result.output
