"""Signing and verifying the `x-oneroute-signature` header of OneRoute webhooks.

The header is the lowercase hex HMAC-SHA512 of the body. OneRoute's documented verifier
hashes `JSON.stringify(req.body)` (Node's re-serialisation), not the raw bytes, so a body
is accepted when the signature matches either the raw bytes or that re-serialisation
(see relay.ingest.jsjson). Several secrets may be configured at once for key rotation.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise

__all__ = ["SIGNATURE_HEADER", "Verifier", "sign"]

SIGNATURE_HEADER = "x-oneroute-signature"

_DIGEST = "sha512"
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")  # 64-byte digest; ASCII hex only


def _key(secret: str) -> bytes:
    # Node's createHmac(alg, string) keys with the string's UTF-8 bytes.
    return secret.encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA512 of `body` under `secret`, as OneRoute sends it."""
    return hmac.digest(_key(secret), body, _DIGEST).hex()


class Verifier:
    """Checks signatures against one or more secrets (several during a key rotation)."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if isinstance(secrets, str):  # a str is a Sequence[str]: one key per character
            raise TypeError("secrets must be a sequence of strings, not a string")
        keys = tuple(_key(secret) for secret in secrets)
        if not keys:
            raise ValueError("at least one secret is required")
        if not all(keys):
            raise ValueError("secrets must not be empty")  # anyone could sign with ""
        self._keys = keys

    def _matches(self, message: bytes, expected: bytes) -> bool:
        # Every secret is tried, in constant time, whatever the outcome of the others.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(hmac.digest(key, message, _DIGEST), expected)
        return matched

    def verify(self, body: bytes, signature: str | None) -> bool:
        """True when `signature` is the HMAC-SHA512 hex of the raw body, or else of
        js_reserialise(body), under any configured secret.

        The header is compared case-insensitively after stripping whitespace. A missing,
        empty, non-hex or wrong-length signature is False without re-serialising; so is a
        body that JSON.parse would reject, unless its raw bytes match (JSON validity is
        checked elsewhere).
        """
        if not signature:
            return False
        signature = signature.strip()
        if _SIGNATURE.fullmatch(signature) is None:
            return False
        expected = bytes.fromhex(signature)
        if self._matches(body, expected):
            return True
        try:
            canonical = js_reserialise(body)
        except JSONParseError:
            return False
        return canonical != body and self._matches(canonical, expected)
