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

    [server]                       # `corral serve`
    port = 8000

    [[server.tokens]]              # stored as the token's SHA-256, never the token
    name = "ci-bot"
    sha256 = "<64 hex digits: corral.server.hash_token(token)>"
    roles = ["submit"]

    [[server.webhooks]]            # Standard Webhooks; scheme = "github" for X-Hub-Signature-256
    keys = "orders-*"
    secrets = ["whsec_<base64 of 24 to 64 random bytes>"]

Lists can come from the environment as JSON:
``CORRAL_SERVER__TOKENS='[{"name": "ci-bot", "sha256": "...", "roles": ["submit"]}]'``.

A broken file or value is refused with a `ConfigError` saying where and what:
``corral.toml: limits.max_tool_calls: Input should be greater than 0``, or
``CORRAL_LIMITS__MAX_TOKENS: limits.max_tokens: Input should be a valid integer``.
Values are never echoed back (an environment variable may hold a secret).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .runtime._options import Durability
from .supervisor import BreakerPolicy, Limits

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "LogLevel",
    "Role",
    "ServerSettings",
    "Settings",
    "TokenSpec",
    "WebhookSpec",
    "config_path",
    "hash_token",
    "load_settings",
    "new_token",
]

DEFAULT_CONFIG_FILE = "corral.toml"
"""The settings file read from the working directory when ``CORRAL_CONFIG`` is not set."""

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
"""The levels Corral's logs can be filtered at."""


Role = Literal["read", "submit", "approve", "admin"]
"""What a token may do on `corral serve`: ``read`` runs, events, approvals and metrics;
``submit`` runs, deliveries and cancels; ``approve`` gates; ``admin`` everything."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")
MIN_STANDARD_SECRET_BYTES = 16
"""The shortest Standard Webhooks secret accepted, in bytes once decoded (128 bits). The
specification asks for 24 to 64 bytes."""


def standard_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` or plain base64.

    Args:
        secret: the secret as configured (the ``whsec_`` prefix is optional; missing base64
            padding is tolerated).

    Returns:
        The decoded key bytes.

    Raises:
        ConfigError: not base64, or shorter than `MIN_STANDARD_SECRET_BYTES` once decoded.
            The message never contains the secret.
    """
    text = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "not a Standard Webhooks secret: expected whsec_ followed by base64"
        ) from None
    if len(key) < MIN_STANDARD_SECRET_BYTES:
        raise ConfigError(
            f"Standard Webhooks secret too short: {len(key)} bytes once decoded, "
            f"at least {MIN_STANDARD_SECRET_BYTES} needed (24 to 64 recommended)"
        )
    return key


def _invalid(reason: str) -> PydanticCustomError:
    """A validation error whose message is `reason` alone (no "Value error, " prefix)."""
    return PydanticCustomError("invalid_setting", "{reason}", {"reason": reason})


def _json_list(value: Any) -> Any:
    """A list given as one string (an environment variable) is read as JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:  # the message has a position, never the value
        raise _invalid(f"not a valid JSON list ({exc.msg} at character {exc.pos})") from None


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what `TokenSpec.sha256` holds.

    A fast hash is the right one here, unlike for passwords: tokens are high-entropy
    random strings (`new_token` draws 256 bits), so there is no dictionary to try and a
    slow key-derivation function would buy nothing but a cost on every request (one an
    attacker could use to load the server).

    Args:
        token: the bearer token.

    Returns:
        64 lowercase hex digits.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token: ``crl_`` and 32 random bytes, URL-safe base64.

    Returns:
        The token (47 characters). Store only `hash_token` of it in the settings.
    """
    return "crl_" + secrets.token_urlsafe(32)


class TokenSpec(BaseModel):
    """One bearer token `corral serve` accepts, stored as its SHA-256, never the token.

    Make a token and its hash with `corral.server.new_token` and `corral.server.hash_token`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str
    """Who holds the token (``ci-bot``, ``alice@example.com``): the identity the server
    records, e.g. as the approver of a gate. Letters, digits and ``_.@+-``, up to 128."""
    sha256: str
    """The token's SHA-256 as 64 hex digits (upper case is lowered)."""
    roles: frozenset[Role] = Field(min_length=1)
    """What the token may do: one or more of ``read``, ``submit``, ``approve``, ``admin``."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOKEN_NAME.fullmatch(value):
            raise _invalid(
                "a token name is 1 to 128 letters, digits or _.@+- and starts with a "
                "letter or digit"
            )
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _sha256(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        digest = value.strip().lower()
        if not _SHA256_HEX.fullmatch(digest):
            raise _invalid("must be the token's SHA-256 as 64 hex digits (the hash, not the token)")
        return digest


class WebhookSpec(BaseModel):
    """Which wait keys ``POST /v1/webhooks/{key}`` accepts, and how deliveries are signed.

    ``standard`` is Standard Webhooks 1.0: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` headers, timestamps within `tolerance_s`, ids remembered to
    refuse replays. ``github`` is GitHub's ``X-Hub-Signature-256``: it signs the body only,
    so it cannot refuse a stale delivery, and ``X-GitHub-Delivery`` (unsigned) is the only
    replay check: prefer ``standard`` where the sender offers it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    keys: str = Field("*", min_length=1)
    """The wait keys this entry covers, an ``fnmatch`` glob (case-sensitive). The first
    entry whose glob matches a key decides. Default ``*`` (every key)."""
    scheme: Literal["standard", "github"] = "standard"
    """How deliveries are signed. Default ``standard``."""
    secrets: list[SecretStr] = Field(min_length=1)
    """The signing secrets; a delivery signed with any of them is accepted, so a new
    secret can be added before the old one is retired. ``standard``: ``whsec_<base64>``
    (or plain base64), at least 16 bytes; ``github``: the secret set on the GitHub hook."""
    tolerance_s: float = Field(300.0, gt=0, le=3600)
    """``standard`` only: how far a delivery's timestamp may be from now, either way, in
    seconds. Default 300 s (the specification's 5 minutes)."""

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        for i, secret in enumerate(self.secrets):
            value = secret.get_secret_value()
            if not value.strip():
                raise _invalid(f"secrets[{i}] is empty")
            if self.scheme == "standard":
                try:
                    standard_secret_key(value)
                except ConfigError as exc:
                    raise _invalid(f"secrets[{i}]: {exc}") from None
        return self


class ServerSettings(BaseModel):
    """How ``corral serve`` listens, who it lets in, and how much it takes (``[server]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field("127.0.0.1", min_length=1)
    """Interface to listen on (``CORRAL_SERVER__HOST``). Default ``127.0.0.1``."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (``CORRAL_SERVER__PORT``); 0 takes any free port (``corral serve`` prints
    which). Default 8000."""
    tokens: list[TokenSpec] = Field(default_factory=list)
    """Bearer tokens (``[[server.tokens]]``, or ``CORRAL_SERVER__TOKENS`` as a JSON list).
    Names and hashes must be unique. Default none."""
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    """Signed webhook endpoints (``[[server.webhooks]]``, or ``CORRAL_SERVER__WEBHOOKS`` as
    a JSON list). Default none: every webhook delivery is refused."""
    max_body_bytes: int = Field(1_048_576, gt=0)
    """Largest request body accepted, in bytes. Default 1 MiB."""
    rate_limit_per_minute: int = Field(600, ge=0)
    """Requests each token may make per minute, on average; 0 turns the limit off.
    Default 600."""
    rate_limit_burst: int = Field(60, gt=0)
    """Requests a token may make at once before the per-minute rate applies. Default 60."""
    max_queued_runs: int = Field(1000, gt=0)
    """Runs submitted but not finished the server holds before refusing more (429).
    Default 1000."""
    allow_self_approval: bool = False
    """Whether a token may approve gates of runs it submitted itself. Default False."""
    public_metrics: bool = False
    """Whether ``/metrics`` is served without a token. Default False (``read`` needed)."""
    grace_s: float = Field(30.0, ge=0)
    """Seconds a stopping server gives running requests and runs to finish. Default 30 s."""

    @field_validator("tokens", "webhooks", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _json_list(value)

    @field_validator("tokens")
    @classmethod
    def _unique_tokens(cls, tokens: list[TokenSpec]) -> list[TokenSpec]:
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token.name in names:
                raise _invalid(
                    f"tokens[{names[token.name]}] and tokens[{i}] are both named "
                    f"{token.name!r}: a name must be unique"
                )
            if token.sha256 in hashes:
                raise _invalid(
                    f"tokens[{hashes[token.sha256]}] and tokens[{i}] have the same sha256: "
                    "each token must be different"
                )
            names[token.name] = i
            hashes[token.sha256] = i
        return tokens


class Settings(BaseSettings):
    """Everything Corral can be configured with, validated, with documented defaults."""

    model_config = SettingsConfigDict(
        env_prefix="CORRAL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,  # a value may be a secret: errors name it, never echo it
    )

    db: str = "sqlite:///corral.db"
    """Where the journal lives (``CORRAL_DB``). Default ``sqlite:///corral.db``."""
    limits: Limits = Field(default_factory=Limits)
    """Default per-run limits (``CORRAL_LIMITS__MAX_TOKENS`` ...)."""
    breakers: BreakerPolicy = Field(default_factory=BreakerPolicy)
    """Circuit-breaker policy for every tool."""
    durability: Durability = Field(default_factory=Durability)
    """Leases, polling, gate deadlines and retention (``CORRAL_DURABILITY__LEASE_S`` ...)."""
    server: ServerSettings = Field(default_factory=ServerSettings)
    """``corral serve``: address, tokens, webhooks and limits (``CORRAL_SERVER__PORT`` ...)."""
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
