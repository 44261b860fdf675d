"""The fakes enforce the rules they claim to, checked with plain HTTP (no SDK in between)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.fakes.base import RateWindow
from tests.fakes.slack import BOT_TOKEN, CHANNEL, FakeSlack
from tests.fakes.telegram import CHAT_ID, TOKEN, FakeTelegram

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
