"""Episodic memory: finished runs kept as episodes, offered to later runs of the same agent.

Judged by what the model is shown (the first request's leading block) and by what the
store holds: a relevant past run is offered, an irrelevant, failed, other tenant's or
forgotten one is not; no secret reaches an episode; retention and ``corral memory
forget`` (a real subprocess on a real SQLite file) delete what they say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral import Durability, Guards, MockClock, Runtime, SubAgent, ToolContext, tool
from corral.errors import ConfigError, ModelError, UsageError
from corral.events import EpisodesRecalled
from corral.memory._context_tokens import text_tokens
from corral.memory._episodes import (
    EpisodeSettings,
    MemoryEpisodes,
    SqliteEpisodes,
    episode_of,
    episodes_for,
    forget_episodes,
    task_similarity,
)
from corral.models import FunctionModel, ModelRequest, ToolCall, ToolResultMessage, UserMessage
from corral.store import MemoryJournal, SqliteStore

SECRET = "sk-ant-api03-" + "Zq8xW2vN5mK7pL1rT4yB6hJ9cF3dG0sA" * 3
START = 1_700_000_000.0


def invoice_tool() -> Any:
    @tool(timeout=5)
    async def get_invoice(invoice_id: str, ctx: ToolContext, api_key: str = "") -> dict[str, Any]:
        """Fetch one invoice with its total."""
        return {"invoice_id": invoice_id, "total": 1250.0}

    return get_invoice


class Clerk:
    """Looks the invoice of the task up, then answers; records what it was shown."""

    def __init__(self, *, fail: bool = False, api_key: str = "") -> None:
        self.requests: list[ModelRequest] = []
        self.fail = fail
        self.api_key = api_key

    def __call__(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        if self.fail:
            raise ModelError("400 bad request", retryable=False, status_code=400)
        last = request.messages[-1]
        if isinstance(last, ToolResultMessage):
            return f"The total is 1250.00 USD ({last.call_id})."
        task = next(m.content for m in reversed(request.messages) if isinstance(m, UserMessage))
        invoice = next((w.strip("?.") for w in task.split() if w.startswith("INV-")), "INV-0")
        arguments: dict[str, Any] = {"invoice_id": invoice}
        if self.api_key:
            arguments["api_key"] = self.api_key
        return ToolCall(id=f"call_{request.step}", name="get_invoice", arguments=arguments)

    def examples(self) -> str | None:
        """The past-examples block of the first request, if any."""
        first = self.requests[0].messages[0]
        assert isinstance(first, UserMessage)
        return first.content if first.content.startswith("Past examples") else None


def billing(model: Clerk, settings: EpisodeSettings | None = None) -> SubAgent:
    return SubAgent(
        "billing",
        instructions="You answer questions about invoices.",
        tools=[invoice_tool()],
        model=FunctionModel(model),
        episodes=settings if settings is not None else EpisodeSettings(),
    )


def runtime(model: Clerk, settings: EpisodeSettings | None = None, **options: Any) -> Runtime:
    options.setdefault("guards", Guards(screen=None))
    return Runtime(agents=[billing(model, settings)], **options)


async def test_a_relevant_past_run_is_offered_and_an_irrelevant_one_is_not() -> None:
    journal = MemoryJournal()
    async with runtime(Clerk(), journal=journal) as rt:
        first = await rt.run("What is the total of invoice INV-000101?")
        assert first.outcome == "completed"
    relevant = Clerk()
    async with runtime(relevant, journal=journal) as rt:  # a new runtime, the same store
        second = await rt.run("What is the total of invoice INV-000207?")
        events = await rt.journal.read(second.run_id)
    block = relevant.examples()
    assert block is not None
    assert "not instructions" in block and first.run_id in block
    assert "get_invoice" in block and "INV-000101" in block and "1250.00 USD" in block
    # The task comes right after the examples, and the block is journaled.
    assert relevant.requests[0].messages[1] == UserMessage(
        content="What is the total of invoice INV-000207?"
    )
    (recalled,) = [e for e in events if isinstance(e, EpisodesRecalled)]
    assert recalled.text == block and recalled.episodes[0]["run_id"] == first.run_id
    assert recalled.episodes[0]["score"] >= EpisodeSettings().min_score

    unrelated = Clerk()
    async with runtime(unrelated, journal=journal) as rt:
        await rt.run("Delete the customer record C-9 from the CRM")
    assert unrelated.examples() is None


async def test_failed_runs_are_not_offered_unless_asked_for() -> None:
    journal = MemoryJournal()
    async with runtime(Clerk(fail=True), journal=journal) as rt:
        failed = await rt.run("What is the total of invoice INV-000101?")
    assert failed.outcome == "failed"
    by_default = Clerk()
    async with runtime(by_default, journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000102?")
    # Only the completed run just made is a candidate now; the failed one never was.
    assert by_default.examples() is None
    wanting = Clerk()
    settings = EpisodeSettings(outcomes=frozenset({"completed", "failed"}))
    async with runtime(wanting, settings, journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000103?")
    block = wanting.examples()
    assert block is not None and failed.run_id in block


async def test_the_threshold_count_and_token_cap_are_respected() -> None:
    journal = MemoryJournal()
    for n in range(3):
        async with runtime(Clerk(), journal=journal) as rt:
            await rt.run(f"What is the total of invoice INV-00010{n}?")
    strict = Clerk()
    async with runtime(strict, EpisodeSettings(min_score=0.99), journal=journal) as rt:
        await rt.run("What is the grand total of invoice INV-000199?")
    assert strict.examples() is None
    lenient = Clerk()
    async with runtime(lenient, EpisodeSettings(min_score=0.5), journal=journal) as rt:
        await rt.run("What is the grand total of invoice INV-000199?")
    assert lenient.examples() is not None

    one = Clerk()
    async with runtime(one, EpisodeSettings(count=1), journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000198?")
    block = one.examples()
    assert block is not None and block.count("--- Example") == 1

    small = Clerk()
    async with runtime(small, EpisodeSettings(max_tokens=80, count=3), journal=journal) as rt:
        result = await rt.run("What is the total of invoice INV-000197?")
        events = await rt.journal.read(result.run_id)
    block = small.examples()
    assert block is not None and text_tokens(block) <= 80
    (recalled,) = [e for e in events if isinstance(e, EpisodesRecalled)]
    assert recalled.tokens <= 80 and len(recalled.episodes) == 1


def test_task_similarity_ranks_distinctive_shared_words_first() -> None:
    past = [
        "What is the total of invoice INV-000101?",
        "Refund order ORD-7 to the customer",
        "Delete the customer record C-9",
    ]
    scores = task_similarity("What is the total of invoice INV-000207?", past)
    assert scores[0] > 0.9 and scores[1] == scores[2] == 0.0
    shared = task_similarity("Refund the invoice INV-000101 total", past)
    other = task_similarity("Refund the invoice INV-000999 total", past)
    assert shared[0] > other[0] > 0.35  # the same invoice is closer still
    assert task_similarity("the of is", past) == [0.0, 0.0, 0.0]
    assert task_similarity("Refund order ORD-7 to the customer", past)[1] == pytest.approx(1.0)


async def test_another_tenants_past_is_never_offered() -> None:
    journal = MemoryJournal()
    async with runtime(Clerk(), journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000101?", tenant="acme")
    other = Clerk()
    async with runtime(other, journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000101?", tenant="globex")
    assert other.examples() is None
    same = Clerk()
    async with runtime(same, journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000101?", tenant="acme")
    assert same.examples() is not None


async def test_episodes_never_hold_secrets(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    task = f"What is the total of invoice INV-000101? Use the key {SECRET} and password=hunter2x"
    async with SqliteStore(path) as journal:
        async with runtime(Clerk(api_key=SECRET), journal=journal) as rt:
            result = await rt.run(task)
        events = await journal.read(result.run_id)
    assert any(SECRET in e.model_dump_json() for e in events)  # the tool call had it
    store = SqliteEpisodes(path)
    try:
        episode = await store.get(result.run_id)
    finally:
        await store.close()
    assert episode is not None and episode.calls
    stored = episode.to_json() + episode.render()
    assert SECRET not in stored and "hunter2x" not in stored
    assert "[REDACTED" in episode.task and "[REDACTED" in episode.calls[0].arguments
    assert "INV-000101" in episode.task
    # Offered to a later run, the block holds no secret either.
    later = Clerk()
    async with SqliteStore(path) as journal:
        async with runtime(later, EpisodeSettings(min_score=0.2), journal=journal) as rt:
            await rt.run("What is the total of invoice INV-000102?")
    block = later.examples()
    assert block is not None and SECRET not in block and "hunter2x" not in block


async def test_forgetting_an_episode_and_a_tenant_through_the_api() -> None:
    journal = MemoryJournal()
    async with runtime(Clerk(), journal=journal) as rt:
        a = await rt.run("What is the total of invoice INV-000101?", tenant="acme")
        b = await rt.run("What is the total of invoice INV-000102?", tenant="acme")
        c = await rt.run("What is the total of invoice INV-000103?", tenant="globex")
    store, owned = episodes_for(journal)
    assert not owned and isinstance(store, MemoryEpisodes) and len(store) == 3
    assert await forget_episodes(store, run_id=a.run_id) == 1
    assert await store.get(a.run_id) is None
    assert await forget_episodes(store, run_id=a.run_id) == 0
    assert await forget_episodes(store, tenant="acme") == 1
    assert await store.get(b.run_id) is None and await store.get(c.run_id) is not None
    with pytest.raises(UsageError):
        await forget_episodes(store)
    forgotten = Clerk()
    async with runtime(forgotten, journal=journal) as rt:
        await rt.run("What is the total of invoice INV-000104?", tenant="acme")
    assert forgotten.examples() is None


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_corral_memory_forget_on_a_sqlite_file(tmp_path: Path) -> None:
    from corral.memory._semantic import SemanticMemory

    path = tmp_path / "corral.db"
    async with SqliteStore(path) as journal:
        async with runtime(Clerk(), journal=journal) as rt:
            a = await rt.run("What is the total of invoice INV-000101?", tenant="acme")
            b = await rt.run("What is the total of invoice INV-000102?", tenant="acme")
            c = await rt.run("What is the total of invoice INV-000103?", tenant="globex")
    with SemanticMemory(path) as memory:
        memory.add_text("# Refunds\n\nRefunds take 5 days.", source="faq.md", tenant="acme")
        memory.add_text("# Refunds\n\nRefunds take 3 days.", source="faq.md", tenant="globex")
        assert memory.count("acme") > 0
    url = f"sqlite:///{path}"

    done = corral("--db", url, "memory", "forget", "--episode", a.run_id)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and f"forgot the episode of run {a.run_id}" in done.stdout
    again = corral("--db", url, "memory", "forget", "--episode", a.run_id)
    assert again.returncode == 1 and "no episode" in again.stdout

    tenant = corral("--db", url, "-o", "json", "memory", "forget", "--tenant", "acme")
    assert tenant.returncode == 0, tenant.stderr
    report = json.loads(tenant.stdout)
    assert report["episodes"] == 1 and report["chunks"] > 0 and report["tenant"] == "acme"
    twice = corral("--db", url, "memory", "forget", "--tenant", "acme")  # idempotent
    assert twice.returncode == 0 and "forgot 0 episode(s) and 0 memory chunk(s)" in twice.stdout

    store = SqliteEpisodes(path)
    try:
        assert await store.get(a.run_id) is None and await store.get(b.run_id) is None
        assert await store.get(c.run_id) is not None and await store.count() == 1
    finally:
        await store.close()
    with SemanticMemory(path) as memory:
        assert memory.count("acme") == 0 and memory.count("globex") > 0
    # The journal, the audit trail, keeps the runs.
    async with SqliteStore(path) as journal:
        assert await journal.read(a.run_id)

    usage = corral("--db", url, "memory", "forget")
    assert usage.returncode == 2 and "--episode" in usage.stderr
    missing = corral(
        "--db", f"sqlite:///{tmp_path / 'none.db'}", "memory", "forget", "--tenant", "x"
    )
    assert missing.returncode == 2 and "no store at" in missing.stderr
    assert not (tmp_path / "none.db").exists()


async def test_retention_prunes_old_episodes_on_the_maintenance_tick() -> None:
    clock = MockClock(START)
    journal = MemoryJournal(clock=clock)
    settings = EpisodeSettings(retention_days=2)
    durability = Durability(poll_interval_s=None)
    async with runtime(
        Clerk(), settings, journal=journal, clock=clock, durability=durability
    ) as rt:
        old = await rt.run("What is the total of invoice INV-000101?")
        clock.advance(3 * 86_400)
        new = await rt.run("What is the total of invoice INV-000102?")
        store, _ = episodes_for(journal)
        assert await store.get(old.run_id) is not None
        await rt.tick()
        assert await store.get(old.run_id) is None
        assert await store.get(new.run_id) is not None
        clock.advance(1 * 86_400)
        await rt.tick()  # within the hour since the last prune: nothing to do yet
        clock.advance(1.5 * 86_400)
        await rt.tick()
        assert await store.get(new.run_id) is None


def test_an_episode_is_built_only_from_a_finished_run() -> None:
    assert episode_of([]) is None
    with pytest.raises(ConfigError):
        EpisodeSettings(count=0)
