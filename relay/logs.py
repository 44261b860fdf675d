"""Logging: one line per request and per delivery outcome, as text or JSON, secrets masked.

Call sites pass structured fields with `extra=fields(event_id=..., destination=...)`; the
formatters write them as `key=value` pairs or JSON keys. Every line goes through the
relay's `Redactor` last, so a token inside a library's message (httpx logs each Bot API
URL, which contains the Telegram token) is masked too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Literal

from relay.redact import Redactor, scrub_loggers

LogFormat = Literal["text", "json"]
_FIELDS = "relay_fields"


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields, None values left out."""
    return {_FIELDS: {key: value for key, value in values.items() if value is not None}}


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, _FIELDS, {})


def _timestamp(created: float) -> str:
    """`created` (a LogRecord's: time.time()) as UTC with milliseconds, counted as Python
    3.11's LogRecord counts its msecs; the seconds part is formatted once per second, not
    once per line (a line per request)."""
    whole = int(created)
    second, text = _last_second[0]  # one tuple, replaced whole: safe across threads
    if second != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        _last_second[0] = (whole, text)
    return f"{text}.{int((created - whole) * 1000):03d}Z"


_last_second: list[tuple[int | None, str]] = [(None, "")]  # int(created), its seconds text


_NEEDS_QUOTES = re.compile(r'[ "=\n]')


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or _NEEDS_QUOTES.search(text)) else text


class _Formatter(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            _fields_of(record),
            exception,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        values: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        """The line for a record with these parts (`write` makes it without a record)."""
        raise NotImplementedError


class TextFormatter(_Formatter):
    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        values: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        line = f"{_timestamp(created)} {level:<7} {logger}: {message}"
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in values.items())
        if pairs:
            line = f"{line} {pairs}"
        if exception:
            line = f"{line}\n{exception}"
        return self.redact(line)


class JSONFormatter(_Formatter):
    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        values: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(created),
            "level": level.lower(),
            "logger": logger,
            "message": message,
            **values,
        }
        if exception:
            entry["exception"] = exception
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


# The handler setup() installed: `write` may bypass logging's machinery while it is the
# only one a record would reach.
_handler: logging.StreamHandler[Any] | None = None


def write(logger: logging.Logger, level: int, message: str, **values: Any) -> None:
    """`logger.log(level, message, extra=fields(**values))`: the same line, for the hot path.

    Ingest logs a line per request. When that line can only reach the handler `setup()`
    installed (no other handler or filter on the way, as in `relay serve`), it is formatted
    by that handler's formatter and written straight to its stream, without a LogRecord and
    the calls around it (about 10 us a line). Anywhere else — a test's caplog, a handler an
    embedding application added — it is an ordinary log call.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _handler
    if handler is None or not _only_to(handler, logger, level):
        logger.log(level, message, extra=fields(**values), stacklevel=2)
        return
    formatter = handler.formatter
    assert isinstance(formatter, _Formatter)  # _only_to checked it
    values = {key: value for key, value in values.items() if value is not None}
    try:
        line = formatter.line(
            time.time(), logging.getLevelName(level), logger.name, message, values
        )
        with handler.lock:  # type: ignore[union-attr]  # created with the handler
            handler.stream.write(line + handler.terminator)
            handler.flush()
    except Exception:  # as StreamHandler.emit does: say so on stderr, go on
        handler.handleError(logger.makeRecord(logger.name, level, "", 0, message, (), None))


def _only_to(handler: logging.Handler, logger: logging.Logger, level: int) -> bool:
    """Whether a record of `logger` at `level` would reach `handler` and nothing else,
    unfiltered, and be formatted by one of this module's formatters."""
    root = logging.root
    if root.handlers != [handler] or handler.filters or level < handler.level:
        return False
    if logger.filters or logger.disabled or not isinstance(handler.formatter, _Formatter):
        return False
    current: logging.Logger | None = logger
    while current is not None and current is not root:
        if current.handlers or not current.propagate:
            return False
        current = current.parent
    return True


# Libraries whose records may carry a secret: httpx logs each request URL (the Telegram
# token is in it), PTB its base URL, slack-sdk's webhook client the webhook URL.
LIBRARY_LOGGERS = ("telegram", "httpx", "httpcore", "slack_sdk", "aiohttp", "asyncio")


def setup(redactor: Redactor, level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Configure the root logger once, for the CLI; every line is masked by `redactor`."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JSONFormatter if log_format == "json" else TextFormatter
    handler.setFormatter(formatter(redactor))
    # A record per request: skip what LogRecord gathers that no formatter here prints (the
    # caller's frame, thread, process id and name; the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    global _handler
    _handler = handler
    root.setLevel(level.upper())
    # These log every request URL at INFO: the Telegram token is in it. Masked anyway, but
    # a line per API call is noise; our own delivery lines say what happened.
    for noisy in ("httpx", "httpcore", "telegram", "slack_sdk", "aiohttp.access", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    scrub_loggers(LIBRARY_LOGGERS, redactor)
