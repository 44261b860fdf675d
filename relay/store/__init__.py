"""Storage engines behind one interface (base.Store): SQLite embedded, PostgreSQL shared."""

from __future__ import annotations

from relay.errors import StoreUnavailable
from relay.store.base import Store


def store_for(url: str) -> Store:
    """The store a `storage:` URL names (not yet opened)."""
    if url.startswith("sqlite:///"):
        from relay.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url))
    if url.startswith(("postgresql://", "postgres://")):
        from relay.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported storage URL (use sqlite:///FILE or postgresql://...): {url}")


__all__ = ["Store", "StoreUnavailable", "store_for"]
