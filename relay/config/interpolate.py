"""`${VAR}` interpolation in relay.yaml's values, as docker compose does it.

    ${VAR}           the variable; an error when it is unset
    ${VAR:-default}  default when VAR is unset or empty     ${VAR-default}  when unset
    ${VAR:+word}     word when VAR is set and not empty      ${VAR+word}     when set
    ${VAR:?message}  an error saying message when VAR is unset or empty (${VAR?message}:
                     when unset)
    $$               a literal $ (a $ before anything else is a $ too)

A default, word or message is itself interpolated, so references nest:
`${A:-${B:-x}}`. A regex cannot find where `${A:-${B}}` ends (`[^}]*` stops at the inner
`}` and leaves a stray brace in the value), so the text is read by a small scanner into
parts first — every malformed reference is an error naming it — and evaluated after, as
compose does lazily: a default's variables are looked up only when the default is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")
_HOW = "write ${NAME}, ${NAME:-default}, ${NAME:+word} or ${NAME:?message}, or $$ for a literal $"


@dataclass(frozen=True)
class _Reference:
    name: str
    operator: str | None
    word: tuple[_Part, ...]


_Part = str | _Reference


@dataclass
class Interpolation:
    """The value, and the problems met on the way (unset variables, `:?` messages)."""

    value: str
    problems: list[str] = field(default_factory=list)


class InterpolationError(ValueError):
    """A malformed reference: `fragment` is its text, `problem` what is wrong with it."""

    def __init__(self, fragment: str, problem: str) -> None:
        super().__init__(f"cannot read '{fragment}': {problem}; {_HOW}")
        self.fragment = fragment
        self.problem = problem

    def describe(self, secret: bool) -> str:
        """The message; without the text when the value is a secret."""
        if secret:
            return (
                f"cannot read a ${{...}} reference (not shown: the value is a secret): "
                f"{self.problem}; {_HOW}"
            )
        return str(self)


def interpolate(text: str, environ: Mapping[str, str]) -> Interpolation:
    """`text` with its references replaced; InterpolationError for a malformed one."""
    parts, _ = _Scanner(text).parts(0, nested=False)
    result = Interpolation("")
    result.value = _evaluate(parts, environ, result.problems)
    return result


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text

    def parts(self, start: int, nested: bool) -> tuple[tuple[_Part, ...], int]:
        """The parts from `start` up to the end, or (nested) up to the `}` closing a
        reference, whose index is returned with them."""
        text, i = self.text, start
        parts: list[_Part] = []
        literal: list[str] = []
        while i < len(text):
            char = text[i]
            if char == "$" and text.startswith("$$", i):
                literal.append("$")
                i += 2
            elif char == "$" and text.startswith("${", i):
                if literal:
                    parts.append("".join(literal))
                    literal = []
                reference, i = self.reference(i)
                parts.append(reference)
            elif char == "}" and nested:
                break
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        return tuple(parts), i

    def reference(self, start: int) -> tuple[_Reference, int]:
        """The reference `${...}` opening at `start`, and the index after its `}`."""
        text, i = self.text, start + 2
        name = _NAME.match(text, i)
        if not name:
            problem = (
                "a variable name is letters, digits and _, not starting with a digit"
                if i < len(text) and text[i] != "}"
                else "the variable name is missing"
            )
            if i >= len(text):
                problem = "it is not closed with }"
            raise InterpolationError(self.fragment(start), problem)
        i = name.end()
        if text.startswith("}", i):
            return _Reference(name.group(), None, ()), i + 1
        operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
        if operator is None:
            if i >= len(text):
                raise InterpolationError(text[start:], "it is not closed with }")
            raise InterpolationError(
                self.fragment(start),
                "after the name comes }, :-default, -default, :+word, +word, :?message or ?message",
            )
        word, end = self.parts(i + len(operator), nested=True)
        if end >= len(text):
            raise InterpolationError(text[start:], "it is not closed with }")
        return _Reference(name.group(), operator, word), end + 1

    def fragment(self, start: int) -> str:
        """The text of a malformed reference: up to the first `}`, or to the end."""
        close = self.text.find("}", start)
        return self.text[start:] if close < 0 else self.text[start : close + 1]


def _evaluate(parts: tuple[_Part, ...], environ: Mapping[str, str], problems: list[str]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = environ.get(part.name)
        operator = part.operator
        if operator is None:
            if value is None:
                problems.append(
                    f"environment variable {part.name} is not set "
                    f"(set it, or write ${{{part.name}:-default}} to give a default)"
                )
            out.append(value or "")
        elif operator in (":-", "-"):
            use_default = not value if operator == ":-" else value is None
            out.append(_evaluate(part.word, environ, problems) if use_default else value or "")
        elif operator in (":+", "+"):
            use_word = bool(value) if operator == ":+" else value is not None
            out.append(_evaluate(part.word, environ, problems) if use_word else "")
        else:  # :? and ?
            missing = not value if operator == ":?" else value is None
            if missing:
                message = _evaluate(part.word, environ, problems) or "it is required"
                state = "not set" if value is None else "empty"
                problems.append(f"environment variable {part.name} is {state}: {message}")
            out.append(value or "")
    return "".join(out)
