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


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


_NEEDS_QUOTES = re.compile(r'[ "=\n]')


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or _NEEDS_QUOTES.search(text)) else text


class _Formatter(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()


class TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in _fields_of(record).items())
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return self.redact(line)


class JSONFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


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
    root.setLevel(level.upper())
    # These log every request URL at INFO: the Telegram token is in it. Masked anyway, but
    # a line per API call is noise; our own delivery lines say what happened.
    for noisy in ("httpx", "httpcore", "telegram", "slack_sdk", "aiohttp.access", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    scrub_loggers(LIBRARY_LOGGERS, redactor)
