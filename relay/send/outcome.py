"""The one answer every sender gives for one API call: sent, retry later, or permanent failure.

Reasons are short stable words (`rate_limited`, `server_error`, `channel_not_found`, ...)
shared by logs, metrics and the dead-letter list; `detail` is a human sentence that
never contains a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    """Delivered. `ref` identifies the message for threads: Slack `ts`, Telegram message_id."""

    ref: str | None = None


@dataclass(frozen=True)
class RetryLater:
    """A transient failure. `after` is the server's Retry-After when it gave one (seconds),
    else None and the lane's backoff decides; `rate_limited` means the whole lane waits."""

    reason: str
    detail: str = ""
    after: float | None = None
    rate_limited: bool = False


@dataclass(frozen=True)
class Permanent:
    """Sending again cannot help (bad token, unknown channel, bot removed, bad request)."""

    reason: str
    detail: str = ""


Outcome = Sent | RetryLater | Permanent
