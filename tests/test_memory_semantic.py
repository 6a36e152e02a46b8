"""Semantic memory: chunking, threshold, MMR, no-match, tenants, persistence, CLI, tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral.errors import ConfigError, UsageError
from corral.memory import HashingEmbedder, SemanticMemory, chunk_markdown
from corral.memory._semantic_tool import memory_tool
from corral.store import MemoryJournal, SqliteStore

DOC = """# Deploy guide

Intro paragraph about deployments.

## Rollback

To roll back a release, run `deploy rollback --to PREVIOUS`. The previous build is kept
for seven days. After that it is gone.

## Database migrations

Migrations run before the new release starts. A failed migration stops the deploy.

```sql
ALTER TABLE invoices ADD COLUMN paid_at REAL;
```
"""


def test_chunks_follow_headings_and_carry_their_path() -> None:
    chunks = chunk_markdown(DOC, source="guide.md")
    assert [c.headings for c in chunks] == [
        ("Deploy guide",),
        ("Deploy guide", "Rollback"),
        ("Deploy guide", "Database migrations"),
    ]
    assert all(c.source == "guide.md" for c in chunks)
    assert [c.ordinal for c in chunks] == [0, 1, 2]
    assert "```sql\nALTER TABLE invoices ADD COLUMN paid_at REAL;\n```" in chunks[2].text


def test_a_code_block_that_fits_is_never_cut() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    text = "# T\n\n" + "word " * 60 + "\n\n" + code + "\n\n" + "tail " * 10
    chunks = chunk_markdown(text, source="s", max_chars=400, overlap_chars=0)
    holding = [c for c in chunks if "x0 = 0" in c.text]
    assert len(holding) == 1 and "x29 = 29\n```" in holding[0].text
    assert all(len(c.text) <= 400 for c in chunks)


def test_long_sections_overlap_by_whole_sentences() -> None:
    sentences = [f"Sentence number {i} says something." for i in range(40)]
    text = "# Long\n\n" + "\n\n".join(" ".join(sentences[i : i + 4]) for i in range(0, 40, 4))
    chunks = chunk_markdown(text, source="s", max_chars=300, overlap_chars=80)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:], strict=False):
        first = after.text.split(". ")[0]
        assert first in before.text  # the next chunk starts with the end of the previous one
    assert all(len(c.text) <= 300 for c in chunks)


def test_chunking_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        chunk_markdown("x", source="s", max_chars=50)
    with pytest.raises(ConfigError):
        chunk_markdown("x", source="s", max_chars=200, overlap_chars=150)


@pytest.fixture
def memory() -> SemanticMemory:
    m = SemanticMemory(":memory:")
    m.add_text(DOC, source="guide.md")
    m.add_text(
        "# Billing\n\nInvoices are sent on the first day of the month. "
        "A refund takes five business days.",
        source="billing.md",
    )
    return m


def test_a_relevant_question_finds_its_section(memory: SemanticMemory) -> None:
    result = memory.search("how do I roll back a release")
    assert result.hits
    top = result.hits[0]
    assert top.headings == ("Deploy guide", "Rollback") and top.source == "guide.md"
    assert top.score >= result.threshold


def test_nothing_relevant_returns_nothing_and_says_why(memory: SemanticMemory) -> None:
    result = memory.search("configure a kubernetes ingress controller")
    assert result.hits == ()
    assert not result
    assert result.dropped and all(d.reason == "below_threshold" for d in result.dropped)
    assert "Nothing relevant found" in result.as_text()


def test_the_threshold_decides_and_reports_scores(memory: SemanticMemory) -> None:
    loose = memory.search("refund invoices", threshold=0.0, k=10)
    strict = memory.search("refund invoices", threshold=0.99, k=10)
    assert loose.hits and not strict.hits
    assert {d.hit.chunk_id for d in strict.dropped} >= {h.chunk_id for h in loose.hits}
    assert "below threshold: score" in strict.dropped[0].explain(strict.threshold)
    with pytest.raises(UsageError):
        memory.search("x", threshold=1.5)
    with pytest.raises(UsageError):
        memory.search("x", k=0)


def test_near_duplicates_are_dropped_naming_the_hit_they_repeat() -> None:
    m = SemanticMemory(":memory:")
    text = "# Refunds\n\nA refund takes five business days and goes back to the card used."
    m.add_text(text, source="a.md")
    m.add_text(text.replace("card used", "card that was used"), source="b.md")
    m.add_text("# Refunds policy\n\nRefunds over 500 euros need a manager.", source="c.md")
    result = m.search("how long does a refund take", k=3)
    dup = [d for d in result.dropped if d.reason == "near_duplicate"]
    assert len(dup) == 1
    assert dup[0].duplicate_of in {h.chunk_id for h in result.hits}
    sources = [h.source for h in result.hits]
    assert ("a.md" in sources) != ("b.md" in sources)  # one of the twins, never both
    assert "near-duplicate of chunk" in dup[0].explain(result.threshold)


def test_beyond_top_k_is_reported(memory: SemanticMemory) -> None:
    result = memory.search("deploy release migration rollback", k=1, threshold=0.0)
    assert len(result.hits) == 1
    assert any(d.reason == "beyond_top_k" for d in result.dropped)


def test_tenants_never_see_each_other(memory: SemanticMemory) -> None:
    memory.add_text("# Secret\n\nThe launch code is tangerine.", source="s.md", tenant="acme")
    assert memory.search("launch code tangerine").hits == ()
    assert memory.search("launch code tangerine", tenant="acme").hits[0].source == "s.md"
    assert memory.forget_tenant("acme") == 1
    assert memory.search("launch code tangerine", tenant="acme").hits == ()


def test_unchanged_sources_are_skipped_and_changed_ones_replaced(memory: SemanticMemory) -> None:
    assert memory.add_text(DOC, source="guide.md").status == "unchanged"
    changed = memory.add_text("# Deploy guide\n\nOnly this now.", source="guide.md")
    assert changed.status == "updated" and changed.chunks == 1
    assert memory.search("roll back a release").hits == ()


def test_plain_python_and_numpy_give_the_same_answer() -> None:
    a = SemanticMemory(":memory:", use_numpy=True)
    b = SemanticMemory(":memory:", use_numpy=False)
    for m in (a, b):
        m.add_text(DOC, source="guide.md")
    ra, rb = a.search("database migration failed"), b.search("database migration failed")
    assert [h.chunk_id for h in ra.hits] == [h.chunk_id for h in rb.hits]
    assert [round(h.score, 4) for h in ra.hits] == [round(h.score, 4) for h in rb.hits]


async def test_it_persists_in_the_store_file_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        with SemanticMemory.open(store) as m:
            m.add_text(DOC, source="guide.md", tags={"team": "ops"})
    async with SqliteStore(path) as store:  # still a valid journal file
        assert await store.runs() == []
    with SemanticMemory.open(f"sqlite:///{path}") as m:
        hit = m.search("roll back a release").hits[0]
        assert hit.tags == {"team": "ops"} and m.count() == 3
    with SemanticMemory.open(MemoryJournal()) as m:  # a MemoryJournal: private, in memory
        assert m.count() == 0


def test_another_embedder_re_embeds_instead_of_mixing(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with SemanticMemory(path) as m:
        m.add_text(DOC, source="guide.md")
    with SemanticMemory(path, embedder=HashingEmbedder(128)) as m:
        assert m.search("roll back a release").hits[0].headings[-1] == "Rollback"
        rows = m._conn.execute("SELECT embedder, count(*) FROM semantic_vectors GROUP BY 1")
        assert dict(rows.fetchall()) == {"hashing-v1-256": 3, "hashing-v1-128": 3}


def test_must_exist_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        SemanticMemory.open(f"sqlite:///{tmp_path / 'missing.db'}", must_exist=True)
    foreign = tmp_path / "other.db"
    import sqlite3

    conn = sqlite3.connect(foreign)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="another application"):
        SemanticMemory(foreign)


def test_add_paths_refuses_binary_and_missing_files_before_writing(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# Ok\n\nfine text", encoding="utf-8")
    (tmp_path / "blob.md").write_bytes(b"\x00\x01\x02binary")
    m = SemanticMemory(":memory:")
    with pytest.raises(UsageError, match="binary"):
        m.add_paths([tmp_path])
    with pytest.raises(UsageError, match="no such file"):
        m.add_paths([tmp_path / "nope.md"])
    assert m.count() == 0


async def test_the_memory_tool_answers_with_sources_or_nothing(memory: SemanticMemory) -> None:
    tool = memory_tool(memory, k=2)
    assert tool.name == "search_memory" and tool.side_effect == "read"
    found = await tool.fn(query="how do I roll back a release")
    assert "guide.md > Deploy guide > Rollback" in found
    assert "Nothing relevant found" in await tool.fn(query="kubernetes ingress controller")
    assert not tool.validate({"query": "x"}) and tool.validate({"q": "x"})


def _corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORRAL_DB": ""}
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_add_and_search_on_a_sqlite_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text(DOC, encoding="utf-8")
    (docs / "sub" / "notes.txt").write_text("Refunds take five business days.", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG\x00")  # not a text suffix: ignored in a dir
    db = f"sqlite:///{tmp_path / 'mem.db'}"
    added = _corral("--db", db, "memory", "add", str(docs), "--tag", "team=ops", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "4 chunk(s) added" in added.stdout
    again = _corral("--db", db, "memory", "add", str(docs), cwd=tmp_path)
    assert again.stdout.count("updated") == 2  # other tags: the files are stored again
    again = _corral("--db", db, "memory", "add", str(docs), cwd=tmp_path)
    assert "2 file(s) unchanged" in again.stdout
    hit = _corral("--db", db, "memory", "search", "roll back a release", "-o", "json", cwd=tmp_path)
    assert hit.returncode == 0, hit.stderr
    data = json.loads(hit.stdout)
    assert data["hits"][0]["headings"] == ["Deploy guide", "Rollback"]
    none = _corral("--db", db, "memory", "search", "kubernetes ingress", cwd=tmp_path)
    assert none.returncode == 0 and "nothing relevant" in none.stdout
    assert "below threshold" in none.stdout
    bad = _corral("--db", db, "memory", "add", str(tmp_path / "missing.md"), cwd=tmp_path)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    (tmp_path / "bin.txt").write_bytes(b"\x00\x00")
    binary = _corral("--db", db, "memory", "add", str(tmp_path / "bin.txt"), cwd=tmp_path)
    assert binary.returncode == 2 and "binary" in binary.stderr
    usage = _corral("--db", db, "memory", "search", "x", "-k", "0", cwd=tmp_path)
    assert usage.returncode == 2
    nodb = _corral(
        "--db", f"sqlite:///{tmp_path / 'none.db'}", "memory", "search", "x", cwd=tmp_path
    )
    assert nodb.returncode == 2 and not (tmp_path / "none.db").exists()


def test_tenants_whose_names_share_words_stay_apart() -> None:
    m = SemanticMemory(":memory:")
    m.add_text("# Keys\n\nThe vault key rotates weekly.", source="k.md", tenant="acme corp")
    assert m.search("vault key rotation", tenant="acme").hits == ()
    assert m.search("vault key rotation", tenant="corp").hits == ()
    assert m.search("vault key rotation", tenant="acme corp").hits


def test_a_second_connection_sees_writes_made_after_it_loaded(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SemanticMemory(path) as reader, SemanticMemory(path) as writer:
        writer.add_text(DOC, source="guide.md")
        assert reader.search("refund business days").hits == ()  # index loaded now
        writer.add_text("# Billing\n\nA refund takes five business days.", source="b.md")
        assert reader.search("refund business days").hits[0].source == "b.md"


def test_it_works_without_numpy(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from corral.memory import SemanticMemory\n"
        "m = SemanticMemory(':memory:')\n"
        "assert not m.use_numpy\n"
        f"m.add_text({DOC!r}, source='guide.md')\n"
        "print(m.search('roll back a release').hits[0].heading_path)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Deploy guide > Rollback"
