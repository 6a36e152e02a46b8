"""Semantic memory: chunks of text in the store, found by hybrid retrieval, or not at all.

Storage. `SemanticMemory` keeps sources, chunks, vectors and a lexical index in the
store's SQLite file (tables ``semantic_*``, see ``_semantic_schema.py``), on its own
connection in WAL mode, beside the journal's; ``memory://`` and a `MemoryJournal` give a
private in-memory database. Every row has a tenant; a search sees one tenant only.

Retrieval. A query goes to two indexes. The lexical one is SQLite FTS5, ranked by BM25,
over the chunk's terms (heading path and text; ``_semantic_text.terms``). The dense one
is the embedder's vectors, searched exhaustively: a numpy matrix per tenant kept in
memory (reloaded when this or another connection changes the tenant's chunks), or plain
Python when numpy is absent (slower: see the benchmark). The two candidate lists are
merged; the calibrated relevance below orders them (reciprocal rank fusion, RRF with
k = 60, breaks ties).

Relevance. Whether a candidate may reach a context window is decided by one calibrated
score in [0, 1], the same scale for every query:

    relevance = lexical_weight * coverage + (1 - lexical_weight) * dense

``coverage`` is the lexical match quality: the IDF-weighted share of the query's terms
that the chunk contains (a query term no chunk holds weighs the most, so a question about
something absent scores low even when its common words match). ``dense`` is how far the
chunk's cosine similarity stands above the query's background (its mean similarity to
the tenant's chunks, shrunk toward 0 for a tenant of few chunks), as a share of the way
to 1. Half of the coverage is earned in the chunk's own headings (below the document's
title): a section named for what the query asks about ranks first. Candidates below
`threshold` are dropped; the rest are ordered by maximal marginal relevance (relevance,
less similarity to the hits already taken); a candidate whose terms nearly repeat a hit
already taken (Jaccard of term pairs at or above `duplicate_similarity`) is dropped as
its near-duplicate, and beyond `k` hits the rest are dropped as beyond top-k. The result
says what it dropped and why; when nothing clears the threshold, it holds no hits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import os
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread

from ..errors import ConfigError, UsageError
from ..store import Journal, MemoryJournal, SqliteStore, open_store, store_url
from ._chunk import Chunk, chunk_markdown
from ._embed import Embedder, HashingEmbedder
from ._semantic_schema import migrate
from ._semantic_text import terms


@functools.cache
def _numpy() -> Any:
    """numpy, imported on first use (``import corral`` stays light), or None without it.

    numpy makes the dense search fast; without it, plain Python does the same work.
    """
    try:
        import numpy
    except ImportError:  # pragma: no cover - exercised by use_numpy=False
        return None
    return numpy


__all__ = [
    "DEFAULT_THRESHOLDS",
    "TEXT_SUFFIXES",
    "AddResult",
    "DropReason",
    "Dropped",
    "Hit",
    "SearchResult",
    "SemanticMemory",
]

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "hashing-v1-256": 0.2,
    "wordllama-l2_supercat-256": 0.2,
    "all-minilm-l6-v2": 0.25,
}
"""The default relevance threshold per embedder, set on the labelled corpus of the tests:
a sentence-transformer finds unrelated text more similar than the others do."""

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".text"})
"""File endings `SemanticMemory.add_paths` reads inside a directory."""

DropReason = Literal["below_threshold", "near_duplicate", "beyond_top_k"]

_RRF_K = 60
_POSTING_BUDGET = 8_000
"""The most postings the lexical query reads, counted from the rarest query term up (at
least one term is always asked)."""
_BACKGROUND_PRIOR = 20
"""A small tenant's background similarity is shrunk toward 0 as if it had this many more chunks."""
_HEADING_SHARE = 0.5
"""The share of lexical match quality earned by query terms in the chunk's own headings."""
_BINARY_SNIFF = 8192


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk that cleared the threshold: what reaches the context window."""

    chunk_id: int
    text: str
    source: str
    headings: tuple[str, ...]
    score: float
    """The calibrated relevance in [0, 1] (what the threshold is compared with)."""
    lexical: float
    """The IDF-weighted share of the query's terms the chunk holds, in [0, 1]."""
    dense: float
    """The chunk's similarity above the query's background, in [0, 1]."""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def heading_path(self) -> str:
        """The headings joined with `` > ``."""
        return " > ".join(self.headings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "chunk_id": self.chunk_id,
            "source": self.source,
            "headings": list(self.headings),
            "score": round(self.score, 4),
            "lexical": round(self.lexical, 4),
            "dense": round(self.dense, 4),
            "tags": dict(self.tags),
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Dropped:
    """A candidate kept out of the result, and why."""

    hit: Hit
    reason: DropReason
    duplicate_of: int | None = None
    """For a near-duplicate: the chunk id of the hit it repeats."""

    def explain(self, threshold: float) -> str:
        """The reason in words."""
        if self.reason == "below_threshold":
            return f"below threshold: score {self.hit.score:.3f} < {threshold:.3f}"
        if self.reason == "near_duplicate":
            return f"near-duplicate of chunk {self.duplicate_of}"
        return f"beyond top-k (score {self.hit.score:.3f})"

    def to_dict(self, threshold: float) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = self.hit.to_dict()
        out.pop("text")
        out["reason"] = self.reason
        out["why"] = self.explain(threshold)
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        return out


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a search returned, and what it kept out."""

    query: str
    tenant: str
    threshold: float
    k: int
    hits: tuple[Hit, ...]
    dropped: tuple[Dropped, ...]
    """The candidates kept out, best first (at most `SemanticMemory.max_dropped`)."""
    considered: int
    """How many candidates the two indexes proposed."""

    def __bool__(self) -> bool:
        return bool(self.hits)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what ``corral memory search -o json`` prints)."""
        return {
            "query": self.query,
            "tenant": self.tenant,
            "threshold": self.threshold,
            "k": self.k,
            "considered": self.considered,
            "hits": [hit.to_dict() for hit in self.hits],
            "dropped": [drop.to_dict(self.threshold) for drop in self.dropped],
        }

    def as_text(self, *, max_chars: int = 1200) -> str:
        """The hits as a model reads them, or a plain "nothing relevant found".

        Args:
            max_chars: the most characters of each hit's text shown.
        """
        if not self.hits:
            return (
                f"Nothing relevant found in memory for {self.query!r} "
                f"(no chunk reached the relevance threshold {self.threshold:.2f})."
            )
        parts = []
        for n, hit in enumerate(self.hits, 1):
            where = hit.source + (f" > {hit.heading_path}" if hit.headings else "")
            text = hit.text if len(hit.text) <= max_chars else hit.text[:max_chars] + " [...]"
            parts.append(f"[{n}] {where} (relevance {hit.score:.2f})\n{text}")
        return "\n\n".join(parts)


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ingesting one source did."""

    source: str
    tenant: str
    status: Literal["added", "updated", "unchanged"]
    chunks: int
    """Chunks the source has now."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "source": self.source,
            "tenant": self.tenant,
            "status": self.status,
            "chunks": self.chunks,
        }


@dataclass(slots=True)
class _Candidate:
    chunk_id: int
    lexical_rank: int | None = None
    dense_rank: int | None = None
    cosine: float = 0.0
    coverage: float = 0.0
    relevance: float = 0.0
    rrf: float = 0.0
    terms: list[str] = field(default_factory=list)
    pairs: frozenset[tuple[str, str]] = frozenset()


class _DenseIndex:
    """One tenant's vectors for one embedder, in memory."""

    def __init__(self, ids: list[int], blobs: list[bytes], dims: int, use_numpy: bool) -> None:
        self.ids = ids
        self.row = {chunk_id: n for n, chunk_id in enumerate(ids)}
        self.matrix: Any = None
        self.rows: list[array[float]] = []
        _np = _numpy() if use_numpy else None
        if _np is not None:
            data = b"".join(blobs)
            self.matrix = _np.frombuffer(data, dtype=_np.float32).reshape(len(ids), dims)
        else:
            for blob in blobs:
                vector = array("f")
                vector.frombytes(blob)
                self.rows.append(vector)

    def similarities(self, query: Sequence[float]) -> list[float] | Any:
        """Cosine similarity of the (unit) query to every row (rows are unit vectors)."""
        if self.matrix is not None:
            _np = _numpy()
            return self.matrix @ _np.asarray(query, dtype=_np.float32)
        q = list(query)
        return [sum(map(operator.mul, q, row)) for row in self.rows]

    def top(self, sims: Any, n: int) -> tuple[list[int], float]:
        """The row numbers of the `n` most similar rows, best first, and the mean similarity."""
        if not self.ids:
            return [], 0.0
        if self.matrix is not None:
            mean = float(sims.mean()) * len(self.ids) / (len(self.ids) + _BACKGROUND_PRIOR)
            n = min(n, len(self.ids))
            _np = _numpy()
            part = _np.argpartition(-sims, n - 1)[:n]
            order = part[_np.argsort(-sims[part], kind="stable")]
            return [int(i) for i in order], mean
        mean = sum(sims) / (len(sims) + _BACKGROUND_PRIOR)
        return sorted(range(len(sims)), key=lambda i: -sims[i])[:n], mean


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(float(v) * float(v) for v in vector))
    return [float(v) / norm for v in vector] if norm > 0 else [0.0] * len(vector)


def _pairs(chunk_terms: Sequence[str]) -> frozenset[tuple[str, str]]:
    return frozenset(zip(chunk_terms, chunk_terms[1:], strict=False))


def _jaccard(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


class SemanticMemory:
    """Text chunks with metadata and tenant, searched by meaning and words together.

    Open one with `SemanticMemory.open` (from a URL, a path or a journal) or build it on a
    path; use it as a context manager, or call `close`. Methods are synchronous and
    thread-safe (one connection, one lock); `asearch` runs a search in a worker thread
    for async code.

    Args:
        path: the SQLite file (created with its directory if missing; the journal's file
            by default), or ``:memory:`` for a private in-memory database.
        embedder: what makes the vectors. Default: `HashingEmbedder` (no download).
        threshold: the least calibrated relevance a hit needs (see the module docstring).
            Default: `DEFAULT_THRESHOLDS` for the embedder's name, else 0.2.
        lexical_weight: the share of lexical match quality in the relevance.
        duplicate_similarity: the term-pair Jaccard similarity at or above which a
            candidate is a near-duplicate of a hit already taken.
        mmr_lambda: maximal marginal relevance: 1 orders by relevance only, lower values
            push down candidates similar to hits already taken.
        candidates: how many candidates each index proposes.
        chunk_chars: the most characters of a chunk. overlap_chars: how many a chunk
            repeats of the previous one (see `chunk_markdown`).
        max_dropped: the most dropped candidates a result lists.
        busy_timeout_s: how long a write waits for another connection's write lock.
        use_numpy: search vectors with numpy (default: when it is installed).

    Raises:
        ConfigError: an invalid setting, or a file that is not a Corral store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        threshold: float | None = None,
        lexical_weight: float = 0.7,
        duplicate_similarity: float = 0.6,
        mmr_lambda: float = 0.9,
        candidates: int = 40,
        chunk_chars: int = 1000,
        overlap_chars: int = 150,
        max_dropped: int = 10,
        busy_timeout_s: float = 10.0,
        use_numpy: bool | None = None,
    ) -> None:
        self.embedder: Embedder = embedder or HashingEmbedder()
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS.get(self.embedder.name, 0.2)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
        if not 0.0 <= lexical_weight <= 1.0:
            raise ConfigError(f"lexical_weight must be between 0 and 1, got {lexical_weight}")
        if not 0.0 < duplicate_similarity <= 1.0:
            raise ConfigError(f"duplicate_similarity must be in (0, 1], got {duplicate_similarity}")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda must be between 0 and 1, got {mmr_lambda}")
        if candidates < 1 or max_dropped < 0:
            raise ConfigError("candidates must be positive and max_dropped not negative")
        if use_numpy and _numpy() is None:
            raise ConfigError("use_numpy=True but numpy is not installed")
        chunk_markdown("", source="", max_chars=chunk_chars, overlap_chars=overlap_chars)
        self.path = os.fspath(path)
        self.threshold = threshold
        self.lexical_weight = lexical_weight
        self.duplicate_similarity = duplicate_similarity
        self.mmr_lambda = mmr_lambda
        self.candidates = candidates
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.max_dropped = max_dropped
        self.use_numpy = _numpy() is not None if use_numpy is None else use_numpy
        self._lock = threading.RLock()
        self._indexes: dict[str, _DenseIndex] = {}
        self._data_version = -1
        self._chunk_count: int | None = None
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open semantic memory at {self.path}: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = str(self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if not memory and mode.lower() != "wal":
                raise ConfigError(f"cannot use WAL mode for {self.path} (got {mode!r})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            migrate(self._conn, path=self.path)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"cannot open semantic memory at {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise
        self._closed = False

    @classmethod
    def open(
        cls,
        where: str | os.PathLike[str] | Journal | None = None,
        *,
        env: Mapping[str, str] | None = None,
        must_exist: bool = False,
        **options: Any,
    ) -> SemanticMemory:
        """Open the semantic memory of a store.

        Args:
            where: a store URL (``sqlite:///path.db``, ``memory://``; default
                ``CORRAL_DB``, else ``sqlite:///corral.db``), a file path, or a journal
                (a `SqliteStore`'s file; a `MemoryJournal` gets a private in-memory
                database).
            env: the environment to read ``CORRAL_DB`` from. Default: ``os.environ``.
            must_exist: refuse a file that does not exist yet instead of creating it.
            **options: the keyword arguments of `SemanticMemory`.

        Raises:
            ConfigError: an unusable URL or setting, or a file that is not a Corral store.
            UsageError: `must_exist` and no such file.
        """
        if isinstance(where, MemoryJournal):
            path = ":memory:"
        elif isinstance(where, SqliteStore):
            path = where.path
        elif isinstance(where, os.PathLike) or (
            isinstance(where, str) and where and "://" not in where
        ):
            path = os.fspath(where)
        elif where is None or isinstance(where, str):
            url = store_url(where, env=env)
            path = ":memory:" if url == "memory://" else open_store(url, env=env).path
        else:
            raise ConfigError(
                f"semantic memory needs a SQLite store, a URL or a path, got {type(where).__name__}"
            )
        if must_exist and path != ":memory:" and not os.path.exists(path):
            raise UsageError(
                f"no store at {path}: nothing has been added to memory there yet "
                "(check --db or CORRAL_DB)"
            )
        return cls(path, **options)

    def __enter__(self) -> SemanticMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SemanticMemory {self.path!r} {self.embedder.name}>"

    def close(self) -> None:
        """Close the connection. Closing twice is a no-op."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._indexes.clear()
                self._conn.close()

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise UsageError(f"the semantic memory {self.path} is closed")
        return self._conn

    # -- writing ----------------------------------------------------------------------------

    def add_text(
        self,
        text: str,
        *,
        source: str,
        tenant: str = "default",
        tags: Mapping[str, str] | None = None,
    ) -> AddResult:
        """Store a document, replacing an earlier version of the same source.

        Args:
            text: Markdown or plain text.
            source: its name (a path, a URL); one version per tenant and source.
            tenant: whose memory it goes to.
            tags: metadata returned with its hits.

        Returns:
            What was done: ``unchanged`` (same content already stored: nothing written),
            ``added`` or ``updated``, and its chunk count.
        """
        tag_map = dict(sorted((tags or {}).items()))
        digest = hashlib.sha256(
            f"{self.chunk_chars}:{self.overlap_chars}\0{text}".encode()
        ).hexdigest()
        with self._lock:
            db = self._db()
            row = db.execute(
                "SELECT id, digest, tags, chunks FROM semantic_sources"
                " WHERE tenant = ? AND source = ?",
                (tenant, source),
            ).fetchone()
            if row is not None and row[1] == digest and json.loads(row[2]) == tag_map:
                return AddResult(source, tenant, "unchanged", int(row[3]))
            chunks = chunk_markdown(
                text, source=source, max_chars=self.chunk_chars, overlap_chars=self.overlap_chars
            )
            vectors = self._embed([_indexed_text(chunk) for chunk in chunks])
            db.execute("BEGIN IMMEDIATE")
            try:
                if row is not None:
                    self._delete_source(db, int(row[0]))
                source_id = db.execute(
                    "INSERT INTO semantic_sources (tenant, source, digest, tags, chunks, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant, source, digest, json.dumps(tag_map), len(chunks), time.time()),
                ).lastrowid
                for chunk, vector in zip(chunks, vectors, strict=True):
                    chunk_id = db.execute(
                        "INSERT INTO semantic_chunks (source_id, tenant, ordinal, headings, text)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (source_id, tenant, chunk.ordinal, json.dumps(chunk.headings), chunk.text),
                    ).lastrowid
                    db.execute(
                        "INSERT INTO semantic_fts (rowid, terms, tenant) VALUES (?, ?, ?)",
                        (chunk_id, " ".join(terms(_indexed_text(chunk))), _tenant_token(tenant)),
                    )
                    db.execute(
                        "INSERT INTO semantic_vectors (embedder, chunk_id, vector)"
                        " VALUES (?, ?, ?)",
                        (self.embedder.name, chunk_id, vector),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._indexes.pop(tenant, None)
            self._chunk_count = None
        return AddResult(source, tenant, "added" if row is None else "updated", len(chunks))

    def add_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        tenant: str = "default",
        tags: Mapping[str, str] | None = None,
    ) -> list[AddResult]:
        """Ingest text and Markdown files; directories are walked for `TEXT_SUFFIXES`.

        Every file is read before anything is written: one unreadable file means none
        is added.

        Args:
            paths: files (any name; must be UTF-8 text) and directories.
            tenant: whose memory they go to.
            tags: metadata of every file.

        Returns:
            One result per file, in path order; a file is named by its absolute path.

        Raises:
            UsageError: a path does not exist, or a file cannot be read, is binary, or is
                not UTF-8 text (all of them listed).
        """
        files: list[Path] = []
        problems: list[str] = []
        for given in paths:
            path = Path(given)
            if path.is_dir():
                files.extend(
                    sorted(
                        p
                        for p in path.rglob("*")
                        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                    )
                )
            elif path.is_file():
                files.append(path)
            else:
                problems.append(f"{path}: no such file or directory")
        texts: list[tuple[str, str]] = []
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                problems.append(f"{file}: cannot read it ({exc.strerror or exc})")
                continue
            if b"\0" in data[:_BINARY_SNIFF]:
                problems.append(f"{file}: a binary file, not text")
                continue
            try:
                texts.append((str(file.resolve()), data.decode("utf-8")))
            except UnicodeDecodeError as exc:
                problems.append(f"{file}: not UTF-8 text (byte {exc.start})")
        if problems:
            raise UsageError("nothing added: " + "; ".join(problems))
        return [self.add_text(text, source=name, tenant=tenant, tags=tags) for name, text in texts]

    def remove_source(self, source: str, *, tenant: str = "default") -> int:
        """Forget one source of a tenant; return how many chunks went with it."""
        with self._lock:
            db = self._db()
            row = db.execute(
                "SELECT id, chunks FROM semantic_sources WHERE tenant = ? AND source = ?",
                (tenant, source),
            ).fetchone()
            if row is None:
                return 0
            db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_source(db, int(row[0]))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._indexes.pop(tenant, None)
            self._chunk_count = None
            return int(row[1])

    def forget_tenant(self, tenant: str) -> int:
        """Forget everything of a tenant; return how many chunks went."""
        with self._lock:
            db = self._db()
            ids = [
                int(r[0])
                for r in db.execute("SELECT id FROM semantic_sources WHERE tenant = ?", (tenant,))
            ]
            count = self.count(tenant)
            db.execute("BEGIN IMMEDIATE")
            try:
                for source_id in ids:
                    self._delete_source(db, source_id)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._indexes.pop(tenant, None)
            self._chunk_count = None
            return count

    @staticmethod
    def _delete_source(db: sqlite3.Connection, source_id: int) -> None:
        chunk_ids = "SELECT id FROM semantic_chunks WHERE source_id = ?"
        db.execute(f"DELETE FROM semantic_fts WHERE rowid IN ({chunk_ids})", (source_id,))
        db.execute(f"DELETE FROM semantic_vectors WHERE chunk_id IN ({chunk_ids})", (source_id,))
        db.execute("DELETE FROM semantic_chunks WHERE source_id = ?", (source_id,))
        db.execute("DELETE FROM semantic_sources WHERE id = ?", (source_id,))

    def _embed(self, texts: Sequence[str]) -> list[bytes]:
        """Unit float32 vectors of `texts`, as blobs."""
        if not texts:
            return []
        vectors = self.embedder.embed(list(texts))
        dims = self.embedder.dimensions
        blobs = []
        for vector in vectors:
            if len(vector) != dims:
                raise ConfigError(
                    f"embedder {self.embedder.name} returned a vector of {len(vector)} "
                    f"numbers, not its {dims} dimensions"
                )
            blobs.append(array("f", _unit(vector)).tobytes())
        if len(blobs) != len(texts):
            raise ConfigError(
                f"embedder {self.embedder.name} returned {len(blobs)} vectors "
                f"for {len(texts)} texts"
            )
        return blobs

    # -- reading ------------------------------------------------------------------------------

    def count(self, tenant: str | None = None) -> int:
        """How many chunks are stored (for one tenant, or all)."""
        with self._lock:
            db = self._db()
            if tenant is None:
                row = db.execute("SELECT count(*) FROM semantic_chunks").fetchone()
            else:
                row = db.execute(
                    "SELECT count(*) FROM semantic_chunks WHERE tenant = ?", (tenant,)
                ).fetchone()
            return int(row[0])

    def sources(self, tenant: str = "default") -> list[AddResult]:
        """The sources of a tenant, by name (their status is ``unchanged``)."""
        with self._lock:
            rows = self._db().execute(
                "SELECT source, chunks FROM semantic_sources WHERE tenant = ? ORDER BY source",
                (tenant,),
            )
            return [AddResult(str(s), tenant, "unchanged", int(n)) for s, n in rows]

    def _index(self, db: sqlite3.Connection, tenant: str) -> _DenseIndex:
        """The tenant's dense index, (re)loaded if this or another connection changed it."""
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:  # another connection committed: reload all
            self._indexes.clear()
            self._chunk_count = None
            self._data_version = version
        index = self._indexes.get(tenant)
        if index is not None:
            return index
        name = self.embedder.name
        missing = db.execute(
            "SELECT c.id, c.headings, c.text FROM semantic_chunks c WHERE c.tenant = ? AND"
            " NOT EXISTS (SELECT 1 FROM semantic_vectors v WHERE v.embedder = ?"
            " AND v.chunk_id = c.id)",
            (tenant, name),
        ).fetchall()
        if missing:  # stored with another embedder: embed them once with this one
            blobs = self._embed([_joined(tuple(json.loads(h)), str(t)) for _, h, t in missing])
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO semantic_vectors (embedder, chunk_id, vector)"
                    " VALUES (?, ?, ?)",
                    [(name, int(row[0]), blob) for row, blob in zip(missing, blobs, strict=True)],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        rows = db.execute(
            "SELECT c.id, v.vector FROM semantic_chunks c JOIN semantic_vectors v"
            " ON v.chunk_id = c.id AND v.embedder = ? WHERE c.tenant = ? ORDER BY c.id",
            (name, tenant),
        ).fetchall()
        index = _DenseIndex(
            [int(r[0]) for r in rows],
            [bytes(r[1]) for r in rows],
            self.embedder.dimensions,
            self.use_numpy,
        )
        self._indexes[tenant] = index
        return index

    def search(
        self,
        query: str,
        *,
        tenant: str = "default",
        k: int = 3,
        threshold: float | None = None,
        mode: Literal["hybrid", "lexical", "dense"] = "hybrid",
    ) -> SearchResult:
        """Find the chunks relevant to a query, or none.

        Args:
            query: what to look for, in words.
            tenant: whose memory to search.
            k: the most hits returned.
            threshold: the least relevance of a hit. Default: the memory's `threshold`.
            mode: ``hybrid`` (both indexes), or one of them alone (for comparisons: the
                relevance is then that index's own score).

        Returns:
            The hits (at most `k`, best first, none below the threshold) and what was
            dropped, with reasons.

        Raises:
            UsageError: `k` below 1, or a threshold outside [0, 1].
        """
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        limit = self.threshold if threshold is None else threshold
        if not 0.0 <= limit <= 1.0:
            raise UsageError(f"threshold must be between 0 and 1, got {limit}")
        query_terms = list(dict.fromkeys(terms(query)))
        with self._lock:
            db = self._db()
            index = self._index(db, tenant)
            candidates: dict[int, _Candidate] = {}
            weights, df = self._idf(db, query_terms)
            if mode != "dense" and query_terms:
                # ask for the rarest terms, up to a budget of postings: a term in most
                # chunks costs the most to rank and tells the least (its IDF is low), and
                # still counts in every candidate's coverage below
                asked: list[str] = []
                postings = 0
                for t in sorted(query_terms, key=lambda t: df.get(t, 0)):
                    if asked and postings + df.get(t, 0) > _POSTING_BUDGET:
                        break
                    asked.append(t)
                    postings += df.get(t, 0)
                words = " OR ".join('"' + t.replace('"', '""') + '"' for t in asked)
                match = f'tenant : "{_tenant_token(tenant)}" AND terms : ({words})'
                lexical = db.execute(
                    "SELECT rowid FROM semantic_fts WHERE semantic_fts MATCH ?"
                    " ORDER BY bm25(semantic_fts, 1.0, 0.0) LIMIT ?",
                    (match, self.candidates),
                ).fetchall()
                for rank, (chunk_id,) in enumerate(lexical):
                    candidates.setdefault(
                        int(chunk_id), _Candidate(int(chunk_id))
                    ).lexical_rank = rank
            vector = _unit(self.embedder.embed([query])[0]) if index.ids else []
            sims: Any = index.similarities(vector) if vector else []
            background = 0.0
            if mode != "lexical" and index.ids and any(vector):
                order, background = index.top(sims, self.candidates)
                for rank, row in enumerate(order):
                    chunk_id = index.ids[row]
                    candidates.setdefault(chunk_id, _Candidate(chunk_id)).dense_rank = rank
            elif index.ids and any(vector):
                _, background = index.top(sims, 1)
            if not candidates:
                return SearchResult(query, tenant, limit, k, (), (), 0)
            details = self._details(db, list(candidates), tenant)
            candidates = {i: c for i, c in candidates.items() if i in details}
            if not candidates:
                return SearchResult(query, tenant, limit, k, (), (), 0)
            total = sum(weights.values())
            for chunk_id, candidate in candidates.items():
                info = details[chunk_id]
                chunk_terms: list[str] = info["terms"]
                present = set(chunk_terms)
                if total > 0:
                    titled = set(terms(" ".join(info["headings"][1:])))
                    body = sum(w for t, w in weights.items() if t in present) / total
                    title = sum(w for t, w in weights.items() if t in titled) / total
                    candidate.coverage = (1 - _HEADING_SHARE) * body + _HEADING_SHARE * title
                at = index.row.get(chunk_id)
                candidate.cosine = float(sims[at]) if at is not None and vector else 0.0
                dense = (
                    max(0.0, (candidate.cosine - background) / (1.0 - background))
                    if (background < 1.0)
                    else 0.0
                )
                if mode == "lexical":
                    candidate.relevance = candidate.coverage
                elif mode == "dense":
                    candidate.relevance = dense
                else:
                    candidate.relevance = (
                        self.lexical_weight * candidate.coverage
                        + (1.0 - self.lexical_weight) * dense
                    )
                candidate.rrf = sum(
                    1.0 / (_RRF_K + 1 + r)
                    for r in (candidate.lexical_rank, candidate.dense_rank)
                    if r is not None
                )
                candidate.terms = chunk_terms
                info["dense"] = dense
        return self._select(query, tenant, k, limit, candidates, details)

    async def asearch(self, query: str, **options: Any) -> SearchResult:
        """`search` in a worker thread, for async code (same arguments)."""

        def run() -> SearchResult:
            return self.search(query, **options)

        return await anyio.to_thread.run_sync(run)

    def _details(
        self, db: sqlite3.Connection, ids: list[int], tenant: str
    ) -> dict[int, dict[str, Any]]:
        """The candidates' rows, of `tenant` only (the check that isolates tenants)."""
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            "SELECT c.id, c.text, c.headings, s.source, s.tags, f.terms"
            " FROM semantic_chunks c JOIN semantic_sources s ON s.id = c.source_id"
            f" JOIN semantic_fts f ON f.rowid = c.id WHERE c.id IN ({marks}) AND c.tenant = ?",
            [*ids, tenant],
        ).fetchall()
        return {
            int(r[0]): {
                "text": str(r[1]),
                "headings": tuple(json.loads(r[2])),
                "source": str(r[3]),
                "tags": json.loads(r[4]),
                "terms": str(r[5]).split(),
            }
            for r in rows
        }

    def _idf(
        self, db: sqlite3.Connection, query_terms: list[str]
    ) -> tuple[dict[str, float], dict[str, int]]:
        """BM25's IDF of each query term, and the number of chunks holding it.

        Counted over every stored chunk; a term no chunk holds weighs the most.
        """
        if not query_terms:
            return {}, {}
        if self._chunk_count is None:
            self._chunk_count = int(
                db.execute("SELECT count(*) FROM semantic_chunks").fetchone()[0]
            )
        n = self._chunk_count
        marks = ",".join("?" * len(query_terms))
        df = {
            str(t): int(d)
            for t, d in db.execute(
                f"SELECT term, doc FROM semantic_fts_vocab WHERE term IN ({marks})", query_terms
            )
        }
        idf = {
            t: math.log(1.0 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in query_terms
        }
        return idf, df

    def _select(
        self,
        query: str,
        tenant: str,
        k: int,
        limit: float,
        candidates: dict[int, _Candidate],
        details: dict[int, dict[str, Any]],
    ) -> SearchResult:
        """Threshold, then MMR with near-duplicate removal, then top-k."""

        def hit(c: _Candidate) -> Hit:
            info = details[c.chunk_id]
            return Hit(
                c.chunk_id,
                info["text"],
                info["source"],
                info["headings"],
                c.relevance,
                c.coverage,
                info["dense"],
                info["tags"],
            )

        ranked = sorted(candidates.values(), key=lambda c: (-c.relevance, -c.rrf, c.chunk_id))
        top = ranked[0].relevance or 1.0
        passing = [c for c in ranked if c.relevance >= limit]
        for c in passing:  # only what may be shown is compared for near-duplicates
            c.pairs = _pairs(c.terms)
        below = [c for c in ranked if c.relevance < limit]
        chosen: list[_Candidate] = []
        dropped: list[Dropped] = []
        pool = list(passing)  # best first
        redundancy = dict.fromkeys((c.chunk_id for c in pool), 0.0)
        """Each candidate's greatest similarity to a hit already chosen."""
        while pool and len(chosen) < k:
            best = max(
                pool,
                key=lambda c: (
                    self.mmr_lambda * (c.relevance / top)
                    - (1 - self.mmr_lambda) * redundancy[c.chunk_id]
                ),
            )
            pool.remove(best)
            if redundancy[best.chunk_id] >= self.duplicate_similarity:
                dropped.append(Dropped(hit(best), "near_duplicate", self._twin(best, chosen)))
                continue
            chosen.append(best)
            for c in pool:
                similarity = _jaccard(c.pairs, best.pairs)
                if similarity > redundancy[c.chunk_id]:
                    redundancy[c.chunk_id] = similarity
        for c in pool:  # after the top k: near-duplicates still say whose
            if redundancy[c.chunk_id] >= self.duplicate_similarity:
                dropped.append(Dropped(hit(c), "near_duplicate", self._twin(c, chosen)))
            else:
                dropped.append(Dropped(hit(c), "beyond_top_k"))
        below.sort(key=lambda c: -c.relevance)
        dropped.extend(Dropped(hit(c), "below_threshold") for c in below)
        return SearchResult(
            query,
            tenant,
            limit,
            k,
            tuple(hit(c) for c in chosen),
            tuple(dropped[: self.max_dropped]),
            len(candidates),
        )

    @staticmethod
    def _twin(candidate: _Candidate, chosen: list[_Candidate]) -> int:
        """The chunk id of the chosen hit `candidate` is most similar to."""
        return max(chosen, key=lambda s: _jaccard(candidate.pairs, s.pairs)).chunk_id


def _tenant_token(tenant: str) -> str:
    """The tenant as one token of the lexical index (any name; no token of text looks so)."""
    return "tenant" + hashlib.sha256(tenant.encode()).hexdigest()[:24]


def _joined(headings: tuple[str, ...], text: str) -> str:
    return ("\n".join(headings) + "\n\n" + text) if headings else text


def _indexed_text(chunk: Chunk) -> str:
    """What both indexes see of a chunk: its heading path, then its text."""
    return _joined(chunk.headings, chunk.text)
