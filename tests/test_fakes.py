"""The fakes enforce the rules they claim to, checked with plain HTTP (no SDK in between)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.fakes.base import RateWindow
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, CHANNEL, HUMAN, FakeSlack
from tests.fakes.telegram import CHAT_ID, HUMAN_ID, TOKEN, FakeTelegram
from tests.waiting import until

AUTH = {"Authorization": f"Bearer {BOT_TOKEN}"}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def slack_call(
    http: aiohttp.ClientSession,
    slack: FakeSlack,
    method: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    async with http.post(
        slack.api_url + method, json=body, headers=AUTH if headers is None else headers
    ) as response:
        return await response.json()


async def post(http: aiohttp.ClientSession, slack: FakeSlack, **body: Any) -> dict[str, Any]:
    return await slack_call(http, slack, "chat.postMessage", channel=CHANNEL, **body)


def section(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": "section", "text": {"type": kind, "text": text}}


# ------------------------------------------------------------------ Slack Web API


async def test_slack_auth(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    assert (await slack_call(http, fake_slack, "auth.test"))["ok"] is True
    assert (await slack_call(http, fake_slack, "auth.test", headers={}))["error"] == "not_authed"
    wrong = {"Authorization": "Bearer xoxb-wrong"}
    assert (await slack_call(http, fake_slack, "auth.test", headers=wrong))[
        "error"
    ] == "invalid_auth"


async def test_slack_form_bodies_and_token_field(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    form = {
        "token": BOT_TOKEN,
        "channel": CHANNEL,
        "text": "hi",
        "blocks": json.dumps([section("hi")]),
    }
    async with http.post(fake_slack.api_url + "chat.postMessage", data=form) as response:
        assert (await response.json())["ok"] is True
    assert fake_slack.messages[0].blocks == [section("hi")]
    assert "token" not in fake_slack.messages[0].payload


async def test_slack_conversations_info(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    fake_slack.add_channel("C0PUBLIC", member=False)
    fake_slack.add_channel("C0SECRET", private=True, member=False)
    async with http.get(
        fake_slack.api_url + "conversations.info", params={"channel": "C0PUBLIC"}, headers=AUTH
    ) as response:
        info = await response.json()
    assert info["channel"]["is_member"] is False
    hidden = await slack_call(http, fake_slack, "conversations.info", channel="C0SECRET")
    assert hidden["error"] == "channel_not_found"


@pytest.mark.parametrize(
    ("body", "error", "note"),
    [
        ({}, "no_text", None),
        ({"text": "x" * 40_001}, "msg_too_long", None),
        ({"text": "x", "attachments": [{}] * 101}, "too_many_attachments", None),
        ({"blocks": [section("x")] * 51}, "invalid_blocks", "no more than 50 items"),
        ({"blocks": [section("x" * 3001)]}, "invalid_blocks", "less than 3001 characters"),
        (
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]},
            "invalid_blocks",
            "less than 151 characters",
        ),
        (
            {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]},
            "invalid_blocks",
            "must be one of plain_text",
        ),
        ({"blocks": [{"text": "no type"}]}, "invalid_blocks", "missing required field: type"),
        ({"blocks": [{"type": "carousel"}]}, "invalid_blocks", "unsupported type"),
        ({"blocks": [{"type": "section"}]}, "invalid_blocks", "either text or fields"),
        (
            {"blocks": [{"type": "image", "image_url": "https://x/y.png"}]},
            "invalid_blocks",
            "alt_text",
        ),
        ({"blocks": "not json"}, "invalid_blocks_format", None),
        ({"text": "x", "thread_ts": "0"}, "invalid_thread_ts", None),
    ],
)
async def test_slack_message_rules(
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    error: str,
    note: str | None,
) -> None:
    answer = await post(http, fake_slack, **body)
    assert (answer["ok"], answer["error"]) == (False, error)
    if note:
        assert note in answer["errors"][0]
        assert answer["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert fake_slack.messages == []


async def test_slack_limits_are_inclusive(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}
    answer = await post(
        http, fake_slack, text="x" * 40_000, blocks=[header, *[section("s" * 3000)] * 49]
    )
    assert answer["ok"] is True


async def test_slack_channels(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    fake_slack.add_channel("C0OUT", member=False, private=True)
    fake_slack.add_channel("C0OLD", archived=True)
    errors = [
        (await slack_call(http, fake_slack, "chat.postMessage", channel=c, text="x"))["error"]
        for c in ("C0NONE", "C0OUT", "C0OLD")
    ]
    assert errors == ["channel_not_found", "not_in_channel", "is_archived"]


async def test_slack_broken_image(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    fake_slack.break_image("https://x/broken.png")
    image = {"type": "image", "image_url": "https://x/broken.png", "alt_text": "b"}
    answer = await post(http, fake_slack, text="x", blocks=[section("x"), image])
    assert answer["error"] == "invalid_blocks"
    assert answer["errors"] == ["downloading image failed [json-pointer:/blocks/1/image_url]"]


async def test_slack_ts_and_threads(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    tss = [(await post(http, fake_slack, text=str(i)))["ts"] for i in range(3)]
    assert tss == sorted(set(tss))
    await post(http, fake_slack, text="reply", thread_ts=tss[0])
    await post(http, fake_slack, text="orphan", thread_ts="1000000000.000001")
    assert [m.thread_found for m in fake_slack.messages[3:]] == [True, False]


async def test_slack_unknown_method(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    async with http.post(fake_slack.api_url + "chat.teleport", headers=AUTH) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "unknown_method"


# ------------------------------------------------------------------ Slack webhooks


async def test_slack_webhook_answers(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    url = fake_slack.add_webhook()

    async def hook(target: str, data: str) -> tuple[int, str]:
        async with http.post(target, data=data) as response:
            return response.status, await response.text()

    assert await hook(url, json.dumps({"text": "hi"})) == (200, "ok")
    assert await hook(url, "{not json") == (400, "invalid_payload")
    assert await hook(url, "{}") == (400, "no_text")
    assert await hook(fake_slack.base_url + "/services/T0/B0/nope", "{}") == (404, "no_service")
    fake_slack.channels[CHANNEL].archived = True
    assert await hook(url, json.dumps({"text": "hi"})) == (410, "channel_is_archived")
    fake_slack.revoke_webhook(url)
    assert await hook(url, json.dumps({"text": "hi"})) == (403, "invalid_token")
    assert [m.via for m in fake_slack.messages] == ["webhook"]


# ------------------------------------------------------------------ faults (shared)


async def test_faults_are_consumed_in_order(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    fake_slack.faults.fail_next(1, status=500)
    fake_slack.faults.rate_limit_next(1, retry_after=0.5)
    fake_slack.faults.delay_next(1, seconds=0.2)
    answers = []
    for _ in range(4):
        started = time.monotonic()
        async with http.post(
            fake_slack.api_url + "chat.postMessage",
            headers=AUTH,
            json={"channel": CHANNEL, "text": "x"},
        ) as response:
            answers.append(
                (response.status, response.headers.get("Retry-After"), time.monotonic() - started)
            )
    assert [a[:2] for a in answers] == [(500, None), (429, "0.5"), (200, None), (200, None)]
    assert answers[2][2] >= 0.2
    assert len(fake_slack.messages) == 2
    assert (fake_slack.count(500), fake_slack.count(429), fake_slack.count(200)) == (1, 1, 2)


async def test_storm(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    fake_slack.faults.storm(1.0, retry_after=3)
    assert (await post(http, fake_slack, text="x"))["error"] == "ratelimited"
    fake_slack.faults.storm(0)
    assert (await post(http, fake_slack, text="x"))["ok"] is True


async def test_slack_enforced_rate_limit(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    fake_slack.enforce_rate_limit(messages=2, per=1.0)
    answers = [await post(http, fake_slack, text=str(i)) for i in range(3)]
    assert [a["ok"] for a in answers] == [True, True, False]
    assert fake_slack.count(429) == 1
    fake_slack.add_channel("C0OTHER")
    other = await slack_call(http, fake_slack, "chat.postMessage", channel="C0OTHER", text="x")
    assert other["ok"] is True  # the limit is per channel


def test_rate_window() -> None:
    window = RateWindow(limit=2, period=1.0, tolerance=0.0)
    assert [window.wait("a", t) for t in (0.0, 0.1, 0.2)] == [0.0, 0.0, 0.8]
    assert window.wait("b", 0.2) == 0.0
    assert window.wait("a", 1.0) == 0.0  # the first one has left the window


# ------------------------------------------------------------------ Slack: answers


async def test_slack_apps_connections_open_takes_app_tokens_only(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    opened = await slack_call(http, fake_slack, "apps.connections.open", bearer(APP_TOKEN))
    assert opened["ok"] is True
    assert opened["url"].startswith(fake_slack.base_url.replace("http", "ws") + "/socket-mode?")
    for headers, body, error in [
        (bearer(BOT_TOKEN), {}, "not_allowed_token_type"),
        (bearer("xapp-1-unknown-token"), {}, "invalid_auth"),
        ({}, {}, "not_authed"),
        ({}, {"token": APP_TOKEN}, "not_authed"),  # Slack wants it in the header
    ]:
        answer = await slack_call(http, fake_slack, "apps.connections.open", headers, **body)
        assert answer["error"] == error
    posted = await slack_call(
        http, fake_slack, "chat.postMessage", bearer(APP_TOKEN), channel=CHANNEL, text="x"
    )
    assert posted["error"] == "not_allowed_token_type"
    fake_slack.app_scopes.clear()
    refused = await slack_call(http, fake_slack, "apps.connections.open", bearer(APP_TOKEN))
    assert (refused["error"], refused["needed"]) == ("missing_scope", "connections:write")


async def open_socket(
    http: aiohttp.ClientSession, slack: FakeSlack
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {APP_TOKEN}"}
    url = (await slack_call(http, slack, "apps.connections.open", headers))["url"]
    ws = await http.ws_connect(url)
    hello = await ws.receive_json()
    assert hello["type"] == "hello" and hello["connection_info"]["app_id"]
    return ws


async def test_slack_socket_mode_sends_envelopes_and_records_acks(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    event = {"type": "message", "channel": CHANNEL, "user": HUMAN, "text": "hi", "ts": "1.000001"}
    queued = fake_slack.push_event(event)  # no connection yet: waits for one
    ws = await open_socket(http, fake_slack)
    envelope = await ws.receive_json()
    assert envelope["envelope_id"] == queued and envelope["type"] == "events_api"
    assert (envelope["retry_attempt"], envelope["accepts_response_payload"]) == (0, False)
    assert envelope["payload"]["type"] == "event_callback"
    assert envelope["payload"]["event"] == event and envelope["payload"]["event_id"]

    retry = fake_slack.push_event(event, 2, event_id=envelope["payload"]["event_id"])
    again = await ws.receive_json()
    assert (again["envelope_id"], again["retry_attempt"], again["retry_reason"]) == (
        retry,
        2,
        "timeout",
    )
    assert again["payload"]["event_id"] == envelope["payload"]["event_id"]
    await ws.send_json({"envelope_id": retry})
    await ws.send_str("not json")
    await ws.send_json({"envelope_id": queued})
    await until(lambda: len(fake_slack.acks) == 2)
    assert fake_slack.acks == [retry, queued]
    await ws.close()
    await until(lambda: not fake_slack.sockets)


async def test_slack_socket_mode_tickets_and_disconnects(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake_slack.base_url}/socket-mode?ticket=forged") as response:
        assert response.status == 401
    headers = {"Authorization": f"Bearer {APP_TOKEN}"}
    url = (await slack_call(http, fake_slack, "apps.connections.open", headers))["url"]
    first = await http.ws_connect(url)
    assert (await first.receive_json())["type"] == "hello"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(url)  # each URL connects once

    fake_slack.disconnect("refresh_requested")
    assert await first.receive_json() == {
        "type": "disconnect",
        "reason": "refresh_requested",
        "debug_info": {"host": "fake"},
    }
    waiting = fake_slack.push_event({"type": "message"})  # not to a connection told to go
    second = await open_socket(http, fake_slack)
    assert (await second.receive_json())["envelope_id"] == waiting
    await first.close()

    fake_slack.disconnect("warning", close=True)
    assert (await second.receive_json())["reason"] == "warning"
    assert (await second.receive()).type == aiohttp.WSMsgType.CLOSE
    await until(lambda: not fake_slack.sockets)
    assert fake_slack.socket_connections == 2


async def test_slack_socket_mode_retries_what_was_not_acknowledged(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    envelope_id = fake_slack.push_event({"type": "message"})
    attempts = []
    for _ in range(4):  # the first delivery and Slack's three retries
        ws = await open_socket(http, fake_slack)
        envelope = await ws.receive_json()
        attempts.append((envelope["envelope_id"], envelope["retry_attempt"]))
        await ws.close()  # gone without acknowledging it
        await until(lambda: not fake_slack.sockets)
    assert attempts == [(envelope_id, n) for n in range(4)]
    last = await open_socket(http, fake_slack)
    acked = fake_slack.push_event({"type": "message"})
    assert (await last.receive_json())["envelope_id"] == acked, "no fifth delivery"
    await last.send_json({"envelope_id": acked})
    await until(lambda: fake_slack.acks == [acked])
    await last.close()
    await until(lambda: not fake_slack.sockets)
    assert fake_slack._undelivered == [], "acknowledged: not delivered again"


def test_slack_events_request_is_signed_as_slack_signs() -> None:
    slack = FakeSlack()
    headers, body = slack.events_request("s3cret-signing", {"type": "x"}, timestamp=1700000000)
    expected = hmac.new(b"s3cret-signing", b"v0:1700000000:" + body, hashlib.sha256).hexdigest()
    assert json.loads(body) == {"type": "x"}
    assert headers["X-Slack-Request-Timestamp"] == "1700000000"
    assert headers["X-Slack-Signature"] == f"v0={expected}"
    assert "X-Slack-Retry-Num" not in headers
    retried, _ = slack.events_request("s3cret-signing", b"raw", retry_num=1)
    assert (
        retried["X-Slack-Retry-Num"] == "1"
        and abs(int(retried["X-Slack-Request-Timestamp"]) - time.time()) < 600
    )


async def test_slack_human_messages_and_their_events(
    fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    parent = fake_slack.human_message(CHANNEL, "my order <#123> & more")
    reply = fake_slack.human_message(CHANNEL, "thanks", user="U0OTHER", thread_ts=parent)
    bot = await post(http, fake_slack, text="relay here", thread_ts=parent)
    assert parent < reply < bot["ts"] and fake_slack.messages[-1].thread_found is True
    with pytest.raises(ValueError, match="to reply to"):
        fake_slack.human_message(CHANNEL, "x", thread_ts="1000000000.000001")
    with pytest.raises(ValueError, match="no channel"):
        fake_slack.human_message("C0NOWHERE", "x")

    person = fake_slack.message_event(parent)
    assert person["user"] == HUMAN and "bot_id" not in person
    assert person["text"] == "my order &lt;#123&gt; &amp; more"  # as Slack stores it
    threaded = fake_slack.message_event(reply)
    assert (threaded["user"], threaded["thread_ts"]) == ("U0OTHER", parent)
    ours = fake_slack.message_event(bot["ts"], subtype="bot_message")
    assert ours["bot_id"] and ours["bot_profile"] and ours["subtype"] == "bot_message"
    with pytest.raises(ValueError):
        fake_slack.message_event("1000000000.000001")


async def test_slack_reactions(fake_slack: FakeSlack, http: aiohttp.ClientSession) -> None:
    ts = fake_slack.human_message(CHANNEL, "the answer")

    async def react(**body: Any) -> dict[str, Any]:
        return await slack_call(http, fake_slack, "reactions.add", **body)

    refused = await react(channel=CHANNEL, timestamp=ts, name="white_check_mark")
    assert (refused["error"], refused["needed"]) == ("missing_scope", "reactions:write")
    fake_slack.scopes.add("reactions:write")
    assert (await react(channel="C0NOWHERE", timestamp=ts, name="x"))["error"] == (
        "channel_not_found"
    )
    missing = await react(channel=CHANNEL, timestamp="1000000000.000001", name="white_check_mark")
    assert missing["error"] == "message_not_found"
    assert (await react(channel=CHANNEL, timestamp=ts, name=""))["error"] == "invalid_name"
    assert (await react(channel=CHANNEL, timestamp=ts, name="white_check_mark"))["ok"] is True
    again = await react(channel=CHANNEL, timestamp=ts, name="white_check_mark")
    assert again["error"] == "already_reacted"
    assert (await react(channel=CHANNEL, timestamp=ts, name="eyes"))["ok"] is True
    assert [(r.channel, r.ts, r.name) for r in fake_slack.reactions] == [
        (CHANNEL, ts, "white_check_mark"),
        (CHANNEL, ts, "eyes"),
    ]
    fake_slack.channels[CHANNEL].archived = True
    assert (await react(channel=CHANNEL, timestamp=ts, name="tada"))["error"] == "is_archived"


# ------------------------------------------------------------------ Telegram


async def tg(
    http: aiohttp.ClientSession,
    telegram: FakeTelegram,
    method: str,
    token: str = TOKEN,
    **params: Any,
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{telegram.api_url}/bot{token}/{method}", json=params) as response:
        return response.status, await response.json()


async def send(
    http: aiohttp.ClientSession, telegram: FakeTelegram, **params: Any
) -> tuple[int, dict[str, Any]]:
    return await tg(http, telegram, "sendMessage", **{"chat_id": CHAT_ID, **params})


async def test_telegram_tokens(fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    status, me = await tg(http, fake_telegram, "getMe")
    assert status == 200 and me["result"]["is_bot"] is True
    assert (await tg(http, fake_telegram, "getMe", token="garbage"))[0] == 404
    wrong = "111:AAThisTokenIsWellFormedButUnknown012345"
    status, body = await tg(http, fake_telegram, "getMe", token=wrong)
    assert (status, body["description"]) == (401, "Unauthorized")
    assert (await tg(http, fake_telegram, "sendTeleport"))[0] == 404


async def test_telegram_form_bodies_like_ptb(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    await send(http, fake_telegram, text="parent")
    form = {
        "chat_id": str(CHAT_ID),
        "text": "child",
        "disable_notification": "true",
        "reply_parameters": json.dumps({"message_id": 1}),
    }
    async with http.post(f"{fake_telegram.api_url}/bot{TOKEN}/sendmessage", data=form) as r:
        assert (await r.json())["result"]["message_id"] == 2
    child = fake_telegram.messages[1]
    assert (child.method, child.reply_to) == ("sendMessage", 1)
    assert child.params["disable_notification"] is True


@pytest.mark.parametrize(
    ("params", "status", "description"),
    [
        ({"chat_id": -42}, 400, "Bad Request: chat not found"),
        ({"text": "<b>bold"}, 400, "Bad Request: can't parse entities"),
        ({"text": "<blink>x</blink>"}, 400, "Bad Request: can't parse entities"),
        ({"text": "x" * 4097}, 400, "Bad Request: message is too long"),
        ({"text": "😀" * 2049}, 400, "Bad Request: message is too long"),
        ({"text": ""}, 400, "Bad Request: message text is empty"),
        ({"message_thread_id": 7}, 400, "Bad Request: message thread not found"),
        (
            {"reply_parameters": {"message_id": 9}},
            400,
            "Bad Request: message to be replied not found",
        ),
        ({"text": "<b>ok</b>" + "x" * 4094}, 200, None),
        ({"text": "😀" * 2048}, 200, None),
        ({"reply_parameters": {"message_id": 9, "allow_sending_without_reply": True}}, 200, None),
    ],
)
async def test_telegram_message_rules(
    fake_telegram: FakeTelegram,
    http: aiohttp.ClientSession,
    params: dict[str, Any],
    status: int,
    description: str | None,
) -> None:
    answer = await send(http, fake_telegram, **{"text": "x", "parse_mode": "HTML", **params})
    assert answer[0] == status
    if description:
        assert answer[1]["description"].startswith(description)
        assert answer[1]["error_code"] == status


async def test_telegram_media(fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    fake_telegram.refuse_media("https://x/bad.jpg", "failed to get HTTP URL content")
    ok = await tg(
        http,
        fake_telegram,
        "sendPhoto",
        chat_id=CHAT_ID,
        photo="https://x/a.jpg",
        caption="c" * 1024,
    )
    long = await tg(
        http,
        fake_telegram,
        "sendVideo",
        chat_id=CHAT_ID,
        video="https://x/v.mp4",
        caption="c" * 1025,
    )
    refused = await tg(http, fake_telegram, "sendPhoto", chat_id=CHAT_ID, photo="https://x/bad.jpg")
    missing = await tg(http, fake_telegram, "sendAudio", chat_id=CHAT_ID)
    assert ok[0] == 200 and ok[1]["result"]["photo"][0]["file_id"]
    assert long[1]["description"] == "Bad Request: message caption is too long"
    assert refused[1]["description"] == "Bad Request: failed to get HTTP URL content"
    assert missing[1]["description"] == "Bad Request: there is no audio in the request"
    assert [(m.method, m.media) for m in fake_telegram.messages] == [
        ("sendPhoto", "https://x/a.jpg")
    ]


async def test_telegram_chat_states(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    fake_telegram.add_chat(-7)
    fake_telegram.migrate(-7, -1007)
    fake_telegram.add_chat(8)
    fake_telegram.kick(8)
    forum = fake_telegram.add_chat(-1009, forum=True, topics={3})
    status, migrated = await send(http, fake_telegram, chat_id=-7, text="x")
    assert (status, migrated["parameters"]) == (400, {"migrate_to_chat_id": -1007})
    status, kicked = await send(http, fake_telegram, chat_id=8, text="x")
    assert (status, kicked["description"]) == (403, "Forbidden: bot was blocked by the user")
    status, _ = await send(http, fake_telegram, chat_id=forum.id, text="x", message_thread_id=3)
    assert status == 200 and fake_telegram.messages_in(forum.id)[0].thread_id == 3
    status, chat = await tg(http, fake_telegram, "getChat", chat_id=forum.id)
    assert chat["result"]["is_forum"] is True


async def test_telegram_rate_limits(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    fake_telegram.enforce_rate_limits(per_chat=(1, 1.0), per_group=(3, 60.0))
    first = await send(http, fake_telegram, text="1")
    second = await send(http, fake_telegram, text="2")
    assert (first[0], second[0]) == (200, 429)
    assert second[1]["parameters"] == {"retry_after": 1}
    assert second[1]["description"] == "Too Many Requests: retry after 1"
    fake_telegram.enforce_rate_limits(per_chat=(100, 1.0), per_group=(3, 60.0))
    codes = [(await send(http, fake_telegram, text=str(i)))[0] for i in range(4)]
    assert codes == [200, 200, 200, 429]  # 20/min in groups, here 3/min
    assert (
        await send(
            http,
            fake_telegram,
            chat_id=fake_telegram.add_chat(77).id,
            text="private chats are not groups",
        )
    )[0] == 200


async def test_telegram_faults(fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    fake_telegram.faults.rate_limit_next(1, retry_after=4)
    fake_telegram.faults.fail_next(1, status=502)
    limited = await send(http, fake_telegram, text="x")
    failed = await send(http, fake_telegram, text="x")
    assert (limited[0], limited[1]["parameters"]) == (429, {"retry_after": 4})
    assert (failed[0], failed[1]["description"]) == (502, "Bad Gateway")
    assert fake_telegram.messages == []


# ------------------------------------------------------------------ Telegram: answers


async def test_telegram_get_updates_waits_for_an_update(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(10):  # a bound, not a timing assertion: it must not wait 600 s
        waiting = asyncio.create_task(tg(http, fake_telegram, "getUpdates", timeout=600))
        await until(lambda: fake_telegram.polling)
        update = fake_telegram.user_message(CHAT_ID, "hello")
        status, answer = await waiting
        assert (status, answer["result"]) == (200, [update])
        # Pending updates are answered at once, whatever the timeout.
        assert (await tg(http, fake_telegram, "getUpdates", timeout=600))[1]["result"] == [update]
    nothing = await tg(
        http, fake_telegram, "getUpdates", offset=update["update_id"] + 1, timeout=0.05
    )
    assert nothing == (200, {"ok": True, "result": []})
    assert not fake_telegram.polling


async def test_telegram_a_newer_get_updates_ends_a_waiting_one(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    first = asyncio.create_task(tg(http, fake_telegram, "getUpdates", timeout=600))
    await until(lambda: fake_telegram.polling)
    second = asyncio.create_task(tg(http, fake_telegram, "getUpdates", timeout=600))
    status, answer = await first
    assert (status, answer["description"]) == (
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot "
        "instance is running",
    )
    await until(lambda: fake_telegram.polling)
    fake_telegram.set_webhook()  # ends the waiting one too
    status, answer = await second
    assert status == 409 and "webhook is active" in answer["description"]


async def test_telegram_offsets_and_allowed_updates(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    updates = [fake_telegram.user_message(CHAT_ID, str(n)) for n in range(4)]
    last = await tg(http, fake_telegram, "getUpdates", offset=-1)
    assert last[1]["result"] == updates[-1:], "a negative offset keeps only the last ones"
    assert fake_telegram.updates == updates[-1:]
    form = {"allowed_updates": json.dumps(["message"]), "timeout": "0"}  # as PTB sends it
    async with http.post(f"{fake_telegram.api_url}/bot{TOKEN}/getUpdates", data=form) as r:
        assert (await r.json())["result"] == updates[-1:]
    assert fake_telegram.allowed_updates == ["message"]
    fake_telegram.user_message(CHAT_ID, "edited", edited=True)
    fake_telegram.add_update("channel_post", text="news")
    kept = fake_telegram.user_message(CHAT_ID, "kept")
    assert fake_telegram.updates == [updates[-1], kept]


async def test_telegram_user_messages(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    forum = fake_telegram.add_chat(-1009, forum=True, topics={3})
    await send(http, fake_telegram, text="from the relay")
    reply = fake_telegram.user_message(CHAT_ID, "an answer", reply_to=1)
    message = reply["message"]
    assert message["message_id"] == 2, "people's messages share the chat's ids"
    assert message["from"] == {"id": HUMAN_ID, "is_bot": False, "first_name": "Ada"}
    assert message["reply_to_message"]["text"] == "from the relay"
    assert message["reply_to_message"]["from"]["is_bot"] is True
    assert "message_thread_id" not in message and "edit_date" not in message

    edited = fake_telegram.user_message(CHAT_ID, "fixed", reply_to=1, edited=True)
    assert set(edited) == {"update_id", "edited_message"} and edited["edited_message"]["edit_date"]
    bot = fake_telegram.user_message(CHAT_ID, "beep", user_id=77, is_bot=True)
    assert bot["message"]["from"]["is_bot"] is True and bot["message"]["from"]["id"] == 77

    topic = fake_telegram.user_message(forum.id, "in the topic", thread_id=3)["message"]
    assert (topic["message_thread_id"], topic["is_topic_message"]) == (3, True)
    assert topic["chat"]["is_forum"] is True
    assert topic["reply_to_message"]["message_id"] == 3  # the topic's first message
    assert "forum_topic_created" in topic["reply_to_message"]

    with pytest.raises(ValueError, match="to reply to"):
        fake_telegram.user_message(CHAT_ID, "x", reply_to=99)
    with pytest.raises(ValueError, match="not a topic"):
        fake_telegram.user_message(CHAT_ID, "x", thread_id=3)
    with pytest.raises(ValueError, match="not a topic"):
        fake_telegram.user_message(forum.id, "x", thread_id=4)
    with pytest.raises(ValueError, match="no chat"):
        fake_telegram.user_message(-42, "x")


async def test_telegram_reactions(fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    fake_telegram.user_message(CHAT_ID, "the answer")

    async def react(*emoji: str, message_id: int = 1, kind: str = "emoji") -> tuple[int, Any]:
        reaction = [{"type": kind, "emoji": e} for e in emoji]
        form = {"chat_id": str(CHAT_ID), "message_id": str(message_id)}
        form["reaction"] = json.dumps(reaction)  # form-encoded, as PTB sends it
        url = f"{fake_telegram.api_url}/bot{TOKEN}/setMessageReaction"
        async with http.post(url, data=form) as response:
            return response.status, await response.json()

    assert (await react("👍", message_id=9))[1]["description"] == (
        "Bad Request: message to react not found"
    )
    assert (await react("✅"))[1]["description"] == "Bad Request: REACTION_INVALID"
    assert (await react("👍", kind="custom_emoji"))[1]["description"] == (
        "Bad Request: REACTION_INVALID"
    )
    assert (await react("👍", "👌"))[1]["description"] == "Bad Request: REACTIONS_TOO_MANY"
    assert await react("👍") == (200, {"ok": True, "result": True})
    assert fake_telegram.reactions_on(CHAT_ID, 1) == ("👍",)
    assert (await react())[0] == 200
    assert fake_telegram.reactions_on(CHAT_ID, 1) == ()
    assert [r.emoji for r in fake_telegram.reactions] == [("👍",), ()]


async def test_telegram_forum_topics(
    fake_telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    forum = fake_telegram.add_chat(-1009, forum=True)
    status, plain = await tg(http, fake_telegram, "createForumTopic", chat_id=CHAT_ID, name="x")
    assert (status, plain["description"]) == (400, "Bad Request: the chat is not a forum")

    status, created = await tg(http, fake_telegram, "createForumTopic", chat_id=-1009, name="Ada")
    assert status == 200
    topic = created["result"]
    assert (topic["name"], topic["icon_color"]) == ("Ada", 7322096)
    assert topic["message_thread_id"] in forum.topics
    sent = await send(
        http, fake_telegram, chat_id=-1009, text="x", message_thread_id=topic["message_thread_id"]
    )
    assert sent[0] == 200
    answer = fake_telegram.user_message(-1009, "hi", thread_id=topic["message_thread_id"])
    assert answer["message"]["reply_to_message"]["forum_topic_created"]["name"] == "Ada"

    status, member = await tg(
        http, fake_telegram, "getChatMember", chat_id=-1009, user_id=int(TOKEN.split(":")[0])
    )
    assert member["result"]["can_manage_topics"] is True
    forum.bot_rights = {"can_manage_topics": False}
    status, refused = await tg(http, fake_telegram, "createForumTopic", chat_id=-1009, name="B")
    assert (status, refused["description"]) == (
        400,
        "Bad Request: not enough rights to create a topic",
    )
    forum.bot_rights, forum.bot_status = {}, "member"
    status, refused = await tg(http, fake_telegram, "createForumTopic", chat_id=-1009, name="B")
    assert refused["description"] == "Bad Request: not enough rights to create a topic"
