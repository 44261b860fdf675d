"""The console renderer: what Slack and what Telegram would show, as terminal text.

For the `console` destination (what a newcomer sees in `make run`'s terminal) and for
reading renderings by eye. It renders the event with the real Slack and Telegram
renderers and shows each message the way a reader would see it - markup kept readable
(`*bold*`), escapes decoded, links as `label (url)` - not as raw JSON:

    ┌ Slack · 1 message
    │ 💬 *Message Sender* · Channel name (WHATSAPP) · in-queue
    │ Hello World!
    ├ Telegram · 1 call
    │ sendMessage
    │ 💬 Message Sender · Channel name (WHATSAPP) · in-queue
    │ Hello World!
    └
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relay.integrations.slack.render import SlackJoiner, SlackMessage, render_slack
from relay.integrations.telegram.render import TelegramCall, TelegramJoiner, render_telegram
from relay.render.telegram_html import visible_text

_SLACK_LINK = re.compile(r"<([^<>|]*)\|([^<>]*)>")
_MEDIA_FIELDS = ("photo", "video", "document", "audio")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and line break


@dataclass(frozen=True)
class ConsoleView:
    """What Slack and what Telegram would receive for one event, or for several coalesced."""

    slack: list[SlackMessage]
    telegram: list[TelegramCall]


def view(event: Mapping[str, Any]) -> ConsoleView:
    return ConsoleView(render_slack(event), render_telegram(event))


def render_console(event: Mapping[str, Any]) -> str:
    """Both renderings of `event`, labelled, one line per displayed line."""
    return format_view(view(event))


class ConsoleJoiner:
    """Coalesces as Slack and Telegram would, side by side: an event goes alone when either
    platform would send it alone."""

    def alone(self, shown: ConsoleView) -> bool:
        return (
            len(shown.slack) != 1
            or len(shown.telegram) != 1
            or TelegramJoiner().alone(shown.telegram[0])
        )

    def join(self, views: Sequence[ConsoleView]) -> ConsoleView | None:
        if len(views) == 1:
            return views[0]
        slack = SlackJoiner().join([shown.slack[0] for shown in views])
        telegram = TelegramJoiner().join([shown.telegram[0] for shown in views])
        if slack is None or telegram is None:
            return None
        return ConsoleView([slack], [telegram])


def format_view(shown: ConsoleView) -> str:
    """Both renderings, labelled, one line per displayed line."""
    slack, telegram = shown.slack, shown.telegram
    lines = [f"┌ Slack · {_count(len(slack), 'message')}"]
    for index, message in enumerate(slack):
        if index:
            lines.append("│ ┄┄")
        lines.extend(_bar(_slack_lines(message)))
    lines.append(f"├ Telegram · {_count(len(telegram), 'call')}")
    for index, call in enumerate(telegram):
        if index:
            lines.append("│ ┄┄")
        lines.extend(_bar(_telegram_lines(call)))
    lines.append("└")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _bar(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        yield from (f"│ {row}" for row in _printable(line).split("\n"))


def _printable(text: str) -> str:
    """Control characters as `\\x1b`: a customer's text must not drive the terminal (ANSI
    escape sequences can clear it, retitle it, or hide lines)."""
    return _CONTROL.sub(lambda match: repr(match.group(0))[1:-1], text)


def _slack_lines(message: SlackMessage) -> Iterator[str]:
    for block in message.payload.get("blocks", []):
        if block.get("type") == "context":
            yield " ".join(_slack_visible(element.get("text", "")) for element in block["elements"])
        elif block.get("type") == "section":
            yield _slack_visible(block["text"]["text"])
        elif block.get("type") == "image":
            yield f"[image] {block.get('image_url')}"
    if message.fallback is not None:
        yield "(if Slack cannot fetch the image: the same message without it)"


def _slack_visible(mrkdwn: str) -> str:
    """mrkdwn as a reader sees it: `<url|label>` as `label (url)`, escapes decoded."""
    linked = _SLACK_LINK.sub(lambda match: f"{match.group(2)} ({match.group(1)})", mrkdwn)
    return html.unescape(linked)


def _telegram_lines(call: TelegramCall) -> Iterator[str]:
    media = next((key for key in _MEDIA_FIELDS if key in call.params), None)
    yield f"{call.method} {call.params[media]}" if media else call.method
    text = call.params.get("caption" if media else "text")
    if isinstance(text, str) and text:
        yield visible_text(text)
    if call.fallback is not None:
        yield "(if Telegram refuses the media: a text message with its link)"
