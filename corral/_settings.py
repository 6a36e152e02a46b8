"""Settings: arguments, then ``CORRAL_*`` environment variables, then an optional TOML file.

Read once, at the edge (the CLI or the server), and passed in explicitly. Nested values
use a double underscore: ``CORRAL_LIMITS__MAX_TOKENS=50000``. The TOML file is the one
named by ``CORRAL_CONFIG``, or ``corral.toml`` in the working directory if it exists::

    db = "sqlite:///var/corral.db"

    [limits]
    max_tokens = 50000
    max_tool_calls = 12

    [breakers]
    failure_threshold = 3
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .supervisor import BreakerPolicy, Limits

__all__ = ["Settings", "load_settings"]

DEFAULT_CONFIG_FILE = "corral.toml"


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
    log_level: str = "warning"
    """structlog level for Corral's own logs (``CORRAL_LOG_LEVEL``). Default ``warning``."""


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


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
        ConfigError: an unreadable or invalid TOML file, or an invalid value, with the
            offending key in the message.
    """
    import os

    environ = dict(os.environ if env is None else env)
    path = config_file or environ.get("CORRAL_CONFIG")
    data: dict[str, Any] = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    from_env: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith("CORRAL_") or key == "CORRAL_CONFIG":
            continue
        parts = key[len("CORRAL_") :].lower().split("__")
        if parts[0] not in Settings.model_fields:
            continue  # other components' variables (CORRAL_OPENAI_BASE_URL ...)
        target = from_env
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    merged = _merge(_merge(data, from_env), {k: v for k, v in overrides.items()})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        source = f" (from {path} and CORRAL_* variables)" if path else ""
        raise ConfigError(f"invalid settings{source}: {_describe(exc)}") from exc


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out
