"""What only the PostgreSQL store has: several instances on one database.

Each test runs two (or more) PostgresStore instances against one database, as two relay
processes would; the contract they share with SQLite is tests/test_store.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from relay.errors import StoreUnavailable
from relay.store import store_for
from relay.store.base import Incoming
from relay.store.postgres import (
    CONVERSATION_LOCK_CLASS,
    PostgresStore,
    _conversation_key,
    _where,
)
from relay.store.schema import MIGRATIONS
from relay.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0
TTL = 15.0


def incoming(body: bytes, conversation: str | None = None, at: float = T0) -> Incoming:
    return Incoming(body, "newMessage", conversation, ("a",), at)


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two open instances on one (emptied) database."""
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    await first.open()
    await second.open()
    yield first, second
    await asyncio.gather(first.close(), second.close())


def test_store_for_routes_postgresql_urls() -> None:
    assert isinstance(store_for("postgresql://relay:pw@db:5432/relay"), PostgresStore)
    assert isinstance(store_for("postgres://relay@db/relay"), PostgresStore)
    assert isinstance(store_for("sqlite:///relay.db", exclusive=True), SQLiteStore)


async def test_exclusive_is_ignored_several_instances_are_the_point(pg_url: str) -> None:
    first, second = store_for(pg_url, exclusive=True), store_for(pg_url, exclusive=True)
    await first.open()
    try:
        await second.open()
        await second.close()
    finally:
        await first.close()


# --- ingest across instances --------------------------------------------------------------------


async def test_same_body_at_two_instances_at_once_is_stored_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    results = await asyncio.gather(
        *(store.accept(incoming(b'{"same":1}')) for _ in range(10) for store in (a, b))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.event_id for r in results}) == 1
    assert [(x.destination, x.pending) for x in await a.backlog()] == [("a", 1)]


async def test_overlapping_bursts_at_two_instances(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    bodies = [f'{{"n":{n}}}'.encode() for n in range(150)]
    results = await asyncio.gather(
        *(a.accept(incoming(body)) for body in bodies[:100]),
        *(b.accept(incoming(body)) for body in bodies[50:]),
    )
    assert sum(r.duplicate for r in results) == 50
    assert len({r.event_id for r in results}) == 150
    assert (await b.backlog())[0].pending == 150


async def test_an_instance_waits_for_a_conversation_another_is_storing(
    two: tuple[PostgresStore, PostgresStore],
    pg_url: str,
) -> None:
    """Rows of one conversation get ids in commit order, so a lane never sees a later row
    while an earlier one is still being committed elsewhere."""
    a, b = two
    other = await asyncpg.connect(pg_url)  # stands in for another instance mid-commit
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            CONVERSATION_LOCK_CLASS,
            _conversation_key("conv-1"),
        )
        waiting = asyncio.create_task(a.accept(incoming(b"1", conversation="conv-1")))
        assert not (await b.accept(incoming(b"2", conversation="conv-2"))).duplicate
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await transaction.commit()
        assert not (await asyncio.wait_for(waiting, 20)).duplicate
    finally:
        await other.close()


async def test_close_commits_what_is_queued(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    pending = [asyncio.create_task(store.accept(incoming(bytes([n])))) for n in range(20)]
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    assert all(not task.result().duplicate for task in pending)
    with pytest.raises(StoreUnavailable):
        await store.accept(incoming(b"late"))
    reopened = PostgresStore(pg_url)
    await reopened.open()
    try:
        assert (await reopened.backlog())[0].pending == 20
    finally:
        await reopened.close()


# --- lanes and claims ---------------------------------------------------------------------------


async def test_lane_is_held_by_one_instance_and_taken_over_when_it_expires(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    assert await a.hold_lane("a", "A", TTL, T0)
    assert not await b.hold_lane("a", "B", TTL, T0 + 1)
    assert await a.hold_lane("a", "A", TTL, T0 + 10)  # renewed: now held until T0 + 25
    assert not await b.hold_lane("a", "B", TTL, T0 + 20)
    assert await b.hold_lane("b", "B", TTL, T0 + 20)  # other destinations are other lanes
    assert await b.hold_lane("a", "B", TTL, T0 + 25)  # A stopped renewing: B takes over
    assert not await a.hold_lane("a", "A", TTL, T0 + 26)
    assert await b.hold_lane("a", "B", TTL, T0 + 30)


async def test_a_released_lane_is_free_at_once(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    assert await a.hold_lane("a", "A", TTL, T0)
    await b.release_lane("a", "B")  # not B's to give up: nothing changes
    assert not await b.hold_lane("a", "B", TTL, T0 + 1)
    await a.release_lane("a", "A")  # a clean stop
    assert await b.hold_lane("a", "B", TTL, T0 + 1)


async def test_one_of_many_instances_racing_for_a_free_lane_gets_it(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    held = await asyncio.gather(
        *(
            store.hold_lane("a", f"owner-{n}-{side}", TTL, T0)
            for n in range(8)
            for side, store in enumerate((a, b))
        )
    )
    assert sum(held) == 1


async def test_successor_takes_the_dead_holders_rows_at_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """A claimed rows with a long lease and died; B takes the lane within the lane's TTL and
    the rows with it, without waiting for A's leases to run out."""
    a, b = two
    await a.accept(incoming(b"1", conversation="c"))
    await a.accept(incoming(b"2", conversation="c"))
    assert await a.hold_lane("a", "A", TTL, T0)
    (leased,) = await a.claim("a", T0, 10, 300.0, "A")
    assert await b.claim("a", T0 + 1, 10, 300.0, "A") == []  # still A's lease, A's lane
    assert await b.hold_lane("a", "B", TTL, T0 + TTL)
    (taken,) = await b.claim("a", T0 + TTL, 10, 300.0, "B")
    assert (taken.id, taken.body) == (leased.id, b"1")


async def test_claimers_skip_rows_another_claimer_holds_and_keep_conversation_order(
    two: tuple[PostgresStore, PostgresStore],
    pg_url: str,
) -> None:
    a, b = two
    for body, conversation in [(b"c1", "c"), (b"c2", "c"), (b"n1", None), (b"n2", None)]:
        await a.accept(incoming(body, conversation))
    other = await asyncpg.connect(pg_url)  # a claim in flight: heads of `c` and n1 locked
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "SELECT 1 FROM heads AS h JOIN deliveries AS d ON d.id = h.delivery_id"
            " JOIN events AS e ON e.id = d.event_id"
            " WHERE e.body IN ('c1', 'n1') FOR UPDATE OF h"
        )
        claimed = await asyncio.wait_for(b.claim("a", T0 + 1, 10, 60.0, "B"), 5)
        # n1 is skipped, not waited for; c2 stays behind its locked head c1.
        assert [row.body for row in claimed] == [b"n2"]
        await transaction.rollback()
    finally:
        await other.close()
    assert [row.body for row in await a.claim("a", T0 + 1, 10, 60.0, "A")] == [
        b"c1",
        b"n1",
        b"n2",
    ]


async def test_concurrent_claims_by_one_owner_never_share_a_row(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two claims racing on two connections each take distinct rows (SKIP LOCKED), and the
    leases they set keep the rows from being claimed again."""
    a, b = two
    for n in range(60):
        await a.accept(incoming(bytes([n])))
    batches = await asyncio.gather(
        *(store.claim("a", T0 + 1, 7, 60.0, "owner") for _ in range(6) for store in (a, b))
    )
    ids = [row.id for batch in batches for row in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_thread_parent_first_writer_wins_across_instances(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    parents = await asyncio.gather(
        *(store.set_thread_parent("a", "c", f"{n}.0") for n in range(5) for store in (a, b))
    )
    assert len(set(parents)) == 1
    assert await a.thread_parent("a", "c") == await b.thread_parent("a", "c") == parents[0]


# --- migrations ---------------------------------------------------------------------------------


async def test_instances_starting_together_migrate_once(pg_empty_url: str) -> None:
    stores = [PostgresStore(pg_empty_url) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        accepted = await asyncio.gather(
            *(store.accept(incoming(bytes([n]))) for n, store in enumerate(stores))
        )
        assert len({a.event_id for a in accepted}) == 5
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    again = PostgresStore(pg_empty_url)
    await again.open()  # nothing left to apply
    await again.close()
    connection = await asyncpg.connect(pg_empty_url)
    try:
        versions = await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")
    finally:
        await connection.close()
    assert [row[0] for row in versions] == list(range(1, len(MIGRATIONS) + 1))


# --- failures -----------------------------------------------------------------------------------


async def test_unreachable_server_is_unavailable_without_the_password() -> None:
    store = PostgresStore("postgresql://u:hunter2-secret@127.0.0.1:1/x")
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    assert str(raised.value) == "postgresql at 127.0.0.1:1/x: connection refused"
    assert "hunter2" not in "".join(traceback.format_exception(raised.value))
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.accept(incoming(b"1"))
    await store.close()  # closing a store that never opened is harmless


async def test_missing_database_is_unavailable(pg_database: str) -> None:
    url = pg_database.rsplit("/", 1)[0] + "/relay_no_such_database"
    with pytest.raises(StoreUnavailable, match='database "relay_no_such_database" does not exist'):
        await PostgresStore(url).open()


async def test_store_recovers_when_its_connections_are_cut(
    pg_url: str,
) -> None:
    """The server kills every connection (a restart, a failover): calls fail cleanly with
    StoreUnavailable, never another exception, and the pool soon reconnects by itself."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await asyncio.gather(*(store.accept(incoming(bytes([n]))) for n in range(50)))
        await asyncio.gather(*(store.ping() for _ in range(5)))  # several pooled connections
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        failures = []
        for _ in range(11):  # at worst each pooled connection fails once
            try:
                await store.ping()
                break
            except StoreUnavailable as error:
                failures.append(str(error))
        else:
            pytest.fail(f"the store did not reconnect: {failures}")
        assert all(f.startswith("postgresql at 127.0.0.1:5432/relay_test_") for f in failures)
        assert not (await store.accept(incoming(b"after"))).duplicate
        assert (await store.backlog())[0].pending == 51
    finally:
        await store.close()


def test_messages_name_the_server_never_the_credentials() -> None:
    assert _where("postgresql://relay:pw@db.internal:6543/relay?sslmode=require") == (
        "db.internal:6543/relay"
    )
    assert _where("postgres://relay@db/relay") == "db:5432/relay"
    store = PostgresStore("postgresql://u:p%40ss@h/d?password=other")
    message = str(store._unavailable(OSError("auth for p@ss and p%40ss and other failed")))
    assert message == "postgresql at h:5432/d: auth for *** and *** and *** failed"


# --- the write probe ----------------------------------------------------------------------------


async def terminate_sessions(admin: asyncpg.Connection, database: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )


async def probe_until(store: PostgresStore, writable: bool) -> str:
    """check_writable() until the pool's killed sessions are replaced and it answers
    `writable`; the last refusal's message."""
    message = ""
    for _ in range(12):  # at worst each pooled connection fails once first
        try:
            await store.check_writable()
        except StoreUnavailable as error:
            message = str(error)
            if not writable and "read-only" in message:
                return message
        else:
            if writable:
                return message
    pytest.fail(f"check_writable() never became {'ok' if writable else 'read-only'}: {message}")


async def test_check_writable_fails_on_a_read_only_database_and_recovers(
    pg_empty_url: str,
) -> None:
    """A read-only database (or a standby after a failover) still answers reads."""
    database = urlsplit(pg_empty_url).path.lstrip("/")
    store = PostgresStore(pg_empty_url)
    await store.open()
    admin = await asyncpg.connect(pg_empty_url)
    try:
        await store.check_writable()
        # A setting of the database applies to sessions that start after it: end the pool's.
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        await terminate_sessions(admin, database)
        message = await probe_until(store, writable=False)
        assert message.startswith(f"postgresql at 127.0.0.1:5432/{database}: ")
        assert "read-only transaction" in message
        await store.ping()  # reads still work: a ping cannot tell
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await terminate_sessions(admin, database)
        await probe_until(store, writable=True)
    finally:
        await admin.close()
        await store.close()


class Proxy:
    """A TCP forwarder to the test server that can be cut, as a network outage would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.streams: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.streams += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def cut(self) -> None:
        """Refuse new connections (the port is closed) and break every open one."""
        assert self.server is not None
        self.server.close()
        for stream in self.streams:
            stream.transport.abort()
        await self.server.wait_closed()


async def test_check_writable_fails_fast_when_the_server_is_unreachable(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    url = parts._replace(netloc=f"postgres:secret-pw@127.0.0.1:{port}").geturl()
    store = PostgresStore(url)
    await store.open()
    try:
        await store.check_writable()
        await proxy.cut()
        for _ in range(3):  # the broken pooled connection first, then refused connections
            with pytest.raises(StoreUnavailable) as raised:
                await asyncio.wait_for(store.check_writable(), 5)
            assert str(raised.value).startswith(f"postgresql at 127.0.0.1:{port}/")
            assert "secret-pw" not in str(raised.value)
        assert str(raised.value).endswith("connection refused")
    finally:
        await store.close()


# --- databases written by earlier versions ------------------------------------------------------

# The schema of release 0.1.0 (schema_migrations version 1), as it shipped: databases in the
# field look like this, and every later version must open them as they are.
SCHEMA_V1 = """
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO schema_migrations (version) VALUES (1);
CREATE TABLE events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    event_name TEXT,
    conversation TEXT,
    body BYTEA NOT NULL
);
CREATE INDEX events_received ON events (received_at);
CREATE TABLE seen (
    body_hash BYTEA PRIMARY KEY,
    event_id BIGINT NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX seen_at ON seen (seen_at);
CREATE TABLE deliveries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    conversation TEXT,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    progress INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    lease_owner TEXT,
    reason TEXT,
    detail TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    retry_from DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX deliveries_due ON deliveries (destination, next_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_claim ON deliveries (destination, id) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (destination, conversation, id)
    WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (finished_at) WHERE state = 'dead';
CREATE TABLE threads (
    destination TEXT NOT NULL,
    conversation TEXT NOT NULL,
    parent TEXT NOT NULL,
    PRIMARY KEY (destination, conversation)
);
CREATE TABLE lanes (
    destination TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);
"""


async def schema_of(url: str) -> dict[str, object]:
    """Columns, indexes and constraints of the relay's tables, as the server reports them."""
    connection = await asyncpg.connect(url)
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default,"
            " is_identity FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY 1, 2"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        )
        constraints = await connection.fetch(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        )
        versions = await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")
    finally:
        await connection.close()
    return {
        "columns": [tuple(row) for row in columns],
        "indexes": [tuple(row) for row in indexes],
        "constraints": [tuple(row) for row in constraints],
        "versions": [row[0] for row in versions],
    }


async def test_a_version_1_database_is_upgraded_as_it_is(pg_empty_url: str, pg_url: str) -> None:
    connection = await asyncpg.connect(pg_empty_url)
    try:
        await connection.execute(SCHEMA_V1)
        await connection.execute(
            "INSERT INTO events (received_at, event_name, body) VALUES ($1, 'newMessage', 'x')",
            T0,
        )
        await connection.execute(
            "INSERT INTO deliveries (event_id, destination, next_at, created_at, retry_from)"
            " SELECT id, 'a', $1, $1, $1 FROM events",
            T0,
        )
    finally:
        await connection.close()
    store = PostgresStore(pg_empty_url)
    await store.open()
    try:
        new = await store.accept(incoming(b"new", at=T0 + 1))
        rows = await store.claim("a", T0 + 2, 10, 60.0, "me")
        assert [(r.event_id, r.body) for r in rows] == [(1, b"x"), (new.event_id, b"new")]
        assert rows[1].id > rows[0].id and new.event_id > 1
    finally:
        await store.close()
    fresh = PostgresStore(pg_url)  # the session's database, created by this version
    await fresh.open()
    await fresh.close()
    assert await schema_of(pg_empty_url) == await schema_of(pg_url)
