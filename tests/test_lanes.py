"""Lanes with a scripted courier and a real SQLite store: outcomes, retries, order, threads.

The courier here is a stand-in on purpose: these tests are about the lane's bookkeeping.
The real senders against fake Slack and Telegram servers are in test_delivery.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relay.lanes import Lane, LaneSettings, backoff
from relay.outcome import Outcome, Permanent, RetryLater, Sent
from relay.pacing import Limit, Pacer
from relay.store.base import Incoming
from relay.store.sqlite import SQLiteStore
from tests.waiting import until

T0 = 1_700_000_000.0


@dataclass
class ScriptedCourier:
    """Renders an event into `parts` messages; answers from a script, then Sent."""

    parts: int = 1
    threads: bool = False
    limits: tuple[Limit, ...] = ()
    joiner: Any = None  # no coalescing unless a test sets one
    script: dict[str, list[Outcome]] = field(default_factory=dict)  # message text -> outcomes
    sent: list[tuple[str, str | None]] = field(default_factory=list)
    refs: int = 0

    def render(self, event: Mapping[str, Any]) -> Sequence[Any]:
        if event.get("explode"):
            raise RuntimeError("renderer bug")
        return [f"{event['text']}#{i}" for i in range(self.parts)]

    async def send(self, message: Any, thread: str | None) -> Outcome:
        outcomes = self.script.get(message)
        if outcomes:
            return outcomes.pop(0)
        self.sent.append((message, thread))
        self.refs += 1
        return Sent(ref=f"ref{self.refs}")

    async def close(self) -> None:
        return None


class Clock:
    """Wall clock for the lane and the store, and clock and sleep for its pacer. The pacer's
    sleeps are recorded; while `hold` is clear, a sleep waits for the test to set it."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []
        self.hold = asyncio.Event()
        self.hold.set()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.hold.wait()
        self.now += seconds


async def put(store: SQLiteStore, text: str, conversation: str | None = "c1",
              at: float = T0, **extra: Any) -> int:
    body = json.dumps({"text": text, **extra}).encode()
    return (await store.accept(Incoming(body, "newMessage", conversation, ("d",), at))).event_id


def make_lane(store: SQLiteStore, courier: ScriptedCourier, clock: Clock,
              **settings: Any) -> Lane:
    return Lane("d", courier, store, Pacer(clock, clock.sleep),
                LaneSettings(owner="me", **settings), clock=clock, rng=lambda: 0.5)


async def deliver_all(lane: Lane, store: SQLiteStore, clock: Clock) -> None:
    """What the lane's loop does, one message at a time, until nothing is due."""
    while rows := await store.claim("d", clock.now, 10, 60, "me"):
        await lane.deliver(rows)


async def claim_one(store: SQLiteStore, clock: Clock) -> Any:
    (row,) = await store.claim("d", clock.now, 1, 60, "me")
    return row


def test_backoff_doubles_from_one_second_to_ten_minutes_with_jitter() -> None:
    assert [backoff(n, lambda: 0.0) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff(n, lambda: 1.0) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(50, lambda: 1.0) == 600.0
    assert backoff(10_000, lambda: 0.0) == 300.0


async def test_sent_all_parts_then_marked_sent(store: SQLiteStore) -> None:
    clock, courier = Clock(), ScriptedCourier(parts=3)
    lane = make_lane(store, courier, clock)
    await put(store, "hello")
    await lane.deliver([await claim_one(store, clock)])
    assert [m for m, _ in courier.sent] == ["hello#0", "hello#1", "hello#2"]
    assert await store.backlog() == []


async def test_retry_resumes_after_the_parts_already_sent(store: SQLiteStore) -> None:
    clock = Clock()
    courier = ScriptedCourier(parts=3, script={"hi#1": [RetryLater("server_error", "HTTP 503")]})
    lane = make_lane(store, courier, clock)
    await put(store, "hi")
    await lane.deliver([await claim_one(store, clock)])
    assert [m for m, _ in courier.sent] == ["hi#0"]
    clock.now += 10
    row = await claim_one(store, clock)
    assert (row.progress, row.attempts) == (1, 1)
    await lane.deliver([row])
    assert [m for m, _ in courier.sent] == ["hi#0", "hi#1", "hi#2"]  # hi#0 not sent twice


async def test_retry_after_from_the_server_is_honoured_and_pauses_the_lane(
    store: SQLiteStore,
) -> None:
    clock = Clock()
    courier = ScriptedCourier(
        limits=(Limit("chan", 1.0),),
        script={"a#0": [RetryLater("rate_limited", "429", after=30.0, rate_limited=True)]},
    )
    lane = make_lane(store, courier, clock)
    await put(store, "a")
    await lane.deliver([await claim_one(store, clock)])
    assert await store.next_due("d", "other") == T0 + 30.0
    # The whole lane waits: another conversation's message, due now, is not sent either.
    await put(store, "b", conversation="c2")
    lane.start()
    lane.wake()
    await asyncio.sleep(0.3)
    assert courier.sent == []
    clock.now += 30.0
    lane.wake()
    await until(lambda: len(courier.sent) == 2)
    await lane.stop()
    assert [m for m, _ in courier.sent] == ["b#0", "a#0"] or [m for m, _ in courier.sent] == [
        "a#0", "b#0"]


async def test_transient_failure_backs_off(store: SQLiteStore) -> None:
    clock = Clock()
    courier = ScriptedCourier(script={"a#0": [RetryLater("timeout", "")] * 3})
    lane = make_lane(store, courier, clock)
    await put(store, "a")
    dues = []
    for _ in range(3):
        await lane.deliver([await claim_one(store, clock)])
        due = await store.next_due("d", "me")
        dues.append(due - clock.now)
        clock.now = due
    assert dues == [0.75, 1.5, 3.0]  # rng 0.5: three quarters of 1, 2, 4 s
    await lane.deliver([await claim_one(store, clock)])
    assert courier.sent == [("a#0", None)]


async def test_permanent_failure_is_dead_at_once_with_its_reason(store: SQLiteStore) -> None:
    clock = Clock()
    courier = ScriptedCourier(script={"a#0": [Permanent("channel_not_found", "no C1")]})
    lane = make_lane(store, courier, clock)
    await put(store, "a")
    await lane.deliver([await claim_one(store, clock)])
    (letter,) = await store.dead_letters()
    assert (letter.reason, letter.detail, letter.attempts) == ("channel_not_found", "no C1", 1)


async def test_gives_up_after_the_retry_window(store: SQLiteStore) -> None:
    clock = Clock()
    courier = ScriptedCourier(script={"a#0": [RetryLater("server_error", "HTTP 502")] * 2})
    lane = make_lane(store, courier, clock, give_up_after=3600.0)
    await put(store, "a")
    await lane.deliver([await claim_one(store, clock)])
    clock.now = T0 + 3600
    await lane.deliver([await claim_one(store, clock)])
    (letter,) = await store.dead_letters()
    assert letter.reason == "gave_up"
    assert "after 2 attempts over 1 h; last: server_error: HTTP 502" in letter.detail


async def test_render_error_buries_the_row_and_the_lane_goes_on(store: SQLiteStore) -> None:
    clock, courier = Clock(), ScriptedCourier()
    lane = make_lane(store, courier, clock)
    await put(store, "boom", explode=True)
    await put(store, "fine")
    await deliver_all(lane, store, clock)
    assert [m for m, _ in courier.sent] == ["fine#0"]
    assert [d.reason for d in await store.dead_letters()] == ["render_error"]


async def test_threads_first_message_is_the_parent(store: SQLiteStore) -> None:
    clock, courier = Clock(), ScriptedCourier(parts=2, threads=True)
    lane = make_lane(store, courier, clock)
    await put(store, "first")
    await put(store, "second")
    await put(store, "other", conversation="c2")
    await deliver_all(lane, store, clock)
    assert sorted(courier.sent) == sorted([
        ("first#0", None), ("first#1", "ref1"),
        ("other#0", None), ("other#1", "ref5"),
        ("second#0", "ref1"), ("second#1", "ref1"),
    ])
    assert await store.thread_parent("d", "c1") == "ref1"


async def test_running_lane_keeps_conversation_order_through_failures(
    store: SQLiteStore,
) -> None:
    courier = ScriptedCourier(script={
        "A1#0": [RetryLater("server_error", "", after=0.05)] * 3,
        "B2#0": [RetryLater("timeout", "", after=0.02)],
    })
    lane = Lane("d", courier, store, Pacer(), LaneSettings(owner="me", poll=0.05))
    import time

    for text, conversation in [("A1", "A"), ("B1", "B"), ("A2", "A"), ("B2", "B"),
                               ("A3", "A"), ("N1", None)]:
        await put(store, text, conversation, at=time.time())
    lane.start()
    lane.wake()
    await until(lambda: len(courier.sent) == 6)
    await lane.stop()
    order = [m for m, _ in courier.sent]
    assert sorted(order) == ["A1#0", "A2#0", "A3#0", "B1#0", "B2#0", "N1#0"]
    assert [m for m in order if m[0] == "A"] == ["A1#0", "A2#0", "A3#0"]
    assert [m for m in order if m[0] == "B"] == ["B1#0", "B2#0"]
    assert order.index("B1#0") < order.index("A1#0")  # B was not held up by A's failures
    assert await store.backlog() == []


async def test_stop_gives_back_rows_not_attempted(store: SQLiteStore) -> None:
    courier = ScriptedCourier(limits=(Limit("slow", 2.0),))
    lane = Lane("d", courier, store, Pacer(), LaneSettings(owner="me", poll=0.05))
    import time

    for i in range(5):
        await put(store, f"m{i}", None, at=time.time())
    lane.start()
    # Stopped once the first is sent (waited for: a loaded machine may take longer than any
    # fixed sleep), while the pacer (2 a second) holds the rest back.
    await until(lambda: courier.sent)
    await lane.stop(grace=2.0)
    sent = len(courier.sent)
    assert 1 <= sent < 5
    # What was claimed but not attempted is claimable again by the same owner at once.
    rows = await store.claim("d", time.time(), 10, 60, "me")
    assert len(rows) == 5 - sent


# --- keeping up with a busy line: the lane's part in coalescing -------------------------------


class Bars:
    """Joins the ScriptedCourier's messages with "|"; nothing goes alone, nothing is too big."""

    def alone(self, message: str) -> bool:
        return False

    def join(self, messages: Sequence[str]) -> str:
        return "|".join(messages)


class Waits:
    """The lane's idle waits: each is recorded and lasts until the lane is woken (never
    until its time is up), so a lane that waits for a poll before sending stays waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, wake: asyncio.Event, seconds: float) -> None:
        self.seconds.append(seconds)
        await wake.wait()


def coalescing_lane(
    store: SQLiteStore, clock: Clock, waits: Waits
) -> tuple[Lane, ScriptedCourier]:
    """A lane paced at one message a second on the fake clock, whose courier coalesces."""
    courier = ScriptedCourier(limits=(Limit("chan", 1.0),), joiner=Bars())
    lane = Lane("d", courier, store, Pacer(clock, clock.sleep), LaneSettings(owner="me"),
                clock=clock, rng=lambda: 0.5, wait=waits)
    return lane, courier


async def test_an_idle_coalescing_lane_sends_a_due_event_at_once_alone(
    store: SQLiteStore,
) -> None:
    clock, waits = Clock(), Waits()
    lane, courier = coalescing_lane(store, clock, waits)
    lane.start()
    await until(lambda: waits.seconds == [1.0])  # nothing due: the lane waits for a poll
    await put(store, "a", at=clock.now)
    lane.wake()  # as ingest does
    await until(lambda: len(waits.seconds) == 2)  # idle again
    assert courier.sent == [("a#0", None)]  # sent before the lane waited at all
    # Later, with the pacer's slot long free, the next event is also sent at once, alone.
    clock.now += 10.0
    await put(store, "b", conversation="c2", at=clock.now)
    lane.wake()
    await until(lambda: len(waits.seconds) == 3)
    await lane.stop()
    assert courier.sent == [("a#0", None), ("b#0", None)]
    assert clock.sleeps == []  # the pacer never made the lane wait
    assert waits.seconds == [1.0, 1.0, 1.0]  # only idle polls, each after a send


async def test_events_due_while_the_pacer_waits_join_the_next_message_in_order(
    store: SQLiteStore,
) -> None:
    clock, waits = Clock(), Waits()
    lane, courier = coalescing_lane(store, clock, waits)
    lane.start()
    await until(lambda: waits.seconds == [1.0])
    await put(store, "a", at=clock.now)
    lane.wake()
    await until(lambda: len(waits.seconds) == 2)
    assert courier.sent == [("a#0", None)]  # alone, at once: the pacer's next slot is in 1 s
    clock.hold.clear()  # the pacer's sleep lasts until the test ends it
    await put(store, "b", at=clock.now)
    lane.wake()
    await until(lambda: clock.sleeps == [1.0])  # b was claimed, and must wait for its slot
    # Meanwhile b is given back (claimable again) and more events arrive.
    assert await store.next_due("d", "me") == T0
    await put(store, "c", conversation="c2", at=clock.now)
    await put(store, "d", at=clock.now)
    clock.hold.set()
    await until(lambda: len(waits.seconds) == 3)
    await lane.stop()
    # Claimed again once the slot came: one message carries them, oldest first.
    assert courier.sent == [("a#0", None), ("b#0|c#0|d#0", None)]
    assert clock.sleeps == [1.0]
    assert await store.backlog() == []
