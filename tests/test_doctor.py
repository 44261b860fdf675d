"""`relay doctor` (relay/doctor.py) against the fake Slack and Telegram servers, broken in
every way a user's setup can be: each broken destination is named, says what to do, and no
token or webhook URL ever shows in the output or the logs."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from relay.config.model import Config
from relay.doctor import Diagnosis, diagnose, exit_code, format_diagnoses
from tests.fakes.slack import BOT_TOKEN, CHANNEL, FakeSlack
from tests.fakes.telegram import CHAT_ID, TOKEN, FakeTelegram

# PTB warns about its own RetryAfter.retry_after type whenever it builds one.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

WRONG_SLACK_TOKEN = "xoxb-9999-8888-wrongslacktoken"
WRONG_TELEGRAM_TOKEN = "987654321:AAWrongTokenForRelayDoctorTests00000"
MALFORMED_TELEGRAM_TOKEN = "not-a-telegram-token-at-all"




def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(**destinations: dict[str, Any]) -> Config:
    return Config.model_validate(
        {"oneroute": {"secrets": ["doctor-test-secret"]}, "destinations": destinations}
    )


def slack_bot(fake: FakeSlack, channel: str = CHANNEL, **extra: Any) -> dict[str, Any]:
    return {
        "type": "slack",
        "token": BOT_TOKEN,
        "channel": channel,
        "api_url": fake.api_url,
        **extra,
    }


def slack_hook(url: str) -> dict[str, Any]:
    return {"type": "slack", "webhook_url": url}


def telegram(fake: FakeTelegram, chat_id: int | str = CHAT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "type": "telegram",
        "token": TOKEN,
        "chat_id": chat_id,
        "api_url": fake.api_url,
        **extra,
    }


async def check(cfg: Config, *, send_test: bool = False, timeout: float = 2.0) -> Diagnosis:
    """The one destination's verdict (the config holds exactly one)."""
    [diagnosis] = await diagnose(cfg, send_test=send_test, timeout=timeout)
    return diagnosis


def assert_broken(diagnosis: Diagnosis, *phrases: str) -> None:
    assert diagnosis.status == "broken", diagnosis
    assert " — " in diagnosis.message, "a failure says what to do next"
    for phrase in phrases:
        assert phrase in diagnosis.message, diagnosis.message


# ------------------------------------------------------------------ all fine


async def test_all_ok_config_exits_0(fake_slack: FakeSlack, fake_telegram: FakeTelegram) -> None:
    cfg = config(
        **{
            "support-slack": slack_bot(fake_slack),
            "ops-telegram": telegram(fake_telegram),
            "terminal": {"type": "console"},
            "spare": {"type": "console", "enabled": False},
            "spare-slack": {"type": "slack", "enabled": False},
        }
    )
    diagnoses = await diagnose(cfg, timeout=2.0)
    assert [(d.destination, d.status) for d in diagnoses] == [
        ("support-slack", "ok"),
        ("ops-telegram", "ok"),
        ("terminal", "ok"),
        ("spare", "off"),
        ("spare-slack", "off"),
    ]
    assert exit_code(diagnoses) == 0
    assert format_diagnoses(diagnoses).splitlines() == [
        "ok        support-slack (slack): bot @relay in #relay-tests (C0FAKE00001)",
        'ok        ops-telegram (telegram): bot @relay_test_bot in supergroup "Relay tests" '
        "(-1001000000001) as administrator",
        "ok        terminal (console): prints to the relay's terminal; nothing to check",
        "off       spare (console): enabled is false or empty: skipped",
        "off       spare-slack (slack): enabled is false or empty: skipped",
        "no broken destinations (3 ok, 0 unchecked, 2 off)",
    ]
    assert not fake_slack.messages and not fake_telegram.messages, "no posting without --send-test"


async def test_no_destinations() -> None:
    diagnoses = await diagnose(config())
    assert diagnoses == [] and exit_code(diagnoses) == 0
    assert "no destinations configured" in format_diagnoses(diagnoses)


async def test_broken_ones_are_named_in_the_summary_and_exit_1(
    fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> None:
    cfg = config(
        **{
            "support-slack": slack_bot(fake_slack, "C0GONE00001"),
            "fine": telegram(fake_telegram),
            "ops-telegram": telegram(fake_telegram, -1001234567890),
        }
    )
    diagnoses = await diagnose(cfg, timeout=2.0)
    assert exit_code(diagnoses) == 1
    lines = format_diagnoses(diagnoses).splitlines()
    assert lines[0].startswith("BROKEN    support-slack (slack): channel C0GONE00001 not found")
    assert lines[2] == (
        "BROKEN    ops-telegram (telegram): chat -1001234567890 not found — add the bot to the "
        "group (or send it /start in a private chat), then run relay telegram-chats to see its id"
    )
    assert lines[-1] == (
        "2 broken: support-slack, ops-telegram — fix them and run relay doctor again"
    )


# ------------------------------------------------------------------ Slack bot token


async def test_slack_invalid_token(fake_slack: FakeSlack) -> None:
    diagnosis = await check(config(s=slack_bot(fake_slack, token=WRONG_SLACK_TOKEN)))
    assert_broken(diagnosis, "Slack rejected the token (invalid_auth)", "OAuth & Permissions")
    assert WRONG_SLACK_TOKEN not in diagnosis.message


async def test_slack_channel_not_found(fake_slack: FakeSlack) -> None:
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0NOPE00001")))
    assert_broken(diagnosis, "channel C0NOPE00001 not found", "Channel ID", "/invite @relay")


async def test_slack_private_channel_without_the_bot(fake_slack: FakeSlack) -> None:
    fake_slack.add_channel("C0SECRET001", private=True, member=False)
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0SECRET001")))
    assert_broken(diagnosis, "not found", "private channel", "/invite @relay")


async def test_slack_bot_not_in_channel(fake_slack: FakeSlack) -> None:
    fake_slack.bot_name = "relaybot"
    fake_slack.add_channel("C0OUTSIDE01", name="support", member=False)
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0OUTSIDE01")))
    assert diagnosis.message == (
        "bot @relaybot is not in #support (C0OUTSIDE01) — invite it: type /invite @relaybot in "
        "the channel"
    )
    assert diagnosis.status == "broken"


async def test_slack_public_channel_with_chat_write_public(fake_slack: FakeSlack) -> None:
    fake_slack.scopes.add("chat:write.public")
    fake_slack.add_channel("C0OUTSIDE01", name="support", member=False)
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0OUTSIDE01")), send_test=True)
    assert diagnosis.status == "ok"
    assert "chat:write.public" in diagnosis.message and "test message posted" in diagnosis.message
    assert len(fake_slack.messages_in("C0OUTSIDE01")) == 1


async def test_slack_archived_channel(fake_slack: FakeSlack) -> None:
    fake_slack.add_channel("C0OLD000001", name="old-support", archived=True)
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0OLD000001")))
    assert_broken(diagnosis, "#old-support (C0OLD000001) is archived", "unarchive it")


async def test_slack_token_without_chat_write(fake_slack: FakeSlack) -> None:
    fake_slack.scopes = {"channels:read"}
    diagnosis = await check(config(s=slack_bot(fake_slack)))
    assert_broken(diagnosis, "lacks the chat:write scope", "reinstall the app")


async def test_slack_token_without_channels_read_is_unchecked(fake_slack: FakeSlack) -> None:
    fake_slack.scopes = {"chat:write"}
    diagnoses = await diagnose(config(s=slack_bot(fake_slack)), timeout=2.0)
    assert diagnoses[0].status == "unchecked"
    assert "channels:read" in diagnoses[0].message and "--send-test" in diagnoses[0].message
    assert exit_code(diagnoses) == 0


async def test_slack_channel_by_name(fake_slack: FakeSlack) -> None:
    named = config(s=slack_bot(fake_slack, "relay-tests"))
    unchecked = await check(named)
    assert unchecked.status == "unchecked" and "is a name" in unchecked.message
    # The fake, like chat.postMessage, takes only ids: posting by name fails, clearly.
    posted = await check(named, send_test=True)
    assert_broken(posted, "channel relay-tests not found", "channel's id")


async def test_slack_unreachable(fake_slack: FakeSlack) -> None:
    port = closed_port()
    diagnosis = await check(
        config(s=slack_bot(fake_slack, api_url=f"http://127.0.0.1:{port}/api/"))
    )
    assert diagnosis.message == (
        f"cannot reach 127.0.0.1:{port} (connection failed) — check the network connection, "
        "any proxy or firewall, and api_url"
    )


async def test_slack_timeout(fake_slack: FakeSlack) -> None:
    fake_slack.faults.delay_next(1, seconds=5)
    diagnosis = await check(config(s=slack_bot(fake_slack)), timeout=0.3)
    assert_broken(diagnosis, "cannot reach 127.0.0.1:", "no answer within 0.3 s")


async def test_slack_in_trouble(fake_slack: FakeSlack) -> None:
    fake_slack.faults.fail_next(1, status=503)
    diagnosis = await check(config(s=slack_bot(fake_slack)))
    assert_broken(diagnosis, "Slack answered HTTP 503 to auth.test", "try again in a few minutes")


async def test_slack_rate_limited(fake_slack: FakeSlack) -> None:
    fake_slack.faults.rate_limit_next(2)
    diagnosis = await check(config(s=slack_bot(fake_slack)))
    assert_broken(diagnosis, "rate limiting auth.test", "wait a minute")


# ------------------------------------------------------------------ Slack incoming webhook


async def test_webhook_without_send_test_is_unchecked(fake_slack: FakeSlack) -> None:
    url = fake_slack.add_webhook()
    diagnoses = await diagnose(config(hook=slack_hook(url)), timeout=2.0)
    assert diagnoses == [
        Diagnosis(
            "hook",
            "slack",
            "unchecked",
            "incoming webhook: not checkable without posting — run relay doctor --send-test to "
            "post a test message",
        )
    ]
    assert exit_code(diagnoses) == 0
    assert fake_slack.calls == [], "nothing is posted without --send-test"
    assert format_diagnoses(diagnoses).splitlines()[-1] == (
        "no broken destinations (0 ok, 1 unchecked, 0 off)"
    )


async def test_webhook_with_send_test(fake_slack: FakeSlack) -> None:
    url = fake_slack.add_webhook()
    diagnosis = await check(config(**{"support-hook": slack_hook(url)}), send_test=True)
    assert diagnosis.status == "ok"
    assert diagnosis.message == "incoming webhook accepted a test message"
    [post] = fake_slack.messages
    assert post.via == "webhook" and post.channel == CHANNEL
    assert "relay doctor" in (post.text or "") and "support-hook" in (post.text or "")


@pytest.mark.parametrize("error", ["invalid_token", "no_service"])
async def test_revoked_webhook(fake_slack: FakeSlack, error: str) -> None:
    url = fake_slack.add_webhook()
    fake_slack.revoke_webhook(url, error=error)
    diagnosis = await check(config(hook=slack_hook(url)), send_test=True)
    assert_broken(diagnosis, error, "Incoming Webhooks", "set webhook_url")
    assert not fake_slack.messages


async def test_webhook_into_archived_channel(fake_slack: FakeSlack) -> None:
    url = fake_slack.add_webhook()
    fake_slack.channels[CHANNEL].archived = True
    diagnosis = await check(config(hook=slack_hook(url)), send_test=True)
    assert_broken(diagnosis, "channel is archived")


async def test_webhook_unreachable(fake_slack: FakeSlack) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/services/T0FAKE/B0FAKE/supersecretwebhookpath"
    diagnosis = await check(config(hook=slack_hook(url)), send_test=True)
    assert diagnosis.message == (
        f"cannot reach 127.0.0.1:{port} (connection failed) — check the network connection, "
        "any proxy or firewall, and webhook_url"
    )


# ------------------------------------------------------------------ Telegram


async def test_telegram_wrong_token(fake_telegram: FakeTelegram) -> None:
    diagnosis = await check(config(t=telegram(fake_telegram, token=WRONG_TELEGRAM_TOKEN)))
    assert_broken(diagnosis, "Telegram rejected the bot token (Unauthorized)", "@BotFather")
    assert fake_telegram.calls[0].status == 401


async def test_telegram_malformed_token(fake_telegram: FakeTelegram) -> None:
    diagnosis = await check(config(t=telegram(fake_telegram, token=MALFORMED_TELEGRAM_TOKEN)))
    assert_broken(diagnosis, "Not Found", "the token is malformed", "@BotFather")
    assert fake_telegram.calls[0].status == 404


async def test_telegram_chat_not_found(fake_telegram: FakeTelegram) -> None:
    diagnosis = await check(config(t=telegram(fake_telegram, -1009999999999)))
    assert_broken(diagnosis, "chat -1009999999999 not found", "relay telegram-chats")


async def test_telegram_bot_kicked(fake_telegram: FakeTelegram) -> None:
    fake_telegram.kick(CHAT_ID)
    diagnosis = await check(config(t=telegram(fake_telegram)))
    assert_broken(diagnosis, f"the bot was removed from chat {CHAT_ID}", "add it to the group")


async def test_telegram_user_blocked_the_bot(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(4242, title="Ada")
    fake_telegram.kick(4242)
    diagnosis = await check(config(t=telegram(fake_telegram, 4242)))
    assert_broken(diagnosis, "blocked the bot", "/start")


async def test_telegram_private_chat(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(4242, title="Ada")
    diagnosis = await check(config(t=telegram(fake_telegram, 4242)))
    assert diagnosis.status == "ok"
    assert diagnosis.message == "bot @relay_test_bot in private chat with Ada (4242)"


@pytest.mark.parametrize(
    ("status", "phrase"),
    [("left", "is not a member of"), ("kicked", "was banned from")],
)
async def test_telegram_bot_no_longer_member(
    fake_telegram: FakeTelegram, status: str, phrase: str
) -> None:
    fake_telegram.chats[CHAT_ID].bot_status = status
    diagnosis = await check(config(t=telegram(fake_telegram)))
    assert_broken(diagnosis, f'the bot {phrase} supergroup "Relay tests"', "add it to the chat")


@pytest.mark.parametrize(
    ("status", "rights", "ok"),
    [
        ("administrator", {}, True),
        ("administrator", {"can_post_messages": False}, False),
        ("member", {}, False),
        ("creator", {}, True),
    ],
)
async def test_telegram_channel_needs_an_admin_who_may_post(
    fake_telegram: FakeTelegram, status: str, rights: dict[str, Any], ok: bool
) -> None:
    chat = fake_telegram.add_chat("@relaynews", type="channel", title="News")
    chat.bot_status, chat.bot_rights = status, rights
    diagnosis = await check(config(t=telegram(fake_telegram, "@relaynews")))
    if ok:
        assert diagnosis.status == "ok"
        assert diagnosis.message.startswith('bot @relay_test_bot in channel "News"')
    else:
        assert_broken(diagnosis, "administrator with Post Messages")


async def test_telegram_restricted_bot(fake_telegram: FakeTelegram) -> None:
    chat = fake_telegram.chats[CHAT_ID]
    chat.bot_status, chat.bot_rights = "restricted", {"can_send_messages": False}
    diagnosis = await check(config(t=telegram(fake_telegram)))
    assert_broken(diagnosis, "restricted", "lift the restriction")


@pytest.mark.parametrize(("status", "ok"), [("member", False), ("administrator", True)])
async def test_telegram_group_where_members_may_not_send(
    fake_telegram: FakeTelegram, status: str, ok: bool
) -> None:
    chat = fake_telegram.chats[CHAT_ID]
    chat.bot_status, chat.permissions = status, {"can_send_messages": False}
    diagnosis = await check(config(t=telegram(fake_telegram)))
    if ok:
        assert diagnosis.status == "ok"
    else:
        assert_broken(diagnosis, "members may not send messages", "make the bot an administrator")


async def test_telegram_topic_on_a_chat_that_is_no_forum(fake_telegram: FakeTelegram) -> None:
    diagnosis = await check(config(t=telegram(fake_telegram, topic_id=7)))
    assert_broken(diagnosis, "topic_id 7 is set", "is not a forum", "remove topic_id")


async def test_telegram_forum_topic(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(-1002000000002, forum=True, topics={7}, title="Support")
    cfg = config(t=telegram(fake_telegram, -1002000000002, topic_id=7))
    diagnosis = await check(cfg)
    assert diagnosis.status == "ok"
    assert "topic 7" in diagnosis.message and "--send-test" in diagnosis.message
    tested = await check(cfg, send_test=True)
    assert tested.status == "ok" and tested.message.endswith("topic 7; test message posted")
    [post] = fake_telegram.messages
    assert post.thread_id == 7 and "relay doctor" in (post.text or "")


async def test_telegram_missing_topic_shows_with_send_test(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(-1002000000002, forum=True, topics={7})
    diagnosis = await check(
        config(t=telegram(fake_telegram, -1002000000002, topic_id=9)), send_test=True
    )
    assert_broken(diagnosis, "topic 9 not found", "check topic_id")


async def test_telegram_group_upgraded_to_supergroup(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(-4000)
    fake_telegram.migrate(-4000, -1004000000000)
    diagnosis = await check(config(t=telegram(fake_telegram, -4000)))
    assert_broken(diagnosis, "upgraded to a supergroup", "set chat_id: -1004000000000")


async def test_telegram_unreachable(fake_telegram: FakeTelegram) -> None:
    port = closed_port()
    diagnosis = await check(config(t=telegram(fake_telegram, api_url=f"http://127.0.0.1:{port}")))
    assert diagnosis.message == (
        f"cannot reach 127.0.0.1:{port} (connection failed) — check the network connection, "
        "any proxy or firewall, and api_url"
    )


async def test_telegram_timeout(fake_telegram: FakeTelegram) -> None:
    fake_telegram.faults.delay_next(1, seconds=5)
    diagnosis = await check(config(t=telegram(fake_telegram)), timeout=0.3)
    assert_broken(diagnosis, "cannot reach 127.0.0.1:", "no answer within 0.3 s")


async def test_telegram_in_trouble(fake_telegram: FakeTelegram) -> None:
    fake_telegram.faults.fail_next(1, status=502)
    diagnosis = await check(config(t=telegram(fake_telegram)))
    assert_broken(diagnosis, "Bad Gateway", "try again in a few minutes")


# ------------------------------------------------------------------ --send-test


async def test_send_test_posts_one_labelled_message_everywhere(
    fake_slack: FakeSlack, fake_telegram: FakeTelegram
) -> None:
    url = fake_slack.add_webhook()
    cfg = config(
        **{
            "support-slack": slack_bot(fake_slack),
            "support-hook": slack_hook(url),
            "ops-telegram": telegram(fake_telegram),
            "terminal": {"type": "console"},
        }
    )
    diagnoses = await diagnose(cfg, send_test=True, timeout=2.0)
    assert [d.status for d in diagnoses] == ["ok"] * 4
    assert diagnoses[0].message.endswith("; test message posted")
    posts = {m.via: m.text or "" for m in fake_slack.messages}  # checks run concurrently
    [telegram_post] = [m.text or "" for m in fake_telegram.messages]
    assert sorted(posts) == ["api", "webhook"]
    texts = [*posts.values(), telegram_post]
    assert all(text.startswith("Test message from relay doctor") for text in texts)
    assert "support-slack" in posts["api"] and "support-hook" in posts["webhook"]
    assert "ops-telegram" in telegram_post


async def test_send_test_skips_destinations_already_broken(fake_slack: FakeSlack) -> None:
    fake_slack.add_channel("C0OLD000001", archived=True)
    diagnosis = await check(config(s=slack_bot(fake_slack, "C0OLD000001")), send_test=True)
    assert diagnosis.status == "broken"
    assert [call.method for call in fake_slack.calls] == ["auth.test", "conversations.info"]


# ------------------------------------------------------------------ secrets


async def test_no_secret_in_any_output_or_log(
    fake_slack: FakeSlack,
    fake_telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    good_hook, revoked_hook = fake_slack.add_webhook(), fake_slack.add_webhook()
    fake_slack.revoke_webhook(revoked_hook)
    down_hook = f"http://127.0.0.1:{port}/services/T0FAKE/B0FAKE/downwebhooksecretpath"
    fake_telegram.kick(CHAT_ID)
    cfg = config(
        slack_ok=slack_bot(fake_slack),
        slack_wrong=slack_bot(fake_slack, token=WRONG_SLACK_TOKEN),
        slack_down=slack_bot(fake_slack, api_url=f"http://127.0.0.1:{port}/api/"),
        hook_ok=slack_hook(good_hook),
        hook_revoked=slack_hook(revoked_hook),
        hook_down=slack_hook(down_hook),
        tg_kicked=telegram(fake_telegram),
        tg_wrong=telegram(fake_telegram, token=WRONG_TELEGRAM_TOKEN),
        tg_malformed=telegram(fake_telegram, token=MALFORMED_TELEGRAM_TOKEN),
        tg_down=telegram(fake_telegram, api_url=f"http://127.0.0.1:{port}"),
    )
    for send_test in (False, True):
        diagnoses = await diagnose(cfg, send_test=send_test, timeout=2.0)
        print(format_diagnoses(diagnoses))
        assert exit_code(diagnoses) == 1
    output = capsys.readouterr()
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "httpx" in {r.name for r in caplog.records}, "the libraries did log their requests"
    secrets = [BOT_TOKEN, WRONG_SLACK_TOKEN, TOKEN, WRONG_TELEGRAM_TOKEN, MALFORMED_TELEGRAM_TOKEN]
    secrets += [good_hook, revoked_hook, down_hook]
    secrets += [url.split("/services/")[1] for url in (good_hook, revoked_hook, down_hook)]
    for secret in secrets:
        for text in (output.out, output.err, logged):
            assert secret not in text
    assert "BROKEN    hook_revoked" in output.out and "BROKEN    tg_down" in output.out


async def test_unexpected_error_is_reported_without_the_token(
    fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(token: str, **kwargs: Any) -> Any:
        raise RuntimeError(f"something odd about {token}")

    monkeypatch.setattr("relay.integrations.telegram.doctor.build_bot", explode)
    diagnosis = await check(config(t=telegram(fake_telegram)))
    assert_broken(diagnosis, "unexpected error", "RuntimeError", "[REDACTED]", "report it")
    assert TOKEN not in diagnosis.message
