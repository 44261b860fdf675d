"""`relay telegram-chats` (relay/integrations/telegram/chats.py) against the fake Bot API:
chats from every kind of update, deduplicated; guidance when there are none or a webhook
hides them; never the token."""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
import pytest

from relay.config.model import Config
from relay.integrations.telegram.chats import (
    NO_BOTS,
    NOTHING_FOUND,
    UPDATES_LIMIT,
    BotChats,
    FoundChat,
    exit_code,
    find_chats,
    format_chats,
)
from tests.fakes.telegram import CHAT_ID, TOKEN, FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

OTHER_TOKEN = "555666777:AAAnotherBotTokenForRelayChatsTests000"
WRONG_TOKEN = "987654321:AAWrongTokenForRelayChatsTests0000000"




def config(**destinations: dict[str, Any]) -> Config:
    return Config.model_validate(
        {"oneroute": {"secrets": ["chats-test-secret"]}, "destinations": destinations}
    )


def telegram(fake: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {
        "type": "telegram",
        "token": TOKEN,
        "chat_id": CHAT_ID,
        "api_url": fake.api_url,
        **extra,
    }


async def test_chats_from_every_kind_of_update_deduplicated(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_update("my_chat_member", chat_id=-1002000000002, title="Sales")
    fake_telegram.add_update("message", chat_id=-1002000000002, title="Sales team")
    fake_telegram.add_update("edited_message", chat_id=-1002000000002, title="Sales team")
    fake_telegram.add_update("message", chat_id=4242, title="Ada", username="ada")
    fake_telegram.add_update(
        "channel_post", chat_id=-1003000000003, type="channel", title="News", username="news"
    )
    fake_telegram.add_update("chat_member", chat_id=-5001, title="Old team")
    fake_telegram.add_update(
        "edited_channel_post", chat_id=-1003000000003, type="channel", title="Newsroom"
    )

    [result] = await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0)

    assert result.problem is None and result.username == "relay_test_bot"
    assert result.chats == (
        FoundChat(-1002000000002, "supergroup", "Sales team"),  # the latest title wins
        FoundChat(4242, "private", "Ada", "ada"),
        FoundChat(-1003000000003, "channel", "Newsroom"),
        FoundChat(-5001, "group", "Old team"),
    )
    assert exit_code([result]) == 0


async def test_output_lists_ids_types_titles_and_marks_configured_chats(
    fake_telegram: FakeTelegram,
) -> None:
    fake_telegram.add_update("message", chat_id=CHAT_ID)
    fake_telegram.add_update("message", chat_id=4242, title="Ada", username="ada")
    fake_telegram.add_update("my_chat_member", chat_id=-5000, title="Gone", status="kicked")
    fake_telegram.add_chat(-1002000000002, forum=True)
    fake_telegram.add_update("message", chat_id=-1002000000002, title="Support")
    cfg = config(
        ops=telegram(fake_telegram),
        spare=telegram(fake_telegram, enabled=False, chat_id=None),
    )
    text = format_chats(await find_chats(cfg, timeout=2.0))
    assert text.splitlines() == [
        "bot @relay_test_bot (used by ops, spare):",
        '  -1001000000001  supergroup  "Relay tests"  (chat_id of ops)',
        '  4242            private     "Ada" @ada',
        '  -5000           group       "Gone"  (the bot was removed from this chat)',
        '  -1002000000002  supergroup  "Support"',
        "",
        "Put the id of the chat to post in as chat_id of its destination (groups and channels "
        "have negative ids).",
    ]


async def test_forum_chats_say_so(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_update("message", chat_id=-1002000000002, title="Support")
    fake_telegram.updates[-1]["message"]["chat"]["is_forum"] = True
    text = format_chats(await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0))
    assert '-1002000000002  supergroup (forum)  "Support"' in text


async def test_updates_are_not_consumed(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_update("message", chat_id=-1002000000002)
    cfg = config(ops=telegram(fake_telegram))
    first = await find_chats(cfg, timeout=2.0)
    second = await find_chats(cfg, timeout=2.0)
    assert first == second and len(first[0].chats) == 1
    assert len(fake_telegram.updates) == 1, "no offset was sent, so nothing was confirmed"


async def test_fake_get_updates_confirms_only_with_an_offset(fake_telegram: FakeTelegram) -> None:
    # What the previous test relies on: the fake forgets updates below a given offset.
    first = fake_telegram.add_update("message")
    second = fake_telegram.add_update("message")
    url = f"{fake_telegram.api_url}/bot{TOKEN}/getUpdates"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={}) as response:
            assert [u["update_id"] for u in (await response.json())["result"]] == [
                first["update_id"],
                second["update_id"],
            ]
        assert len(fake_telegram.updates) == 2
        async with http.post(url, data={"offset": str(second["update_id"])}) as response:
            assert (await response.json())["result"] == [second]
    assert fake_telegram.updates == [second]


async def test_no_updates_says_what_to_do(fake_telegram: FakeTelegram) -> None:
    results = await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0)
    assert exit_code(results) == 0
    text = format_chats(results)
    assert text == f"bot @relay_test_bot (used by ops):\n  {NOTHING_FOUND}"
    assert "add the bot to the group" in text and "privacy mode" in text


async def test_webhook_set_says_what_to_do(fake_telegram: FakeTelegram) -> None:
    fake_telegram.set_webhook()
    fake_telegram.add_update("message")
    results = await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0)
    assert exit_code(results) == 1
    [result] = results
    assert result.problem is not None
    assert "webhook" in result.problem and "409 Conflict" in result.problem
    assert f"{fake_telegram.api_url}/bot<TOKEN>/deleteWebhook" in result.problem
    assert fake_telegram.calls[-1].status == 409
    assert fake_telegram.webhook_url is not None, "nothing was changed on the bot"


async def test_one_block_per_distinct_bot(fake_telegram: FakeTelegram) -> None:
    async with FakeTelegram.running(tokens={OTHER_TOKEN}) as other:
        other.add_update("message", chat_id=-1009000000009, title="Elsewhere")
        cfg = config(
            a=telegram(fake_telegram),
            b=telegram(fake_telegram, api_url=fake_telegram.api_url + "/"),  # same server
            c={**telegram(other), "token": OTHER_TOKEN},
            console={"type": "console"},
        )
        results = await find_chats(cfg, timeout=2.0)
    assert [r.destinations for r in results] == [("a", "b"), ("c",)]
    assert [chat.id for chat in results[1].chats] == [-1009000000009]


async def test_wrong_token(fake_telegram: FakeTelegram) -> None:
    results = await find_chats(config(ops=telegram(fake_telegram, token=WRONG_TOKEN)), timeout=2.0)
    assert exit_code(results) == 1
    text = format_chats(results)
    assert text.startswith("bot used by ops:\n  Telegram rejected the bot token (Unauthorized)")
    assert "@BotFather" in text


async def test_unreachable(fake_telegram: FakeTelegram) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = config(ops=telegram(fake_telegram, api_url=f"http://127.0.0.1:{port}"))
    [result] = await find_chats(cfg, timeout=2.0)
    assert result.problem is not None
    assert result.problem.startswith(f"cannot reach 127.0.0.1:{port} (connection failed)")


async def test_no_telegram_destination() -> None:
    results = await find_chats(config(console={"type": "console"}), timeout=2.0)
    assert results == [] and exit_code(results) == 1
    assert format_chats(results) == NO_BOTS


def test_a_full_page_of_updates_is_flagged() -> None:
    result = BotChats(("ops",), "bot", (FoundChat(-1, "group", "G"),), truncated=True)
    assert f"only the oldest {UPDATES_LIMIT} pending updates" in format_chats([result])


async def test_output_and_logs_never_contain_the_token(
    fake_telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_telegram.add_update("message", chat_id=-1002000000002, title=f"leak {TOKEN}")
    outputs = [format_chats(await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0))]
    fake_telegram.set_webhook()
    outputs.append(format_chats(await find_chats(config(ops=telegram(fake_telegram)), timeout=2.0)))
    outputs.append(
        format_chats(
            await find_chats(config(ops=telegram(fake_telegram, token=WRONG_TOKEN)), timeout=2.0)
        )
    )
    assert "leak [REDACTED]" in outputs[0]
    assert "httpx" in {r.name for r in caplog.records}, "the libraries did log their requests"
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for text in [*outputs, logged]:
        assert TOKEN not in text and WRONG_TOKEN not in text
