"""Group commit: concurrent `accept()` calls share one transaction, one fsync.

Ingest does not commit per request. `accept()` queues the event and one writer task
commits everything queued meanwhile in one transaction before any of its callers is
answered, so a burst of requests costs one commit, not one each. Both engines use it; what
a batch's transaction does is theirs (`write`).

With `durable` (SQLite), a batch's transaction commits without waiting for the disk and
`durable()` then makes it durable (an fdatasync on another thread) while the next batch is
written; the batch's callers are answered only once it returns, so the disk flush no longer
sits between two batches. If it fails, nothing is answered as stored again: the write may
be lost, and a retry would be taken for a duplicate of it (StoreUnavailable until restart).
A lane may claim and send rows committed but not yet flushed; if the machine loses power in
between, OneRoute (never answered) sends the event again and it is posted twice: at least
once, as the README promises.

No caller is ever stranded: a batch that fails is refused to all of its callers
(StoreUnavailable, so ingest answers 503 and OneRoute retries). `close()` refuses new
events at once, lets what is queued commit, and after `close_timeout` refuses what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relay.errors import StoreUnavailable
from relay.store.base import Accepted, Incoming

log = logging.getLogger("relay.store")

MAX_BATCH = 512
CLOSE_TIMEOUT = 10.0  # how long close() lets queued events commit before refusing them

WriteBatch = Callable[[list[Incoming]], Awaitable[list[Accepted]]]
Durable = Callable[[], Awaitable[None]]
_Waiting = tuple[Incoming, asyncio.Future[Accepted]]


class GroupCommit:
    def __init__(
        self,
        write: WriteBatch,
        *,
        name: str,
        durable: Durable | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`write` stores a batch in one transaction and returns one Accepted per event,
        in order; it raises StoreUnavailable when it cannot. `durable`, if given, makes
        every transaction committed before it was called durable, or raises."""
        self._write = write
        self._durable = durable
        # Committed, waiting for the disk: one flush covers every batch committed before it
        # began, so batches committed during a flush share the next one.
        self._unflushed: list[tuple[list[_Waiting], list[Accepted]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: str | None = None
        self._name = name
        self._close_timeout = close_timeout
        self._max_batch = max_batch
        # A plain list and an event, not an asyncio.Queue: the writer takes everything
        # queued at once, and a Queue's put/get bookkeeping per event (a request's path)
        # costs more than the append.
        self._queue: list[_Waiting] = []
        self._queued = asyncio.Event()  # set while the queue is not empty, or to stop
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_batches(), name=self._name)

    async def accept(self, incoming: Incoming) -> Accepted:
        """Store the event with the next batch; its answer once that batch committed."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._broken is not None:
            raise StoreUnavailable(self._broken)
        if self._writer is None or self._writer.done():
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((incoming, future))  # no await between the checks and the append
        self._queued.set()
        return await future

    async def close(self) -> None:
        """Refuse new events, commit the queued ones (for up to `close_timeout`), stop."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is None:
            return
        self._queued.set()  # nothing joins the queue now: the writer stops once it is empty
        _, unfinished = await asyncio.wait({writer}, timeout=self._close_timeout)
        if unfinished:
            writer.cancel()  # the batch in flight is refused to its callers (_commit)
            await asyncio.wait({writer})
        flusher = self._flusher
        if flusher is not None:  # committed batches waiting for the disk go first
            _, unfinished = await asyncio.wait({flusher}, timeout=self._close_timeout)
            if unfinished:  # refused to their callers (_flush)
                flusher.cancel()
                await asyncio.wait({flusher})
        # Only after a timeout: these were never attempted.
        left, self._queue = self._queue, []
        _refuse(left, StoreUnavailable("the store closed before the event was stored"))

    async def _write_batches(self) -> None:
        while True:
            await self._queued.wait()
            batch = self._queue[: self._max_batch]  # what is queued now, in order
            del self._queue[: len(batch)]
            if not self._queue and not self._closed:  # closed: stay set, to stop when empty
                self._queued.clear()
            if batch and self._broken is not None:  # queued before a flush failed
                _refuse(batch, StoreUnavailable(self._broken))
            elif batch:
                await self._commit(batch)
            elif self._closed:
                return

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._write([incoming for incoming, _ in batch])
        except asyncio.CancelledError:
            # It may still commit (a thread is not interrupted): a retry is then a duplicate.
            _refuse(batch, StoreUnavailable("the store closed before the event was stored"))
            raise
        except StoreUnavailable as error:
            _refuse(batch, error)
            return
        except Exception as error:  # a bug: the callers hear 503, the log says what happened
            log.exception("storing %d events failed", len(batch))
            _refuse(batch, StoreUnavailable(f"storing the event failed ({type(error).__name__})"))
            return
        if self._durable is None:
            _answer(batch, results)
            return
        if self._broken is not None:  # a flush failed while it was written: it may be lost
            _refuse(batch, StoreUnavailable(self._broken))
            return
        self._unflushed.append((batch, results))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"{self._name}-flush")

    async def _flush(self) -> None:
        """Flush until no committed batch waits; answer each batch once a flush that began
        after its commit has returned."""
        assert self._durable is not None
        try:
            while self._unflushed:
                flushing, self._unflushed = self._unflushed, []
                try:
                    await self._durable()
                except asyncio.CancelledError:
                    for batch, _ in flushing + self._unflushed:
                        _refuse(batch, StoreUnavailable("the store closed before it was stored"))
                    raise
                except Exception as error:
                    self._broken = (
                        f"the disk did not confirm a write ({error}); events are refused "
                        "until the relay is restarted with the disk fixed"
                    )
                    log.error("storing events failed: %s", self._broken)
                    for batch, _ in flushing + self._unflushed:
                        _refuse(batch, StoreUnavailable(self._broken))
                    self._unflushed = []
                    return
                for batch, results in flushing:
                    _answer(batch, results)
        finally:
            self._flusher = None


def _answer(batch: list[_Waiting], results: list[Accepted]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if not future.done():  # its caller may have gone (a client that hung up)
            future.set_result(result)


def _refuse(batch: list[_Waiting], error: StoreUnavailable) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
