"""The console sender: what `make run` without credentials shows."""

from __future__ import annotations

import io

import pytest

from relay.integrations.console.send import ConsoleSender
from relay.outcome import RetryLater, Sent
from relay.redact import Redactor


async def test_writes_a_headed_block() -> None:
    stream = io.StringIO()
    outcome = await ConsoleSender("terminal", stream=stream).send("*Ada* (WhatsApp)\nhello")
    assert outcome == Sent()
    assert stream.getvalue() == "── terminal ──\n*Ada* (WhatsApp)\nhello\n\n"


async def test_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sender = ConsoleSender("terminal")
    await sender.send("hello")
    await sender.close()
    assert "hello" in capsys.readouterr().out


async def test_secrets_are_masked() -> None:
    stream = io.StringIO()
    sender = ConsoleSender("terminal", Redactor("console-secret-value"), stream)
    await sender.send("token console-secret-value")
    assert "console-secret-value" not in stream.getvalue()


async def test_a_closed_stream_is_retried_later() -> None:
    stream = io.StringIO()
    stream.close()
    outcome = await ConsoleSender("terminal", stream=stream).send("hello")
    assert isinstance(outcome, RetryLater) and outcome.reason == "console_unavailable"
