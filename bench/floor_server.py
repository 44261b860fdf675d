"""A stripped-down webhook endpoint: the least any durable relay must do per request.

It uses the relay's own pieces and nothing else: `Verifier.verify` (HMAC-SHA512) and
`parse_event`, then, by stage, nothing more (`verify`), or the relay's SQLite group commit
`_insert_batch` run inline on the event loop (`durable`: synchronous=FULL, as shipped, so
the loop waits for each fsync; `durable-async`: synchronous=NORMAL plus an fdatasync of the
WAL on a thread after each batch, which is as durable and lets the loop go on meanwhile;
`unsynced`: synchronous=OFF, no fsync, not durable). No routing, logging, metrics or lanes.
Several processes can share the port (SO_REUSEPORT), each with its own database file, so
they never wait for each other.

`funnel` is the arrangement of a relay with ingest workers: the processes on the port
verify and parse, and hand each event over the relay's own channel (relay/ingest/ipc.py)
to one writer process, which stores it with the `durable` group commit and answers; they
answer 200 after that. One database, one writer, as duplicates and order need. Run by
bench/floor.py:

    python -m bench.floor_server --port 8082 --stage durable --db /tmp/floor-1.db
    python -m bench.floor_server --port 8083 --writer /tmp/w.sock --db /tmp/floor.db
    python -m bench.floor_server --port 8082 --stage funnel --writer /tmp/w.sock
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from bench.bare import serve_app
from bench.common import PATH, SECRET
from relay.events import conversation_key, event_name, parse_event
from relay.ingest.ipc import Channel, Message
from relay.ingest.signature import SIGNATURE_HEADER, Verifier
from relay.ingest.worker import RemoteStore
from relay.store.base import Accepted, Incoming, IngestStore
from relay.store.sqlite import SQLiteStore, _insert_batch

STAGES = ("verify", "durable", "durable-async", "shared-async", "funnel", "unsynced")
SYNCHRONOUS = {
    "durable": "FULL", "durable-async": "NORMAL", "shared-async": "NORMAL", "unsynced": "OFF"
}  # fmt: skip
ANSWER = b'{"status":"accepted"}'


class GroupCommit:
    """The relay's batch insert, on the loop's thread: requests that arrive while a batch
    is written join the next one (one transaction, one fsync each)."""

    def __init__(self, db: Path, synchronous: str, shared: bool = False) -> None:
        # shared: every process writes the same file, one transaction at a time (a lock
        # file taken around each batch's transaction; SQLite's own lock would make the
        # others sleep and retry).
        self.lock = os.open(f"{db}.writer", os.O_RDWR | os.O_CREAT) if shared else None
        store = SQLiteStore(db, synchronous=synchronous)
        store._connect()
        assert store._db is not None
        self.db = store._db
        # NORMAL syncs the WAL only at checkpoints: sync it after each batch ourselves.
        self.wal = os.open(f"{db}-wal", os.O_RDONLY) if synchronous == "NORMAL" else None
        self.syncer = ThreadPoolExecutor(max_workers=1)  # one at a time, in batch order
        self.pending: list[tuple[Incoming, asyncio.Future[Accepted]]] = []
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None  # write_batches(), kept from the GC

    async def accept(self, incoming: Incoming) -> Accepted:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self.pending.append((incoming, future))
        self.wake.set()
        return await future

    async def write_batches(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await asyncio.sleep(0)  # requests already read join this batch
            batch, self.pending = self.pending, []
            if not batch:
                continue
            if self.lock is not None:
                fcntl.flock(self.lock, fcntl.LOCK_EX)
            try:
                results = _insert_batch(self.db, [incoming for incoming, _ in batch])
            finally:
                if self.lock is not None:
                    fcntl.flock(self.lock, fcntl.LOCK_UN)
            if self.wal is None:
                self._answer(batch, results)
            else:  # answer once the WAL is on disk; write the next batch meanwhile
                synced = asyncio.get_running_loop().run_in_executor(
                    self.syncer, os.fdatasync, self.wal
                )
                synced.add_done_callback(lambda _, b=batch, r=results: self._answer(b, r))

    @staticmethod
    def _answer(
        batch: list[tuple[Incoming, asyncio.Future[Accepted]]], results: list[Accepted]
    ) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


def build_app(store: IngestStore | None) -> web.Application:
    verifier = Verifier([SECRET])

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.verify(body, request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=401)
        event = parse_event(body)
        if store is not None:
            incoming = Incoming(
                body, event_name(event), conversation_key(event), ("s",), time.time()
            )
            await store.accept(incoming)
        return web.Response(body=ANSWER, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text=str(os.getpid()))

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PATH, handle)
    app.router.add_get("/healthz", healthz)
    return app


def local_store(stage: str, db: Path) -> GroupCommit:
    commit = GroupCommit(db, SYNCHRONOUS[stage], shared=stage == "shared-async")
    commit.writer = asyncio.get_running_loop().create_task(commit.write_batches())
    return commit


async def writer_store(socket: Path, within: float = 30.0) -> RemoteStore:
    """The funnel's store: the writer process, over the relay's ingest channel."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    def on_message(message: Message) -> None:
        _, number, event_id, duplicate = message
        store.answered(number, event_id, duplicate)

    while True:
        try:
            _, channel = await loop.create_unix_connection(
                lambda: Channel(on_message, lambda: store.gone()), str(socket)
            )
            break
        except OSError:  # the writer is starting
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
    store = RemoteStore(channel)
    return store


async def serve_writer(port: int, socket: Path, db: Path) -> None:
    """The funnel's writer: events from every connected process, stored by one group
    commit (synchronous=FULL, inline, as the `durable` stage), each answered once stored."""
    loop = asyncio.get_running_loop()
    commit = local_store("durable", db)

    def connection() -> Channel:
        def on_message(message: Message) -> None:
            _, number, body, name, conversation, destinations, received_at = message
            stored: asyncio.Future[Accepted] = loop.create_future()  # as accept(), no task
            commit.pending.append(
                (Incoming(body, name, conversation, destinations, received_at), stored)
            )
            commit.wake.set()
            stored.add_done_callback(lambda done: answer(number, done.result()))

        def answer(number: int, accepted: Accepted) -> None:
            channel.send(("stored", number, accepted.event_id, accepted.duplicate))

        channel = Channel(on_message, lambda: None)
        return channel

    await loop.create_unix_server(connection, str(socket))
    await serve_app(build_app(None), port)


async def serve(port: int, stage: str, db: Path | None, writer: Path | None) -> None:
    if stage == "funnel":
        assert writer is not None, "--stage funnel needs --writer"
        store: IngestStore | None = await writer_store(writer)
    else:
        assert db is not None or stage == "verify", f"--stage {stage} needs --db"
        store = local_store(stage, db) if db is not None and stage != "verify" else None
    await serve_app(build_app(store), port, reuse_port=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stage", choices=STAGES, help="a server on the shared port")
    parser.add_argument("--db", type=Path)
    parser.add_argument("--writer", type=Path, help="the funnel writer's Unix socket")
    args = parser.parse_args()
    if args.stage is None:  # the funnel's writer
        asyncio.run(serve_writer(args.port, args.writer, args.db))
    else:
        asyncio.run(serve(args.port, args.stage, args.db, args.writer))


if __name__ == "__main__":
    main()
