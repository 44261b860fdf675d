"""Node.js's `JSON.stringify(JSON.parse(body))`, byte for byte, in Python.

OneRoute's documented verifier signs `JSON.stringify(req.body)`, i.e. the body as Node
re-serialises it, not the bytes on the wire. When a signature does not match the raw body,
the relay recomputes it over this re-serialisation, so everything here must agree with
Node exactly: what JSON.parse accepts, how duplicate and integer-like keys are ordered,
how numbers are rounded and printed, and how strings are escaped.

Parsing uses the stdlib's C scanner through its hooks (it implements the JSON grammar
exactly; the hooks reject NaN/Infinity and keep numbers as their source text); the
serialiser is written here, because Python's differs from JSON.stringify on numbers, lone
surrogates and key order.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable
from json.encoder import encode_basestring  # the C implementation when available (always)

from relay.errors import JSONParseError

__all__ = ["JSONParseError", "js_reserialise"]

# The pure-Python fallback scanner is not exact (its number regex's \d matches non-ASCII
# digits); CPython always ships the C one, so refuse to run rather than be subtly wrong.
if json.scanner.c_make_scanner is None:  # pragma: no cover
    raise ImportError("relay.ingest.jsjson needs CPython's _json accelerator")


class _Num(str):
    """A JSON number, already formatted as JSON.stringify prints it."""

    __slots__ = ()


def _number_text(x: float) -> str:
    """ECMAScript Number::toString(x) as JSON.stringify uses it (non-finite → "null")."""
    if x == 0.0:
        return "0"  # also -0: ToString(-0) is "0"
    if x - x != 0.0:
        return "null"  # ±Infinity (NaN cannot come out of a JSON literal)
    # repr() gives the shortest round-trip digits, which Number::toString also uses;
    # only the layout (where fixed notation stops, exponent style) differs.
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign = "-"
        r = r[1:]
    mantissa, _, exp = r.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    if frac_part == "0":
        frac_part = ""  # "12.0"
    digits = int_part + frac_part
    significant = digits.lstrip("0")  # "0.0001" → "1"
    # n: the decimal exponent such that x = 0.<digits> × 10^n (the spec's n).
    n = len(int_part) + (int(exp) if exp else 0) - (len(digits) - len(significant))
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits[0] + "." + digits[1:] if k > 1 else digits
        text = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _parse_int(text: str) -> _Num:
    # Up to 15 digits the literal is an exact double and prints as itself; longer ones are
    # rounded like any other number (float() of the text: no int() digit limit, and an
    # overflow gives inf rather than an exception).
    if len(text) <= 15:
        return _Num("0" if text == "-0" else text)
    return _Num(_number_text(float(text)))


def _parse_float(text: str) -> _Num:
    return _Num(_number_text(float(text)))  # float() of a decimal string is correctly rounded


def _parse_constant(name: str) -> None:
    raise JSONParseError(f"{name} is not valid JSON")


# Array indices (canonical numeric strings of 0 .. 2**32 - 2) come before the other keys,
# in ascending order (ECMAScript OrdinaryOwnPropertyKeys); ASCII digits only.
_INDEX_LIKE = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_INDEX = 2**32 - 2


def _is_index(key: str) -> bool:
    return _INDEX_LIKE.fullmatch(key) is not None and int(key) <= _MAX_INDEX


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # A dict keeps a duplicate key at its first position with its last value, as JS does.
    obj = dict(pairs)
    if any(map(_is_index, obj)):
        indices = sorted((k for k in obj if _is_index(k)), key=int)
        ordered = {k: obj[k] for k in indices}
        ordered.update((k, v) for k, v in obj.items() if k not in ordered)
        return ordered
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_parse_constant,
    strict=True,  # control characters inside strings are an error, as in JSON.parse
)

# encode_basestring escapes exactly what JSON.stringify escapes (" \ \b \f \n \r \t, other
# C0 controls as lowercase \u00xx) except lone surrogates, which it leaves raw.
_quote = encode_basestring
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _serialise(value: object, append: Callable[[str], None]) -> None:
    """Append the JSON.stringify text of a parsed value (leaves inline: this is the hot loop)."""
    if type(value) is dict:
        if not value:
            append("{}")
            return
        sep = "{"
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                append(f"{sep}{_quote(key)}:{_quote(item)}")
            elif kind is _Num:
                append(f"{sep}{_quote(key)}:{item}")
            elif item is None:
                append(f"{sep}{_quote(key)}:null")
            elif item is True:
                append(f"{sep}{_quote(key)}:true")
            elif item is False:
                append(f"{sep}{_quote(key)}:false")
            else:
                append(f"{sep}{_quote(key)}:")
                _serialise(item, append)
            sep = ","
        append("}")
    elif type(value) is list:
        if not value:
            append("[]")
            return
        sep = "["
        for item in value:
            kind = type(item)
            if kind is str:
                append(sep + _quote(item))
            elif kind is _Num:
                append(sep + item)
            elif item is None:
                append(sep + "null")
            elif item is True:
                append(sep + "true")
            elif item is False:
                append(sep + "false")
            else:
                append(sep)
                _serialise(item, append)
            sep = ","
        append("]")
    elif type(value) is str:
        append(_quote(value))
    elif type(value) is _Num:
        append(value)
    elif value is None:
        append("null")
    elif value is True:
        append("true")
    elif value is False:
        append("false")
    else:  # pragma: no cover - the decoder produces nothing else
        raise TypeError(f"unexpected {type(value).__name__} in parsed JSON")


def js_reserialise(body: bytes) -> bytes:
    """UTF-8 bytes of `JSON.stringify(JSON.parse(text))` as Node.js produces them.

    `text` is the body as express.json() decodes it: UTF-8, each invalid sequence replaced
    by U+FFFD exactly as Node does (Python's "replace" handler follows the same WHATWG
    "maximal subpart" rule), and one leading byte-order mark dropped. JSON.parse itself
    rejects a BOM, but body-parser decodes through iconv-lite, which strips it before
    JSON.parse runs; OneRoute's documented verifier is `JSON.stringify(req.body)` behind
    express.json(), so a BOM-prefixed body is treated as that receiver would treat it.

    Raises JSONParseError when JSON.parse would throw, and also when the document is nested
    deeper than Python's recursion limit allows (Node re-serialises up to ~4000 levels; a
    real webhook is a handful deep).
    """
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    parts: list[str] = []
    try:
        value = _DECODER.decode(text)
        _serialise(value, parts.append)
    except json.JSONDecodeError as exc:
        raise JSONParseError(f"{exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise JSONParseError("nesting too deep") from None
    out = "".join(parts)
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        # Surrogates can only be lone ones inside strings (the scanner joins escaped pairs,
        # and decoded UTF-8 has none): JSON.stringify writes them as lowercase \udxxx.
        return _SURROGATE.sub(_escape_surrogate, out).encode("utf-8")
