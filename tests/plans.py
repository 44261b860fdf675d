"""What SQLite's planner makes of the store's statements, on a file migrated as shipped."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from relay.store.sql import Statement
from relay.store.sqlite import SQLiteStore


@contextmanager
def migrated(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a new SQLite file with every migration applied, as `relay serve`
    opens it."""
    store = SQLiteStore(path)
    store._connect()
    assert store._db is not None
    try:
        yield store._db
    finally:
        store._disconnect()


def plan(db: sqlite3.Connection, statement: Statement, params: Mapping[str, Any]) -> list[str]:
    """The details of EXPLAIN QUERY PLAN for `statement` with `params` bound."""
    query = statement.sqlite
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query.text, query.bind(params))]
