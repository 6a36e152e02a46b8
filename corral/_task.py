"""A task: the unit of work submitted to Corral and routed to one sub-agent."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def new_id(prefix: str) -> str:
    """Return a fresh identifier such as ``run_3f2a...`` (prefix + 16 hex digits)."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class Task(BaseModel):
    """Work to do: the text for the model plus the facts routing rules match on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    """What to do, in words; it becomes the run's first user message."""
    kind: str | None = None
    """A category set by the caller, such as ``billing``; routing rules match on it."""
    tags: frozenset[str] = frozenset()
    """Free labels routing rules can require."""
    tenant: str = "default"
    """Who pays: per-tenant budgets are shared by all of a tenant's runs."""
    metadata: Mapping[str, Any] = Field(default_factory=dict)
    """Anything else a routing predicate or a tool may need (not sent to the model)."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset({value})
        return value
