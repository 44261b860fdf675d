"""How to cut rendered markup into parts within a length limit; shared by renderers.

`split_markup(markup, flavor, limit)` cuts rendered markup into parts within a length
budget, at a line break, else a space, else between characters (keeping emoji ZWJ sequences
and combining marks together when it can), never inside an entity (`&amp;`), a Slack link
(`<url|label>`) or a Telegram tag. Telegram tags open at a cut are closed at the end of one
part and reopened at the start of the next. Joining the parts gives the markup back (Slack)
or the same visible text (Telegram): nothing is cut.

Lengths are counted in UTF-16 code units: that is how Telegram counts, and for Slack it
is never less than the code points Slack and slack-sdk count, so it is safe for both.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from typing import Final, Literal, NamedTuple

Flavor = Literal["slack", "telegram"]

TEXT, NEWLINE, SPACE, OPEN, CLOSE, ATOM = range(6)  # what a Token is: its `kind`
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
    tag: str = ""  # tag name, for OPEN and CLOSE


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
        return Token(raw, utf16_len(raw), ATOM)
    if raw.startswith("&"):  # visible as the character it stands for
        return Token(raw, utf16_len(html.unescape(raw)), ATOM)
    return Token(raw, 0, CLOSE if match.group(1) else OPEN, match.group(2).lower())


def _text_tokens(text: str) -> Iterator[Token]:
    for match in _TEXT_PIECE.finditer(text):
        piece = match.group(0)
        if piece == "\n":
            yield Token(piece, 1, NEWLINE)
        elif piece.isspace():
            yield Token(piece, utf16_len(piece), SPACE)
        else:
            for chunk in _chunks(piece):
                yield Token(chunk, utf16_len(chunk), TEXT)


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
    if token.kind == ATOM and token.raw.startswith("<"):
        out: list[Token] = []
        pos = 0
        for match in _ENTITY_ONLY.finditer(token.raw):
            out.extend(_units(token.raw[pos : match.start()]))
            out.append(_atom_token(match, flavor))
            pos = match.end()
        out.extend(_units(token.raw[pos:]))
        return out
    if token.kind in (TEXT, SPACE):
        pieces = list(graphemes(token.raw))
        return _units(token.raw) if len(pieces) > 1 else _units(token.raw, by_code_point=True)
    return [token]


def _units(text: str, *, by_code_point: bool = False) -> list[Token]:
    pieces = list(text) if by_code_point else graphemes(text)
    return [Token(piece, utf16_len(piece), TEXT) for piece in pieces]


def _fit(items: list[Token], start: int, budget: int) -> int:
    used, end = 0, start
    while end < len(items) and used + items[end].width <= budget:
        used += items[end].width
        end += 1
    return end


def _break_point(items: list[Token], start: int, end: int) -> int:
    """Where to cut before `end`: a line break, else a space, preferring the later half."""
    total = sum(token.width for token in items[start:end])
    if items[end].kind == NEWLINE:
        return end
    late_space = end if items[end].kind == SPACE else None
    any_newline = any_space = None
    removed = 0
    for cut in range(end, start, -1):
        late = removed * 2 <= total
        kind = items[cut - 1].kind
        if kind == NEWLINE:
            if late:
                return _settle(items, start, cut, end)
            any_newline = any_newline or cut
        elif kind == SPACE:
            if late and late_space is None:
                late_space = cut
            any_space = any_space or cut
        removed += items[cut - 1].width
    return _settle(items, start, late_space or any_newline or any_space or end, end)


def _settle(items: list[Token], start: int, cut: int, end: int) -> int:
    """Keep an opening tag with its text and a closing tag with its element."""
    while cut < len(items) and items[cut].kind == CLOSE:
        cut += 1  # closing tags cost nothing, so they always fit
    moved = cut
    while moved > start and items[moved - 1].kind == OPEN:
        moved -= 1
    if moved > start:
        return moved
    return cut if cut > start else end


def _open_after(carried: list[Token], piece: list[Token]) -> list[Token]:
    stack = list(carried)
    for token in piece:
        if token.kind == OPEN:
            stack.append(token)
        elif token.kind == CLOSE and stack and stack[-1].tag == token.tag:
            stack.pop()
    return stack
