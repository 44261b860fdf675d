"""Replies from Telegram (relay/answers/telegram_in.py): the candidate rules as a table, then
the poller with the real python-telegram-bot client against the fake Bot API
(tests/fakes/telegram.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from relay.answers.model import Backoff, Reply, ReplySource
from relay.answers.telegram_in import TelegramPoller, telegram_replies
from relay.integrations.telegram.render import TelegramCall
from relay.integrations.telegram.send import TelegramSender, build_bot
from tests.fakes.telegram import CHAT_ID, HUMAN_ID, TOKEN, FakeTelegram
from tests.replies import Store
from tests.waiting import until

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

FORUM = -1002000000002
OTHER_CHAT = -1003000000003
WRONG_TOKEN = "987654321:AAWrongTokenForRelayRepliesTests000000"
FAST = Backoff(first=0.02, most=0.05, refused=0.05)


def source(chat: int | str = CHAT_ID, **kwargs: Any) -> ReplySource:
    return ReplySource("ops-telegram", chat, **kwargs)


# ------------------------------------------------------------------ what is a candidate
# Updates are built by the fake (not started: only its bookkeeping is used), so they have
# the shape Telegram gives them.


@pytest.fixture
def tg() -> FakeTelegram:
    fake = FakeTelegram()
    fake.add_chat(FORUM, forum=True, topics={7})
    fake.add_chat(OTHER_CHAT)
    fake.chats[CHAT_ID].message_ids += [1, 2]  # two messages the relay sent
    fake.chats[FORUM].message_ids += [1, 2]
    fake.chats[OTHER_CHAT].message_ids += [1]
    return fake


def test_a_reply_is_a_candidate(tg: FakeTelegram) -> None:
    update = tg.user_message(CHAT_ID, "We refund you today", reply_to=2)
    [reply] = telegram_replies(update, [source()])
    message = update["message"]
    assert reply == Reply(
        destination="ops-telegram",
        platform="telegram",
        key=f"ops-telegram:telegram:{CHAT_ID}:{message['message_id']}",
        user=str(HUMAN_ID),
        text="We refund you today",
        at=float(message["date"]),
        chat_id=CHAT_ID,
        message_id=message["message_id"],
        reply_to=2,
        topic=None,
    )


def test_a_topic_message_is_a_candidate(tg: FakeTelegram) -> None:
    [plain] = telegram_replies(tg.user_message(FORUM, "in the topic", thread_id=7), [source(FORUM)])
    assert (plain.topic, plain.reply_to) == (7, None), "the topic's first message is no reply"
    replying = tg.user_message(FORUM, "to that one", thread_id=7, reply_to=2)
    [reply] = telegram_replies(replying, [source(FORUM)])
    assert (reply.topic, reply.reply_to) == (7, 2)


def test_a_caption_is_the_text(tg: FakeTelegram) -> None:
    update = tg.user_message(CHAT_ID, "x", reply_to=1)
    message = update["message"]
    del message["text"]
    message["caption"] = "the receipt"
    message["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    assert [reply.text for reply in telegram_replies(update, [source()])] == ["the receipt"]


def test_what_is_not_a_candidate(tg: FakeTelegram) -> None:
    updates = {
        "no reply, no topic": tg.user_message(CHAT_ID, "just chatting"),
        "a bot": tg.user_message(CHAT_ID, "beep", is_bot=True, reply_to=2),
        "an edit": tg.user_message(CHAT_ID, "edited", reply_to=2, edited=True),
        "a note": tg.user_message(CHAT_ID, " NOTE: ask finance", reply_to=2),
        "another chat": tg.user_message(OTHER_CHAT, "elsewhere", reply_to=1),
        "a channel post": tg.add_update("channel_post", chat_id=CHAT_ID, text="news"),
        "a membership change": tg.add_update("my_chat_member", chat_id=CHAT_ID),
    }
    anonymous = tg.user_message(CHAT_ID, "as the group", reply_to=2)
    anonymous["message"]["sender_chat"] = {"id": CHAT_ID, "type": "supergroup", "title": "t"}
    updates["sent on behalf of a chat"] = anonymous
    thread = tg.user_message(CHAT_ID, "in a reply thread", reply_to=None)
    thread["message"]["message_thread_id"] = 2  # not a forum: no is_topic_message
    updates["a thread outside a forum"] = thread
    empty = tg.user_message(CHAT_ID, "   ", reply_to=2)
    updates["no text"] = empty
    sticker = tg.user_message(CHAT_ID, "x", reply_to=2)
    del sticker["message"]["text"]
    updates["a sticker"] = sticker
    odd = tg.user_message(CHAT_ID, "x", reply_to=2)
    odd["message"]["from"]["id"] = "4242"
    updates["an id that is not a number"] = odd
    updates["not an update"] = {"update_id": 1, "message": "hello"}
    for why, update in updates.items():
        assert telegram_replies(update, [source()]) == [], why


def test_only_listed_users_may_answer(tg: FakeTelegram) -> None:
    allowed = source(from_users=frozenset({123456789}))  # type: ignore[arg-type]
    assert telegram_replies(tg.user_message(CHAT_ID, "x", reply_to=2), [allowed]) == []
    update = tg.user_message(CHAT_ID, "x", reply_to=2, user_id=123456789)
    assert [reply.user for reply in telegram_replies(update, [allowed])] == ["123456789"]


def test_chats_named_by_username_and_each_destination(tg: FakeTelegram) -> None:
    update = tg.user_message(CHAT_ID, "x", reply_to=2)
    update["message"]["chat"]["username"] = "SupportTeam"
    sources = [
        ReplySource("by-id", CHAT_ID),
        ReplySource("by-id-text", str(CHAT_ID)),
        ReplySource("by-name", "@supportteam"),
        ReplySource("other", OTHER_CHAT),
        ReplySource("other-name", "@sales"),
    ]
    replies = telegram_replies(update, sources)
    assert [reply.destination for reply in replies] == ["by-id", "by-id-text", "by-name"]
    assert len({reply.key for reply in replies}) == 3


# ------------------------------------------------------------------ the poller


@pytest.fixture
async def poll(
    fake_telegram: FakeTelegram, recorder: Store
) -> AsyncIterator[Callable[..., TelegramPoller]]:
    """Make pollers (started by the test, closed after it whatever happens)."""
    made: list[TelegramPoller] = []

    def make(**kwargs: Any) -> TelegramPoller:
        options: dict[str, Any] = {
            "token": TOKEN,
            "sources": [source(), source(FORUM)],
            "on_reply": recorder,
            "api_url": fake_telegram.api_url,
            "timeout": 2.0,
            "poll_timeout": 5.0,
            "backoff": FAST,
            **kwargs,
        }
        poller = TelegramPoller(**options)
        made.append(poller)
        return poller

    yield make
    for poller in made:
        await poller.close()


async def relay_message(fake: FakeTelegram, chat: int = CHAT_ID, **params: Any) -> int:
    """A message the relay sends (through its sender): its id."""
    sender = TelegramSender(token=TOKEN, chat_id=chat, api_url=fake.api_url, timeout=2.0)
    try:
        await sender.send(TelegramCall("sendMessage", {"text": "New conversation", **params}))
    finally:
        await sender.close()
    return fake.messages_in(chat)[-1].message_id


def polled(fake: FakeTelegram) -> int:
    return sum(1 for call in fake.calls if call.method == "getUpdates")


async def test_replies_and_topic_messages_become_replies(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    fake_telegram.add_chat(FORUM, forum=True)
    first = await relay_message(fake_telegram)
    bot, request = build_bot(TOKEN, api_url=fake_telegram.api_url, timeout=2.0)
    try:
        topic = await bot.create_forum_topic(FORUM, "Ada Lovelace (+234 800 000 0001)")
    finally:
        await request.shutdown()
    in_topic = await relay_message(fake_telegram, FORUM, message_thread_id=topic.message_thread_id)
    await poll().start()

    fake_telegram.user_message(CHAT_ID, "Refund is on its way", reply_to=first)
    fake_telegram.user_message(FORUM, "Hello from the topic", thread_id=topic.message_thread_id)
    fake_telegram.user_message(
        FORUM, "About that", thread_id=topic.message_thread_id, reply_to=in_topic
    )
    await until(lambda: len(recorder.replies) == 3)

    assert [(r.chat_id, r.text, r.reply_to, r.topic) for r in recorder.calls] == [
        (CHAT_ID, "Refund is on its way", first, None),
        (FORUM, "Hello from the topic", None, topic.message_thread_id),
        (FORUM, "About that", in_topic, topic.message_thread_id),
    ]
    assert fake_telegram.allowed_updates == ["message"]
    await until(lambda: not fake_telegram.updates)  # all confirmed


async def test_what_is_not_an_answer_is_skipped_and_confirmed(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    fake_telegram.add_chat(OTHER_CHAT)
    parent = await relay_message(fake_telegram)
    elsewhere = await relay_message(fake_telegram, OTHER_CHAT)
    await poll(sources=[source(from_users=frozenset({str(HUMAN_ID)}))]).start()

    fake_telegram.user_message(CHAT_ID, "beep", is_bot=True, reply_to=parent)
    fake_telegram.user_message(CHAT_ID, "fixed typo", reply_to=parent, edited=True)
    fake_telegram.user_message(CHAT_ID, "who is this?", user_id=99, reply_to=parent)
    fake_telegram.user_message(CHAT_ID, "note: VIP customer", reply_to=parent)
    fake_telegram.user_message(OTHER_CHAT, "wrong chat", reply_to=elsewhere)
    fake_telegram.user_message(CHAT_ID, "no reply at all")
    fake_telegram.user_message(CHAT_ID, "the answer", reply_to=parent)
    await until(lambda: bool(recorder.calls))
    await until(lambda: not fake_telegram.updates)

    assert [reply.text for reply in recorder.calls] == ["the answer"]


async def test_an_update_is_confirmed_only_after_it_is_stored(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    parent = await relay_message(fake_telegram)
    poller = poll()
    await poller.start()
    recorder.hold = asyncio.Event()
    update = fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.calls))

    assert fake_telegram.updates == [update], "confirmed before it was stored"
    recorder.hold.set()
    await until(lambda: not fake_telegram.updates)
    assert len(recorder.replies) == 1


async def test_a_reply_that_could_not_be_stored_is_read_again(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = await relay_message(fake_telegram)
    await poll().start()
    recorder.failing = 2
    fake_telegram.user_message(CHAT_ID, "first", reply_to=parent)
    fake_telegram.user_message(CHAT_ID, "second", reply_to=parent)
    await until(lambda: len(recorder.replies) == 2)

    assert [reply.text for reply in recorder.calls] == ["first", "first", "first", "second"]
    assert [reply.text for reply in recorder.replies.values()] == ["first", "second"]
    assert "could not store a Telegram reply for ops-telegram" in caplog.text


async def test_an_update_the_relay_cannot_read_does_not_stop_the_poller(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    parent = await relay_message(fake_telegram)
    odd = fake_telegram.user_message(CHAT_ID, "from the far future", reply_to=parent)
    odd["message"]["date"] = 10**400  # an int, but no float: OverflowError
    fake_telegram.user_message(CHAT_ID, "the answer", reply_to=parent)
    await poll().start()
    await until(lambda: len(recorder.replies) == 1)
    assert [reply.text for reply in recorder.replies.values()] == ["the answer"]


async def test_a_poller_restarted_after_a_failure_reads_the_update_again(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    parent = await relay_message(fake_telegram)
    failing = Store()
    failing.failing = 1_000
    first = poll(on_reply=failing, backoff=Backoff(first=600, most=600, refused=600))
    await first.start()
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(failing.calls))
    await first.close()  # e.g. the relay restarts

    await poll().start()
    await until(lambda: bool(recorder.replies))
    [reply] = recorder.replies.values()
    assert reply.key == failing.calls[0].key and failing.replies == {}


async def test_a_webhook_is_said_once_and_polling_resumes_without_it(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    parent = await relay_message(fake_telegram)
    fake_telegram.set_webhook()
    poller = poll()
    await poller.start()
    await until(lambda: fake_telegram.count(409) >= 4)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "the bot has a webhook set" in warnings[0].message
    assert "trying again every 0.05 s" in warnings[0].message
    fake_telegram.webhook_url = None  # someone deleted it
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.replies))
    assert "reading Telegram updates again for ops-telegram" in caplog.text
    assert TOKEN not in caplog.text


async def test_a_wrong_token_is_said_once_without_the_token(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    poller = poll(token=WRONG_TOKEN)
    await poller.start()
    await until(lambda: fake_telegram.count(401) >= 4)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "Telegram refused the bot token (401 Unauthorized)" in warnings[0].message
    assert WRONG_TOKEN not in caplog.text and "[REDACTED]" in caplog.text  # httpx's URLs
    await poller.close()
    assert recorder.calls == []


async def test_another_poller_on_the_same_bot_is_said_once(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = await relay_message(fake_telegram)
    ours, theirs = poll(), poll(on_reply=Store())
    await ours.start()
    await theirs.start()
    await until(lambda: "another program is reading this bot's updates" in caplog.text)
    await theirs.close()

    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.replies))
    conflicts = [r for r in caplog.records if "another program" in r.message]
    assert {r.levelno for r in conflicts} <= {logging.WARNING, logging.DEBUG}
    assert "terminated by other getUpdates request" in conflicts[0].message


async def test_trouble_on_the_way_is_retried(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = await relay_message(fake_telegram)
    fake_telegram.faults.fail_next(2, status=502)
    fake_telegram.faults.answer_next(
        body=b'{"ok": true, "result": {"not": "a list"}}', content_type="application/json"
    )
    fake_telegram.faults.answer_next(body=b"<html>proxy</html>", content_type="text/html")
    fake_telegram.faults.rate_limit_next(retry_after=0)
    await poll().start()
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.replies))

    assert "cannot read updates (server_error: NetworkError: Bad Gateway)" in caplog.text
    assert "not a list" in caplog.text and "bad_answer" in caplog.text


async def test_an_update_without_an_id_does_not_stop_the_poller(
    fake_telegram: FakeTelegram,
    recorder: Store,
    poll: Callable[..., TelegramPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = await relay_message(fake_telegram)
    fake_telegram.faults.answer_next(
        body=b'{"ok": true, "result": [{"message": {}}]}', content_type="application/json"
    )
    await poll().start()
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.replies))
    assert "is not an update (no update_id)" in caplog.text


async def test_close_ends_a_waiting_poll_and_lets_a_reply_being_stored_finish(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    parent = await relay_message(fake_telegram)
    idle = poll(poll_timeout=600.0)
    await idle.start()
    await until(lambda: fake_telegram.polling)
    await idle.close()  # a ten-minute long poll does not hold it up
    await idle.close()

    busy = poll(grace=30.0)
    await busy.start()
    recorder.hold = asyncio.Event()
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.calls))
    closing = asyncio.create_task(busy.close())
    await asyncio.sleep(0)
    assert not closing.done()
    recorder.hold.set()
    await closing
    assert len(recorder.replies) == 1
    assert len(fake_telegram.updates) == 1, "stored, but not yet confirmed: read again later"


async def test_close_before_start_and_start_after_close(
    fake_telegram: FakeTelegram, recorder: Store, poll: Callable[..., TelegramPoller]
) -> None:
    parent = await relay_message(fake_telegram)
    poller = poll()
    await poller.close()
    await poller.start()
    await poller.start()  # once is enough
    await poller.close()
    await poller.start()
    fake_telegram.user_message(CHAT_ID, "answer", reply_to=parent)
    await until(lambda: bool(recorder.replies))
