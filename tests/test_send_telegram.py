"""The Telegram sender: classify_telegram as a table, then the real python-telegram-bot
client against the fake Bot API (tests/fakes/telegram.py)."""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta

import pytest
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from relay.integrations.telegram.classify import classify_telegram
from relay.integrations.telegram.render import TelegramCall
from relay.integrations.telegram.send import TelegramSender
from relay.outcome import Permanent, RetryLater, Sent
from tests.fakes.telegram import CHAT_ID, TOKEN, FakeTelegram

# PTB warns about its own RetryAfter.retry_after type whenever it builds one.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

PHOTO = "https://cdn.example.com/cat.jpg"


def retry_after(seconds: float | timedelta) -> RetryAfter:
    """RetryAfter, built quietly: the table is built at collection, outside pytestmark."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        return RetryAfter(seconds)  # type: ignore[arg-type]


def message(body: str = "hello", **params: object) -> TelegramCall:
    return TelegramCall("sendMessage", {"text": body, "parse_mode": "HTML", **params})


def photo(url: str = PHOTO, fallback: bool = True) -> TelegramCall:
    link = TelegramCall("sendMessage", {"text": f'<a href="{url}">photo</a>', "parse_mode": "HTML"})
    return TelegramCall(
        "sendPhoto",
        {"photo": url, "caption": "<i>look</i>", "parse_mode": "HTML"},
        link if fallback else None,
    )


def sender(telegram: FakeTelegram, **kwargs: object) -> TelegramSender:
    options: dict[str, object] = {
        "token": TOKEN,
        "chat_id": CHAT_ID,
        "api_url": telegram.api_url,
        "timeout": 2.0,
        **kwargs,
    }
    return TelegramSender(**options)  # type: ignore[arg-type]


@pytest.fixture
async def bot(fake_telegram: FakeTelegram):
    sender_ = sender(fake_telegram)
    yield sender_
    await sender_.close()


# ------------------------------------------------------------------ classify_telegram


@pytest.mark.parametrize(
    ("exc", "reason", "after"),
    [
        (retry_after(2), "rate_limited", 2.0),
        (retry_after(timedelta(seconds=1.5)), "rate_limited", 1.5),
        (retry_after(0.5), "rate_limited", 0.5),
        (NetworkError("Too Many Requests"), "rate_limited", None),
        (TimedOut(), "timeout", None),
        (TimeoutError(), "timeout", None),
        (NetworkError("httpx.ConnectError: All connection attempts failed"), "network", None),
        (
            NetworkError("Unknown error in HTTP implementation: RuntimeError('closed')"),
            "network",
            None,
        ),
        (ConnectionRefusedError(111, "Connection refused"), "network", None),
        (NetworkError("Service Unavailable"), "server_error", None),
        (
            NetworkError("Bad Gateway (502). Parsing the server response b'<html>' failed"),
            "bad_answer",
            None,
        ),
        (
            BadRequest("Bad Request (400). Parsing the server response b'<html>' failed"),
            "bad_answer",
            None,
        ),
        (TelegramError("Invalid server response"), "bad_answer", None),
        (KeyError("result"), "bad_answer", None),  # {"ok": false} at HTTP 200
        (TypeError("list indices must be integers"), "bad_answer", None),
    ],
)
def test_classify_transient(exc: BaseException, reason: str, after: float | None) -> None:
    outcome = classify_telegram(exc)
    assert isinstance(outcome, RetryLater)
    assert (outcome.reason, outcome.after, outcome.rate_limited) == (
        reason,
        after,
        reason == "rate_limited",
    )


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (InvalidToken("Unauthorized"), "unauthorized"),
        (InvalidToken("Not Found"), "unauthorized"),
        (Forbidden("Forbidden: bot was kicked from the group chat"), "forbidden"),
        (Forbidden("Forbidden: bot is not a member of the channel chat"), "forbidden"),
        (Forbidden("Forbidden: bot was blocked by the user"), "forbidden"),
        (BadRequest("Bad Request: chat not found"), "chat_not_found"),
        (BadRequest("Bad Request: message thread not found"), "topic_not_found"),
        (BadRequest("Bad Request: not enough rights to send photos to the chat"), "forbidden"),
        (BadRequest("Bad Request: message is too long"), "bad_request"),
        (BadRequest("Bad Request: can't parse entities: unexpected end tag"), "bad_request"),
        (BadRequest("Bad Request: wrong file identifier/HTTP URL specified"), "bad_request"),
        (ChatMigrated(-1001234), "chat_migrated"),
        (Conflict("terminated by other getUpdates request"), "bad_request"),
        (EndPointNotFound("Endpoint 'sendThing' not found in Bot API"), "bad_request"),
    ],
)
def test_classify_permanent(exc: BaseException, reason: str) -> None:
    outcome = classify_telegram(exc)
    assert isinstance(outcome, Permanent) and outcome.reason == reason
    assert type(exc).__name__ in outcome.detail


def test_a_detail_names_the_error_once() -> None:
    outcome = classify_telegram(Forbidden("Forbidden: bot was kicked from the group chat"))
    assert outcome.detail == "Forbidden: bot was kicked from the group chat"
    outcome = classify_telegram(BadRequest("Chat not found"))
    assert outcome.detail == "BadRequest: Chat not found"


async def test_the_sender_masks_its_token_in_what_it_reports(fake_telegram: FakeTelegram) -> None:
    # A proxy (or a Bot API server) may echo the request URL, which holds the token.
    fake_telegram.faults.answer_next(
        status=400,
        body=f'{{"ok":false,"description":"Bad Request: no such path /bot{TOKEN}/x"}}'.encode(),
        content_type="application/json",
    )
    bot = sender(fake_telegram)
    outcome = await bot.send(message())
    await bot.close()
    assert isinstance(outcome, Permanent) and outcome.reason == "bad_request"
    assert TOKEN not in outcome.detail and "[REDACTED]" in outcome.detail


# ------------------------------------------------------------------ sending


async def test_sends_and_returns_the_message_id(
    fake_telegram: FakeTelegram, bot: TelegramSender
) -> None:
    first = await bot.send(message("<b>one</b> &amp; more"))
    second = await bot.send(message("two", link_preview_options={"is_disabled": True}))
    assert (first, second) == (Sent("1"), Sent("2"))
    one, two = fake_telegram.messages_in(CHAT_ID)
    assert (one.text, one.raw, one.parse_mode) == ("one & more", "<b>one</b> &amp; more", "HTML")
    # The renderer's parameters arrive as given (PTB JSON-encodes the non-strings).
    assert two.params["link_preview_options"] == {"is_disabled": True}
    assert two.params["chat_id"] == CHAT_ID


async def test_reply_to_is_passed_through(fake_telegram: FakeTelegram, bot: TelegramSender) -> None:
    await bot.send(message("parent"))
    assert await bot.send(message("child"), "1") == Sent("2")
    # A parent deleted meanwhile must not cost the message.
    assert await bot.send(message("orphan"), "99") == Sent("3")
    replies = [(m.text, m.reply_to) for m in fake_telegram.messages]
    assert replies == [("parent", None), ("child", 1), ("orphan", None)]
    assert fake_telegram.messages[2].params["reply_parameters"] == {
        "message_id": 99,
        "allow_sending_without_reply": True,
    }


async def test_topic_id_becomes_message_thread_id(fake_telegram: FakeTelegram) -> None:
    fake_telegram.add_chat(-1002000000002, forum=True, topics={7})
    in_topic = sender(fake_telegram, chat_id=-1002000000002, topic_id=7)
    no_topic = sender(fake_telegram, chat_id=-1002000000002, topic_id=8)
    assert await in_topic.send(message()) == Sent("1")
    outcome = await no_topic.send(message())
    await in_topic.close()
    await no_topic.close()
    assert fake_telegram.messages[0].thread_id == 7
    assert isinstance(outcome, Permanent) and outcome.reason == "topic_not_found"


async def test_media_is_sent_as_media(fake_telegram: FakeTelegram, bot: TelegramSender) -> None:
    assert await bot.send(photo()) == Sent("1")
    [posted] = fake_telegram.messages
    assert (posted.method, posted.media, posted.text) == ("sendPhoto", PHOTO, "look")


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("chat_id", "call", "reason"),
    [
        (-1009999999999, message(), "chat_not_found"),
        ("kicked", message(), "forbidden"),
        (CHAT_ID, message("x" * 4097), "bad_request"),
        (CHAT_ID, message("😀" * 2049), "bad_request"),  # 4098 UTF-16 units
        (
            CHAT_ID,
            TelegramCall("sendPhoto", {"photo": PHOTO, "caption": "x" * 1025}),
            "bad_request",
        ),
        (CHAT_ID, message(""), "bad_request"),
    ],
)
async def test_permanent_refusals(
    fake_telegram: FakeTelegram, chat_id: int | str, call: TelegramCall, reason: str
) -> None:
    if chat_id == "kicked":
        chat_id = fake_telegram.add_chat(-5000).id
        fake_telegram.kick(chat_id)
    sender_ = sender(fake_telegram, chat_id=chat_id)
    outcome = await sender_.send(call)
    await sender_.close()
    assert isinstance(outcome, Permanent) and outcome.reason == reason
    assert fake_telegram.messages == []


@pytest.mark.parametrize("token", ["not-a-token", "987654321:AAWrongTokenThatLooksRight0123456789"])
async def test_bad_token(fake_telegram: FakeTelegram, token: str) -> None:
    sender_ = sender(fake_telegram, token=token)
    outcome = await sender_.send(message())
    await sender_.close()
    assert isinstance(outcome, Permanent) and outcome.reason == "unauthorized"


async def test_503_is_retried_later(fake_telegram: FakeTelegram, bot: TelegramSender) -> None:
    fake_telegram.faults.fail_next(1, status=503)
    outcome = await bot.send(message())
    assert isinstance(outcome, RetryLater) and outcome.reason == "server_error"
    assert fake_telegram.messages == []
    assert await bot.send(message()) == Sent("1")


@pytest.mark.parametrize("retry_after", [2, 0.5])
async def test_429_honours_retry_after(
    fake_telegram: FakeTelegram, bot: TelegramSender, retry_after: float
) -> None:
    fake_telegram.faults.rate_limit_next(1, retry_after=retry_after)
    outcome = await bot.send(message())
    assert isinstance(outcome, RetryLater)
    assert (outcome.reason, outcome.after, outcome.rate_limited) == (
        "rate_limited",
        retry_after,
        True,
    )


async def test_enforced_chat_rate_limit(fake_telegram: FakeTelegram, bot: TelegramSender) -> None:
    fake_telegram.enforce_rate_limits()
    assert await bot.send(message("one")) == Sent("1")
    outcome = await bot.send(message("two"))
    assert isinstance(outcome, RetryLater) and (outcome.after, outcome.rate_limited) == (1, True)
    assert fake_telegram.count(429) == 1


async def test_timeout(fake_telegram: FakeTelegram) -> None:
    fake_telegram.faults.delay_next(1, seconds=2)
    sender_ = sender(fake_telegram, timeout=0.2)
    outcome = await sender_.send(message())
    await sender_.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "timeout"


async def test_connection_refused(unused_tcp_port: int) -> None:
    sender_ = TelegramSender(
        token=TOKEN, chat_id=CHAT_ID, timeout=2.0, api_url=f"http://127.0.0.1:{unused_tcp_port}"
    )
    outcome = await sender_.send(message())
    await sender_.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "network"


# ------------------------------------------------------------------ recoveries


async def test_unparsable_html_is_resent_as_plain_text(
    fake_telegram: FakeTelegram, bot: TelegramSender, caplog: pytest.LogCaptureFixture
) -> None:
    assert await bot.send(message("<b>5 < 6 &amp; <i>open")) == Sent("1")
    [posted] = fake_telegram.messages
    assert (posted.parse_mode, posted.text) == (None, "5 < 6 & open")
    assert "plain text" in caplog.text
    assert fake_telegram.count(400) == 1


async def test_unparsable_caption_is_resent_as_plain_text(
    fake_telegram: FakeTelegram, bot: TelegramSender
) -> None:
    call = TelegramCall("sendPhoto", {"photo": PHOTO, "caption": "<b>x", "parse_mode": "HTML"})
    assert await bot.send(call) == Sent("1")
    assert (fake_telegram.messages[0].method, fake_telegram.messages[0].text) == ("sendPhoto", "x")


@pytest.mark.parametrize(
    "refusal",
    [
        "wrong file identifier/HTTP URL specified",
        "failed to get HTTP URL content",
        "wrong type of the web page content",
    ],
)
async def test_refused_media_falls_back_to_a_link(
    fake_telegram: FakeTelegram, bot: TelegramSender, refusal: str
) -> None:
    fake_telegram.refuse_media(PHOTO, refusal)
    assert await bot.send(photo(), None) == Sent("1")
    [posted] = fake_telegram.messages
    assert (posted.method, posted.text) == ("sendMessage", "photo")
    assert PHOTO in (posted.raw or "")


async def test_refused_media_without_fallback(
    fake_telegram: FakeTelegram, bot: TelegramSender
) -> None:
    fake_telegram.refuse_media(PHOTO)
    outcome = await bot.send(photo(fallback=False))
    assert isinstance(outcome, Permanent) and outcome.reason == "bad_request"


async def test_follows_a_migrated_group(
    fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    fake_telegram.add_chat(-4000)
    fake_telegram.migrate(-4000, -1004000000000)
    sender_ = sender(fake_telegram, chat_id=-4000)
    first = await sender_.send(message("first"))
    second = await sender_.send(message("second"))
    await sender_.close()
    assert (first, second) == (Sent("1"), Sent("2"))
    assert sender_.chat_id == -1004000000000
    assert [m.chat_id for m in fake_telegram.messages] == [-1004000000000] * 2
    assert fake_telegram.count(400) == 1  # the second message went straight to the new chat
    [warning] = [r for r in caplog.records if r.name == "relay.integrations.telegram"]
    assert warning.levelno == logging.WARNING
    assert "chat_id" in warning.getMessage() and "-1004000000000" in warning.getMessage()


async def test_close_then_send_again(fake_telegram: FakeTelegram, bot: TelegramSender) -> None:
    await bot.close()
    await bot.close()
    assert await bot.send(message()) == Sent("1")


# ------------------------------------------------------------------ secrets


async def test_token_never_leaks(
    fake_telegram: FakeTelegram, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "555555:AALeakCheckTokenSecret-0123456789ab"
    fake_telegram.tokens.add(secret)
    # Only `hasty` is meant to time out: the others' answers may take a loaded machine
    # seconds, and the call `hasty` gives up on is held far longer than its 0.3 s.
    good = sender(fake_telegram, token=secret, timeout=10.0)
    hasty = sender(fake_telegram, token=secret, timeout=0.3)
    wrong = sender(fake_telegram, token="555555:AALeakCheckTokenWRONG-0123456789ab")
    gone = TelegramSender(
        token=secret, chat_id=CHAT_ID, timeout=10.0, api_url=f"http://127.0.0.1:{unused_tcp_port}"
    )
    fake_telegram.faults.fail_next(1, status=502)
    fake_telegram.faults.delay_next(1, seconds=10)  # a stopping fake wakes it: costs nothing
    outcomes = [
        await good.send(message()),
        await hasty.send(message()),
        await good.send(message("<b>x")),
        await wrong.send(message()),
        await gone.send(message()),
    ]
    for sender_ in (good, hasty, wrong, gone):
        await sender_.close()
    reasons = [getattr(o, "reason", "sent") for o in outcomes]
    assert reasons == ["server_error", "timeout", "sent", "unauthorized", "network"]
    assert "HTTP Request: POST" in caplog.text  # httpx did log the URLs, scrubbed
    assert "Set Bot API URL" in caplog.text  # and PTB its base URL
    for token in (secret, "555555:AALeakCheckTokenWRONG-0123456789ab"):
        assert token not in caplog.text
        assert all(token not in getattr(o, "detail", "") for o in outcomes)
