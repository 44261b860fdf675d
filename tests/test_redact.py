"""The redactor masks every form of its secrets, whatever their case, fast path or not."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from relay.redact import MASK, Redactor

TOKEN = "xoxb-1111-2222-SecretToken"
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"


def plain(redactor: Redactor, text: str) -> str:
    """What the pattern alone gives: the redactor without its fast path."""
    assert redactor._matchers is not None
    return redactor._matchers[0].sub(MASK, text)


def test_secrets_are_masked_in_any_case_and_form() -> None:
    redact = Redactor(TOKEN, HOOK, None, "")
    assert redact(f"token {TOKEN} end") == f"token {MASK} end"
    assert redact(f"token {TOKEN.upper()}!") == f"token {MASK}!"
    assert redact(f"post {HOOK}") == f"post {MASK}"
    assert redact("path /services/T000/B000/XXXXsecretXXXX") == f"path {MASK}"
    encoded = "https%3A%2F%2Fhooks.slack.com%2Fservices%2FT000%2FB000%2FXXXXsecretXXXX"
    assert redact(f"url {encoded}") == f"url {MASK}"
    assert redact(f"café {TOKEN.lower()} ünïcode") == f"café {MASK} ünïcode"  # not ASCII
    assert redact("nothing secret here") == "nothing secret here"


def test_a_secret_that_is_not_ascii_is_masked_as_the_pattern_does() -> None:
    # U+212A KELVIN SIGN is "k" to a case-insensitive match: ASCII text is no shortcut here.
    redact = Redactor("tok\u212aen-123456")
    for text in ("a tok\u212aen-123456 b", "a token-123456 b", "a TOKEN-123456 b"):
        assert redact(text) == plain(redact, text)
    assert redact("a tok\u212aen-123456 b") == f"a {MASK} b"


def test_without_secrets_text_is_unchanged() -> None:
    assert Redactor()("xoxb-anything") == "xoxb-anything"


@given(
    secrets=st.lists(st.text(min_size=6, max_size=12), min_size=1, max_size=3),
    text=st.text(max_size=40),
    picks=st.lists(st.integers(0, 2), max_size=3),
    upper=st.booleans(),
)
def test_the_fast_path_masks_exactly_what_the_pattern_masks(
    secrets: list[str], text: str, picks: list[int], upper: bool
) -> None:
    redact = Redactor(*secrets)
    if redact._matchers is None:  # every form was too short
        return
    for pick in picks:  # put some secrets in the text, maybe in another case
        secret = secrets[pick % len(secrets)]
        text += secret.upper() if upper else secret
    assert redact(text) == plain(redact, text)


def test_ascii_text_with_secret_spellings_is_masked_like_the_pattern() -> None:
    redact = Redactor("Ab-cd-ef-gh", "ZZ%zz%ZZ")
    for text in ("ab-CD-ef-GH", "x zz%ZZ%zz y", "AB-CD-EF-G", "zz%zz%z"):
        assert redact(text) == plain(redact, text)
    assert re.fullmatch(re.escape(MASK), redact("AB-CD-EF-GH"))
