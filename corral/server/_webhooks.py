"""Signed webhooks: Standard Webhooks 1.0, and GitHub's ``X-Hub-Signature-256``.

Standard Webhooks: the sender signs ``{webhook-id}.{webhook-timestamp}.{body}`` with
HMAC-SHA256 under the secret's key (``whsec_<base64>``) and sends
``webhook-signature: v1,<base64> [v1,<base64> ...]``: several signatures, so a secret can be
rotated while both are in use. A delivery is accepted when any ``v1`` signature matches any
configured secret (other versions, such as ``v1a``, are ignored), its timestamp is within
the tolerance either way (5 minutes by default), and its id has not been seen: ids are
remembered for twice the tolerance, after which the timestamp refuses the delivery anyway.
The signature does not cover the URL, so ids are remembered per `corral.WebhookSpec`, not
per wait key: a delivery captured for one key cannot be replayed against another key the
same secret covers.

GitHub (``scheme = "github"``): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body>``, the secret used as it is. Nothing with a time is signed, so a stale delivery cannot
be told from a fresh one; ``X-GitHub-Delivery`` is remembered like a ``webhook-id``, but it
is not signed either, which stops honest redeliveries and not a replay by whoever captured
one. Prefer the standard scheme where the sender offers it.

Every comparison is `hmac.compare_digest`. `WebhookRejected.reason` is safe to show: it never
holds a secret, an expected signature or anything from the request.

Hand-written, not the ``standardwebhooks`` package: its ``Webhook.verify`` reads the time
from ``datetime.now()`` (no injected clock) with a fixed 5-minute tolerance, takes one
secret per object, decodes the body as UTF-8 text and lets a garbled header escape as
``ValueError`` or ``binascii.Error`` instead of its own error, and has no replay check. The
verification itself is an HMAC and a base64 decode.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import re
import secrets as _secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from .._settings import WebhookSpec, standard_secret_key
from ..errors import ConfigError

__all__ = [
    "ReplayGuard",
    "WebhookRejected",
    "WebhookVerifier",
    "new_standard_secret",
    "sign_github",
    "sign_standard",
    "verify_github",
    "verify_standard",
]

_MAX_ID_CHARS = 256
_MAX_SIGNATURES = 32
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ID = re.compile(rf"[\x21-\x7e]{{1,{_MAX_ID_CHARS}}}")  # printable ASCII, no spaces


class WebhookRejected(Exception):
    """A webhook delivery was refused.

    Attributes:
        reason: why, safe to show and log: never a secret, a signature or request data.
        status: the HTTP status to answer with: 400 missing or malformed headers, 401 no
            signature matches or the timestamp is too old or too new, 404 no webhook is
            configured for the key, 409 the delivery was seen before.
    """

    def __init__(self, reason: str, *, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def new_standard_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64.

    Returns:
        The secret, to configure on both the sender and ``[[server.webhooks]]``.
    """
    return "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def sign_standard(body: bytes, secret: str, *, msg_id: str, timestamp: int) -> str:
    """The ``webhook-signature`` header a Standard Webhooks sender sends.

    Args:
        body: the exact request body.
        secret: ``whsec_<base64>`` (or plain base64).
        msg_id: the ``webhook-id`` header.
        timestamp: the ``webhook-timestamp`` header, Unix seconds.

    Returns:
        ``v1,<base64 signature>``.

    Raises:
        ConfigError: the secret is not a Standard Webhooks secret.
    """
    mac = _standard_mac(standard_secret_key(secret), msg_id, str(timestamp), body)
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign_github(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` header GitHub sends.

    Args:
        body: the exact request body.
        secret: the hook's secret.

    Returns:
        ``sha256=<hex HMAC-SHA256 of the body>``.
    """
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_s: float = 300,
) -> str:
    """Check a Standard Webhooks delivery's signature and timestamp (not replays).

    Args:
        body: the raw request body, as received.
        headers: the request's headers; names in any case.
        secrets: the secrets it may be signed with (``whsec_<base64>``).
        now: the current time, Unix seconds.
        tolerance_s: how far the timestamp may be from `now`, either way.

    Returns:
        The delivery's ``webhook-id``.

    Raises:
        WebhookRejected: 400 for a missing or malformed header, 401 for a timestamp out of
            tolerance or no matching signature.
        ConfigError: a secret is not a Standard Webhooks secret.
    """
    keys = [standard_secret_key(secret) for secret in secrets]
    return _verify_standard(body, _lower(headers), keys, now=now, tolerance_s=tolerance_s)


def verify_github(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    """Check GitHub's ``X-Hub-Signature-256`` header.

    Args:
        body: the raw request body, as received.
        signature: the header's value, ``sha256=<64 hex digits>``, or None when absent.
        secrets: the secrets it may be signed with.

    Raises:
        WebhookRejected: 400 for a missing or malformed header, 401 when no secret's
            signature matches.
    """
    _verify_github(body, signature, [secret.encode("utf-8") for secret in secrets])


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _standard_mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[bytes],
    *,
    now: float,
    tolerance_s: float,
) -> str:
    msg_id = headers.get("webhook-id", "").strip()
    stamp = headers.get("webhook-timestamp", "").strip()
    signature = headers.get("webhook-signature", "").strip()
    for name, value in (
        ("webhook-id", msg_id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", signature),
    ):
        if not value:
            raise WebhookRejected(f"missing {name} header", status=400)
    if not _ID.fullmatch(msg_id):
        raise WebhookRejected(
            f"malformed webhook-id header: 1 to {_MAX_ID_CHARS} printable ASCII characters",
            status=400,
        )
    if not _TIMESTAMP.fullmatch(stamp):
        raise WebhookRejected(
            "malformed webhook-timestamp header: Unix seconds expected", status=400
        )
    offered: list[bytes] = []
    entries = signature.split()
    if len(entries) > _MAX_SIGNATURES:
        raise WebhookRejected(
            f"malformed webhook-signature header: more than {_MAX_SIGNATURES} signatures",
            status=400,
        )
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric) or a future version
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if decoded:
            offered.append(decoded)
    if not offered:
        raise WebhookRejected(
            "malformed webhook-signature header: no v1,<base64> signature", status=400
        )
    age = now - int(stamp)
    if age > tolerance_s:
        raise WebhookRejected("webhook-timestamp too old", status=401)
    if age < -tolerance_s:
        raise WebhookRejected("webhook-timestamp in the future", status=401)
    matched = False
    for key in keys:
        expected = _standard_mac(key, msg_id, stamp, body)
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookRejected("no webhook-signature matches", status=401)
    return msg_id


def _verify_github(body: bytes, signature: str | None, keys: Sequence[bytes]) -> None:
    value = (signature or "").strip()
    if not value:
        raise WebhookRejected("missing X-Hub-Signature-256 header", status=400)
    algorithm, _, hexdigest = value.partition("=")
    try:
        if algorithm != "sha256" or len(hexdigest) != 64:
            raise ValueError
        candidate = bytes.fromhex(hexdigest)
    except ValueError:
        raise WebhookRejected(
            "malformed X-Hub-Signature-256 header: sha256=<64 hex digits> expected",
            status=400,
        ) from None
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), candidate)
    if not matched:
        raise WebhookRejected("X-Hub-Signature-256 does not match", status=401)


class ReplayGuard:
    """Remembers delivery ids for a while, to refuse a delivery seen before.

    Memory is bounded: past `max_ids` live ids the oldest is forgotten first (it would be
    refused again only by its timestamp).

    Args:
        ttl_s: seconds an id is remembered. Default 600 (twice the default tolerance).
        max_ids: ids remembered at most. Default 100,000.
        clock: Unix seconds (default `time.time`).

    Raises:
        ConfigError: a `ttl_s` or `max_ids` not above 0.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 600,
        max_ids: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ttl_s > 0:
            raise ConfigError(f"ttl_s must be above 0, not {ttl_s}")
        if max_ids < 1:
            raise ConfigError(f"max_ids must be at least 1, not {max_ids}")
        self.ttl_s = ttl_s
        self.max_ids = max_ids
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # -> expires at
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, key: str, webhook_id: str) -> bool:
        """Whether a delivery is new; a new one is remembered.

        Args:
            key: the namespace the id belongs to (the webhook it came through).
            webhook_id: the delivery's id.

        Returns:
            True the first time; False when the same `key` and id were seen within
            `ttl_s`.
        """
        with self._lock:
            now = self._clock()
            while self._seen:  # oldest first: each entry lives ttl_s from insertion
                oldest, expires = next(iter(self._seen.items()))
                if expires > now:
                    break
                del self._seen[oldest]
            entry = (key, webhook_id)
            known = self._seen.get(entry)
            if known is not None and known > now:
                return False
            self._seen[entry] = now + self.ttl_s
            self._seen.move_to_end(entry)
            while len(self._seen) > self.max_ids:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: str, webhook_id: str) -> None:
        """Forget one id, so that a delivery that could not be handled can come again.

        Args:
            key: the namespace given to `check_and_remember`.
            webhook_id: the delivery's id.
        """
        with self._lock:
            self._seen.pop((key, webhook_id), None)


class _Compiled:
    """One `WebhookSpec` with its secrets decoded once."""

    def __init__(self, index: int, spec: WebhookSpec) -> None:
        self.namespace = f"{index}:{spec.keys}"
        self.pattern = spec.keys
        self.scheme = spec.scheme
        self.tolerance_s = spec.tolerance_s
        values = [secret.get_secret_value() for secret in spec.secrets]
        if spec.scheme == "standard":
            self.keys = [standard_secret_key(value) for value in values]
        else:
            self.keys = [value.encode("utf-8") for value in values]


class WebhookVerifier:
    """Checks deliveries to ``POST /v1/webhooks/{key}`` against the configured webhooks.

    The first spec whose glob matches the key decides; a key no spec matches is refused.

    Args:
        specs: ``settings.server.webhooks``.
        clock: Unix seconds (default `time.time`), for timestamps and the replay guard.
        replay: where delivery ids are remembered; default a `ReplayGuard` remembering
            them for twice the largest tolerance (plus a second) on `clock`.

    Raises:
        ConfigError: `replay` forgets ids sooner than twice a spec's tolerance (a replay
            could then pass), or a secret is invalid.
    """

    def __init__(
        self,
        specs: Sequence[WebhookSpec],
        *,
        clock: Callable[[], float] = time.time,
        replay: ReplayGuard | None = None,
    ) -> None:
        self._specs = [_Compiled(i, spec) for i, spec in enumerate(specs)]
        self._clock = clock
        window = 2 * max((spec.tolerance_s for spec in specs), default=300.0)
        if replay is None:
            replay = ReplayGuard(ttl_s=max(window + 1, 600.0), clock=clock)
        elif replay.ttl_s < window:
            raise ConfigError(
                f"the replay guard remembers ids for {replay.ttl_s:g} s; at least "
                f"{window:g} s (twice the tolerance) is needed to refuse every replay"
            )
        self.replay = replay

    def __len__(self) -> int:
        return len(self._specs)

    def verify(self, key: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """Check one delivery: signature, timestamp, and that it was not seen before.

        Args:
            key: the wait key from the URL.
            headers: the request's headers; names in any case.
            body: the raw request body, as received.

        Returns:
            The delivery's id (``webhook-id``, or ``X-GitHub-Delivery`` for the github
            scheme), or None for a github delivery without ``X-GitHub-Delivery``.

        Raises:
            WebhookRejected: with the status to answer (400, 401, 404 or 409).
        """
        spec = next((s for s in self._specs if fnmatch.fnmatchcase(key, s.pattern)), None)
        if spec is None:
            raise WebhookRejected("no webhook is configured for this key", status=404)
        lowered = _lower(headers)
        delivery: str | None
        if spec.scheme == "standard":
            delivery = _verify_standard(
                body, lowered, spec.keys, now=self._clock(), tolerance_s=spec.tolerance_s
            )
        else:
            _verify_github(body, lowered.get("x-hub-signature-256"), spec.keys)
            delivery = lowered.get("x-github-delivery", "").strip() or None
            if delivery is not None and not _ID.fullmatch(delivery):
                raise WebhookRejected("malformed X-GitHub-Delivery header", status=400)
        if delivery is not None and not self.replay.check_and_remember(spec.namespace, delivery):
            raise WebhookRejected("this delivery was already received", status=409)
        return delivery

    def forget(self, key: str, webhook_id: str) -> None:
        """Forget a delivery `verify` accepted, so the sender's retry is not a replay (409).

        Call it when an accepted delivery could not be handled (the journal failed), before
        answering with an error the sender will retry on.

        Args:
            key: the wait key the delivery came to.
            webhook_id: what `verify` returned.
        """
        spec = next((s for s in self._specs if fnmatch.fnmatchcase(key, s.pattern)), None)
        if spec is not None:
            self.replay.forget(spec.namespace, webhook_id)
