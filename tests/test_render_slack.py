"""Tests of relay.render.slack: Block Kit payloads, escaping, limits and splitting.

Every payload is checked by `check_slack`: slack-sdk's block models (which enforce their
own limits) plus the limits Slack documents that the models do not check (≤ 50 blocks,
section ≤ 3000, header ≤ 150, context ≤ 3000, ≤ 12,000 characters of block text, `text`
≤ 4000), the image fallback, and that no `<…>` in any text is anything but a link to a
URL the event itself carried (no `<!channel>`, `<@U…>`, `<#C…>` or forged link).

Golden files: tests/golden/slack/<case>.json; regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_slack.py`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from relay.integrations.slack.render import SlackMessage, render_slack
from relay.render.markup import slack_link
from tests.fakes.telegram_html import utf16_len
from tests.render_cases import (
    CASES,
    HOSTILE,
    MENTIONS,
    PROPERTY,
    SAMPLES,
    any_events,
    assert_golden,
    hostile_text,
    long_text,
    no_space,
    web_urls,
)

_ANGLE = re.compile(r"<([^<>]*)>")


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    """Every text Slack parses as mrkdwn in a payload: `text` and the blocks' texts."""
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts.extend(element["text"] for element in block["elements"])
    return texts


def block_text(block: dict[str, Any]) -> str:
    if block["type"] == "section":
        return block["text"]["text"]
    if block["type"] == "context":
        return "".join(element["text"] for element in block["elements"])
    if block["type"] == "header":
        return block["text"]["text"]
    return ""


def check_slack(messages: list[SlackMessage], event: dict[str, Any]) -> None:
    """Everything Slack would refuse, or a customer could abuse, fails here."""
    assert messages, "every event renders to at least one message"
    allowed_links = {_link_url(url) for url in web_urls(event)}
    for message in messages:
        payload = message.payload
        assert set(payload) == {"text", "blocks", "unfurl_links", "unfurl_media"}
        _check_blocks(payload["blocks"])
        assert isinstance(payload["text"], str)
        assert payload["text"].strip()
        assert utf16_len(payload["text"]) <= 4000
        for text in mrkdwn_texts(payload):
            _check_escaped(text, allowed_links)
        images = [block for block in payload["blocks"] if block["type"] == "image"]
        if images:
            assert message.fallback == {
                **payload,
                "blocks": [block for block in payload["blocks"] if block["type"] != "image"],
            }
            for image in images:  # the link stays in the fallback
                assert _link_url(image["image_url"]) in json.dumps(message.fallback)
        else:
            assert message.fallback is None


def _check_blocks(blocks: list[dict[str, Any]]) -> None:
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        model = Block.parse(block)
        assert model is not None, f"slack-sdk does not know {block['type']}"
        model.validate_json()  # raises SlackObjectFormationError past its limits
        assert model.to_dict() == block, "a field slack-sdk does not know"
        if block["type"] in ("section", "context"):
            texts = [block["text"]] if block["type"] == "section" else block["elements"]
            for text in texts:
                assert text["type"] == "mrkdwn"
                assert text["verbatim"] is True  # no automatic @here or link parsing
                assert text["text"].strip()
                assert len(text["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
    assert sum(len(block_text(block)) for block in blocks) <= 12_000


def _check_escaped(text: str, allowed_links: set[str]) -> None:
    for match in _ANGLE.finditer(text):
        url = match.group(1).split("|", 1)[0]
        assert url in allowed_links, f"unexpected <{match.group(1)}> in {text[:200]!r}"
    assert not re.search(r"<[!@#]", text)
    stripped = _ANGLE.sub("", text)
    assert "<" not in stripped
    assert ">" not in stripped
    assert not re.search(r"&(?!amp;|lt;|gt;)", stripped), "a bare & Slack would misread"


def _link_url(url: str) -> str:
    return slack_link(url, "x")[1:].rsplit("|", 1)[0]


def visible_body(messages: list[SlackMessage]) -> str:
    """The sections' text, unescaped and without links: what a reader sees as the body."""
    texts = []
    for message in messages:
        for block in message.payload["blocks"]:
            if block["type"] == "section":
                texts.append(_unescape(block["text"]["text"]))
    return "\n".join(texts)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def as_json(messages: list[SlackMessage]) -> str:
    data = [{"payload": m.payload, "fallback": m.fallback} for m in messages]
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


# ---------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str):
    messages = render_slack(CASES[name])
    check_slack(messages, CASES[name])
    assert_golden(f"slack/{name}.json", as_json(messages))


# ---------------------------------------------------------------------------------- layout


def test_text_message_layout():
    [message] = render_slack(SAMPLES["new-message-text"])
    head = "💬 *Message Sender* · Channel name (WHATSAPP) · in-queue"
    assert message.payload == {
        "text": f"{head}\nHello World!",
        "blocks": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": head, "verbatim": True}]},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Hello World!", "verbatim": True},
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    assert message.fallback is None


def test_agent_quote_and_campaign_say_who_and_what():
    [agent] = render_slack(SAMPLES["new-message-from-agent"])
    assert agent.payload["text"].startswith(
        "🎧 Agent *Ada (agent)* → *Customer name* · Channel name (WHATSAPP) · open"
    )
    [quoted] = render_slack(SAMPLES["new-message-quoted"])
    assert "↩️ _replying to an earlier message_\nYes, that one please" in quoted.payload["text"]
    [campaign] = render_slack(SAMPLES["campaign-delivery-report"])
    assert campaign.payload["text"] == (
        "📣 *Campaign delivery report*\ncampaign completed.\n📊 Report: "
        "<https://api.oneroute.io/api/public/logs?page[size]=10&amp;page[number]=1"
        "&amp;campaign_id=campaign_id|open the report>"
    )


def test_unknown_event_starts_with_its_name_and_lists_its_fields():
    [message] = render_slack(SAMPLES["unknown-event"])
    assert message.payload["text"] == (
        "📨 *conversationClosed*\n*conversation.id*: bf9d96d9-e495-489a-a22a-206b0ea44d90\n"
        "*conversation.status*: closed"
    )


def test_image_has_a_link_an_image_block_and_a_fallback_without_it():
    [message] = render_slack(SAMPLES["new-message-image"])
    blocks = message.payload["blocks"]
    assert blocks[-1] == {
        "type": "image",
        "image_url": "https://media.example.com/receipt.jpg",
        "alt_text": "Image from Message Sender",
    }
    link = "<https://media.example.com/receipt.jpg|receipt.jpg>"
    assert link in blocks[1]["text"]["text"]
    assert message.fallback is not None
    assert message.fallback["blocks"] == blocks[:-1]


@pytest.mark.parametrize(
    ("sample", "line"),
    [
        ("new-message-video", "🎬 Video: <https://media.example.com/clip.mp4|clip.mp4>"),
        (
            "new-message-document",
            "📄 Document: <https://media.example.com/invoice.pdf|invoice.pdf>",
        ),
        ("new-message-audio", "🔊 Audio: <https://media.example.com/voice.ogg|voice.ogg>"),
    ],
)
def test_other_media_are_links(sample: str, line: str):
    [message] = render_slack(SAMPLES[sample])
    assert line in message.payload["blocks"][1]["text"]["text"]
    assert message.fallback is None


def test_unfurl_links_is_passed_through():
    [message] = render_slack(SAMPLES["new-message-image"], unfurl_links=True)
    assert (message.payload["unfurl_links"], message.payload["unfurl_media"]) == (True, True)


# -------------------------------------------------------------------------------- hostile


def test_mentions_and_forged_links_are_escaped():
    [message] = render_slack(HOSTILE["hostile-mentions"])
    section = message.payload["blocks"][1]["text"]["text"]
    assert section == (
        "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@U123&gt; &lt;#C123|general&gt; "
        "&lt;https://evil.example|click&gt;"
    )
    assert _unescape(section) == MENTIONS


def test_a_url_with_pipe_and_angle_brackets_cannot_break_out_of_its_link():
    [message] = render_slack(HOSTILE["campaign-hostile"])
    assert "<https://evil.example/a%7Cb%3Ec%3Cd&amp;e|open the report>" in message.payload["text"]


def test_non_web_media_are_shown_as_text_not_links_or_images():
    [message] = render_slack(HOSTILE["media-not-web"])
    text = message.payload["text"]
    assert "🖼️ Image: javascript:alert(1)" in text
    assert "🎬 Video: ftp://media.example.com/x.mp4" in text
    assert "<" not in _ANGLE.sub("", text)
    assert not any(block["type"] == "image" for block in message.payload["blocks"])


def test_long_names_are_shortened_in_the_context_and_given_in_full_below():
    messages = render_slack(HOSTILE["hostile-names"])
    head = messages[0].payload["blocks"][0]["elements"][0]["text"]
    assert "…" in head
    assert no_space("<!channel> " * 40) in no_space(visible_body(messages))


@pytest.mark.parametrize("name", ["long-20k-words", "long-20k-unbroken", "astral-at-splits"])
def test_long_content_is_split_over_sections_and_messages_never_cut(name: str):
    event = HOSTILE[name]
    messages = render_slack(event)
    check_slack(messages, event)
    assert len(messages) > 1
    assert any(
        sum(block["type"] == "section" for block in m.payload["blocks"]) > 1 for m in messages
    ), "a message holds more than one section"
    assert no_space(visible_body(messages)) == no_space(event["message"]["content"])
    count = len(messages)
    for number, message in enumerate(messages, 1):
        assert message.payload["blocks"][0]["elements"][0]["text"].endswith(f" · {number}/{count}")


def test_each_split_message_text_matches_its_blocks():
    for message in render_slack(HOSTILE["long-20k-words"]):
        sections = [b["text"]["text"] for b in message.payload["blocks"] if b["type"] == "section"]
        assert no_space(message.payload["text"]).endswith(no_space("".join(sections)))


def test_image_block_goes_with_the_message_holding_its_link():
    event = {**SAMPLES["new-message-image"]}
    event["message"] = {**event["message"], "audioUrl": "not a url " * 2000}
    messages = render_slack(event)
    check_slack(messages, event)
    assert len(messages) > 2
    assert [m.fallback is not None for m in messages] == [True] + [False] * (len(messages) - 1)


def test_image_block_goes_with_the_last_message_of_a_long_text():
    event = {**HOSTILE["long-20k-words"]}
    event["message"] = {**event["message"], "imageUrl": "https://media.example.com/a.png"}
    messages = render_slack(event)
    assert [m.fallback is not None for m in messages] == [False] * (len(messages) - 1) + [True]


# ------------------------------------------------------------------------------- property


@PROPERTY
@given(event=any_events())
def test_any_event_renders_within_slack_limits(event: dict[str, Any]):
    check_slack(render_slack(event), event)


@PROPERTY
@given(content=st.one_of(hostile_text, long_text), image=st.booleans())
def test_content_is_never_lost(content: str, image: bool):
    event = {**SAMPLES["new-message-text"]}
    event["message"] = {**event["message"], "content": content}
    if image:
        event["message"]["imageUrl"] = "https://media.example.com/a.png"
    messages = render_slack(event)
    check_slack(messages, event)
    assert no_space(content) in no_space(visible_body(messages))
