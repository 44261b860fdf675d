"""Route regexes run on RE2: linear time whatever the pattern, Python's meaning kept, and
what RE2 cannot run refused with a message saying what to write (README "Routing")."""

from __future__ import annotations

import functools
import json
import re
import signal
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.cli import main
from relay.config.load import parse_config
from relay.errors import ConfigError
from relay.routing import decide

PATHOLOGICAL = r"^(\w+\s?)*$"


def config_text(pattern: str, matcher: str = "{{regex: {}}}") -> str:
    """A config whose one route matches message.content with `pattern` (at line 7)."""
    return textwrap.dedent(f"""\
        oneroute: {{secrets: ["a-long-enough-secret"]}}
        destinations: {{out: {{type: console}}}}
        routes:
          - name: r
            to: [out]
            when:
              message.content: {matcher.format(json.dumps(pattern))}
        """)


def router(pattern: str) -> Callable[[str], bool]:
    routes = parse_config(config_text(pattern), environ={}).routes

    def routed(text: str) -> bool:
        event = {"event": "newMessage", "message": {"content": text}}
        return decide(routes, event).routes == ("r",)

    return routed


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail if the block uses more CPU time than this: Python's `re` checks for signals while
    it backtracks, so the old engine fails here instead of hanging the suite. CPU time, not
    wall time: a loaded machine may stall the process, but not make the work cost more."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took more than {seconds} s of CPU")

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM")
def test_a_pathological_pattern_is_decided_in_linear_time() -> None:
    routed = router(PATHOLOGICAL)
    for length in (27, 5_000, 500_000):  # 27 characters took Python's re seconds
        with deadline(1.0):
            started = time.thread_time()
            assert routed("x" * (length - 1) + "!") is False
            assert routed(("word " * length)[: length - 1].strip()) is True
        assert time.thread_time() - started < 1.0


# (pattern, what the error names, what it says to write instead)
REFUSED = [
    (r"(a)\1", r"backreference '\1'", "write the alternatives out"),
    (r"(?P<x>a)(?P=x)", "backreference '(?P=...)'", "write the alternatives out"),
    (r"\k<x>", r"backreference '\k'", "write the alternatives out"),
    (r"refund(?= now)", "lookahead '(?=...)'", "match the text itself"),
    (r"^(?!spam)", "lookahead '(?!...)'", "{not: {regex: ...}}"),
    (r"(?<=REF-)\d+", "lookbehind '(?<=...)'", "match the text itself"),
    (r"(?<!a)b", "lookbehind '(?<!...)'", "(^|[^a])b"),
    (r"(?>a+)b", "atomic group '(?>...)'", "write (?:...)"),
    (r"a*+b", "possessive quantifier '*+'", "drop the final +"),
    (r"a++b", "possessive quantifier '++'", "drop the final +"),
    (r"a?+b", "possessive quantifier '?+'", "drop the final +"),
    (r"a{2}+b", "possessive quantifier '{2}+'", "drop the final +"),
    (r"(a)?(?(1)b|c)", "conditional '(?(...)'", "alternation"),
    (r"(?#note)refund", "comment '(?#...)'", "remove it"),
    (r"(?x) refund  # note", "verbose mode (?x)", "remove the flag"),
    (r"(?a)\w+", "ASCII mode (?a)", "[A-Za-z0-9_]"),
    (r"(?u)\w+", "(?u) is not needed", "remove it"),
    (r"a{1001}", "{1001} repeats too often", "a smaller count"),
    (r"(?:a{100}){100}", "repeats too often", "nested repetitions"),
    (r"x{3,2}", "in {3,2} the minimum is above the maximum", ""),
    (r"[\w-z]", r"a range cannot start or end at a class such as \w", "write \\-"),
    (r"[^\W\s]", r"RE2 cannot subtract from \W or \S", r"[\p{L}]"),
    (r"\N{NO SUCH CHARACTER}", "no character has that name", ""),
    (r"\u12", r"\u needs 4 hex digits", r"\u00e9"),
    ("refund(", "missing )", ""),
    (r"[refund", "missing ]", ""),
    (r"\e", "invalid escape sequence", ""),
    ("a\\", "it ends with a lone \\", "write \\\\"),
]


@pytest.mark.parametrize(("pattern", "construct", "advice"), REFUSED)
def test_patterns_re2_cannot_run_are_errors_saying_what_to_write(
    pattern: str, construct: str, advice: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(pattern), environ={})
    (line,) = caught.value.lines()
    shown = pattern if len(pattern) <= 60 else pattern[:59] + "…"
    prefix = f"relay.yaml:7: routes[0].when[\"message.content\"].regex: invalid regex '{shown}': "
    assert line.startswith(prefix)
    assert construct in line and advice in line


def test_a_refused_regex_inside_not_names_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(r"(?=x)", "{{not: {{regex: {}}}}}"), environ={})
    assert caught.value.lines() == [
        "relay.yaml:7: routes[0].when[\"message.content\"].not.regex: invalid regex '(?=x)': "
        "lookahead '(?=...)' is not supported (RE2 matches in linear time and never looks "
        "ahead): match the text itself, or add another key to `when`, e.g. "
        "{not: {regex: ...}} for a negative lookahead"
    ]


# Patterns written for Python's re keep their meaning (what RE2 alone would change is noted).
KEPT = [
    (r"(?i)refund", "I want a REFUND", True),
    (r"^\d{11}$", "08012345678", True),
    (r"^\d{11}$", "٠٨٠١٢٣٤٥٦٧٨", True),  # Arabic-Indic digits: \d is Unicode (RE2: ASCII)
    (r"^\w+$", "Adébáyọ", True),  # \w is Unicode (RE2: ASCII)
    (r"^\w+$", "Ẹ̀kọ́", False),  # combining marks are not \w, in Python either
    (r"\s", "a\u00a0b", True),  # no-break space is \s (RE2: ASCII)
    (r"\s", "a\vb", True),  # vertical tab is \s in Python (not in RE2's own \s)
    (r"^\W+$", "é", False),
    (r"^[^\W_]+$", "abc_", False),
    (r"^[^\W\d_]+$", "Ọba", True),
    (r"^[^\S\n]+$", " \t\u3000", True),
    (r"^[^\S\n]+$", " \n ", False),
    (r"refund\Z", "a refund", True),  # \Z is RE2's \z
    (r"refund\Z", "a refund\n", False),
    (r"^a{,2}$", "aa", True),  # {,n} is {0,n} (RE2 alone: the text "{,2}")
    (r"^a{,2}$", "aaa", False),
    (r"\u00e9", "café", True),
    (r"\N{EM DASH}", "a — b", True),
    (r"(?i)straße", "STRASSE", False),  # simple case folding, as in Python
    (r"(?i)ǅ", "ǆ", True),
    (r"(?P<word>ref)und", "refund", True),
    (r"^4", 42, True),  # numbers are searched as JSON writes them
    (r'"k":1', {"k": 1}, True),
    (r"\Qa.b\E", "a.b", True),  # RE2's own syntax is available
    (r"\Qa.b\E", "axb", False),
    (r"\p{Greek}", "Ω", True),
]


@pytest.mark.parametrize(("pattern", "value", "expected"), KEPT)
def test_python_meaning_is_kept(pattern: str, value: Any, expected: bool) -> None:
    routes = parse_config(config_text(pattern), environ={}).routes
    event = {"event": "newMessage", "message": {"content": value}}
    assert (decide(routes, event).routes == ("r",)) is expected
    if "\\Q" not in pattern and "\\p" not in pattern:  # Python's re has neither
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        assert (re.search(pattern, text) is not None) is expected


def test_what_differs_from_python_is_what_the_readme_says() -> None:
    assert router(r"\bcafé\b")("café") is False  # \b is ASCII
    assert router(r"(^|\W)café(\W|$)")("un café") is True  # what the README says to write
    assert router(r"refund$")("refund\n") is False  # $ is the very end
    assert router(r"refund\n?$")("refund\n") is True


@functools.cache
def sample_code_points() -> list[str]:
    """Every 7th assigned code point, every Latin-1 one and every space: enough of each
    script and category to catch a class that drifts from Python's."""
    chosen = [c for c in range(0x110000) if c < 0x100 or c % 7 == 0 or chr(c).isspace()]
    return [
        chr(c) for c in chosen if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"
    ]


@pytest.mark.parametrize("escape", [r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"])
def test_unicode_classes_match_what_python_matches(escape: str) -> None:
    routed, python = router(f"^{escape}$"), re.compile(f"^{escape}$")
    differ = [
        f"U+{ord(char):04X}"
        for char in sample_code_points()
        if routed(char) != (python.search(char) is not None)
    ]
    assert differ == []


def test_a_lone_surrogate_in_an_event_is_no_match_and_no_crash() -> None:
    routed = router("refund")
    assert routed("\ud800 refund") is True
    assert router(r"^\w+$")("\ud800") is False


# A pattern grammar both engines read; RE2's answers must be Python's.
ATOMS = [
    "a", "b", "é", "É", " ", r"\n", "1", "٣", "_", "-", ".", r"\.", r"\t", "\u00a0", "ſ", "K",
    r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[ab]", "[^a]", r"[\w-]", r"[^\W_]", r"[^\S\n]",
    "[a-c]", r"[\s\S]", r"[\W\d]", r"[^\d\s]", r"[\D]", r"[^\W\d_]", r"\u00e9", r"\x41",
    "[é-ê]",
]  # fmt: skip
QUANTIFIERS = ["", "", "*", "+", "?", "{0,2}", "{,2}", "*?", "{2}", "{1,}"]
patterns = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]}|{pair[1]})"),
        st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda pair: f"(?:{pair[0]}){pair[1]}"),
    ),
    max_leaves=6,
)
texts = st.text(alphabet="abAB é_1٣ \n-ſKkÉ\t\u00a0x.", max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(["", "^", r"\A", "(?i)", "(?s)", "(?m)^"]),
    body=patterns,
    suffix=st.sampled_from(["", r"\Z", "(?m:$)"]),
    text=texts,
)
def test_routes_agree_with_pythons_re(prefix: str, body: str, suffix: str, text: str) -> None:
    pattern = prefix + body + suffix
    routes = parse_config(config_text(pattern), environ={}).routes
    event = {"event": "newMessage", "message": {"content": text}}
    assert (decide(routes, event).routes == ("r",)) is (re.search(pattern, text) is not None)


def test_check_says_which_engine_matches_regexes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text(config_text(PATHOLOGICAL, "{{not: {{regex: {}}}}}"))
    assert main(["check", "-c", str(file)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{file}: OK (1 destinations, 1 enabled; 1 routes, 1 regex)",
        'regexes match in linear time (RE2; the syntax is in README.md, "Routing")',
    ]
