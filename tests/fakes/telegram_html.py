"""A strict parser of Telegram's HTML parse mode, as the Bot API documents it.

Used by the fake Telegram server (to answer "can't parse entities" like Telegram does) and
by renderer tests. It accepts only Telegram's tags and entities, requires tags to nest and
close, and returns the text the user would see, so its length can be checked in UTF-16 code
units the way Telegram counts after entity parsing.
"""

from __future__ import annotations

import html
import re

# Tag name -> attributes it may (or must) carry. https://core.telegram.org/bots/api#html-style
ALLOWED_TAGS: dict[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "tg-spoiler": frozenset(),
    "span": frozenset({"class"}),
    "a": frozenset({"href"}),
    "tg-emoji": frozenset({"emoji-id"}),
    "code": frozenset({"class"}),
    "pre": frozenset(),
    "blockquote": frozenset({"expandable"}),
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_TOKEN = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>|&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);|[<>&]"
)
_ATTR = re.compile(r"([a-zA-Z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")


class EntityParseError(ValueError):
    """Telegram answers 400 "Bad Request: can't parse entities: ..." for these."""


def parse(text: str) -> str:
    """Validate Telegram HTML; return the visible text. Raises EntityParseError."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in "<>&":
            raise EntityParseError(
                f"can't parse entities: unexpected {token!r} at byte offset {match.start()}"
            )
        if token.startswith("&"):
            out.append(_entity(match.group(4), match.start()))
            continue
        closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
        if name not in ALLOWED_TAGS:
            raise EntityParseError(f'can\'t parse entities: unsupported start tag "{name}"')
        if closing:
            if not stack or stack[-1] != name:
                raise EntityParseError(f'can\'t parse entities: unexpected end tag "{name}"')
            stack.pop()
            continue
        for attr, _ in _ATTR.findall(attrs):
            if attr.lower() not in ALLOWED_TAGS[name]:
                raise EntityParseError(f'can\'t parse entities: unsupported attribute "{attr}"')
        if name == "a" and "href" not in attrs.lower():
            raise EntityParseError("can't parse entities: a tag without href")
        stack.append(name)
    out.append(text[pos:])
    if stack:
        raise EntityParseError(
            f"can't parse entities: can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return "".join(out)


def _entity(body: str, offset: int) -> str:
    if body.startswith("#"):
        code = int(body[2:], 16) if body[1:2] in "xX" else int(body[1:])
        if not 0 < code <= 0x10FFFF:
            raise EntityParseError(f"can't parse entities: bad numeric entity at {offset}")
        return chr(code)
    if body not in NAMED_ENTITIES:
        raise EntityParseError(f"can't parse entities: unsupported entity &{body}; at {offset}")
    return NAMED_ENTITIES[body]


def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def strip(text: str) -> str:
    """Plain text of Telegram HTML without validation (html.unescape of the tag-free text)."""
    return html.unescape(re.sub(r"<[^>]*>", "", text))
