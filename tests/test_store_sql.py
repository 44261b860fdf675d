"""The store's shape: statements written once and rendered per engine (relay/store/sql.py),
the duplicate bookkeeping (relay/store/batch.py), and the protocols cut by caller, which both
engines implement exactly as declared (relay/store/base.py)."""

from __future__ import annotations

import inspect
import json

import pytest

from relay.store import schema
from relay.store.base import AdminStore, Incoming, IngestStore, LaneStore, Store
from relay.store.batch import Batch
from relay.store.postgres import PostgresStore
from relay.store.sql import Dialect, Statement
from relay.store.sqlite import SQLiteStore

# --- statements -------------------------------------------------------------------------------


def test_named_parameters_become_positional_for_postgresql_only() -> None:
    statement = Statement(
        "UPDATE t SET a = :now, b = CAST(:ids AS BIGINT[]), c = :now::float8,"
        " d = '10:30' WHERE id IN ({ids}) {skip_locked}"
    )
    postgresql = statement.postgresql
    assert postgresql.text == (
        "UPDATE t SET a = $1, b = CAST($2 AS BIGINT[]), c = $1::float8, d = '10:30'"
        " WHERE id IN (SELECT unnest(CAST($2 AS BIGINT[]))) FOR UPDATE SKIP LOCKED"
    )
    assert postgresql.bind({"ids": [1, 2], "now": 5.0}) == [5.0, [1, 2]]
    sqlite = statement.sqlite
    assert sqlite.text == (
        "UPDATE t SET a = :now, b = CAST(:ids AS BIGINT[]), c = :now::float8, d = '10:30'"
        " WHERE id IN (SELECT value FROM json_each(:ids)) "
    )
    assert sqlite.bind({"ids": [1, 2], "now": 5.0}) == {"ids": json.dumps([1, 2]), "now": 5.0}


@pytest.mark.parametrize("dialect", list(Dialect))
def test_every_migration_renders_without_leftover_macros(dialect: Dialect) -> None:
    for migration in schema.MIGRATIONS:
        assert "{" not in migration.script(dialect)
    shared = [value for value in vars(schema).values() if isinstance(value, Statement)]
    assert len(shared) > 15
    for statement in shared:
        text = statement.sqlite.text if dialect is Dialect.SQLITE else statement.postgresql.text
        assert "{" not in text, statement


# --- duplicates -------------------------------------------------------------------------------


def test_a_batch_stores_each_new_body_once_and_answers_every_caller() -> None:
    items = [
        Incoming(body, None, conversation, destinations, at)
        for body, conversation, destinations, at in [
            (b"new", "c", ("a", "b"), 1.0),
            (b"seen before", "c", ("a",), 2.0),
            (b"new", "c", ("a", "b"), 3.0),  # the same body again, in the same batch
            (b"expired", None, ("a",), 4.0),
        ]
    ]
    batch = Batch(items)
    assert batch.distinct == 3
    marks = batch.marks([12, 10, 11])  # allocated ids, in any order: given out ascending
    assert [(mark.event_id, mark.seen_at) for mark in marks] == [(10, 1.0), (11, 2.0), (12, 4.0)]
    stands_for = {marks[0].body_hash: 10, marks[1].body_hash: 3, marks[2].body_hash: 12}
    settled = batch.settle(marks, stands_for)
    assert [(event_id, item.body) for event_id, item in settled.events] == [
        (10, b"new"),
        (12, b"expired"),
    ]
    assert settled.deliveries == [(10, "a", "c", 1.0), (10, "b", "c", 1.0), (12, "a", None, 4.0)]
    assert [(a.event_id, a.duplicate) for a in settled.answers] == [
        (10, False),
        (3, True),
        (10, True),
        (12, False),
    ]


# --- protocols --------------------------------------------------------------------------------


def members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_the_store_is_cut_by_who_calls_it() -> None:
    assert members(IngestStore) == {"accept", "check_writable"}
    assert members(LaneStore) == {
        "hold_lane", "release_lane", "claim", "release", "save_progress", "mark_sent",
        "retry_later", "bury", "next_due", "thread_parent", "set_thread_parent",
    }
    assert members(AdminStore) == {
        "dead_letters", "dead_count", "revive", "bury_destination", "backlog", "prune",
    }
    assert members(Store) == {"open", "close", "ping"}
    assert {IngestStore, LaneStore, AdminStore} <= set(Store.__mro__)


@pytest.mark.parametrize("engine", [SQLiteStore, PostgresStore])
def test_every_engine_implements_every_method_as_declared(engine: type) -> None:
    declared = set().union(*(members(p) for p in (IngestStore, LaneStore, AdminStore, Store)))
    for name in declared:
        implemented, protocol = getattr(engine, name), getattr(Store, name)
        assert inspect.iscoroutinefunction(implemented), name
        assert inspect.signature(implemented) == inspect.signature(protocol), name
