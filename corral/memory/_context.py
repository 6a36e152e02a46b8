"""Conversation memory: the messages of each model call, built under a token budget.

Every model call of a run gets at most ``context_tokens`` of input (estimated by
`text_tokens`: system prompt, tools, framing and messages together). While the whole
conversation fits, it is sent as it is, message for message (a short run sends exactly
what it always did). Once it does not:

* **the pinned part is never dropped**: the system prompt (the instructions, and any
  breaker note), the tools, the task, every notice the runtime gave the model (the
  budget notice), and the past examples episodic memory offered;
* **turns**: a turn is one model answer with the results of its calls, kept or
  summarised whole, so a ``tool_result`` never loses its ``tool_use`` (providers refuse
  that);
* **recent turns stay verbatim**, at least `ContextPolicy.keep_turns` of them when they
  fit, and always the latest;
* **older turns are replaced by a summary, oldest first**: when the verbatim turns no
  longer fit, the oldest are folded into a rolling summary (`corral.memory.Summariser`)
  until the rest fills at most `ContextPolicy.compact_to` of the room, so a summary is
  written every few steps, not every step. The summary takes at most
  `ContextPolicy.summary_share` of the room. The loop journals each summary
  (``context_summarised``), so a resumed run reads it back and builds the same context;
* **tool results beyond their share are cut**: in a compacted context no result takes
  more than `ContextPolicy.result_share` of the window; a cut one ends with a pointer to
  the full result (its call id, whose ``tool_call_finished`` holds what the model was
  first shown, and the blob holding the whole raw result when the result filter kept one).

Cost. `ContextWindow` is kept for the life of a run's actor and measures each message once,
when it first sees it (a run's messages only grow): a build that sends everything is one
comparison; a compacted build walks only the verbatim turns (bounded by the window, not
by the run's length).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..models import AssistantMessage, Message, ToolResultMessage, UserMessage
from ..models._tokens import FRAMING_PER_REQUEST
from ._context_tokens import message_tokens, text_tokens
from ._summarise import ExtractiveSummariser, Summariser, SummaryJob, Turn

__all__ = [
    "Context",
    "ContextPolicy",
    "ContextWindow",
    "SummaryNeed",
    "build_context",
    "summary_message",
]

NOTICE_ROOM = 160
"""Tokens left free when the context is planned before the supervisor's answer, for the
budget notice it may add (about 60 tokens) and a breaker note in the system prompt."""

_MIN_RESULT = 48
"""The fewest tokens of a result kept when results must be cut below their share."""

_BLOB = re.compile(r"\[full result stored as blob sha256:([0-9a-f]{16})\]")


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """How an agent's context window is kept (``SubAgent(context=ContextPolicy(...))``)."""

    tokens: int | None = None
    """The most input tokens of one model call. Default: the model's context window
    (`corral.memory.context_window`) less the run's output cap (`Limits.output_tokens`)."""
    summariser: Summariser = field(default_factory=ExtractiveSummariser)
    """Writes the summary of older turns. Default `ExtractiveSummariser()`."""
    keep_turns: int = 2
    """Latest turns kept verbatim whenever they fit. Default 2."""
    result_share: float = 0.1
    """The largest share of the window one tool result may take once the context is
    compacted. Default 0.1: several turns fit beside the summary, so a summary is written
    every few steps even when every result is longer than the window."""
    summary_share: float = 0.2
    """The largest share of the room (the window less the pinned part) the summary may
    take. Default 0.2."""
    compact_to: float = 0.5
    """After summarising, the verbatim turns fill at most this share of the room left
    beside the summary's. Default 0.5 (lower: summaries more often, in bigger bites)."""

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens < 256:
            raise ConfigError(f"context tokens must be at least 256, got {self.tokens}")
        if self.keep_turns < 1:
            raise ConfigError(f"keep_turns must be at least 1, got {self.keep_turns}")
        for name in ("result_share", "summary_share", "compact_to"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if not callable(getattr(self.summariser, "summarise", None)):
            raise ConfigError(f"{self.summariser!r} is not a Summariser (no summarise method)")


@dataclass(frozen=True, slots=True)
class SummaryNeed:
    """Turns that must be summarised before the context fits."""

    job: SummaryJob
    """What to ask the summariser."""
    first_turn: int
    """The first turn it takes in."""
    through_turn: int
    """After it, the summary covers turns ``0 .. through_turn - 1``."""
    tokens_before: int
    """Estimated tokens of the context with every unsummarised turn verbatim."""


@dataclass(frozen=True, slots=True)
class Context:
    """The messages of one model call, and what building them did."""

    messages: tuple[Message, ...]
    tokens: int
    """Estimated tokens of the whole request: system, tools, framing, messages."""
    compacted: bool
    """False when the whole conversation is sent as it is."""
    summarised_through: int = 0
    """Turns replaced by the summary."""
    verbatim_turns: int = 0
    """Turns sent verbatim (every turn when not compacted)."""
    cut_results: int = 0
    """Tool results cut to their share, each with a pointer to the full result."""
    need: SummaryNeed | None = None
    """Set when older turns must be summarised first (`messages` then do not fit yet)."""


def summary_message(summary: str, through: int) -> UserMessage:
    """The message that stands in for turns ``0 .. through - 1``."""
    return UserMessage(
        content=(
            f"[Summary of the earlier conversation: turns 1-{through}, replaced to fit the "
            f"context window (the full turns are in the run's journal)]\n{summary}"
        )
    )


def _cut(message: ToolResultMessage, cap: int) -> ToolResultMessage:
    """`message` with its content cut to about `cap` tokens and a pointer to the rest."""
    content = message.content
    blob = _BLOB.search(content)
    where = f"blob sha256:{blob.group(1)}, " if blob else ""
    chars = max(cap * 4, 16)
    head = content[:chars]
    while text_tokens(head) > cap and len(head) > 16:
        head = head[: max(16, len(head) * cap // max(text_tokens(head), 1))]
        if text_tokens(head) > cap:
            head = head[: len(head) * 9 // 10]
    pointer = (
        f"\n[cut to fit the context window: {len(head):,} of {len(content):,} characters "
        f"shown; the full result: {where}tool_call_finished of call {message.call_id}]"
    )
    return message.model_copy(update={"content": head + pointer})


_POINTER_TOKENS = 48
"""Bound on the tokens of a cut result's pointer."""


class ContextWindow:
    """Builds the context of each model call of one run, incrementally.

    Keep one per run and call `build` before each model call with the run's messages
    (which only grow between calls).

    Args:
        tokens: the most input tokens of one call (estimated by `text_tokens`).
        policy: how the window is kept. Default `ContextPolicy()`.

    Raises:
        ConfigError: `tokens` below 256.
    """

    def __init__(self, tokens: int, policy: ContextPolicy | None = None) -> None:
        if tokens < 256:
            raise ConfigError(f"context tokens must be at least 256, got {tokens}")
        self.tokens = tokens
        self.policy = policy or ContextPolicy()
        self.cap = max(_MIN_RESULT, int(tokens * self.policy.result_share))
        """The most tokens of one tool result in a compacted context."""
        self._costs: list[int] = []
        """Estimated tokens of each message seen, by position."""
        self._total = 0
        self._pinned = 0
        """Tokens of the user messages (the task, notices): never dropped."""
        self._starts: list[int] = []
        """Position of each turn's model answer."""
        self._turn_costs: list[int] = []
        """Tokens of each turn verbatim, results capped at `cap`, user messages left out."""
        self._cuts: dict[tuple[int, int], ToolResultMessage] = {}

    def _sync(self, messages: Sequence[Message]) -> None:
        for i in range(len(self._costs), len(messages)):
            message = messages[i]
            cost = message_tokens(message)
            self._costs.append(cost)
            self._total += cost
            if isinstance(message, AssistantMessage):
                self._starts.append(i)
                self._turn_costs.append(cost)
            elif isinstance(message, UserMessage) or not self._starts:
                self._pinned += cost
            else:
                self._turn_costs[-1] += min(cost, self.cap + _POINTER_TOKENS)

    def turns(self, messages: Sequence[Message], first: int, through: int) -> tuple[Turn, ...]:
        """Turns ``first .. through - 1`` of `messages`, each with its calls' results."""
        self._sync(messages)
        found: list[Turn] = []
        for t in range(first, through):
            start = self._starts[t]
            end = self._starts[t + 1] if t + 1 < len(self._starts) else len(messages)
            answer = messages[start]
            assert isinstance(answer, AssistantMessage)
            results = tuple(
                m for m in messages[start + 1 : end] if isinstance(m, ToolResultMessage)
            )
            found.append(Turn(t, answer, results))
        return tuple(found)

    def build(
        self,
        messages: Sequence[Message],
        *,
        system: str = "",
        tool_tokens: int = 0,
        summary: str = "",
        summarised_through: int = 0,
        leading: UserMessage | None = None,
        headroom: int = 0,
        summarise: bool = True,
    ) -> Context:
        """The context of the next model call.

        Args:
            messages: the run's conversation, oldest first (the task first).
            system: the system prompt as it will be sent.
            tool_tokens: tokens of the tools offered (a bound, such as
                `corral.models._tokens.tools_token_bound` gives).
            summary: the current summary, if any (read back from the journal).
            summarised_through: the turns it covers.
            leading: a pinned message sent before the task (past examples).
            headroom: tokens to leave free for what may still be added (a notice).
            summarise: when True a context that does not fit says which turns to
                summarise (`Context.need`); when False results and texts are cut further
                instead, so it fits now.

        Returns:
            The context; when `Context.need` is set, summarise, then build again.

        Raises:
            ConfigError: the pinned part alone (system prompt, tools, task, notices) does
                not fit in the window.
        """
        self._sync(messages)
        fixed = FRAMING_PER_REQUEST + text_tokens(system) + tool_tokens
        lead = message_tokens(leading) if leading is not None else 0
        room = self.tokens - fixed - headroom - lead
        n = len(self._starts)
        if summarised_through == 0 and self._total <= room:
            sent = (leading, *messages) if leading is not None else tuple(messages)
            return Context(sent, fixed + lead + self._total, compacted=False, verbatim_turns=n)
        room -= self._pinned
        if room <= 0:
            raise ConfigError(
                f"the pinned part of the context (system prompt, tools, task and notices: "
                f"{self.tokens - room - headroom:,} tokens) does not fit in the context "
                f"window of {self.tokens:,} tokens: raise context_tokens or shorten them"
            )
        through = min(summarised_through, n)
        kept = summary_message(summary, through) if through else None
        summary_cost = message_tokens(kept) if kept is not None else 0
        verbatim = sum(self._turn_costs[through:])
        if summarise and summary_cost + verbatim > room and through < n - 1:
            need = self._need(messages, summary, through, room, verbatim, fixed + lead)
            if need is not None:
                return Context(
                    tuple(messages),
                    fixed + lead + self._total,
                    compacted=True,
                    summarised_through=through,
                    verbatim_turns=n - through,
                    need=need,
                )
        return self._assemble(messages, kept, through, room - summary_cost, fixed, leading)

    def _need(
        self,
        messages: Sequence[Message],
        summary: str,
        through: int,
        room: int,
        verbatim: int,
        fixed: int,
    ) -> SummaryNeed | None:
        """Which turns to summarise: the oldest, until the rest fills `compact_to`."""
        policy = self.policy
        summary_budget = max(32, int(room * policy.summary_share))
        space = room - summary_budget
        target = int(space * policy.compact_to)
        n = len(self._starts)
        start, acc = n, 0
        while start > through and acc + self._turn_costs[start - 1] <= target:
            start -= 1
            acc += self._turn_costs[start]
        keep = min(policy.keep_turns, n - through)
        if n - start < keep:  # the latest turns are kept if they fit at all
            start = n - keep
            acc = sum(self._turn_costs[start:])
            while start < n - 1 and acc > space:
                acc -= self._turn_costs[start]
                start += 1
        start = min(max(start, through), n - 1)
        if start <= through:
            return None
        job = SummaryJob(summary, self.turns(messages, through, start), summary_budget)
        return SummaryNeed(job, through, start, fixed + self._pinned + verbatim)

    def _assemble(
        self,
        messages: Sequence[Message],
        kept: UserMessage | None,
        through: int,
        room: int,
        fixed: int,
        leading: UserMessage | None,
    ) -> Context:
        """The compacted context: pinned, summary, notices of summarised turns, verbatim."""
        starts, costs = self._starts, self._costs
        first = starts[0] if starts else len(messages)
        boundary = starts[through] if through < len(starts) else len(messages)
        head: list[Message] = [leading] if leading is not None else []
        head.extend(messages[:first])  # the task
        if kept is not None:
            head.append(kept)
        head.extend(m for m in messages[first:boundary] if isinstance(m, UserMessage))
        pinned = sum(message_tokens(m) for m in head) if head else 0
        cap = self.cap
        while True:
            body, cut, used = self._verbatim(messages, boundary, cap, None)
            if used <= room or cap <= _MIN_RESULT:
                break
            results = sum(1 for m in body if isinstance(m, ToolResultMessage)) or 1
            others = sum(
                costs[boundary + i]
                for i, m in enumerate(messages[boundary:])
                if not isinstance(m, ToolResultMessage)
            )
            cap = max(_MIN_RESULT, min(cap - 1, (room - others) // results - _POINTER_TOKENS))
        if used > room:  # the latest turn's own text and calls are too long: cut texts too
            body, cut, used = self._verbatim(messages, boundary, cap, room)
        tokens = fixed + pinned + used
        if tokens > self.tokens:
            raise ConfigError(
                f"the latest turn does not fit in the context window of {self.tokens:,} "
                f"tokens even with its results cut ({tokens:,} tokens): raise context_tokens"
            )
        return Context(
            (*head, *body),
            tokens,
            compacted=True,
            summarised_through=through,
            verbatim_turns=len(starts) - through,
            cut_results=cut,
        )

    def _verbatim(
        self, messages: Sequence[Message], boundary: int, cap: int, room: int | None
    ) -> tuple[list[Message], int, int]:
        """Messages from `boundary` on, results cut to `cap`; with `room`, texts cut too."""
        body: list[Message] = []
        cut = used = 0
        costs = self._costs
        text_cap = None
        if room is not None:
            calls = sum(1 for m in messages[boundary:] if isinstance(m, AssistantMessage))
            text_cap = max(16, room // (4 * max(calls, 1)))
        for i in range(boundary, len(messages)):
            message = messages[i]
            cost = costs[i]
            if isinstance(message, ToolResultMessage) and cost > cap + _POINTER_TOKENS:
                key = (i, cap)
                shortened = self._cuts.get(key)
                if shortened is None:
                    shortened = _cut(message, cap)
                    self._cuts[key] = shortened
                message, cost = shortened, message_tokens(shortened)
                cut += 1
            elif (
                text_cap is not None
                and isinstance(message, AssistantMessage)
                and text_tokens(message.text) > text_cap
            ):
                text = message.text[: text_cap * 2] + " [cut to fit the context window]"
                message = message.model_copy(update={"text": text})
                cost = message_tokens(message)
            body.append(message)
            used += cost
        return body, cut, used


def build_context(
    messages: Sequence[Message],
    *,
    context_tokens: int,
    window: ContextWindow | None = None,
    system: str = "",
    tool_tokens: int = 0,
    summary: str = "",
    summarised_through: int = 0,
) -> tuple[Context, str, int]:
    """Build a context, summarising in place with the extractive summariser when needed.

    What the agent loop does before each model call, without the journal: for tools,
    benchmarks and experiments. Pass the same `window` on each call over a growing
    conversation to build incrementally, as a run does.

    Args:
        messages: the conversation, oldest first.
        context_tokens: the most input tokens (when `window` is None).
        window: a window kept between calls. Default: a fresh one.
        system: the system prompt.
        tool_tokens: tokens of the tools offered.
        summary: the summary so far.
        summarised_through: the turns it covers.

    Returns:
        The context, and the summary and the turns it covers after this build (pass them
        to the next call).
    """
    window = window or ContextWindow(context_tokens)
    built = window.build(
        messages,
        system=system,
        tool_tokens=tool_tokens,
        summary=summary,
        summarised_through=summarised_through,
    )
    if built.need is not None:
        need = built.need
        summariser = window.policy.summariser
        if isinstance(summariser, ExtractiveSummariser):
            summary = summariser.summarise_now(need.job)
        else:
            summary = ExtractiveSummariser().summarise_now(need.job)
        summarised_through = need.through_turn
        built = window.build(
            messages,
            system=system,
            tool_tokens=tool_tokens,
            summary=summary,
            summarised_through=summarised_through,
            summarise=False,
        )
    return built, summary, summarised_through
