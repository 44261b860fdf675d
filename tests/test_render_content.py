"""Tests of relay.render.content: extraction of what an event says, and web URLs."""

from __future__ import annotations

import json

import pytest

from relay.render.content import Media, extract, is_web_url
from tests.render_cases import CASES, HOSTILE, SAMPLES, message

# ---------------------------------------------------------------------------- extraction


def test_extract_a_customer_message():
    content = extract(SAMPLES["new-message-text"])
    assert content.kind == "message"
    assert (content.sender, content.agent) == ("Message Sender", False)
    assert (content.channel, content.medium, content.status) == (
        "Channel name",
        "WHATSAPP",
        "in-queue",
    )
    assert content.text == "Hello World!"
    assert content.media == ()
    assert content.quoted_message_id is None
    assert content.conversation_id == "bf9d96d9-e495-489a-a22a-206b0ea44d90"


def test_extract_an_agent_message_and_a_quote():
    assert extract(SAMPLES["new-message-from-agent"]).agent is True
    quoted = extract(SAMPLES["new-message-quoted"])
    assert quoted.quoted_message_id == "6f1c2d4e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("sample", "kind", "url"),
    [
        ("new-message-image", "image", "https://media.example.com/receipt.jpg"),
        ("new-message-video", "video", "https://media.example.com/clip.mp4"),
        ("new-message-document", "document", "https://media.example.com/invoice.pdf"),
        ("new-message-audio", "audio", "https://media.example.com/voice.ogg"),
    ],
)
def test_extract_media_from_whichever_url_field_is_set(sample: str, kind: str, url: str):
    event = SAMPLES[sample]
    event = {**event, "message": {**event["message"], "contentType": "TEXT"}}  # ignored
    assert extract(event).media == (Media(kind, url),)  # type: ignore[arg-type]


def test_extract_names_fall_back_to_the_conversation():
    event = message()
    event["message"]["sender"] = None
    assert extract(event).sender == "Customer name"
    event["message"]["sender"] = {"authUser": True}
    event["conversation"]["agent"] = {"name": "Ada"}
    assert (extract(event).sender, extract(event).agent) == ("Ada", True)


def test_extract_a_campaign_report_under_both_spellings():
    for name in ("compaignDeliveryReport", "campaignDeliveryReport"):
        content = extract({**SAMPLES["campaign-delivery-report"], "event": name})
        assert content.kind == "campaign"
        assert content.text == "campaign completed."
        assert content.report_url is not None
        assert content.report_url.startswith("https://api.oneroute.io/")


def test_extract_an_unknown_event_as_flattened_fields():
    content = extract(SAMPLES["unknown-event"])
    assert content.kind == "generic"
    assert content.event_name == "conversationClosed"
    assert content.fields == (
        ("conversation.id", "bf9d96d9-e495-489a-a22a-206b0ea44d90"),
        ("conversation.status", "closed"),
    )


def test_extract_bounds_depth_and_count_of_unknown_fields_but_says_so():
    content = extract(HOSTILE["unknown-deep"])
    deep_path, deep_value = content.fields[0]
    assert deep_path.count(".") == 5  # six levels, then the rest as JSON
    assert deep_path == "deep.level9.level8.level7.level6.level5"
    assert json.loads(deep_value) == {
        "level4": {"level3": {"level2": {"level1": {"level0": "bottom <!channel>"}}}}
    }
    assert len(content.fields) == 300
    assert content.more_fields == 401 - 299  # 400 items and "empty", minus those shown


def test_extract_wrong_types_shows_what_is_there():
    content = extract(HOSTILE["wrong-types"])
    assert content.sender == "42"
    assert content.agent is False  # "yes" is not true
    assert content.text is not None
    assert json.loads(content.text) == {"text": "nested <!channel>", "parts": [1, 2.5, None, True]}
    assert [media.kind for media in content.media] == ["image", "video", "document", "audio"]
    assert [media.linkable for media in content.media] == [False] * 4
    assert content.channel is None
    assert content.status is None
    assert content.quoted_message_id == "true"


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_never_raises(name: str):
    extract(CASES[name])


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://media.example.com/a.jpg", True),
        ("HTTP://media.example.com/a.jpg?x=[1]", True),
        ("javascript:alert(1)", False),
        ("ftp://media.example.com/x", False),
        ("https://", False),
        ("https://exa mple.com/", False),
        ("https://example.com/\u202e", False),
        ("https://[::1/", False),
        ("https://example.com/" + "a" * 2048, False),
        ("/relative/path.jpg", False),
    ],
)
def test_is_web_url(url: str, ok: bool):
    assert is_web_url(url) is ok
