"""The listening socket as `relay serve` builds it (relay/ingest/listen.py): idle and slow
connections are dropped after the idle deadline, and `host: "::"` answers on IPv4 too.

The deadline is a parameter: these tests use 0.5 s, and bound everything generously.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from relay.config.load import parse_config
from relay.ingest.listen import HTTPLimits, Listener, listen
from relay.ingest.signature import sign
from relay.service import Relay
from tests.process import RelayProcess, free_port

SECRET = "listen-test-secret"
IDLE = 0.5
BOUND = 10.0  # far above IDLE: a slow machine must not fail these tests


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """A whole relay (console destination, real SQLite), not yet listening."""
    config = parse_config(
        f'oneroute: {{secrets: ["{SECRET}"]}}\nstorage: sqlite:///{tmp_path}/relay.db\n'
        "destinations: {out: {type: console}}\nroutes: [{to: [out]}]\n", environ={})
    relay = Relay(config, tmp_path / "relay.yaml")
    await relay.start()
    yield relay
    await relay.stop()


@contextlib.asynccontextmanager
async def listening(relay: Relay, host: str = "127.0.0.1") -> AsyncIterator[Listener]:
    listener = await listen(relay.app(), host, 0, limits=HTTPLimits(idle=IDLE))
    try:
        yield listener
    finally:
        await listener.close()


async def post_webhook(host: str, port: int, n: int = 0) -> int:
    body = json.dumps({"event": "newMessage", "n": n}).encode()
    async with aiohttp.ClientSession() as session, session.post(
        f"http://{host}:{port}/webhooks/oneroute", data=body,
        headers={"x-oneroute-signature": sign(SECRET, body)},
    ) as response:
        return response.status


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (whatever it sends first)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_a_silent_connection_is_closed_after_the_idle_deadline(relay: Relay) -> None:
    async with listening(relay) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        started = time.monotonic()
        assert await closed_within(reader, BOUND), f"a silent connection is open after {BOUND} s"
        assert time.monotonic() - started >= IDLE / 2  # closed by the deadline, not at once
        writer.close()
        assert await post_webhook("127.0.0.1", listener.port) == 200


async def test_a_connection_trickling_header_lines_is_closed(relay: Relay) -> None:
    async with listening(relay) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        closed = asyncio.create_task(closed_within(reader, BOUND))
        writer.write(b"POST /webhooks/oneroute HTTP/1.1\r\nHost: relay\r\n")
        sent = 0
        while not closed.done():  # a header line every 0.1 s: each one "makes progress"
            with contextlib.suppress(ConnectionError):
                writer.write(b"X-Slow-%d: x\r\n" % sent)
                await writer.drain()
            sent += 1
            await asyncio.sleep(0.1)
        assert await closed, f"a connection trickling header lines is open after {BOUND} s"
        writer.close()
        # Meanwhile, and afterwards, a webhook is answered as usual.
        assert await post_webhook("127.0.0.1", listener.port, 1) == 200


async def test_a_keep_alive_connection_is_closed_when_idle_after_its_request(
    relay: Relay,
) -> None:
    async with listening(relay) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        body = b'{"event":"newMessage","n":2}'
        writer.write(
            b"POST /webhooks/oneroute HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            b"x-oneroute-signature: " + sign(SECRET, body).encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        assert await closed_within(reader, BOUND), "an idle keep-alive connection stays open"
        writer.close()


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_host_any_ipv6_answers_on_ipv4_and_ipv6(relay: Relay) -> None:
    async with listening(relay, "::") as listener:
        assert await post_webhook("127.0.0.1", listener.port, 3) == 200
        assert await post_webhook("[::1]", listener.port, 4) == 200


async def test_an_address_in_use_is_an_os_error_and_nothing_is_left_listening(
    relay: Relay,
) -> None:
    async with listening(relay) as listener:
        with pytest.raises(OSError):
            await listen(relay.app(), "127.0.0.1", listener.port, limits=HTTPLimits(idle=IDLE))


def test_limits_refuse_a_zero_idle_deadline() -> None:
    with pytest.raises(ValueError, match="idle"):
        HTTPLimits(idle=0)


async def test_a_malformed_request_is_400_and_one_log_line_without_traceback(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    requests = [
        b"POST /webhooks/oneroute HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"POST /webhooks/oneroute HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(70))
        + b"\r\n",
    ]
    async with listening(relay) as listener:
        for request in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(request)
            assert (await reader.readline()).split(b" ")[1] == b"400"
            writer.close()
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.getMessage() for r in lines] == [
        "refused: malformed HTTP request (400, LineTooLong)",
        "refused: malformed HTTP request (400, BadHttpMessage)",
    ]
    assert not any(r.exc_info for r in lines)  # a client's bytes cost no traceback


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_relay_serve_on_any_ipv6_answers_the_printed_curl_to_127_0_0_1(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "relay.yaml"
    config.write_text(
        f'server: {{host: "::", port: {port}}}\n'
        f'oneroute: {{secrets: ["{SECRET}"]}}\nstorage: sqlite:///{tmp_path}/relay.db\n'
        "destinations: {out: {type: console}}\nroutes: [{to: [out]}]\n"
    )
    relay = RelayProcess(config, port, SECRET)
    try:
        await relay.start()  # polls http://127.0.0.1:port/healthz
        assert await relay.post(b'{"event":"newMessage","n":5}') == 200
        assert await post_webhook("[::1]", port, 6) == 200
        relay.signal(signal.SIGTERM)
        assert await relay.wait() == 0
    finally:
        relay.stop_quietly()
