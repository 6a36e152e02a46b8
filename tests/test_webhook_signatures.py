"""Signed webhooks: Standard Webhooks 1.0 and GitHub's X-Hub-Signature-256, on an injected clock.

The two published examples are checked as published; everything else is signed here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator

import pytest

from corral._settings import WebhookSpec
from corral.errors import ConfigError
from corral.server._webhooks import (
    ReplayGuard,
    WebhookRejected,
    WebhookVerifier,
    new_standard_secret,
    sign_github,
    sign_standard,
    verify_github,
    verify_standard,
)

# Standard Webhooks specification, "Verifying webhook authenticity" example.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = "1614265330"
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# GitHub docs, "Validating webhook deliveries" example.
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

NOW = 1_700_000_000
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-of-24-bytes!!").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-of-32-bytes-long-ok!!").decode()
SECRETS = [SPEC_SECRET, OLD_SECRET, NEW_SECRET, GH_SECRET]


def standard_headers(
    body: bytes, secret: str = NEW_SECRET, *, msg_id: str = "msg_1", ts: int = NOW
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard(body, secret, msg_id=msg_id, timestamp=ts),
    }


def rejected(call: object, status: int, *args: object, **kwargs: object) -> WebhookRejected:
    """Call, expect a WebhookRejected with `status`, and check its reason leaks nothing."""
    assert callable(call)
    with pytest.raises(WebhookRejected) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert error.status == status, error.reason
    leaked = [s for s in SECRETS if s in error.reason or s.removeprefix("whsec_") in error.reason]
    assert leaked == []
    assert not re.search(r"[A-Za-z0-9+/=]{16,}", error.reason)  # no signature, digest or key
    assert str(error) == error.reason
    return error


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(clock: Clock) -> WebhookVerifier:
    return WebhookVerifier(
        [
            WebhookSpec.model_validate({"keys": "orders-*", "secrets": [OLD_SECRET, NEW_SECRET]}),
            WebhookSpec.model_validate(
                {"keys": "gh-*", "scheme": "github", "secrets": [GH_SECRET]}
            ),
        ],
        clock=clock,
    )


# -- the published examples ------------------------------------------------------------------


def test_the_standard_webhooks_example_is_accepted_as_published() -> None:
    expected = hmac.new(
        base64.b64decode(SPEC_SECRET.removeprefix("whsec_")),
        f"{SPEC_ID}.{SPEC_TS}.".encode() + SPEC_BODY,
        hashlib.sha256,
    ).digest()
    assert SPEC_SIGNATURE == "v1," + base64.b64encode(expected).decode()  # computed by hand
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": SPEC_TS,
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify_standard(SPEC_BODY, headers, [SPEC_SECRET], now=int(SPEC_TS)) == SPEC_ID
    assert sign_standard(SPEC_BODY, SPEC_SECRET, msg_id=SPEC_ID, timestamp=1614265330) == (
        SPEC_SIGNATURE
    )
    spec = WebhookSpec.model_validate({"secrets": [SPEC_SECRET]})
    through = WebhookVerifier([spec], clock=lambda: 1614265330 + 120.0)
    assert through.verify("any-key", headers, SPEC_BODY) == SPEC_ID


def test_the_github_example_is_accepted_as_published() -> None:
    digest = hmac.new(GH_SECRET.encode(), GH_BODY, hashlib.sha256).hexdigest()
    assert GH_SIGNATURE == f"sha256={digest}"  # computed by hand
    assert verify_github(GH_BODY, GH_SIGNATURE, [GH_SECRET]) is None
    assert sign_github(GH_BODY, GH_SECRET) == GH_SIGNATURE
    spec = WebhookSpec.model_validate({"scheme": "github", "secrets": [GH_SECRET]})
    verifier = WebhookVerifier([spec])
    assert verifier.verify("k", {"X-Hub-Signature-256": GH_SIGNATURE}, GH_BODY) is None


# -- standard: what is accepted --------------------------------------------------------------


def test_either_secret_works_while_one_is_rotated(verifier: WebhookVerifier) -> None:
    body = b'{"status": "paid"}'
    assert verifier.verify("orders-1", standard_headers(body, OLD_SECRET, msg_id="a"), body) == "a"
    assert verifier.verify("orders-1", standard_headers(body, NEW_SECRET, msg_id="b"), body) == "b"
    # A sender mid-rotation signs with both; one unknown to us is fine.
    stranger = "whsec_" + base64.b64encode(b"a secret nobody here has!").decode()
    both = standard_headers(body, stranger, msg_id="c")
    both["webhook-signature"] += " " + sign_standard(body, NEW_SECRET, msg_id="c", timestamp=NOW)
    assert verifier.verify("orders-1", both, body) == "c"
    only_stranger = standard_headers(body, stranger, msg_id="d")
    rejected(verifier.verify, 401, "orders-1", only_stranger, body)


def test_header_names_are_case_insensitive_and_unknown_versions_ignored(
    verifier: WebhookVerifier,
) -> None:
    body = b"{}"
    headers = standard_headers(body)
    shouted = {name.title(): value for name, value in headers.items()}  # Webhook-Id ...
    shouted["Webhook-Signature"] = (
        "v1a,c29tZXRoaW5nIGFzeW1tZXRyaWM= " + headers["webhook-signature"]
    )
    assert verifier.verify("orders-9", shouted, body) == "msg_1"


def test_the_timestamp_may_be_off_by_the_tolerance_either_way(clock: Clock) -> None:
    body = b"{}"
    for offset in (-300, 300):
        headers = standard_headers(body, msg_id=f"m{offset}", ts=NOW + offset)
        assert verify_standard(body, headers, [NEW_SECRET], now=NOW) == f"m{offset}"
    tight = WebhookSpec.model_validate({"secrets": [NEW_SECRET], "tolerance_s": 10})
    verifier = WebhookVerifier([tight], clock=clock)
    assert verifier.verify("k", standard_headers(body, ts=NOW - 10), body) == "msg_1"
    rejected(verifier.verify, 401, "k", standard_headers(body, msg_id="x", ts=NOW - 11), body)


# -- standard: what is refused ---------------------------------------------------------------


def test_a_forged_signature_is_refused(verifier: WebhookVerifier) -> None:
    body = b'{"status": "paid"}'
    forged = standard_headers(body, SPEC_SECRET)  # a valid secret, not this webhook's
    assert rejected(verifier.verify, 401, "orders-1", forged, body).reason == (
        "no webhook-signature matches"
    )
    guessed = standard_headers(body)
    guessed["webhook-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()
    rejected(verifier.verify, 401, "orders-1", guessed, body)


@pytest.mark.parametrize("where", [0, 9, -1])
def test_a_body_rewritten_by_one_byte_is_refused(verifier: WebhookVerifier, where: int) -> None:
    body = b'{"amount": 100}'
    headers = standard_headers(body)
    changed = bytearray(body)
    changed[where] ^= 0x01
    rejected(verifier.verify, 401, "orders-1", headers, bytes(changed))
    rejected(verifier.verify, 401, "orders-1", headers, body + b" ")
    assert verifier.verify("orders-1", headers, body) == "msg_1"  # the original still passes


def test_the_id_and_timestamp_are_signed_too(verifier: WebhookVerifier) -> None:
    body = b"{}"
    headers = standard_headers(body, msg_id="msg_1", ts=NOW)
    rejected(verifier.verify, 401, "orders-1", {**headers, "webhook-id": "msg_2"}, body)
    rejected(verifier.verify, 401, "orders-1", {**headers, "webhook-timestamp": str(NOW + 1)}, body)


def test_stale_and_future_timestamps_are_refused(verifier: WebhookVerifier) -> None:
    body = b"{}"
    stale = standard_headers(body, msg_id="old", ts=NOW - 301)
    assert rejected(verifier.verify, 401, "orders-1", stale, body).reason == (
        "webhook-timestamp too old"
    )
    future = standard_headers(body, msg_id="new", ts=NOW + 301)
    assert rejected(verifier.verify, 401, "orders-1", future, body).reason == (
        "webhook-timestamp in the future"
    )


def test_a_replayed_delivery_is_refused_then_and_later(
    verifier: WebhookVerifier, clock: Clock
) -> None:
    body = b'{"status": "paid"}'
    headers = standard_headers(body, msg_id="msg_once")
    assert verifier.verify("orders-1", headers, body) == "msg_once"
    assert rejected(verifier.verify, 409, "orders-1", headers, body).reason == (
        "this delivery was already received"
    )
    # The URL is not signed: the same delivery against another key of the webhook is a replay.
    rejected(verifier.verify, 409, "orders-2", headers, body)
    clock.now += 299  # still within tolerance: still remembered
    rejected(verifier.verify, 409, "orders-1", headers, body)
    clock.now += 10_000  # forgotten by now, and refused by its timestamp instead
    rejected(verifier.verify, 401, "orders-1", headers, body)
    # A refused delivery is not remembered: a correct one with its id still goes through.
    bad = standard_headers(body, SPEC_SECRET, msg_id="msg_fresh", ts=int(clock.now))
    rejected(verifier.verify, 401, "orders-1", bad, body)
    good = standard_headers(body, msg_id="msg_fresh", ts=int(clock.now))
    assert verifier.verify("orders-1", good, body) == "msg_fresh"
    # A delivery that could not be handled is forgotten, so the sender's retry goes through.
    verifier.forget("orders-7", "msg_fresh")
    assert verifier.verify("orders-1", good, body) == "msg_fresh"
    rejected(verifier.verify, 409, "orders-1", good, body)
    verifier.forget("no-webhook-covers-this", "msg_fresh")  # nothing to forget: no error


def garbled() -> Iterator[tuple[str, dict[str, str], str]]:
    body = b"{}"
    good = standard_headers(body)
    for name in good:
        yield f"no {name}", {k: v for k, v in good.items() if k != name}, f"missing {name} header"
        yield f"empty {name}", {**good, name: "  "}, f"missing {name} header"
    for stamp in ("abc", "1e9", "-5", "1700000000.5", "١٧٠٠٠٠٠٠٠٠", "9" * 13):
        yield f"timestamp {stamp!r}", {**good, "webhook-timestamp": stamp}, "webhook-timestamp"
    for signature in ("v1", "v1,", "v1,!!!not base64!!!", "v1a,abc v2,xyz", "g0hM9SsE+OTPJTGt"):
        yield f"signature {signature!r}", {**good, "webhook-signature": signature}, "v1,<base64>"
    many = " ".join([good["webhook-signature"]] * 33)
    yield "33 signatures", {**good, "webhook-signature": many}, "more than 32"
    for msg_id in ("msg 1", "x" * 257, "msg\n1", "é"):
        yield f"id {msg_id[:10]!r}", {**good, "webhook-id": msg_id}, "malformed webhook-id"


GARBLED = list(garbled())


@pytest.mark.parametrize(("case", "headers", "reason"), GARBLED, ids=[c for c, _, _ in GARBLED])
def test_missing_or_garbled_headers_are_a_400(
    verifier: WebhookVerifier, case: str, headers: dict[str, str], reason: str
) -> None:
    error = rejected(verifier.verify, 400, "orders-1", headers, b"{}")
    assert reason in error.reason, case


def test_a_key_no_webhook_covers_is_a_404_and_the_first_match_decides(clock: Clock) -> None:
    body = b"{}"
    verifier = WebhookVerifier(
        [
            WebhookSpec.model_validate({"keys": "orders-*", "secrets": [OLD_SECRET]}),
            WebhookSpec.model_validate({"keys": "*", "secrets": [NEW_SECRET]}),
        ],
        clock=clock,
    )
    assert verifier.verify("orders-1", standard_headers(body, OLD_SECRET), body) == "msg_1"
    rejected(verifier.verify, 401, "orders-2", standard_headers(body, NEW_SECRET, msg_id="n"), body)
    assert verifier.verify("Orders-2", standard_headers(body, NEW_SECRET, msg_id="n"), body) == "n"
    none = WebhookVerifier([], clock=clock)
    assert rejected(none.verify, 404, "orders-1", standard_headers(body), body).reason == (
        "no webhook is configured for this key"
    )


# -- github ----------------------------------------------------------------------------------


def test_github_signatures_need_the_prefix_and_the_right_secret(
    verifier: WebhookVerifier,
) -> None:
    body = b'{"action": "opened"}'
    signature = sign_github(body, GH_SECRET)
    assert verifier.verify("gh-1", {"x-hub-signature-256": signature}, body) is None
    bare = signature.removeprefix("sha256=")
    for value in (bare, f"sha1={bare}", f"sha256={bare[:-2]}", f"sha256={bare[:-2]}zz", " "):
        rejected(verifier.verify, 400, "gh-1", {"X-Hub-Signature-256": value}, body)
    rejected(verifier.verify, 400, "gh-1", {}, body)
    rejected(verifier.verify, 401, "gh-1", {"X-Hub-Signature-256": signature}, body + b"\n")
    forged = sign_github(body, "not the secret")
    rejected(verifier.verify, 401, "gh-1", {"X-Hub-Signature-256": forged}, body)
    upper = "sha256=" + bare.upper()  # hex digits in either case
    assert verifier.verify("gh-2", {"X-Hub-Signature-256": upper}, body) is None
    rejected(verify_github, 400, body, None, [GH_SECRET])


def test_github_deliveries_are_deduplicated_by_their_delivery_id(
    verifier: WebhookVerifier,
) -> None:
    body = b'{"action": "closed"}'
    headers = {
        "X-Hub-Signature-256": sign_github(body, GH_SECRET),
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    assert verifier.verify("gh-1", headers, body) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    rejected(verifier.verify, 409, "gh-1", headers, body)
    rejected(verifier.verify, 400, "gh-1", {**headers, "X-GitHub-Delivery": "a b"}, body)


# -- the replay guard ------------------------------------------------------------------------


def test_the_replay_guard_forgets_after_its_ttl_and_stays_bounded(clock: Clock) -> None:
    guard = ReplayGuard(ttl_s=60, max_ids=3, clock=clock)
    assert guard.check_and_remember("w", "a") is True
    assert guard.check_and_remember("w", "a") is False
    assert guard.check_and_remember("other", "a") is True  # ids are per namespace
    clock.now += 59.9
    assert guard.check_and_remember("w", "a") is False
    clock.now += 0.2
    assert guard.check_and_remember("w", "a") is True  # forgotten, remembered afresh
    for i in range(10):
        guard.check_and_remember("w", f"id-{i}")
    assert len(guard) == 3
    assert guard.check_and_remember("w", "id-9") is False  # the newest are kept
    with pytest.raises(ConfigError, match="at least 600 s"):
        WebhookVerifier(
            [WebhookSpec.model_validate({"secrets": [NEW_SECRET]})], replay=ReplayGuard(ttl_s=300)
        )


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_stay_out_of_specs_errors_and_messages() -> None:
    spec = WebhookSpec.model_validate({"secrets": [NEW_SECRET, OLD_SECRET]})
    for text in (repr(spec), str(spec), spec.model_dump_json()):
        assert NEW_SECRET not in text and OLD_SECRET not in text
        assert NEW_SECRET.removeprefix("whsec_") not in text
    leaky = "whsec_this-is-not-base64-but-is-secret"
    with pytest.raises(ValueError) as caught:
        WebhookSpec.model_validate({"secrets": [leaky]})
    assert "not a Standard Webhooks secret" in str(caught.value)
    assert "this-is-not-base64" not in str(caught.value)
    with pytest.raises(ConfigError) as bad:
        sign_standard(b"", leaky, msg_id="m", timestamp=NOW)
    assert "this-is-not-base64" not in str(bad.value)


def test_new_standard_secrets_are_random_and_usable() -> None:
    first, second = new_standard_secret(), new_standard_secret()
    assert first != second and first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    headers = standard_headers(b"x", first)
    assert verify_standard(b"x", headers, [first], now=NOW) == "msg_1"
