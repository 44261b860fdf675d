"""What the operator console reads from the store (relay/console/), and its one change.

Every list is newest first and paged by id (keyset: `before` is the last id of the page
before), so a page costs the same on a store of a thousand events or a million. Each
filter has an index (migration 5 in relay/store/schema.py); a query is driven by the index
of its most selective filter and checks the others on the rows that index yields:

    conversation (a few events) > state pending or dead (the backlog, the dead letters)
    > event name > destination > state sent (most rows) > none (the events' primary key)

The statements are built from constant fragments for each combination of filters (values
are always bound parameters) and kept, so each combination is parsed once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Protocol

from relay.store import schema
from relay.store.sql import Statement, Step, step

STATES = ("pending", "sent", "dead")
NO_LIMIT = 2**62  # `before` when a list starts at its newest row


@dataclass(frozen=True)
class Filters:
    """What a console list is narrowed to; None: any."""

    event: str | None = None  # the event name, e.g. newMessage
    destination: str | None = None
    state: str | None = None  # one of STATES: events with a delivery in it (at destination)
    conversation: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {self.state!r}")

    def params(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class EventRow:
    id: int
    received_at: float
    event_name: str | None
    conversation: str | None
    body: bytes


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    event_id: int
    destination: str
    state: str
    attempts: int
    next_at: float
    reason: str | None
    detail: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class AttemptRow:
    delivery_id: int
    at: float
    outcome: str  # sent, retry or dead
    reason: str | None
    detail: str | None
    duration: float


@dataclass(frozen=True)
class DeadRow:
    delivery: DeliveryRow
    event_name: str | None
    conversation: str | None


@dataclass(frozen=True)
class LaneCounts:
    """A destination's rows as the console's lanes page shows them."""

    pending: int = 0
    oldest_created_at: float | None = None
    dead: int = 0
    sent_last_hour: int = 0


class ConsoleStore(Protocol):
    """The console's part of a store (relay/console/)."""

    async def recent_events(
        self, filters: Filters, before: int | None, limit: int
    ) -> list[EventRow]: ...
    async def deliveries_of(self, event_ids: Sequence[int]) -> list[DeliveryRow]: ...
    async def event(self, event_id: int) -> EventRow | None: ...
    async def attempts_of(self, event_id: int) -> list[AttemptRow]: ...
    async def dead_page(self, filters: Filters, before: int | None, limit: int) -> list[DeadRow]:
        """Dead deliveries, newest (by delivery id) first; `state` is ignored."""

    async def revive_matching(self, filters: Filters, now: float) -> int:
        """Put back in line every dead delivery that matches; how many."""

    async def lane_counts(self, now: float) -> dict[str, LaneCounts]: ...


# --- statements ---------------------------------------------------------------------------------

_DELIVERY_COLUMNS = """d.id, d.event_id, d.destination, d.state, d.attempts, d.next_at, d.reason,
    d.detail, d.created_at, d.finished_at"""

_EVENT = "SELECT id, received_at, event_name, conversation, body FROM events"

EVENTS_BY_ID = Statement(_EVENT + " WHERE id IN ({ids}) ORDER BY id DESC", rows=True)
EVENT = Statement(_EVENT + " WHERE id = :id", rows=True)

DELIVERIES_OF = Statement(
    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries AS d WHERE d.event_id IN ({{ids}}) ORDER BY d.id",  # noqa: S608 - constant
    rows=True,
)

ATTEMPTS_OF = Statement(
    """
    SELECT a.delivery_id, a.at, a.outcome, a.reason, a.detail, a.duration FROM attempts AS a
    WHERE a.delivery_id IN (SELECT id FROM deliveries WHERE event_id = :id) ORDER BY a.id
    """,
    rows=True,
)

# One attempt for each row a message carried (relay/store/shared.py adds it to the outcome's
# transaction). Casts: PostgreSQL cannot tell a parameter's type from a SELECT list.
RECORD_ATTEMPTS = Statement(
    """
    INSERT INTO attempts (delivery_id, at, outcome, reason, detail, duration)
    SELECT id, CAST(:at AS {real}), CAST(:outcome AS TEXT), CAST(:reason AS TEXT),
        CAST(:detail AS TEXT), CAST(:duration AS {real})
    FROM deliveries WHERE id IN ({ids})
    """
)


def attempt_step(
    ids: Sequence[int], at: float, outcome: str, reason: str | None, detail: str | None,
    duration: float,
) -> Step:  # fmt: skip
    """Record that `ids` were attempted at `at`: `outcome` is sent, retry or dead."""
    return step(
        RECORD_ATTEMPTS, ids=list(ids), at=at, outcome=outcome, reason=reason, detail=detail,
        duration=max(0.0, duration),
    )  # fmt: skip


LANE_PENDING = schema.BACKLOG
LANE_DEAD = Statement(
    "SELECT destination, count(*) FROM deliveries WHERE state = 'dead' GROUP BY destination",
    rows=True,
)
# The last hour's range of deliveries_sent_at, read first: left to itself, SQLite would
# rather group by destination along another index, through every sent row there is.
LANE_SENT = Statement(
    """
    WITH recent AS MATERIALIZED (
        SELECT destination FROM deliveries WHERE state = 'sent' AND finished_at >= :since
    )
    SELECT destination, count(*) FROM recent GROUP BY destination
    """,
    rows=True,
)


@dataclass(frozen=True)
class _Shape:
    """Which filters are set (the state's value too: it picks the index): the cache key of
    a statement. Values are bound as parameters, never part of the text."""

    event: bool
    destination: bool
    state: str | None
    conversation: bool

    @classmethod
    def of(cls, filters: Filters) -> _Shape:
        return cls(
            filters.event is not None,
            filters.destination is not None,
            filters.state,
            filters.conversation is not None,
        )


def _delivery_matches(shape: _Shape) -> str:
    """The delivery-side conditions, for an EXISTS over an event's deliveries."""
    parts = []
    if shape.destination:
        parts.append("d.destination = :destination")
    if shape.state is not None:
        parts.append("d.state = :state")
    return " AND ".join(parts)


def _event_matches(shape: _Shape) -> list[str]:
    parts = []
    if shape.event:
        parts.append("e.event_name = :event")
    if shape.conversation:
        parts.append("e.conversation = :conversation")
    return parts


@cache
def _event_ids(shape: _Shape) -> Statement:
    """The ids of a page of events matching `shape`."""
    if shape.conversation or (shape.event and shape.state not in ("pending", "dead")):
        return _driven_by_events(shape)  # events(conversation, id) or events(event_name, id)
    if shape.state is not None or shape.destination:
        return _driven_by_deliveries(shape)
    return Statement(
        "SELECT id FROM events WHERE id < :before ORDER BY id DESC LIMIT :limit", rows=True
    )


def _driven_by_events(shape: _Shape) -> Statement:
    where = ["e.id < :before", *_event_matches(shape)]
    if delivery := _delivery_matches(shape):
        where.append(
            f"EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id AND {delivery})"  # noqa: S608 - constant fragments
        )
    return Statement(
        f"SELECT e.id FROM events AS e WHERE {' AND '.join(where)} "  # noqa: S608 - constant fragments
        "ORDER BY e.id DESC LIMIT :limit",
        rows=True,
    )


def _driven_by_deliveries(shape: _Shape) -> Statement:
    """deliveries(state, event_id) or deliveries(destination, state, event_id), read
    backwards from `before`; a destination without a state reads its three states' ranges
    and merges them (each range is in event order, the index's order)."""
    join = "JOIN events AS e ON e.id = d.event_id" if shape.event else ""
    checks = " ".join(f"AND {part}" for part in _event_matches(shape))
    if shape.state is not None:
        # One delivery per event and destination: only a state alone can repeat an event.
        distinct = "" if shape.destination else "DISTINCT"
        where = "d.destination = :destination AND " if shape.destination else ""
        return Statement(
            f"SELECT {distinct} d.event_id FROM deliveries AS d {join} "  # noqa: S608 - constant fragments
            f"WHERE {where}d.state = :state AND d.event_id < :before {checks} "
            "ORDER BY d.event_id DESC LIMIT :limit",
            rows=True,
        )
    ranges = " UNION ALL ".join(
        f"SELECT event_id FROM (SELECT d.event_id FROM deliveries AS d {join} "  # noqa: S608 - constant fragments
        f"WHERE d.destination = :destination AND d.state = '{state}' AND d.event_id < :before "
        f"{checks} ORDER BY d.event_id DESC LIMIT :limit) AS {state}_range"
        for state in STATES
    )
    return Statement(
        f"SELECT event_id FROM ({ranges}) AS ranges ORDER BY event_id DESC LIMIT :limit",  # noqa: S608 - constant fragments
        rows=True,
    )


_DEAD = f"""
SELECT {_DELIVERY_COLUMNS}, e.event_name, e.conversation
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.state = 'dead'
"""  # noqa: S608 - constant


def _dead_where(shape: _Shape) -> list[str]:
    """Dead deliveries matching every filter but the state (they are all dead)."""
    where = ["d.state = 'dead'"]
    if shape.destination:
        where.append("d.destination = :destination")
    return where + _event_matches(shape)


@cache
def _dead_page(shape: _Shape) -> Statement:
    """deliveries_dead_recent, or deliveries_dead_by_destination (both partial: dead rows)."""
    where = " AND ".join(["d.id < :before", *_dead_where(shape)[1:]])
    return Statement(f"{_DEAD} AND {where} ORDER BY d.id DESC LIMIT :limit", rows=True)


@cache
def _dead_matching(shape: _Shape) -> Statement:
    return Statement(
        "SELECT d.id FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "  # noqa: S608 - constant fragments
        f"WHERE {' AND '.join(_dead_where(shape))} ORDER BY d.id",
        rows=True,
    )


REVIVE_CHUNK = 500  # ids per revive: a bounded statement, each chunk its own transaction


# --- the mixin ----------------------------------------------------------------------------------


class ConsoleViews:
    """ConsoleStore on the shared primitives; both engines inherit it."""

    @abstractmethod
    async def _read(self, statement: Statement, **params: Any) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def _write(self, *steps: Step) -> list[Any]: ...

    async def recent_events(
        self, filters: Filters, before: int | None, limit: int
    ) -> list[EventRow]:
        params = {**filters.params(), "before": before or NO_LIMIT, "limit": limit}
        rows = await self._read(_event_ids(_Shape.of(filters)), **params)
        ids = [int(row[0]) for row in rows]
        if not ids:
            return []
        return [EventRow(*row) for row in await self._read(EVENTS_BY_ID, ids=ids)]

    async def deliveries_of(self, event_ids: Sequence[int]) -> list[DeliveryRow]:
        if not event_ids:
            return []
        rows = await self._read(DELIVERIES_OF, ids=list(event_ids))
        return [DeliveryRow(*row) for row in rows]

    async def event(self, event_id: int) -> EventRow | None:
        rows = await self._read(EVENT, id=event_id)
        return EventRow(*rows[0]) if rows else None

    async def attempts_of(self, event_id: int) -> list[AttemptRow]:
        return [AttemptRow(*row) for row in await self._read(ATTEMPTS_OF, id=event_id)]

    async def dead_page(self, filters: Filters, before: int | None, limit: int) -> list[DeadRow]:
        filters = replace(filters, state=None)
        params = {**filters.params(), "before": before or NO_LIMIT, "limit": limit}
        rows = await self._read(_dead_page(_Shape.of(filters)), **params)
        return [DeadRow(DeliveryRow(*row[:10]), row[10], row[11]) for row in rows]

    async def revive_matching(self, filters: Filters, now: float) -> int:
        # Through revive(), which also gives each revived conversation its head (claims read
        # only heads: relay/store/schema.py).
        filters = replace(filters, state=None)
        rows = await self._read(_dead_matching(_Shape.of(filters)), **filters.params())
        ids = [int(row[0]) for row in rows]
        revived = 0
        for start in range(0, len(ids), REVIVE_CHUNK):
            revived += await self.revive(ids[start : start + REVIVE_CHUNK], now)
        return revived

    # SharedStore's (the engines list this mixin first: declared here, it would shadow it).
    revive: Callable[[Sequence[int] | None, float], Awaitable[int]]

    async def lane_counts(self, now: float) -> dict[str, LaneCounts]:
        lanes: dict[str, LaneCounts] = {}
        for destination, pending, oldest in await self._read(LANE_PENDING):
            lanes[destination] = LaneCounts(pending=int(pending), oldest_created_at=oldest)
        for destination, dead in await self._read(LANE_DEAD):
            lanes[destination] = _replace(lanes.get(destination), dead=int(dead))
        for destination, sent in await self._read(LANE_SENT, since=now - 3600.0):
            lanes[destination] = _replace(lanes.get(destination), sent_last_hour=int(sent))
        return lanes


def _replace(counts: LaneCounts | None, **changes: int) -> LaneCounts:
    return replace(counts or LaneCounts(), **changes)
