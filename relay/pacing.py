"""Pacing: send no faster than the platform allows, so that 429s are the exception.

Each limit is a token bucket kept as GCRA (the generic cell rate algorithm): one number
per key, the theoretical arrival time of the next send. A send that must respect several
limits (a Telegram chat's 1/s and the bot's 30/s) reserves a slot in all of them at once,
so lanes sharing a key (two destinations on one bot) never overrun it together.
The clock and sleep are injected, so pacing is tested deterministically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    key: str  # what is limited: a Slack channel, a Telegram chat, a bot (never a secret)
    rate: float  # sends per second
    burst: int = 1  # sends allowed back to back before the rate applies

    @property
    def interval(self) -> float:
        return 1.0 / self.rate


class Pacer:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next: dict[str, float] = {}  # key -> theoretical arrival time

    def reserve(self, limits: Sequence[Limit]) -> float:
        """Book the earliest slot every limit allows; return how long to wait for it."""
        now = self.clock()
        start = now
        for limit in limits:
            tolerance = (limit.burst - 1) * limit.interval
            start = max(start, self._next.get(limit.key, now) - tolerance)
        for limit in limits:
            self._next[limit.key] = max(self._next.get(limit.key, now), start) + limit.interval
        return start - now

    async def wait(self, limits: Sequence[Limit]) -> None:
        delay = self.reserve(limits)
        if delay > 0:
            await self.sleep(delay)

    def sent(self, limits: Sequence[Limit]) -> None:
        """A send on these keys just completed: count it from now, not from its slot.

        The platform counts a message when it arrives; a send that took longer than the
        next (the first opens the connection) would otherwise leave the next ones closer
        together than the interval, and a window like Telegram's 20/min overrun.
        """
        now = self.clock()
        for limit in limits:
            self._next[limit.key] = max(self._next.get(limit.key, now), now + limit.interval)

    def hold(self, limits: Sequence[Limit], seconds: float) -> None:
        """The platform said wait (429 Retry-After): nothing goes on these keys before then."""
        until = self.clock() + seconds
        for limit in limits:
            self._next[limit.key] = max(self._next.get(limit.key, until), until)
