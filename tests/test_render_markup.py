"""Tests of relay.render.markup: escaping, links, shortening and the context line."""

from __future__ import annotations

from relay.render.content import extract
from relay.render.markup import (
    SLACK,
    TELEGRAM,
    context_line,
    escape_html,
    escape_mrkdwn,
    file_label,
    shorten,
    slack_link,
)
from tests.fakes.telegram_html import parse
from tests.render_cases import HOSTILE, SAMPLES, nulls

# ------------------------------------------------------------------------------ escaping


def test_escape_mrkdwn_escapes_exactly_three_characters():
    assert escape_mrkdwn("<!channel> & <@U1> \"'*_") == "&lt;!channel&gt; &amp; &lt;@U1&gt; \"'*_"


def test_escape_html_escapes_for_text_and_attributes():
    assert escape_html('<b>"&amp;"</b>') == "&lt;b&gt;&quot;&amp;amp;&quot;&lt;/b&gt;"
    assert parse(escape_html('<b>"&amp;"</b>')) == '<b>"&amp;"</b>'


def test_slack_link_cannot_be_broken_out_of():
    link = slack_link("https://evil.example/a|b>c<d&e", "label|x>")
    assert link == "<https://evil.example/a%7Cb%3Ec%3Cd&amp;e|label|x&gt;>"
    assert link.count("<") == 1
    assert link.count(">") == 1


def test_file_label():
    assert file_label("https://m.example.com/a/receipt%20may.jpg?x=1", "image") == "receipt may.jpg"
    assert file_label("https://m.example.com/", "image") == "image"


def test_shorten_keeps_emoji_sequences_whole():
    text = "a" * 8 + "👩‍👩‍👧‍👦" + "tail"
    short, cut = shorten(text, 10)
    assert cut
    assert short == "a" * 8 + "…"  # the whole family, or none of it
    assert shorten("  two\nlines  ", 80) == ("two lines", False)


def test_context_line_escapes_and_shortens_with_the_full_value_in_the_body():
    head, overflow = context_line(extract(HOSTILE["hostile-names"]), SLACK)
    assert "<!" not in head
    assert "<@" not in head
    assert len(head) < 1500
    assert [line.split(":", 1)[0] for line in overflow] == ["_Sender", "_Channel"]
    assert ("&lt;!channel&gt; " * 40).strip() in overflow[0]


def test_context_line_for_each_kind():
    assert context_line(extract(SAMPLES["new-message-text"]), TELEGRAM)[0] == (
        "💬 <b>Message Sender</b> · Channel name (WHATSAPP) · in-queue"
    )
    assert context_line(extract(SAMPLES["new-message-from-agent"]), SLACK)[0] == (
        "🎧 Agent *Ada (agent)* → *Customer name* · Channel name (WHATSAPP) · open"
    )
    assert context_line(extract({}), SLACK)[0] == "📨 _event without a name_"
    assert context_line(extract(nulls()), SLACK)[0] == "💬 _unknown customer_"
