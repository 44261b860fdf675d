"""Replies from Slack (relay/answers/slack_in.py) and the Reply they become
(relay/answers/model.py): the candidate rules as a table, then the real slack-sdk Socket
Mode client and a real aiohttp server against the fake Slack (tests/fakes/slack.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from relay.answers.model import Backoff, Reply, ReplySource
from relay.answers.slack_in import (
    SlackSocketListener,
    slack_events_handler,
    slack_replies,
    slack_text,
)
from relay.integrations.slack.render import SlackMessage
from relay.integrations.slack.send import SlackSender
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    CHANNEL,
    HUMAN,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
)
from tests.replies import Store
from tests.waiting import until

OTHER_CHANNEL = "C0FAKE00002"
FAST = Backoff(first=0.02, most=0.05, refused=0.05)


def source(channel: str = CHANNEL, **kwargs: Any) -> ReplySource:
    return ReplySource("support-slack", channel, **kwargs)


def event(**fields: Any) -> dict[str, Any]:
    """A person's message event in a thread of CHANNEL, updated by `fields` (None drops)."""
    body: dict[str, Any] = {
        "type": "message",
        "channel": CHANNEL,
        "user": HUMAN,
        "text": "We will refund you today",
        "ts": "1700000100.000200",
        "thread_ts": "1700000000.000100",
        "team": TEAM,
        "channel_type": "channel",
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def callback(ev: dict[str, Any], event_id: str = "Ev0001") -> dict[str, Any]:
    return {"type": "event_callback", "team_id": TEAM, "event_id": event_id, "event": ev}


# ------------------------------------------------------------------ Reply, ReplySource


def test_reply_json_round_trip_is_canonical() -> None:
    reply = Reply(
        "support-slack",
        "slack",
        "k",
        "U1",
        "héllo",
        1700000100.0002,
        channel=CHANNEL,
        ts="1700000100.000200",
        thread_ts="1700000000.000100",
    )
    body = reply.to_json()
    assert Reply.from_json(body) == reply == Reply.from_json(body.decode())
    assert body == reply.to_json() and b'"destination":"support-slack"' in body
    telegram = Reply("ops", "telegram", "k2", "42", "ok", 1700000000, chat_id=-100, message_id=3)
    assert Reply.from_json(telegram.to_json()) == telegram
    assert isinstance(Reply.from_json(telegram.to_json()).at, float)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff",
        b"[]",
        b'{"destination": "d", "platform": "slack", "key": "k", "user": "u", "text": "t"}',
        b'{"destination": "d", "platform": "mail", "key": "k", "user": "u", "text": "t", "at": 1}',
        b'{"destination": "d", "platform": "slack", "key": "k", "user": 7, "text": "t", "at": 1}',
        b'{"destination": "d", "platform": "slack", "key": "k", "user": "u", "text": "t", '
        b'"at": true}',
        b'{"destination": "d", "platform": "telegram", "key": "k", "user": "u", "text": "t", '
        b'"at": 1, "chat_id": "x"}',
    ],
)
def test_reply_from_json_refuses_what_is_not_a_reply(body: bytes) -> None:
    with pytest.raises(ValueError, match="not a stored reply"):
        Reply.from_json(body)


def test_reply_from_json_ignores_unknown_keys() -> None:
    body = b'{"destination":"d","platform":"slack","key":"k","user":"u","text":"t","at":1,"x":2}'
    assert Reply.from_json(body) == Reply("d", "slack", "k", "u", "t", 1.0)


def test_reply_source_rules() -> None:
    anyone = ReplySource("d", CHANNEL)
    some = ReplySource("d", -100, from_users=frozenset({123, "U1"}))  # type: ignore[arg-type]
    assert anyone.allows("whoever") and some.allows("123") and some.allows("U1")
    assert not some.allows("124")
    assert anyone.is_note("note: refund later") and anyone.is_note("  NOTE: x")
    assert not anyone.is_note("a note: x") and not anyone.is_note("notes are fine")
    assert ReplySource("d", CHANNEL, note_prefix="//").is_note("// internal")
    assert not ReplySource("d", CHANNEL, note_prefix=" ").is_note(" anything")


def test_backoff_doubles_to_its_ceiling() -> None:
    backoff = Backoff(first=1, most=10, refused=60)
    assert [backoff.after(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff.after(10_000) == 10


# ------------------------------------------------------------------ what is a candidate


@pytest.mark.parametrize(
    ("raw", "customer_sees"),
    [
        ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d"),
        ("&amp;lt; stays", "&lt; stays"),
        ("see <https://example.com/a?x=1&amp;y=2>", "see https://example.com/a?x=1&y=2"),
        ("see <http://example.com|example.com>", "see example.com"),
        ("mail <mailto:ada@example.com|ada@example.com>", "mail ada@example.com"),
        ("the <https://example.com/t|terms>", "the terms (https://example.com/t)"),
        ("ask <@U0123ABCD> or <@U0123ABCD|ada>", "ask <@U0123ABCD> or <@U0123ABCD|ada>"),
        ("in <#C0123|support>", "in #support"),
        ("in <#C0123>", "in #C0123"),
        ("hey <!here> and <!channel>", "hey @here and @channel"),
        ("team <!subteam^S0123|@agents>", "team @agents"),
        ("no markup at all", "no markup at all"),
    ],
)
def test_slack_text_is_what_the_customer_reads(raw: str, customer_sees: str) -> None:
    assert slack_text(raw) == customer_sees


def test_a_thread_reply_is_a_candidate() -> None:
    [reply] = slack_replies(callback(event(text="a &lt;b&gt;")), [source()])
    assert reply == Reply(
        destination="support-slack",
        platform="slack",
        key=f"support-slack:slack:{CHANNEL}:1700000100.000200",
        user=HUMAN,
        text="a <b>",
        at=1700000100.0002,
        channel=CHANNEL,
        ts="1700000100.000200",
        thread_ts="1700000000.000100",
    )


def test_a_thread_reply_also_sent_to_the_channel_is_a_candidate() -> None:
    assert slack_replies(callback(event(subtype="thread_broadcast")), [source()])


@pytest.mark.parametrize(
    ("why", "fields"),
    [
        ("a top-level message", {"thread_ts": None}),
        ("a thread's parent", {"thread_ts": "1700000100.000200"}),
        ("a bot", {"bot_id": "B0FAKE"}),
        ("a bot profile", {"bot_profile": {"id": "B0FAKE"}}),
        ("a bot message", {"subtype": "bot_message"}),
        ("an edit", {"subtype": "message_changed"}),
        ("a deletion", {"subtype": "message_deleted"}),
        ("a join", {"subtype": "channel_join", "text": "<@U1> has joined the channel"}),
        ("a file share", {"subtype": "file_share"}),
        ("no user", {"user": None}),
        ("another channel", {"channel": OTHER_CHANNEL}),
        ("a note", {"text": "  Note: call back after the refund"}),
        ("no text", {"text": "   "}),
        ("text that is not text", {"text": None}),
        ("a ts that is not a time", {"ts": "soon"}),
        ("a reaction", {"type": "reaction_added"}),
    ],
)
def test_what_is_not_a_candidate(why: str, fields: dict[str, Any]) -> None:
    assert slack_replies(callback(event(**fields)), [source()]) == [], why


def test_only_listed_users_may_answer() -> None:
    allowed = source(from_users=frozenset({"U0123ABCD"}))
    assert slack_replies(callback(event()), [allowed]) == []
    assert slack_replies(callback(event(user="U0123ABCD")), [allowed])


def test_payloads_that_are_not_event_callbacks_have_no_candidates() -> None:
    assert slack_replies({"type": "url_verification", "challenge": "x"}, [source()]) == []
    assert slack_replies({"type": "event_callback", "event": "x"}, [source()]) == []


def test_each_destination_watching_the_channel_gets_its_own_reply() -> None:
    sources = [
        ReplySource("support", CHANNEL),
        ReplySource("sales", CHANNEL, from_users=frozenset({"U9"})),
        ReplySource("vip", CHANNEL),
        ReplySource("elsewhere", OTHER_CHANNEL),
    ]
    replies = slack_replies(callback(event()), sources)
    assert [reply.destination for reply in replies] == ["support", "vip"]
    assert len({reply.key for reply in replies}) == 2


# ------------------------------------------------------------------ Socket Mode


@pytest.fixture
async def listen(
    fake_slack: FakeSlack, recorder: Store
) -> AsyncIterator[Callable[..., SlackSocketListener]]:
    """Start a Socket Mode listener (closed after the test, whatever happens)."""
    started: list[SlackSocketListener] = []

    def start(**kwargs: Any) -> SlackSocketListener:
        options: dict[str, Any] = {
            "app_token": APP_TOKEN,
            "sources": [source()],
            "on_reply": recorder,
            "api_url": fake_slack.api_url,
            "timeout": 2.0,
            "backoff": FAST,
            **kwargs,
        }
        listener = SlackSocketListener(**options)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        await listener.close()


async def connected(listener: SlackSocketListener, slack: FakeSlack) -> None:
    await listener.start()
    await until(lambda: listener.connected and bool(slack.sockets))


def thread(slack: FakeSlack, channel: str = CHANNEL) -> str:
    """A thread to reply in: a person's message (its ts)."""
    return slack.human_message(channel, "My order never came")


async def test_socket_mode_thread_reply_is_stored_then_acked(
    fake_slack: FakeSlack, recorder: Store, listen: Callable[..., SlackSocketListener]
) -> None:
    listener = listen()
    await connected(listener, fake_slack)
    parent = thread(fake_slack)
    ts = fake_slack.human_message(CHANNEL, "Refund <sent> & done", thread_ts=parent)
    recorder.hold = asyncio.Event()

    envelope = fake_slack.push_event(fake_slack.message_event(ts))
    await until(lambda: bool(recorder.calls))
    # While the reply is being stored, an ignored event is acked: frames arrive in order,
    # so had the reply been acked before storing, its ack would be in by now.
    ignored = fake_slack.push_event(fake_slack.message_event(parent))
    await until(lambda: ignored in fake_slack.acks)
    assert envelope not in fake_slack.acks
    recorder.hold.set()
    await until(lambda: envelope in fake_slack.acks)

    [reply] = recorder.replies.values()
    assert (reply.text, reply.ts, reply.thread_ts, reply.user, reply.channel) == (
        "Refund <sent> & done",
        ts,
        parent,
        HUMAN,
        CHANNEL,
    )
    assert reply.key == f"support-slack:slack:{CHANNEL}:{ts}"


async def test_socket_mode_ignores_what_is_not_an_answer_but_acks_it(
    fake_slack: FakeSlack, recorder: Store, listen: Callable[..., SlackSocketListener]
) -> None:
    fake_slack.add_channel(OTHER_CHANNEL)
    bot = SlackSender(token=BOT_TOKEN, channel=CHANNEL, api_url=fake_slack.api_url, timeout=2.0)
    try:
        await bot.send(SlackMessage({"text": "New conversation"}))
        relay_parent = fake_slack.messages[-1].ts
        await bot.send(SlackMessage({"text": "Customer: hello?"}), thread=relay_parent)
        relay_reply = fake_slack.messages[-1].ts
    finally:
        await bot.close()
    listener = listen(sources=[source(from_users=frozenset({HUMAN, "U0AGENT"}))])
    await connected(listener, fake_slack)
    human = fake_slack.human_message
    top = human(CHANNEL, "a new message, not in a thread")
    answer = human(CHANNEL, "the answer", thread_ts=relay_parent)
    stranger = human(CHANNEL, "I am not on the list", user="U0STRANGER", thread_ts=relay_parent)
    note = human(CHANNEL, "note: check the refund first", thread_ts=relay_parent)
    elsewhere = human(OTHER_CHANNEL, "wrong channel", thread_ts=thread(fake_slack, OTHER_CHANNEL))
    edit = fake_slack.message_event(answer) | {
        "subtype": "message_changed",
        "hidden": True,
        "message": {"type": "message", "user": HUMAN, "text": "edited", "ts": answer},
        "ts": "1700000999.000001",
    }
    deletion = fake_slack.message_event(answer) | {
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": answer,
        "ts": "1700000999.000002",
    }
    join = fake_slack.message_event(answer) | {
        "subtype": "channel_join",
        "text": f"<@{HUMAN}> has joined the channel",
        "ts": "1700000999.000003",
    }
    ignored = [
        fake_slack.message_event(relay_reply),  # the relay's own message in its thread
        edit,
        deletion,
        join,
        fake_slack.message_event(top),
        fake_slack.message_event(stranger),
        fake_slack.message_event(note),
        fake_slack.message_event(elsewhere, channel=OTHER_CHANNEL),
        {"type": "reaction_added", "user": HUMAN, "reaction": "eyes"},
    ]
    envelopes = [fake_slack.push_event(ev) for ev in ignored]
    await until(lambda: set(envelopes) <= set(fake_slack.acks))
    assert recorder.calls == []

    good = fake_slack.push_event(fake_slack.message_event(answer))
    await until(lambda: good in fake_slack.acks)
    assert [reply.text for reply in recorder.calls] == ["the answer"]


async def test_socket_mode_does_not_ack_what_could_not_be_stored(
    fake_slack: FakeSlack,
    recorder: Store,
    listen: Callable[..., SlackSocketListener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = listen()
    await connected(listener, fake_slack)
    parent = thread(fake_slack)
    first = fake_slack.human_message(CHANNEL, "first", thread_ts=parent)
    second = fake_slack.human_message(CHANNEL, "second", thread_ts=parent)
    recorder.failing = 1

    failed = fake_slack.push_event(fake_slack.message_event(first), event_id="EvFIRST")
    await until(lambda: len(recorder.calls) == 1)
    stored = fake_slack.push_event(fake_slack.message_event(second))
    await until(lambda: stored in fake_slack.acks)
    # Slack delivers the unacknowledged event again: now it is stored and acknowledged.
    again = fake_slack.push_event(fake_slack.message_event(first), 1, event_id="EvFIRST")
    await until(lambda: again in fake_slack.acks)
    await listener.close()
    await until(lambda: not fake_slack.sockets)  # every frame the client sent was read

    assert failed not in fake_slack.acks
    assert [reply.text for reply in recorder.replies.values()] == ["second", "first"]
    assert "not acknowledged, so Slack delivers it again" in caplog.text


async def test_socket_mode_reconnects_when_slack_asks(
    fake_slack: FakeSlack, recorder: Store, listen: Callable[..., SlackSocketListener]
) -> None:
    listener = listen()
    await connected(listener, fake_slack)
    parent = thread(fake_slack)
    answers = [fake_slack.human_message(CHANNEL, f"answer {n}", thread_ts=parent) for n in range(3)]

    fake_slack.disconnect("refresh_requested")  # Slack's routine refresh
    first = fake_slack.push_event(fake_slack.message_event(answers[0]))
    await until(lambda: first in fake_slack.acks)
    assert fake_slack.socket_connections >= 2

    fake_slack.disconnect("warning", close=True)  # and a connection closed under it
    second = fake_slack.push_event(fake_slack.message_event(answers[1]))
    await until(lambda: second in fake_slack.acks)
    assert fake_slack.socket_connections >= 3  # the SDK may reconnect twice: two signals

    third = fake_slack.push_event(fake_slack.message_event(answers[2]))
    await until(lambda: third in fake_slack.acks)
    # A reconnect may cut off an ack: Slack's retry is then stored again, as a duplicate.
    assert [reply.text for reply in recorder.replies.values()] == [
        "answer 0",
        "answer 1",
        "answer 2",
    ]


async def test_socket_mode_close_lets_a_reply_being_stored_finish(
    fake_slack: FakeSlack, recorder: Store, listen: Callable[..., SlackSocketListener]
) -> None:
    listener = listen(grace=10.0)
    await connected(listener, fake_slack)
    ts = fake_slack.human_message(CHANNEL, "answer", thread_ts=thread(fake_slack))
    recorder.hold = asyncio.Event()
    envelope = fake_slack.push_event(fake_slack.message_event(ts))
    await until(lambda: bool(recorder.calls))

    closing = asyncio.create_task(listener.close())
    await asyncio.sleep(0)
    assert not closing.done()
    recorder.hold.set()
    await closing
    await until(lambda: not fake_slack.sockets)

    assert envelope in fake_slack.acks and len(recorder.replies) == 1
    assert not listener.connected


async def test_socket_mode_close_gives_up_on_a_store_that_hangs(
    fake_slack: FakeSlack, recorder: Store, listen: Callable[..., SlackSocketListener]
) -> None:
    listener = listen(grace=0.05)
    await connected(listener, fake_slack)
    ts = fake_slack.human_message(CHANNEL, "answer", thread_ts=thread(fake_slack))
    recorder.hold = asyncio.Event()  # never set: the store hangs
    envelope = fake_slack.push_event(fake_slack.message_event(ts))
    await until(lambda: bool(recorder.calls))

    await listener.close()
    await until(lambda: not fake_slack.sockets)
    assert envelope not in fake_slack.acks and recorder.replies == {}


async def test_socket_mode_close_before_connecting_and_twice(
    fake_slack: FakeSlack, listen: Callable[..., SlackSocketListener]
) -> None:
    listener = listen()
    await listener.close()  # never started
    await listener.start()
    await listener.close()
    await listener.close()
    assert not listener.connected
    await connected(listener, fake_slack)  # and it starts again after a close


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (BOT_TOKEN, "is not an app-level token"),
        ("xapp-1-A0FAKE-9999-revokedapptoken", "Slack refused replies.app_token (invalid_auth"),
    ],
)
async def test_socket_mode_refused_token_is_said_once_and_retried_slowly(
    fake_slack: FakeSlack,
    recorder: Store,
    listen: Callable[..., SlackSocketListener],
    caplog: pytest.LogCaptureFixture,
    token: str,
    says: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = listen(app_token=token)
    await listener.start()

    def opened() -> list[Any]:
        return [c for c in fake_slack.calls if c.method == "apps.connections.open"]

    await until(lambda: len(opened()) >= 4)
    said = [r for r in caplog.records if r.name == "relay.answers.slack" and says in r.message]
    assert [r.levelno for r in said][:2] == [logging.WARNING, logging.DEBUG], "said once"
    assert {r.levelno for r in said[1:]} == {logging.DEBUG}
    assert "trying again every 0.05 s" in said[0].message
    assert not listener.connected and recorder.calls == []
    assert token not in caplog.text

    # Fixed (the token is now one Slack accepts): it connects, and says so.
    fake_slack.app_tokens.add(token)
    fake_slack.tokens.discard(token)
    await until(lambda: listener.connected)
    assert "Socket Mode connects again for support-slack" in caplog.text


async def test_socket_mode_missing_scope_and_slack_trouble(
    fake_slack: FakeSlack,
    listen: Callable[..., SlackSocketListener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_slack.app_scopes.clear()
    listener = listen()
    await listener.start()
    await until(lambda: "needs connections:write" in caplog.text)
    fake_slack.app_scopes.add("connections:write")
    fake_slack.faults.fail_next(2, status=503)
    await until(lambda: listener.connected)
    assert "cannot open a Socket Mode connection (server_error" in caplog.text


async def test_socket_mode_logs_no_secret(
    fake_slack: FakeSlack,
    recorder: Store,
    listen: Callable[..., SlackSocketListener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = listen()
    await connected(listener, fake_slack)
    ts = fake_slack.human_message(CHANNEL, "answer", thread_ts=thread(fake_slack))
    recorder.failing = 1
    recorder.error = OSError(f"cannot write: token {APP_TOKEN} refused")  # quotes the token
    envelope = fake_slack.push_event(fake_slack.message_event(ts))
    await until(lambda: "delivers it again" in caplog.text)
    fake_slack.disconnect()  # and on the next connection, Slack's retry is stored
    await until(lambda: envelope in fake_slack.acks)
    await listener.close()
    assert fake_slack.envelopes[envelope]["retry_attempt"] == 1
    assert len(recorder.replies) == 1
    assert "[REDACTED]" in caplog.text
    assert APP_TOKEN not in caplog.text


# ------------------------------------------------------------------ Events API


@pytest.fixture
async def events(aiohttp_client: Any, recorder: Store) -> Any:
    other = ReplySource("other-app", OTHER_CHANNEL)
    app = web.Application()
    app.router.add_post(
        "/slack/events",
        slack_events_handler({SIGNING_SECRET: [source()], "another-secret": [other]}, recorder),
    )
    return await aiohttp_client(app)


async def post(client: Any, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    async with client.post("/slack/events", data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_events_api_stores_a_reply_once_even_when_retried(
    events: Any, fake_slack: FakeSlack, recorder: Store
) -> None:
    ts = fake_slack.human_message(CHANNEL, "on its way", thread_ts=thread(fake_slack))
    payload = fake_slack.event_payload(fake_slack.message_event(ts), event_id="EvRETRIED")

    first = await post(events, *fake_slack.events_request(SIGNING_SECRET, payload))
    retry = await post(events, *fake_slack.events_request(SIGNING_SECRET, payload, retry_num=1))

    assert first == retry == (200, {"ok": True})
    assert [reply.key for reply in recorder.calls] == [recorder.calls[0].key] * 2
    [reply] = recorder.replies.values()
    assert (reply.text, reply.ts, reply.destination) == ("on its way", ts, "support-slack")


async def test_events_api_ignores_what_is_not_an_answer(
    events: Any, fake_slack: FakeSlack, recorder: Store
) -> None:
    top = fake_slack.human_message(CHANNEL, "not in a thread")
    for ev in (
        fake_slack.message_event(top),
        event(subtype="message_changed"),
        {"type": "app_mention", "user": HUMAN, "text": "hi"},
    ):
        payload = fake_slack.event_payload(ev)
        assert await post(events, *fake_slack.events_request(SIGNING_SECRET, payload)) == (
            200,
            {"ok": True},
        )
    payload = {"type": "app_rate_limited", "minute_rate_limited": 1518467820}
    assert (await post(events, *fake_slack.events_request(SIGNING_SECRET, payload)))[0] == 200
    assert recorder.calls == []


async def test_events_api_odd_envelopes_are_not_answers_and_not_errors(
    events: Any, fake_slack: FakeSlack, recorder: Store
) -> None:
    for ev in (
        event(subtype=["thread_broadcast"]),  # not text: unhashable
        event(subtype={"x": 1}),
        event(channel=["C1"]),
        ["not", "an", "event"],
    ):
        payload = fake_slack.event_payload(ev)
        assert await post(events, *fake_slack.events_request(SIGNING_SECRET, payload)) == (
            200,
            {"ok": True},
        )
    assert recorder.calls == []


async def test_events_api_answers_url_verification(events: Any, fake_slack: FakeSlack) -> None:
    payload = {
        "token": "t",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    status, body = await post(events, *fake_slack.events_request(SIGNING_SECRET, payload))
    assert (status, body) == (200, {"challenge": payload["challenge"]})
    unsigned = await post(events, {"Content-Type": "application/json"}, b'{"type": "x"}')
    assert unsigned[0] == 401


async def test_events_api_refuses_bad_and_stale_signatures(
    events: Any, fake_slack: FakeSlack, recorder: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ts = fake_slack.human_message(CHANNEL, "answer", thread_ts=thread(fake_slack))
    payload = fake_slack.event_payload(fake_slack.message_event(ts))
    headers, body = fake_slack.events_request(SIGNING_SECRET, payload)
    now = int(time.time())
    wrong_secret = fake_slack.events_request("not-the-signing-secret", payload)
    stale = fake_slack.events_request(SIGNING_SECRET, payload, timestamp=now - 6 * 60)
    future = fake_slack.events_request(SIGNING_SECRET, payload, timestamp=now + 6 * 60)
    tampered = (headers, body.replace(b"answer", b"ANSWER"))
    no_signature = ({k: v for k, v in headers.items() if k != "X-Slack-Signature"}, body)
    no_timestamp = ({k: v for k, v in headers.items() if k != "X-Slack-Request-Timestamp"}, body)
    odd_timestamp = (headers | {"X-Slack-Request-Timestamp": "yesterday"}, body)
    not_utf8 = (headers, b"\xff" + body)

    for bad in (
        wrong_secret,
        stale,
        future,
        tampered,
        no_signature,
        no_timestamp,
        odd_timestamp,
        not_utf8,
    ):
        status, answer = await post(events, *bad)
        assert (status, answer) == (401, {"ok": False, "error": "invalid_signature"})
    assert recorder.calls == []
    assert "this machine's clock is wrong" in caplog.text
    assert SIGNING_SECRET not in caplog.text


async def test_events_api_counts_a_request_only_for_the_app_that_signed_it(
    events: Any, fake_slack: FakeSlack, recorder: Store
) -> None:
    fake_slack.add_channel(OTHER_CHANNEL)
    ts = fake_slack.human_message(
        OTHER_CHANNEL, "answer", thread_ts=thread(fake_slack, OTHER_CHANNEL)
    )
    payload = fake_slack.event_payload(fake_slack.message_event(ts, channel=OTHER_CHANNEL))
    assert (await post(events, *fake_slack.events_request(SIGNING_SECRET, payload)))[0] == 200
    assert recorder.calls == [], "signed by the support app, about the other app's channel"
    assert (await post(events, *fake_slack.events_request("another-secret", payload)))[0] == 200
    assert [reply.destination for reply in recorder.calls] == ["other-app"]


async def test_events_api_answers_503_when_the_reply_cannot_be_stored(
    events: Any, fake_slack: FakeSlack, recorder: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ts = fake_slack.human_message(CHANNEL, "answer", thread_ts=thread(fake_slack))
    payload = fake_slack.event_payload(fake_slack.message_event(ts))
    recorder.failing = 1
    failed = await post(events, *fake_slack.events_request(SIGNING_SECRET, payload))
    assert failed == (503, {"ok": False, "error": "not_stored"})
    assert recorder.replies == {} and "answered 503" in caplog.text
    retried = await post(events, *fake_slack.events_request(SIGNING_SECRET, payload, retry_num=1))
    assert retried[0] == 200 and len(recorder.replies) == 1


async def test_events_api_refuses_bodies_that_are_not_json_objects(
    events: Any, fake_slack: FakeSlack, recorder: Store
) -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        status, _ = await post(events, *fake_slack.events_request(SIGNING_SECRET, body))
        assert status == (401 if body.startswith(b"\xff") else 400), body
    assert recorder.calls == []
