"""The console sender: what `make run` without credentials shows."""

from __future__ import annotations

import io

import pytest

from relay.integrations.console.render import render_console, view
from relay.integrations.console.send import ConsoleSender
from relay.outcome import RetryLater, Sent
from relay.redact import Redactor

EVENT = {"event": "newMessage", "message": {"sender": {"name": "Ada"}, "content": "hello"}}


async def test_writes_a_headed_block() -> None:
    stream = io.StringIO()
    outcome = await ConsoleSender("terminal", stream=stream).send(view(EVENT))
    assert outcome == Sent()
    assert stream.getvalue() == f"── terminal ──\n{render_console(EVENT)}\n\n"


async def test_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sender = ConsoleSender("terminal")
    await sender.send(view(EVENT))
    await sender.close()
    assert "hello" in capsys.readouterr().out


async def test_secrets_are_masked() -> None:
    stream = io.StringIO()
    sender = ConsoleSender("terminal", Redactor("console-secret-value"), stream)
    await sender.send(view({**EVENT, "message": {"content": "token console-secret-value"}}))
    assert "console-secret-value" not in stream.getvalue()


async def test_a_closed_stream_is_retried_later() -> None:
    stream = io.StringIO()
    stream.close()
    outcome = await ConsoleSender("terminal", stream=stream).send(view(EVENT))
    assert isinstance(outcome, RetryLater) and outcome.reason == "console_unavailable"
