"""The `console` destination: print what Slack or Telegram would have received.

Used by `make run` without credentials, so a newcomer sees rendered messages in the
terminal. The lead renders the text; this only writes it, under a header naming the
destination.
"""

from __future__ import annotations

import sys
from typing import TextIO

from relay.redact import redact
from relay.send.outcome import Outcome, RetryLater, Sent


class ConsoleSender:
    """Writes each message to a stream (standard output unless told otherwise)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # None means "sys.stdout at the time of writing", so a replaced stdout (pytest's
        # capture, a redirect) is honoured.
        self._stream = stream

    async def send_text(self, destination: str, text: str) -> Outcome:
        stream = self._stream or sys.stdout
        try:
            stream.write(redact(f"── {destination} ──\n{text}\n\n"))
            stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or file
            return RetryLater("console_unavailable", redact(f"{type(exc).__name__}: {exc}"))
        return Sent()

    async def close(self) -> None:
        """Nothing to release; present so every sender closes the same way."""
