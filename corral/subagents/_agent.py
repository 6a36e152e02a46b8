"""A sub-agent definition: instructions, a model, a scope of permissions, at most five tools."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, Self

from ..actors import RestartPolicy
from ..errors import ConfigError
from ..guardrails import ApprovalPolicy, CallCheck, ProvenancePolicy, ScopePolicy
from ..memory._context import ContextPolicy
from ..memory._context_tokens import context_window
from ..memory._episodes import EpisodeSettings
from ..models import Model, ToolSpec
from ..supervisor import Limits
from ..tools import SideEffect, Tool

__all__ = ["DEFAULT_MAX_TOOLS", "SubAgent"]

DEFAULT_MAX_TOOLS = 5
"""Tools one sub-agent may hold. Small tool sets keep the model's choices reliable."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class SubAgent:
    """A small, focused agent. Each run of it gets its own actor.

    Args:
        name: lowercase identifier, used by routing rules and in events.
        instructions: the system prompt.
        tools: the tools the model may call (at most `max_tools`).
        model: any `corral.models.Model`.
        scopes: permissions this agent holds, such as ``{"invoices:read"}``; a tool whose
            `scopes` are not all held is refused before it runs.
        limits: per-run limits for this agent. Default: the runtime's limits.
        max_tools: the tool cap. Default 5.
        restart: how a crashed run actor is restarted (it resumes from its journal).
        allowed_side_effects: the side-effect levels this agent may use at all; a
            read-only agent is ``{"read"}`` and never reaches a write or a delete.
            Default: any level its scopes allow.
        policies: scope and argument policies its calls must pass (see
            `corral.guardrails.ScopePolicy`, `ArgumentPolicy`).
        checks: your own `corral.guardrails.CallCheck`s for its calls; they run after
            the policies and before the runtime's checks and the approval policy, and may
            block a call, send it to a person (``approve``) or ``flag`` it.
        approval: its own `corral.guardrails.ApprovalPolicy` (which calls run, wait for a
            person, or are refused). Default: the runtime's. Two agents of one runtime
            can auto-approve different tools.
        provenance: its own `corral.guardrails.ProvenancePolicy` (where its side-effecting
            calls may take argument values from). Default: the runtime's.
        pii: what the model sees of personal data (emails, phone numbers, IBANs, national
            ids) in tool results: ``flag`` (default) shows it and journals that it was
            there, so the agent can do work that needs it; ``redact`` replaces it.
            Secrets (API keys, tokens, private keys, passwords) and card numbers are
            redacted either way.
        context_tokens: the most input tokens of one model call (system prompt, tools and
            messages, estimated by `corral.memory.text_tokens`). Past it, older turns are
            summarised and long results cut; the instructions, the task and the notices
            are never dropped (see `corral.memory.ContextWindow`). Default: the model's
            context window (`corral.memory.context_window`) less the output cap.
        context: how the window is kept: the summariser, turns kept verbatim, shares
            (`corral.memory.ContextPolicy`). Default `ContextPolicy()` (extractive
            summaries).
        episodes: offer the model its past runs on similar tasks as examples, and keep
            each finished run as an episode (`corral.memory.EpisodeSettings`).
            Default None: off.

    Raises:
        ConfigError: (a `ValueError`) an invalid name, a duplicate tool name, more tools
            than `max_tools`, or a check without a ``check`` method.
    """

    def __init__(
        self,
        name: str,
        *,
        instructions: str,
        tools: Sequence[Tool],
        model: Model,
        scopes: Iterable[str] = (),
        limits: Limits | None = None,
        max_tools: int = DEFAULT_MAX_TOOLS,
        restart: RestartPolicy | None = None,
        allowed_side_effects: Iterable[SideEffect] | None = None,
        policies: Sequence[ScopePolicy] = (),
        checks: Sequence[CallCheck] = (),
        approval: ApprovalPolicy | None = None,
        provenance: ProvenancePolicy | None = None,
        pii: Literal["flag", "redact"] = "flag",
        context_tokens: int | None = None,
        context: ContextPolicy | None = None,
        episodes: EpisodeSettings | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"sub-agent name {name!r} must be lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        tools = list(tools)
        by_name, fallbacks = _index_tools(name, tools, max_tools)
        if not instructions.strip():
            raise ConfigError(f"sub-agent {name!r} needs instructions (its system prompt)")
        checks = tuple(checks)
        for check in checks:
            if not callable(getattr(check, "check", None)):
                raise ConfigError(
                    f"sub-agent {name!r}: {check!r} is not a call check; it needs a method "
                    "check(ctx: CallContext) -> Verdict"
                )
        self.name = name
        self.instructions = instructions
        self.tools: dict[str, Tool] = by_name
        """The tools the model may call, by name."""
        self.fallbacks: dict[str, Tool] = fallbacks
        """The fallbacks of its tools that are not tools of the agent themselves, by name
        (offered only while the breaker of the tool they stand in for is open)."""
        self._callable: dict[str, Tool] = {**fallbacks, **by_name}
        self.model = model
        self.scopes = frozenset(scopes)
        self.limits = limits
        self.max_tools = max_tools
        self.restart = restart or RestartPolicy()
        self.allowed_side_effects: frozenset[SideEffect] | None = (
            frozenset(allowed_side_effects) if allowed_side_effects is not None else None
        )
        self.policies: tuple[ScopePolicy, ...] = tuple(policies)
        self.checks: tuple[CallCheck, ...] = checks
        if approval is not None and not isinstance(approval, ApprovalPolicy):
            raise ConfigError(f"sub-agent {name!r}: approval must be an ApprovalPolicy")
        if provenance is not None and not isinstance(provenance, ProvenancePolicy):
            raise ConfigError(f"sub-agent {name!r}: provenance must be a ProvenancePolicy")
        if pii not in ("flag", "redact"):
            raise ConfigError(f"sub-agent {name!r}: pii must be 'flag' or 'redact', got {pii!r}")
        self.pii: Literal["flag", "redact"] = pii
        """What the model sees of personal data in tool results."""
        self.approval = approval
        """Its approval policy; None: the runtime's."""
        self.provenance = provenance
        """Its provenance policy; None: the runtime's."""
        self.specs: tuple[ToolSpec, ...] = tuple(t.spec() for t in tools)
        if context is not None and not isinstance(context, ContextPolicy):
            raise ConfigError(f"sub-agent {name!r}: context must be a ContextPolicy")
        if episodes is not None and not isinstance(episodes, EpisodeSettings):
            raise ConfigError(f"sub-agent {name!r}: episodes must be an EpisodeSettings")
        self.context: ContextPolicy = context or ContextPolicy()
        """How its context window is kept."""
        tokens = context_tokens if context_tokens is not None else self.context.tokens
        if tokens is not None and tokens < 256:
            raise ConfigError(
                f"sub-agent {name!r}: context_tokens must be at least 256, got {tokens}"
            )
        self.context_tokens: int | None = tokens
        """The most input tokens of one model call; None: from the model's window."""
        self.episodes = episodes
        """Its episodic-memory settings; None: off."""

    def window_tokens(self, output_tokens: int) -> int:
        """The most input tokens of one of its model calls.

        Args:
            output_tokens: the run's output cap (`Limits.output_tokens`), which shares
                the model's window when `context_tokens` is not set.

        Returns:
            `context_tokens`, or the model's window less `output_tokens` (at least 1,024).
        """
        if self.context_tokens is not None:
            return self.context_tokens
        return max(1_024, context_window(self.model) - output_tokens)

    def tool_for(self, name: str) -> Tool | None:
        """The tool a call by this name runs: one of the agent's tools, or a fallback of one.

        A fallback is offered to the model only while its tool's breaker is open, so a call
        to it may outlive that step: waiting at a gate, or resumed after a restart.

        Args:
            name: the tool name, as a call or a gate names it.

        Returns:
            The tool, or None when no tool or fallback of the agent has that name.
        """
        return self._callable.get(name)

    def replace(self, *, model: Model | None = None, tools: Sequence[Tool] | None = None) -> Self:
        """A copy of this agent with another model and/or other tools, all else kept.

        Instructions, scopes, limits, policies, checks, approval, provenance, context and
        episodes stay as they are (shared, not copied: they are settings). The tools are
        checked as the constructor checks them (names, the `max_tools` cap), and their
        fallbacks resolved again. Replay (`corral.replay`) uses it to put a recording in
        place of the model and the tools.

        Args:
            model: the copy's model. Default: this agent's.
            tools: the copy's tools. Default: this agent's.

        Raises:
            ConfigError: the tools break a rule of the constructor.
        """
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        if model is not None:
            copy.model = model
        if tools is not None:
            tools = list(tools)
            by_name, fallbacks = _index_tools(self.name, tools, self.max_tools)
            copy.tools, copy.fallbacks = by_name, fallbacks
            copy._callable = {**fallbacks, **by_name}
            copy.specs = tuple(t.spec() for t in tools)
        return copy

    def __repr__(self) -> str:
        return f"SubAgent({self.name!r}, tools={list(self.tools)}, model={self.model.name!r})"


def _index_tools(
    name: str, tools: list[Tool], max_tools: int
) -> tuple[dict[str, Tool], dict[str, Tool]]:
    """An agent's tools by name, and the fallbacks that are not tools of its own.

    Raises:
        ConfigError: more tools than `max_tools`, a non-tool, or two tools of one name.
    """
    if len(tools) > max_tools:
        raise ConfigError(
            f"sub-agent {name!r} has {len(tools)} tools ({', '.join(t.name for t in tools)}); "
            f"the limit is {max_tools}. Models pick tools less reliably as the list grows: "
            "split the work across several sub-agents and route between them."
        )
    by_name: dict[str, Tool] = {}
    for t in tools:
        if not isinstance(t, Tool):
            raise ConfigError(
                f"sub-agent {name!r}: {t!r} is not a Tool; decorate the function with @tool"
            )
        if t.name in by_name:
            raise ConfigError(f"sub-agent {name!r} has two tools named {t.name!r}")
        by_name[t.name] = t
    fallbacks: dict[str, Tool] = {}
    for t in tools:
        if t.fallback is not None and t.fallback.name not in by_name:
            fallbacks.setdefault(t.fallback.name, t.fallback)
    return by_name, fallbacks
