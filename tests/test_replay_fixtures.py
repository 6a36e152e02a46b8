"""Recorded journals of real runs, replayed against the current code (Temporal's replayer).

The fixtures in ``tests/fixtures/journals/`` are journals of real runs, recorded by
``record.py`` there (one scenario per file: each event kind, each outcome), plus one older
journal written by hand with the legacy kinds the codec still reads. For every fixture:

* decoding is stable: each line decodes with today's `EventAdapter` and encodes back to
  the same JSON, so a change to an event, or to a type it embeds, fails here, naming the
  fixture, the line and the field;
* the fold is stable: `RunState.fold` gives each agent run's recorded figures;
* decisions are stable: each finished run, its journal cut before its ``run_finished``,
  is resumed by a fresh `Runtime` with the same agents, limits and options, whose model
  and tools refuse to be called for anything the journal already answers. It must end as
  it was recorded (outcome, reason, output, figures) without repeating a call. Paused
  runs (waiting, or cancelled while waiting) must stay as they are.

After a deliberate change to a decision or an event, re-record with
``.venv/bin/python tests/fixtures/journals/record.py`` and review the diff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from pydantic import BaseModel

from corral import Durability, Limits, MockClock
from corral.events import OUTCOMES, Event, EventAdapter, RunFinished
from corral.models import FunctionModel
from corral.store import MemoryJournal
from corral.subagents import RunState

from .fixtures.journals import record

HERE = Path(__file__).parent / "fixtures" / "journals"
REPLAY_TIMEOUT_S = 5.0
"""How long one replayed run may take to settle (real seconds; it needs milliseconds)."""


@dataclass(frozen=True)
class Line:
    """One event line of a fixture: where it is, its text and its parsed JSON."""

    number: int
    text: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class Fixture:
    """A fixture file: its header and its event lines."""

    name: str
    header: dict[str, Any]
    lines: tuple[Line, ...]

    @property
    def runs(self) -> list[dict[str, Any]]:
        """What the header says of each run."""
        runs: list[dict[str, Any]] = self.header["runs"]
        return runs

    @property
    def scenario(self) -> record.Scenario:
        """The scenario whose agents and options the fixture's runs are replayed with."""
        return record.SCENARIOS[self.header.get("replays_as", self.name)]

    def events(self) -> list[Event]:
        """Every event, decoded, in file order."""
        return [EventAdapter.validate_json(line.text) for line in self.lines]

    def of(self, run_id: str) -> list[Event]:
        """The events of one run."""
        return [e for e in self.events() if e.run_id == run_id]


def load(path: Path) -> Fixture:
    """Read a fixture: a JSON header on the first line, then one event per line."""
    text = path.read_text(encoding="utf-8").splitlines()
    lines = tuple(Line(n, t, json.loads(t)) for n, t in enumerate(text[1:], start=2) if t)
    return Fixture(path.stem, json.loads(text[0]), lines)


FIXTURES = {path.stem: load(path) for path in sorted(HERE.glob("*.jsonl"))}
NAMES = sorted(FIXTURES)


def is_agent_run(run: dict[str, Any]) -> bool:
    """True for a sub-agent's run (a workflow's own run is folded by the workflow engine)."""
    return not str(run["agent"]).startswith("workflow:")


# -- a: decoding -------------------------------------------------------------------------------


def differences(
    recorded: Any, current: Any, model: Any, *, older: bool, path: str = ""
) -> list[str]:
    """Where `current` (today's encoding) differs from `recorded`, field by field.

    Args:
        recorded: the line's JSON, or a value in it.
        current: the same, decoded and encoded again today.
        model: the pydantic model `recorded` is an instance of, if any (for defaults).
        older: the line comes from an older journal (the hand-written one): a field it
            lacks is accepted when today's encoding gives it its default, which is what
            reading an older journal means. In a recorded fixture every new field is a
            change of the on-disk format, reported (re-record if it is intended).
        path: where `recorded` is in the line, for the report.
    """
    if isinstance(recorded, dict) and isinstance(current, dict):
        found: list[str] = []
        for key in sorted(recorded.keys() | current.keys()):
            where = f"{path}.{key}" if path else key
            field = model.model_fields.get(key) if _is_model(model) else None
            inner = _model_of(field.annotation) if field is not None else None
            if key not in current:
                found.append(f"{where}: recorded {recorded[key]!r}, no longer encoded")
            elif key not in recorded:
                default = field.get_default(call_default_factory=True) if field else None
                if not older or field is None or _plain(default) != current[key]:
                    found.append(f"{where}: not recorded, now encoded as {current[key]!r}")
            else:
                found.extend(
                    differences(recorded[key], current[key], inner, older=older, path=where)
                )
        return found
    if isinstance(recorded, list) and isinstance(current, list) and len(recorded) == len(current):
        item = _model_of(model) if model is not None else None
        return [
            problem
            for i, (r, c) in enumerate(zip(recorded, current, strict=True))
            for problem in differences(r, c, item, older=older, path=f"{path}[{i}]")
        ]
    if recorded != current or type(recorded) is not type(current):
        return [f"{path}: recorded {recorded!r}, now {current!r}"]
    return []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _model_of(annotation: Any) -> Any:
    """The pydantic model a field holds (directly, or as the items of a tuple or list)."""
    if _is_model(annotation):
        return annotation
    for arg in get_args(annotation):
        if _is_model(arg):
            return arg
    return None


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def decoding_problems(fixture: Fixture) -> list[str]:
    """Every line of `fixture` that no longer decodes, or encodes back differently."""
    problems: list[str] = []
    seqs: dict[str, int] = {}
    older = fixture.header.get("recorded_by") == "hand"
    for line in fixture.lines:
        where = f"{fixture.name}.jsonl line {line.number} ({line.raw.get('kind')})"
        try:
            event = EventAdapter.validate_json(line.text)
        except ValueError as exc:
            problems.append(f"{where}: no longer decodes: {exc}")
            seqs[line.raw.get("run_id", "")] = line.raw.get("seq", 0)
            continue
        current = json.loads(event.model_dump_json())
        found = differences(line.raw, current, type(event), older=older)
        problems.extend(f"{where}: {difference}" for difference in found)
        expected = seqs.get(event.run_id, 0) + 1
        if event.seq != expected:
            problems.append(f"{where}: seq {event.seq}, expected {expected} in run {event.run_id}")
        seqs[event.run_id] = event.seq
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_every_line_decodes_and_encodes_back_to_the_same_json(name: str) -> None:
    problems = decoding_problems(FIXTURES[name])
    assert not problems, "the durable event schema changed:\n" + "\n".join(problems)


# -- b: the fold ---------------------------------------------------------------------------------


def fold_problems(fixture: Fixture) -> list[str]:
    """Every agent run whose fold no longer gives its recorded figures."""
    problems: list[str] = []
    for run in filter(is_agent_run, fixture.runs):
        run_id = run["run_id"]
        state = RunState.fold(run_id, fixture.of(run_id))
        finished = state.finished
        folded = {
            "status": "finished" if finished is not None else "waiting",
            "outcome": finished.outcome if finished is not None else None,
            "output": finished.output if finished is not None else state.last_text or None,
            "reason": finished.reason if finished is not None else "",
            "steps": state.executed_calls,
            "model_calls": state.model_calls,
            "tokens": state.tokens,
            "cost_usd": state.cost_usd,
            # A result lists the gates of a waiting run only (a cancelled one keeps its own).
            "open_gates": [] if finished else sorted(g.gate_id for g in state.open_gates.values()),
        }
        recorded = {key: run[key] for key in folded}
        recorded["open_gates"] = sorted(recorded["open_gates"])
        if finished is not None:  # the run_finished event was built from the same state
            written = {k: getattr(finished, k) for k in ("steps", "model_calls", "tokens")}
            written["cost_usd"] = finished.cost_usd
            folded_figures = {k: folded[k] for k in written}
            if written != folded_figures:
                problems.append(
                    f"{fixture.name}: run {run_id}: its run_finished says {written}, "
                    f"the fold gives {folded_figures}"
                )
        for key, value in folded.items():
            if value != recorded[key]:
                problems.append(
                    f"{fixture.name}: run {run_id}: {key} recorded {recorded[key]!r}, "
                    f"folded {value!r}"
                )
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_the_fold_gives_each_runs_recorded_figures(name: str) -> None:
    problems = fold_problems(FIXTURES[name])
    assert not problems, "RunState.fold changed:\n" + "\n".join(problems)


# -- c: decisions (the replayer) ---------------------------------------------------------------


@dataclass(frozen=True)
class Replayed:
    """How a run stood after a fresh runtime resumed it, and what the replay asked for."""

    status: str
    finished: RunFinished | None
    open_gates: list[str]
    appended: list[Event]
    """Events the replay added to the run's journal."""
    others_appended: int
    """Events the replay added to the fixture's other runs."""
    gates_before: list[str]
    """The run's open gates in the journal the replay started from."""
    replay: record.Replay


async def replay(
    fixture: Fixture, run_id: str, *, cut: bool, scenario: record.Scenario | None = None
) -> Replayed:
    """Resume `run_id` on a fresh journal holding the fixture's runs.

    Args:
        fixture: the recorded journal.
        run_id: the run to watch.
        cut: leave out the run's ``run_finished`` (it must be decided again).
        scenario: what to build the runtime from. Default: the fixture's scenario.

    Raises:
        TimeoutError: the run did not finish or pause within `REPLAY_TIMEOUT_S`.
    """
    events = fixture.events()
    if cut:
        events = [e for e in events if not (e.run_id == run_id and e.kind == "run_finished")]
    own = [e for e in events if e.run_id == run_id]
    knows = record.Replay.of(events)
    clock = MockClock(max(e.ts for e in events))  # resumed right after the last event
    journal = MemoryJournal(clock=clock)
    for event in events:
        await journal.append(event)
    before = {rid: len(await journal.read(rid)) for rid in {e.run_id for e in events}}
    setup = (scenario or fixture.scenario).build(record.World(knows))
    durability = Durability(resume=True, poll_interval_s=None)
    async with record.make_runtime(
        setup, journal=journal, clock=clock, durability=durability
    ) as rt:
        result = await rt.wait(run_id, timeout=REPLAY_TIMEOUT_S)
        await anyio.wait_all_tasks_blocked()  # let whatever the end of the run woke settle
    after = {rid: await journal.read(rid) for rid in before}
    last = after[run_id][-1]
    return Replayed(
        status=result.status,
        finished=last if isinstance(last, RunFinished) else None,
        open_gates=sorted(g.opened.gate_id for g in result.gates),
        appended=after[run_id][before[run_id] :],
        others_appended=sum(len(after[r]) - before[r] for r in before if r != run_id),
        gates_before=sorted(g.gate_id for g in RunState.fold(run_id, own).open_gates.values()),
        replay=knows,
    )


def decision_problems(
    run: dict[str, Any], recorded: RunFinished | None, replayed: Replayed, *, cut: bool
) -> list[str]:
    """How a replayed run differs from its recording (empty when it decided the same).

    Args:
        run: what the fixture's header says of the run.
        recorded: the run's recorded ``run_finished``, if it finished.
        replayed: how the replay left it.
        cut: whether the replay had to decide the run's end again.
    """
    repeated = replayed.replay.repeated
    problems = [
        f"it repeated or invented a call: {call}"
        + (f" ({repeated.count(call)} times)" if repeated.count(call) > 1 else "")
        for call in dict.fromkeys(repeated)
    ]
    if replayed.others_appended:
        problems.append(f"it added {replayed.others_appended} event(s) to the other runs")
    paused = run["status"] == "waiting" or (cut and run["outcome"] == "cancelled")
    if paused or not cut:
        # Nothing to decide: a person paused or ended it (a cancel is not the code's
        # decision), or its end is already journaled. Resuming must leave it as it was.
        expected_status = "waiting" if paused else "finished"
        if replayed.status != expected_status:
            problems.append(f"status: expected {expected_status!r}, now {replayed.status!r}")
        if replayed.appended:
            problems.append(f"it added {[e.kind for e in replayed.appended]} to the run")
        if paused and replayed.open_gates != replayed.gates_before:
            problems.append(
                f"open gates: {replayed.gates_before} before, {replayed.open_gates} after"
            )
        return problems
    finished = replayed.finished
    if finished is None or recorded is None:
        return [*problems, f"it did not finish again: status {replayed.status!r}"]
    for key in ("outcome", "reason", "output", "steps", "model_calls", "tokens", "cost_usd"):
        was, now = getattr(recorded, key), getattr(finished, key)
        if now != was:
            problems.append(f"{key}: recorded {was!r}, replayed {now!r}")
    extra = [e.kind for e in replayed.appended[:-1]]
    if extra and not replayed.replay.retried:
        problems.append(f"it added {extra} before its end, having retried nothing")
    return problems


KNOWN_DIVERGENCES: dict[tuple[str, str], str] = {}
"""Replays that decide otherwise today, by fixture and mode: the bug, and where to fix it.

Empty now. The first entries were found by this replayer (a call the supervisor refused,
resumed from a journal holding its proposal but not the run's end, ran anyway); the
agent loop now asks the supervisor again for such a call."""


def replay_cases() -> list[Any]:
    """One case per run of each fixture and way to replay it (cut, or whole)."""
    cases = []
    for name in NAMES:
        for run in FIXTURES[name].runs:
            modes = ["cut", "whole"] if run["status"] == "finished" else ["whole"]
            for mode in modes:
                known = KNOWN_DIVERGENCES.get((name, mode))
                marks = (
                    [pytest.mark.xfail(strict=True, raises=AssertionError, reason=known)]
                    if known is not None
                    else []
                )
                case_id = f"{name}-{run['run_id']}-{mode}"
                cases.append(pytest.param(name, run["run_id"], mode, id=case_id, marks=marks))
    return cases


async def replay_problems(
    fixture: Fixture, run_id: str, *, cut: bool, scenario: record.Scenario | None = None
) -> list[str]:
    """Replay one run of a fixture and say what changed, each line naming fixture and run."""
    run = next(r for r in fixture.runs if r["run_id"] == run_id)
    ends = [e for e in fixture.of(run_id) if isinstance(e, RunFinished)]
    how = "cut before its run_finished" if cut else "whole"
    where = f"{fixture.name}: run {run_id} ({how})"
    try:
        replayed = await replay(fixture, run_id, cut=cut, scenario=scenario)
    except TimeoutError:
        return [f"{where}: did not finish or pause within {REPLAY_TIMEOUT_S:g} s of replay"]
    problems = decision_problems(run, ends[-1] if ends else None, replayed, cut=cut)
    return [f"{where}: {p}" for p in problems]


@pytest.mark.parametrize(("name", "run_id", "mode"), replay_cases())
async def test_a_resumed_run_decides_as_it_was_recorded(name: str, run_id: str, mode: str) -> None:
    problems = await replay_problems(FIXTURES[name], run_id, cut=mode == "cut")
    assert not problems, "a replayed run changed a decision:\n" + "\n".join(problems)


# -- the fixtures themselves ------------------------------------------------------------------


def test_the_fixtures_cover_every_event_kind_and_every_outcome() -> None:
    kinds_known = {cls.model_fields["kind"].default for cls in get_args(get_args(Event)[0])}
    kinds_found = {line.raw["kind"] for f in FIXTURES.values() for line in f.lines}
    assert kinds_found == kinds_known, f"missing kinds: {sorted(kinds_known - kinds_found)}"
    outcomes = {run["outcome"] for f in FIXTURES.values() for run in f.runs}
    assert outcomes >= set(OUTCOMES), f"missing outcomes: {sorted(set(OUTCOMES) - outcomes)}"
    assert "waiting" in {run["status"] for f in FIXTURES.values() for run in f.runs}
    legacy = FIXTURES[record.LEGACY]
    assert {"budget_reserved", "budget_settled"} <= {line.raw["kind"] for line in legacy.lines}


def test_every_scenario_has_its_fixture_and_every_fixture_a_scenario() -> None:
    assert set(NAMES) - {record.LEGACY} == set(record.SCENARIOS)
    assert FIXTURES[record.LEGACY].header["replays_as"] in record.SCENARIOS


# -- proof that the checks fail loudly --------------------------------------------------------


def altered(fixture: Fixture, line_number: int, **changes: Any) -> Fixture:
    """A copy of `fixture` with fields of one event line changed."""
    lines = []
    for line in fixture.lines:
        if line.number == line_number:
            raw = {**line.raw, **changes}
            line = Line(line.number, json.dumps(raw), raw)
        lines.append(line)
    return Fixture(fixture.name, fixture.header, tuple(lines))


def test_a_changed_or_unknown_field_is_named_with_its_fixture_and_line() -> None:
    fixture = FIXTURES["tool_retried"]
    failed = next(line for line in fixture.lines if line.raw["kind"] == "tool_call_failed")
    where = f"tool_retried.jsonl line {failed.number} (tool_call_failed)"
    # As if `attempt` had been recorded as text: it decodes, and encodes differently.
    assert decoding_problems(altered(fixture, failed.number, attempt="1")) == [
        f"{where}: attempt: recorded '1', now 1"
    ]
    unknown = decoding_problems(altered(fixture, failed.number, budget=1))
    assert len(unknown) == 1 and unknown[0].startswith(f"{where}: no longer decodes")
    assert "budget" in unknown[0]


async def test_a_changed_decision_fails_naming_the_fixture_and_what_changed() -> None:
    # A recorded end that the code no longer reaches (a copy of the fixture, altered).
    fixture = FIXTURES["completed_tool_call"]
    end = next(line for line in fixture.lines if line.raw["kind"] == "run_finished")
    copy = altered(fixture, end.number, outcome="failed", reason="model call failed")
    problems = await replay_problems(copy, "run_completed", cut=True)
    where = "completed_tool_call: run run_completed (cut before its run_finished)"
    assert problems == [
        f"{where}: outcome: recorded 'failed', replayed 'completed'",
        f"{where}: reason: recorded 'model call failed', replayed ''",
    ]
    # The code deciding otherwise: the same budget scenario under a larger token budget
    # asks the model for a sixth step instead of stopping.
    budget = FIXTURES["stopped_budget"]
    richer = record.Scenario(
        "stopped_budget",
        "the budget scenario under the default budget of 100,000 tokens",
        lambda world: record.limited(world, FunctionModel(record.chatty), Limits()),
        record.SCENARIOS["stopped_budget"].drive,
    )
    problems = await replay_problems(budget, "run_stopped_budget", cut=True, scenario=richer)
    where = "stopped_budget: run run_stopped_budget (cut before its run_finished)"
    assert problems[0] == (
        f"{where}: it repeated or invented a call: new model step 6 of run run_stopped_budget"
    )
    assert f"{where}: outcome: recorded 'stopped_budget', replayed 'failed'" in problems
