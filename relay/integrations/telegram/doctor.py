"""`relay doctor` for a Telegram destination: check it for real, and say what to do next.

`getMe` (the token works), `getChat` (the chat exists; a forum when `topic_id` is set) and
`getChatMember` for the bot itself (it may post there). With `send_test`, a short test
message goes through the relay's own sender. Every failed call is read by the sender's
classifier (relay/integrations/telegram/classify.py), so the doctor and the lanes agree
on what an answer means; only the advice is the doctor's.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from telegram import Chat, ChatFullInfo, ChatMember, User
from telegram.error import ChatMigrated

from relay.errors import Reason
from relay.integrations.base import Finding, Link, Status
from relay.integrations.telegram.classify import classify_telegram
from relay.integrations.telegram.config import TelegramDestination
from relay.integrations.telegram.render import TelegramCall
from relay.integrations.telegram.send import LIBRARY_LOGGERS, TelegramSender, build_bot
from relay.outcome import Failure, Sent
from relay.redact import Redactor, scrubbed

T = TypeVar("T")

TEST_TEXT = (
    "Test message from relay doctor (oneroute-relay) for destination {name}: the relay can "
    "post here. You may delete this message."
)
REISSUE = "copy the token again from @BotFather (/mybots → your bot → API Token)"


async def diagnose(
    name: str, destination: TelegramDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.token is not None and destination.chat_id is not None
    token, chat_id, topic_id = (
        destination.token.get_secret_value(),
        destination.chat_id,
        destination.topic_id,
    )
    link = Link.to(destination.api_url, per_call)
    with scrubbed(LIBRARY_LOGGERS, Redactor(token)):
        message = await _check(token, destination, link)
    if not send_test:
        # The Bot API has no call that looks up one forum topic; only posting proves it.
        topic_note = " (the topic itself is checked only by --send-test)" if topic_id else ""
        return "ok", message + topic_note
    sender = TelegramSender(
        token=token,
        chat_id=chat_id,
        topic_id=topic_id,
        api_url=destination.api_url,
        timeout=per_call,
    )
    try:
        outcome = await sender.send(
            TelegramCall("sendMessage", {"text": TEST_TEXT.format(name=name)}), None
        )
    finally:
        await sender.close()
    if isinstance(outcome, Sent):
        return "ok", f"{message}; test message posted"
    return "broken", _post_failure(outcome, destination, link)


async def _check(token: str, destination: TelegramDestination, link: Link) -> str:
    """getMe, getChat, getChatMember: the ok message, or a Finding."""
    chat_id, topic_id = destination.chat_id, destination.topic_id
    assert chat_id is not None
    redact = Redactor(token)
    bot, request = build_bot(token, api_url=destination.api_url, timeout=link.per_call)
    try:
        me = await _call(bot.get_me(), chat_id, link, redact)
        chat = await _call(bot.get_chat(chat_id), chat_id, link, redact)
        _check_topic(topic_id, chat)
        member = None
        if chat.type != Chat.PRIVATE:
            member = await _call(bot.get_chat_member(chat.id, me.id), chat_id, link, redact)
        message = _may_post(me, chat, member, topic_id)
        if destination.topic_per_conversation:
            _check_topics(chat, member)
        return message
    finally:
        await request.shutdown()


async def _call(call: Awaitable[T], chat_id: int | str, link: Link, redact: Redactor) -> T:
    try:
        return await call
    except Exception as exc:  # every Bot API answer, transport error and unreadable answer
        raise Finding("broken", telegram_problem(exc, link, chat_id, redact)) from None


def telegram_problem(
    exc: BaseException, link: Link, chat_id: int | str = "", redact: Redactor | None = None
) -> str:
    """What a failed Bot API call means, and what to do about it (`chat_id`: the chat the
    call was about, if any)."""
    outcome = classify_telegram(exc)
    text = (redact or Redactor())(str(exc) or type(exc).__name__)
    lower = text.lower()
    reason = outcome.reason
    if reason == Reason.UNAUTHORIZED:
        if "not found" in lower:  # Telegram's answer to a token that is not token-shaped
            return (
                "Telegram answered Not Found: the token is malformed (it looks like "
                f"123456789:AA…) or api_url is not a Bot API server — {REISSUE}"
            )
        return f"Telegram rejected the bot token ({text}) — {REISSUE}"
    if isinstance(exc, ChatMigrated):
        new = exc.new_chat_id
        return f"chat {chat_id} was upgraded to a supergroup with id {new} — set chat_id: {new}"
    if reason == Reason.RATE_LIMITED:
        return "Telegram is rate limiting this bot — wait a minute and run relay doctor again"
    if reason == Reason.FORBIDDEN and "rights" not in lower:
        return _forbidden(lower, text, chat_id)
    if reason == Reason.CHAT_NOT_FOUND:
        return chat_not_found(chat_id)
    if reason in (Reason.BAD_REQUEST, Reason.TOPIC_NOT_FOUND, Reason.FORBIDDEN):
        return f"Telegram refused the request for chat {chat_id} ({text}) — check chat_id"
    if reason in (Reason.TIMEOUT, Reason.NETWORK):
        return link.unreachable(timed_out=reason == Reason.TIMEOUT)
    if reason == Reason.BAD_ANSWER:
        return (
            f"the answer is not the Bot API's ({text}) — a proxy on the way, or api_url is not "
            "a Bot API server; check api_url and try again"
        )
    return (
        f"Telegram answered {text} — the Bot API server (or a proxy on the way) is in trouble; "
        "try again in a few minutes"
    )


def chat_not_found(chat_id: int | str) -> str:
    return (
        f"chat {chat_id} not found — add the bot to the group (or send it /start in a private "
        "chat), then run relay telegram-chats to see its id"
    )


def _forbidden(lower: str, text: str, chat_id: int | str) -> str:
    if "blocked by the user" in lower:
        return (
            f"the user of private chat {chat_id} blocked the bot — ask them to unblock it and "
            "send it /start"
        )
    if "channel" in lower:
        return (
            f"the bot is not in channel {chat_id} — add it to the channel as an administrator "
            "allowed to post messages"
        )
    if "kicked" in lower:
        return (
            f"the bot was removed from chat {chat_id} — add it to the group again (if it was "
            "banned, unban it first in the group's removed users)"
        )
    return f"Telegram refused access to chat {chat_id} ({text}) — add the bot to the chat"


def _check_topic(topic_id: int | None, chat: ChatFullInfo) -> None:
    if topic_id is not None and not chat.is_forum:
        raise Finding(
            "broken",
            f"topic_id {topic_id} is set, but {_describe(chat)} is not a forum — remove "
            "topic_id, or turn on Topics in the group's settings",
        )


def _check_topics(chat: ChatFullInfo, member: ChatMember | None) -> None:
    """topic_per_conversation opens topics: a forum, and the right to manage its topics."""
    if not chat.is_forum:
        raise Finding(
            "broken",
            f"topic_per_conversation is on, but {_describe(chat)} is not a forum — turn on "
            "Topics in the group's settings, or turn topic_per_conversation off",
        )
    status = member.status if member is not None else None
    if status != ChatMember.OWNER and not getattr(member, "can_manage_topics", False):
        raise Finding(
            "broken",
            f"topic_per_conversation is on, but the bot may not manage topics in "
            f"{_describe(chat)} — make it an administrator with Manage Topics",
        )


def _describe(chat: ChatFullInfo) -> str:
    if chat.type == Chat.PRIVATE:
        who = " ".join(filter(None, [chat.first_name, chat.last_name])) or chat.username or "?"
        return f"private chat with {who} ({chat.id})"
    title = chat.title or (f"@{chat.username}" if chat.username else "")
    return f'{chat.type} "{title}" ({chat.id})'


def _may_post(me: User, chat: ChatFullInfo, member: ChatMember | None, topic_id: int | None) -> str:
    """The ok message when the bot may post in `chat`; otherwise a broken finding."""
    where = _describe(chat)
    problem = _membership_problem(chat, member, where)
    if problem is not None:
        raise Finding("broken", problem)
    role = f" as {member.status}" if member is not None else ""
    topic = f", topic {topic_id}" if topic_id is not None else ""
    return f"bot @{me.username} in {where}{role}{topic}"


def _membership_problem(chat: ChatFullInfo, member: ChatMember | None, where: str) -> str | None:
    if member is None:
        return None  # a private chat: getChat answering means the user started the bot
    status = member.status
    if status in (ChatMember.LEFT, ChatMember.BANNED):
        state = "was banned from" if status == ChatMember.BANNED else "is not a member of"
        return f"the bot {state} {where} — add it to the chat again (unban it first if banned)"
    if chat.type == Chat.CHANNEL:
        # In a channel only the owner and administrators with Post Messages may post.
        if status == ChatMember.OWNER or getattr(member, "can_post_messages", False):
            return None
        return (
            f"the bot may not post in {where}: in a channel it must be an administrator with "
            "Post Messages — make it one (channel settings → Administrators)"
        )
    if status == ChatMember.RESTRICTED and not getattr(member, "can_send_messages", True):
        return f"the bot is restricted in {where} and may not send messages — lift the restriction"
    members_may_send = chat.permissions is None or chat.permissions.can_send_messages is not False
    if status == ChatMember.MEMBER and not members_may_send:
        return (
            f"members may not send messages in {where} — make the bot an administrator, or "
            "allow members to send messages in the group's permissions"
        )
    return None


def _post_failure(outcome: Failure, destination: TelegramDestination, link: Link) -> str:
    """What a failed test post means, from the sender's classification of it."""
    detail = outcome.detail or outcome.reason
    if outcome.reason in (Reason.NETWORK, Reason.TIMEOUT):
        return link.unreachable(outcome.reason == Reason.TIMEOUT)
    table = {
        Reason.TOPIC_NOT_FOUND: f"topic {destination.topic_id} not found in chat "
        f"{destination.chat_id} — check topic_id (in a topic message's link "
        "https://t.me/c/CHAT/TOPIC/MESSAGE it is TOPIC), or remove it",
        Reason.CHAT_NOT_FOUND: chat_not_found(destination.chat_id or ""),
        Reason.UNAUTHORIZED: f"Telegram rejected the bot token — {REISSUE}",
        Reason.FORBIDDEN: f"Telegram refused the test message ({detail}) — make sure the bot "
        "may post in the chat (add it again, or make it an administrator)",
        Reason.RATE_LIMITED: "Telegram is rate limiting this bot — wait a minute and run relay "
        "doctor again",
        Reason.SERVER_ERROR: f"Telegram answered {detail} — try again in a few minutes",
        Reason.BAD_ANSWER: f"Telegram answered {detail} — a proxy on the way, or api_url is not "
        "a Bot API server; check api_url and try again",
    }
    return table.get(
        outcome.reason,
        f"Telegram refused the test message ({detail}) — check chat_id and topic_id",
    )
