"""Routing: which destinations an event goes to. Pure, so it is table-tested.

Routes are tried in order; the first that matches wins, unless it says `continue: true`,
in which case matching goes on. A route matches when every `when` key (a dotted path
into the event) matches its matcher:

  scalar            equality (true/false never equal 1/0; 1 equals 1.0)
  [a, b]            any of the scalars
  {regex: R}        R is found in the value's text (strings as they are, numbers and
                    booleans as JSON writes them, objects and arrays as compact JSON;
                    a null has no text and never matches), by RE2 in time linear in the
                    text (relay/config/regex.py: the syntax, and why)
  {not: M}          the path exists and M does not match
  {exists: bool}    whether the path is present (a present null exists)

A path that is absent matches only {exists: false}.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay.config.regex import RegexError, compile_regex
from relay.events import get_path

Scalar = str | int | float | bool | None
_SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Equals:
    value: Scalar


@dataclass(frozen=True)
class AnyOf:
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Regex:
    """A pattern as written, and its RE2 regexp (equal when the patterns are)."""

    source: str
    compiled: Any = field(compare=False, repr=False)

    @classmethod
    def compile(cls, source: str) -> Regex:
        return cls(source, compile_regex(source))

    def search(self, text: str) -> bool:
        # UTF-8 bytes, so that google-re2 need not map byte offsets back to characters; a
        # lone surrogate (JSON allows "\ud800") passes through as bytes nothing else matches.
        return self.compiled.search(text.encode("utf-8", "surrogatepass")) is not None


@dataclass(frozen=True)
class Not:
    inner: Matcher


@dataclass(frozen=True)
class Exists:
    expected: bool


Matcher = Equals | AnyOf | Regex | Not | Exists


class MatcherError(ValueError):
    """A matcher that cannot be built. `at` is where inside it the problem is (`("not",
    "regex")`), so that the config error names `routes[i].when.<path>.not.regex`."""

    def __init__(self, message: str, at: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.at = at


def parse_matcher(value: Any) -> Matcher:
    """Build a matcher from its YAML form; ValueError says what is wrong and what is allowed."""
    if isinstance(value, Equals | AnyOf | Regex | Not | Exists):
        return value
    if isinstance(value, _SCALAR_TYPES):
        return Equals(value)
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, _SCALAR_TYPES):
                raise ValueError("a list matches any of its values, which must be plain values")
        return AnyOf(tuple(value))
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(
                "a matcher mapping has exactly one key: regex, not or exists "
                f"(found {', '.join(map(str, value)) or 'none'})"
            )
        ((kind, argument),) = value.items()
        if kind == "regex":
            if not isinstance(argument, str):
                raise MatcherError("regex takes a string", ("regex",))
            try:
                return Regex.compile(argument)
            except RegexError as error:
                raise MatcherError(str(error), ("regex",)) from None
        if kind == "not":
            try:
                return Not(parse_matcher(argument))
            except MatcherError as error:
                if error.at:
                    raise MatcherError(str(error), ("not", *error.at)) from None
                raise MatcherError(f"in not: {error}") from None
            except ValueError as error:
                raise MatcherError(f"in not: {error}") from None
        if kind == "exists":
            if not isinstance(argument, bool):
                raise ValueError("exists takes true or false")
            return Exists(argument)
        raise ValueError(f"unknown matcher '{kind}': use regex, not or exists")
    raise ValueError("a matcher is a value, a list of values, or {regex|not|exists: ...}")


def matches(matcher: Matcher, found: bool, value: Any) -> bool:
    """Whether a value (found at its path, or absent) satisfies the matcher."""
    if isinstance(matcher, Exists):
        return found == matcher.expected
    if not found:
        return False
    if isinstance(matcher, Equals):
        return _equal(matcher.value, value)
    if isinstance(matcher, AnyOf):
        return any(_equal(candidate, value) for candidate in matcher.values)
    if isinstance(matcher, Regex):
        text = _text(value)
        return text is not None and matcher.search(text)
    return not matches(matcher.inner, found, value)


def _equal(expected: Scalar, value: Any) -> bool:
    # Python says True == 1; a config author writing `authUser: false` does not mean 0.
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected is value
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return expected == value
    return type(expected) is type(value) and expected == value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def regexes(matcher: Matcher) -> Iterator[Regex]:
    """The regexes in a matcher (a `not` may hold one)."""
    if isinstance(matcher, Regex):
        yield matcher
    elif isinstance(matcher, Not):
        yield from regexes(matcher.inner)


class RouteLike(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def when(self) -> Mapping[str, Matcher]: ...
    @property
    def to(self) -> Sequence[str]: ...
    @property
    def continue_(self) -> bool: ...


@dataclass(frozen=True)
class Decision:
    """The routes an event matched (by name) and the destinations it goes to, in order."""

    routes: tuple[str, ...]
    destinations: tuple[str, ...]


def route_matches(route: RouteLike, event: Mapping[str, Any]) -> bool:
    return all(matches(matcher, *get_path(event, path)) for path, matcher in route.when.items())


def route_name(route: RouteLike, index: int) -> str:
    return route.name or f"routes[{index}]"


def decide(routes: Sequence[RouteLike], event: Mapping[str, Any]) -> Decision:
    """First match wins, unless it says continue; each destination is named once."""
    names: list[str] = []
    destinations: dict[str, None] = {}
    for index, route in enumerate(routes):
        if not route_matches(route, event):
            continue
        names.append(route_name(route, index))
        destinations.update(dict.fromkeys(route.to))
        if not route.continue_:
            break
    return Decision(tuple(names), tuple(destinations))


# The values a cached decision may be keyed by: hashable scalars (lists and objects are not).
_KEY_TYPES = frozenset({str, int, float, bool, type(None)})


class Router:
    """`decide` for one list of routes, remembering decisions where the rules allow.

    Without regexes a decision is a function of what the routes' paths hold (found or not,
    and each value, its type included: `true` is not `1`), so it is cached by those: a
    handful of keys in practice (event names, channels, `authUser`), and one for routes
    without `when`. A regex is usually on free text (`message.content`), every event a new
    key, so routes with one are decided afresh each time; so are events whose values at
    those paths are lists or objects. The cache is bounded (cleared when full).

    Why: ingest decides once per request, and `decide` follows every route's paths each
    time (1.7 us for one route without `when`, 11 us for config/full.yaml's three routes
    without a regex; 0.1 and 2.7 us from the cache).
    """

    CACHE_SIZE = 1024

    def __init__(self, routes: Sequence[RouteLike]) -> None:
        self.routes = tuple(routes)
        self._paths = tuple(dict.fromkeys(path for route in self.routes for path in route.when))
        self._cacheable = not any(
            any(True for _ in regexes(matcher))
            for route in self.routes
            for matcher in route.when.values()
        )
        self._cache: dict[tuple[Any, ...], Decision] = {}

    def decide(self, event: Mapping[str, Any]) -> Decision:
        if not self._cacheable:
            return decide(self.routes, event)
        key = []
        for path in self._paths:
            found, value = get_path(event, path)
            kind = type(value)
            if kind not in _KEY_TYPES:
                return decide(self.routes, event)
            key.append((found, kind, value))
        cache_key = tuple(key)
        decision = self._cache.get(cache_key)
        if decision is None:
            decision = decide(self.routes, event)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[cache_key] = decision
        return decision
