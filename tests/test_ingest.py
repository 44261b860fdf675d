"""The webhook endpoint, row by row of PRODUCT.md section 4, against a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from relay.config.load import parse_config
from relay.config.model import Config
from relay.errors import StoreUnavailable
from relay.ingest.server import MAX_BODY, Gate, Ingest, build_app
from relay.ingest.signature import sign
from relay.store.base import Accepted, Incoming
from relay.store.sqlite import SQLiteStore

SECRET = "test-secret-0123456789"
SAMPLES = Path(__file__).parent / "data" / "oneroute"
TEXT_EVENT = (SAMPLES / "new-message-text.json").read_bytes()

ClientMaker = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_config(**oneroute: Any) -> Config:
    settings = {"secrets": [SECRET, "rotated-secret-abcdef"], **oneroute}
    text = textwrap.dedent(
        f"""
        oneroute: {json.dumps(settings)}
        destinations:
          slack: {{type: console}}
          disabled: {{type: console, enabled: false}}
          telegram: {{type: console}}
        routes:
          - name: messages
            when: {{event: newMessage}}
            to: [slack, disabled]
            continue: true
          - name: all
            to: [telegram]
        """
    )
    return parse_config(text, environ={})


@pytest.fixture
def woken() -> list[tuple[str, ...]]:
    return []


@pytest.fixture
def client_for(
    aiohttp_client: ClientMaker, store: SQLiteStore, woken: list[tuple[str, ...]]
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    async def make(config: Config | None = None, store_: Any = None) -> TestClient[Any, Any]:
        ingest = Ingest(
            Gate.from_config(config or make_config()), store_ or store,
            on_accepted=lambda d: woken.append(tuple(d)),
        )
        return await aiohttp_client(build_app(ingest))

    return make


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-oneroute-signature": sign(secret, body), "content-type": "application/json"}


async def stored(store: SQLiteStore) -> dict[str, int]:
    return {b.destination: b.pending for b in await store.backlog()}


async def test_valid_event_is_stored_before_200_and_lanes_are_woken(
    client_for: Any, store: SQLiteStore, woken: list[tuple[str, ...]]
) -> None:
    client = await client_for()
    response = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=signed(TEXT_EVENT))
    assert response.status == 200
    answer = await response.json()
    assert answer["status"] == "accepted" and answer["destinations"] == ["slack", "telegram"]
    # Disabled destinations get no row; the answer came after the rows were committed.
    assert await stored(store) == {"slack": 1, "telegram": 1}
    (row,) = await store.claim("slack", 2e9, 10, 60, "t")
    assert row.body == TEXT_EVENT and row.conversation == "bf9d96d9-e495-489a-a22a-206b0ea44d90"
    assert woken == [("slack", "telegram")]


async def test_duplicate_body_is_200_and_not_stored_twice(
    client_for: Any, store: SQLiteStore
) -> None:
    client = await client_for()
    first = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=signed(TEXT_EVENT))
    again = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=signed(TEXT_EVENT))
    assert (first.status, again.status) == (200, 200)
    answer = await again.json()
    assert answer["status"] == "duplicate"
    assert answer["event_id"] == (await first.json())["event_id"]
    assert await stored(store) == {"slack": 1, "telegram": 1}


async def test_any_event_name_is_accepted(client_for: Any, store: SQLiteStore) -> None:
    client = await client_for()
    body = (SAMPLES / "unknown-event.json").read_bytes()
    response = await client.post("/webhooks/oneroute", data=body, headers=signed(body))
    assert response.status == 200 and (await response.json())["destinations"] == ["telegram"]


async def test_rotated_secret_and_reserialised_signature_are_accepted(client_for: Any) -> None:
    client = await client_for()
    compact = json.dumps(json.loads(TEXT_EVENT), separators=(",", ":")).encode()
    # Signed over JSON.stringify(JSON.parse(body)) as OneRoute's verifier does; sent pretty.
    response = await client.post(
        "/webhooks/oneroute", data=TEXT_EVENT.replace(b"Hello", b"Hullo"),
        headers={"x-oneroute-signature": sign(SECRET, compact.replace(b"Hello", b"Hullo"))},
    )
    assert response.status == 200
    body = b'{"event":"x","n":1}'
    response = await client.post("/webhooks/oneroute", data=body,
                                 headers=signed(body, "rotated-secret-abcdef"))
    assert response.status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-oneroute-signature": ""}, {"x-oneroute-signature": "00" * 64},
     {"x-oneroute-signature": sign("another-secret", TEXT_EVENT)}],
    ids=["missing", "empty", "zeros", "wrong-secret"],
)
async def test_bad_signature_is_401_and_nothing_stored(
    client_for: Any, store: SQLiteStore, headers: dict[str, str]
) -> None:
    client = await client_for()
    response = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"
    assert await stored(store) == {}


async def test_tampered_body_is_401(client_for: Any, store: SQLiteStore) -> None:
    client = await client_for()
    headers = signed(TEXT_EVENT)
    response = await client.post("/webhooks/oneroute", data=TEXT_EVENT.replace(b"Hello", b"Hi"),
                                 headers=headers)
    assert response.status == 401 and await stored(store) == {}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[1,2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"{not json", "not JSON"),
        (b'{"n": NaN}', "not JSON"),
        (b"", "not JSON"),
        (b'{"a":"\xff"}', "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
async def test_signed_body_that_is_not_a_json_object_is_400(
    client_for: Any, store: SQLiteStore, body: bytes, detail: str
) -> None:
    client = await client_for()
    response = await client.post("/webhooks/oneroute", data=body, headers=signed(body))
    assert response.status == 400
    assert detail in (await response.json())["detail"]
    assert await stored(store) == {}


async def test_body_over_1_mib_is_413(client_for: Any, store: SQLiteStore) -> None:
    client = await client_for()
    big = b'{"event":"x","pad":"' + b"a" * MAX_BODY + b'"}'
    response = await client.post("/webhooks/oneroute", data=big, headers=signed(big))
    assert response.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(20):
            yield b"a" * 65536

    response = await client.post("/webhooks/oneroute", data=chunks(), headers=signed(b"x"))
    assert response.status == 413
    assert await stored(store) == {}


async def test_exactly_1_mib_is_accepted(client_for: Any) -> None:
    client = await client_for()
    prefix, suffix = b'{"event":"x","pad":"', b'"}'
    body = prefix + b"a" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY
    response = await client.post("/webhooks/oneroute", data=body, headers=signed(body))
    assert response.status == 200


async def test_address_not_allowed_is_403_and_nothing_stored(
    client_for: Any, store: SQLiteStore
) -> None:
    client = await client_for(make_config(allowed_ips=["174.138.104.128"]))
    response = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=signed(TEXT_EVENT))
    assert response.status == 403
    # X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    response = await client.post(
        "/webhooks/oneroute", data=TEXT_EVENT,
        headers={**signed(TEXT_EVENT), "X-Forwarded-For": "174.138.104.128"},
    )
    assert response.status == 403
    assert await stored(store) == {}


async def test_trusted_proxy_forwarded_address_is_judged(client_for: Any) -> None:
    config = make_config(allowed_ips=["174.138.104.128"], trusted_proxies=["127.0.0.1"])
    client = await client_for(config)
    ok = await client.post(
        "/webhooks/oneroute", data=TEXT_EVENT,
        headers={**signed(TEXT_EVENT), "X-Forwarded-For": "6.6.6.6, 174.138.104.128"},
    )
    forged = await client.post(
        "/webhooks/oneroute", data=b'{"event":"y"}',
        headers={**signed(b'{"event":"y"}'), "X-Forwarded-For": "174.138.104.128, 6.6.6.6"},
    )
    assert (ok.status, forged.status) == (200, 403)


class BrokenStore:
    async def accept(self, incoming: Incoming) -> Accepted:
        raise StoreUnavailable("disk I/O error")


async def test_store_unavailable_is_503_never_200(client_for: Any) -> None:
    client = await client_for(store_=BrokenStore())
    response = await client.post("/webhooks/oneroute", data=TEXT_EVENT, headers=signed(TEXT_EVENT))
    assert response.status == 503
    assert (await response.json())["error"] == "unavailable"


async def test_requests_during_one_commit_share_it(client_for: Any, store: SQLiteStore) -> None:
    client = await client_for()
    bodies = [json.dumps({"event": "newMessage", "n": i}).encode() for i in range(50)]
    responses = await asyncio.gather(
        *(client.post("/webhooks/oneroute", data=b, headers=signed(b)) for b in bodies)
    )
    assert [r.status for r in responses] == [200] * 50
    assert await stored(store) == {"slack": 50, "telegram": 50}


async def test_healthz_and_wrong_method(client_for: Any) -> None:
    client = await client_for()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/webhooks/oneroute")).status == 405


def test_app_has_the_configured_path() -> None:
    config = parse_config(
        'server: {path: /hooks/or}\noneroute: {secrets: ["0123456789"]}\n', environ={}
    )
    app = build_app(Ingest(Gate.from_config(config), store=None))  # type: ignore[arg-type]
    assert any(
        isinstance(r, web.AbstractRoute) and r.method == "POST"
        and r.resource is not None and r.resource.canonical == "/hooks/or"
        for r in app.router.routes()
    )


# --- what the signature covers is what is stored, de-duplicated and routed -------------------


async def test_variants_signed_over_the_same_reserialisation_are_one_event(
    client_for: Any, store: SQLiteStore
) -> None:
    canonical = b'{"event":"newMessage","message":{"content":"caf\xc3\xa9"},"n":1}'
    variants = [
        b'{ "event": "newMessage", "message": { "content": "caf\xc3\xa9" }, "n": 1 }',
        b'{"event":"newMessage",\n  "message":{"content":"caf\\u00e9"},"n":1.0}',
        b'{"\\u0065vent":"newMessage","message":{"content":"caf\\u00E9"},"n":10e-1}',
    ]
    client = await client_for()
    signature = {"x-oneroute-signature": sign(SECRET, canonical)}
    answers = []
    for body in variants:
        response = await client.post("/webhooks/oneroute", data=body, headers=signature)
        assert response.status == 200
        answers.append(await response.json())
    assert [a["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
    assert len({a["event_id"] for a in answers}) == 1
    assert await stored(store) == {"slack": 1, "telegram": 1}
    (row,) = await store.claim("slack", 2e9, 10, 60, "t")
    assert row.body == canonical  # what the signature covered, which lanes render


async def test_an_event_accepted_through_its_reserialisation_is_routed_as_node_reads_it(
    client_for: Any, store: SQLiteStore
) -> None:
    config = parse_config(
        f'oneroute: {{secrets: ["{SECRET}"]}}\n'
        "destinations: {nulls: {type: console}, others: {type: console}}\n"
        "routes: [{when: {n: null}, to: [nulls]}, {to: [others]}]\n",
        environ={},
    )
    client = await client_for(config)
    body = b'{"event":"x","n":1e999}'  # JSON.stringify writes Infinity as null
    response = await client.post(
        "/webhooks/oneroute", data=body,
        headers={"x-oneroute-signature": sign(SECRET, b'{"event":"x","n":null}')},
    )
    assert response.status == 200
    assert (await response.json())["destinations"] == ["nulls"]
    (row,) = await store.claim("nulls", 2e9, 10, 60, "t")
    assert row.body == b'{"event":"x","n":null}'
    # Signed over its raw bytes, a body is kept as it came.
    raw = b'{"event":"y", "n": 2}'
    response = await client.post("/webhooks/oneroute", data=raw, headers=signed(raw))
    assert (await response.json())["destinations"] == ["others"]
    (row,) = await store.claim("others", 2e9, 10, 60, "t")
    assert row.body == raw
