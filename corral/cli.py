"""The ``corral`` command line: runs, gates and deliveries, on the journal or through a service.

Global options come before the command, as with ``temporal`` and ``dbos``
(``corral --db sqlite:///ops.db runs list``); they are accepted after it too::

    --db URL        the journal (default: the settings' db: $CORRAL_DB, corral.toml's db,
                    else sqlite:///corral.db)
    --server URL    talk to a running `corral serve` instead of the journal (default
                    $CORRAL_SERVER_URL, unless --db is given)
    --token T       its API token (default $CORRAL_TOKEN); --token-file PATH reads it
                    from a file, which keeps it out of the process list
    -o json|table   what stdout carries (default table); ``--json`` is the old spelling
    --config PATH   the settings file (default $CORRAL_CONFIG, else ./corral.toml)

Commands::

    demo                          the invoice scenario, driven here; stops at its gates
    run TEXT                      route one task and drive it here (with --server: submit)
    runs list | show | cancel | export
    approvals list                gates waiting for a person
    approve GATE_ID|--all --as WHO    record a decision and return at once
    reject GATE_ID --as WHO --reason R
    deliver KEY [--payload JSON]  an external event (a webhook by hand)
    resume [--wait S]             drive every unfinished run here, --wait seconds at most
    store vacuum [--dry-run]      prune old finished runs and compact
    serve                         the HTTP API and a runtime driving runs (`corral.server`)
    trace RUN_ID                  a run's reasoning, as a tree
    export RUN_ID [FILE]          the same as ``runs export``
    replay RUN_ID|FILE | --since 7d   re-run recorded runs against the current code

Deciding is a journal write (or an API call) that returns at once: ``approve``,
``reject``, ``deliver`` and ``runs cancel`` drive nothing. They use a `Runtime` that is
never started, so its ``approve``/``reject``/``deliver`` record the decision and wake
nothing here; whatever process drives the run continues it (a ``corral serve``, a
`Runtime` polling the journal, or ``corral resume``), and the command says which. The
application (``--app``) is loaded only to check edited arguments against the tool's
schema. ``runs cancel`` ends a waiting run, or one nobody drives, by claiming its lease
and journaling its end (`Runtime.cancel` stops only runs its own process drives); a run
another live process drives is refused with the way to cancel it there.

Commands that only read (``runs list|show|export``, ``approvals list``, ``trace``,
``store vacuum``, and the decisions, which need gates to decide) never create a journal:
a mistyped ``--db`` is an error, not a new empty database.

Settings are read once, by `corral.load_settings` (the loader `Runtime.from_settings`
uses too). A broken file or value is refused before anything runs:
``corral: ConfigError: corral.toml: limits.max_tokens: Input should be greater than 0``.
Corral's own logs go to stderr from ``CORRAL_LOG_LEVEL`` up (default ``warning``);
stdout carries only results (with ``-o json``, only JSON). Tables have headers, one row
per line, ISO 8601 UTC times (``2026-12-02T04:05:06Z``), and long values cut with an
ellipsis rather than wrapped; piped, they are 160 columns wide (``COLUMNS`` overrides).

Exit codes: 0 success (a run completed, waits at a gate, or was left to the process
that drives it; a decision was recorded); 1 a run ended with another outcome, was still
running after ``--wait``, or could not be cancelled here; the service failed or could
not be reached; 2 a usage or configuration error, or a request the service refused
(4xx); 130 interrupted (Ctrl-C: what was journaled stays resumable); 141 stdout was
closed early (``corral runs list | head -1``), the code a shell gives a program killed by
SIGPIPE, reached without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shlex
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from . import __version__
from ._client import Client, ServiceError
from ._log import ROOT_LOGGER, get_logger
from ._settings import Settings, config_path, load_settings
from ._task import Task
from ._views import GateView, RunSummary, RunView, iso
from .errors import ConfigError, CorralError, UsageError
from .events import Event, EventAdapter, WaitStarted
from .runtime import App, Durability, RunResult, Runtime, load_app
from .runtime._app import DEFAULT_APP
from .store import GateRecord, Journal, RunInfo, journal_from_url
from .subagents import RunState

__all__ = ["main"]

log = get_logger("corral.cli")

FOLLOW_S = 300.0
"""How long `corral resume` follows the runs it continues, by default (s)."""
EXIT_PIPE = 141
"""The exit code when stdout is closed early: 128 + SIGPIPE, as a shell reports it."""
PIPE_WIDTH = 160
"""Width of tables when stdout is not a terminal (``COLUMNS`` overrides)."""
LIST_LIMIT = 50
"""Runs `corral runs list` shows by default."""
_PAGE = 500
"""Runs read per journal query when counting (`store vacuum --dry-run`)."""
_CANCEL_LEASE_S = 60.0
"""How long `runs cancel` holds a run's lease while it journals the run's end."""
_EXTRA = "the server needs its extra: pip install 'corral[server]'"
_GAP = 2
"""Spaces between table columns (rich's padding of one on each side)."""
_MIN_FLEX = 12
"""The narrowest a cut column is made."""


# -- the parser --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Corral: a supervised runtime for LLM agents.",
        epilog="Global options go before the command: corral --db sqlite:///ops.db runs list",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text)
        _globals(p, top=False)
        return p

    def with_app(p: argparse.ArgumentParser, text: str) -> argparse.ArgumentParser:
        p.add_argument("--app", default=DEFAULT_APP, help=f"{text} (default {DEFAULT_APP})")
        return p

    demo = command(sub, "demo", "run the invoice-reconciliation demo here")
    demo.add_argument("--model", help="e.g. anthropic:claude-sonnet-5-5 (needs its API key)")

    run = command(sub, "run", "route one task and drive it here (with --server: submit it)")
    with_app(run, "the application, module:factory")
    run.add_argument("text", help="the task, in words")
    run.add_argument("--kind", help="task kind routing rules can match (e.g. billing)")
    run.add_argument("--tag", action="append", default=[], help="task tag (repeatable)")
    run.add_argument("--tenant", help="who pays (default: default)")
    run.add_argument("--agent", help="skip routing: use this agent")
    run.add_argument("--routes", type=Path, help="routing rules from a TOML file")
    run.add_argument("--explain", action="store_true", help="print the routing explanation")
    run.add_argument("--idempotency-key", help="with --server: a retried submission is one run")

    runs = sub.add_parser("runs", help="list, show, cancel or export runs")
    runs_sub = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    runs_list = command(runs_sub, "list", "list runs, newest first")
    runs_list.add_argument("--status", choices=["running", "waiting", "finished"])
    runs_list.add_argument("--outcome", help="completed, failed, cancelled, stopped_budget...")
    runs_list.add_argument("--agent", help="only this agent's runs")
    runs_list.add_argument("--tenant", help="only this tenant's runs")
    runs_list.add_argument("--limit", type=_positive_int, default=LIST_LIMIT)
    runs_list.add_argument("--cursor", help="the next page: the cursor the previous one gave")
    runs_show = command(runs_sub, "show", "one run: where it stands, then its trail")
    runs_show.add_argument("run_id")
    runs_cancel = command(runs_sub, "cancel", "stop a run now (waiting, or driven nowhere)")
    runs_cancel.add_argument("run_id")
    runs_cancel.add_argument("--reason", help="why (journaled with the run's end)")
    runs_export = command(runs_sub, "export", "a run and all its events, as one JSON document")
    runs_export.add_argument("run_id")
    runs_export.add_argument("--file", type=Path, help="write it here (default: stdout)")

    approvals = sub.add_parser("approvals", help="gates waiting for a person")
    approvals_sub = approvals.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(approvals_sub, "list", "list open gates, oldest first")

    deprecated_wait = "ignored: deciding returns at once (`corral resume --wait S` drives runs)"
    approve = command(sub, "approve", "approve a gate: recorded at once, the run goes on")
    with_app(approve, "the application, to check edited --args against the tool")
    approve.add_argument("gate_id", nargs="?", help="the gate (or --all)")
    approve.add_argument("--all", action="store_true", help="approve every open gate")
    approve.add_argument(
        "--as", dest="by", metavar="NAME", help="who approves (recorded; required)"
    )
    approve.add_argument("--note", default="", help="why, for the audit trail")
    approve.add_argument("--args", help="edited arguments, as a JSON object")
    approve.add_argument(
        "--happened",
        action="store_true",
        help="for a call in doubt after a crash: it did take effect (it is not run again)",
    )
    approve.add_argument("--result", help="with --happened: what the call returned, as JSON")
    approve.add_argument("--wait", type=float, metavar="S", help=deprecated_wait)

    reject = command(sub, "reject", "reject a gate: recorded at once, the model is told")
    with_app(reject, "the application (not needed to reject)")
    reject.add_argument("gate_id")
    reject.add_argument("--as", dest="by", metavar="NAME", help="who rejects (recorded; required)")
    reject.add_argument("--reason", required=True, help="why (the model is told)")
    reject.add_argument("--wait", type=float, metavar="S", help=deprecated_wait)

    deliver = command(sub, "deliver", "deliver an external event to the run waiting on KEY")
    with_app(deliver, "the application (not needed to deliver)")
    deliver.add_argument("key", help="the correlation key a run waits on")
    deliver.add_argument("--payload", default="null", help="the event, as JSON")
    deliver.add_argument("--wait", type=float, metavar="S", help=deprecated_wait)

    resume = command(sub, "resume", "drive every unfinished run here, for --wait s at most")
    with_app(resume, "the application whose runs to drive, module:factory")
    resume.add_argument(
        "--wait",
        type=float,
        default=FOLLOW_S,
        help=f"seconds to follow the runs (default {FOLLOW_S:g}); they stay resumable after",
    )

    store = sub.add_parser("store", help="journal maintenance")
    store_sub = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    vacuum = command(store_sub, "vacuum", "prune old finished runs and compact")
    vacuum.add_argument("--older-than-days", type=float, default=30.0)
    vacuum.add_argument("--dry-run", action="store_true", help="count them; change nothing")

    serve = command(sub, "serve", "serve the HTTP API, with a runtime driving runs")
    serve.add_argument("--app", help=f"the application, module:factory (default {DEFAULT_APP})")
    serve.add_argument("--host", help="listen on this address (default: server.host, 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, help="listen on this port, 0 for any (default: server.port, 8000)"
    )

    mcp = sub.add_parser("mcp", help="Model Context Protocol servers")
    mcp_sub = mcp.add_subparsers(dest="action", required=True, metavar="ACTION")
    mcp_tools = command(mcp_sub, "tools", "an MCP server's tools, the level each gets, and why")
    mcp_tools.add_argument(
        "spec",
        metavar="SERVER",
        help='a command line ("python -m mcp_server_time") or an http(s) URL',
    )

    trace = command(sub, "trace", "a run's reasoning, as a tree")
    trace.add_argument("run_id")

    workers = command(sub, "workers", "the worker processes on the journal, and their leases")
    workers.add_argument(
        "--within",
        type=float,
        metavar="S",
        help="seen in the last S seconds (default: one lease, durability.lease_s)",
    )

    export = command(sub, "export", "a run and all its events, as one JSON document")
    export.add_argument("run_id")
    export.add_argument("file", nargs="?", type=Path, help="write it here (default: stdout)")

    replay = command(sub, "replay", "re-run recorded runs against the current code, in memory")
    with_app(replay, "the application the runs meet now, module:factory")
    replay.add_argument("source", nargs="?", metavar="RUN_ID|FILE", help="a run, or its export")
    replay.add_argument("--since", help="replay the runs created since: 7d, 12h, or ISO 8601")
    replay.add_argument("--until", help="with --since: only runs created before this")
    replay.add_argument("--agent", help="with --since: only this agent's runs")
    replay.add_argument("--outcome", help="with --since: only runs that ended this way")
    replay.add_argument("--limit", type=_positive_int, help="with --since: at most N runs")

    from .memory._command import add_memory_commands  # argparse only: cheap to import

    add_memory_commands(sub, command)

    token = sub.add_parser("token", help="API tokens for corral serve")
    token_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    token_new = command(token_sub, "new", "make a token: the token once, and its settings entry")
    token_new.add_argument("name", help="who holds it (recorded as the approver, the submitter)")
    token_new.add_argument(
        "--role",
        dest="roles",
        action="append",
        choices=["read", "submit", "approve", "admin"],
        required=True,
        help="what it may do (repeatable)",
    )
    from .loadtest._command import add_parser as add_loadtest  # its own options and body

    add_loadtest(sub)
    return parser


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options: documented on `corral`, accepted (hidden) after a command too."""

    def text(words: str) -> str:
        return words if top else argparse.SUPPRESS

    unset: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--db",
        metavar="URL",
        default=unset,
        help=text("journal URL (default: the settings' db, $CORRAL_DB)"),
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        default=unset,
        help=text("URL of a running `corral serve` (default $CORRAL_SERVER_URL unless --db)"),
    )
    parser.add_argument("--token", default=unset, help=text("API token (default $CORRAL_TOKEN)"))
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        default=unset,
        help=text("read the API token from this file"),
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table" if top else argparse.SUPPRESS,
        help=text("what stdout carries (default table)"),
    )
    parser.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        default=argparse.SUPPRESS,
        help="same as -o json (deprecated)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        default=unset,
        help=text("settings file (default $CORRAL_CONFIG, else ./corral.toml)"),
    )


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {number}")
    return number


# -- the process: settings, logging, stdout ----------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to the current `sys.stderr` (tests and daemons replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(level: str) -> Callable[[], None]:
    """Send Corral's logs (the ``corral`` logger) to stderr from `level` up.

    Only the ``corral`` logger is touched, never structlog's global configuration or the
    root logger, and stdout stays for results. Returns a function that undoes it (`main`
    calls it on the way out, so calling `main` in-process leaves logging as it was).
    """
    logger = logging.getLogger(ROOT_LOGGER)
    previous = logger.level
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return restore


class _Stdout:
    """Whether stdout was closed under us (a reader such as ``head`` went away)."""

    closed = False


def _stdout_gone() -> int:
    """Stdout's reader went away: send what is left to /dev/null, and say so by exit code.

    What the Python docs recommend (the "Note on SIGPIPE" in the `signal` module): point
    the file descriptor at devnull, so the flush at exit cannot fail again and print a
    traceback.
    """
    _Stdout.closed = True
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE


class _Console(Console):
    """A rich console that stops printing, quietly, when stdout is closed.

    Rich's own handling raises `SystemExit(1)` from whatever printed, which may be a
    runtime's event subscriber; here the command goes on and exits `EXIT_PIPE`.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _stdout_gone()


def _console() -> Console:
    console = _Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse's too: 2 for bad usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    _Stdout.closed = False
    try:
        args.settings = load_settings(config_file=args.config)
    except ConfigError as exc:  # refused before anything runs, with the loader's message
        print(f"corral: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    restore = _configure_logging(args.settings.log_level)
    try:
        path = config_path(config_file=args.config)
        log.info(
            "cli.settings",
            config_file=str(path) if path is not None else None,
            log_level=args.settings.log_level,
        )
        code = anyio.run(_dispatch, args)
        sys.stdout.flush()  # here, so that a closed pipe is seen here and not at exit
        return EXIT_PIPE if _Stdout.closed else code
    except BaseException as exc:  # noqa: BLE001 - sorted below; anything else re-raised
        return _failed(_leaf(exc))
    finally:
        restore()


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups (task groups wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _failed(exc: BaseException) -> int:
    """The exit code for what a command raised, with its one-line message on stderr."""
    if isinstance(exc, BrokenPipeError):
        return _stdout_gone()
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: what was journaled stays resumable
        print("corral: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, ServiceError):
        print(
            f"corral: {exc.title}: {exc.detail}" if exc.detail else f"corral: {exc.title}",
            file=sys.stderr,
        )
        return exc.exit_code
    if isinstance(exc, CorralError):
        print(f"corral: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    raise exc


# -- where a command reads and writes: the journal, or the service -----------------------------


def _db_url(args: argparse.Namespace) -> str | None:
    """The journal URL: ``--db``, else the settings' ``db``."""
    settings: Settings | None = getattr(args, "settings", None)
    return getattr(args, "db", None) or (settings.db if settings is not None else None)


def _server(args: argparse.Namespace) -> str | None:
    """The service this command talks to: ``--server``, else ``$CORRAL_SERVER_URL``.

    The variable is ignored when ``--db`` is given (the journal named wins); the two
    options together are refused.
    """
    if args.server is not None:
        if args.db:
            raise UsageError("give --db (the journal) or --server (a service), not both")
        return str(args.server)
    if args.db:
        return None
    return os.environ.get("CORRAL_SERVER_URL", "").strip() or None


def _local_only(args: argparse.Namespace, name: str) -> None:
    """Refuse ``--server`` for a command that works on the journal here."""
    if args.server is not None:
        raise UsageError(
            f"`corral {name}` works on the journal in this process, not through a service: "
            "drop --server (and give --db to choose the journal)"
        )


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from exc
        if not token:
            raise UsageError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get("CORRAL_TOKEN", "").strip() or None


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace, url: str) -> AsyncIterator[Client]:
    async with Client(url, token=_token(args)) as client:
        yield client


@contextlib.asynccontextmanager
async def _journal(args: argparse.Namespace, *, must_exist: bool) -> AsyncIterator[Journal]:
    """The journal ``--db`` names; with `must_exist`, one that already exists (never made)."""
    async with journal_from_url(_db_url(args), must_exist=must_exist) as journal:
        yield journal


def _load(args: argparse.Namespace, **kwargs: Any) -> App:
    return load_app(getattr(args, "app", None) or DEFAULT_APP, **kwargs)


@contextlib.asynccontextmanager
async def _runtime(
    args: argparse.Namespace,
    *,
    resume: bool = False,
    cost: Callable[..., float] | None = None,
    **app_kwargs: Any,
) -> AsyncIterator[Runtime]:
    """A started runtime on the journal: it drives the runs this command starts or resumes.

    `cost` prices model calls when the application sets no prices of its own.
    """
    options = _load(args, **app_kwargs).runtime_options()
    if cost is not None:
        options.setdefault("cost", cost)
    async with _journal(args, must_exist=False) as journal:
        settings: Settings = args.settings
        async with Runtime.from_settings(
            settings,
            journal=journal,
            durability=settings.durability.model_copy(
                update={"resume": resume, "poll_interval_s": None}
            ),
            **options,
        ) as runtime:
            yield runtime


@contextlib.asynccontextmanager
async def _recorder(args: argparse.Namespace, *, must_exist: bool) -> AsyncIterator[Runtime]:
    """A runtime that is never started: it records decisions and deliveries, drives nothing.

    Its `Runtime.approve`, `reject` and `deliver` journal the decision and publish it; with
    no actor system they wake no run here, so the process that drives the run (or the
    next one to claim it) continues it. The application's agents are there to check
    edited arguments against their tools' schemas.
    """
    application = _load(args)
    async with _journal(args, must_exist=must_exist) as journal:
        settings: Settings = args.settings
        yield Runtime.from_settings(
            settings,
            agents=application.agents,
            workflows=application.workflows,
            journal=journal,
            durability=settings.durability.model_copy(
                update={"resume": False, "poll_interval_s": None}
            ),
        )


def _loads(runtime: Runtime, agent: str) -> bool:
    """True when the application loaded here has the agent (or workflow) `agent`."""
    return agent in runtime.agents or any(w.agent_name == agent for w in runtime.workflows.values())


# -- views: the service's JSON, built the same way from the journal ----------------------------


def _when(value: Any) -> str:
    """A time for a table: ISO 8601 UTC to the second (``2026-12-02T04:05:06Z``)."""
    if isinstance(value, int | float):
        value = iso(float(value))
    if not isinstance(value, str) or not value:
        return "-"
    return value[:19] + "Z" if len(value) >= 19 and value[10] == "T" else value


def _summary(info: RunInfo) -> dict[str, Any]:
    """A run as ``GET /v1/runs`` lists it."""
    return RunSummary.of(info).model_dump(mode="json")


def _gate_view(record: GateRecord, agent: str) -> dict[str, Any]:
    """A gate as ``GET /v1/approvals`` shows it."""
    return GateView.of(record, agent).model_dump(mode="json")


def _run_view(
    info: RunInfo, events: Sequence[Event], gates: Sequence[GateRecord]
) -> dict[str, Any]:
    """A run as ``GET /v1/runs/{run_id}`` shows it."""
    return RunView.of_events(info, events, gates).model_dump(mode="json")


def _event_json(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = EventAdapter.dump_python(event, mode="json")
    return data


def _decode_events(raw: Sequence[dict[str, Any]]) -> list[Event]:
    """Events as the service sends them, decoded (one this version does not know is left out)."""
    events: list[Event] = []
    for item in raw:
        try:
            events.append(EventAdapter.validate_python(item))
        except ValueError:
            log.warning("cli.unknown_event", kind=item.get("kind"), seq=item.get("seq"))
    return events


async def _local_run(journal: Journal, run_id: str) -> tuple[dict[str, Any], list[Event]]:
    """One run's view and events, from the journal."""
    info = await journal.run(run_id)
    events = await journal.read(run_id) if info is not None else []
    if info is None or not events:
        raise UsageError(f"no run {run_id!r} in the journal")
    gates = await journal.gates(status=None, run_id=run_id)
    return _run_view(info, events, gates), events


async def _open_gates(journal: Journal) -> list[tuple[GateRecord, str]]:
    """The gates a person can still decide, oldest first, each with its run's agent.

    Left out: gates past their deadline (deciding them is refused) and gates of runs that
    have ended (a run cancelled at a gate keeps its gates open in the index).
    """
    now = time.time()
    runs: dict[str, RunInfo | None] = {}
    found: list[tuple[GateRecord, str]] = []
    for record in await journal.gates(status="open"):
        if record.opened.expires_at <= now:
            continue
        if record.run_id not in runs:
            runs[record.run_id] = await journal.run(record.run_id)
        info = runs[record.run_id]
        if info is not None and info.status != "finished":
            found.append((record, info.agent))
    return found


def _lease_holder(info: RunInfo, now: float) -> str | None:
    """The process whose lease on the run is still live, if any."""
    if info.owner and (info.lease_until or 0.0) > now:
        return info.owner
    return None


# -- output --------------------------------------------------------------------------------------


def _json_out(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _cell(value: Any) -> str:
    """One table cell on one line: whitespace runs made single spaces; empty is ``-``."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return " ".join(text.split()) or "-"


def _print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, cut: Collection[int] = ()
) -> None:
    """A table with headers, one row per line, never wrapped.

    Columns not in `cut` are as wide as their widest value; those in `cut` share what is
    left of the console's width (at least `_MIN_FLEX` each) and end long values with an
    ellipsis. When even that does not fit, lines run past the console's width rather
    than breaking a column.
    """
    console = _console()
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    used = sum(w for i, w in enumerate(widths) if i not in cut) + _GAP * (len(headers) - 1)
    room = console.width - used
    limits: dict[int, int] = {}
    for n, i in enumerate(sorted(cut, key=lambda k: widths[k])):  # narrow ones first
        share = max(room // (len(cut) - n), _MIN_FLEX)
        limits[i] = min(widths[i], share)
        room -= limits[i]
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        if i in limits:
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=limits[i])
        else:
            table.add_column(header, no_wrap=True, min_width=widths[i])
    for row in cells:
        table.add_row(*row)
    total = used + sum(limits.values())
    with console.capture() as captured:
        console.print(table, width=max(console.width, total), crop=False)
    for line in captured.get().splitlines():
        print(line.rstrip())


def _print_runs(runs: Sequence[dict[str, Any]]) -> None:
    if not runs:
        print("no runs")
        return
    headers = ["RUN ID", "STATUS", "OUTCOME", "AGENT", "CREATED", "TASK"]
    rows = [
        [
            r["run_id"],
            r["status"],
            r.get("outcome"),
            r["agent"],
            _when(r.get("created_at")),
            r["task"],
        ]
        for r in runs
    ]
    _print_table(headers, rows, cut={5})


def _print_gates(gates: Sequence[dict[str, Any]]) -> None:
    if not gates:
        print("no gates waiting")
        return
    headers = ["GATE ID", "RUN ID", "AGENT", "TOOL", "EXPIRES", "ARGUMENTS", "REASON"]
    rows = [
        [
            g["gate_id"],
            g["run_id"],
            g.get("agent"),
            g["tool"],
            _when(g.get("expires_at")),
            g.get("arguments"),
            g.get("reason"),
        ]
        for g in gates
    ]
    _print_table(headers, rows, cut={5, 6})


def _decision_line(gate: dict[str, Any]) -> str:
    who = f" by {gate['decided_by']}" if gate.get("decided_by") else ""
    note = f": {gate['note']}" if gate.get("note") else ""
    edited = " (arguments edited)" if gate.get("edited_arguments") is not None else ""
    return f"{gate['gate_id']}  {gate['tool']}  {gate['status']}{who}{note}{edited}"


def _print_run(view: dict[str, Any], events: Sequence[Event]) -> None:
    """A run's summary, then its trail."""
    outcome = f" ({view['outcome']})" if view.get("outcome") else ""
    route = view.get("route") or {}
    lines = [
        ("run", view["run_id"]),
        ("agent", f"{view['agent']} (rule {route.get('rule', '')}: {route.get('reason', '')})"),
        ("tenant", view["tenant"]),
        ("status", f"{view['status']}{outcome}"),
        ("task", view["task"]),
        ("created", _when(view.get("created_at"))),
        ("updated", _when(view.get("updated_at"))),
        (
            "figures",
            f"steps {view['steps']}, model calls {view['model_calls']}, "
            f"tokens {view['tokens']:,}, cost ${view['cost_usd']:.4f}, "
            f"time {view['duration_s']:.2f} s",
        ),
    ]
    if view.get("submitted_by"):
        lines.append(("submitted", f"by {view['submitted_by']}"))
    if view.get("reason"):
        lines.append(("reason", view["reason"]))
    for gate in view.get("gates", []):
        lines.append(("gate", _decision_line(gate)))
    for key, value in lines:
        print(f"{key:<10}{' '.join(str(value).split())}")
    if events:
        from .observability import TrailWriter

        print()
        writer = TrailWriter(_console())
        for event in events:
            writer(event)


def _db_option(args: argparse.Namespace) -> str:
    """`` --db URL`` when this command was given one, for a command to print."""
    return f" --db {shlex.quote(args.db)}" if getattr(args, "db", None) else ""


def _app_option(args: argparse.Namespace) -> str:
    app = getattr(args, "app", None) or DEFAULT_APP
    return f" --app {shlex.quote(app)}" if app != DEFAULT_APP else ""


def _print_waiting(gates: Sequence[GateRecord], args: argparse.Namespace) -> None:
    print(f"\nThe run is waiting for a person before it changes anything ({len(gates)} gate(s)):")
    for gate in gates:
        arguments = json.dumps(gate.opened.arguments)
        print(f"  {gate.opened.gate_id}  {gate.opened.tool}  {arguments}")
    first = gates[0].opened.gate_id if gates else "GATE_ID"
    # The --db and --app given here, so the commands work as printed and the next one
    # names the application that drives the run.
    db, app = _db_option(args), _app_option(args)
    print("Approve to let the run finish:")
    print(f"  corral{db} approve {first} --as you@example.com{app}")
    if len(gates) > 1:
        print(f"  corral{db} approve --all --as you@example.com{app}")
    print("Or reject, and the model is told why:")
    print(f'  corral{db} reject {first} --as you@example.com --reason "not this month"{app}')


def _print_awaited(events: Sequence[Event], args: argparse.Namespace) -> None:
    """A run waits for an external event: say which key, and how to deliver it by hand."""
    waits = [e for e in events if isinstance(e, WaitStarted)]
    key = waits[-1].key if waits else "KEY"
    print(f"\nThe run waits for an external event on {key!r}. Deliver it by hand with:")
    print(f"  corral{_db_option(args)} deliver {shlex.quote(key)} --payload JSON")


def _exit_code(result: RunResult) -> int:
    return 0 if result.status == "waiting" or result.outcome == "completed" else 1


def _result_payload(result: RunResult) -> dict[str, Any]:
    return {
        "result": {
            "run_id": result.run_id,
            "agent": result.agent,
            "status": result.status,
            "outcome": result.outcome,
            "output": result.output,
            "reason": result.reason,
            "steps": result.steps,
            "model_calls": result.model_calls,
            "tokens": result.tokens,
            "cost_usd": result.cost_usd,
            "duration_s": result.duration_s,
            "gates": [_gate_view(g, result.agent) for g in result.gates],
        },
        "events": [_event_json(e) for e in result.events],
    }


def _trail(runtime: Runtime) -> Any:
    from .observability import TrailWriter

    writer = TrailWriter(_console())
    runtime.subscribe(writer)
    return writer


# -- commands that drive runs here: run, demo, resume ----------------------------------------


async def _cmd_run(args: argparse.Namespace, task: Task, *, model: Any = None) -> int:
    app_kwargs: dict[str, Any] = {}
    if model is not None:
        from .models import PriceTable

        app_kwargs = {"model": model, "cost": PriceTable.default().cost}
    as_json = _json_out(args)
    async with _runtime(args, **app_kwargs) as runtime:
        if getattr(args, "routes", None) is not None:
            from .router import Router

            runtime.router = Router.from_toml(args.routes)
            runtime.router.validate(runtime.agents)
        if getattr(args, "explain", False) and not as_json and runtime.router is not None:
            print(runtime.router.explain(task))
        if not as_json:
            _trail(runtime)
        result = await runtime.run(task, agent=getattr(args, "agent", None))
    if as_json:
        _print_json(_result_payload(result))
    elif result.gates:
        _print_waiting(result.gates, args)
    elif result.status == "waiting":
        _print_awaited(result.events, args)
    return _exit_code(result)


async def _cmd_submit(args: argparse.Namespace, url: str) -> int:
    """``corral --server URL run TEXT``: submit, print the run id and status, drive nothing."""
    if args.routes is not None or args.explain:
        raise UsageError("--routes and --explain route here; the service routes by its own rules")
    async with _client(args, url) as client:
        view = await client.submit(
            args.text,
            kind=args.kind,
            tags=list(args.tag),
            tenant=args.tenant,
            agent=args.agent,
            idempotency_key=args.idempotency_key,
        )
    if _json_out(args):
        _print_json(view)
    else:
        print(f"{view['run_id']}  {view['status']}  agent {view['agent']}")
    return 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_TASK

    _local_only(args, "demo")
    as_json = _json_out(args)
    args.app = DEFAULT_APP
    model = None
    if args.model:
        from .models import has_credentials, model_from_string

        if has_credentials(args.model):
            model = model_from_string(args.model)
        elif not as_json:
            print(f"No API key for {args.model}: running on the scripted model instead.")
    if not as_json:
        label = model.name if model is not None else "a scripted model (no API key needed)"
        print(f"Corral demo: invoice reconciliation with {label}.")
    task = Task(text=DEMO_TASK, kind="billing")
    if model is None:
        return await _cmd_run(args, task)
    try:
        return await _cmd_run(args, task, model=model)
    finally:
        aclose = getattr(model, "aclose", None)
        if aclose is not None:
            await aclose()


async def _cmd_resume(args: argparse.Namespace) -> int:
    _local_only(args, "resume")
    if not args.wait > 0:
        raise UsageError(f"--wait must be seconds > 0, got {args.wait:g}")
    as_json = _json_out(args)
    async with _runtime(args) as runtime:
        if not as_json:
            writer = _trail(runtime)
            for info in await runtime.journal.runs(status="running", limit=None):
                writer.follow(await runtime.events(info.run_id))
        resumed = await runtime.resume()
        results: list[RunResult] = []

        async def collect() -> None:
            for run_id in resumed:
                results.append(await runtime.wait(run_id))

        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_leases, runtime)
            with anyio.move_on_after(args.wait):
                await collect()
            tg.cancel_scope.cancel()
        unfinished = len(resumed) - len(results)
        if unfinished:
            print(
                f"corral: {unfinished} resumed run(s) did not finish or pause within --wait "
                f"{args.wait:g} s; they stay unfinished in the journal, and "
                f"`corral{_db_option(args)} resume{_app_option(args)}` continues them",
                file=sys.stderr,
            )
    if as_json:
        _print_json([_result_payload(r)["result"] for r in results])
    else:
        waiting = sum(r.status == "waiting" for r in results)
        print(f"resumed {len(results)} run(s); {waiting} now wait for a person or an event")
    return 0 if not unfinished and all(_exit_code(r) == 0 for r in results) else 1


async def _keep_leases(runtime: Runtime) -> None:
    """Renew the leases of the runs this process drives, as the poller would."""
    while True:
        await anyio.sleep(runtime.durability.lease_s / 3)
        try:
            await runtime.renew_leases()
        except CorralError as failure:
            print(f"corral: could not renew the runs' leases: {failure}", file=sys.stderr)


# -- commands that read -------------------------------------------------------------------------


async def _cmd_runs_list(args: argparse.Namespace) -> int:
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            page = await client.runs(
                status=args.status,
                outcome=args.outcome,
                agent=args.agent,
                tenant=args.tenant,
                limit=args.limit,
                cursor=args.cursor,
            )
        runs: list[dict[str, Any]] = page["runs"]
        cursor: str | None = page.get("next_cursor")
    else:
        async with _journal(args, must_exist=True) as journal:
            infos = await journal.runs(
                status=args.status,
                outcome=args.outcome,
                agents=[args.agent] if args.agent else None,
                tenant=args.tenant,
                after=args.cursor,
                limit=args.limit + 1,
            )
        more = len(infos) > args.limit
        infos = infos[: args.limit]
        runs = [_summary(info) for info in infos]
        cursor = infos[-1].run_id if more and infos else None
    if _json_out(args):
        _print_json(runs)
    else:
        _print_runs(runs)
    if cursor:
        print(f"more runs: add --cursor {shlex.quote(cursor)}", file=sys.stderr)
    return 0


async def _run_and_events(
    args: argparse.Namespace, run_id: str
) -> tuple[dict[str, Any], list[Event], list[dict[str, Any]]]:
    """A run's view, its events, and the events as JSON: from the service or the journal."""
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            view = await client.run(run_id)
            raw = await client.events(run_id)
        return view, _decode_events(raw), raw
    async with _journal(args, must_exist=True) as journal:
        view, events = await _local_run(journal, run_id)
    return view, events, [_event_json(e) for e in events]


async def _cmd_runs_show(args: argparse.Namespace) -> int:
    view, events, raw = await _run_and_events(args, args.run_id)
    if _json_out(args):
        _print_json({"run": view, "events": raw})
    else:
        _print_run(view, events)
    return 0


async def _cmd_runs_export(args: argparse.Namespace) -> int:
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            document = await client.export(args.run_id)
    else:
        view, _, raw = await _run_and_events(args, args.run_id)
        document = {"run": view, "events": raw, "exported_at": iso(time.time())}
    if args.file is None:
        _print_json(document)
        return 0
    path = Path(args.file)
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    count = len(document["events"])
    if _json_out(args):
        _print_json({"run_id": args.run_id, "file": str(path), "events": count})
    else:
        print(f"exported run {args.run_id} ({count} events) to {path}")
    return 0


async def _cmd_workers(args: argparse.Namespace) -> int:
    settings: Settings | None = getattr(args, "settings", None)
    lease_s = settings.durability.lease_s if settings is not None else Durability().lease_s
    within = args.within if args.within is not None else lease_s
    if within <= 0:
        raise UsageError(f"--within must be more than 0 seconds, got {within:g}")
    now = time.time()
    async with _journal(args, must_exist=True) as journal:
        found = await journal.workers(now=now, within_s=within)
    rows = [
        {
            "owner": w.owner,
            "host": w.host,
            "pid": w.pid,
            "started_at": w.started_at,
            "seen_at": w.seen_at,
            "seen_s_ago": round(max(0.0, now - w.seen_at), 1),
            "leases": w.leases,
            "max_active_runs": w.max_active_runs,
            "version": w.version,
        }
        for w in found
    ]
    if _json_out(args):
        _print_json(rows)
    elif not rows:
        print(f"no worker seen in the last {within:g} s")
    else:
        headers = ["OWNER", "HOST", "PID", "STARTED", "SEEN", "LEASES", "MAX RUNS", "VERSION"]
        table = [
            [
                r["owner"],
                r["host"],
                r["pid"],
                _when(r["started_at"]),
                f"{r['seen_s_ago']:g} s ago",
                r["leases"],
                r["max_active_runs"] if r["max_active_runs"] is not None else "-",
                r["version"],
            ]
            for r in rows
        ]
        _print_table(headers, table)
    return 0


async def _cmd_approvals(args: argparse.Namespace) -> int:
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            gates = await client.approvals()
    else:
        async with _journal(args, must_exist=True) as journal:
            gates = [_gate_view(record, agent) for record, agent in await _open_gates(journal)]
    if _json_out(args):
        _print_json(gates)
    else:
        _print_gates(gates)
    return 0


async def _cmd_mcp(args: argparse.Namespace) -> int:
    """``corral mcp tools SERVER``: start or reach the server, list its tools and levels."""
    _local_only(args, "mcp tools")
    from .tools.mcp import list_tools_command  # the optional extra: ConfigError without it

    return await list_tools_command(args.spec, output=args.output)


async def _cmd_trace(args: argparse.Namespace) -> int:
    _, events, raw = await _run_and_events(args, args.run_id)
    if _json_out(args):
        _print_json(raw)
        return 0
    from .observability import render_trace

    render_trace(events, _console())
    return 0


# -- commands that record: approve, reject, deliver, runs cancel -------------------------------


def _decider(args: argparse.Namespace, url: str | None) -> str:
    """Who decides: ``--as`` (required on the journal; the token's name with --server)."""
    if url is not None:
        if args.by:
            print(
                "corral: note: --as is ignored with --server: the service records the "
                "token's name as who decided",
                file=sys.stderr,
            )
        return ""
    if not (args.by or "").strip():
        raise UsageError("say who decides: --as NAME (recorded in the audit trail)")
    return str(args.by)


def _ignored_wait(args: argparse.Namespace) -> None:
    if getattr(args, "wait", None) is not None:
        print(
            f"corral: note: --wait is ignored: `corral {args.command}` records and returns; "
            "`corral resume --wait S` drives runs here",
            file=sys.stderr,
        )


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value


async def _cmd_approve(args: argparse.Namespace) -> int:
    if (args.gate_id is None) == (not args.all):
        raise UsageError("name one gate, or pass --all")
    edited = _json_object(args.args, "--args")
    result: Any = None
    if args.result is not None:
        if not args.happened:
            raise UsageError("--result goes with --happened (the call took effect)")
        try:
            result = json.loads(args.result)
        except ValueError as exc:
            raise UsageError(f"--result is not JSON: {exc}") from exc
    _ignored_wait(args)
    url = _server(args)
    by = _decider(args, url)
    if url is not None:
        async with _client(args, url) as client:
            ids = (
                [args.gate_id] if args.gate_id else [g["gate_id"] for g in await client.approvals()]
            )
            decided = []
            for gate_id in ids:
                gate = await client.approve(
                    gate_id,
                    note=args.note,
                    arguments=edited,
                    happened=args.happened,
                    result=result,
                )
                decided.append(gate)
                if not _json_out(args):
                    print(_decision_line(gate))
        return _decided_remotely(args, decided, single=args.gate_id is not None)

    async def approve(runtime: Runtime, gate_id: str) -> GateRecord:
        if edited is not None:
            record = await runtime.journal.gate(gate_id)
            info = await runtime.journal.run(record.run_id) if record is not None else None
            if info is not None and not _loads(runtime, info.agent):
                raise UsageError(
                    f"cannot check the edited arguments of gate {gate_id}: --app "
                    f"{args.app} does not load agent {info.agent!r}; pass the application "
                    "that has it"
                )
        return await runtime.approve(
            gate_id, by=by, note=args.note, args=edited, happened=args.happened, result=result
        )

    return await _decide_here(args, approve, None if args.all else [args.gate_id])


async def _cmd_reject(args: argparse.Namespace) -> int:
    _ignored_wait(args)
    url = _server(args)
    by = _decider(args, url)
    if url is not None:
        async with _client(args, url) as client:
            gate = await client.reject(args.gate_id, reason=args.reason)
        if not _json_out(args):
            print(_decision_line(gate))
        return _decided_remotely(args, [gate], single=True)

    async def reject(runtime: Runtime, gate_id: str) -> GateRecord:
        return await runtime.reject(gate_id, by=by, reason=args.reason)

    return await _decide_here(args, reject, [args.gate_id])


def _decided_remotely(
    args: argparse.Namespace, gates: list[dict[str, Any]], *, single: bool
) -> int:
    if _json_out(args):
        _print_json(gates[0] if single and gates else gates)
    elif not gates:
        print("no gates waiting")
    return 0


async def _decide_here(
    args: argparse.Namespace,
    decide: Callable[[Runtime, str], Any],
    gate_ids: Sequence[str] | None,
) -> int:
    """Record the decisions in the journal, then say who continues each run. Drives nothing."""
    as_json = _json_out(args)
    async with _recorder(args, must_exist=True) as runtime:
        ids = (
            list(gate_ids)
            if gate_ids is not None
            else [record.opened.gate_id for record, _ in await _open_gates(runtime.journal)]
        )
        views: list[dict[str, Any]] = []
        run_ids: list[str] = []
        for gate_id in ids:
            record: GateRecord = await decide(runtime, gate_id)
            info = await runtime.journal.run(record.run_id)
            view = _gate_view(record, info.agent if info is not None else "")
            views.append(view)
            if not as_json:
                print(_decision_line(view))
            if record.run_id not in run_ids:
                run_ids.append(record.run_id)
        if as_json:
            _print_json(views[0] if gate_ids is not None and views else views)
            return 0
        if not ids:
            print("no gates waiting")
        for run_id in run_ids:
            await _print_next(args, runtime, run_id, recorded="The decision is recorded")
    return 0


async def _print_next(
    args: argparse.Namespace, runtime: Runtime, run_id: str, *, recorded: str
) -> None:
    """Say what happens to a run now that a decision or an event is recorded, and who acts."""
    journal = runtime.journal
    info = await journal.run(run_id)
    if info is None:
        return
    if info.status == "finished":
        print(f"{recorded}; run {run_id} has already ended ({info.outcome}).")
        return
    if info.status == "waiting":
        open_gates = await journal.gates(status="open", run_id=run_id)
        if open_gates:
            _print_waiting(open_gates, args)
        else:
            print(f"{recorded}; run {run_id} still waits for an external event.")
        return
    holder = _lease_holder(info, time.time())
    if holder is not None:
        print(
            f"{recorded}; process {holder!r}, which holds the lease of run {run_id}, continues it."
        )
        return
    db = _db_option(args)
    if _loads(runtime, info.agent):
        app, which = _app_option(args), ""
    else:
        app, which = " --app MODULE:FACTORY", " with an application that has it"
    print(
        f"{recorded}; run {run_id} is ready to go on, and the next process that loads agent "
        f"{info.agent!r} continues it: `corral{db} serve{app}` or `corral{db} resume{app}`"
        f"{which} (or a Runtime with that agent polling this journal)."
    )


async def _cmd_deliver(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from exc
    _ignored_wait(args)
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            result = await client.deliver(args.key, payload)
        run_id = result.get("run_id")
        if _json_out(args):
            _print_json(result)
        elif run_id is None:
            print(f"no run waits on {args.key!r} yet; the event is kept for it")
        else:
            print(f"delivered {args.key!r} to run {run_id}")
        return 0
    async with _recorder(args, must_exist=False) as runtime:
        run_id = await runtime.deliver(args.key, payload)
        if _json_out(args):
            _print_json({"key": args.key, "run_id": run_id, "delivered": run_id is not None})
        elif run_id is None:
            print(f"no run waits on {args.key!r} yet; the event is kept for it")
        else:
            print(f"delivered {args.key!r} to run {run_id}")
            await _print_next(args, runtime, run_id, recorded="The event is recorded")
    return 0


async def _cmd_runs_cancel(args: argparse.Namespace) -> int:
    url = _server(args)
    if url is not None:
        async with _client(args, url) as client:
            result = await client.cancel(args.run_id, reason=args.reason)
        view = result["run"]
        cancelled, requested = bool(result["cancelled"]), bool(result.get("requested"))
    else:
        cancelled, requested, view = await _cancel_here(args)
    if _json_out(args):
        _print_json({"cancelled": cancelled, "requested": requested, "run": view})
    elif cancelled:
        print(f"cancelled run {args.run_id}")
    elif requested:
        print(
            f"asked the worker driving run {args.run_id} to cancel it: it ends the run as "
            "soon as it hears (corral workers lists the workers)"
        )
    else:
        print(f"run {args.run_id} had already ended ({view.get('outcome')}); nothing to cancel")
    return 0 if cancelled or requested else 1


async def _cancel_here(args: argparse.Namespace) -> tuple[bool, bool, dict[str, Any]]:
    """End a run in the journal, or ask the live process driving it to: (cancelled, requested).

    The run's lease is claimed first, so no worker starts driving it meanwhile; journaling
    its ``run_finished`` (``cancelled``) releases the lease. `Runtime.cancel` is not used:
    it stops runs its own process drives and paused ones, not a run ready to go on that
    nobody drives (after an approval, or a crash), and it needs a started runtime.
    """
    run_id = args.run_id
    reason = args.reason or "cancelled from the command line"
    owner = f"corral-cli-{os.getpid()}-{secrets.token_hex(4)}"
    async with _journal(args, must_exist=True) as journal:
        info = await journal.run(run_id)
        if info is None:
            raise UsageError(f"no run {run_id!r} in the journal")
        if info.status != "finished":
            now = time.time()
            holder = _lease_holder(info, now)
            claimed = holder is None and await journal.claim(
                run_id, owner, lease_s=_CANCEL_LEASE_S, now=now
            )
            if not claimed:
                current = await journal.run(run_id)
                if current is not None and current.status != "finished":
                    await journal.request_cancel(run_id, reason, now=time.time())
                    view, _ = await _local_run(journal, run_id)
                    return False, True, view
            else:
                try:
                    state = RunState.fold(run_id, await journal.read(run_id))
                    await journal.append(
                        state.finished_event("cancelled", reason=reason, ts=time.time())
                    )
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await journal.release(run_id, owner)
                    raise
                view, _ = await _local_run(journal, run_id)
                return True, False, view
        view, _ = await _local_run(journal, run_id)
        return False, False, view


# -- journal upkeep, the server ------------------------------------------------------------------


async def _cmd_store(args: argparse.Namespace) -> int:
    _local_only(args, "store vacuum")
    days = args.older_than_days
    if not days >= 0:
        raise UsageError(f"--older-than-days must be 0 or more, got {days:g}")
    now = time.time()
    async with _journal(args, must_exist=True) as journal:
        if args.dry_run:
            count = await _prunable(journal, cutoff=now - days * 86_400)
        else:
            count = await journal.prune(older_than_s=days * 86_400, now=now)
            await journal.vacuum()
    if _json_out(args):
        _print_json({"dry_run": args.dry_run, "older_than_days": days, "runs": count})
    elif args.dry_run:
        print(
            f"would prune {count} finished run(s) older than {days:g} days; "
            "nothing was changed (dry run)"
        )
    else:
        print(f"pruned {count} finished run(s) older than {days:g} days; compacted")
    return 0


async def _prunable(journal: Journal, *, cutoff: float) -> int:
    """How many finished runs `Journal.prune` would delete: last updated before `cutoff`.

    Read a page at a time, so a journal of a million runs is never held in memory.
    """
    count, after = 0, None
    while True:
        page = await journal.runs(status="finished", limit=_PAGE, after=after)
        count += sum(info.updated_at < cutoff for info in page)
        if len(page) < _PAGE:
            return count
        after = page[-1].run_id


async def _cmd_token(args: argparse.Namespace) -> int:
    """Print a new token once, and the settings entry that holds only its hash."""
    from pydantic import ValidationError

    from ._settings import TokenSpec, hash_token, new_token

    _local_only(args, "token new")
    secret = new_token()
    digest = hash_token(secret)
    try:
        spec = TokenSpec(name=args.name, sha256=digest, roles=frozenset(args.roles))
    except ValidationError as exc:
        raise UsageError("; ".join(str(e["msg"]) for e in exc.errors())) from None
    roles = sorted(spec.roles)
    if _json_out(args):
        _print_json({"name": spec.name, "token": secret, "sha256": digest, "roles": roles})
        return 0
    print(f"token for {spec.name} (shown once; keep it secret): {secret}")
    print("settings entry (corral.toml; the server keeps only the hash):")
    print("[[server.tokens]]")
    print(f"name = {json.dumps(spec.name)}")
    print(f'sha256 = "{digest}"')
    print(f"roles = {json.dumps(roles)}")
    return 0


async def _cmd_serve(args: argparse.Namespace) -> int:
    _local_only(args, "serve")
    try:
        from .server import serve
    except ImportError:
        print(f"corral: {_EXTRA}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # corral.server says which extra is missing
        if "extra" not in str(exc):
            raise
        print(f"corral: {_EXTRA}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {"host": args.host, "port": args.port}
    if args.app is not None:
        options["app"] = args.app
    code: int = await serve(settings=args.settings, db=_db_url(args), **options)
    return code


async def _cmd_memory(args: argparse.Namespace) -> int:
    _local_only(args, "memory")
    from .memory._command import run_memory_command

    return await run_memory_command(args, _db_url(args))


# -- dispatch --------------------------------------------------------------------------------------


async def _cmd_replay(args: argparse.Namespace) -> int:
    from .replay._command import cmd_replay  # on top of everything: imported when used

    return await cmd_replay(args)


async def _cmd_loadtest(args: argparse.Namespace) -> int:
    from .loadtest._command import run  # imported here: only this command needs it

    return await run(args)


async def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "demo":
        return await _cmd_demo(args)
    if command == "run":
        url = _server(args)
        if url is not None:
            return await _cmd_submit(args, url)
        task = Task(
            text=args.text,
            kind=args.kind,
            tags=frozenset(args.tag),
            tenant=args.tenant or "default",
        )
        return await _cmd_run(args, task)
    if command == "runs":
        actions = {
            "list": _cmd_runs_list,
            "show": _cmd_runs_show,
            "cancel": _cmd_runs_cancel,
            "export": _cmd_runs_export,
        }
        return await actions[args.action](args)
    handlers: dict[str, Callable[[argparse.Namespace], Any]] = {
        "approvals": _cmd_approvals,
        "approve": _cmd_approve,
        "reject": _cmd_reject,
        "deliver": _cmd_deliver,
        "resume": _cmd_resume,
        "store": _cmd_store,
        "serve": _cmd_serve,
        "trace": _cmd_trace,
        "export": _cmd_runs_export,
        "replay": _cmd_replay,
        "mcp": _cmd_mcp,
        "token": _cmd_token,
        "loadtest": _cmd_loadtest,
        "memory": _cmd_memory,
        "workers": _cmd_workers,
    }
    code: int = await handlers[command](args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
