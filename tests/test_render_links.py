"""Tests that no event value becomes a mention or a non-http(s) link in Slack or Telegram
output: through a destination template (a value in link position, `<{{ url }}|label>` or
`<a href="{{ url }}">`), through the templates' `link()`, and through the default renderers
for every URL field of an event.

The assertions parse the output the way the platforms do: Slack reads `<…>` as a link or a
special (`<!here>`, `<@U…>`, `<#C…>`) whose target ends at the first `|`; Telegram reads
`<a href=…>` (quoted either way or not at all, entities decoded) and refuses HTML its parser
would not take (tests/fakes/telegram_html.py).
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from relay.integrations.slack.render import SlackMessage, render_slack
from relay.integrations.telegram.render import TelegramCall, render_telegram
from relay.render.template import TemplateRenderError, compile_template
from tests.fakes.telegram_html import parse
from tests.render_cases import PROPERTY, SAMPLES, hostile_texts, message

# Event values that a careless template turns into a ping, a mention or a script link.
HOSTILE_URLS = [
    "!channel",
    "!here",
    "!everyone",
    "@U123ABC",
    "#C123",
    "!subteam^S123",
    "!date^1392734382^{date_short}|Feb 18",
    "!channel|label",
    "@U123ABC|boss",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "tg://user?id=1",
    "data:text/html,<script>alert(1)</script>",
    "mailto:ceo@example.com",
    "&#33;channel",
    "&excl;channel",
    "%21channel",
    "https://ok.example|<!channel>",
    "https://ok.example/a|!channel",
    "https://ok.example>",
    "<!here>",
    "https://ok.example\n<!here>",
    "\n!here",
    'https://ok.example" href="tg://user?id=1',
    "https://ok.example' href='tg://user?id=1",
    "https://ok.example href=tg://user?id=1",
    "&#104;ttps://ok.example",
    "https://ok.example/receipt.jpg?a=1&b=<2>|3",
]

# Templates that put values in link position, by hand: each shape a value could abuse.
RAW_TEMPLATES = {
    "slack": [
        "<{{ content }}|label>",
        "<{{ content }}>",
        "<{{ content }}|{{ content }}>",
        "<{{ event.message.imageUrl }}{{ content }}>",  # a value split over the `|`
        "<!{{ content }}>",
        "<@{{ content }}>",
        "<{{ content }}|{{ sender }}> and <{{ event.message.videoUrl }}>",
        "{% for m in media %}<{{ m.url }}|{{ m.kind }}>\n{% endfor %}",
        "<https://ok.example/{{ content }}>",
        "{% filter replace('URL', content) %}<URL|x>{% endfilter %}",  # values unescaped
    ],
    "telegram": [
        '<a href="{{ content }}">label</a>',
        "<a href='{{ content }}'>label</a>",
        "<a href={{ content }}>label</a>",
        '<a href="{{ content }}">{{ content }}</a>',
        '<b><a href="{{ event.message.imageUrl }}">{{ sender }}</a></b>',
        '{% for m in media %}<a href="{{ m.url }}">{{ m.kind }}</a>\n{% endfor %}',
        "{% filter replace('URL', content) %}<a href=\"URL\">x</a>{% endfilter %}",
    ],
}

# The safe way: `link()` in every position a template might use it.
LINK_TEMPLATES = {
    "slack": "{{ link(content, 'label') }} {% for m in media %}{{ link(m.url) }}\n{% endfor %}"
    "{{ link(report_url, 'open the report') }}",
    "telegram": "{{ link(content, 'label') }} {% for m in media %}{{ link(m.url) }}\n"
    "{% endfor %}<i>{{ link(report_url, 'open the report') }}</i>",
}

URL_FIELDS = ("imageUrl", "videoUrl", "documentUrl", "audioUrl")


def _event(value: Any) -> dict[str, Any]:
    """A message whose text and every media field hold `value`."""
    return message(value, **dict.fromkeys(URL_FIELDS, value))


def _campaign(value: Any) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLES["campaign-delivery-report"])
    event["campaignReportUrl"] = value
    return event


# ------------------------------------------------------------------------ parsing helpers


_SLACK_ANGLE = re.compile(r"<([^<>]*)>")
_TELEGRAM_A = re.compile(
    r"<a((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>", re.IGNORECASE
)
_ATTRIBUTE = re.compile(r"([a-zA-Z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")


def is_http(target: str | None) -> bool:
    """An http(s) URL with a host and no whitespace, read as written and entity-decoded."""
    if target is None:
        return False
    return all(
        re.fullmatch(r"https?://[^\s/?#]+\S*", form, re.IGNORECASE) is not None
        for form in (target, html.unescape(target))
    )


def slack_targets(mrkdwn: str) -> list[str]:
    """What Slack links to or mentions: each `<…>`'s text up to its first `|`."""
    return [match.group(1).partition("|")[0] for match in _SLACK_ANGLE.finditer(mrkdwn)]


def telegram_targets(markup: str) -> list[str | None]:
    """Every `href` of every `<a>` in Telegram HTML, as written but unquoted (None for an
    `href` without a value); fails like Telegram when the HTML would be refused."""
    parse(markup)  # after this, every "<" starts a tag Telegram accepts
    hrefs: list[str | None] = []
    for tag in _TELEGRAM_A.finditer(markup):
        for name, value in _ATTRIBUTE.findall(tag.group(1)):
            if name.lower() == "href":
                quoted = value[:1] in "\"'" and len(value) > 1
                hrefs.append((value[1:-1] if quoted else value) or None)
    return hrefs


def slack_texts(message: SlackMessage) -> list[str]:
    """The mrkdwn Slack reads: `text` and every section and context, of the message and
    of its fallback."""
    texts = []
    for payload in (message.payload, message.fallback or {}):
        if "text" in payload:
            texts.append(payload["text"])
        for block in payload.get("blocks", []):
            if block["type"] == "section":
                texts.append(block["text"]["text"])
            if block["type"] == "context":
                texts.extend(element["text"] for element in block["elements"])
    return texts


def assert_slack_safe(messages: list[SlackMessage]) -> None:
    for each in messages:
        for text in slack_texts(each):
            for target in slack_targets(text):
                assert is_http(target), f"<{target}…> in {text!r}"
        for block in each.payload["blocks"]:
            if block["type"] == "image":
                assert is_http(block["image_url"])


def assert_telegram_safe(calls: list[TelegramCall]) -> None:
    for call in calls:
        for markup in (call.params.get("text"), call.params.get("caption")):
            if markup is not None:
                for target in telegram_targets(markup):
                    assert is_http(target), f'<a href="{target}"> in {markup!r}'
        for field in ("photo", "video", "document", "audio"):
            if field in call.params:
                assert is_http(call.params[field])
        if call.fallback is not None:
            assert_telegram_safe([call.fallback])


def test_the_helpers_see_what_slack_and_telegram_would_link():
    assert slack_targets("a <!here> b <https://x.example|y> <@U1|z>") == [
        "!here",
        "https://x.example",
        "@U1",
    ]
    assert telegram_targets(
        "<a href=\"tg://user?id=1\">a</a> <A HREF='https://x.example'>b</A> <a href=x>c</a>"
    ) == ["tg://user?id=1", "https://x.example", "x"]
    assert [is_http(url) for url in ["https://x.example/a?b&amp;c", "&#104;ttps://x"]] == [
        True,
        False,
    ]
    assert not is_http("https://x.example\n")


# ------------------------------------------------------------------ templates: the table


@pytest.mark.parametrize("value", HOSTILE_URLS)
@pytest.mark.parametrize("source", RAW_TEMPLATES["slack"])
def test_a_slack_template_cannot_turn_a_value_into_a_mention_or_link(source: str, value: str):
    template = compile_template(source, "slack")
    for event in (_event(value), _campaign(value)):
        output = template.render(event)  # neutralised, not a failure: nothing falls back
        for target in slack_targets(output):
            assert is_http(target), f"<{target}…> from {source!r} in {output!r}"
        assert_slack_safe(render_slack(event, template=template))


@pytest.mark.parametrize("value", HOSTILE_URLS)
@pytest.mark.parametrize("source", RAW_TEMPLATES["telegram"])
def test_a_telegram_template_cannot_turn_a_value_into_a_mention_or_link(source: str, value: str):
    template = compile_template(source, "telegram")
    for event in (_event(value), _campaign(value)):
        try:
            output = template.render(event)
        except TemplateRenderError:
            pass  # e.g. `href=x title=y` from an unquoted value: refused, hence the default
        else:
            for target in telegram_targets(output):
                assert is_http(target), f'<a href="{target}"> from {source!r} in {output!r}'
        assert_telegram_safe(render_telegram(event, template=template))


@pytest.mark.parametrize(
    ("flavor", "source", "value", "expected"),
    [
        ("slack", "<{{ content }}|label>", "!channel", "&lt;!channel|label&gt;"),
        ("slack", "<!{{ content }}>", "here", "&lt;!here&gt;"),
        ("slack", "<@{{ content }}>", "U123ABC", "&lt;@U123ABC&gt;"),
        ("slack", "<{{ content }}>", "javascript:alert(1)", "&lt;javascript:alert(1)&gt;"),
        ("slack", "<{{ content }}>", "&#33;channel", "&lt;&amp;#33;channel&gt;"),
        ("slack", "<{{ content }}|x>", "https://ok.example", "<https://ok.example|x>"),
        (
            "telegram",
            '<a href="{{ content }}">label</a>',
            "tg://user?id=1",
            '&lt;a href="tg://user?id=1"&gt;label&lt;/a&gt;',
        ),
        (
            "telegram",
            "<b><a href='{{ content }}'>x</a></b>",
            "javascript:alert(1)",
            "<b>&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;</b>",
        ),
        (
            "telegram",
            '<a href="{{ content }}">x</a>',
            "https://ok.example/?a=1&b=2",
            '<a href="https://ok.example/?a=1&amp;b=2">x</a>',
        ),
    ],
)
def test_markup_a_value_made_is_shown_as_text(flavor: Any, source: str, value: str, expected: str):
    assert compile_template(source, flavor).render(message(value)) == expected


@pytest.mark.parametrize(
    ("flavor", "source", "expected"),
    [
        ("slack", "<!here> {{ content }}", "<!here> !channel"),
        ("slack", "<@U123ABC> <#C123|general>", "<@U123ABC> <#C123|general>"),
        ("slack", "<!subteam^S123|{{ content }}>", "<!subteam^S123|!channel>"),
        (
            "slack",
            "<mailto:ops@example.com|{{ sender }}>",
            "<mailto:ops@example.com|Message Sender>",
        ),
        ("slack", "{% if content %}\n<!channel>\n{% endif %}", "<!channel>\n"),
        ("slack", "{% raw %}<!here>{% endraw %}", "<!here>"),
        (
            "telegram",
            '<a href="tg://user?id=42">{{ sender }}</a> {{ content }}',
            '<a href="tg://user?id=42">Message Sender</a> !channel',
        ),
    ],
)
def test_an_operators_literal_mentions_and_links_are_kept(flavor: Any, source: str, expected: str):
    assert compile_template(source, flavor).render(message("!channel")) == expected


def test_a_literal_mention_does_not_let_a_value_choose_the_target():
    template = compile_template("<!subteam^{{ content }}|team> <{{ content }}|x>", "slack")
    assert template.render(message("S999")) == "&lt;!subteam^S999|team&gt; &lt;S999|x&gt;"


def test_markup_rebuilt_by_neutralising_is_checked_again():
    # A literal "<" before a neutralised mention must not make a new link with it.
    template = compile_template("<a {{ content }} b>", "slack")
    output = template.render(message("<!here>"))
    assert slack_targets(output) == []
    filtered = compile_template(
        "x <y {% filter replace('V', content) %}<V>{% endfilter %} z>", "slack"
    )
    output = filtered.render(message("!here"))
    assert slack_targets(output) == []


# ----------------------------------------------------------------------- templates: link()


@pytest.mark.parametrize(
    ("flavor", "url", "label", "expected"),
    [
        (
            "slack",
            "https://ok.example/a.jpg",
            "the <file>",
            "<https://ok.example/a.jpg|the &lt;file&gt;>",
        ),
        (
            "slack",
            "https://ok.example/a?b=1&c=<2>|3",
            None,
            "<https://ok.example/a?b=1&amp;c=%3C2%3E%7C3|https://ok.example/a?b=1&amp;c=&lt;2&gt;|3>",
        ),
        ("slack", "!channel", "label", "label (!channel)"),
        ("slack", "javascript:alert(1)", None, "javascript:alert(1)"),
        ("slack", "<!here>", "x", "x (&lt;!here&gt;)"),
        ("slack", None, "label", ""),
        ("slack", 42, "n", "n (42)"),
        (
            "telegram",
            'https://ok.example/a?b="1"&c=<2>',
            "<label>",
            '<a href="https://ok.example/a?b=&quot;1&quot;&amp;c=&lt;2&gt;">&lt;label&gt;</a>',
        ),
        (
            "telegram",
            "https://ok.example",
            None,
            '<a href="https://ok.example">https://ok.example</a>',
        ),
        ("telegram", "tg://user?id=1", "boss", "boss (tg://user?id=1)"),
        ("telegram", "", "x", ""),
    ],
)
def test_link_makes_a_link_of_a_web_url_and_text_of_anything_else(
    flavor: Any, url: Any, label: str | None, expected: str
):
    source = "{{ link(url, label) }}" if label is not None else "{{ link(url) }}"
    template = compile_template("{% set url = event.u %}{% set label = event.l %}" + source, flavor)
    assert template.render({"u": url, "l": label}) == expected


_SHOWN = "&lt;https://ok.example|https://ok.example&gt;"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ link(content)|safe }}", _SHOWN),  # |safe does not make markup of a str
        ("{{ link(content) ~ '' }}", _SHOWN),  # nor does any other way of making a str
        ("{{ link(content)|string }}", _SHOWN),
        ("{{ [link(content)]|join }}", _SHOWN),
        ("{{ link(content)._markup }}", ""),  # the sandbox hides it
        ("{{ link(content).__class__('<!here>') }}", None),  # the sandbox refuses
    ],
)
def test_only_what_link_returns_is_written_unescaped(source: str, expected: str | None):
    template = compile_template(source, "slack")
    if expected is None:
        with pytest.raises(TemplateRenderError, match=r"SecurityError|UndefinedError"):
            template.render(message("https://ok.example"))
    else:
        assert template.render(message("https://ok.example")) == expected


def test_link_goes_through_render_with_context_and_media_kept():
    event = SAMPLES["new-message-image"]
    slack = compile_template("{% for m in media %}{{ link(m.url, m.kind) }}{% endfor %}", "slack")
    [msg] = render_slack(event, template=slack)
    assert msg.payload["text"].splitlines()[1] == ("<https://media.example.com/receipt.jpg|image>")
    telegram = compile_template(
        "{% for m in media %}<b>{{ link(m.url, m.kind) }}</b>{% endfor %}", "telegram"
    )
    [call] = render_telegram(event, template=telegram)
    assert call.params["caption"].splitlines()[1] == (
        '<b><a href="https://media.example.com/receipt.jpg">image</a></b>'
    )


ROOT = Path(__file__).parents[1]


def _readme_template() -> str:
    section = (ROOT / "README.md").read_text().split("### Templates", 1)[1]
    return yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])["template"]


def _full_yaml_template() -> str:
    config = yaml.safe_load((ROOT / "config" / "full.yaml").read_text())
    return config["destinations"]["ops-telegram"]["template"]


@pytest.mark.parametrize(
    ("flavor", "source", "link"),
    [
        ("slack", _readme_template(), "📊 <https://ok.example/r|open the report>"),
        (
            "telegram",
            _full_yaml_template(),
            '📊 <a href="https://ok.example/r">open the report</a>',
        ),
    ],
)
def test_the_documented_templates_link_with_link(flavor: Any, source: str, link: str):
    template = compile_template(source, flavor)
    assert template.render(_campaign("https://ok.example/r")).splitlines()[-1] == link
    shown = template.render(_campaign("!channel")).splitlines()[-1]
    assert shown == "📊 open the report (!channel)"


# -------------------------------------------- every URL field, every renderer: a property

_PREFIXES = ["", "!", "@", "#", "javascript:", "tg://", "data:", "https://ok.example/", "<", "&#"]
hostile_urls = st.one_of(
    st.sampled_from(HOSTILE_URLS),
    hostile_texts(),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(_PREFIXES), hostile_texts()),
)

_SLACK_TEMPLATES = [
    compile_template(s, "slack") for s in [*RAW_TEMPLATES["slack"], LINK_TEMPLATES["slack"]]
]
_TELEGRAM_TEMPLATES = [
    compile_template(s, "telegram")
    for s in [*RAW_TEMPLATES["telegram"], LINK_TEMPLATES["telegram"]]
]


@PROPERTY
@given(urls=st.tuples(*(hostile_urls for _ in URL_FIELDS)), report=hostile_urls, text=hostile_urls)
def test_no_url_field_becomes_a_mention_or_a_non_web_link(
    urls: tuple[str, ...], report: str, text: str
):
    events = [message(text, **dict(zip(URL_FIELDS, urls, strict=True))), _campaign(report)]
    for event in events:
        assert_slack_safe(render_slack(event))
        assert_telegram_safe(render_telegram(event))
        for template in _SLACK_TEMPLATES:
            assert_slack_safe(render_slack(event, template=template))
        for template in _TELEGRAM_TEMPLATES:
            assert_telegram_safe(render_telegram(event, template=template))
