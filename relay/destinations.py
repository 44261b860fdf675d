"""From a configured destination to what its lane uses: render, send, and the limits to pace by.

A Courier pairs a destination's renderer (pure) with its sender (the SDK), so the lane
is the same for Slack, Telegram and the console.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from relay.config.model import Destination
from relay.integrations.console.config import ConsoleDestination
from relay.integrations.slack.config import SlackDestination
from relay.integrations.telegram.config import TelegramDestination
from relay.pacing import Limit
from relay.render.console import render_console
from relay.render.slack import render_slack
from relay.render.telegram import render_telegram
from relay.render.template import Template, compile_template
from relay.send.console import ConsoleSender
from relay.send.outcome import Outcome
from relay.send.slack import SlackSender, SlackWebhookSender
from relay.send.telegram import TelegramSender

# Documented platform limits (PRODUCT.md section 5).
SLACK_PER_CHANNEL = 1.0  # chat.postMessage: about one message per second per channel
SLACK_WEBHOOK = 1.0  # incoming webhooks: one per second
TELEGRAM_PER_CHAT = 1.0  # one message per second per chat
TELEGRAM_PER_GROUP = 20 / 60  # twenty per minute in groups and channels (negative chat ids)
TELEGRAM_PER_BOT = 30.0  # thirty per second across all chats of a bot


class Courier(Protocol):
    threads: bool  # later messages of a conversation go under its first one
    limits: tuple[Limit, ...]

    def render(self, event: Mapping[str, Any]) -> Sequence[Any]: ...
    async def send(self, message: Any, thread: str | None) -> Outcome: ...
    async def close(self) -> None: ...


def _fingerprint(secret: str) -> str:
    """A stable key for a token or URL that does not reveal it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def load_template(destination: Destination, base: Path, flavor: str) -> Template | None:
    if destination.template_file:
        source = (base / destination.template_file).read_text(encoding="utf-8")
    elif destination.template:
        source = destination.template
    else:
        return None
    return compile_template(source, flavor)  # type: ignore[arg-type]


@dataclass
class SlackCourier:
    sender: SlackSender | SlackWebhookSender
    threads: bool
    limits: tuple[Limit, ...]
    template: Template | None
    unfurl_links: bool

    def render(self, event: Mapping[str, Any]) -> Sequence[Any]:
        return render_slack(event, template=self.template, unfurl_links=self.unfurl_links)

    async def send(self, message: Any, thread: str | None) -> Outcome:
        return await self.sender.send(message, thread_ts=thread)

    async def close(self) -> None:
        await self.sender.close()


@dataclass
class TelegramCourier:
    sender: TelegramSender
    threads: bool
    limits: tuple[Limit, ...]
    template: Template | None
    link_preview: bool

    def render(self, event: Mapping[str, Any]) -> Sequence[Any]:
        return render_telegram(event, template=self.template, link_preview=self.link_preview)

    async def send(self, message: Any, thread: str | None) -> Outcome:
        return await self.sender.send(message, reply_to=int(thread) if thread else None)

    async def close(self) -> None:
        await self.sender.close()


@dataclass
class ConsoleCourier:
    name: str
    sender: ConsoleSender
    threads: bool = False
    limits: tuple[Limit, ...] = ()

    def render(self, event: Mapping[str, Any]) -> Sequence[Any]:
        return [render_console(event)]

    async def send(self, message: Any, thread: str | None) -> Outcome:
        return await self.sender.send_text(self.name, message)

    async def close(self) -> None:
        return None


def limits_for(name: str, destination: Destination) -> tuple[Limit, ...]:
    if destination.max_per_second is not None:
        return (Limit(f"destination:{name}", destination.max_per_second),)
    if isinstance(destination, SlackDestination):
        if destination.webhook_url is not None:
            url = destination.webhook_url.get_secret_value()
            return (Limit(f"slack-webhook:{_fingerprint(url)}", SLACK_WEBHOOK),)
        token = _fingerprint(destination.token.get_secret_value()) if destination.token else ""
        return (Limit(f"slack:{token}:{destination.channel}", SLACK_PER_CHANNEL),)
    if isinstance(destination, TelegramDestination):
        bot = _fingerprint(destination.token.get_secret_value()) if destination.token else ""
        chat = destination.chat_id
        group = (isinstance(chat, int) and chat < 0) or isinstance(chat, str)  # @channel: a channel
        return (
            Limit(f"telegram:{bot}:{chat}", TELEGRAM_PER_GROUP if group else TELEGRAM_PER_CHAT),
            Limit(f"telegram-bot:{bot}", TELEGRAM_PER_BOT, burst=30),
        )
    return ()


def build_courier(name: str, destination: Destination, base: Path, timeout: float) -> Courier:
    """The courier for one enabled destination. `base` is the config file's directory."""
    limits = limits_for(name, destination)
    if isinstance(destination, SlackDestination):
        sender: SlackSender | SlackWebhookSender
        if destination.webhook_url is not None:
            sender = SlackWebhookSender(
                url=destination.webhook_url.get_secret_value(), timeout=timeout
            )
        else:
            assert destination.token is not None and destination.channel is not None
            sender = SlackSender(
                token=destination.token.get_secret_value(),
                channel=destination.channel,
                api_url=destination.api_url,
                timeout=timeout,
            )
        return SlackCourier(
            sender,
            destination.thread_by_conversation,
            limits,
            load_template(destination, base, "slack"),
            destination.unfurl_links,
        )
    if isinstance(destination, TelegramDestination):
        assert destination.token is not None and destination.chat_id is not None
        telegram = TelegramSender(
            token=destination.token.get_secret_value(),
            chat_id=destination.chat_id,
            topic_id=destination.topic_id,
            api_url=destination.api_url,
            timeout=timeout,
        )
        return TelegramCourier(
            telegram,
            destination.thread_by_conversation,
            limits,
            load_template(destination, base, "telegram"),
            destination.link_preview,
        )
    assert isinstance(destination, ConsoleDestination)
    return ConsoleCourier(name, ConsoleSender())


def preview(
    name: str, destination: Destination, event: Mapping[str, Any], base: Path
) -> list[dict[str, Any]]:
    """The exact API calls a destination would receive for `event` (`relay route --render`).

    Thread fields are left out: they depend on what was sent before.
    """
    if isinstance(destination, SlackDestination):
        template = load_template(destination, base, "slack")
        messages = render_slack(event, template=template, unfurl_links=destination.unfurl_links)
        if destination.webhook_url is not None:
            return [{"call": "incoming webhook", "body": m.payload} for m in messages]
        return [
            {"call": "chat.postMessage", "body": {"channel": destination.channel, **m.payload}}
            for m in messages
        ]
    if isinstance(destination, TelegramDestination):
        template = load_template(destination, base, "telegram")
        calls = render_telegram(event, template=template, link_preview=destination.link_preview)
        target: dict[str, Any] = {"chat_id": destination.chat_id}
        if destination.topic_id is not None:
            target["message_thread_id"] = destination.topic_id
        return [{"call": c.method, "body": {**target, **c.params}} for c in calls]
    return [{"call": "console", "text": render_console(event)}]
