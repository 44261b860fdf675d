"""`logs.write`, the request log line without a LogRecord, writes what logging would."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from relay import logs
from relay.logs import fields, write
from relay.redact import Redactor

SECRET = "s3cret-value-for-logs"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def serve_logging() -> Iterator[Any]:
    """Logging as `relay serve` sets it up, into a StringIO; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logs._handler)
    # setup() also quiets and scrubs the libraries' loggers: later tests (in this worker)
    # assert on what those libraries log, so they get their levels and filters back.
    libraries = [logging.getLogger(name) for name in (*logs.LIBRARY_LOGGERS, "hpack",
                                                       "aiohttp.access")]  # fmt: skip
    kept = [(logger, logger.level, logger.filters[:]) for logger in libraries]

    def setup(log_format: logs.LogFormat) -> io.StringIO:
        logs.setup(Redactor(SECRET), "info", log_format)
        stream = io.StringIO()
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        return stream

    yield setup
    root.handlers[:], logs._handler = saved[0], saved[2]
    root.setLevel(saved[1])
    for logger, level, filters in kept:
        logger.setLevel(level)
        logger.filters[:] = filters


def lines(text: str) -> list[str]:
    return [TIME.sub("T", line) for line in text.splitlines()]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_write_gives_the_line_logging_gives(serve_logging: Any, log_format: str) -> None:
    stream = serve_logging(log_format)
    log = logging.getLogger("relay.ingest")
    values = {"event_id": 7, "event": None, "conversation": "c 1", "client": f"x{SECRET}"}
    log.info("accepted", extra=fields(**values))
    assert logs._only_to(logs._handler, log, logging.INFO)  # type: ignore[arg-type]
    write(log, logging.INFO, "accepted", **values)
    first, second = lines(stream.getvalue())
    assert first == second
    assert SECRET not in stream.getvalue() and "[REDACTED]" in first
    if log_format == "json":
        assert json.loads(second)["conversation"] == "c 1"
    else:
        assert second.endswith(
            'relay.ingest: accepted event_id=7 conversation="c 1" client=x[REDACTED]'
        )


def test_write_is_a_log_call_where_another_handler_listens(
    serve_logging: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stream = serve_logging("text")  # replaces the root's handlers: caplog's goes back on
    logging.getLogger().addHandler(caplog.handler)
    with caplog.at_level(logging.INFO):
        write(logging.getLogger("relay.ingest"), logging.INFO, "accepted", event_id=3)
    (record,) = [r for r in caplog.records if r.name == "relay.ingest"]
    assert record.getMessage() == "accepted" and record.relay_fields == {"event_id": 3}
    assert "accepted event_id=3" in stream.getvalue()  # and the relay's own handler too


def test_write_respects_levels_and_intermediate_handlers(serve_logging: Any) -> None:
    stream = serve_logging("text")
    log = logging.getLogger("relay.ingest")
    write(log, logging.DEBUG, "not at info")
    assert stream.getvalue() == ""
    parent = logging.getLogger("relay")
    extra = logging.StreamHandler(io.StringIO())
    parent.addHandler(extra)
    try:
        assert not logs._only_to(logs._handler, log, logging.INFO)  # type: ignore[arg-type]
        write(log, logging.INFO, "both")
        assert "both" in extra.stream.getvalue() and "both" in stream.getvalue()
    finally:
        parent.removeHandler(extra)


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert logs._timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert logs._timestamp(86_399.25) == "1970-01-01T23:59:59.250Z"
    assert logs._timestamp(86_400.0) == "1970-01-02T00:00:00.000Z"
