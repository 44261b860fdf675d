"""`topic_per_conversation`: each OneRoute conversation gets its own forum topic.

The first message of a conversation opens a topic (createForumTopic, named after the
customer and the channel) and the store keeps it (relay/store/replies.py), so it survives
restarts and every instance posts there; each message of the conversation is posted with
that `message_thread_id`, and a message a person writes in the topic is an answer
(relay/answers/intake.py). Two senders racing to open a conversation's topic agree on the
first one stored (the other topic stays empty).

The destination's courier is wrapped: its renderings carry their conversation and topic
name (`TopicCall`), its joiner joins within one conversation, and `TopicSender` finds or
opens the topic before the platform's own sender posts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.events import conversation_key, text_at
from relay.integrations.base import Courier, Request
from relay.integrations.telegram.render import TelegramCall
from relay.integrations.telegram.send import TelegramSender
from relay.outcome import Outcome, Sent

NAME_MAX = 128  # Telegram's limit for a topic name


@dataclass(frozen=True)
class TopicCall:
    """A rendered call, with the conversation whose topic it goes to and that topic's name."""

    call: TelegramCall
    conversation: str | None
    name: str


class TopicStore(Protocol):
    async def topic_of(self, destination: str, conversation: str) -> int | None: ...
    async def set_topic(
        self, destination: str, conversation: str, thread_id: int, name: str
    ) -> int: ...


def topic_name(event: Mapping[str, Any]) -> str:
    """ "Ada · Lagos line": the customer and the channel, as the team will look for them."""
    customer = text_at(event, "conversation.customer.name") or text_at(event, "message.sender.name")
    channel = text_at(event, "conversation.Channel.name") or text_at(
        event, "conversation.Channel.medium"
    )
    parts = [part.strip() for part in (customer, channel) if part and part.strip()]
    if not parts:
        conversation = conversation_key(event) or "?"
        parts = [f"Conversation {conversation[:12]}"]
    name = " · ".join(parts)
    return name if len(name) <= NAME_MAX else name[: NAME_MAX - 1] + "…"


class TopicJoiner:
    """The platform's joiner, on the calls inside TopicCalls (the lane joins only one
    conversation's events here: the courier threads by conversation)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def alone(self, message: TopicCall) -> bool:
        return bool(self.inner.alone(message.call))

    def join(self, messages: Sequence[TopicCall]) -> TopicCall | None:
        joined = self.inner.join([message.call for message in messages])
        return (
            None
            if joined is None
            else TopicCall(joined, messages[0].conversation, messages[0].name)
        )


class TopicSender:
    """Posts each conversation in its own topic, opening it on the conversation's first message."""

    def __init__(self, inner: TelegramSender, store: TopicStore, destination: str) -> None:
        self.inner = inner
        self.store = store
        self.destination = destination

    def request(self, message: TopicCall, thread: str | None) -> Request:
        return self.inner.request(message.call, None)

    async def send(self, message: TopicCall, thread: str | None = None) -> Outcome:
        # `thread` (the conversation's first message) is not replied to: the topic is the thread.
        if message.conversation is None:
            return await self.inner.send(message.call, None)
        topic = await self.store.topic_of(self.destination, message.conversation)
        if topic is None:
            opened = await self.inner.create_topic(message.name)
            if not isinstance(opened, Sent) or opened.ref is None:
                return opened
            topic = await self.store.set_topic(
                self.destination, message.conversation, int(opened.ref), message.name
            )
        return await self.inner.send(message.call, None, topic_id=topic)

    async def close(self) -> None:
        await self.inner.close()


def with_topics(courier: Courier[Any], store: TopicStore, destination: str) -> Courier[Any]:
    """The courier of a Telegram destination with topic_per_conversation."""
    sender = courier.sender
    assert isinstance(sender, TelegramSender)
    render = courier.render

    def render_in_topic(event: Mapping[str, Any]) -> list[TopicCall]:
        conversation, name = conversation_key(event), topic_name(event)
        return [TopicCall(call, conversation, name) for call in render(event)]

    return Courier(
        render=render_in_topic,
        sender=TopicSender(sender, store, destination),
        limits=courier.limits,
        threads=True,  # only one conversation's events share a message (its topic)
        joiner=TopicJoiner(courier.joiner) if courier.joiner is not None else None,
        fingerprint=courier.fingerprint,
        remember=courier.remember,
        gave_up=courier.gave_up,
    )
