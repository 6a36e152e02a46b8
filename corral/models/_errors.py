"""The one place where provider SDK and httpx exceptions become Corral errors.

Adapters wrap every call to the outside world in `map_model_errors`, as httpcore wraps its
network calls in ``map_exceptions``: the most specific translation wins and the original
exception is chained with ``from``. Nothing above `corral.models` ever sees an
``anthropic`` or ``httpx`` exception.

The mapping, for every provider::

    HTTP 429, 529, or an error body of type rate_limit_error / overloaded_error
                                     -> RateLimited(retry_after=Retry-After / retry-after-ms)
    HTTP 429 with code insufficient_quota (OpenAI: the account is out of credit)
                                     -> ModelError(retryable=False)
    HTTP 503 with a Retry-After header (a local server shedding load, e.g. vLLM)
                                     -> RateLimited(status_code=503)
    HTTP 408                         -> ModelTimeout(retryable=True)
    other HTTP 4xx                   -> ModelError(retryable=False), the API's message
    other HTTP 5xx                   -> ModelError(retryable=True, retry_after if given)
    timeouts (SDK or httpx)          -> ModelTimeout(retryable=True)
    connection and protocol errors   -> ModelError(retryable=True)
    a body Corral cannot read        -> ModelError(retryable=True)
    missing credentials              -> ConfigError

``Retry-After`` is read by `corral._retry.parse_retry_after`, the one parser tools use too.

API keys given to `map_model_errors` are masked in every message it produces, and any
other credential an error body echoes is replaced by `corral.guardrails.redact_secrets`.

This module also holds the no-accidental-spend guard (`ensure_requests_allowed`), which
reads `corral.models.ALLOW_MODEL_REQUESTS` at call time so that tests can switch it off.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pydantic

from .._pii import redact_secrets
from .._retry import parse_retry_after
from ..errors import (
    CallError,
    ConfigError,
    CorralError,
    ModelError,
    ModelTimeout,
    RateLimited,
    UsageError,
)

__all__ = [
    "ensure_requests_allowed",
    "error_for_status",
    "map_model_errors",
    "redact",
]

_MASK = "***"
_MIN_SECRET_LENGTH = 6
"""Shorter "secrets" (such as ``test``) are not masked: masking them would mangle words."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Mask the given secrets in `text`, then any other credential it holds.

    Each given secret becomes ``***``; any other credential (an API key, a token, a
    ``password=...`` value) its marker, by `corral.guardrails.redact_secrets`.

    Args:
        text: a message that may contain a secret (an API key echoed by a server).
        secrets: the secrets to mask; None and very short values are skipped.

    Returns:
        The text with the secrets masked.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, _MASK)
    return redact_secrets(text)


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """Pull (message, type, code) out of the error bodies providers actually send.

    Anthropic: ``{"type": "error", "error": {"type": ..., "message": ...}}``; OpenAI:
    ``{"error": {"message": ..., "type": ..., "code": ...}}``; vLLM:
    ``{"object": "error", "message": ..., "type": ...}``; Ollama: ``{"error": "..."}``.
    """
    if not isinstance(body, Mapping):
        return None, None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        message, kind, code = error.get("message"), error.get("type"), error.get("code")
    elif isinstance(error, str):
        message, kind, code = error, None, None
    else:
        message = body.get("message") or body.get("detail")
        kind, code = body.get("type"), body.get("code")
    return (
        message if isinstance(message, str) and message else None,
        kind if isinstance(kind, str) and kind else None,
        code if isinstance(code, str) and code else None,
    )


def error_for_status(
    status: int,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str],
    body: Any = None,
    text: str = "",
    secrets: Iterable[str | None] = (),
) -> CallError:
    """Build the Corral error for an HTTP error response from a model provider.

    Args:
        status: the HTTP status code (400 or more).
        provider: provider label for the message (``anthropic``, ``openai``).
        model: the model that was asked.
        headers: the response headers (for ``retry-after``).
        body: the decoded JSON body, if it was JSON.
        text: the raw body, used when it carried no readable message.
        secrets: values to mask in the message.

    Returns:
        `RateLimited`, `ModelTimeout` or `ModelError`, as described in the module docstring.
    """
    message, kind, code = _error_fields(body)
    if message is None:
        message = " ".join(text.split())[:500] or "no error message"
    label = f"{kind}: {message}" if kind else message
    text_out = redact(f"{provider} {model!r}: HTTP {status}: {label}", secrets)
    retry_after = parse_retry_after(headers)
    if status == 429 and "insufficient_quota" in (code, kind):
        return ModelError(
            text_out + " (the account is out of credit; retrying will not help)",
            retryable=False,
            status_code=status,
        )
    if status in (429, 529) or kind in ("rate_limit_error", "overloaded_error"):
        return RateLimited(text_out, retry_after=retry_after, status_code=status)
    if status == 503 and retry_after is not None:
        return RateLimited(text_out, retry_after=retry_after, status_code=status)
    if status == 408:
        return ModelTimeout(text_out, retryable=True, retry_after=retry_after, status_code=status)
    if status == 401:
        text_out += " (check the API key)"
    if status < 500:
        return ModelError(text_out, retryable=False, status_code=status)
    return ModelError(text_out, retryable=True, retry_after=retry_after, status_code=status)


def _translate_anthropic(
    exc: Exception, *, provider: str, model: str, secrets: Iterable[str | None]
) -> CorralError | None:
    anthropic = sys.modules.get("anthropic")
    if anthropic is None or not isinstance(exc, anthropic.AnthropicError):
        return None  # the SDK was never imported, so this cannot be one of its errors
    where = f"{provider} {model!r}"
    if isinstance(exc, anthropic.APIStatusError):
        response = exc.response
        return error_for_status(
            exc.status_code,
            provider=provider,
            model=model,
            headers=response.headers,
            body=exc.body,
            text=str(exc),
            secrets=secrets,
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelTimeout(f"{where}: the request timed out", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return ModelError(
            redact(f"{where}: could not reach the API{detail}", secrets), retryable=True
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ModelError(
            redact(
                f"{where}: the API returned a response Corral cannot read: {exc.message}", secrets
            ),
            retryable=True,
            status_code=exc.status_code,
        )
    credentials_error = getattr(anthropic, "CredentialsError", None)
    if credentials_error is not None and isinstance(exc, credentials_error):
        message = f"{where}: no usable Anthropic credentials: {exc}; set ANTHROPIC_API_KEY"
        return ConfigError(redact(message, secrets))
    return ModelError(redact(f"{where}: {type(exc).__name__}: {exc}", secrets), retryable=False)


def _translate_httpx(
    exc: Exception, *, provider: str, model: str, secrets: Iterable[str | None]
) -> CorralError | None:
    where = f"{provider} {model!r}"
    # httpx2 is the httpx fork the anthropic 2.x SDK runs on; it mirrors httpx's classes.
    for name in ("httpx", "httpx2"):
        httpx = sys.modules.get(name)
        if httpx is None:
            continue
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            try:
                body = response.json()
            except (ValueError, UnicodeDecodeError):
                body = None
            return error_for_status(
                response.status_code,
                provider=provider,
                model=model,
                headers=response.headers,
                body=body,
                text=response.text,
                secrets=secrets,
            )
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeout(
                f"{where}: the request timed out ({type(exc).__name__})", retryable=True
            )
        if isinstance(exc, httpx.TransportError):
            return ModelError(
                redact(f"{where}: could not reach the API ({type(exc).__name__}: {exc})", secrets),
                retryable=True,
            )
    return None


def _translate(
    exc: Exception, *, provider: str, model: str, secrets: Iterable[str | None]
) -> CorralError | None:
    translated = _translate_anthropic(exc, provider=provider, model=model, secrets=secrets)
    if translated is None:
        translated = _translate_httpx(exc, provider=provider, model=model, secrets=secrets)
    if translated is not None:
        return translated
    where = f"{provider} {model!r}"
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelError(
            redact(f"{where}: the API returned a response Corral cannot read: {detail}", secrets),
            retryable=True,
        )
    if isinstance(exc, TypeError) and "authentication method" in str(exc):
        # The anthropic SDK raises a bare TypeError when it finds no key at request time.
        return ConfigError(f"{where}: no API key; set ANTHROPIC_API_KEY or pass api_key=")
    return None


@contextmanager
def map_model_errors(
    *, provider: str, model: str, secrets: Iterable[str | None] = ()
) -> Iterator[None]:
    """Translate provider SDK and httpx exceptions raised in the block into Corral errors.

    Corral's own errors pass through untouched, as does anything that is not a provider
    failure (a bug should surface as itself). Cancellation is never caught.

    Args:
        provider: provider label used in messages (``anthropic``, ``openai``).
        model: the model being called, for messages.
        secrets: API keys to mask in every message.

    Raises:
        RateLimited: 429 / 529 / overloaded, with `retry_after` from the headers.
        ModelTimeout: the request timed out.
        ModelError: any other provider failure; `retryable` says whether to try again.
        ConfigError: no usable credentials.
    """
    secrets = tuple(secrets)
    try:
        yield
    except CorralError:
        raise
    except Exception as exc:
        translated = _translate(exc, provider=provider, model=model, secrets=secrets)
        if translated is None:
            raise
        raise translated from exc


def ensure_requests_allowed(model: str, *, injected: bool) -> None:
    """Refuse to reach a real provider while `corral.models.ALLOW_MODEL_REQUESTS` is False.

    Args:
        model: the adapter's model, for the message.
        injected: True when the caller supplied the client or transport (a test's
            ``httpx.MockTransport``), which is always allowed.

    Raises:
        UsageError: requests are switched off and the adapter would use the network.
    """
    from . import ALLOW_MODEL_REQUESTS  # read at call time: tests switch the package flag

    if not ALLOW_MODEL_REQUESTS and not injected:
        raise UsageError(
            f"model requests are disabled (corral.models.ALLOW_MODEL_REQUESTS is False), so "
            f"{model!r} will not call the real API; pass your own client or transport "
            "(httpx.MockTransport) or set ALLOW_MODEL_REQUESTS = True"
        )
