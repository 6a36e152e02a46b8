"""Figures of memory: retrieval latency at 10,000 and 100,000 chunks, ingestion, context building.

Prints:
  1. ingestion rate (chunks/s) into a SQLite file: chunking, the default embedder
     (`HashingEmbedder`), FTS5 and vectors, one transaction per document;
  2. hybrid search latency p50/p99 (ms) over 10,000 and 100,000 chunks of one tenant, with
     the numpy dense index (the default when numpy is installed) and, on fewer queries,
     with the plain-Python fallback (no numpy).

The chunks are the test corpus (13 pages of the Python documentation) cycled with
random words of its vocabulary added, so no two are identical; the queries are the
labelled ones of tests/test_memory_quality.py. Target (issue 14): p50 < 25 ms at 100,000
chunks.

  3. context building per model call (`corral.memory.build_context`, what the agent loop
     runs before each call): a 50-step conversation whose tool results are about 800
     tokens each, in an 8,000-token window, built incrementally as a run does. Reported
     as the median over the steps where the conversation still fits, where it is
     compacted (the summary and recent turns), and on the steps that write an extractive
     summary.
Run: ``python benchmarks/bench_memory.py [--quick]``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import record  # noqa: E402

from corral.memory import ContextWindow, SemanticMemory, build_context, chunk_markdown  # noqa: E402
from corral.models import (  # noqa: E402
    AssistantMessage,
    Message,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)

BENCH = "bench_memory"
CORPUS = ROOT / "tests" / "fixtures" / "memory" / "corpus"
QUERIES = ROOT / "tests" / "fixtures" / "memory" / "queries.json"
SECTIONS_PER_DOC = 10


def documents(n_chunks: int, seed: int = 7) -> list[str]:
    """Markdown documents of about `n_chunks` chunks in all, one heading per chunk."""
    rng = random.Random(seed)
    base = [
        c for p in sorted(CORPUS.glob("*.md")) for c in chunk_markdown(p.read_text(), source=p.name)
    ]
    vocab = sorted({w for c in base for w in c.text.split() if w.isalpha() and len(w) > 3})
    docs: list[str] = []
    for d in range(0, n_chunks, SECTIONS_PER_DOC):
        parts = [f"# Document {d // SECTIONS_PER_DOC}"]
        for i in range(d, min(d + SECTIONS_PER_DOC, n_chunks)):
            chunk = base[i % len(base)]
            extra = " ".join(rng.choice(vocab) for _ in range(12))
            parts.append(f"## {chunk.headings[-1] if chunk.headings else 'Section'} {i}")
            parts.append(chunk.text[:850] + "\n\n" + extra + ".")
        docs.append("\n\n".join(parts))
    return docs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(memory: SemanticMemory, queries: list[str], n: int) -> tuple[float, float]:
    memory.search(queries[0])  # load the dense index once
    times = []
    for i in range(n):
        start = time.perf_counter()
        memory.search(queries[i % len(queries)])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), percentile(times, 0.99)


def conversation(steps: int) -> list[Message]:
    """A run's messages: the task, then per step a tool call and its ~800-token result."""
    messages: list[Message] = [UserMessage(content="Total the Globex ledger for March")]
    for step in range(1, steps + 1):
        call = ToolCall(id=f"c{step}", name="read_page", arguments={"page": step})
        messages.append(AssistantMessage(text=f"Reading page {step}.", tool_calls=(call,)))
        entries = " ".join(f"entry {step}.{i} is {i * 3} USD;" for i in range(160))
        messages.append(
            ToolResultMessage(
                call_id=f"c{step}", tool="read_page", content=f"Page {step}: {entries}"
            )
        )
    return messages


def context_building(steps: int, rounds: int) -> dict[str, float]:
    """Median µs per `build_context` call: while it fits, once compacted, when summarising."""
    full = conversation(steps)
    times: dict[str, list[float]] = {"fits": [], "compacted": [], "summarising": []}
    for _ in range(rounds):
        window = ContextWindow(8_000)
        summary, through = "", 0
        for step in range(1, steps + 1):
            messages = full[: 1 + 2 * step]
            before = through
            start = time.perf_counter()
            context, summary, through = build_context(
                messages,
                context_tokens=8_000,
                window=window,
                system="You total ledgers, page by page.",
                summary=summary,
                summarised_through=through,
            )
            elapsed = (time.perf_counter() - start) * 1e6
            kind = (
                "summarising" if through != before else "compacted" if context.compacted else "fits"
            )
            times[kind].append(elapsed)
    return {k: statistics.median(v) for k, v in times.items() if v}


def main(quick: bool) -> None:
    building = context_building(50, 3 if quick else 30)
    for kind, micros in building.items():
        print(
            f"context building, {kind:<12} {micros:8.1f} µs per call (50 steps, 8,000-token window)"
        )
        record(BENCH, f"context building per call ({kind})", micros, "µs", quick=quick)
    sizes = [1_000, 5_000] if quick else [10_000, 100_000]
    queries = [q["q"] for q in json.loads(QUERIES.read_text())["queries"]]
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"memory-{size}.db"
            docs = documents(size)
            with SemanticMemory(path) as memory:
                start = time.perf_counter()
                for n, doc in enumerate(docs):
                    memory.add_text(doc, source=f"doc-{n}.md")
                elapsed = time.perf_counter() - start
                chunks = memory.count()
                rate = chunks / elapsed
                print(f"ingest {chunks:>7,} chunks: {elapsed:6.1f} s, {rate:,.0f} chunks/s")
                record(BENCH, f"ingestion, {size:,} chunks", rate, "chunks/s", quick=quick)
            with SemanticMemory(path, use_numpy=True) as memory:
                p50, p99 = latency(memory, queries, 50 if quick else 300)
                print(
                    f"search  {chunks:>7,} chunks, numpy:        p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
                )
                target = ("<", 25.0) if size == 100_000 else None
                record(
                    BENCH,
                    f"search p50, {size:,} chunks (numpy)",
                    p50,
                    "ms",
                    target=target,
                    quick=quick,
                )
                record(BENCH, f"search p99, {size:,} chunks (numpy)", p99, "ms", quick=quick)
            with SemanticMemory(path, use_numpy=False) as memory:
                p50, p99 = latency(memory, queries, 10 if quick else 20)
                print(
                    f"search  {chunks:>7,} chunks, plain Python: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
                )
                record(BENCH, f"search p50, {size:,} chunks (no numpy)", p50, "ms", quick=quick)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
