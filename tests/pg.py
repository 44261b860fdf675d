"""PostgreSQL for tests: scratch databases on a real server.

The server is $RELAY_TEST_POSTGRES, by default postgresql://postgres@127.0.0.1:5432/postgres
(trust auth, as in CI); its role needs CREATEDB. Each test session works in its own
database, relay_test_<random>, dropped at the end, so parallel runs and other projects on
the server are left alone.

Tests that need PostgreSQL FAIL, not skip, when the server cannot be reached: CI has one,
and a silently skipped engine would let the shared store rot unnoticed.

Fixtures (import them into a test module to use them):
- `pg_database`: the session's database URL (created once; schema as the tests left it).
- `pg_url`: that URL with every relay table emptied (or none there yet): a clean store.
- `pg_empty_url`: a brand-new database for this test only, with no schema at all
  (slower: use it for migration tests).

Every helper is synchronous and runs its own event loop on a worker thread, so fixtures can
use it from sync code and from inside a running loop alike (`request.getfixturevalue`
from an async fixture).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

SERVER_ENV = "RELAY_TEST_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
RELAY_TABLES = (
    "heads",
    "attempts",
    "deliveries",
    "events",
    "seen",
    "threads",
    "lanes",
    "write_probe",
    "sent_messages",
    "topics",
    "answers_out",
)
CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def server_url() -> str:
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def database_url(server: str, name: str) -> str:
    """The server URL with its database replaced by `name`."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _blocking(action: Callable[[], Awaitable[T]]) -> T:
    async def run() -> T:
        return await action()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, run()).result()


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as caught:
        error = caught  # failed outside the handler: the report is this message, not a chain
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    pytest.fail(
        f"PostgreSQL on {where} is needed for these tests and could not be reached"
        f" ({type(error).__name__}: {error}). CI runs one; locally start one"
        f" (trust auth, role postgres) or point ${SERVER_ENV} at another server.",
        pytrace=False,
    )


def create_database(server: str | None = None) -> str:
    """A new, empty database on the server; its URL."""
    server = server or server_url()
    name = f"relay_test_{secrets.token_hex(6)}"

    async def create() -> None:
        admin = await _connect(server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    _blocking(create)
    return database_url(server, name)


def drop_database(url: str, server: str | None = None) -> None:
    """Drop a database made by create_database, even if connections are still open."""
    server = server or server_url()
    name = urlsplit(url).path.lstrip("/")

    async def drop() -> None:
        admin = await _connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    _blocking(drop)


@contextmanager
def scratch_database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def empty_relay_tables(url: str) -> None:
    """Delete every row of the relay's tables that exist (the schema stays as it is).

    DELETE, not TRUNCATE: on tables this small it is several times faster.
    """

    async def empty() -> None:
        connection = await _connect(url)
        try:
            async with connection.transaction():
                for table in RELAY_TABLES:  # deliveries first: it references events
                    if await connection.fetchval("SELECT to_regclass($1)", table) is not None:
                        await connection.execute(f"DELETE FROM {table}")
        finally:
            await connection.close()

    _blocking(empty)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This session's scratch database (created on first use, dropped at the end)."""
    with scratch_database() as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database with no rows in any relay table."""
    empty_relay_tables(pg_database)
    return pg_database


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """A database of its own for this test, without any schema."""
    with scratch_database() as url:
        yield url
