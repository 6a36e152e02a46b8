"""Hostile neighbours: tools and models that block, ignore cancellation or raise BaseException.

Each ends with a journaled outcome, the run going on where it can, and a Runtime that
exits promptly. The embedding program sees one clear exception, never an exception group.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Limits, tool
from corral._timeout import abandoned_calls
from corral.events import RunFinished, ToolCallFailed
from corral.models import ModelRequest, ScriptedModel, call
from corral.store import SqliteJournal
from corral.tools import RetryPolicy

from ._support import agent, of_kind, runtime

NO_RETRY = RetryPolicy(max_retries=0)
QUICK = Limits(cancel_grace_s=0.2, max_consecutive_same_tool=None)
ROOT = Path(__file__).resolve().parents[1]


def failure(events: Any, tool_name: str) -> ToolCallFailed:
    failed = [e for e in of_kind(events, "tool_call_failed") if e.tool == tool_name]
    assert failed, f"no tool_call_failed for {tool_name}"
    return failed[-1]


async def test_a_sync_tool_blocking_past_its_timeout_is_abandoned_and_the_run_goes_on() -> None:
    release = threading.Event()

    @tool(timeout=0.1, retry=NO_RETRY)
    def stuck(order_id: str) -> str:
        """Blocks until released (a sync client with no timeout of its own)."""
        release.wait()
        return "late"

    model = ScriptedModel([call("stuck", order_id="A-1"), "The order service is down."])
    try:
        started = time.monotonic()
        async with runtime(agent([stuck], model), limits=QUICK) as rt:
            result = await rt.run("Where is order A-1?")
        elapsed = time.monotonic() - started
        assert result.outcome == "completed"
        assert result.output == "The order service is down."
        failed = failure(result.events, "stuck")
        assert failed.error_type == "ToolTimeout"
        assert "thread cannot be interrupted" in failed.error
        assert "abandoned" in failed.error
        # The model was told the call failed, in words it can act on.
        assert "did not finish within its 0.1 s timeout" in model.requests[1].messages[-1].content
        assert elapsed < 5
        assert any("stuck" in name for name in abandoned_calls())
    finally:
        release.set()


async def test_an_async_tool_that_swallows_cancellation_is_given_up_after_the_grace_period() -> (
    None
):
    stop_swallowing = threading.Event()
    cancellations = 0

    @tool(timeout=0.1, retry=NO_RETRY)
    async def stubborn(order_id: str) -> str:
        """Catches every cancellation and keeps going."""
        nonlocal cancellations
        while not stop_swallowing.is_set():
            try:
                await anyio.sleep(0.05)
            except anyio.get_cancelled_exc_class():
                cancellations += 1
                await anyio.lowlevel.cancel_shielded_checkpoint()
        return "finally"

    model = ScriptedModel([call("stubborn", order_id="A-1"), "Order lookup is unavailable."])
    try:
        started = time.monotonic()
        async with runtime(agent([stubborn], model), limits=QUICK) as rt:
            result = await rt.run("Where is order A-1?")
        elapsed = time.monotonic() - started
        assert result.outcome == "completed"
        failed = failure(result.events, "stubborn")
        assert failed.error_type == "ToolTimeout"
        assert "ignored cancellation for 0.2 s more" in failed.error
        assert cancellations > 0  # it really was cancelled, and really ignored it
        assert elapsed < 5  # 0.1 s timeout + 0.2 s grace, and shutdown did not wait for it
        assert any("stubborn" in name for name in abandoned_calls())
    finally:
        stop_swallowing.set()
    with anyio.fail_after(2):
        while any("stubborn" in name for name in abandoned_calls()):
            await anyio.sleep(0.01)  # once it gives in, the abandoned task is forgotten


async def test_a_tool_whose_cleanup_outlasts_the_grace_period_does_not_hold_up_cancel() -> None:
    @tool(timeout=30)
    async def slow_cleanup(order_id: str) -> str:
        """Takes its time to clean up when cancelled."""
        try:
            await anyio.sleep(30)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1)
        return "never"

    model = ScriptedModel([call("slow_cleanup", order_id="A-1"), "unreached"])
    async with runtime(agent([slow_cleanup], model), limits=QUICK) as rt:
        handle = await rt.submit("Where is order A-1?")
        with anyio.fail_after(5):
            while not of_kind(await rt.events(handle.run_id), "tool_call_started"):
                await anyio.sleep(0.01)
        started = time.monotonic()
        assert await handle.cancel()
        result = await handle.result(timeout=5)
        assert time.monotonic() - started < 0.9  # the grace period, not the 1 s cleanup
    assert result.outcome == "cancelled"


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_a_tool_raising_a_base_exception_ends_its_run_and_surfaces_unwrapped(
    tmp_path: Path, raised: type[BaseException]
) -> None:
    @tool(timeout=5)
    async def explode(order_id: str) -> str:
        """Raises a BaseException."""
        raise raised("from the tool")

    model = ScriptedModel([call("explode", order_id="A-1"), "unreached"])
    db = tmp_path / "corral.db"
    async with SqliteJournal(db) as journal:
        with pytest.raises(raised) as caught:
            async with runtime(agent([explode], model), journal=journal) as rt:
                await rt.run("Where is order A-1?")
        assert type(caught.value) is raised  # itself, not inside an exception group
        runs = await journal.runs()
        assert [r.status for r in runs] == ["finished"]
        events = await journal.read(runs[0].run_id)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.outcome == "failed"
    assert finished.reason == f"tool 'explode' raised {raised.__name__}"
    assert failure(events, "explode").error_type == raised.__name__


async def test_a_sync_tool_raising_keyboard_interrupt_surfaces_from_its_thread() -> None:
    @tool(timeout=5)
    def interrupted(order_id: str) -> str:
        """Raises KeyboardInterrupt in its worker thread."""
        raise KeyboardInterrupt

    model = ScriptedModel([call("interrupted", order_id="A-1"), "unreached"])
    with pytest.raises(KeyboardInterrupt):
        async with runtime(agent([interrupted], model)) as rt:
            await rt.run("Where is order A-1?")


async def test_a_base_exception_stops_other_runs_resumably_and_the_waiter_sees_it(
    tmp_path: Path,
) -> None:
    gate = anyio.Event()

    @tool(timeout=5)
    async def wait_then_explode(order_id: str) -> str:
        """Raises SystemExit once released."""
        await gate.wait()
        raise SystemExit(3)

    @tool(timeout=30)
    async def slow(order_id: str) -> str:
        """A long call in another run."""
        await anyio.sleep(30)
        return "done"

    exploding = agent(
        [wait_then_explode],
        ScriptedModel([call("wait_then_explode", order_id="A")]),
        name="exploding",
    )
    patient = agent([slow], ScriptedModel([call("slow", order_id="B")]), name="patient")
    async with SqliteJournal(tmp_path / "corral.db") as journal:
        with pytest.raises(SystemExit) as caught:
            async with runtime(exploding, patient, journal=journal) as rt:
                other = await rt.submit("B", agent="patient")
                handle = await rt.submit("A", agent="exploding")
                with anyio.fail_after(5):
                    while not of_kind(await rt.events(other.run_id), "tool_call_started"):
                        await anyio.sleep(0.01)
                gate.set()
                await handle.result()
        assert caught.value.code == 3
        statuses = {r.agent: r.status for r in await journal.runs()}
    # The run that raised is finished (failed); the other was interrupted, not failed:
    # it is still running in the journal, so the next start resumes it.
    assert statuses == {"exploding": "finished", "patient": "running"}


async def test_a_model_raising_keyboard_interrupt_ends_the_run_and_surfaces() -> None:
    def interrupt(request: ModelRequest) -> Any:
        raise KeyboardInterrupt

    @tool
    async def noop() -> str:
        """Does nothing."""
        return ""

    journaled: list[Any] = []
    with pytest.raises(KeyboardInterrupt):
        async with runtime(agent([noop], ScriptedModel([interrupt]))) as rt:
            rt.subscribe(journaled.append)
            await rt.run("anything")
    finished = [e for e in journaled if isinstance(e, RunFinished)]
    assert [f.outcome for f in finished] == ["failed"]
    assert "raised KeyboardInterrupt" in finished[0].reason


async def test_a_model_returning_something_else_fails_the_run_naming_the_contract() -> None:
    class Broken:
        name = "broken"

        async def request(self, request: ModelRequest) -> Any:
            return "just a string"

    @tool
    async def noop() -> str:
        """Does nothing."""
        return ""

    async with runtime(agent([noop], Broken())) as rt:  # type: ignore[arg-type]
        result = await rt.run("anything")
    assert result.outcome == "failed"
    assert "broke the model protocol" in result.reason
    assert "returned str, not a ModelResponse" in result.reason
    assert len(of_kind(result.events, "model_failed")) == 1  # not retried: it would break again


def run_program(source: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_a_program_whose_sync_tool_blocks_forever_still_exits() -> None:
    done = run_program(
        """
        import time, anyio
        from corral import Limits, Runtime, SubAgent, tool
        from corral.models import ScriptedModel, call
        from corral.tools import RetryPolicy

        @tool(timeout=0.2, retry=RetryPolicy(max_retries=0))
        def forever(x: str) -> str:
            '''Never returns.'''
            time.sleep(3600)
            return x

        agent = SubAgent("a", instructions="i", tools=[forever],
                         model=ScriptedModel([call("forever", x="1"), "gave up"]))

        async def main():
            async with Runtime(agents=[agent], limits=Limits(cancel_grace_s=0.1)) as rt:
                result = await rt.run("go")
            print(result.outcome, result.output)

        anyio.run(main)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed gave up"


def test_a_program_sees_one_keyboard_interrupt_not_an_exception_group() -> None:
    done = run_program(
        """
        import anyio
        from corral import Runtime, SubAgent, tool
        from corral.models import ScriptedModel, call

        @tool
        async def boom(x: str) -> str:
            '''Interrupts.'''
            raise KeyboardInterrupt

        agent = SubAgent("a", instructions="i", tools=[boom],
                         model=ScriptedModel([call("boom", x="1"), "unreached"]))

        async def main():
            async with Runtime(agents=[agent]) as rt:
                await rt.run("go")

        anyio.run(main)
        """
    )
    assert done.returncode != 0
    assert done.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt"
    assert "ExceptionGroup" not in done.stderr
    assert "TaskGroup" not in done.stderr


async def test_shutting_down_with_a_deaf_tool_in_flight_takes_only_the_grace_period(
    tmp_path: Path,
) -> None:
    stop_swallowing = threading.Event()

    @tool(timeout=30)
    async def deaf(order_id: str) -> str:
        """Ignores every cancellation until released."""
        while not stop_swallowing.is_set():
            try:
                await anyio.sleep(0.05)
            except anyio.get_cancelled_exc_class():
                await anyio.lowlevel.cancel_shielded_checkpoint()
        return "released"

    model = ScriptedModel([call("deaf", order_id="A-1"), "unreached"])
    try:
        async with SqliteJournal(tmp_path / "corral.db") as journal:
            rt = runtime(agent([deaf], model), limits=QUICK, journal=journal)
            async with rt:
                handle = await rt.submit("Where is order A-1?")
                with anyio.fail_after(5):
                    while not of_kind(await rt.events(handle.run_id), "tool_call_started"):
                        await anyio.sleep(0.01)
                started = time.monotonic()
            elapsed = time.monotonic() - started
            assert elapsed < 1.5  # 0.2 s grace, not the tool's 30 s timeout or forever
            # Nothing was decided about the call: the run stays resumable.
            assert [r.status for r in await journal.runs()] == ["running"]
    finally:
        stop_swallowing.set()
