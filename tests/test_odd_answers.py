"""Odd answers: whatever Slack, Telegram or a proxy in front of them answers, the real SDKs'
senders classify it — never raise — and a garbled answer is a transient failure on both
platforms alike. The fakes answer byte for byte (`faults.answer_next`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from relay.integrations.slack.render import SlackMessage
from relay.integrations.slack.send import SlackSender, SlackWebhookSender
from relay.integrations.telegram.render import TelegramCall
from relay.integrations.telegram.send import TelegramSender
from relay.outcome import Outcome, RetryLater, Sent
from tests.fakes import slack as fake_slack_module
from tests.fakes import telegram as fake_telegram_module
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

JSON = "application/json"
HTML = "text/html; charset=utf-8"
NOT_UTF8 = b"\xff\xfe\xfd garbage \xc3\x28"

# (name, status, body, content type): what a proxy, a captive portal or a broken server says.
ODD: list[tuple[str, int, bytes, str]] = [
    ("text/plain 200", 200, b"ok", "text/plain"),
    ("captive portal", 200, b"<html><body>Please log in to the Wi-Fi</body></html>", HTML),
    ("JSON list", 200, b"[1, 2, 3]", JSON),
    ("JSON null", 200, b"null", JSON),
    ("JSON string", 200, b'"ok"', JSON),
    ("truncated JSON", 200, b'{"ok": tr', JSON),
    ("invalid UTF-8 as JSON", 200, NOT_UTF8, JSON),
    ("invalid UTF-8 as text", 200, NOT_UTF8, "text/plain; charset=utf-8"),
    ("invalid UTF-8 on a 503", 503, NOT_UTF8, "text/plain; charset=utf-8"),
    ("ok false without a word", 200, b'{"ok": false}', JSON),
    ("empty body", 200, b"", JSON),
    ("proxy 502 page", 502, b"<html><h1>502 Bad Gateway</h1></html>", HTML),
    ("proxy 400 page", 400, b"<html><h1>400 Bad Request</h1>nginx</html>", HTML),
    ("proxy 403 page", 403, b"<html>Forbidden by policy</html>", HTML),
    ("gzip claimed", 200, b"\x1f\x8b\x08\x00 not really gzip", "application/gzip"),
]
TELEGRAM_ONLY: list[tuple[str, int, bytes, str]] = [
    ("result not a message", 200, b'{"ok": true, "result": "sent!"}', JSON),
    ("result a list", 200, b'{"ok": true, "result": [{"message_id": 1}]}', JSON),
    ("result true", 200, b'{"ok": true, "result": true}', JSON),
    ("message_id not a number", 200, b'{"ok": true, "result": {"message_id": "7"}}', JSON),
    ("ok false without description", 400, b'{"ok": false}', JSON),
    ("retry_after not a number", 429, b'{"ok":false,"parameters":{"retry_after":"x"}}', JSON),
]

Send = Callable[[], Awaitable[Outcome]]


@pytest.fixture
async def slack_bot(fake_slack: FakeSlack) -> AsyncIterator[SlackSender]:
    sender = SlackSender(
        token=fake_slack_module.BOT_TOKEN,
        channel=fake_slack_module.CHANNEL,
        api_url=fake_slack.api_url,
        timeout=10.0,
    )
    yield sender
    await sender.close()


@pytest.fixture
async def telegram_bot(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramSender]:
    sender = TelegramSender(
        token=fake_telegram_module.TOKEN,
        chat_id=fake_telegram_module.CHAT_ID,
        api_url=fake_telegram.api_url,
        timeout=10.0,
    )
    yield sender
    await sender.close()


def transient(outcome: Outcome) -> None:
    assert isinstance(outcome, RetryLater), outcome
    assert outcome.reason in ("bad_answer", "server_error", "rate_limited"), outcome
    assert len(outcome.detail) <= 500


def readable(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


SLACK_MESSAGE = SlackMessage({"text": "hello"})
TELEGRAM_MESSAGE = TelegramCall("sendMessage", {"text": "hello", "parse_mode": "HTML"})


@pytest.mark.parametrize(("name", "status", "body", "content_type"), ODD, ids=[o[0] for o in ODD])
async def test_slack_web_api(
    fake_slack: FakeSlack, slack_bot: SlackSender, name: str, status: int, body: bytes,
    content_type: str,
) -> None:
    fake_slack.faults.answer_next(status=status, body=body, content_type=content_type)
    transient(await slack_bot.send(SLACK_MESSAGE))
    assert isinstance(await slack_bot.send(SLACK_MESSAGE), Sent)  # the next call is fine


@pytest.mark.parametrize(("name", "status", "body", "content_type"), ODD, ids=[o[0] for o in ODD])
async def test_slack_incoming_webhook(
    fake_slack: FakeSlack, name: str, status: int, body: bytes, content_type: str
) -> None:
    hook = SlackWebhookSender(url=fake_slack.add_webhook(), timeout=10.0)
    fake_slack.faults.answer_next(status=status, body=body, content_type=content_type)
    outcome = await hook.send(SLACK_MESSAGE)
    if 200 <= status < 300 and readable(body):
        # A webhook's 2xx is success whatever its text says: Slack answers a bare "ok".
        assert isinstance(outcome, Sent)
    else:
        transient(outcome)
    assert isinstance(await hook.send(SLACK_MESSAGE), Sent)
    await hook.close()


@pytest.mark.parametrize(
    ("name", "status", "body", "content_type"),
    ODD + TELEGRAM_ONLY,
    ids=[o[0] for o in ODD + TELEGRAM_ONLY],
)
async def test_telegram(
    fake_telegram: FakeTelegram, telegram_bot: TelegramSender, name: str, status: int,
    body: bytes, content_type: str,
) -> None:
    fake_telegram.faults.answer_next(status=status, body=body, content_type=content_type)
    outcome = await telegram_bot.send(TELEGRAM_MESSAGE)
    if name == "ok false without description":
        # A 400 in the Bot API's own JSON is a refusal, even without words.
        assert not isinstance(outcome, Sent) and outcome.reason == "bad_request"
    else:
        transient(outcome)
    assert isinstance(await telegram_bot.send(TELEGRAM_MESSAGE), Sent)


async def test_a_huge_proxy_page_makes_a_short_detail(
    fake_telegram: FakeTelegram, telegram_bot: TelegramSender, fake_slack: FakeSlack,
    slack_bot: SlackSender,
) -> None:
    page = b"<html>" + b"x" * 200_000 + b"</html>"
    senders: list[tuple[Any, Send]] = [
        (fake_telegram, lambda: telegram_bot.send(TELEGRAM_MESSAGE)),
        (fake_slack, lambda: slack_bot.send(SLACK_MESSAGE)),
    ]
    for fake, send in senders:
        fake.faults.answer_next(status=502, body=page, content_type=HTML)
        outcome = await send()
        transient(outcome)
