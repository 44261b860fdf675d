"""What an event says, independent of any destination's markup; shared by renderers.

`extract(event) -> Content`, used alike by the Slack and the Telegram renderer: who wrote,
where, the text, the media, a campaign's summary and report link, or an unknown event's
flattened fields. Every field may be null, missing or of the wrong type; extraction keeps
what is there and never raises.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from relay.events import event_name, get_path, text_at

Kind = Literal["message", "campaign", "generic"]
MediaKind = Literal["image", "video", "document", "audio"]

MESSAGE_EVENTS: Final = frozenset({"newMessage"})
# OneRoute spells it "compaign"; the correct spelling is accepted too, should they fix it.
CAMPAIGN_EVENTS: Final = frozenset({"compaignDeliveryReport", "campaignDeliveryReport"})
MEDIA_FIELDS: Final[tuple[tuple[MediaKind, str], ...]] = (
    ("image", "imageUrl"),
    ("video", "videoUrl"),
    ("document", "documentUrl"),
    ("audio", "audioUrl"),
)

MAX_URL: Final = 2048  # longer "URLs" are shown as text: no platform fetches them anyway
GENERIC_MAX_DEPTH: Final = 6  # deeper parts of an unknown event are shown as JSON
GENERIC_MAX_FIELDS: Final = 300  # a 1 MiB event must not become hundreds of messages


@dataclass(frozen=True)
class Media:
    """One attachment, from whichever `*Url` field is set (whatever `contentType` says)."""

    kind: MediaKind
    url: str

    @property
    def linkable(self) -> bool:
        """True for an http(s) URL a platform can fetch and a reader can open."""
        return is_web_url(self.url)


@dataclass(frozen=True)
class Content:
    """What an event says, independent of any destination's markup."""

    kind: Kind
    event_name: str | None
    sender: str | None = None  # the name only; `agent` tells whether it is the team's side
    agent: bool = False
    customer: str | None = None  # whom an agent's message answers
    channel: str | None = None
    medium: str | None = None
    status: str | None = None
    conversation_id: str | None = None
    text: str | None = None  # a message's content, or a campaign report's summary
    quoted_message_id: str | None = None
    media: tuple[Media, ...] = ()
    report_url: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # an unknown event, flattened
    more_fields: int = 0  # fields past GENERIC_MAX_FIELDS, counted so the cut is said


def extract(event: Mapping[str, Any]) -> Content:
    """The Content of any event; unknown events are flattened rather than dropped."""
    name = event_name(event)
    if name in MESSAGE_EVENTS:
        return _message(event, name)
    if name in CAMPAIGN_EVENTS:
        return _campaign(event, name)
    return _generic(event, name)


def _message(event: Mapping[str, Any], name: str | None) -> Content:
    agent = _is_true(get_path(event, "message.sender.authUser")[1])
    other = "conversation.agent.name" if agent else "conversation.customer.name"
    message = event.get("message")
    # A `message` that is plain text (or a list...) rather than an object is the text itself.
    text = (
        _value_text(event, "message.content") if isinstance(message, Mapping) else as_text(message)
    )
    return Content(
        kind="message",
        event_name=name,
        sender=text_at(event, "message.sender.name") or text_at(event, other),
        agent=agent,
        customer=text_at(event, "conversation.customer.name") if agent else None,
        channel=text_at(event, "conversation.Channel.name"),
        medium=text_at(event, "conversation.Channel.medium"),
        status=text_at(event, "conversation.status"),
        conversation_id=_conversation_id(event),
        text=text,
        quoted_message_id=_quoted(get_path(event, "message.quoted_message_id")[1]),
        media=tuple(
            Media(kind, url)
            for kind, key in MEDIA_FIELDS
            if (url := _value_text(event, f"message.{key}")) is not None
        ),
    )


def _campaign(event: Mapping[str, Any], name: str | None) -> Content:
    return Content(
        kind="campaign",
        event_name=name,
        conversation_id=_conversation_id(event),
        text=_value_text(event, "message"),
        report_url=_value_text(event, "campaignReportUrl"),
    )


def _generic(event: Mapping[str, Any], name: str | None) -> Content:
    # The name is shown first in the context line; a non-text `event` is shown as a field.
    rest = {key: value for key, value in event.items() if not (key == "event" and name)}
    lines = flatten(rest)
    fields = tuple(islice(lines, GENERIC_MAX_FIELDS))
    return Content(
        kind="generic",
        event_name=name,
        status=text_at(event, "conversation.status"),
        conversation_id=_conversation_id(event),
        fields=fields,
        more_fields=sum(1 for _ in lines),
    )


def _conversation_id(event: Mapping[str, Any]) -> str | None:
    return text_at(event, "conversation.id") or text_at(event, "message.conversation_id")


def _value_text(event: Mapping[str, Any], path: str) -> str | None:
    return as_text(get_path(event, path)[1])


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _quoted(value: Any) -> str | None:
    return None if value is False else as_text(value)


def as_text(value: Any) -> str | None:
    """Any JSON value as display text; None for null, missing, or a blank string.

    Objects and lists where text was expected are shown as JSON rather than dropped.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    return to_json(value)


def to_json(value: Any) -> str:
    """Compact, readable JSON (non-ASCII kept); never raises."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError, RecursionError):
        # Non-text keys, cycles, integers too long to print: say so rather than fail.
        return f"<{type(value).__name__} that cannot be shown as JSON>"


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """`key.path: value` pairs of nested JSON, depth-first; deeper parts as one JSON value."""
    if isinstance(value, Mapping) and value and depth < GENERIC_MAX_DEPTH:
        for key, item in value.items():
            yield from flatten(item, _join_path(prefix, key), depth + 1)
    elif isinstance(value, list | tuple) and value and depth < GENERIC_MAX_DEPTH:
        for index, item in enumerate(value):
            yield from flatten(item, _join_path(prefix, index), depth + 1)
    else:
        yield prefix or "(value)", value if isinstance(value, str) else to_json(value)


def _join_path(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def is_web_url(url: str) -> bool:
    """An http(s) URL with a host, no whitespace or control characters, of sane length."""
    if len(url) > MAX_URL or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
