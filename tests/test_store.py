"""The store contract, run against every engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from relay.errors import StoreUnavailable
from relay.store import shared
from relay.store.base import DUPLICATE_WINDOW, Accepted, Incoming, Store
from relay.store.postgres import PostgresStore
from relay.store.sqlite import SQLiteStore

NewStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> NewStore:
    """Makes stores of one engine (not yet opened) on one place: a fresh SQLite file, or the
    session's PostgreSQL database emptied; each call is another process on the same data."""
    if request.param == "postgresql":
        # Asked for only here, so the SQLite half of the suite runs without a server.
        url: str = request.getfixturevalue("pg_url")
        return lambda: PostgresStore(url)
    return lambda: SQLiteStore(tmp_path / "relay.db")


@pytest.fixture
async def store(new_store: NewStore) -> AsyncIterator[Store]:
    """A fresh, open store of each engine."""
    engine = new_store()
    await engine.open()
    yield engine
    await engine.close()


T0 = 1_700_000_000.0


def incoming(
    body: bytes, destinations: tuple[str, ...] = ("a",), conversation: str | None = "c1",
    at: float = T0,
) -> Incoming:
    return Incoming(body, "newMessage", conversation, destinations, at)


async def claim_ids(store: Store, destination: str = "a", now: float = T0 + 1,
                    owner: str = "me") -> list[int]:
    return [row.id for row in await store.claim(destination, now, 100, 60.0, owner)]


async def test_accept_stores_event_and_one_row_per_destination(store: Store) -> None:
    accepted = await store.accept(incoming(b'{"n":1}', ("a", "b")))
    assert not accepted.duplicate
    rows = await store.claim("a", T0 + 1, 10, 60.0, "me")
    assert [(r.event_id, r.destination, r.conversation, r.body) for r in rows] == [
        (accepted.event_id, "a", "c1", b'{"n":1}')
    ]
    assert len(await store.claim("b", T0 + 1, 10, 60.0, "me")) == 1
    assert {b.destination: b.pending for b in await store.backlog()} == {"a": 1, "b": 1}


async def test_same_body_within_24h_is_a_duplicate_and_stored_once(store: Store) -> None:
    first = await store.accept(incoming(b'{"n":1}'))
    again = await store.accept(incoming(b'{"n":1}', at=T0 + DUPLICATE_WINDOW - 1))
    assert again.duplicate and again.event_id == first.event_id
    assert len(await claim_ids(store, now=T0 + DUPLICATE_WINDOW)) == 1
    later = await store.accept(incoming(b'{"n":1}', at=T0 + DUPLICATE_WINDOW + 1))
    assert not later.duplicate and later.event_id != first.event_id


async def test_concurrent_accepts_are_batched_and_all_durable(store: Store) -> None:
    bodies = [f'{{"n":{i}}}'.encode() for i in range(200)]
    results = await asyncio.gather(
        *(store.accept(incoming(b, conversation=None)) for b in bodies),
        store.accept(incoming(bodies[0], conversation=None)),  # a duplicate inside one batch
    )
    assert sum(r.duplicate for r in results) == 1
    assert len({r.event_id for r in results}) == 200
    assert len(await claim_ids(store)) == 100  # the claim limit
    assert (await store.backlog())[0].pending == 200


async def test_conversation_order_only_heads_are_claimed(store: Store) -> None:
    a1 = await store.accept(incoming(b"1", conversation="A"))
    a2 = await store.accept(incoming(b"2", conversation="A"))
    b1 = await store.accept(incoming(b"3", conversation="B"))
    none1 = await store.accept(incoming(b"4", conversation=None))
    none2 = await store.accept(incoming(b"5", conversation=None))
    rows = await store.claim("a", T0 + 1, 10, 60.0, "me")
    assert [r.event_id for r in rows] == [a1.event_id, b1.event_id, none1.event_id,
                                          none2.event_id]
    # A1 retried later: A2 still waits behind it; nothing else is due.
    await store.retry_later([rows[0].id], T0 + 100, "server_error", "HTTP 503")
    for row in rows[1:]:
        await store.mark_sent([row.id], T0 + 2)
    assert await claim_ids(store, now=T0 + 50) == []
    assert await store.next_due("a", "me") == T0 + 100  # A2 waits for A1, not for its time
    (retried,) = await store.claim("a", T0 + 100, 10, 60.0, "me")
    assert retried.event_id == a1.event_id and retried.attempts == 1
    await store.bury([retried.id], T0 + 101, "forbidden", "bot was kicked")
    (next_row,) = await store.claim("a", T0 + 101, 10, 60.0, "me")
    assert next_row.event_id == a2.event_id  # a dead row no longer blocks its conversation


async def test_leases_hold_rows_for_their_owner_only(store: Store) -> None:
    await store.accept(incoming(b"1", conversation=None))
    assert len(await claim_ids(store, owner="me")) == 1
    assert await claim_ids(store, owner="me") == []  # leased to me: not claimed twice
    # Another owner holds the lane now (the old holder died): its rows come back at once.
    assert len(await claim_ids(store, owner="successor")) == 1
    await store.release(await claim_ids(store, owner="third"))
    assert len(await claim_ids(store, owner="third")) == 1


async def test_lease_expires(store: Store) -> None:
    await store.accept(incoming(b"1", conversation=None))
    assert len(await claim_ids(store, now=T0 + 1)) == 1
    assert await claim_ids(store, now=T0 + 30) == []
    assert len(await claim_ids(store, now=T0 + 62)) == 1


async def test_progress_survives_a_reclaim(store: Store) -> None:
    await store.accept(incoming(b"1"))
    (row,) = await store.claim("a", T0 + 1, 10, 60.0, "me")
    await store.save_progress(row.id, 2)
    (again,) = await store.claim("a", T0 + 1, 10, 60.0, "other")
    assert again.progress == 2


async def test_dead_letters_and_revive(store: Store) -> None:
    await store.accept(incoming(b'{"n":1}', ("a", "b")))
    rows = (await store.claim("a", T0 + 1, 10, 60.0, "me")) + (
        await store.claim("b", T0 + 1, 10, 60.0, "me")
    )
    await store.bury([rows[0].id], T0 + 5, "channel_not_found", "no such channel C1")
    await store.bury([rows[1].id], T0 + 6, "unauthorized", "invalid_auth")
    letters = await store.dead_letters()
    assert [(d.destination, d.reason, d.detail, d.died_at, d.attempts) for d in letters] == [
        ("a", "channel_not_found", "no such channel C1", T0 + 5, 1),
        ("b", "unauthorized", "invalid_auth", T0 + 6, 1),
    ]
    assert letters[0].event_name == "newMessage"
    assert await store.dead_count() == 2
    assert await store.revive([letters[0].id, 999_999], T0 + 10) == 1
    (revived,) = await store.claim("a", T0 + 10, 10, 60.0, "me")
    assert revived.attempts == 0 and revived.retry_from == T0 + 10 and revived.created_at == T0
    assert await store.revive(None, T0 + 11) == 1
    assert await store.dead_letters() == []


async def test_bury_destination(store: Store) -> None:
    await store.accept(incoming(b"1", ("gone", "kept")))
    assert await store.bury_destination("gone", T0 + 1, "destination_removed") == 1
    (letter,) = await store.dead_letters()
    assert (letter.destination, letter.reason) == ("gone", "destination_removed")
    assert [b.destination for b in await store.backlog()] == ["kept"]


async def test_thread_parent_first_writer_wins(store: Store) -> None:
    assert await store.thread_parent("a", "c1") is None
    assert await store.set_thread_parent("a", "c1", "111.1") == "111.1"
    assert await store.set_thread_parent("a", "c1", "222.2") == "111.1"
    assert await store.thread_parent("a", "c1") == "111.1"
    assert await store.thread_parent("b", "c1") is None


async def test_prune_deletes_only_old_delivered_events(store: Store) -> None:
    sent = await store.accept(incoming(b"sent", conversation=None))
    dead = await store.accept(incoming(b"dead", conversation=None))
    await store.accept(incoming(b"pending", conversation=None, at=T0 + 1))
    rows = {r.event_id: r for r in await store.claim("a", T0 + 2, 10, 60.0, "me")}
    await store.mark_sent([rows[sent.event_id].id], T0 + 3)
    await store.bury([rows[dead.event_id].id], T0 + 3, "bad_request", "")
    assert await store.prune(T0 + 3600, retention=7200) == 0  # not old enough yet
    assert await store.prune(T0 + 10 * 86400, retention=7 * 86400) == 1
    assert await store.dead_count() == 1
    assert (await store.backlog())[0].pending == 1
    # The duplicate mark went with the window: the same body is new again.
    assert not (await store.accept(incoming(b"sent", at=T0 + 10 * 86400))).duplicate


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_check_writable_on_a_healthy_store_leaves_nothing_behind(store: Store) -> None:
    await store.check_writable()
    await store.check_writable()
    assert await store.backlog() == []
    assert not (await store.accept(incoming(b"after the probe"))).duplicate


# --- closing --------------------------------------------------------------------------------------


async def test_close_answers_or_refuses_every_accept_in_flight(new_store: NewStore) -> None:
    """Accepts queued or mid-commit when close() starts are committed or refused, never left
    waiting; the answered ones are really stored; accepts after close() are refused."""
    store = new_store()
    await store.open()
    queued = [
        asyncio.create_task(store.accept(incoming(b"%d" % n, conversation=None)))
        for n in range(60)
    ]
    await asyncio.sleep(0)  # all queued; the writer has taken the first batch
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)  # close() has started
    late = asyncio.create_task(store.accept(incoming(b"late", conversation=None)))
    # A bound, not a timing assertion: more than close()'s own CLOSE_TIMEOUT (10 s), which a
    # slow disk may use up before it refuses what is left.
    _, waiting = await asyncio.wait([*queued, late, closing], timeout=30)
    assert not waiting, "close() left callers waiting"
    assert closing.exception() is None
    answers = [task.exception() or task.result() for task in queued]
    assert all(isinstance(answer, Accepted | StoreUnavailable) for answer in answers), answers
    assert isinstance(late.exception(), StoreUnavailable)
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.accept(incoming(b"after", conversation=None))

    reopened = new_store()
    await reopened.open()
    try:
        stored = {row.event_id for row in await reopened.claim("a", T0 + 1, 100, 60.0, "me")}
    finally:
        await reopened.close()
    answered = {answer.event_id for answer in answers if isinstance(answer, Accepted)}
    assert answered <= stored


async def test_prune_deletes_in_chunks_until_nothing_expired_is_left(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each prune transaction deletes at most PRUNE_CHUNK events and marks (ingest waits for
    one chunk, not for all), and prune goes on until nothing expired is left."""
    monkeypatch.setattr(shared, "PRUNE_CHUNK", 2)
    ids = []
    for n in range(5):
        await store.accept(incoming(b"old %d" % n, conversation=None))
    for row in await store.claim("a", T0 + 1, 10, 60.0, "me"):
        ids.append(row.id)
    await store.mark_sent(ids, T0 + 2)
    kept = await store.accept(incoming(b"new", conversation=None, at=T0 + 10 * 86400))
    assert await store.prune(T0 + 10 * 86400, retention=7 * 86400) == 5
    assert await store.prune(T0 + 10 * 86400, retention=7 * 86400) == 0
    # Every expired mark went too (the same bodies are new again), the fresh one stayed.
    for n in range(5):
        assert not (await store.accept(incoming(b"old %d" % n, at=T0 + 10 * 86400))).duplicate
    assert (await store.accept(incoming(b"new", at=T0 + 10 * 86400))) == Accepted(
        kept.event_id, duplicate=True
    )


# --- ids ------------------------------------------------------------------------------------------


async def test_ids_are_never_reused_after_pruning(store: Store) -> None:
    """A pruned event's duplicate mark outlives it (the window is longer than the retention):
    its id must not go to a new event, or a duplicate's answer would name the wrong one."""
    old = await store.accept(incoming(b"old", conversation=None))
    (row,) = await store.claim("a", T0 + 1, 10, 60.0, "me")
    await store.mark_sent([row.id], T0 + 2)
    assert await store.prune(T0 + 7200, retention=3600) == 1  # the newest event, gone

    new = await store.accept(incoming(b"new", conversation=None, at=T0 + 7200))
    assert new.event_id > old.event_id
    (new_row,) = await store.claim("a", T0 + 7201, 10, 60.0, "me")
    assert new_row.id > row.id  # `relay dead retry ID` never names another delivery
    again = await store.accept(incoming(b"old", conversation=None, at=T0 + 7200))
    assert again.duplicate and again.event_id == old.event_id


# --- runs behind heads ----------------------------------------------------------------------------


async def test_a_run_takes_the_due_rows_right_behind_each_head_in_order(store: Store) -> None:
    accepted = [await store.accept(incoming(b"%d" % n, conversation="A")) for n in range(5)]
    await store.accept(incoming(b"b", conversation="B"))
    rows = await store.claim("a", T0 + 1, 10, 60.0, "me", run=3)
    assert [r.body for r in rows] == [b"0", b"1", b"2", b"b"]
    assert rows[0].event_id == accepted[0].event_id
    await store.mark_sent([rows[3].id], T0 + 1)
    # The second row of A waits for its retry: the head goes alone, the rows after it wait
    # too (taking them would overtake the one in between).
    await store.retry_later([rows[1].id], T0 + 100, "timeout", "")
    await store.release([rows[0].id, rows[2].id])
    again = await store.claim("a", T0 + 2, 10, 60.0, "me", run=5)
    assert [r.body for r in again] == [b"0"]
    await store.mark_sent([again[0].id], T0 + 2)
    assert await claim_ids(store, now=T0 + 3) == []  # A's head waits for its retry
    assert await store.next_due("a", "me") == T0 + 100
    late = await store.claim("a", T0 + 100, 10, 60.0, "me", run=5)
    assert [r.body for r in late] == [b"1", b"2", b"3", b"4"]
