"""Input screening: the checks a text passes before it reaches the model.

`InputScreen` runs, in order and stopping at the first block:

1. size limits, in characters and estimated tokens (``size``); a text longer than the
   screen can read (`InputScreen.max_screen_chars`) is refused, never passed unread;
2. prompt-injection detection (`InjectionGuard`: block, flag or strip);
3. personal data and secrets (``pii``): by default secrets (`SECRET_KINDS`: API keys,
   tokens, private keys, passwords, card numbers) are redacted and personal data (email
   addresses, phone numbers, IBANs, SSNs) is only flagged, so a task that says "pay
   DE89 3704 ..." keeps the IBAN it needs; ``redact`` redacts both, ``off`` neither;
4. your input policies (`InputPolicy`, or plain functions), such as refusing tasks that
   mention accounts outside an allowlist.

Use `InputScreen.screen` on the task before a run's first step (``source="task"``).
Tool results go through a `ResultScreen`, one per run (`InputScreen.for_run`): it reads
the *whole* raw result and the text the model is shown (after `filter_result` has cut
and redacted it), and the end of the run's previous results with the start of this one,
so an instruction split across two results is read as one. A JSON result is read as its
strings, each on its own line (keys too when they hold spaces): escapes decoded, and a
sentence cut across two fields of a record read whole.

Everything is linear in the length of the text: the detector's regular expressions run
at keyword positions with bounded repetitions (about 0.3 s per MB of ordinary text),
the JSON walk is iterative, and the run's context is a bounded tail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .._pii import (
    SECRET_KINDS,
    PIIDetector,
    findings_verdict,
    redact_secrets,
    replace_findings,
)
from .._verdict import Verdict
from ..errors import ConfigError
from ..models._tokens import estimate_tokens
from ._detector import InjectionGuard
from ._findings import InjectionFinding, InjectionReport, combined_score, strip_findings

__all__ = [
    "DEFAULT_CONTEXT_CHARS",
    "DEFAULT_MAX_SCREEN_CHARS",
    "InputPolicy",
    "InputScreen",
    "PIIMode",
    "ResultScreen",
    "ScreenResult",
    "Source",
    "input_policy_from_callable",
]

Source = Literal["task", "tool_result"]
"""Where a screened text comes from."""
PIIMode = Literal["flag", "redact", "off"]
"""What `InputScreen` does with personal data and secrets.

``flag`` (the default): secrets are redacted, personal data is reported in a ``flag``
verdict and kept. ``redact``: both are redacted. ``off``: nothing is redacted or flagged."""

DEFAULT_MAX_SCREEN_CHARS = 2_000_000
"""Longest text the screen reads (characters); a longer one is refused."""
DEFAULT_CONTEXT_CHARS = 500
"""How much of the run's previous results a `ResultScreen` reads before a new one (and of
the new one after them): more than any pattern's match, so an instruction cut anywhere
near the seam is read whole."""

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
        max_chars: longest accepted text in characters, or None. Default 100,000. For
            tool results it applies to the text the model is shown.
        max_tokens: most estimated tokens (`estimate_tokens`), or None. Default None.
        oversize: ``block`` an oversized text, or ``truncate`` it to the limits. Default
            ``block``.
        max_screen_chars: longest text the screen reads, in characters. A longer task or
            raw tool result is refused with a ``size`` block (it could hide anything past
            the point a shorter screen would stop). Default 2,000,000 (about 0.6 s to
            read at the detector's speed).
        injection: the injection guard, or None to skip. Default: `InjectionGuard()`
            (block at score 0.5).
        pii: ``flag``, ``redact`` or ``off`` (see `PIIMode`). Default ``flag``: secrets
            are always redacted, personal data is flagged and kept, so a task keeps the
            address or IBAN it needs.
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
        max_screen_chars: int = DEFAULT_MAX_SCREEN_CHARS,
        injection: InjectionGuard | None | _Default = _DEFAULT,
        pii: PIIMode = "flag",
        pii_detector: PIIDetector | None = None,
        policies: Iterable[InputPolicy | Callable[[str, str], TextPolicyResult]] = (),
    ) -> None:
        for label, limit in (("max_chars", max_chars), ("max_tokens", max_tokens)):
            if limit is not None and limit < 1:
                raise ConfigError(f"InputScreen.{label} must be >= 1 or None, got {limit}")
        if max_screen_chars < 1:
            raise ConfigError(f"InputScreen.max_screen_chars must be >= 1, got {max_screen_chars}")
        if oversize not in ("block", "truncate"):
            raise ConfigError(f"InputScreen.oversize must be block or truncate, got {oversize!r}")
        if pii not in ("redact", "flag", "off"):
            raise ConfigError(f"InputScreen.pii must be flag, redact or off, got {pii!r}")
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.oversize = oversize
        self.max_screen_chars = max_screen_chars
        self.injection = InjectionGuard() if isinstance(injection, _Default) else injection
        self.pii: PIIMode = pii
        self.pii_detector = pii_detector or PIIDetector()
        self.policies: tuple[InputPolicy, ...] = tuple(
            p if isinstance(p, InputPolicy) else input_policy_from_callable(p) for p in policies
        )

    def for_run(self, *, context_chars: int = DEFAULT_CONTEXT_CHARS) -> ResultScreen:
        """A `ResultScreen` for one run's tool results, with this screen's settings.

        Args:
            context_chars: how much of the previous results' text is read with each
                new result. Default 500.

        Returns:
            A fresh screen with no context yet.
        """
        return ResultScreen(self, context_chars=context_chars)

    def screen(self, text: str, *, source: Source = "task") -> ScreenResult:
        """Run every check on a text, stopping at the first block.

        Args:
            text: the task, or a tool result as the model would see it (tool results are
                better screened with a `ResultScreen`, which reads the raw result too).
            source: ``task`` or ``tool_result`` (changes the wording, and is passed to
                your policies).

        Returns:
            The text to pass on, every verdict, and whether it is blocked.
        """
        verdicts: list[Verdict] = []
        size, text = self._size(text, source)
        verdicts.append(size)
        if size.blocked:
            return ScreenResult(text, verdicts, True)
        unread = self._unreadable(text, source)
        if unread is not None:
            verdicts.append(unread)
            return ScreenResult(text, verdicts, True)
        if self.injection is not None:
            verdict, text = self.injection.check(text, source=source)
            verdicts.append(verdict)
            if verdict.blocked:
                return ScreenResult(text, verdicts, True)
        return self._finish(text, source, verdicts)

    # ------------------------------------------------------------------ shared steps

    def _finish(self, text: str, source: Source, verdicts: list[Verdict]) -> ScreenResult:
        """Personal data and secrets, then the user's policies."""
        text = self._pii(text, verdicts)
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

    def _pii(self, text: str, verdicts: list[Verdict]) -> str:
        """Redact secrets (and personal data with ``redact``); flag personal data."""
        if self.pii == "off":
            return text
        detector = self.pii_detector
        if self.pii == "redact":
            verdict, text = detector.check(text, action="redact")
            verdicts.append(verdict)
            return text
        findings = detector.find(text)
        secrets = [f for f in findings if f.kind in SECRET_KINDS]
        personal = [f for f in findings if f.kind not in SECRET_KINDS]
        if not findings:
            verdicts.append(Verdict(detector.name, "allow"))
            return text
        if secrets:
            text = replace_findings(text, secrets)
            verdicts.append(findings_verdict(detector.name, "redact", secrets))
        if personal:
            verdicts.append(
                findings_verdict(detector.name, "flag", personal, note="(kept: pii is 'flag')")
            )
        return text

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

    def _unreadable(self, text: str, source: Source) -> Verdict | None:
        """A ``size`` block for a text longer than the screen reads, else None."""
        if len(text) <= self.max_screen_chars:
            return None
        label = _LABEL.get(source, source)
        return Verdict(
            "size",
            "block",
            f"{label} is {len(text):,} characters; the screen reads at most "
            f"{self.max_screen_chars:,} (InputScreen.max_screen_chars), so it was refused unread",
            f"The {label} was withheld: at {len(text):,} characters it is too large to check "
            f"(the limit is {self.max_screen_chars:,}). Ask for a smaller piece, such as one "
            "page or a filtered query.",
            {"chars": len(text), "max_screen_chars": self.max_screen_chars},
        )


# ----------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class _View:
    """What the detector reads of a result: its text, or its JSON strings one per line."""

    text: str
    pieces: tuple[tuple[int, int], ...] = ()
    """For JSON: each string's span in `text`, in document order."""
    value: Any = None
    """For JSON: the parsed value (None for plain text)."""


def _view(text: str) -> _View:
    """Read a result as the detector should: a JSON document as its strings."""
    if text.lstrip()[:1] not in ("{", "["):
        return _View(text)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _View(text)
    strings = [s for _, _, _, s in _strings(value)]
    pieces: list[tuple[int, int]] = []
    at = 0
    for s in strings:
        pieces.append((at, at + len(s)))
        at += len(s) + 1
    return _View("\n".join(strings), tuple(pieces), value)


def _strings(value: Any) -> list[tuple[Any, Any, bool, str]]:
    """Every string of a JSON value in document order, as ``(container, key, is_key, s)``.

    Keys are included when they hold whitespace (a sentence, not an identifier). The walk
    is iterative: nesting depth costs memory, not Python stack.
    """
    out: list[tuple[Any, Any, bool, str]] = []
    stack: list[tuple[Any, Any, Any, bool]] = [(value, None, None, False)]
    while stack:
        node, container, key, is_key = stack.pop()
        if is_key:
            out.append((container, key, True, node))
        elif isinstance(node, str):
            out.append((container, key, False, node))
        elif isinstance(node, dict):
            for k, v in reversed(list(node.items())):
                stack.append((v, node, k, False))
                if isinstance(k, str) and len(k.split(None, 1)) > 1:
                    stack.append((k, node, k, True))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], node, i, False))
    return out


def _strip_view(view: _View, original: str, findings: Iterable[InjectionFinding]) -> str:
    """The text with the findings stripped: in place for plain text, per string for JSON."""
    found = list(findings)
    if not found:
        return original
    if view.value is None:
        return strip_findings(original, found)
    locations = _strings(view.value)
    renamed: list[tuple[dict[str, Any], str, str]] = []
    for (start, end), (container, key, is_key, s) in zip(view.pieces, locations, strict=True):
        inside = [
            InjectionFinding(
                f.category,
                f.rule,
                f.weight,
                (max(f.span[0], start) - start, min(f.span[1], end) - start),
                f.excerpt,
                f.edit,
                f.extent,
                f.detail,
            )
            for f in found
            if f.span[0] < end and f.span[1] > start
        ]
        if not inside:
            continue
        stripped = strip_findings(s, inside)
        if is_key:
            renamed.append((container, key, stripped))
        elif container is None:
            return json.dumps(stripped, ensure_ascii=False)
        else:
            container[key] = stripped
    for container, old, new in renamed:
        items = list(container.items())
        container.clear()
        for k, v in items:
            container[new if k == old and new not in container else k] = v
    return json.dumps(view.value, ensure_ascii=False, separators=(",", ":"))


class ResultScreen:
    """Screens one run's tool results: whole, as shown, and with the ones before.

    It reads the whole raw result, the text the model is shown, and each result together
    with the end of the ones before it. Build one per run with `InputScreen.for_run`, and
    call `screen` for each result after `filter_result` has made the model's copy. The
    screen keeps the last `context_chars` characters of what the model was shown, so an
    instruction split across two results ("Ignore your previous" / "instructions and
    ...") is read whole; a withheld result is not remembered (the model never saw it).
    After a restart, seed it with `remember` from the journaled contents.

    Args:
        screen: the settings (size limits, injection guard, PII mode, policies).
        context_chars: characters of the previous results read with each new one, at
            least 1. Default 500.

    Raises:
        ConfigError: `context_chars` below 1.
    """

    def __init__(self, screen: InputScreen, *, context_chars: int = DEFAULT_CONTEXT_CHARS) -> None:
        if context_chars < 1:
            raise ConfigError(f"ResultScreen.context_chars must be >= 1, got {context_chars}")
        self.settings = screen
        self.context_chars = context_chars
        self._context = ""

    @property
    def context(self) -> str:
        """The end of the results the model has been shown, as the detector reads them."""
        return self._context

    def remember(self, shown: str) -> None:
        """Add a result the model was shown to the context (for a run resumed from its journal).

        Args:
            shown: the content the model got, as journaled.
        """
        self._remember(_view(shown).text)

    def _remember(self, text: str) -> None:
        joined = f"{self._context}\n{text[-self.context_chars :]}" if self._context else text
        self._context = joined[-self.context_chars :]

    def screen(self, raw: str, shown: str | None = None) -> ScreenResult:
        """Screen one tool result: the whole of it, what the model is shown, and the seam.

        Args:
            raw: the whole result as the tool returned it (rendered to text).
            shown: what the model will be shown (`filter_result`'s content). Default:
                `raw`.

        Returns:
            The text for the model (`shown`, stripped or redacted as the verdicts say),
            every verdict, and whether it is blocked. A raw result longer than
            `InputScreen.max_screen_chars` is blocked unread (``size``); an injection
            found in the raw result, in the shown text or across the seam with the
            previous result is decided by the injection guard.
        """
        settings = self.settings
        verdicts: list[Verdict] = []
        unread = settings._unreadable(raw, "tool_result")
        if unread is not None:
            return ScreenResult("", [unread], True)
        shown = raw if shown is None else shown
        size, shown = settings._size(shown, "tool_result")
        verdicts.append(size)
        if size.blocked:
            return ScreenResult(shown, verdicts, True)
        text = shown
        seen: _View | None = None
        guard = settings.injection
        if guard is not None:
            verdict, text, seen = self._injection(guard, raw, shown)
            verdicts.append(verdict)
            if verdict.blocked:
                return ScreenResult(shown, verdicts, True)
        result = settings._finish(text, "tool_result", verdicts)
        if not result.blocked:
            # What the model gets is what the next result is read after.
            self._remember(
                seen.text if seen is not None and result.text is text else _view(result.text).text
            )
        return result

    def _injection(
        self, guard: InjectionGuard, raw: str, shown: str
    ) -> tuple[Verdict, str, _View | None]:
        """Decide on the worst of three readings: the raw result, the shown text, the seam."""
        detector = guard.detector
        shown_view = _view(shown)
        shown_report = detector.scan(shown_view.text)
        raw_view = shown_view if raw is shown else _view(raw)
        # The common case, a result shown whole (re-encoded as compact JSON), reads the
        # same strings twice: scan them once.
        same = raw_view.text == shown_view.text
        raw_report = shown_report if same else detector.scan(raw_view.text)
        seam_report = self._seam(guard, shown_view.text, shown_report)
        report, where = max(
            [(shown_report, "shown"), (raw_report, "raw"), (seam_report, "seam")],
            key=lambda r: r[0].score,
        )
        verdict, _ = guard.decide(report, shown, source="tool_result")
        if where != "shown" and verdict.decision != "allow":
            details = dict(verdict.details)
            details["read_in"] = where
            reason = verdict.reason + (
                " (read with the end of the previous tool result)"
                if where == "seam"
                else " (in the full result, beyond what the model is shown)"
            )
            verdict = Verdict(verdict.guardrail, verdict.decision, reason, verdict.message, details)
        if verdict.decision != "strip":
            return verdict, shown, shown_view
        # Strip what the model would see: the shown text's findings, and the part of a
        # seam finding that lies in this result.
        offset = len(self._context) + 1
        seam_here = [_shifted(f, -offset) for f in seam_report.findings if f.span[1] > offset]
        stripped = _strip_view(shown_view, shown, [*shown_report.findings, *seam_here])
        details = dict(verdict.details)
        details["removed_chars"] = len(shown) - len(stripped)
        verdict = Verdict(verdict.guardrail, "strip", verdict.reason, verdict.message, details)
        return verdict, stripped, None

    def _seam(self, guard: InjectionGuard, text: str, own: InjectionReport) -> InjectionReport:
        """This result's start read after the previous results' end.

        What counts is what reaches into this result: a finding that crosses the seam
        (an instruction split in two), with this result's own findings. A finding wholly
        in the previous results was decided when they came, and must not add its weight
        to this one (two ordinary results with one weak signal each are not an injection).
        """
        if not self._context:
            return InjectionReport(0.0)
        joined = f"{self._context}\n{text[: self.context_chars]}"
        boundary = len(self._context) + 1
        crossing = [
            f for f in guard.detector.scan(joined).findings if f.span[0] < boundary < f.span[1]
        ]
        if not crossing:
            return InjectionReport(0.0)
        counted = [*crossing, *(_shifted(f, boundary) for f in own.findings)]
        return InjectionReport(combined_score(counted), tuple(counted))


def _shifted(f: InjectionFinding, by: int) -> InjectionFinding:
    """The finding with its span moved by `by` characters (clipped at 0)."""
    return InjectionFinding(
        f.category,
        f.rule,
        f.weight,
        (max(0, f.span[0] + by), max(0, f.span[1] + by)),
        f.excerpt,
        f.edit,
        f.extent,
        f.detail,
    )
