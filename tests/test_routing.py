"""Routing is pure: a table of matchers, and first-match-with-continue over routes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.config.load import parse_config
from relay.routing import Matcher, Router, decide, matches, parse_matcher

SAMPLES = Path(__file__).parent / "data" / "oneroute"
EVENT = json.loads((SAMPLES / "new-message-text.json").read_text())

MISSING = object()


def check(matcher_yaml: Any, value: Any) -> bool:
    matcher = parse_matcher(matcher_yaml)
    if value is MISSING:
        return matches(matcher, False, None)
    return matches(matcher, True, value)


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ("WHATSAPP", "WHATSAPP", True),
        ("WHATSAPP", "whatsapp", False),
        ("WHATSAPP", MISSING, False),
        ("WHATSAPP", None, False),
        (False, False, True),
        (False, 0, False),  # booleans never equal numbers, unlike Python's ==
        (True, 1, False),
        (0, False, False),
        (1, 1.0, True),
        (1, "1", False),
        (None, None, True),  # a present null
        (None, MISSING, False),  # absent is not null
        (["a", "b"], "b", True),
        (["a", "b"], "c", False),
        (["a", None], None, True),
        ([], "a", False),
        ({"regex": "(?i)refund"}, "I want a REFUND please", True),
        ({"regex": "^refund$"}, "a refund", False),
        ({"regex": "^4"}, 42, True),  # numbers are searched as JSON writes them
        ({"regex": "^true$"}, True, True),
        ({"regex": ".*"}, None, False),  # a null has no text
        ({"regex": "x"}, MISSING, False),
        ({"regex": '"k":1'}, {"k": 1}, True),  # objects as compact JSON
        ({"not": "WHATSAPP"}, "TELEGRAM", True),
        ({"not": "WHATSAPP"}, "WHATSAPP", False),
        ({"not": "WHATSAPP"}, MISSING, False),  # absent matches only {exists: false}
        ({"not": {"regex": "spam"}}, "hello", True),
        ({"not": {"not": "a"}}, "a", True),
        ({"exists": True}, None, True),
        ({"exists": True}, MISSING, False),
        ({"exists": False}, MISSING, True),
        ({"exists": False}, "", False),
        ({"not": {"exists": False}}, "x", True),
    ],
)
def test_matcher_table(matcher: Any, value: Any, expected: bool) -> None:
    assert check(matcher, value) is expected


@pytest.mark.parametrize(
    ("matcher", "message"),
    [
        ({"regex": "("}, "invalid regex"),
        ({"regex": 5}, "regex takes a string"),
        ({"exists": "yes"}, "exists takes true or false"),
        ({"regexp": "x"}, "unknown matcher 'regexp'"),
        ({"regex": "a", "not": "b"}, "exactly one key"),
        ([{"a": 1}], "plain values"),
        ({"not": {"regex": "["}}, "invalid regex '[': missing ]"),
        ({"not": {"exists": 1}}, "in not: exists takes true or false"),
    ],
)
def test_invalid_matchers_say_why(matcher: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_matcher(matcher)


@dataclass
class R:
    to: list[str]
    when: dict[str, Matcher] = field(default_factory=dict)
    name: str | None = None
    continue_: bool = False


def when(**paths: Any) -> dict[str, Matcher]:
    return {path.replace("__", "."): parse_matcher(m) for path, m in paths.items()}


def test_first_match_wins() -> None:
    routes = [R(["a"], when(event="newMessage"), "first"), R(["b"], name="second")]
    decision = decide(routes, EVENT)
    assert decision.routes == ("first",) and decision.destinations == ("a",)


def test_continue_goes_on_and_destinations_are_named_once() -> None:
    routes = [
        R(["a", "b"], when(event="newMessage"), "one", continue_=True),
        R(["x"], when(event="other"), "skipped"),
        R(["b", "c"], name="two", continue_=True),
        R(["d"], name="three"),
        R(["e"], name="never"),
    ]
    decision = decide(routes, EVENT)
    assert decision.routes == ("one", "two", "three")
    assert decision.destinations == ("a", "b", "c", "d")


def test_every_when_key_must_match() -> None:
    route = R(["a"], when(event="newMessage", conversation__Channel__medium="TELEGRAM"))
    assert decide([route], EVENT).destinations == ()


def test_unnamed_routes_are_named_by_position_and_no_route_means_nowhere() -> None:
    assert decide([R(["a"], when(event="x")), R(["b"])], EVENT).routes == ("routes[1]",)
    assert decide([], EVENT).destinations == ()


def test_paths_into_lists() -> None:
    event = {"items": [{"id": "a"}, {"id": "b"}]}
    assert decide([R(["x"], when(items__1__id="b"))], event).destinations == ("x",)
    assert decide([R(["x"], when(items__2__id={"exists": False}))], event).destinations == ("x",)


def test_product_example_routes() -> None:
    config = parse_config(
        (Path(__file__).parents[1] / "config" / "full.yaml").read_text(), environ={}
    )
    refund = json.loads(json.dumps(EVENT))
    refund["message"]["content"] = "I need a Refund"
    assert decide(config.routes, refund).routes == ("whatsapp-refunds", "lagos-line")
    assert decide(config.routes, refund).destinations == (
        "support-slack",
        "ops-telegram",
        "support-slack-hook",
    )
    assert decide(config.routes, EVENT).routes == ("lagos-line",)
    agent = json.loads((SAMPLES / "new-message-from-agent.json").read_text())
    assert decide(config.routes, agent).routes == ("everything-else",)
    campaign = json.loads((SAMPLES / "campaign-delivery-report.json").read_text())
    assert decide(config.routes, campaign).destinations == ("ops-telegram",)
    unknown = json.loads((SAMPLES / "unknown-event.json").read_text())
    assert decide(config.routes, unknown).destinations == ("terminal",)


# --- Router: decide, cached where the rules allow -------------------------------------------

RULES = [
    R(
        ["a"],
        when(event="newMessage", message__sender__authUser=False),
        "customers",
        continue_=True,
    ),
    R(["b"], when(conversation__Channel__medium=["WHATSAPP", 1]), "whatsapp"),
    R(["c"], when(flag=True), "flag"),
    R(["d"], when(flag={"not": {"exists": True}}, event={"exists": True}), "no-flag"),
    R(["e"], name="rest"),
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False, width=16),
    st.sampled_from(["newMessage", "WHATSAPP", "x"]),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.just("k"), SCALARS))


@given(
    event=st.fixed_dictionaries(
        {},
        optional={
            "event": VALUES,
            "flag": VALUES,
            "message": st.fixed_dictionaries({}, optional={"sender": st.fixed_dictionaries(
                {}, optional={"authUser": VALUES})}),
            "conversation": st.fixed_dictionaries({}, optional={"Channel": st.fixed_dictionaries(
                {}, optional={"medium": VALUES})}),
        },
    )
)  # fmt: skip
def test_the_router_decides_as_decide_does(event: dict[str, Any]) -> None:
    router = Router(RULES)
    for _ in range(2):  # afresh, then from the cache
        assert router.decide(event) == decide(RULES, event)


def test_the_router_tells_true_from_1_and_present_null_from_absent() -> None:
    router = Router([R(["t"], when(flag=True), "true"), R(["n"], when(flag=None), "null")])
    assert router.decide({"flag": True}).routes == ("true",)
    assert router.decide({"flag": 1}).routes == ()
    assert router.decide({"flag": None}).routes == ("null",)
    assert router.decide({}).routes == ()
    assert router.decide({"flag": True}).routes == ("true",)


def test_routes_with_a_regex_are_decided_afresh_and_the_cache_is_bounded() -> None:
    refunds = Router([R(["a"], when(message__content={"regex": "(?i)refund"}), "refunds")])
    for text in ("a refund", "hello", "REFUND"):
        assert refunds.decide({"message": {"content": text}}) == decide(
            refunds.routes, {"message": {"content": text}}
        )
    assert refunds._cache == {}
    by_id = Router([R(["a"], when(id="x"), "x")])
    for n in range(Router.CACHE_SIZE + 10):
        by_id.decide({"id": str(n)})
    assert 0 < len(by_id._cache) <= Router.CACHE_SIZE
    assert by_id.decide({"id": "x"}).routes == ("x",)
