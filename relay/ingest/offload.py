"""Node's re-serialisation of large bodies in a worker process, off the event loop.

A body whose raw bytes do not match its signature is re-serialised as Node would
(relay/ingest/jsjson.py) before the signature is checked again. That is pure Python: up to
0.8 s of CPU for a 1 MiB body of small numbers, against 2 ms for its HMAC (BENCHMARKS.md,
"A wrong signature as a CPU amplifier"). Any client that may post could make the relay
pay it with a made-up signature, and on the event loop it stalls every other request; a
thread would still hold the GIL. Making it cheaper does not fix that: a 2-3x faster
serialiser would still block the loop for hundreds of milliseconds per body. So:

- a body up to INLINE_MAX bytes is re-serialised inline: a few ms at worst, and the usual
  webhook (about 1 KiB, mostly text) needs no hop;
- a larger one goes to one worker process, which the loop only hands the bytes to: the
  check costs at most one core, the other stays with the loop and the store;
- at most CAPACITY bodies are in the worker or waiting for it; beyond that `Overloaded`,
  which ingest answers 503 so that OneRoute retries — never 401 for an unchecked body.

The worker (relay/ingest/jsworker.py) is started on first need (most relays never need
it) and again if it dies, and speaks length-prefixed frames on its stdin and stdout. Not
multiprocessing: its spawn would re-run the relay's main script in the worker (40 MB
instead of 14, and a crash for an unguarded script) and add a resource-tracker process.
The worker exits when its stdin closes — when the relay stops it, and when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from relay.errors import JSONParseError, Overloaded
from relay.ingest.jsjson import js_reserialise
from relay.ingest.jsworker import ANSWER, PARSE_ERROR, REQUEST

__all__ = ["Reserialiser"]

log = logging.getLogger("relay.ingest")

INLINE_MAX = 4096  # bytes; the worst case measured is under 1 ms per KiB
CAPACITY = 4  # bodies in the worker or waiting: about 3 s of work at the worst case
STOP_TIMEOUT = 2.0

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding relay/


class Reserialiser:
    """`await reserialiser(body)`: js_reserialise(body), inline or in the worker."""

    def __init__(self, inline_max: int | None = None, capacity: int = CAPACITY) -> None:
        self.inline_max = INLINE_MAX if inline_max is None else inline_max
        self.capacity = capacity
        self._worker: asyncio.subprocess.Process | None = None
        self._waiting = 0  # calls in the worker or waiting for their turn
        self._turn = asyncio.Lock()  # one body at a time on the pipe

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None and worker.returncode is None else None

    async def __call__(self, body: bytes) -> bytes:
        """Raises JSONParseError as js_reserialise does, and Overloaded."""
        if len(body) <= self.inline_max:
            return js_reserialise(body)
        if self._waiting >= self.capacity:
            raise Overloaded(f"{self._waiting} large bodies are already being checked")
        self._waiting += 1
        try:
            async with self._turn:
                return await self._exchange(body)
        finally:
            self._waiting -= 1

    async def _exchange(self, body: bytes) -> bytes:
        worker = self._worker
        try:
            if worker is None or worker.returncode is not None:
                worker = self._worker = await _start()
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(REQUEST.pack(len(body)))
            worker.stdin.write(body)
            await worker.stdin.drain()
            kind, length = ANSWER.unpack(await worker.stdout.readexactly(ANSWER.size))
            payload = await worker.stdout.readexactly(length)
        except (OSError, asyncio.IncompleteReadError) as error:
            self._discard(worker, error)
            raise Overloaded(
                "the signature worker failed; the next body starts a new one"
            ) from None
        except BaseException:  # cancelled mid-frame: the pipe is out of step
            self._discard(worker, None)
            raise
        if kind == PARSE_ERROR:
            raise JSONParseError(payload.decode("utf-8", "replace"))
        return payload

    def _discard(
        self, worker: asyncio.subprocess.Process | None, error: BaseException | None
    ) -> None:
        if error is not None:
            log.error("signature worker failed: %s", str(error) or type(error).__name__)
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
        if self._worker is worker:
            self._worker = None

    async def close(self) -> None:
        """Stop the worker, if one runs: it finishes the body it is on (STOP_TIMEOUT)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if worker.stdin is not None:
            worker.stdin.close()  # end of input: the worker exits
        try:
            await asyncio.wait_for(worker.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            await worker.wait()


async def _start() -> asyncio.subprocess.Process:
    # The same relay code as this process, whatever the working directory.
    path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.ingest.jsworker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )
