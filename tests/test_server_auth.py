"""Bearer tokens of ``corral serve``: hashed in the settings, checked in constant time, roles."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from corral import load_settings
from corral._settings import TokenSpec
from corral.errors import UsageError
from corral.server import _auth
from corral.server._auth import ROLES, Principal, TokenStore, hash_token, new_token


def spec(name: str, token: str, *roles: str) -> TokenSpec:
    return TokenSpec.model_validate({"name": name, "sha256": hash_token(token), "roles": roles})


ALICE = "crl_alice-token-0123456789"
CI = "crl_ci-token-9876543210"


@pytest.fixture
def store() -> TokenStore:
    return TokenStore(
        [spec("alice", ALICE, "approve"), spec("ci", CI, "submit"), spec("ops", "ops-t", "admin")]
    )


def test_a_token_is_stored_as_its_sha256_and_new_tokens_are_random() -> None:
    assert hash_token("test") == hashlib.sha256(b"test").hexdigest()
    assert hash_token("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith("crl_") and len(token) == 47 and token.isascii()
    token = tokens.pop()
    assert TokenStore([spec("fresh", token, "read")]).authenticate(f"Bearer {token}") == Principal(
        "fresh", frozenset({"read"})
    )


@pytest.mark.parametrize("header", [f"Bearer {ALICE}", f"bearer {ALICE}", f"BEARER  {ALICE} "])
def test_the_bearer_scheme_is_case_insensitive(store: TokenStore, header: str) -> None:
    principal = store.authenticate(header)
    assert principal is not None and principal.name == "alice"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        ALICE,  # no scheme
        f"Basic {ALICE}",
        f"Token {ALICE}",
        f"Bearer {ALICE}x",  # not the token
        f"Bearer {ALICE[:-1]}",
        f"Bearer {ALICE} {CI}",
        f"Bearer {hash_token(ALICE)}",  # the hash is not the token
    ],
)
def test_anything_but_a_configured_bearer_token_is_nobody(
    store: TokenStore, header: str | None
) -> None:
    assert store.authenticate(header) is None


def test_over_long_tokens_are_refused_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    longest, too_long = "a" * _auth.MAX_TOKEN_CHARS, "b" * (_auth.MAX_TOKEN_CHARS + 1)
    store = TokenStore([spec("long", longest, "read"), spec("longer", too_long, "read")])
    assert store.authenticate(f"Bearer {longest}") == Principal("long", frozenset({"read"}))
    hashed: list[str] = []
    monkeypatch.setattr(_auth, "hash_token", lambda t: hashed.append(t) or "")
    assert store.authenticate(f"Bearer {too_long}") is None
    assert store.authenticate("Bearer " + "c" * 100_000) is None
    assert hashed == []


def test_every_configured_token_is_compared_whatever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = TokenStore([spec(f"t{i}", f"token-{i}", "read") for i in range(5)])
    assert len(store) == 5
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_auth.hmac, "compare_digest", counting)
    for header, name in [
        ("Bearer token-0", "t0"),  # the first entry matches: the other four are still compared
        ("Bearer token-4", "t4"),
        ("Bearer nobody", None),
    ]:
        calls.clear()
        principal = store.authenticate(header)
        assert (principal.name if principal else None) == name
        assert len(calls) == 5
        assert {a for a, _ in calls} == {hash_token(f"token-{i}").encode() for i in range(5)}


def test_roles_imply_others_as_documented() -> None:
    table = {
        "read": {"read"},
        "submit": {"submit", "read"},
        "approve": {"approve", "read"},
        "admin": set(ROLES),
    }
    assert ROLES == {"read", "submit", "approve", "admin"}
    for held, allowed in table.items():
        principal = Principal("p", frozenset({held}))
        assert {role for role in ROLES if principal.has(role)} == allowed, held
    both = Principal("p", frozenset({"submit", "approve"}))
    assert not both.has("admin") and both.has("approve") and both.has("submit")
    with pytest.raises(UsageError, match="unknown role 'aprove'"):
        both.has("aprove")


def test_tokens_from_the_settings_file_authenticate(tmp_path: Path) -> None:
    path = tmp_path / "corral.toml"
    path.write_text(
        "[[server.tokens]]\n"
        f'name = "alice"\nsha256 = "{hash_token(ALICE).upper()}"\nroles = ["approve"]\n'
        "[[server.tokens]]\n"
        f'name = "ci"\nsha256 = "{hash_token(CI)}"\nroles = ["submit", "read"]\n'
    )
    settings = load_settings(env={"CORRAL_CONFIG": str(path)})
    store = TokenStore(settings.server.tokens)
    alice = store.authenticate(f"Bearer {ALICE}")
    ci = store.authenticate(f"Bearer {CI}")
    assert alice == Principal("alice", frozenset({"approve"}))
    assert ci == Principal("ci", frozenset({"submit", "read"}))
    assert not ci.has("approve") and alice.has("read")
    assert ALICE not in repr(settings) and CI not in repr(settings)


def test_no_tokens_configured_lets_nobody_in() -> None:
    store = TokenStore([])
    assert len(store) == 0
    assert store.authenticate("Bearer anything") is None
