"""What PostgreSQL's planner makes of a lane's statements: they read the heads and the rows
they take through their indexes, never every pending row (the PostgreSQL twin of the SQLite
plan tests at the end of test_store_heads.py).

On PostgreSQL a lane claims with schema.CLAIM, one statement (the due heads, their leases and
the runs behind them, relay/store/postgres.py); CLAIM_HEADS, LEASE_HEADS and CLAIM_RUNS are
SQLite's three-step claim and PostgreSQL never runs them (CLAIM_RUNS is not even valid
PostgreSQL before 16: a subquery in FROM without an alias). So the statements checked here
are the ones a lane and /metrics run on PostgreSQL: CLAIM, NEXT_DUE and BACKLOG.

The plans come from a database filled through the store's own API, as a relay fills it: a
history of delivered rows, then a backlog of pending ones over a couple of hundred
conversations, one claim in flight and a few retries waiting; then ANALYZE. Each statement is
explained twice: planned for its parameters (a prepared statement's first runs) and planned
generically (asyncpg caches its statements, and after five runs PostgreSQL may keep a plan
made for any parameters).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest

from relay.store import schema
from relay.store.base import Incoming
from relay.store.postgres import PostgresStore
from relay.store.sql import Statement
from tests.pg import scratch_database

T0 = 1_700_000_000.0
LEASE = 60.0
OWNER = "A"
DESTINATIONS = ("a", "b")
CONVERSATIONS = 200
HISTORY = 4000  # events delivered already
BACKLOG = 1500  # events still pending
NOW = T0 + HISTORY + BACKLOG + 60.0  # every event has arrived: all rows due but the retried
# What a lane claims (relay/lanes.py; the statement's `run` is the rows behind each head,
# `behind` those in all): one head at a time, or when coalescing 16 heads, up to 31 rows
# behind each and 96 in all.
CLAIM_SHAPES = ({"limit": 1, "run": 0, "behind": 0}, {"limit": 16, "run": 31, "behind": 96})


def _incoming(n: int) -> Incoming:
    """Event n: to `a`, every fourth also to `b`; every fiftieth without a conversation (a
    row that is its own head)."""
    conversation = None if n % 50 == 0 else f"c{n % CONVERSATIONS}"
    destinations = DESTINATIONS if n % 4 == 0 else DESTINATIONS[:1]
    return Incoming(f'{{"n":{n}}}'.encode(), "newMessage", conversation, destinations, T0 + n)


async def _populate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    try:
        # Group commit: a burst of concurrent accepts is stored in a few transactions.
        await asyncio.gather(*(store.accept(_incoming(n)) for n in range(HISTORY)))
        for destination in DESTINATIONS:
            while rows := await store.claim(destination, NOW, 500, LEASE, "earlier", run=100):
                await store.mark_sent([row.id for row in rows], NOW)
        await asyncio.gather(
            *(store.accept(_incoming(n)) for n in range(HISTORY, HISTORY + BACKLOG))
        )
        in_flight = await store.claim("a", NOW, 16, LEASE, OWNER, run=32)
        waiting = [row.id for row in in_flight[::4]]
        await store.retry_later(waiting, NOW + 300.0, "timeout", "slow", now=NOW)
    finally:
        await store.close()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def _aside(action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` to the end on an event loop of its own (a sync fixture's way)."""

    async def run() -> None:
        await action()

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def filled_url() -> Iterator[str]:
    """A database of this module's own (dropped at the end), migrated and filled by the
    store: 5 000 delivered rows, 1 875 pending over 2 destinations, 289 heads."""
    with scratch_database() as url:
        _aside(lambda: _populate(url))
        yield url


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"no literal for {value!r}")


async def _plan(
    connection: asyncpg.Connection,
    statement: Statement,
    params: Mapping[str, Any],
    *,
    generic: bool = False,
) -> dict[str, Any]:
    """The root node of EXPLAIN (FORMAT JSON) for `statement` with `params`: planned for
    those values, or (`generic`) the plan PostgreSQL would cache for any values."""
    rendered = statement.postgresql
    args = rendered.bind(params)
    if not generic:
        text = await connection.fetchval("EXPLAIN (FORMAT JSON) " + rendered.text, *args)
    else:
        # EXPLAIN with bound parameters always plans for their values; a generic plan
        # (PostgreSQL 15 has no EXPLAIN (GENERIC_PLAN)) is what EXECUTE of a statement
        # prepared under force_generic_plan runs, so the values go in as literals.
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute("PREPARE planned AS " + rendered.text)
        try:
            values = f"({', '.join(_literal(arg) for arg in args)})" if args else ""
            text = await connection.fetchval("EXPLAIN (FORMAT JSON) EXECUTE planned" + values)
        finally:
            await connection.execute("DEALLOCATE planned; RESET plan_cache_mode")
    root: dict[str, Any] = json.loads(text)[0]["Plan"]
    return root


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def _index_of(scan: dict[str, Any]) -> str | None:
    """The index a scan reads (a bitmap heap scan: its bitmap index scans')."""
    if "Index Name" in scan:
        return str(scan["Index Name"])
    names = {str(node["Index Name"]) for node in _nodes(scan) if "Index Name" in node}
    return ",".join(sorted(names)) or None


def _reads(root: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The nodes that read `table`'s rows (or, index-only, its index)."""
    return [
        node
        for node in _nodes(root)
        if node.get("Relation Name") == table and node["Node Type"] != "ModifyTable"
    ]


def _outline(root: dict[str, Any]) -> str:
    """The plan's nodes, in order: what an assertion shows when it fails."""
    return "; ".join(
        " ".join(str(node[key]) for key in ("Node Type", "Relation Name", "Index Name")
                 if key in node)
        for node in _nodes(root)
    )  # fmt: skip


def _assert_no_scan_of_deliveries(root: dict[str, Any]) -> list[dict[str, Any]]:
    """Every read of deliveries goes through an index; those reads."""
    reads = _reads(root, "deliveries")
    unindexed = [node for node in reads if _index_of(node) is None]
    assert not unindexed, _outline(root)
    return reads


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_postgresql_lane_statements_read_their_indexes(
    filled_url: str, generic: bool
) -> None:
    """A claim finds the due heads in heads_due (in the order it takes them: no sort of every
    head) and the rows behind each in deliveries_order; next_due reads the soonest head from
    heads_due; neither reads deliveries other than through an index, however long the
    backlog."""
    connection = await asyncpg.connect(filled_url)
    try:
        for destination in DESTINATIONS:
            for shape in CLAIM_SHAPES:
                params = {"destination": destination, "now": NOW, "owner": OWNER,
                          "lease_until": NOW + LEASE, **shape}  # fmt: skip
                root = await _plan(connection, schema.CLAIM, params, generic=generic)
                _assert_no_scan_of_deliveries(root)
                heads = {_index_of(node) for node in _reads(root, "heads")}
                assert "heads_due" in heads, f"{shape}: {_outline(root)}"
                behind = {_index_of(node) for node in _reads(root, "deliveries")}
                assert "deliveries_order" in behind, f"{shape}: {_outline(root)}"

            params = {"destination": destination, "owner": OWNER}
            root = await _plan(connection, schema.NEXT_DUE, params, generic=generic)
            assert not _reads(root, "deliveries"), _outline(root)
            heads = [_index_of(node) for node in _reads(root, "heads")]
            assert heads == ["heads_due"], _outline(root)
    finally:
        await connection.close()


async def test_postgresql_backlog_reads_heads_and_counts_in_an_index(filled_url: str) -> None:
    """Every /metrics scrape and console lanes page reads the backlog: it finds the
    destinations in heads and counts each one's pending rows through an index, and once the
    table is vacuumed (as autovacuum keeps it) from the index alone, reading no row."""
    connection = await asyncpg.connect(filled_url)
    try:
        root = await _plan(connection, schema.BACKLOG, {})
        assert _reads(root, "heads"), _outline(root)
        reads = _assert_no_scan_of_deliveries(root)
        # One lookup of the oldest head's row by id; the count reads another index.
        counts = [node for node in reads if _index_of(node) != "deliveries_pkey"]
        assert counts, _outline(root)

        # An index-only scan is costed by how much of the table is marked all-visible, which
        # only VACUUM does (ANALYZE does not): without it PostgreSQL rightly expects to visit
        # the rows anyway.
        await connection.execute("VACUUM deliveries")
        root = await _plan(connection, schema.BACKLOG, {})
        reads = _assert_no_scan_of_deliveries(root)
        counts = [node for node in reads if _index_of(node) != "deliveries_pkey"]
        assert counts, _outline(root)
        assert all(node["Node Type"] == "Index Only Scan" for node in counts), _outline(root)
    finally:
        await connection.close()
