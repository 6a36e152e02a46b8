"""Bearer tokens for ``corral serve``: who a request is, and what it may do.

Tokens live in the settings as their SHA-256 (`corral.TokenSpec`), never as the token, so a
leaked settings file, log line or export gives nothing away. A request's token is hashed
and its hash compared with every configured hash by `hmac.compare_digest`, all of them,
whatever matched first: neither how long the check takes nor which entry matched says
anything about the configured tokens. There is no dictionary keyed by the hash, whose
lookup time would depend on the hash's bytes.

Roles: ``read`` < ``submit``, ``approve``; ``admin`` implies every role (`Principal.has`).

This module is pure code: no HTTP framework; the server maps ``None`` to 401 and a missing
role to 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from .._settings import Role, TokenSpec, hash_token, new_token
from ..errors import UsageError

__all__ = ["MAX_TOKEN_CHARS", "ROLES", "Principal", "TokenStore", "hash_token", "new_token"]

ROLES: frozenset[str] = frozenset(get_args(Role))
"""Every role a token can hold: ``read``, ``submit``, ``approve``, ``admin``."""

MAX_TOKEN_CHARS = 512
"""Longer bearer tokens are refused without hashing (`new_token` makes 47 characters)."""

_IMPLIES: dict[str, frozenset[str]] = {
    "admin": ROLES,
    "submit": frozenset({"submit", "read"}),
    "approve": frozenset({"approve", "read"}),
    "read": frozenset({"read"}),
}


@dataclass(frozen=True)
class Principal:
    """Who made a request: the name and roles of the token it carried.

    Attributes:
        name: the token's name from the settings, the identity recorded for what it does
            (the approver of a gate, the submitter of a run).
        roles: the roles configured for the token (not expanded; see `has`).
    """

    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        """Whether the token may act in `role`.

        ``admin`` implies every role; ``submit`` and ``approve`` imply ``read``.

        Args:
            role: one of `ROLES`.

        Returns:
            True when one of the token's roles implies `role`.

        Raises:
            UsageError: `role` is not a role (a typo in the caller).
        """
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}; roles are {', '.join(sorted(ROLES))}")
        return any(role in _IMPLIES.get(held, frozenset()) for held in self.roles)


class TokenStore:
    """The configured tokens, checked in constant time against a request's token.

    Args:
        specs: the tokens from the settings (``settings.server.tokens``).
    """

    def __init__(self, specs: Iterable[TokenSpec]) -> None:
        self._entries: tuple[tuple[bytes, Principal], ...] = tuple(
            (spec.sha256.encode("ascii"), Principal(spec.name, frozenset(spec.roles)))
            for spec in specs
        )

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """Who an ``Authorization`` header belongs to.

        Args:
            authorization: the header's value, ``Bearer <token>`` (the scheme in any case),
                or None when the request had none.

        Returns:
            The token's `Principal`, or None: no header, another scheme, an empty or
            over-long (> `MAX_TOKEN_CHARS`) token, or a token that is not configured.
        """
        if authorization is None or len(authorization) > MAX_TOKEN_CHARS + 32:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip(" ")
        if (
            scheme.lower() != "bearer"
            or not token
            or len(token) > MAX_TOKEN_CHARS
            or not token.isascii()
            or not token.isprintable()
            or " " in token
        ):
            return None
        candidate = hash_token(token).encode("ascii")
        found: Principal | None = None
        for digest, principal in self._entries:  # every entry, even after a match
            if hmac.compare_digest(digest, candidate) and found is None:
                found = principal
        return found
