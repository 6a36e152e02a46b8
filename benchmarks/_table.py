"""One table of every benchmark figure and its target, printed at the end of ``make bench``.

Each benchmark prints its own lines as it goes and also calls `record` for each headline
figure. When the environment variable ``CORRAL_BENCH_TABLE`` names a file (``run_all.py``
sets it), `record` appends the figure to it as one JSON line; otherwise it does nothing,
so a benchmark run on its own behaves as before. ``python benchmarks/_table.py FILE``
prints the table of a file's figures.

A figure's target is a comparison (``<=``, ``>=``, ``<`` or ``>``) with a bound, or none;
its status is ``met`` or ``NOT met`` (or empty without a target). A figure that could not
be measured (a peer of ``compare.py`` not installed) has no value and the status ``not
measured``, with the reason in its note (`missing`). A figure measured under a quick run
is marked as such: quick figures are only a smoke test.
"""

from __future__ import annotations

import json
import operator
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ENV = "CORRAL_BENCH_TABLE"
"""The environment variable naming the file figures are appended to."""

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, as the table shows it."""

    bench: str
    """The benchmark that measured it (``bench_durable``, ``compare``...)."""
    name: str
    """What it is, in words."""
    value: float | None
    """The measured value; None: not measured (the note says why)."""
    unit: str
    op: str = ""
    """How the value must compare with `bound` (``<=``, ``>=``, ``<``, ``>``), or empty."""
    bound: float | None = None
    note: str = ""
    """Anything the reader must know to read it (what flatters it, which mode)."""
    quick: bool = False

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target or without a value."""
        if not self.op or self.bound is None or self.value is None:
            return None
        return _COMPARE[self.op](self.value, self.bound)


def is_quick(argv: Sequence[str] | None = None) -> bool:
    """True when the benchmark was asked for a tiny smoke-test scale (``--quick``)."""
    return "--quick" in (sys.argv[1:] if argv is None else argv)


def record(
    bench: str,
    name: str,
    value: float,
    unit: str,
    *,
    target: tuple[str, float] | None = None,
    note: str = "",
    quick: bool = False,
) -> Figure:
    """Keep a figure for the final table (when ``CORRAL_BENCH_TABLE`` is set) and return it.

    Args:
        bench: the benchmark's name.
        name: what the figure is.
        value: the measured value.
        unit: its unit (``steps/s``, ``us/step``, ``MB``, ``B/run``, ``s``, ``x``).
        target: ``(op, bound)``, e.g. ``("<=", 60)``; None: no target.
        note: a short note shown beside it.
        quick: measured at smoke-test scale.

    Returns:
        The figure.

    Raises:
        ValueError: an unknown comparison in `target`.
    """
    op, bound = target if target is not None else ("", None)
    if op and op not in _COMPARE:
        raise ValueError(f"unknown comparison {op!r}; use one of {sorted(_COMPARE)}")
    return _keep(Figure(bench, name, float(value), unit, op, bound, note, quick))


def record_missing(
    bench: str,
    name: str,
    unit: str,
    reason: str,
    *,
    target: tuple[str, float] | None = None,
    quick: bool = False,
) -> Figure:
    """Keep a figure that could not be measured, with the reason shown in its note.

    Args:
        bench: the benchmark's name.
        name: what the figure would be.
        unit: its unit.
        reason: why it was not measured, and how to measure it (``pip install ...``).
        target: the target it would have been judged against, if any.
        quick: the run was at smoke-test scale.

    Returns:
        The figure (no value; its status is ``not measured``).

    Raises:
        ValueError: an unknown comparison in `target`.
    """
    op, bound = target if target is not None else ("", None)
    if op and op not in _COMPARE:
        raise ValueError(f"unknown comparison {op!r}; use one of {sorted(_COMPARE)}")
    return _keep(Figure(bench, name, None, unit, op, bound, reason, quick))


def _keep(figure: Figure) -> Figure:
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(figure)) + "\n")
    return figure


def load(path: str | os.PathLike[str]) -> list[Figure]:
    """Read the figures a run appended to `path` (none if it does not exist)."""
    file = Path(path)
    if not file.exists():
        return []
    lines = file.read_text(encoding="utf-8").splitlines()
    return [Figure(**json.loads(line)) for line in lines if line.strip()]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("x", "s", "MB", "KB/run") or abs(value) < 10:
        text = f"{value:,.2f}"
    elif abs(value) < 100:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}"


def render(figures: Sequence[Figure]) -> str:
    """The table, as fixed-width text: benchmark, figure, value, target, status, note."""
    header = ("benchmark", "figure", "value", "target", "status", "note")
    rows = [header]
    for f in figures:
        target = f"{f.op} {_number(f.bound, f.unit)}" if f.op and f.bound is not None else ""
        status = _status(f)
        note = f"QUICK (smoke scale); {f.note}" if f.quick else f.note
        rows.append((f.bench, f.name, _number(f.value, f.unit), target, status, note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i != 2 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells + [row[5]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    met = sum(1 for f in figures if f.met is True)
    missed = [f for f in figures if f.met is False]
    absent = sum(1 for f in figures if f.value is None)
    targets = sum(1 for f in figures if f.op and f.value is not None)
    lines.append("")
    lines.append(
        f"{len(figures)} figures, {targets} measured with a target: {met} met, "
        f"{len(missed)} NOT met"
        + (": " + "; ".join(f"{f.bench} {f.name.strip()}" for f in missed) if missed else "")
        + (f"; {absent} not measured" if absent else "")
        + (
            "; QUICK run: smoke scale, the figures mean nothing"
            if any(f.quick for f in figures)
            else ""
        )
    )
    return "\n".join(lines)


def _status(figure: Figure) -> str:
    if figure.value is None:
        return "not measured"
    return {None: "", True: "met", False: "NOT met"}[figure.met]


def main(argv: Sequence[str]) -> int:
    """Print the table of the figures in the file `argv[0]`."""
    if len(argv) != 1:
        print("usage: python benchmarks/_table.py FIGURES.jsonl", file=sys.stderr)
        return 2
    figures = load(argv[0])
    if not figures:
        print(f"no figures recorded in {argv[0]}", file=sys.stderr)
        return 1
    print(render(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
