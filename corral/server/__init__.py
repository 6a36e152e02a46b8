"""The supervisor process: ``corral serve``, its HTTP API, and what secures it.

Needs the ``server`` extra (``pip install 'corral[server]'``: FastAPI, uvicorn,
prometheus-client, sse-starlette); ``import corral`` never imports this package.

Public: `serve` (what ``corral serve`` runs), `Server` (the API on uvicorn, for embedding
and tests), `Service` (the operations on a running `corral.Runtime`), `create_app` (the
FastAPI application), its settings (`ServerSettings`, `TokenSpec`, `WebhookSpec`: the
``[server]`` table of `corral.Settings`), and for senders and operators `sign_standard`
(a Standard Webhooks signature), `hash_token` and `new_token` (API tokens and the hashes
the settings hold).
"""

try:
    import fastapi as _fastapi  # noqa: F401
    import uvicorn as _uvicorn  # noqa: F401
except ImportError as _missing:  # pragma: no cover - exercised without the extra
    from ..errors import ConfigError as _ConfigError

    raise _ConfigError(
        f"corral.server needs the server extra: pip install 'corral[server]' ({_missing})"
    ) from _missing

from .._settings import ServerSettings as ServerSettings
from .._settings import TokenSpec as TokenSpec
from .._settings import WebhookSpec as WebhookSpec
from ._api import create_app as create_app
from ._auth import Principal as Principal
from ._auth import hash_token as hash_token
from ._auth import new_token as new_token
from ._serve import Server as Server
from ._serve import serve as serve
from ._service import ApiError as ApiError
from ._service import Service as Service
from ._webhooks import sign_standard as sign_standard

__all__ = [
    "ApiError",
    "Principal",
    "Server",
    "ServerSettings",
    "Service",
    "TokenSpec",
    "WebhookSpec",
    "create_app",
    "hash_token",
    "new_token",
    "serve",
    "sign_standard",
]
