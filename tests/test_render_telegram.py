"""Tests of relay.render.telegram: Bot API calls in HTML parse mode, within Telegram's limits.

Every call is checked by `check_telegram`: its HTML parses with the strict Telegram-HTML
parser of tests/fakes (only Telegram's tags and entities, properly nested), its visible
text is within 4096 UTF-16 code units (captions 1024), links point only at URLs the event
carried, every media call has a text fallback holding its caption and link, and
`as_plain_text` gives exactly the visible text.

Golden files: tests/golden/telegram/<case>.json; regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_telegram.py`.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.integrations.telegram.render import TelegramCall, as_plain_text, render_telegram
from tests.fakes.telegram_html import parse, utf16_len
from tests.render_cases import (
    CASES,
    EMOJI,
    HOSTILE,
    HTML,
    MENTIONS,
    PROPERTY,
    RTL,
    SAMPLES,
    any_events,
    assert_golden,
    hostile_text,
    long_text,
    no_space,
    web_urls,
)

MEDIA_FIELDS = {
    "sendPhoto": "photo",
    "sendVideo": "video",
    "sendDocument": "document",
    "sendAudio": "audio",
}
_HREF = re.compile(r'<a href="([^"]*)">')


def check_telegram(
    calls: list[TelegramCall], event: dict[str, Any], *, link_preview: bool = False
) -> None:
    """Everything Telegram would refuse, or that would lose or forge content, fails here."""
    assert calls, "every event renders to at least one call"
    allowed = web_urls(event)
    for call in calls:
        _check_call(call, allowed, link_preview)
        if call.method == "sendMessage":
            assert call.fallback is None
            continue
        url = call.params[MEDIA_FIELDS[call.method]]
        assert url in allowed
        fallback = call.fallback
        assert fallback is not None
        assert fallback.method == "sendMessage"
        _check_call(fallback, allowed, link_preview)
        fallback_text = parse(fallback.params["text"])
        assert url in fallback_text
        assert fallback_text.startswith(parse(call.params["caption"]))


def _check_call(call: TelegramCall, allowed: set[str], link_preview: bool) -> None:
    if call.method == "sendMessage":
        expected = {"text", "parse_mode"} | (set() if link_preview else {"link_preview_options"})
        assert set(call.params) == expected
        if not link_preview:
            assert call.params["link_preview_options"] == {"is_disabled": True}
        markup, limit = call.params["text"], 4096
        assert parse(markup).strip(), "Telegram refuses an empty message"
    else:
        assert call.method in MEDIA_FIELDS
        assert set(call.params) == {MEDIA_FIELDS[call.method], "caption", "parse_mode"}
        markup, limit = call.params["caption"], 1024
    assert call.params["parse_mode"] == "HTML"
    visible = parse(markup)  # raises EntityParseError like Telegram's "can't parse entities"
    assert utf16_len(visible) <= limit
    for href in _HREF.findall(markup):
        assert html.unescape(href) in allowed, f"a link to {href!r}, not from the event"
    plain = as_plain_text(call)
    assert "parse_mode" not in plain.params
    assert plain.params["text" if call.method == "sendMessage" else "caption"] == visible


def visible_body(calls: list[TelegramCall]) -> str:
    """What readers see under the context lines, across all calls."""
    bodies = []
    for call in calls:
        markup = call.params.get("text", call.params.get("caption", ""))
        bodies.append(parse(markup).partition("\n")[2])
    return "\n".join(bodies)


def as_json(calls: list[TelegramCall]) -> str:
    return json.dumps([dataclasses.asdict(c) for c in calls], ensure_ascii=False, indent=1) + "\n"


# ---------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str):
    calls = render_telegram(CASES[name])
    check_telegram(calls, CASES[name])
    assert_golden(f"telegram/{name}.json", as_json(calls))


# ---------------------------------------------------------------------------------- layout


def test_text_message_layout():
    assert render_telegram(SAMPLES["new-message-text"]) == [
        TelegramCall(
            "sendMessage",
            {
                "text": (
                    "💬 <b>Message Sender</b> · Channel name (WHATSAPP) · in-queue\nHello World!"
                ),
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True},
            },
        )
    ]


def test_agent_quote_campaign_and_unknown_event():
    [agent] = render_telegram(SAMPLES["new-message-from-agent"])
    assert parse(agent.params["text"]) == (
        "🎧 Agent Ada (agent) → Customer name · Channel name (WHATSAPP) · open\nHi! How can I help?"
    )
    [quoted] = render_telegram(SAMPLES["new-message-quoted"])
    assert (
        "\n↩️ <i>replying to an earlier message</i>\nYes, that one please" in (quoted.params["text"])
    )
    [campaign] = render_telegram(SAMPLES["campaign-delivery-report"])
    url = SAMPLES["campaign-delivery-report"]["campaignReportUrl"]
    assert parse(campaign.params["text"]) == (
        f"📣 Campaign delivery report\ncampaign completed.\n📊 Report: {url}"
    )
    assert f'<a href="{html.escape(url)}">' in campaign.params["text"]
    [unknown] = render_telegram(SAMPLES["unknown-event"])
    assert parse(unknown.params["text"]) == (
        "📨 conversationClosed\nconversation.id: bf9d96d9-e495-489a-a22a-206b0ea44d90\n"
        "conversation.status: closed"
    )


@pytest.mark.parametrize(
    ("sample", "method", "field", "url"),
    [
        ("new-message-image", "sendPhoto", "photo", "https://media.example.com/receipt.jpg"),
        ("new-message-video", "sendVideo", "video", "https://media.example.com/clip.mp4"),
        (
            "new-message-document",
            "sendDocument",
            "document",
            "https://media.example.com/invoice.pdf",
        ),
        ("new-message-audio", "sendAudio", "audio", "https://media.example.com/voice.ogg"),
    ],
)
def test_media_is_sent_by_url_with_a_caption_and_a_text_fallback(
    sample: str, method: str, field: str, url: str
):
    [call] = render_telegram(SAMPLES[sample])
    assert call.method == method
    assert call.params[field] == url
    assert call.params["caption"].startswith("💬 <b>Message Sender</b>")
    assert call.fallback is not None
    assert call.fallback.params["text"].startswith(call.params["caption"] + "\n")
    assert f'<a href="{url}">{url}</a>' in call.fallback.params["text"]


def test_several_media_first_carries_the_text_others_the_context():
    calls = render_telegram(HOSTILE["all-media"])
    assert [call.method for call in calls] == [
        "sendPhoto",
        "sendVideo",
        "sendDocument",
        "sendAudio",
    ]
    assert parse(calls[0].params["caption"]).endswith("\nall four")
    assert all("\n" not in parse(call.params["caption"]) for call in calls[1:])


def test_a_long_caption_continues_in_text_messages():
    event = HOSTILE["image-long-caption"]
    calls = render_telegram(event)
    check_telegram(calls, event)
    assert calls[0].method == "sendPhoto"
    assert utf16_len(parse(calls[0].params["caption"])) > 900  # filled, not just the context
    assert [call.method for call in calls[1:]] == ["sendMessage"] * (len(calls) - 1)
    assert len(calls) == 3
    assert parse(calls[0].params["caption"]).startswith("💬 Message Sender · Channel name")
    assert " · 1/3\n" in parse(calls[0].params["caption"])
    assert " · 3/3\n" in parse(calls[2].params["text"])
    assert no_space(visible_body(calls)) == no_space(event["message"]["content"])


def test_non_web_media_are_text_not_calls():
    [call] = render_telegram(HOSTILE["media-not-web"])
    assert call.method == "sendMessage"
    text = parse(call.params["text"])
    assert "🖼️ Image: javascript:alert(1)" in text
    assert "<a " not in call.params["text"]


def test_link_preview_is_off_unless_asked_for():
    [call] = render_telegram(SAMPLES["campaign-delivery-report"], link_preview=True)
    assert "link_preview_options" not in call.params
    check_telegram([call], SAMPLES["campaign-delivery-report"], link_preview=True)


# -------------------------------------------------------------------------------- hostile


@pytest.mark.parametrize("content", [MENTIONS, HTML, EMOJI, RTL])
def test_hostile_content_is_shown_exactly_as_written(content: str):
    event = {**SAMPLES["new-message-text"]}
    event["message"] = {**event["message"], "content": content}
    [call] = render_telegram(event)
    assert parse(call.params["text"]).partition("\n")[2] == content


@pytest.mark.parametrize("name", ["long-20k-words", "long-20k-unbroken", "astral-at-splits"])
def test_long_content_is_split_never_cut(name: str):
    event = HOSTILE[name]
    calls = render_telegram(event)
    check_telegram(calls, event)
    assert len(calls) >= 5
    assert no_space(visible_body(calls)) == no_space(event["message"]["content"])


def test_astral_characters_are_counted_as_two_units():
    calls = render_telegram(HOSTILE["astral-at-splits"])  # 9000 emoji: 18000 code units
    sizes = [utf16_len(parse(call.params["text"])) for call in calls]
    assert max(sizes) <= 4096
    assert max(sizes) > 4000  # parts are filled
    assert len(calls) == 5


# ----------------------------------------------------------------------------- plain text


def test_as_plain_text_keeps_what_the_reader_sees_including_urls():
    [call] = render_telegram(SAMPLES["new-message-image"])
    plain = as_plain_text(call)
    assert plain.params == {
        "photo": "https://media.example.com/receipt.jpg",
        "caption": "💬 Message Sender · Channel name (WHATSAPP) · in-queue\nHere is the receipt",
    }
    assert plain.fallback is not None
    assert "parse_mode" not in plain.fallback.params
    assert plain.fallback.params["text"].endswith("🖼️ Image: https://media.example.com/receipt.jpg")


def test_as_plain_text_on_broken_html_is_lenient():
    call = TelegramCall("sendMessage", {"text": "<div>a &amp; b</div> <b>c", "parse_mode": "HTML"})
    assert as_plain_text(call).params == {"text": "a & b c"}


# ------------------------------------------------------------------------------- property


@PROPERTY
@given(event=any_events())
def test_any_event_renders_within_telegram_limits(event: dict[str, Any]):
    check_telegram(render_telegram(event), event)


@PROPERTY
@given(content=st.one_of(hostile_text, long_text), image=st.booleans())
def test_content_is_never_lost(content: str, image: bool):
    event = {**SAMPLES["new-message-text"]}
    event["message"] = {**event["message"], "content": content}
    if image:
        event["message"]["imageUrl"] = "https://media.example.com/a.png"
    calls = render_telegram(event)
    check_telegram(calls, event)
    assert no_space(content) in no_space(visible_body(calls))


def test_emoji_sequences_are_not_cut_at_message_boundaries():
    family = "👩‍👩‍👧‍👦"
    calls = render_telegram(HOSTILE["zwj-at-splits"])
    assert len(calls) > 1
    for call in calls:
        body = parse(call.params["text"]).partition("\n")[2]
        assert body == family * (len(body) // len(family))
