"""Tests of relay.render.telegram_html: visible text and what Telegram refuses."""

from __future__ import annotations

import pytest
from hypothesis import given

from relay.render.markup import escape_html
from relay.render.telegram_html import telegram_html_error, visible_text
from tests.fakes.telegram_html import parse
from tests.render_cases import PROPERTY, hostile_text


@PROPERTY
@given(markup=hostile_text)
def test_visible_text_matches_the_strict_parser_on_valid_html(markup: str):
    html = escape_html(markup)
    assert telegram_html_error(html) is None
    assert visible_text(html) == parse(html) == markup


@pytest.mark.parametrize(
    "bad",
    [
        "<div>x</div>",
        "<b>x",
        "x</b>",
        "<b><i>x</b></i>",
        "&nbsp;",
        "a < b",
        "<a>x</a>",
        '<b class="x">y</b>',
        "&#0;",
    ],
)
def test_telegram_html_error_finds_what_telegram_refuses(bad: str):
    assert telegram_html_error(bad) is not None
