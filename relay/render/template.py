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

Every `{{ value }}` is escaped for the destination (Slack mrkdwn: `&`, `<`, `>`; Telegram
HTML: also `"`), even through `|safe`, so event data cannot ping `<!channel>` or inject
tags; the template's own literal markup (`*bold*`, `<b>…</b>`, `<{{ url }}|label>`) is
kept. Missing attributes are empty rather than errors (`event.message.sender.name` on an
event without a message). `trim_blocks`/`lstrip_blocks` are on, so `{% if %}` lines leave
no blank lines.

It runs in Jinja2's immutable sandbox: no access to Python internals, no changing the
event. A template that fails at render time (an exception, a sandbox violation, or for
Telegram output that is not valid Telegram HTML) raises TemplateRenderError; the
renderers catch it and fall back to the default body with a short note, so the message
is never lost. Syntax errors are found at config load: `compile_template` raises
TemplateError carrying the template's line number.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from relay.errors import TemplateError, TemplateRenderError
from relay.events import text_at
from relay.render.content import Content, extract, to_json
from relay.render.markup import escape_html, escape_mrkdwn
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


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        if value is None or isinstance(value, jinja2.Undefined):
            return ""
        if isinstance(value, str):
            return escape(str.__str__(value))  # a plain str: |safe does not skip escaping
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | dict | list | tuple):
            return escape(to_json(value))
        return escape(str(value))

    return finalize


def _environment(escape: Callable[[str], str]) -> _Sandbox:
    return _Sandbox(
        autoescape=False,  # the template's own markup is kept; values are escaped by finalize
        finalize=_finalizer(escape),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENVIRONMENTS: Final[dict[str, _Sandbox]] = {
    "slack": _environment(escape_mrkdwn),
    "telegram": _environment(escape_html),
}


@dataclass(frozen=True, eq=False)
class Template:
    """A compiled destination template, for one flavor of markup."""

    source: str
    flavor: Flavor
    _compiled: jinja2.Template = field(repr=False)

    def render(self, event: Mapping[str, Any]) -> str:
        """The body markup for `event`. Raises TemplateRenderError, never anything else."""
        try:
            output = self._compiled.render(template_context(event))
        except Exception as error:  # any template bug: the renderer falls back, visibly
            raise TemplateRenderError(f"{type(error).__name__}: {error}") from error
        if self.flavor == "telegram":
            problem = telegram_html_error(output)
            if problem:
                raise TemplateRenderError(f"output is not valid Telegram HTML: {problem}")
        return output


def compile_template(source: str, flavor: Flavor) -> Template:
    """Compile `source` for a destination flavor; raises TemplateError (with the line)."""
    environment = _ENVIRONMENTS.get(flavor)
    if environment is None:
        raise TemplateError(f"unknown template flavor {flavor!r} (slack or telegram)")
    try:
        compiled = environment.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(error.message or "syntax error", error.lineno) from error
    return Template(source=source, flavor=flavor, _compiled=compiled)


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
