"""Telegram sender over python-telegram-bot: one Bot API call in, one Outcome out.

The renderer produces the exact Bot API parameters; the pure `request()` adds where to
post (`chat_id`, `message_thread_id`, `reply_parameters`) and the call goes through
`Bot.do_api_request` untouched. The sender recovers by itself from three refusals that a
retry cannot fix but a different request can: HTML Telegram cannot parse (resend as plain
text), a media URL Telegram will not fetch (send the renderer's text fallback), and a group
upgraded to a supergroup (follow the new chat id). Everything else is left to
`classify_telegram` (relay/integrations/telegram/classify.py). The answer's `result` is
read here, not by PTB's `Message.de_json`, so an answer of the wrong shape is classified
rather than raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import telegram
from telegram.error import BadRequest, ChatMigrated
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from relay.errors import Reason
from relay.integrations.base import Request
from relay.integrations.telegram.classify import cannot_parse, classify_telegram, media_refused
from relay.integrations.telegram.config import TELEGRAM_API_URL
from relay.integrations.telegram.render import TelegramCall, as_plain_text
from relay.outcome import Outcome, RetryLater, Sent
from relay.redact import Redactor, scrub_loggers

MEDIA_METHODS = frozenset({"sendPhoto", "sendVideo", "sendDocument", "sendAudio"})
# The token is in every Bot API URL: httpx logs each request URL, PTB its base URL. A
# sender scrubs its own token from their records while it is open, however logging is set up.
LIBRARY_LOGGERS = ("telegram", "httpx", "httpcore")

_log = logging.getLogger("relay.integrations.telegram")


class _Bot(telegram.Bot):
    """A Bot that does not warn when do_api_request names a method Bot also wraps.

    We call e.g. sendMessage through do_api_request on purpose, so the renderer's exact
    parameters are sent; PTB would warn on every message ("Please use 'Bot.sendMessage'")."""

    __slots__ = ()

    @classmethod
    def _warn(
        cls,
        message: str | PTBUserWarning,
        category: type[Warning] = PTBUserWarning,
        stacklevel: int = 0,
    ) -> None:
        if isinstance(message, str) and message.startswith("Please use 'Bot."):
            return
        super()._warn(message, category, stacklevel + 1)


class _WrongShape(Exception):
    """Telegram answered ok, but its `result` is not a message."""


def bot_call(
    call: TelegramCall, chat_id: int | str, topic_id: int | None, thread: str | None
) -> Request:
    """The Bot API call for one rendered message (pure). `thread` is the message id to
    reply to."""
    body: dict[str, Any] = {"chat_id": chat_id}
    if topic_id is not None:
        body["message_thread_id"] = topic_id
    body.update(call.params)
    if thread is not None and thread.isdigit():  # the relay stores message ids it was given
        # Without allow_sending_without_reply a deleted parent would refuse the message.
        body["reply_parameters"] = {"message_id": int(thread), "allow_sending_without_reply": True}
    return Request(call.method, body)


class TelegramSender:
    """Posts to one chat (and optionally one forum topic) with a bot token."""

    def __init__(
        self,
        *,
        token: str,
        chat_id: int | str,
        topic_id: int | None = None,
        api_url: str = TELEGRAM_API_URL,
        timeout: float = 10.0,
    ) -> None:
        self.redact = Redactor(token)
        self._chat_id = chat_id
        self._topic_id = topic_id
        self._bot = LazyBot(token, self.redact, api_url=api_url, timeout=timeout)

    @property
    def chat_id(self) -> int | str:
        """Where messages go; changes when Telegram reports the group became a supergroup."""
        return self._chat_id

    def request(
        self, message: TelegramCall, thread: str | None, topic_id: int | None = None
    ) -> Request:
        topic = topic_id if topic_id is not None else self._topic_id
        return bot_call(message, self._chat_id, topic, thread)

    async def send(
        self, message: TelegramCall, thread: str | None = None, *, topic_id: int | None = None
    ) -> Outcome:
        """Post `message`; `topic_id` replaces the configured topic (a conversation's own
        topic: relay/integrations/telegram/topics.py)."""
        try:
            try:
                result = await self._deliver(message, thread, topic_id)
            except ChatMigrated as exc:
                self._follow_migration(exc.new_chat_id)
                result = await self._deliver(message, thread, topic_id)
        except _WrongShape as exc:
            return RetryLater(Reason.BAD_ANSWER, self.redact(str(exc)))
        except Exception as exc:  # every answer PTB raises for, and what it cannot parse
            return classify_telegram(exc).masked(self.redact)
        return Sent(ref=str(result["message_id"]))

    async def close(self) -> None:
        await self._bot.close()

    async def create_topic(self, name: str) -> Outcome:
        """Open a forum topic in the chat (createForumTopic); Sent's ref is its
        message_thread_id. The bot must be an administrator allowed to manage topics."""
        try:
            result = await self._bot.get().do_api_request(
                "createForumTopic",
                api_kwargs={"chat_id": self._chat_id, "name": name},
                return_type=None,
            )
        except Exception as exc:
            return classify_telegram(exc).masked(self.redact)
        topic = result.get("message_thread_id") if isinstance(result, dict) else None
        if not isinstance(topic, int):
            return RetryLater(Reason.BAD_ANSWER, "createForumTopic answered no message_thread_id")
        return Sent(ref=str(topic))

    async def _deliver(
        self, call: TelegramCall, thread: str | None, topic_id: int | None = None
    ) -> dict[str, Any]:
        """Make the call; on a refusal another request can avoid, make that one instead."""
        try:
            return await self._call(self.request(call, thread, topic_id))
        except BadRequest as exc:
            instead = self._instead_of(call, exc)
            if instead is None:
                raise
            return await self._call(self.request(instead, thread, topic_id))

    def _instead_of(self, call: TelegramCall, exc: BadRequest) -> TelegramCall | None:
        if cannot_parse(exc) and "parse_mode" in call.params:
            _log.warning(
                "Telegram could not parse the HTML of a %s; resending as plain text: %s",
                call.method,
                self.redact(str(exc)),
            )
            return as_plain_text(call)
        if call.method in MEDIA_METHODS and call.fallback is not None and media_refused(exc):
            _log.warning(
                "Telegram refused the media of a %s; sending the link instead: %s",
                call.method,
                self.redact(str(exc)),
            )
            return call.fallback
        return None

    def _follow_migration(self, new_chat_id: int) -> None:
        _log.warning(
            "Telegram chat %s was upgraded to a supergroup with id %s; sending there now. "
            "Update chat_id in the config to %s.",
            self._chat_id,
            new_chat_id,
            new_chat_id,
        )
        self._chat_id = new_chat_id

    async def _call(self, request: Request) -> dict[str, Any]:
        result = await self._bot.get().do_api_request(
            request.call, api_kwargs=request.body, return_type=None
        )
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise _WrongShape(
                f"Telegram answered {request.call} with ok but a result that is not a message "
                f"({type(result).__name__})"
            )
        return result


class LazyBot:
    """The Bot of a token, built on first use (from then on the libraries' loggers are
    scrubbed of the token, as `redact` masks it) and closed by `close()`; used again after
    that, it is built again."""

    def __init__(self, token: str, redact: Redactor, *, api_url: str, timeout: float) -> None:
        self._token, self._redact = token, redact
        self._api_url, self._timeout = api_url, timeout
        self._bot: _Bot | None = None
        self._request: HTTPXRequest | None = None
        self._unscrub: Callable[[], None] | None = None

    def get(self) -> _Bot:
        if self._bot is None:
            self._unscrub = scrub_loggers(LIBRARY_LOGGERS, self._redact)
            self._bot, self._request = build_bot(
                self._token, api_url=self._api_url, timeout=self._timeout
            )
        return self._bot

    async def close(self) -> None:
        # Not Bot.shutdown(): it only closes what Bot.initialize() opened, and we skip that.
        if self._request is not None:
            await self._request.shutdown()
        self._bot = self._request = None
        if self._unscrub is not None:
            self._unscrub()
            self._unscrub = None


def build_bot(
    token: str, *, api_url: str = TELEGRAM_API_URL, timeout: float = 10.0
) -> tuple[_Bot, HTTPXRequest]:
    """A Bot as the relay configures it, and the HTTP request object to shut down after use.

    `api_url` is the Bot API base (the config's, without /bot). Every phase of a call is
    limited to `timeout`. The same request object serves getUpdates, so PTB builds no
    second HTTP client nobody closes. Not initialized: Bot.initialize() spends a getMe and,
    when the token is rejected, raises an InvalidToken whose message contains the token."""
    request = HTTPXRequest(
        connection_pool_size=4,
        read_timeout=timeout,
        write_timeout=timeout,
        connect_timeout=timeout,
        pool_timeout=timeout,
        media_write_timeout=timeout,
    )
    bot = _Bot(
        token,
        base_url=f"{api_url.rstrip('/')}/bot",
        request=request,
        get_updates_request=request,
    )
    return bot, request
