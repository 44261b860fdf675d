"""Signing and verifying the `x-oneroute-signature` header of OneRoute webhooks.

The header is the lowercase hex HMAC-SHA512 of the body. OneRoute's documented verifier
hashes `JSON.stringify(req.body)` (Node's re-serialisation), not the raw bytes, so a body
is accepted when the signature matches either the raw bytes or that re-serialisation
(see relay.ingest.jsjson). Several secrets may be configured at once for key rotation.

A match says which bytes the signature covered (`Verified.signed`): ingest stores,
de-duplicates and parses those, so that two spellings of one signed event are one event,
and the event routed is the one the signature vouches for (`1e999` is `null` to Node).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise

__all__ = ["SIGNATURE_HEADER", "Reserialise", "Verified", "Verifier", "sign"]

SIGNATURE_HEADER = "x-oneroute-signature"

_DIGEST = "sha512"
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")  # 64-byte digest; ASCII hex only


def _key(secret: str) -> bytes:
    # Node's createHmac(alg, string) keys with the string's UTF-8 bytes.
    return secret.encode("utf-8")


Reserialise = Callable[[bytes], Awaitable[bytes]]  # js_reserialise, maybe run elsewhere


@dataclass(frozen=True, slots=True)
class Verified:
    """A body whose signature matched, and the bytes that signature covered."""

    signed: bytes  # the raw body, or its JSON.stringify(JSON.parse()) when only that matched
    reserialised: bool


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

    def _expected(self, signature: str | None) -> bytes | None:
        if not signature:
            return None
        signature = signature.strip()
        if _SIGNATURE.fullmatch(signature) is None:
            return None
        return bytes.fromhex(signature)

    def _over(self, body: bytes, canonical: bytes, expected: bytes) -> Verified | None:
        if canonical != body and self._matches(canonical, expected):
            return Verified(canonical, reserialised=True)
        return None

    def verify(self, body: bytes, signature: str | None) -> Verified | None:
        """What `signature` covers, when it is the HMAC-SHA512 hex of the raw body, or else
        of js_reserialise(body), under any configured secret; None when it is neither.

        The header is compared case-insensitively after stripping whitespace. A missing,
        empty, non-hex or wrong-length signature is None without re-serialising; so is a
        body that JSON.parse would reject, unless its raw bytes match (JSON validity is
        checked elsewhere).
        """
        expected = self._expected(signature)
        if expected is None:
            return None
        if self._matches(body, expected):
            return Verified(body, reserialised=False)
        try:
            canonical = js_reserialise(body)
        except JSONParseError:
            return None
        return self._over(body, canonical, expected)

    async def verify_with(
        self, body: bytes, signature: str | None, reserialise: Reserialise
    ) -> Verified | None:
        """verify(), with the re-serialisation done by `reserialise` (e.g. in another
        process: relay.ingest.offload); its exceptions other than JSONParseError pass."""
        expected = self._expected(signature)
        if expected is None:
            return None
        if self._matches(body, expected):
            return Verified(body, reserialised=False)
        try:
            canonical = await reserialise(body)
        except JSONParseError:
            return None
        return self._over(body, canonical, expected)
