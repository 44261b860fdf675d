"""Destination templates: a Jinja2 template that replaces the body of a rendered message.

A destination may set `template:` in relay.yaml. The template replaces the **body** - the
lines under the context line (`💬 Customer name · Channel name (WHATSAPP) · in-queue`),
which stays as it is, as do the media: Slack's media links and image blocks, Telegram's
photo/video/document/audio calls. So a template can restyle the text but never lose who
wrote, where, or an attachment. Its output is split to the destination's limits like any
other text.

What a template sees (every value may be None, i.e. shown as nothing):

    event            the whole event dict (`event.message.contentType`, `event["x"]`)
    event_name       e.g. "newMessage", "compaignDeliveryReport"
    sender           the writer's name (customer, or agent when `agent` is true)
    agent            true when the message was written by a team member (sender.authUser)
    customer         conversation.customer.name
    content          the message text (a campaign report: its summary)
    channel, medium  conversation.Channel.name and .medium (e.g. WHATSAPP)
    status           conversation.status
    conversation_id  conversation.id (or message.conversation_id)
    quoted_message_id  set when the message quotes an earlier one
    media            list of {"kind": "image"|"video"|"document"|"audio", "url": ...}
    report_url       a campaign report's campaignReportUrl
    fields           an unknown event's flattened [(path, value), ...]
    link(url, label)  a function: the link to make for a URL (see below)

Every `{{ value }}` is escaped for the destination (Slack mrkdwn: `&`, `<`, `>`; Telegram
HTML: also `"`), even through `|safe`, so event data cannot ping `<!channel>` or inject
tags; the template's own literal markup (`*bold*`, `<b>…</b>`) is kept. Escaping alone
does not make a value safe *inside* a link, though: `<{{ url }}|label>` with a url of
`!channel` is `<!channel|label>`, a ping. So the output is checked too (`_guard_links`):
a Slack `<…>` or Telegram `<a href=…>` whose target is not an http(s) URL is written as
text unless the template itself has it literally (an operator's own `<!here>` or
`<a href="tg://user?id=1">`). That holds whatever the template's shape, even for values
that reach the output unescaped (`{% filter replace("X", content) %}`). The way to make
a link is `{{ link(url, label) }}`: a link for an http(s) URL, the label and URL as text
for anything else. Missing attributes are empty rather than errors
(`event.message.sender.name` on an event without a message). `trim_blocks`/`lstrip_blocks`
are on, so `{% if %}` lines leave no blank lines.

It runs in Jinja2's immutable sandbox: no access to Python internals, no changing the
event. A template that fails at render time (an exception, a sandbox violation, or for
Telegram output that is not valid Telegram HTML) raises TemplateRenderError; the
renderers catch it and fall back to the default body with a short note, so the message
is never lost. Syntax errors are found at config load: `compile_template` raises
TemplateError carrying the template's line number.
"""

from __future__ import annotations

import html
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from relay.errors import TemplateError, TemplateRenderError
from relay.events import text_at
from relay.render.content import Content, extract, is_web_url, to_json
from relay.render.markup import (
    Style,
    default_body,
    escape_html,
    escape_mrkdwn,
    html_link,
    join_lines,
    slack_link,
    template_note,
)
from relay.render.split import ATOM, CLOSE, OPEN, tokens
from relay.render.telegram_html import telegram_html_error

Flavor = Literal["slack", "telegram"]

_MAX_REPEAT: Final = 100_000  # "x" * n and [..] * n beyond this would eat memory, not render
_MAX_EXPONENT: Final = 1_000


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus a bound on `*` and `**` (the cheap memory bombs)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator_name: str, left: Any, right: Any
    ) -> Any:
        if operator_name == "**":
            if isinstance(right, int) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            return operator.pow(left, right)
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        too_large = (
            isinstance(sized, str | list | tuple)
            and isinstance(count, int)
            and len(sized) * count > _MAX_REPEAT
        )
        if too_large:
            raise SecurityError("the result of * would be too large")
        return operator.mul(left, right)


class _Link:
    """Markup made by `link()`, which the finalizer writes as it is.

    Only `link()` makes one: the sandbox hides attributes starting with "_" (so neither
    `_markup` nor `__class__` is reachable), and turned into a str in any way (`|safe`,
    `~`, `|join`) it is a plain str again, escaped like any value.
    """

    __slots__ = ("_markup",)

    def __init__(self, markup: str) -> None:
        self._markup = markup

    def __str__(self) -> str:
        return self._markup


def _text(value: Any) -> str:
    """A value as the text a template shows for it (before escaping)."""
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | dict | list | tuple):
        return to_json(value)
    return str(value)


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        if isinstance(value, _Link):
            return value._markup
        return escape(_text(value))  # a str subclass too: |safe does not skip escaping

    return finalize


def _linker(
    make_link: Callable[[str, str], str], escape: Callable[[str], str]
) -> Callable[..., _Link]:
    def link(url: Any, label: Any = None) -> _Link:
        """`link(url, label)`: a link if `url` is http(s), else `label (url)` as text."""
        target, text = _text(url).strip(), _text(label)
        if not target:
            return _Link("")
        if is_web_url(target):
            return _Link(make_link(target, text or target))
        shown = f"{text} ({target})" if text and text != target else target
        return _Link(escape(shown))

    return link


def _environment(escape: Callable[[str], str], make_link: Callable[[str, str], str]) -> _Sandbox:
    environment = _Sandbox(
        autoescape=False,  # the template's own markup is kept; values are escaped by finalize
        finalize=_finalizer(escape),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["link"] = _linker(make_link, escape)
    return environment


_ENVIRONMENTS: Final[dict[str, _Sandbox]] = {
    "slack": _environment(escape_mrkdwn, slack_link),
    "telegram": _environment(escape_html, html_link),
}

# An attribute as Telegram reads it (relay/render/telegram_html.py accepts the same forms).
_ATTRIBUTE: Final = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")
_WEB_SCHEME: Final = re.compile(r"https?://", re.IGNORECASE)


def _is_target(target: str | None) -> bool:
    """An http(s) URL, entities decoded, and written as one (`&#104;ttps:` is not)."""
    return (
        target is not None
        and _WEB_SCHEME.match(target) is not None
        and is_web_url(html.unescape(target))
    )


def _as_text(tag: str) -> str:
    """A `<…>` token written so that it is shown as it is: `&lt;…&gt;`."""
    return f"&lt;{tag[1:-1]}&gt;"


def _slack_link_ok(token: str, literal: tuple[str, ...]) -> bool:
    # The target ends at the first "|"; "<target|" (or the whole "<target>") fixes what the
    # link does, so written literally by the template, a value may be its label.
    target, bar, _ = token[1:-1].partition("|")
    head = token[: len(target) + 1] + (bar or ">")
    return _is_target(target) or any(head in chunk for chunk in literal)


def _telegram_link_ok(token: str, literal: tuple[str, ...]) -> bool:
    if any(token in chunk for chunk in literal):
        return True
    hrefs = [
        value[1:-1] if value[:1] in "\"'" and len(value) > 1 else value
        for name, value in _ATTRIBUTE.findall(token[2:-1])
        if name.lower() == "href"
    ]
    return all(_is_target(href or None) for href in hrefs)


def _guard_once(markup: str, flavor: Flavor, literal: tuple[str, ...]) -> str:
    out: list[str] = []
    opened: list[tuple[str, bool]] = []  # Telegram: each open tag, and whether it is text now
    for token in tokens(markup, flavor):
        raw = token.raw
        if flavor == "slack":
            if token.kind == ATOM and raw.startswith("<") and not _slack_link_ok(raw, literal):
                raw = _as_text(raw)
        elif token.kind == OPEN:
            neutral = token.tag == "a" and not _telegram_link_ok(raw, literal)
            opened.append((token.tag, neutral))
            raw = _as_text(raw) if neutral else raw
        elif token.kind == CLOSE and opened and opened[-1][0] == token.tag:
            raw = _as_text(raw) if opened.pop()[1] else raw
        out.append(raw)
    return "".join(out)


def _guard_links(markup: str, flavor: Flavor, literal: tuple[str, ...]) -> str:
    """`markup` with every mention or non-http(s) link the template did not write shown as
    text. Repeated until nothing changes: a literal "<" before a token made text could
    otherwise open a new one (`<x &lt;!here&gt; y>`)."""
    while True:
        guarded = _guard_once(markup, flavor, literal)
        if guarded == markup:
            return markup
        markup = guarded


@dataclass(frozen=True, eq=False)
class Template:
    """A compiled destination template, for one flavor of markup."""

    source: str
    flavor: Flavor
    _compiled: jinja2.Template = field(repr=False)
    _literal: tuple[str, ...] = field(repr=False, default=())  # the template's own text

    def render(self, event: Mapping[str, Any]) -> str:
        """The body markup for `event`. Raises TemplateRenderError, never anything else."""
        try:
            output = self._compiled.render(template_context(event))
            output = _guard_links(output, self.flavor, self._literal)
        except Exception as error:  # any template bug: the renderer falls back, visibly
            raise TemplateRenderError(f"{type(error).__name__}: {error}") from error
        if self.flavor == "telegram":
            problem = telegram_html_error(output)
            if problem:
                raise TemplateRenderError(f"output is not valid Telegram HTML: {problem}")
        return output


def message_body(
    event: Mapping[str, Any], content: Content, template: Template | None, style: Style
) -> str:
    """The text under a message's context line: the template's, when one is set and renders,
    else the default layout — with a note saying why, when the template failed."""
    if template is None:
        return default_body(content, style)
    try:
        if template.flavor != style.flavor:
            raise TemplateRenderError(
                f"a {template.flavor} template cannot render for {style.flavor.capitalize()}"
            )
        return template.render(event)
    except TemplateRenderError as error:
        return join_lines(default_body(content, style), template_note(str(error), style))


def compile_template(source: str, flavor: Flavor) -> Template:
    """Compile `source` for a destination flavor; raises TemplateError (with the line)."""
    environment = _ENVIRONMENTS.get(flavor)
    if environment is None:
        raise TemplateError(f"unknown template flavor {flavor!r} (slack or telegram)")
    try:
        compiled = environment.from_string(source)
        # The literal text as rendered: newlines normalised, blocks' whitespace trimmed.
        literal = tuple(value for _, kind, value in environment.lex(source) if kind == "data")
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(error.message or "syntax error", error.lineno) from error
    return Template(source=source, flavor=flavor, _compiled=compiled, _literal=literal)


def template_context(event: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees (listed in the module docstring)."""
    content: Content = extract(event)
    return {
        "event": event,
        "event_name": content.event_name,
        "sender": content.sender,
        "agent": content.agent,
        "customer": text_at(event, "conversation.customer.name"),
        "content": content.text,
        "channel": content.channel,
        "medium": content.medium,
        "status": content.status,
        "conversation_id": content.conversation_id,
        "quoted_message_id": content.quoted_message_id,
        "media": [{"kind": media.kind, "url": media.url} for media in content.media],
        "report_url": content.report_url,
        "fields": list(content.fields),
    }
