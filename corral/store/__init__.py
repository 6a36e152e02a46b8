"""Store: the append-only journal of run events."""

from ._journal import Journal as Journal
from ._journal import MemoryJournal as MemoryJournal

__all__ = ["Journal", "MemoryJournal"]
