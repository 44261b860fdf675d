"""Coalescing (relay/coalesce.py with the Slack, Telegram and console joiners): whatever the
events, every event's text shows up exactly once, in order per conversation, and every
message keeps to its platform's limits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.coalesce import Joiner, pack
from relay.events import conversation_key
from relay.integrations.console.render import ConsoleJoiner, view
from relay.integrations.slack.render import (
    BLOCKS_MAX,
    JOINED_TEXT_MAX,
    SlackJoiner,
    SlackMessage,
    render_slack,
)
from relay.integrations.telegram.render import (
    TEXT_MAX,
    TelegramCall,
    TelegramJoiner,
    render_telegram,
)
from relay.render.split import width
from tests.fakes.blockkit import check_message
from tests.fakes.telegram_html import parse
from tests.render_cases import PROPERTY, hostile_texts

# --- pack, with a joiner of plain strings -----------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    conversation: str
    text: str


class Strings:
    """Joins strings with "|" up to `limit` characters; a text starting "!" goes alone."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit

    def alone(self, message: str) -> bool:
        return message.startswith("!")

    def join(self, messages: Sequence[str]) -> str | None:
        joined = "|".join(messages)
        return joined if len(joined) <= self.limit else None


def pack_rows(rows: list[Row], joiner: Joiner[str] | None = None, threads: bool = False) -> Any:
    def render(row: Row) -> list[str]:
        if row.text == "boom":
            raise ValueError("cannot render")
        return row.text.split("/")  # "a/b": an event that needs two messages

    return pack(rows, render, joiner or Strings(), lambda row: row.conversation, threads)


def rows(*specs: str) -> list[Row]:
    """`"a:x"` is a row of conversation a with text x; ids follow the order."""
    return [Row(i, *spec.split(":", 1)) for i, spec in enumerate(specs, 1)]


def test_one_due_event_is_sent_as_it_is() -> None:
    packed = pack_rows(rows("a:hello"))
    assert ([r.id for r in packed.rows], packed.messages) == ([1], ["hello"])


def test_due_events_share_one_message_in_order() -> None:
    packed = pack_rows(rows("a:1", "b:2", "a:3"))
    assert ([r.id for r in packed.rows], packed.messages) == ([1, 2, 3], ["1|2|3"])


def test_an_event_that_must_go_alone_goes_alone_and_its_conversation_waits() -> None:
    packed = pack_rows(rows("a:!photo", "a:2", "b:3"))
    assert ([r.id for r in packed.rows], packed.messages) == ([1], ["!photo"])
    packed = pack_rows(rows("a:1", "b:!photo", "b:3", "c:4"))
    assert [r.id for r in packed.rows] == [1, 4]  # b's 3 waits behind b's photo
    packed = pack_rows(rows("a:1", "b:long/text", "c:4"))
    assert [r.id for r in packed.rows] == [1, 3]  # several messages: alone, later
    assert pack_rows(rows("a:long/text")).messages == ["long", "text"]


def test_with_threads_only_the_first_conversation_shares_a_message() -> None:
    packed = pack_rows(rows("a:1", "b:2", "a:3"), threads=True)
    assert ([r.id for r in packed.rows], packed.messages) == ([1, 3], ["1|3"])


def test_a_full_message_stops_there() -> None:
    packed = pack_rows(rows("a:12345", "b:67890", "c:1"), Strings(limit=11))
    assert [r.id for r in packed.rows] == [1, 2]


def test_an_event_that_cannot_render_waits_for_its_own_turn() -> None:
    packed = pack_rows(rows("a:1", "b:boom", "b:2", "c:3"))
    assert [r.id for r in packed.rows] == [1, 4]
    with pytest.raises(ValueError, match="cannot render"):
        pack_rows(rows("b:boom", "c:3"))  # the first row's error is the caller's


def test_without_a_joiner_every_event_goes_alone() -> None:
    packed = pack(rows("a:1", "b:2"), lambda row: [row.text], None, lambda r: r.conversation, False)
    assert [r.id for r in packed.rows] == [1]


# --- the platforms' joiners, over any events ---------------------------------------------------

MARK = "ev{:03d}x"  # a word that survives every renderer and splitter
# The message fields of OneRoute's media (tests/data/oneroute/new-message-*.json), and
# the Bot API method Telegram sends each with, alone.
MEDIA = [("imageUrl", "jpg"), ("videoUrl", "mp4"), ("documentUrl", "pdf"), ("audioUrl", "ogg")]
MEDIA_METHODS = {
    "imageUrl": "sendPhoto",
    "videoUrl": "sendVideo",
    "documentUrl": "sendDocument",
    "audioUrl": "sendAudio",
}


@st.composite
def event_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 30))
    events = []
    for index in range(count):
        size = draw(st.sampled_from([0, 0, 0, 20, 300, 5000]))  # long text now and then
        content = MARK.format(index) + " " + draw(
            st.one_of(hostile_texts(), st.text(max_size=size)) if size else st.just("")
        )
        message: dict[str, Any] = {"sender": {"name": draw(st.sampled_from(["Ada", "Obi"]))},
                                   "content": content}
        if draw(st.integers(0, 9)) < 2:  # media Telegram sends as a photo, video, ...
            field, extension = draw(st.sampled_from(MEDIA))
            message[field] = f"https://cdn.example.com/{index}.{extension}"
        conversation = draw(st.sampled_from(["c1", "c2", "c3", None]))
        event: dict[str, Any] = {"event": "newMessage", "message": message}
        if conversation is not None:
            event["conversation"] = {"id": conversation}
        events.append(event)
    return events


def drain(
    events: list[Mapping[str, Any]],
    render: Any,
    joiner: Joiner[Any],
    threads: bool,
) -> list[tuple[list[int], list[Any]]]:
    """What the lane sends when all `events` are due at once: (event indexes, messages)."""
    waiting = list(range(len(events)))
    sent = []
    rendered: dict[int, Any] = {}  # the lane renders again per message; the test need not

    def render_once(index: int) -> Any:
        if index not in rendered:
            rendered[index] = render(events[index])
        return rendered[index]

    while waiting:
        packed = pack(
            waiting,
            render_once,
            joiner,
            lambda i: conversation_key(events[i]) or f"#{i}",
            threads,
        )
        sent.append((list(packed.rows), list(packed.messages)))
        waiting = [i for i in waiting if i not in packed.rows]
    return sent


def check_marks(events: list[Mapping[str, Any]], texts: list[str]) -> None:
    """Each event's mark exactly once; each conversation's marks in order."""
    joined = "\n".join(texts)
    positions = {}
    for index in range(len(events)):
        mark = MARK.format(index)
        assert joined.count(mark) == 1, mark
        positions[index] = joined.index(mark)
    by_conversation: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        key = conversation_key(event)
        if key is not None:
            by_conversation.setdefault(key, []).append(positions[index])
    for places in by_conversation.values():
        assert places == sorted(places)


def slack_visible(message: SlackMessage) -> str:
    """The sections' text: what a reader sees, each event once."""
    return "\n".join(
        block["text"]["text"] for block in message.payload["blocks"] if block["type"] == "section"
    )


@PROPERTY
@given(events=event_lists(), threads=st.booleans())
def test_slack_every_event_once_in_order_within_limits(
    events: list[dict[str, Any]], threads: bool
) -> None:
    sent = drain(events, render_slack, SlackJoiner(), threads)
    texts = []
    for indexes, messages in sent:
        for message in messages:
            body = json.loads(json.dumps(message.payload))
            check_message(body, broken_images=())  # Slack's Block Kit rules (the fake's)
            assert len(message.payload["blocks"]) <= BLOCKS_MAX
            if len(indexes) > 1:
                assert width(message.payload["text"], "slack") <= JOINED_TEXT_MAX
                assert message.payload["text"].startswith(f"{len(indexes)} messages\n")
            texts.append(slack_visible(message))
        if threads:
            assert len({conversation_key(events[i]) for i in indexes}) == 1
    check_marks(events, texts)
    assert len(sent) <= len(events)


@PROPERTY
@given(events=event_lists(), threads=st.booleans())
def test_telegram_every_event_once_in_order_within_limits(
    events: list[dict[str, Any]], threads: bool
) -> None:
    sent = drain(events, render_telegram, TelegramJoiner(), threads)
    texts = []
    for indexes, calls in sent:
        for call in calls:
            key = "text" if call.method == "sendMessage" else "caption"
            visible = parse(call.params[key])  # Telegram's HTML rules (the fake's)
            assert len(visible.encode("utf-16-le")) // 2 <= (TEXT_MAX if key == "text" else 1024)
            texts.append(visible)
            if call.method != "sendMessage":
                assert len(indexes) == 1  # media goes alone
        if threads:
            assert len({conversation_key(events[i]) for i in indexes}) == 1
        for index in indexes:  # an event with media is sent as such, on its own
            media = [key for key in MEDIA_METHODS if key in events[index]["message"]]
            if media:
                assert indexes == [index]
                assert calls[0].method == MEDIA_METHODS[media[0]]
    check_marks(events, texts)  # each in its place: in order within its conversation


def test_many_short_events_need_few_messages() -> None:
    events = [{"event": "newMessage", "conversation": {"id": f"c{i % 10}"},
               "message": {"sender": {"name": "Ada"}, "content": f"message {i}"}}
              for i in range(200)]
    slack = drain(events, render_slack, SlackJoiner(), threads=False)
    telegram = drain(events, render_telegram, TelegramJoiner(), threads=False)
    assert len(slack) <= 200 / 20 and len(telegram) <= 200 / 20  # at least 10 events a message


def test_the_console_shows_what_slack_and_telegram_get_coalesced() -> None:
    events = [{"event": "newMessage", "message": {"content": f"hello {i}"}} for i in range(3)]
    joined = ConsoleJoiner().join([view(e) for e in events])
    assert joined is not None
    slack = SlackJoiner().join([render_slack(e)[0] for e in events])
    telegram = TelegramJoiner().join([render_telegram(e)[0] for e in events])
    assert (joined.slack, joined.telegram) == ([slack], [telegram])
    photo = {"event": "newMessage", "message": {"imageUrl": "https://a.example/p.jpg"}}
    assert ConsoleJoiner().alone(view(photo))


def test_a_joined_telegram_call_keeps_the_destination_options() -> None:
    calls = [TelegramCall("sendMessage", {"text": f"<b>{i}</b>", "parse_mode": "HTML",
                                          "link_preview_options": {"is_disabled": True}})
             for i in range(2)]
    joined = TelegramJoiner().join(calls)
    assert joined is not None
    assert joined.params == {"text": "<b>0</b>\n\n<b>1</b>", "parse_mode": "HTML",
                             "link_preview_options": {"is_disabled": True}}
