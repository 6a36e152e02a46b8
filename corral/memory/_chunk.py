"""Chunking by Markdown structure: headings, paragraphs, and fenced code blocks kept whole.

A document is read as a sequence of blocks (ATX headings ``#``..``######``, fenced code
blocks, and paragraphs separated by blank lines). Each heading opens a section; a chunk
never spans two sections, and carries the path of headings above it
(``("pathlib", "Basic use")``) and its source. Within a section, blocks are packed into
chunks of at most `max_chars`; a code block that fits in a chunk is never cut, a longer
one is cut at line boundaries, and a long paragraph at sentence (else word) boundaries.
Consecutive chunks of one section overlap: the next chunk starts with the last sentences
(at most `overlap_chars`) of the previous one's last prose block, so an answer that
straddles the cut is still whole in one of them. Plain text is the same without headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Chunk", "chunk_markdown"]

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, as it is indexed and shown."""

    text: str
    """The chunk's text (without its headings)."""
    headings: tuple[str, ...]
    """The path of headings above it, outermost first (empty for plain text)."""
    source: str
    """Where it came from: a path, a URL, or any name the caller gave."""
    ordinal: int
    """Its position among the chunks of its source, from 0."""

    @property
    def heading_path(self) -> str:
        """The headings joined with `` > `` (empty for plain text)."""
        return " > ".join(self.headings)


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    code: bool


def _blocks(text: str) -> list[tuple[tuple[str, ...], list[_Block]]]:
    """Split a document into sections (heading path, blocks), in order."""
    sections: list[tuple[tuple[str, ...], list[_Block]]] = []
    stack: list[tuple[int, str]] = []
    current: list[_Block] = []
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def path() -> tuple[str, ...]:
        return tuple(title for _, title in stack)

    def end_paragraph() -> None:
        if paragraph:
            current.append(_Block("\n".join(paragraph).strip(), code=False))
            paragraph.clear()

    def end_section() -> None:
        end_paragraph()
        if current:
            sections.append((path(), list(current)))
            current.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence is not None:
            code.append(line)
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                current.append(_Block("\n".join(code), code=True))
                code, fence = [], None
            continue
        opened = _FENCE.match(line)
        if opened:
            end_paragraph()
            fence, code = opened.group(1), [line]
            continue
        heading = _HEADING.match(line)
        if heading:
            end_section()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            continue
        if line.strip():
            paragraph.append(line.rstrip())
        else:
            end_paragraph()
    if fence is not None:  # an unclosed fence: keep what it holds
        current.append(_Block("\n".join(code), code=True))
    end_section()
    return sections


def _split_long(block: _Block, limit: int) -> list[_Block]:
    """Cut a block longer than `limit`: code at lines, prose at sentences, then words."""
    if len(block.text) <= limit:
        return [block]
    if block.code:
        units = block.text.split("\n")
        joiner = "\n"
    else:
        units = [u for u in _SENTENCE_END.split(block.text) if u]
        joiner = " "
    pieces: list[str] = []
    for unit in units:
        while len(unit) > limit:  # one sentence or line longer than a chunk: cut at words
            cut = unit.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            pieces.append(unit[:cut])
            unit = unit[cut:].lstrip()
        pieces.append(unit)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(joiner) + len(piece) <= limit:
            out[-1] = out[-1] + joiner + piece
        else:
            out.append(piece)
    return [_Block(text, code=block.code) for text in out if text.strip()]


def _tail(block: _Block, limit: int) -> str:
    """The last whole sentences of a prose block, at most `limit` characters ('' for code)."""
    if block.code or limit <= 0:
        return ""
    sentences = [s for s in _SENTENCE_END.split(block.text) if s]
    kept: list[str] = []
    size = 0
    for sentence in reversed(sentences):
        if size + len(sentence) + 1 > limit:
            break
        kept.insert(0, sentence)
        size += len(sentence) + 1
    if len(kept) == len(sentences):  # the whole block would repeat: not an overlap
        return ""
    return " ".join(kept)


def chunk_markdown(
    text: str, *, source: str, max_chars: int = 1000, overlap_chars: int = 150
) -> list[Chunk]:
    """Cut a Markdown (or plain-text) document into chunks by its structure.

    Args:
        text: the document.
        source: where it came from, carried by every chunk.
        max_chars: the most characters of text in a chunk (headings not counted).
        overlap_chars: the most characters a chunk repeats from the previous chunk of
            its section (whole sentences of prose; code is never repeated). 0: none.

    Returns:
        The chunks, in document order, numbered from 0.

    Raises:
        ConfigError: `max_chars` below 100, or `overlap_chars` not below half of it.
    """
    if max_chars < 100:
        raise ConfigError(f"max_chars must be at least 100, got {max_chars}")
    if not 0 <= overlap_chars < max_chars // 2:
        raise ConfigError(f"overlap_chars must be between 0 and max_chars / 2, got {overlap_chars}")
    chunks: list[Chunk] = []
    for headings, blocks in _blocks(text):
        pieces = [piece for block in blocks for piece in _split_long(block, max_chars)]
        body: list[str] = []
        size = 0
        last: _Block | None = None
        for piece in pieces:
            if body and size + 2 + len(piece.text) > max_chars:
                chunks.append(Chunk("\n\n".join(body), headings, source, len(chunks)))
                overlap = _tail(last, overlap_chars) if last is not None else ""
                if overlap and len(overlap) + 2 + len(piece.text) <= max_chars:
                    body, size = [overlap], len(overlap)
                else:
                    body, size = [], 0
            body.append(piece.text)
            size += len(piece.text) + (2 if size else 0)
            last = piece
        if body:
            chunks.append(Chunk("\n\n".join(body), headings, source, len(chunks)))
    return chunks
