"""The console's JSON API (README: "Operator console"); the page uses it too.

    GET  /api/events        recent events, newest first: ?event= &destination= &state=
                            &conversation= &before=ID &limit=N; `next` is the next page's
                            `before` (null on the last page)
    GET  /api/events/{id}   one event: body, route decision, preview, deliveries, attempts
    GET  /api/dead          dead deliveries, newest first, the same filters (but state)
    POST /api/dead/retry    {"ids": [...]} or {"all": true, "event": ..., ...}: back in line
    GET  /api/lanes         each destination's lane: pending, oldest age, paused and why

Every answer is redacted with the relay's Redactor as a whole: a token a platform echoed
in a failure's detail, or a customer pasted into a message, never leaves the process.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from relay.answers.intake import LANE_PREFIX
from relay.config.model import Config
from relay.console import views
from relay.destinations import preview
from relay.errors import StoreUnavailable
from relay.integrations.base import BuildContext
from relay.redact import Redactor
from relay.routing import decide
from relay.store.base import Store
from relay.store.views import STATES, DeliveryRow, Filters, LaneCounts

DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # a page of 200 stays under 100 ms on a store of 1M events (bench console)
MAX_IDS = 10_000  # ids in one retry request
MAX_ID = 2**63 - 1  # ids are 64-bit in both stores: a bigger number is no id
_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what JSON writes escaped, so masked before
RETRY_FILTERS = ("event", "destination", "conversation")  # what {"all": true} may add


class LaneView(Protocol):
    """What the console reads of a running lane (relay/lanes.py)."""

    @property
    def running(self) -> bool: ...
    def paused(self) -> Any: ...  # a Pause (until, detail) while the platform makes it wait


@dataclass
class Source:
    """What the console reads from the running relay; callables, as a reload swaps them."""

    store: Store
    redactor: Redactor
    config: Callable[[], Config]
    lanes: Callable[[], Mapping[str, LaneView]]
    wake: Callable[[Sequence[str]], None]
    base: Path  # the config file's folder: template files are relative to it
    clock: Callable[[], float] = field(default=time.time)


def _kind(name: str) -> str | None:
    return "answers" if name.startswith(LANE_PREFIX) else None


class BadRequest(Exception):
    """A parameter the API cannot use: 400 with the message."""


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {value!r}") from None
    if number < 1:
        raise BadRequest(f"{name} must be 1 or more")
    if number > MAX_ID:
        raise BadRequest(f"{name} must be at most {MAX_ID}")
    return number


def filters_from(query: Mapping[str, Any]) -> Filters:
    """The filters of a query string or a JSON body; empty values are no filter."""
    values = {}
    for name in ("event", "destination", "state", "conversation"):
        value = query.get(name)
        if value not in (None, ""):
            if not isinstance(value, str):
                raise BadRequest(f"{name} must be a string")
            if "\x00" in value:  # no stored text holds one (PostgreSQL refuses it)
                raise BadRequest(f"{name} must not hold a NUL character")
            values[name] = value
    if values.get("state") not in (None, *STATES):
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    return Filters(**values)


def _page(query: Mapping[str, str]) -> tuple[int | None, int]:
    before = _int(query.get("before"), "before")
    limit = _int(query.get("limit"), "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    return before, min(limit, MAX_LIMIT)


class API:
    def __init__(self, source: Source) -> None:
        self.source = source

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/events", self.events),
            web.get("/api/events/{id}", self.event),
            web.get("/api/dead", self.dead),
            web.post("/api/dead/retry", self.retry),
            web.get("/api/lanes", self.lanes),
        ]

    def answer(self, data: Any, status: int = 200) -> web.Response:
        text = json.dumps(data, ensure_ascii=False)
        if "\\" in text:  # something was escaped: a secret holding `"` or `\` would not match
            text = json.dumps(self._masked(data), ensure_ascii=False)
        text = self.source.redactor(text)
        return web.Response(text=text, status=status, content_type="application/json")

    def _masked(self, data: Any) -> Any:
        if isinstance(data, str):  # the strings JSON changes; the encoded text covers the rest
            return self.source.redactor(data) if _ESCAPED.search(data) else data
        if isinstance(data, dict):
            return {self._masked(key): self._masked(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self._masked(item) for item in data]
        return data

    @web.middleware
    async def bad_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except BadRequest as error:
            return self.answer({"error": str(error)}, status=400)
        except StoreUnavailable as error:  # the page says so, and polls again
            return self.answer({"error": f"the store is unavailable: {error}"}, status=503)
        return response

    # --- events -------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        filters = filters_from(request.query)
        before, limit = _page(request.query)
        store, config = self.source.store, self.source.config()
        rows = await store.recent_events(filters, before, limit)
        deliveries: dict[int, list[DeliveryRow]] = {}
        for row in await store.deliveries_of([event.id for event in rows]):
            deliveries.setdefault(row.event_id, []).append(row)
        return self.answer(
            {
                "events": [views.event_summary(e, deliveries.get(e.id, []), config) for e in rows],
                "next": rows[-1].id if len(rows) == limit else None,
            }
        )

    async def event(self, request: web.Request) -> web.Response:
        event_id = _int(request.match_info["id"], "the event id")
        assert event_id is not None
        store, config = self.source.store, self.source.config()
        event = await store.event(event_id)
        if event is None:
            return self.answer({"error": f"no event {event_id} (pruned, or never stored)"}, 404)
        deliveries = await store.deliveries_of([event_id])
        attempts = await store.attempts_of(event_id)
        body = views.body_of(event)
        summary = views.event_summary(event, deliveries, config)
        for item in summary["deliveries"]:
            item["attempts_made"] = [
                views.attempt(a) for a in attempts if a.delivery_id == item["id"]
            ]
        decision = (
            decide(config.routes, body) if body is not None and not summary["answer"] else None
        )
        return self.answer(
            {
                **summary,
                "body": body if body is not None else bytes(event.body).decode("utf-8", "replace"),
                "decision": {
                    "routes": list(decision.routes) if decision else [],
                    "destinations": list(decision.destinations) if decision else [],
                    "note": "an answer to a customer: not routed, its lane sends it to OneRoute"
                    if summary["answer"]
                    else "worked out again with the config in force now",
                },
                "preview": self._preview(config, body, [d.destination for d in deliveries]),
            }
        )

    def _preview(
        self, config: Config, body: dict[str, Any] | None, names: Sequence[str]
    ) -> dict[str, Any]:
        """What each destination of the event receives: `relay route --render`'s code."""
        if body is None:
            return {}
        context = BuildContext(self.source.base, config.delivery.timeout, self.source.redactor)
        shown: dict[str, Any] = {}
        for name in names:
            if name.startswith(LANE_PREFIX):
                shown[name] = {"note": "an answer: sent as text to OneRoute's Send Session Message"}
                continue
            destination = config.destinations.get(name)
            if destination is None or not destination.enabled:
                shown[name] = {"error": "not in the config in force, or off"}
                continue
            try:
                shown[name] = preview(name, destination, [body], context)
            except Exception as error:  # a template that fails on this event: say so
                shown[name] = {"error": f"cannot render: {type(error).__name__}: {error}"}
        return shown

    # --- dead letters -------------------------------------------------------------------------

    async def dead(self, request: web.Request) -> web.Response:
        filters = filters_from(request.query)
        before, limit = _page(request.query)
        rows = await self.source.store.dead_page(filters, before, limit)
        return self.answer(
            {
                "dead": [views.dead_letter(row) for row in rows],
                "next": rows[-1].delivery.id if len(rows) == limit else None,
            }
        )

    async def retry(self, request: web.Request) -> web.Response:
        try:
            asked = await request.json()
        except ValueError:
            raise BadRequest('the body must be JSON: {"ids": [...]} or {"all": true}') from None
        if not isinstance(asked, dict):
            raise BadRequest('the body must be {"ids": [...]} or {"all": true, ...filters}')
        known = {"all", *RETRY_FILTERS} if asked.get("all") is True else {"all", "ids"}
        if unknown := sorted(set(asked) - known):  # a misspelt filter must not retry all
            raise BadRequest(
                f"unknown in this body: {', '.join(unknown)}"
                f' ({{"ids": [...]}} or {{"all": true}} with any of {", ".join(RETRY_FILTERS)})'
            )
        store, now = self.source.store, self.source.clock()
        if asked.get("all") is True:
            count = await store.revive_matching(filters_from(asked), now)
        else:
            ids = asked.get("ids")
            if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
                raise BadRequest(f'"ids" must be a list of 1 to {MAX_IDS} delivery ids')
            if not all(
                isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in ids
            ):
                raise BadRequest(f'"ids" must hold whole numbers from 1 to {MAX_ID}')
            count = await store.revive(ids, now)
        self.source.wake(list(self.source.lanes()))
        return self.answer({"retried": count})

    # --- lanes --------------------------------------------------------------------------------

    async def lanes(self, request: web.Request) -> web.Response:
        now = self.source.clock()
        config, running = self.source.config(), self.source.lanes()
        counts = await self.source.store.lane_counts(now)
        names = list(config.destinations) + sorted(
            (set(counts) | set(running)) - set(config.destinations)
        )  # then answer lanes, and destinations gone from the config with rows left
        lanes = []
        for name in names:
            destination = config.destinations.get(name)
            lane = running.get(name)
            count = counts.get(name) or LaneCounts()
            pause = lane.paused() if lane is not None else None
            lanes.append(
                {
                    "destination": name,
                    "type": destination.type if destination is not None else _kind(name),
                    "enabled": (destination is not None and destination.enabled)
                    or (lane is not None),
                    "running": lane is not None and lane.running,
                    "pending": count.pending,
                    "oldest_age": views.age(count.oldest_created_at, now),
                    "paused": None
                    if pause is None
                    else {"seconds": round(pause.until - now, 1), "reason": pause.detail},
                    "sent_last_hour": count.sent_last_hour,
                    "dead": count.dead,
                }
            )
        return self.answer({"lanes": lanes})
