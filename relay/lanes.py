"""Lanes: one worker per destination turns stored delivery rows into messages.

A lane claims due rows (heads of their conversations, oldest first), and for each one
renders the event, paces, sends, and records the outcome: sent, retry later (backoff or
the server's Retry-After, for up to `give_up_after`), or dead with the reason. A 429
pauses the whole lane. A conversation's next row is claimable only once this one is
sent or dead (the store sees to that), which keeps every conversation in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay import metrics
from relay.destinations import Courier
from relay.errors import StoreUnavailable
from relay.events import parse_event
from relay.logs import fields
from relay.pacing import Pacer
from relay.redact import redact
from relay.send.outcome import RetryLater, Sent
from relay.store.base import Claimed, Store

log = logging.getLogger("relay.lanes")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 600.0
MIN_IDLE = 0.01


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after `attempts` failures: 1 s doubling to 10 min, with
    jitter in the upper half so that retries of many rows spread out."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempts, 30))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass(frozen=True)
class LaneSettings:
    owner: str  # this process's id: leases it holds
    give_up_after: float = 24 * 3600.0
    claim_limit: int = 16
    lease: float = 120.0  # a claimed row's lease; the lane lock is what makes claims exclusive
    poll: float = 1.0  # look for rows written by others (another instance, `dead retry`)
    lane_ttl: float = 15.0  # how long a lane lock outlives its holder (several instances)


class Lane:
    def __init__(
        self,
        destination: str,
        courier: Courier,
        store: Store,
        pacer: Pacer,
        settings: LaneSettings,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.destination = destination
        self.courier = courier
        self.store = store
        self.pacer = pacer
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self._wake = asyncio.Event()
        self._stopping = False
        self._paused_until = 0.0  # wall clock: a 429 stops the whole lane until then
        self._held_at = float("-inf")  # when the lane lock was last taken or renewed
        self._parents: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    # --- control ------------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"lane:{self.destination}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the send in flight (bounded), give back unattempted rows, stop."""
        self._stopping = True
        self._wake.set()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            log.warning(
                "stopped with a send still in flight; it is retried on the next start",
                extra=fields(destination=self.destination),
            )
        with contextlib.suppress(StoreUnavailable):
            await self.store.release_lane(self.destination, self.settings.owner)
        await self.courier.close()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            paused = self._paused_until - self.clock()
            if paused > 0:
                await self._idle(paused)
                continue
            try:
                rows = await self._claim()
            except StoreUnavailable as error:
                log.error(
                    "store unavailable: %s", error, extra=fields(destination=self.destination)
                )
                await self._idle(self.settings.poll * 5)
                continue
            if rows is None:  # another instance delivers for this destination now
                await self._idle(self.settings.poll)
            elif not rows:
                await self._idle(await self._until_due())
            else:
                await self._deliver_all(rows)

    async def _claim(self) -> list[Claimed] | None:
        """Due rows, or None when this instance does not hold the destination's lane."""
        if not await self._hold_lane():
            return None
        return await self.store.claim(
            self.destination,
            self.clock(),
            self.settings.claim_limit,
            self.settings.lease,
            self.settings.owner,
        )

    async def _hold_lane(self) -> bool:
        """Take or renew the lane, at most every third of its lifetime: a holder that cannot
        renew stops sending before another instance may take over."""
        now = self.clock()
        if now - self._held_at < self.settings.lane_ttl / 3:
            return True
        held = await self.store.hold_lane(
            self.destination, self.settings.owner, self.settings.lane_ttl, now
        )
        self._held_at = now if held else float("-inf")
        return held

    async def _deliver_all(self, rows: list[Claimed]) -> None:
        for index, row in enumerate(rows):
            try:
                if (
                    self._stopping
                    or self.clock() < self._paused_until
                    or not (await self._hold_lane())
                ):
                    await self.store.release([r.id for r in rows[index:]])
                    return
                await self.deliver(row)
            except StoreUnavailable as error:
                # The outcome could not be recorded: the row will be sent again (at least
                # once). Give the rows back if the store lets us, so they are not held up.
                log.error(
                    "could not record a delivery outcome: %s",
                    error,
                    extra=fields(destination=self.destination, delivery_id=row.id),
                )
                with contextlib.suppress(StoreUnavailable):
                    await self.store.release([r.id for r in rows[index:]])
                await self._idle(self.settings.poll * 5)
                return

    async def _until_due(self) -> float:
        due = await self.store.next_due(self.destination, self.settings.owner)
        if due is None:
            return self.settings.poll
        # A floor, so that a row due now but not claimable (a race) cannot spin the loop.
        return min(self.settings.poll, max(MIN_IDLE, due - self.clock()))

    async def _idle(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # --- one delivery -------------------------------------------------------------------------

    async def deliver(self, row: Claimed) -> None:
        try:
            messages = self.courier.render(parse_event(row.body))
        except Exception as error:  # a bad body or a renderer bug must not block the lane
            log.exception("could not render", extra=self._fields(row))
            await self._bury(row, "render_error", redact(f"{type(error).__name__}: {error}"))
            return
        thread = await self._thread_parent(row)
        for part in range(row.progress, len(messages)):
            await self.pacer.wait(self.courier.limits)
            try:
                outcome = await self.courier.send(messages[part], thread)
            finally:
                self.pacer.sent(self.courier.limits)
            if isinstance(outcome, Sent):
                thread = await self._remember_parent(row, thread, outcome.ref)
                if part + 1 < len(messages):
                    await self.store.save_progress(row.id, part + 1)
                continue
            if isinstance(outcome, RetryLater):
                await self._retry_later(row, outcome)
            else:
                await self._bury(row, outcome.reason, outcome.detail)
            return
        now = self.clock()
        await self.store.mark_sent(row.id, now)
        metrics.deliveries.labels(self.destination, "sent", "").inc()
        metrics.delivery_latency.labels(self.destination).observe(max(0.0, now - row.created_at))
        log.info("sent", extra=self._fields(row, parts=len(messages)))

    async def _thread_parent(self, row: Claimed) -> str | None:
        if not self.courier.threads or row.conversation is None:
            return None
        parent = self._parents.get(row.conversation)
        if parent is None:
            parent = await self.store.thread_parent(self.destination, row.conversation)
            if parent is not None:
                self._parents[row.conversation] = parent
        return parent

    async def _remember_parent(
        self, row: Claimed, thread: str | None, ref: str | None
    ) -> str | None:
        if thread is not None or ref is None or not self.courier.threads or not row.conversation:
            return thread
        parent = await self.store.set_thread_parent(self.destination, row.conversation, ref)
        self._parents[row.conversation] = parent
        return parent

    async def _retry_later(self, row: Claimed, outcome: RetryLater) -> None:
        now = self.clock()
        if outcome.rate_limited and outcome.after:
            self._paused_until = max(self._paused_until, now + outcome.after)
            self.pacer.hold(self.courier.limits, outcome.after)
        delay = outcome.after if outcome.after is not None else backoff(row.attempts, self.rng)
        if now + delay > row.retry_from + self.settings.give_up_after:
            hours = self.settings.give_up_after / 3600
            await self._bury(
                row,
                "gave_up",
                f"still failing after {row.attempts + 1} attempts "
                f"over {hours:g} h; last: {outcome.reason}: {outcome.detail}",
            )
            return
        await self.store.retry_later(row.id, now + delay, outcome.reason, outcome.detail)
        metrics.deliveries.labels(self.destination, "retried", outcome.reason).inc()
        log.warning(
            "retrying in %.1f s: %s",
            delay,
            outcome.detail or outcome.reason,
            extra=self._fields(row, reason=outcome.reason),
        )

    async def _bury(self, row: Claimed, reason: str, detail: str) -> None:
        await self.store.bury(row.id, self.clock(), reason, detail)
        metrics.deliveries.labels(self.destination, "dead", reason).inc()
        log.error("dead: %s", detail or reason, extra=self._fields(row, reason=reason))

    def _fields(self, row: Claimed, **more: Any) -> dict[str, Any]:
        return fields(
            event_id=row.event_id,
            delivery_id=row.id,
            destination=self.destination,
            conversation=row.conversation,
            attempt=row.attempts + 1,
            **more,
        )
