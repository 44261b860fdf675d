"""Tests of relay.render.console: both renderings, labelled and readable in a terminal.

Golden files: tests/golden/console/<case>.txt; regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_console.py`.
"""

from __future__ import annotations

import pytest

from relay.integrations.console.render import render_console
from tests.render_cases import CASES, HOSTILE, MENTIONS, SAMPLES, assert_golden

# Golden files for the samples and the short hostile cases; the 20k-character ones would
# only repeat what the Slack and Telegram goldens already pin down.
SHORT_CASES = sorted(name for name, event in CASES.items() if len(str(event)) < 6000)


@pytest.mark.parametrize("name", SHORT_CASES)
def test_golden(name: str):
    assert_golden(f"console/{name}.txt", render_console(CASES[name]) + "\n")


def test_text_message_shows_both_destinations():
    assert render_console(SAMPLES["new-message-text"]) == (
        "┌ Slack · 1 message\n"
        "│ 💬 *Message Sender* · Channel name (WHATSAPP) · in-queue\n"
        "│ Hello World!\n"
        "├ Telegram · 1 call\n"
        "│ sendMessage\n"
        "│ 💬 Message Sender · Channel name (WHATSAPP) · in-queue\n"
        "│ Hello World!\n"
        "└"
    )


def test_media_links_and_fallbacks_are_readable_not_json():
    out = render_console(SAMPLES["new-message-image"])
    assert "│ 🖼️ Image: receipt.jpg (https://media.example.com/receipt.jpg)" in out
    assert "│ [image] https://media.example.com/receipt.jpg" in out
    assert "│ sendPhoto https://media.example.com/receipt.jpg" in out
    assert '"blocks"' not in out
    assert "<b>" not in out


def test_hostile_content_is_shown_as_written():
    out = render_console(HOSTILE["hostile-mentions"])
    assert out.count(f"│ {MENTIONS}") == 2  # once for Slack, once for Telegram
    assert "&lt;" not in out


def test_long_content_shows_every_message():
    out = render_console(HOSTILE["long-20k-words"])
    slack, _, telegram = out.partition("├ Telegram")
    assert slack.count("│ ┄┄") == int(slack.split(" message")[0].rsplit(" ", 1)[1]) - 1
    assert telegram.count("│ sendMessage") == int(telegram.split(" call")[0].rsplit(" ", 1)[1])
    assert len(out.splitlines()) > 100


def test_terminal_control_characters_from_customers_are_made_visible():
    event = {**SAMPLES["new-message-text"]}
    event["message"] = {**event["message"], "content": "hi\x1b[2J\x1b]0;pwned\x07\rover"}
    out = render_console(event)
    assert "\x1b" not in out
    assert "\r" not in out
    assert "│ hi\\x1b[2J\\x1b]0;pwned\\x07\\rover" in out
