"""Group commit: concurrent `accept()` calls share one transaction, one fsync.

Ingest does not commit per request. `accept()` queues the event and one writer task
commits everything queued meanwhile in one transaction before any of its callers is
answered, so a burst of requests costs one commit, not one each. Both engines use it; what
a batch's transaction does is theirs (`write`).

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
_Waiting = tuple[Incoming, asyncio.Future[Accepted]]


class GroupCommit:
    def __init__(
        self,
        write: WriteBatch,
        *,
        name: str,
        close_timeout: float = CLOSE_TIMEOUT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`write` stores a batch in one transaction and returns one Accepted per event,
        in order; it raises StoreUnavailable when it cannot."""
        self._write = write
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
            if batch:
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
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have gone (a client that hung up)
                future.set_result(result)


def _refuse(batch: list[_Waiting], error: StoreUnavailable) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
