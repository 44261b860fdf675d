"""`relay telegram-chats`: the chats each configured Telegram bot has recently heard from,
with their ids, so `chat_id` can be filled in without guesswork.

Each distinct bot (token and Bot API server) among the Telegram destinations, enabled or
not, is asked `getUpdates`. Without an offset it confirms nothing, so running this twice
shows the same chats; `timeout=0` makes it a short poll. `allowed_updates` is not sent on
purpose: Telegram remembers it for later calls, and this command must change nothing.
Chats come from every kind of update that has one (messages, channel posts, edits, the
bot's own membership changes, ...), deduplicated, the latest state winning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from telegram import Chat, ChatMember, Update
from telegram.error import Conflict

from relay.config.model import Config
from relay.integrations.base import Link
from relay.integrations.telegram.config import TelegramDestination
from relay.integrations.telegram.doctor import telegram_problem
from relay.integrations.telegram.send import LIBRARY_LOGGERS, build_bot
from relay.redact import Redactor, scrubbed

UPDATES_LIMIT = 100  # what one getUpdates call hands out at most

NOTHING_FOUND = (
    "no chats in the bot's recent updates — add the bot to the group (or post in the channel "
    "where it is an administrator, or send it a message in a private chat), then run relay "
    "telegram-chats again. Telegram keeps updates for 24 hours. In a group with privacy mode "
    "on (the default; @BotFather → /setprivacy) the bot sees only commands and mentions, but "
    "being added to the group always shows up."
)
NO_BOTS = (
    "no Telegram destination with a token in the config — add one (type: telegram, token: "
    '"${TELEGRAM_BOT_TOKEN}") and run relay telegram-chats again'
)


@dataclass(frozen=True)
class FoundChat:
    """A chat seen in the bot's updates. `removed`: its latest update says the bot left or
    was removed from it."""

    id: int
    type: str
    title: str
    username: str | None = None
    forum: bool = False
    removed: bool = False


@dataclass(frozen=True)
class BotChats:
    """What one bot has seen, or why it could not be asked (`problem`, with what to do).

    `destinations` are the configured destinations using this bot; `targets` maps each
    chat id they post to onto their names, to mark the chats already configured."""

    destinations: tuple[str, ...]
    username: str | None = None
    chats: tuple[FoundChat, ...] = ()
    problem: str | None = None
    truncated: bool = False  # a full page of updates: older chats only
    targets: dict[int | str, list[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- entry points


async def find_chats(
    config: Config,
    timeout: float = 10.0,  # noqa: ASYNC109 - a limit per API call, handed to the HTTP client
) -> list[BotChats]:
    """Ask every configured bot (concurrently) which chats it has heard from."""
    bots = _bots(config)
    found = await asyncio.gather(
        *(_ask(token, api_url, names, timeout) for (token, api_url), names in bots.items())
    )
    return [_with_targets(result, config) for result in found]


def format_chats(results: Sequence[BotChats]) -> str:
    """A block per bot: a heading, then one line per chat (or what to do when none).
    Secrets never reach it: problems are masked where they are written (`_ask`)."""
    if not results:
        return NO_BOTS
    blocks = [_format_bot(result) for result in results]
    if any(result.chats for result in results):
        blocks.append(
            "Put the id of the chat to post in as chat_id of its destination (groups and "
            "channels have negative ids)."
        )
    return "\n\n".join(blocks)


def exit_code(results: Sequence[BotChats]) -> int:
    """1 when there is no bot to ask or a bot could not be asked, else 0 (even with no chats)."""
    return 1 if not results or any(result.problem for result in results) else 0


# ---------------------------------------------------------------------------- asking


def _bots(config: Config) -> dict[tuple[str, str], tuple[str, ...]]:
    """Destination names per distinct (token, Bot API server), in config order."""
    bots: dict[tuple[str, str], tuple[str, ...]] = {}
    for name, destination in config.destinations.items():
        if isinstance(destination, TelegramDestination) and destination.token is not None:
            key = (destination.token.get_secret_value(), destination.api_url.rstrip("/"))
            bots[key] = (*bots.get(key, ()), name)
    return bots


async def _ask(token: str, api_url: str, names: tuple[str, ...], per_call: float) -> BotChats:
    """What one bot has seen; every text in it masked of the bot's token (a chat may even be
    named after it)."""
    redact = Redactor(token)
    link = Link.to(api_url, per_call)
    username: str | None = None
    with scrubbed(LIBRARY_LOGGERS, redact):
        bot, request = build_bot(token, api_url=api_url, timeout=per_call)
        try:
            username = (await bot.get_me()).username
            updates = await bot.get_updates(timeout=0, limit=UPDATES_LIMIT)
        except Exception as exc:  # every Bot API answer, transport error and unreadable answer
            return BotChats(names, username, problem=redact(_problem(exc, link, api_url)))
        finally:
            await request.shutdown()
    chats = tuple(
        replace(chat, title=redact(chat.title), username=chat.username and redact(chat.username))
        for chat in _chats(updates)
    )
    return BotChats(names, username, chats, truncated=len(updates) >= UPDATES_LIMIT)


def _problem(exc: BaseException, link: Link, api_url: str) -> str:
    if isinstance(exc, Conflict):
        if "webhook" in str(exc).lower():
            return (
                "this bot has a webhook set, so Telegram hands out no updates here (409 "
                "Conflict) — the program the webhook points at receives them: look for the "
                "chat id there, or delete the webhook (open "
                f"{api_url.rstrip('/')}/bot<TOKEN>/deleteWebhook with the bot token in place of "
                "<TOKEN>), add the bot to the group again and run relay telegram-chats again"
            )
        return (
            "another program is reading this bot's updates (409 Conflict) — stop it for a "
            "moment and run relay telegram-chats again, or look for the chat id in that program"
        )
    return telegram_problem(exc, link)


def _chats(updates: Sequence[Update]) -> tuple[FoundChat, ...]:
    """One entry per chat, in order of first appearance, with its latest details."""
    found: dict[int, FoundChat] = {}
    for update in updates:
        chat = update.effective_chat
        if chat is None:
            continue
        found[chat.id] = FoundChat(
            chat.id,
            chat.type,
            _title(chat),
            chat.username,
            bool(chat.is_forum),
            removed=_bot_left(update),
        )
    return tuple(found.values())


def _title(chat: Chat) -> str:
    if chat.type == Chat.PRIVATE:
        return " ".join(filter(None, [chat.first_name, chat.last_name]))
    return chat.title or ""


def _bot_left(update: Update) -> bool:
    change = update.my_chat_member
    return change is not None and change.new_chat_member.status in (
        ChatMember.LEFT,
        ChatMember.BANNED,
    )


def _with_targets(result: BotChats, config: Config) -> BotChats:
    targets: dict[int | str, list[str]] = {}
    for name in result.destinations:
        destination = config.destinations[name]
        assert isinstance(destination, TelegramDestination)
        if destination.chat_id is not None:
            targets.setdefault(destination.chat_id, []).append(name)
    return BotChats(
        result.destinations,
        result.username,
        result.chats,
        result.problem,
        result.truncated,
        targets,
    )


# ---------------------------------------------------------------------------- output


def _format_bot(result: BotChats) -> str:
    used_by = f"used by {', '.join(result.destinations)}"
    heading = f"bot @{result.username} ({used_by})" if result.username else f"bot {used_by}"
    if result.problem is not None:
        return f"{heading}:\n  {result.problem}"
    if not result.chats:
        return f"{heading}:\n  {NOTHING_FOUND}"
    widths = (
        max(len(str(chat.id)) for chat in result.chats),
        max(len(_kind(chat)) for chat in result.chats),
    )
    lines = [f"{heading}:"]
    lines += [f"  {_chat_line(chat, widths, result.targets)}" for chat in result.chats]
    if result.truncated:
        lines.append(
            f"  (only the oldest {UPDATES_LIMIT} pending updates were read; a chat that wrote "
            "only recently may be missing)"
        )
    return "\n".join(lines)


def _kind(chat: FoundChat) -> str:
    return f"{chat.type} (forum)" if chat.forum else chat.type


def _chat_line(
    chat: FoundChat, widths: tuple[int, int], targets: dict[int | str, list[str]]
) -> str:
    name = f'"{chat.title}"' if chat.title else ""
    if chat.username:
        name = f"{name} @{chat.username}".strip()
    notes = []
    if chat.removed:
        notes.append("the bot was removed from this chat")
    names = targets.get(chat.id, []) + (
        targets.get(f"@{chat.username}", []) if chat.username else []
    )
    if names:
        notes.append(f"chat_id of {', '.join(names)}")
    suffix = f"  ({'; '.join(notes)})" if notes else ""
    return f"{chat.id:<{widths[0]}}  {_kind(chat):<{widths[1]}}  {name}{suffix}".rstrip()
