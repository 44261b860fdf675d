"""What listeners of answers hand their replies to, in tests (relay/answers/slack_in.py,
telegram_in.py): a stand-in for the relay's store."""

from __future__ import annotations

import asyncio

from relay.answers.model import Reply


class Store:
    """What the relay's store does with replies, as far as listeners can tell: keeps each
    key once, and can fail (`failing`) or hold a call (`hold`) like a store under load."""

    def __init__(self) -> None:
        self.calls: list[Reply] = []
        self.replies: dict[str, Reply] = {}
        self.failing = 0  # the next n calls raise `error`
        self.error: Exception = OSError("database is locked")
        self.hold: asyncio.Event | None = None

    async def __call__(self, reply: Reply) -> None:
        self.calls.append(reply)
        if self.hold is not None:
            await self.hold.wait()
        if self.failing:
            self.failing -= 1
            raise self.error
        self.replies.setdefault(reply.key, reply)
