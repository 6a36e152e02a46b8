"""Run every benchmark and print one table of every figure and its target (``make bench``).

Runs each ``benchmarks/bench_*.py`` and then ``compare.py`` as its own process, one after
another (each prints its own lines as it goes), with ``CORRAL_BENCH_TABLE`` naming one
file the figures are appended to, then prints the table (``_table.py``): each figure,
its target, and ``met``, ``NOT met`` or ``not measured``. A figure that misses its
target does not fail the run (it is a measurement, reported); a benchmark that fails
does: the table of what was recorded is still printed, and the exit status is 1.

Run: ``python benchmarks/run_all.py [--quick] [--table FILE] [--only NAME ...]``.
``--quick`` passes ``--quick`` to every benchmark (the ones that have a smoke scale use
it; the others run as usual); ``--table`` keeps the figures in FILE (default: a
temporary file, removed afterwards); ``--only`` runs just the named scripts
(``bench_core``, ``compare``...).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import ENV, load, render  # noqa: E402

HERE = Path(__file__).resolve().parent


def scripts(only: Sequence[str] = ()) -> list[Path]:
    """The benchmarks in the order they run: every ``bench_*.py`` by name, then ``compare.py``.

    Args:
        only: script names (with or without ``.py``) to keep; empty: all.

    Raises:
        SystemExit: a name in `only` names no benchmark.
    """
    every = [*sorted(HERE.glob("bench_*.py")), HERE / "compare.py"]
    if not only:
        return every
    wanted = {name.removesuffix(".py") for name in only}
    unknown = wanted - {path.stem for path in every}
    if unknown:
        raise SystemExit(f"no benchmark named {', '.join(sorted(unknown))}")
    return [path for path in every if path.stem in wanted]


def run(paths: Sequence[Path], table: Path, *, quick: bool) -> list[str]:
    """Run each benchmark with the figures going to `table`; returns those that failed."""
    failed = []
    env = {**os.environ, ENV: str(table)}
    for path in paths:
        print(f"== {path.relative_to(HERE.parent)}", flush=True)
        start = time.perf_counter()
        command = [sys.executable, str(path), *(["--quick"] if quick else [])]
        status = subprocess.run(command, env=env, check=False).returncode
        took = time.perf_counter() - start
        print(
            f"   ({took:.0f} s" + (f", FAILED with status {status})" if status else ")"), flush=True
        )
        if status:
            failed.append(path.stem)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke scale where a benchmark has one"
    )
    parser.add_argument("--table", type=Path, help="keep the figures (JSON lines) in this file")
    parser.add_argument("--only", nargs="+", default=[], help="run only these benchmarks")
    args = parser.parse_args(argv)
    paths = scripts(args.only)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = args.table if args.table is not None else Path(tmp) / "figures.jsonl"
        if table.exists():
            table.unlink()
        failed = run(paths, table, quick=args.quick)
        figures = load(table)
    print()
    print(
        f"== every figure and its target ({len(paths)} benchmarks, {time.perf_counter() - start:.0f} s)"
    )
    print(render(figures) if figures else "no figures recorded")
    if failed:
        print(f"\nbenchmarks that FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
