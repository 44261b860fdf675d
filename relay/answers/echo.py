"""No echo: OneRoute's `newMessage` for an answer the relay sent is not posted back into the
thread it was written in.

When OneRoute sends an answer to the customer, it also sends the webhook of that message
(`message.sender.authUser: true`, the same conversation and text). It is accepted, stored
and routed as usual, except that the destination the answer came from is left out of its
deliveries. The sender notes each answer before calling OneRoute (relay/answers/send.py,
`answers_out` in relay/store/replies.py), so the echo, which comes after OneRoute's
answer, always finds it.

`EchoFilter` wraps ingest's store: it is the one place that sees every routed event just
before it is stored, without changing how ingest answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from relay.events import parse_event, text_at
from relay.logs import fields
from relay.store.base import Accepted, Incoming, IngestStore

log = logging.getLogger("relay.answers")

ECHO_WINDOW = 10 * 60.0  # seconds after an answer went out in which its echo is expected


class AnsweredStore(IngestStore, Protocol):
    async def answered_from(self, conversation: str, text: str, since: float) -> set[str]: ...


def echoed_text(body: bytes) -> tuple[str, str] | None:
    """The conversation and text of an agent's `newMessage`, which may echo an answer."""
    try:
        event = parse_event(body)
    except ValueError:
        return None
    message = event.get("message")
    if event.get("event") != "newMessage" or not isinstance(message, dict):
        return None
    sender = message.get("sender")
    if not isinstance(sender, dict) or sender.get("authUser") is not True:
        return None
    conversation = text_at(event, "conversation.id") or text_at(event, "message.conversation_id")
    text = message.get("content")
    if conversation is None or not isinstance(text, str):
        return None
    return conversation, text


class EchoFilter:
    """An IngestStore that leaves out the destinations an echoed answer came from."""

    def __init__(
        self,
        store: AnsweredStore,
        clock: Callable[[], float] = time.time,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.enabled = enabled  # no answers configured: not a read per agent message

    async def accept(self, incoming: Incoming) -> Accepted:
        # Most events are customers' messages: a byte search spares them a second parse.
        maybe = incoming.destinations and b"authUser" in incoming.body and self.enabled()
        found = echoed_text(incoming.body) if maybe else None
        if found is not None:
            conversation, text = found
            sources = await self.store.answered_from(conversation, text, self.clock() - ECHO_WINDOW)
            kept = tuple(d for d in incoming.destinations if d not in sources)
            if kept != incoming.destinations:
                log.info(
                    "an answer's echo: not posted back where it was written",
                    extra=fields(
                        conversation=conversation,
                        left_out=",".join(sorted(set(incoming.destinations) - set(kept))),
                    ),
                )
                incoming = replace(incoming, destinations=kept)
        return await self.store.accept(incoming)

    async def check_writable(self) -> None:
        await self.store.check_writable()
