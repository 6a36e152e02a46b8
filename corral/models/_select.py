"""Pick a model adapter from a string such as ``anthropic:claude-sonnet-5-5``.

Specs and the environment variables they read (from the `env` mapping, default
``os.environ``, read once when the model is built):

===================  ==========================================================
``anthropic:<model>``  key ``ANTHROPIC_API_KEY`` (required); base URL
                       ``ANTHROPIC_BASE_URL`` (optional, default
                       ``https://api.anthropic.com``)
``openai:<model>``     base URL ``CORRAL_OPENAI_BASE_URL`` (default
                       ``https://api.openai.com/v1``); key ``CORRAL_OPENAI_API_KEY``,
                       required for api.openai.com, optional for any other server
                       (vLLM, Ollama and llama.cpp usually need none)
===================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._types import Model

__all__ = ["PROVIDERS", "has_credentials", "model_from_string", "parse_model_spec"]

PROVIDERS = ("anthropic", "openai")
"""Provider prefixes a model string may start with."""

_DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"


def _guess(spec: str) -> str:
    lowered = spec.lower()
    if lowered.startswith("claude"):
        return f"; did you mean 'anthropic:{spec}'?"
    if lowered.startswith(("gpt", "o1", "o3", "o4", "chatgpt")):
        return f"; did you mean 'openai:{spec}'?"
    return ""


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split a model string into (provider, model).

    Args:
        spec: ``anthropic:<model>`` or ``openai:<model>``.

    Returns:
        The provider prefix and the model name (which may itself contain ``:``, as
        Ollama's ``llama3.1:8b`` does).

    Raises:
        ConfigError: no known provider prefix, or no model name.
    """
    provider, sep, model = spec.strip().partition(":")
    provider = provider.lower()
    if not sep or provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model {spec!r}: write 'anthropic:<model>' (Claude, key in "
            "ANTHROPIC_API_KEY) or 'openai:<model>' (any OpenAI-compatible server at "
            f"CORRAL_OPENAI_BASE_URL){_guess(spec.strip())}"
        )
    model = model.strip()
    if not model:
        raise ConfigError(f"model string {spec!r} names no model after '{provider}:'")
    return provider, model


def _openai_settings(environ: Mapping[str, str]) -> tuple[str, str | None, bool]:
    """(base URL, key, whether the key is required) for ``openai:`` models."""
    base_url = (environ.get("CORRAL_OPENAI_BASE_URL") or "").strip() or _DEFAULT_OPENAI_BASE_URL
    key = (environ.get("CORRAL_OPENAI_API_KEY") or "").strip() or None
    required = urlsplit(base_url).hostname == "api.openai.com"
    return base_url, key, required


def has_credentials(spec: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether `model_from_string` would find the credentials `spec` needs.

    Args:
        spec: a model string (see `model_from_string`).
        env: the environment to read. Default ``os.environ``.

    Returns:
        True when the needed key is set (or none is needed, as for a local server).

    Raises:
        ConfigError: `spec` is not a valid model string (a typo should not silently
            fall back to something else).
    """
    provider, _ = parse_model_spec(spec)
    environ = os.environ if env is None else env
    if provider == "anthropic":
        return bool((environ.get("ANTHROPIC_API_KEY") or "").strip())
    _, key, required = _openai_settings(environ)
    return key is not None or not required


def model_from_string(
    spec: str,
    *,
    env: Mapping[str, str] | None = None,
    http_client: Any = None,
    timeout: float | None = None,
) -> Model:
    """Build the model adapter a model string names.

    Example::

        model = model_from_string("anthropic:claude-sonnet-5-5")   # ANTHROPIC_API_KEY
        local = model_from_string(
            "openai:llama3.1:8b", env={"CORRAL_OPENAI_BASE_URL": "http://localhost:11434/v1"}
        )

    Args:
        spec: ``anthropic:<model>`` or ``openai:<model>``.
        env: the environment to read the keys and URLs from. Default ``os.environ``.
        http_client: an HTTP client for the adapter: an ``httpx.AsyncClient`` for
            ``openai:``; for ``anthropic:`` the client type the SDK takes (an
            ``httpx2.AsyncClient`` with anthropic 2.x). It stays yours to close.
        timeout: seconds one request may take. Default: the adapter's (120 s).

    Returns:
        An `AnthropicModel` or an `OpenAICompatibleModel`.

    Raises:
        ConfigError: an unknown provider, no model name, or a missing key; the message
            names the variable to set.
    """
    provider, model = parse_model_spec(spec)
    environ = os.environ if env is None else env
    options: dict[str, Any] = {"http_client": http_client}
    if timeout is not None:
        options["timeout"] = timeout
    if provider == "anthropic":
        key = (environ.get("ANTHROPIC_API_KEY") or "").strip()
        if not key:
            raise ConfigError(
                f"{spec!r} needs an Anthropic API key: set ANTHROPIC_API_KEY "
                "(create one at https://console.anthropic.com/settings/keys)"
            )
        from ._anthropic import AnthropicModel

        # Always explicit: the SDK would otherwise read os.environ behind `env`'s back.
        base_url = (environ.get("ANTHROPIC_BASE_URL") or "").strip() or _DEFAULT_ANTHROPIC_BASE_URL
        return AnthropicModel(model, api_key=key, base_url=base_url, **options)
    from ._openai import OpenAICompatibleModel

    base_url, openai_key, required = _openai_settings(environ)
    if required and openai_key is None:
        raise ConfigError(
            f"{spec!r} calls {base_url}, which needs a key: set CORRAL_OPENAI_API_KEY, or "
            "set CORRAL_OPENAI_BASE_URL to a local OpenAI-compatible server "
            "(e.g. http://localhost:8000/v1)"
        )
    return OpenAICompatibleModel(model, base_url=base_url, api_key=openai_key, **options)
