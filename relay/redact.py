"""Keep secrets out of every text a user or a log can see.

Secrets (bot tokens, webhook URLs, OneRoute secrets) are registered once when the config
is loaded; `redact()` is applied to log records, stored failure details and CLI output.
Telegram's token travels inside every Bot API URL, sometimes URL-encoded, so both forms
are masked; a Slack webhook URL is masked whole and by its secret path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6  # shorter strings would mask ordinary words; config rejects them anyway

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote(secret, safe="/")}
    parts = urlsplit(secret)
    if parts.scheme and parts.netloc and len(parts.path) > _MIN_SECRET_LENGTH:
        forms.add(parts.path)  # a webhook URL's path is its secret, even without the host
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def register(*secrets: str | None) -> None:
    """Add secrets to mask from now on (idempotent; longest first so no part survives)."""
    global _secrets
    with _lock:
        found = set(_secrets)
        for secret in secrets:
            if secret:
                found |= _forms(secret)
        _secrets = tuple(sorted(found, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def clear() -> None:
    """Forget every registered secret (tests)."""
    global _secrets
    with _lock:
        _secrets = ()


class RedactingFilter(logging.Filter):
    """Scrub registered secrets from records (and their tracebacks) on the logger it sits on.

    Our formatters redact every line they write; this filter is for records that reach
    other handlers (a test's caplog, a handler an embedding application adds).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if redact(message) != message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def scrub_loggers(names: Iterable[str]) -> None:
    """Attach the filter once to each named logger (a filter applies only on the logger a
    record starts at, so every library logger that may carry a secret needs its own)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
