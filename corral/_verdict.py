"""The verdict every guardrail returns: who decided, what, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ALLOW", "Decision", "Verdict"]

Decision = Literal["allow", "block", "flag", "redact", "strip", "truncate", "approve"]
"""What a guardrail decided. ``block`` stops the action; the others let it go on, changed
(``redact``, ``strip``, ``truncate``) or noted (``flag``), or send it to a person (``approve``)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guardrail's structured decision, journaled with its reason."""

    guardrail: str
    """Name of the check, such as ``schema`` or ``injection``."""
    decision: Decision
    """What it decided."""
    reason: str = ""
    """Short reason for people and metrics."""
    message: str = ""
    """When the model must be told: the text it gets, written so it can act on it."""
    details: dict[str, Any] = field(default_factory=dict)
    """Structured extras (violations, score, matched patterns...)."""

    @property
    def blocked(self) -> bool:
        """True when the action must not happen."""
        return self.decision == "block"


ALLOW = Verdict(guardrail="all", decision="allow")
"""The verdict of a chain in which every check passed."""
