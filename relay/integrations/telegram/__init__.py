"""Telegram: Bot API calls in HTML parse mode (`sendMessage`, and media by URL).

config.py    the destination's keys (TelegramDestination)
render.py    event -> Bot API calls, pure
send.py      the sender and its pure `request()` builder
classify.py  the one classifier of Telegram's answers
doctor.py    `relay doctor`'s checks
chats.py     `relay telegram-chats`: the chats a bot has seen
"""

from __future__ import annotations

from typing import Any

from relay.integrations.base import (
    BuildContext,
    Courier,
    Status,
    configured_limit,
    load_template,
    template_fingerprint,
)
from relay.integrations.slack import fingerprint
from relay.integrations.telegram import doctor
from relay.integrations.telegram.config import TelegramDestination
from relay.integrations.telegram.render import TelegramJoiner, render_telegram
from relay.integrations.telegram.send import TelegramSender
from relay.pacing import Limit

PER_CHAT = 1.0  # one message per second per chat
PER_GROUP = 20 / 60  # twenty per minute in groups and channels
PER_BOT = 30.0  # thirty per second across all chats of a bot


class Telegram:
    def limits(self, name: str, destination: TelegramDestination) -> tuple[Limit, ...]:
        configured = configured_limit(name, destination)
        if configured is not None:
            return configured
        bot = fingerprint(destination.token.get_secret_value()) if destination.token else ""
        chat = destination.chat_id
        return (
            Limit(f"telegram:{bot}:{chat}", PER_GROUP if destination.group else PER_CHAT),
            Limit(f"telegram-bot:{bot}", PER_BOT, burst=30),
        )

    def courier(
        self, name: str, destination: TelegramDestination, context: BuildContext
    ) -> Courier[Any]:
        assert destination.token is not None and destination.chat_id is not None
        template = load_template(destination, context.base, "telegram")
        preview = destination.link_preview
        return Courier(
            render=lambda event: render_telegram(event, template=template, link_preview=preview),
            sender=TelegramSender(
                token=destination.token.get_secret_value(),
                chat_id=destination.chat_id,
                topic_id=destination.topic_id,
                api_url=destination.api_url,
                timeout=context.timeout,
            ),
            limits=self.limits(name, destination),
            threads=destination.thread_by_conversation,
            joiner=TelegramJoiner() if destination.coalesce else None,
            fingerprint=template_fingerprint(template),
        )

    async def diagnose(
        self, name: str, destination: TelegramDestination, send_test: bool, per_call: float
    ) -> tuple[Status, str]:
        return await doctor.diagnose(name, destination, send_test, per_call)


TELEGRAM = Telegram()
