"""A stripped-down webhook endpoint: the least any durable relay must do per request.

It uses the relay's own pieces and nothing else: `Verifier.verify` (HMAC-SHA512) and
`parse_event`, then, by stage, nothing more (`verify`), or the relay's SQLite group commit
`_insert_batch` run inline on the event loop (`durable`: synchronous=FULL, as shipped, so
the loop waits for each fsync; `durable-async`: synchronous=NORMAL plus an fdatasync of the
WAL on a thread after each batch, which is as durable and lets the loop go on meanwhile;
`unsynced`: synchronous=OFF, no fsync, not durable). No routing, logging, metrics or lanes.
Several processes can share the port (SO_REUSEPORT), each with its own database file, so
they never wait for each other. Run by bench/floor.py:

    python -m bench.floor_server --port 8082 --stage durable --db /tmp/floor-1.db
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
from relay.ingest.signature import SIGNATURE_HEADER, Verifier
from relay.store.base import Accepted, Incoming
from relay.store.sqlite import SQLiteStore, _insert_batch

STAGES = ("verify", "durable", "durable-async", "shared-async", "unsynced")
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


def build_app(stage: str, db: Path) -> web.Application:
    verifier = Verifier([SECRET])
    commit = (
        GroupCommit(db, SYNCHRONOUS[stage], shared=stage == "shared-async")
        if stage != "verify"
        else None
    )

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.verify(body, request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=401)
        event = parse_event(body)
        if commit is not None:
            incoming = Incoming(
                body, event_name(event), conversation_key(event), ("s",), time.time()
            )
            await commit.accept(incoming)
        return web.Response(body=ANSWER, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text=str(os.getpid()))

    async def start_writer(app: web.Application) -> None:
        if commit is not None:
            app["writer"] = asyncio.create_task(commit.write_batches())

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PATH, handle)
    app.router.add_get("/healthz", healthz)
    app.on_startup.append(start_writer)
    return app


async def serve(port: int, stage: str, db: Path) -> None:
    await serve_app(build_app(stage, db), port, reuse_port=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.stage, args.db))


if __name__ == "__main__":
    main()
