"""The ``corral`` command line: the demo, one-off runs, and the journal's runs and gates.

Settings are read once, by `corral.load_settings` (the loader `Runtime.from_settings`
uses too): the TOML file named by ``CORRAL_CONFIG`` (else ``./corral.toml`` if present)
under ``CORRAL_*`` variables. A broken file or value is refused before anything runs:
``corral: ConfigError: corral.toml: limits.max_tokens: Input should be greater than 0``,
exit code 2. Corral's own logs go to stderr from ``CORRAL_LOG_LEVEL`` up (default
``warning``); stdout carries only results.

Every command that touches the journal takes ``--db URL`` (default: the settings' ``db``,
that is ``CORRAL_DB``, else ``db`` in the settings file, else ``sqlite:///corral.db``).
Commands that drive runs load the application (its agents and routing rules) from
``--app module:function`` (default ``corral.demo:app``).

``corral approve`` and ``corral reject`` record the decision, then follow the run only if
this process can drive it (its agent is in ``--app`` and no other process holds it), for
``--wait`` seconds at most; otherwise they say which process will continue it, and exit.
``corral deliver`` and ``corral resume`` follow the runs they continue for ``--wait``
seconds at most too.

Exit codes: 0 success (a run completed, or waits at a gate, or was left to another
process); 1 a run ended with another outcome (or was still running after ``--wait``); 2 a
usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from ._log import ROOT_LOGGER, get_logger
from ._settings import Settings, config_path, load_settings
from ._task import Task
from .errors import ConfigError, CorralError, UsageError
from .events import EventAdapter
from .runtime import RunResult, Runtime
from .store import GateRecord, Journal, journal_from_url
from .subagents import RunState

__all__ = ["main"]

log = get_logger("corral.cli")

DEFAULT_APP = "corral.demo:app"
FOLLOW_S = 300.0
"""How long `corral approve`, `reject`, `deliver` and `resume` follow runs, by default (s)."""
FOLLOW_HELP = (
    f"seconds to follow the run here when this process continues it (default {FOLLOW_S:g}); "
    "a run whose agent --app does not load is left to a process that does, at once"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral", description="Corral: a supervised runtime for LLM agents."
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--db", help="journal URL (default: the settings' db: $CORRAL_DB, corral.toml...)"
        )
        return p

    def with_app(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--app", default=DEFAULT_APP, help=f"module:function (default {DEFAULT_APP})"
        )
        return p

    demo = with_db(sub.add_parser("demo", help="run the invoice-reconciliation demo"))
    demo.add_argument("--json", action="store_true", help="print the result and events as JSON")
    demo.add_argument("--model", help="e.g. anthropic:claude-sonnet-5-5 (needs its API key)")

    run = with_app(with_db(sub.add_parser("run", help="route one task and run it")))
    run.add_argument("text", help="the task, in words")
    run.add_argument("--kind", help="task kind routing rules can match (e.g. billing)")
    run.add_argument("--tag", action="append", default=[], help="task tag (repeatable)")
    run.add_argument("--routes", type=Path, help="routing rules from a TOML file")
    run.add_argument("--json", action="store_true", help="print the result and events as JSON")
    run.add_argument("--explain", action="store_true", help="print the routing explanation")

    runs = sub.add_parser("runs", help="list or show runs in the journal")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    runs_list = with_db(runs_sub.add_parser("list", help="list runs, newest first"))
    runs_list.add_argument("--status", choices=["running", "waiting", "finished"])
    runs_list.add_argument("--limit", type=int, default=50)
    runs_list.add_argument("--json", action="store_true")
    runs_show = with_db(runs_sub.add_parser("show", help="show one run's trail"))
    runs_show.add_argument("run_id")
    runs_show.add_argument("--json", action="store_true")

    approvals = sub.add_parser("approvals", help="gates waiting for a person")
    approvals_sub = approvals.add_subparsers(
        dest="approvals_command", required=True, metavar="ACTION"
    )
    approvals_list = with_db(approvals_sub.add_parser("list", help="list open gates"))
    approvals_list.add_argument("--json", action="store_true")

    approve = with_app(with_db(sub.add_parser("approve", help="approve a gate; the run resumes")))
    approve.add_argument("gate_id", nargs="?", help="the gate (or --all)")
    approve.add_argument("--all", action="store_true", help="approve every open gate")
    approve.add_argument("--as", dest="by", required=True, help="who approves (recorded)")
    approve.add_argument("--note", default="", help="why, for the audit trail")
    approve.add_argument("--args", help="edited arguments, as a JSON object")
    approve.add_argument("--wait", type=float, default=FOLLOW_S, help=FOLLOW_HELP)

    reject = with_app(with_db(sub.add_parser("reject", help="reject a gate; the model is told")))
    reject.add_argument("gate_id")
    reject.add_argument("--as", dest="by", required=True, help="who rejects (recorded)")
    reject.add_argument("--reason", required=True, help="why (the model is told)")
    reject.add_argument("--wait", type=float, default=FOLLOW_S, help=FOLLOW_HELP)

    deliver = with_app(with_db(sub.add_parser("deliver", help="deliver an external event")))
    deliver.add_argument("key", help="the correlation key a run waits on")
    deliver.add_argument("--payload", default="null", help="the event, as JSON")
    deliver.add_argument("--wait", type=float, default=FOLLOW_S, help=FOLLOW_HELP)

    resume = with_app(with_db(sub.add_parser("resume", help="continue every unfinished run")))
    resume.add_argument("--json", action="store_true")
    resume.add_argument("--wait", type=float, default=FOLLOW_S, help=FOLLOW_HELP)

    store = sub.add_parser("store", help="journal maintenance")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    vacuum = with_db(store_sub.add_parser("vacuum", help="prune old finished runs and compact"))
    vacuum.add_argument("--older-than-days", type=float, default=30.0)
    return parser


# -- helpers -----------------------------------------------------------------------------------


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


def _db_url(args: argparse.Namespace) -> str | None:
    """The journal URL: ``--db``, else the settings' ``db``."""
    settings: Settings | None = getattr(args, "settings", None)
    return getattr(args, "db", None) or (settings.db if settings is not None else None)


def _load_app(spec: str, **kwargs: Any) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--app must look like module:function, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load the application {spec!r}: {exc}") from exc
    return factory(**kwargs) if callable(factory) else factory


@contextlib.asynccontextmanager
async def _journal(url: str | None) -> AsyncIterator[Journal]:
    async with journal_from_url(url) as journal:
        yield journal


@contextlib.asynccontextmanager
async def _runtime(
    args: argparse.Namespace, *, resume: bool = False, **app_kwargs: Any
) -> AsyncIterator[Runtime]:
    cost = app_kwargs.pop("_cost", None)
    application = _load_app(getattr(args, "app", DEFAULT_APP), **app_kwargs)
    async with _journal(_db_url(args)) as journal:
        settings: Settings = getattr(args, "settings", None) or load_settings()
        async with Runtime.from_settings(
            settings,
            agents=application.agents,
            router=application.router,
            workflows=application.workflows,
            journal=journal,
            durability=settings.durability.model_copy(
                update={"resume": resume, "poll_interval_s": None}
            ),
            cost=cost,
        ) as runtime:
            yield runtime


def _trail(runtime: Runtime) -> Any:
    from rich.console import Console

    from .observability import TrailWriter

    writer = TrailWriter(Console(highlight=False, soft_wrap=True))
    runtime.subscribe(writer)
    return writer


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
            "gates": [_gate_payload(g) for g in result.gates],
        },
        "events": [EventAdapter.dump_python(e, mode="json") for e in result.events],
    }


def _gate_payload(gate: GateRecord) -> dict[str, Any]:
    return {
        "gate_id": gate.opened.gate_id,
        "run_id": gate.run_id,
        "tool": gate.opened.tool,
        "arguments": gate.opened.arguments,
        "reason": gate.opened.reason,
        "status": gate.status,
        "expires_at": gate.opened.expires_at,
    }


def _same_journal_and_app(args: argparse.Namespace) -> str:
    """The ``--db`` and ``--app`` this command was given, for a command to run next."""
    options: list[str] = []
    if getattr(args, "db", None):
        options += ["--db", args.db]
    app = getattr(args, "app", DEFAULT_APP)
    if app != DEFAULT_APP:
        options += ["--app", app]
    return "".join(f" {shlex.quote(option)}" for option in options)


def _print_waiting(result: RunResult, args: argparse.Namespace) -> None:
    print(
        "\nThe run is waiting for a person before it changes anything "
        f"({len(result.gates)} gate(s)):"
    )
    for gate in result.gates:
        arguments = json.dumps(gate.opened.arguments)
        print(f"  {gate.opened.gate_id}  {gate.opened.tool}  {arguments}")
    first = result.gates[0].opened.gate_id if result.gates else "GATE_ID"
    same = _same_journal_and_app(args)  # so the commands work as printed
    print("Approve to let the run finish:")
    print(f"  corral approve {first} --as you@example.com{same}")
    if len(result.gates) > 1:
        print(f"  corral approve --all --as you@example.com{same}")
    print("Or reject, and the model is told why:")
    print(f'  corral reject {first} --as you@example.com --reason "not this month"{same}')


def _exit_code(result: RunResult) -> int:
    return 0 if result.status == "waiting" or result.outcome == "completed" else 1


# -- commands ----------------------------------------------------------------------------------


async def _cmd_run(args: argparse.Namespace, task: Task, *, model: Any = None) -> int:
    app_kwargs: dict[str, Any] = {"model": model} if model is not None else {}
    if model is not None:
        from .models import PriceTable

        app_kwargs["_cost"] = PriceTable.default().cost
    async with _runtime(args, **app_kwargs) as runtime:
        if getattr(args, "routes", None) is not None:
            from .router import Router

            runtime.router = Router.from_toml(args.routes)
            runtime.router.validate(runtime.agents)
        if getattr(args, "explain", False) and not args.json and runtime.router is not None:
            print(runtime.router.explain(task))
        if not args.json:
            _trail(runtime)
        result = await runtime.run(task)
    if args.json:
        print(json.dumps(_result_payload(result), indent=2))
    elif result.status == "waiting":
        _print_waiting(result, args)
    return _exit_code(result)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_TASK

    args.app = DEFAULT_APP
    model = None
    if args.model:
        from .models import has_credentials, model_from_string

        if has_credentials(args.model):
            model = model_from_string(args.model)
        elif not args.json:
            print(f"No API key for {args.model}: running on the scripted model instead.")
    if not args.json:
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


async def _cmd_runs(args: argparse.Namespace) -> int:
    async with _journal(_db_url(args)) as journal:
        if args.runs_command == "list":
            infos = await journal.runs(status=args.status, limit=args.limit)
            if args.json:
                print(json.dumps([_info(info) for info in infos], indent=2))
            else:
                for info in infos:
                    print(
                        f"{info.run_id}  {info.status:<8} {info.outcome or '':<15} "
                        f"{info.agent:<20} "
                        f"{info.task[:60]}"
                    )
                if not infos:
                    print("no runs")
            return 0
        events = await journal.read(args.run_id)
        if not events:
            raise UsageError(f"no run {args.run_id!r} in the journal")
        if args.json:
            print(json.dumps([EventAdapter.dump_python(e, mode="json") for e in events], indent=2))
            return 0
        from rich.console import Console

        from .observability import TrailWriter

        writer = TrailWriter(Console(highlight=False, soft_wrap=True))
        for event in events:
            writer(event)
        return 0


def _info(info: Any) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "agent": info.agent,
        "tenant": info.tenant,
        "status": info.status,
        "outcome": info.outcome,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "task": info.task,
    }


async def _cmd_approvals(args: argparse.Namespace) -> int:
    async with _journal(_db_url(args)) as journal:
        gates = await journal.gates(status="open")
    if args.json:
        print(json.dumps([_gate_payload(g) for g in gates], indent=2))
    else:
        for g in gates:
            print(
                f"{g.opened.gate_id}  run {g.run_id}  {g.opened.tool}  "
                f"{json.dumps(g.opened.arguments)}"
            )
            print(f"    {g.opened.reason}")
        if not gates:
            print("no gates waiting")
    return 0


async def _decide_and_follow(
    args: argparse.Namespace, decide: Callable[[Runtime, str], Any], gate_ids: Sequence[str] | None
) -> int:
    """Record the decisions, then follow each run only while this process drives it.

    A run whose agent this application does not load (or that another process drives)
    is left to that process: the command says which, and exits. Following is bounded by
    ``--wait``.
    """
    _check_wait(args)
    async with _runtime(args) as runtime:
        ids = (
            list(gate_ids)
            if gate_ids is not None
            else [g.opened.gate_id for g in await runtime.pending_approvals()]
        )
        if not ids:
            print("no gates waiting")
            return 0
        writer = _trail(runtime)
        run_ids: list[str] = []
        for gate_id in ids:
            record = await runtime.journal.gate(gate_id)
            if record is not None and record.run_id not in run_ids:
                writer.follow(await runtime.events(record.run_id))
                run_ids.append(record.run_id)
        for gate_id in ids:
            await decide(runtime, gate_id)
        return await _follow_keeping_leases(args, runtime, run_ids)


def _check_wait(args: argparse.Namespace) -> None:
    if not args.wait > 0:
        raise UsageError(f"--wait must be seconds > 0, got {args.wait:g}")


async def _follow_keeping_leases(
    args: argparse.Namespace, runtime: Runtime, run_ids: Sequence[str]
) -> int:
    """`_follow`, renewing the leases of the runs driven here meanwhile (no poller here)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_keep_leases, runtime)
        code = await _follow(args, runtime, run_ids)
        tg.cancel_scope.cancel()
    return code


async def _keep_leases(runtime: Runtime) -> None:
    """Renew the leases of the runs this process drives, as the poller would."""
    while True:
        await anyio.sleep(runtime.durability.lease_s / 3)
        try:
            await runtime.renew_leases()
        except CorralError as failure:
            print(f"corral: could not renew the runs' leases: {failure}", file=sys.stderr)


async def _follow(args: argparse.Namespace, runtime: Runtime, run_ids: Sequence[str]) -> int:
    """Wait, ``--wait`` s at most, for the decided runs driven here; report the others."""
    followed: list[str] = []
    for run_id in run_ids:
        if not runtime.drives(run_id):  # not driven here: finished, paused, or elsewhere
            state = RunState.fold(run_id, await runtime.events(run_id))
            if not (state.done or state.paused):
                await _print_handed_over(args, runtime, run_id, state.agent)
                continue
        followed.append(run_id)
    results: dict[str, RunResult] = {}

    async def collect(run_id: str) -> None:
        results[run_id] = await runtime.wait(run_id)

    with anyio.move_on_after(args.wait):
        async with anyio.create_task_group() as tg:
            for run_id in followed:
                tg.start_soon(collect, run_id)
    code = 0
    for run_id in followed:
        result = results.get(run_id)
        if result is None:
            print(
                f"corral: run {run_id} did not finish or pause within --wait {args.wait:g} s; "
                "it stays unfinished in the journal, and `corral resume"
                f"{_same_journal_and_app(args)}` continues it",
                file=sys.stderr,
            )
            code = 1
            continue
        if result.status == "waiting":
            _print_waiting(result, args)
        code = max(code, _exit_code(result))
    return code


async def _print_handed_over(
    args: argparse.Namespace, runtime: Runtime, run_id: str, agent: str
) -> None:
    """Say that a decided run is left to another process, and to which one."""
    holder: str | None = None
    info = await runtime.journal.run(run_id)
    if info is not None and info.owner and (info.lease_until or 0.0) > runtime.clock.now():
        holder = info.owner
    if runtime.can_drive(agent):
        why = f"Run {run_id} is driven by another process"
    else:
        app = getattr(args, "app", DEFAULT_APP)
        why = f"This process does not load agent {agent!r} (--app {app}), so run {run_id} is left"
    if holder is not None:
        who = f"process {holder!r}, which holds the run's lease, continues it"
    else:
        db = f" --db {shlex.quote(args.db)}" if getattr(args, "db", None) else ""
        who = (
            f"the next process that loads agent {agent!r} continues it: a Runtime with that "
            f"agent polling this journal, or `corral resume{db} --app MODULE:FUNCTION` with "
            "an application that has it"
        )
    print(f"The decision is recorded. {why}; {who}.")


async def _cmd_deliver(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from exc
    _check_wait(args)
    async with _runtime(args) as runtime:
        _trail(runtime)
        run_id = await runtime.deliver(args.key, payload)
        if run_id is None:
            print(f"no run waits on {args.key!r} yet; the event is kept for it")
            return 0
        return await _follow_keeping_leases(args, runtime, [run_id])


async def _cmd_resume(args: argparse.Namespace) -> int:
    _check_wait(args)
    async with _runtime(args) as runtime:
        if not args.json:
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
                f"{args.wait:g} s; they stay unfinished in the journal, and `corral resume"
                f"{_same_journal_and_app(args)}` continues them",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps([_result_payload(r)["result"] for r in results], indent=2))
    else:
        waiting = sum(r.status == "waiting" for r in results)
        print(f"resumed {len(results)} run(s); {waiting} now wait for a person or an event")
    return 0 if not unfinished and all(_exit_code(r) == 0 for r in results) else 1


async def _cmd_store(args: argparse.Namespace) -> int:
    import time

    async with _journal(_db_url(args)) as journal:
        deleted = await journal.prune(older_than_s=args.older_than_days * 86_400, now=time.time())
        await journal.vacuum()
    print(f"pruned {deleted} finished run(s) older than {args.older_than_days:g} days; compacted")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        args.settings = load_settings()
    except ConfigError as exc:  # refused before anything runs, with the loader's message
        print(f"corral: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    restore = _configure_logging(args.settings.log_level)
    try:
        path = config_path()
        log.info(
            "cli.settings",
            config_file=str(path) if path is not None else None,
            log_level=args.settings.log_level,
        )
        return anyio.run(_dispatch, args)
    except CorralError as exc:
        print(f"corral: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        restore()


async def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "demo":
        return await _cmd_demo(args)
    if command == "run":
        task = Task(text=args.text, kind=args.kind, tags=frozenset(args.tag))
        return await _cmd_run(args, task)
    if command == "runs":
        return await _cmd_runs(args)
    if command == "approvals":
        return await _cmd_approvals(args)
    if command == "approve":
        if (args.gate_id is None) == (not args.all):
            raise UsageError("name one gate, or pass --all")
        edited = None
        if args.args is not None:
            try:
                edited = json.loads(args.args)
            except ValueError as exc:
                raise UsageError(f"--args is not JSON: {exc}") from exc
            if not isinstance(edited, dict):
                raise UsageError("--args must be a JSON object")

        async def approve(runtime: Runtime, gate_id: str) -> Any:
            return await runtime.approve(gate_id, by=args.by, note=args.note, args=edited)

        return await _decide_and_follow(args, approve, None if args.all else [args.gate_id])
    if command == "reject":

        async def reject(runtime: Runtime, gate_id: str) -> Any:
            return await runtime.reject(gate_id, by=args.by, reason=args.reason)

        return await _decide_and_follow(args, reject, [args.gate_id])
    if command == "deliver":
        return await _cmd_deliver(args)
    if command == "resume":
        return await _cmd_resume(args)
    if command == "store":
        return await _cmd_store(args)
    raise ConfigError(f"unknown command {command!r}")  # pragma: no cover - argparse refuses


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
