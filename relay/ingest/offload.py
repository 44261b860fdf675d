"""Node's re-serialisation of large bodies in a worker process, off the event loop.

A body whose raw bytes do not match its signature is re-serialised as Node would
(relay/ingest/jsjson.py) before the signature is checked again. That is pure Python: up to
0.9 s of CPU for a 1 MiB body of small numbers or keys, against 2 ms for its HMAC
(BENCHMARKS.md, "A wrong signature as a CPU amplifier"). Any client that may post could
make the relay pay it with a made-up signature, and on the event loop it stalls every
other request; a thread would still hold the GIL. Making it cheaper does not fix that: a
2-3x faster serialiser would still block the loop for hundreds of milliseconds per body.
So:

- a body up to INLINE_MAX bytes is re-serialised inline: a few ms at worst, and the usual
  webhook (about 1 KiB, mostly text) needs no hop;
- a larger one goes to one worker process, which the loop only hands the bytes to: the
  check costs at most one core, the other stays with the loop and the store;
- at most CAPACITY bodies are in the worker or waiting for it; beyond that `Overloaded`,
  which ingest answers 503 so that OneRoute retries — never 401 for an unchecked body.

The worker is spawned (not forked: the relay has threads) on first need, as most relays
never need it, and replaced if it dies. It exits by itself if the relay dies without
stopping it (kill -9): it holds its own end of the job queue, so it would wait forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from relay.errors import RelayError
from relay.ingest.jsjson import js_reserialise

__all__ = ["Overloaded", "Reserialiser"]

log = logging.getLogger("relay.ingest")

INLINE_MAX = 4096  # bytes; the worst case measured is under 1 ms per KiB
CAPACITY = 4  # bodies in the worker or waiting: up to ~3 s of work for a 1 MiB worst case


class Overloaded(RelayError):
    """The worker has CAPACITY bodies already, or has just failed: retry later (503)."""


def _worker_init(relay_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the relay itself decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(relay_pid,), daemon=True).start()


def _exit_with(relay_pid: int) -> None:
    while os.getppid() == relay_pid:  # an orphan is adopted by another process
        time.sleep(1.0)
    os._exit(0)


class Reserialiser:
    """`await reserialiser(body)`: js_reserialise(body), inline or in the worker."""

    def __init__(self, inline_max: int | None = None, capacity: int = CAPACITY) -> None:
        self.inline_max = INLINE_MAX if inline_max is None else inline_max
        self.capacity = capacity
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._jobs: set[concurrent.futures.Future[bytes]] = set()

    async def __call__(self, body: bytes) -> bytes:
        """Raises JSONParseError as js_reserialise does, and Overloaded."""
        if len(body) <= self.inline_max:
            return js_reserialise(body)
        # Jobs are counted until the worker is done with them, even if their request is gone.
        self._jobs = {job for job in self._jobs if not job.done()}
        if len(self._jobs) >= self.capacity:
            raise Overloaded(f"{len(self._jobs)} large bodies are already being checked")
        pool = self._pool or self._start()
        try:
            job = pool.submit(js_reserialise, body)
        except (BrokenProcessPool, OSError, RuntimeError) as error:
            self._discard(pool, error)
            raise Overloaded("the signature worker could not take the body") from None
        self._jobs.add(job)
        try:
            return await asyncio.wrap_future(job)
        except BrokenProcessPool as error:
            self._discard(pool, error)
            raise Overloaded("the signature worker stopped; it is restarted") from None

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        return self._pool

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor, error: BaseException) -> None:
        if self._pool is pool:
            log.error(
                "signature worker failed (%s); the next large body starts a new one",
                str(error) or type(error).__name__,
            )
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker, if one was started (it finishes the body it is on)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
