"""What answers keep in the store (relay/store/replies.py), on both engines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from relay.store.base import Incoming, Store
from relay.store.postgres import PostgresStore
from relay.store.sqlite import SQLiteStore
from tests.pg import pg_database, pg_url  # noqa: F401 - fixtures

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    make: Callable[[], Store]
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        make = lambda: PostgresStore(url)  # noqa: E731
    else:
        make = lambda: SQLiteStore(tmp_path / "relay.db")  # noqa: E731
    engine = make()
    await engine.open()
    yield engine
    await engine.close()


async def test_a_reply_to_any_message_of_the_relay_finds_its_conversation(store: Store) -> None:
    await store.set_thread_parent("s", "conv-1", "100.1")
    await store.remember_sent("s", "100.2", "conv-1", T0)
    await store.remember_sent("t", "7", "conv-2", T0)
    assert await store.conversation_of("s", "100.1") == "conv-1"
    assert await store.conversation_of("s", "100.2") == "conv-1"
    assert await store.conversation_of("t", "7") == "conv-2"
    assert await store.conversation_of("s", "7") is None  # another destination's message


async def test_a_conversation_keeps_its_first_topic(store: Store) -> None:
    assert await store.topic_of("t", "conv-1") is None
    assert await store.set_topic("t", "conv-1", 11, "Ada · Lagos") == 11
    assert await store.set_topic("t", "conv-1", 12, "Ada · Lagos") == 11
    assert await store.topic_of("t", "conv-1") == 11
    assert await store.topic_conversation("t", 11) == "conv-1"
    assert await store.topic_conversation("t", 12) is None


async def test_latest_events_of_a_conversation_leave_answers_out(store: Store) -> None:
    for n in range(3):
        body = json.dumps({"n": n}).encode()
        await store.accept(Incoming(body, "newMessage", "conv-1", (), T0 + n))
    await store.accept(Incoming(b'{"answer":1}', "answer", "conv-1", ("@answers:s",), T0 + 5))
    await store.accept(Incoming(b'{"other":1}', "newMessage", "conv-2", (), T0 + 6))
    latest = await store.latest_events("conv-1")
    assert [json.loads(body)["n"] for body in latest] == [2, 1, 0]


async def test_answers_going_out_are_remembered_by_digest(store: Store) -> None:
    await store.answer_going_out("s", "conv-1", "On its way ", T0)
    assert await store.answered_from("conv-1", "On its way", T0 - 60) == {"s"}
    assert await store.answered_from("conv-1", "On its way", T0 + 1) == set()
    assert await store.answered_from("conv-2", "On its way", T0 - 60) == set()
    assert await store.prune(T0 + 2 * 86400, 86400.0) >= 0
    assert await store.answered_from("conv-1", "On its way", 0) == set()


async def test_a_message_id_used_again_in_a_new_chat_finds_the_new_conversation(
    store: Store,
) -> None:
    # A Telegram destination moved to another chat (a group upgraded to a supergroup, a new
    # group): message ids start again at 1 there, so the relay's message 7 in the new chat
    # is another conversation's than message 7 of the old chat. A reply to it must reach
    # the new conversation's customer, not the old one's.
    await store.set_thread_parent("t", "conv-old", "7")
    await store.remember_sent("t", "7", "conv-old", T0)
    await store.set_thread_parent("t", "conv-new", "7")
    await store.remember_sent("t", "7", "conv-new", T0 + 86400)
    assert await store.conversation_of("t", "7") == "conv-new"


async def test_a_topic_id_used_again_in_a_new_chat_belongs_to_the_new_conversation(
    store: Store,
) -> None:
    # Forum topic ids are per chat too: in a new chat, topic 11 is a new conversation's.
    assert await store.set_topic("t", "conv-old", 11, "Ada") == 11
    assert await store.set_topic("t", "conv-new", 11, "Bola") == 11
    assert await store.topic_conversation("t", 11) == "conv-new"
    assert await store.topic_of("t", "conv-new") == 11
    assert await store.topic_of("t", "conv-old") is None  # it opens a topic in the new chat
