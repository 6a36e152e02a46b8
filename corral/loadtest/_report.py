"""The load test's report: rich tables for people, one JSON document for machines.

Sections: throughput and latency; outcomes; the four production metrics (token cost per
run, tool success rate, step-count distribution, guardrail rejection rate by guardrail);
fault accounting (one row per fault class: injected, then each bucket, which must sum to
it); token economy (waste, per fault class, beside the plain loop's); pass^k with
``--repeat``; and the invariants, one line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._accounting import BUCKETS
from ._profiles import FAULT_DESCRIPTIONS

if TYPE_CHECKING:
    from rich.console import Console

    from ._harness import LoadTestResult

__all__ = ["render_report", "report_json"]


def report_json(result: LoadTestResult) -> dict[str, Any]:
    """The whole report as JSON data.

    Args:
        result: what `run_loadtest` returned.

    Returns:
        A JSON-serialisable dict: ``options``, ``metrics``, ``outcomes``, ``faults``,
        ``economy``, ``unguarded``, ``pass_k``, ``invariants`` and ``ok``.
    """
    a = result.accounting
    o = result.options
    return {
        "options": {
            "profile": o.profile.name,
            "runs": o.runs,
            "repeat": o.repeat,
            "concurrency": o.concurrency,
            "seed": o.seed,
            "mode": "server" if o.server else "in-process",
            "wire": o.wire,
        },
        "runs": a.runs,
        "wall_s": round(a.wall_s, 3),
        "metrics": a.metrics,
        "outcomes": dict(a.outcomes.most_common()),
        "faults": [row.as_dict() for row in a.rows.values() if row.injected],
        "economy": a.economy,
        "unguarded": a.unguarded,
        "pass_k": a.pass_k,
        "wire_statuses": {str(k): v for k, v in sorted(result.wire_statuses.items())},
        "invariants": [{"name": i.name, "held": i.held, "detail": i.detail} for i in a.invariants],
        "ok": a.ok,
    }


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def render_report(result: LoadTestResult, console: Console) -> None:
    """Print the report as tables.

    Args:
        result: what `run_loadtest` returned.
        console: where to print (stdout in the CLI).
    """
    from rich.table import Table

    a = result.accounting
    o = result.options
    m = a.metrics
    mode = (
        f"server {o.server}"
        if o.server
        else "in process" + (f", model over {o.wire} wire" if o.wire != "none" else "")
    )
    console.print(
        f"[bold]corral loadtest[/]: profile {o.profile.name}, {a.runs} runs "
        f"({o.runs} tasks x {o.repeat}), concurrency {o.concurrency}, seed {o.seed}, {mode}"
    )
    console.print(
        f"{a.wall_s:.1f} s: {m['runs_per_s']:.1f} runs/s, {m['steps_per_s']:.1f} steps/s "
        f"({m['model_calls']} model calls)"
    )

    lat = Table(title="Latency (s)", title_justify="left")
    for col in ("", "p50", "p95", "p99", "max"):
        lat.add_column(col, justify="right" if col else "left")
    for label, key in (("run", "run_latency_s"), ("step", "step_latency_s")):
        d = m[key]
        lat.add_row(label, *(f"{d[q]:.3f}" for q in ("p50", "p95", "p99", "max")))
    console.print(lat)

    out = Table(title="Outcomes", title_justify="left")
    out.add_column("outcome")
    out.add_column("runs", justify="right")
    out.add_column("share", justify="right")
    for name, n in a.outcomes.most_common():
        out.add_row(name, str(n), _pct(n / a.runs if a.runs else 0))
    console.print(out)

    prod = Table(title="Production metrics", title_justify="left")
    prod.add_column("metric")
    prod.add_column("value", justify="right")
    tok, usd, steps = m["tokens_per_run"], m["cost_usd_per_run"], m["step_count"]
    prod.add_row(
        "tokens per run (p50 / p95 / mean)",
        f"{tok['p50']:.0f} / {tok['p95']:.0f} / {tok['mean']:.0f}",
    )
    prod.add_row("USD per run (mean / p95)", f"{usd['mean']:.5f} / {usd['p95']:.5f}")
    prod.add_row(
        "tool success rate", f"{_pct(m['tool_success_rate'])} of {m['tool_calls_ran']} calls run"
    )
    histogram = ", ".join(f"{k}: {v}" for k, v in sorted(steps["histogram"].items()))
    prod.add_row(
        "tool calls per run (p50 / p95 / max)",
        f"{steps['p50']:.0f} / {steps['p95']:.0f} / {steps['max']:.0f}",
    )
    prod.add_row("step-count distribution", histogram)
    for guardrail, d in m["rejection_rate_by_guardrail"].items():
        prod.add_row(
            f"rejected by {guardrail}",
            f"{d['rejected']} ({_pct(d['rate'])} of {m['proposed_calls']} proposed)",
        )
    console.print(prod)

    faults = Table(
        title="Fault accounting (each injected fault in exactly one bucket)", title_justify="left"
    )
    faults.add_column("fault")
    faults.add_column("injected", justify="right")
    for bucket in BUCKETS:
        faults.add_column(bucket, justify="right")
    faults.add_column("sum", justify="right")
    faults.add_column("caught by / ended with")
    faults.add_column("tokens", justify="right")
    faults.add_column("waste", justify="right")
    faults.add_column("waste USD", justify="right")
    for row in a.rows.values():
        if not row.injected:
            continue
        detail = ", ".join(f"{k} {v}" for k, v in row.caught_by.most_common(3))
        if row.ended:
            ended = ", ".join(f"{k} {v}" for k, v in row.ended.most_common(3))
            detail = f"{detail}; ended: {ended}" if detail else f"ended: {ended}"
        total = sum(row.buckets.values())
        faults.add_row(
            row.fault,
            str(row.injected),
            *(str(row.buckets.get(b, 0) or "") for b in BUCKETS),
            f"{total}" + ("" if row.accounted else " (!)"),
            detail,
            f"{row.tokens:,}",
            f"{row.waste_tokens:,}",
            f"{row.waste_usd:.4f}",
        )
    console.print(faults)

    e = a.economy
    u = a.unguarded
    eco = Table(title="Token economy", title_justify="left")
    eco.add_column("")
    eco.add_column("Corral", justify="right")
    eco.add_column("plain loop", justify="right")
    eco.add_row("tokens", f"{e['tokens']:,}", f"{u.get('tokens', 0):,}" if u else "-")
    eco.add_row("USD", f"{e['cost_usd']:.4f}", f"{u.get('cost_usd', 0):.4f}" if u else "-")
    eco.add_row(
        "correct answers",
        f"{e['correct_runs']} of {a.runs}",
        f"{u.get('correct_runs', 0)} of {u.get('runs', 0)}" if u else "-",
    )
    eco.add_row(
        "clean run (tokens)",
        f"{e['clean_run_tokens']:.0f}",
        f"{u.get('clean_run_tokens', 0):.0f}" if u else "-",
    )
    eco.add_row(
        "[bold]waste[/]",
        f"[bold]{_pct(e['waste_share'])}[/] ({e['waste_tokens']:,})",
        f"[bold]{_pct(u['waste_share'])}[/] ({u['waste_tokens']:,})" if u else "-",
    )
    names = sorted(set(e["by_fault"]) | set(u.get("by_fault", {})))
    for name in names:
        ours = e["by_fault"].get(name)
        theirs = u.get("by_fault", {}).get(name) if u else None
        eco.add_row(
            f"  waste from {name}",
            _pct(ours["share_of_all_tokens"]) if ours else "-",
            (
                _pct(theirs["share_of_all_tokens"])
                + (f", {theirs['leaked']} leaked" if theirs["leaked"] else "")
            )
            if theirs
            else "-",
        )
    if u:
        eco.add_row("plain runs at the 50-step cap", "", str(u.get("hit_step_cap", 0)))
    console.print(eco)

    if o.repeat > 1:
        pk = Table(title=f"pass^k over {a.pass_k.get('tasks', 0)} tasks", title_justify="left")
        pk.add_column("k")
        pk.add_column("pass^k", justify="right")
        for j in range(1, o.repeat + 1):
            pk.add_row(str(j), f"{a.pass_k.get(f'pass^{j}', 0.0):.3f}")
        console.print(pk)

    if result.wire_statuses:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(result.wire_statuses.items()))
        console.print(f"loopback provider answers by HTTP status: {shown}")

    console.print("[bold]Invariants[/]")
    for inv in a.invariants:
        mark = "[green]held[/]  " if inv.held else "[red]BROKEN[/]"
        console.print(f"  {mark} {inv.name}: {inv.detail}", highlight=False)
    legend = "; ".join(f"{k}: {v}" for k, v in FAULT_DESCRIPTIONS.items() if a.rows[k].injected)
    if legend:
        console.print(f"[dim]fault classes: {legend}[/]")
