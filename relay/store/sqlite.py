"""The embedded store: one SQLite file in WAL mode, for a single relay instance.

Every write runs on one dedicated thread that owns the writing connection, so the event
loop never blocks on disk. Reads that stand alone (a lane's next due time, /metrics, the
console, `relay dead list`) run on a second thread with a read-only connection of their
own: in WAL mode a reader neither waits for the writer nor holds it up, so a scrape or a
console page over a long backlog never delays a commit that ingest is waiting for, and a
read begun after a write returned sees it. Ingest uses group commit (relay/store/commit.py):
one transaction, one fsync, for a burst of concurrent requests. `synchronous=FULL` makes a
commit durable across power loss, not only process crashes. The statements it shares with
PostgreSQL are in relay/store/schema.py; what is SQLite's own:

- One relay serves a file: `exclusive=True` (`relay serve`) holds relay/store/lock.py's
  lock until close; the CLI's `relay dead ...` opens without it, next to a serving relay.
- Ids come from counters (`id_counters`, migration 2), not from max(id) + 1, so ids of
  pruned rows are never handed out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from relay.errors import StoreUnavailable
from relay.store import schema
from relay.store.base import DUPLICATE_WINDOW, Accepted, Incoming
from relay.store.batch import Batch
from relay.store.commit import GroupCommit
from relay.store.lock import ServeLock
from relay.store.shared import SharedStore
from relay.store.sql import Dialect, Statement, Step, step
from relay.store.views import ConsoleViews

T = TypeVar("T")

# What to do about the errors an operator can fix, by SQLite's primary result code.
_ADVICE = {
    sqlite3.SQLITE_FULL: "free disk space",
    sqlite3.SQLITE_READONLY: "make the file and its directory writable for the relay",
    sqlite3.SQLITE_CANTOPEN: "check that the path exists and the relay may write to it",
    sqlite3.SQLITE_BUSY: "another process kept the file locked for over 5 s",
}


def sqlite_path(url: str) -> Path:
    """`sqlite:///relay.db` is relative to the working directory; `sqlite:////abs/path` absolute."""
    return Path(url.removeprefix("sqlite:///"))


class SQLiteStore(ConsoleViews, SharedStore):
    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", exclusive: bool = False
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._lock = ServeLock(self.path) if exclusive else None
        self._thread: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: ThreadPoolExecutor | None = None  # standalone reads (see the docstring)
        self._rdb: sqlite3.Connection | None = None
        self._commit: GroupCommit | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _describe(self) -> str:
        return str(self.path)

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        thread = self._thread = ThreadPoolExecutor(1, thread_name_prefix="relay-sqlite")
        try:
            await self._run(self._connect)
        except BaseException:
            self._thread = None
            thread.shutdown(wait=False)
            raise
        # After the writer's migrations: the reader opens the file as it now is.
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="relay-sqlite-read")
        try:
            await self._run(self._connect_reader, reader=True)
        except BaseException:
            await self.close()
            raise
        self._commit = GroupCommit(self._write_batch, name="relay-sqlite-writer")
        self._commit.start()

    async def close(self) -> None:
        if self._commit is not None:
            await self._commit.close()  # stays, closed: a late accept() hears "closed"
        loop = asyncio.get_running_loop()
        reader, self._reader = self._reader, None
        if reader is not None:
            await loop.run_in_executor(reader, self._disconnect_reader)
            reader.shutdown(wait=True)
        thread, self._thread = self._thread, None
        if thread is None:
            return
        await loop.run_in_executor(thread, self._disconnect)
        thread.shutdown(wait=True)

    def _connect(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            raise StoreUnavailable(f"{self.path}: directory {self.path.parent} does not exist")
        if self._lock is not None:
            self._lock.acquire()
        try:
            db = self._connection(
                "journal_mode = WAL", f"synchronous = {self._synchronous}", "foreign_keys = ON"
            )
            try:
                _migrate(db)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as error:
            self._release_lock()
            raise self._unavailable(error) from error
        except BaseException:
            self._release_lock()
            raise
        self._db = db

    def _connect_reader(self) -> None:
        try:
            self._rdb = self._connection("query_only = ON")
        except sqlite3.Error as error:
            raise self._unavailable(error) from error

    def _connection(self, *pragmas: str) -> sqlite3.Connection:
        """A connection to the file with `pragmas` set (closed again if one fails)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in ("busy_timeout = 5000", *pragmas):
                db.execute(f"PRAGMA {pragma}")
        except BaseException:
            db.close()
            raise
        return db

    def _disconnect_reader(self) -> None:
        db, self._rdb = self._rdb, None
        if db is not None:
            db.close()

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    async def _run(self, function: Callable[..., T], *args: Any, reader: bool = False) -> T:
        """Run `function(*args)` on the writer's thread (`reader`: the reader's)."""
        thread = self._reader if reader else self._thread
        if thread is None:
            raise StoreUnavailable(f"{self.path}: the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(thread, function, *args)

    async def _call(self, function: Callable[..., T], *args: Any, reader: bool = False) -> T:
        """Run `function(db, *args)` on the writer's thread and connection (`reader`: the
        reader's); sqlite errors become StoreUnavailable."""
        return await self._run(self._guarded, reader, function, *args, reader=reader)

    def _guarded(self, reader: bool, function: Callable[..., T], *args: Any) -> T:
        db = self._rdb if reader else self._db
        if db is None:
            raise StoreUnavailable(f"{self.path}: the store is closed")
        try:
            return function(db, *args)
        except sqlite3.Error as error:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise self._unavailable(error) from error

    def _unavailable(self, error: sqlite3.Error) -> StoreUnavailable:
        advice = _ADVICE.get(getattr(error, "sqlite_errorcode", -1) & 0xFF)
        return StoreUnavailable(f"{self.path}: {error}" + (f" ({advice})" if advice else ""))

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    # --- the shared statements' primitives ----------------------------------------------------

    async def _read(self, statement: Statement, **params: Any) -> list[Sequence[Any]]:
        """A statement that stands alone, on the reader's thread and connection."""
        query = statement.sqlite
        return await self._call(
            lambda db: db.execute(query.text, query.bind(params)).fetchall(), reader=True
        )

    async def _write(self, *steps: Step) -> list[Any]:
        def write(db: sqlite3.Connection) -> list[Any]:
            with _transaction(db):
                return [_execute(db, each) for each in steps]

        return await self._call(write)

    # --- ingest: group commit -----------------------------------------------------------------

    async def accept(self, incoming: Incoming) -> Accepted:
        if self._commit is None:
            raise StoreUnavailable(f"{self.path}: the store is not open")
        return await self._commit.accept(incoming)

    async def _write_batch(self, items: list[Incoming]) -> list[Accepted]:
        return await self._call(_insert_batch, items)

    # --- lanes --------------------------------------------------------------------------------

    async def _claim(self, **params: Any) -> list[Sequence[Any]]:
        return await self._call(_claim, params)

    async def hold_lane(self, destination: str, owner: str, ttl: float, now: float) -> bool:
        return True  # one relay serves the file (the lock) and every lane in it

    async def release_lane(self, destination: str, owner: str) -> None:
        return None


def _claim(db: sqlite3.Connection, params: dict[str, Any]) -> list[Sequence[Any]]:
    """The due heads, then them and the rows behind them, in one transaction on the store
    thread (one hand-off to it: see _insert_batch)."""
    with _transaction(db):
        heads = _execute(db, step(schema.CLAIM_HEADS, **params))
        if not heads:
            return []
        ids = [head for (head,) in heads]
        _execute(db, step(schema.LEASE_HEADS, ids=ids, **params))
        rows: list[Sequence[Any]] = _execute(db, step(schema.CLAIM_RUNS, ids=ids, **params))
        return rows


def _execute(db: sqlite3.Connection, each: Step) -> Any:
    rendered = each.statement.sqlite
    cursor = db.execute(rendered.text, rendered.bind(each.params))
    return cursor.fetchall() if each.statement.rows else cursor.rowcount


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may have rolled back already (SQLITE_FULL does): keep the error that did it.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks. A file newer than this code (an upgrade was
    rolled back) is used as it is: migrations only ever add (schema.py)."""
    with _transaction(db):
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, migration in enumerate(schema.MIGRATIONS[version:], start=version + 1):
            for statement in schema.statements(migration.script(Dialect.SQLITE)):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")


# --- ingest -------------------------------------------------------------------------------------

# The next `count` ids of a table end at the returned id. Never below the table's largest id,
# in case an older relay (which used max(id) + 1) wrote to the file since the counter was set.
_ALLOCATE = """
UPDATE id_counters SET last_id = max(last_id, (SELECT coalesce(max(id), 0) FROM {table})) + ?
WHERE name = '{table}' RETURNING last_id
"""

# The marks of a batch (relay/store/batch.py); `{rows}`: their multi-row VALUES.
_UPSERT_SEEN = (
    "INSERT INTO seen (body_hash, event_id, seen_at) VALUES {rows}"  # noqa: S608 - placeholders only
    + schema.UPSERT_SEEN_TAIL.format(window="?")
)

_ROWS_PER_INSERT = 500  # keeps a statement's parameters far below SQLite's 32766


def _insert_batch(db: sqlite3.Connection, items: list[Incoming]) -> list[Accepted]:
    """Store a batch in one transaction; one Accepted per item, in order.

    A handful of statements per batch, not four per event: each statement is a round trip
    for the GIL between this thread and the event loop, which under load costs more than
    the statement.
    """
    batch = Batch(items)
    with _transaction(db):
        marks = batch.marks(_allocate(db, "events", batch.distinct))
        flat = [value for mark in marks for value in (mark.body_hash, mark.event_id, mark.seen_at)]
        stands_for = dict(
            db.execute(
                _UPSERT_SEEN.format(rows=_rows(len(marks), 3)),
                [*flat, DUPLICATE_WINDOW, DUPLICATE_WINDOW],
            ).fetchall()
        )
        settled = batch.settle(marks, stands_for)
        events = [
            (event_id, item.received_at, item.event_name, item.conversation, item.body)
            for event_id, item in settled.events
        ]
        _insert_rows(db, "events (id, received_at, event_name, conversation, body)", events)
        deliveries = settled.deliveries
        ids = _allocate(db, "deliveries", len(deliveries))
        _insert_rows(
            db,
            "deliveries (id, event_id, destination, conversation, next_at, created_at, retry_from)",
            [
                (delivery_id, event_id, destination, conversation, at, at, at)
                for delivery_id, (event_id, destination, conversation, at) in zip(
                    ids, deliveries, strict=True
                )
            ],
        )
        # A conversation without pending rows gets its first new row as head; one with a
        # head keeps it (older: ids ascend). One writer: nothing to lock.
        _insert_rows(
            db,
            "heads (delivery_id, destination, conversation, next_at)",
            [
                (delivery_id, destination, conversation, at)
                for delivery_id, (_, destination, conversation, at) in _firsts(ids, deliveries)
            ],
            "ON CONFLICT DO NOTHING",
        )
    return settled.answers


def _firsts(
    ids: Sequence[int], deliveries: Sequence[tuple[int, str, str | None, float]]
) -> list[tuple[int, tuple[int, str, str | None, float]]]:
    """The first of the rows of each destination and conversation (every row without a
    conversation), with its id."""
    seen: set[tuple[str, str]] = set()
    firsts = []
    for delivery_id, row in zip(ids, deliveries, strict=True):
        _, destination, conversation, _ = row
        if conversation is not None:
            if (destination, conversation) in seen:
                continue
            seen.add((destination, conversation))
        firsts.append((delivery_id, row))
    return firsts


def _allocate(db: sqlite3.Connection, table: str, count: int) -> range:
    """`count` new ids of `table`, ascending, never used before."""
    if count == 0:
        return range(0)
    (last,) = db.execute(_ALLOCATE.format(table=table), (count,)).fetchone()
    return range(last - count + 1, last + 1)


def _rows(count: int, width: int) -> str:
    """`(?, ?), (?, ?)` for a multi-row VALUES of `count` rows of `width` columns."""
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def _insert_rows(
    db: sqlite3.Connection, into: str, rows: list[tuple[Any, ...]], tail: str = ""
) -> None:
    """INSERT `rows` with multi-row VALUES, in order."""
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        values = [value for row in chunk for value in row]
        db.execute(f"INSERT INTO {into} VALUES {_rows(len(chunk), len(chunk[0]))} {tail}", values)  # noqa: S608 - placeholders only
