"""The store's rows as the console API's JSON (relay/store/views.py reads them).

Routes are not stored, only the destinations they led to (delivery rows); the routes an
event took are worked out again from the config in force, as `relay route` does. Times
are Unix seconds (the page shows them in the reader's time zone).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from relay.config.model import Config
from relay.errors import InvalidEvent
from relay.events import parse_event, text_at
from relay.routing import decide
from relay.store.replies import ANSWER_EVENT
from relay.store.views import AttemptRow, DeadRow, DeliveryRow, EventRow

SNIPPET = 140  # characters of a message's text shown in a list


def body_of(event: EventRow) -> dict[str, Any] | None:
    try:
        return parse_event(bytes(event.body))
    except InvalidEvent:
        return None  # stored before a stricter parser: shown as text


def delivery(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "destination": row.destination,
        "state": row.state,
        "attempts": row.attempts,
        "next_at": row.next_at if row.state == "pending" else None,
        "reason": row.reason,
        "detail": row.detail,
        "finished_at": row.finished_at,
    }


def attempt(row: AttemptRow) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "at": row.at,
        "outcome": row.outcome,
        "reason": row.reason,
        "detail": row.detail,
        "duration": row.duration,
    }


def _snippet(text: str | None) -> str | None:
    return text[:SNIPPET] + ("…" if len(text) > SNIPPET else "") if text else None


def is_answer(event: EventRow) -> bool:
    """An answer a team member wrote to a customer (relay/answers/intake.py stores it as an
    event of its own, delivered by the lane `@answers:<destination>` to OneRoute)."""
    return event.event_name == ANSWER_EVENT


def who_and_where(body: Mapping[str, Any] | None, answer: bool = False) -> dict[str, Any]:
    """Who wrote, to whom, on which channel, and the start of the text."""
    if body is None:
        return {"sender": None, "customer": None, "channel": None, "medium": None, "text": None}
    if answer:  # {"conversation": ..., "reply": Reply}: a person in Slack or Telegram
        return {
            "sender": text_at(body, "reply.user"),
            "customer": None,
            "channel": text_at(body, "reply.destination"),
            "medium": text_at(body, "reply.platform"),
            "text": _snippet(text_at(body, "reply.text")),
        }
    text = text_at(body, "message.content")
    return {
        "sender": text_at(body, "message.sender.name"),
        "customer": text_at(body, "conversation.customer.name"),
        "channel": text_at(body, "conversation.Channel.name"),
        "medium": text_at(body, "conversation.Channel.medium"),
        "text": _snippet(text),
    }


def event_summary(
    event: EventRow, deliveries: Sequence[DeliveryRow], config: Config
) -> dict[str, Any]:
    body = body_of(event)
    answer = is_answer(event)
    routed = body is not None and not answer  # an answer is not routed: it goes to OneRoute
    return {
        "id": event.id,
        "received_at": event.received_at,
        "event": event.event_name,
        "conversation": event.conversation,
        "answer": answer,
        **who_and_where(body, answer),
        "routes": list(decide(config.routes, body).routes) if routed else [],
        "deliveries": [delivery(row) for row in deliveries],
    }


def dead_letter(row: DeadRow) -> dict[str, Any]:
    return {
        **delivery(row.delivery),
        "event_id": row.delivery.event_id,
        "event": row.event_name,
        "conversation": row.conversation,
        "created_at": row.delivery.created_at,
    }


def age(since: float | None, now: float | None = None) -> float | None:
    if since is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - since)
