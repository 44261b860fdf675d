"""Lanes: one worker per destination turns stored delivery rows into messages.

A lane claims due rows (heads of their conversations, oldest first), waits for the pacer,
renders and sends the next message, and records the outcome for every event it carried:
sent, retry later (backoff or the server's Retry-After, for up to `give_up_after`), or dead
with the reason. When several deliveries are due as the pacer lets the next message go,
one message carries them, within the platform's limits (relay/coalesce.py); an idle
destination sends each event at once, alone. A 429 pauses the whole lane, for at most
MAX_PAUSE. A conversation's next row is claimable only once the ones before it are sent or
dead (the store sees to that), which keeps every conversation in order.

Nothing stops a lane. Senders classify every answer (relay/integrations/base.py); any
other exception while delivering a message — a bug — is caught around that delivery,
logged once with its traceback, counted as `internal_error` and retried like a transient
failure. Should the lane's loop itself fail, `run()` logs it and starts the loop again, and
the relay's supervisor (relay/service.py) restarts a lane task that ended anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relay.coalesce import pack
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
    claim_limit: int = 16  # heads of conversations claimed at once, to coalesce across them
    run: int = 32  # rows of one conversation claimed behind its head, to coalesce
    # Rows behind heads claimed at once, in all: about the most one message holds (Slack's
    # 50 blocks, Telegram's 4096 characters), not `run` behind each of `claim_limit` heads
    # (512 rows read, leased and mostly given back for a message of a few dozen events).
    behind: int = 96
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
                await self._next_message()
            except StoreUnavailable as error:  # an outage, not a bug: wait and look again
                log.error(
                    "store unavailable: %s", error, extra=fields(destination=self.destination)
                )
                await self._idle(self.settings.poll * 5)

    async def _next_message(self) -> None:
        """Claim what is due and send the next message: one event, or several coalesced.

        When the pacer makes the message wait, the rows go back and what is due is claimed
        again once it may go, so that events arriving meanwhile join it (README: "Keeping
        up with a busy line"). An idle destination sends each event at once."""
        rows = await self._claim()
        if rows is None:  # another instance delivers for this destination now
            await self._idle(self.settings.poll)
            return
        if not rows:
            await self._idle(await self._until_due())
            return
        delay = self.pacer.reserve(self.courier.limits)
        if delay > 0:
            await self.store.release([row.id for row in rows])
            await self.pacer.sleep(delay)
            if self._stopping or self.clock() < self._pause.until:
                return
            rows = await self._claim()
            if not rows:
                return
        await self.deliver(rows)

    async def _claim(self) -> list[Claimed] | None:
        """Due rows, or None when this instance does not hold the destination's lane. With
        coalescing, also the rows behind each head that may share its message: of one
        conversation with threads (they share its thread), of several without."""
        if not await self._hold_lane():
            return None
        coalescing = self.courier.joiner is not None
        heads = self.settings.claim_limit if coalescing and not self.courier.threads else 1
        return await self.store.claim(
            self.destination,
            self.clock(),
            heads,
            self.settings.lease,
            self.settings.owner,
            run=self.settings.run if coalescing else 1,
            behind=self.settings.behind,
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

    # --- one message --------------------------------------------------------------------------

    async def deliver(self, rows: Sequence[Claimed]) -> None:
        """Send the next message for `rows` (due, oldest first) and record its outcome for
        every row it carries; the others are given back. Raises only StoreUnavailable (an
        outcome could not be recorded); any other failure — a bug — becomes a retry of the
        rows with reason internal_error, logged once with its traceback."""
        carried: list[Claimed] = [rows[0]]
        try:
            packed = pack(
                rows, self._render, self.courier.joiner, _conversation, self.courier.threads
            )
            carried = packed.rows
            await self._send(carried, packed.messages)
        except _Unrenderable as error:  # a bad body or a renderer bug must not block the lane
            log.error("could not render", exc_info=error.__cause__, extra=self._fields(rows[0]))
            await self._bury(carried, Permanent(Reason.RENDER_ERROR, describe(error.__cause__)))
        except (StoreUnavailable, asyncio.CancelledError):
            raise
        except Exception as error:
            log.exception(
                "internal error while delivering; retrying later",
                extra=self._fields(carried[0], reason=Reason.INTERNAL_ERROR),
            )
            failure = RetryLater(Reason.INTERNAL_ERROR, short_detail(describe(error)))
            await self._retry_later(carried, failure, logged=True)
        finally:
            taken = {row.id for row in carried}
            rest = [row.id for row in rows if row.id not in taken]
            if rest:
                await self.store.release(rest)

    def _render(self, row: Claimed) -> Sequence[Any]:
        try:
            return self.courier.render(parse_event(row.body))
        except Exception as error:
            raise _Unrenderable from error

    async def _send(self, rows: list[Claimed], messages: Sequence[Any]) -> None:
        """Send `messages` (the parts of one event, from where it stopped, or one message
        carrying every row) and record the outcome. The first part's pacing slot is taken."""
        first = rows[0]
        thread = await self._thread_parent(first)
        start = first.progress if len(rows) == 1 else 0
        began = time.perf_counter()  # how long the attempt took, for its history
        for part in range(start, len(messages)):
            if part > start:
                await self.pacer.wait(self.courier.limits)
                if not await self._hold_lane():
                    # A long message (paced parts) outlived this instance's hold on the lane,
                    # and another instance took it: that one resumes from the saved part;
                    # going on here would send the rest twice.
                    log.warning(
                        "another instance took the lane mid-message; it sends the rest",
                        extra=self._fields(first),
                    )
                    await self.store.release([row.id for row in rows])
                    return
            try:
                outcome = await self.courier.send(messages[part], thread)
            finally:
                self.pacer.sent(self.courier.limits)
            if isinstance(outcome, Sent):
                thread = await self._remember_parent(first, thread, outcome.ref)
                await self._remember_sent(rows, outcome.ref)
                if part + 1 < len(messages):
                    await self.store.save_progress(first.id, part + 1)
                continue
            took = time.perf_counter() - began
            if isinstance(outcome, RetryLater):
                await self._retry_later(rows, outcome, took=took)
            else:
                await self._bury(rows, outcome, took=took)
            return
        await self._sent(rows, len(messages), time.perf_counter() - began)

    async def _sent(self, rows: list[Claimed], parts: int, took: float = 0.0) -> None:
        now = self.clock()
        await self.store.mark_sent([row.id for row in rows], now, took=took)
        self.metrics.messages.labels(self.destination).inc(parts)
        sent = self.metrics.deliveries.labels(self.destination, "sent", "")
        latency = self.metrics.delivery_latency.labels(self.destination)
        for row in rows:
            sent.inc()
            latency.observe(max(0.0, now - row.created_at))
            together = {"events_in_message": len(rows)} if len(rows) > 1 else {"parts": parts}
            log.info("sent", extra=self._fields(row, **together))

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

    async def _remember_sent(self, rows: list[Claimed], ref: str | None) -> None:
        """A reply to this message is an answer in its conversation (when the destination
        takes replies, and the message carries one conversation only)."""
        remember = getattr(self.courier, "remember", None)  # tests' couriers may lack it
        conversations = {row.conversation for row in rows}
        if remember is None or ref is None or len(conversations) != 1 or None in conversations:
            return
        try:
            await remember(ref, rows[0].conversation or "")
        except Exception as error:  # the message is out: record it as sent all the same
            log.warning(
                "could not remember a sent message (a reply to it is not an answer): %s",
                error,
                extra=self._fields(rows[0]),
            )

    async def _retry_later(
        self, rows: list[Claimed], outcome: RetryLater, logged: bool = False, took: float = 0.0
    ) -> None:
        """Retry every row of the message together (backoff, or the server's Retry-After,
        capped at MAX_PAUSE), or dead-letter them once the oldest's window has passed."""
        outcome = outcome.masked(self.redact)
        now = self.clock()
        after = None if outcome.after is None else min(max(outcome.after, 0.0), MAX_PAUSE)
        if outcome.rate_limited and after:
            self._pause = Pause(max(self._pause.until, now + after), outcome.detail)
            self.pacer.hold(self.courier.limits, after)
        attempts = max(row.attempts for row in rows)
        delay = after if after is not None else backoff(attempts, self.rng)
        if now + delay > min(row.retry_from for row in rows) + self.settings.give_up_after:
            hours = self.settings.give_up_after / 3600
            await self._bury(
                rows,
                Permanent(
                    Reason.GAVE_UP,
                    f"still failing after {attempts + 1} attempts "
                    f"over {hours:g} h; last: {outcome.reason}: {outcome.detail}",
                ),
                took=took,
            )
            return
        ids = [row.id for row in rows]
        await self.store.retry_later(
            ids, now + delay, outcome.reason, outcome.detail, now=now, took=took
        )
        self.metrics.deliveries.labels(self.destination, "retried", outcome.reason).inc(len(rows))
        if not logged:
            for row in rows:
                log.warning(
                    "retrying in %.1f s: %s",
                    delay,
                    outcome.detail or outcome.reason,
                    extra=self._fields(row, reason=outcome.reason),
                )

    async def _bury(self, rows: list[Claimed], outcome: Failure, took: float = 0.0) -> None:
        outcome = outcome.masked(self.redact)
        await self.store.bury(
            [row.id for row in rows], self.clock(), outcome.reason, outcome.detail, took=took
        )
        self.metrics.deliveries.labels(self.destination, "dead", outcome.reason).inc(len(rows))
        for row in rows:
            log.error(
                "dead: %s",
                outcome.detail or outcome.reason,
                extra=self._fields(row, reason=outcome.reason),
            )
        gave_up = getattr(self.courier, "gave_up", None)  # tests' couriers may lack it
        if gave_up is not None and outcome.reason == Reason.GAVE_UP:
            try:
                await gave_up([row.body for row in rows], outcome)
            except Exception:  # a courtesy (an answer's feedback): never stops the lane
                log.exception("could not report giving up", extra=self._fields(rows[0]))

    def _fields(self, row: Claimed, **more: Any) -> dict[str, Any]:
        return fields(
            event_id=row.event_id,
            delivery_id=row.id,
            destination=self.destination,
            conversation=row.conversation,
            attempt=row.attempts + 1,
            **more,
        )


class _Unrenderable(Exception):  # carries a render failure to deliver()
    """The first row of a message could not be rendered: it is dead-lettered."""


def _conversation(row: Claimed) -> str:
    """Per-conversation order's key; a row without a conversation is alone in its own."""
    return row.conversation if row.conversation is not None else f"#{row.id}"
