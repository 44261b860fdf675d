"""What Telegram makes of HTML: the text a reader sees (`visible_text`), and whether
Telegram would refuse it ("can't parse entities") and why (`telegram_html_error`).
"""

from __future__ import annotations

import html
import re
from typing import Final

from relay.render.split import ATOM, CLOSE, NEWLINE, OPEN, SPACE, TEXT, Token, tokens

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
        html.unescape(token.raw) if token.kind == ATOM else token.raw
        for token in tokens(markup, "telegram")
        if token.kind not in (OPEN, CLOSE)
    )


def telegram_html_error(markup: str) -> str | None:
    """Why Telegram would refuse this HTML ("can't parse entities"), or None if it is fine."""
    stack: list[str] = []
    for token in tokens(markup, "telegram"):
        if token.kind in (TEXT, SPACE, NEWLINE) and any(c in token.raw for c in "<>&"):
            return f"unescaped character in {token.raw!r}"
        if token.kind == ATOM and not _known_entity(token.raw):
            return f"unsupported entity {token.raw}"
        if token.kind == OPEN:
            problem = _tag_problem(token)
            if problem:
                return problem
            stack.append(token.tag)
        if token.kind == CLOSE:
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
