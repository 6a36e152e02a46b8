"""The standard workload on LangGraph and DBOS, for ``compare.py`` (``pip install -e '.[compare]'``).

Each peer does what Corral does per step, with the same instant model (a function that
answers at once: step N calls ``lookup``; a gated run's step 10 calls ``flag``; then a
final answer) and the same instant tools, on SQLite in WAL mode with
``synchronous=NORMAL`` (Corral's default; the peers' own defaults are slower:
LangGraph's saver leaves SQLite's ``FULL``, DBOS leaves the rollback journal), so no one
pays for an fsync the others skip:

* **LangGraph**: a `StateGraph` with one node per step (the node calls the model and the
  tool and appends both to ``messages``, the conversation, with an ``operator.add``
  reducer) and a last node for the final answer: 11 nodes, run with
  ``durability="sync"``, so each node's checkpoint is committed before the next node
  starts. `AsyncSqliteSaver` (aiosqlite) for the async figures, and for one run at a time
  the faster of it and the sync `SqliteSaver` (a figure is the peer's best). A gated run
  splits step 10 in two nodes: the model's proposal, then a node that calls
  ``interrupt()`` and, resumed with ``Command(resume=True)``, runs ``flag`` (an interrupt
  re-runs its node from the top: kept apart, the model call is not made twice). The
  resuming process knows the thread ids (LangGraph has no list of pending interrupts
  short of reading every thread's state; an app would keep its own): that flatters it.
* **DBOS**: an async ``@DBOS.workflow`` calling one ``@DBOS.step`` per agent step (the
  model and the tool call together; DBOS commits each step's output before the next)
  and one for the final answer. A gated run's step 10 is a step for the model's
  proposal, ``DBOS.recv_async("gate", timeout_seconds=...)`` for the decision, and a
  step running ``flag``; the approver calls ``DBOS.send_async``. DBOS polls for messages
  on SQLite: its polling interval is set to 10 ms (default 1 s), which flatters it. A
  restarted DBOS recovers its pending workflows itself at ``DBOS.launch()``; each
  recovered workflow replays its recorded steps and blocks in ``recv`` again, so its
  paused runs are live coroutines (in memory), where Corral's and LangGraph's are rows.

The same commands as ``_workload.py`` run here as a script: ``python _peers.py
memory|park|resume langgraph|dbos DB RUNS [rss|heap]``.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import STEPS, MemoryProbe, file_bytes  # noqa: E402

GATE_TIMEOUT_S = 48 * 3600
"""How long a DBOS run waits at its gate (Corral's default gate deadline)."""


def model(step: int, *, gated: bool = False) -> dict[str, Any]:
    """The instant model: step N's tool call, or the final answer after `STEPS` steps."""
    if step > STEPS:
        return {"text": "done", "usage": {"input_tokens": 10, "output_tokens": 5}}
    return {
        "tool_call": {
            "id": f"c{step}",
            "name": "flag" if gated and step == STEPS else "lookup",
            "arguments": {"invoice_id": f"INV-{step}"},
        },
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def lookup(invoice_id: str) -> dict[str, Any]:
    """The instant read tool."""
    return {"invoice_id": invoice_id, "total": 10}


def flag(invoice_id: str) -> str:
    """The instant write tool (gated)."""
    return "flagged"


# -- LangGraph ---------------------------------------------------------------------------------------


class State(TypedDict):
    """A LangGraph run's state: its task and its conversation."""

    task: str
    messages: Annotated[list[dict[str, Any]], operator.add]


def _lg_step(step: int) -> Callable[[State], dict[str, Any]]:
    def node(state: State) -> dict[str, Any]:
        answer = model(step)
        call = answer["tool_call"]
        result = lookup(**call["arguments"])
        return {"messages": [answer, {"tool_result": result, "call_id": call["id"]}]}

    return node


def _lg_propose(state: State) -> dict[str, Any]:
    return {"messages": [model(STEPS, gated=True)]}


def _lg_gate(state: State) -> dict[str, Any]:
    from langgraph.types import interrupt

    call = state["messages"][-1]["tool_call"]
    interrupt({"tool": call["name"], "arguments": call["arguments"]})
    return {"messages": [{"tool_result": flag(**call["arguments"]), "call_id": call["id"]}]}


def _lg_final(state: State) -> dict[str, Any]:
    return {"messages": [model(STEPS + 1)]}


def langgraph_graph(*, gated: bool = False) -> Any:
    """The uncompiled graph: 10 step nodes (a gated run: 9, a proposal, a gate) and a final one."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    names = []
    for step in range(1, STEPS + 1):
        if gated and step == STEPS:
            graph.add_node("propose", _lg_propose)
            graph.add_node("gate", _lg_gate)
            names += ["propose", "gate"]
        else:
            graph.add_node(f"step{step}", _lg_step(step))
            names.append(f"step{step}")
    graph.add_node("final", _lg_final)
    names.append("final")
    for before, after in zip([START, *names], [*names, END], strict=True):
        graph.add_edge(before, after)
    return graph


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


class AsyncLangGraph:
    """A compiled graph on an `AsyncSqliteSaver` over one aiosqlite connection."""

    def __init__(self, path: Path, *, gated: bool = False) -> None:
        self.path = path
        self.gated = gated

    async def __aenter__(self) -> AsyncLangGraph:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self.conn.execute("PRAGMA synchronous=NORMAL")
        self.saver = AsyncSqliteSaver(self.conn)
        await self.saver.setup()  # sets journal_mode=WAL
        self.app = langgraph_graph(gated=self.gated).compile(checkpointer=self.saver)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.conn.close()

    async def run(self, thread: str) -> dict[str, Any]:
        """Run a fresh thread until it ends (or interrupts)."""
        result: dict[str, Any] = await self.app.ainvoke(
            {"task": f"task {thread}", "messages": []}, _config(thread), durability="sync"
        )
        return result

    async def approve(self, thread: str) -> dict[str, Any]:
        """Resume an interrupted thread with an approval and run it to the end."""
        from langgraph.types import Command

        result: dict[str, Any] = await self.app.ainvoke(
            Command(resume=True), _config(thread), durability="sync"
        )
        return result


def _check_lg(result: dict[str, Any], *, paused: bool) -> None:
    if paused != ("__interrupt__" in result):
        raise RuntimeError(f"a LangGraph run {'did not pause' if paused else 'paused'}")
    if not paused and len(result["messages"]) != 2 * STEPS + 1:
        raise RuntimeError(f"a LangGraph run has {len(result['messages'])} messages")


async def langgraph_async_steps_per_s(path: Path, *, concurrent: int, runs: int) -> float:
    """Durable steps/s on `AsyncSqliteSaver`, `concurrent` runs started together at a time."""
    async with AsyncLangGraph(path) as lg:
        _check_lg(await lg.run("warm-up"), paused=False)
        start = time.perf_counter()
        for first in range(0, runs, concurrent):
            results = await asyncio.gather(
                *(lg.run(f"r{i}") for i in range(first, first + concurrent))
            )
            for result in results:
                _check_lg(result, paused=False)
        return runs * STEPS / (time.perf_counter() - start)


def langgraph_sync_steps_per_s(path: Path, *, runs: int) -> float:
    """Durable steps/s on the sync `SqliteSaver`, one run at a time."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        saver = SqliteSaver(conn)
        saver.setup()
        app = langgraph_graph().compile(checkpointer=saver)
        app.invoke({"task": "warm up", "messages": []}, _config("warm-up"), durability="sync")
        start = time.perf_counter()
        for i in range(runs):
            result = app.invoke(
                {"task": f"task {i}", "messages": []}, _config(f"r{i}"), durability="sync"
            )
            _check_lg(result, paused=False)
        return runs * STEPS / (time.perf_counter() - start)
    finally:
        conn.close()


async def _lg_pause(lg: AsyncLangGraph, first: int, count: int) -> None:
    for chunk in range(first, first + count, 100):
        ids = range(chunk, min(chunk + 100, first + count))
        for result in await asyncio.gather(*(lg.run(f"r{i}") for i in ids)):
            _check_lg(result, paused=True)


async def _lg_memory(db: Path, runs: int, probe: MemoryProbe) -> dict[str, Any]:
    start = probe.now()
    async with AsyncLangGraph(db, gated=True) as lg:
        await _lg_pause(lg, 0, 1)
        one = probe.now()
        await _lg_pause(lg, 1, runs - 1)
        at_runs = probe.now()
        await _lg_pause(lg, runs, runs)
        twice = probe.now()
    return {"start": start, "one": one, "runs": at_runs, "twice": twice}


async def _lg_park(db: Path, runs: int) -> None:
    async with AsyncLangGraph(db, gated=True) as lg:
        await _lg_pause(lg, 0, runs)
        print("READY", flush=True)
        await asyncio.Event().wait()


async def _lg_resume(db: Path, runs: int, imported: float) -> dict[str, Any]:
    async with AsyncLangGraph(db, gated=True) as lg:
        results = await asyncio.gather(*(lg.approve(f"r{i}") for i in range(runs)))
        done = time.time()
    completed = sum(1 for r in results if len(r["messages"]) == 2 * STEPS + 1)
    return {"done_at": done, "in_process_s": done - imported, "completed": completed}


async def langgraph_empty_bytes(path: Path) -> int:
    """Size of a LangGraph SQLite checkpoint file with its schema and nothing else."""
    async with AsyncLangGraph(path):
        pass
    return file_bytes(path)


# -- DBOS --------------------------------------------------------------------------------------------

_dbos_ready = False


def _dbos_workflows() -> tuple[Any, Any]:
    """Register the DBOS workflows (once per process) and return (plain, gated)."""
    from dbos import DBOS

    global _dbos_ready, _plain_wf, _gated_wf
    if _dbos_ready:
        return _plain_wf, _gated_wf

    @DBOS.step(name="agent_step")
    async def agent_step(step: int) -> dict[str, Any]:
        answer = model(step)
        call = answer["tool_call"]
        return {"answer": answer, "result": lookup(**call["arguments"])}

    @DBOS.step(name="model_step")
    async def model_step(step: int, gated: bool) -> dict[str, Any]:
        return model(step, gated=gated)

    @DBOS.step(name="flag_step")
    async def flag_step(arguments: dict[str, Any]) -> str:
        return flag(**arguments)

    @DBOS.workflow(name="plain")
    async def plain(task: str) -> int:
        history = [await agent_step(step) for step in range(1, STEPS + 1)]
        history.append(await model_step(STEPS + 1, False))
        return len(history)

    @DBOS.workflow(name="gated")
    async def gated(task: str) -> int:
        history = [await agent_step(step) for step in range(1, STEPS)]
        proposal = await model_step(STEPS, True)
        decision = await DBOS.recv_async("gate", timeout_seconds=GATE_TIMEOUT_S)
        if decision != "approved":
            raise RuntimeError(f"gate decided {decision!r}")
        history.append(
            {"answer": proposal, "result": await flag_step(proposal["tool_call"]["arguments"])}
        )
        history.append(await model_step(STEPS + 1, True))
        return len(history)

    _plain_wf, _gated_wf = plain, gated
    _dbos_ready = True
    return plain, gated


_plain_wf: Any = None
_gated_wf: Any = None


def _sqlite_pragmas() -> None:
    """WAL and synchronous=NORMAL on every SQLite connection SQLAlchemy opens (DBOS's)."""
    import sqlalchemy as sa
    from sqlalchemy import event

    def pragmas(dbapi_conn: Any, record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    if not event.contains(sa.engine.Engine, "connect", pragmas):
        event.listen(sa.engine.Engine, "connect", pragmas)


class Dbos:
    """DBOS launched on a SQLite system database at `path`; destroyed on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Dbos:
        import logging

        from dbos import DBOS

        _sqlite_pragmas()
        self.plain, self.gated = _dbos_workflows()
        DBOS(
            config={
                "name": "bench",
                "system_database_url": f"sqlite:///{self.path}",
                "log_level": "WARNING",
                "notification_listener_polling_interval_sec": 0.01,
            }
        )
        logging.getLogger("dbos").setLevel(logging.WARNING)
        DBOS.launch()
        return self

    def __exit__(self, *exc_info: object) -> None:
        from dbos import DBOS

        DBOS.destroy()


async def dbos_steps_per_s(path: Path, *, concurrent: int, runs: int) -> float:
    """Durable steps/s, `concurrent` workflows started together at a time."""
    from dbos import DBOS

    with Dbos(path) as d:
        await d.plain("warm up")
        start = time.perf_counter()
        for first in range(0, runs, concurrent):
            if concurrent == 1:
                results = [await d.plain(f"task {first}")]
            else:
                handles = [
                    await DBOS.start_workflow_async(d.plain, f"task {i}")
                    for i in range(first, first + concurrent)
                ]
                results = await asyncio.gather(*(h.get_result() for h in handles))
            if any(r != STEPS + 1 for r in results):
                raise RuntimeError("a DBOS run did not finish its steps")
        return runs * STEPS / (time.perf_counter() - start)


async def _dbos_pause(d: Dbos, first: int, count: int) -> list[str]:
    """Start `count` gated workflows and wait until each waits in ``recv``."""
    from dbos import DBOS, SetWorkflowID

    ids = [f"r{i}" for i in range(first, first + count)]
    for wf_id in ids:
        with SetWorkflowID(wf_id):
            await DBOS.start_workflow_async(d.gated, f"task {wf_id}")
    # Waiting in recv: its step (function_id after the model's proposal) is recorded.
    db = sqlite3.connect(d.path)
    try:
        while True:
            (at_gate,) = db.execute(
                "SELECT count(DISTINCT workflow_uuid) FROM operation_outputs "
                "WHERE function_name = 'model_step'"
            ).fetchone()
            if at_gate >= first + count:
                break
            await asyncio.sleep(0.01)
    finally:
        db.close()
    await asyncio.sleep(0.05)  # the last proposals' workflows reach recv
    return ids


async def _dbos_memory(db: Path, runs: int, probe: MemoryProbe) -> dict[str, Any]:
    start = probe.now()
    with Dbos(db) as d:
        await _dbos_pause(d, 0, 1)
        one = probe.now()
        await _dbos_pause(d, 1, runs - 1)
        at_runs = probe.now()
        await _dbos_pause(d, runs, runs)
        twice = probe.now()
    return {"start": start, "one": one, "runs": at_runs, "twice": twice}


async def _dbos_park(db: Path, runs: int) -> None:
    with Dbos(db) as d:
        await _dbos_pause(d, 0, runs)
        print("READY", flush=True)
        await asyncio.Event().wait()


async def _dbos_resume(db: Path, runs: int, imported: float) -> dict[str, Any]:
    from dbos import DBOS

    with Dbos(db):  # launch() recovers the pending workflows, which block in recv again
        ids = [f"r{i}" for i in range(runs)]
        await asyncio.gather(*(DBOS.send_async(i, "approved", topic="gate") for i in ids))
        handles = [await DBOS.retrieve_workflow_async(i) for i in ids]
        results = await asyncio.gather(*(h.get_result() for h in handles))
        done = time.time()
    completed = sum(1 for r in results if r == STEPS + 1)
    return {"done_at": done, "in_process_s": done - imported, "completed": completed}


def dbos_empty_bytes(path: Path) -> int:
    """Size of a DBOS SQLite system database with its schema and nothing else."""
    with Dbos(path):
        pass
    return file_bytes(path)


# -- the subprocess commands ---------------------------------------------------------------------------


def child(argv: list[str], imported: float) -> None:
    """``memory|park|resume langgraph|dbos DB RUNS [rss|heap]``: one JSON line (or READY)."""
    import json

    command, kind, db, runs = argv[0], argv[1], Path(argv[2]), int(argv[3])
    if kind == "langgraph":
        import langgraph.checkpoint.sqlite.aio  # noqa: F401  (imported before the cold mark)
        import langgraph.graph  # noqa: F401

        memory, park, resume = _lg_memory, _lg_park, _lg_resume
    elif kind == "dbos":
        import dbos  # noqa: F401

        memory, park, resume = _dbos_memory, _dbos_park, _dbos_resume  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown peer {kind!r}")
    imported = time.time()  # after the peer's imports, as Corral's process measures it
    if command == "memory":
        probe = MemoryProbe(heap=argv[4] == "heap")
        print(json.dumps(asyncio.run(memory(db, runs, probe))))
    elif command == "park":
        asyncio.run(park(db, runs))
    elif command == "resume":
        print(json.dumps(asyncio.run(resume(db, runs, imported))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    child(sys.argv[1:], time.time())
