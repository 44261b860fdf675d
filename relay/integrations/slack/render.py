"""The Slack renderer: an event as `chat.postMessage` bodies (Block Kit plus a plain `text`).

Each message looks like this (the same body works for incoming webhooks):

    context   💬 *Customer name* · Channel name (WHATSAPP) · in-queue      (· 2/3 when split)
    section   ↩️ _replying to an earlier message_
              Hello World!
              🖼️ Image: <https://…/receipt.jpg|receipt.jpg>
    image     one block per image URL, in the message holding its link

`text` is the context line and the body in the same mrkdwn, so notifications and screen
readers get the whole message, not a summary. User content is escaped (`&`, `<`, `>`), and
every text object is `verbatim` so Slack does not turn a customer's "@here" into a mention
or their text into links; our own links are explicit `<url|label>`.

Limits: a message carries at most TEXT_MAX (4000) code units of `text`, its body split over
sections of at most 3000; longer content continues in further messages, numbered in the
context line. Nothing is cut. A message with an image block has a `fallback` without it
(the link stays), since Slack refuses a whole message whose image it cannot fetch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.render.content import Content, Media, extract
from relay.render.markup import (
    SLACK,
    context_line,
    join_lines,
    media_line,
    shorten,
    slack_url,
)
from relay.render.split import split_markup, width
from relay.render.template import Template, message_body


@dataclass(frozen=True)
class SlackMessage:
    """One `chat.postMessage` (or incoming-webhook) body, without `channel` and `thread_ts`.

    `fallback` is the same message without blocks Slack must fetch (image blocks): Slack
    refuses a whole message whose image it cannot download, and a media URL must never
    cost the message, so the sender retries with `fallback` when that happens.
    """

    payload: dict[str, Any]
    fallback: dict[str, Any] | None = None


TEXT_MAX: Final = 4000  # Slack's advice for `text`; it truncates past 40,000
SECTION_MAX: Final = 3000  # section text limit
_PART_MARK: Final = 16  # room kept in the context line for " · 12/34"


def render_slack(
    event: Mapping[str, Any], *, template: Template | None = None, unfurl_links: bool = False
) -> list[SlackMessage]:
    """The messages to post for `event`, in order; never empty, never raises."""
    content = extract(event)
    head, overflow = context_line(content, SLACK)
    body = join_lines(
        message_body(event, content, template, SLACK),
        *overflow,
        *(media_line(media, SLACK) for media in content.media),
    )
    budget = TEXT_MAX - width(head, "slack") - _PART_MARK - 1  # 1: the newline after it
    parts = [part.strip() for part in split_markup(body, "slack", budget)]
    parts = [part for part in parts if part] or [""]
    images: list[list[dict[str, Any]]] = [[] for _ in parts]
    for media in content.media:
        if _is_image(media):
            images[_part_linking(parts, media.url)].append(_image_block(media, content))
    return [
        _message(_numbered(head, number, len(parts)), part, blocks, unfurl_links)
        for number, (part, blocks) in enumerate(zip(parts, images, strict=True), 1)
    ]


def _numbered(head: str, number: int, count: int) -> str:
    return head + (f" · {number}/{count}" if count > 1 else "")


def _part_linking(parts: list[str], url: str) -> int:
    """The part holding the image's link, so its fallback keeps it (else the last part)."""
    target = f"<{slack_url(url)}|"
    return next((index for index, part in enumerate(parts) if target in part), len(parts) - 1)


def _message(
    head: str, body: str, images: list[dict[str, Any]], unfurl_links: bool
) -> SlackMessage:
    blocks: list[dict[str, Any]] = [
        {"type": "context", "elements": [_mrkdwn(head)]},
        *({"type": "section", "text": _mrkdwn(section)} for section in _sections(body)),
    ]
    payload = {
        "text": join_lines(head, body),
        "blocks": blocks + images,
        "unfurl_links": unfurl_links,
        "unfurl_media": unfurl_links,
    }
    fallback = {**payload, "blocks": blocks} if images else None
    return SlackMessage(payload=payload, fallback=fallback)


def _sections(body: str) -> list[str]:
    sections = (section.strip() for section in split_markup(body, "slack", SECTION_MAX))
    return [section for section in sections if section]


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _is_image(media: Media) -> bool:
    return media.kind == "image" and media.linkable


def _image_block(media: Media, content: Content) -> dict[str, Any]:
    who = shorten(content.sender, 80)[0] if content.sender else ""
    return {
        "type": "image",
        "image_url": media.url,
        "alt_text": f"Image from {who}" if who else "Image",
    }


# --- coalescing (relay/coalesce.py) -------------------------------------------------------------

BLOCKS_MAX: Final = 50  # blocks in one message
JOINED_TEXT_MAX: Final = 12_000  # a joined message's `text`: long enough, still readable


class SlackJoiner:
    """Several events' messages in one: their blocks in order, each event's context line
    first, and a `text` that says how many it holds, then holds them all."""

    def alone(self, message: SlackMessage) -> bool:
        return False  # images are blocks like any other

    def join(self, messages: Sequence[SlackMessage]) -> SlackMessage | None:
        if len(messages) == 1:
            return messages[0]
        blocks = [block for message in messages for block in message.payload["blocks"]]
        texts = [f"{len(messages)} messages", *(m.payload["text"] for m in messages)]
        size = sum(_width(text) for text in texts) + 2 * (len(texts) - 1)  # "\n\n" between
        if len(blocks) > BLOCKS_MAX or size > JOINED_TEXT_MAX:
            return None
        text = "\n\n".join(texts)
        payload = {**messages[0].payload, "text": text, "blocks": blocks}
        if all(message.fallback is None for message in messages):
            return SlackMessage(payload)
        plain = [block for m in messages for block in (m.fallback or m.payload)["blocks"]]
        return SlackMessage(payload, {**payload, "blocks": plain})


@functools.lru_cache(maxsize=1024)
def _width(text: str) -> int:
    # The lane joins the same renderings again and again while it fills a message.
    return width(text, "slack")
