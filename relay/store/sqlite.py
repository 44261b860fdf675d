"""The embedded store: one SQLite file in WAL mode, for a single relay instance.

Every statement runs on one dedicated thread that owns the connection, so the event loop
never blocks on disk. Ingest does not commit per request: `accept()` queues the event and
a writer task commits everything queued meanwhile in one transaction — one fsync for a
burst of concurrent requests — before any of them is answered (group commit).
`synchronous=FULL` makes a commit durable across power loss, not only process crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from relay.errors import StoreUnavailable
from relay.store.base import (
    DUPLICATE_WINDOW,
    Accepted,
    Backlog,
    Claimed,
    DeadLetter,
    Incoming,
)

T = TypeVar("T")
MAX_BATCH = 512

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        event_name TEXT,
        conversation TEXT,
        body BLOB NOT NULL
    );
    CREATE TABLE seen (
        body_hash BLOB PRIMARY KEY,
        event_id INTEGER NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        conversation TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        progress INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_until REAL,
        lease_owner TEXT,
        reason TEXT,
        detail TEXT,
        created_at REAL NOT NULL,
        retry_from REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX deliveries_due ON deliveries (destination, next_at, id) WHERE state = 'pending';
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
    """,
)

_CLAIM = """
UPDATE deliveries SET lease_until = :lease_until, lease_owner = :owner
WHERE id IN (
    SELECT d.id FROM deliveries AS d
    WHERE d.destination = :destination AND d.state = 'pending' AND d.next_at <= :now
      AND (d.lease_until IS NULL OR d.lease_until <= :now OR d.lease_owner != :owner)
      AND (d.conversation IS NULL OR NOT EXISTS (
          SELECT 1 FROM deliveries AS p
          WHERE p.destination = d.destination AND p.conversation = d.conversation
            AND p.state = 'pending' AND p.id < d.id))
    ORDER BY d.id LIMIT :limit)
RETURNING id, event_id, destination, conversation, attempts, progress, created_at, retry_from
"""


# When the next row becomes claimable: heads of conversations only (a row behind another
# waits for it, not for its own time), and not rows this owner is delivering right now.
_NEXT_DUE = """
SELECT min(d.next_at) FROM deliveries AS d
WHERE d.destination = :destination AND d.state = 'pending'
  AND (d.lease_owner IS NULL OR d.lease_owner != :owner)
  AND (d.conversation IS NULL OR NOT EXISTS (
      SELECT 1 FROM deliveries AS p
      WHERE p.destination = d.destination AND p.conversation = d.conversation
        AND p.state = 'pending' AND p.id < d.id))
"""


def sqlite_path(url: str) -> Path:
    """`sqlite:///relay.db` is relative to the working directory; `sqlite:////abs/path` absolute."""
    return Path(url.removeprefix("sqlite:///"))


class SQLiteStore:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[tuple[Incoming, asyncio.Future[Accepted]]] | None = None
        self._writer: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._connect)
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_batches(), name="relay-sqlite-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    def _connect(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            raise StoreUnavailable(f"{self.path}: directory {self.path.parent} does not exist")
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from error
        self._db = db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, *args)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(db, *args)` on the store thread; sqlite errors become StoreUnavailable."""
        return await self._run(self._guarded, function, *args)

    def _guarded(self, function: Callable[..., T], *args: Any) -> T:
        if self._db is None:
            raise StoreUnavailable("the store is closed")
        try:
            return function(self._db, *args)
        except sqlite3.Error as error:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise StoreUnavailable(f"{self.path}: {error}") from error

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    # --- ingest: group commit -----------------------------------------------------------------

    async def accept(self, incoming: Incoming) -> Accepted:
        if self._queue is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        await self._queue.put((incoming, future))
        return await future

    async def _write_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._call(_insert_batch, [item for item, _ in batch])
            except Exception as error:  # every waiter hears it; none of them is answered 200
                failure = (
                    error if isinstance(error, StoreUnavailable) else StoreUnavailable(str(error))
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    # --- lanes --------------------------------------------------------------------------------

    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool:
        return True  # one instance owns the SQLite file and every lane in it

    async def release_lane(self, destination: str, owner: str) -> None:
        return None

    async def claim(
        self, destination: str, now: float, limit: int, lease: float, owner: str
    ) -> list[Claimed]:
        return await self._call(_claim, destination, now, limit, now + lease, owner)

    async def release(self, ids: Sequence[int]) -> None:
        await self._write(
            "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL WHERE id = ?",
            [(i,) for i in ids],
        )

    async def save_progress(self, delivery_id: int, progress: int) -> None:
        await self._write(
            "UPDATE deliveries SET progress = ? WHERE id = ?", [(progress, delivery_id)]
        )

    async def mark_sent(self, delivery_id: int, now: float) -> None:
        await self._write(
            "UPDATE deliveries SET state = 'sent', finished_at = ?, lease_until = NULL, "
            "lease_owner = NULL WHERE id = ?",
            [(now, delivery_id)],
        )

    async def retry_later(self, delivery_id: int, next_at: float, reason: str, detail: str) -> None:
        await self._write(
            "UPDATE deliveries SET attempts = attempts + 1, next_at = ?, reason = ?, detail = ?, "
            "lease_until = NULL, lease_owner = NULL WHERE id = ?",
            [(next_at, reason, detail, delivery_id)],
        )

    async def bury(self, delivery_id: int, now: float, reason: str, detail: str) -> None:
        await self._write(
            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, finished_at = ?, "
            "reason = ?, detail = ?, lease_until = NULL, lease_owner = NULL WHERE id = ?",
            [(now, reason, detail, delivery_id)],
        )

    async def next_due(self, destination: str, owner: str) -> float | None:
        return await self._call(
            lambda db: db.execute(
                _NEXT_DUE, {"destination": destination, "owner": owner}
            ).fetchone()[0]
        )

    async def thread_parent(self, destination: str, conversation: str) -> str | None:
        row = await self._call(
            lambda db: db.execute(
                "SELECT parent FROM threads WHERE destination = ? AND conversation = ?",
                (destination, conversation),
            ).fetchone()
        )
        return row[0] if row else None

    async def set_thread_parent(self, destination: str, conversation: str, ref: str) -> str:
        def write(db: sqlite3.Connection) -> str:
            with _transaction(db):
                db.execute(
                    "INSERT INTO threads (destination, conversation, parent) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (destination, conversation, ref),
                )
                return db.execute(
                    "SELECT parent FROM threads WHERE destination = ? AND conversation = ?",
                    (destination, conversation),
                ).fetchone()[0]

        return await self._call(write)

    # --- operators ----------------------------------------------------------------------------

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        rows = await self._call(
            lambda db: db.execute(
                "SELECT d.id, d.event_id, e.event_name, d.destination, d.conversation, d.attempts,"
                " d.reason, d.detail, d.created_at, d.finished_at FROM deliveries AS d"
                " JOIN events AS e ON e.id = d.event_id WHERE d.state = 'dead'"
                " ORDER BY d.id LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [DeadLetter(*row[:6], row[6] or "", row[7] or "", row[8], row[9]) for row in rows]

    async def dead_count(self) -> int:
        return await self._call(
            lambda db: db.execute(
                "SELECT count(*) FROM deliveries WHERE state = 'dead'"
            ).fetchone()[0]
        )

    async def revive(self, ids: Sequence[int] | None, now: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            with _transaction(db):
                revive = (
                    "UPDATE deliveries SET state = 'pending', next_at = ?, attempts = 0,"
                    " retry_from = ?, finished_at = NULL WHERE state = 'dead'"
                )
                if ids is None:
                    return db.execute(revive, (now, now)).rowcount
                return sum(db.execute(revive + " AND id = ?", (now, now, i)).rowcount for i in ids)

        return await self._call(write)

    async def bury_destination(self, destination: str, now: float, reason: str) -> int:
        def write(db: sqlite3.Connection) -> int:
            with _transaction(db):
                return db.execute(
                    "UPDATE deliveries SET state = 'dead', finished_at = ?, reason = ?,"
                    " detail = 'the destination is no longer in the config',"
                    " lease_until = NULL, lease_owner = NULL"
                    " WHERE destination = ? AND state = 'pending'",
                    (now, reason, destination),
                ).rowcount

        return await self._call(write)

    async def backlog(self) -> list[Backlog]:
        rows = await self._call(
            lambda db: db.execute(
                "SELECT destination, count(*), min(created_at) FROM deliveries"
                " WHERE state = 'pending' GROUP BY destination"
            ).fetchall()
        )
        return [Backlog(*row) for row in rows]

    async def prune(self, now: float, retention: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            with _transaction(db):
                db.execute("DELETE FROM seen WHERE seen_at < ?", (now - DUPLICATE_WINDOW,))
                return db.execute(
                    "DELETE FROM events WHERE received_at < ? AND NOT EXISTS ("
                    " SELECT 1 FROM deliveries AS d WHERE d.event_id = events.id"
                    " AND d.state != 'sent')",
                    (now - retention,),
                ).rowcount

        return await self._call(write)

    async def _write(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(statement, rows)

        await self._call(write)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _insert_batch(db: sqlite3.Connection, batch: list[Incoming]) -> list[Accepted]:
    """Store a batch in one transaction; one Accepted per item, in order.

    A handful of statements per batch, not four per event: each statement is a round trip
    for the GIL between this thread and the event loop, which under load costs more than
    the statement. A body twice in one batch is a duplicate of its first occurrence.
    """
    hashes = [incoming.body_hash for incoming in batch]
    firsts: dict[bytes, int] = {}  # body hash -> index of its first item
    for index, body_hash in enumerate(hashes):
        firsts.setdefault(body_hash, index)
    with _transaction(db):
        # This thread is the only writer, inside BEGIN IMMEDIATE: ids above the largest
        # are free. A duplicate's candidate id is simply not used.
        (last_id,) = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        candidates = {body_hash: last_id + n for n, body_hash in enumerate(firsts, start=1)}
        marks: list[Any] = []
        for body_hash, index in firsts.items():
            marks += (body_hash, candidates[body_hash], batch[index].received_at)
        fresh = {
            body_hash
            for (body_hash,) in db.execute(
                "INSERT INTO seen (body_hash, event_id, seen_at)"  # noqa: S608 - placeholders only
                f" VALUES {_rows(len(firsts), 3)}"
                " ON CONFLICT (body_hash) DO UPDATE SET event_id = excluded.event_id,"
                " seen_at = excluded.seen_at WHERE seen.seen_at < excluded.seen_at - ?"
                " RETURNING body_hash",
                [*marks, DUPLICATE_WINDOW],
            )
        }
        event_ids = {body_hash: candidates[body_hash] for body_hash in fresh}
        if len(fresh) < len(firsts):
            old = [body_hash for body_hash in firsts if body_hash not in fresh]
            event_ids.update(
                db.execute(
                    "SELECT body_hash, event_id FROM seen"  # noqa: S608 - placeholders only
                    f" WHERE body_hash IN ({','.join('?' * len(old))})",
                    old,
                ).fetchall()
            )
        events: list[Any] = []
        deliveries: list[Any] = []
        for body_hash, index in firsts.items():  # batch order: delivery ids keep it
            if body_hash not in fresh:
                continue
            incoming, event_id, at = batch[index], candidates[body_hash], batch[index].received_at
            events += (event_id, at, incoming.event_name, incoming.conversation, incoming.body)
            for name in incoming.destinations:
                deliveries += (event_id, name, incoming.conversation, at, at, at)
        _insert_rows(db, "events (id, received_at, event_name, conversation, body)", 5, events)
        _insert_rows(
            db,
            "deliveries (event_id, destination, conversation, next_at, created_at, retry_from)",
            6,
            deliveries,
        )
    return [
        Accepted(event_ids[h], duplicate=firsts[h] != index or h not in fresh)
        for index, h in enumerate(hashes)
    ]


_ROWS_PER_INSERT = 500  # keeps a statement's parameters far below SQLite's 32766


def _rows(count: int, width: int) -> str:
    """`(?, ?), (?, ?)` for a multi-row VALUES of `count` rows of `width` columns."""
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def _insert_rows(db: sqlite3.Connection, into: str, width: int, values: list[Any]) -> None:
    """INSERT flat `values` (`width` per row) with multi-row VALUES, in order."""
    step = _ROWS_PER_INSERT * width
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        db.execute(f"INSERT INTO {into} VALUES {_rows(len(chunk) // width, width)}", chunk)  # noqa: S608 - placeholders only


def _claim(
    db: sqlite3.Connection,
    destination: str,
    now: float,
    limit: int,
    lease_until: float,
    owner: str,
) -> list[Claimed]:
    with _transaction(db):
        rows = db.execute(
            _CLAIM,
            {
                "destination": destination,
                "now": now,
                "limit": limit,
                "lease_until": lease_until,
                "owner": owner,
            },
        ).fetchall()
        if not rows:
            return []
        event_ids = sorted({row[1] for row in rows})
        bodies = dict(
            db.execute(
                f"SELECT id, body FROM events WHERE id IN ({','.join('?' * len(event_ids))})",  # noqa: S608 - placeholders only
                event_ids,
            ).fetchall()
        )
    return sorted(
        (Claimed(*row, body=bodies[row[1]]) for row in rows), key=lambda claimed: claimed.id
    )
