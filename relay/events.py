"""A thin, typed view over a OneRoute event.

The event dict is kept whole (it is what routes match on and what the store keeps);
these helpers only read it, and never assume a field is present or of the right type:
OneRoute documents few guarantees, and every field may be null or missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Event = Mapping[str, Any]


def get_path(event: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path (`conversation.Channel.medium`, `items.0.id`) into JSON data.

    Returns (found, value); a JSON null that is present is found with value None.
    """
    current = event
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return False, None
            current = current[part]
        elif isinstance(current, list) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def text_at(event: Any, path: str) -> str | None:
    """The value at `path` when it is a non-empty string (numbers are shown as text too)."""
    found, value = get_path(event, path)
    if not found or value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def event_name(event: Event) -> str | None:
    return text_at(event, "event")


def conversation_key(event: Event) -> str | None:
    """The ordering key: messages of one conversation are delivered in the order received.

    `conversation.id`, else `message.conversation_id`; None when the event names no
    conversation (such events are delivered without an ordering constraint).
    """
    return text_at(event, "conversation.id") or text_at(event, "message.conversation_id")
