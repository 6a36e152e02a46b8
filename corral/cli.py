"""The ``corral`` command line: run the demo, route and run one task.

Exit codes: 0 when the run completed, 1 when it ended with another outcome, 2 for a usage
or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from ._runtime import RunResult, Runtime
from ._task import Task
from .errors import CorralError
from .events import EventAdapter

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral", description="Corral: a supervised runtime for LLM agents."
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="run the invoice-reconciliation demo and print its trail"
    )
    demo.add_argument("--json", action="store_true", help="print the result and events as JSON")

    run = sub.add_parser("run", help="route one task through the demo agents and run it")
    run.add_argument("text", help="the task, in words")
    run.add_argument("--kind", help="task kind routing rules can match (e.g. billing)")
    run.add_argument("--tag", action="append", default=[], help="task tag (repeatable)")
    run.add_argument("--routes", type=Path, help="routing rules from a TOML file")
    run.add_argument("--json", action="store_true", help="print the result and events as JSON")
    run.add_argument("--explain", action="store_true", help="print the routing explanation")
    return parser


def _result_json(result: RunResult) -> str:
    payload: dict[str, Any] = {
        "result": {
            "run_id": result.run_id,
            "agent": result.agent,
            "outcome": result.outcome,
            "output": result.output,
            "reason": result.reason,
            "steps": result.steps,
            "model_calls": result.model_calls,
            "tokens": result.tokens,
            "cost_usd": result.cost_usd,
            "duration_s": result.duration_s,
        },
        "events": [EventAdapter.dump_python(e, mode="json") for e in result.events],
    }
    return json.dumps(payload, indent=2)


async def _run_task(task: Task, *, as_json: bool, routes: Path | None, explain: bool) -> int:
    from .demo import billing_agent, demo_router, support_agent
    from .router import Router

    router = Router.from_toml(routes) if routes is not None else demo_router()
    if explain and not as_json:
        print(router.explain(task))
    async with Runtime(agents=[billing_agent(), support_agent()], router=router) as runtime:
        if not as_json:
            from rich.console import Console

            from .observability import TrailWriter

            runtime.subscribe(TrailWriter(Console(highlight=False)))
        result = await runtime.run(task)
    if as_json:
        print(_result_json(result))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import DEMO_TASK

            if not args.json:
                print("Corral demo: invoice reconciliation with a scripted model (no API key needed).")
            task = Task(text=DEMO_TASK, kind="billing")
            return anyio.run(
                lambda: _run_task(task, as_json=args.json, routes=None, explain=False)
            )
        if args.command == "run":
            task = Task(text=args.text, kind=args.kind, tags=frozenset(args.tag))
            return anyio.run(
                lambda: _run_task(task, as_json=args.json, routes=args.routes, explain=args.explain)
            )
    except CorralError as exc:
        print(f"corral: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
