"""``corral loadtest``: its options and its body (``corral.cli`` registers and dispatches).

Exit codes: 0 when every invariant holds, 1 when one is broken, 2 for a usage or
configuration error (raised as `UsageError` / `ConfigError`, which the CLI prints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..events import Event
    from ._ledger import Ledger

__all__ = ["add_parser", "run"]


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``loadtest`` to the CLI's subcommands.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The command's parser.
    """
    text = "drive the chaos workload through Corral and account for every injected fault"
    p: argparse.ArgumentParser = subparsers.add_parser("loadtest", help=text, description=text)
    p.add_argument("--runs", type=_count, default=100, help="tasks to run (default 100)")
    p.add_argument("--concurrency", type=_count, default=20, help="runs in flight (default 20)")
    p.add_argument(
        "--profile",
        default="production",
        help="production, flaky-provider, hostile, or a TOML file (default production)",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the faults (default 7)")
    p.add_argument(
        "--repeat", type=_count, default=1, help="tries per task, for pass^k (default 1)"
    )
    p.add_argument(
        "--db",
        dest="loadtest_db",
        metavar="URL",
        help="journal (default: a fresh temporary SQLite file)",
    )
    p.add_argument(
        "--server",
        dest="loadtest_server",
        metavar="URL",
        help="drive a running `corral serve --app corral.loadtest:app`",
    )
    p.add_argument(
        "--token",
        dest="loadtest_token",
        help="with --server: API token (submit); default $CORRAL_TOKEN",
    )
    p.add_argument(
        "--approver-token", help="with --server: the token that decides gates (default --token)"
    )
    p.add_argument(
        "--ledger",
        type=Path,
        help="with --server: the ledger file the server writes (its CORRAL_LOADTEST_LEDGER)",
    )
    p.add_argument(
        "--wire",
        choices=["none", "anthropic"],
        default="none",
        help="anthropic: the model behind a loopback socket, through the real adapter",
    )
    p.add_argument("--no-unguarded", action="store_true", help="skip the plain-loop comparison")
    p.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        help="write the whole report as JSON (- for stdout)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


async def run(
    args: argparse.Namespace, *, tap: Callable[[Event, Ledger], None] | None = None
) -> int:
    """Run ``corral loadtest`` from parsed arguments; returns the exit code.

    Args:
        args: the parsed options.
        tap: see `LoadTest.tap` (for tests of the harness itself).

    Raises:
        UsageError: inconsistent options, or a report file that cannot be written.
        ConfigError: a profile that cannot be loaded.
    """
    from rich.console import Console

    from . import LoadTest, load_profile, render_report, report_json, run_loadtest

    profile = load_profile(args.profile)
    server = args.loadtest_server or None
    token = args.loadtest_token or (os.environ.get("CORRAL_TOKEN") if server else None)
    to_stdout = args.json_path == "-"
    options = LoadTest(
        profile=profile,
        runs=args.runs,
        concurrency=args.concurrency,
        seed=args.seed,
        repeat=args.repeat,
        db=args.loadtest_db or getattr(args, "db", None),
        server=server,
        token=token,
        approver_token=args.approver_token,
        ledger_path=args.ledger,
        wire=args.wire,
        unguarded=not args.no_unguarded,
        progress=not args.no_progress and not to_stdout,
        tap=tap,
    )
    result = await run_loadtest(options)
    data = report_json(result)
    if to_stdout:
        print(json.dumps(data, indent=2))
    else:
        if args.json_path:
            try:
                Path(args.json_path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write --json {args.json_path}: {exc.strerror}") from exc
        console = Console(
            highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200
        )
        render_report(result, console)
    return 0 if result.accounting.ok else 1
