"""Settings: arguments, then ``CORRAL_*`` environment variables, then an optional TOML file.

`load_settings` is the one loader: the ``corral`` command and `Runtime.from_settings`
both read settings through it, so a value means the same wherever it is set. Nested values
use a double underscore: ``CORRAL_LIMITS__MAX_TOKENS=50000``. The TOML file is the one
named by ``CORRAL_CONFIG``, or ``corral.toml`` in the working directory if it exists::

    db = "sqlite:///var/corral.db"
    log_level = "info"

    [limits]
    max_tokens = 50000
    max_tool_calls = 12

    [breakers]
    failure_threshold = 3

A broken file or value is refused with a `ConfigError` saying where and what:
``corral.toml: limits.max_tool_calls: Input should be greater than 0``, or
``CORRAL_LIMITS__MAX_TOKENS: limits.max_tokens: Input should be a valid integer``.
Values are never echoed back (an environment variable may hold a secret).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .runtime._options import Durability
from .supervisor import BreakerPolicy, Limits

__all__ = ["DEFAULT_CONFIG_FILE", "LogLevel", "Settings", "config_path", "load_settings"]

DEFAULT_CONFIG_FILE = "corral.toml"
"""The settings file read from the working directory when ``CORRAL_CONFIG`` is not set."""

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
"""The levels Corral's logs can be filtered at."""


class Settings(BaseSettings):
    """Everything Corral can be configured with, validated, with documented defaults."""

    model_config = SettingsConfigDict(
        env_prefix="CORRAL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    db: str = "sqlite:///corral.db"
    """Where the journal lives (``CORRAL_DB``). Default ``sqlite:///corral.db``."""
    limits: Limits = Field(default_factory=Limits)
    """Default per-run limits (``CORRAL_LIMITS__MAX_TOKENS`` ...)."""
    breakers: BreakerPolicy = Field(default_factory=BreakerPolicy)
    """Circuit-breaker policy for every tool."""
    durability: Durability = Field(default_factory=Durability)
    """Leases, polling, gate deadlines and retention (``CORRAL_DURABILITY__LEASE_S`` ...)."""
    log_level: LogLevel = "warning"
    """Level of Corral's own logs (``CORRAL_LOG_LEVEL``): the ``corral`` command writes them
    to stderr from this level up. Default ``warning``."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def config_path(
    env: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Path | None:
    """The settings file `load_settings` reads, or None when there is none.

    Args:
        env: the environment (default: ``os.environ``).
        config_file: an explicit file, which wins.

    Returns:
        `config_file`, else ``CORRAL_CONFIG``, else ``./corral.toml`` when it exists.
    """
    environ = os.environ if env is None else env
    named = config_file or environ.get("CORRAL_CONFIG", "").strip()
    if named:
        return Path(named)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from overrides, the environment and a TOML file, in that order.

    Args:
        env: the environment to read (default: ``os.environ``); tests pass a dict.
        config_file: a TOML file; default ``CORRAL_CONFIG`` or ``./corral.toml`` if present.
        **overrides: values that win over everything else (``limits=Limits(...)``).

    Returns:
        The validated settings.

    Raises:
        ConfigError: an unreadable or invalid TOML file, or an invalid value; the message
            starts with where it came from (the file, or the environment variable) and
            names the offending key.
    """
    environ = dict(os.environ if env is None else env)
    path = config_path(environ, config_file)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({exc.reason})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    from_env: dict[str, Any] = {}
    env_names: dict[tuple[str, ...], str] = {}
    for key, value in environ.items():
        if not key.startswith("CORRAL_") or key == "CORRAL_CONFIG":
            continue
        parts = key[len("CORRAL_") :].lower().split("__")
        if parts[0] not in Settings.model_fields:
            continue  # other components' variables (CORRAL_OPENAI_BASE_URL ...)
        target = from_env
        for depth, part in enumerate(parts[:-1], 1):
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):  # CORRAL_LIMITS=5 and CORRAL_LIMITS__X=1
                raise ConfigError(
                    f"{key}: CORRAL_{'__'.join(parts[:depth]).upper()} sets "
                    f"{'.'.join(parts[:depth])} to a single value too; keep one of them"
                )
            target = nested
        target[parts[-1]] = value
        env_names[tuple(parts)] = key
    merged = _merge(_merge(data, from_env), overrides)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            where = _source(loc, env_names, overrides, data, path)
            problems.setdefault(where, []).append(f"{'.'.join(loc) or '(settings)'}: {err['msg']}")
        raise ConfigError(
            "; ".join(f"{where}: {'; '.join(found)}" for where, found in problems.items())
        ) from exc


def _source(
    loc: tuple[str, ...],
    env_names: Mapping[tuple[str, ...], str],
    overrides: Mapping[str, Any],
    data: Mapping[str, Any],
    path: Path | None,
) -> str:
    """Where the value at `loc` came from: an argument, a variable, or the file."""
    if loc and loc[0] in overrides:
        return f"argument {loc[0]}"
    for end in range(len(loc), 0, -1):
        name = env_names.get(loc[:end])
        if name is not None:
            return name
    if path is not None and (not loc or loc[0] in data):
        return str(path)
    return "settings"


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
