"""The channel between the relay's process and an ingest worker (relay/ingest/workers.py).

A socketpair the relay makes and hands to the worker it starts, so nothing else can reach
it: no path on disk, no port. Each message is a tuple of plain values (bytes, str, int,
float, None, tuples, dicts), framed by its length and encoded with `marshal`, which is
fast and needs no schema; both ends are the same Python and the same relay.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("relay.ingest")

Message = tuple[Any, ...]
_HEADER = struct.Struct("!I")
MAX_MESSAGE = 4 * 1024 * 1024  # a 1 MiB body and its fields fit many times over


class Channel(asyncio.Protocol):
    """One end of the channel: `send()` a message; `on_message` is called with each that
    arrives, in order, and `on_closed` once when the other end is gone."""

    def __init__(
        self, on_message: Callable[[Message], None], on_closed: Callable[[], None]
    ) -> None:
        self.on_message = on_message
        self.on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._outbox: list[bytes] = []  # sent together once per loop iteration
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            if size > MAX_MESSAGE:
                log.error("ingest channel: a message of %d bytes; closing the channel", size)
                self.close()
                return
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            with memoryview(buffer) as view:  # released before the buffer is trimmed
                message = marshal.loads(view[start + _HEADER.size : end])  # noqa: S302 - our own child
            start = end
            self.on_message(message)
            if self.closed:
                return
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed()

    def send(self, message: Message) -> bool:
        """Queue `message` for the other end; False when the channel is closed."""
        if self.closed or self._transport is None or self._transport.is_closing():
            return False
        payload = marshal.dumps(message)
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox += (_HEADER.pack(len(payload)), payload)
        return True

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(outbox))

    def close(self) -> None:
        """Close after sending what was queued (a worker's last counts, say)."""
        if self._outbox:
            self._flush()
        if self._transport is not None:
            self._transport.close()  # connection_lost follows, which calls on_closed
