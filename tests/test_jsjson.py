"""js_reserialise against a table of what Node.js prints for JSON.stringify(JSON.parse(body)).

Every expected value was printed by Node 20, with the body decoded as express.json() does
(UTF-8 with U+FFFD replacement, one leading BOM dropped); tests/test_jsjson_node.py checks
the table against node again whenever node is installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise

DATA = Path(__file__).resolve().parent / "data" / "oneroute"

REJECT = None  # JSON.parse throws

# (id, body, what Node prints or REJECT)
CASES: list[tuple[str, bytes, bytes | None]] = [
    # Numbers: the nearest double, printed by Number::toString (-0 → 0, ±Infinity → null).
    ("int", b"42", b"42"),
    ("neg-int", b"-17", b"-17"),
    ("zero", b"0", b"0"),
    ("neg-zero", b"-0", b"0"),
    ("neg-zero-float", b"-0.0", b"0"),
    ("neg-zero-exp", b"-0e5", b"0"),
    ("float-one", b"1.0", b"1"),
    ("float-trailing-zeros", b"2.50000", b"2.5"),
    ("exp-upper", b"1E2", b"100"),
    ("exp-plus", b"1e+2", b"100"),
    ("exp-neg", b"15e-1", b"1.5"),
    ("1e21", b"1e21", b"1e+21"),
    ("1e20", b"1e20", b"100000000000000000000"),
    ("1.5e21", b"1.5e21", b"1.5e+21"),
    ("1e-7", b"1e-7", b"1e-7"),
    ("0.000001", b"0.000001", b"0.000001"),
    ("1.5e-7", b"1.5e-7", b"1.5e-7"),
    ("0.0000015", b"0.0000015", b"0.0000015"),
    ("123e-20", b"123e-20", b"1.23e-18"),
    ("0.1", b"0.1", b"0.1"),
    ("0.1+0.2-ish", b"0.30000000000000004", b"0.30000000000000004"),
    ("too-many-digits", b"0.1000000000000000055511151231257827", b"0.1"),
    ("min-subnormal", b"5e-324", b"5e-324"),
    ("below-min-subnormal", b"2e-324", b"0"),
    ("underflow", b"1e-400", b"0"),
    ("neg-underflow", b"-1e-400", b"0"),
    ("max-double", b"1.7976931348623157e308", b"1.7976931348623157e+308"),
    ("overflow", b"1e400", b"null"),
    ("neg-overflow", b"-1e400", b"null"),
    ("2^53", b"9007199254740992", b"9007199254740992"),
    ("2^53+1", b"9007199254740993", b"9007199254740992"),
    ("15-digits", b"999999999999999", b"999999999999999"),
    ("16-digits", b"9999999999999999", b"10000000000000000"),
    ("20-digits", b"12345678901234567890", b"12345678901234567000"),
    ("22-digits", b"1234567890123456789012", b"1.2345678901234568e+21"),
    ("huge-int", b"1" + b"0" * 400, b"null"),
    ("huge-int-5000", b"7" * 5000, b"null"),
    ("neg-huge-int", b"-" + b"9" * 400, b"null"),
    ("long-fraction", b"0." + b"3" * 1000, b"0.3333333333333333"),
    ("big-exponent-digits", b"1e0000000000000000000001", b"10"),
    ("numbers-in-array", b"[1.0, -0, 1e21, 1e-7, 100, 0.5e1]", b"[1,0,1e+21,1e-7,100,5]"),
    # Key order: array indices (0 .. 2**32-2, canonical) first and ascending; duplicates keep
    # the last value at the first position.
    ("index-keys-first", b'{"b":1,"2":2,"a":3,"1":1}', b'{"1":1,"2":2,"b":1,"a":3}'),
    (
        "index-like-keys",
        b'{"z":0,"01":1,"-1":2,"1.0":3,"1e3":4," 1":5,"+1":6,"0":7}',
        b'{"0":7,"z":0,"01":1,"-1":2,"1.0":3,"1e3":4," 1":5,"+1":6}',
    ),
    (
        "index-limit",
        b'{"x":0,"4294967295":1,"4294967294":2,"4294967296":3,"99999999999":4}',
        b'{"4294967294":2,"x":0,"4294967295":1,"4294967296":3,"99999999999":4}',
    ),
    ("index-numeric-order", b'{"10":0,"9":1,"100":2,"0":3}', b'{"0":3,"9":1,"10":0,"100":2}'),
    ("duplicate-keys", b'{"a":1,"b":2,"a":3}', b'{"a":3,"b":2}'),
    ("duplicate-index-keys", b'{"a":0,"1":1,"0":2,"1":3}', b'{"0":2,"1":3,"a":0}'),
    ("duplicate-key-nested", b'{"a":{"x":1},"a":{"y":2}}', b'{"a":{"y":2}}'),
    (
        "proto-key",
        b'{"__proto__":{"a":1},"constructor":2}',
        b'{"__proto__":{"a":1},"constructor":2}',
    ),
    ("empty-key", b'{"":1,"a":{"":[]}}', b'{"":1,"a":{"":[]}}'),
    ("fullwidth-digit-key", b'{"b":0,"\xef\xbc\x91":1}', b'{"b":0,"\xef\xbc\x91":1}'),
    # Strings: only " \ and C0 controls are escaped (lowercase hex); lone surrogates as \udxxx.
    ("escapes", b'"\\" \\\\ \\/ \\b \\f \\n \\r \\t"', b'"\\" \\\\ / \\b \\f \\n \\r \\t"'),
    (
        "control-escapes",
        b'"\\u0000\\u0001\\u0007\\u000b\\u000e\\u001f\\u001F"',
        b'"\\u0000\\u0001\\u0007\\u000b\\u000e\\u001f\\u001f"',
    ),
    ("del-not-escaped", b'"\x7f \\u007f"', b'"\x7f \x7f"'),
    (
        "line-separators",
        b'"\xe2\x80\xa8 \\u2028 \\u2029"',
        b'"\xe2\x80\xa8 \xe2\x80\xa8 \xe2\x80\xa9"',
    ),
    ("unicode-escaped", b'"Ol\\u00e1 \\u00E9 \\u4f60"', b'"Ol\xc3\xa1 \xc3\xa9 \xe4\xbd\xa0"'),
    (
        "raw-unicode",
        b'"Ol\xc3\xa1 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd <b>&amp;</b>"',
        b'"Ol\xc3\xa1 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd <b>&amp;</b>"',
    ),
    ("escaped-pair", b'"\\ud83d\\ude00"', b'"\xf0\x9f\x98\x80"'),
    ("lone-high", b'"\\ud800"', b'"\\ud800"'),
    ("lone-low", b'"\\udc00"', b'"\\udc00"'),
    ("lone-high-upper-hex", b'"\\uD83D"', b'"\\ud83d"'),
    ("reversed-pair", b'"\\ude00\\ud83d"', b'"\\ude00\\ud83d"'),
    ("high-high-low", b'"\\ud83d\\ud83d\\ude00"', b'"\\ud83d\xf0\x9f\x98\x80"'),
    ("high-then-letter", b'"\\ud83dA"', b'"\\ud83dA"'),
    ("high-then-escaped-letter", b'"\\ud83d\\u0041"', b'"\\ud83dA"'),
    ("escaped-high-raw-emoji", b'"\\ud83d\xf0\x9f\x98\x80"', b'"\\ud83d\xf0\x9f\x98\x80"'),
    ("raw-emoji-escaped-low", b'"\xf0\x9f\x98\x80\\ude00"', b'"\xf0\x9f\x98\x80\\ude00"'),
    ("lone-surrogate-key", b'{"\\udfff":1}', b'{"\\udfff":1}'),
    ("fffe-ffff", b'"\xef\xbf\xbe\xef\xbf\xbf"', b'"\xef\xbf\xbe\xef\xbf\xbf"'),
    # Decoding: invalid UTF-8 → U+FFFD as Node does; one leading BOM is dropped (express.json).
    ("invalid-utf8", b'"\xff\xfe"', b'"\xef\xbf\xbd\xef\xbf\xbd"'),
    ("utf8-encoded-surrogate", b'"\xed\xa0\x80"', b'"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"'),
    ("truncated-utf8", b'"\xe2\x82"', b'"\xef\xbf\xbd"'),
    ("overlong", b'"\xc0\xaf"', b'"\xef\xbf\xbd\xef\xbf\xbd"'),
    ("too-big", b'"\xf4\x90\x80\x80"', b'"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"'),
    ("stray-continuation", b'"a\x80b"', b'"a\xef\xbf\xbdb"'),
    ("bom", b'\xef\xbb\xbf{"a":1}', b'{"a":1}'),
    ("bom-twice", b"\xef\xbb\xbf\xef\xbb\xbf{}", REJECT),
    ("bom-after-space", b" \xef\xbb\xbf{}", REJECT),
    ("bom-escaped-in-string", b'"\\ufeff"', b'"\xef\xbb\xbf"'),
    # Structure and whitespace.
    ("literals", b"[true,false,null]", b"[true,false,null]"),
    ("empty-containers", b'[{},[],"",{"a":[]}]', b'[{},[],"",{"a":[]}]'),
    ("whitespace", b' \t\r\n{ "a" :\t[ 1 ,\n2 ] }\r\n ', b'{"a":[1,2]}'),
    ("top-level-string", b'"x"', b'"x"'),
    ("nested", b'{"a":[{"b":[[{"c":null}]]}]}', b'{"a":[{"b":[[{"c":null}]]}]}'),
    # What JSON.parse rejects.
    ("empty", b"", REJECT),
    ("only-space", b"  ", REJECT),
    ("nan", b"NaN", REJECT),
    ("infinity", b"Infinity", REJECT),
    ("neg-infinity", b"-Infinity", REJECT),
    ("nan-in-array", b"[NaN]", REJECT),
    ("trailing-comma-array", b"[1,]", REJECT),
    ("trailing-comma-object", b'{"a":1,}', REJECT),
    ("single-quotes", b"'a'", REJECT),
    ("single-quote-key", b"{'a':1}", REJECT),
    ("unquoted-key", b"{a:1}", REJECT),
    ("raw-tab-in-string", b'"a\tb"', REJECT),
    ("raw-newline-in-string", b'"a\nb"', REJECT),
    ("raw-nul-in-string", b'"a\x00b"', REJECT),
    ("leading-zero", b"01", REJECT),
    ("leading-zero-in-array", b"[01]", REJECT),
    ("plus", b"+1", REJECT),
    ("leading-dot", b".5", REJECT),
    ("trailing-dot", b"1.", REJECT),
    ("bare-exponent", b"1e", REJECT),
    ("exponent-sign-only", b"1e+", REJECT),
    ("minus-only", b"-", REJECT),
    ("hex-number", b"0x10", REJECT),
    ("trailing-garbage", b'{"a":1}x', REJECT),
    ("two-values", b"1 2", REJECT),
    ("unterminated-string", b'"abc', REJECT),
    ("unterminated-array", b"[1", REJECT),
    ("bad-escape", b'"\\x41"', REJECT),
    ("short-unicode-escape", b'"\\u12"', REJECT),
    ("non-hex-unicode-escape", b'"\\u12g4"', REJECT),
    ("bad-escape-after-high", b'"\\ud83d\\uzzzz"', REJECT),
    ("escaped-apostrophe", b'"\\\'"', REJECT),
    ("vertical-tab-whitespace", b"\x0b1", REJECT),
    ("form-feed-whitespace", b"\x0c1", REJECT),
    ("nbsp-whitespace", b"\xc2\xa01", REJECT),
    ("non-ascii-digit", b"[1\xd9\xa2]", REJECT),
    ("true-prefix", b"tru", REJECT),
    ("capital-true", b"True", REJECT),
    ("none", b"None", REJECT),
    ("comment", b"[1 /* c */]", REJECT),
    ("invalid-utf8-outside-string", b"\xff1", REJECT),
]


@pytest.mark.parametrize(("body", "expected"), [pytest.param(b, e, id=i) for i, b, e in CASES])
def test_matches_node(body: bytes, expected: bytes | None) -> None:
    if expected is REJECT:
        with pytest.raises(JSONParseError):
            js_reserialise(body)
    else:
        assert js_reserialise(body) == expected
        assert js_reserialise(expected) == expected  # JSON.stringify's output is a fixed point


def test_case_ids_are_unique() -> None:
    ids = [case_id for case_id, _, _ in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("opener", "leaf", "closer"),
    [("[", "", "]"), ('{"a":', "1", "}"), ('[{"a":', "1", "}]")],
    ids=["arrays", "objects", "mixed"],
)
@pytest.mark.parametrize("depth", [5000, 100_000])
def test_deep_nesting_is_a_parse_error(opener: str, leaf: str, closer: str, depth: int) -> None:
    body = (opener * depth + leaf + closer * depth).encode()
    with pytest.raises(JSONParseError, match="nesting too deep"):
        js_reserialise(body)  # never a RecursionError


def test_moderate_nesting_is_fine() -> None:
    depth = 400  # well past any webhook; the limit is ~990 less the caller's stack
    body = ('[{"a":' * depth + "1" + "}]" * depth).encode()
    assert js_reserialise(body) == body


def test_parse_error_is_a_value_error_with_a_short_message() -> None:
    secret = "sk_live_" + "x" * 200
    with pytest.raises(ValueError) as excinfo:
        js_reserialise(f'{{"token": "{secret}", }}'.encode())
    assert isinstance(excinfo.value, JSONParseError)
    message = str(excinfo.value)
    assert len(message) < 80
    assert "sk_live_" not in message


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.name)
def test_samples_reserialise_like_compact_json(path: Path) -> None:
    # The samples hold only strings, booleans, null and non-index keys, where Python's own
    # compact dump happens to agree with JSON.stringify.
    body = path.read_bytes()
    expected = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
    assert js_reserialise(body) == expected.encode()


def test_one_mebibyte_body_is_fast() -> None:
    sample = (DATA / "new-message-text.json").read_text()
    copies = (1 << 20) // len(sample) + 1
    body = ("[\n" + ",\n".join([sample] * copies) + "\n]").encode()
    assert len(body) >= 1 << 20
    # CPU time of this thread, not wall time: a loaded machine may stall the process for
    # longer than the bound, but not make the work itself cost more.
    start = time.thread_time()
    out = js_reserialise(body)
    elapsed = time.thread_time() - start
    assert out.startswith(b'[{"event":"newMessage"')
    assert elapsed < 1.0, f"{elapsed:.3f}s of CPU for {len(body)} bytes"  # ~0.07 s on a laptop
