"""js_reserialise against Node.js itself: the reference is `JSON.stringify(JSON.parse(body))`.

One node process serves the whole module: it reads base64 bodies, one per line, decodes
them as express.json() does (string_decoder, as iconv-lite does, then one leading BOM
dropped) and answers `ok <base64 result>` or `err <base64 message>`. Generated documents
use varied formatting, escapes, key orders, duplicate keys and number spellings, and are
sometimes corrupted so that parse errors are compared too.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.errors import JSONParseError
from relay.ingest.jsjson import js_reserialise
from relay.ingest.signature import sign
from tests.test_jsjson import CASES

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None,
    reason="node not on PATH: the reference JSON.stringify is unavailable",
)

DATA = Path(__file__).resolve().parent / "data" / "oneroute"

NODE_SCRIPT = r"""
const { StringDecoder } = require('string_decoder');
const lines = require('readline').createInterface({ input: process.stdin, crlfDelay: Infinity });
const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
lines.on('line', (line) => {
  const decoder = new StringDecoder('utf8');
  let text = decoder.write(Buffer.from(line, 'base64')) + decoder.end();
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let answer;
  try {
    answer = 'ok ' + b64(JSON.stringify(JSON.parse(text)));
  } catch (e) {
    answer = 'err ' + b64(String(e && e.message));
  }
  process.stdout.write(answer + '\n');
});
"""


class NodeJSON:
    """A persistent node process computing JSON.stringify(JSON.parse(body))."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["node", "-e", NODE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def reserialise(self, body: bytes) -> bytes | None:
        """Node's output, or None when it throws."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(base64.b64encode(body) + b"\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node exited with {self._proc.wait()}")
        status, _, payload = line.strip().partition(b" ")
        return base64.b64decode(payload) if status == b"ok" else None

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture(scope="module")
def node() -> Iterator[NodeJSON]:
    reference = NodeJSON()
    yield reference
    reference.close()


def ours(body: bytes) -> bytes | None:
    try:
        return js_reserialise(body)
    except JSONParseError:
        return None


# --- Generated JSON text -------------------------------------------------------------------

WS = st.text(alphabet=" \t\n\r", max_size=2)
SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
NOTABLE_CHARS = '😀👋🏽\u2028\u2029\x7f\ufeff\ufffd\uffffé你\x00\x1f"\\/'


def unicode_escape(unit: int, upper: bool) -> str:
    return f"\\u{unit:04X}" if upper else f"\\u{unit:04x}"


@st.composite
def string_piece(draw: st.DrawFn) -> str:
    """One character of a JSON string literal, written raw or escaped in one of its forms."""
    if draw(st.integers(0, 9)) == 0:  # a lone surrogate can only be written as an escape
        return unicode_escape(draw(st.integers(0xD800, 0xDFFF)), draw(st.booleans()))
    char = draw(st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(NOTABLE_CHARS)))
    styles = ["escape"]
    if char in SHORT_ESCAPES:
        styles.append("short")
    if char not in '"\\' and ord(char) >= 0x20:
        styles += ["raw"] * 3
    style = draw(st.sampled_from(styles))
    if style == "raw":
        return char
    if style == "short":
        return SHORT_ESCAPES[char]
    upper = draw(st.booleans())
    code = ord(char)
    if code > 0xFFFF:  # astral: an escaped surrogate pair
        code -= 0x10000
        return unicode_escape(0xD800 + (code >> 10), upper) + unicode_escape(
            0xDC00 + (code & 0x3FF), upper
        )
    return unicode_escape(code, upper)


json_strings = st.lists(string_piece(), max_size=10).map(lambda pieces: '"' + "".join(pieces) + '"')

NOTABLE_NUMBERS = [
    "-0", "-0.0", "0e0", "-0e-0", "1.0", "1E2", "1e21", "1e20", "1e-7", "1e-6", "0.000001",
    "0.0000001", "123e-20", "5e-324", "2e-324", "4.9406564584124654e-324",
    "2.2250738585072011e-308", "1.7976931348623157e308", "1.7976931348623159e308", "1e400",
    "9007199254740993", "18446744073709551615", "999999999999999999999", "1e+21", "1E-07",
    "0.1", "0.30000000000000004", "100", "1e0000000000000000000001",
]  # fmt: skip


@st.composite
def json_numbers(draw: st.DrawFn) -> str:
    """A JSON number literal in one of many spellings."""
    kind = draw(st.integers(0, 3))
    sign = draw(st.sampled_from(["", "", "-"]))
    if kind == 0:  # an integer literal, from short to very long
        # 16-17 digits: where integer literals stop being exact doubles; 400: overflow
        length = draw(st.sampled_from([0, 0, 1, 2, 5, 14, 15, 15, 16, 16, 20, 25, 400]))
        rest = draw(st.text("0123456789", min_size=length, max_size=length))
        lead = draw(st.sampled_from("1234567899990"))  # 9…: 16 digits above 2**53
        return sign + ("0" if lead == "0" else lead + rest)
    if kind == 1:  # a double, printed several ways
        x = abs(draw(st.floats(allow_nan=False, allow_infinity=False)))
        style = draw(st.sampled_from(["repr", "e", "E", "f"]))
        if style == "repr":
            return sign + repr(x)
        if style == "f" and x < 1e30:
            return sign + f"{x:.{draw(st.integers(0, 25))}f}"
        text = f"{x:.{draw(st.integers(0, 20))}e}"
        return sign + (text.upper() if style == "E" else text)
    if kind == 2:  # decimal digits, fraction with trailing zeros, exponents with padding
        whole = str(draw(st.integers(0, 10**20)))
        fraction = draw(st.text("0123456789", max_size=25))
        text = whole + ("." + fraction if fraction else "")
        if draw(st.booleans()):
            exponent = draw(st.integers(0, 400))
            text += draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+", "-"]))
            text += "0" * draw(st.integers(0, 2)) + str(exponent)
        return sign + text
    return draw(st.sampled_from(NOTABLE_NUMBERS))


INDEX_LIKE_KEYS = [
    "0", "1", "2", "10", "01", "-1", "1.0", "4294967294", "4294967295", "4294967296", " 1",
]  # fmt: skip
json_keys = st.one_of(
    json_strings,
    st.sampled_from(INDEX_LIKE_KEYS).map(lambda key: f'"{key}"'),
    st.integers(0, 2**33).map(lambda n: f'"{n}"'),
    st.sampled_from(['"\\u0031"', '"\\u0030"', '"1\\u0030"']),  # "1", "0", "10" written escaped
)


@st.composite
def json_arrays(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    items = draw(st.lists(children, max_size=5))
    if not items:
        return "[" + draw(WS) + "]"
    return "[" + ",".join(draw(WS) + item + draw(WS) for item in items) + "]"


@st.composite
def json_objects(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    values = draw(st.lists(children, max_size=6))
    if not values:
        return "{" + draw(WS) + "}"
    pool = draw(st.lists(json_keys, min_size=1, max_size=5))  # small pool: duplicate keys
    members = [
        f"{draw(WS)}{draw(st.sampled_from(pool))}{draw(WS)}:{draw(WS)}{value}{draw(WS)}"
        for value in values
    ]
    return "{" + ",".join(members) + "}"


json_values = st.recursive(
    st.one_of(json_strings, json_numbers(), st.sampled_from(["true", "false", "null"])),
    lambda children: st.one_of(json_arrays(children), json_objects(children)),
    max_leaves=25,
)

CORRUPTIONS = [
    b",", b"]", b"}", b"[", b"{", b'"', b"\\", b"0", b"-", b".", b"e", b"+", b" ", b"\x00",
    b"\x1f", b"NaN", b"Infinity", b"\xef\xbb\xbf", b"'", b"\xff", b"\xc3", b"\xed\xa0\x80",
    b"\xf0\x9f", b"\x0b", b"\xc2\xa0", b"/*", b"01", b"1", b"\\u", b"\\ud800",
]  # fmt: skip


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    body = (draw(WS) + draw(json_values) + draw(WS)).encode()
    action = draw(st.sampled_from(["keep"] * 6 + ["insert", "insert", "delete", "bom"]))
    if action == "insert":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(CORRUPTIONS)) + body[at:]
    elif action == "delete" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + body[at + draw(st.integers(1, 3)) :]
    elif action == "bom":
        body = b"\xef\xbb\xbf" + body
    return body


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_bodies())
def test_generated_documents_match_node(node: NodeJSON, body: bytes) -> None:
    # None on both sides: JSON.parse throws exactly when js_reserialise raises.
    assert ours(body) == node.reserialise(body)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=24))
def test_arbitrary_bytes_in_a_string_match_node(node: NodeJSON, payload: bytes) -> None:
    # Keep the literal well formed so the comparison is about UTF-8 decoding.
    payload = bytes(b if b >= 0x20 and b not in b'"\\' else 0x61 for b in payload)
    body = b'{"s":"' + payload + b'"}'
    assert ours(body) == node.reserialise(body)


def test_table_matches_node(node: NodeJSON) -> None:
    mismatches = [
        case_id for case_id, body, expected in CASES if node.reserialise(body) != expected
    ]
    assert mismatches == []


def test_many_numbers_match_node(node: NodeJSON) -> None:
    rng = random.Random(20240601)
    texts = []
    while len(texts) < 20_000:
        roll = rng.random()
        if roll < 0.5:  # any finite double, from its bits
            (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
            if x != x or x in (float("inf"), float("-inf")):
                continue
            texts.append(repr(x))
        elif roll < 0.8:  # decimal text needing correct rounding
            whole = rng.randint(0, 10 ** rng.randint(1, 30))
            fraction = rng.randint(0, 10 ** rng.randint(1, 25))
            texts.append(f"{whole}.{fraction}e{rng.randint(-340, 330)}")
        else:  # near the fixed/exponential boundaries
            texts.append(repr(rng.randint(1, 10**17) * 10.0 ** rng.randint(-30, 10)))
    body = ("[" + ",".join(texts) + "]").encode()
    expected = node.reserialise(body)
    assert expected is not None
    got = js_reserialise(body)
    diffs = [
        (text, a, b)
        for text, a, b in zip(texts, got.split(b","), expected.split(b","), strict=True)
        if a != b
    ]
    assert diffs == []


def test_random_utf8_garbage_matches_node(node: NodeJSON) -> None:
    rng = random.Random(7)
    interesting = [0x41, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED,
                   0xEF, 0xF0, 0xF4, 0xF5, 0xF8, 0xFE, 0xFF, 0xBB]  # fmt: skip
    strings = [
        bytes(rng.choice(interesting) for _ in range(rng.randint(0, 10))) for _ in range(5000)
    ]
    body = b"[" + b",".join(b'"' + s + b'"' for s in strings) + b"]"
    assert js_reserialise(body) == node.reserialise(body)


def test_vectors_and_samples_match_node(node: NodeJSON) -> None:
    vectors = json.loads((DATA / "signature-vectors.json").read_text())
    for vector in vectors:
        reference = node.reserialise(vector["body"].encode())
        assert reference is not None
        assert sign(vector["secret"], reference) == vector["signature"], vector["name"]
        assert js_reserialise(vector["body"].encode()) == reference, vector["name"]
    for path in sorted(DATA.glob("*.json")):
        body = path.read_bytes()
        assert js_reserialise(body) == node.reserialise(body), path.name


def test_nesting_within_the_limit_matches_node(node: NodeJSON) -> None:
    body = ('[{"1":' * 300 + '"x"' + "}]" * 300).encode()
    assert js_reserialise(body) == node.reserialise(body)


def test_hmac_key_encoding_matches_node() -> None:
    script = (
        "process.stdout.write(require('crypto').createHmac('sha512', 'clé🔑 OneRoute')"
        ".update(Buffer.from('{\"a\":1}')).digest('hex'))"
    )
    result = subprocess.run(["node", "-e", script], capture_output=True, check=True, text=True)
    assert sign("clé🔑 OneRoute", b'{"a":1}') == result.stdout
