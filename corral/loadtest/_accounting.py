"""Fault accounting: where each injected fault ended up, what it cost, and the invariants.

Every injected fault (a case with a ``fault`` entry in the ledger) lands in exactly one
bucket, decided in this order:

* ``leaked``: it reached a tool body (a refund outside the agent's scope ran, a receipt
  went to an injected address, a wrong type or an invented argument reached the body, a
  failing call repeated ran again), its data reached the final answer of a completed run,
  or a huge result reached the model whole;
* ``gate``: an injected call waited at a gate and the approver rejected it;
* ``breaker``: the run was stopped by a breaker (``stopped_breaker``);
* ``ended``: the run ended another way without a correct answer (the outcome is kept:
  ``stopped_loop``, ``failed``, a completed run with a wrong answer, ...);
* for a run that completed with the correct answer: ``retry`` (a provider fault or a
  hang handled by retrying), ``fallback`` (the fallback tool answered), ``caught`` (a
  guardrail neutralised it and the model had nothing to correct: a huge result cut, an
  injected instruction withheld), ``recovered`` (a check or a tool error told the model,
  and it corrected itself), ``absorbed`` (nothing needed doing: a slow answer).

Which guardrail caught a fault (refused the faulty call, or filtered the result) is kept
beside its bucket, as ``caught_by``.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

from ..events import (
    Event,
    GateDecided,
    GateOpened,
    GuardrailVerdict,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
)
from ._ledger import LedgerEntry
from ._profiles import FAULT_CLASSES, Profile
from ._unguarded import UnguardedRun
from ._workload import HARMFUL, Case, call_label, plan_for

__all__ = [
    "BUCKETS",
    "Accounting",
    "FaultRow",
    "Invariant",
    "RunRecord",
    "account",
    "percentile",
]

BUCKETS: tuple[str, ...] = (
    "caught",
    "recovered",
    "retry",
    "fallback",
    "breaker",
    "gate",
    "ended",
    "leaked",
    "absorbed",
)
"""Where an injected fault can end up; each lands in exactly one."""

_PROVIDER = frozenset({"rate_limit", "provider_error", "model_hang"})


@dataclass
class RunRecord:
    """One submitted run as the harness saw it, with its journal."""

    case: Case
    run_id: str
    events: Sequence[Event]
    latency_s: float
    """From submission to its end (or its last pause), seconds."""
    error: str = ""
    """Why the harness could not follow it (it then counts as lost)."""


@dataclass
class _Run:
    """What one run's journal says, digested."""

    record: RunRecord
    status: str
    outcome: str | None
    output: str | None
    tokens: int
    cost_usd: float
    model_calls: int
    tool_steps: int
    limits: dict[str, Any]
    labels: dict[str, str]
    rejected: dict[str, str]
    started: set[str]
    gates: dict[str, GateOpened]
    decisions: dict[str, GateDecided]
    verdicts: list[GuardrailVerdict]
    finished: dict[str, ToolCallFinished]
    failed: list[ToolCallFailed]
    model_failed: list[ModelFailed]
    fallbacks: set[str]
    step_latencies: list[float]
    proposed: int
    called_steps: Counter[int] = field(default_factory=Counter)
    """Journaled model calls by step."""
    timed_out_steps: Counter[int] = field(default_factory=Counter)
    """Model attempts that timed out, by step (the provider may have answered too late)."""

    @property
    def correct(self) -> bool:
        return self.outcome == "completed" and self.output == self.record.case.expected


def _digest(record: RunRecord) -> _Run:
    status = "lost"
    outcome: str | None = None
    output: str | None = None
    tokens = model_calls = steps = proposed = 0
    cost = 0.0
    limits: dict[str, Any] = {}
    labels: dict[str, str] = {}
    rejected: dict[str, str] = {}
    started: set[str] = set()
    gates: dict[str, GateOpened] = {}
    decisions: dict[str, GateDecided] = {}
    verdicts: list[GuardrailVerdict] = []
    finished: dict[str, ToolCallFinished] = {}
    failed: list[ToolCallFailed] = []
    model_failed: list[ModelFailed] = []
    fallbacks: set[str] = set()
    times: list[float] = []
    begun = 0.0
    for event in record.events:
        if isinstance(event, RunStarted):
            status = "running"
            limits = dict(event.limits)
            begun = event.ts
        elif isinstance(event, ModelCalled):
            tokens += event.response.usage.total_tokens
            cost += event.cost_usd
            model_calls += 1
            times.append(event.ts)
        elif isinstance(event, ModelFailed):
            model_failed.append(event)
        elif isinstance(event, ToolCallProposed):
            proposed += 1
            label = call_label(event.call_id)
            labels[event.call_id] = label[2] if label is not None else "ok"
        elif isinstance(event, ToolCallRejected):
            rejected[event.call_id] = event.guardrail
        elif isinstance(event, ToolCallStarted):
            started.add(event.call_id)
            if event.fallback_for is not None:
                fallbacks.add(event.call_id)
        elif isinstance(event, ToolCallFinished):
            finished[event.call_id] = event
        elif isinstance(event, ToolCallFailed):
            failed.append(event)
        elif isinstance(event, GuardrailVerdict):
            verdicts.append(event)
        elif isinstance(event, GateOpened):
            gates[event.call_id] = event
        elif isinstance(event, GateDecided):
            decisions[event.call_id] = event
        elif isinstance(event, RunFinished):
            status, outcome, output, steps = "finished", event.outcome, event.output, event.steps
    if status == "running" and any(c not in decisions for c in gates):
        status = "waiting"
    edges = [begun, *times]
    latencies = [b - a for a, b in zip(edges, edges[1:], strict=False) if begun]
    called = Counter(e.step for e in record.events if isinstance(e, ModelCalled))
    timed_out = Counter(e.step for e in model_failed if e.error_type == "ModelTimeout")
    return _Run(
        record,
        status,
        outcome,
        output,
        tokens,
        cost,
        model_calls,
        steps,
        limits,
        labels,
        rejected,
        started,
        gates,
        decisions,
        verdicts,
        finished,
        failed,
        model_failed,
        fallbacks,
        latencies,
        proposed,
        called,
        timed_out,
    )


def _harmful(label: str, fault: str | None) -> bool:
    if label in HARMFUL:
        return True
    return (
        label == "repeat" and fault is not None and (fault in HARMFUL or fault == "repeated_call")
    )


@dataclass
class FaultRow:
    """One fault class's line of the accounting."""

    fault: str
    injected: int = 0
    buckets: Counter[str] = field(default_factory=Counter)
    caught_by: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    """For ``ended``: the outcome of each run."""
    tokens: int = 0
    """All tokens of the runs that met this fault."""
    cost_usd: float = 0.0
    waste_tokens: int = 0
    waste_usd: float = 0.0

    @property
    def accounted(self) -> bool:
        """Injected == the sum of the buckets."""
        return self.injected == sum(self.buckets.values())

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON data."""
        return {
            "fault": self.fault,
            "injected": self.injected,
            "buckets": {b: self.buckets.get(b, 0) for b in BUCKETS},
            "bucket_sum": sum(self.buckets.values()),
            "accounted": self.accounted,
            "caught_by": dict(self.caught_by.most_common()),
            "ended": dict(self.ended.most_common()),
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "waste_tokens": self.waste_tokens,
            "waste_usd": round(self.waste_usd, 6),
        }


@dataclass(frozen=True, slots=True)
class Invariant:
    """One invariant: its name, whether it held, and what broke it."""

    name: str
    held: bool
    detail: str = ""


@dataclass
class Accounting:
    """Everything the report shows, computed from the journal, the ledger and the plain loop."""

    runs: int
    wall_s: float
    outcomes: Counter[str]
    rows: dict[str, FaultRow]
    invariants: list[Invariant]
    metrics: dict[str, Any]
    economy: dict[str, Any]
    unguarded: dict[str, Any]
    pass_k: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Every invariant held."""
        return all(i.held for i in self.invariants)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else 0.0,
        "max": max(values) if values else 0.0,
    }


def account(
    profile: Profile,
    records: Sequence[RunRecord],
    ledger: Iterable[LedgerEntry],
    *,
    submitted: int,
    wall_s: float,
    repeat: int,
    unguarded: Sequence[UnguardedRun] = (),
) -> Accounting:
    """Digest the runs, classify every injected fault, check the invariants.

    Args:
        profile: the chaos profile the runs used.
        records: the runs, with their journals.
        ledger: the ledger (tool executions, model answers, faults, answers).
        submitted: how many runs the harness submitted.
        wall_s: the wall-clock time of the guarded runs, seconds.
        repeat: tries per task (``--repeat``).
        unguarded: the same cases through the plain loop.

    Returns:
        The accounting.
    """
    entries = list(ledger)
    runs = [_digest(r) for r in records]
    faults: dict[tuple[str, str], set[str]] = defaultdict(set)
    tools_by_run: dict[str, list[LedgerEntry]] = defaultdict(list)
    answers: dict[tuple[str, str], list[LedgerEntry]] = defaultdict(list)
    models: Counter[tuple[str, int]] = Counter()
    for entry in entries:
        if entry.kind == "fault":
            faults[entry.mode, entry.case].add(entry.fault)
        elif entry.kind == "tool":
            tools_by_run[entry.run_id].append(entry)
        elif entry.kind == "answer":
            answers[entry.mode, entry.case].append(entry)
        elif entry.kind == "model" and entry.mode == "guarded":
            models[entry.case, entry.step] += 1

    good = [r.tokens for r in runs if r.correct and plan_for(profile, r.record.case).fault is None]
    clean = (
        statistics.median(good) if good else min((r.tokens for r in runs if r.correct), default=0)
    )
    rows: dict[str, FaultRow] = {name: FaultRow(name) for name in FAULT_CLASSES}
    outcomes: Counter[str] = Counter()
    total_tokens = sum(r.tokens for r in runs)
    total_cost = sum(r.cost_usd for r in runs)
    waste_total = 0
    for run in runs:
        case = run.record.case
        outcomes[_outcome_label(run)] += 1
        waste = run.tokens if not run.correct else max(0, run.tokens - int(clean))
        waste_total += waste
        fault = plan_for(profile, case).fault
        if fault is None or fault not in faults.get(("guarded", case.tag), set()):
            continue
        row = rows[fault]
        row.injected += 1
        bucket, caught = _classify(run, fault, tools_by_run, answers)
        row.buckets[bucket] += 1
        row.caught_by.update(caught)
        if bucket == "ended":
            row.ended[_outcome_label(run)] += 1
        row.tokens += run.tokens
        row.cost_usd += run.cost_usd
        row.waste_tokens += waste
        if run.tokens:
            row.waste_usd += run.cost_usd * waste / run.tokens

    invariants = _invariants(runs, submitted, tools_by_run, models, rows)
    metrics = _metrics(runs, wall_s)
    economy = {
        "tokens": total_tokens,
        "cost_usd": round(total_cost, 6),
        "clean_run_tokens": clean,
        "waste_tokens": waste_total,
        "waste_share": waste_total / total_tokens if total_tokens else 0.0,
        "waste_usd": round(total_cost * waste_total / total_tokens, 6) if total_tokens else 0.0,
        "by_fault": {
            name: {
                "waste_tokens": row.waste_tokens,
                "share_of_all_tokens": row.waste_tokens / total_tokens if total_tokens else 0.0,
            }
            for name, row in rows.items()
            if row.injected
        },
        "correct_runs": sum(r.correct for r in runs),
    }
    plain = _unguarded_summary(profile, unguarded, entries)
    return Accounting(
        runs=len(runs),
        wall_s=wall_s,
        outcomes=outcomes,
        rows=rows,
        invariants=invariants,
        metrics=metrics,
        economy=economy,
        unguarded=plain,
        pass_k=_pass_k([(r.record.case, r.correct) for r in runs], repeat),
    )


def _outcome_label(run: _Run) -> str:
    if run.status != "finished":
        return run.status
    if run.outcome == "completed":
        return "completed" if run.correct else "completed (wrong answer)"
    return str(run.outcome)


def _classify(
    run: _Run,
    fault: str,
    tools_by_run: Mapping[str, list[LedgerEntry]],
    answers: Mapping[tuple[str, str], list[LedgerEntry]],
) -> tuple[str, list[str]]:
    """The bucket of one run's fault, and the guardrails that caught it."""
    case = run.record.case
    caught: list[str] = []
    for call_id, label in run.labels.items():
        if label in ("ok", "fix"):
            continue
        if call_id in run.rejected:
            caught.append(run.rejected[call_id])
        elif any(f.call_id == call_id and f.final for f in run.failed):
            caught.append("tool error")
    notes = [f for f in run.finished.values() if f.tool == "fetch_notes"]
    for verdict in run.verdicts:
        if verdict.call_id is not None and any(n.call_id == verdict.call_id for n in notes):
            if fault in ("huge_result", "injection") and verdict.decision != "flag":
                caught.append(verdict.guardrail)
    leaked = any(
        _harmful(run.labels.get(e.call_id, "ok"), fault)
        for e in tools_by_run.get(run.record.run_id, [])
    )
    tainted = any(a.fault for a in answers.get(("guarded", case.tag), []))
    if tainted and run.outcome == "completed" and not run.correct:
        leaked = True
    if fault == "huge_result" and any(not n.truncated and n.result_chars > 50_000 for n in notes):
        leaked = True
    if leaked:
        return "leaked", caught
    if fault == "injection":
        for call_id in run.gates:
            decided = run.decisions.get(call_id)
            if run.labels.get(call_id) in ("injection", "repeat") and decided is not None:
                if decided.decision != "approved":
                    caught.append("provenance")
                    return "gate", caught
    if run.outcome == "stopped_breaker":
        return "breaker", caught
    if not run.correct:
        return "ended", caught
    if fault in _PROVIDER:
        return ("retry" if run.model_failed else "absorbed"), caught
    if fault == "tool_hang":
        if any(c in run.finished for c in run.fallbacks):
            return "fallback", caught
        return ("retry" if any(f.will_retry for f in run.failed) else "absorbed"), caught
    if fault in ("huge_result", "injection"):
        withheld = any("withheld" in n.content for n in notes)
        cut = any(n.truncated for n in notes)
        return ("caught" if withheld or cut else "absorbed"), caught
    if fault == "slow":
        return "absorbed", caught
    fixed = any(label == "fix" for label in run.labels.values())
    return ("recovered" if fixed else "absorbed"), caught


def _invariants(
    runs: Sequence[_Run],
    submitted: int,
    tools_by_run: Mapping[str, list[LedgerEntry]],
    models: Counter[tuple[str, int]],
    rows: Mapping[str, FaultRow],
) -> list[Invariant]:
    lost = [
        r.record.run_id or r.record.case.tag
        for r in runs
        if r.status not in ("finished", "waiting")
    ]
    missing = submitted - len(runs)
    lines = [
        Invariant(
            "no run lost",
            not lost and missing == 0,
            f"{len(lost) + missing} run(s) neither finished nor waiting: {', '.join(lost[:5])}"
            if lost or missing
            else f"{len(runs)} of {submitted} runs finished or waiting",
        )
    ]
    over = []
    for r in runs:
        cap = r.limits.get("max_tokens")
        usd = r.limits.get("max_cost_usd")
        calls = r.limits.get("max_tool_calls")
        if (cap is not None and r.tokens > cap) or (usd is not None and r.cost_usd > usd):
            over.append(f"{r.record.run_id}: {r.tokens} tokens, ${r.cost_usd:.4f}")
        elif calls is not None and r.tool_steps > calls:
            over.append(f"{r.record.run_id}: {r.tool_steps} tool calls")
    lines.append(
        Invariant(
            "no budget exceeded",
            not over,
            "; ".join(over[:5]) if over else "tokens, USD and tool calls within each run's limits",
        )
    )
    blocked: list[str] = []
    unjournaled: list[str] = []
    effects: Counter[tuple[str, str]] = Counter()
    by_id = {r.record.run_id: r for r in runs}
    for run_id, entries in tools_by_run.items():
        run = by_id.get(run_id)
        for entry in entries:
            if entry.mode != "guarded":
                continue
            if entry.effect:
                effects[run_id, entry.idempotency_key] += 1
            if run is None:
                unjournaled.append(f"{run_id}/{entry.call_id}")
                continue
            decided = run.decisions.get(entry.call_id)
            if entry.call_id in run.rejected or (
                decided is not None and decided.decision != "approved"
            ):
                blocked.append(
                    f"{run_id}/{entry.call_id} ({entry.tool}, refused by "
                    f"{run.rejected.get(entry.call_id, 'a person')})"
                )
            elif entry.call_id not in run.started:
                unjournaled.append(f"{run_id}/{entry.call_id} ({entry.tool})")
    lines.append(
        Invariant(
            "no blocked tool call executed",
            not blocked,
            "; ".join(blocked[:5])
            if blocked
            else "no tool body ran for a refused call (ledger vs journal)",
        )
    )
    lines.append(
        Invariant(
            "every tool execution journaled before it ran",
            not unjournaled,
            "; ".join(unjournaled[:5])
            if unjournaled
            else "each body execution has its tool_call_started",
        )
    )
    twice = [f"{run}/{key} x{n}" for (run, key), n in effects.items() if n > 1]
    lines.append(
        Invariant(
            "no side effect executed twice for one idempotency key",
            not twice,
            "; ".join(twice[:5]) if twice else f"{len(effects)} side effects, one per key",
        )
    )
    # A model call is repeated when the provider answered a step more often than Corral
    # journaled it, beyond the attempts Corral gave up on (a timeout: the answer may have
    # been sent as the client stopped waiting), or when one step was journaled twice.
    repeated: list[str] = []
    late = 0
    by_case = {r.record.case.tag: r for r in runs}
    for (tag, step), answered in sorted(models.items()):
        run = by_case.get(tag)
        journaled = run.called_steps.get(step, 0) if run is not None else 0
        gave_up = run.timed_out_steps.get(step, 0) if run is not None else 0
        if journaled > 1 or answered > journaled + gave_up:
            repeated.append(f"{tag} step {step}: answered {answered}x, journaled {journaled}x")
        late += max(0, answered - journaled)
    for run in runs:
        for step, n in run.called_steps.items():
            if n > 1 and not models:
                repeated.append(f"{run.record.case.tag} step {step}: journaled {n}x")
    lines.append(
        Invariant(
            "no completed model call repeated",
            not repeated,
            "; ".join(repeated[:5])
            if repeated
            else f"{sum(models.values())} model answers, each journaled once"
            + (f" ({late} sent after the client had timed out)" if late else ""),
        )
    )
    broken = [
        f"{n}: {row.injected} injected, {sum(row.buckets.values())} in buckets"
        for n, row in rows.items()
        if not row.accounted
    ]
    lines.append(
        Invariant(
            "every injected fault accounted for",
            not broken,
            "; ".join(broken)
            if broken
            else f"{sum(r.injected for r in rows.values())} faults, each in exactly one bucket",
        )
    )
    return lines


def _metrics(runs: Sequence[_Run], wall_s: float) -> dict[str, Any]:
    latencies = [r.record.latency_s for r in runs]
    steps = [lat for r in runs for lat in r.step_latencies]
    model_calls = sum(r.model_calls for r in runs)
    tokens = [float(r.tokens) for r in runs]
    costs = [r.cost_usd for r in runs]
    ok = sum(len(r.finished) for r in runs)
    final_failures = sum(1 for r in runs for f in r.failed if f.final)
    proposed = sum(r.proposed for r in runs)
    rejected: Counter[str] = Counter(g for r in runs for g in r.rejected.values())
    verdicts: Counter[str] = Counter(
        f"{v.guardrail}:{v.decision}" for r in runs for v in r.verdicts
    )
    step_counts = [r.tool_steps for r in runs]
    histogram: Counter[str] = Counter()
    for n in step_counts:
        histogram["0-4" if n <= 4 else "5-8" if n <= 8 else "9-14" if n <= 14 else "15+"] += 1
    return {
        "runs_per_s": len(runs) / wall_s if wall_s else 0.0,
        "steps_per_s": model_calls / wall_s if wall_s else 0.0,
        "run_latency_s": _spread(latencies),
        "step_latency_s": _spread(steps),
        "tokens_per_run": _spread(tokens),
        "cost_usd_per_run": _spread(costs),
        "tool_success_rate": ok / (ok + final_failures) if ok + final_failures else 1.0,
        "tool_calls_ran": ok + final_failures,
        "step_count": {**_spread([float(n) for n in step_counts]), "histogram": dict(histogram)},
        "proposed_calls": proposed,
        "rejection_rate_by_guardrail": {
            g: {"rejected": n, "rate": n / proposed if proposed else 0.0}
            for g, n in rejected.most_common()
        },
        "verdicts": dict(verdicts.most_common()),
        "model_calls": model_calls,
    }


def _unguarded_summary(
    profile: Profile,
    runs: Sequence[UnguardedRun],
    entries: Sequence[LedgerEntry],
) -> dict[str, Any]:
    if not runs:
        return {}
    good = [r.tokens for r in runs if r.correct and plan_for(profile, r.case).fault is None]
    clean = (
        statistics.median(good) if good else min((r.tokens for r in runs if r.correct), default=0)
    )
    tools: dict[str, list[LedgerEntry]] = defaultdict(list)
    faults: dict[str, set[str]] = defaultdict(set)
    tainted: set[str] = set()
    for e in entries:
        if e.mode != "unguarded":
            continue
        if e.kind == "tool":
            tools[e.run_id].append(e)
        elif e.kind == "fault":
            faults[e.case].add(e.fault)
        elif e.kind == "answer" and e.fault:
            tainted.add(e.case)
    total = sum(r.tokens for r in runs)
    waste = 0
    by_fault: dict[str, dict[str, Any]] = {}
    for run in runs:
        w = run.tokens if not run.correct else max(0, run.tokens - int(clean))
        waste += w
        fault = plan_for(profile, run.case).fault
        if fault is None or fault not in faults.get(run.case.tag, set()):
            continue
        row = by_fault.setdefault(
            fault,
            {"injected": 0, "leaked": 0, "correct": 0, "failed": 0, "tokens": 0, "waste_tokens": 0},
        )
        row["injected"] += 1
        labels = {
            e.call_id: (call_label(e.call_id) or ("", 0, "ok"))[2]
            for e in tools[f"plain_{run.case.tag}"]
        }
        leaked = any(_harmful(label, fault) for label in labels.values())
        leaked = leaked or run.case.tag in tainted or fault == "huge_result"
        row["leaked" if leaked else "correct" if run.correct else "failed"] += 1
        row["tokens"] += run.tokens
        row["waste_tokens"] += w
    for row in by_fault.values():
        row["share_of_all_tokens"] = row["waste_tokens"] / total if total else 0.0
    return {
        "runs": len(runs),
        "tokens": total,
        "clean_run_tokens": clean,
        "waste_tokens": waste,
        "waste_share": waste / total if total else 0.0,
        "cost_usd": round(sum(r.cost_usd for r in runs), 6),
        "correct_runs": sum(r.correct for r in runs),
        "hit_step_cap": sum(r.output is None for r in runs),
        "by_fault": by_fault,
    }


def _pass_k(results: Sequence[tuple[Case, bool]], repeat: int) -> dict[str, Any]:
    """pass^j for j = 1..k: the chance that j tries of a task all succeed (tau-bench)."""
    if repeat < 1:
        return {}
    tasks: dict[int, list[bool]] = defaultdict(list)
    for case, ok in results:
        tasks[case.index].append(ok)
    out: dict[str, Any] = {"tasks": len(tasks), "k": repeat}
    for j in range(1, repeat + 1):
        values = [comb(sum(oks), j) / comb(len(oks), j) for oks in tasks.values() if len(oks) >= j]
        out[f"pass^{j}"] = statistics.fmean(values) if values else 0.0
    return out
