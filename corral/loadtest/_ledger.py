"""The ledger: a record kept outside Corral of what the chaos workload really did.

Corral's journal says what Corral decided; the ledger says what happened at the edges,
written by the chaos tools and the chaos model themselves: every tool body execution
(run id, call id, idempotency key, arguments, whether it took effect), every model
request answered, and every fault injected, with its label. The harness checks one
against the other: a tool body that ran for a call the journal shows rejected, two
effects for one idempotency key, or a model call answered twice for one step breaks an
invariant, whatever the journal says.

In one process the ledger is a list in memory; a ``corral serve`` running the load-test
application appends it to a file of JSON lines (``CORRAL_LOADTEST_LEDGER``), which the
harness reads back when the runs are over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Ledger", "LedgerEntry", "Mode"]

Mode = Literal["guarded", "unguarded"]
"""Which loop an entry comes from: Corral's, or the plain comparison loop."""


class LedgerEntry(BaseModel):
    """One fact recorded at the edge of the workload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["tool", "model", "fault", "answer"]
    """``tool``: a tool body ran; ``model``: a model request was answered; ``fault``: a
    fault was injected; ``answer``: the model gave its final answer."""
    mode: Mode = "guarded"
    case: str = ""
    """The workload case (``7-00017-0``: seed, task, try) the entry is about."""
    run_id: str = ""
    """The run, when the edge knows it (tools get it from their `ToolContext`)."""
    call_id: str = ""
    tool: str = ""
    idempotency_key: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    effect: bool = False
    """A tool that changes the world took effect (a receipt sent, a refund made)."""
    ok: bool = True
    """The tool body or model request succeeded (False: it raised or hung)."""
    step: int = 0
    """The model step (assistant turns before the request, plus one)."""
    fault: str = ""
    """The fault class this entry injects or is tainted by."""
    detail: str = ""


class Ledger:
    """Collects `LedgerEntry`s in memory, and appends them to a file when given one.

    Thread-safe: the loopback provider answers from its own threads.

    Args:
        path: a JSON-lines file to append every entry to (created if missing).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()
        self._path = Path(path) if path is not None else None

    def add(self, entry: LedgerEntry) -> None:
        """Record one entry."""
        line = entry.model_dump_json(exclude_defaults=True) + "\n"
        with self._lock:
            self._entries.append(entry)
            if self._path is not None:
                with self._path.open("a", encoding="utf-8") as file:
                    file.write(line)

    def record(self, kind: Literal["tool", "model", "fault", "answer"], **fields: Any) -> None:
        """Record one entry from its fields (see `LedgerEntry`)."""
        self.add(LedgerEntry(kind=kind, **fields))

    def entries(self) -> list[LedgerEntry]:
        """Every entry recorded in this process, in order."""
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries())

    @classmethod
    def read(cls, path: str | Path) -> Ledger:
        """Load a ledger another process appended to `path` (missing file: empty).

        Raises:
            ValueError: a line that is not a ledger entry.
        """
        ledger = cls()
        file = Path(path)
        if file.exists():
            for line in file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    ledger._entries.append(LedgerEntry.model_validate(json.loads(line)))
        return ledger
