"""What the renderer tests share: the events every destination is rendered from (`CASES`:
the OneRoute samples plus hostile content), the hypothesis strategies for arbitrary JSON and
OneRoute-shaped events with random types, and the golden-file helper.

Golden files live in tests/golden/<destination>/<case>.json (.txt for the console). After an
intended change of layout, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_*.py -q

Property tests run 150 examples each; `RENDER_EXAMPLES=5000` runs a longer soak.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from relay.render.content import is_web_url

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


def message(content: Any = "Hello", **message: Any) -> dict[str, Any]:
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
    event = message(MENTIONS)
    event["message"]["sender"]["name"] = "<!channel> " * 40
    event["conversation"]["Channel"]["name"] = "<@U999> " * 30
    event["conversation"]["Channel"]["medium"] = "<!here>"
    event["conversation"]["status"] = "<https://evil.example|in-queue>"
    return event


def nulls() -> dict[str, Any]:
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
    return message(
        "all four",
        imageUrl="https://media.example.com/a.jpg",
        videoUrl="https://media.example.com/b.mp4",
        documentUrl="https://media.example.com/c.pdf",
        audioUrl="https://media.example.com/d.mp3",
    )


def _not_web_media() -> dict[str, Any]:
    return message(
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
    "hostile-mentions": message(MENTIONS),
    "hostile-names": _hostile_names(),
    "hostile-html": message(HTML),
    "emoji-zwj": message(EMOJI),
    "rtl": message(RTL),
    "long-20k-words": message(_words(20_000)),
    "long-20k-unbroken": message("x" * 20_000),
    "astral-at-splits": message("😀" * 9_000),
    "zwj-at-splits": message("👩‍👩‍👧‍👦" * 1_500),
    "image-long-caption": message(
        _words(6_000), imageUrl="https://media.example.com/receipt.jpg?a=1&b=<2>|3"
    ),
    "all-media": _all_media(),
    "media-not-web": _not_web_media(),
    "nulls-everywhere": nulls(),
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
