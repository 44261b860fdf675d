"""What a Telegram answer means: the one classifier for the sender and `relay doctor` alike.

`classify_telegram` is pure and table-tested. python-telegram-bot (PTB) raises an exception
for every answer that is not `{"ok": true, "result": ...}`; this reads it. The order of
checks matters: `BadRequest` and `TimedOut` are subclasses of `NetworkError`, and every
HTTP answer PTB does not recognise (5xx, 429 without `retry_after`) is a plain
`NetworkError`.

Anything that is not an answer of the Bot API — an HTML page from a proxy (PTB: "Invalid
server response", or "Parsing the server response … failed"), `{"ok": false}` at HTTP 200,
a `result` that is not a message — is a transient `bad_answer`: Telegram itself does not
answer like that, so whatever stood in its way may be gone next time.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from relay.errors import Reason
from relay.outcome import Failure, Permanent, RetryLater, describe, short_detail

# Telegram's wording, lower-cased: PTB drops the "Bad Request: " prefix and capitalizes
# the rest (which lower-cases "HTTP URL"), so matching is on lower-case text.
MEDIA_REFUSED = (
    "wrong file identifier/http url specified",
    "failed to get http url content",
    "wrong type of the web page content",
    "wrong remote file identifier specified",
    "image_process_failed",
    "wrong file_id or the file is temporarily unavailable",
)
_FORBIDDEN_BAD_REQUESTS = ("not enough rights", "have no rights to send")
# PTB raises NetworkError with these prefixes when no HTTP answer arrived at all.
NO_ANSWER = ("httpx.", "unknown error in http implementation")
# PTB's words for an answer whose body is not the Bot API's JSON.
_UNREADABLE = ("invalid server response", "parsing the server response")


def classify_telegram(exc: BaseException) -> Failure:
    """Decide what an exception raised for a Bot API call means."""
    detail = short_detail(describe(exc))
    text = str(exc).lower()
    if isinstance(exc, TelegramError) and any(words in text for words in _UNREADABLE):
        return RetryLater(Reason.BAD_ANSWER, detail)
    # Specific subclasses before NetworkError, their common base.
    if isinstance(exc, RetryAfter):
        return RetryLater(Reason.RATE_LIMITED, detail, retry_after(exc), rate_limited=True)
    if isinstance(exc, InvalidToken):
        return Permanent(Reason.UNAUTHORIZED, detail)
    if isinstance(exc, Forbidden):
        return Permanent(Reason.FORBIDDEN, detail)
    if isinstance(exc, ChatMigrated):
        # Only seen here when following the migration failed; config must name the new id.
        return Permanent(Reason.CHAT_MIGRATED, detail)
    if isinstance(exc, BadRequest):
        return _bad_request(text, detail)
    if isinstance(exc, TimedOut | TimeoutError):
        return RetryLater(Reason.TIMEOUT, detail)
    if isinstance(exc, NetworkError):
        if text.startswith(NO_ANSWER):
            return RetryLater(Reason.NETWORK, detail)
        if "too many requests" in text:  # a 429 that did not say how long to wait
            return RetryLater(Reason.RATE_LIMITED, detail, rate_limited=True)
        return RetryLater(Reason.SERVER_ERROR, detail)  # an HTTP answer PTB has no class for
    if isinstance(exc, TelegramError):
        # Conflict, EndPointNotFound and anything newer: an answer about this request that
        # will not change by sending it again.
        return Permanent(Reason.BAD_REQUEST, detail)
    if isinstance(exc, OSError):  # PTB wraps its transport errors, so this is rare
        return RetryLater(Reason.NETWORK, detail)
    # PTB could not make sense of a 200 answer: `{"ok": false}` (KeyError 'result'), a JSON
    # list, a `retry_after` that is not a number, ...
    return RetryLater(Reason.BAD_ANSWER, short_detail(f"unreadable answer: {detail}"))


def _bad_request(text: str, detail: str) -> Permanent:
    if "chat not found" in text:
        return Permanent(Reason.CHAT_NOT_FOUND, detail)
    if "message thread not found" in text or "topic_closed" in text:
        return Permanent(Reason.TOPIC_NOT_FOUND, detail)
    if any(phrase in text for phrase in _FORBIDDEN_BAD_REQUESTS):
        return Permanent(Reason.FORBIDDEN, detail)
    return Permanent(Reason.BAD_REQUEST, detail)


def retry_after(exc: RetryAfter) -> float:
    """Seconds to wait. PTB 22.2+ holds a timedelta but still hands out an int (with a
    deprecation warning) unless PTB_TIMEDELTA is set; older versions hand out an int.
    How long the lane really waits is capped by the lane (relay/lanes.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | float | timedelta = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return max(seconds, 0.0)


def cannot_parse(exc: BadRequest) -> bool:
    """Telegram could not parse the message's HTML."""
    return "can't parse entities" in str(exc).lower()


def media_refused(exc: BadRequest) -> bool:
    """Telegram would not fetch the media URL."""
    return any(phrase in str(exc).lower() for phrase in MEDIA_REFUSED)
