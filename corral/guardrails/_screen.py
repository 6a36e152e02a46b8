"""Input screening: the checks a text passes before it reaches the model.

`InputScreen` runs, in order and stopping at the first block:

1. size limits, in characters and estimated tokens (``size``);
2. prompt-injection detection (`InjectionGuard`: block, flag or strip);
3. personal data and secrets (`PIIDetector`: redact, flag, or off);
4. your input policies (`InputPolicy`, or plain functions), such as refusing tasks that
   mention accounts outside an allowlist.

Use it on the task before a run's first step (``source="task"``) and on every tool
result before it goes back to the model (``source="tool_result"``): injection arrives
through tool output too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .._pii import PIIDetector, redact_secrets
from .._verdict import Verdict
from ..errors import ConfigError
from ..models._tokens import estimate_tokens
from ._detector import InjectionGuard

__all__ = [
    "InputPolicy",
    "InputScreen",
    "PIIMode",
    "ScreenResult",
    "Source",
    "input_policy_from_callable",
]

Source = Literal["task", "tool_result"]
"""Where a screened text comes from."""
PIIMode = Literal["redact", "flag", "off"]
"""What `InputScreen` does with personal data and secrets."""

_LABEL = {"task": "task", "tool_result": "tool result"}


@runtime_checkable
class InputPolicy(Protocol):
    r"""A policy you write on incoming text: one method returning a `Verdict`.

    The contract matches `ScopePolicy`: pure and fast, no I/O; return ``allow``,
    ``block`` (reason for people, message for the model), ``flag`` or ``approve``; an
    exception blocks (fail closed). Example, a financial agent refusing tasks about
    accounts it does not manage::

        class AccountsInTask:
            name = "account_allowlist"
            ACCOUNT = re.compile(r"\\bACC-\\d{4}\\b")

            def __init__(self, accounts):
                self.accounts = frozenset(accounts)

            def check(self, text: str, *, source: str) -> Verdict:
                foreign = sorted(set(self.ACCOUNT.findall(text)) - self.accounts)
                if source != "task" or not foreign:
                    return Verdict(self.name, "allow")
                return Verdict(self.name, "block",
                               reason=f"task mentions accounts {foreign} outside the allowlist")

        screen = InputScreen(policies=[AccountsInTask({"ACC-1001"})])
    """

    def check(self, text: str, *, source: str) -> Verdict:
        """Judge one text from `source` (``task`` or ``tool_result``)."""
        ...


TextPolicyResult = Verdict | bool | str | None


class _CallableInputPolicy:
    def __init__(self, fn: Callable[[str, str], TextPolicyResult], name: str) -> None:
        self.fn = fn
        self.name = name

    def check(self, text: str, *, source: str) -> Verdict:
        result = self.fn(text, source)
        if isinstance(result, Verdict):
            return result
        if result is None or result is True:
            return Verdict(self.name, "allow")
        reason = result if isinstance(result, str) else f"rejected by policy {self.name!r}"
        return Verdict(self.name, "block", reason=reason)

    def __repr__(self) -> str:
        return f"input_policy_from_callable({self.fn!r}, name={self.name!r})"


def input_policy_from_callable(
    fn: Callable[[str, str], TextPolicyResult], *, name: str | None = None
) -> InputPolicy:
    """Wrap a function ``fn(text, source)`` as an `InputPolicy`.

    Args:
        fn: returns a `Verdict`, True/None to allow, False to block, or a str to block
            with that reason.
        name: guardrail name. Default: the function's name.

    Returns:
        The policy.
    """
    return _CallableInputPolicy(fn, name or str(getattr(fn, "__name__", "input_policy")))


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """The outcome of screening one text."""

    text: str
    """The text to pass on (redacted, stripped or cut as the verdicts say). Do not pass
    it on when `blocked`."""
    verdicts: list[Verdict]
    """Every check that ran, in order (``allow`` verdicts included, for counting)."""
    blocked: bool
    """Whether the text must not reach the model."""

    @property
    def actions(self) -> list[Verdict]:
        """The verdicts that did something: everything but plain ``allow``."""
        return [v for v in self.verdicts if v.decision != "allow"]

    @property
    def block(self) -> Verdict | None:
        """The blocking verdict, if any."""
        return next((v for v in self.verdicts if v.blocked), None)

    @property
    def notice(self) -> str:
        """What the model should be told alongside the text (flags, strips), or ''."""
        return " ".join(v.message for v in self.verdicts if v.message and not v.blocked)


class _Default:
    """Marker for "use the default" where None means "off"."""


_DEFAULT = _Default()


_SIZE_OK = Verdict("size", "allow")


class InputScreen:
    """Screen texts before they reach the model.

    Args:
        max_chars: longest accepted text in characters, or None. Default 100,000.
        max_tokens: most estimated tokens (`estimate_tokens`), or None. Default None.
        oversize: ``block`` an oversized text, or ``truncate`` it to the limits. Default
            ``block``.
        injection: the injection guard, or None to skip. Default: `InjectionGuard()`
            (block at score 0.5).
        pii: ``redact``, ``flag`` or ``off``. Default ``redact``. When tool results are
            already redacted by `filter_result`, ``off`` avoids scanning twice (a second
            pass finds nothing new).
        pii_detector: which kinds to look for. Default: all (`PIIDetector()`).
        policies: `InputPolicy` objects or functions ``fn(text, source)``, in order.

    Raises:
        ConfigError: a limit below 1, or an unknown mode.
    """

    def __init__(
        self,
        *,
        max_chars: int | None = 100_000,
        max_tokens: int | None = None,
        oversize: Literal["block", "truncate"] = "block",
        injection: InjectionGuard | None | _Default = _DEFAULT,
        pii: PIIMode = "redact",
        pii_detector: PIIDetector | None = None,
        policies: Iterable[InputPolicy | Callable[[str, str], TextPolicyResult]] = (),
    ) -> None:
        for label, limit in (("max_chars", max_chars), ("max_tokens", max_tokens)):
            if limit is not None and limit < 1:
                raise ConfigError(f"InputScreen.{label} must be >= 1 or None, got {limit}")
        if oversize not in ("block", "truncate"):
            raise ConfigError(f"InputScreen.oversize must be block or truncate, got {oversize!r}")
        if pii not in ("redact", "flag", "off"):
            raise ConfigError(f"InputScreen.pii must be redact, flag or off, got {pii!r}")
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.oversize = oversize
        self.injection = InjectionGuard() if isinstance(injection, _Default) else injection
        self.pii: PIIMode = pii
        self.pii_detector = pii_detector or PIIDetector()
        self.policies: tuple[InputPolicy, ...] = tuple(
            p if isinstance(p, InputPolicy) else input_policy_from_callable(p) for p in policies
        )

    def screen(self, text: str, *, source: Source = "task") -> ScreenResult:
        """Run every check on a text, stopping at the first block.

        Args:
            text: the task, or a tool result as the model would see it.
            source: ``task`` or ``tool_result`` (changes the wording, and is passed to
                your policies).

        Returns:
            The text to pass on, every verdict, and whether it is blocked.
        """
        verdicts: list[Verdict] = []
        size = self._size(text, source)
        verdicts.append(size[0])
        text = size[1]
        if size[0].blocked:
            return ScreenResult(text, verdicts, True)
        if self.injection is not None:
            verdict, text = self.injection.check(text, source=source)
            verdicts.append(verdict)
            if verdict.blocked:
                return ScreenResult(text, verdicts, True)
        if self.pii != "off":
            verdict, text = self.pii_detector.check(text, action=self.pii)
            verdicts.append(verdict)
        for policy in self.policies:
            name = getattr(policy, "name", type(policy).__name__)
            try:
                verdict = policy.check(text, source=source)
            except Exception as exc:  # a broken policy must not let the text through
                verdict = Verdict(
                    str(name),
                    "block",
                    reason=redact_secrets(f"policy {name!r} failed: {type(exc).__name__}: {exc}"),
                    details={"error": type(exc).__name__},
                )
            verdicts.append(verdict)
            if verdict.blocked:
                return ScreenResult(text, verdicts, True)
        return ScreenResult(text, verdicts, False)

    def _size(self, text: str, source: Source) -> tuple[Verdict, str]:
        label = _LABEL.get(source, source)
        chars = len(text)
        over_chars = self.max_chars is not None and chars > self.max_chars
        tokens = estimate_tokens(text) if self.max_tokens is not None else 0
        over_tokens = self.max_tokens is not None and tokens > self.max_tokens
        if not (over_chars or over_tokens):
            return _SIZE_OK, text
        limits = []
        if self.max_chars is not None:
            limits.append(f"{self.max_chars:,} characters")
        if self.max_tokens is not None:
            limits.append(f"{self.max_tokens:,} tokens")
        reason = (
            f"{label} is {chars:,} characters (~{estimate_tokens(text):,} tokens); "
            f"the limit is {' and '.join(limits)}"
        )
        details = {
            "chars": chars,
            "tokens": estimate_tokens(text),
            "max_chars": self.max_chars,
            "max_tokens": self.max_tokens,
        }
        if self.oversize == "block":
            message = (
                f"The {label} is too large to process ({chars:,} characters). "
                "Ask for a smaller piece, or narrow the request."
            )
            return Verdict("size", "block", reason, message, details), text
        keep = min(
            self.max_chars if self.max_chars is not None else chars,
            self.max_tokens * 4 if self.max_tokens is not None else chars,
        )
        cut = text[:keep]
        message = f"The {label} was cut to its first {keep:,} of {chars:,} characters."
        return Verdict("size", "truncate", reason, message, details), cut
