"""Coalescing: when several deliveries for one place are due at once, one message carries them.

A platform takes about one message a second in a Slack channel and twenty a minute in a
Telegram group; a busy line brings more. So when the pacer allows the next message, the
lane packs the due deliveries, oldest first, into as few messages as the platform's limits
allow (README: "Keeping up with a busy line"):

- each event keeps its own rendering (its who/where line and text): the platform's
  `Joiner` (relay/integrations/*/render.py) only puts renderings side by side, and says
  when a message would be too large;
- an event that cannot share a message — Telegram media, a rendering long enough to need
  several messages, a delivery already half sent — goes on its own, in its place: it is
  skipped, and its conversation's later events wait behind it (per-conversation order);
- with threads, only one conversation's events share a message (they share its thread);
- one event due alone is sent exactly as it would be without coalescing.

`pack` is pure: the lane and `relay route --render` (relay/destinations.py) use it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

M = TypeVar("M")  # one platform's message
R = TypeVar("R")  # what is packed: a claimed delivery row, or an event (route --render)


class Joiner(Protocol[M]):
    """How one platform puts several events' renderings in one message."""

    def alone(self, message: M) -> bool:
        """This rendering must be sent on its own (e.g. Telegram media)."""
        ...

    def join(self, messages: Sequence[M]) -> M | None:
        """One message holding these renderings in order, or None when it would exceed the
        platform's limits. A single rendering is returned unchanged."""
        ...


@dataclass(frozen=True)
class Packed(Generic[R, M]):
    """The rows the next send carries, and what to send: one joined message, or the first
    row's own messages when it goes alone."""

    rows: list[R]
    messages: list[M]


def pack(
    rows: Sequence[R],
    render: Callable[[R], Sequence[M]],
    joiner: Joiner[M] | None,
    conversation: Callable[[R], str],
    one_conversation: bool,
) -> Packed[R, M]:
    """The next message for `rows` (due, oldest first; the first is always in it).

    `render(row)` may raise: the first row's error is the caller's to handle, a later row's
    makes that row wait for its own turn. `conversation(row)` keys per-conversation order
    (a row without a conversation gets a key of its own)."""
    first, *rest = rows
    messages = list(render(first))
    if joiner is None or len(messages) != 1 or joiner.alone(messages[0]):
        return Packed([first], messages)
    chosen, parts, joined = [first], [messages[0]], messages[0]
    waiting: set[str] = set()  # conversations whose next row could not join: the rest waits
    for row in rest:
        key = conversation(row)
        if key in waiting or (one_conversation and key != conversation(first)):
            continue
        rendered = _render(render, row)
        if rendered is None or len(rendered) != 1 or joiner.alone(rendered[0]):
            waiting.add(key)
            continue
        candidate = joiner.join([*parts, rendered[0]])
        if candidate is None:
            break  # the message is full
        chosen.append(row)
        parts.append(rendered[0])
        joined = candidate
    return Packed(chosen, [joined])


def _render(render: Callable[[R], Sequence[M]], row: R) -> list[M] | None:
    try:
        return list(render(row))
    except Exception:  # its own turn will say what is wrong with it (relay/lanes.py)
        return None
