"""The console sender: what `make run` without credentials shows."""

from __future__ import annotations

import io

import pytest

from relay.redact import register
from relay.send.console import ConsoleSender
from relay.send.outcome import RetryLater, Sent


async def test_writes_a_headed_block() -> None:
    stream = io.StringIO()
    outcome = await ConsoleSender(stream).send_text("terminal", "*Ada* (WhatsApp)\nhello")
    assert outcome == Sent()
    assert stream.getvalue() == "── terminal ──\n*Ada* (WhatsApp)\nhello\n\n"


async def test_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sender = ConsoleSender()
    await sender.send_text("terminal", "hello")
    await sender.close()
    assert "hello" in capsys.readouterr().out


async def test_secrets_are_masked() -> None:
    register("console-secret-value")
    stream = io.StringIO()
    await ConsoleSender(stream).send_text("terminal", "token console-secret-value")
    assert "console-secret-value" not in stream.getvalue()


async def test_a_closed_stream_is_retried_later() -> None:
    stream = io.StringIO()
    stream.close()
    outcome = await ConsoleSender(stream).send_text("terminal", "hello")
    assert isinstance(outcome, RetryLater) and outcome.reason == "console_unavailable"
