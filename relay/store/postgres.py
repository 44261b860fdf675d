"""The shared store: one PostgreSQL database behind several relay instances.

Same contract and semantics as the SQLite store (relay/store/sqlite.py), and the same
statements where they can be (relay/store/schema.py); what differs is what several
instances need from one database at once:

- Ingest keeps group commit (relay/store/commit.py): one writer task per instance commits
  everything queued meanwhile in one transaction of a handful of set-based statements
  (arrays through `unnest`), so a burst costs one commit, not one per request.
- The 24 h duplicate check is the primary key of `seen` (`INSERT ... ON CONFLICT`), not a
  check-then-insert, so the same body arriving at two instances at once is stored once.
- Per-conversation order: a conversation's rows must get ids in commit order, or a lane
  could deliver a later row while an earlier one (smaller id, slower transaction on
  another instance) is still uncommitted and invisible. Each ingest transaction takes a
  transaction-scoped advisory lock per conversation before it allocates ids.
- Lanes: a row per destination in `lanes` names the instance that delivers for it until
  a deadline it keeps pushing forward; when the holder dies the deadline passes and another
  instance takes over. Claims use `FOR UPDATE SKIP LOCKED`, so even two claimers at once
  never take the same row.
- Migrations are versioned in `schema_migrations` and applied at `open()` under an
  advisory lock, so instances starting together migrate once.
- Locks that several transactions take are always taken in one global order
  (conversations, then body hashes, each sorted) so that two instances' batches cannot
  deadlock.

Every asyncpg or OS error becomes StoreUnavailable with a short message naming the server
as host:port/db; the URL (which may carry a password) never appears in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from relay.config.storage import storage_passwords
from relay.errors import StoreUnavailable
from relay.store import schema
from relay.store.base import DUPLICATE_WINDOW, Accepted, Incoming
from relay.store.batch import Batch, Mark, Settled
from relay.store.commit import CLOSE_TIMEOUT, GroupCommit
from relay.store.shared import SharedStore
from relay.store.sql import Dialect, Statement, Step, step
from relay.store.views import ConsoleViews

POOL_MIN, POOL_MAX = 1, 10
CONNECT_TIMEOUT = 10.0  # seconds to reach the server before open() or a call gives up
COMMAND_TIMEOUT = 30.0  # a statement stuck longer than this means the database is not well

# Advisory lock keys. The migration lock uses the one-bigint key space, conversations the
# two-int space (a different space: they can never collide with each other).
MIGRATION_LOCK = 0x52454C41595F4D47  # "RELAY_MG"
CONVERSATION_LOCK_CLASS = 0x52454C59  # "RELY"

# What a connection problem, a server refusal or a dead pool looks like from asyncpg.
# InternalClientError: what a connection the server killed while idle can raise on next use.
_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

# --- ingest statements ------------------------------------------------------------------------

# Callers pass the keys sorted; unnest yields them in array order, so the locks are taken
# in that order and two batches wait for each other instead of deadlocking.
_LOCK_CONVERSATIONS = "SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k"

_NEW_EVENT_IDS = (
    "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, $1::int)"
)

# One row per distinct body (relay/store/batch.py), sorted by hash: a fixed lock order.
_UPSERT_SEEN = """
INSERT INTO seen (body_hash, event_id, seen_at)
SELECT h, e, t FROM unnest($1::bytea[], $2::bigint[], $3::float8[]) AS u(h, e, t) ORDER BY h
""" + schema.UPSERT_SEEN_TAIL.format(window="$4::float8")

_INSERT_EVENTS = """
INSERT INTO events (id, received_at, event_name, conversation, body)
SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::text[], $5::bytea[])
"""

# Row ids follow the arrays' order (batch order), which is each conversation's order. The
# first new row of each conversation (every row without one) is offered as its head, in lock
# order (schema.py, "lanes"): it becomes the head of a conversation without pending rows; an
# existing head (older) stays, locked until commit.
_INSERT_DELIVERIES = (
    """
WITH inserted AS (
    INSERT INTO deliveries (event_id, destination, conversation, next_at, created_at,
        retry_from)
    SELECT e, d, c, t, t, t
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])
        WITH ORDINALITY AS u(e, d, c, t, n)
    ORDER BY n
    RETURNING id, destination, conversation, next_at
)
INSERT INTO heads (delivery_id, destination, conversation, next_at)
SELECT DISTINCT ON (destination, conversation, CASE WHEN conversation IS NULL THEN id END)
    id, destination, conversation, next_at
FROM inserted
ORDER BY destination, conversation, CASE WHEN conversation IS NULL THEN id END, id
"""  # noqa: S608 - constant fragments, no input
    + schema.HEAD_UPSERT_TAIL
)

# --- lane statements --------------------------------------------------------------------------

# Take the lane if nobody holds it, the holder's time ran out, or it is already ours
# (renewal). A row comes back only when `owner` holds the lane afterwards. Deadlines are
# in the instances' own clocks (`now` is passed in), so their clocks must agree (NTP).
_HOLD_LANE = Statement(
    """
    INSERT INTO lanes (destination, owner, until) VALUES (:destination, :owner, :until)
    ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, until = excluded.until
    WHERE lanes.until <= :now OR lanes.owner = excluded.owner
    RETURNING owner
    """,
    rows=True,
)

_RELEASE_LANE = Statement("DELETE FROM lanes WHERE destination = :destination AND owner = :owner")

# An outcome that finishes rows (schema.MARK_SENT, schema.BURY) in two statements (with BEGIN
# and COMMIT, four round trips): lock the heads among them, in order; then, in a fresh
# snapshot that sees whatever an ingest holding one of those heads committed meanwhile,
# finish the rows, drop their heads and give each conversation its next pending row.
_LOCK_HEADS = Statement(
    """
    SELECT delivery_id FROM heads WHERE delivery_id {in_ids}
    ORDER BY destination, conversation, delivery_id FOR UPDATE
    """,
    rows=True,
)

# `{finish}`: the finishing UPDATE. Its change is not visible within its own statement, so
# the finished rows are left out of "next pending" by id.
_FINISH_AND_MOVE = """
WITH finished AS ({finish}), dropped AS (
    DELETE FROM heads WHERE delivery_id {{in_ids}} RETURNING destination, conversation
)
INSERT INTO heads (delivery_id, destination, conversation, next_at, lease_until, lease_owner)
SELECT n.id, n.destination, n.conversation, n.next_at, n.lease_until, n.lease_owner
FROM dropped AS c CROSS JOIN LATERAL (
    SELECT p.id, p.destination, p.conversation, p.next_at, p.lease_until, p.lease_owner
    FROM deliveries AS p
    WHERE p.destination = c.destination AND p.conversation = c.conversation
      AND p.state = 'pending' AND NOT p.id {{in_ids}}
    ORDER BY p.destination, p.conversation, p.id LIMIT 1) AS n
"""
_FINISH = {
    finish: Statement(_FINISH_AND_MOVE.format(finish=finish.sql))
    for finish in (schema.MARK_SENT, schema.BURY)
}

# Lanes of destinations long gone (renamed, removed): nobody will renew them.
_PRUNE_LANES = Statement("DELETE FROM lanes WHERE until < :before")


class PostgresStore(ConsoleViews, SharedStore):
    def __init__(self, url: str) -> None:
        self._url = url
        self._where = _where(url)
        self._secrets = storage_passwords(url)  # to keep out of every message
        self._pool: asyncpg.Pool | None = None
        self._commit: GroupCommit | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    def _describe(self) -> str:
        return f"postgresql at {self._where}"

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings={"application_name": "oneroute-relay"},
                reset=_nothing_to_reset,
            )
        except (*_ERRORS, ValueError) as error:  # ValueError: a malformed URL
            raise self._unavailable(error) from error
        try:
            async with self._connection() as connection:
                await _migrate(connection)
        except BaseException:
            await self._close_pool()
            raise
        self._commit = GroupCommit(self._write_batch, name="relay-postgres-writer")
        self._commit.start()

    async def close(self) -> None:
        if self._commit is not None:
            await self._commit.close()  # stays, closed: a late accept() hears "closed"
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
            except _ERRORS:
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; any database or network failure becomes StoreUnavailable."""
        if self._pool is None:
            raise StoreUnavailable(f"{self._describe()}: the store is not open")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as connection:
                yield connection
        except _ERRORS as error:
            raise self._unavailable(error) from error

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        message = f"{self._describe()}: {_cause(error)}"
        for secret in self._secrets:  # a server or driver message might echo one back
            message = message.replace(secret, "***")
        return StoreUnavailable(message)

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    # --- the shared statements' primitives ----------------------------------------------------

    async def _read(self, statement: Statement, **params: Any) -> list[Sequence[Any]]:
        query = statement.postgresql
        async with self._connection() as connection:
            rows: list[Sequence[Any]] = await connection.fetch(query.text, *query.bind(params))
        return rows

    async def _write(self, *steps: Step) -> list[Any]:
        async with self._connection() as connection:
            if len(steps) == 1:  # a statement is a transaction of its own
                return [await _execute(connection, steps[0])]
            async with connection.transaction():
                return [await _execute(connection, each) for each in steps]

    # --- ingest: group commit -----------------------------------------------------------------

    async def accept(self, incoming: Incoming) -> Accepted:
        if self._commit is None:
            raise StoreUnavailable(f"{self._describe()}: the store is not open")
        return await self._commit.accept(incoming)

    async def _write_batch(self, items: list[Incoming]) -> list[Accepted]:
        try:
            async with self._connection() as connection, connection.transaction():
                return await _insert_batch(connection, items)
        except StoreUnavailable:
            raise
        except Exception as error:  # e.g. asyncpg's DataError: still no URL in the message
            raise self._unavailable(error) from error

    # --- lanes --------------------------------------------------------------------------------

    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool:
        (held,) = await self._write(
            step(_HOLD_LANE, destination=destination, owner=owner, until=now + ttl, now=now)
        )
        return bool(held)  # a row: `owner` holds the lane now

    async def release_lane(self, destination: str, owner: str) -> None:
        await self._write(step(_RELEASE_LANE, destination=destination, owner=owner))

    async def _claim(self, **params: Any) -> list[Sequence[Any]]:
        (rows,) = await self._write(step(schema.CLAIM, **params))
        return list(rows)

    def _finish_steps(self, finish: Step) -> list[Step]:
        ids = finish.params["ids"]
        return [step(_LOCK_HEADS, ids=ids), Step(_FINISH[finish.statement], finish.params)]

    def _prune_steps(self, now: float, retention: float) -> list[Step]:
        return [*super()._prune_steps(now, retention), step(_PRUNE_LANES, before=now - retention)]


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """How a connection goes back to the pool, beyond asyncpg's own rollback of a
    transaction left open: nothing. The store leaves no session state (its advisory locks
    are transaction-scoped; no LISTEN, cursor or SET), so the default reset query (advisory
    unlock, CLOSE ALL, UNLISTEN, RESET ALL) would be a round trip per call for nothing."""


async def _execute(connection: asyncpg.Connection, each: Step) -> Any:
    rendered = each.statement.postgresql
    args = rendered.bind(each.params)
    if each.statement.rows:
        return await connection.fetch(rendered.text, *args)
    return _row_count(await connection.execute(rendered.text, *args))


# --- ingest helpers ---------------------------------------------------------------------------


async def _insert_batch(connection: asyncpg.Connection, items: list[Incoming]) -> list[Accepted]:
    """Store a batch in the caller's transaction; one Accepted per item, in order."""
    batch = Batch(items)
    await _lock_conversations(connection, items)
    marks = batch.marks(await _new_event_ids(connection, batch.distinct))
    settled = batch.settle(marks, await _upsert_seen(connection, marks))
    await _insert_events_and_deliveries(connection, settled)
    return settled.answers


async def _lock_conversations(connection: asyncpg.Connection, items: list[Incoming]) -> None:
    """Hold every conversation of the batch until commit, so that another instance's rows of
    the same conversation get their ids after ours are visible (see the module docstring)."""
    keys = sorted({_conversation_key(i.conversation) for i in items if i.conversation is not None})
    if keys:
        await connection.execute(_LOCK_CONVERSATIONS, CONVERSATION_LOCK_CLASS, keys)


def _conversation_key(conversation: str) -> int:
    # A collision only makes two conversations' ingests wait for each other: harmless.
    digest = hashlib.sha256(conversation.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


async def _new_event_ids(connection: asyncpg.Connection, count: int) -> list[int]:
    # Allocated after the conversation locks, ascending: Batch.marks gives them out in order.
    rows = await connection.fetch(_NEW_EVENT_IDS, count)
    return [row[0] for row in rows]


async def _upsert_seen(connection: asyncpg.Connection, marks: list[Mark]) -> dict[bytes, int]:
    """Upsert the marks; the event id each body stands for now."""
    rows = await connection.fetch(
        _UPSERT_SEEN,
        [mark.body_hash for mark in marks],
        [mark.event_id for mark in marks],
        [mark.seen_at for mark in marks],
        DUPLICATE_WINDOW,
    )
    return {bytes(row[0]): row[1] for row in rows}


async def _insert_events_and_deliveries(connection: asyncpg.Connection, settled: Settled) -> None:
    """The new events under their allotted ids, and a pending row per destination."""
    if not settled.events:
        return
    ids, items = zip(*settled.events, strict=True)
    await connection.execute(
        _INSERT_EVENTS,
        list(ids),
        [i.received_at for i in items],
        [i.event_name for i in items],
        [i.conversation for i in items],
        [i.body for i in items],
    )
    if deliveries := settled.deliveries:
        await connection.execute(_INSERT_DELIVERIES, *map(list, zip(*deliveries, strict=True)))


# --- errors and URLs --------------------------------------------------------------------------


def _row_count(status: str) -> int:
    """The row count of a command tag such as 'UPDATE 3' or 'DELETE 0'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _cause(error: BaseException) -> str:
    """A short, operator-facing cause: no URL, no stack, no driver noise."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, asyncpg.InternalClientError):  # in practice: a connection cut mid-use
        return f"the connection broke ({str(error).strip()})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _where(url: str) -> str:
    """host:port/db of a postgresql:// URL, for messages (never the user or password)."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        host = parts.hostname or query.get("host", ["localhost"])[0]
        port = parts.port or int(query.get("port", ["5432"])[0])
        database = unquote(parts.path.lstrip("/")) or query.get("dbname", [""])[0]
    except ValueError:
        return "the configured server"
    return f"{host}:{port}/{database}"


# --- migrations -------------------------------------------------------------------------------


async def _migrate(connection: asyncpg.Connection) -> None:
    """Apply the migrations this database lacks, each once, even if instances start together.

    The advisory lock is transaction-scoped: it is released by the commit (or by the server
    when a crashed instance's connection drops), so a stuck lock cannot outlive its holder.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(_SCHEMA_MIGRATIONS)
        version: int = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_migrations"
        )
        # A database newer than this code (an upgrade was rolled back) is used as it is,
        # like SQLite's user_version: migrations only ever add (schema.py).
        for number, migration in enumerate(schema.MIGRATIONS[version:], start=version + 1):
            script = migration.script(Dialect.POSTGRESQL)
            if script.strip():
                await connection.execute(script)
            await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)
