"""``corral memory ...``: the command group, kept light (argparse only) until it runs.

`add_memory_commands` registers the group on the CLI's subparsers; `run_memory_command`
runs the chosen action. Other parts of `corral.memory` add their actions by appending a
`MemoryAction` to `ACTIONS` (its registration function and its async handler), e.g.
``memory forget``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ._episodes_command import register_forget, run_forget

__all__ = ["ACTIONS", "MemoryAction", "add_memory_commands", "run_memory_command"]

Command = Callable[[Any, str, str], argparse.ArgumentParser]
"""The CLI's ``command(parent, name, help)``: a subparser with the global options."""


@dataclass(frozen=True)
class MemoryAction:
    """One ``corral memory ACTION``: how to register its parser, and how to run it."""

    name: str
    register: Callable[[Any, Command], argparse.ArgumentParser]
    """Add the action's parser to the group's subparsers (with `Command`) and return it."""
    run: Callable[[argparse.Namespace, str | None], Awaitable[int]]
    """Run it with the parsed arguments and the store URL (``--db``); return the exit code."""


def _tag(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a tag is KEY=VALUE, got {value!r}")
    return key, val


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"-k must be a whole number >= 1, got {value!r}")
    return n


def _embedder_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedder",
        choices=["hashing", "wordllama", "minilm"],
        default="hashing",
        help="what makes the vectors (default hashing; wordllama needs corral[embed-small], "
        "minilm corral[embed])",
    )


def _register_add(sub: Any, command: Command) -> argparse.ArgumentParser:
    p = command(sub, "add", "ingest text and Markdown files (directories recursively)")
    _embedder_option(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.add_argument("--tenant", default="default", help="whose memory (default: default)")
    p.add_argument(
        "--tag", dest="tags", action="append", type=_tag, default=[], help="KEY=VALUE metadata"
    )
    return p


def _register_search(sub: Any, command: Command) -> argparse.ArgumentParser:
    p = command(sub, "search", "search memory: hits with scores, and what was dropped and why")
    _embedder_option(p)
    p.add_argument("query", help="what to look for, in words")
    p.add_argument("--tenant", default="default", help="whose memory (default: default)")
    p.add_argument("-k", type=_positive, default=3, help="the most hits (default 3)")
    return p


async def _run_add(args: argparse.Namespace, url: str | None) -> int:
    from ._embed_extras import embedder_from_name
    from ._semantic import SemanticMemory

    with SemanticMemory.open(url, embedder=embedder_from_name(args.embedder)) as memory:
        results = memory.add_paths(args.paths, tenant=args.tenant, tags=dict(args.tags))
    if args.output == "json":
        print(json.dumps({"files": [r.to_dict() for r in results]}, indent=2))
        return 0
    added = sum(r.chunks for r in results if r.status != "unchanged")
    unchanged = sum(1 for r in results if r.status == "unchanged")
    for r in results:
        print(f"{r.status:<9} {r.chunks:>5} chunks  {r.source}")
    print(
        f"{len(results)} file(s): {added} chunk(s) added, {unchanged} file(s) unchanged "
        f"(tenant {args.tenant})"
    )
    return 0


async def _run_search(args: argparse.Namespace, url: str | None) -> int:
    from ._embed_extras import embedder_from_name
    from ._semantic import SemanticMemory

    embedder = embedder_from_name(args.embedder)
    with SemanticMemory.open(url, must_exist=True, embedder=embedder) as memory:
        result = memory.search(args.query, tenant=args.tenant, k=args.k)
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    if not result.hits:
        print(f"nothing relevant (threshold {result.threshold:.2f}, tenant {args.tenant})")
    for n, hit in enumerate(result.hits, 1):
        where = hit.source + (f" > {hit.heading_path}" if hit.headings else "")
        print(f"[{n}] score {hit.score:.3f} (lexical {hit.lexical:.2f}, dense {hit.dense:.2f})")
        print(f"    {where}")
        snippet = " ".join(hit.text.split())
        print(f"    {snippet[:200]}{'...' if len(snippet) > 200 else ''}")
    if result.dropped:
        print("dropped:")
        for drop in result.dropped:
            print(f"  chunk {drop.hit.chunk_id}: {drop.explain(result.threshold)}")
            print(
                f"    {drop.hit.source}"
                + (f" > {drop.hit.heading_path}" if drop.hit.headings else "")
            )
    return 0


ACTIONS: list[MemoryAction] = [
    MemoryAction("add", _register_add, _run_add),
    MemoryAction("search", _register_search, _run_search),
    MemoryAction("forget", register_forget, run_forget),
]
"""The actions of ``corral memory``; append one to add an action (before the CLI parses)."""


def add_memory_commands(sub: Any, command: Command) -> None:
    """Register ``corral memory`` and its actions on the CLI's subparsers.

    Args:
        sub: the CLI's top-level subparsers.
        command: the CLI's helper making a subparser with the global options.
    """
    group = sub.add_parser("memory", help="semantic memory: add documents, search them")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ACTIONS:
        action.register(actions, command)


async def run_memory_command(args: argparse.Namespace, url: str | None) -> int:
    """Run the ``corral memory`` action the arguments name; return the exit code.

    Raises:
        UsageError: an unknown action (argparse normally refuses it first).
    """
    for action in ACTIONS:
        if action.name == args.action:
            code = await action.run(args, url)
            sys.stdout.flush()
            return code
    raise UsageError(f"unknown memory action {args.action!r}")
