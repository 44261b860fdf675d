"""Route regexes (`{regex: R}`, relay/routing.py): Python-style patterns, run by RE2.

Python's `re` backtracks: `^(\\w+\\s?)*$` against a 27-character message takes seconds,
doubling with each character, and routing runs at ingest, on the event loop. RE2
(google-re2) matches in time linear in the text, whatever the pattern; in exchange it
refuses what needs backtracking (backreferences, lookaround, atomic groups, possessive
quantifiers), and each of those is a config error saying what to write instead.

Before RE2 compiles a pattern it is translated, so that a pattern written for Python's
`re` keeps its meaning:

    \\d \\w \\s \\D \\W \\S    Unicode, as in Python (RE2's own are ASCII): \\p{Nd},
                            [\\p{L}\\p{N}_] and Python's whitespace (tests/test_regex.py
                            compares them with `re` over every assigned code point)
    \\Z                      RE2's \\z, the very end of the text
    \\uXXXX \\UXXXXXXXX \\N{…} RE2's \\x{…}
    [\\b] \\0 \\012            backspace and octal escapes
    {,n}                    {0,n} (RE2 would read it as literal text)

What is different is written in README "Routing": \\b and \\B are ASCII; `$` without
(?m) matches only at the very end (Python also before a final newline); [[:alpha:]] is
a POSIX class; RE2's own syntax (\\p{Greek}, \\Q…\\E, (?U)) is available.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import re2

_DIGIT = r"\p{Nd}"  # Python's \d: str.isdecimal()
_WORD_PARTS = {"_": "_", "L": r"\p{L}", "d": _DIGIT, "Nl": r"\p{Nl}", "No": r"\p{No}"}
_WORD = "".join(_WORD_PARTS.values())  # Python's \w: str.isalnum() or "_"
_SPACES = (  # Python's \s: str.isspace()
    *range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
)  # fmt: skip
_SPACE = "".join(rf"\x{{{code:X}}}" for code in _SPACES)
_SIMPLE_ESCAPES = {"t": 0x09, "n": 0x0A, "v": 0x0B, "f": 0x0C, "r": 0x0D, "a": 0x07, "b": 0x08}
_CLASS_ESCAPES = {
    "d": (_DIGIT, False),
    "D": (_DIGIT, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
}
_REPEAT = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_HEX = {"u": 4, "U": 8}
_MAX_SHOWN = 60

_LOOKAHEAD = (
    "lookahead {} is not supported (RE2 matches in linear time and never looks ahead): "
    "match the text itself, or add another key to `when`, e.g. {{not: {{regex: ...}}}} "
    "for a negative lookahead"
)
_LOOKBEHIND = (
    "lookbehind {} is not supported (RE2 matches in linear time and never looks back): "
    "match the text itself, e.g. (^|[^a])b instead of (?<!a)b"
)
_BACKREFERENCE = (
    "backreference {} is not supported (RE2 matches in linear time and cannot remember "
    "text): write the alternatives out, e.g. (yes yes|no no) instead of (yes|no) \\1"
)
_REFUSED_GROUPS = {
    "(?=": _LOOKAHEAD,
    "(?!": _LOOKAHEAD,
    "(?<=": _LOOKBEHIND,
    "(?<!": _LOOKBEHIND,
    "(?P=": _BACKREFERENCE,
    "(?>": "atomic group {} is not supported (RE2 never backtracks): write (?:...)",
    "(?(": "conditional {} is not supported: write an alternation (a|b), or two routes",
    "(?#": "comment {} is not supported: remove it (a YAML # comment can say the same)",
}
_REFUSED_FLAGS = {
    "x": "verbose mode (?x) is not supported: remove the flag, the spaces and the # comments",
    "a": "ASCII mode (?a) is not supported: write [0-9] or [A-Za-z0-9_] for ASCII classes",
    "L": "locale mode (?L) is not supported: remove it",
    "u": "(?u) is not needed (\\d, \\w and \\s match Unicode already): remove it",
}
_SUPPORTED_FLAGS = "imsU-"


class RegexError(ValueError):
    """A pattern RE2 cannot run; the message names the construct and what to write instead."""


def compile_regex(pattern: str) -> Any:
    """The RE2 regexp for a route's pattern (searched with `.search(bytes)`), or RegexError.

    Capturing groups are compiled as non-capturing: routing only asks whether there is a
    match, which RE2 then answers with its DFA alone."""
    shown = _show(pattern)
    if any("\ud800" <= char <= "\udfff" for char in pattern):
        raise RegexError(f"invalid regex {shown}: it holds a lone surrogate, which is no text")
    translated = _Translator(pattern, shown).translate()
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.never_capture = True
    try:
        return re2.compile(translated, options)
    except re2.error as error:
        raise RegexError(_explain(shown, error)) from None


def _show(pattern: str) -> str:
    text = pattern if len(pattern) <= _MAX_SHOWN else pattern[: _MAX_SHOWN - 1] + "…"
    return f"'{text}'" if text.isprintable() else repr(text)


def _explain(shown: str, error: re2.error) -> str:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    what, _, where = text.partition(": ")
    if what == "invalid repetition size":
        counts = [int(count) for count in re.findall(r"\d+", where)]
        if len(counts) == 2 and counts[0] > counts[1]:
            return f"invalid regex {shown}: in {where} the minimum is above the maximum"
        return (
            f"invalid regex {shown}: {where} repeats too often for RE2, which allows counts "
            "up to 1000, nested repetitions included (their product): use a smaller count, "
            "or + or *"
        )
    if what.startswith("pattern too large"):
        return (
            f"invalid regex {shown}: too large for RE2 (it would need more than 8 MiB): use "
            "smaller repetition counts or fewer alternatives"
        )
    if where:
        return f"invalid regex {shown}: {what} in '{where}'"
    return f"invalid regex {shown}: {what}"


class _Translator:
    """One pass over a pattern: Python's meaning in RE2's syntax, or a RegexError."""

    def __init__(self, pattern: str, shown: str) -> None:
        self.pattern = pattern
        self.shown = shown
        self.out: list[str] = []

    def fail(self, message: str) -> RegexError:
        return RegexError(f"invalid regex {self.shown}: {message}")

    def translate(self) -> str:
        pattern, i = self.pattern, 0
        quantifier_at = -1  # where the quantifier just before `i` starts, if there is one
        while i < len(pattern):
            char, start = pattern[i], i
            quantifier = False
            if char == "\\":
                i = self._escape(i)
            elif char == "[":
                i = self._class(i)
            elif char == "(":
                self._check_group(i)
                self.out.append(char)
                i += 1
            elif char in "*+?":
                if quantifier_at >= 0 and char == "+":
                    raise self.fail(
                        f"possessive quantifier '{pattern[quantifier_at : i + 1]}' is not "
                        "supported (RE2 never backtracks): drop the final +"
                    )
                quantifier = not (quantifier_at >= 0 and char == "?")  # `*?` is lazy: fine
                self.out.append(char)
                i += 1
            elif char == "{" and (repeat := _REPEAT.match(pattern, i)) and repeat.group() != "{}":
                low, comma, high = repeat.groups()
                self.out.append("{" + (low or "0") + (comma or "") + (high or "") + "}")
                quantifier = True
                i = repeat.end()
            else:
                self.out.append(char)
                i += 1
            quantifier_at = start if quantifier else -1
        return "".join(self.out)

    def _check_group(self, i: int) -> None:
        pattern = self.pattern
        for opening, message in _REFUSED_GROUPS.items():
            if pattern.startswith(opening, i):
                raise self.fail(message.format(f"'{opening}...)'"))
        flags = re.match(r"\(\?([A-Za-z-]+)[:)]", pattern[i:])
        if flags:
            for flag in flags.group(1):
                if flag in _REFUSED_FLAGS:
                    raise self.fail(_REFUSED_FLAGS[flag])
                if flag not in _SUPPORTED_FLAGS:
                    raise self.fail(f"unknown flag (?{flag}): RE2 knows i, m, s and U")

    def _escape(self, i: int) -> int:
        """Translate the escape at `i` (outside a class); the index after it."""
        pattern = self.pattern
        if i + 1 >= len(pattern):
            raise self.fail("it ends with a lone \\ (write \\\\ for a backslash)")
        char = pattern[i + 1]
        if char in _CLASS_ESCAPES:
            body, negated = _CLASS_ESCAPES[char]
            self.out.append(("[^" if negated else "[") + body + "]")
            return i + 2
        if char == "Z":
            self.out.append(r"\z")
            return i + 2
        if char in "123456789":
            if re.match(r"[0-7]{3}", pattern[i + 1 : i + 4]):  # \101: an octal escape
                self.out.append(pattern[i : i + 4])
                return i + 4
            raise self.fail(_BACKREFERENCE.format(f"'\\{char}'"))
        if char in "kg" and pattern[i + 2 : i + 3] in ("<", "{", "'"):
            raise self.fail(_BACKREFERENCE.format(f"'\\{char}'"))
        if char == "Q":  # RE2's literal text up to \E: copied as it is
            end = pattern.find("\\E", i + 2)
            end = len(pattern) if end < 0 else end + 2
            self.out.append(pattern[i:end])
            return end
        code, end = self._character(i)
        if code is not None:
            self.out.append(rf"\x{{{code:X}}}")
            return end
        self.out.append(pattern[i:end])
        return end

    def _character(self, i: int) -> tuple[int | None, int]:
        """The code point an escape at `i` stands for when RE2 spells it differently (\\u,
        \\U, \\N{…}, a non-ASCII or space character), else None; and the index after it."""
        pattern = self.pattern
        char = pattern[i + 1]
        if char in _HEX:
            digits = pattern[i + 2 : i + 2 + _HEX[char]]
            if not re.fullmatch(r"[0-9A-Fa-f]+", digits) or len(digits) != _HEX[char]:
                raise self.fail(f"\\{char} needs {_HEX[char]} hex digits (e.g. \\u00e9)")
            if int(digits, 16) > 0x10FFFF:
                raise self.fail(f"\\{char}{digits} is beyond Unicode")
            return int(digits, 16), i + 2 + _HEX[char]
        if char == "N":
            name = re.match(r"\{([^}]*)\}", pattern[i + 2 :])
            if not name:
                raise self.fail("\\N needs a character name in braces, e.g. \\N{EM DASH}")
            try:
                return ord(unicodedata.lookup(name.group(1))), i + 2 + name.end()
            except KeyError:
                raise self.fail(f"\\N{{{name.group(1)}}}: no character has that name") from None
        if char in "pPx" and pattern[i + 2 : i + 3] == "{":  # \p{Greek}, \x{1F600}: whole
            close = pattern.find("}", i + 3)
            return None, len(pattern) if close < 0 else close + 1
        if not char.isascii() or char.isspace():  # Python: the character itself
            return ord(char), i + 2
        return None, i + 2

    def _class(self, i: int) -> int:
        """Translate the character class opening at `i`; the index after its `]`."""
        pattern = self.pattern
        j = i + 1
        negated = pattern.startswith("^", j)
        j += negated
        items: list[_Item] = []
        complements: list[str] = []  # \W and \S, by the class escape they complement
        previous = ""  # the kind of the last item: "", "char", "dash" or "class"
        dash_is_range = False
        while j < len(pattern):
            char = pattern[j]
            if char == "]" and previous:
                break
            kind = "char"
            if char == "\\" and pattern[j + 1 : j + 2] in _CLASS_ESCAPES:
                if previous == "dash" and dash_is_range:
                    raise self.fail(self._range_message(j))
                letter = pattern[j + 1]
                if letter in "WS":
                    complements.append(letter.lower())
                else:
                    body, negated_escape = _CLASS_ESCAPES[letter]
                    items.append(_Item(r"\P{Nd}" if negated_escape else body, None, letter))
                kind, j = "class", j + 2
            elif char == "\\" and j + 1 < len(pattern):
                item, j = self._class_escape(j)
                items.append(item)
                kind = "char" if item.code is not None else "class"
            elif char == "[" and pattern.startswith("[:", j):  # [:alpha:], a POSIX class
                close = pattern.find(":]", j + 2)
                end = len(pattern) if close < 0 else close + 2
                items.append(_Item(pattern[j:end], None))
                kind, j = "class", end
            elif char == "-" and previous:
                if previous == "class" and pattern[j + 1 : j + 2] not in ("]", ""):
                    raise self.fail(self._range_message(j))
                dash_is_range = previous == "char"
                items.append(_Item(char, None))
                kind, j = "dash", j + 1
            else:
                items.append(_Item(char, ord(char)))
                j += 1
            previous = kind
        if j >= len(pattern):  # unterminated: RE2 says so in the user's own text
            self.out.append(pattern[i:])
            return j
        self.out.append(self._class_text(negated, items, complements))
        return j + 1

    def _class_escape(self, j: int) -> tuple[_Item, int]:
        r"""The escape at `j` inside a class (not \d \w \s ...), and the index after it."""
        pattern = self.pattern
        char = pattern[j + 1]
        if char in _SIMPLE_ESCAPES:
            code = _SIMPLE_ESCAPES[char]
            return _Item(rf"\x{{{code:X}}}", code), j + 2
        octal = re.match(r"[0-7]{1,3}", pattern[j + 1 : j + 4])
        if octal:
            code = int(octal.group(), 8)
            return _Item(rf"\x{{{code:X}}}", code), j + 1 + octal.end()
        hexadecimal = re.match(r"x([0-9A-Fa-f]{2})|x\{([0-9A-Fa-f]{1,6})\}", pattern[j + 1 :])
        if hexadecimal:
            code = int(hexadecimal.group(1) or hexadecimal.group(2), 16)
            return _Item(pattern[j : j + 1 + hexadecimal.end()], code), j + 1 + hexadecimal.end()
        code, end = self._character(j)
        if code is not None:
            return _Item(rf"\x{{{code:X}}}", code), end
        if not char.isalnum():  # \- \] \\ \. ...: the character itself
            return _Item(pattern[j : j + 2], ord(char)), j + 2
        return _Item(pattern[j:end], None), end  # \p{Greek}, or RE2 says what is wrong

    def _range_message(self, j: int) -> str:
        return (
            f"a range cannot start or end at a class such as \\w (near position {j}): put "
            "the - first or last in [...], or write \\-"
        )

    def _class_text(self, negated: bool, items: list[_Item], complements: list[str]) -> str:
        body = "".join(item.text for item in items)
        if not complements:
            return f"[{'^' if negated else ''}{body}]"
        if not negated:  # [\Wx]: not a word character, or x
            bodies = [_CLASS_ESCAPES[letter][0] for letter in complements]
            alternatives = ([f"[{body}]"] if body else []) + [f"[^{b}]" for b in bodies]
            return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
        # [^\W...] and [^\S...]: what \w or \s matches, less the other items. RE2 has no
        # class subtraction, so it is spelt out where it can be: \w less _ or \d, \s less
        # any characters.
        if len(complements) == 1 and complements[0] == "w":
            removed = {item.escape or item.text for item in items}
            if removed <= {"_", "d"}:
                kept = [text for part, text in _WORD_PARTS.items() if part not in removed]
                return f"[{''.join(kept)}]"
        if len(complements) == 1 and complements[0] == "s":
            codes = {item.code for item in items}
            if None not in codes and not any(item.text == "-" for item in items):
                return "[" + "".join(rf"\x{{{c:X}}}" for c in _SPACES if c not in codes) + "]"
        raise self.fail(
            "RE2 cannot subtract from \\W or \\S in [^...] except _ and \\d from \\w, or "
            "single characters from \\s: list what the class should match instead, e.g. "
            "[\\p{L}] for letters"
        )


@dataclass(frozen=True)
class _Item:
    """One member of a character class: its RE2 text, the code point when it is a single
    character, and the class escape letter it came from (d, w, s, D)."""

    text: str
    code: int | None
    escape: str = ""
