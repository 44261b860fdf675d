"""`relay doctor`: check every configured destination for real, and say what to do next.

Slack bot tokens: `auth.test` (the token works; its scopes), then `conversations.info` (the
channel exists, is not archived, and the bot is in it or may post publicly). Telegram:
`getMe`, `getChat` (the chat exists; a forum when `topic_id` is set) and `getChatMember`
for the bot itself (it may post there). An incoming webhook cannot be checked without
posting; `send_test=True` posts a short, clearly labelled test message to every
destination that passed its checks, through the same senders the relay delivers with.

Every message says what to do next and passes through `redact()`. A network failure names
only the host: a Telegram token travels inside every Bot API URL path, and a Slack
webhook's path is its secret.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from telegram import Chat, ChatFullInfo, ChatMember, User
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from relay.config.model import Config, Destination
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination
from relay.redact import redact, register
from relay.render.messages import SlackMessage, TelegramCall
from relay.send.outcome import Outcome, Permanent, RetryLater, Sent
from relay.send.slack import SlackSender, SlackWebhookSender, close_web_client, web_client
from relay.send.telegram import TelegramSender, build_bot

Status = Literal["ok", "broken", "off", "unchecked"]
LABELS: dict[Status, str] = {"ok": "ok", "broken": "BROKEN", "off": "off", "unchecked": "unchecked"}
TEST_TEXT = (
    "Test message from relay doctor (oneroute-relay) for destination {name}: the relay can "
    "post here. You may delete this message."
)

_T = TypeVar("_T")
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
# Slack ids: C… public or private channel, G… older private channel, D… direct message.
_SLACK_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_SLACK_TOKEN_WORDS = [
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "not_allowed_token_type",
    "team_disabled",
]
_SLACK_TROUBLE_WORDS = {"fatal_error", "internal_error", "service_unavailable", "request_timeout"}
_SLACK_REISSUE = (
    "copy the Bot User OAuth Token (xoxb-…) again from your Slack app's OAuth & Permissions "
    "page; if the app was uninstalled, reinstall it"
)
TELEGRAM_REISSUE = "copy the token again from @BotFather (/mybots → your bot → API Token)"


@dataclass(frozen=True)
class Diagnosis:
    """One destination's verdict. `message` is redacted and says what to do when broken."""

    destination: str
    type: str
    status: Status
    message: str


class _Finding(Exception):
    """Ends a destination's checks early with a verdict."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Link:
    """Where one destination's calls go, as failure messages may name it: the host only,
    the per-call time limit, and the config key holding the URL."""

    host: str
    per_call: float
    setting: str = "api_url"

    @classmethod
    def to(cls, url: str, per_call: float, setting: str = "api_url") -> Link:
        parts = urlsplit(url)
        host = parts.hostname or "the server"
        return cls(f"{host}:{parts.port}" if parts.port else host, per_call, setting)

    def unreachable(self, timed_out: bool) -> str:
        why = f"no answer within {self.per_call:g} s" if timed_out else "connection failed"
        return (
            f"cannot reach {self.host} ({why}) — check the network connection, any proxy or "
            f"firewall, and {self.setting}"
        )


# ---------------------------------------------------------------------------- entry points


async def diagnose(
    config: Config,
    *,
    send_test: bool = False,
    timeout: float = 10.0,  # noqa: ASYNC109 - a limit per API call, handed to the SDK clients
) -> list[Diagnosis]:
    """Check every destination (concurrently); the verdicts come back in config order."""
    register(*config.secrets())  # idempotent; keeps callers that did not register safe
    checks = [
        _diagnose_one(name, destination, send_test, timeout)
        for name, destination in config.destinations.items()
    ]
    return list(await asyncio.gather(*checks))


def format_diagnoses(diagnoses: Sequence[Diagnosis]) -> str:
    """One line per destination, then a summary line naming every broken one."""
    lines = [f"{LABELS[d.status]:<9} {d.destination} ({d.type}): {d.message}" for d in diagnoses]
    lines.append(_summary(diagnoses))
    return redact("\n".join(lines))


def exit_code(diagnoses: Sequence[Diagnosis]) -> int:
    """1 when any destination is broken, else 0 (unchecked and off do not fail)."""
    return 1 if any(d.status == "broken" for d in diagnoses) else 0


def _summary(diagnoses: Sequence[Diagnosis]) -> str:
    if not diagnoses:
        return "no destinations configured — add some under destinations: in the config"
    broken = [d.destination for d in diagnoses if d.status == "broken"]
    if broken:
        return f"{len(broken)} broken: {', '.join(broken)} — fix them and run relay doctor again"
    counts = {status: sum(d.status == status for d in diagnoses) for status in LABELS}
    return (
        f"no broken destinations ({counts['ok']} ok, {counts['unchecked']} unchecked, "
        f"{counts['off']} off)"
    )


async def _diagnose_one(
    name: str, destination: Destination, send_test: bool, per_call: float
) -> Diagnosis:
    if not destination.enabled:
        return Diagnosis(name, destination.type, "off", "enabled is false or empty: skipped")
    status: Status
    try:
        status, message = await _check(name, destination, send_test, per_call)
    except _Finding as finding:
        status, message = finding.status, finding.message
    except Exception as exc:  # a doctor reports; it never ends in a traceback
        status = "broken"
        message = (
            f"unexpected error while checking ({type(exc).__name__}: {exc}) — run relay doctor "
            "again; if it persists, report it with this line"
        )
    return Diagnosis(name, destination.type, status, redact(message))


async def _check(
    name: str, destination: Destination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    if isinstance(destination, SlackDestination):
        if destination.webhook_url is not None:
            return await _check_slack_webhook(name, destination, send_test, per_call)
        return await _check_slack_bot(name, destination, send_test, per_call)
    if isinstance(destination, TelegramDestination):
        return await _check_telegram(name, destination, send_test, per_call)
    return "ok", "prints to the relay's terminal; nothing to check"


async def _post_test(
    sender: SlackSender | SlackWebhookSender | TelegramSender,
    message: SlackMessage | TelegramCall,
) -> Outcome:
    """Post one test message through the relay's own sender, then close the sender."""
    try:
        return await sender.send(message)  # type: ignore[arg-type]
    finally:
        await sender.close()


def _test_text(name: str) -> str:
    return TEST_TEXT.format(name=name)


def _detail(outcome: Permanent | RetryLater) -> str:
    return outcome.detail or outcome.reason


def _failed(outcome: Outcome) -> Permanent | RetryLater:
    assert not isinstance(outcome, Sent)
    return outcome


# ---------------------------------------------------------------------------- Slack


async def _check_slack_bot(
    name: str, destination: SlackDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.token is not None and destination.channel is not None
    token, channel = destination.token.get_secret_value(), destination.channel
    link = Link.to(destination.api_url, per_call)
    client = web_client(token, api_url=destination.api_url, timeout=per_call)
    try:
        auth = await _slack_call(client.auth_test(), "auth.test", link, _token_advice())
        bot = str(auth.get("user") or "your-bot")
        scopes = _scopes(auth)
        if scopes is not None and "chat:write" not in scopes:
            raise _Finding(
                "broken",
                f"bot @{bot} lacks the chat:write scope — add it under OAuth & Permissions → "
                "Bot Token Scopes, reinstall the app and use the new token",
            )
        status, message = await _slack_channel(client, channel, bot, scopes, link)
    finally:
        await close_web_client(client)
    if not send_test:
        return status, message
    sender = SlackSender(
        token=token, channel=channel, api_url=destination.api_url, timeout=per_call
    )
    outcome = await _post_test(sender, SlackMessage({"text": _slack_escape(_test_text(name))}))
    if isinstance(outcome, Sent):
        if status == "ok":
            return "ok", f"{message}; test message posted"
        return "ok", f"bot @{bot} posted a test message in {channel}"
    return "broken", _slack_post_failure(_failed(outcome), _post_advice(bot, channel), link)


async def _slack_call(
    call: Awaitable[AsyncSlackResponse],
    method: str,
    link: Link,
    advice: Mapping[str, _Finding],
) -> AsyncSlackResponse:
    """Await a Web API call; a refusal becomes the `advice` for its error word (or a
    generic finding), a transport failure "cannot reach"."""
    try:
        return await call
    except SlackApiError as exc:
        data = getattr(exc.response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, str) and error in advice:
            raise advice[error] from None
        status = getattr(exc.response, "status_code", None)
        raise _Finding("broken", _slack_trouble(method, error, status)) from None
    except _TRANSPORT_ERRORS as exc:
        raise _Finding("broken", link.unreachable(isinstance(exc, TimeoutError))) from None


def _slack_trouble(method: str, error: object, status: int | None) -> str:
    what = error if isinstance(error, str) else f"HTTP {status}"
    if error == "ratelimited" or status == 429:
        return f"Slack is rate limiting {method} — wait a minute and run relay doctor again"
    if error in _SLACK_TROUBLE_WORDS or (status or 0) >= 500:
        return (
            f"Slack answered {what} to {method} — Slack (or a proxy on the way) is in trouble; "
            "try again in a few minutes (https://slack-status.com)"
        )
    return (
        f"Slack refused {method} ({what}) — see https://api.slack.com/methods/{method} for "
        "what it means"
    )


def _token_advice() -> dict[str, _Finding]:
    return {
        word: _Finding("broken", f"Slack rejected the token ({word}) — {_SLACK_REISSUE}")
        for word in _SLACK_TOKEN_WORDS
    }


def _scopes(response: AsyncSlackResponse) -> set[str] | None:
    """The token's scopes, from Slack's `x-oauth-scopes` header; None when absent."""
    header = (response.headers or {}).get("x-oauth-scopes")
    return {s.strip() for s in header.split(",")} if isinstance(header, str) else None


async def _slack_channel(
    client: AsyncWebClient, channel: str, bot: str, scopes: set[str] | None, link: Link
) -> tuple[Status, str]:
    """Whether the bot may post in `channel`, from conversations.info."""
    if not _SLACK_ID.fullmatch(channel):
        # chat.postMessage takes names, conversations.info only ids.
        return "unchecked", (
            f"bot @{bot} works, but channel '{channel}' is a name and doctor checks channel "
            "ids — put the id from the channel's details (C0123456789) in the config, or run "
            "relay doctor --send-test"
        )
    response = await _slack_call(
        client.conversations_info(channel=channel),
        "conversations.info",
        link,
        _channel_advice(channel, bot),
    )
    info = response.get("channel") or {}
    where = f"#{info['name']} ({channel})" if info.get("name") else channel
    if info.get("is_archived"):
        raise _Finding("broken", f"{where} is archived — unarchive it, or set another channel")
    if info.get("is_im") or info.get("is_member", True):
        return "ok", f"bot @{bot} in {where}"
    # Without membership only chat:write.public lets a bot post, and only in public channels.
    if not info.get("is_private") and scopes is not None and "chat:write.public" in scopes:
        return "ok", f"bot @{bot} may post in {where} (not a member; it has chat:write.public)"
    raise _Finding(
        "broken", f"bot @{bot} is not in {where} — invite it: type /invite @{bot} in the channel"
    )


def _channel_advice(channel: str, bot: str) -> dict[str, _Finding]:
    return {
        **_token_advice(),
        "channel_not_found": _Finding(
            "broken",
            f"channel {channel} not found — check the id (channel details → Channel ID, at the "
            f"bottom); a private channel shows up only once the bot is in it: type /invite @{bot} "
            "in the channel",
        ),
        # The bot may well post without channels:read; only the check is impossible.
        "missing_scope": _Finding(
            "unchecked",
            f"bot @{bot} works, but its token lacks the channels:read scope (groups:read for a "
            f"private channel), so channel {channel} cannot be checked — add the scope and "
            "reinstall the app, or run relay doctor --send-test",
        ),
    }


def _post_advice(bot: str, channel: str) -> dict[str, str]:
    """Test-post failures the checks could not foresee (a channel given by name)."""
    return {
        "not_in_channel": f"bot @{bot} is not in {channel} — invite it: type /invite @{bot} in "
        "the channel",
        "channel_not_found": f"channel {channel} not found — use the channel's id (channel "
        f"details → Channel ID) and, for a private channel, /invite @{bot} first",
    }


async def _check_slack_webhook(
    name: str, destination: SlackDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.webhook_url is not None
    if not send_test:
        return "unchecked", (
            "incoming webhook: not checkable without posting — run relay doctor --send-test to "
            "post a test message"
        )
    url = destination.webhook_url.get_secret_value()
    sender = SlackWebhookSender(url=url, timeout=per_call)
    outcome = await _post_test(sender, SlackMessage({"text": _slack_escape(_test_text(name))}))
    if isinstance(outcome, Sent):
        return "ok", "incoming webhook accepted a test message"
    failure = _failed(outcome)
    advice = {
        "unauthorized": f"Slack refused the webhook ({_detail(failure)}): it was removed or the "
        "URL is wrong — add a new one (your Slack app → Incoming Webhooks → Add New Webhook) "
        "and set webhook_url",
        "channel_not_found": "the webhook's channel no longer exists — add a new webhook for an "
        "existing channel and set webhook_url",
        "is_archived": "the webhook's channel is archived — unarchive it, or add a webhook for "
        "another channel and set webhook_url",
    }
    return "broken", _slack_post_failure(failure, advice, Link.to(url, per_call, "webhook_url"))


def _slack_post_failure(
    outcome: Permanent | RetryLater, advice: Mapping[str, str], link: Link
) -> str:
    """What a failed test post means, from the sender's classification of it."""
    detail = _detail(outcome)
    if outcome.reason in advice:
        return advice[outcome.reason]
    if outcome.reason in ("network", "timeout"):
        return link.unreachable(outcome.reason == "timeout")
    table = {
        "unauthorized": f"Slack rejected the token ({detail}) — {_SLACK_REISSUE}",
        "forbidden": f"Slack refused the test message ({detail}) — the app lacks a permission "
        "(e.g. chat:write); add it under OAuth & Permissions and reinstall the app",
        "is_archived": "the channel is archived — unarchive it, or set another channel",
        "rate_limited": "Slack is rate limiting — wait a minute and run relay doctor again",
        "server_error": f"Slack answered {detail} — Slack (or a proxy on the way) is in "
        "trouble; try again in a few minutes",
    }
    return table.get(
        outcome.reason,
        f"Slack refused the test message ({detail}) — see Slack's documentation of this error",
    )


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------- Telegram


async def _check_telegram(
    name: str, destination: TelegramDestination, send_test: bool, per_call: float
) -> tuple[Status, str]:
    assert destination.token is not None and destination.chat_id is not None
    token, chat_id, topic_id = (
        destination.token.get_secret_value(),
        destination.chat_id,
        destination.topic_id,
    )
    link = Link.to(destination.api_url, per_call)
    bot, request = build_bot(token, api_url=destination.api_url, timeout=per_call)
    try:
        me = await _telegram_call(bot.get_me(), chat_id, link)
        chat = await _telegram_call(bot.get_chat(chat_id), chat_id, link)
        _check_topic(topic_id, chat)
        member = None
        if chat.type != Chat.PRIVATE:
            member = await _telegram_call(bot.get_chat_member(chat.id, me.id), chat_id, link)
        message = _may_post(me, chat, member, topic_id)
    finally:
        await request.shutdown()
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
    outcome = await _post_test(sender, TelegramCall("sendMessage", {"text": _test_text(name)}))
    if isinstance(outcome, Sent):
        return "ok", f"{message}; test message posted"
    return "broken", _telegram_post_failure(_failed(outcome), destination, link)


async def _telegram_call(call: Awaitable[_T], chat_id: int | str, link: Link) -> _T:
    try:
        return await call
    except (TelegramError, OSError) as exc:
        raise _Finding("broken", telegram_problem(exc, link, chat_id)) from None


def telegram_problem(exc: BaseException, link: Link, chat_id: int | str = "") -> str:
    """What a failed Bot API call means, and what to do about it (`chat_id`: the chat the
    call was about, if any)."""
    text = redact(str(exc))
    lower = text.lower()
    # Subclasses before NetworkError, their common base (BadRequest, TimedOut, ...).
    if isinstance(exc, InvalidToken):
        if "not found" in lower:  # Telegram's answer to a token that is not token-shaped
            return (
                "Telegram answered Not Found: the token is malformed (it looks like "
                f"123456789:AA…) or api_url is not a Bot API server — {TELEGRAM_REISSUE}"
            )
        return f"Telegram rejected the bot token ({text}) — {TELEGRAM_REISSUE}"
    if isinstance(exc, ChatMigrated):
        new = exc.new_chat_id
        return f"chat {chat_id} was upgraded to a supergroup with id {new} — set chat_id: {new}"
    if isinstance(exc, RetryAfter):
        return "Telegram is rate limiting this bot — wait a minute and run relay doctor again"
    if isinstance(exc, Forbidden):
        return _forbidden(lower, text, chat_id)
    if isinstance(exc, BadRequest):
        if "chat not found" in lower:
            return _chat_not_found(chat_id)
        return f"Telegram refused the request for chat {chat_id} ({text}) — check chat_id"
    if isinstance(exc, TimedOut | OSError):
        return link.unreachable(timed_out=isinstance(exc, TimedOut | TimeoutError))
    if isinstance(exc, NetworkError) and lower.startswith(("httpx.", "unknown error in http")):
        return link.unreachable(timed_out=False)  # PTB's wording when no answer came at all
    return (
        f"Telegram answered {text} — the Bot API server (or a proxy on the way) is in trouble; "
        "try again in a few minutes"
    )


def _chat_not_found(chat_id: int | str) -> str:
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
        raise _Finding(
            "broken",
            f"topic_id {topic_id} is set, but {_describe(chat)} is not a forum — remove "
            "topic_id, or turn on Topics in the group's settings",
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
        raise _Finding("broken", problem)
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


def _telegram_post_failure(
    outcome: Permanent | RetryLater, destination: TelegramDestination, link: Link
) -> str:
    """What a failed test post means, from the sender's classification of it."""
    detail = _detail(outcome)
    if outcome.reason in ("network", "timeout"):
        return link.unreachable(outcome.reason == "timeout")
    table = {
        "topic_not_found": f"topic {destination.topic_id} not found in chat "
        f"{destination.chat_id} — check topic_id (in a topic message's link "
        "https://t.me/c/CHAT/TOPIC/MESSAGE it is TOPIC), or remove it",
        "chat_not_found": _chat_not_found(destination.chat_id or ""),
        "unauthorized": f"Telegram rejected the bot token — {TELEGRAM_REISSUE}",
        "forbidden": f"Telegram refused the test message ({detail}) — make sure the bot may "
        "post in the chat (add it again, or make it an administrator)",
        "rate_limited": "Telegram is rate limiting this bot — wait a minute and run relay "
        "doctor again",
        "server_error": f"Telegram answered {detail} — try again in a few minutes",
    }
    return table.get(
        outcome.reason, f"Telegram refused the test message ({detail}) — check chat_id and topic_id"
    )
