"""Telegram in: people's replies to messages, and messages in forum topics, of watched chats,
read by long polling `getUpdates`.

One `TelegramPoller` per bot token serves every destination on that bot. Offsets are the
Bot API's: an update is confirmed by asking for the next one (`offset = update_id + 1`),
and the poller asks for it only once `on_reply` has completed for every reply in the
update. When storing fails, the poller waits and reads the same update again; a poller
restarted after that (or after a crash) reads it again too, and its key makes it a
duplicate if it had been stored after all.

Updates are read as JSON, not through python-telegram-bot's `Update.de_json`, so one
update of an unexpected shape cannot stop the poller; the HTTP side is the relay's own
Bot (`build_bot`, relay/integrations/telegram/send.py). Failures are classified as the
sender does (relay/integrations/telegram/classify.py); a rejected token or a 409 Conflict
(a webhook set on the bot, or another program reading its updates) is said once and
retried slowly. The token is masked in everything logged here, and the libraries' loggers
are scrubbed of it while the poller runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from telegram import Bot
from telegram.error import Conflict, InvalidToken
from telegram.request import HTTPXRequest

from relay.answers.model import DEFAULT_BACKOFF, Backoff, OnReply, Problems, Reply, ReplySource
from relay.errors import Reason
from relay.integrations.telegram.classify import classify_telegram
from relay.integrations.telegram.config import TELEGRAM_API_URL
from relay.integrations.telegram.send import LIBRARY_LOGGERS, build_bot
from relay.outcome import Permanent, RetryLater, describe, short_detail
from relay.redact import Redactor, scrub_loggers

_log = logging.getLogger("relay.answers.telegram")

POLL_TIMEOUT = 25.0  # seconds Telegram holds a getUpdates open when nothing is new
UPDATES_LIMIT = 100  # the most one getUpdates hands out
ALLOWED_UPDATES = ["message"]  # Telegram remembers this for the bot until changed


# ---------------------------------------------------------------------------- candidates


def telegram_key(destination: str, chat_id: int, message_id: int) -> str:
    """A Reply's key: a Telegram message is its chat and message id."""
    return f"{destination}:telegram:{chat_id}:{message_id}"


def telegram_replies(update: Mapping[str, Any], sources: Sequence[ReplySource]) -> list[Reply]:
    """The replies in one update (pure): a new `message` (not an edit, not a channel post)
    in a watched chat, from a person (`from.is_bot` false, not sent on behalf of a chat),
    from an allowed user, not a note, with text or a caption, that replies to a message or
    is in a forum topic — one per source watching that chat.

    In a forum, Telegram makes every topic message a reply to the topic's first (service)
    message; that is the topic, not a message replied to, so `reply_to` is then None."""
    message = update.get("message")
    if not isinstance(message, Mapping):
        return []
    chat, sender = message.get("chat"), message.get("from")
    if not isinstance(chat, Mapping) or not isinstance(sender, Mapping):
        return []
    chat_id, message_id, date = chat.get("id"), message.get("message_id"), message.get("date")
    if not all(_is_int(value) for value in (chat_id, message_id, date, sender.get("id"))):
        return []
    if sender.get("is_bot") is not False or "sender_chat" in message:
        return []
    text = message.get("text", message.get("caption"))
    if not isinstance(text, str) or not text.strip():
        return []
    topic = message.get("message_thread_id") if message.get("is_topic_message") is True else None
    parent = message.get("reply_to_message")
    reply_to = parent.get("message_id") if isinstance(parent, Mapping) else None
    topic = topic if _is_int(topic) else None
    reply_to = reply_to if _is_int(reply_to) and reply_to != topic else None
    if reply_to is None and topic is None:
        return []
    user = str(sender["id"])
    username = chat.get("username")
    return [
        Reply(
            destination=source.destination,
            platform="telegram",
            key=telegram_key(source.destination, chat_id, message_id),
            user=user,
            text=text,
            at=float(date),
            chat_id=chat_id,
            message_id=message_id,
            reply_to=reply_to,
            topic=topic,
        )
        for source in sources
        if _same_chat(source.place, chat_id, username)
        and source.allows(user)
        and not source.is_note(text)
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same_chat(place: str | int, chat_id: int, username: Any) -> bool:
    if isinstance(place, int):
        return place == chat_id
    if place.lstrip("-").isdigit():
        return int(place) == chat_id
    return isinstance(username, str) and place.lstrip("@").casefold() == username.casefold()


# ---------------------------------------------------------------------------- the poller


class TelegramPoller:
    """Long polls one bot's updates for the destinations (`sources`) that use it.

    `start()` returns at once; `close()` ends a waiting getUpdates at once, lets a reply
    being stored finish (for up to `grace` seconds) and awaits the task. `timeout` limits
    each call beyond the long poll's own `poll_timeout`."""

    def __init__(
        self,
        *,
        token: str,
        sources: Sequence[ReplySource],
        on_reply: OnReply,
        api_url: str = TELEGRAM_API_URL,
        timeout: float = 10.0,
        poll_timeout: float = POLL_TIMEOUT,
        backoff: Backoff = DEFAULT_BACKOFF,
        grace: float = 2.0,
    ) -> None:
        self.sources = tuple(sources)
        self.redact = Redactor(token)
        self._token = token
        self._on_reply = on_reply
        self._api_url = api_url
        self._timeout = timeout
        self._poll_timeout = poll_timeout
        self._backoff = backoff
        self._grace = grace
        self._names = ", ".join(sorted({source.destination for source in self.sources}))
        self._problems = Problems(_log)
        self._stopping = asyncio.Event()
        self._waiting = False  # in a getUpdates or a pause: safe to cancel
        self._task: asyncio.Task[None] | None = None
        self._bot: Bot | None = None
        self._request: HTTPXRequest | None = None
        self._unscrub: Callable[[], None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._unscrub = scrub_loggers(LIBRARY_LOGGERS, self.redact)
        self._bot, self._request = build_bot(
            self._token, api_url=self._api_url, timeout=self._timeout
        )
        self._stopping.clear()
        self._task = asyncio.create_task(self._run())
        _log.info("reading Telegram replies by long polling for %s", self._names)

    async def close(self) -> None:
        task = self._task
        if task is None:
            return
        self._stopping.set()
        if self._waiting:
            task.cancel()
        else:
            await asyncio.wait({task}, timeout=self._grace)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._request is not None:
            await self._request.shutdown()
        if self._unscrub is not None:
            self._unscrub()
        self._task = self._bot = self._request = self._unscrub = None

    async def _run(self) -> None:
        offset: int | None = None
        failures = 0
        while not self._stopping.is_set():
            try:
                self._waiting = True
                updates = await self._get_updates(offset)
            except Exception as exc:  # every Bot API answer, transport error, odd answer
                failures += 1
                await self._pause(self._trouble(exc, failures - 1))
                continue
            finally:
                self._waiting = False
            failures = 0
            self._problems.over(f"reading Telegram updates again for {self._names}")
            stored, offset = await self._handle(updates, offset)
            if not stored:
                failures += 1
                await self._pause(self._backoff.after(failures - 1))

    async def _handle(self, updates: list[Any], offset: int | None) -> tuple[bool, int | None]:
        """Store the replies of each update in order; the offset after the last update
        whose replies are all stored, and False if one could not be stored (or was not an
        update at all)."""
        for update in updates:
            if not isinstance(update, Mapping) or not _is_int(update.get("update_id")):
                self._problems.report(
                    Reason.BAD_ANSWER,
                    f"Telegram replies for {self._names}: getUpdates answered something that "
                    "is not an update (no update_id); asking again",
                )
                return False, offset
            try:
                replies = telegram_replies(update, self.sources)
            except Exception as exc:  # an update of a shape no one foresaw: not an answer
                _log.warning(
                    "Telegram replies for %s: skipped update %s, which cannot be read (%s)",
                    self._names,
                    update["update_id"],
                    self.redact(short_detail(describe(exc))),
                )
                replies = []
            for reply in replies:
                try:
                    await self._on_reply(reply)
                except Exception as exc:
                    _log.warning(
                        "could not store a Telegram reply for %s (%s); reading it again",
                        reply.destination,
                        self.redact(short_detail(describe(exc))),
                    )
                    return False, offset
            offset = update["update_id"] + 1
        return True, offset

    async def _get_updates(self, offset: int | None) -> list[Any]:
        assert self._bot is not None
        params: dict[str, Any] = {
            "timeout": self._poll_timeout,
            "limit": UPDATES_LIMIT,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if offset is not None:
            params["offset"] = offset
        result = await self._bot.do_api_request(
            "getUpdates",
            api_kwargs=params,
            return_type=None,
            read_timeout=self._timeout + self._poll_timeout,
        )
        if not isinstance(result, list):
            raise _WrongShape(f"getUpdates answered a {type(result).__name__}, not a list")
        return result

    async def _pause(self, seconds: float) -> None:
        self._waiting = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
        finally:
            self._waiting = False

    def _trouble(self, exc: Exception, failures: int) -> float:
        """Say what went wrong (once per kind of problem); the seconds to wait."""
        slow = self._backoff.refused
        about = f"Telegram replies for {self._names}"
        if isinstance(exc, Conflict) and "webhook" in str(exc).lower():
            self._problems.report(
                "webhook",
                f"{about}: the bot has a webhook set, so Telegram gives no updates to long "
                "polling (409 Conflict) — delete the webhook (deleteWebhook), or turn off "
                f"replies for these destinations; trying again every {slow:g} s",
            )
            return slow
        if isinstance(exc, Conflict):
            self._problems.report(
                "conflict",
                f"{about}: another program is reading this bot's updates (409 Conflict: "
                f"{self.redact(str(exc))}) — only one may: stop the other program, or give "
                f"it another bot; trying again every {slow:g} s",
            )
            return slow
        if isinstance(exc, InvalidToken):
            self._problems.report(
                "token",
                f"{about}: Telegram refused the bot token (401 Unauthorized) — check the "
                f"destinations' token with @BotFather; trying again every {slow:g} s",
            )
            return slow
        failure = (
            RetryLater(Reason.BAD_ANSWER, str(exc))
            if isinstance(exc, _WrongShape)
            else classify_telegram(exc)
        ).masked(self.redact)
        if isinstance(failure, Permanent):
            delay, when = slow, f"every {slow:g} s"
        else:
            delay = self._backoff.after(failures)
            if failure.after is not None:
                delay = max(delay, failure.after)
            when = f"in {delay:g} s"
        self._problems.report(
            failure.reason,
            f"{about}: cannot read updates ({failure.reason}: {failure.detail}); "
            f"trying again {when}",
        )
        return delay


class _WrongShape(Exception):
    """Telegram answered ok, but not with a list of updates."""
