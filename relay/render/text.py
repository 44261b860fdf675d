"""What an event says, and how to write it safely within a length limit; shared by renderers.

Three layers, used alike by the Slack and the Telegram renderer:

* **Extraction** - `extract(event) -> Content`: who wrote, where, the text, the media, a
  campaign's summary and report link, or an unknown event's flattened fields. Every field
  may be null, missing or of the wrong type; extraction keeps what is there and never raises.
* **Markup** - a `Style` per destination (`SLACK`, `TELEGRAM`) escapes user text (`&`, `<`,
  `>` and, for Telegram attributes, `"`) and writes our own bold, italic and links; only
  http(s) URLs become links, others are shown as text. `context_line` and `default_body`
  lay a message out with a Style, so both destinations say the same thing.
* **Splitting** - `split_markup(markup, flavor, limit)` cuts rendered markup into parts
  within a length budget, at a line break, else a space, else between characters (keeping
  emoji ZWJ sequences and combining marks together when it can), never inside an entity
  (`&amp;`), a Slack link (`<url|label>`) or a Telegram tag. Telegram tags open at a cut are
  closed at the end of one part and reopened at the start of the next. Joining the parts
  gives the markup back (Slack) or the same visible text (Telegram): nothing is cut.

Lengths are counted in UTF-16 code units: that is how Telegram counts, and for Slack it
is never less than the code points Slack and slack-sdk count, so it is safe for both.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from relay.events import event_name, get_path, text_at

Flavor = Literal["slack", "telegram"]
Kind = Literal["message", "campaign", "generic"]
MediaKind = Literal["image", "video", "document", "audio"]

MESSAGE_EVENTS: Final = frozenset({"newMessage"})
# OneRoute spells it "compaign"; the correct spelling is accepted too, should they fix it.
CAMPAIGN_EVENTS: Final = frozenset({"compaignDeliveryReport", "campaignDeliveryReport"})
MEDIA_FIELDS: Final[tuple[tuple[MediaKind, str], ...]] = (
    ("image", "imageUrl"),
    ("video", "videoUrl"),
    ("document", "documentUrl"),
    ("audio", "audioUrl"),
)

MAX_URL: Final = 2048  # longer "URLs" are shown as text: no platform fetches them anyway
GENERIC_MAX_DEPTH: Final = 6  # deeper parts of an unknown event are shown as JSON
GENERIC_MAX_FIELDS: Final = 300  # a 1 MiB event must not become hundreds of messages
_NAME_MAX: Final = 80  # context-line fields are shortened (the full value goes in the body)
_TAG_MAX: Final = 40  # medium and status are short words; allow less room


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Media:
    """One attachment, from whichever `*Url` field is set (whatever `contentType` says)."""

    kind: MediaKind
    url: str

    @property
    def linkable(self) -> bool:
        """True for an http(s) URL a platform can fetch and a reader can open."""
        return is_web_url(self.url)


@dataclass(frozen=True)
class Content:
    """What an event says, independent of any destination's markup."""

    kind: Kind
    event_name: str | None
    sender: str | None = None  # the name only; `agent` tells whether it is the team's side
    agent: bool = False
    channel: str | None = None
    medium: str | None = None
    status: str | None = None
    conversation_id: str | None = None
    text: str | None = None  # a message's content, or a campaign report's summary
    quoted_message_id: str | None = None
    media: tuple[Media, ...] = ()
    report_url: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # an unknown event, flattened
    more_fields: int = 0  # fields past GENERIC_MAX_FIELDS, counted so the cut is said


def extract(event: Mapping[str, Any]) -> Content:
    """The Content of any event; unknown events are flattened rather than dropped."""
    name = event_name(event)
    if name in MESSAGE_EVENTS:
        return _message(event, name)
    if name in CAMPAIGN_EVENTS:
        return _campaign(event, name)
    return _generic(event, name)


def _message(event: Mapping[str, Any], name: str | None) -> Content:
    agent = _is_true(get_path(event, "message.sender.authUser")[1])
    other = "conversation.agent.name" if agent else "conversation.customer.name"
    message = event.get("message")
    # A `message` that is plain text (or a list...) rather than an object is the text itself.
    text = (
        _value_text(event, "message.content") if isinstance(message, Mapping) else as_text(message)
    )
    return Content(
        kind="message",
        event_name=name,
        sender=text_at(event, "message.sender.name") or text_at(event, other),
        agent=agent,
        channel=text_at(event, "conversation.Channel.name"),
        medium=text_at(event, "conversation.Channel.medium"),
        status=text_at(event, "conversation.status"),
        conversation_id=_conversation_id(event),
        text=text,
        quoted_message_id=_quoted(get_path(event, "message.quoted_message_id")[1]),
        media=tuple(
            Media(kind, url)
            for kind, key in MEDIA_FIELDS
            if (url := _value_text(event, f"message.{key}")) is not None
        ),
    )


def _campaign(event: Mapping[str, Any], name: str | None) -> Content:
    return Content(
        kind="campaign",
        event_name=name,
        conversation_id=_conversation_id(event),
        text=_value_text(event, "message"),
        report_url=_value_text(event, "campaignReportUrl"),
    )


def _generic(event: Mapping[str, Any], name: str | None) -> Content:
    # The name is shown first in the context line; a non-text `event` is shown as a field.
    rest = {key: value for key, value in event.items() if not (key == "event" and name)}
    lines = flatten(rest)
    fields = tuple(islice(lines, GENERIC_MAX_FIELDS))
    return Content(
        kind="generic",
        event_name=name,
        status=text_at(event, "conversation.status"),
        conversation_id=_conversation_id(event),
        fields=fields,
        more_fields=sum(1 for _ in lines),
    )


def _conversation_id(event: Mapping[str, Any]) -> str | None:
    return text_at(event, "conversation.id") or text_at(event, "message.conversation_id")


def _value_text(event: Mapping[str, Any], path: str) -> str | None:
    return as_text(get_path(event, path)[1])


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _quoted(value: Any) -> str | None:
    return None if value is False else as_text(value)


def as_text(value: Any) -> str | None:
    """Any JSON value as display text; None for null, missing, or a blank string.

    Objects and lists where text was expected are shown as JSON rather than dropped.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    return to_json(value)


def to_json(value: Any) -> str:
    """Compact, readable JSON (non-ASCII kept); never raises."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError, RecursionError):
        # Non-text keys, cycles, integers too long to print: say so rather than fail.
        return f"<{type(value).__name__} that cannot be shown as JSON>"


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """`key.path: value` pairs of nested JSON, depth-first; deeper parts as one JSON value."""
    if isinstance(value, Mapping) and value and depth < GENERIC_MAX_DEPTH:
        for key, item in value.items():
            yield from flatten(item, _join_path(prefix, key), depth + 1)
    elif isinstance(value, list | tuple) and value and depth < GENERIC_MAX_DEPTH:
        for index, item in enumerate(value):
            yield from flatten(item, _join_path(prefix, index), depth + 1)
    else:
        yield prefix or "(value)", value if isinstance(value, str) else to_json(value)


def _join_path(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def is_web_url(url: str) -> bool:
    """An http(s) URL with a host, no whitespace or control characters, of sane length."""
    if len(url) > MAX_URL or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


def file_label(url: str, fallback: str) -> str:
    """A short label for a link: the URL's file name (`receipt.jpg`), else `fallback`."""
    try:
        name = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    except ValueError:
        name = ""
    return shorten(name, _NAME_MAX)[0] or fallback


# ------------------------------------------------------------------------------- markup


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

    E.g. `💬 *Customer name* · Channel name (WHATSAPP) · in-queue`.
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
            head = "🎧 Agent" + (f" {style.bold(who)}" if who else "")
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


def template_note(error: str, style: Style) -> str:
    """The line added when a destination template failed and the default body is shown."""
    reason = shorten(error, 200)[0]
    return "⚠️ " + style.italic(f"template failed ({reason}); default layout shown")


def join_lines(*lines: str) -> str:
    """Non-empty lines, one per line."""
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------------------- splitting

_TEXT, _NEWLINE, _SPACE, _OPEN, _CLOSE, _ATOM = range(6)
_WORD_MAX: Final = 32  # words are cut into pieces this long, so a hard cut is always near

_ENTITY = r"&(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[a-zA-Z][a-zA-Z0-9]{0,31});"
_SLACK_ATOM = re.compile(rf"<[^<>]*>|{_ENTITY}")
_TELEGRAM_ATOM = re.compile(rf"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>|{_ENTITY}")
_ENTITY_ONLY = re.compile(_ENTITY)
_TEXT_PIECE = re.compile(r"\n|[^\S\n]|\S+")


class Token(NamedTuple):
    raw: str
    width: int  # UTF-16 code units it costs against the limit
    kind: int
    tag: str = ""  # tag name, for _OPEN and _CLOSE


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def tokens(markup: str, flavor: Flavor) -> list[Token]:
    """Markup as units a cut may fall between: words, whitespace, entities, links, tags."""
    atoms = _SLACK_ATOM if flavor == "slack" else _TELEGRAM_ATOM
    out: list[Token] = []
    pos = 0
    for match in atoms.finditer(markup):
        out.extend(_text_tokens(markup[pos : match.start()]))
        out.append(_atom_token(match, flavor))
        pos = match.end()
    out.extend(_text_tokens(markup[pos:]))
    return out


def _atom_token(match: re.Match[str], flavor: Flavor) -> Token:
    raw = match.group(0)
    if flavor == "slack":
        return Token(raw, utf16_len(raw), _ATOM)
    if raw.startswith("&"):  # visible as the character it stands for
        return Token(raw, utf16_len(html.unescape(raw)), _ATOM)
    return Token(raw, 0, _CLOSE if match.group(1) else _OPEN, match.group(2).lower())


def _text_tokens(text: str) -> Iterator[Token]:
    for match in _TEXT_PIECE.finditer(text):
        piece = match.group(0)
        if piece == "\n":
            yield Token(piece, 1, _NEWLINE)
        elif piece.isspace():
            yield Token(piece, utf16_len(piece), _SPACE)
        else:
            for chunk in _chunks(piece):
                yield Token(chunk, utf16_len(chunk), _TEXT)


def _chunks(word: str) -> Iterator[str]:
    """A long word in pieces of at most _WORD_MAX code points, cut between graphemes."""
    if word.isascii():  # the common case, and one where every character is a grapheme
        yield from (word[i : i + _WORD_MAX] for i in range(0, len(word), _WORD_MAX))
        return
    chunk = ""
    for grapheme in graphemes(word):
        if chunk and len(chunk) + len(grapheme) > _WORD_MAX:
            yield chunk
            chunk = ""
        chunk += grapheme  # a grapheme longer than a chunk (zalgo text) stays whole here
    if chunk:
        yield chunk


def graphemes(text: str) -> Iterator[str]:
    """Approximate user-perceived characters: a base with its combining marks, emoji
    modifiers and ZWJ-joined emoji, flag pairs. Good enough to choose where to cut."""
    start = 0
    regional_run = 0  # regional indicators in a row: flags are pairs of them
    for index, char in enumerate(text):
        regional = 0x1F1E6 <= ord(char) <= 0x1F1FF
        after_joiner = text[index - 1] == "\u200d"
        joined = _continues(char) or after_joiner or (regional and regional_run % 2 == 1)
        if index and not joined:
            yield text[start:index]
            start = index
        regional_run = regional_run + 1 if regional else 0
    if text:
        yield text[start:]


def _continues(char: str) -> bool:
    """True when `char` belongs to the grapheme before it (a cut before it would break it)."""
    code = ord(char)
    return (
        unicodedata.category(char) in {"Mn", "Mc", "Me"}
        or code == 0x200D  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (flag sequences)
    )


def width(markup: str, flavor: Flavor) -> int:
    """What markup costs against a limit: raw length for Slack, visible length for Telegram."""
    return sum(token.width for token in tokens(markup, flavor))


def split_markup(
    markup: str, flavor: Flavor, limit: int, first_limit: int | None = None
) -> list[str]:
    """Cut markup into parts of at most `limit` (the first: `first_limit`) code units.

    Parts are not stripped: joined, they give back the markup (plus, for Telegram, the
    closing and reopening tags added at the cuts). Whitespace at a cut stays at the end
    of the earlier part.
    """
    items = tokens(markup, flavor)
    parts: list[str] = []
    carried: list[Token] = []  # Telegram tags open at the previous cut
    start = 0
    while start < len(items):
        budget = first_limit if first_limit is not None and not parts else limit
        end = _fit(items, start, budget)
        if end == start:  # one unit larger than a whole part (a giant link): cut inside it
            smaller = _explode(items[start], flavor)
            if len(smaller) > 1:
                items[start : start + 1] = smaller
                continue
            end = start + 1  # one character wider than the limit (limit < 2): send it anyway
        if end < len(items):
            end = _break_point(items, start, end)
        piece = items[start:end]
        still_open = _open_after(carried, piece)
        parts.append(
            "".join(token.raw for token in carried)
            + "".join(token.raw for token in piece)
            + "".join(f"</{token.tag}>" for token in reversed(still_open))
        )
        carried, start = still_open, end
    return parts


def _explode(token: Token, flavor: Flavor) -> list[Token]:
    """Smaller units of one that does not fit in a whole part: a Slack link's graphemes
    and entities, a word's graphemes, or a grapheme's code points (say, zalgo text)."""
    if token.kind == _ATOM and token.raw.startswith("<"):
        out: list[Token] = []
        pos = 0
        for match in _ENTITY_ONLY.finditer(token.raw):
            out.extend(_units(token.raw[pos : match.start()]))
            out.append(_atom_token(match, flavor))
            pos = match.end()
        out.extend(_units(token.raw[pos:]))
        return out
    if token.kind in (_TEXT, _SPACE):
        pieces = list(graphemes(token.raw))
        return _units(token.raw) if len(pieces) > 1 else _units(token.raw, by_code_point=True)
    return [token]


def _units(text: str, *, by_code_point: bool = False) -> list[Token]:
    pieces = list(text) if by_code_point else graphemes(text)
    return [Token(piece, utf16_len(piece), _TEXT) for piece in pieces]


def _fit(items: list[Token], start: int, budget: int) -> int:
    used, end = 0, start
    while end < len(items) and used + items[end].width <= budget:
        used += items[end].width
        end += 1
    return end


def _break_point(items: list[Token], start: int, end: int) -> int:
    """Where to cut before `end`: a line break, else a space, preferring the later half."""
    total = sum(token.width for token in items[start:end])
    if items[end].kind == _NEWLINE:
        return end
    late_space = end if items[end].kind == _SPACE else None
    any_newline = any_space = None
    removed = 0
    for cut in range(end, start, -1):
        late = removed * 2 <= total
        kind = items[cut - 1].kind
        if kind == _NEWLINE:
            if late:
                return _settle(items, start, cut, end)
            any_newline = any_newline or cut
        elif kind == _SPACE:
            if late and late_space is None:
                late_space = cut
            any_space = any_space or cut
        removed += items[cut - 1].width
    return _settle(items, start, late_space or any_newline or any_space or end, end)


def _settle(items: list[Token], start: int, cut: int, end: int) -> int:
    """Keep an opening tag with its text and a closing tag with its element."""
    while cut < len(items) and items[cut].kind == _CLOSE:
        cut += 1  # closing tags cost nothing, so they always fit
    moved = cut
    while moved > start and items[moved - 1].kind == _OPEN:
        moved -= 1
    if moved > start:
        return moved
    return cut if cut > start else end


def _open_after(carried: list[Token], piece: list[Token]) -> list[Token]:
    stack = list(carried)
    for token in piece:
        if token.kind == _OPEN:
            stack.append(token)
        elif token.kind == _CLOSE and stack and stack[-1].tag == token.tag:
            stack.pop()
    return stack


# ------------------------------------------------------------------------ telegram html

_TELEGRAM_TAGS: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(
        ["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler", "pre"],
        frozenset[str](),
    ),
    "span": frozenset({"class"}),
    "a": frozenset({"href"}),
    "tg-emoji": frozenset({"emoji-id"}),
    "code": frozenset({"class"}),
    "blockquote": frozenset({"expandable"}),
}
_TELEGRAM_ENTITIES: Final = frozenset({"&lt;", "&gt;", "&amp;", "&quot;"})
_ATTRIBUTE = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""")


def visible_text(markup: str) -> str:
    """The text a Telegram reader sees: tags dropped, entities decoded. Lenient."""
    return "".join(
        html.unescape(token.raw) if token.kind == _ATOM else token.raw
        for token in tokens(markup, "telegram")
        if token.kind not in (_OPEN, _CLOSE)
    )


def telegram_html_error(markup: str) -> str | None:
    """Why Telegram would refuse this HTML ("can't parse entities"), or None if it is fine."""
    stack: list[str] = []
    for token in tokens(markup, "telegram"):
        if token.kind in (_TEXT, _SPACE, _NEWLINE) and any(c in token.raw for c in "<>&"):
            return f"unescaped character in {token.raw!r}"
        if token.kind == _ATOM and not _known_entity(token.raw):
            return f"unsupported entity {token.raw}"
        if token.kind == _OPEN:
            problem = _tag_problem(token)
            if problem:
                return problem
            stack.append(token.tag)
        if token.kind == _CLOSE:
            if not stack or stack[-1] != token.tag:
                return f"unexpected end tag </{token.tag}>"
            stack.pop()
    return f"unclosed tag <{stack[-1]}>" if stack else None


def _known_entity(raw: str) -> bool:
    if raw in _TELEGRAM_ENTITIES:
        return True
    if raw.startswith("&#"):
        body = raw[2:-1]
        code = int(body[1:], 16) if body[:1] in "xX" else int(body)
        return 0 < code <= 0x10FFFF
    return False


def _tag_problem(token: Token) -> str | None:
    if token.tag not in _TELEGRAM_TAGS:
        return f"unsupported tag <{token.tag}>"
    attributes = token.raw[len(token.tag) + 1 : -1]
    names = [name.lower() for name in _ATTRIBUTE.findall(attributes)]
    unknown = [name for name in names if name not in _TELEGRAM_TAGS[token.tag]]
    if unknown:
        return f"unsupported attribute {unknown[0]!r} on <{token.tag}>"
    if token.tag == "a" and "href" not in names:
        return "<a> without href"
    return None
