"""A thin, typed view over a OneRoute event.

The event dict is kept whole (it is what routes match on and what the store keeps);
these helpers only read it, and never assume a field is present or of the right type:
OneRoute documents few guarantees, and every field may be null or missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from relay.errors import InvalidEvent

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


_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_event(body: bytes) -> dict[str, Any]:
    """The event in a request body, parsed as JSON.parse would (no NaN, no Infinity).

    Lone surrogates (legal in JSON text, impossible to send on as UTF-8) become U+FFFD;
    integers too long for Python's int parser become floats, as in JavaScript.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"the body is not UTF-8 (byte {error.start})") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads says it: _DECODER.decode does not check
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        event = _DECODER.decode(text)
    except RecursionError:
        raise InvalidEvent("the JSON is nested too deeply") from None
    except ValueError as error:
        raise InvalidEvent(f"the body is not JSON: {error}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("the body must be a JSON object")
    if _LONE_SURROGATE_ESCAPE.search(body):
        event = _replace_lone_surrogates(event)
    return event


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) < 4000 else float(text)  # int() refuses >4300 digits


# Built once: json.loads with hooks builds a decoder and its scanner on every call, which
# took half of the parse (about 6 of 12 us for a 1 KiB event); one body per request.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int)


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    return value
