"""Keep secrets out of every text a user or a log can see.

A `Redactor` knows a set of secrets (bot tokens, webhook URLs, OneRoute secrets, database
passwords) and masks them in any text. There is no process-wide registry: whoever holds
secrets holds a redactor for them. The relay has one for its whole config, used by its
log formatters, its lanes (failure details before they are stored) and the CLI's output;
each sender has one for its own token, so the details it reports are clean even before
anyone else sees them.

Telegram's token travels inside every Bot API URL, sometimes URL-encoded, so both forms
are masked; a Slack webhook URL is masked whole and by its secret path. Matching ignores
case: libraries reword what they report (python-telegram-bot capitalises an error's
description, which lower-cases a token echoed in it).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote, urlsplit

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6  # shorter strings would mask ordinary words; config rejects them anyway


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote(secret, safe="/")}
    parts = urlsplit(secret)
    if parts.scheme and parts.netloc and len(parts.path) > _MIN_SECRET_LENGTH:
        forms.add(parts.path)  # a webhook URL's path is its secret, even without the host
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


class Redactor:
    """Masks the secrets it was given. Thread-safe; secrets are only ever added."""

    def __init__(self, *secrets: str | None) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        # The pattern, and the forms in lower case when they are all ASCII (else None);
        # swapped together, so a reader on another thread never mixes two generations.
        self._matchers: tuple[re.Pattern[str], tuple[str, ...] | None] | None = None
        self.register(*secrets)

    def register(self, *secrets: str | None) -> None:
        """Add secrets to mask from now on (idempotent; longest first so no part survives)."""
        with self._lock:
            found = set(self._secrets)
            for secret in secrets:
                if secret:
                    found |= _forms(secret)
            if found == self._secrets:
                return
            self._secrets = frozenset(found)
            longest_first = sorted(found, key=len, reverse=True)
            pattern = re.compile("|".join(map(re.escape, longest_first)), re.IGNORECASE)
            ascii_forms = all(form.isascii() for form in found)
            lowered = tuple(form.lower() for form in longest_first) if ascii_forms else None
            self._matchers = (pattern, lowered)

    def __call__(self, text: str) -> str:
        matchers = self._matchers
        if matchers is None:
            return text
        pattern, lowered = matchers
        # Fast path (every log line passes here): for ASCII text and ASCII secrets, matching
        # with IGNORECASE is comparing lower-case forms, so when no lower-case secret is in
        # the lower-cased text, the pattern cannot match. `in` is about ten times cheaper
        # than the pattern over a log line (0.3 against 3.7 us with two secrets).
        if lowered is not None and text.isascii():
            folded = text.lower()
            for form in lowered:
                if form in folded:
                    break
            else:
                return text
        return pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Scrub a redactor's secrets from records (and their tracebacks) on the logger it sits on.

    The relay's formatters redact every line they write; this filter is for records that
    reach other handlers (a test's caplog, a handler an embedding application adds).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
        return True


def scrub_loggers(prefixes: Iterable[str], redactor: Redactor) -> Callable[[], None]:
    """Attach a filter for `redactor` to every logger under these prefixes (a filter applies
    only on the logger a record starts at, so each library logger that may carry a secret
    needs its own); returns the function that detaches them again."""
    prefixes = tuple(prefixes)
    names = {*prefixes, *(n for n in logging.root.manager.loggerDict if n.startswith(prefixes))}
    attached: list[tuple[logging.Logger, RedactingFilter]] = []
    for name in names:
        logger = logging.getLogger(name)
        if not any(
            isinstance(f, RedactingFilter) and f.redactor is redactor for f in logger.filters
        ):
            scrubber = RedactingFilter(redactor)
            logger.addFilter(scrubber)
            attached.append((logger, scrubber))

    def detach() -> None:
        for logger, scrubber in attached:
            logger.removeFilter(scrubber)

    return detach


@contextlib.contextmanager
def scrubbed(prefixes: Iterable[str], redactor: Redactor) -> Iterator[None]:
    """`scrub_loggers` for the duration of a block (a doctor check, a command)."""
    detach = scrub_loggers(prefixes, redactor)
    try:
        yield
    finally:
        detach()
