"""The console's queries (relay/store/views.py) on every engine: filters, paging, dead
letters, lanes. Each filter combination is checked against a plain Python filter of the
same rows."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.store.base import Incoming, Store
from relay.store.postgres import PostgresStore
from relay.store.sql import Statement
from relay.store.sqlite import SQLiteStore
from relay.store.views import Filters

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, open store of each engine."""
    engine: Store
    if request.param == "postgresql":
        engine = PostgresStore(request.getfixturevalue("pg_url"))
    else:
        engine = SQLiteStore(tmp_path / "relay.db")
    await engine.open()
    yield engine
    await engine.close()


# Twelve events: names alternate, conversations cycle over three, destinations a and b.
NAMES = ["newMessage", "campaignDeliveryReport"]
CONVERSATIONS = ["c0", "c1", "c2"]


async def fill(store: Store) -> dict[int, dict[str, str]]:
    """Store the events; a's deliveries of events 0-3 are sent, 4-5 dead, the rest pending;
    b's are all pending. The states of each event's deliveries, by event id."""
    ids = []
    for n in range(12):
        body = f'{{"n":{n}}}'.encode()
        name, conversation = NAMES[n % 2], CONVERSATIONS[n % 3]
        destinations = ("a", "b") if n % 4 else ("a",)
        accepted = await store.accept(Incoming(body, name, conversation, destinations, T0 + n))
        ids.append(accepted.event_id)
    deliveries = await store.deliveries_of(ids)
    rows = {row.event_id: row.id for row in deliveries if row.destination == "a"}
    await store.mark_sent([rows[i] for i in ids[:4]], T0 + 100)
    await store.bury([rows[i] for i in ids[4:6]], T0 + 100, "channel_not_found", "gone")
    states = {}
    for row in await store.deliveries_of(ids):
        states.setdefault(row.event_id, {})[row.destination] = row.state
    return states


def expected(
    states: dict[int, dict[str, str]], store_names: dict[int, tuple[str, str]], filters: Filters
) -> list[int]:
    found = []
    for event_id in sorted(states, reverse=True):
        name, conversation = store_names[event_id]
        if filters.event not in (None, name) or filters.conversation not in (None, conversation):
            continue
        if not any(
            filters.destination in (None, destination) and filters.state in (None, state)
            for destination, state in states[event_id].items()
        ):
            continue
        found.append(event_id)
    return found


async def test_every_filter_combination_pages_newest_first(store: Store) -> None:
    states = await fill(store)
    events = await store.recent_events(Filters(), None, 100)
    assert [e.id for e in events] == sorted(states, reverse=True)
    names = {e.id: (e.event_name or "", e.conversation or "") for e in events}
    options = itertools.product(
        [None, "newMessage"], [None, "a", "b"], [None, "pending", "sent", "dead"], [None, "c1"]
    )
    for event, destination, state, conversation in options:
        filters = Filters(event, destination, state, conversation)
        want = expected(states, names, filters)
        assert [e.id for e in await store.recent_events(filters, None, 100)] == want, filters
        # Pages of two, each starting below the last id of the one before.
        paged: list[int] = []
        before = None
        while page := await store.recent_events(filters, before, 2):
            paged += [e.id for e in page]
            before = page[-1].id
        assert paged == want, filters


async def test_an_event_and_its_deliveries(store: Store) -> None:
    states = await fill(store)
    first = min(states)
    event = await store.event(first)
    assert event is not None and event.body == b'{"n":0}' and event.event_name == "newMessage"
    assert await store.event(10**9) is None
    deliveries = await store.deliveries_of([first])
    assert [(d.destination, d.state) for d in deliveries] == [("a", "sent")]
    assert [a.outcome for a in await store.attempts_of(first)] == ["sent"]


async def test_dead_letters_filtered_and_revived_by_filter(store: Store) -> None:
    await fill(store)
    dead = await store.dead_page(Filters(), None, 100)
    assert [(d.delivery.destination, d.delivery.reason) for d in dead] == [
        ("a", "channel_not_found")
    ] * 2
    assert dead[0].delivery.id > dead[1].delivery.id
    assert [d.delivery.id for d in await store.dead_page(Filters(), dead[0].delivery.id, 10)] == [
        dead[1].delivery.id
    ]
    assert await store.dead_page(Filters(destination="b"), None, 10) == []
    only = await store.dead_page(Filters(conversation=dead[0].conversation), None, 10)
    assert [d.delivery.id for d in only] == [dead[0].delivery.id]
    assert await store.revive_matching(Filters(destination="b"), T0 + 200) == 0
    assert await store.revive_matching(Filters(conversation=dead[0].conversation), T0 + 200) == 1
    assert [d.delivery.id for d in await store.dead_page(Filters(), None, 10)] == [
        dead[1].delivery.id
    ]
    assert await store.revive_matching(Filters(), T0 + 200) == 1
    assert await store.dead_page(Filters(), None, 10) == []
    # Revived rows are the heads of their conversations again: the next claim takes them.
    claimed = {row.id for row in await store.claim("a", T0 + 300, 100, 60.0, "me")}
    assert {d.delivery.id for d in dead} <= claimed


async def test_lane_counts(store: Store) -> None:
    await fill(store)
    counts = await store.lane_counts(T0 + 100 + 60)
    assert counts["a"].pending == 6 and counts["a"].dead == 2 and counts["a"].sent_last_hour == 4
    assert counts["a"].oldest_created_at == T0 + 6
    assert counts["b"].pending == 9 and counts["b"].dead == 0 and counts["b"].sent_last_hour == 0
    assert (await store.lane_counts(T0 + 100 + 7200))["a"].sent_last_hour == 0


def test_a_state_outside_the_three_is_refused() -> None:
    with pytest.raises(ValueError, match="state must be one of"):
        Filters(state="lost")


async def test_every_outcome_records_an_attempt_and_prune_deletes_them(store: Store) -> None:
    accepted = await store.accept(Incoming(b'{"n":1}', "newMessage", "c", ("a",), T0))
    (row,) = await store.claim("a", T0 + 1, 10, 60.0, "me")
    await store.retry_later([row.id], T0 + 5, "server_error", "HTTP 503", now=T0 + 1, took=0.25)
    (row,) = await store.claim("a", T0 + 6, 10, 60.0, "me")
    await store.bury([row.id], T0 + 6, "channel_not_found", "no such channel", took=0.125)
    assert await store.revive([row.id], T0 + 7) == 1
    (row,) = await store.claim("a", T0 + 8, 10, 60.0, "me")
    await store.mark_sent([row.id], T0 + 8, took=0.5)
    attempts = await store.attempts_of(accepted.event_id)
    assert [(a.delivery_id, a.at, a.outcome, a.reason, a.detail, a.duration) for a in attempts] == [
        (row.id, T0 + 1, "retry", "server_error", "HTTP 503", 0.25),
        (row.id, T0 + 6, "dead", "channel_not_found", "no such channel", 0.125),
        (row.id, T0 + 8, "sent", None, None, 0.5),
    ]
    assert await store.prune(T0 + 10 * 86400, 86400.0) == 1
    assert await store.attempts_of(accepted.event_id) == []
    ((left,),) = await store._read(Statement("SELECT count(*) FROM attempts", rows=True))  # type: ignore[attr-defined]
    assert left == 0
