"""What a replay found: `Divergence`, `ReplayReport`, and `WindowReport` for many runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .._pii import redact_secrets
from ..events import Event
from ..subagents import RunState

__all__ = ["DIVERGENCE_KINDS", "Divergence", "DivergenceKind", "ReplayReport", "WindowReport"]

DivergenceKind = Literal[
    "route",
    "agent_missing",
    "blocked",
    "unblocked",
    "gate_opened",
    "gate_not_opened",
    "budget",
    "step_limit",
    "loop",
    "breaker",
    "outcome",
    "output",
    "steps",
    "result",
    "unrecorded_step",
    "unrecorded_call",
]
"""Where a replay departs from its recording:

* ``route``: the router now picks another agent or rule (or none);
* ``agent_missing``: the recorded agent is not in the application (nothing replayed);
* ``blocked``: a call the recording ran (or sent to a gate) is now refused by a check;
* ``unblocked``: a call the recording refused now passes the checks;
* ``gate_opened``: a call now waits for a person where the recording had no gate
  (decided as unanswered: the replay stops there);
* ``gate_not_opened``: a call the recording sent to a gate now runs (or is refused) without one;
* ``budget``, ``step_limit``, ``loop``, ``breaker``: the run is now stopped by that limit;
* ``outcome``: the run now ends another way;
* ``output``: same outcome, another final output;
* ``steps``: same outcome, another count of tool calls run or model calls made;
* ``result``: what the model was shown of a call's outcome differs (a result filter or
  screen changed the result, or the call now fails where it returned, or the reverse);
* ``unrecorded_step``: the run asked the model for a step the recording has no answer
  for (its conversation diverged): the replay stops there;
* ``unrecorded_call``: the run called a tool with arguments the recording never called
  it with; it was not executed (the model was told it failed).
"""

DIVERGENCE_KINDS: tuple[DivergenceKind, ...] = get_args(DivergenceKind)

STOP_KINDS: Mapping[str, DivergenceKind] = {
    "stopped_budget": "budget",
    "stopped_steps": "step_limit",
    "stopped_loop": "loop",
    "stopped_breaker": "breaker",
}
"""The divergence kind of a run now stopped by a limit, by its outcome."""


def redacted(value: Any) -> Any:
    """`value` with the secrets of every string in it replaced by their markers."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, Mapping):
        return {str(k): redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Divergence:
    """One place where the replayed run departs from its recording.

    Build it with `Divergence.of`, which redacts the secrets of every text in it (a
    replay never prints a credential it finds in arguments).
    """

    kind: DivergenceKind
    """What kind of departure (see `DivergenceKind`)."""
    step: int | None
    """The model step it happened at (None for the run as a whole)."""
    recorded: Any
    """What the recording did there (plain JSON data)."""
    replayed: Any
    """What the replay did there (plain JSON data)."""
    reason: str
    """Why, in words: which check refused the call and its reason, which limit stopped it."""
    call_id: str | None = None
    """The tool call it concerns, if any."""
    tool: str | None = None
    """That call's tool, if any."""

    @classmethod
    def of(
        cls,
        kind: DivergenceKind,
        step: int | None,
        recorded: Any,
        replayed: Any,
        reason: str,
        *,
        call_id: str | None = None,
        tool: str | None = None,
    ) -> Divergence:
        """A divergence with every text in it redacted (see the class docstring)."""
        return cls(
            kind,
            step,
            redacted(recorded),
            redacted(replayed),
            redact_secrets(reason),
            call_id,
            tool,
        )

    def to_json(self) -> dict[str, Any]:
        """The divergence as plain JSON data."""
        return {
            "kind": self.kind,
            "step": self.step,
            "call_id": self.call_id,
            "tool": self.tool,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "run"
        return f"{where}: {self.kind}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What replaying one recorded run against the current code gave.

    `recorded` and `replayed` summarise both runs (``status``, ``outcome``, ``output``,
    ``reason``, ``steps``, ``model_calls``, ``tokens``); `divergences` lists, in order,
    where they part.
    """

    run_id: str
    agent: str
    """The recorded run's agent (the one replayed)."""
    task: str
    recorded: dict[str, Any]
    replayed: dict[str, Any]
    divergences: tuple[Divergence, ...]
    stopped: str = ""
    """Why the replay stopped before the run's end (no answer recorded for a step, a
    gate the recording never had), or empty."""
    events: tuple[Event, ...] = field(default=(), repr=False)
    """The replayed run's events (an in-memory journal's; nothing was written elsewhere)."""

    @property
    def diverged(self) -> bool:
        """True when the replay departed from the recording anywhere."""
        return bool(self.divergences)

    @property
    def kinds(self) -> list[DivergenceKind]:
        """The kinds of its divergences, each once, in order of first appearance."""
        return list(dict.fromkeys(d.kind for d in self.divergences))

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data (what ``corral replay -o json`` prints)."""
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "task": redact_secrets(self.task),
            "diverged": self.diverged,
            "recorded": redacted(self.recorded),
            "replayed": redacted(self.replayed),
            "stopped": redact_secrets(self.stopped),
            "divergences": [d.to_json() for d in self.divergences],
        }

    def explain(self) -> str:
        """The report in words, one divergence a line (what ``corral replay`` prints)."""
        rec, rep = self.recorded, self.replayed
        lines = [
            f"run {self.run_id} (agent {self.agent}): {_said(self.task)}",
            f"  recorded: {_end(rec)}",
            f"  replayed: {_end(rep)}",
        ]
        if self.stopped:
            lines.append(f"  the replay stopped early: {redact_secrets(self.stopped)}")
        if not self.divergences:
            lines.append("no divergence: the current code decides as the recording did")
        else:
            lines.append(f"{len(self.divergences)} divergence(s):")
            lines.extend(f"  {d}" for d in self.divergences)
        return "\n".join(lines)


def _said(text: str, limit: int = 100) -> str:
    text = redact_secrets(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _end(summary: Mapping[str, Any]) -> str:
    status = summary.get("outcome") or summary.get("status") or "-"
    figures = (
        f"steps={summary.get('steps', 0)} model_calls={summary.get('model_calls', 0)} "
        f"tokens={summary.get('tokens', 0)}"
    )
    reason = summary.get("reason") or ""
    return f"{status}  {figures}" + (f"  ({_said(str(reason))})" if reason else "")


@dataclass(frozen=True, slots=True)
class WindowReport:
    """Many production runs replayed at once (``corral replay --since 7d``)."""

    reports: tuple[ReplayReport, ...]
    """Each replayed run's report, newest run first."""
    skipped: tuple[tuple[str, str], ...] = ()
    """Runs not replayed, each with why (a workflow's own run, an agent the app lacks)."""
    since: float | None = None
    """The window's start, Unix seconds."""
    until: float | None = None
    """The window's end, Unix seconds (None: now)."""

    @property
    def diverged(self) -> list[ReplayReport]:
        """The reports of the runs that diverged."""
        return [r for r in self.reports if r.diverged]

    def by_kind(self) -> dict[DivergenceKind, list[str]]:
        """Run ids by divergence kind (a run with two kinds is under both), kinds in order."""
        found: dict[DivergenceKind, list[str]] = {}
        for kind in DIVERGENCE_KINDS:
            runs = [r.run_id for r in self.reports if kind in r.kinds]
            if runs:
                found[kind] = runs
        return found

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data (what ``corral replay --since ... -o json`` prints)."""
        return {
            "since": self.since,
            "until": self.until,
            "replayed": len(self.reports),
            "diverged": len(self.diverged),
            "skipped": [{"run_id": r, "reason": why} for r, why in self.skipped],
            "by_kind": {
                kind: {"runs": len(ids), "run_ids": ids} for kind, ids in self.by_kind().items()
            },
            "runs": [r.to_json() for r in self.reports],
        }

    def explain(self) -> str:
        """The summary in words."""
        lines = [
            f"replayed {len(self.reports)} run(s): {len(self.diverged)} diverged, "
            f"{len(self.reports) - len(self.diverged)} did not"
            + (f"; {len(self.skipped)} skipped" if self.skipped else "")
        ]
        for kind, ids in self.by_kind().items():
            lines.append(f"  {kind}: {len(ids)} run(s): {', '.join(ids)}")
        for run_id, why in self.skipped:
            lines.append(f"  skipped {run_id}: {why}")
        return "\n".join(lines)


def summary(events: Sequence[Event]) -> dict[str, Any]:
    """Where a run stands, from its events: status, outcome, output, reason and figures."""
    if not events:
        return {"status": "not started", "outcome": None, "output": None, "reason": ""}
    state = RunState.fold(events[0].run_id, events)
    end = state.finished
    if end is not None:
        status = "finished"
    elif state.paused:
        status = "waiting"
    else:
        status = "running"
    return {
        "status": status,
        "outcome": end.outcome if end is not None else None,
        "output": end.output if end is not None else (state.last_text or None),
        "reason": end.reason if end is not None else "",
        "steps": state.executed_calls,
        "model_calls": state.model_calls,
        "tokens": state.tokens,
    }
