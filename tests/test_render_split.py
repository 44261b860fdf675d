"""Tests of relay.render.split: splitting markup within limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.render.markup import escape_html, escape_mrkdwn, slack_link
from relay.render.split import split_markup, width
from tests.fakes.telegram_html import parse, utf16_len
from tests.render_cases import PROPERTY, hostile_text, long_text

# ----------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("markup", "limit", "parts"),
    [
        ("short", 10, ["short"]),
        ("one two three", 9, ["one two ", "three"]),  # at a space, not inside "three"
        ("one two three", 7, ["one two", " three"]),  # the space that did not fit
        ("aaaa\nbbbb cccc dddd", 16, ["aaaa\nbbbb cccc ", "dddd"]),  # late space beats early line
        ("aaaaaaaaaa\nbbb ccc", 16, ["aaaaaaaaaa\n", "bbb ccc"]),  # a line break wins
        ("x" * 12, 5, ["xxxxx", "xxxxx", "xx"]),  # no space: between characters
        ("ab &amp; cd", 7, ["ab ", "&amp; ", "cd"]),  # never inside &amp;
        ("a <https://x.example/a|link> b", 27, ["a ", "<https://x.example/a|link> ", "b"]),
    ],
)
def test_split_slack_table(markup: str, limit: int, parts: list[str]):
    assert split_markup(markup, "slack", limit) == parts


def test_split_slack_link_larger_than_a_part_is_cut_rather_than_sent_too_long():
    link = slack_link("https://x.example/" + "a" * 50 + "&b", "label")
    parts = split_markup(link, "slack", 20)
    assert "".join(parts) == link
    assert all(utf16_len(part) <= 20 for part in parts)
    assert all(not re.search(r"&[a-z]*$", part) for part in parts)  # never inside &amp;


def test_split_telegram_closes_and_reopens_tags():
    parts = split_markup('<b>bold <a href="https://x.example">one two</a> three</b>', "telegram", 9)
    assert parts == [
        '<b>bold <a href="https://x.example">one </a></b>',
        '<b><a href="https://x.example">two</a> three</b>',
    ]
    assert [parse(part) for part in parts] == ["bold one ", "two three"]


def test_split_never_leaves_an_empty_element_at_a_cut():
    parts = split_markup("aaaaa<i>bbbb</i>", "telegram", 6)
    assert parts == ["aaaaa", "<i>bbbb</i>"]  # not "aaaaa<i></i>"
    parts = split_markup("<b>aaa </b>bbbbbb", "telegram", 8)
    assert parts == ["<b>aaa </b>", "bbbbbb"]  # not "<b></b>bbbbbb"


def test_split_keeps_flags_whole():
    parts = split_markup("🇳🇬" * 9, "telegram", 10)
    assert parts == ["🇳🇬🇳🇬"] * 4 + ["🇳🇬"]


def test_split_telegram_counts_visible_utf16():
    # 4 visible characters per entity-escaped "<", 2 code units per astral character.
    assert width("&lt;&lt;😀<b>x</b>", "telegram") == 5
    assert split_markup("😀😀😀", "telegram", 4) == ["😀😀", "😀"]


def test_split_keeps_zwj_sequences_together_when_it_can():
    family = "👩‍👩‍👧‍👦"  # 7 code points, 11 UTF-16 units
    parts = split_markup(family * 10, "telegram", 100)
    assert len(parts) > 1
    assert all(part == family * (len(part) // len(family)) for part in parts)


def test_split_first_limit_applies_to_the_first_part_only():
    parts = split_markup("aaa bbb ccc ddd eee", "telegram", 8, first_limit=4)
    assert parts == ["aaa ", "bbb ccc ", "ddd eee"]


@PROPERTY
@given(text=st.one_of(hostile_text, long_text), limit=st.integers(6, 400))
def test_split_slack_loses_nothing_and_respects_the_limit(text: str, limit: int):
    markup = escape_mrkdwn(text)
    parts = split_markup(markup, "slack", limit)
    assert "".join(parts) == markup
    for part in parts:
        assert utf16_len(part) <= limit
        assert not re.search(r"&[a-z]*$", part), "cut inside an escape entity"
    assert "".join(_unescape(part) for part in parts) == text


@PROPERTY
@given(text=st.one_of(hostile_text, long_text), limit=st.integers(2, 400))
def test_split_telegram_loses_nothing_parses_and_respects_the_limit(text: str, limit: int):
    markup = f"<b>{escape_html(text)}</b><i>{escape_html(text[:7])}</i>"
    parts = split_markup(markup, "telegram", limit)
    visible = [parse(part) for part in parts]  # raises if a part is not valid Telegram HTML
    assert "".join(visible) == text + text[:7]
    assert all(utf16_len(piece) <= limit for piece in visible)


def _unescape(mrkdwn: str) -> str:
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
