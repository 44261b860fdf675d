"""Tests of relay.render.text: extraction, escaping, and splitting within limits.

This module also holds what the renderer tests share: the events every destination is
rendered from (`CASES`: the OneRoute samples plus hostile content), the hypothesis
strategies for arbitrary JSON and OneRoute-shaped events with random types, and the
golden-file helper.

Golden files live in tests/golden/<destination>/<case>.json (.txt for the console). After an
intended change of layout, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_*.py -q

Property tests run 150 examples each; `RENDER_EXAMPLES=5000` runs a longer soak.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.render.text import (
    SLACK,
    TELEGRAM,
    Media,
    context_line,
    escape_html,
    escape_mrkdwn,
    extract,
    file_label,
    is_web_url,
    shorten,
    slack_link,
    split_markup,
    telegram_html_error,
    visible_text,
    width,
)
from tests.fakes.telegram_html import parse, utf16_len

DATA = Path(__file__).parent / "data" / "oneroute"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# ------------------------------------------------------------------------------ the cases


def _sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


SAMPLES: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(DATA.glob("*.json"))
    if path.stem != "signature-vectors"
}

MENTIONS = "<!channel> <!here> <!everyone> <@U123> <#C123|general> <https://evil.example|click>"
HTML = '<b>bold</b> </pre> &amp; &lt; <a href="https://evil.example">x</a> & < > " \''
EMOJI = "👩‍👩‍👧‍👦 family 🏳️‍🌈 flag 👋🏽 wave 🇳🇬 e\u0301 ok"
RTL = "مرحبا بالعالم \u202eevil\u202c שלום עולם"


def _message(content: Any = "Hello", **message: Any) -> dict[str, Any]:
    event = _sample("new-message-text")
    event["message"]["content"] = content
    event["message"].update(message)
    return event


def _words(size: int) -> str:
    """`size` characters of words and lines, with hostile bits in between."""
    words = ["lorem", "ipsum", "&amp;", "<!here>", "👩‍👩‍👧", "مرحبا", "dolor\n", "<b>"]
    out: list[str] = []
    total = 0
    index = 0
    while total < size:
        word = words[index % len(words)]
        out.append(word)
        total += len(word) + 1
        index += 1
    return " ".join(out)[:size]


def _hostile_names() -> dict[str, Any]:
    event = _message(MENTIONS)
    event["message"]["sender"]["name"] = "<!channel> " * 40
    event["conversation"]["Channel"]["name"] = "<@U999> " * 30
    event["conversation"]["Channel"]["medium"] = "<!here>"
    event["conversation"]["status"] = "<https://evil.example|in-queue>"
    return event


def _nulls() -> dict[str, Any]:
    event = _sample("new-message-text")
    for key in event["message"]:
        event["message"][key] = None
    for key in event["conversation"]:
        event["conversation"][key] = None
    return event


def _wrong_types() -> dict[str, Any]:
    event = _sample("new-message-image")
    event["message"].update(
        sender={"name": 42, "authUser": "yes"},
        content={"text": "nested <!channel>", "parts": [1, 2.5, None, True]},
        imageUrl=123,
        videoUrl={"url": "https://media.example.com/x.mp4"},
        documentUrl=["https://media.example.com/a.pdf"],
        audioUrl=False,
        quoted_message_id=True,
    )
    event["conversation"].update(Channel=["WHATSAPP"], status={"open": True}, customer="Bob")
    return event


def _all_media() -> dict[str, Any]:
    return _message(
        "all four",
        imageUrl="https://media.example.com/a.jpg",
        videoUrl="https://media.example.com/b.mp4",
        documentUrl="https://media.example.com/c.pdf",
        audioUrl="https://media.example.com/d.mp3",
    )


def _not_web_media() -> dict[str, Any]:
    return _message(
        None,
        imageUrl="javascript:alert(1)",
        videoUrl="ftp://media.example.com/x.mp4",
        documentUrl="https://media.example.com/" + "a" * 3000,
        audioUrl="https://media.example.com/with space.mp3",
    )


def _deep_unknown() -> dict[str, Any]:
    deep: Any = "bottom <!channel>"
    for level in range(10):
        deep = {f"level{level}": deep}
    return {"event": "somethingNew", "deep": deep, "items": list(range(400)), "empty": {}}


def _campaign(**fields: Any) -> dict[str, Any]:
    event = _sample("campaign-delivery-report")
    event.update(fields)
    return event


HOSTILE: dict[str, dict[str, Any]] = {
    "hostile-mentions": _message(MENTIONS),
    "hostile-names": _hostile_names(),
    "hostile-html": _message(HTML),
    "emoji-zwj": _message(EMOJI),
    "rtl": _message(RTL),
    "long-20k-words": _message(_words(20_000)),
    "long-20k-unbroken": _message("x" * 20_000),
    "astral-at-splits": _message("😀" * 9_000),
    "zwj-at-splits": _message("👩‍👩‍👧‍👦" * 1_500),
    "image-long-caption": _message(
        _words(6_000), imageUrl="https://media.example.com/receipt.jpg?a=1&b=<2>|3"
    ),
    "all-media": _all_media(),
    "media-not-web": _not_web_media(),
    "nulls-everywhere": _nulls(),
    "wrong-types": _wrong_types(),
    "campaign-hostile": _campaign(
        message="<!channel> done & dusted",
        campaignReportUrl="https://evil.example/a|b>c<d&e",
        event="campaignDeliveryReport",
    ),
    "campaign-wrong-types": _campaign(message={"sent": 10, "failed": [1]}, campaignReportUrl=7),
    "campaign-missing": {"event": "compaignDeliveryReport"},
    "unknown-deep": _deep_unknown(),
    "empty-object": {},
    "event-name-object": {"event": {"name": "x"}, "value": "<!here>"},
    "message-not-object": {"event": "newMessage", "message": "just a string", "conversation": 5},
}

CASES: dict[str, dict[str, Any]] = {**SAMPLES, **HOSTILE}


def web_urls(event: Any) -> set[str]:
    """Every string in the event that is a web URL (the only URLs renderers may link)."""
    if isinstance(event, dict):
        return set().union(*(web_urls(value) for value in event.values()))
    if isinstance(event, list):
        return set().union(*(web_urls(value) for value in event))
    return {event} if isinstance(event, str) and is_web_url(event) else set()


def assert_golden(relative: str, actual: str) -> None:
    """Compare with tests/golden/<relative>; UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / relative
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), f"{relative} differs from its golden file"


def no_space(text: str) -> str:
    return "".join(text.split())


# --------------------------------------------------------------------------- strategies

# fmt: off
SNIPPETS = [
    "<!channel>", "<!here>", "<@U123>", "<https://evil|click>", "&amp;", "&", "<", ">", '"',
    "<b>", "</pre>", "\n", " ", "\u200d", "👩‍👩‍👧", "👋🏽", "🇳🇬", "e\u0301", "مرحبا", "😀", "𝄞",
]
# fmt: on

# The building blocks are built once (hypothesis validates each new strategy object, which
# is slow); what tests use is wrapped in composites, so that a failure is reported with a
# short name rather than a 50 kB repr of nested strategies.

_PIECE = st.one_of(st.sampled_from(SNIPPETS), st.text(st.characters(codec="utf-8"), max_size=8))
_HOSTILE = st.lists(_PIECE, max_size=40).map("".join)
_LONG = st.builds(lambda chunk, times: chunk * times, _HOSTILE, st.integers(1, 500))
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    _HOSTILE,
)
_JSON = st.recursive(
    _SCALAR,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_HOSTILE, children, max_size=4)
    ),
    max_leaves=20,
)
_KEY = st.one_of(st.sampled_from(["event", "message", "conversation"]), _HOSTILE)
_OBJECT = st.dictionaries(_KEY, _JSON, max_size=6)
_NAMES = ["newMessage", "compaignDeliveryReport", "campaignDeliveryReport"]


@st.composite
def hostile_texts(draw: st.DrawFn) -> str:
    """Short text: arbitrary code points (astral included) and hostile snippets mixed."""
    return draw(_HOSTILE)


@st.composite
def long_texts(draw: st.DrawFn) -> str:
    """Up to tens of thousands of characters: a hostile text repeated."""
    return draw(_LONG)


def _shaped(draw: st.DrawFn, template: Any) -> Any:
    """The sample's shape, each field kept, missing, or of a random type (text where an
    object was, an object where text was, numbers, nulls, now and then long text)."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue
            out[key] = draw(_JSON) if choice == 1 else _shaped(draw, value)
        return out
    choice = draw(st.integers(0, 19))  # long text rarely: one long field is enough to split
    if choice < 10:
        return template
    if choice < 15:
        return draw(_HOSTILE)
    return draw(_JSON) if choice < 19 else draw(_LONG)


@st.composite
def oneroute_events(draw: st.DrawFn) -> dict[str, Any]:
    sample = draw(st.sampled_from(sorted(SAMPLES)))
    event = _shaped(draw, SAMPLES[sample])
    names = st.sampled_from([SAMPLES[sample]["event"], *_NAMES])
    event["event"] = draw(st.one_of(names, _JSON))
    return event


@st.composite
def any_events(draw: st.DrawFn) -> dict[str, Any]:
    """Any JSON object, or a OneRoute-shaped event with random types in its fields."""
    return draw(_OBJECT) if draw(st.booleans()) else draw(oneroute_events())


hostile_text = hostile_texts()
long_text = long_texts()
# RENDER_EXAMPLES=5000 for a longer soak of every property test of the renderers.
PROPERTY = settings(
    max_examples=int(os.environ.get("RENDER_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

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
    event = _message()
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
        "🎧 Agent *Ada (agent)* · Channel name (WHATSAPP) · open"
    )
    assert context_line(extract({}), SLACK)[0] == "📨 _event without a name_"
    assert context_line(extract(_nulls()), SLACK)[0] == "💬 _unknown customer_"


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


def _unescape(mrkdwn: str) -> str:
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
