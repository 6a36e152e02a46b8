"""Embedders: the `Embedder` protocol and the default `HashingEmbedder`.

An embedder is synchronous: ``embed(texts)`` returns one vector per text. Every embedder
Corral ships computes locally on the CPU (feature hashing, a static word-embedding table,
a small transformer), so an ``async`` method would only wrap a blocking call; the memory
runs it in a worker thread where an event loop is involved (`SemanticMemory.asearch`,
the memory tool), and the CLI calls it directly.

`HashingEmbedder` needs nothing: no download, no numpy, no model. It hashes each word
(stemmed, stop words dropped) and the character 3- to 5-grams of each word into signed
buckets (feature hashing), with sublinear term frequency, and normalises to unit length:
deterministic and fast, it matches texts that share words or parts of words (``sorted``
and ``sorting``, ``tempfile`` and ``temporary file``), not synonyms. The extras add
embedders that do (`corral.memory.embedder_from_name`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import ConfigError
from ._semantic_text import STOP_WORDS, stem, words

__all__ = ["Embedder", "HashingEmbedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed size; similar texts get a high cosine similarity.

    `name` identifies the vectors it makes: stored vectors are kept per name, so changing
    the embedder (or its settings, which must change the name) re-embeds, never mixes.
    """

    @property
    def name(self) -> str:
        """A stable identifier of the model and its settings (e.g. ``hashing-v1-256``)."""
        ...

    @property
    def dimensions(self) -> int:
        """The length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """Return one vector per text, in order (need not be normalised).

        Args:
            texts: the texts; may be empty.
        """
        ...


class HashingEmbedder:
    """The default embedder: signed feature hashing of words and character n-grams.

    Args:
        dimensions: the vector length (a power of two is customary). Default 256.
        ngram_weight: the weight of a word's character n-grams, all of them together,
            relative to the word itself. Default 0.5.

    Raises:
        ConfigError: `dimensions` below 16, or a negative `ngram_weight`.
    """

    def __init__(self, dimensions: int = 256, *, ngram_weight: float = 0.5) -> None:
        if dimensions < 16:
            raise ConfigError(f"dimensions must be at least 16, got {dimensions}")
        if ngram_weight < 0:
            raise ConfigError(f"ngram_weight must be >= 0, got {ngram_weight}")
        self._dimensions = dimensions
        self._ngram_weight = ngram_weight
        self._features: dict[str, list[tuple[int, float]]] = {}

    @property
    def name(self) -> str:
        """``hashing-v1-<dimensions>`` (with the n-gram weight if not the default)."""
        suffix = "" if self._ngram_weight == 0.5 else f"-ng{self._ngram_weight:g}"
        return f"hashing-v1-{self._dimensions}{suffix}"

    @property
    def dimensions(self) -> int:
        """The vector length."""
        return self._dimensions

    def _word_features(self, word: str) -> list[tuple[int, float]]:
        """(signed bucket, weight) of one word: the stem, then its n-grams (cached)."""
        cached = self._features.get(word)
        if cached is not None:
            return cached
        dims = self._dimensions
        features: list[tuple[int, float]] = []
        root = stem(word)
        h = zlib.crc32(root.encode())
        features.append((h % dims, 1.0 if h & 0x80000000 else -1.0))
        marked = f"<{word}>"
        grams = [marked[i : i + n] for n in (3, 4, 5) for i in range(len(marked) - n + 1)]
        if grams and self._ngram_weight:
            weight = self._ngram_weight / math.sqrt(len(grams))
            for gram in grams:
                h = zlib.crc32(gram.encode(), 0x9E3779B9)
                features.append((h % dims, weight if h & 0x80000000 else -weight))
        if len(self._features) < 200_000:
            self._features[word] = features
        return features

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one unit vector per text (all zeros for a text without words).

        Args:
            texts: the texts.
        """
        out: list[list[float]] = []
        for text in texts:
            counts: dict[str, int] = {}
            for word in words(text):
                if word not in STOP_WORDS:
                    counts[word] = counts.get(word, 0) + 1
            vector = [0.0] * self._dimensions
            for word, count in counts.items():
                tf = 1.0 + math.log(count)
                for index, weight in self._word_features(word):
                    vector[index] += tf * weight
            norm = math.sqrt(sum(v * v for v in vector))
            if norm > 0:
                vector = [v / norm for v in vector]
            out.append(vector)
        return out
