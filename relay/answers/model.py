"""What the answer listeners hand over, and what they share.

A listener (relay/answers/slack_in.py, relay/answers/telegram_in.py) watches the places
named by `ReplySource`s, turns a person's message that may be an answer into a `Reply`,
and awaits `on_reply(reply)`. Its completion means "durably stored": only then does the
listener acknowledge the message to the platform (a Socket Mode ack, a 200 to the Events
API, the next `getUpdates` offset). If it raises, nothing is acknowledged and the
platform delivers the message again, so a Reply is stored at least once; `key` makes the
second copy a duplicate. Whether the thread or message replied to is one the relay sent
is for the store to decide: listeners know nothing of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Platform = Literal["slack", "telegram"]
DEFAULT_NOTE_PREFIX = "note:"


@dataclass(frozen=True)
class Reply:
    """A person wrote something where the relay may treat it as an answer to a customer.

    `key` is unique per destination and platform message (Slack channel and `ts`, Telegram
    chat and message id), so the same message seen twice — a Slack retry, an update read
    again after a restart, the same message by Socket Mode and the Events API — has the
    same key, and two destinations watching one channel each get their own. `at` is when
    it was written (seconds since the epoch).

    Where: Slack `channel`, `ts` and `thread_ts` (the thread's parent); Telegram `chat_id`,
    `message_id`, `reply_to` (the message it replies to, if any) and `topic` (the forum
    topic's message_thread_id, if any).
    """

    destination: str
    platform: Platform
    key: str
    user: str
    text: str
    at: float
    channel: str | None = None
    ts: str | None = None
    thread_ts: str | None = None
    chat_id: int | None = None
    message_id: int | None = None
    reply_to: int | None = None
    topic: int | None = None

    def to_json(self) -> bytes:
        """The body to store: canonical JSON (sorted keys), so the same Reply is the same
        bytes and the store's duplicate check by body works too."""
        return json.dumps(
            asdict(self), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        ).encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> Reply:
        """Read a stored body back; ValueError when it is not a Reply (unknown keys are
        ignored, so a body written by a newer relay still reads)."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not a stored reply: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a stored reply: not a JSON object")
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in data or data[field.name] is None:
                if field.name in _REQUIRED:
                    raise ValueError(f"not a stored reply: {field.name} is missing")
                continue
            values[field.name] = _typed(field.name, data[field.name])
        if values["platform"] not in ("slack", "telegram"):
            raise ValueError(f"not a stored reply: unknown platform {values['platform']!r}")
        return cls(**values)


_REQUIRED = frozenset({"destination", "platform", "key", "user", "text", "at"})
_INTS = frozenset({"chat_id", "message_id", "reply_to", "topic"})


def _typed(name: str, value: Any) -> Any:
    if name == "at":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif name in _INTS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        return value
    raise ValueError(f"not a stored reply: {name} has the wrong type")


OnReply = Callable[[Reply], Awaitable[None]]


@dataclass(frozen=True)
class ReplySource:
    """A destination whose replies a listener watches: its name, `place` (the Slack channel
    id, or the Telegram chat id or @channelname it posts to), `from_users` (ids of the
    people who may answer; empty: anyone) and `note_prefix` (messages starting with it,
    after leading spaces and ignoring case, stay on the platform; empty: none do)."""

    destination: str
    place: str | int
    from_users: frozenset[str] = frozenset()
    note_prefix: str = DEFAULT_NOTE_PREFIX

    def __post_init__(self) -> None:
        # Config lists Telegram ids as numbers; platforms hand ids over as text or numbers.
        users: Iterable[str | int] = self.from_users
        object.__setattr__(self, "from_users", frozenset(str(user) for user in users))

    def allows(self, user: str) -> bool:
        return not self.from_users or user in self.from_users

    def is_note(self, text: str) -> bool:
        prefix = self.note_prefix.strip().casefold()
        return bool(prefix) and text.lstrip().casefold().startswith(prefix)


@dataclass(frozen=True)
class Backoff:
    """How long a listener waits before trying again: `first` seconds doubling to `most`
    for trouble that may pass by itself (the network, 5xx), every `refused` seconds for a
    refusal only a person can fix (a rejected token, a webhook in the way)."""

    first: float = 1.0
    most: float = 60.0
    refused: float = 60.0

    def after(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (counting from 0)."""
        return min(self.most, self.first * 2 ** min(failures, 30))


DEFAULT_BACKOFF = Backoff()


class Problems:
    """Says each problem once: a line when a problem starts or changes, DEBUG while it
    lasts, and a line when it is over — a listener retrying every minute for a day
    writes two lines, not 1440."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.current: str | None = None

    def report(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        self._log.log(level if kind != self.current else logging.DEBUG, message, stacklevel=2)
        self.current = kind

    def over(self, message: str) -> None:
        if self.current is not None:
            self._log.info(message, stacklevel=2)
        self.current = None
