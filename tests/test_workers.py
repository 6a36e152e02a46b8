"""Several workers on one journal: the registry (`corral workers`) and back-pressure.

Two runtimes on one SQLite file stand for two worker processes; `corral workers` runs as
a real subprocess against the file while they are up. The same contract holds on
PostgreSQL (`corral.store.testing.WorkersContract` in tests/test_store_postgres.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Durability, Runtime, SubAgent, tool
from corral.models import FunctionModel, ModelRequest, ModelResponse, ToolCall
from corral.store import SqliteStore


def corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def gated_agent(release: anyio.Event, ran: list[str]) -> SubAgent:
    """Each run looks one invoice up, then waits on `release` before answering."""

    @tool(timeout=5)
    async def lookup(invoice_id: str) -> dict[str, Any]:
        """Look an invoice up."""
        ran.append(invoice_id)
        return {"invoice_id": invoice_id, "total": 10}

    async def respond(request: ModelRequest) -> Any:
        if request.step == 1:
            task = str(request.messages[0].content)  # type: ignore[union-attr]
            return ModelResponse(
                tool_calls=(ToolCall(id="c1", name="lookup", arguments={"invoice_id": task}),)
            )
        await release.wait()
        return "done"

    return SubAgent(
        "billing",
        instructions="You look invoices up.",
        tools=[lookup],
        model=FunctionModel(respond),
    )


@pytest.mark.timeout(60)
async def test_workers_are_listed_with_their_leases_and_leave_the_list_when_they_stop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    release, ran = anyio.Event(), []
    durability = Durability(poll_interval_s=0.05, lease_s=30)
    async with SqliteStore(path) as store_a, SqliteStore(path) as store_b:
        async with (
            Runtime(
                agents=[gated_agent(release, ran)],
                journal=store_a,
                durability=durability.model_copy(update={"owner": "worker-a"}),
            ) as a,
            Runtime(
                agents=[gated_agent(release, ran)],
                journal=store_b,
                durability=durability.model_copy(
                    update={"owner": "worker-b", "max_active_runs": 5}
                ),
            ) as b,
        ):
            handles = [await a.submit(f"INV-{i}") for i in range(3)]
            handles.append(await b.submit("INV-9"))
            with anyio.fail_after(10):
                while len(ran) < 4:
                    await anyio.sleep(0.01)
            listed = corral("--db", f"sqlite:///{path}", "-o", "json", "workers", cwd=tmp_path)
            assert listed.returncode == 0, listed.stderr
            rows = json.loads(listed.stdout)
            table = corral("--db", f"sqlite:///{path}", "workers", cwd=tmp_path)
            release.set()
            with anyio.fail_after(10):
                results = [await h.result() for h in handles]
        after = await store_a.workers(now=rows[0]["seen_at"] + 1, within_s=3600)

    assert [(r["owner"], r["leases"], r["max_active_runs"]) for r in rows] == [
        ("worker-a", 3, None),
        ("worker-b", 1, 5),
    ]
    assert all(r["pid"] == os.getpid() and r["seen_s_ago"] < 30 for r in rows)
    assert table.returncode == 0 and table.stderr == ""
    head, *lines = table.stdout.splitlines()
    assert head.split() == [
        "OWNER",
        "HOST",
        "PID",
        "STARTED",
        "SEEN",
        "LEASES",
        "MAX",
        "RUNS",
        "VERSION",
    ]
    assert [line.split()[0] for line in lines] == ["worker-a", "worker-b"]
    assert all(r.outcome == "completed" for r in results)
    assert after == []  # both retired when they stopped cleanly


def test_corral_workers_on_a_journal_without_workers_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    assert corral("--db", url, "run", "I forgot my password", cwd=tmp_path).returncode == 0
    done = corral("--db", url, "workers", "--within", "5", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "no worker seen in the last 5 s"
    bad = corral("--db", url, "workers", "--within", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--within must be more than 0" in bad.stderr
    missing = corral("--db", f"sqlite:///{tmp_path / 'none.db'}", "workers", cwd=tmp_path)
    assert missing.returncode == 2 and not (tmp_path / "none.db").exists()


@pytest.mark.timeout(60)
async def test_a_capped_worker_drives_at_most_its_share_and_the_rest_wait_for_room(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    release, ran = anyio.Event(), []
    capped = Durability(poll_interval_s=0.05, max_active_runs=2, owner="small")
    async with SqliteStore(path) as store:
        async with Runtime(
            agents=[gated_agent(release, ran)], journal=store, durability=capped
        ) as a:
            handles = [await a.submit(f"INV-{i}") for i in range(5)]
            with anyio.fail_after(10):
                while len(ran) < 2:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # several ticks: still no room for more
            assert sorted(ran) == ["INV-0", "INV-1"]
            infos = [await store.run(h.run_id) for h in handles]
            assert [i.owner for i in infos if i is not None] == ["small", "small", None, None, None]
            assert [i.status for i in infos if i is not None] == ["running"] * 5  # queued, durable

            # A second worker with room pulls the queued runs at its start.
            async with SqliteStore(path) as other_store:
                async with Runtime(
                    agents=[gated_agent(release, ran)],
                    journal=other_store,
                    durability=Durability(poll_interval_s=0.05, owner="big"),
                ) as b:
                    with anyio.fail_after(10):
                        while len(ran) < 5:
                            await anyio.sleep(0.01)
                    owners = [(await store.run(h.run_id)).owner for h in handles]  # type: ignore[union-attr]
                    assert owners == ["small", "small", "big", "big", "big"]
                    release.set()
                    with anyio.fail_after(10):
                        results = [await h.result() for h in handles]
                    assert all(r.outcome == "completed" for r in results)
                    assert await b.wait(handles[4].run_id) == results[4]
    assert sorted(ran) == [f"INV-{i}" for i in range(5)]  # each looked up once


@pytest.mark.timeout(60)
async def test_a_capped_worker_alone_pulls_the_queued_runs_as_its_runs_finish() -> None:
    release, ran = anyio.Event(), []
    capped = Durability(poll_interval_s=None, max_active_runs=1)
    async with Runtime(agents=[gated_agent(release, ran)], durability=capped) as rt:
        handles = [await rt.submit(f"INV-{i}") for i in range(3)]
        with anyio.fail_after(10):
            while not ran:
                await anyio.sleep(0.01)
        assert ran == ["INV-0"]
        release.set()  # no poller: only finishing makes room, and pulls the next
        with anyio.fail_after(10):
            results = [await h.result() for h in handles]
    assert ran == ["INV-0", "INV-1", "INV-2"] and all(r.outcome == "completed" for r in results)
