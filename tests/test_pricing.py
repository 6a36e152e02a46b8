from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest

from corral.errors import ConfigError
from corral.models import DEFAULT_PRICES, PRICES_AS_OF, Price, PriceTable, Usage

MILLION = 1_000_000


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.default()


def test_the_shipped_table_is_dated_and_sane(table: PriceTable) -> None:
    assert datetime.date.fromisoformat(PRICES_AS_OF)
    assert table.as_of == PRICES_AS_OF
    assert len(table) == len(DEFAULT_PRICES) >= 20
    for name, price in table.items():
        assert price.output >= price.input > 0, name
        assert price.cache_read is None or price.cache_read <= price.input, name
        assert price.cache_write is None or price.cache_write >= price.input, name


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic:claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai:gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest prefix wins
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("o3-2025-04-16", "o3"),
    ],
)
def test_exact_then_snapshot_prefix_matching(table: PriceTable, model: str, entry: str) -> None:
    assert table.lookup(model) == DEFAULT_PRICES[entry]


@pytest.mark.parametrize(
    "model", ["gpt-5.4", "o3-pro", "claude-opus-4-9", "claude-sonnet-4-5-fast", "llama3.1:8b", ""]
)
def test_other_suffixes_do_not_borrow_a_price(table: PriceTable, model: str) -> None:
    # gpt-5.4 priced as gpt-5, or o3-pro as o3, would be silently wrong.
    assert table.lookup(model) is None


def test_anthropic_cost_counts_every_kind_of_token(table: PriceTable) -> None:
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cache_read_tokens=2_000_000,
        cache_write_tokens=400_000,
    )
    # Sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 cache write (per million).
    expected = 3.0 + 1.5 + 0.6 + 1.5
    assert table.cost("claude-sonnet-4-5-20250929", usage) == pytest.approx(expected)


def test_openai_cache_writes_cost_the_input_price(table: PriceTable) -> None:
    usage = Usage(input_tokens=MILLION, cache_read_tokens=MILLION, cache_write_tokens=MILLION)
    assert table.cost("gpt-4o", usage) == pytest.approx(2.50 + 1.25 + 2.50)


def test_a_price_without_cache_prices_bills_cache_at_input() -> None:
    price = Price(input=2.0, output=6.0)
    assert price.cost(Usage(cache_read_tokens=MILLION, cache_write_tokens=MILLION)) == 4.0


def test_long_prompt_band_applies_to_the_whole_call(table: PriceTable) -> None:
    small = Usage(input_tokens=90_000, cache_read_tokens=10_000, output_tokens=1_000)
    large = Usage(input_tokens=90_000, cache_read_tokens=10_001, output_tokens=1_000)
    assert table.cost("claude-haiku-5-5", small) == pytest.approx(
        (90_000 * 0.10 + 10_000 * 0.01 + 1_000 * 0.50) / MILLION
    )
    assert table.cost("claude-haiku-5-5", large) == pytest.approx(
        (90_000 * 0.50 + 10_001 * 0.05 + 1_000 * 2.50) / MILLION
    )
    with pytest.raises(ValueError, match="go together"):
        Price(input=1, output=1, long_prompt_threshold=10)


def test_unknown_models_cost_nothing_but_are_flagged_and_logged_once(
    table: PriceTable, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="corral"):
        assert table.cost("llama3.1:8b", Usage(input_tokens=5000, output_tokens=500)) == 0.0
        assert table.cost("llama3.1:8b", Usage(input_tokens=5000)) == 0.0
    # Corral logs through stdlib logging; each record carries its structured fields.
    logs = [{**r.corral, "log_level": r.levelname.lower()} for r in caplog.records]
    assert table.unknown_models == {"llama3.1:8b"}
    warnings = [e for e in logs if e["event"] == "models.price_unknown"]
    assert [(w["model"], w["log_level"]) for w in warnings] == [("llama3.1:8b", "warning")]


def test_with_prices_overrides_and_extends_without_touching_the_original(
    table: PriceTable,
) -> None:
    custom = table.with_prices(
        {
            "gpt-4o": {"input": 2.0, "output": 8.0, "cache_read": 1.0},
            "openai:llama3.1": Price(input=0.0, output=0.0),
        },
        as_of="2027-01-01",
    )
    assert custom.cost("gpt-4o-2024-08-06", Usage(input_tokens=MILLION)) == 2.0
    assert custom.lookup("llama3.1") == Price(input=0.0, output=0.0)
    assert custom.as_of == "2027-01-01"
    assert table.cost("gpt-4o", Usage(input_tokens=MILLION)) == 2.5
    assert "llama3.1" not in table and "llama3.1" in custom
    assert custom["anthropic:claude-sonnet-4-5"] == DEFAULT_PRICES["claude-sonnet-4-5"]


def test_from_mapping_alone_or_on_top_of_the_default() -> None:
    only = PriceTable.from_mapping({"my-model": {"input": 1, "output": 2}}, extend_default=False)
    assert list(only) == ["my-model"]
    both = PriceTable.from_mapping({"my-model": {"input": 1, "output": 2}})
    assert "my-model" in both and "claude-sonnet-4-5" in both
    with pytest.raises(ConfigError, match="'my-model'"):
        PriceTable.from_mapping({"my-model": 3.0})


@pytest.mark.parametrize(
    "entry",
    [
        {"input": -1, "output": 2},
        {"output": 2},
        {"input": 1, "output": 2, "cache_hit": 0.1},
        {"input": "cheap", "output": 2},
    ],
)
def test_invalid_prices_are_config_errors_naming_the_model(entry: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="invalid price for 'my-model'"):
        PriceTable({"my-model": entry})


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        """
as_of = "2027-02-01"

[prices."claude-sonnet-4-5"]
input = 2.5
output = 12.5
cache_read = 0.25
cache_write = 3.0

[prices."llama3.1"]
input = 0.0
output = 0.0

[prices."claude-haiku-5-5"]
input = 0.1
output = 0.5
long_prompt_threshold = 100000
long_prompt = { input = 0.5, output = 2.5 }
""",
        encoding="utf-8",
    )
    table = PriceTable.from_toml(path)
    assert table.as_of == "2027-02-01"
    assert table.lookup("claude-sonnet-4-5-20250929") == Price(
        input=2.5, output=12.5, cache_read=0.25, cache_write=3.0
    )
    assert table.cost("llama3.1", Usage(input_tokens=MILLION)) == 0.0
    assert table.unknown_models == frozenset()
    assert table.cost("claude-haiku-5-5", Usage(input_tokens=200_000)) == pytest.approx(0.1)
    assert "gpt-4o" in table  # the shipped prices are still there
    assert "gpt-4o" not in PriceTable.from_toml(path, extend_default=False)


def test_from_toml_accepts_top_level_tables(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('["my-model"]\ninput = 1.0\noutput = 4.0\n', encoding="utf-8")
    table = PriceTable.from_toml(path, extend_default=False)
    assert table.cost("my-model", Usage(output_tokens=MILLION)) == 4.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prices.m]\ninput = 1.0\n", "price file .*'m'.*output"),
        ("[prices.m\ninput = 1\n", "not valid TOML"),
        ("prices = 3\n", r"\[prices\] must be a table"),
    ],
)
def test_bad_price_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        PriceTable.from_toml(path)
    with pytest.raises(ConfigError, match="cannot read"):
        PriceTable.from_toml(tmp_path / "missing.toml")


def test_cost_is_the_runtime_cost_function_shape(table: PriceTable) -> None:
    cost = table.cost  # what Runtime(cost=...) takes: (model name, usage) -> USD
    per_input_token = cost("claude-opus-4-6", Usage(input_tokens=MILLION)) / MILLION
    assert per_input_token == pytest.approx(5.0 / MILLION)
    assert repr(table).startswith("PriceTable(")
