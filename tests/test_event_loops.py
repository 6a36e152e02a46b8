"""Corral runs on asyncio only, and says so clearly anywhere else.

The README claims asyncio alone: the SQLite journal's driver (aiosqlite) is asyncio-only.
The suite runs on asyncio (pytest-asyncio); these tests start the same programs under
trio and check that a `Runtime` or a `SqliteJournal` refuses at once with a `ConfigError`
naming the loop to use, instead of trio's "unrecognized yield message" from deep inside
aiosqlite, and that nothing was opened or written on the way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from corral import Runtime, SubAgent, tool
from corral.errors import ConfigError
from corral.models import ScriptedModel
from corral.store import SqliteJournal


@tool(timeout=5)
async def echo(text: str) -> str:
    """Say the text back."""
    return text


def _agent() -> SubAgent:
    return SubAgent("echo", instructions="Echo.", tools=[echo], model=ScriptedModel(["done"]))


def _run(main: Callable[[], Awaitable[str]], backend: str) -> str:
    return anyio.run(main, backend=backend)


def _refusal(main: Callable[[], Awaitable[str]]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _run(main, "trio")
    assert type(caught.value) is ConfigError  # one clear exception, not a task-group dump
    return caught.value


def _says_what_to_do(error: ConfigError, what: str) -> None:
    message = str(error)
    assert message.startswith(f"{what} runs on asyncio only, but this program runs on trio")
    assert "aiosqlite" in message
    assert "anyio.run(main)" in message and "asyncio.run(main())" in message


def test_a_runtime_runs_on_asyncio_and_refuses_trio_clearly() -> None:
    runtime = Runtime(agents=[_agent()])

    async def main() -> str:
        async with runtime as rt:
            return (await rt.run("say done")).outcome or ""

    error = _refusal(main)
    _says_what_to_do(error, "Runtime")
    assert runtime._system is None  # no actor system was left half-started
    # The same program on the supported loop works, with the same (reusable) runtime.
    assert _run(main, "asyncio") == "completed"


def test_a_sqlite_journal_refuses_trio_before_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journals" / "corral.db"

    async def main() -> str:
        async with SqliteJournal(path) as journal:
            async with Runtime(agents=[_agent()], journal=journal) as rt:
                return (await rt.run("say done")).outcome or ""

    error = _refusal(main)
    _says_what_to_do(error, "SqliteJournal")
    assert not path.parent.exists()  # refused before creating anything
    assert _run(main, "asyncio") == "completed"
    assert path.exists()
