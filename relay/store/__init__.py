"""Storage engines behind one interface (base.Store): SQLite embedded, PostgreSQL shared.

base.py     the protocols, cut by caller (IngestStore, LaneStore, AdminStore) and the rows
schema.py   the schema and every statement both engines share; sql.py renders them
shared.py   the Store methods that are the same on both; batch.py the duplicate bookkeeping
commit.py   group commit, for both engines' ingest
sqlite.py   one file, one relay (lock.py); postgres.py: one database, several relays
"""

from __future__ import annotations

from relay.errors import StoreLocked, StoreUnavailable
from relay.store.base import AdminStore, IngestStore, LaneStore, Store


def store_for(url: str, *, exclusive: bool = False) -> Store:
    """The store a `storage:` URL names (not yet opened).

    `exclusive`: this process serves the store (`relay serve`). A SQLite file then takes a
    lock that keeps a second relay off it (StoreLocked at open); PostgreSQL ignores it, as
    several instances on one database are what it is for.
    """
    if url.startswith("sqlite:///"):
        from relay.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url), exclusive=exclusive)
    if url.startswith(("postgresql://", "postgres://")):
        from relay.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported storage URL (use sqlite:///FILE or postgresql://...): {url}")


__all__ = [
    "AdminStore",
    "IngestStore",
    "LaneStore",
    "Store",
    "StoreLocked",
    "StoreUnavailable",
    "store_for",
]
