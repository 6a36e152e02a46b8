"""A worker the crash test kills with SIGKILL at random moments, then restarts.

Usage: python tests/_crash_worker.py DB LEDGER RUNS [probe]

Each run calls `record` (a non-idempotent write), then `charge` (idempotent: like a
payment API, it ignores a key it has seen), then answers. Every real execution is
appended to LEDGER. With ``probe``, `record` has a status probe backed by LEDGER: it
answers Done for a key the ledger holds and NotDone for one it does not, except for the
runs whose number is a multiple of 5, whose probe answers Unknown (as a provider that
has no lookup for them would); each answer is appended to LEDGER too. The model checks the journal itself before answering: a model call
already recorded as completed must never be made again, and if it is, it writes a
VIOLATION line.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

import anyio

from corral import Durability, Guards, Runtime, SubAgent, ToolContext, tool
from corral.models import FunctionModel, ModelRequest, ToolResultMessage, call
from corral.store import SqliteJournal
from corral.tools import Done, NotDone, Unknown


def main(db: str, ledger: str, runs: int, probed: bool = False) -> None:
    def log(entry: dict[str, Any]) -> None:
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def executed_keys(tool_name: str) -> set[str]:
        try:
            with open(ledger, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return set()
        return {e["key"] for e in lines if e.get("kind") == "exec" and e["tool"] == tool_name}

    def status(key: str, arguments: dict[str, Any]) -> Done | NotDone | Unknown:
        run = int(arguments["entry"].removeprefix("run_"))
        if run % 5 == 0:
            answer: Done | NotDone | Unknown = Unknown("no lookup for this entry")
        elif key in executed_keys("record"):
            answer = Done("recorded")
        else:
            answer = NotDone()
        log({"kind": "probe", "key": key, "answer": type(answer).__name__})
        return answer

    @tool(side_effect="write", timeout=5, reconcile=status if probed else None)
    async def record(entry: str, ctx: ToolContext) -> str:
        """Write an entry (not idempotent)."""
        log({"kind": "exec", "tool": "record", "key": ctx.idempotency_key})
        await anyio.sleep(0.02 if probed else 0.005)
        return "recorded"

    @tool(side_effect="external", timeout=5, idempotent=True)
    async def charge(amount: float, ctx: ToolContext) -> str:
        """Charge a card; the provider ignores a repeated idempotency key."""
        if ctx.idempotency_key not in executed_keys("charge"):
            log({"kind": "exec", "tool": "charge", "key": ctx.idempotency_key})
        await anyio.sleep(0.005)
        return "charged"

    def respond(request: ModelRequest) -> Any:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT payload FROM events WHERE run_id = ? AND kind = 'model_called'",
                (request.run_id,),
            ).fetchall()
        finally:
            con.close()
        if request.step in {json.loads(p)["step"] for (p,) in rows}:
            log({"kind": "VIOLATION", "run": request.run_id, "step": request.step})
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        return [call("record", entry=request.run_id), call("charge", amount=10.0), "done"][
            min(done, 2)
        ]

    agent = SubAgent(
        "worker", instructions="x", tools=[record, charge], model=FunctionModel(respond)
    )

    async def run() -> None:
        async with SqliteJournal(db) as journal:
            async with Runtime(
                agents=[agent],
                journal=journal,
                guards=Guards(gated=()),
                durability=Durability(poll_interval_s=None, owner="crash-worker"),
            ) as rt:
                known = {info.run_id for info in await journal.runs(limit=1_000_000)}
                print("ready", flush=True)
                for i in range(runs):
                    run_id = f"run_{i:04d}"
                    if run_id not in known:
                        await rt.submit(f"task {i}", run_id=run_id)
                for i in range(runs):
                    await rt.wait(f"run_{i:04d}")

    anyio.run(run)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), probed=sys.argv[4:] == ["probe"])
