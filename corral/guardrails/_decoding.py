r"""Hidden payloads: encoded blobs and escapes, decoded to text for another scan.

An attacker may hide instructions in base64 (standard or URL-safe), hex, rot13, or in
``%XX``, ``\uXXXX``, ``\xXX`` and ``&#NN;`` escapes. `ROT13` is the table the detector
rotates a whole text with (one C-speed ``bytes.translate``). `blob_candidates` finds runs that
may be base64 or hex (a C-speed gate first), `decode_blob` turns one into readable text
or None (binary data is not text), and `escape_tokens` / `decode_escapes` find and
decode the escapes in place. The detector scans what they decode, to a bounded depth.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Iterable

__all__ = ["ROT13", "blob_candidates", "decode_blob", "decode_escapes", "escape_tokens"]

ROT13 = bytes.maketrans(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b"nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
"""``bytes.translate`` table rotating ASCII letters by 13 (its own inverse)."""

_CANDIDATE_RE = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_B64_MASK = bytes(
    97 if (b < 128 and (chr(b).isalnum() or chr(b) in "+/_-=")) else 32 for b in range(256)
)
_B64_RUN = b"a" * 24
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_PERCENT_TOKEN_RE = re.compile(r"%[0-9A-Fa-f]{2}")
_BACKSLASH_TOKEN_RE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2})")
_ENTITY_TOKEN_RE = re.compile(r"&#(?:[xX][0-9A-Fa-f]{1,6}|\d{1,7});")
_ESCAPE_TOKEN_RE = re.compile(
    r"\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|%[0-9A-Fa-f]{2}|&#(?:[xX][0-9A-Fa-f]{1,6}|\d{1,7});"
)


def _printable_text(data: bytes) -> str | None:
    """The bytes as text when they look like human-readable text, else None."""
    if len(data) < 8:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CANDIDATE_RE.fullmatch(text):
        return text  # encoded twice: decode again one level down
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    if printable < 0.95 * len(text) or " " not in text:
        return None
    letters = sum(1 for c in text if c.isalpha())
    return text if letters >= 0.5 * len(text.replace(" ", "")) else None


def _decode_token(m: re.Match[str]) -> str:
    token = m.group()
    try:
        if token[0] == "%":
            return chr(int(token[1:], 16))
        if token[0] == "&":
            return html.unescape(token)
        return chr(int(token[2:], 16))
    except (ValueError, OverflowError):
        return token


def decode_blob(blob: str) -> tuple[str, str] | None:
    """Decode a base64 or hex blob to readable text.

    Args:
        blob: one of the `blob_candidates`.

    Returns:
        ``(encoding, text)``, the encoding ``hex`` or ``base64``; None when the blob
        does not decode, or decodes to something that does not read as text.
    """
    core = blob.rstrip("=")
    if len(core) % 2 == 0 and _HEX_RE.fullmatch(core):
        try:
            text = _printable_text(bytes.fromhex(core))
        except ValueError:
            text = None
        if text is not None:
            return "hex", text
    normal = core.replace("-", "+").replace("_", "/")
    if len(normal) % 4 == 1:
        normal = normal[:-1]
    normal += "=" * (-len(normal) % 4)
    try:
        raw = base64.b64decode(normal, validate=True)
    except (binascii.Error, ValueError):
        return None
    text = _printable_text(raw)
    return ("base64", text) if text is not None else None


def blob_candidates(text: str) -> Iterable[re.Match[str]]:
    """Runs of 24 or more base64 characters, each a blob that may hide a payload.

    Args:
        text: the text scanned.

    Returns:
        The candidate runs, in text order; nothing when the text has no such run.
    """
    # Cheap gate (C speed): is there any run of 24+ base64 characters at all?
    if _B64_RUN in text.encode("utf-8", "replace").translate(_B64_MASK):
        return _CANDIDATE_RE.finditer(text)
    return ()


def escape_tokens(text: str) -> list[re.Match[str]]:
    r"""Every %XX, \uXXXX, \xXX and &#NN; escape in a text.

    Args:
        text: the text scanned.

    Returns:
        The escapes, in text order.
    """
    # One literal-led regex per escape kind: each scans at C speed, unlike one alternation.
    tokens: list[re.Match[str]] = []
    if "%" in text:
        tokens.extend(_PERCENT_TOKEN_RE.finditer(text))
    if "\\" in text:
        tokens.extend(_BACKSLASH_TOKEN_RE.finditer(text))
    if "&#" in text:
        tokens.extend(_ENTITY_TOKEN_RE.finditer(text))
    tokens.sort(key=lambda m: m.start())
    return tokens


def decode_escapes(text: str) -> str:
    """The text with every escape decoded in place (an undecodable one is kept as is).

    Args:
        text: the text scanned.

    Returns:
        The decoded view of the text.
    """
    return _ESCAPE_TOKEN_RE.sub(_decode_token, text)
