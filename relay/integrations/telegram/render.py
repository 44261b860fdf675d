"""The Telegram renderer: an event as Bot API calls in HTML parse mode.

A text message is one `sendMessage`:

    💬 <b>Customer name</b> · Channel name (WHATSAPP) · in-queue      (· 2/3 when split)
    ↩️ <i>replying to an earlier message</i>
    Hello World!

A message with media starts with the media by URL (`sendPhoto`, `sendVideo`,
`sendDocument`, `sendAudio`) whose caption holds the context line and as much of the body
as fits in 1024 characters; the rest follows in `sendMessage` calls, then any further
media (captioned with the context line). Every media call carries a `fallback`: a
`sendMessage` with its caption and the media link, for when Telegram refuses the URL.
A media field that is not an http(s) URL is shown as text in the body instead.

User content is escaped (`&`, `<`, `>`, `"`) and never wrapped in tags, so parts are cut in
plain text; text over 4096 characters (visible, in UTF-16 code units, as Telegram counts)
continues in further messages, numbered in the context line. Nothing is cut. Link
previews are off unless the destination asks for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.render.content import Media, MediaKind, extract
from relay.render.markup import (
    TELEGRAM,
    context_line,
    join_lines,
    media_line,
)
from relay.render.split import split_markup, width
from relay.render.telegram_html import visible_text
from relay.render.template import Template, message_body


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


TEXT_MAX: Final = 4096
CAPTION_MAX: Final = 1024
_PART_MARK: Final = 16  # room kept in the context line for " · 12/34"
_METHODS: Final[dict[MediaKind, tuple[str, str]]] = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "document": ("sendDocument", "document"),
    "audio": ("sendAudio", "audio"),
}


def render_telegram(
    event: Mapping[str, Any], *, template: Template | None = None, link_preview: bool = False
) -> list[TelegramCall]:
    """The calls to make for `event`, in order; never empty, never raises."""
    content = extract(event)
    head, overflow = context_line(content, TELEGRAM)
    sendable = [media for media in content.media if media.linkable]
    body = join_lines(
        message_body(event, content, template, TELEGRAM),
        *overflow,
        *(media_line(media, TELEGRAM) for media in content.media if not media.linkable),
    )
    reserve = width(head, "telegram") + _PART_MARK + 1  # 1: the newline after the head
    first = CAPTION_MAX - reserve if sendable else None
    raw_parts = split_markup(body, "telegram", TEXT_MAX - reserve, first)
    # Parts with nothing to read (a body of blank lines) are dropped, but with media an
    # empty first part still holds the caption's place; at least one message is sent.
    kept = [part.strip() for part in raw_parts if visible_text(part).strip()]
    parts = ([""] if sendable and not _readable(raw_parts[:1]) else []) + kept or [""]

    def head_of(index: int) -> str:
        return head + (f" · {index + 1}/{len(parts)}" if len(parts) > 1 else "")

    options = {} if link_preview else {"link_preview_options": {"is_disabled": True}}
    texts = [join_lines(head_of(index), part) for index, part in enumerate(parts)]
    if not sendable:
        return [_send_message(text, options) for text in texts]
    first_media, *more_media = sendable
    return [
        _send_media(first_media, texts[0], options),
        *(_send_message(text, options) for text in texts[1:]),
        *(_send_media(media, head, options) for media in more_media),
    ]


def _readable(parts: list[str]) -> bool:
    return bool(parts) and bool(visible_text(parts[0]).strip())


def as_plain_text(call: TelegramCall) -> TelegramCall:
    """The same call without parse mode, its HTML turned into the text a reader would see.

    For the one retry after Telegram answers "can't parse entities". Links keep their
    URL, because the renderer shows URLs as their own link text.
    """
    params = {key: value for key, value in call.params.items() if key != "parse_mode"}
    for key in ("text", "caption"):
        if isinstance(params.get(key), str):
            params[key] = visible_text(params[key])
    fallback = as_plain_text(call.fallback) if call.fallback else None
    return TelegramCall(call.method, params, fallback)


def _send_message(text: str, options: dict[str, Any]) -> TelegramCall:
    return TelegramCall("sendMessage", {"text": text, "parse_mode": "HTML", **options})


def _send_media(media: Media, caption: str, options: dict[str, Any]) -> TelegramCall:
    """A media call, falling back to a text message with the caption and the link."""
    method, field = _METHODS[media.kind]
    fallback = _send_message(join_lines(caption, media_line(media, TELEGRAM)), options)
    params = {field: media.url, "caption": caption, "parse_mode": "HTML"}
    return TelegramCall(method, params, fallback)


# --- coalescing (relay/coalesce.py) -------------------------------------------------------------


class TelegramJoiner:
    """Several events' text messages in one, a blank line between them; media calls
    (sendPhoto, ...) go on their own."""

    def alone(self, call: TelegramCall) -> bool:
        return call.method != "sendMessage"

    def join(self, calls: Sequence[TelegramCall]) -> TelegramCall | None:
        if len(calls) == 1:
            return calls[0]
        texts = [call.params["text"] for call in calls]
        # Each text is whole Telegram HTML, so the joined text's visible length is the sum.
        if sum(_width(text) for text in texts) + 2 * (len(texts) - 1) > TEXT_MAX:
            return None
        return TelegramCall("sendMessage", {**calls[0].params, "text": "\n\n".join(texts)})


@functools.lru_cache(maxsize=1024)
def _width(text: str) -> int:
    # The lane joins the same renderings again and again while it fills a message.
    return width(text, "telegram")
