"""The bodies of ``corral replay`` (``corral export`` is ``corral runs export``).

``corral replay RUN_ID|run.json [--app module:factory]`` replays one recorded run: from
an export file, from the journal (``--db``), or from a service (``--server``, through its
export endpoint). ``corral replay --since 7d [--until ...] [--agent A] [--outcome O]
[--limit N]`` replays a window of the journal's runs and prints a summary. Both read the
limits from the settings (``--config``) and the agents, router and guards from ``--app``.
Exit code 0: no divergence; 1: some run diverged; 2: a usage error.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from .._views import iso
from ..cli import _client, _journal, _json_out, _print_json, _print_table, _server
from ..errors import UsageError
from ..runtime import App, load_app
from ..runtime._app import DEFAULT_APP
from ._cassette import Cassette
from ._play import replay, replay_window
from ._report import ReplayReport, WindowReport

__all__ = ["cmd_replay", "parse_when"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_when(value: str, *, option: str, now: float) -> float:
    """A point in time from ``7d`` (that long before `now`: s, m, h, d, w) or ISO 8601.

    Args:
        value: the option's value.
        option: its name, for the error.
        now: the current time, Unix seconds.

    Returns:
        Unix seconds.

    Raises:
        UsageError: neither a duration nor an ISO 8601 date or time.
    """
    found = _DURATION.match(value)
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r}: give a duration before now (30m, 12h, 7d, 2w) or an "
            "ISO 8601 date or time (2026-11-25, 2026-11-25T08:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def cmd_replay(args: argparse.Namespace) -> int:
    """``corral replay``: one run (RUN_ID or an export file), or a window (``--since``).

    Returns:
        0 when nothing diverged, 1 when a run diverged.

    Raises:
        UsageError: a bad combination of options, a file that is not an export, a run
            the journal lacks, an application that cannot be imported.
    """
    window = [f"--{n}" for n in ("until", "agent", "outcome", "limit") if getattr(args, n)]
    if args.since is None and args.source is None:
        raise UsageError("give a RUN_ID or an export file to replay, or --since for a window")
    if args.since is not None and args.source is not None:
        raise UsageError("give a RUN_ID (or an export file) or --since, not both")
    if args.source is not None and window:
        raise UsageError(f"{', '.join(window)} select runs for --since; drop them or add it")
    application = load_app(args.app or DEFAULT_APP)
    if args.since is not None:
        return await _window(args, application)
    cassette = await _cassette(args, args.source)
    report = await replay(cassette, app=application, settings=args.settings)
    if _json_out(args):
        _print_json(report.to_json())
    else:
        print(report.explain())
    return 1 if report.diverged else 0


async def _cassette(args: argparse.Namespace, source: str) -> Cassette:
    """The recorded run a RUN_ID or a file names."""
    path = Path(source)
    if path.suffix.lower() == ".json" or path.exists():
        return Cassette.from_file(path)
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            document = await client.export(source)
        return Cassette.from_export(document, source=f"the export of run {source} from {url}")
    async with _journal(args, must_exist=True) as journal:
        return await Cassette.from_journal(journal, source)


async def _window(args: argparse.Namespace, application: App) -> int:
    if args.server is not None:
        raise UsageError(
            "`corral replay --since` reads the journal: drop --server and give --db "
            "(replay one run through a service with `corral --server URL replay RUN_ID`)"
        )
    now = time.time()
    since = parse_when(args.since, option="--since", now=now)
    until = parse_when(args.until, option="--until", now=now) if args.until else None
    async with _journal(args, must_exist=True) as journal:
        found = await replay_window(
            journal,
            app=application,
            settings=args.settings,
            since=since,
            until=until,
            agents=[args.agent] if args.agent else None,
            outcome=args.outcome,
            limit=args.limit,
        )
    if _json_out(args):
        document = found.to_json()
        document["since"], document["until"] = iso(since), iso(until) if until else None
        _print_json(document)
    else:
        _print_window(found, since, until)
    return 1 if found.diverged else 0


def _print_window(found: WindowReport, since: float, until: float | None) -> None:
    print(f"runs created from {iso(since)} to {iso(until) if until else 'now'}")
    if found.reports:
        rows = [
            [r.run_id, r.agent, _end(r, recorded=True), _end(r, recorded=False), _kinds(r)]
            for r in found.reports
        ]
        _print_table(["RUN ID", "AGENT", "RECORDED", "REPLAYED", "DIVERGENCES"], rows, cut={4})
    print(found.explain())


def _end(report: ReplayReport, *, recorded: bool) -> str:
    summary = report.recorded if recorded else report.replayed
    return str(summary.get("outcome") or summary.get("status") or "-")


def _kinds(report: ReplayReport) -> str:
    return ", ".join(report.kinds) or "none"
