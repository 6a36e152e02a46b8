"""Limits: the per-run budget and policy values, validated, with production defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._retry import RetryPolicy

__all__ = ["DEFAULT_GATE_TTL_S", "BreakerPolicy", "Limits", "TenantLimits"]

DEFAULT_GATE_TTL_S = 48 * 3600.0
"""Seconds before an undecided gate expires into a rejection: 48 h. The one default for
every gate (a sub-agent run's and a workflow's); `Runtime` takes it as a setting."""


class Limits(BaseModel):
    """What one run may consume. Every field is a setting (``CORRAL_LIMITS__<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(100_000, gt=0)
    """Tokens per run (input + output + cache), across all its model calls. Default 100,000."""
    max_cost_usd: float | None = Field(None, gt=0)
    """Cost per run in USD, from the price table; None for no cost cap. Default None."""
    max_tool_calls: int = Field(20, gt=0)
    """Tool calls the model may propose per run, rejected ones included. Default 20."""
    max_wall_clock_s: float = Field(300.0, gt=0)
    """Seconds from the run's start to its end, not counting pauses. Default 300 s."""
    max_repeated_calls: int | None = Field(2, gt=0)
    """Loop rule: how many times one call (same tool, same arguments up to case and
    whitespace) may be repeated while its answer stays the same; the next repeat stops
    the run. A poll whose answer changes never stops. None turns the rule off. Default 2
    (asked three times with one answer, the fourth is refused)."""
    max_stale_streak: int | None = Field(3, gt=0)
    """Loop rule: after this many results in a row that the run had already seen
    (different arguments, nothing new), of one tool or of several taking turns (two
    lookups alternating until the step cap), the next call stops the run. A call of a
    tool with side effects breaks the streak. None turns the rule off. Default 3."""
    max_failure_chain: int | None = Field(3, gt=0)
    """Cascade rule: this many tool calls in a row that were refused or failed for good,
    whatever tools they named (bad values from one tool breaking the next, each round
    with new values, so no call repeats), stop the run (``stopped_breaker``) before
    another model call is paid for. A call that returns a result resets the count. None
    turns the rule off. Default 3."""
    max_consecutive_same_tool: int | None = Field(None, gt=0)
    """The old loop rule: the same tool called more than this many times in a row stops
    the run, whatever it returns (it stops sweeps: four channels read one by one). Default
    None (off)."""
    output_tokens: int = Field(4096, gt=0)
    """Output cap asked for on each model call (lowered to fit the budget). Default 4096."""
    min_output_tokens: int = Field(64, gt=0)
    """A model call is refused when the budget leaves fewer output tokens than this. Default 64."""
    estimate_margin: float = Field(1.0, ge=1.0)
    """The input tokens reserved before a model call (an upper bound for byte-level BPE
    tokenizers, or the model's own ``count_tokens``) are multiplied by this. Raise it for a
    model whose counter may undercount. Default 1.0."""
    model_timeout_s: float = Field(120.0, gt=0)
    """Hard timeout of one model call attempt, in seconds. Default 120 s."""
    cancel_grace_s: float = Field(1.0, ge=0)
    """Seconds a timed-out or cancelled tool call may take to stop before it is given up
    and left running ("abandoned", said so in the trail). Default 1 s."""
    model_retry: RetryPolicy = RetryPolicy()
    """How failed model calls are retried. Default 3 retries, backoff 1 s, 4 s, 16 s."""
    max_result_tokens: int = Field(800, gt=0)
    """Tool results are cut to about this many tokens before the model sees them. Default 800."""
    max_errors: int = Field(10, ge=0)
    """Run breaker: more failed attempts, rejected calls and fallbacks than this in one run
    stop it (``stopped_breaker``): it is failing in cascade. Default 10."""
    warn_at: float = Field(0.8, gt=0, le=1)
    """Past this fraction of any budget the model is told, once, what remains. Default 0.8."""

    @model_validator(mode="after")
    def _check(self) -> Limits:
        if self.min_output_tokens > self.output_tokens:
            raise ValueError("min_output_tokens cannot exceed output_tokens")
        return self


class BreakerPolicy(BaseModel):
    """Per-tool circuit breaker settings, shared by every run of the process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(5, gt=0)
    """Consecutive failed attempts that open the breaker. Default 5."""
    cooldown_s: float = Field(30.0, ge=0)
    """Seconds an open breaker waits before letting one trial call through. Default 30 s."""


class TenantLimits(BaseModel):
    """A tenant's daily budget, shared by all its runs (days are UTC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_tokens: int | None = Field(None, gt=0)
    """Tokens per day across every run of the tenant; None for no cap. Default None."""
    daily_cost_usd: float | None = Field(None, gt=0)
    """USD per day across every run of the tenant; None for no cap. Default None."""
