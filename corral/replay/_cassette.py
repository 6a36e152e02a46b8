"""A cassette: one recorded run, with what its model answered and its tools returned.

A run's journal already holds everything a replay needs (durability rule 2: a completed
model or tool call is never repeated, so its result is recorded): each ``model_called``
keeps the whole response, each ``tool_call_finished`` what the model was shown, each
``tool_call_failed`` the error, each ``gate_decided`` what a person said. `Cassette`
indexes them: responses by model step, tool outcomes by call (tool and canonical
arguments, in recorded order), gate decisions by call id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._views import RunView, iso
from ..errors import UsageError
from ..events import (
    Event,
    EventAdapter,
    GateDecided,
    GateOpened,
    ModelCalled,
    ResponseRecord,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    WaitResolved,
    WaitStarted,
)
from ..store import Journal
from ..subagents._state import call_key

__all__ = [
    "BLOB_NOTE",
    "Cassette",
    "CallFate",
    "RecordedFailure",
    "RecordedResult",
    "RecordedWait",
    "fates",
    "without_blob_note",
]

BLOB_NOTE = re.compile(r"\n\[full result stored as blob sha256:[0-9a-f]+\]")
"""The line the agent loop adds to a truncated result (the digest depends on the store)."""


def without_blob_note(content: str) -> str:
    """A result as the model saw it, without the note naming where the full one is kept."""
    return BLOB_NOTE.sub("", content)


@dataclass(frozen=True, slots=True)
class RecordedResult:
    """A tool attempt that returned: `content` is what the model was shown."""

    content: str
    truncated: bool = False
    blob: str | None = None
    """Digest of the full result, when it was cut and the store kept it."""


@dataclass(frozen=True, slots=True)
class RecordedFailure:
    """A tool attempt that raised (or timed out)."""

    error: str
    error_type: str
    retryable: bool
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedWait:
    """A tool attempt that waited for an external event, and what arrived."""

    key: str
    timeout_s: float
    resolved: bool = False
    timed_out: bool = False
    payload: Any = None


Recorded = RecordedResult | RecordedFailure | RecordedWait
"""What one recorded tool attempt did."""


@dataclass(slots=True)
class CallFate:
    """What became of one proposed tool call, as a run's events tell it."""

    call_id: str
    step: int
    tool: str
    arguments: dict[str, Any]
    """The arguments it ran with: a person's edit at its gate, else the model's."""
    rejected: ToolCallRejected | None = None
    """Its refusal (by a check, or ``person`` for a rejected gate), if it was refused."""
    gate: GateOpened | None = None
    """Its approval gate (not a gate for a call in doubt after a crash), if one opened."""
    decided: GateDecided | None = None
    """The decision at that gate, if any."""
    started: bool = False
    """At least one attempt ran."""
    content: str | None = None
    """What the model was shown of the call's outcome: its result, or the message of its
    final failure; None before either (or for a wait, whose payload the model sees)."""
    outcomes: dict[str, list[Recorded]] = field(default_factory=dict)
    """Its attempts' outcomes by the tool that ran (the tool, or its fallback), in order."""

    def what(self) -> str:
        """What happened to the call, in words (``ran``, ``refused by schema: ...``...)."""
        if self.rejected is not None:
            if self.rejected.guardrail == "person":
                return f"rejected at its gate ({self.rejected.reason})"
            return f"refused by the {self.rejected.guardrail} check: {self.rejected.reason}"
        if self.gate is not None and self.decided is None:
            return "waiting at a gate"
        if self.gate is not None:
            return f"ran after a gate ({self.decided.decision if self.decided else 'open'})"
        if self.started:
            return "ran"
        return "proposed"


def fates(events: Sequence[Event]) -> dict[str, CallFate]:
    """What became of each proposed call of a run, by call id, in the order proposed."""
    found: dict[str, CallFate] = {}
    attempts: dict[str, str] = {}  # call id -> the tool of its latest started attempt
    for event in events:
        if isinstance(event, ToolCallProposed):
            found[event.call_id] = CallFate(
                event.call_id, event.step, event.tool, dict(event.arguments)
            )
            continue
        fate = found.get(getattr(event, "call_id", None) or "")
        if fate is None:
            continue
        if isinstance(event, ToolCallRejected):
            fate.rejected = event
        elif isinstance(event, GateOpened) and not event.doubt:
            fate.gate = event
        elif isinstance(event, GateDecided) and fate.gate is not None:
            if event.gate_id == fate.gate.gate_id:
                fate.decided = event
                if event.arguments is not None:
                    fate.arguments = dict(event.arguments)
        elif isinstance(event, ToolCallStarted):
            fate.started = True
            attempts[event.call_id] = event.tool
        elif isinstance(event, ToolCallFinished):
            fate.content = event.content
            fate.outcomes.setdefault(event.tool, []).append(
                RecordedResult(event.content, event.truncated, event.result_blob)
            )
        elif isinstance(event, ToolCallFailed):
            if event.final:
                fate.content = event.message
            fate.outcomes.setdefault(event.tool, []).append(
                RecordedFailure(event.error, event.error_type, event.retryable, event.delay_s)
            )
        elif isinstance(event, WaitStarted):
            fate.outcomes.setdefault(event.tool, []).append(
                RecordedWait(event.key, max(event.expires_at - event.ts, 0.001))
            )
        elif isinstance(event, WaitResolved):
            waits = fate.outcomes.get(event.tool) or []
            if waits and isinstance(waits[-1], RecordedWait):
                wait = waits[-1]
                waits[-1] = RecordedWait(
                    wait.key, wait.timeout_s, True, event.timed_out, event.payload
                )
            if not event.timed_out:
                fate.content = None  # what the model saw is the payload, not a tool result
    return found


class Cassette:
    """One recorded run: its events, indexed for a replay.

    Build one from an export document (``corral export RUN_ID``), a file holding one, or
    a journal and a run id; `replay` plays it against the current code. The events are
    the journal's own, already redacted by it (secrets never reach the journal).

    Args:
        events: the run's events, oldest first, starting with its ``run_started``.
        blobs: full results of truncated tool calls, by digest (text), when the journal
            kept them; a replay gives the current result filter the whole result.
        run: the run as ``corral runs show -o json`` shows it, when known (an export's
            ``run``), kept for `to_export`.
        source: where the cassette came from, for messages.

    Raises:
        UsageError: no events, events of several runs, or a first event that is not the
            run's ``run_started``.
    """

    def __init__(
        self,
        events: Sequence[Event],
        *,
        blobs: Mapping[str, str] | None = None,
        run: Mapping[str, Any] | None = None,
        source: str = "the recording",
    ) -> None:
        if not events:
            raise UsageError(f"{source} holds no events: there is nothing to replay")
        run_ids = sorted({e.run_id for e in events})
        if len(run_ids) > 1:
            raise UsageError(f"{source} holds events of several runs ({', '.join(run_ids)})")
        first = events[0]
        if not isinstance(first, RunStarted):
            raise UsageError(
                f"{source} does not start with the run's run_started event (found {first.kind})"
            )
        self.events: tuple[Event, ...] = tuple(events)
        self.run_id: str = first.run_id
        self.started: RunStarted = first
        self.blobs: dict[str, str] = dict(blobs or {})
        self.run: dict[str, Any] = dict(run or {})
        self.source = source
        ends = [e for e in events if isinstance(e, RunFinished)]
        self.finished: RunFinished | None = ends[-1] if ends else None
        """How the recorded run ended; None if it was still running or waiting."""
        self.responses: dict[int, ResponseRecord] = {
            e.step: e.response for e in events if isinstance(e, ModelCalled)
        }
        """What the model answered, by step (the last attempt that answered)."""
        self.calls: dict[str, CallFate] = fates(events)
        """What became of each proposed call, by call id."""

    def __repr__(self) -> str:
        outcome = self.finished.outcome if self.finished is not None else "unfinished"
        return f"Cassette({self.run_id!r}, agent={self.started.agent!r}, {outcome})"

    # -- building one ----------------------------------------------------------------------

    @classmethod
    def from_export(cls, document: Any, *, source: str = "the export") -> Cassette:
        """Read an export document: ``{"run": ..., "events": [...], "exported_at": ...}``.

        Args:
            document: the parsed JSON of ``corral export RUN_ID`` (or ``GET
                /v1/runs/{id}/export``).
            source: where it came from, for messages.

        Raises:
            UsageError: it is not an export, or an event in it does not decode.
        """
        if not isinstance(document, Mapping) or not isinstance(document.get("events"), list):
            raise UsageError(
                f"{source} is not a Corral run export: expected a JSON object with "
                '"run" and "events" (as `corral export RUN_ID` writes)'
            )
        events: list[Event] = []
        for index, raw in enumerate(document["events"]):
            kind = raw.get("kind") if isinstance(raw, Mapping) else None
            try:
                events.append(EventAdapter.validate_python(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "event"
                raise UsageError(
                    f"{source}: event {index} ({kind or 'no kind'}) does not decode: "
                    f"{where}: {first.get('msg', 'invalid')}"
                ) from None
        run = document.get("run")
        return cls(events, run=run if isinstance(run, Mapping) else None, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Cassette:
        """Read an export document from a file.

        Raises:
            UsageError: the file cannot be read, is not JSON, or is not an export.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path} is not a Corral run export: not UTF-8 text") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path} is not a Corral run export: not JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        return cls.from_export(document, source=str(path))

    @classmethod
    async def from_journal(cls, journal: Journal, run_id: str) -> Cassette:
        """Read a run from a journal (opened), with the full results it kept as blobs.

        Raises:
            UsageError: the journal has no such run.
        """
        info = await journal.run(run_id)
        events = await journal.read(run_id) if info is not None else []
        if info is None or not events:
            raise UsageError(f"no run {run_id!r} in the journal")
        blobs: dict[str, str] = {}
        for event in events:
            if isinstance(event, ToolCallFinished) and event.truncated and event.result_blob:
                data = await journal.get_blob(event.result_blob)
                if data is not None:
                    blobs[event.result_blob] = data.decode("utf-8", "replace")
        gates = await journal.gates(status=None, run_id=run_id)
        view = RunView.of_events(info, events, gates).model_dump(mode="json")
        return cls(events, blobs=blobs, run=view, source=f"run {run_id}")

    @classmethod
    def load(cls, source: Cassette | str | Path | Mapping[str, Any]) -> Cassette:
        """A cassette from whatever names one: itself, a file path, or an export document.

        Raises:
            UsageError: as `from_file` and `from_export`.
        """
        if isinstance(source, Cassette):
            return source
        if isinstance(source, Mapping):
            return cls.from_export(source)
        return cls.from_file(source)

    # -- writing one -----------------------------------------------------------------------

    def to_export(self) -> dict[str, Any]:
        """The export document of this run (what ``corral export`` writes)."""
        return {
            "run": dict(self.run) or {"run_id": self.run_id, "agent": self.started.agent},
            "events": [EventAdapter.dump_python(e, mode="json") for e in self.events],
            "exported_at": iso(time.time()),
        }

    def save(self, path: str | Path) -> Path:
        """Write the export document to `path` (a fixture for `assert_replays`).

        Returns:
            The path written.
        """
        path = Path(path)
        text = json.dumps(self.to_export(), indent=2, ensure_ascii=False) + "\n"
        path.write_text(text, encoding="utf-8")
        return path

    # -- what the replay serves -------------------------------------------------------------

    def tool_outcomes(self) -> dict[str, list[list[Recorded]]]:
        """Recorded tool calls by (tool, canonical arguments) key, each its attempts, in order."""
        found: dict[str, list[list[Recorded]]] = {}
        for fate in self.calls.values():
            for tool, outcomes in fate.outcomes.items():
                found.setdefault(call_key(tool, fate.arguments), []).append(list(outcomes))
        return found

    def full_result(self, outcome: RecordedResult) -> str:
        """What the tool returned: the whole result when it was kept, else what was shown."""
        if outcome.truncated and outcome.blob is not None and outcome.blob in self.blobs:
            return self.blobs[outcome.blob]
        return without_blob_note(outcome.content)
