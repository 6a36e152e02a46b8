"""Loop detection: stop a run that repeats itself, and let a run that sweeps go on.

"The same tool more than three times in a row" (the old rule, still available as
`Limits.max_consecutive_same_tool`) stops legitimate work: reading the members of four
channels is four calls of one tool, paging through results is one tool called with a new
page each time, polling a status is the same call until the status changes. What marks a
loop is not the tool but the lack of progress, so the default rules look at the calls'
arguments and at what their results told the model:

* **a failed call repeated**: a call whose key (tool plus canonical arguments) was
  rejected or failed for good, proposed again, stops the run at once;
* **an identical call that brings nothing new** (`Limits.max_repeated_calls`, default
  2): the same tool with the same arguments, up to case and whitespace in strings
  (`identity`), repeated that many times since it last returned a result it had not
  returned before, stops the run at the next repeat. A poll whose status changes never
  stops; ``get_status(job)`` answered "running" three times is refused a fourth;
* **a streak that brings nothing new** (`Limits.max_stale_streak`, default 3): calls in
  a row, with different arguments, whose results the run had all seen already
  (``search("a")``, ``search("b")``, ... each answered "no results"; a page parameter
  the API ignores; ``search`` and ``get_user`` taking turns, each answering "not found"),
  stop the run once that many results in a row were stale, whichever tools gave them.
  A call of a tool with side effects (``write``, ``external``, ``destructive``) is
  progress whatever it answers: sending five messages that each answer "sent" is work
  done, not a loop (the identical-call rule still stops the same message sent again
  and again);
* **a chain of failures** (`Limits.max_failure_chain`, default 3): calls in a row that
  were refused or failed for good, whatever tools they named, stop the run
  (``stopped_breaker``) before the next model call. This is the cascade: a tool answers
  with wrong-shaped data, the model feeds it to the next tool, which fails, and each
  round brings new bad values, so no call repeats and the run breaker's count of errors
  (`Limits.max_errors`) would let it go on for ten more rounds. A call that returns a
  result ends the chain.

A result is known by its digest (`result_digest` of the text the model was shown), which
the run tells the supervisor after each call (`CallFinished`) and folds from its journal
on resume, so the state here is rebuilt exactly after a restart (`LoopState.resume`). A
call without a result (rejected, failed, waiting for an event) neither adds to a streak
of stale results nor breaks one.

The rules are plain bookkeeping on dicts and sets: a few microseconds per call. The
normalisation is hand-written because it must match what people mean by "the same
request" (``"Acme Corp"`` and ``" acme  corp"``), which no JSON canonicaliser does.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._limits import Limits

__all__ = ["LoopState", "identity", "result_digest"]

_FLOATISH = re.compile(r"\d[.e]")

_SHOWN = 160
"""Characters of a call key quoted in a reason (arguments can be long)."""


def result_digest(content: str) -> str:
    """Identify a tool result by the text the model was shown (BLAKE2b, 128 bits, hex).

    Args:
        content: the result's content, as journaled in ``tool_call_finished``.

    Returns:
        32 hexadecimal characters; equal contents give equal digests.
    """
    data = content.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def identity(call_key: str) -> str:
    """The call key with its string values folded: NFKC, case-folded, whitespace collapsed.

    ``search({"q":"Acme  Corp "})`` and ``search({"q":"acme corp"})`` are one call; so are
    ``1`` and ``1.0``. A key whose arguments are not JSON (an undecodable call) is its own
    identity.

    Args:
        call_key: ``tool(<canonical JSON arguments>)``, as `corral.subagents.call_key` makes it.

    Returns:
        The normalised key.
    """
    tool, sep, rest = call_key.partition("(")
    if not sep or not rest.endswith(")"):
        return call_key
    args = rest[:-1]
    if _already_plain(args):
        return call_key
    try:
        value = json.loads(args)
    except ValueError:
        return call_key
    folded = json.dumps(_fold(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{tool}({folded})"


def _already_plain(args: str) -> bool:
    """True when folding cannot change the arguments' JSON (the common case, checked cheaply).

    No escape (so no non-ASCII text, tab or newline), no upper case, no doubled or edge
    space inside a string, nothing that may be an integral float (``1.0``, ``1e3``). A
    false "no" only costs the slow path.
    """
    if "\\" in args or "  " in args or '" ' in args or ' "' in args:
        return False
    return args == args.lower() and _FLOATISH.search(args) is None


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _fold(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fold(item) for item in value]
    return value


@dataclass(slots=True)
class LoopState:
    """One run's loop-detection state: what it called, and what the results told it."""

    failed: set[str] = field(default_factory=set)
    """Keys of calls that were rejected or failed for good."""
    last_tool: str | None = None
    """The tool of the current streak (the latest proposal)."""
    streak: int = 0
    """Proposals of `last_tool` in a row, the latest included."""
    stale: int = 0
    """Results in a row, of any read-only tools, that the run had already seen."""
    stale_tools: list[str] = field(default_factory=list)
    """The tools that gave those stale results, in order (for the reason)."""
    failing: list[str] = field(default_factory=list)
    """The tools of the calls in a row that were refused or failed for good."""
    since_new: dict[str, int] = field(default_factory=dict)
    """By `identity`: calls made since that call last returned something it had not
    (that call included: its repeats are one fewer)."""
    returned: set[tuple[str, str]] = field(default_factory=set)
    """(identity, result digest) of every result so far."""
    seen: set[str] = field(default_factory=set)
    """Digest of every result of the run."""
    _identities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resume(
        cls,
        calls: Sequence[tuple[str, str | None, bool]],
        *,
        last_tools: Sequence[str] = (),
        failed: Iterable[str] = (),
    ) -> LoopState:
        """Rebuild the state of a run from its journal, after a restart or a pause.

        Args:
            calls: (call key, result digest or None, acted) of each call the supervisor
                already counted, oldest first; ``acted`` is True for a tool with side
                effects.
            last_tools: the tools of the run's latest streak (one tool, repeated): the
                last ``len(last_tools)`` of `calls` are that streak.
            failed: keys of the calls that were rejected or failed for good.

        Returns:
            The state the live run had after those calls.
        """
        state = cls(failed=set(failed))
        head = len(calls) - len(last_tools)
        for index, (key, digest, acted) in enumerate(calls):
            ident = state._identity(key)
            state.since_new[ident] = state.since_new.get(ident, 0) + 1
            tool = last_tools[-1] if index >= head and last_tools else None
            if tool is not None:
                state._step(tool)
            if digest is not None:
                state.result(tool or _tool_of(key), key, digest, acted=acted)
            elif key in state.failed:
                state.failing.append(_tool_of(key))
        if not calls and last_tools:  # an older run actor that sent only its streak
            state.last_tool, state.streak = last_tools[-1], len(last_tools)
        return state

    def _identity(self, key: str) -> str:
        ident = self._identities.get(key)
        if ident is None:
            ident = self._identities[key] = identity(key)
        return ident

    def _step(self, tool: str) -> None:
        if tool == self.last_tool:
            self.streak += 1
        else:
            self.last_tool, self.streak = tool, 1

    def cascade(self, limits: Limits) -> str | None:
        """Say why the run must stop for a chain of failures, or None (`max_failure_chain`).

        Checked before each model call and each proposed call, so a run failing in
        cascade stops before it pays for another answer.
        """
        cap = limits.max_failure_chain
        if cap is None or len(self.failing) < cap:
            return None
        tools = ", ".join(dict.fromkeys(self.failing[-cap:]))
        return (
            f"{len(self.failing)} tool calls in a row refused or failed ({tools}), "
            f"limit {cap}: the run is failing in cascade"
        )

    def fail(self, key: str) -> None:
        """Record that a call was refused or failed for good: repeating it is a loop.

        Args:
            key: the call's key (its tool is read from it).
        """
        self.failed.add(key)
        self.failing.append(_tool_of(key))

    def propose(self, tool: str, key: str, limits: Limits) -> str | None:
        """Count a proposed call; say why it is a loop, or None to let it run.

        Args:
            tool: the tool the model named.
            key: the call key (tool plus canonical arguments; empty when unknown).
            limits: the run's limits (`Limits.max_repeated_calls`,
                `Limits.max_stale_streak`, `Limits.max_consecutive_same_tool`).

        Returns:
            The reason the run must stop (``stopped_loop``), or None.
        """
        if key and key in self.failed:
            return f"loop detected: the model repeated a call that already failed: {key}"
        cascade = self.cascade(limits)
        if cascade is not None:
            return cascade
        self._step(tool)
        if key:
            ident = self._identity(key)
            made = self.since_new.get(ident, 0)
            self.since_new[ident] = made + 1
            cap = limits.max_repeated_calls
            if cap is not None and made > cap:
                return (
                    f"loop detected: {tool!r} called again with the same arguments after "
                    f"{made} calls with an unchanged answer (limit {cap} repeats): {_short(key)}"
                )
        stale_cap = limits.max_stale_streak
        if stale_cap is not None and self.stale >= stale_cap:
            tools = set(self.stale_tools)
            if tools == {tool} and self.streak > self.stale:
                return (
                    f"loop detected: {tool!r} called {self.streak} times in a row, its last "
                    f"{self.stale} results all already seen in this run (limit {stale_cap})"
                )
            names = " and ".join(repr(t) for t in dict.fromkeys([*self.stale_tools, tool]))
            return (
                f"loop detected: {names} called in turn, the last {self.stale} results all "
                f"already seen in this run (limit {stale_cap})"
            )
        cap = limits.max_consecutive_same_tool
        if cap is not None and self.streak > cap:
            return f"loop detected: {tool!r} called {self.streak} times in a row (limit {cap})"
        return None

    def result(self, tool: str | None, key: str, digest: str, *, acted: bool = False) -> None:
        """Record what a call returned.

        Args:
            tool: the tool the model named (None when not known: it does not touch the
                current streak).
            key: the call's key.
            digest: `result_digest` of its content.
            acted: the tool has side effects: its call is progress, never a stale result.
        """
        ident = self._identity(key)
        pair = (ident, digest)
        self.failing.clear()
        if pair not in self.returned:
            self.returned.add(pair)
            self.since_new[ident] = 1  # this call brought something new: count from it
        if acted:
            self.stale = 0
            self.stale_tools.clear()
            return
        if digest in self.seen:
            self.stale += 1
            self.stale_tools.append(tool or _tool_of(key))
        else:
            self.stale = 0
            self.stale_tools.clear()
        self.seen.add(digest)


def _tool_of(key: str) -> str:
    """The tool named by a call key (``tool(<arguments>)``)."""
    return key.partition("(")[0]


def _short(key: str) -> str:
    return key if len(key) <= _SHOWN else key[: _SHOWN - 1] + "…"
