"""Tests of relay.render.template: compiling destination templates, escaping every value,
the sandbox, and falling back to the default body when a template fails on an event.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given

from relay.integrations.slack.render import render_slack
from relay.integrations.telegram.render import render_telegram
from relay.render.template import (
    TemplateError,
    TemplateRenderError,
    compile_template,
    template_context,
)
from tests.fakes.telegram_html import parse
from tests.render_cases import HOSTILE, MENTIONS, PROPERTY, SAMPLES, any_events, no_space
from tests.test_render_slack import check_slack
from tests.test_render_telegram import check_telegram

TEXT = SAMPLES["new-message-text"]

# ------------------------------------------------------------------------------- compiling


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ("ok\n{% if content %}\nno end", 3, "endif"),
        ("{{ content ", 1, "end of print statement"),
        ("a\nb\n{{ content | no_such_filter }}", 3, "no_such_filter"),
        ("{% for x in %}{% endfor %}", 1, "Expected an expression"),
    ],
)
def test_syntax_errors_name_the_line(source: str, line: int, words: str):
    with pytest.raises(TemplateError) as caught:
        compile_template(source, "slack")
    assert caught.value.line == line
    assert words in caught.value.message
    assert str(caught.value).startswith(f"line {line}: ")


def test_an_unknown_flavor_is_a_template_error():
    with pytest.raises(TemplateError, match="flavor"):
        compile_template("x", "discord")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- escaping


def test_every_value_is_escaped_for_slack_and_literal_markup_is_kept():
    event = copy.deepcopy(TEXT)
    event["message"]["content"] = MENTIONS
    template = compile_template("*{{ sender }}* says {{ content }} {{ content|safe }}", "slack")
    escaped = MENTIONS.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert template.render(event) == f"*Message Sender* says {escaped} {escaped}"


def test_every_value_is_escaped_for_telegram_including_quotes_in_attributes():
    event = copy.deepcopy(TEXT)
    event["message"]["content"] = '<b>x</b>&"q"'
    template = compile_template(
        '<b>{{ sender }}</b>: {{ content }} <a href="https://x.example/?q={{ content }}">l</a>',
        "telegram",
    )
    out = template.render(event)
    assert out == (
        "<b>Message Sender</b>: &lt;b&gt;x&lt;/b&gt;&amp;&quot;q&quot; "
        '<a href="https://x.example/?q=&lt;b&gt;x&lt;/b&gt;&amp;&quot;q&quot;">l</a>'
    )
    assert parse(out).startswith('Message Sender: <b>x</b>&"q"')


def test_values_are_shown_as_json_not_python():
    template = compile_template("{{ event.message.sender }} {{ agent }} {{ none }}", "slack")
    assert template.render(TEXT) == (
        '{"name": "Message Sender", "authUser": false, '
        '"lastActivity": "2022-01-29T07:27:52.676Z"} false '
    )


def test_the_context_names():
    context = template_context(SAMPLES["new-message-image"])
    assert {key: value for key, value in context.items() if key != "event"} == {
        "event_name": "newMessage",
        "sender": "Message Sender",
        "agent": False,
        "customer": "Customer name",
        "content": "Here is the receipt",
        "channel": "Channel name",
        "medium": "WHATSAPP",
        "status": "in-queue",
        "conversation_id": "bf9d96d9-e495-489a-a22a-206b0ea44d90",
        "quoted_message_id": None,
        "media": [{"kind": "image", "url": "https://media.example.com/receipt.jpg"}],
        "report_url": None,
        "fields": [],
    }
    assert context["event"] is SAMPLES["new-message-image"]
    campaign = template_context(SAMPLES["campaign-delivery-report"])
    assert campaign["content"] == "campaign completed."
    assert campaign["report_url"] is not None


def test_missing_attributes_are_empty_not_errors():
    template = compile_template(
        "[{{ event.message.sender.name }}|{{ event.nope.deeper }}]", "slack"
    )
    assert template.render({"event": "newMessage", "message": None}) == "[|]"


# ---------------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "source",
    [
        "{{ event.clear() }}",  # the immutable sandbox: the stored event is not changed
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ 'x' * 10000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ 1 / 0 }}",
        "{{ content.upper() }}",  # content is None here: calling undefined
    ],
)
def test_a_failing_template_raises_template_render_error(source: str):
    event = copy.deepcopy(TEXT)
    event["message"]["content"] = None
    template = compile_template(source, "slack")
    with pytest.raises(TemplateRenderError):
        template.render(event)
    assert event == {**TEXT, "message": {**TEXT["message"], "content": None}}


def test_telegram_output_that_telegram_would_refuse_is_a_render_error():
    template = compile_template("<div>{{ content }}</div>", "telegram")
    with pytest.raises(TemplateRenderError, match="not valid Telegram HTML"):
        template.render(TEXT)


# --------------------------------------------------------------------------------- rendering


def test_a_template_replaces_the_body_and_keeps_context_and_media():
    event = SAMPLES["new-message-image"]
    slack = compile_template("> *{{ content }}* ({{ medium }})", "slack")
    [message] = render_slack(event, template=slack)
    assert message.payload["text"] == (
        "💬 *Message Sender* · Channel name (WHATSAPP) · in-queue\n"
        "> *Here is the receipt* (WHATSAPP)\n"
        "🖼️ Image: <https://media.example.com/receipt.jpg|receipt.jpg>"
    )
    assert message.fallback is not None  # the image block is still there
    telegram = compile_template("<i>{{ content }}</i>", "telegram")
    [call] = render_telegram(event, template=telegram)
    assert call.method == "sendPhoto"
    assert call.params["caption"] == (
        "💬 <b>Message Sender</b> · Channel name (WHATSAPP) · in-queue\n<i>Here is the receipt</i>"
    )


@pytest.mark.parametrize("source", ["{{ 1 / 0 }}", "{{ event.clear() }}"])
def test_a_failing_template_falls_back_to_the_default_body_with_a_note(source: str):
    [message] = render_slack(TEXT, template=compile_template(source, "slack"))
    assert "\nHello World!\n⚠️ " in message.payload["text"]
    assert "template failed" in message.payload["text"]
    check_slack([message], TEXT)
    [call] = render_telegram(TEXT, template=compile_template(source, "telegram"))
    assert "\nHello World!\n⚠️ <i>template failed (" in call.params["text"]
    check_telegram([call], TEXT)


def test_invalid_telegram_html_from_a_template_falls_back():
    [call] = render_telegram(TEXT, template=compile_template("<div>x</div>", "telegram"))
    assert "\nHello World!\n⚠️ <i>template failed (output is not valid" in call.params["text"]
    check_telegram([call], TEXT)


def test_a_template_of_the_wrong_flavor_falls_back():
    [message] = render_slack(TEXT, template=compile_template("<b>x</b>", "telegram"))
    assert "a telegram template cannot render for Slack" in message.payload["text"]


def test_long_template_output_is_split_and_tags_are_reopened():
    event = HOSTILE["long-20k-words"]
    template = compile_template("<i>{{ content }}</i>", "telegram")
    calls = render_telegram(event, template=template)
    check_telegram(calls, event)
    assert len(calls) > 4
    for call in calls:
        body = call.params["text"].partition("\n")[2]
        assert body.startswith("<i>")
        assert body.endswith("</i>")
    bodies = "".join(parse(call.params["text"]).partition("\n")[2] for call in calls)
    assert no_space(bodies) == no_space(event["message"]["content"])
    messages = render_slack(event, template=compile_template("_{{ content }}_", "slack"))
    check_slack(messages, event)
    assert len(messages) > 4


def test_a_template_printing_a_lot_is_split_within_limits():
    source = "{% for i in range(3000) %}<b>{{ i }}</b> {{ sender }}\n{% endfor %}"
    calls = render_telegram(TEXT, template=compile_template(source, "telegram"))
    check_telegram(calls, TEXT)
    slack_source = "{% for i in range(3000) %}*{{ i }}* {{ sender }}\n{% endfor %}"
    check_slack(render_slack(TEXT, template=compile_template(slack_source, "slack")), TEXT)


TEMPLATES = {
    "slack": compile_template(
        "*{{ sender }}* ({{ channel }}): {{ content }}\n{% for m in media %}{{ m.url }}\n"
        "{% endfor %}{% for path, value in fields %}{{ path }}={{ value }}\n{% endfor %}",
        "slack",
    ),
    "telegram": compile_template(
        "<b>{{ sender }}</b> ({{ channel }}): <i>{{ content }}</i>\n"
        "{% for m in media %}{{ m.kind }}: <code>{{ m.url }}</code>\n{% endfor %}"
        "{% for path, value in fields %}<code>{{ path }}</code>={{ value }}\n{% endfor %}",
        "telegram",
    ),
}


@PROPERTY
@given(event=any_events())
def test_any_event_renders_through_a_template_within_limits(event: dict[str, Any]):
    check_slack(render_slack(event, template=TEMPLATES["slack"]), event)
    check_telegram(render_telegram(event, template=TEMPLATES["telegram"]), event)
