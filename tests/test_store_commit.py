"""Group commit (relay/store/commit.py) on its own: batches, failures, and closing while a
batch is stuck, with a `write` the test controls (both engines' runs are tests/test_store.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.errors import StoreUnavailable
from relay.store.base import Accepted, Incoming
from relay.store.commit import GroupCommit


def incoming(n: int) -> Incoming:
    return Incoming(b"%d" % n, None, None, ("a",), 0.0)


class Writer:
    """Answers each event with its own number; can be held (a slow disk) or broken."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.held = asyncio.Event()
        self.held.set()
        self.failure: Exception | None = None

    async def __call__(self, items: list[Incoming]) -> list[Accepted]:
        self.batches.append(len(items))
        await self.held.wait()
        if self.failure is not None:
            raise self.failure
        return [Accepted(int(item.body), duplicate=False) for item in items]


async def test_concurrent_accepts_share_batches_and_each_hears_its_own_answer() -> None:
    writer = Writer()
    commit = GroupCommit(writer, name="test", max_batch=64)
    commit.start()
    answers = await asyncio.gather(*(commit.accept(incoming(n)) for n in range(200)))
    assert [answer.event_id for answer in answers] == list(range(200))
    assert len(writer.batches) < 10 and max(writer.batches) <= 64
    await commit.close()


async def test_a_failed_batch_is_refused_to_all_its_callers_and_the_next_one_works() -> None:
    writer = Writer()
    writer.failure = StoreUnavailable("relay.db: database or disk is full")
    commit = GroupCommit(writer, name="test")
    commit.start()
    results = await asyncio.gather(
        *(commit.accept(incoming(n)) for n in range(5)), return_exceptions=True
    )
    assert [str(result) for result in results] == ["relay.db: database or disk is full"] * 5
    writer.failure = RuntimeError("a bug, with a secret in its message")
    with pytest.raises(StoreUnavailable) as raised:
        await commit.accept(incoming(5))
    assert str(raised.value) == "storing the event failed (RuntimeError)"
    writer.failure = None
    assert (await commit.accept(incoming(6))).event_id == 6
    await commit.close()


async def test_close_refuses_a_stuck_batch_and_the_queue_after_its_timeout() -> None:
    writer = Writer()
    writer.held.clear()  # the disk hangs
    commit = GroupCommit(writer, name="test", close_timeout=0.2)
    commit.start()
    in_flight = asyncio.create_task(commit.accept(incoming(0)))
    await asyncio.sleep(0.01)  # taken by the writer, which now waits on the disk
    queued = [asyncio.create_task(commit.accept(incoming(n))) for n in range(1, 4)]
    await asyncio.sleep(0)
    started = time.monotonic()
    await commit.close()
    # Its 0.2 s timeout, not CLOSE_TIMEOUT's 10 s nor forever; generous for a loaded machine.
    assert time.monotonic() - started < 5.0
    for result in await asyncio.gather(in_flight, *queued, return_exceptions=True):
        assert isinstance(result, StoreUnavailable)
        assert str(result) == "the store closed before the event was stored"
    assert writer.batches == [1]  # the queued ones were never attempted


async def test_accept_before_start_or_after_close_is_refused_at_once() -> None:
    commit = GroupCommit(Writer(), name="test")
    with pytest.raises(StoreUnavailable, match="not open"):
        await commit.accept(incoming(0))
    commit.start()
    await commit.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await commit.accept(incoming(0))
    await commit.close()  # twice is harmless


async def test_close_commits_what_is_queued_then_stops() -> None:
    writer = Writer()
    writer.held.clear()
    commit = GroupCommit(writer, name="test", max_batch=2)
    commit.start()
    accepted = [asyncio.create_task(commit.accept(incoming(n))) for n in range(5)]
    await asyncio.sleep(0.01)  # the first batch is in flight, the rest queued
    closing = asyncio.create_task(commit.close())
    await asyncio.sleep(0.01)
    writer.held.set()
    await closing
    assert [(await task).event_id for task in accepted] == list(range(5))
    assert writer.batches == [2, 2, 1]
    assert commit._writer is not None and commit._writer.done()


async def test_the_writer_waits_for_events_and_takes_them_in_order() -> None:
    writer = Writer()
    commit = GroupCommit(writer, name="test")
    commit.start()
    for n in range(3):  # one at a time: the writer goes back to waiting in between
        assert (await commit.accept(incoming(n))).event_id == n
        await asyncio.sleep(0.01)
    assert writer.batches == [1, 1, 1]
    await commit.close()
    assert commit._writer is not None and commit._writer.done()
