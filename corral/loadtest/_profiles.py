"""Chaos profiles: how often each production failure mode strikes, and how the model recovers.

A profile is TOML, validated by pydantic. Three ship in the package (``production``,
``flaky-provider``, ``hostile``); `load_profile` takes one of those names or the path of
a file of your own::

    name = "mine"
    [faults]            # per run: the probability that the run meets this fault
    invented_tool = 0.05
    cascade = 0.02
    [recovery]          # per fault class: the chance the model corrects itself after
    default = 0.7       # Corral feeds the error back (each time it is told)
    cascade = 0.3
    [timing]
    tool_timeout_s = 0.2
    [limits]            # any `corral.Limits` field, for the load test's agent
    max_tokens = 100000

Each run meets at most one fault class, drawn from the rates (the rest of the runs are
good: ``1 - sum(rates)``), so every token a run spends can be put down to one class.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._retry import RetryPolicy
from ..errors import ConfigError
from ..supervisor import BreakerPolicy, Limits

__all__ = [
    "FAULT_CLASSES",
    "FaultClass",
    "Profile",
    "load_profile",
    "profile_names",
]

FaultClass = Literal[
    "invented_tool",
    "invented_argument",
    "wrong_type",
    "repeated_call",
    "out_of_scope",
    "injection",
    "huge_result",
    "cascade",
    "rate_limit",
    "provider_error",
    "tool_hang",
    "model_hang",
    "slow",
]
"""The labelled fault classes, one per production failure mode."""

FAULT_CLASSES: tuple[FaultClass, ...] = get_args(FaultClass)

FAULT_DESCRIPTIONS: dict[str, str] = {
    "invented_tool": "the model calls a tool that does not exist",
    "invented_argument": "the model invents or misspells an argument name",
    "wrong_type": "the model sends an argument of the wrong type",
    "repeated_call": "the model repeats the same failing call (the 754-retry loop)",
    "out_of_scope": "the model calls a tool outside the agent's scopes",
    "injection": "a tool result carries an instruction and the model obeys it",
    "huge_result": "a tool returns a result of about 50,000 tokens",
    "cascade": "a tool returns wrong-shaped data that makes the next tool fail",
    "rate_limit": "the provider answers 429 with Retry-After",
    "provider_error": "the provider answers 529 or 5xx",
    "tool_hang": "a tool hangs past its timeout",
    "model_hang": "the provider hangs past the model timeout",
    "slow": "a slow but valid model response",
}
"""One line per fault class, for reports."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultRates(_Section):
    """Per-run probability of each fault class (at most one per run; they sum to <= 1)."""

    invented_tool: float = Field(0.0, ge=0, le=1)
    invented_argument: float = Field(0.0, ge=0, le=1)
    wrong_type: float = Field(0.0, ge=0, le=1)
    repeated_call: float = Field(0.0, ge=0, le=1)
    out_of_scope: float = Field(0.0, ge=0, le=1)
    injection: float = Field(0.0, ge=0, le=1)
    huge_result: float = Field(0.0, ge=0, le=1)
    cascade: float = Field(0.0, ge=0, le=1)
    rate_limit: float = Field(0.0, ge=0, le=1)
    provider_error: float = Field(0.0, ge=0, le=1)
    tool_hang: float = Field(0.0, ge=0, le=1)
    model_hang: float = Field(0.0, ge=0, le=1)
    slow: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> FaultRates:
        total = sum(self.rates().values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"the fault rates sum to {total:g}; each run meets one fault at most")
        return self

    def rates(self) -> dict[str, float]:
        """Each fault class with its rate, in `FAULT_CLASSES` order."""
        return {name: float(getattr(self, name)) for name in FAULT_CLASSES}


class RecoveryRates(_Section):
    """Per fault class: the chance the model corrects itself after feedback.

    Rolled each time Corral feeds the error back. `default` covers the classes not named.
    Default 0.7.
    """

    default: float = Field(0.7, ge=0, le=1)
    invented_tool: float | None = Field(None, ge=0, le=1)
    invented_argument: float | None = Field(None, ge=0, le=1)
    wrong_type: float | None = Field(None, ge=0, le=1)
    repeated_call: float | None = Field(None, ge=0, le=1)
    out_of_scope: float | None = Field(None, ge=0, le=1)
    injection: float | None = Field(None, ge=0, le=1)
    cascade: float | None = Field(None, ge=0, le=1)
    give_up: float = Field(0.2, ge=0, le=1)
    """When it does not correct itself: the chance it gives a final answer from the bad
    data instead of trying again (a wrong answer). Default 0.2."""

    def of(self, fault: str) -> float:
        """The recovery probability of one fault class."""
        value = getattr(self, fault, None)
        return float(self.default if value is None else value)


class Timing(_Section):
    """Delays and timeouts of the chaos workload, in seconds."""

    slow_s: tuple[float, float] = (0.05, 0.2)
    """A slow response takes a time drawn from this range. Default 50-200 ms."""
    latency_s: tuple[float, float] = (0.0, 0.0)
    """Every model response takes a time drawn from this range. Default none."""
    tool_timeout_s: float = Field(0.25, gt=0)
    """The chaos tools' timeout; a hanging tool is cut here. Default 0.25 s."""
    model_timeout_s: float = Field(0.5, gt=0)
    """The run's model timeout (`Limits.model_timeout_s`). Default 0.5 s."""
    hang_s: float = Field(30.0, gt=0)
    """How long a hang lasts if nothing cuts it. Default 30 s."""
    retry_after_s: float = Field(0.02, ge=0)
    """``Retry-After`` of an injected 429. Default 20 ms."""
    burst: int = Field(2, ge=1)
    """A provider fault or a hang strikes 1 to `burst` attempts in a row. Default 2."""


class RetrySettings(_Section):
    """Retry policy of the chaos tools and of the model calls during a load test.

    Scaled down from Corral's defaults (1 s, 4 s, 16 s) so that thousands of runs finish
    in a minute; the number of retries is the same. A 429's ``Retry-After`` still wins
    when it is longer.
    """

    max_retries: int = Field(3, ge=0)
    initial_delay: float = Field(0.01, ge=0)
    multiplier: float = Field(2.0, ge=1)


class Profile(_Section):
    """A chaos profile: fault rates, the model's recovery, timing, the agent's limits."""

    name: str
    description: str = ""
    faults: FaultRates = Field(default_factory=FaultRates)
    recovery: RecoveryRates = Field(default_factory=RecoveryRates)
    timing: Timing = Field(default_factory=Timing)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    limits: dict[str, Any] = Field(default_factory=dict)
    """`corral.Limits` fields for the load test's agent (the rest keep their defaults;
    ``model_timeout_s`` comes from `timing`)."""
    breakers: BreakerPolicy = Field(default_factory=BreakerPolicy)

    @model_validator(mode="after")
    def _valid_limits(self) -> Profile:
        self.run_limits()
        return self

    def run_limits(self) -> Limits:
        """The `Limits` of the load test's agent."""
        retry = RetryPolicy(
            max_retries=self.retry.max_retries,
            initial_delay=self.retry.initial_delay,
            multiplier=self.retry.multiplier,
            max_delay=max(self.retry.initial_delay, 1.0),
        )
        data = {"model_timeout_s": self.timing.model_timeout_s, "model_retry": retry, **self.limits}
        try:
            return Limits(**data)
        except ValidationError as exc:
            raise ValueError(f"limits: {_errors(exc)}") from None

    @property
    def good_rate(self) -> float:
        """The share of runs that meet no fault."""
        return max(0.0, 1.0 - sum(self.faults.rates().values()))


def profile_names() -> list[str]:
    """The names of the profiles shipped in the package."""
    folder = resources.files(__package__).joinpath("profiles")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(spec: str | Path) -> Profile:
    """Load a shipped profile by name, or a profile from a TOML file.

    Args:
        spec: ``production``, ``flaky-provider``, ``hostile``, or a path to a TOML file.

    Returns:
        The validated profile.

    Raises:
        ConfigError: no such profile or file, a file that is not TOML, or an invalid
            field (the message names it, as ``faults.injection: ...``).
    """
    text_spec = str(spec)
    if isinstance(spec, str) and text_spec in profile_names():
        where = f"profile {text_spec!r}"
        raw = (
            resources.files(__package__)
            .joinpath("profiles")
            .joinpath(f"{text_spec}.toml")
            .read_text(encoding="utf-8")
        )
    else:
        path = Path(spec)
        where = str(path)
        if not path.is_file():
            raise ConfigError(
                f"no chaos profile {text_spec!r}: not a shipped profile "
                f"({', '.join(profile_names())}) and no such file"
            )
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    data.setdefault("name", Path(text_spec).stem)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    """Each error of a validation as ``field.path: message``."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
