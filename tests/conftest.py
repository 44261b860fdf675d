"""Shared fixtures. The fakes are real HTTP servers on 127.0.0.1, so the real slack-sdk and
python-telegram-bot clients are exercised end to end (tests/fakes/README.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from relay.store.sqlite import SQLiteStore
from tests.fakes.oneroute import FakeOneRoute
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.process import RelayProcess
from tests.replies import Store

# pg_database, pg_url, pg_empty_url: a real PostgreSQL database on 127.0.0.1:5432;
# browser: a headless Chromium (the console's browser tests).
pytest_plugins = ["tests.pg", "tests.browser"]


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fresh fake Slack (Web API at `.api_url`, webhooks from `.add_webhook()`) that
    knows `tests.fakes.slack.BOT_TOKEN` and channel `CHANNEL`."""
    async with FakeSlack.running() as slack:
        yield slack


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A fresh fake Bot API at `.api_url` that knows `tests.fakes.telegram.TOKEN` and the
    supergroup `CHAT_ID`."""
    async with FakeTelegram.running() as telegram:
        yield telegram


@pytest.fixture
async def fake_oneroute() -> AsyncIterator[FakeOneRoute]:
    """A fresh fake OneRoute API at `.api_url` (what answers are sent to)."""
    async with FakeOneRoute.running() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A relay's `storage:` URL, once per engine: a fresh SQLite file, then an emptied
    PostgreSQL database (`pg_url`)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path}/relay.db"


@pytest.fixture
def processes() -> Iterator[list[RelayProcess]]:
    """Where a test puts the `RelayProcess`es it starts (tests/process.py): each is killed
    at the end, if it is still running."""
    started: list[RelayProcess] = []
    yield started
    for process in started:
        process.stop_quietly()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store in a fresh file (test_store.py runs its suite on every engine)."""
    engine = SQLiteStore(tmp_path / "relay.db")
    await engine.open()
    yield engine
    await engine.close()


# Hypothesis's per-example deadline is a timing assertion: on a loaded CI machine (and the
# suite runs in parallel) it fails tests that are correct. Speed is measured in bench/.
settings.register_profile("relay", deadline=None)
settings.load_profile("relay")


@pytest.fixture
def recorder() -> Store:
    """Where a listener of answers hands its replies (tests/replies.py)."""
    return Store()
