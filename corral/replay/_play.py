"""Play a cassette against the current code: `replay` and `replay_window`.

The recorded run is run again from its task, in memory, by a `Runtime` built from the
application (agents, router, guards: the current code and policies) and the settings
(limits, breakers, gate deadlines), on a `MockClock` starting when the run did. Only the
outside world is replaced:

* each agent's model is a `CassetteModel` answering step N with the recorded response of
  step N (and refusing a step the recording has no answer for);
* each tool (and fallback) keeps its name, schema, side-effect level, scopes, retry
  policy and fallback, and its body is the recording: a call's attempts are served by
  (tool, canonical arguments), in recorded order; a call the recording never made is not
  executed;
* a gate is decided as it was recorded (approved with the same edits, rejected with the
  same reason, or expired); a gate the recording never had is left unanswered and the
  replay stops there.

Nothing is written to the production journal, no real model or tool body is called, and
no alert is sent. Then the replayed events are compared with the recorded ones, call by
call (the replayed responses carry the recorded call ids), into `Divergence`s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from .._clock import MockClock
from .._settings import Settings, load_settings
from .._task import Task
from ..errors import ModelError, RateLimited, RoutingError, ToolError, ToolTimeout, UsageError
from ..events import Event, RunFinished
from ..models import Model, ModelRequest, ModelResponse
from ..runtime import App, Runtime, load_app
from ..store import Journal, MemoryJournal
from ..subagents import SubAgent
from ..subagents._state import call_key
from ..tools import Tool, ToolContext, Unknown, WaitFor
from ._cassette import (
    CallFate,
    Cassette,
    Recorded,
    RecordedFailure,
    RecordedResult,
    fates,
    without_blob_note,
)
from ._report import STOP_KINDS, Divergence, ReplayReport, WindowReport, summary

__all__ = ["CassetteModel", "replay", "replay_window"]

REPLAY_TIMEOUT_S = 30.0
"""Real seconds one replayed run may take to finish or pause (it needs milliseconds)."""
_MAX_ROUNDS = 1_000
"""Gates and waits one replay decides at most (a guard against a run that never settles)."""
_UNROUTED = frozenset({"(named agent)", "(workflow step)", "(workflow)"})
"""Recorded rules of runs no router chose: their route is not replayed."""
_DECIDER = "replay"
"""Who decides a recorded gate whose decision names nobody."""


class CassetteModel:
    """A model that answers each step with the recorded response of that step.

    Args:
        name: the recorded agent's model name (prices and events use it).
        responses: the recorded responses, by step.
        count_tokens: the real model's local token counter, if it has one, so the
            budget reserves what it reserved in production.
    """

    def __init__(
        self,
        name: str,
        responses: Mapping[int, Any],
        *,
        count_tokens: Callable[[ModelRequest], int] | None = None,
    ) -> None:
        self._name = name
        self._responses = dict(responses)
        self.exhausted_at: int | None = None
        """The first step the recording had no answer for, once asked for one."""
        self.steps: list[int] = []
        """Every step asked for, in order."""
        if count_tokens is not None:
            self.count_tokens = count_tokens

    @property
    def name(self) -> str:
        """The recorded model's name."""
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The recorded response of `request.step`.

        Raises:
            ModelError: (not retryable) the recording has no answer for this step.
        """
        self.steps.append(request.step)
        record = self._responses.get(request.step)
        if record is None:
            if self.exhausted_at is None:
                self.exhausted_at = request.step
            raise ModelError(
                f"the recording has no answer for step {request.step}", retryable=False
            )
        response: ModelResponse = record.to_response()
        return response


class _Deck:
    """The recorded tool calls, served by (tool, canonical arguments) in recorded order."""

    def __init__(self, cassette: Cassette, journal: Journal, clock: MockClock) -> None:
        self._cassette = cassette
        self._journal = journal
        self._clock = clock
        self._queues: dict[str, deque[list[Recorded]]] = {
            key: deque(calls) for key, calls in cassette.tool_outcomes().items()
        }
        self._assigned: dict[tuple[str, str], list[Recorded] | None] = {}
        self._used: dict[tuple[str, str], int] = {}
        self.unrecorded: list[tuple[str, str, dict[str, Any]]] = []
        """Calls the recording never made: (call id, tool, arguments)."""
        self.timed_out: dict[str, float] = {}
        """Waits the recording saw time out: their deadline, by key."""

    async def invoke(self, tool: str, arguments: Mapping[str, Any], context: ToolContext) -> Any:
        """One attempt of a call: what the recording's matching attempt did."""
        slot = (context.call_id, tool)
        if slot not in self._assigned:
            queue = self._queues.get(call_key(tool, arguments))
            self._assigned[slot] = queue.popleft() if queue else None
        outcomes = self._assigned[slot]
        if not outcomes:
            self.unrecorded.append((context.call_id, tool, dict(arguments)))
            raise ToolError(
                f"the replay does not run tools, and the recording never called {tool!r} "
                "with these arguments",
                retryable=False,
            )
        used = self._used.get(slot, 0)
        self._used[slot] = used + 1
        outcome = outcomes[min(used, len(outcomes) - 1)]
        if isinstance(outcome, RecordedResult):
            return self._cassette.full_result(outcome)
        if isinstance(outcome, RecordedFailure):
            raise _error(outcome)
        if outcome.resolved and not outcome.timed_out:  # kept for the wait, which takes it
            await self._journal.deliver(outcome.key, outcome.payload, now=self._clock.now())
        elif outcome.timed_out:
            self.timed_out[outcome.key] = self._clock.now() + outcome.timeout_s
        return WaitFor(outcome.key, outcome.timeout_s)


def _error(failure: RecordedFailure) -> Exception:
    """The exception a recorded failed attempt stands for, as the retry engine classes it."""
    if failure.error_type == "ToolTimeout":
        return ToolTimeout(failure.error)
    if failure.error_type == "RateLimited":
        return RateLimited(failure.error, retry_after=failure.delay_s or None)
    return ToolError(failure.error, retryable=failure.retryable)


def _replay_tools(agent: SubAgent, deck: _Deck) -> list[Tool]:
    """The agent's tools, each with the recording as its body (fallbacks too)."""
    made: dict[int, Tool] = {}

    def clone(original: Tool) -> Tool:
        if id(original) in made:
            return made[id(original)]
        copy = object.__new__(type(original))
        copy.__dict__.update(original.__dict__)
        made[id(original)] = copy
        if original.fallback is not None:
            copy.fallback = clone(original.fallback)
        name = original.name

        async def invoke(arguments: Mapping[str, Any], context: ToolContext) -> Any:
            return await deck.invoke(name, arguments, context)

        async def probe(idempotency_key: str, arguments: Mapping[str, Any]) -> Unknown:
            return Unknown("a replay asks no status probe")

        copy.__dict__["invoke"] = invoke
        copy.__dict__["probe"] = probe
        return copy

    return [clone(t) for t in agent.tools.values()]


def _replay_agent(agent: SubAgent, model: Model, deck: _Deck) -> SubAgent:
    """The agent as the application defines it now, with the recording as model and tools.

    A copy of the agent, every setting kept (instructions, scopes, limits, policies,
    checks, approval, provenance, context and whatever a later version adds), with its
    model and its tools (and their fallbacks, which `SubAgent.tool_for` resolves) replaced.
    """
    return agent.replace(model=model, tools=_replay_tools(agent, deck))


def _application(app: App | str) -> App:
    return load_app(app) if isinstance(app, str) else app


async def replay(
    cassette: Cassette | str | Path | Mapping[str, Any],
    *,
    app: App | str,
    settings: Settings | None = None,
    timeout: float = REPLAY_TIMEOUT_S,
) -> ReplayReport:
    """Replay a recorded run against the current code, policies and limits, in memory.

    Args:
        cassette: the recorded run: a `Cassette`, an export file's path, or an export
            document.
        app: the application whose agents, router and guards the run meets now (an
            `App`, or ``module:factory``).
        settings: where the limits, breakers and gate deadlines come from. Default:
            `corral.load_settings()` (``CORRAL_*``, ``./corral.toml``).
        timeout: real seconds the replayed run may take to finish or pause.

    Returns:
        The report: both runs summarised and every divergence, in order.

    Raises:
        UsageError: the cassette cannot be read, the app cannot be loaded, or the run is
            a workflow's own run (replay the runs of its steps).
        ConfigError: the application or settings are invalid (as a `Runtime` says).
        TimeoutError: the replayed run neither finished nor paused within `timeout`.
    """
    tape = Cassette.load(cassette)
    application = _application(app)
    settings = settings if settings is not None else load_settings()
    started = tape.started
    if started.agent.startswith("workflow:"):
        raise UsageError(
            f"run {tape.run_id} is the workflow {started.agent.removeprefix('workflow:')!r}'s "
            "own run: replay the runs of its steps"
        )
    agents = {a.name: a for a in application.agents}
    recorded = summary(tape.events)
    divergences: list[Divergence] = []
    task = Task(
        text=started.task,
        kind=started.task_kind,
        tags=frozenset(started.tags),
        tenant=started.tenant,
    )
    if started.agent not in agents:
        divergences.append(
            Divergence.of(
                "agent_missing",
                None,
                started.agent,
                None,
                f"the application has no agent {started.agent!r} "
                f"(it has {', '.join(sorted(agents))}): nothing was replayed",
            )
        )
        empty = {"status": "not replayed", "outcome": None, "output": None, "reason": ""}
        return ReplayReport(
            tape.run_id,
            started.agent,
            started.task,
            recorded,
            empty,
            tuple(divergences),
            stopped="the recorded agent is not in the application",
        )

    clock = MockClock(started.ts)
    journal = MemoryJournal(clock=clock)
    deck = _Deck(tape, journal, clock)
    models: dict[str, CassetteModel] = {}
    clones = []
    for name, agent in agents.items():
        count = getattr(agent.model, "count_tokens", None)
        model = CassetteModel(
            agent.model.name,
            tape.responses if name == started.agent else {},
            count_tokens=count if callable(count) else None,
        )
        models[name] = model
        clones.append(_replay_agent(agent, model, deck))
    durability = settings.durability.model_copy(
        update={"resume": False, "poll_interval_s": None, "retention_days": None}
    )
    runtime = Runtime(
        agents=clones,
        router=application.router,
        limits=settings.limits,
        breakers=settings.breakers,
        journal=journal,
        clock=clock,
        guards=application.guards,
        durability=durability,
        cost=application.cost,
        seed=0,
    )
    stopped = ""
    async with runtime:
        if started.rule not in _UNROUTED:
            divergences.extend(_route(runtime, task, started.agent, started.rule))
        await runtime.submit(task, agent=started.agent, run_id=tape.run_id)
        stopped = await _drive(runtime, tape, deck, clock, timeout)
        events = await journal.read(tape.run_id)
    model = models[started.agent]
    if model.exhausted_at is not None:
        stopped = f"the recording has no answer for step {model.exhausted_at}"
    divergences.extend(_compare(tape, events, deck, model, cut=bool(stopped)))
    return ReplayReport(
        tape.run_id,
        started.agent,
        started.task,
        recorded,
        summary(events),
        tuple(divergences),
        stopped=stopped,
        events=tuple(events),
    )


def _route(runtime: Runtime, task: Task, agent: str, rule: str) -> list[Divergence]:
    """The route the current router gives the task, if it is not the recorded one."""
    recorded = {"agent": agent, "rule": rule}
    try:
        route = runtime.route(task)
    except RoutingError as exc:
        return [
            Divergence.of(
                "route",
                None,
                recorded,
                None,
                f"no rule routes the task now ({exc}); replayed with the recorded agent",
            )
        ]
    if route.agent == agent and route.rule == rule:
        return []
    now = {"agent": route.agent, "rule": route.rule}
    if route.agent != agent:
        why = (
            f"the router now sends the task to {route.agent!r} (rule {route.rule!r}: "
            f"{route.reason}), not {agent!r} (rule {rule!r}); replayed with the recorded agent"
        )
    else:
        why = f"the task now matches rule {route.rule!r} ({route.reason}), not {rule!r}"
    return [Divergence.of("route", None, recorded, now, why)]


async def _drive(
    runtime: Runtime, tape: Cassette, deck: _Deck, clock: MockClock, timeout: float
) -> str:
    """Drive the replayed run to its end, deciding its gates as recorded.

    Returns:
        Why the replay stopped before the run's end, or empty.
    """
    for _ in range(_MAX_ROUNDS):
        result = await runtime.wait(tape.run_id, timeout=timeout)
        if result.status != "waiting":
            return ""
        acted = False
        unanswered: list[str] = []
        for gate in result.gates:
            if gate.decided is not None:
                continue
            fate = tape.calls.get(gate.opened.call_id)
            if fate is None or fate.gate is None:
                unanswered.append(
                    f"a gate opened for {gate.opened.tool!r} at step {gate.opened.step}, "
                    "which the recording never had: decided as unanswered"
                )
                continue
            decided = fate.decided
            if decided is None:  # the recording waits there too
                unanswered.append(f"the recording waits at the gate of {gate.opened.tool!r} too")
                continue
            gate_id = gate.opened.gate_id
            try:
                if decided.decision == "approved":
                    await runtime.approve(
                        gate_id,
                        by=decided.by or _DECIDER,
                        note=decided.note,
                        args=decided.arguments,
                    )
                elif decided.decision == "rejected":
                    await runtime.reject(
                        gate_id,
                        by=decided.by or _DECIDER,
                        reason=decided.note or "rejected in the recording",
                    )
                else:  # it expired: let the replay's clock pass its deadline
                    clock.advance(max(gate.opened.expires_at - clock.now(), 0.0) + 1.0)
                    await runtime.tick()
            except UsageError as exc:
                unanswered.append(f"the recorded decision cannot be replayed: {exc}")
                continue
            acted = True
        if unanswered:
            return "; ".join(unanswered)
        if deck.timed_out and not acted:  # the waits the recording saw time out
            clock.advance(max(max(deck.timed_out.values()) - clock.now(), 0.0) + 1.0)
            deck.timed_out.clear()
            await runtime.tick()
            acted = True
        if not acted:
            return "the run waits for an event the recording never delivered"
    return f"the run was still paused after {_MAX_ROUNDS} decisions"


def _compare(
    tape: Cassette, events: list[Event], deck: _Deck, model: CassetteModel, *, cut: bool
) -> list[Divergence]:
    """Every divergence between the recorded run and the replayed one, in order."""
    found: list[Divergence] = []
    recorded_calls = tape.calls
    replayed_calls = fates(events)
    for call_id, now in replayed_calls.items():
        was = recorded_calls.get(call_id)
        if was is None:
            continue
        found.extend(_call_divergences(was, now))
    for call_id, tool, arguments in deck.unrecorded:
        step = replayed_calls[call_id].step if call_id in replayed_calls else None
        shown = call_key(tool, arguments)
        found.append(
            Divergence.of(
                "unrecorded_call",
                step,
                None,
                {"tool": tool, "arguments": arguments},
                f"the replay called {shown}, never called in the recording (not executed)",
                call_id=call_id,
                tool=tool,
            )
        )
    if model.exhausted_at is not None:
        found.append(
            Divergence.of(
                "unrecorded_step",
                model.exhausted_at,
                f"{len(tape.responses)} model step(s)",
                f"step {model.exhausted_at}",
                f"the recording has no answer for step {model.exhausted_at}: the replayed "
                "conversation went past the recorded one, so the replay stops there",
            )
        )
    if not cut:
        found.extend(_end_divergences(tape, events))
    return found


def _call_divergences(was: CallFate, now: CallFate) -> list[Divergence]:
    """How one call's fate in the replay differs from the recording's."""
    step, tool, call_id = now.step, now.tool, now.call_id
    shown = call_key(tool, now.arguments)

    def divergence(kind: Any, reason: str) -> Divergence:
        return Divergence.of(kind, step, was.what(), now.what(), reason, call_id=call_id, tool=tool)

    refused_now = now.rejected is not None and now.rejected.guardrail != "person"
    refused_then = was.rejected is not None and was.rejected.guardrail != "person"
    if refused_now and now.rejected is not None:
        check, why = now.rejected.guardrail, now.rejected.reason
        if not refused_then:
            return [
                divergence(
                    "blocked",
                    f"{shown} is now refused by the {check} check: {why} "
                    f"(the recording: {was.what()})",
                )
            ]
        if was.rejected is not None and was.rejected.guardrail != check:
            return [
                divergence(
                    "blocked",
                    f"{shown} is now refused by the {check} check: {why} (the recording "
                    f"refused it by the {was.rejected.guardrail} check)",
                )
            ]
        return []
    if refused_then and was.rejected is not None:
        return [
            divergence(
                "unblocked",
                f"{shown} now passes the checks (the recording refused it by the "
                f"{was.rejected.guardrail} check: {was.rejected.reason}); now: {now.what()}",
            )
        ]
    found: list[Divergence] = []
    if now.gate is not None and was.gate is None:
        found.append(
            divergence(
                "gate_opened",
                f"{shown} now waits for a person ({now.gate.reason}); the recording "
                f"{was.what()} without a gate"
                + ("; decided as unanswered: the replay stops here" if now.decided is None else ""),
            )
        )
    elif was.gate is not None and now.gate is None:
        found.append(
            divergence(
                "gate_not_opened",
                f"{shown} no longer waits for a person (the recording's gate: "
                f"{was.gate.reason}); now: {now.what()}",
            )
        )
    if was.content is not None and now.content is not None:
        then, shown_now = without_blob_note(was.content), without_blob_note(now.content)
        if then != shown_now:
            found.append(
                Divergence.of(
                    "result",
                    step,
                    _clip(then),
                    _clip(shown_now),
                    f"the model is now shown another outcome of {shown}",
                    call_id=call_id,
                    tool=tool,
                )
            )
    return found


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _end_divergences(tape: Cassette, events: list[Event]) -> list[Divergence]:
    """How the replayed run's end differs from the recording's."""
    ends = [e for e in events if isinstance(e, RunFinished)]
    now = ends[-1] if ends else None
    was = tape.finished
    if was is not None and was.outcome == "cancelled":
        return []  # a person ended it: there is no decision of the code to compare
    if was is None and now is None:
        return []
    if was is None or now is None:
        then = was.outcome if was is not None else summary(tape.events)["status"]
        replayed = now.outcome if now is not None else summary(events)["status"]
        reason = f"the run now ends {replayed}, not {then}"
        if now is not None and now.reason:
            reason += f": {now.reason}"
        kind = STOP_KINDS.get(replayed, "outcome")
        return [Divergence.of(kind, _last_step(events), then, replayed, reason)]
    found: list[Divergence] = []
    if now.outcome != was.outcome:
        kind = STOP_KINDS.get(now.outcome, "outcome")
        reason = f"the run now ends {now.outcome}, not {was.outcome}"
        if now.reason:
            reason += f": {now.reason}"
        found.append(Divergence.of(kind, _last_step(events), was.outcome, now.outcome, reason))
    elif (now.output or "") != (was.output or ""):
        found.append(
            Divergence.of(
                "output",
                _last_step(events),
                _clip(was.output or ""),
                _clip(now.output or ""),
                "the run ends with another output",
            )
        )
    then = {"steps": was.steps, "model_calls": was.model_calls}
    replayed = {"steps": now.steps, "model_calls": now.model_calls}
    if then != replayed:
        found.append(
            Divergence.of(
                "steps",
                _last_step(events),
                then,
                replayed,
                f"the run now runs {now.steps} tool call(s) in {now.model_calls} model "
                f"call(s), not {was.steps} in {was.model_calls}",
            )
        )
    return found


def _last_step(events: list[Event]) -> int | None:
    steps = [s for e in events if isinstance(s := getattr(e, "step", None), int)]
    return max(steps) if steps else None


async def replay_window(
    journal: Journal,
    *,
    app: App | str,
    settings: Settings | None = None,
    since: float | None = None,
    until: float | None = None,
    agents: Collection[str] | None = None,
    outcome: str | None = None,
    limit: int | None = None,
    timeout: float = REPLAY_TIMEOUT_S,
) -> WindowReport:
    """Replay every run a journal holds in a window of time (``corral replay --since 7d``).

    The journal is only read. Each run is replayed as `replay` does, on its own in-memory
    runtime; a workflow's own run is skipped (its steps' runs are replayed).

    Args:
        journal: the production journal, opened.
        app: the application the runs meet now (an `App`, or ``module:factory``).
        settings: limits, breakers and gate deadlines. Default: `corral.load_settings()`.
        since: only runs created at or after this, Unix seconds.
        until: only runs created before this, Unix seconds.
        agents: only these agents' runs.
        outcome: only runs that ended this way.
        limit: at most this many runs, newest first. Default: all.
        timeout: real seconds each replayed run may take.

    Returns:
        Every run's report, and the runs skipped with why.
    """
    application = _application(app)
    settings = settings if settings is not None else load_settings()
    reports: list[ReplayReport] = []
    skipped: list[tuple[str, str]] = []
    after: str | None = None
    page = 200
    while limit is None or len(reports) + len(skipped) < limit:
        want = page if limit is None else min(page, limit - len(reports) - len(skipped))
        infos = await journal.runs(
            limit=want,
            agents=agents,
            outcome=outcome,
            created_after=since,
            created_before=until,
            after=after,
        )
        if not infos:
            break
        for info in infos:
            if info.agent.startswith("workflow:"):
                skipped.append((info.run_id, "a workflow's own run (its steps' runs are replayed)"))
                continue
            tape = await Cassette.from_journal(journal, info.run_id)
            reports.append(await replay(tape, app=application, settings=settings, timeout=timeout))
        after = infos[-1].run_id
        if len(infos) < want:
            break
    return WindowReport(tuple(reports), tuple(skipped), since=since, until=until or None)
