"""Telegram sender over python-telegram-bot: one Bot API call in, one Outcome out.

The renderer produces the exact Bot API parameters, so they go through
`Bot.do_api_request` untouched; the sender only adds where to post (`chat_id`,
`message_thread_id`, `reply_parameters`). It recovers by itself from three refusals that
a retry cannot fix but a different request can: HTML Telegram cannot parse (resend as
plain text), a media URL Telegram will not fetch (send the renderer's text fallback), and
a group upgraded to a supergroup (follow the new chat id). Everything else is left to
`classify_telegram`, pure and table-tested.

PTB's error tree matters for the order of checks: `BadRequest` and `TimedOut` are
subclasses of `NetworkError`, and every HTTP answer PTB does not recognise (5xx, 429
without `retry_after`) is raised as a plain `NetworkError` too.
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from typing import Any

import telegram
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
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from relay.redact import redact, register, scrub_loggers
from relay.render.messages import TelegramCall
from relay.render.telegram import as_plain_text
from relay.send.outcome import Outcome, Permanent, RetryLater, Sent

DEFAULT_API_URL = "https://api.telegram.org"
MEDIA_METHODS = frozenset({"sendPhoto", "sendVideo", "sendDocument", "sendAudio"})

_log = logging.getLogger("relay.send.telegram")

# Telegram's wording, lower-cased: PTB drops the "Bad Request: " prefix and capitalizes
# the rest (which lower-cases "HTTP URL"), so matching is on lower-case text.
_MEDIA_REFUSED = (
    "wrong file identifier/http url specified",
    "failed to get http url content",
    "wrong type of the web page content",
    "wrong remote file identifier specified",
    "image_process_failed",
    "wrong file_id or the file is temporarily unavailable",
)
_FORBIDDEN_BAD_REQUESTS = ("not enough rights", "have no rights to send")
# PTB raises NetworkError with these prefixes when no HTTP answer arrived at all.
_NO_ANSWER = ("httpx.", "unknown error in http implementation")


def classify_telegram(exc: BaseException) -> Outcome:
    """Decide what an exception raised for a Bot API call means."""
    detail = redact(f"{type(exc).__name__}: {exc}")
    text = str(exc).lower()
    # Specific subclasses before NetworkError, their common base.
    if isinstance(exc, RetryAfter):
        return RetryLater("rate_limited", detail, _retry_after(exc), rate_limited=True)
    if isinstance(exc, InvalidToken):
        return Permanent("unauthorized", detail)
    if isinstance(exc, Forbidden):
        return Permanent("forbidden", detail)
    if isinstance(exc, ChatMigrated):
        # Only seen here when following the migration failed; config must name the new id.
        return Permanent("chat_migrated", detail)
    if isinstance(exc, BadRequest):
        return _classify_bad_request(text, detail)
    if isinstance(exc, TimedOut | TimeoutError):
        return RetryLater("timeout", detail)
    if isinstance(exc, NetworkError):
        if text.startswith(_NO_ANSWER):
            return RetryLater("network", detail)
        if "too many requests" in text:  # a 429 that did not say how long to wait
            return RetryLater("rate_limited", detail, rate_limited=True)
        return RetryLater("server_error", detail)  # an HTTP answer PTB has no class for: 5xx
    if isinstance(exc, TelegramError):
        # Conflict, EndPointNotFound and anything newer: an answer about this request that
        # will not change by sending it again.
        return Permanent("bad_request", detail)
    # Not a Bot API answer at all (PTB wraps its transport errors, so this is rare).
    return RetryLater("network", detail)


def _classify_bad_request(text: str, detail: str) -> Outcome:
    if "chat not found" in text:
        return Permanent("chat_not_found", detail)
    if "message thread not found" in text or "topic_closed" in text:
        return Permanent("topic_not_found", detail)
    if any(phrase in text for phrase in _FORBIDDEN_BAD_REQUESTS):
        return Permanent("forbidden", detail)
    return Permanent("bad_request", detail)


def _retry_after(exc: RetryAfter) -> float:
    """Seconds to wait. PTB 22.2+ holds a timedelta but still hands out an int (with a
    deprecation warning) unless PTB_TIMEDELTA is set; older versions hand out an int."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | float | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _cannot_parse(exc: BadRequest) -> bool:
    return "can't parse entities" in str(exc).lower()


def _media_refused(exc: BadRequest) -> bool:
    return any(phrase in str(exc).lower() for phrase in _MEDIA_REFUSED)


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


class TelegramSender:
    """Posts to one chat (and optionally one forum topic) with a bot token."""

    def __init__(
        self,
        *,
        token: str,
        chat_id: int | str,
        topic_id: int | None = None,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
    ) -> None:
        register(token)
        self._token = token
        self._chat_id = chat_id
        self._topic_id = topic_id
        self._base_url = f"{api_url.rstrip('/')}/bot"
        self._timeout = timeout
        self._bot: _Bot | None = None
        self._request: HTTPXRequest | None = None

    @property
    def chat_id(self) -> int | str:
        """Where messages go; changes when Telegram reports the group became a supergroup."""
        return self._chat_id

    async def send(self, call: TelegramCall, *, reply_to: int | None = None) -> Outcome:
        try:
            try:
                message = await self._deliver(call, reply_to)
            except ChatMigrated as exc:
                self._follow_migration(exc.new_chat_id)
                message = await self._deliver(call, reply_to)
        except (TelegramError, OSError) as exc:
            return classify_telegram(exc)
        return Sent(ref=str(message.message_id))

    async def close(self) -> None:
        # Not Bot.shutdown(): it only closes what Bot.initialize() opened, and we skip that.
        if self._request is not None:
            await self._request.shutdown()
        self._bot = self._request = None

    async def _deliver(self, call: TelegramCall, reply_to: int | None) -> telegram.Message:
        """Make the call; on a refusal another request can avoid, make that one instead."""
        try:
            return await self._call(call, reply_to)
        except BadRequest as exc:
            instead = self._instead_of(call, exc)
            if instead is None:
                raise
            return await self._call(instead, reply_to)

    def _instead_of(self, call: TelegramCall, exc: BadRequest) -> TelegramCall | None:
        if _cannot_parse(exc) and "parse_mode" in call.params:
            _log.warning(
                "Telegram could not parse the HTML of a %s; resending as plain text: %s",
                call.method,
                redact(str(exc)),
            )
            return as_plain_text(call)
        if call.method in MEDIA_METHODS and call.fallback is not None and _media_refused(exc):
            _log.warning(
                "Telegram refused the media of a %s; sending the link instead: %s",
                call.method,
                redact(str(exc)),
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

    async def _call(self, call: TelegramCall, reply_to: int | None) -> telegram.Message:
        params: dict[str, Any] = {**call.params, "chat_id": self._chat_id}
        if self._topic_id is not None:
            params["message_thread_id"] = self._topic_id
        if reply_to is not None:
            # Without allow_sending_without_reply a deleted parent would refuse the message.
            params["reply_parameters"] = {
                "message_id": reply_to,
                "allow_sending_without_reply": True,
            }
        message: telegram.Message = await self._client().do_api_request(
            call.method, api_kwargs=params, return_type=telegram.Message
        )
        return message

    def _client(self) -> _Bot:
        if self._bot is None:
            self._bot, self._request = build_bot(
                self._token, base_url=self._base_url, timeout=self._timeout
            )
        return self._bot


def build_bot(
    token: str,
    *,
    api_url: str = DEFAULT_API_URL,
    base_url: str | None = None,
    timeout: float = 10.0,
) -> tuple[_Bot, HTTPXRequest]:
    """A Bot as the relay configures it, and the HTTP request object to shut down after use.

    `api_url` is the Bot API base (the config's, without /bot); `base_url` overrides it with
    the full `.../bot` prefix. Every phase of a call is limited to `timeout`. The same
    request object serves getUpdates, so PTB builds no second HTTP client nobody closes.
    Not initialized: Bot.initialize() spends a getMe and, when the token is rejected,
    raises an InvalidToken whose message contains the token."""
    register(token)
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
        base_url=base_url or f"{api_url.rstrip('/')}/bot",
        request=request,
        get_updates_request=request,
    )
    return bot, request


def _library_loggers() -> list[str]:
    # The token is in every Bot API URL: httpx logs each request URL at INFO, PTB logs its
    # base URL at DEBUG. Filters apply only on the logger a record starts at, so every
    # logger these libraries created (at import, above) gets one.
    prefixes = ("telegram", "httpx", "httpcore")
    known = [name for name in logging.root.manager.loggerDict if name.startswith(prefixes)]
    return [*prefixes, *known, _log.name]


scrub_loggers(_library_loggers())
