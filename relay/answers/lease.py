"""One reader of a Telegram bot's updates among several relay instances.

Telegram gives a bot's updates to one `getUpdates` caller at a time: a second caller ends
the first one's call with 409 Conflict, so two instances on one PostgreSQL database would
keep interrupting each other. `Leased` runs a listener only while its instance holds a
lease in the store — the same one lanes use for a destination (`hold_lane`,
`delivery.lane_lease`) — under a key no destination has. The holder renews it every third
of its lifetime; when an instance stops, it gives the lease up and another takes over at
its next try; when one dies, another takes over once the lease has run out. On SQLite one
relay serves the file, so the lease is always held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("relay.answers")


class Listener(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


class LeaseStore(Protocol):
    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool: ...
    async def release_lane(self, destination: str, owner: str) -> None: ...


class Leased:
    """Runs `listener` while this instance (`owner`) holds the lease `key`."""

    def __init__(
        self,
        listener: Listener,
        store: LeaseStore,
        *,
        key: str,
        owner: str,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.listener = listener
        self.store = store
        self.key, self.owner, self.ttl = key, owner, ttl
        self.clock = clock
        self.running = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._hold(), name=f"lease:{self.key}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_listening()
        with contextlib.suppress(Exception):  # it runs out by itself otherwise
            await self.store.release_lane(self.key, self.owner)

    async def _hold(self) -> None:
        held_at = float("-inf")
        while True:
            try:
                if await self.store.hold_lane(self.key, self.owner, self.ttl, self.clock()):
                    held_at = self.clock()
                else:
                    held_at = float("-inf")  # another instance holds it
                    if self.running:
                        log.info("another instance reads these replies now; stopping here")
            except Exception as error:  # the store is away: keep reading while the lease lasts
                log.warning("could not renew the lease on reading replies: %s", error)
            try:
                if self.clock() - held_at >= self.ttl:
                    await self._stop_listening()
                elif not self.running:
                    await self.listener.start()
                    self.running = True
            except Exception:  # a bug: said, and tried again at the next turn
                log.exception("could not start or stop reading replies")
            await asyncio.sleep(self.ttl / 3)

    async def _stop_listening(self) -> None:
        if self.running:
            self.running = False
            await self.listener.close()
