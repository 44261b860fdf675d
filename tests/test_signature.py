"""Signing and verification of x-oneroute-signature, against OneRoute's reference vectors."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from relay.errors import JSONParseError
from relay.ingest import signature as signature_module
from relay.ingest.jsjson import js_reserialise
from relay.ingest.signature import SIGNATURE_HEADER, Verified, Verifier, sign

DATA = Path(__file__).resolve().parent / "data" / "oneroute"
VECTORS: list[dict[str, Any]] = json.loads((DATA / "signature-vectors.json").read_text())
SECRET = "OneRoute Secret Key"
BODY = (DATA / "new-message-text.json").read_bytes()


def by_name(name: str) -> dict[str, Any]:
    return next(vector for vector in VECTORS if vector["name"] == name)


def test_vectors_cover_both_paths() -> None:
    flags = {vector["raw_bytes_match"] for vector in VECTORS}
    assert flags == {True, False}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_reference_vectors(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    secret = vector["secret"]
    assert Verifier([secret]).verify(body, vector["signature"])
    if vector["raw_bytes_match"]:
        assert sign(secret, body) == vector["signature"]
    else:
        assert sign(secret, body) != vector["signature"]
        assert sign(secret, js_reserialise(body)) == vector["signature"]


def test_header_name() -> None:
    assert SIGNATURE_HEADER == "x-oneroute-signature"


def test_sign_is_lowercase_hex_hmac_sha512() -> None:
    signature = sign("s3cret", b"body")
    assert signature == hmac.new(b"s3cret", b"body", hashlib.sha512).hexdigest()
    assert len(signature) == 128
    assert signature == signature.lower()


def test_sign_keys_with_utf8() -> None:
    # Node's createHmac(alg, string) uses the string's UTF-8 bytes as the key.
    expected = hmac.new("clé🔑".encode(), b"x", hashlib.sha512).hexdigest()
    assert sign("clé🔑", b"x") == expected


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_rotation_any_secret_matches(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    assert Verifier(["old secret", vector["secret"]]).verify(body, vector["signature"])
    assert Verifier([vector["secret"], "next secret"]).verify(body, vector["signature"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_wrong_secret(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    assert not Verifier(["not the secret"]).verify(body, vector["signature"])
    assert not Verifier(["a", "b", "c"]).verify(body, vector["signature"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_tampered_body(vector: dict[str, Any]) -> None:
    body = vector["body"].replace("customer@example.com", "attacker@example.com").encode()
    assert body != vector["body"].encode()
    assert not Verifier([vector["secret"]]).verify(body, vector["signature"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_tampered_signature(vector: dict[str, Any]) -> None:
    signature = vector["signature"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert not Verifier([vector["secret"]]).verify(vector["body"].encode(), flipped)


def test_signature_is_case_insensitive_and_stripped() -> None:
    verifier = Verifier([SECRET])
    signature = sign(SECRET, BODY)
    assert verifier.verify(BODY, signature.upper())
    assert verifier.verify(BODY, f"  {signature}\t")
    pretty = by_name("pretty-printed")
    assert verifier.verify(pretty["body"].encode(), pretty["signature"].upper())


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "garbage",
        "z" * 128,
        "0" * 127,
        "0" * 129,
        "sha512=" + "0" * 128,
        "0" * 64 + " " + "0" * 63,  # bytes.fromhex would accept inner spaces
        "０" * 128,  # fullwidth digits: not ASCII hex
    ],
    ids=repr,
)
def test_malformed_signature_is_rejected_without_reserialising(
    header: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(body: bytes) -> bytes:
        raise AssertionError("re-serialised for a malformed signature")

    monkeypatch.setattr(signature_module, "js_reserialise", must_not_run)
    pretty = by_name("pretty-printed")["body"].encode()
    assert not Verifier([SECRET]).verify(pretty, header)


def test_near_miss_signatures_are_rejected() -> None:
    signature = sign(SECRET, BODY)
    verifier = Verifier([SECRET])
    assert not verifier.verify(BODY, signature[:-2])
    assert not verifier.verify(BODY, signature + "00")


def test_raw_match_does_not_reserialise(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(body: bytes) -> bytes:
        raise AssertionError("re-serialised although the raw bytes matched")

    monkeypatch.setattr(signature_module, "js_reserialise", must_not_run)
    assert Verifier(["old", SECRET]).verify(BODY, sign(SECRET, BODY))


def test_non_json_body_with_raw_match_is_accepted() -> None:
    # JSON validity is the receiver's concern, not the signature's.
    body = b"not json at all \xff"
    assert Verifier([SECRET]).verify(body, sign(SECRET, body))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{", b"NaN", b"[1,]", b"[" * 100_000, b"\xff\xfe"],
    ids=repr,
)
def test_body_json_parse_rejects_is_false_not_an_exception(body: bytes) -> None:
    signature = sign(SECRET, b"{}")
    assert not Verifier([SECRET]).verify(body, signature)


def test_reserialised_match_with_invalid_utf8() -> None:
    # Node decodes \xff to U+FFFD before JSON.stringify; a signature over that is accepted.
    body = b'{"content": "caf\xff"}'
    signature = sign(SECRET, '{"content":"caf\ufffd"}'.encode())
    assert sign(SECRET, js_reserialise(body)) == signature
    assert Verifier([SECRET]).verify(body, signature)


def test_reserialised_match_under_second_secret() -> None:
    pretty = by_name("pretty-printed")
    verifier = Verifier(["first", "second", pretty["secret"]])
    assert verifier.verify(pretty["body"].encode(), pretty["signature"])


def test_signature_of_the_reserialisation_does_not_cover_other_documents() -> None:
    # Same reserialisation only when Node would produce the same bytes.
    signature = sign(SECRET, b'{"a":1}')
    verifier = Verifier([SECRET])
    assert verifier.verify(b'{ "a" : 1.0 }', signature)
    assert not verifier.verify(b'{"a":1,"b":2}', signature)
    assert not verifier.verify(b'{"a":"1"}', signature)


@pytest.mark.parametrize(
    ("secrets", "error"),
    [([], ValueError), ([""], ValueError), (["ok", ""], ValueError), ("secret", TypeError)],
    ids=["none", "empty", "one-empty", "bare-string"],
)
def test_verifier_rejects_bad_secrets(secrets: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Verifier(secrets)


def test_verifier_accepts_any_sequence() -> None:
    assert Verifier((SECRET,)).verify(BODY, sign(SECRET, BODY))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_verify_tells_which_bytes_the_signature_covered(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    verified = Verifier([vector["secret"]]).verify(body, vector["signature"])
    assert verified is not None
    if vector["raw_bytes_match"]:
        assert verified == Verified(body, reserialised=False)
    else:
        assert verified == Verified(js_reserialise(body), reserialised=True)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
async def test_verify_with_a_reserialiser_agrees_with_verify(vector: dict[str, Any]) -> None:
    calls: list[bytes] = []

    async def reserialise(body: bytes) -> bytes:
        calls.append(body)
        return js_reserialise(body)

    body, verifier = vector["body"].encode(), Verifier([vector["secret"]])
    verified = await verifier.verify_with(body, vector["signature"], reserialise)
    assert verified == verifier.verify(body, vector["signature"])
    assert calls == ([] if vector["raw_bytes_match"] else [body])  # only when raw fails
    assert await verifier.verify_with(body, "0" * 128, reserialise) is None
    assert await verifier.verify_with(body, "not hex", reserialise) is None
    assert len(calls) == (1 if vector["raw_bytes_match"] else 2)  # not for a malformed one


async def test_verify_with_passes_the_reserialisers_refusal_on() -> None:
    class Busy(Exception):
        pass

    async def busy(body: bytes) -> bytes:
        raise Busy

    async def unparsable(body: bytes) -> bytes:
        raise JSONParseError("nope")

    verifier = Verifier([SECRET])
    with pytest.raises(Busy):  # not None: the body was not checked
        await verifier.verify_with(b"{}", sign(SECRET, b"{ }"), busy)
    assert await verifier.verify_with(b"{", sign(SECRET, b"{}"), unparsable) is None
