"""How to write what an event says, safely, for each destination; shared by renderers.

A `Style` per destination (`SLACK`, `TELEGRAM`) escapes user text (`&`, `<`, `>` and, for
Telegram attributes, `"`) and writes our own bold, italic and links; only http(s) URLs
become links, others are shown as text. `context_line` and `default_body` lay a message
out with a Style, so both destinations say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from relay.render.content import Content, Media, MediaKind, is_web_url
from relay.render.split import Flavor, graphemes

_NAME_MAX: Final = 80  # context-line fields are shortened (the full value goes in the body)
_TAG_MAX: Final = 40  # medium and status are short words; allow less room


def escape_mrkdwn(text: str) -> str:
    """Slack's three escapes: no `<!channel>`, `<@U…>` or `<url|label>` from user text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_html(text: str) -> str:
    """Telegram HTML escaping; `"` too, so a value is safe inside an attribute."""
    return escape_mrkdwn(text).replace('"', "&quot;")


def slack_link(url: str, label: str) -> str:
    """`<url|label>`; `|`, `<`, `>` in the URL are percent-encoded so it cannot break out."""
    return f"<{slack_url(url)}|{escape_mrkdwn(label)}>"


def slack_url(url: str) -> str:
    """A URL as it appears inside a Slack link."""
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace("&", "&amp;")


def html_link(url: str, label: str) -> str:
    return f'<a href="{escape_html(url)}">{escape_html(label)}</a>'


@dataclass(frozen=True)
class Style:
    """How one destination writes text: escaping, emphasis and links."""

    flavor: Flavor
    escape: Callable[[str], str]
    bold: Callable[[str], str]
    italic: Callable[[str], str]
    link: Callable[[str, str], str]  # (url, label) -> markup; url is a web URL


def _slack_bold(text: str) -> str:
    # mrkdwn has no escape for "*": a name containing one is left plain rather than garbled.
    if "*" in text or not text.strip():
        return escape_mrkdwn(text)
    return f"*{escape_mrkdwn(text)}*"


def _slack_italic(text: str) -> str:
    return escape_mrkdwn(text) if "_" in text else f"_{escape_mrkdwn(text)}_"


SLACK: Final = Style(
    flavor="slack",
    escape=escape_mrkdwn,
    bold=_slack_bold,
    italic=_slack_italic,
    link=slack_link,
)
# Telegram shows the URL itself as the link text, so the plain-text retry (as_plain_text,
# when Telegram cannot parse the HTML) and a reader of a forwarded message still have it.
TELEGRAM: Final = Style(
    flavor="telegram",
    escape=escape_html,
    bold=lambda text: f"<b>{escape_html(text)}</b>",
    italic=lambda text: f"<i>{escape_html(text)}</i>",
    link=lambda url, _label: html_link(url, url),
)

_MEDIA_NAMES: Final[dict[MediaKind, tuple[str, str]]] = {
    "image": ("🖼️", "Image"),
    "video": ("🎬", "Video"),
    "document": ("📄", "Document"),
    "audio": ("🔊", "Audio"),
}


def shorten(text: str, limit: int) -> tuple[str, bool]:
    """One line of at most `limit` code points (whitespace collapsed), and whether it was cut."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line, False
    kept: list[str] = []
    size = 0
    for grapheme in graphemes(line):  # keep an emoji sequence whole or leave it out
        if size + len(grapheme) > limit - 1:
            break
        kept.append(grapheme)
        size += len(grapheme)
    return "".join(kept) + "…", True


def context_line(content: Content, style: Style) -> tuple[str, list[str]]:
    """The one-line who/where header, and body lines giving in full what it had to shorten.

    E.g. `💬 *Customer name* · Channel name (WHATSAPP) · in-queue`, or for a team
    member's answer `🎧 Agent *Ada* → *Customer name* · Channel name (WHATSAPP) · open`.
    """
    overflow: list[str] = []

    def short(label: str, value: str | None, limit: int = _NAME_MAX) -> str | None:
        if value is None:
            return None
        line, cut = shorten(value, limit)
        if cut:
            overflow.append(f"{style.italic(label + ':')} {style.escape(value)}")
        return line or None

    if content.kind == "message":
        who = short("Sender", content.sender)
        if content.agent:
            # In a channel without threads, the customer answered must be named.
            customer = short("Customer", content.customer)
            head = "🎧 Agent" + (f" {style.bold(who)}" if who else "")
            head += f" → {style.bold(customer)}" if customer else ""
        else:
            head = "💬 " + (style.bold(who) if who else style.italic("unknown customer"))
        channel = short("Channel", content.channel)
        medium = short("Medium", content.medium, _TAG_MAX)
        where = f"{channel} ({medium})" if channel and medium else channel or medium
        items = [head, style.escape(where) if where else None]
    elif content.kind == "campaign":
        items = ["📣 " + style.bold("Campaign delivery report")]
    else:
        name = short("Event", content.event_name)
        items = ["📨 " + (style.bold(name) if name else style.italic("event without a name"))]
    status = short("Status", content.status, _TAG_MAX) if content.kind == "message" else None
    items.append(style.escape(status) if status else None)
    return " · ".join(item for item in items if item), overflow


def default_body(content: Content, style: Style) -> str:
    """The content text under the context line (what a template replaces)."""
    if content.kind == "message":
        return join_lines(*_message_lines(content, style))
    if content.kind == "campaign":
        return join_lines(*_campaign_lines(content, style))
    return join_lines(*_generic_lines(content, style))


def _message_lines(content: Content, style: Style) -> list[str]:
    lines = []
    if content.quoted_message_id is not None:
        lines.append("↩️ " + style.italic("replying to an earlier message"))
    if content.text is not None:
        lines.append(style.escape(content.text))
    elif not content.media:
        lines.append(style.italic("(no text)"))
    return lines


def _campaign_lines(content: Content, style: Style) -> list[str]:
    summary = style.escape(content.text) if content.text else style.italic("(no summary)")
    lines = [summary]
    if content.report_url is not None:
        if is_web_url(content.report_url):
            lines.append("📊 Report: " + style.link(content.report_url, "open the report"))
        else:
            lines.append("📊 Report: " + style.escape(content.report_url))
    return lines


def _generic_lines(content: Content, style: Style) -> list[str]:
    lines = [f"{style.bold(path)}: {style.escape(value)}" for path, value in content.fields]
    if not lines:
        lines.append(style.italic("(no fields)"))
    if content.more_fields:
        lines.append(style.italic(f"… and {content.more_fields} more fields, not shown"))
    return lines


def media_line(media: Media, style: Style) -> str:
    """`🖼️ Image: <link>`; a value that is not a web URL is shown as escaped text."""
    icon, name = _MEDIA_NAMES[media.kind]
    if media.linkable:
        return f"{icon} {name}: {style.link(media.url, file_label(media.url, name.lower()))}"
    return f"{icon} {name}: {style.escape(media.url)}"


def file_label(url: str, fallback: str) -> str:
    """A short label for a link: the URL's file name (`receipt.jpg`), else `fallback`."""
    try:
        name = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    except ValueError:
        name = ""
    return shorten(name, _NAME_MAX)[0] or fallback


def template_note(error: str, style: Style) -> str:
    """The line added when a destination template failed and the default body is shown."""
    reason = shorten(error, 200)[0]
    return "⚠️ " + style.italic(f"template failed ({reason}); default layout shown")


def join_lines(*lines: str) -> str:
    """Non-empty lines, one per line."""
    return "\n".join(line for line in lines if line)
