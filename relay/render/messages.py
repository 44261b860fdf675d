"""What a renderer produces: the exact API calls a destination should receive.

Renderers are pure (no network, no clock); the delivery lanes add what only they know
(the channel or chat, a thread parent) and hand the call to a sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlackMessage:
    """One `chat.postMessage` (or incoming-webhook) body, without `channel` and `thread_ts`.

    `fallback` is the same message without blocks Slack must fetch (image blocks): Slack
    refuses a whole message whose image it cannot download, and a media URL must never
    cost the message, so the sender retries with `fallback` when that happens.
    """

    payload: dict[str, Any]
    fallback: dict[str, Any] | None = None


@dataclass(frozen=True)
class TelegramCall:
    """One Bot API call (`sendMessage`, `sendPhoto`, ...) as its JSON parameters,
    without `chat_id`, `message_thread_id` and `reply_parameters`.

    `fallback` is what to send instead when Telegram refuses the media URL (a text
    message with the link).
    """

    method: str
    params: dict[str, Any]
    fallback: TelegramCall | None = None
