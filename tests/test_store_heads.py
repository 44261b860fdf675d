"""Heads of conversations (migration 4): claims, next_due and the `heads` table against a
model, on both engines; several claimers on PostgreSQL; heads backfilled on upgrade.

The model is the rule in plain Python: per destination, a conversation's oldest pending row
is its head (a row without a conversation is its own); a claim takes up to `limit` due heads
not leased to the claimer, soonest due first, each with the due rows right behind it (up to
`run` in all, stopping at the first that is not due), of which only the `behind` oldest in
all go with them; next_due is the soonest head not
leased to the asker. Hypothesis drives the store and the model through the same ingests,
claims, outcomes, revivals and burials, and every step compares what the store answers and
holds in `heads` with the model.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from relay.store import schema, views
from relay.store.base import Incoming, Store
from relay.store.postgres import PostgresStore
from relay.store.schema import MIGRATIONS, statements
from relay.store.sql import Dialect, Statement
from relay.store.sqlite import SQLiteStore
from relay.store.views import Filters
from tests.pg import empty_relay_tables
from tests.plans import migrated, plan

T = TypeVar("T")
T0 = 1_700_000_000.0
LEASE = 5.0
DESTINATIONS = ("a", "b")
CONVERSATIONS = ("x", "y", "z", None)
OWNERS = ("A", "B")
EVENT_NAMES = ("newMessage", "conversationClosed")

_DELIVERIES = Statement(
    "SELECT id, destination, conversation, state, next_at, lease_until, lease_owner"
    " FROM deliveries ORDER BY id",
    rows=True,
)
_HEADS = Statement(
    "SELECT delivery_id, destination, conversation, next_at, lease_until, lease_owner"
    " FROM heads ORDER BY delivery_id",
    rows=True,
)


@dataclass
class Row:
    """The model of one delivery row; `seq` orders rows as the store's ids do."""

    seq: int
    event_id: int
    destination: str
    conversation: str | None
    state: str = "pending"
    next_at: float = T0
    lease_until: float | None = None
    lease_owner: str | None = None
    received_at: float = T0
    event_name: str = "newMessage"

    @property
    def key(self) -> tuple[int, str]:
        return (self.event_id, self.destination)

    @property
    def group(self) -> tuple[str, str | int]:
        """The row's conversation at its destination (a row without one is alone)."""
        return (self.destination, self.conversation if self.conversation is not None else self.seq)


class Model:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def pending(self, destination: str | None = None) -> list[Row]:
        return [
            r for r in self.rows if r.state == "pending" and destination in (None, r.destination)
        ]

    def heads(self, destination: str | None = None) -> list[Row]:
        firsts: dict[tuple[str, str | int], Row] = {}
        for row in self.pending(destination):  # in seq order
            firsts.setdefault(row.group, row)
        return list(firsts.values())

    def claim(
        self, destination: str, now: float, limit: int, owner: str, run: int, behind: int | None
    ) -> list[Row]:
        due = [
            h
            for h in self.heads(destination)
            if h.next_at <= now
            and (h.lease_until is None or h.lease_until <= now or h.lease_owner != owner)
        ]
        heads: list[Row] = []
        followers: list[Row] = []
        for head in sorted(due, key=lambda h: (h.next_at, h.seq))[:limit]:
            heads.append(head)
            run_of = [r for r in self.pending(destination) if r.group == head.group]
            for row in run_of[1:run]:
                if row.next_at > now:
                    break  # a row waiting for its retry keeps the later ones waiting
                followers.append(row)
        # Of the rows behind heads, only the oldest `behind` in all (a prefix of each run).
        followers.sort(key=lambda r: r.seq)
        taken = heads + (followers if behind is None else followers[:behind])
        for row in taken:
            row.lease_until, row.lease_owner = now + LEASE, owner
        return sorted(taken, key=lambda r: r.seq)

    def next_due(self, destination: str, owner: str) -> float | None:
        times = [h.next_at for h in self.heads(destination) if h.lease_owner != owner]
        return min(times, default=None)


def run(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coroutine)


def heads_machine(make_store: Callable[[], Store]) -> type[RuleBasedStateMachine]:
    class HeadsMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.store = make_store()
            run(self.loop, self.store.open())
            self.model = Model()
            self.now = T0
            self.bodies = itertools.count()
            self.sent_bodies: list[Incoming] = []
            self.seqs = itertools.count()  # never reused, as ids are not (rows are pruned)
            self.ids: dict[tuple[int, str], int] = {}  # model key -> the store's delivery id
            self.keys: dict[int, tuple[int, str]] = {}

        def teardown(self) -> None:
            run(self.loop, self.store.close())
            self.loop.close()

        def _learn(self, key: tuple[int, str], delivery_id: int) -> None:
            self.ids[key], self.keys[delivery_id] = delivery_id, key

        def _row(self, delivery_id: int) -> Row:
            key = self.keys[delivery_id]
            return next(r for r in self.model.rows if r.key == key)

        def _known_pending(self) -> list[int]:
            return sorted(self.ids[r.key] for r in self.model.pending() if r.key in self.ids)

        def _known(self) -> list[int]:
            return sorted(self.ids[r.key] for r in self.model.rows if r.key in self.ids)

        # --- what happens ---------------------------------------------------------------------

        @rule(
            destinations=st.lists(st.sampled_from(DESTINATIONS), min_size=1, unique=True),
            conversation=st.sampled_from(CONVERSATIONS),
            copies=st.integers(1, 3),
            name=st.sampled_from(EVENT_NAMES),
        )
        def ingest(
            self, destinations: list[str], conversation: str | None, copies: int, name: str
        ) -> None:
            # Several at once: one group commit, several rows of a conversation in a batch.
            items = [
                Incoming(
                    b"%d" % next(self.bodies),
                    name,
                    conversation,
                    tuple(destinations),
                    self.now,
                )
                for _ in range(copies)
            ]
            accepted = []
            for item in items:  # in order: the model's seq follows the store's ids
                accepted.append(run(self.loop, self.store.accept(item)))
            self.sent_bodies.extend(items)
            for answer in accepted:
                assert not answer.duplicate
                for destination in destinations:
                    self.model.rows.append(
                        Row(next(self.seqs), answer.event_id, destination, conversation,
                            next_at=self.now, received_at=self.now, event_name=name)
                    )  # fmt: skip

        @precondition(lambda self: self.sent_bodies)
        @rule(data=st.data())
        def ingest_a_duplicate(self, data: st.DataObject) -> None:
            # The same body again (within the duplicate window; the event may be pruned by
            # now): nothing new is stored, no head changes.
            item = data.draw(st.sampled_from(self.sent_bodies))
            again = Incoming(item.body, item.event_name, item.conversation, item.destinations,
                             self.now)  # fmt: skip
            assert run(self.loop, self.store.accept(again)).duplicate

        @rule(
            destination=st.sampled_from(DESTINATIONS),
            owner=st.sampled_from(OWNERS),
            limit=st.integers(1, 3),
            run_=st.integers(1, 4),
            behind=st.sampled_from([None, 0, 1, 2, 5]),
        )
        def claim(
            self, destination: str, owner: str, limit: int, run_: int, behind: int | None
        ) -> None:
            claimed = run(self.loop, self.store.claim(
                destination, self.now, limit, LEASE, owner, run_, behind=behind))  # fmt: skip
            expected = self.model.claim(destination, self.now, limit, owner, run_, behind)
            assert [(r.event_id, r.destination) for r in claimed] == [r.key for r in expected]
            for row in claimed:
                self._learn((row.event_id, row.destination), row.id)

        @precondition(lambda self: self._known_pending())
        @rule(
            data=st.data(),
            outcome=st.sampled_from(["sent", "retry", "bury", "release"]),
            stale=st.booleans(),
        )
        def record(self, data: st.DataObject, outcome: str, stale: bool) -> None:
            # stale: any rows, finished ones too (an earlier lane holder's late outcome).
            known = self._known() if stale else self._known_pending()
            ids = data.draw(st.lists(st.sampled_from(known), min_size=1, unique=True))
            rows = [self._row(i) for i in ids]
            if outcome == "sent":
                run(self.loop, self.store.mark_sent(ids, self.now))
            elif outcome == "bury":
                run(self.loop, self.store.bury(ids, self.now, "forbidden", "kicked"))
            elif outcome == "retry":
                delay = data.draw(st.integers(0, 3))
                run(self.loop, self.store.retry_later(ids, self.now + delay, "timeout", ""))
            else:
                run(self.loop, self.store.release(ids))
            for row in rows:
                if outcome != "release" and row.state != "pending":
                    continue  # a late outcome changes nothing of a finished row
                row.lease_until = row.lease_owner = None
                if outcome == "sent":
                    row.state = "sent"
                elif outcome == "bury":
                    row.state = "dead"
                elif outcome == "retry":
                    row.next_at = self.now + delay

        @rule(data=st.data(), everything=st.booleans())
        def revive(self, data: st.DataObject, everything: bool) -> None:
            letters = run(self.loop, self.store.dead_letters())
            for letter in letters:
                self._learn((letter.event_id, letter.destination), letter.id)
            if everything or not letters:
                chosen = [letter.id for letter in letters]
                count = run(self.loop, self.store.revive(None, self.now))
            else:
                chosen = data.draw(
                    st.lists(st.sampled_from([letter.id for letter in letters]), min_size=1,
                             unique=True)
                )  # fmt: skip
                count = run(self.loop, self.store.revive(chosen, self.now))
            assert count == len(chosen)
            for delivery_id in chosen:
                row = self._row(delivery_id)
                row.state, row.next_at = "pending", self.now

        @rule(destination=st.sampled_from(DESTINATIONS))
        def bury_destination(self, destination: str) -> None:
            count = run(self.loop, self.store.bury_destination(destination, self.now, "gone"))
            pending = self.model.pending(destination)
            assert count == len(pending)
            for row in pending:
                row.state, row.lease_until, row.lease_owner = "dead", None, None

        @precondition(lambda self: self._known_pending())
        @rule(data=st.data(), progress=st.integers(1, 3))
        def save_progress(self, data: st.DataObject, progress: int) -> None:
            delivery_id = data.draw(st.sampled_from(self._known_pending()))
            run(self.loop, self.store.save_progress(delivery_id, progress))

        @rule(
            destination=st.sampled_from((None, *DESTINATIONS)),
            event=st.sampled_from((None, *EVENT_NAMES)),
            conversation=st.sampled_from(CONVERSATIONS),
        )
        def revive_matching(
            self, destination: str | None, event: str | None, conversation: str | None
        ) -> None:
            # The console's "retry all" with its filters, in small chunks (each its own
            # transaction), so that a conversation's rows may come back in several.
            for letter in run(self.loop, self.store.dead_letters()):
                self._learn((letter.event_id, letter.destination), letter.id)
            filters = Filters(event=event, destination=destination, conversation=conversation)
            chunk, views.REVIVE_CHUNK = views.REVIVE_CHUNK, 2
            try:
                count = run(self.loop, self.store.revive_matching(filters, self.now))
            finally:
                views.REVIVE_CHUNK = chunk
            matching = [
                r
                for r in self.model.rows
                if r.state == "dead"
                and destination in (None, r.destination)
                and event in (None, r.event_name)
                and conversation in (None, r.conversation)
            ]
            assert count == len(matching)
            for row in matching:
                row.state, row.next_at = "pending", self.now

        @rule(retention=st.sampled_from([0.0, 1.0, 3.0]))
        def prune(self, retention: float) -> None:
            events: dict[int, list[Row]] = {}
            for row in self.model.rows:
                events.setdefault(row.event_id, []).append(row)
            gone = {
                event_id
                for event_id, rows in events.items()
                if rows[0].received_at < self.now - retention
                and all(r.state == "sent" for r in rows)
            }
            assert run(self.loop, self.store.prune(self.now, retention)) == len(gone)
            for row in [r for r in self.model.rows if r.event_id in gone]:
                self.model.rows.remove(row)
                if row.key in self.ids:
                    del self.keys[self.ids.pop(row.key)]

        @rule(seconds=st.sampled_from([0.0, 1.0, 2.0, LEASE]))
        def tick(self, seconds: float) -> None:
            self.now += seconds

        @rule(destination=st.sampled_from(DESTINATIONS), owner=st.sampled_from(OWNERS))
        def next_due(self, destination: str, owner: str) -> None:
            due = run(self.loop, self.store.next_due(destination, owner))
            assert due == self.model.next_due(destination, owner)

        # --- what must hold -------------------------------------------------------------------

        @invariant()
        def heads_mirror_the_oldest_pending_rows(self) -> None:
            store: Any = self.store
            deliveries = run(self.loop, store._read(_DELIVERIES))
            heads = run(self.loop, store._read(_HEADS))
            firsts: dict[tuple[str, object], tuple[Any, ...]] = {}
            for d_id, destination, conversation, state, next_at, until, owner in deliveries:
                if state == "pending":
                    group = (destination, conversation if conversation is not None else d_id)
                    firsts.setdefault(
                        group, (d_id, destination, conversation, next_at, until, owner)
                    )
            assert sorted(tuple(h) for h in heads) == sorted(firsts.values())
            assert len(deliveries) == len(self.model.rows)
            states = sorted(
                (self.keys[row[0]], row[3]) for row in deliveries if row[0] in self.keys
            )
            known = sorted((r.key, r.state) for r in self.model.rows if r.key in self.ids)
            assert states == known

        @invariant()
        def backlog_counts_the_pending_rows(self) -> None:
            # /metrics and the console read it from heads (schema.BACKLOG), not from the rows.
            backlog = run(self.loop, self.store.backlog())
            expected = {
                destination: (len(rows), min(r.received_at for r in rows))
                for destination in DESTINATIONS
                if (rows := self.model.pending(destination))
            }
            assert {b.destination: (b.pending, b.oldest_created_at) for b in backlog} == expected
            assert [b.destination for b in backlog] == sorted(expected)

    return HeadsMachine


MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_sqlite_claims_follow_the_model(tmp_path: Path) -> None:
    def fresh() -> Store:
        directory = tempfile.mkdtemp(dir=tmp_path)
        return SQLiteStore(Path(directory) / "relay.db", synchronous="OFF")

    run_state_machine_as_test(heads_machine(fresh), settings=MACHINE_SETTINGS)


def test_postgresql_claims_follow_the_model(pg_database: str) -> None:
    def fresh() -> Store:
        empty_relay_tables(pg_database)
        return PostgresStore(pg_database)

    run_state_machine_as_test(heads_machine(fresh), settings=MACHINE_SETTINGS)


# --- several claimers on PostgreSQL -------------------------------------------------------------


async def test_concurrent_claimers_never_share_a_row_and_keep_each_conversation_in_order(
    pg_url: str,
) -> None:
    """Two instances, several connections each, claiming with runs at once, round after
    round, each claim's rows sent: no row is claimed twice, each conversation's rows are
    claimed (and sent) in order, and every row is claimed."""
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conversations = [f"c{n}" for n in range(12)] + [None]
        for n in range(240):
            conversation = conversations[n % len(conversations)]
            incoming = Incoming(b"%d" % n, "newMessage", conversation, ("a",), T0)
            await stores[n % 2].accept(incoming)
        claimed: list[int] = []
        order: dict[str | None, list[int]] = {}

        async def claim_and_send(store: PostgresStore) -> int:
            rows = await store.claim("a", T0 + 1, 3, 60.0, "owner", run=4)
            for row in rows:
                claimed.append(row.id)
                order.setdefault(row.conversation, []).append(row.id)
            await store.mark_sent([row.id for row in rows], T0 + 1)
            return len(rows)

        for _ in range(200):
            taken = await asyncio.gather(*(claim_and_send(s) for s in stores for _ in range(3)))
            if not any(taken) and not await stores[0].backlog():
                break
        assert len(claimed) == len(set(claimed)) == 240
        for conversation, ids in order.items():
            if conversation is not None:
                assert ids == sorted(ids), conversation
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_an_ingest_while_the_head_is_finished_is_not_lost(pg_url: str) -> None:
    """An outcome finishing a conversation's last pending row while another instance stores
    the next row of that conversation: the new row gets a head either way."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await asyncio.gather(a.open(), b.open())
    try:
        for round_ in range(30):
            conversation = f"race-{round_}"
            await a.accept(Incoming(b"first %d" % round_, "m", conversation, ("a",), T0))
            (head,) = await a.claim("a", T0 + 1, 10, 60.0, "A")
            await asyncio.gather(
                a.mark_sent([head.id], T0 + 1),
                b.accept(Incoming(b"next %d" % round_, "m", conversation, ("a",), T0)),
            )
            (after,) = await a.claim("a", T0 + 1, 10, 60.0, "A")
            assert after.body == b"next %d" % round_
            await a.mark_sent([after.id], T0 + 1)
    finally:
        await asyncio.gather(a.close(), b.close())


async def heads_are_the_oldest_pending_rows(store: PostgresStore | SQLiteStore) -> None:
    deliveries = await store._read(_DELIVERIES)
    firsts: dict[tuple[str, object], tuple[Any, ...]] = {}
    for d_id, destination, conversation, state, next_at, until, owner in deliveries:
        if state == "pending":
            group = (destination, conversation if conversation is not None else d_id)
            firsts.setdefault(group, (d_id, destination, conversation, next_at, until, owner))
    assert sorted(tuple(h) for h in await store._read(_HEADS)) == sorted(firsts.values())


async def test_a_revive_or_a_burial_while_a_head_is_finished_keeps_heads_right(
    pg_url: str,
) -> None:
    """`relay dead retry` and a removed destination's burial on one instance while another
    instance's lane finishes the head of the same conversation."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await asyncio.gather(a.open(), b.open())
    try:
        for round_ in range(20):
            where = f"d{round_}"  # revive(None) brings back earlier rounds' rows too
            for n in range(3):
                body = b"%d %d" % (round_, n)
                await a.accept(Incoming(body, "m", "c", (where,), T0))
            dead, head, _ = await a.claim(where, T0 + 1, 10, 60.0, "A", run=3)
            await a.bury([dead.id], T0 + 1, "forbidden", "")
            await asyncio.gather(
                a.mark_sent([head.id], T0 + 1), b.revive(None if round_ % 2 else [dead.id], T0)
            )
            await heads_are_the_oldest_pending_rows(a)
            (revived,) = await a.claim(where, T0 + 2, 1, 60.0, "A")
            assert revived.id == dead.id
            await asyncio.gather(
                a.mark_sent([revived.id], T0 + 2), b.bury_destination(where, T0 + 2, "gone")
            )
            await heads_are_the_oldest_pending_rows(a)
            assert await a.claim(where, T0 + 3, 10, 60.0, "A") == []
    finally:
        await asyncio.gather(a.close(), b.close())


# --- upgrades -----------------------------------------------------------------------------------

# Pending, dead and sent rows over conversations, at two destinations, as a version-3
# database holds them: (destination, conversation, state, next_at, lease_owner).
V3_ROWS: Sequence[tuple[str, str | None, str, float, str | None]] = [
    ("a", "x", "sent", T0, None),
    ("a", "x", "pending", T0 + 5, "old"),  # x's head, leased by an earlier holder
    ("a", "x", "pending", T0, None),
    ("a", "y", "dead", T0, None),
    ("a", "y", "pending", T0 + 1, None),  # y's head: the dead row before it does not count
    ("b", "x", "pending", T0 + 2, None),  # x at b: a conversation of its own
    ("a", None, "pending", T0 + 3, None),  # alone: its own head
    ("a", None, "pending", T0 + 4, None),
    ("a", "z", "sent", T0, None),  # z: nothing pending, no head
]
# delivery_id, destination, conversation, next_at, lease_until, lease_owner
V3_HEADS = [
    (2, "a", "x", T0 + 5, T0 + 60, "old"),
    (5, "a", "y", T0 + 1, None, None),
    (6, "b", "x", T0 + 2, None, None),
    (7, "a", None, T0 + 3, None, None),
    (8, "a", None, T0 + 4, None, None),
]


def _v3_inserts(placeholder: Callable[[int], str]) -> tuple[str, str, list[tuple[Any, ...]]]:
    p = placeholder
    event = f"INSERT INTO events (id, received_at, event_name, conversation, body) VALUES ({p(1)}, {p(2)}, 'newMessage', {p(3)}, {p(4)})"  # noqa: E501
    delivery = (
        "INSERT INTO deliveries (id, event_id, destination, conversation, state, next_at,"
        " lease_until, lease_owner, created_at, retry_from)"
        f" VALUES ({p(1)}, {p(1)}, {p(2)}, {p(3)}, {p(4)}, {p(5)}, {p(6)}, {p(7)}, {p(8)}, {p(8)})"
    )
    rows = [
        (n, destination, conversation, state, next_at, T0 + 60 if owner else None, owner, T0)
        for n, (destination, conversation, state, next_at, owner) in enumerate(V3_ROWS, 1)
    ]
    return event, delivery, rows


async def test_a_version_3_sqlite_file_gets_heads_for_its_pending_rows(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    db = sqlite3.connect(path)
    for number, migration in enumerate(MIGRATIONS[:3], start=1):
        for statement in statements(migration.script(Dialect.SQLITE)):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
    event, delivery, rows = _v3_inserts(lambda n: f"?{n}")
    with db:
        for row in rows:
            db.execute(event, (row[0], T0, row[2], b"%d" % row[0]))
            db.execute(delivery, row)
        db.execute("UPDATE id_counters SET last_id = 9")
    db.close()
    await _check_upgraded(SQLiteStore(path))


async def test_a_version_3_postgresql_database_gets_heads_for_its_pending_rows(
    pg_empty_url: str,
) -> None:
    connection = await asyncpg.connect(pg_empty_url)
    try:
        await connection.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for number, migration in enumerate(MIGRATIONS[:3], start=1):
            if script := migration.script(Dialect.POSTGRESQL).strip():
                await connection.execute(script)
            await connection.execute("INSERT INTO schema_migrations VALUES ($1)", number)
        event, delivery, rows = _v3_inserts(lambda n: f"${n}")
        for row in rows:
            await connection.execute(event, row[0], T0, row[2], b"%d" % row[0])
            await connection.execute(delivery, *row)
        for table in ("events", "deliveries"):
            await connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 9)")
    finally:
        await connection.close()
    await _check_upgraded(PostgresStore(pg_empty_url))


async def _check_upgraded(store: SQLiteStore | PostgresStore) -> None:
    await store.open()
    try:
        heads = [tuple(h) for h in await store._read(_HEADS)]
        assert heads == V3_HEADS
        # Claims work from there: old heads first (x's was leased by an earlier holder, taken
        # back), runs behind them, and a new row of y waits behind y's head.
        await store.accept(Incoming(b"new", "newMessage", "y", ("a",), T0 + 6))
        claimed = await store.claim("a", T0 + 10, 10, 60.0, "me", run=5)
        assert [row.id for row in claimed] == [2, 3, 5, 7, 8, 10]
    finally:
        await store.close()


async def _blocked_on_a_row_lock(pg_url: str) -> None:
    """Until some other session of this database waits for a row lock (its transaction)."""
    watcher = await asyncpg.connect(pg_url)
    try:
        for _ in range(500):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("nothing waits for a lock")
    finally:
        await watcher.close()


async def test_rows_committed_while_a_destination_is_buried_keep_their_heads(
    pg_url: str,
) -> None:
    """A removed destination's burial on one instance while another instance (its config
    not reloaded yet, or a batch in flight) stores a new conversation for it, or an operator
    revives one: those rows commit after the burial's UPDATE looked, before it drops the
    destination's heads. They stay pending, so their heads must stay too."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await asyncio.gather(a.open(), b.open())
    try:
        await a.accept(Incoming(b"revived", "m", "r", ("gone",), T0))
        (dead,) = await a.claim("gone", T0, 10, 60.0, "A")
        await a.bury([dead.id], T0, "forbidden", "")
        await a.accept(Incoming(b"old", "m", "c", ("gone",), T0))
        other = await asyncpg.connect(pg_url)  # holds the burial between its statements
        try:
            transaction = other.transaction()
            await transaction.start()
            await other.execute(
                "SELECT 1 FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
                " WHERE e.body = 'old' FOR UPDATE OF d"
            )
            burial = asyncio.create_task(a.bury_destination("gone", T0 + 1, "gone"))
            await _blocked_on_a_row_lock(pg_url)
            await b.accept(Incoming(b"new", "m", "n", ("gone",), T0 + 1))
            assert await b.revive([dead.id], T0 + 1) == 1
            await transaction.rollback()
            assert await asyncio.wait_for(burial, 5) == 1  # `old`: the others came later
        finally:
            await other.close()
        await heads_are_the_oldest_pending_rows(a)
        claimed = await a.claim("gone", T0 + 2, 10, 60.0, "A")
        assert sorted(row.body for row in claimed) == [b"new", b"revived"]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_retry_and_a_burial_of_its_destination_at_once_do_not_deadlock(
    pg_url: str,
) -> None:
    """A lane's retry of a message carrying two conversations' heads while another instance
    buries the destination: both lock the heads first, in (destination, conversation) order,
    as every writer of heads does, so one waits for the other instead of deadlocking."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await asyncio.gather(a.open(), b.open())
    try:
        # c2's head has the smaller id: an order by id is not the order by conversation.
        await a.accept(Incoming(b"2", "m", "c2", ("x",), T0))
        await a.accept(Incoming(b"1", "m", "c1", ("x",), T0))
        rows = await a.claim("x", T0, 10, 60.0, "A")
        assert len(rows) == 2
        other = await asyncpg.connect(pg_url)  # holds c2's head a moment
        try:
            transaction = other.transaction()
            await transaction.start()
            await other.execute("SELECT 1 FROM heads WHERE conversation = 'c2' FOR UPDATE")
            retry = asyncio.create_task(
                a.retry_later([row.id for row in rows], T0 + 5, "timeout", "", now=T0)
            )
            await _blocked_on_a_row_lock(pg_url)
            burial = asyncio.create_task(b.bury_destination("x", T0 + 1, "gone"))
            await asyncio.sleep(0.2)  # the burial takes c1's head, or waits for it
            await transaction.rollback()
            await asyncio.wait_for(asyncio.gather(retry, burial), 10)
        finally:
            await other.close()
        assert burial.result() == 2
        await heads_are_the_oldest_pending_rows(a)
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_late_outcome_leaves_a_finished_row_as_it_is(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An earlier lane holder's outcome arriving after another instance finished the row:
    a sent row is not made dead (which `dead retry` would send again) nor given a failure."""
    store = (
        PostgresStore(request.getfixturevalue("pg_url"))
        if engine == "postgresql"
        else SQLiteStore(tmp_path / "relay.db")
    )
    await store.open()
    try:
        await store.accept(Incoming(b'{"n":1}', "newMessage", "c", ("a",), T0))
        await store.accept(Incoming(b'{"n":2}', "newMessage", "c", ("a",), T0))
        first, second = await store.claim("a", T0, 1, 60.0, "new", run=2)
        await store.mark_sent([first.id], T0 + 1)
        await store.bury([second.id], T0 + 1, "forbidden", "kicked")
        await store.bury([first.id], T0 + 2, "timeout", "late")  # the old holder, late
        await store.retry_later([first.id], T0 + 9, "timeout", "late")
        await store.mark_sent([second.id], T0 + 2)
        assert [letter.id for letter in await store.dead_letters()] == [second.id]
        assert await store.revive(None, T0 + 3) == 1
        (again,) = await store.claim("a", T0 + 3, 1, 60.0, "new", run=2)
        assert again.id == second.id  # the sent row stays sent: only the dead one comes back
    finally:
        await store.close()


def test_sqlite_lane_statements_read_their_indexes_and_no_unused_index_is_kept(
    tmp_path: Path,
) -> None:
    """A lane's statements read the heads and the runs behind them through their indexes,
    whatever the backlog, and deliveries_due, which none of them used since heads, is gone
    (migration 7): each index on deliveries costs every stored delivery an insert."""
    with migrated(tmp_path / "relay.db") as db:
        indexes = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "deliveries_due" not in indexes
        params = {"destination": "a", "now": T0, "owner": "A", "limit": 16, "run": 31,
                  "behind": 96, "lease_until": T0 + LEASE, "ids": [1, 2]}  # fmt: skip
        for statement, index in (
            (schema.CLAIM_HEADS, "heads_due"),
            (schema.CLAIM_RUNS, "deliveries_order"),
            (schema.NEXT_DUE, "heads_due"),
        ):
            details = plan(db, statement, params)
            assert any(f"INDEX {index}" in detail for detail in details), (statement, details)
            # Subqueries and json_each (the ids) are bounded: only a table scan is wrong.
            scans = [d for d in details if d.startswith("SCAN") and "subquery" not in d
                     and "json_each" not in d]  # fmt: skip
            assert not scans, (statement, details)


def test_sqlite_statements_that_name_their_rows_by_id_look_them_up_by_id(tmp_path: Path) -> None:
    """Outcomes, releases, revivals and head upkeep name their rows by id: SQLite must look
    them up by id, never read every row of a state through an index of state (every pending
    row of a long backlog, for each outcome a lane records: what made a lane's drain ten
    times slower with 100 000 pending than with 1 000, and ingest wait behind it)."""
    by_ids = [
        (name, value) for name, value in vars(schema).items()
        if isinstance(value, Statement) and "in_ids" in value.sql
    ]  # fmt: skip
    assert len(by_ids) >= 10
    with migrated(tmp_path / "relay.db") as db:
        for name, statement in by_ids:
            params = {key: [1, 2] if key == "ids" else 1 for key in re.findall(
                r"(?<![:\w]):([A-Za-z_]\w*)", statement.sqlite.text)}  # fmt: skip
            details = plan(db, statement, params)
            by_state = [d for d in details if re.search(r"\((destination=\? AND )?state=\?\)", d)]
            assert not by_state, (name, details)


def test_sqlite_backlog_reads_heads_and_counts_in_an_index(tmp_path: Path) -> None:
    """Every /metrics scrape and console lanes page reads the backlog: it finds the
    destinations in heads and counts each one's pending rows in an index that holds the
    answer, without reading the rows (a look at every pending row took 0.13 s with 100 000
    pending, on the thread ingest commits on)."""
    with migrated(tmp_path / "relay.db") as db:
        details = plan(db, schema.BACKLOG, {})
        assert any("SCAN heads USING COVERING INDEX" in d for d in details), details
        counts = [d for d in details if "deliveries_destination_event" in d]
        assert counts and all("COVERING INDEX" in d for d in counts), details
        lookups = [d for d in details if d.startswith(("SEARCH d", "SCAN d"))]
        assert all("COVERING INDEX" in d or "PRIMARY KEY" in d for d in lookups), details
        assert not [d for d in details if d.startswith("SCAN deliveries")], details
