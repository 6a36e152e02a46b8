"""``corral memory forget``: delete an episode, or everything memory holds of a tenant.

``--episode RUN_ID`` deletes that run's episode; ``--tenant T`` deletes every episode of
the tenant and every document semantic memory holds for it. The journal (the audit
trail) is left as it is: its own retention (``durability.retention_days``) prunes it.
Registered as a `corral.memory._command.MemoryAction`; argparse only until it runs.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..errors import UsageError

__all__ = ["register_forget", "run_forget"]


def register_forget(sub: Any, command: Any) -> argparse.ArgumentParser:
    """Add ``forget`` to the ``corral memory`` subparsers.

    Args:
        sub: the group's subparsers.
        command: the CLI's ``command(parent, name, help)``.

    Returns:
        The action's parser.
    """
    p: argparse.ArgumentParser = command(
        sub, "forget", "delete an episode, or every episode and document of a tenant"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--episode", metavar="RUN_ID", help="the run whose episode to delete")
    which.add_argument("--tenant", help="delete every episode and memory document of a tenant")
    return p


def _path(url: str | None) -> str:
    from ..store import open_store, store_url

    if store_url(url) == "memory://":
        raise UsageError("an in-memory store holds no memory to forget: give --db with a file")
    path = open_store(url).path
    if path == ":memory:":
        raise UsageError("an in-memory store holds no memory to forget: give --db with a file")
    if not os.path.exists(path):
        raise UsageError(f"no store at {path}: nothing to forget (check --db or CORRAL_DB)")
    return path


async def run_forget(args: argparse.Namespace, url: str | None) -> int:
    """Run ``corral memory forget``.

    A tenant's deletion is idempotent: it exits 0 whether or not anything was left to
    delete (a retention script can run it twice). A named episode that does not exist
    exits 1, as ``rm`` does for a missing file.

    Raises:
        UsageError: no store at the URL, or an in-memory one.
    """
    from ._episodes import SqliteEpisodes, forget_episodes

    path = _path(url)
    store = SqliteEpisodes(path)
    try:
        episodes = await forget_episodes(store, run_id=args.episode, tenant=args.tenant)
    finally:
        await store.close()
    chunks = 0
    if args.tenant is not None:
        from ._semantic import SemanticMemory

        with SemanticMemory.open(path) as memory:
            chunks = memory.forget_tenant(args.tenant)
    report: dict[str, Any] = {"episodes": episodes}
    if args.episode is not None:
        report["run_id"] = args.episode
        said = (
            f"forgot the episode of run {args.episode}"
            if episodes
            else (f"no episode of run {args.episode}")
        )
    else:
        report.update(tenant=args.tenant, chunks=chunks)
        said = f"forgot {episodes} episode(s) and {chunks} memory chunk(s) of tenant {args.tenant}"
    if getattr(args, "output", "table") == "json":
        print(json.dumps(report, indent=2))
    else:
        print(said)
    return 0 if episodes or args.tenant is not None else 1
