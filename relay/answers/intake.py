"""Taking an answer in: find the conversation a reply belongs to and store it durably.

The listeners (relay/answers/slack_in.py, relay/answers/telegram_in.py) await
`AnswerIntake(reply)` and acknowledge the message to the platform only once it returned.
An answer is stored as an event (`event_name` "answer", the body: the Reply and its
conversation) with one delivery row for the destination's answer lane, `@answers:<name>`
(relay/answers/send.py). So an answer gets what a delivery gets: per-conversation order,
backoff, `give_up_after`, dead letters that `relay dead list` and `retry` show and revive,
across restarts and kill -9. The body is canonical JSON built from the Reply only, so the
same platform message seen twice (a Slack retry, an update read again) is the same body and
the store's duplicate check keeps one.

A reply that belongs to no conversation (a thread the relay did not start, a reply to a
person's message) is not an answer: nothing is stored and the listener acknowledges it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from relay.answers.model import Reply
from relay.logs import fields
from relay.store.base import Accepted, Incoming
from relay.store.replies import ANSWER_EVENT

log = logging.getLogger("relay.answers")

LANE_PREFIX = "@answers:"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a str holds pairs as one code point


def answer_lane(destination: str) -> str:
    """The lane that sends a destination's answers to OneRoute (a name no destination has:
    destination names cannot start with '@')."""
    return LANE_PREFIX + destination


def answer_body(reply: Reply, conversation: str) -> bytes:
    """What is stored: canonical JSON, the same bytes for the same message. A lone surrogate
    (JSON may carry one, UTF-8 cannot) becomes U+FFFD: else storing would fail every time
    the platform delivers the message again, holding back every answer after it."""
    data = {"conversation": conversation, "reply": asdict(reply)}
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return _LONE_SURROGATE.sub("\ufffd", text).encode()


def read_answer(event: Mapping[str, Any]) -> tuple[Reply, str]:
    """The Reply and conversation of a stored answer; ValueError when it is not one."""
    conversation, reply = event.get("conversation"), event.get("reply")
    if not isinstance(conversation, str) or not isinstance(reply, dict):
        raise ValueError("not a stored answer: no conversation or reply")
    return Reply.from_json(json.dumps(reply)), conversation


class IntakeStore(Protocol):
    async def accept(self, incoming: Incoming) -> Accepted: ...
    async def conversation_of(self, destination: str, ref: str) -> str | None: ...
    async def topic_conversation(self, destination: str, thread_id: int) -> str | None: ...


class AnswerIntake:
    """The OnReply every listener is given. `wake` tells the answer lanes there is work."""

    def __init__(
        self,
        store: IntakeStore,
        wake: Callable[[Sequence[str]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.wake = wake
        self.clock = clock

    async def __call__(self, reply: Reply) -> None:
        conversation = await self.conversation(reply)
        if conversation is None:
            log.debug(
                "a reply outside the relay's conversations: not an answer",
                extra=fields(destination=reply.destination),
            )
            return
        lane = answer_lane(reply.destination)
        incoming = Incoming(
            answer_body(reply, conversation), ANSWER_EVENT, conversation, (lane,), self.clock()
        )
        accepted = await self.store.accept(incoming)  # raises: the listener does not ack
        log.info(
            "answer stored" if not accepted.duplicate else "answer seen again: already stored",
            extra=fields(
                event_id=accepted.event_id,
                destination=reply.destination,
                conversation=conversation,
                user=reply.user,
            ),
        )
        if not accepted.duplicate:
            self.wake([lane])

    async def conversation(self, reply: Reply) -> str | None:
        """Slack: the thread's parent (or any message of the relay) in the channel; Telegram:
        the relay's message replied to, else the conversation's forum topic."""
        destination = reply.destination
        if reply.platform == "slack":
            if reply.thread_ts is None:
                return None
            return await self.store.conversation_of(destination, reply.thread_ts)
        if reply.reply_to is not None:
            found = await self.store.conversation_of(destination, str(reply.reply_to))
            if found is not None:
                return found
        if reply.topic is not None:
            return await self.store.topic_conversation(destination, reply.topic)
        return None
