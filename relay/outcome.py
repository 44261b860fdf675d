"""The one answer every sender gives for one API call: sent, retry later, or permanent failure.

Failures carry a `Reason` (relay/errors.py), the vocabulary shared by logs, metrics and the
dead-letter list, and a `detail`: a short human sentence that never contains a secret
(each sender masks its own token; the lane masks every secret of the config again before
anything is stored or logged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from relay.errors import Reason

DETAIL_MAX = 500  # characters of a failure detail kept (a proxy's HTML page is not a detail)


def short_detail(text: str) -> str:
    """One line of at most DETAIL_MAX characters."""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def describe(exc: BaseException) -> str:
    """`Name: message`, without repeating a name the message already starts with
    (python-telegram-bot words a 403 as Forbidden("Forbidden: bot was kicked"))."""
    name, text = type(exc).__name__, str(exc).strip()
    if not text:
        return name
    return text if text.lower().startswith(name.lower()) else f"{name}: {text}"


@dataclass(frozen=True)
class Sent:
    """Delivered. `ref` identifies the message for threads: Slack `ts`, Telegram message_id."""

    ref: str | None = None


@dataclass(frozen=True)
class RetryLater:
    """A transient failure. `after` is the server's Retry-After when it gave one (seconds),
    else None and the lane's backoff decides; `rate_limited` means the whole lane waits."""

    reason: Reason
    detail: str = ""
    after: float | None = None
    rate_limited: bool = False

    def masked(self, redact: Callable[[str], str]) -> RetryLater:
        return replace(self, detail=short_detail(redact(self.detail)))


@dataclass(frozen=True)
class Permanent:
    """Sending again cannot help (bad token, unknown channel, bot removed, bad request)."""

    reason: Reason
    detail: str = ""

    def masked(self, redact: Callable[[str], str]) -> Permanent:
        return replace(self, detail=short_detail(redact(self.detail)))


Outcome = Sent | RetryLater | Permanent
Failure = RetryLater | Permanent


def failure(reason: Reason, detail: str) -> Failure:
    """The outcome a reason implies: transient reasons retry, the others are permanent."""
    return RetryLater(reason, detail) if reason.transient else Permanent(reason, detail)
