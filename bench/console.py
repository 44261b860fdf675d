"""The operator console on a big store: its JSON API timed over 1 000 000 stored events.

A store of each engine is filled straight through SQL (the migrations first, then bulk
inserts: the store's ingest path would take far longer and is not what is measured):
events over 50 000 conversations, 90 % newMessage and 10 % campaign reports; a delivery to
destination `a` for every event and to `b` for one in three; the newest 1 000 deliveries
pending, one in 200 dead, the rest sent over the last seven days. Then the console's app
runs in this process on that store, and each request below is made REPEAT times through
HTTP (aiohttp's test client): the median and the 95th percentile are the figures, and the
target is under 100 ms for every one (README: "Operator console").

PostgreSQL is the server of the tests (RELAY_TEST_POSTGRES, by default 127.0.0.1:5432), in
a scratch database dropped afterwards; it is skipped with a note when none answers.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bench.common import median, percentile, save, table
from relay.config.load import parse_config
from relay.console.api import Source
from relay.console.app import build_console
from relay.redact import Redactor
from relay.store.base import Store

EVENTS, QUICK_EVENTS = 1_000_000, 100_000
CONVERSATIONS = 50_000
PENDING = 1_000
DEAD_EVERY = 200
REPEAT, QUICK_REPEAT = 30, 10
TARGET = 0.100  # seconds
NOW = time.time()
CONFIG = """
oneroute: {secrets: ["bench-console-secret"]}
destinations:
  a: {type: console}
  b: {type: console}
routes:
  - {name: reports, when: {event: campaignDeliveryReport}, to: [a, b]}
  - {name: everything, to: [a]}
"""


def _event(n: int, rng: random.Random) -> tuple[int, float, str, str, bytes]:
    name = "campaignDeliveryReport" if n % 10 == 0 else "newMessage"
    conversation = f"conv-{rng.randrange(CONVERSATIONS)}"
    body = json.dumps({
        "event": name,
        "message": {"content": f"message {n}", "sender": {"name": f"Customer {n % 997}"}},
        "conversation": {"id": conversation, "Channel": {"name": "Lagos", "medium": "WHATSAPP"}},
    }, separators=(",", ":")).encode()  # fmt: skip
    return n, NOW - 7 * 86400 + n * (7 * 86400 / EVENTS), name, conversation, body


def rows(count: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Each event and its delivery rows (id, event_id, destination, conversation, state,
    attempts, next_at, reason, detail, created_at, retry_from, finished_at)."""
    rng = random.Random(7)
    delivery_id = 0
    for n in range(1, count + 1):
        event = _event(n, rng)
        at, conversation = event[1], event[3]
        deliveries = []
        for destination in ("a", "b") if n % 3 == 0 else ("a",):
            delivery_id += 1
            if n > count - PENDING:
                state, reason, finished = "pending", None, None
            elif delivery_id % DEAD_EVERY == 0:
                state, reason, finished = "dead", "channel_not_found", at + 1
            else:
                state, reason, finished = "sent", None, at + 1
            deliveries.append((delivery_id, n, destination, conversation, state, 0, at, reason,
                               reason, at, at, finished))  # fmt: skip
        yield event, deliveries


_DELIVERY_COLUMNS = (
    "id, event_id, destination, conversation, state, attempts, next_at, reason, detail,"
    " created_at, retry_from, finished_at"
)


def fill_sqlite(path: Path, count: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    events: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []

    def flush() -> None:
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
        db.executemany(
            f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            deliveries,
        )
        events.clear()
        deliveries.clear()

    last = 0
    for event, rows_ in rows(count):
        events.append(event)
        deliveries.extend(rows_)
        last = rows_[-1][0]
        if len(events) >= 50_000:
            flush()
    flush()
    db.execute("UPDATE id_counters SET last_id = ? WHERE name = 'events'", (count,))
    db.execute("UPDATE id_counters SET last_id = ? WHERE name = 'deliveries'", (last,))
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


async def fill_postgres(url: str, count: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        events: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []

        async def flush() -> None:
            await connection.copy_records_to_table("events", records=events)
            await connection.copy_records_to_table(
                "deliveries", records=deliveries, columns=_DELIVERY_COLUMNS.split(", ")
            )
            events.clear()
            deliveries.clear()

        for event, rows_ in rows(count):
            events.append(event)
            deliveries.extend(rows_)
            if len(events) >= 50_000:
                await flush()
        await flush()
        for table_ in ("events", "deliveries"):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table_}', 'id'),"
                f" (SELECT max(id) FROM {table_}))"
            )
        # As autovacuum leaves a table that has lived a while: statistics, and the visibility
        # map that lets counts read an index alone.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def requests(count: int) -> list[tuple[str, str]]:
    """(what, path) of every timed request."""
    middle = count // 2
    return [
        ("newest events", "/api/events"),
        ("a page from the middle", f"/api/events?before={middle}"),
        ("event name (10 %)", "/api/events?event=campaignDeliveryReport"),
        ("destination b", "/api/events?destination=b"),
        ("state pending", "/api/events?state=pending"),
        ("state dead", "/api/events?state=dead"),
        ("state sent", "/api/events?state=sent"),
        ("conversation", "/api/events?conversation=conv-123"),
        ("destination + state", "/api/events?destination=b&state=dead"),
        (
            "name + destination + state",
            "/api/events?event=campaignDeliveryReport&destination=b&state=sent",
        ),
        ("name + state dead, middle", f"/api/events?event=newMessage&state=dead&before={middle}"),
        ("no match (conversation)", "/api/events?conversation=conv-none"),
        ("200 events (the most a page holds)", "/api/events?limit=200"),
        ("an event's page", f"/api/events/{middle}"),
        ("dead letters", "/api/dead"),
        ("dead letters of b", "/api/dead?destination=b"),
        ("lanes", "/api/lanes"),
    ]


async def measure(store: Store, count: int, repeat: int) -> list[dict[str, Any]]:
    config = parse_config(CONFIG, environ={})
    source = Source(
        store, Redactor(*config.secrets()), config=lambda: config, lanes=dict,
        wake=lambda names: None, base=Path.cwd(),
    )  # fmt: skip
    client = TestClient(TestServer(build_console(source, None)))
    await client.start_server()
    results = []
    try:
        for what, path in requests(count):
            times = []
            for _ in range(repeat + 1):
                started = time.perf_counter()
                response = await client.get(path)
                body = await response.read()
                times.append(time.perf_counter() - started)
                assert response.status == 200, body[:300]
            times = times[1:]  # the first: statement preparation, cold pages
            results.append({
                "request": what, "path": path, "median_ms": median(times) * 1000,
                "p95_ms": percentile(times, 95) * 1000, "ok": percentile(times, 95) < TARGET,
            })  # fmt: skip
    finally:
        await client.close()
    return results


async def run_engine(engine: str, count: int, repeat: int) -> dict[str, Any] | None:
    from relay.store.postgres import PostgresStore
    from relay.store.sqlite import SQLiteStore

    started = time.monotonic()
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-console-") as directory:
            path = Path(directory) / "relay.db"
            store: Store = SQLiteStore(path)
            await store.open()  # migrate
            await store.close()
            fill_sqlite(path, count)
            filled = time.monotonic() - started
            store = SQLiteStore(path)
            await store.open()
            try:
                rows_ = await measure(store, count, repeat)
            finally:
                await store.close()
            size = path.stat().st_size
    else:
        from tests.pg import create_database, drop_database

        try:
            url = create_database()
        except BaseException as error:  # pytest.fail's exception when no server answers
            print(f"postgresql: skipped ({error})")
            return None
        try:
            store = PostgresStore(url)
            await store.open()
            await fill_postgres(url, count)
            filled = time.monotonic() - started
            try:
                rows_ = await measure(store, count, repeat)
            finally:
                await store.close()
            size = 0
        finally:
            drop_database(url)
    print(table(
        f"console API on {engine}, {count:,} events (filled in {filled:.0f} s)",
        ["request", "median ms", "p95 ms", "< 100 ms"],
        [(r["request"], r["median_ms"], r["p95_ms"], r["ok"]) for r in rows_],
    ) + "\n", flush=True)  # fmt: skip
    return {"events": count, "fill_seconds": filled, "file_bytes": size, "requests": rows_}


# Migration 5's indexes on the tables ingest and lanes write to (the attempts table aside).
CONSOLE_INDEXES = (
    "events_name",
    "events_conversation",
    "deliveries_state_event",
    "deliveries_destination_event",
    "deliveries_dead_recent",
    "deliveries_dead_by_destination",
    "deliveries_sent_at",
)


async def index_cost(events: int, rounds: int) -> dict[str, Any]:
    """What the console's indexes cost ingest and lanes on SQLite (as shipped: WAL,
    synchronous=FULL): `events` accepted 200 at a time (group commit), then each marked sent
    with its attempt, timed with the indexes and with them dropped; best of `rounds`."""
    import asyncio

    from relay.store.base import Incoming
    from relay.store.sqlite import SQLiteStore

    async def one(drop: bool) -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="bench-console-") as directory:
            store = SQLiteStore(Path(directory) / "relay.db")
            await store.open()
            try:
                if drop:
                    for name in CONSOLE_INDEXES:
                        await store._call(lambda db, n=name: db.execute(f"DROP INDEX {n}"))
                started = time.perf_counter()
                ids = []
                for start in range(0, events, 200):
                    batch = [
                        Incoming(
                            f'{{"n":{n}}}'.encode(), "newMessage", f"c{n % 64}", ("a", "b"), NOW
                        )
                        for n in range(start, start + 200)
                    ]
                    ids += [a.event_id for a in await asyncio.gather(*map(store.accept, batch))]
                accepted = time.perf_counter() - started
                rows = await store.deliveries_of(ids)
                started = time.perf_counter()
                for start in range(0, len(rows), 20):
                    await store.mark_sent([r.id for r in rows[start : start + 20]], NOW)
                sent = time.perf_counter() - started
            finally:
                await store.close()
        return events / accepted, len(rows) / sent

    runs = {"with": [], "without": []}
    for _ in range(rounds):
        for label, drop in (("without", True), ("with", False)):
            runs[label].append(await one(drop))
    best = {label: (max(r[0] for r in found), max(r[1] for r in found))
            for label, found in runs.items()}  # fmt: skip
    print(table(
        f"the console's indexes at ingest and lanes (SQLite, {events:,} events, best of {rounds})",
        ["indexes", "events accepted/s", "deliveries marked sent/s"],
        [(label, *best[label]) for label in ("without", "with")],
    ) + "\n", flush=True)  # fmt: skip
    return {
        "accepted_per_s": {k: v[0] for k, v in best.items()},
        "sent_per_s": {k: v[1] for k, v in best.items()},
    }


async def main(
    quick: bool = False, engines: tuple[str, ...] = ("sqlite", "postgresql")
) -> dict[str, Any]:
    count = QUICK_EVENTS if quick else int(os.environ.get("BENCH_CONSOLE_EVENTS", EVENTS))
    repeat = QUICK_REPEAT if quick else REPEAT
    result: dict[str, Any] = {"engines": {}, "checks": {}}
    for engine in engines:
        found = await run_engine(engine, count, repeat)
        if found is None:
            continue
        result["engines"][engine] = found
        result["checks"][engine] = {r["request"]: r["ok"] for r in found["requests"]}
    result["index_cost"] = await index_cost(2_000 if quick else 20_000, 1 if quick else 3)
    save("console", result)
    return result
