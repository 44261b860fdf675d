"""What only the SQLite store has: one relay per file, the file's own failures, and upgrades
of files written by earlier versions (the contract it shares with PostgreSQL is
tests/test_store.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import StoreLocked, StoreUnavailable
from relay.store import schema, store_for
from relay.store.base import Incoming
from relay.store.sql import Statement
from relay.store.sqlite import SQLiteStore
from tests.plans import migrated, plan

T0 = 1_700_000_000.0


def incoming(body: bytes, at: float = T0) -> Incoming:
    return Incoming(body, "newMessage", None, ("a",), at)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    engine = SQLiteStore(tmp_path / "relay.db")
    await engine.open()
    yield engine
    await engine.close()


async def pragma(store: SQLiteStore, statement: str) -> list[tuple[object, ...]]:
    """Run a PRAGMA on the store's own connection (per-connection settings included)."""
    return await store._call(lambda db: db.execute(f"PRAGMA {statement}").fetchall())


# --- one relay per file ---------------------------------------------------------------------


async def test_a_second_serving_store_on_one_file_is_refused_but_readers_are_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    serving = store_for(f"sqlite:///{path}", exclusive=True)
    await serving.open()
    try:
        second = SQLiteStore(path, exclusive=True)
        with pytest.raises(StoreLocked) as refused:
            await second.open()
        assert str(refused.value) == (
            f"{path} is already served by another relay (pid {os.getpid()}); stop it first,"
            " or use PostgreSQL to run several instances"
        )
        await second.close()  # closing a store that could not open is harmless

        # `relay dead list` / `relay dead retry` open the file without the lock.
        await serving.accept(incoming(b"1"))
        (row,) = await serving.claim("a", T0 + 1, 10, 60.0, "me")
        await serving.bury([row.id], T0 + 2, "forbidden", "bot was kicked")
        reader = store_for(f"sqlite:///{path}")
        await reader.open()
        try:
            assert [letter.id for letter in await reader.dead_letters()] == [row.id]
            assert await reader.revive([row.id], T0 + 3) == 1
        finally:
            await reader.close()
        # The reader's closed connection to the file did not release the lock with it.
        with pytest.raises(StoreLocked):
            await SQLiteStore(path, exclusive=True).open()
    finally:
        await serving.close()

    successor = SQLiteStore(path, exclusive=True)  # the first one stopped: free again
    await successor.open()
    try:
        assert [r.id for r in await successor.claim("a", T0 + 4, 10, 60.0, "me")] == [row.id]
    finally:
        await successor.close()


async def test_the_lock_is_a_sidecar_file_and_needs_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteStore(path, exclusive=True)
    await store.open()
    await store.close()
    assert (tmp_path / "relay.db.lock").exists()
    missing = SQLiteStore(tmp_path / "no" / "relay.db", exclusive=True)
    with pytest.raises(StoreUnavailable, match=r"directory .* does not exist"):
        await missing.open()


# --- the write probe ------------------------------------------------------------------------


async def test_check_writable_fails_on_a_full_disk_and_recovers(store: SQLiteStore) -> None:
    for n in range(5):
        await store.accept(incoming(b"%d" % n))
    await store.check_writable()
    # Cap the file where it is; the probe's earlier pages are free for reuse, so take them
    # first. SQLite's own page limit fails like a full disk (SQLITE_FULL).
    await store.accept(incoming(b"x" * 20_000))
    assert (await pragma(store, "freelist_count"))[0][0] == 0
    (pages,) = (await pragma(store, "page_count"))[0]
    await pragma(store, f"max_page_count = {pages}")
    with pytest.raises(StoreUnavailable, match="full") as full:
        await store.check_writable()
    assert str(full.value).startswith(f"{store.path}: ")
    await store.ping()  # reads still work: a ping cannot tell
    await pragma(store, "max_page_count = 1073741823")  # room again
    await store.check_writable()


async def test_check_writable_fails_when_the_file_is_read_only_and_recovers(
    store: SQLiteStore,
) -> None:
    await pragma(store, "query_only = ON")  # every write fails as on a read-only disk
    with pytest.raises(StoreUnavailable, match="readonly"):
        await store.check_writable()
    await store.ping()
    await pragma(store, "query_only = OFF")
    await store.check_writable()


# --- reads beside the writer ---------------------------------------------------------------


async def test_a_long_read_holds_up_neither_ingest_nor_a_lane(store: SQLiteStore) -> None:
    """A scrape or a console page over a long backlog reads on a connection and thread of
    its own: while one is under way, events are stored and outcomes recorded. A read begun
    after a write returned sees it."""
    entered, release = threading.Event(), threading.Event()

    def held() -> int:
        entered.set()
        release.wait(60)  # bounded: a store that waits for the read fails below, not hangs
        return 1

    assert store._rdb is not None
    store._rdb.create_function("held", 0, held)
    reading = asyncio.ensure_future(store._read(Statement("SELECT held()", rows=True)))
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 60)
    try:
        accepted = await asyncio.wait_for(store.accept(incoming(b"during the read")), 30)
        (row,) = await asyncio.wait_for(store.claim("a", T0 + 1, 1, 5.0, "A"), 30)
        await asyncio.wait_for(store.mark_sent([row.id], T0 + 1), 30)
    finally:
        release.set()
    assert await reading == [(1,)]
    assert row.event_id == accepted.event_id and not accepted.duplicate
    assert await store.backlog() == []  # the outcome, written before this read began


async def test_reads_are_refused_with_the_path_once_the_store_is_closed(tmp_path: Path) -> None:
    engine = SQLiteStore(tmp_path / "relay.db")
    await engine.open()
    await engine.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await engine.backlog()


# --- files written by earlier versions ------------------------------------------------------

# The schema of release 0.1.0 (PRAGMA user_version = 1), as it shipped: files in the field
# look like this, and every later version must open them as they are.
SCHEMA_V1 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, event_name TEXT, conversation TEXT,
    body BLOB NOT NULL
);
CREATE TABLE seen (body_hash BLOB PRIMARY KEY, event_id INTEGER NOT NULL, seen_at REAL NOT NULL);
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
PRAGMA user_version = 1;
"""


def schema_of(path: Path) -> dict[str, object]:
    """Every table's columns and every index's definition, as SQLite reports them."""
    db = sqlite3.connect(path)
    try:
        names = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        ).fetchall()
        shape: dict[str, object] = {
            name: db.execute(f"PRAGMA table_xinfo({name})").fetchall()
            if kind == "table"
            else " ".join((sql or "").split())
            for kind, name, sql in names
        }
        shape["user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        return shape
    finally:
        db.close()


async def test_a_version_1_file_is_upgraded_and_never_reuses_its_pruned_ids(
    tmp_path: Path,
) -> None:
    """Event 7 was pruned, but its duplicate mark is still in the window: new events get ids
    past it, new deliveries past every delivery id on file, and old rows stay as they were."""
    path = tmp_path / "relay.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    pruned = hashlib.sha256(b"pruned").digest()
    with db:
        db.execute("INSERT INTO events VALUES (5, ?, 'newMessage', NULL, x'31')", (T0,))
        db.execute("INSERT INTO seen VALUES (?, 7, ?)", (pruned, T0))
        db.execute(
            "INSERT INTO deliveries (id, event_id, destination, next_at, created_at,"
            " retry_from) VALUES (2, 5, 'a', ?, ?, ?)",
            (T0, T0, T0),
        )
    db.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        new = await store.accept(incoming(b"new", at=T0 + 1))
        assert new.event_id == 8
        again = await store.accept(incoming(b"pruned", at=T0 + 1))
        assert again.duplicate and again.event_id == 7
        rows = await store.claim("a", T0 + 2, 10, 60.0, "me")
        assert [(r.id, r.event_id, r.body) for r in rows] == [(2, 5, b"1"), (3, 8, b"new")]
    finally:
        await store.close()

    fresh = tmp_path / "fresh.db"
    store = SQLiteStore(fresh)
    await store.open()
    await store.close()
    assert schema_of(path) == schema_of(fresh)  # upgraded == created by this version


def test_prunes_read_only_what_expired(tmp_path: Path) -> None:
    """Migration 8: the prune statements find expired events and marks through an index of
    their time, not by reading every row on file (seconds for a few hundred thousand, on
    the thread ingest commits on)."""
    with migrated(tmp_path / "relay.db") as db:
        for statement, index in ((schema.PRUNE_SEEN, "seen_at"),
                                 (schema.PRUNE_EVENTS, "events_received")):  # fmt: skip
            details = plan(db, statement, {"before": T0, "chunk": 500})
            assert any(f"INDEX {index}" in detail for detail in details), details
            assert not [d for d in details if d.startswith("SCAN")], details
