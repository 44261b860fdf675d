"""An ingest worker: a process that answers OneRoute's webhooks for the relay (`server.workers`).

It does every part of a webhook request that needs no store — client address, size,
signature, JSON, routing, the log line, the count — and hands the event to the relay's
process over its channel (relay/ingest/ipc.py). The relay's process stores it (one writer:
the group commit) and wakes its lanes, and only then does the worker answer 200: an event
answered 200 is stored, as without workers. Every other request (/healthz, /readyz,
/metrics, /slack/events, a GET on the webhook path) goes to the relay's own app, unchanged,
over a Unix socket only it and its workers can reach.

relay/ingest/workers.py starts it as `python -m relay.ingest.worker`; it is not run by hand.
It stops on SIGTERM/SIGINT or when told to (answering the requests under way first), and at
once when the relay's process is gone (nothing could be stored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from relay import logs
from relay.config.model import Config
from relay.errors import StoreUnavailable
from relay.ingest.ipc import Channel, Message
from relay.ingest.listen import Listener, serve_sockets
from relay.ingest.server import Gate, Ingest, build_app
from relay.logs import fields
from relay.metrics import Metrics
from relay.redact import Redactor
from relay.store.base import Accepted, Incoming

log = logging.getLogger("relay.ingest")

STARTUP_TIMEOUT = 30.0
COUNTS_EVERY = 1.0  # how often request counts go to the relay's /metrics
PROXY_TIMEOUT = 30.0
# Hop-by-hop headers (RFC 9110 7.6.1) stay on their own hop; the length is the new body's.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade", "content-length"}
)  # fmt: skip


class RemoteStore:
    """The IngestStore of a worker: each event is stored by the relay's process."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._waiting: dict[int, asyncio.Future[Accepted]] = {}
        self._next = 0

    async def accept(self, incoming: Incoming) -> Accepted:
        number = self._next
        self._next += 1
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        message = (
            "accept",
            number,
            incoming.body,
            incoming.event_name,
            incoming.conversation,
            incoming.destinations,
            incoming.received_at,
        )
        if not self.channel.send(message):
            raise StoreUnavailable("the relay's main process is gone")
        self._waiting[number] = future
        try:
            return await future
        finally:
            self._waiting.pop(number, None)

    async def check_writable(self) -> None:  # /readyz is the relay's own (proxied)
        if self.channel.closed:
            raise StoreUnavailable("the relay's main process is gone")

    def answered(self, number: int, event_id: int, duplicate: bool) -> None:
        future = self._waiting.get(number)
        if future is not None and not future.done():
            future.set_result(Accepted(event_id, duplicate))

    def refused(self, number: int, problem: str) -> None:
        future = self._waiting.get(number)
        if future is not None and not future.done():
            future.set_exception(StoreUnavailable(problem))

    def gone(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the relay's main process is gone"))


class Counts:
    """The worker's request counts, sent to the relay's process as deltas (its /metrics)."""

    def __init__(self, metrics: Metrics, channel: Channel) -> None:
        self.metrics = metrics
        self.channel = channel
        self._sent: dict[tuple[str, str], float] = {}

    def flush(self) -> None:
        deltas: dict[tuple[str, str], float] = {}
        for family in self.metrics.events_received.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels["event"], sample.labels["result"])
                delta = sample.value - self._sent.get(key, 0.0)
                if delta:
                    deltas[key] = delta
                    self._sent[key] = sample.value
        if deltas:
            self.channel.send(("counts", deltas))

    async def forever(self) -> None:
        while True:
            await asyncio.sleep(COUNTS_EVERY)
            self.flush()


class ToRelay:
    """Passes a request to the relay's own app over its Unix socket and its answer back."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._session: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(self.path),
                timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                f"http://relay{request.rel_url}",
                headers=_end_to_end(request.headers),
                data=body,
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                headers = _end_to_end(answer.headers)
                if request.method == "HEAD" and "Content-Length" in answer.headers:
                    headers["Content-Length"] = answer.headers["Content-Length"]
                return web.Response(status=answer.status, body=payload, headers=headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.error("the relay's process did not answer: %s", type(error).__name__)
            return web.json_response(
                {"error": "unavailable", "detail": "the relay is not answering; retry later"},
                status=503,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _end_to_end(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


class Worker:
    """One worker's state: its channel to the relay's process, its ingest, its sites."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.redactor = Redactor()
        self.channel = Channel(self._on_message, self._on_closed)
        self.store = RemoteStore(self.channel)
        self.metrics = Metrics()
        self.ingest: Ingest | None = None
        self.config: Config | None = None  # the latest the relay sent
        self.configured = asyncio.Event()
        self.gone = False
        self.stop = asyncio.Event()

    def _on_message(self, message: Message) -> None:
        kind = message[0]
        if kind == "accepted":
            self.store.answered(message[1], message[2], message[3])
        elif kind == "refused":
            self.store.refused(message[1], message[2])
        elif kind == "config":
            self._configure(pickle.loads(message[1]))  # noqa: S301 - from the relay that started us
        elif kind == "ping":
            self.channel.send(("pong", message[1]))
        elif kind == "stop":
            self.stop.set()

    def _configure(self, config: Config) -> None:
        """The first config starts the worker; a later one (a reload, maybe sent before
        the worker got going) replaces the gate."""
        self.redactor.register(*config.secrets())
        self.config = config
        if self.ingest is not None:
            self.ingest.gate = Gate.from_config(config)
        self.configured.set()

    def _on_closed(self) -> None:
        self.store.gone()
        self.gone = True
        self.configured.set()
        self.stop.set()


async def run(options: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    worker = Worker(options.number)
    logs.setup(worker.redactor, options.log_level, options.log_format)
    channel_socket = socket.socket(fileno=options.channel)
    await loop.connect_accepted_socket(lambda: worker.channel, channel_socket)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop.set)
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await worker.configured.wait()
    except TimeoutError:
        pass
    if worker.config is None or worker.gone:
        log.error("ingest worker %d: no config from the relay's process; exiting", worker.number)
        return 1
    # The latest config, not the first: a reload may have come in the same read.
    gate = Gate.from_config(worker.config)
    worker.ingest = Ingest(gate, worker.store, metrics=worker.metrics)
    to_relay = ToRelay(options.relay_socket)
    app = build_app(
        worker.ingest, [web.route("*", "/{tail:.*}", to_relay.forward)], health=False
    )
    sockets = [socket.socket(fileno=int(fd)) for fd in options.listen.split(",")]
    listener: Listener = await serve_sockets(app, sockets, shutdown_timeout=options.stop_timeout)
    counts = Counts(worker.metrics, worker.channel)
    counting = asyncio.create_task(counts.forever())
    worker.channel.send(("ready", os.getpid()))
    log.info("ingest worker %d started", worker.number, extra=fields(pid=os.getpid()))
    await worker.stop.wait()
    await listener.close()  # stop accepting; answer the requests under way (bounded)
    counting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await counting
    counts.flush()
    await to_relay.close()
    worker.channel.close()
    if worker.gone:
        _remove_if_abandoned(options.relay_socket)
    return 0


def _remove_if_abandoned(path: str) -> None:
    """The relay's process is gone without closing its channel: killed (SIGKILL, the OOM
    killer), it could not remove its private directory, which would stay in /tmp. When
    nothing listens on its socket any more, remove the socket and the directory."""
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)  # a relay that still serves its app: nothing to clean up
    except ConnectionRefusedError:
        with contextlib.suppress(OSError):  # another worker may have done it first
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # gone already, or not ours to judge
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay.ingest.worker", description=__doc__)
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--channel", type=int, required=True, help="the channel's fd")
    parser.add_argument("--listen", required=True, help="listening sockets' fds, by commas")
    parser.add_argument("--relay-socket", required=True, help="the relay's own app")
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--uvloop", action="store_true")
    options = parser.parse_args(argv)
    if options.uvloop:
        import uvloop

        uvloop.install()
    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
