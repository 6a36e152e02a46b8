"""How a workflow hears that one of its sub-agent runs ended: a delivery under a key.

The workflow waits (a ``wait_started`` event) on the key `child_done_key` gives; the
runtime delivers to it when the child run finishes. The key's form is known only here:
the workflow engine asks its `WorkflowHost` for it, and `child_of_key` reads it back when
the runtime decides whether a paused workflow can move on by itself.
"""

from __future__ import annotations

__all__ = ["child_done_key", "child_of_key"]

_PREFIX = "child:"


def child_done_key(child_run_id: str) -> str:
    """The correlation key under which the end of run `child_run_id` is delivered."""
    return _PREFIX + child_run_id


def child_of_key(key: str) -> str | None:
    """The child run whose end `key` waits for, or None for any other key."""
    return key.removeprefix(_PREFIX) if key.startswith(_PREFIX) else None
