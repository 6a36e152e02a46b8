"""Memory: the context window of every model call, episodes of past runs, semantic retrieval.

Three kinds, each usable alone:

* **Conversation memory** (`ContextWindow`, `ContextPolicy`, `build_context`): the context
  of each model call is built under a token budget (`SubAgent(context_tokens=...)`,
  by default the model's window less its output cap, `context_window`). The pinned part
  (instructions, task, guardrail and budget notices, offered examples) is never dropped,
  recent turns stay verbatim, older turns are folded into a rolling summary oldest first
  (`ExtractiveSummariser` by default, `ModelSummariser` for a cheap model whose calls are
  reserved from the run's budget), and long tool results are cut with a pointer to the
  full result. Each summary is journaled (`corral.events.ContextSummarised`), so a
  resumed run sends the model exactly the context it would have.
* **Episodic memory** (`EpisodeSettings`, `EpisodeStore`, `SqliteEpisodes`,
  `MemoryEpisodes`, `recall`, `forget_episodes`): finished runs kept as redacted
  episodes; the most similar ones of the same agent and tenant are offered as examples.
* **Semantic memory** (`SemanticMemory`, `memory_tool`, `Embedder`, `HashingEmbedder`,
  `WordLlamaEmbedder`, `MiniLMEmbedder`): Markdown-aware chunks in the run store, hybrid
  retrieval (FTS5 BM25 and a dense index, fused by reciprocal rank), a relevance
  threshold and MMR de-duplication; a search that finds nothing relevant returns nothing
  and says what it dropped and why.
"""

# -- semantic memory (chunks, embedders, hybrid retrieval, the memory tool) --
from ._chunk import Chunk as Chunk
from ._chunk import chunk_markdown as chunk_markdown

# -- conversation memory (the context window) and episodic memory (past runs) --
from ._context import Context as Context
from ._context import ContextPolicy as ContextPolicy
from ._context import ContextWindow as ContextWindow
from ._context import build_context as build_context
from ._context_tokens import context_window as context_window
from ._context_tokens import text_tokens as text_tokens
from ._embed import Embedder as Embedder
from ._embed import HashingEmbedder as HashingEmbedder
from ._embed_extras import MiniLMEmbedder as MiniLMEmbedder
from ._embed_extras import WordLlamaEmbedder as WordLlamaEmbedder
from ._embed_extras import embedder_from_name as embedder_from_name
from ._episodes import Episode as Episode
from ._episodes import EpisodeSettings as EpisodeSettings
from ._episodes import EpisodeStore as EpisodeStore
from ._episodes import MemoryEpisodes as MemoryEpisodes
from ._episodes import SqliteEpisodes as SqliteEpisodes
from ._episodes import episodes_for as episodes_for
from ._episodes import forget_episodes as forget_episodes
from ._episodes import recall as recall
from ._episodes import task_similarity as task_similarity
from ._semantic import AddResult as AddResult
from ._semantic import Dropped as Dropped
from ._semantic import Hit as Hit
from ._semantic import SearchResult as SearchResult
from ._semantic import SemanticMemory as SemanticMemory
from ._semantic_tool import memory_tool as memory_tool
from ._summarise import ExtractiveSummariser as ExtractiveSummariser
from ._summarise import ModelSummariser as ModelSummariser
from ._summarise import Summariser as Summariser
from ._summarise import SummaryJob as SummaryJob
from ._summarise import Turn as Turn

__all__ = [
    "AddResult",
    "Chunk",
    "Context",
    "ContextPolicy",
    "ContextWindow",
    "Dropped",
    "Embedder",
    "Episode",
    "EpisodeSettings",
    "EpisodeStore",
    "ExtractiveSummariser",
    "HashingEmbedder",
    "Hit",
    "MemoryEpisodes",
    "MiniLMEmbedder",
    "ModelSummariser",
    "SearchResult",
    "SemanticMemory",
    "SqliteEpisodes",
    "Summariser",
    "SummaryJob",
    "Turn",
    "WordLlamaEmbedder",
    "build_context",
    "chunk_markdown",
    "context_window",
    "embedder_from_name",
    "episodes_for",
    "forget_episodes",
    "memory_tool",
    "recall",
    "task_similarity",
    "text_tokens",
]
