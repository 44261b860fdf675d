"""Feedback where an answer was written: a reaction when OneRoute took it, a reply in the
same thread or chain saying why when it was refused or cannot be sent.

Feedback is a courtesy: whatever goes wrong with it (a missing scope, a deleted message,
the network) is logged and never fails the answer, which OneRoute has already taken or
refused by then.
"""

from __future__ import annotations

import logging
from typing import Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from relay.answers.model import Reply
from relay.integrations.slack.send import close_web_client, web_client
from relay.integrations.telegram.send import LazyBot
from relay.logs import fields
from relay.outcome import describe, short_detail
from relay.redact import Redactor

log = logging.getLogger("relay.answers")

SLACK_ACCEPTED = "white_check_mark"  # ✅
# Telegram lets bots react only with the emoji of the Bot API's list, which has no ✅.
TELEGRAM_ACCEPTED = "👍"


class Feedback(Protocol):
    async def accepted(self, reply: Reply) -> None: ...
    async def refused(self, reply: Reply, words: str) -> str | None: ...  # what it posted
    async def close(self) -> None: ...


def _escape_slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackFeedback:
    """Reacts and replies with the destination's bot token (reactions:write, chat:write)."""

    def __init__(self, *, token: str, api_url: str, timeout: float) -> None:
        self.redact = Redactor(token)
        self._token, self._api_url, self._timeout = token, api_url, timeout
        self._client: AsyncWebClient | None = None

    async def accepted(self, reply: Reply) -> None:
        try:
            await self._web().reactions_add(
                channel=reply.channel, timestamp=reply.ts, name=SLACK_ACCEPTED
            )
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":  # sent again after a crash
                _trouble(reply, "mark the answer as sent", exc, self.redact)
        except Exception as exc:
            _trouble(reply, "mark the answer as sent", exc, self.redact)

    async def refused(self, reply: Reply, words: str) -> str | None:
        try:
            await self._web().chat_postMessage(
                channel=reply.channel, thread_ts=reply.thread_ts, text=_escape_slack(words)
            )
        except Exception as exc:
            _trouble(reply, "say why the answer was not sent", exc, self.redact)
        return None  # in the thread: a reply there is an answer already

    async def close(self) -> None:
        if self._client is not None:
            await close_web_client(self._client)
        self._client = None

    def _web(self) -> AsyncWebClient:
        if self._client is None:
            self._client = web_client(self._token, api_url=self._api_url, timeout=self._timeout)
        return self._client


class TelegramFeedback:
    """Reacts (setMessageReaction) and replies (sendMessage) with the destination's bot."""

    def __init__(self, *, token: str, api_url: str, timeout: float) -> None:
        self.redact = Redactor(token)
        self._bot = LazyBot(token, self.redact, api_url=api_url, timeout=timeout)

    async def accepted(self, reply: Reply) -> None:
        reaction = [{"type": "emoji", "emoji": TELEGRAM_ACCEPTED}]
        await self._call(
            reply,
            "mark the answer as sent",
            "setMessageReaction",
            {"chat_id": reply.chat_id, "message_id": reply.message_id, "reaction": reaction},
        )

    async def refused(self, reply: Reply, words: str) -> str | None:
        """The message id of the explanation: a reply to it is an answer too."""
        params: dict[str, object] = {
            "chat_id": reply.chat_id,
            "text": words,
            "reply_parameters": {
                "message_id": reply.message_id,
                "allow_sending_without_reply": True,
            },
        }
        if reply.topic is not None:
            params["message_thread_id"] = reply.topic
        sent = await self._call(reply, "say why the answer was not sent", "sendMessage", params)
        message_id = sent.get("message_id") if isinstance(sent, dict) else None
        return str(message_id) if isinstance(message_id, int) else None

    async def close(self) -> None:
        await self._bot.close()

    async def _call(
        self, reply: Reply, what: str, method: str, params: dict[str, object]
    ) -> object:
        try:
            return await self._bot.get().do_api_request(method, api_kwargs=params, return_type=None)
        except Exception as exc:
            _trouble(reply, what, exc, self.redact)
            return None


def _trouble(reply: Reply, what: str, exc: BaseException, redact: Redactor) -> None:
    log.warning(
        "could not %s: %s",
        what,
        redact(short_detail(describe(exc))),
        extra=fields(destination=reply.destination),
    )
