"""The pure parts of answers: numbers, refusal words, the stored body, topic names, echoes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.answers.echo import EchoFilter, echoed_text
from relay.answers.intake import answer_body, read_answer
from relay.answers.model import Reply
from relay.answers.send import find_numbers, refusal_words
from relay.config.model import ReplyNumbers
from relay.errors import Reason
from relay.integrations.telegram.topics import NAME_MAX, topic_name
from relay.outcome import Permanent
from relay.store.base import Accepted, Incoming

NUMBERS = ReplyNumbers()


def event(**conversation: Any) -> bytes:
    return json.dumps({"event": "newMessage", "conversation": conversation}).encode()


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([event(Channel={"phone": "+1"}, customer={"phone": "+2"})], ("+1", "+2")),
        ([event(Channel={"phone": None}), event(Channel={"phone": "+1"},
                                                customer={"phone": 2348})], ("+1", "2348")),
        ([event(id="x"), b"not json", event(customer={"phone": "+2"})], (None, "+2")),
        ([], (None, None)),
    ],
)
def test_numbers_come_from_the_newest_event_that_has_each(
    events: list[bytes], expected: tuple[str | None, str | None]
) -> None:
    assert find_numbers(events, NUMBERS) == expected


def test_custom_paths_for_the_numbers() -> None:
    numbers = ReplyNumbers(business="conversation.Channel.identifier", customer="wa_id")
    body = json.dumps({"conversation": {"Channel": {"identifier": "b"}}, "wa_id": "c"}).encode()
    assert find_numbers([body], numbers) == ("b", "c")


@pytest.mark.parametrize(
    ("outcome", "words"),
    [
        (Permanent(Reason.NO_API_KEY, ""), "no OneRoute API key"),
        (Permanent(Reason.NO_NUMBER, "no customer (conversation.customer.phone) number"),
         "no customer (conversation.customer.phone) number"),
        (Permanent(Reason.UNAUTHORIZED, "OneRoute answered HTTP 401: Invalid API Key"),
         "OneRoute refused the relay's API key"),
        (Permanent(Reason.BAD_REQUEST, "OneRoute answered HTTP 400: outside the window"),
         "OneRoute refused it (HTTP 400: outside the window)"),
    ],
)
def test_refusals_in_plain_words(outcome: Permanent, words: str) -> None:
    said = refusal_words(outcome)
    assert said.startswith("Not sent to the customer") and words in said


def reply(**changes: Any) -> Reply:
    values: dict[str, Any] = {"destination": "s", "platform": "slack", "key": "s:slack:C1:1.2",
                              "user": "U1", "text": "hi", "at": 1.5, "channel": "C1",
                              "ts": "1.2", "thread_ts": "1.0"}
    return Reply(**(values | changes))


def test_the_same_message_is_the_same_stored_body() -> None:
    body = answer_body(reply(), "conv")
    assert body == answer_body(reply(), "conv")
    assert body != answer_body(reply(text="other"), "conv")
    assert read_answer(json.loads(body)) == (reply(), "conv")
    with pytest.raises(ValueError, match="not a stored answer"):
        read_answer({"event": "newMessage"})


def test_topic_names() -> None:
    sample = {"conversation": {"id": "c-123", "customer": {"name": "Ada"},
                               "Channel": {"name": "Lagos line", "medium": "WHATSAPP"}}}
    assert topic_name(sample) == "Ada · Lagos line"
    assert topic_name({"conversation": {"id": "c-123"}}) == "Conversation c-123"
    assert len(topic_name({"conversation": {"customer": {"name": "x" * 500}}})) == NAME_MAX


def echo(content: Any = "hi", auth: Any = True, name: str = "newMessage") -> bytes:
    return json.dumps({"event": name, "conversation": {"id": "conv"},
                       "message": {"sender": {"authUser": auth}, "content": content}}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (echo(), ("conv", "hi")),
        (echo(auth=False), None),
        (echo(auth="true"), None),
        (echo(name="other"), None),
        (echo(content=None), None),
        (b"[1]", None),
    ],
)
def test_what_may_be_an_echo(body: bytes, expected: tuple[str, str] | None) -> None:
    assert echoed_text(body) == expected


class Answered:
    def __init__(self) -> None:
        self.stored: list[Incoming] = []
        self.asked: list[tuple[str, str, float]] = []

    async def answered_from(self, conversation: str, text: str, since: float) -> set[str]:
        self.asked.append((conversation, text, since))
        return {"slack"}

    async def accept(self, incoming: Incoming) -> Accepted:
        self.stored.append(incoming)
        return Accepted(len(self.stored), False)

    async def check_writable(self) -> None:
        return None


async def test_an_echo_leaves_out_only_where_the_answer_came_from() -> None:
    store = Answered()
    echoes = EchoFilter(store, clock=lambda: 1000.0)
    await echoes.accept(Incoming(echo(), "newMessage", "conv", ("slack", "telegram"), 1000.0))
    await echoes.accept(Incoming(echo(auth=False), "newMessage", "conv", ("slack",), 1000.0))
    assert [i.destinations for i in store.stored] == [("telegram",), ("slack",)]
    assert store.asked == [("conv", "hi", 400.0)]
    off = EchoFilter(store, enabled=lambda: False)
    await off.accept(Incoming(echo(), "newMessage", "conv", ("slack",), 1000.0))
    assert store.stored[-1].destinations == ("slack",) and len(store.asked) == 1
