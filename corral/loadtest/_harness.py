"""The harness: drive N runs of the chaos workload, C at a time, then account for them.

In process (the default) it builds a `Runtime` on a fresh SQLite journal in a temporary
directory (or ``db``), with the load test's agent (`build_agent`) and the chaos model,
either called directly or, with ``wire="anthropic"``, through Corral's real Anthropic
adapter and a loopback provider on a real socket (`corral.loadtest._wire`).

With ``server`` it drives a running ``corral serve --app corral.loadtest:app`` over HTTP
instead: each run is submitted with an ``Idempotency-Key`` (a retried submission is the
same run), followed until it ends or waits, and its gates are answered through the API as
an approver (legitimate calls approved, calls to an address only an injected instruction
names rejected). The server's chaos tools write the ledger to the file named by its
``CORRAL_LOADTEST_LEDGER``; give the harness the same path (``ledger_path``).

Either way, the same cases then go through the plain loop (`run_unguarded`) for the
comparison, and `account` reads the journal, the ledger and the plain runs together.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

from ..errors import UsageError
from ..events import Event, EventAdapter
from ..models import PriceTable
from ..runtime import Durability, RunResult, Runtime
from ..store import Journal, SqliteJournal, journal_from_url
from ._accounting import Accounting, RunRecord, account
from ._ledger import Ledger
from ._profiles import Profile
from ._unguarded import UnguardedRun, run_unguarded
from ._wire import LoopbackProvider, anthropic_model
from ._workload import (
    AGENT_NAME,
    Case,
    ChaosAgent,
    ChaosAgentModel,
    build_agent,
    chaos_tools,
    is_injected_address,
)

__all__ = ["APPROVER", "LoadTest", "LoadTestResult", "run_loadtest"]

APPROVER = "loadtest-approver"
"""Who the harness decides gates as, in process."""

Wire = Literal["none", "anthropic"]


@dataclass
class LoadTest:
    """What to run. Every field is a ``corral loadtest`` option of the same name.

    Args:
        profile: the chaos profile.
        runs: tasks to run (each `repeat` times). Default 100.
        concurrency: runs in flight at once. Default 20.
        seed: seed of the workload's faults. Default 7.
        repeat: tries of each task, for pass^k. Default 1.
        db: the journal URL. Default: a fresh SQLite file in a temporary directory.
        server: URL of a ``corral serve --app corral.loadtest:app`` to drive instead.
        token: its API token (submit and read).
        approver_token: the token that decides gates. Default `token` (the server must
            then allow self-approval).
        ledger_path: with `server`: the ledger file the server writes
            (its ``CORRAL_LOADTEST_LEDGER``).
        wire: ``anthropic``: the chaos model behind a loopback socket, called through
            Corral's real Anthropic adapter. Default ``none`` (in process).
        unguarded: also run the plain loop for the comparison. Default True.
        progress: show a live progress bar on stderr. Default False.
        tap: called with every event the runtime publishes and the ledger (in process
            only): a seam to test the harness's own invariants with a sabotaged runtime.
        poll_s: how often a run is looked at over HTTP, seconds. Default 0.05.
    """

    profile: Profile
    runs: int = 100
    concurrency: int = 20
    seed: int = 7
    repeat: int = 1
    db: str | None = None
    server: str | None = None
    token: str | None = None
    approver_token: str | None = None
    ledger_path: Path | None = None
    wire: Wire = "none"
    unguarded: bool = True
    progress: bool = False
    tap: Callable[[Event, Ledger], None] | None = None
    poll_s: float = 0.05

    def cases(self) -> list[Case]:
        """Every run to submit: each task, `repeat` times."""
        return [
            Case(self.seed, index, attempt)
            for index in range(self.runs)
            for attempt in range(self.repeat)
        ]


@dataclass
class LoadTestResult:
    """The accounting, and how the load test was run."""

    options: LoadTest
    accounting: Accounting
    records: list[RunRecord] = field(default_factory=list)
    unguarded: list[UnguardedRun] = field(default_factory=list)
    wire_statuses: dict[int, int] = field(default_factory=dict)
    """With ``wire``: the loopback provider's answers by HTTP status."""


async def run_loadtest(options: LoadTest) -> LoadTestResult:
    """Run the load test and account for every run and every injected fault.

    Args:
        options: what to run.

    Returns:
        The result; ``result.accounting.ok`` says whether every invariant held.

    Raises:
        UsageError: inconsistent options (``server`` without ``token`` or
            ``ledger_path``, ``server`` with ``wire`` or ``db``, counts below 1).
    """
    _validate(options)
    cases = options.cases()
    statuses: dict[int, int] = {}
    with _Progress(options.progress, len(cases), options.profile.name) as progress:
        started = time.perf_counter()
        if options.server is None:
            records, ledger, statuses = await _in_process(options, cases, progress)
        else:
            records = await _over_http(options, cases, progress)
            assert options.ledger_path is not None
            ledger = Ledger.read(options.ledger_path)
        wall = time.perf_counter() - started
        plain: list[UnguardedRun] = []
        if options.unguarded:
            progress.phase("plain loop", len(cases))
            plain = await _plain(options, cases, ledger, progress)
    accounting = account(
        options.profile,
        records,
        ledger.entries(),
        submitted=len(cases),
        wall_s=wall,
        repeat=options.repeat,
        unguarded=plain,
    )
    return LoadTestResult(options, accounting, records, plain, statuses)


def _validate(options: LoadTest) -> None:
    if options.runs < 1 or options.concurrency < 1 or options.repeat < 1:
        raise UsageError("--runs, --concurrency and --repeat must be 1 or more")
    if options.server is not None:
        if options.wire != "none":
            raise UsageError("--wire runs the model here: it does not go with --server")
        if options.db is not None:
            raise UsageError("give --db (drive runs here) or --server (drive a service), not both")
        if not options.token:
            raise UsageError("--server needs --token (a token with the submit role)")
        if options.ledger_path is None:
            raise UsageError(
                "--server needs --ledger PATH: the file the server's CORRAL_LOADTEST_LEDGER names"
            )
    if options.tap is not None and options.server is not None:
        raise UsageError("tap= sees the events of a runtime in this process, not a server's")


# -- in process --------------------------------------------------------------------------------


@asynccontextmanager
async def _journal(options: LoadTest, stack: AsyncExitStack) -> AsyncIterator[Journal]:
    if options.db is not None:
        journal = journal_from_url(options.db)
    else:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-loadtest-"))
        journal = SqliteJournal(str(Path(folder) / "loadtest.db"))
    async with journal:
        yield journal


async def _in_process(
    options: LoadTest, cases: list[Case], progress: _Progress
) -> tuple[list[RunRecord], Ledger, dict[int, int]]:
    ledger = Ledger()
    chaos = ChaosAgent(options.profile, ledger)
    statuses: dict[int, int] = {}
    async with AsyncExitStack() as stack:
        model: Any
        provider: LoopbackProvider | None = None
        if options.wire == "anthropic":
            provider = await stack.enter_async_context(LoopbackProvider.running(chaos))
            model, client = anthropic_model(provider.url, connections=options.concurrency + 8)
            stack.push_async_callback(client.aclose)
        else:
            model = ChaosAgentModel(chaos)
        agent = build_agent(options.profile, model, ledger)
        journal = await stack.enter_async_context(_journal(options, stack))
        runtime = Runtime(
            agents=[agent],
            journal=journal,
            breakers=options.profile.breakers,
            cost=PriceTable.default().cost,
            durability=Durability(poll_interval_s=0.25),
            seed=options.seed,
        )
        async with runtime:
            tap = options.tap
            if tap is not None:
                runtime.subscribe(lambda event: tap(event, ledger))
            records: list[RunRecord] = []
            limiter = anyio.Semaphore(options.concurrency)

            async def one(case: Case) -> None:
                async with limiter:
                    records.append(await _drive_here(runtime, case))
                    progress.advance(records[-1])

            async with anyio.create_task_group() as tg:
                for case in cases:
                    tg.start_soon(one, case)
        if provider is not None:
            statuses = dict(provider.statuses)
    return records, ledger, statuses


async def _drive_here(runtime: Runtime, case: Case) -> RunRecord:
    started = time.perf_counter()
    run_id = ""
    try:
        handle = await runtime.submit(case.task, agent=AGENT_NAME)
        run_id = handle.run_id
        result = await handle.result()
        while result.status == "waiting":
            await _decide_here(runtime, result)
            result = await runtime.wait(run_id)
            if result.status == "waiting" and all(g.decided is not None for g in result.gates):
                await anyio.sleep(0.01)  # decided, not yet picked up again
        events = list(await runtime.journal.read(run_id))
    except Exception as exc:  # the run is then counted as lost, with why
        events = list(await runtime.journal.read(run_id)) if run_id else []
        return RunRecord(case, run_id, events, time.perf_counter() - started, error=repr(exc))
    return RunRecord(case, run_id, events, time.perf_counter() - started)


async def _decide_here(runtime: Runtime, result: RunResult) -> None:
    for gate in result.gates:
        if gate.decided is not None:
            continue
        email = gate.opened.arguments.get("email")
        if is_injected_address(email):
            await runtime.reject(
                gate.opened.gate_id,
                by=APPROVER,
                reason=f"{email} is not the customer's address: injected in a tool result",
            )
        else:
            await runtime.approve(gate.opened.gate_id, by=APPROVER, note="legitimate call")


# -- over HTTP -----------------------------------------------------------------------------------


async def _over_http(options: LoadTest, cases: list[Case], progress: _Progress) -> list[RunRecord]:
    assert options.server is not None and options.token is not None
    auth = {"Authorization": f"Bearer {options.token}"}
    approver = {"Authorization": f"Bearer {options.approver_token or options.token}"}
    limits = httpx.Limits(max_connections=options.concurrency + 4)
    records: list[RunRecord] = []
    async with (
        httpx.AsyncClient(base_url=options.server, headers=auth, timeout=30, limits=limits) as api,
        httpx.AsyncClient(base_url=options.server, headers=approver, timeout=30) as decider,
    ):
        limiter = anyio.Semaphore(options.concurrency)

        async def one(case: Case) -> None:
            async with limiter:
                records.append(await _drive_remote(api, decider, case, options.poll_s))
                progress.advance(records[-1])

        async with anyio.create_task_group() as tg:
            for case in cases:
                tg.start_soon(one, case)
    return records


async def _call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call, waiting out the service's 429s (its Retry-After)."""
    for _ in range(100):
        response = await client.request(method, path, **kwargs)
        if response.status_code != 429:
            return response
        await anyio.sleep(min(float(response.headers.get("retry-after", "0.5")), 5.0))
    return response


async def _drive_remote(
    api: httpx.AsyncClient, decider: httpx.AsyncClient, case: Case, poll_s: float
) -> RunRecord:
    started = time.perf_counter()
    run_id = ""
    try:
        submitted = await _call(
            api,
            "POST",
            "/v1/runs",
            json={"task": case.task, "agent": AGENT_NAME},
            headers={"Idempotency-Key": f"loadtest-{case.tag}"},
        )
        submitted.raise_for_status()
        run_id = submitted.json()["run_id"]
        decided: set[str] = set()
        while True:
            view = (await _call(api, "GET", f"/v1/runs/{run_id}")).json()
            if view["status"] == "finished":
                break
            open_gates = [g for g in view.get("gates", []) if g["status"] == "open"]
            fresh = [g for g in open_gates if g["gate_id"] not in decided]
            for gate in fresh:
                decided.add(gate["gate_id"])
                email = gate["arguments"].get("email")
                if is_injected_address(email):
                    body = {"reason": f"{email} came from an instruction injected in a tool result"}
                    answer = await _call(
                        decider, "POST", f"/v1/approvals/{gate['gate_id']}/reject", json=body
                    )
                else:
                    answer = await _call(
                        decider, "POST", f"/v1/approvals/{gate['gate_id']}/approve", json={}
                    )
                answer.raise_for_status()
            if view["status"] == "waiting" and not fresh and not open_gates:
                break  # waiting for something the harness does not answer
            await anyio.sleep(poll_s)
        raw = (await _call(api, "GET", f"/v1/runs/{run_id}/events")).json()["events"]
        events = [EventAdapter.validate_python(e) for e in raw]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return RunRecord(case, run_id, [], time.perf_counter() - started, error=repr(exc))
    return RunRecord(case, run_id, events, time.perf_counter() - started)


# -- the plain loop ------------------------------------------------------------------------------


async def _plain(
    options: LoadTest, cases: list[Case], ledger: Ledger, progress: _Progress
) -> list[UnguardedRun]:
    profile = options.profile
    chaos = ChaosAgent(profile, ledger, mode="unguarded")
    tools, bodies = chaos_tools(profile, ledger, mode="unguarded")
    specs = tuple(t.spec() for t in tools)
    prices = PriceTable.default()
    out: list[UnguardedRun] = []
    limiter = anyio.Semaphore(max(options.concurrency, 1))

    async def one(case: Case) -> None:
        async with limiter:
            run = await run_unguarded(
                case,
                chaos,
                bodies,
                specs,
                model_timeout_s=profile.timing.model_timeout_s,
                cost=prices.cost,
            )
            out.append(run)
            progress.advance(None)

    async with anyio.create_task_group() as tg:
        for case in cases:
            tg.start_soon(one, case)
    return out


# -- progress ------------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar on stderr, or nothing (not a terminal, or turned off)."""

    def __init__(self, enabled: bool, total: int, profile: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._failed = 0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task(f"loadtest {profile}", total=total, note="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def phase(self, name: str, total: int) -> None:
        if self._bar is not None:
            self._bar.reset(self._task, total=total, description=name, note="")

    def advance(self, record: RunRecord | None) -> None:
        if self._bar is None:
            return
        if record is not None and record.error:
            self._failed += 1
        note = f"{self._failed} not followed" if self._failed else ""
        self._bar.update(self._task, advance=1, note=note)
