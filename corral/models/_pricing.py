"""Prices of model calls: USD per million input, output, cache-read and cache-write tokens.

The shipped table (`PriceTable.default`) holds list prices as published by Anthropic
(platform.claude.com, "Pricing" and each model's overview page) and OpenAI
(developers.openai.com, "Pricing"), taken on **2026-11-25** (`PRICES_AS_OF`). Prices
change: override or extend the table from a mapping (`PriceTable.with_prices`) or a TOML
file (`PriceTable.from_toml`) rather than trusting it blindly.

Conventions:

* Anthropic cache writes are priced at the 5-minute rate (1.25 × input); Corral does not
  ask for 1-hour caching.
* OpenAI does not charge for cache writes, so its ``cache_write`` is the input price.
* Batch discounts, regional surcharges (``inference_geo``) and fast modes are not modelled.
* A price may have a long-prompt band (Claude Haiku 5.5 bills every token of a request whose
  prompt is over 100,000 tokens at a higher rate); `Price.cost` applies it per call.

Matching a model name: the provider prefix (``anthropic:``, ``openai:``) is dropped, then
the exact name is looked up, then the longest table entry of which the name is that entry
plus a snapshot suffix: a date (``claude-sonnet-4-5-20250929``, ``gpt-4o-2024-08-06``),
``-latest`` or a Bedrock-style version (``-v1:0``). Other suffixes do **not** match, because
``gpt-5.4`` or ``o3-pro`` priced as ``gpt-5`` or ``o3`` would be silently wrong.

Unknown models cost **0.0** (local models are free); `PriceTable.lookup` returns None for
them, `PriceTable.unknown_models` lists those seen by `cost`, and the first `cost` of each
is logged as a warning (``models.price_unknown``), so a USD budget never silently
undercounts without a trace.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._log import get_logger
from ..errors import ConfigError
from ._types import Usage

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "PriceTable", "require_price"]

log = get_logger("corral.models")

PRICES_AS_OF = "2026-11-25"
"""The date the shipped prices were taken from the providers' pricing pages."""

_MILLION = 1_000_000
_PROVIDER_PREFIX = re.compile(r"^(anthropic|openai):")
_SNAPSHOT_SUFFIX = re.compile(
    r"^-(\d{8}|\d{4}-\d{2}-\d{2}|\d{4}|latest|v\d+(:\d+)?)(-v\d+(:\d+)?)?$"
)
"""What may follow a table entry for a prefix match: a date, ``latest`` or a version."""


class Price(BaseModel):
    """What one model charges, in USD per million tokens.

    Example::

        Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    """USD per million prompt tokens billed at the normal rate."""
    output: float = Field(ge=0)
    """USD per million generated tokens."""
    cache_read: float | None = Field(default=None, ge=0)
    """USD per million prompt tokens read from the cache. Default: the input price."""
    cache_write: float | None = Field(default=None, ge=0)
    """USD per million prompt tokens written to the cache. Default: the input price."""
    long_prompt_threshold: int | None = Field(default=None, gt=0)
    """Prompt size (input + cache tokens) above which `long_prompt` applies. Default none."""
    long_prompt: Price | None = None
    """Prices for every token of a call whose prompt exceeds `long_prompt_threshold`."""

    @model_validator(mode="after")
    def _check_band(self) -> Price:
        if (self.long_prompt is None) != (self.long_prompt_threshold is None):
            raise ValueError("long_prompt and long_prompt_threshold go together")
        return self

    def cost(self, usage: Usage) -> float:
        """Cost in USD of one call's usage at these prices.

        Args:
            usage: the tokens of one model call.

        Returns:
            The cost in USD.
        """
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        if (
            self.long_prompt is not None
            and self.long_prompt_threshold is not None
            and prompt > self.long_prompt_threshold
        ):
            return self.long_prompt.cost(usage)
        cache_read = self.input if self.cache_read is None else self.cache_read
        cache_write = self.input if self.cache_write is None else self.cache_write
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
        ) / _MILLION


def _p(input: float, output: float, cache_read: float, cache_write: float | None = None) -> Price:
    return Price(input=input, output=output, cache_read=cache_read, cache_write=cache_write)


_OPUS_4 = _p(15.0, 75.0, 1.50, 18.75)
_OPUS_4_5 = _p(5.0, 25.0, 0.50, 6.25)
_SONNET_4 = _p(3.0, 15.0, 0.30, 3.75)
_SONNET_5 = _p(2.0, 10.0, 0.20, 2.50)

DEFAULT_PRICES: Mapping[str, Price] = {
    # Anthropic (platform.claude.com/docs/en/about-claude/pricing and model pages)
    "claude-fable-5-1": _p(10.0, 50.0, 0.25, 12.50),
    "claude-fable-5": _p(10.0, 50.0, 1.00, 12.50),
    "claude-mythos-5-1": _p(10.0, 50.0, 0.25, 12.50),
    "claude-mythos-5": _p(10.0, 50.0, 1.00, 12.50),
    "claude-opus-5-5": _p(4.0, 20.0, 0.20, 5.0),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-3-opus": _OPUS_4,
    "claude-sonnet-5-5": _SONNET_5,
    "claude-sonnet-5": _SONNET_5,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-3-7-sonnet": _SONNET_4,
    "claude-haiku-5-5": Price(
        input=0.10,
        output=0.50,
        cache_read=0.01,
        cache_write=0.125,
        long_prompt_threshold=100_000,
        long_prompt=_p(0.50, 2.50, 0.05, 0.625),
    ),
    "claude-haiku-4-5": _p(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": _p(0.80, 4.0, 0.08, 1.0),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
    # OpenAI (developers.openai.com/api/docs/pricing; standard tier)
    "gpt-5": _p(1.25, 10.0, 0.125),
    "gpt-5-mini": _p(0.25, 2.0, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.0, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o3": _p(2.0, 8.0, 0.50),
    "o4-mini": _p(1.10, 4.40, 0.275),
}
"""The shipped prices, by model name (see `PRICES_AS_OF`)."""


def _strip_provider(model: str) -> str:
    return _PROVIDER_PREFIX.sub("", model.strip())


class PriceTable(Mapping[str, Price]):
    """Model prices with exact, then snapshot-prefix, matching.

    Pass ``table.cost`` wherever Corral takes a cost function, such as
    ``Runtime(cost=PriceTable.default().cost)``.

    Args:
        prices: prices by model name; values are `Price` objects or mappings with the same
            fields (``{"input": 3.0, "output": 15.0}``).
        as_of: when the prices were taken, for the record.

    Raises:
        ConfigError: a price is invalid (negative, unknown field, missing input/output).
    """

    def __init__(
        self, prices: Mapping[str, Price | Mapping[str, Any]], *, as_of: str | None = None
    ) -> None:
        self._prices = {_strip_provider(name): _to_price(name, p) for name, p in prices.items()}
        self.as_of = as_of
        """When the prices were taken (None when unknown)."""
        self._unknown: set[str] = set()

    @classmethod
    def default(cls) -> PriceTable:
        """The shipped table (prices taken on `PRICES_AS_OF`)."""
        return cls(DEFAULT_PRICES, as_of=PRICES_AS_OF)

    def with_prices(
        self, prices: Mapping[str, Price | Mapping[str, Any]], *, as_of: str | None = None
    ) -> PriceTable:
        """Return a new table: this one, with `prices` added or replacing entries.

        Args:
            prices: prices by model name (`Price` objects or mappings).
            as_of: the new table's date. Default: this table's.

        Returns:
            The new table; this one is unchanged.

        Raises:
            ConfigError: a price is invalid.
        """
        merged: dict[str, Price | Mapping[str, Any]] = dict(self._prices)
        merged.update({_strip_provider(k): v for k, v in prices.items()})
        return PriceTable(merged, as_of=as_of or self.as_of)

    @classmethod
    def from_mapping(cls, prices: Mapping[str, Any], *, extend_default: bool = True) -> PriceTable:
        """Build a table from plain data, on top of the shipped prices by default.

        Args:
            prices: ``{"model": {"input": ..., "output": ..., "cache_read": ...,
                "cache_write": ...}}``, USD per million tokens.
            extend_default: start from `PriceTable.default` (True) or from nothing.

        Returns:
            The table.

        Raises:
            ConfigError: an entry is not a table of prices, or a price is invalid.
        """
        for name, value in prices.items():
            if not isinstance(value, (Mapping, Price)):
                raise ConfigError(
                    f"price for {name!r} must be a table like "
                    "{input = 3.0, output = 15.0}, not " + type(value).__name__
                )
        if extend_default:
            return cls.default().with_prices(prices)
        return cls(prices)

    @classmethod
    def from_toml(cls, path: str | Path, *, extend_default: bool = True) -> PriceTable:
        """Read prices from a TOML file, on top of the shipped prices by default.

        The file holds one table per model, at the top level or under ``[prices]``,
        in USD per million tokens::

            as_of = "2026-11-25"          # optional

            [prices."claude-sonnet-4-5"]
            input = 3.0
            output = 15.0
            cache_read = 0.30
            cache_write = 3.75

            [prices."llama3.1"]           # a local model: free
            input = 0.0
            output = 0.0

        Args:
            path: the TOML file.
            extend_default: start from `PriceTable.default` (True) or from nothing.

        Returns:
            The table.

        Raises:
            ConfigError: the file is unreadable, not TOML, or holds an invalid price
                (the message names the model and the field).
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read price file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"price file {path} is not valid TOML: {exc}") from exc
        as_of = data.pop("as_of", None)
        prices = data.get("prices", data)
        if not isinstance(prices, Mapping):
            raise ConfigError(f"price file {path}: [prices] must be a table of models")
        try:
            table = cls.from_mapping(prices, extend_default=extend_default)
        except ConfigError as exc:
            raise ConfigError(f"price file {path}: {exc}") from exc
        if as_of is not None:
            table.as_of = str(as_of)
        return table

    # -- Mapping --------------------------------------------------------------------------

    def __getitem__(self, model: str) -> Price:
        return self._prices[_strip_provider(model)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, as_of={self.as_of!r})"

    # -- look-ups -------------------------------------------------------------------------

    def lookup(self, model: str) -> Price | None:
        """Find the price of a model: exact name, then the longest snapshot-prefix match.

        Args:
            model: a model name as a provider reports it (``claude-sonnet-4-5-20250929``),
                with or without a ``anthropic:`` / ``openai:`` prefix.

        Returns:
            The price, or None when the model is not in the table.
        """
        name = _strip_provider(model)
        price = self._prices.get(name)
        if price is not None:
            return price
        best: str | None = None
        for entry in self._prices:
            if (
                name.startswith(entry)
                and _SNAPSHOT_SUFFIX.match(name[len(entry) :])
                and (best is None or len(entry) > len(best))
            ):
                best = entry
        return self._prices[best] if best is not None else None

    def cost(self, model: str, usage: Usage) -> float:
        """Cost in USD of one model call.

        Args:
            model: the model name (see `lookup`).
            usage: the call's tokens.

        Returns:
            The cost in USD; **0.0 for a model not in the table** (it is then listed in
            `unknown_models` and logged once as ``models.price_unknown``).
        """
        price = self.lookup(model)
        if price is None:
            if model not in self._unknown:
                self._unknown.add(model)
                log.warning(
                    "models.price_unknown",
                    model=model,
                    hint="add it with PriceTable.with_prices or a prices TOML file",
                )
            return 0.0
        return price.cost(usage)

    @property
    def unknown_models(self) -> frozenset[str]:
        """Models `cost` was asked about and found no price for (they cost 0.0)."""
        return frozenset(self._unknown)


def _to_price(name: str, value: Price | Mapping[str, Any]) -> Price:
    if isinstance(value, Price):
        return value
    try:
        return Price.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(price)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid price for {name!r}: {problems}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid price for {name!r}: {exc}") from exc


def _price_problem(cost: Callable[[str, Usage], float] | None, model: str) -> str | None:
    """Why `cost` cannot price `model`, or None when it can."""
    if cost is None:
        return "the runtime has no cost function"
    table = getattr(cost, "__self__", None)
    if isinstance(table, PriceTable):  # it knows its models; an explicit $0 is a free model
        return None if table.lookup(model) is not None else "it is not in the price table"
    try:
        probe = float(cost(model, Usage(input_tokens=_MILLION, output_tokens=_MILLION)))
    except Exception as exc:
        return f"the cost function raised {type(exc).__name__}: {exc}"
    return None if probe > 0 else "the cost function prices it at $0"


def require_price(
    cost: Callable[[str, Usage], float] | None,
    model: str,
    *,
    agent: str,
    budgets: Iterable[str],
) -> None:
    """Refuse a USD budget over a model whose price is unknown (it would count as $0).

    A `PriceTable`'s ``cost`` knows which models it prices: an explicit zero price is a
    known, free model. Any other cost function is asked the cost of a million input and
    output tokens; $0 (or an error) means it does not know the model.

    Args:
        cost: the runtime's cost function (None: no prices at all).
        model: the model's name.
        agent: the agent using it, for the message.
        budgets: the USD budgets that apply to the agent's runs, for the message.

    Raises:
        ConfigError: the price is unknown; the message names the agent, the model, the
            budgets and the fix.
    """
    problem = _price_problem(cost, model)
    if problem is None:
        return
    raise ConfigError(
        f"agent {agent!r} has a USD budget ({', '.join(budgets)}) but the price of its model "
        f"{model!r} is unknown: {problem}, so every call would count as $0. Price it "
        f"(Runtime(cost=PriceTable.default().with_prices({{{model!r}: {{'input': ..., "
        "'output': ...}}).cost), USD per million tokens; 0 for a free model) or drop the "
        "USD budget"
    )
