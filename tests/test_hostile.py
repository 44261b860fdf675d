"""Hostile input: whatever arrives, the relay answers (never 500), stays up, and keeps what it
acknowledged — including when the disk fills up or goes read-only, and against slow clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.config.load import parse_config
from relay.ingest import server as ingest_server
from relay.ingest.jsjson import js_reserialise
from relay.ingest.signature import sign
from relay.service import Relay
from relay.store import Store
from relay.store.sqlite import SQLiteStore
from tests.waiting import until_async

SECRET = "hostile-test-secret"
ANSWERS = {200, 400, 401, 403, 408, 413}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
objects = st.dictionaries(st.text(max_size=12), json_values, max_size=8)
# OneRoute-shaped events with any field of the wrong type, or null.
wrong = st.none() | st.integers() | st.text(max_size=30) | st.lists(st.integers(), max_size=2) \
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2) | st.booleans()
oneroute_events = st.fixed_dictionaries({
    "event": st.sampled_from(["newMessage", "compaignDeliveryReport", "x"]) | wrong,
    "message": wrong | st.fixed_dictionaries({
        "sender": wrong | st.fixed_dictionaries({"name": wrong, "authUser": wrong}),
        "content": wrong, "imageUrl": wrong, "quoted_message_id": wrong,
        "conversation_id": wrong,
    }),
    "conversation": wrong | st.fixed_dictionaries({
        "id": wrong, "status": wrong, "customer": wrong,
        "Channel": wrong | st.fixed_dictionaries({"name": wrong, "medium": wrong}),
    }),
    "campaignReportUrl": wrong,
})


class Running:
    def __init__(self, relay: Relay, client: TestClient[Any, Any]) -> None:
        self.relay, self.client = relay, client

    async def post(self, body: bytes, **headers: str) -> int:
        response = await self.client.post(
            "/webhooks/oneroute", data=body,
            headers={"x-oneroute-signature": sign(SECRET, body), **headers},
        )
        return response.status


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """A whole relay (console destination, real SQLite) behind a real HTTP server."""
    config = parse_config(
        f'oneroute: {{secrets: ["{SECRET}"]}}\nstorage: sqlite:///{tmp_path}/relay.db\n'
        "destinations: {out: {type: console}}\nroutes: [{to: [out]}]\n", environ={})
    relay = Relay(config, tmp_path / "relay.yaml")
    await relay.start()
    client = TestClient(TestServer(relay.app()))
    await client.start_server()
    yield Running(relay, client)
    await client.close()
    await relay.stop()


fuzz = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(body=st.binary(max_size=2048), signed=st.booleans(),
       content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data",
                                     "application/x-www-form-urlencoded; charset=latin1"]))
async def test_random_bytes_are_answered_never_500(
    running: Running, body: bytes, signed: bool, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if not signed:
        response = await running.client.post("/webhooks/oneroute", data=body, headers=headers)
        assert response.status == 401
        return
    status = await running.post(body, **headers)
    assert status in ANSWERS
    is_object = False
    with contextlib.suppress(UnicodeDecodeError, ValueError, RecursionError):
        is_object = isinstance(json.loads(body.decode("utf-8"), parse_constant=_no_nan), dict)
    assert (status == 200) == is_object


def _no_nan(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@fuzz
@given(event=objects | oneroute_events)
async def test_every_validly_signed_json_object_is_stored(
    running: Running, event: dict[str, Any]
) -> None:
    body = json.dumps(event).encode()
    assert await running.post(body) == 200
    answer = await running.client.post(
        "/webhooks/oneroute", data=body, headers={"x-oneroute-signature": sign(SECRET, body)})
    assert (await answer.json())["status"] == "duplicate"  # it is in the store


async def test_deep_nesting_huge_strings_and_odd_encodings(running: Running) -> None:
    assert await running.post(b'{"a":' * 100 + b"1" + b"}" * 100) == 200
    assert await running.post(b"[" * 100_000 + b"]" * 100_000) in (400, 413)
    assert await running.post(b'{"a":' * 50_000 + b"1" + b"}" * 50_000) == 400
    huge = b'{"event":"newMessage","message":{"content":"' + b"x" * 1_000_000 + b'"}}'
    assert await running.post(huge) == 200
    assert await running.post(b'{"n":' + b"9" * 5000 + b"}") == 200  # JS reads it as 1e5000
    assert await running.post('{"emoji":"😀","rtl":"مرحبا","nul":"\\u0000"}'.encode()) == 200
    assert await running.post(b'{"lone":"\\ud800"}') == 200
    assert await running.post("{\"latin1\":\"caf\xe9\"}".encode("latin-1")) == 400
    assert await running.post(b"\xef\xbb\xbf{}") == 400  # a BOM is not JSON
    assert await running.post('{"a":1}'.encode("utf-16")) == 400
    status, _ = await healthz(running)
    assert status == 200


async def healthz(running: Running) -> tuple[int, str]:
    response = await running.client.get("/healthz")
    return response.status, await response.text()


async def test_every_field_of_a_oneroute_event_may_be_wrong_and_still_delivered(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        {"event": "newMessage", "message": None, "conversation": None},
        {"event": "newMessage", "message": [1, 2], "conversation": "x"},
        {"event": None},
        {"event": 42, "message": {"content": {"nested": True}, "sender": "just text"}},
        {"event": "compaignDeliveryReport", "message": 5, "campaignReportUrl": ["x"]},
        {},
    ]
    for event in events:
        assert await running.post(json.dumps(event).encode()) == 200
    store = running.relay.store
    await until_async(lambda: no_backlog(store))
    assert await store.dead_count() == 0


async def no_backlog(store: Store) -> bool:
    return not await store.backlog()


# --- storage faults ----------------------------------------------------------------------------


async def set_pragma(store: SQLiteStore, pragma: str) -> None:
    await store._call(lambda db: db.execute(f"PRAGMA {pragma}").fetchall())


async def test_full_disk_answers_503_and_recovers_delivering_everything_acknowledged(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    store = running.relay.store
    assert isinstance(store, SQLiteStore)
    # SQLite's own limit on the file's pages gives the same SQLITE_FULL as a full disk.
    pages = (await store._call(lambda db: db.execute("PRAGMA page_count").fetchone()))[0]
    await set_pragma(store, f"max_page_count = {pages + 2}")
    statuses = []
    for n in range(60):
        body = json.dumps({"event": "newMessage",
                           "message": {"content": f"message-{n}-end", "pad": "p" * 3000}}).encode()
        statuses.append((n, await running.post(body)))
    accepted = [n for n, status in statuses if status == 200]
    refused = [n for n, status in statuses if status == 503]
    assert refused, "the store should have filled up"
    assert set(accepted) | set(refused) == set(range(60))
    await set_pragma(store, "max_page_count = 1073741823")  # the disk has room again
    body = json.dumps({"event": "newMessage", "n": "after"}).encode()
    assert await running.post(body) == 200
    await until_async(lambda: no_backlog(store), within=30)
    out = capsys.readouterr().out
    for n in accepted:
        assert f"message-{n}-end" in out, n


async def readyz_status(running: Running) -> int:
    return (await running.client.get("/readyz")).status


async def wait_for_readyz(running: Running, status: int) -> None:
    """/readyz probes the store at most once a second: wait for it to see the change."""

    async def answers() -> bool:
        return await readyz_status(running) == status

    await until_async(answers)


@pytest.mark.parametrize("fault", ["read-only", "full"])
async def test_a_store_that_cannot_take_events_is_not_ready_until_it_can(
    running: Running, fault: str
) -> None:
    store = running.relay.store
    assert isinstance(store, SQLiteStore)
    assert await readyz_status(running) == 200
    if fault == "read-only":
        await set_pragma(store, "query_only = ON")  # every write fails as on a read-only disk
    else:  # SQLite's own page limit gives the SQLITE_FULL of a full disk
        await store._call(lambda db: db.execute("VACUUM"))  # no free pages left to reuse
        pages = (await store._call(lambda db: db.execute("PRAGMA page_count").fetchone()))[0]
        await set_pragma(store, f"max_page_count = {pages}")
    await wait_for_readyz(running, 503)  # a load balancer stops sending here
    assert await running.post(json.dumps({"event": "x", "pad": "p" * 9000}).encode()) == 503
    await set_pragma(store, "query_only = OFF")
    await set_pragma(store, "max_page_count = 1073741823")
    await wait_for_readyz(running, 200)
    assert await running.post(b'{"event":"ro","n":1}') == 200


# --- slow clients ------------------------------------------------------------------------------


async def test_slow_clients_do_not_starve_others(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_server, "BODY_TIMEOUT", 1.0)
    host, port = running.client.host, running.client.port
    slow: list[asyncio.StreamWriter] = []
    for _ in range(50):  # each promises a body and sends it a byte at a time, or never
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /webhooks/oneroute HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                     b"x-oneroute-signature: " + b"0" * 128 + b"\r\n\r\n{")
        await writer.drain()
        slow.append(writer)
    started = time.monotonic()
    for n in range(20):
        assert await running.post(json.dumps({"event": "fast", "n": n}).encode()) == 200
    assert time.monotonic() - started < 5.0
    # The slow ones are cut off after the body timeout with 408, not left holding on.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /webhooks/oneroute HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    assert status_line.startswith(b"HTTP/1.1 408")
    for stream in [*slow, writer]:
        stream.close()


# --- a CPU amplifier -----------------------------------------------------------------------------


def numbers_body(size: int = 1024 * 1024 - 64) -> bytes:
    """An object of ~`size` bytes of small floats: the costliest JSON for js_reserialise to
    re-serialise, per byte (BENCHMARKS.md), so the costliest wrong signature to check."""
    return b'{"event":"x","v":[' + b",".join([b"1.5"] * (size // 4)) + b"]}"


async def test_large_bodies_with_a_wrong_signature_do_not_stall_other_requests(
    running: Running,
) -> None:
    bad = numbers_body(512 * 1024)
    wrong = {"x-oneroute-signature": "0" * 128}
    checks = [
        asyncio.create_task(running.client.post("/webhooks/oneroute", data=bad, headers=wrong))
        for _ in range(2)
    ]
    answered = 0
    while not all(check.done() for check in checks):
        body = json.dumps({"event": "during", "n": answered}).encode()
        assert await running.post(body) == 200
        answered += 1
    assert [(await check).status for check in checks] == [401, 401]
    # Checking one such body costs 0.2-0.4 s of CPU; on the event loop it let one or two
    # webhooks through in all that time.
    assert answered >= 10, f"{answered} webhooks answered while 2 large bodies were checked"


async def test_a_large_body_signed_over_its_reserialisation_is_accepted(
    running: Running,
) -> None:
    body = json.dumps({"event": "big", "n": [1.0, 2e0], "text": "é" * 512_000}, ensure_ascii=False)
    body = body.encode()
    assert 1000 * 1024 < len(body) <= 1024 * 1024
    canonical = js_reserialise(body)
    response = await running.client.post(
        "/webhooks/oneroute", data=body,
        headers={"x-oneroute-signature": sign(SECRET, canonical)})
    assert response.status == 200
    assert (await response.json())["status"] == "accepted"
    again = await running.client.post(
        "/webhooks/oneroute", data=canonical,
        headers={"x-oneroute-signature": sign(SECRET, canonical)})
    assert (await again.json())["status"] == "duplicate"


async def test_large_bodies_beyond_the_checks_capacity_are_503_never_401(
    running: Running,
) -> None:
    running.relay.ingest.reserialiser.capacity = 1
    bad = numbers_body(256 * 1024)
    wrong = {"x-oneroute-signature": "0" * 128}
    responses = await asyncio.gather(*(
        running.client.post("/webhooks/oneroute", data=bad, headers=wrong) for _ in range(3)))
    statuses = sorted(response.status for response in responses)
    # One is checked (401); those that arrive while it is are not, and say "retry later".
    assert 503 in statuses and set(statuses) <= {401, 503}, statuses
    for response in responses:
        expected = "unavailable" if response.status == 503 else "unauthorized"
        assert (await response.json())["error"] == expected
    assert await running.relay.store.backlog() == []
