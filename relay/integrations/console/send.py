"""The `console` destination's sender: print what Slack or Telegram would have received.

Used by `make run` without credentials, so a newcomer sees rendered messages in the
terminal. The renderer (relay/integrations/console/render.py) makes the text; this only
writes it, under a header naming the destination, masked by the relay's redactor.
"""

from __future__ import annotations

import sys
from typing import TextIO

from relay.errors import Reason
from relay.integrations.base import Request
from relay.integrations.console.render import ConsoleView, format_view
from relay.outcome import Outcome, RetryLater, Sent, describe
from relay.redact import Redactor


class ConsoleSender:
    """Writes each message to a stream (standard output unless told otherwise)."""

    def __init__(
        self, destination: str, redactor: Redactor | None = None, stream: TextIO | None = None
    ) -> None:
        self.destination = destination
        self.redact = redactor or Redactor()
        # None means "sys.stdout at the time of writing", so a replaced stdout (pytest's
        # capture, a redirect) is honoured.
        self._stream = stream

    def request(self, message: ConsoleView, thread: str | None) -> Request:
        return Request("console", {"text": format_view(message)})

    async def send(self, message: ConsoleView, thread: str | None = None) -> Outcome:
        stream = self._stream or sys.stdout
        text = format_view(message)
        try:
            stream.write(self.redact(f"── {self.destination} ──\n{text}\n\n"))
            stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or file
            return RetryLater(Reason.CONSOLE_UNAVAILABLE, self.redact(describe(exc)))
        return Sent()

    async def close(self) -> None:
        """Nothing to release; present so every sender closes the same way."""
