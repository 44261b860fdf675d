"""What answers need from the store, on both engines (README: "Answering customers").

- `sent_messages`: every message the relay posted for a conversation to a destination that
  takes replies (Slack `ts`, Telegram message id), so a reply to any of them finds its
  conversation. A Slack thread's parent is in `threads` already (relay/store/schema.py).
- `topics`: the Telegram forum topic opened for a conversation (topic_per_conversation).
- `answers_out`: what an answer said and where it came from, written before it is sent to
  OneRoute, so that OneRoute's echo of it (a `newMessage` from an agent) is not posted
  back into the thread it came from. A digest of the text, not the text.
- The conversation's latest events, where an answer's phone numbers are (found by the
  `events_conversation` index of migration 5).

The tables are created by migration 6 (relay/store/schema.py). The methods are mixed into
the shared store (relay/store/shared.py) and use its `_read` and `_write`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from relay.store.sql import Statement, Step, step

MIGRATION = """
CREATE TABLE sent_messages (
    destination TEXT NOT NULL,
    ref TEXT NOT NULL,
    conversation TEXT NOT NULL,
    sent_at {real} NOT NULL,
    PRIMARY KEY (destination, ref)
);
CREATE INDEX sent_messages_at ON sent_messages (sent_at);
CREATE TABLE topics (
    destination TEXT NOT NULL,
    conversation TEXT NOT NULL,
    thread_id {bigint} NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (destination, conversation)
);
CREATE UNIQUE INDEX topics_thread ON topics (destination, thread_id);
CREATE TABLE answers_out (
    destination TEXT NOT NULL,
    conversation TEXT NOT NULL,
    digest TEXT NOT NULL,
    sent_at {real} NOT NULL
);
CREATE INDEX answers_out_conversation ON answers_out (conversation, sent_at);
CREATE INDEX threads_parent ON threads (destination, parent);
"""

ANSWER_EVENT = "answer"  # the event_name answers are stored under
LATEST_EVENTS = 20  # of a conversation, searched newest first for its numbers
SENT_KEPT = 90 * 86400.0  # a reply to a message older than this no longer finds it

ADD_SENT = Statement(
    """
    INSERT INTO sent_messages (destination, ref, conversation, sent_at)
    VALUES (:destination, :ref, :conversation, :now)
    ON CONFLICT (destination, ref)
    DO UPDATE SET conversation = excluded.conversation, sent_at = excluded.sent_at
    """
)  # the newest wins: a ref seen again is a message of another chat (ids start again there)

# Any message the relay sent there (the newest record), else a Slack thread's parent.
CONVERSATION_OF = Statement(
    """
    SELECT conversation, 0 AS pick FROM sent_messages
    WHERE destination = :destination AND ref = :ref
    UNION ALL
    SELECT conversation, 1 AS pick FROM threads WHERE destination = :destination AND parent = :ref
    ORDER BY pick LIMIT 1
    """,
    rows=True,
)

TOPIC_OF = Statement(
    """
    SELECT thread_id FROM topics WHERE destination = :destination AND conversation = :conversation
    """,
    rows=True,
)

TOPIC_CONVERSATION = Statement(
    "SELECT conversation FROM topics WHERE destination = :destination AND thread_id = :thread_id",
    rows=True,
)

# A topic id is per chat: one still recorded for another conversation is of the chat the
# destination posted to before (ids start again in a new chat), and no longer stands.
DROP_STALE_TOPIC = Statement(
    """
    DELETE FROM topics
    WHERE destination = :destination AND thread_id = :thread_id AND conversation <> :conversation
    """
)

# The first writer wins, as with thread parents (ADD_THREAD_PARENT in relay/store/schema.py).
ADD_TOPIC = Statement(
    """
    INSERT INTO topics (destination, conversation, thread_id, name)
    VALUES (:destination, :conversation, :thread_id, :name)
    ON CONFLICT DO NOTHING
    """
)

LATEST = Statement(
    f"""
    SELECT body FROM events
    WHERE conversation = :conversation AND (event_name IS NULL OR event_name <> '{ANSWER_EVENT}')
    ORDER BY id DESC LIMIT :limit
    """,  # noqa: S608 - a constant, no input
    rows=True,
)

ADD_ANSWER_OUT = Statement(
    """
    INSERT INTO answers_out (destination, conversation, digest, sent_at)
    VALUES (:destination, :conversation, :digest, :now)
    """
)

ANSWERS_OUT = Statement(
    """
    SELECT destination FROM answers_out
    WHERE conversation = :conversation AND digest = :digest AND sent_at >= :since
    """,
    rows=True,
)

PRUNE_ANSWERS_OUT = Statement("DELETE FROM answers_out WHERE sent_at < :before")
PRUNE_SENT = Statement("DELETE FROM sent_messages WHERE sent_at < :before")


def digest(text: str) -> str:
    """How an answer's text is remembered for the echo check: spaces at the ends do not
    count (OneRoute may trim them), and the text itself is not kept."""
    return hashlib.sha256(text.strip().encode()).hexdigest()


class AnswersStore(Protocol):
    """What answers need of a store (relay/answers/, topics): part of `Store`."""

    async def remember_sent(
        self, destination: str, ref: str, conversation: str, now: float
    ) -> None: ...
    async def conversation_of(self, destination: str, ref: str) -> str | None: ...
    async def topic_of(self, destination: str, conversation: str) -> int | None: ...
    async def topic_conversation(self, destination: str, thread_id: int) -> str | None: ...
    async def set_topic(
        self, destination: str, conversation: str, thread_id: int, name: str
    ) -> int: ...
    async def latest_events(self, conversation: str, limit: int = LATEST_EVENTS) -> list[bytes]: ...
    async def answer_going_out(
        self, destination: str, conversation: str, text: str, now: float
    ) -> None: ...
    async def answered_from(self, conversation: str, text: str, since: float) -> set[str]: ...


class RepliesStore:
    """Mixed into the shared store: `_read` and `_write` are the engine's."""

    async def _read(self, statement: Statement, **params: Any) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def _write(self, *steps: Step) -> list[Any]:
        raise NotImplementedError

    async def remember_sent(
        self, destination: str, ref: str, conversation: str, now: float
    ) -> None:
        """A message the relay posted for `conversation`: a reply to it is an answer."""
        await self._write(
            step(ADD_SENT, destination=destination, ref=ref, conversation=conversation, now=now)
        )

    async def conversation_of(self, destination: str, ref: str) -> str | None:
        """The conversation of the relay's message `ref` (a thread parent or any other)."""
        rows = await self._read(CONVERSATION_OF, destination=destination, ref=ref)
        return str(rows[0][0]) if rows else None

    async def topic_of(self, destination: str, conversation: str) -> int | None:
        rows = await self._read(TOPIC_OF, destination=destination, conversation=conversation)
        return int(rows[0][0]) if rows else None

    async def topic_conversation(self, destination: str, thread_id: int) -> str | None:
        rows = await self._read(TOPIC_CONVERSATION, destination=destination, thread_id=thread_id)
        return str(rows[0][0]) if rows else None

    async def set_topic(
        self, destination: str, conversation: str, thread_id: int, name: str
    ) -> int:
        """Record the conversation's topic unless one exists; the topic that stands."""
        where = {"destination": destination, "conversation": conversation}
        _, _, ((topic,),) = await self._write(
            step(DROP_STALE_TOPIC, thread_id=thread_id, **where),
            step(ADD_TOPIC, thread_id=thread_id, name=name, **where),
            step(TOPIC_OF, **where),
        )
        return int(topic)

    async def latest_events(self, conversation: str, limit: int = LATEST_EVENTS) -> list[bytes]:
        """The conversation's latest webhook events (not answers), newest first."""
        rows = await self._read(LATEST, conversation=conversation, limit=limit)
        return [bytes(row[0]) for row in rows]

    async def answer_going_out(
        self, destination: str, conversation: str, text: str, now: float
    ) -> None:
        """An answer from `destination` is about to be sent: its echo is to be expected."""
        await self._write(
            step(
                ADD_ANSWER_OUT,
                destination=destination,
                conversation=conversation,
                digest=digest(text),
                now=now,
            )
        )

    async def answered_from(self, conversation: str, text: str, since: float) -> set[str]:
        """The destinations an answer with this text came from since `since`."""
        rows = await self._read(
            ANSWERS_OUT, conversation=conversation, digest=digest(text), since=since
        )
        return {str(row[0]) for row in rows}

    def _replies_prune_steps(self, now: float) -> list[Step]:
        return [
            step(PRUNE_ANSWERS_OUT, before=now - 86400.0),
            step(PRUNE_SENT, before=now - SENT_KEPT),
        ]
