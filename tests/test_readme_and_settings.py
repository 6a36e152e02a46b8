from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral import Limits, load_settings
from corral.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_settings_precedence_arguments_over_env_over_toml(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        'db = "sqlite:///from-toml.db"\n[limits]\nmax_tokens = 111\nmax_tool_calls = 7\n'
    )
    env = {
        "CORRAL_CONFIG": str(config),
        "CORRAL_LIMITS__MAX_TOKENS": "222",
        "CORRAL_OPENAI_BASE_URL": "x",
    }
    settings = load_settings(env=env)
    assert settings.db == "sqlite:///from-toml.db"
    assert settings.limits.max_tokens == 222
    assert settings.limits.max_tool_calls == 7
    explicit = load_settings(env=env, limits=Limits(max_tokens=333))
    assert explicit.limits.max_tokens == 333


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"CORRAL_LIMITS__MAX_TOKENS": "lots"}, None, "limits.max_tokens"),
        ({"CORRAL_LIMITS__MAX_TOKEN": "5"}, None, "limits.max_token"),
        ({}, "[limits]\nmax_tool_calls = 0\n", "limits.max_tool_calls"),
        ({}, "this is = = not toml", "not valid TOML"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_key(
    tmp_path: Path, env: dict[str, str], toml: str | None, message: str
) -> None:
    if toml is not None:
        path = tmp_path / "c.toml"
        path.write_text(toml)
        env = {**env, "CORRAL_CONFIG": str(path)}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env=env)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(env={"CORRAL_CONFIG": str(tmp_path / "absent.toml")})
