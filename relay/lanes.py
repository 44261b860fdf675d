"""Lanes: one worker per destination turns stored delivery rows into messages.

A lane claims due rows (heads of their conversations, oldest first), and for each one
renders the event, paces, sends, and records the outcome: sent, retry later (backoff or
the server's Retry-After, for up to `give_up_after`), or dead with the reason. A 429
pauses the whole lane, for at most MAX_PAUSE. A conversation's next row is claimable only
once this one is sent or dead (the store sees to that), which keeps every conversation in
order.

Nothing stops a lane. Senders classify every answer (relay/integrations/base.py); any
other exception while delivering one row — a bug — is caught around that delivery, logged
once with its traceback, counted as `internal_error` and retried like a transient failure.
Should the lane's loop itself fail, `run()` logs it and starts the loop again, and the
relay's supervisor (relay/service.py) restarts a lane task that ended anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from relay.errors import Reason, StoreUnavailable
from relay.events import parse_event
from relay.integrations.base import Courier
from relay.logs import fields
from relay.metrics import Metrics
from relay.outcome import Failure, Permanent, RetryLater, Sent, describe, short_detail
from relay.pacing import Pacer
from relay.redact import Redactor
from relay.store.base import Claimed, LaneStore

log = logging.getLogger("relay.lanes")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 600.0
MAX_PAUSE = 600.0  # the longest a lane waits on one Retry-After: then it asks again
MIN_IDLE = 0.01
RESTART_DELAY = 1.0  # before the lane's loop runs again after it failed


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after `attempts` failures: 1 s doubling to 10 min, with
    jitter in the upper half so that retries of many rows spread out."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempts, 30))
    return ceiling / 2 + rng() * ceiling / 2


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, or until `wake` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)


@dataclass(frozen=True)
class LaneSettings:
    owner: str  # this process's id: leases it holds
    give_up_after: float = 24 * 3600.0
    claim_limit: int = 16
    lease: float = 120.0  # a claimed row's lease; the lane lock is what makes claims exclusive
    poll: float = 1.0  # look for rows written by others (another instance, `dead retry`)
    lane_ttl: float = 15.0  # how long a lane lock outlives its holder (delivery.lane_lease)


@dataclass(frozen=True)
class Pause:
    """The platform said wait (429): until when (wall clock) and why."""

    until: float
    detail: str


class Lane:
    def __init__(
        self,
        destination: str,
        courier: Courier[Any],
        store: LaneStore,
        pacer: Pacer,
        settings: LaneSettings,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        redactor: Redactor | None = None,
        wait: Callable[[asyncio.Event, float], Awaitable[None]] = wait_for_wake,
    ) -> None:
        self.destination = destination
        self.courier = courier
        self.store = store
        self.pacer = pacer
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.metrics = metrics or Metrics()
        self.redact = redactor or Redactor()
        self._wait = wait
        self._wake = asyncio.Event()
        self._stopping = False
        self._pause = Pause(0.0, "")  # a 429 stops the whole lane until then
        self._held_at = float("-inf")  # when the lane lock was last taken or renewed
        self._parents: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    # --- control ------------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"lane:{self.destination}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the send in flight (bounded), give back unattempted rows, stop. Never raises:
        a stopping relay must exit cleanly whatever state its lanes are in."""
        self._stopping = True
        self._wake.set()
        if self.task is not None:
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
            except (Exception, asyncio.CancelledError):
                log.exception(
                    "lane ended with an error", extra=fields(destination=self.destination)
                )
        with contextlib.suppress(Exception):
            await self.store.release_lane(self.destination, self.settings.owner)
        try:
            await self.courier.close()
        except Exception:
            log.exception("could not close the sender", extra=fields(destination=self.destination))

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def paused(self) -> Pause | None:
        """The platform's pause, while it lasts."""
        return self._pause if self._pause.until > self.clock() else None

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._work()
            except Exception:
                log.exception(
                    "the lane's loop failed; it starts again in %g s",
                    RESTART_DELAY,
                    extra=fields(destination=self.destination),
                )
                self.metrics.lane_restarts.labels(self.destination).inc()
                await self._idle(RESTART_DELAY)

    async def _work(self) -> None:
        while not self._stopping:
            paused = self._pause.until - self.clock()
            if paused > 0:
                await self._idle(paused)
                continue
            try:
                rows = await self._claim()
                if rows is None:  # another instance delivers for this destination now
                    await self._idle(self.settings.poll)
                elif not rows:
                    await self._idle(await self._until_due())
                else:
                    await self._deliver_all(rows)
            except StoreUnavailable as error:  # an outage, not a bug: wait and look again
                log.error(
                    "store unavailable: %s", error, extra=fields(destination=self.destination)
                )
                await self._idle(self.settings.poll * 5)

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
                    or self.clock() < self._pause.until
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
        await self._wait(self._wake, seconds)
        self._wake.clear()

    # --- one delivery -------------------------------------------------------------------------

    async def deliver(self, row: Claimed) -> None:
        """Deliver one row and record the outcome. Raises only StoreUnavailable (the outcome
        could not be recorded); any other failure becomes a retry with reason internal_error."""
        try:
            await self._deliver(row)
        except (StoreUnavailable, asyncio.CancelledError):
            raise
        except Exception as error:
            log.exception(
                "internal error while delivering; retrying later",
                extra=self._fields(row, reason=Reason.INTERNAL_ERROR),
            )
            failure = RetryLater(Reason.INTERNAL_ERROR, short_detail(describe(error)))
            await self._retry_later(row, failure, logged=True)

    async def _deliver(self, row: Claimed) -> None:
        try:
            messages = self.courier.render(parse_event(row.body))
        except Exception as error:  # a bad body or a renderer bug must not block the lane
            log.exception("could not render", extra=self._fields(row))
            await self._bury(row, Permanent(Reason.RENDER_ERROR, describe(error)))
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
                await self._bury(row, outcome)
            return
        now = self.clock()
        await self.store.mark_sent(row.id, now)
        self.metrics.deliveries.labels(self.destination, "sent", "").inc()
        self.metrics.delivery_latency.labels(self.destination).observe(
            max(0.0, now - row.created_at)
        )
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

    async def _retry_later(self, row: Claimed, outcome: RetryLater, logged: bool = False) -> None:
        outcome = outcome.masked(self.redact)
        now = self.clock()
        after = None if outcome.after is None else min(max(outcome.after, 0.0), MAX_PAUSE)
        if outcome.rate_limited and after:
            self._pause = Pause(max(self._pause.until, now + after), outcome.detail)
            self.pacer.hold(self.courier.limits, after)
        delay = after if after is not None else backoff(row.attempts, self.rng)
        if now + delay > row.retry_from + self.settings.give_up_after:
            hours = self.settings.give_up_after / 3600
            await self._bury(
                row,
                Permanent(
                    Reason.GAVE_UP,
                    f"still failing after {row.attempts + 1} attempts "
                    f"over {hours:g} h; last: {outcome.reason}: {outcome.detail}",
                ),
            )
            return
        await self.store.retry_later(row.id, now + delay, outcome.reason, outcome.detail)
        self.metrics.deliveries.labels(self.destination, "retried", outcome.reason).inc()
        if not logged:
            log.warning(
                "retrying in %.1f s: %s",
                delay,
                outcome.detail or outcome.reason,
                extra=self._fields(row, reason=outcome.reason),
            )

    async def _bury(self, row: Claimed, outcome: Failure) -> None:
        outcome = outcome.masked(self.redact)
        await self.store.bury(row.id, self.clock(), outcome.reason, outcome.detail)
        self.metrics.deliveries.labels(self.destination, "dead", outcome.reason).inc()
        log.error(
            "dead: %s",
            outcome.detail or outcome.reason,
            extra=self._fields(row, reason=outcome.reason),
        )

    def _fields(self, row: Claimed, **more: Any) -> dict[str, Any]:
        return fields(
            event_id=row.event_id,
            delivery_id=row.id,
            destination=self.destination,
            conversation=row.conversation,
            attempt=row.attempts + 1,
            **more,
        )
