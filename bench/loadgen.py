"""A Python load generator for when wrk is not installed, run as its own process.

Keep-alive HTTP/1.1 connections, each sending one request at a time (closed loop, like
wrk), for --duration seconds or until --requests have been sent: every request is a unique
signed event body, so the relay's duplicate check never short-cuts. Requests are written
as prebuilt bytes and answers parsed just enough to find their end, which keeps this
process's own CPU use low. Prints one JSON line:

    python -m bench.loadgen --port 8080 --connections 32 --duration 10 --prefix run1
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import sys
import time
from collections import Counter
from typing import Any

from bench.common import PATH, SECRET, conversation_id, percentile, render_body, template_spec


class Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, wait for its whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def request_bytes(
    host: str, port: int, key: bytes, spec: dict[str, Any], unique: str, n: int
) -> bytes:
    body = render_body(spec, unique, conversation_id(n))
    signature = hmac.digest(key, body, "sha512").hex()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"x-oneroute-signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def worker(
    index: int,
    args: argparse.Namespace,
    spec: dict[str, Any],
    deadline: float,
    results: dict[str, Any],
) -> None:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, args.host, args.port)
    key = SECRET.encode()
    n = 0
    latencies: list[float] = results["latencies"]
    statuses: Counter[int] = results["statuses"]
    try:
        while time.perf_counter() < deadline and results["left"] != 0:
            results["left"] -= 1
            n += 1
            data = request_bytes(args.host, args.port, key, spec, f"{args.prefix}-{index}-{n}", n)
            started = time.perf_counter()
            try:
                status = await connection.request(data)
            except ConnectionError:
                results["errors"] += 1
                break
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
    finally:
        if connection.transport is not None:
            connection.transport.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = template_spec()
    results: dict[str, Any] = {
        "latencies": [],
        "statuses": Counter(),
        "errors": 0,
        "left": args.requests or -1,  # requests still to send; -1: until the deadline
    }
    started = time.perf_counter()
    deadline = started + (args.duration if not args.requests else 24 * 3600)
    await asyncio.gather(
        *(worker(i, args, spec, deadline, results) for i in range(args.connections))
    )
    elapsed = time.perf_counter() - started
    latencies = results["latencies"]
    return {
        "generator": "python",
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "statuses": {str(k): v for k, v in results["statuses"].items()},
        "non_200": sum(v for k, v in results["statuses"].items() if k != 200) + results["errors"],
        "latency_ms": {f"p{q:g}": percentile(latencies, q) * 1000 for q in (50, 90, 99, 99.9)}
        | {"max": max(latencies, default=float("nan")) * 1000},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, help="send this many, then stop (not --duration)")
    parser.add_argument("--prefix", default=str(time.time_ns()))
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.install()
    json.dump(asyncio.run(run(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()
